//! Desired (compiled) against observed → the changes for one AWS target. Pure.
//!
//! Everything apply needs is decided here: which group to create, which rule ids to modify or
//! revoke, which NACL numbers to write, which subnets to re-associate, which instances get new
//! metadata options. Apply executes it and makes no choices.

use std::collections::{BTreeMap, HashMap};

use perimeter_core::Note;
use perimeter_core::plan::{Action, Change, Finding, FingerprintError, Keyed, Summary, diff};
use perimeter_core::target::AwsTarget;
use perimeter_core::{Cidr, Direction};
use serde::{Deserialize, Serialize};

use crate::compile::AwsCompiled;
use crate::model::{MetadataOptions, NaclEntry, NetworkAcl, SecurityGroup, SgPeer, SgRule};
use crate::nacl::NACL_ENTRIES_PER_DIRECTION_PER_FAMILY;
use crate::nacl_plan::{OrderError, entry_diff, group_writes, ordered};
use crate::retire::Retirement;
use crate::state::{OWNER_TAG, ObservedAws, SubnetAssociation};
use crate::transition::AwsState;
use perimeter_core::transition::Unsafe;
use perimeter_core::violation::Violation;

/// One security group rule change. `rule_id` is the observed rule's id for updates and deletes
/// (absent for a default rule of a group that does not exist yet: apply finds it by its key
/// right after creating the group).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct SgChange {
    /// Create, update (description, in place) or delete.
    pub action: Action,
    /// Observed rule id.
    pub rule_id: Option<String>,
    /// Observed rule.
    pub before: Option<SgRule>,
    /// Desired rule.
    pub after: Option<SgRule>,
}

/// The owned security group's plan.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct SecurityGroupPlan {
    /// Existing group id; `None` when apply creates the group.
    pub group_id: Option<String>,
    /// `GroupName`.
    pub group_name: String,
    /// `VpcId`.
    pub vpc_id: String,
    /// `Description` for a new group.
    pub description: String,
    /// Rule changes: creates, then updates, then deletes.
    pub changes: Vec<SgChange>,
}

/// The owned network ACL's plan.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct NaclPlan {
    /// Existing NACL id; `None` when apply creates it.
    pub network_acl_id: Option<String>,
    /// `VpcId`.
    pub vpc_id: String,
    /// Entry changes in the order apply makes them: creates on free numbers and deletes, matched
    /// by content (an entry the policy keeps keeps its number).
    pub changes: Vec<Change<NaclEntry>>,
    /// Subnets to move to the owned NACL, with their current association ids.
    pub associate: Vec<SubnetAssociation>,
    /// Subnets on the owned NACL that the target no longer names, each moved to
    /// `network_acl_id` (where it was before perimeter moved it, or the VPC's default) after
    /// the entries are written.
    #[serde(default)]
    pub release: Vec<SubnetAssociation>,
    /// True when the target no longer declares a NACL: after its subnets are released, the
    /// owned NACL is deleted.
    #[serde(default)]
    pub delete: bool,
    /// Subnets in `associate` that are on a NACL other than the VPC's default now, with that
    /// NACL: recorded as tags on the owned NACL before the move (at its creation, or with one
    /// `CreateTags`), so that release and destroy put each subnet back where it was.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub record_previous: BTreeMap<String, String>,
}

/// New metadata options for one instance.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct MetadataChange {
    /// `i-...`.
    pub instance_id: String,
    /// Current options.
    pub before: MetadataOptions,
    /// Options after apply.
    pub after: MetadataOptions,
}

