//! Desired (compiled) against observed → what apply does to one NSG. Pure.
//!
//! An owned NSG is written in one PUT carrying every rule, with `If-Match` on the observed
//! etag, so ARM itself refuses the write if anyone changed the NSG since the plan. A shared
//! NSG is written rule by rule, and priorities are unique per direction at every moment, so
//! the order matters (the trap Terraform users hit when two rules swap priorities): the plan
//! orders the PUTs so each lands on a free priority, parks a rule on a free temporary
//! priority when rules block each other in a cycle, and deletes last.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use perimeter_core::Note;
use perimeter_core::plan::{Action, Change, Finding, FingerprintError, Summary, diff, fingerprint};
use perimeter_core::target::AzureTarget;
use perimeter_core::violation::Violation;
use serde::{Deserialize, Serialize};

use crate::compile::{AzureCompiled, PRIORITY_MAX, PRIORITY_MIN, RULES_PER_NSG};
use crate::effective::AzureEstate;
use crate::model::SecurityRule;
use crate::path::SubnetWrite;
use crate::state::{OWNER_TAG, ObservedAzure, canonical, is_owned_rule};
use perimeter_core::transition::Unsafe;

/// What the policy wants in one NSG.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AzureDesired {
    /// The target.
    pub target: AzureTarget,
    /// The rules, canonical.
    pub rules: Vec<SecurityRule>,
    /// True when the policy is being retired (`destroy`): an owned NSG is deleted, a shared
    /// NSG keeps only the rules of others.
    #[serde(default)]
    pub retired: bool,
    /// True for an NSG of the policy that no target declares any more: it is removed.
    #[serde(default)]
    pub orphaned: bool,
}

impl AzureDesired {
    /// The desired state of a compiled target.
    pub fn from_compiled(c: &AzureCompiled) -> Self {
        Self {
            target: c.target.clone(),
            rules: c.rules.iter().map(canonical).collect(),
            retired: false,
            orphaned: false,
        }
    }

    /// An NSG of the policy that no target declares: removed.
    pub fn orphaned(target: AzureTarget) -> Self {
        Self {
            target,
            rules: Vec::new(),
            retired: true,
            orphaned: true,
        }
    }

    /// No rules of perimeter's: an owned NSG goes, a shared one keeps the rules of others.
    pub fn retired(&self) -> Self {
        Self {
            target: self.target.clone(),
            rules: Vec::new(),
            retired: true,
            orphaned: self.orphaned,
        }
    }
}

/// How apply writes the NSG.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum NsgWrite {
    /// Nothing to write.
    None,
    /// Delete the owned NSG (`destroy`), on the condition that it is as observed.
    Delete {
        /// Observed etag.
        if_match: String,
    },
    /// One PUT of the whole NSG (owned mode); `if_match` is the observed etag, absent when the
    /// NSG is created (then `If-None-Match: *`).
    Put {
        /// Observed etag.
        if_match: Option<String>,
        /// Region of the NSG.
        location: String,
        /// The NSG's tags after the PUT: the observed ones (cost centres, Azure Policy's) and
        /// perimeter's ownership tag.
        #[serde(default)]
        tags: BTreeMap<String, String>,
    },
    /// Rule-by-rule writes in this order (shared mode).
    Steps {
        /// The writes.
        steps: Vec<RuleStep>,
    },
}

/// One write of a shared-mode plan.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "op")]
pub enum RuleStep {
    /// PUT the rule (create or replace).
    Put {
        /// The rule as written by this step (a temporary priority when `parked`).
        rule: Box<SecurityRule>,
        /// True when the rule only moves out of the way to a temporary priority.
        parked: bool,
    },
    /// DELETE the rule.
    Delete {
        /// Rule name.
        name: String,
    },
}

/// Everything perimeter will do in one NSG.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AzureTargetPlan {
    /// The target.
    pub target: AzureTarget,
    /// What the policy wants there.
    pub desired: AzureDesired,
    /// Fingerprint of what the plan was made against (the NSG's owned part, or all of it).
    pub fingerprint: String,
    /// Policy name.
    pub policy: String,
    /// Rule changes, for people and drift.
    pub changes: Vec<Change<SecurityRule>>,
    /// True when apply creates the NSG.
    pub create_nsg: bool,
    /// How apply writes.
    pub write: NsgWrite,
    /// Rules of a shared NSG that perimeter leaves alone.
    pub foreign_rules: Vec<String>,
    /// Subnet associations to write: after the NSG's own write, or before its deletion.
    #[serde(default)]
    pub subnet_writes: Vec<SubnetWrite>,
    /// Where the nodes' perimeter differs from the policy (exact): foreign rules in a shared
    /// NSG, other NSGs on the nodes' path, or a path without the policy's NSG.
    #[serde(default)]
    pub violations: Vec<Violation>,
    /// Compiler notes, in their JSON form.
    pub notes: Vec<Note>,
    /// Posture findings.
    pub findings: Vec<Finding>,
}

