//! Where the target's NSG takes effect, planned and checked. Pure.
//!
//! * **Associations**: the owned NSG is associated with each declared subnet (a subnet PUT
//!   that changes only `networkSecurityGroup`, conditional on the subnet's etag); a subnet
//!   that carries it but is no longer declared, or every one when the policy is retired, is
//!   dissociated. A subnet that does not exist, or that carries another NSG, is a plan error:
//!   perimeter does not replace someone else's NSG.
//! * **The nodes' path**: every node NIC (the target's `nics`) is checked as the nodes
//!   experience it — the NSG of its subnet and its own, as they will be after apply — against
//!   the policy (effective::AzurePathEstate). NICs with the same path are checked once.
//! * **Posture**: an NSG associated with nothing, node NICs outside the nodes' application
//!   security group, and a `nics` selector that matches no NIC are findings.

use std::collections::BTreeMap;

use perimeter_core::plan::Finding;
use perimeter_core::target::AzureTarget;
use perimeter_core::violation::{Violation, violations};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::backend::nsg_id;
use crate::effective::{AzurePathEstate, PathLayer};
use crate::evaluate::NicIdentity;
use crate::model::SecurityRule;
use crate::plan::PlanError;
use crate::state::{ObservedAzure, ObservedNic, resource_name, subnet_id, subnet_label};

/// NIC names printed per violation or finding; the rest are counted.
const NICS_SHOWN: usize = 3;

/// One subnet write: associate the target's NSG with it, or dissociate it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct SubnetWrite {
    /// The subnet's resource id.
    pub subnet: String,
    /// True: set the NSG; false: remove it.
    pub associate: bool,
    /// The subnet's observed etag (ARM refuses the PUT if the subnet changed since).
    pub if_match: String,
    /// The subnet's `properties` to PUT: as observed, with only the NSG changed.
    pub properties: Value,
    /// Why, for people: `declared in subnets`, `no longer declared`, `policy retired`.
    pub reason: String,
}

impl SubnetWrite {
    /// `vnet/subnet`.
    pub fn label(&self) -> String {
        subnet_label(&self.subnet)
    }
}

fn with_nsg(properties: &Value, nsg: Option<&str>) -> Value {
    let mut p = properties.clone();
    if let Some(map) = p.as_object_mut() {
        map.remove("provisioningState");
        match nsg {
            Some(id) => {
                map.insert("networkSecurityGroup".into(), serde_json::json!({"id": id}));
            }
            None => {
                map.remove("networkSecurityGroup");
            }
        }
    }
    p
}

/// The subnet writes of one target (owned NSG; a shared NSG's associations are its owner's).
/// A declared subnet may move from another NSG of the same policy (one no target declares any
/// more); an orphaned NSG leaves the subnets a declared target takes over (its `subnets`) to
/// that target's plan, which runs first.
pub(crate) fn plan_subnets(
    desired: &crate::plan::AzureDesired,
    observed: &ObservedAzure,
    policy: &str,
) -> Result<Vec<SubnetWrite>, PlanError> {
    let t = &desired.target;
    let retired = desired.retired;
    if t.shared {
        return Ok(Vec::new());
    }
    let own = nsg_id(t);
    let is_own = |id: &Option<String>| id.as_ref().is_some_and(|i| i.eq_ignore_ascii_case(&own));
    let mut out = Vec::new();
    let mut declared = Vec::new();
    if !retired {
        for s in &t.subnets {
            let key = subnet_id(t, s).to_ascii_lowercase();
            declared.push(key.clone());
            let Some(Some(subnet)) = observed.subnets.get(&key) else {
                return Err(PlanError::UnknownSubnet {
                    subnet: s.clone(),
                    nsg: t.nsg.clone(),
                });
            };
            if is_own(&subnet.nsg)
                || out
                    .iter()
                    .any(|w: &SubnetWrite| w.subnet.eq_ignore_ascii_case(&subnet.id))
            {
                continue;
            }
            let mut reason = "declared in subnets".to_string();
            if let Some(other) = &subnet.nsg {
                let policys = observed
                    .other_nsgs
                    .get(&other.to_ascii_lowercase())
                    .is_some_and(|n| {
                        n.tags.get(crate::state::OWNER_TAG).map(String::as_str) == Some(policy)
                    });
                if !policys {
                    return Err(PlanError::SubnetHasOtherNsg {
                        subnet: s.clone(),
                        other: resource_name(other).to_string(),
                        nsg: t.nsg.clone(),
                    });
                }
                reason = format!(
                    "declared in subnets; moved from NSG {}, the policy's, no longer declared",
                    resource_name(other)
                );
            }
            out.push(SubnetWrite {
                subnet: subnet.id.clone(),
                associate: true,
                if_match: subnet.etag.clone(),
                properties: with_nsg(&subnet.properties, Some(&own)),
                reason,
            });
        }
    }
    // An orphaned NSG's `subnets` are the ones declared targets take over.
    let taken_over: Vec<String> = if desired.orphaned {
        t.subnets.iter().map(|s| s.to_ascii_lowercase()).collect()
    } else {
        Vec::new()
    };
    let carrying = observed.nsg.iter().flat_map(|n| &n.subnets);
    for id in carrying {
        let key = id.to_ascii_lowercase();
        if declared.contains(&key) || taken_over.contains(&key) {
            continue;
        }
        let Some(Some(subnet)) = observed.subnets.get(&key) else {
            continue;
        };
        if !is_own(&subnet.nsg) {
            continue;
        }
        out.push(SubnetWrite {
            subnet: subnet.id.clone(),
            associate: false,
            if_match: subnet.etag.clone(),
            properties: with_nsg(&subnet.properties, None),
            reason: if desired.orphaned {
                "no target of the policy declares the NSG any more".into()
            } else if retired {
                "the policy is retired".into()
            } else {
                "no longer declared in subnets".into()
            },
        });
    }
    if retired
        && let Some(nsg) = &observed.nsg
        && !nsg.nics.is_empty()
    {
        return Err(PlanError::NsgOnNics {
            nsg: t.nsg.clone(),
            nics: nsg
                .nics
                .iter()
                .map(|n| resource_name(n).to_string())
                .collect(),
        });
    }
    Ok(out)
}