/// What the policy wants in one target: the compiled state, kept in the plan so that apply
/// can check convergence after writing without the policy file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AwsDesired {
    /// The target.
    pub target: AwsTarget,
    /// The owned security group.
    pub security_group: SecurityGroup,
    /// The owned NACL.
    pub network_acl: Option<NetworkAcl>,
    /// Metadata options for the selected instances.
    pub metadata_options: Option<MetadataOptions>,
    /// True for `private: true` (findings depend on it).
    pub private: bool,
    /// True when the policy is being retired (`destroy`): apply removes the owned group and
    /// NACL instead of writing them.
    #[serde(default)]
    pub retired: bool,
    /// True for a group of the policy that no target declares any more (found by the
    /// ownership tag): retired, after the declared targets.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub orphaned: bool,
}

impl AwsDesired {
    /// The desired state of a compiled target.
    pub fn from_compiled(c: &AwsCompiled, private: bool) -> Self {
        Self {
            target: c.target.clone(),
            security_group: c.security_group.clone(),
            network_acl: c.network_acl.clone(),
            metadata_options: c.metadata_options.clone(),
            private,
            retired: false,
            orphaned: false,
        }
    }

    /// A group of the policy (and the NACL of its name) in a target no one declares: retired.
    pub fn orphaned(target: AwsTarget) -> Self {
        Self {
            security_group: SecurityGroup {
                group_name: target.security_group.clone(),
                vpc_id: target.vpc.clone(),
                description: String::new(),
                rules: Vec::new(),
            },
            target,
            network_acl: None,
            metadata_options: None,
            private: false,
            retired: true,
            orphaned: true,
        }
    }

    /// The same target, to be retired.
    pub fn retired(&self) -> Self {
        Self {
            retired: true,
            ..self.clone()
        }
    }
}

/// Adds the owned group to one network interface of a selected instance, keeping its other
/// groups (`ModifyNetworkInterfaceAttribute`: `ModifyInstanceAttribute` would refuse an
/// instance with several interfaces, as every busy VPC-CNI node has).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct AttachChange {
    /// `i-...`.
    pub instance_id: String,
    /// `eni-...`.
    pub interface_id: String,
    /// Its groups now; after apply: these, less `release`, plus the owned group.
    pub groups: Vec<String>,
    /// Groups of the policy that no target declares any more (a renamed target's old group),
    /// taken off in the same write: the interface swaps one for the other at once, and the
    /// orphan's retirement leaves it alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub release: Vec<String>,
}

/// AWS's default quota of security groups per network interface (adjustable to 16).
pub(crate) const GROUPS_PER_INTERFACE: usize = 5;

/// Everything perimeter will do in one AWS target.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AwsTargetPlan {
    /// The target.
    pub target: AwsTarget,
    /// What the policy wants there.
    pub desired: AwsDesired,
    /// What the plan was made against.
    pub fingerprints: Fingerprints,
    /// Tag value identifying perimeter's objects.
    pub policy: String,
    /// The security group.
    pub security_group: SecurityGroupPlan,
    /// The network ACL, when the target manages one.
    pub network_acl: Option<NaclPlan>,
    /// Writes to the group and the NACL whose every intermediate state the transition checker
    /// proved safe (apply makes them one at a time, in this plan's order).
    #[serde(default)]
    pub steps: usize,
    /// Metadata option changes.
    pub metadata: Vec<MetadataChange>,
    /// Interfaces of selected instances to which the owned group is added (`attach: true`).
    #[serde(default)]
    pub attach: Vec<AttachChange>,
    /// Compiler notes (docs/policy-reference.md, Notes).
    pub notes: Vec<Note>,
    /// Posture findings.
    pub findings: Vec<Finding>,
    /// Where the nodes' enforcement path (every group on their interfaces, their subnets'
    /// NACLs) differs from the policy after apply (exact; crate::effective).
    #[serde(default)]
    pub violations: Vec<Violation>,
    /// What `destroy` removes; then nothing else is written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retire: Option<Retirement>,
}

