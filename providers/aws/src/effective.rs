//! The nodes' effective perimeter in one AWS target (core::violation): every interface of the
//! selected instances passes the union of its security groups, then its subnet's network ACL.
//!
//! - **The policy** is what perimeter plans: the owned group, and the owned NACL for the
//!   subnets it is associated with.
//! - **The path** is what an interface has after apply: the owned group (if the interface
//!   carries it, or will: `attach: true` adds it to every interface), every other group on it,
//!   and the NACL of its
//!   subnet (the owned one where perimeter associates it, the observed one elsewhere).
//!
//! Why the regions suffice: a packet the path allows and the policy denies is allowed by some
//! group rule on the path — an owned rule (whose box is a region) or another group's (whose
//! boxes are regions). A packet the policy allows and the path denies is allowed by an owned
//! rule, so it lies in an owned rule's box.
//!
//! Interfaces with the same groups, the same owned-group state and the same NACL are one
//! class: the estate is evaluated once per class.

use std::collections::{BTreeMap, BTreeSet};

use perimeter_core::plan::Finding;
use perimeter_core::transition::MatchBox;
use perimeter_core::violation::{Culprit, Estate, Violation, violations};
use perimeter_core::{AddrSet, Cidr, Direction, Packet, Verdict};

use crate::drift::peer_key;
use crate::evaluate::{AwsWorld, OtherGroup, allowing_rule, decide, nacl_denial};
use crate::model::{NetworkAcl, SecurityGroup, SgPeer};
use crate::plan::AwsDesired;
use crate::render_plan::{nacl_line, rule_line};
use crate::state::{ObservedAws, ObservedInterface};
use crate::transition::{UNFILTERED, entry_boxes, rule_box};

/// One class of interfaces.
struct AwsEstate<'a> {
    /// The owned group as planned.
    desired_group: &'a SecurityGroup,
    /// The owned NACL as planned, when this class's subnet is associated with it.
    desired_acl: Option<&'a NetworkAcl>,
    /// The owned group if the interfaces carry it after apply, else an empty group.
    path_group: SecurityGroup,
    /// The other groups on the interfaces.
    others: Vec<OtherGroup>,
    /// Groups every node carries.
    node_groups: &'a [String],
    /// The NACL on the path and how people name it.
    path_acl: Option<(NetworkAcl, String)>,
    /// An interface of the class, for culprits.
    interface: &'a ObservedInterface,
    /// The owned group's id, for culprits.
    owned_id: Option<&'a str>,
    /// Where node peers can be: the nodes' subnets, else the target's node CIDRs.
    node_cidrs: &'a [Cidr],
}

impl AwsEstate<'_> {
    fn policy_world(&self) -> AwsWorld<'_> {
        AwsWorld {
            security_group: self.desired_group,
            other_groups: &[],
            node_groups: &[],
            network_acl: self.desired_acl,
            metadata_options: None,
        }
    }

    fn path_world(&self) -> AwsWorld<'_> {
        AwsWorld {
            security_group: &self.path_group,
            other_groups: &self.others,
            node_groups: self.node_groups,
            network_acl: self.path_acl.as_ref().map(|(a, _)| a),
            metadata_options: None,
        }
    }
}

/// A rule of another group, its reference to itself named by the group's id (`OwnGroup` there
/// means that group's members, not perimeter's).
fn other_rule_line(group: &str, r: &crate::model::SgRule) -> String {
    let mut r = r.clone();
    if r.peer == SgPeer::OwnGroup {
        r.peer = SgPeer::ReferencedGroup(group.to_string());
    }
    rule_line(&r)
}

fn rule_key(group: &str, r: &crate::model::SgRule) -> String {
    format!(
        "{group}/{}/{}/{}/{}/{}",
        r.direction.as_str(),
        r.ip_protocol,
        r.from_port,
        r.to_port,
        peer_key(&r.peer)
    )
}