impl AzureTargetPlan {
    /// Counts for the summary line (a created NSG counts as one add).
    pub fn summary(&self) -> Summary {
        let mut s = Summary::of(&self.changes);
        if self.create_nsg {
            s.add += 1;
        }
        if matches!(self.write, NsgWrite::Delete { .. }) {
            s.destroy += 1;
        }
        for w in &self.subnet_writes {
            if w.associate {
                s.add += 1;
            } else {
                s.destroy += 1;
            }
        }
        s
    }

    /// True when applying would write nothing.
    pub fn is_empty(&self) -> bool {
        self.summary().is_empty()
    }
}

/// Why an NSG cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The observed state could not be fingerprinted.
    #[error(transparent)]
    Fingerprint(#[from] FingerprintError),
    /// An NSG with the name exists without perimeter's tag and the target does not say shared.
    #[error(
        "network security group `{nsg}` in resource group `{group}` exists but is not owned by policy `{policy}` (no {OWNER_TAG}={policy} tag); perimeter never adopts what it does not own. If the NSG belongs to AKS or another team, set `shared: true` in the target and perimeter will manage only its own rules in it"
    )]
    ForeignNsg {
        /// NSG name.
        nsg: String,
        /// Resource group.
        group: String,
        /// Policy name.
        policy: String,
    },
    /// A shared NSG must exist: perimeter does not create what someone else manages.
    #[error(
        "network security group `{nsg}` in resource group `{group}` does not exist; with `shared: true` perimeter only adds rules to an NSG someone else created"
    )]
    SharedNsgMissing {
        /// NSG name.
        nsg: String,
        /// Resource group.
        group: String,
    },
    /// An owned NSG must be created and the target has no location.
    #[error(
        "network security group `{nsg}` does not exist and the target has no `location` to create it in"
    )]
    NoLocation {
        /// NSG name.
        nsg: String,
    },
    /// The application security group that means `self` does not exist.
    #[error(
        "application security group `{asg}` in resource group `{group}` does not exist; create it and put the nodes' network interfaces in it (it is what `self` means on Azure)"
    )]
    AsgMissing {
        /// ASG name.
        asg: String,
        /// Resource group.
        group: String,
    },
    /// A foreign rule holds a priority the policy needs.
    #[error(
        "priority {priority} {direction} in NSG `{nsg}` is taken by rule `{holder}`, which perimeter does not own; the policy's rule `{wanted}` needs it. Move the other rule, or set the target's priorities elsewhere"
    )]
    PriorityTaken {
        /// NSG name.
        nsg: String,
        /// Priority.
        priority: u16,
        /// `Inbound` or `Outbound`.
        direction: String,
        /// The foreign rule.
        holder: String,
        /// The policy's rule.
        wanted: String,
    },
    /// A foreign rule has a name the policy wants.
    #[error(
        "rule `{name}` in NSG `{nsg}` has the name the policy wants but not its `perimeter:{policy}` description marker; perimeter will not overwrite it"
    )]
    NameTaken {
        /// NSG name.
        nsg: String,
        /// Rule name.
        name: String,
        /// Policy name.
        policy: String,
    },
    /// Too many rules in the NSG.
    #[error("NSG `{nsg}` would hold {count} rules; Azure allows {RULES_PER_NSG} per NSG")]
    TooManyRules {
        /// NSG name.
        nsg: String,
        /// Rules after apply.
        count: usize,
    },
    /// No free priority to move a rule out of the way.
    #[error(
        "NSG `{nsg}` has no free {direction} priority between {PRIORITY_MIN} and {PRIORITY_MAX} to reorder rules in"
    )]
    PrioritiesExhausted {
        /// NSG name.
        nsg: String,
        /// `Inbound` or `Outbound`.
        direction: String,
    },
    /// A declared subnet does not exist.
    #[error(
        "subnet `{subnet}` named in `subnets` of the target for NSG `{nsg}` does not exist; check the VNet and subnet names (or give the subnet's resource id)"
    )]
    UnknownSubnet {
        /// As declared.
        subnet: String,
        /// The target's NSG.
        nsg: String,
    },
    /// A declared subnet carries another NSG.
    #[error(
        "subnet `{subnet}` already has NSG `{other}`; a subnet has one NSG and perimeter does not replace someone else's. Remove that association first, or manage NSG `{other}` with `shared: true` instead of `{nsg}`"
    )]
    SubnetHasOtherNsg {
        /// As declared.
        subnet: String,
        /// The NSG it has.
        other: String,
        /// The target's NSG.
        nsg: String,
    },
    /// The NSG to delete is on network interfaces (perimeter never puts it there).
    #[error(
        "NSG `{nsg}` is on network interface(s) {nics:?}, which perimeter did not associate it with; remove it from them before destroying the policy"
    )]
    NsgOnNics {
        /// The target's NSG.
        nsg: String,
        /// NIC names.
        nics: Vec<String>,
    },
    /// No order of rule writes keeps every moment of the change safe.
    #[error(
        "no safe order of rule writes for NSG `{nsg}`: {unsafe_}; nothing was planned for writing. Change the policy in two smaller edits (apply one, then the other)"
    )]
    UnsafeTransition {
        /// NSG name.
        nsg: String,
        /// The packet and step of the first write that could not be placed.
        unsafe_: Box<Unsafe>,
    },
}