/// Why a target cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A group with the target's name exists but carries no ownership tag for this policy.
    #[error(
        "security group `{name}` ({group_id}) in {vpc} exists but is not owned by policy `{policy}` (no {OWNER_TAG}={policy} tag); perimeter never writes what it does not own"
    )]
    ForeignGroup {
        /// Group name.
        name: String,
        /// Its id.
        group_id: String,
        /// VPC.
        vpc: String,
        /// Policy name.
        policy: String,
    },
    /// The observed state could not be fingerprinted.
    #[error(transparent)]
    Fingerprint(#[from] FingerprintError),
    /// Retiring the owned group would leave an interface with no security group, which EC2
    /// refuses.
    #[error(
        "removing security group {group} would leave interface {interface} of {instance} without a security group (it has only that one); give it another group first, or declare a target with `attach: true` that selects it"
    )]
    LastGroup {
        /// `eni-...`.
        interface: String,
        /// `i-...`.
        instance: String,
        /// The owned group.
        group: String,
    },
    /// `destroy` has nowhere to move the owned NACL's subnets.
    #[error("VPC {vpc} has no default network ACL to move the owned NACL's subnets back to")]
    NoDefaultNacl {
        /// VPC.
        vpc: String,
    },
    /// Attaching the owned group would pass the groups-per-interface quota.
    #[error(
        "`attach: true` would give interface {interface} of {instance} {count} security groups; AWS allows {GROUPS_PER_INTERFACE} per network interface by default (the quota can be raised to 16): remove a group from it, or attach by hand after raising the quota"
    )]
    TooManyGroups {
        /// `eni-...`.
        interface: String,
        /// `i-...`.
        instance: String,
        /// Groups it would have.
        count: usize,
    },
    /// The target's `network_acl` names subnets the VPC does not have.
    #[error(
        "`network_acl.subnets` of `{group}` names {} that VPC {vpc} does not have: {}; check the ids (every subnet of a VPC is associated with some network ACL, and none is with these)",
        if subnets.len() == 1 { "a subnet" } else { "subnets" },
        subnets.join(", ")
    )]
    UnknownSubnets {
        /// Group name.
        group: String,
        /// VPC.
        vpc: String,
        /// The subnets not found.
        subnets: Vec<String>,
    },
    /// The NACL has no room for an entry the policy needs.
    #[error(
        "the network ACL of `{group}` has no room for another {direction} entry under the quota of {NACL_ENTRIES_PER_DIRECTION_PER_FAMILY} per direction and address family (with `*`), and none of its entries can go first; raise the quota or shrink the policy"
    )]
    NaclFull {
        /// Group name.
        group: String,
        /// `inbound` or `outbound`.
        direction: &'static str,
    },
    /// No order of the writes keeps every moment of the change safe.
    #[error(
        "no safe order of writes for security group `{group}` and its network ACL: {unsafe_}; nothing was planned for writing. Change the policy in two smaller edits (apply one, then the other)"
    )]
    UnsafeTransition {
        /// Group name.
        group: String,
        /// The packet and step of the first write that could not be placed.
        unsafe_: Box<Unsafe>,
    },
}

impl AwsTargetPlan {
    /// True when applying would write nothing.
    pub fn is_empty(&self) -> bool {
        self.summary().is_empty()
    }

    /// Counts for the summary line: a created group or NACL counts as one add, each rule or
    /// entry change as one, each instance's metadata change as one change.
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        if let Some(r) = &self.retire {
            s.change += r.detach.len() + r.restore.len();
            s.destroy += usize::from(r.delete_network_acl.is_some())
                + usize::from(r.delete_security_group.is_some());
            return s;
        }
        if self.security_group.group_id.is_none() {
            s.add += 1;
        }
        for c in &self.security_group.changes {
            count(&mut s, c.action);
        }
        if let Some(n) = &self.network_acl {
            if n.network_acl_id.is_none() {
                s.add += 1;
            }
            for c in &n.changes {
                count(&mut s, c.action);
            }
            s.change += n.associate.len() + n.release.len();
            s.destroy += usize::from(n.delete);
        }
        s.change += self.metadata.len() + self.attach.len();
        s
    }
}