impl Estate for AwsEstate<'_> {
    fn policy(&self, packet: &Packet) -> Verdict {
        decide(&self.policy_world(), packet)
    }

    fn effective(&self, packet: &Packet) -> Verdict {
        decide(&self.path_world(), packet)
    }

    fn culprit(&self, packet: &Packet) -> Culprit {
        let world = self.path_world();
        if decide(&world, packet) == Verdict::Allow {
            if let Some((g, r)) = allowing_rule(&world, packet) {
                return Culprit {
                    object: format!("{} ({})", g.group_id, g.group_name),
                    rule: format!("allows {}", other_rule_line(&g.group_id, r)),
                    key: rule_key(&g.group_id, r),
                };
            }
        } else if let Some((acl, name)) = &self.path_acl
            && let Some((entry, reply)) = nacl_denial(acl, packet)
        {
            let reply = if reply { " (the reply)" } else { "" };
            return match entry {
                Some(e) => Culprit {
                    object: name.clone(),
                    rule: format!("denies{reply} by entry {}", nacl_line(e)),
                    key: format!(
                        "{name}/{}/{}",
                        if e.egress { "egress" } else { "ingress" },
                        e.rule_number
                    ),
                },
                None => Culprit {
                    object: name.clone(),
                    rule: format!("denies{reply}: no entry allows it (the * deny)"),
                    key: format!("{name}/default-deny"),
                },
            };
        } else if self.path_group.rules.is_empty() {
            return Culprit {
                object: format!("interface {}", self.interface.interface_id),
                rule: format!(
                    "does not carry the owned group {}",
                    self.owned_id.unwrap_or("(not created yet)")
                ),
                key: format!("{}/no-owned-group", self.interface.interface_id),
            };
        }
        Culprit {
            object: format!("interface {}", self.interface.interface_id),
            rule: "decides otherwise".into(),
            key: format!("{}/other", self.interface.interface_id),
        }
    }

    fn boxes(&self) -> Vec<MatchBox> {
        // The group rules (the regions), the NACL entries, and the unfiltered services.
        let mut out = self.regions();
        for acl in self
            .desired_acl
            .into_iter()
            .chain(self.path_acl.as_ref().map(|(a, _)| a))
        {
            out.extend(acl.entries.iter().flat_map(entry_boxes));
        }
        for d in Direction::BOTH {
            out.push(MatchBox::any_port(d, None, self.unfiltered(), false));
        }
        out
    }

    fn regions(&self) -> Vec<MatchBox> {
        self.desired_group
            .rules
            .iter()
            .chain(self.others.iter().flat_map(|g| g.rules.iter()))
            .filter_map(rule_box)
            .collect()
    }

    fn node_addrs(&self) -> AddrSet {
        if self.node_cidrs.is_empty() {
            AddrSet::everything()
        } else {
            AddrSet::from_cidrs(self.node_cidrs)
        }
    }

    fn unfiltered(&self) -> AddrSet {
        let services: Vec<Cidr> = UNFILTERED.iter().filter_map(|c| c.parse().ok()).collect();
        AddrSet::from_cidrs(&services)
    }
}