/// What apply compares before writing: the owned rules (shared) or the whole NSG (owned).
pub(crate) fn observed_fingerprint(
    observed: &ObservedAzure,
    target: &AzureTarget,
    policy: &str,
) -> Result<String, FingerprintError> {
    let nsg = nsg_fingerprint(observed, target, policy)?;
    if observed.subnets.is_empty() {
        return Ok(nsg);
    }
    // The subnets' NSGs and etags decide the association writes.
    let subnets: Vec<_> = observed
        .subnets
        .iter()
        .map(|(k, s)| (k, s.as_ref().map(|s| (s.etag.as_str(), &s.nsg))))
        .collect();
    fingerprint(&(nsg, subnets))
}

fn nsg_fingerprint(
    observed: &ObservedAzure,
    target: &AzureTarget,
    policy: &str,
) -> Result<String, FingerprintError> {
    match &observed.nsg {
        None => fingerprint(&("absent", observed.asg_exists)),
        Some(nsg) if target.shared => {
            let owned: Vec<&SecurityRule> = nsg
                .rules
                .iter()
                .filter(|r| is_owned_rule(policy, r))
                .collect();
            // Foreign rules' priorities matter to the write order; their contents do not.
            let taken: Vec<(u16, &str, &str)> = nsg
                .rules
                .iter()
                .filter(|r| !is_owned_rule(policy, r))
                .map(|r| {
                    (
                        r.properties.priority,
                        r.properties.direction.as_str(),
                        r.name.as_str(),
                    )
                })
                .collect();
            fingerprint(&(owned, taken, observed.asg_exists))
        }
        Some(nsg) => fingerprint(&(&nsg.etag, &nsg.rules, &nsg.tags, observed.asg_exists)),
    }
}

/// Plans one target: its NSG, its subnet associations, and the check of the nodes' path.
pub(crate) fn plan(
    desired: &AzureDesired,
    notes: Vec<Note>,
    observed: &ObservedAzure,
    policy: &str,
) -> Result<AzureTargetPlan, PlanError> {
    let t = &desired.target;
    let mut plan = plan_nsg(desired, notes, observed, policy)?;
    plan.subnet_writes = crate::path::plan_subnets(desired, observed, policy)?;
    if desired.retired {
        return Ok(plan);
    }
    let foreign: Vec<SecurityRule> = match &observed.nsg {
        Some(nsg) if t.shared => nsg
            .rules
            .iter()
            .filter(|r| !is_owned_rule(policy, r))
            .cloned()
            .collect(),
        _ => Vec::new(),
    };
    let node_asg = crate::compile::asg_id(t);
    if t.shared && t.nics.is_none() {
        // Without the nodes' NICs, the shared NSG is taken to be on their path.
        let estate = AzureEstate::new(&t.nsg, &desired.rules, &foreign, &node_asg);
        match perimeter_core::violation::violations(&estate) {
            Ok(v) => plan.violations = v,
            Err(e) => plan.findings.push(Finding {
                code: "effective-unchecked".into(),
                resource: t.nsg.clone(),
                message: format!(
                    "{e}: the NSG's foreign rules were not checked against the policy"
                ),
            }),
        }
    }
    let own_rules: Vec<SecurityRule> = foreign.iter().chain(&desired.rules).cloned().collect();
    let path = crate::path::PlannedPath {
        target: t,
        observed,
        own_rules: &own_rules,
        desired: &desired.rules,
        writes: &plan.subnet_writes,
    };
    let (violations, findings) = path.check();
    if t.nics.is_some() {
        plan.violations = violations;
    }
    plan.findings.extend(findings);
    Ok(plan)
}