fn count(s: &mut Summary, a: Action) {
    match a {
        Action::Create => s.add += 1,
        Action::Update => s.change += 1,
        Action::Delete => s.destroy += 1,
    }
}

/// The default egress rules AWS adds to a new group in this VPC.
pub(crate) fn default_egress_rules(vpc_has_ipv6: bool) -> Vec<SgRule> {
    let rule = |peer| SgRule {
        direction: Direction::Egress,
        ip_protocol: "-1".into(),
        from_port: -1,
        to_port: -1,
        peer,
        description: String::new(),
    };
    let mut v = vec![rule(SgPeer::CidrIpv4(Cidr::ANY_V4))];
    if vpc_has_ipv6 {
        v.push(rule(SgPeer::CidrIpv6(Cidr::ANY_V6)));
    }
    v
}

/// Plans one target.
pub(crate) fn plan(
    desired: &AwsDesired,
    notes: Vec<Note>,
    observed: &ObservedAws,
    policy: &str,
) -> Result<AwsTargetPlan, PlanError> {
    let compiled = desired;
    let private = desired.private;
    let target = &compiled.target;
    if let Some(group_id) = &observed.foreign_group {
        return Err(PlanError::ForeignGroup {
            name: target.security_group.clone(),
            group_id: group_id.clone(),
            vpc: target.vpc.clone(),
            policy: policy.into(),
        });
    }
    if !observed.unknown_subnets.is_empty() {
        return Err(PlanError::UnknownSubnets {
            group: target.security_group.clone(),
            vpc: target.vpc.clone(),
            subnets: observed.unknown_subnets.clone(),
        });
    }
    if desired.retired {
        return crate::retire::plan(desired, notes, observed, policy);
    }
    let desired_rules = &compiled.security_group.rules;
    let (observed_rules, ids): (Vec<SgRule>, HashMap<SgRuleKey, String>) =
        match &observed.security_group {
            Some(g) => (
                g.rules.iter().map(|r| r.rule.clone()).collect(),
                g.rules
                    .iter()
                    .map(|r| (SgRuleKey::of(&r.rule), r.rule_id.clone()))
                    .collect(),
            ),
            // A new group arrives with AWS's default egress rules: plan their removal now.
            None => (default_egress_rules(observed.vpc_has_ipv6), HashMap::new()),
        };
    let changes = diff(desired_rules, &observed_rules)
        .into_iter()
        .map(|c| {
            let rule_id = c
                .before
                .as_ref()
                .and_then(|b| ids.get(&SgRuleKey::of(b)).cloned());
            SgChange {
                action: c.action,
                rule_id,
                before: c.before,
                after: c.after,
            }
        })
        .collect();
    let security_group = SecurityGroupPlan {
        group_id: observed.security_group.as_ref().map(|g| g.group_id.clone()),
        group_name: target.security_group.clone(),
        vpc_id: target.vpc.clone(),
        description: compiled.security_group.description.clone(),
        changes,
    };

    let (current_entries, acl_id) = match &observed.network_acl {
        Some(n) => (n.entries.clone(), Some(n.network_acl_id.clone())),
        None => (Vec::new(), None),
    };
    let (creates, deletes) = match &compiled.network_acl {
        Some(want) => entry_diff(&want.entries, &current_entries),
        None => (Vec::new(), Vec::new()),
    };
    let associate: Vec<SubnetAssociation> = match &compiled.network_acl {
        Some(want) => observed
            .subnet_associations
            .iter()
            .filter(|a| {
                want.subnets.contains(&a.subnet_id) && Some(&a.network_acl_id) != acl_id.as_ref()
            })
            .cloned()
            .collect(),
        None => Vec::new(),
    };
    let managed = compiled.network_acl.is_some();
    let old = AwsState::new(
        observed_rules.clone(),
        current_entries.clone(),
        managed && acl_id.is_some() && associate.is_empty(),
    );
    let mut end_entries: Vec<NaclEntry> = current_entries
        .iter()
        .filter(|e| !deletes.contains(e))
        .cloned()
        .collect();
    end_entries.extend(creates.iter().cloned());
    let new = AwsState::new(desired_rules.clone(), end_entries, managed);
    let node_cidrs = target
        .network_acl
        .as_ref()
        .map(|n| n.node_cidrs.clone())
        .unwrap_or_default();
    let (nacl_changes, checked) = ordered(
        &node_cidrs,
        &old,
        &new,
        group_writes(&security_group.changes),
        creates,
        deletes,
        !associate.is_empty(),
    )
    .map_err(|e| match e {
        OrderError::Unsafe(unsafe_) => PlanError::UnsafeTransition {
            group: target.security_group.clone(),
            unsafe_: Box::new(unsafe_),
        },
        OrderError::NoRoom { egress } => PlanError::NaclFull {
            group: target.security_group.clone(),
            direction: if egress { "outbound" } else { "inbound" },
        },
    })?;
    // Subnets on the owned NACL that the target no longer names go back where they were (or to the default NACL);
    // a NACL the target no longer declares goes too.
    let wanted: &[String] = compiled
        .network_acl
        .as_ref()
        .map_or(&[], |n| n.subnets.as_slice());
    let release: Vec<SubnetAssociation> = observed
        .owned_acl_associations
        .iter()
        .filter(|a| !wanted.contains(&a.subnet_id))
        .map(|a| restored(a, observed, target))
        .collect::<Result<_, _>>()?;
    let (record_previous, unrecorded) = previous_to_record(&associate, observed);
    let orphaned = compiled.network_acl.is_none() && acl_id.is_some();
    let network_acl = (compiled.network_acl.is_some() || orphaned).then(|| NaclPlan {
        network_acl_id: acl_id,
        vpc_id: target.vpc.clone(),
        changes: nacl_changes,
        associate,
        release,
        delete: orphaned,
        record_previous,
    });

    let metadata = match &compiled.metadata_options {
        Some(want) => observed
            .instances
            .iter()
            .filter_map(|i| {
                let after = merge_metadata(&i.metadata, want);
                (after != i.metadata).then(|| MetadataChange {
                    instance_id: i.instance_id.clone(),
                    before: i.metadata.clone(),
                    after,
                })
            })
            .collect(),
        None => Vec::new(),
    };

    let attach = if target.attach {
        attach_changes(observed)?
    } else {
        Vec::new()
    };
    let (violations, path_findings) = crate::effective::check(desired, observed);
    Ok(AwsTargetPlan {
        target: target.clone(),
        desired: desired.clone(),
        fingerprints: Fingerprints::of(observed)?,
        policy: policy.into(),
        security_group,
        network_acl,
        steps: checked.steps,
        metadata,
        notes,
        attach,
        findings: {
            let mut f = findings(observed, private, target.attach);
            f.extend(no_nodes(target, observed));
            f.extend(path_findings);
            f.extend(unrecorded);
            f
        },
        violations,
        retire: None,
    })
}