/// Where the nodes' enforcement path differs from the policy, and what could not be checked.
pub(crate) fn check(
    desired: &AwsDesired,
    observed: &ObservedAws,
) -> (Vec<Violation>, Vec<Finding>) {
    let target = &desired.target;
    let owned_id = observed
        .security_group
        .as_ref()
        .map(|g| g.group_id.as_str());
    let others: BTreeMap<&str, OtherGroup> = observed
        .other_groups
        .iter()
        .map(|g| {
            (
                g.group_id.as_str(),
                OtherGroup {
                    group_id: g.group_id.clone(),
                    group_name: g.group_name.clone(),
                    rules: g.rules.clone(),
                },
            )
        })
        .collect();
    let not_owned = |g: &&String| Some(g.as_str()) != owned_id;
    // Groups every node interface carries after apply (a reference to one matches the nodes).
    let mut node_groups: Option<BTreeSet<&String>> = None;
    let owned_string = observed.security_group.as_ref().map(|g| &g.group_id);
    for i in &observed.interfaces {
        let mut here: BTreeSet<&String> = i.groups.iter().collect();
        if target.attach {
            here.extend(owned_string);
        }
        node_groups = Some(match node_groups {
            None => here,
            Some(all) => all.intersection(&here).copied().collect(),
        });
    }
    let node_groups: Vec<String> = node_groups
        .unwrap_or_default()
        .into_iter()
        .cloned()
        .collect();
    let nacl_subnets: &[String] = target
        .network_acl
        .as_ref()
        .map_or(&[], |n| n.subnets.as_slice());
    let node_cidrs: &[Cidr] = if observed.node_subnet_cidrs.is_empty() {
        target
            .network_acl
            .as_ref()
            .map_or(&[], |n| n.node_cidrs.as_slice())
    } else {
        &observed.node_subnet_cidrs
    };

    let mut found: BTreeMap<String, Violation> = BTreeMap::new();
    let mut findings = Vec::new();
    let mut classes: BTreeSet<(Vec<&String>, bool, &str)> = BTreeSet::new();
    for i in &observed.interfaces {
        // `attach: true` adds the owned group to every interface of the selected instances.
        let carries = i.groups.iter().any(|g| Some(g.as_str()) == owned_id) || target.attach;
        let other_ids: Vec<&String> = i.groups.iter().filter(not_owned).collect();
        if !classes.insert((other_ids.clone(), carries, i.subnet_id.as_str())) {
            continue;
        }
        let covered = nacl_subnets.contains(&i.subnet_id);
        let desired_acl = desired.network_acl.as_ref().filter(|_| covered);
        let path_acl = if let Some(acl) = desired_acl {
            Some((acl.clone(), "the owned network ACL".to_string()))
        } else {
            observed
                .subnet_acls
                .iter()
                .find(|a| a.subnet_id == i.subnet_id)
                .map(|a| {
                    let name = if a.is_default {
                        format!(
                            "{} (the VPC's default NACL, on {})",
                            a.network_acl_id, a.subnet_id
                        )
                    } else {
                        format!("{} (on {})", a.network_acl_id, a.subnet_id)
                    };
                    let acl = NetworkAcl {
                        vpc_id: target.vpc.clone(),
                        subnets: vec![a.subnet_id.clone()],
                        entries: a.entries.clone(),
                    };
                    (acl, name)
                })
        };
        let estate = AwsEstate {
            desired_group: &desired.security_group,
            desired_acl,
            path_group: if carries {
                desired.security_group.clone()
            } else {
                SecurityGroup {
                    rules: Vec::new(),
                    ..desired.security_group.clone()
                }
            },
            others: other_ids
                .iter()
                .filter_map(|id| others.get(id.as_str()).cloned())
                .collect(),
            node_groups: &node_groups,
            path_acl,
            interface: i,
            owned_id,
            node_cidrs,
        };
        match violations(&estate) {
            Ok(v) => {
                for v in v {
                    found.entry(v.key.clone()).or_insert(v);
                }
            }
            Err(e) => findings.push(Finding {
                code: "effective-unchecked".into(),
                resource: i.interface_id.clone(),
                message: format!(
                    "{e}: interface {} was not checked against the policy",
                    i.interface_id
                ),
            }),
        }
    }
    findings.extend(unresolved(observed, &node_groups, owned_id));
    (found.into_values().collect(), findings)
}

/// Rules of other groups whose peers perimeter cannot place: members of a group the nodes do
/// not all carry, and prefix lists. They are not checked, and said so.
fn unresolved(observed: &ObservedAws, node_groups: &[String], owned: Option<&str>) -> Vec<Finding> {
    let mut out = Vec::new();
    for g in &observed.other_groups {
        for r in &g.rules {
            let what = match &r.peer {
                SgPeer::ReferencedGroup(id)
                    if Some(id.as_str()) != owned && !node_groups.contains(id) =>
                {
                    format!("members of {id}")
                }
                SgPeer::PrefixList(id) => format!("prefix list {id}"),
                _ => continue,
            };
            out.push(Finding {
                code: "unresolved-peer".into(),
                resource: g.group_id.clone(),
                message: format!(
                    "{} ({}) allows {}: perimeter does not resolve {what} to addresses, so this rule is not checked against the policy",
                    g.group_id,
                    g.group_name,
                    other_rule_line(&g.group_id, r)
                ),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests;