/// Plans the NSG's own write.
fn plan_nsg(
    desired: &AzureDesired,
    notes: Vec<Note>,
    observed: &ObservedAzure,
    policy: &str,
) -> Result<AzureTargetPlan, PlanError> {
    let t = &desired.target;
    let uses_asg = desired.rules.iter().any(|r| {
        !r.properties.source_application_security_groups.is_empty()
            || !r
                .properties
                .destination_application_security_groups
                .is_empty()
    });
    if uses_asg && !observed.asg_exists && !desired.retired {
        return Err(PlanError::AsgMissing {
            asg: t.application_security_group.clone(),
            group: t.resource_group.clone(),
        });
    }
    let fp = observed_fingerprint(observed, t, policy)?;
    let base = |changes, create_nsg, write, foreign_rules| AzureTargetPlan {
        target: t.clone(),
        desired: desired.clone(),
        fingerprint: fp.clone(),
        policy: policy.into(),
        changes,
        create_nsg,
        write,
        foreign_rules,
        subnet_writes: Vec::new(),
        violations: Vec::new(),
        notes: notes.clone(),
        findings: Vec::new(),
    };
    if t.shared {
        let Some(nsg) = &observed.nsg else {
            return Err(PlanError::SharedNsgMissing {
                nsg: t.nsg.clone(),
                group: t.resource_group.clone(),
            });
        };
        let (owned, foreign): (Vec<SecurityRule>, Vec<SecurityRule>) = nsg
            .rules
            .iter()
            .cloned()
            .partition(|r| is_owned_rule(policy, r));
        let wanted: HashSet<&str> = desired.rules.iter().map(|r| r.name.as_str()).collect();
        if let Some(f) = foreign
            .iter()
            .find(|f| wanted.iter().any(|w| w.eq_ignore_ascii_case(&f.name)))
        {
            return Err(PlanError::NameTaken {
                nsg: t.nsg.clone(),
                name: f.name.clone(),
                policy: policy.into(),
            });
        }
        let changes = diff(&desired.rules, &owned);
        // Deletes run last, so the peak is everything there now plus the creates (never less
        // than the end state).
        let creates = changes
            .iter()
            .filter(|c| c.action == Action::Create)
            .count();
        let count = foreign.len() + owned.len() + creates;
        if count > RULES_PER_NSG {
            return Err(PlanError::TooManyRules {
                nsg: t.nsg.clone(),
                count,
            });
        }
        let steps = order_steps(t, &changes, &nsg.rules, &foreign, &desired.rules)?;
        let write = if steps.is_empty() {
            NsgWrite::None
        } else {
            NsgWrite::Steps { steps }
        };
        let foreign_names = foreign.iter().map(|r| r.name.clone()).collect();
        return Ok(base(changes, false, write, foreign_names));
    }
    if desired.rules.len() > RULES_PER_NSG {
        return Err(PlanError::TooManyRules {
            nsg: t.nsg.clone(),
            count: desired.rules.len(),
        });
    }
    match &observed.nsg {
        Some(nsg) => {
            if nsg.tags.get(OWNER_TAG).map(String::as_str) != Some(policy) {
                return Err(PlanError::ForeignNsg {
                    nsg: t.nsg.clone(),
                    group: t.resource_group.clone(),
                    policy: policy.into(),
                });
            }
            let changes = diff(&desired.rules, &nsg.rules);
            if desired.retired {
                let write = NsgWrite::Delete {
                    if_match: nsg.etag.clone(),
                };
                return Ok(base(changes, false, write, Vec::new()));
            }
            let write = if changes.is_empty() {
                NsgWrite::None
            } else {
                NsgWrite::Put {
                    if_match: Some(nsg.etag.clone()),
                    location: nsg.location.clone(),
                    tags: nsg.tags.clone(),
                }
            };
            Ok(base(changes, false, write, Vec::new()))
        }
        None if desired.retired => Ok(base(Vec::new(), false, NsgWrite::None, Vec::new())),
        None => {
            let Some(location) = t.location.clone() else {
                return Err(PlanError::NoLocation { nsg: t.nsg.clone() });
            };
            let changes = diff(&desired.rules, &[]);
            Ok(base(
                changes,
                true,
                NsgWrite::Put {
                    if_match: None,
                    location,
                    tags: BTreeMap::from([(OWNER_TAG.to_string(), policy.to_string())]),
                },
                Vec::new(),
            ))
        }
    }
}

/// Two targets on one NSG would be planned against the same state and overwrite each other.
pub(crate) fn check_one_target_per_nsg<'a>(
    targets: impl IntoIterator<Item = &'a AzureTarget>,
) -> Result<(), String> {
    let mut seen = BTreeSet::new();
    for t in targets {
        let key = format!("{}/{}/{}", t.subscription, t.resource_group, t.nsg).to_ascii_lowercase();
        if !seen.insert(key) {
            return Err(format!(
                "the policy has two Azure targets on NSG `{}` in resource group `{}`; one policy manages an NSG through one target",
                t.nsg, t.resource_group
            ));
        }
    }
    Ok(())
}

mod order;
use order::order_steps;

#[cfg(test)]
mod tests;