/// Every interface of a selected instance that lacks the owned group, checked against the
/// groups-per-interface quota.
fn attach_changes(observed: &ObservedAws) -> Result<Vec<AttachChange>, PlanError> {
    let owned = observed
        .security_group
        .as_ref()
        .map(|g| g.group_id.as_str());
    let mut out = Vec::new();
    for i in &observed.interfaces {
        if owned.is_some_and(|g| i.groups.iter().any(|x| x == g)) {
            continue;
        }
        if i.groups.len() + 1 > GROUPS_PER_INTERFACE {
            return Err(PlanError::TooManyGroups {
                interface: i.interface_id.clone(),
                instance: i.instance_id.clone(),
                count: i.groups.len() + 1,
            });
        }
        out.push(AttachChange {
            instance_id: i.instance_id.clone(),
            interface_id: i.interface_id.clone(),
            groups: i.groups.clone(),
            release: Vec::new(),
        });
    }
    // In instance order, as the metadata changes are (interface ids are random).
    out.sort_by(|a, b| (&a.instance_id, &a.interface_id).cmp(&(&b.instance_id, &b.interface_id)));
    Ok(out)
}

/// The options an instance ends up with: perimeter's fields, the rest as they are.
fn merge_metadata(current: &MetadataOptions, want: &MetadataOptions) -> MetadataOptions {
    MetadataOptions {
        http_endpoint: want.http_endpoint.clone(),
        http_tokens: want
            .http_tokens
            .clone()
            .or_else(|| current.http_tokens.clone()),
        http_put_response_hop_limit: want
            .http_put_response_hop_limit
            .or(current.http_put_response_hop_limit),
    }
}