fn names(nics: &[&ObservedNic]) -> String {
    let mut shown: Vec<&str> = nics
        .iter()
        .take(NICS_SHOWN)
        .map(|n| n.name.as_str())
        .collect();
    shown.sort_unstable();
    let rest = nics.len().saturating_sub(NICS_SHOWN);
    if rest > 0 {
        format!("{} and {rest} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

/// The NSGs on the path of the target, as planned.
pub(crate) struct PlannedPath<'a> {
    /// The target.
    pub(crate) target: &'a AzureTarget,
    /// What was observed.
    pub(crate) observed: &'a ObservedAzure,
    /// The target's NSG after apply (owned: the policy's rules; shared: with the others').
    pub(crate) own_rules: &'a [SecurityRule],
    /// The policy's rules.
    pub(crate) desired: &'a [SecurityRule],
    /// The planned subnet writes.
    pub(crate) writes: &'a [SubnetWrite],
}

impl PlannedPath<'_> {
    /// The NSG id on a subnet after apply.
    fn subnet_nsg(&self, subnet: &str) -> Option<String> {
        if let Some(w) = self
            .writes
            .iter()
            .find(|w| w.subnet.eq_ignore_ascii_case(subnet))
        {
            return w.associate.then(|| nsg_id(self.target));
        }
        self.observed
            .subnets
            .get(&subnet.to_ascii_lowercase())
            .and_then(|s| s.as_ref())
            .and_then(|s| s.nsg.clone())
    }

    fn layer(&self, nsg: Option<String>, at: String) -> Option<PathLayer<'_>> {
        let id = nsg?;
        if id.eq_ignore_ascii_case(&nsg_id(self.target)) {
            return Some(PathLayer {
                label: format!("NSG {} on {at}", self.target.nsg),
                nsg: self.target.nsg.clone(),
                rules: self.own_rules,
                own: true,
            });
        }
        let other = self.observed.other_nsgs.get(&id.to_ascii_lowercase())?;
        Some(PathLayer {
            label: format!("NSG {} on {at}", other.name),
            nsg: other.name.clone(),
            rules: &other.rules,
            own: false,
        })
    }

    /// Whether the NSG will be associated with anything after apply.
    fn associated(&self) -> bool {
        let Some(nsg) = &self.observed.nsg else {
            return self.writes.iter().any(|w| w.associate);
        };
        let kept = nsg.subnets.iter().any(|s| {
            !self
                .writes
                .iter()
                .any(|w| !w.associate && w.subnet.eq_ignore_ascii_case(s))
        });
        kept || !nsg.nics.is_empty() || self.writes.iter().any(|w| w.associate)
    }

    /// Violations on the nodes' path and posture findings.
    pub(crate) fn check(&self) -> (Vec<Violation>, Vec<Finding>) {
        let t = self.target;
        let mut findings = Vec::new();
        let Some(nics) = &self.observed.nics else {
            if !self.associated() {
                findings.push(Finding {
                    code: "nsg-unassociated".into(),
                    resource: t.nsg.clone(),
                    message: format!(
                        "NSG {} is associated with no subnet and no network interface, so it enforces nothing; {}",
                        t.nsg,
                        if t.shared {
                            "its owner associates it (AKS: with the node subnet or NICs)"
                        } else {
                            "declare the nodes' `subnets` in the target (and `nics` to check their path)"
                        }
                    ),
                });
            }
            return (Vec::new(), findings);
        };
        let selector = t.nics.clone().unwrap_or_default();
        if nics.is_empty() {
            findings.push(Finding {
                code: "no-nodes".into(),
                resource: t.nsg.clone(),
                message: format!(
                    "no network interface in resource group {} carries the tags {:?}: the nodes' path was not checked",
                    selector.resource_group.as_deref().unwrap_or(&t.resource_group),
                    selector.tags
                ),
            });
        }
        let node_asg = crate::compile::asg_id(t);
        let outside: Vec<&ObservedNic> = nics
            .iter()
            .filter(|n| !n.asgs.iter().any(|a| a.eq_ignore_ascii_case(&node_asg)))
            .collect();
        if !outside.is_empty() {
            findings.push(Finding {
                code: "nic-not-in-asg".into(),
                resource: t.application_security_group.clone(),
                message: format!(
                    "network interface {} is not in application security group {}: the policy's rules for `self` do not see it as a node",
                    names(&outside),
                    t.application_security_group
                ),
            });
        }
        // NICs in the same subnet with the same path and the same ASGs are decided alike:
        // checked once (the subnet names the culprit when the path lacks the policy's NSG).
        type PathKey = (Option<String>, Option<String>, Option<String>, Vec<String>);
        let mut groups: BTreeMap<PathKey, Vec<&ObservedNic>> = BTreeMap::new();
        for nic in nics {
            let subnet_nsg = nic.subnet.as_deref().and_then(|s| self.subnet_nsg(s));
            let lower = |o: &Option<String>| o.as_ref().map(|s| s.to_ascii_lowercase());
            let mut asgs: Vec<String> = nic.asgs.iter().map(|a| a.to_ascii_lowercase()).collect();
            asgs.sort();
            let key = (
                lower(&nic.subnet),
                lower(&subnet_nsg),
                lower(&nic.nsg),
                asgs,
            );
            groups.entry(key).or_default().push(nic);
        }
        let node_cidrs: Vec<perimeter_core::Cidr> = nics
            .iter()
            .flat_map(|n| &n.addrs)
            .filter_map(|a| {
                format!("{a}/{}", if a.is_ipv4() { 32 } else { 128 })
                    .parse()
                    .ok()
            })
            .collect();
        let node_addrs = if node_cidrs.is_empty() {
            perimeter_core::AddrSet::everything()
        } else {
            perimeter_core::AddrSet::from_cidrs(&node_cidrs)
        };
        let mut merged: BTreeMap<String, (Violation, Vec<&ObservedNic>)> = BTreeMap::new();
        for ((_, subnet_nsg, _, _), members) in &groups {
            let nic = members[0];
            let subnet = nic.subnet.clone().unwrap_or_default();
            let estate = AzurePathEstate {
                nsg: &t.nsg,
                desired: self.desired,
                subnet: self.layer(
                    subnet_nsg.clone(),
                    format!("subnet {}", subnet_label(&subnet)),
                ),
                nic: self.layer(nic.nsg.clone(), format!("network interface {}", nic.name)),
                subnet_label: subnet_label(&subnet),
                node_asg: &node_asg,
                identity: NicIdentity {
                    asgs: nic.asgs.clone(),
                },
                node_addrs: node_addrs.clone(),
            };
            match violations(&estate) {
                Ok(found) => {
                    for v in found {
                        let entry = merged
                            .entry(v.key.clone())
                            .or_insert_with(|| (v, Vec::new()));
                        entry.1.extend(members.iter().copied());
                    }
                }
                Err(e) => findings.push(Finding {
                    code: "effective-unchecked".into(),
                    resource: nic.name.clone(),
                    message: format!(
                        "{e}: the path of network interface {} was not checked",
                        nic.name
                    ),
                }),
            }
        }
        let out = merged
            .into_values()
            .map(|(mut v, members)| {
                let nodes = format!("for network interface {}", names(&members));
                let named = format!("network interface {}", members[0].name);
                if members.len() == 1 && v.object.ends_with(&named) {
                    // `NSG team on network interface n0` says it already.
                } else if v.object.ends_with(')') {
                    v.object.pop();
                    v.object = format!("{}; {nodes})", v.object);
                } else {
                    v.object = format!("{} ({nodes})", v.object);
                }
                v
            })
            .collect();
        (out, findings)
    }
}

#[cfg(test)]
mod tests;