/// An instance selector that matches nothing: a typo in a tag, or nodes not yet launched.
/// Either way nothing about the nodes was checked, which must not read as "in sync".
fn no_nodes(target: &AwsTarget, observed: &ObservedAws) -> Option<Finding> {
    if target.instances.is_empty() || !observed.instances.is_empty() {
        return None;
    }
    let tags: Vec<String> = target
        .instances
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    Some(Finding {
        code: "no-nodes".into(),
        resource: target.vpc.clone(),
        message: format!(
            "the instance selector ({}) matches no running or stopped instance in {}: no node's metadata options, groups or enforcement path were checked; check the tags",
            tags.join(", "),
            target.vpc
        ),
    })
}

fn findings(observed: &ObservedAws, private: bool, attach: bool) -> Vec<Finding> {
    let mut out = Vec::new();
    for i in &observed.instances {
        if private && let Some(ip) = &i.public_ip {
            out.push(Finding {
                code: "public-ip".into(),
                resource: i.instance_id.clone(),
                message: format!(
                    "node {} has public IP {ip} in a private perimeter",
                    i.instance_id
                ),
            });
        }
        if !attach
            && let Some(g) = &observed.security_group
            && !i.security_groups.contains(&g.group_id)
        {
            out.push(Finding {
                code: "group-not-attached".into(),
                resource: i.instance_id.clone(),
                message: format!("node {} does not carry the owned security group {}; the perimeter does not protect it (set `attach: true` in the target to add it)", i.instance_id, g.group_id),
            });
        }
    }
    // One finding per subnet (its key), naming the nodes in it.
    for subnet in observed.internet_routed_subnets.iter().filter(|_| private) {
        let nodes: Vec<&str> = observed
            .instances
            .iter()
            .filter(|i| i.subnet_id.as_ref() == Some(subnet))
            .map(|i| i.instance_id.as_str())
            .collect();
        out.push(Finding {
            code: "internet-route".into(),
            resource: subnet.clone(),
            message: format!(
                "{} {} {} in subnet {subnet}, whose route table (its own, or the VPC's main table) sends 0.0.0.0/0 to an internet gateway",
                if nodes.len() == 1 { "node" } else { "nodes" },
                nodes.join(", "),
                if nodes.len() == 1 { "is" } else { "are" }
            ),
        });
    }
    out.sort_by(|a, b| (&a.code, &a.resource).cmp(&(&b.code, &b.resource)));
    out.dedup();
    out
}

/// An owned copy of a rule's key, to look up observed rule ids.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub(crate) struct SgRuleKey(Direction, String, i32, i32, SgPeer);

impl SgRuleKey {
    /// The key of a rule.
    pub(crate) fn of(r: &SgRule) -> Self {
        let (d, p, f, t, peer) = r.key();
        SgRuleKey(d, p.to_string(), f, t, peer.clone())
    }
}

mod fingerprints;
mod previous;

pub(crate) use fingerprints::Fingerprints;
use previous::previous_to_record;
pub(crate) use previous::restored;

#[cfg(test)]
mod tests;
