//! Retiring a policy on AWS (`destroy`, or a target no longer declared): take the owned group
//! off every interface that carries it, move the owned NACL's subnets back to the NACL they
//! were on (recorded on the owned NACL) or the VPC's default, then delete the NACL and the
//! group. Instance metadata options are left as they are (they are the
//! instances', not perimeter's objects).
//!
//! The order is the one EC2 needs: a group still on an interface, or a NACL still associated,
//! cannot be deleted (`DependencyViolation`, `InvalidNetworkAclID.InUse`).

use std::collections::{BTreeMap, BTreeSet};

use perimeter_core::Note;
use serde::{Deserialize, Serialize};

use crate::backend::{AwsBackend, AwsError, api_err};
use crate::plan::{
    AttachChange, AwsDesired, AwsTargetPlan, Fingerprints, PlanError, SecurityGroupPlan, restored,
};
use crate::state::{ObservedAws, ObservedInterface, SubnetAssociation};

/// What apply removes, in this order.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Retirement {
    /// Interfaces that lose the owned group; `groups` are their groups after.
    pub detach: Vec<AttachChange>,
    /// The owned NACL's subnets, each moved to `network_acl_id`: the NACL it was on before
    /// perimeter moved it, if recorded and still there, else the VPC's default.
    pub restore: Vec<SubnetAssociation>,
    /// The owned NACL, deleted after its subnets moved.
    pub delete_network_acl: Option<String>,
    /// The owned group, deleted last.
    pub delete_security_group: Option<String>,
}

impl Retirement {
    /// Whether every write of this retirement still does what the plan says: each interface
    /// it detaches has exactly its planned groups plus `group`, and each subnet it restores
    /// is still on the owned NACL by the same association.
    pub(crate) fn holds(&self, group: Option<&str>, o: &ObservedAws) -> bool {
        let interfaces_hold = self.detach.iter().all(|d| {
            o.interfaces
                .iter()
                .chain(&o.owned_group_interfaces)
                .find(|i| i.interface_id == d.interface_id)
                .is_some_and(|i| {
                    let mut want = d.groups.clone();
                    want.extend(group.map(str::to_string));
                    want.sort();
                    i.groups == want
                })
        });
        let subnets_hold = self.restore.iter().all(|a| {
            o.owned_acl_associations
                .iter()
                .any(|b| b.subnet_id == a.subnet_id && b.association_id == a.association_id)
        });
        interfaces_hold && subnets_hold
    }

    /// True when nothing of the policy is left.
    pub fn is_empty(&self) -> bool {
        self.detach.is_empty()
            && self.restore.is_empty()
            && self.delete_network_acl.is_none()
            && self.delete_security_group.is_none()
    }
}

/// EC2 needs a group on every interface.
pub(crate) fn last_group(i: &ObservedInterface, group: &str) -> PlanError {
    PlanError::LastGroup {
        interface: i.interface_id.clone(),
        instance: i.instance_id.clone(),
        group: group.to_string(),
    }
}

/// Plans the removal of everything the target owns.
pub(crate) fn plan(
    desired: &AwsDesired,
    notes: Vec<Note>,
    observed: &ObservedAws,
    policy: &str,
) -> Result<AwsTargetPlan, PlanError> {
    let target = &desired.target;
    let owned = observed.security_group.as_ref().map(|g| g.group_id.clone());
    let mut detach = Vec::new();
    if let Some(id) = &owned {
        // Every interface carrying the group, selected or not (EC2 refuses to delete a group
        // still on one).
        let mut carrying: Vec<&ObservedInterface> = observed
            .interfaces
            .iter()
            .chain(&observed.owned_group_interfaces)
            .filter(|i| i.groups.contains(id))
            .collect();
        carrying.sort_by(|a, b| {
            (&a.instance_id, &a.interface_id).cmp(&(&b.instance_id, &b.interface_id))
        });
        carrying.dedup_by(|a, b| a.interface_id == b.interface_id);
        for i in carrying {
            let groups: Vec<String> = i.groups.iter().filter(|g| *g != id).cloned().collect();
            // An orphan's interface may get a declared group in the same apply (checked
            // across targets by `settle`); a destroyed target's may not.
            if groups.is_empty() && !desired.orphaned {
                return Err(last_group(i, id));
            }
            detach.push(AttachChange {
                instance_id: i.instance_id.clone(),
                interface_id: i.interface_id.clone(),
                groups,
                release: Vec::new(),
            });
        }
    }
    let mut restore = Vec::new();
    if observed.network_acl.is_some() {
        restore = observed
            .owned_acl_associations
            .iter()
            .map(|a| restored(a, observed, target))
            .collect::<Result<_, _>>()?;
    }
    let retire = Retirement {
        detach,
        restore,
        delete_network_acl: observed
            .network_acl
            .as_ref()
            .map(|a| a.network_acl_id.clone()),
        delete_security_group: owned.clone(),
    };
    let g = &desired.security_group;
    Ok(AwsTargetPlan {
        target: target.clone(),
        desired: desired.clone(),
        fingerprints: Fingerprints::for_desired(desired, observed)?,
        policy: policy.into(),
        security_group: SecurityGroupPlan {
            group_id: owned,
            group_name: g.group_name.clone(),
            vpc_id: g.vpc_id.clone(),
            description: g.description.clone(),
            changes: Vec::new(),
        },
        network_acl: None,
        steps: 0,
        metadata: Vec::new(),
        attach: Vec::new(),
        notes,
        findings: Vec::new(),
        violations: Vec::new(),
        retire: Some(retire),
    })
}

/// Fits orphans' retirements to the declared targets' attachments. An interface that a
/// declared target attaches to and that carries an orphaned group swaps the orphan out in
/// the same write (`release`); the orphan's retirement then leaves that interface alone.
/// What is left of an orphan's retirement must keep a group on every interface.
pub(crate) fn settle(plans: &mut [AwsTargetPlan]) -> Result<(), PlanError> {
    let orphans: Vec<(String, String)> = plans
        .iter()
        .filter(|p| p.desired.orphaned)
        .filter_map(|p| {
            let id = p.retire.as_ref()?.delete_security_group.clone()?;
            Some((p.target.vpc.clone(), id))
        })
        .collect();
    let mut swapped: BTreeSet<(String, String)> = BTreeSet::new();
    for p in plans.iter_mut().filter(|p| !p.desired.orphaned) {
        for a in &mut p.attach {
            for (vpc, id) in &orphans {
                if *vpc == p.target.vpc && a.groups.contains(id) && !a.release.contains(id) {
                    a.release.push(id.clone());
                    swapped.insert((a.interface_id.clone(), id.clone()));
                }
            }
            a.release.sort();
        }
    }
    // A subnet that a declared target moves off an orphan's NACL is the declared target's:
    // it records where the orphan would have put it back, and the orphan leaves it alone.
    let orphan_restores: BTreeMap<(String, String), String> = plans
        .iter()
        .filter(|p| p.desired.orphaned)
        .filter_map(|p| p.retire.as_ref())
        .flat_map(|r| {
            let acl = r.delete_network_acl.clone().unwrap_or_default();
            r.restore
                .iter()
                .map(move |a| ((acl.clone(), a.subnet_id.clone()), a.network_acl_id.clone()))
        })
        .collect();
    let mut taken: BTreeSet<String> = BTreeSet::new();
    for p in plans.iter_mut().filter(|p| !p.desired.orphaned) {
        let Some(n) = p.network_acl.as_mut() else {
            continue;
        };
        for a in &n.associate {
            let key = (a.network_acl_id.clone(), a.subnet_id.clone());
            if let Some(back) = orphan_restores.get(&key) {
                n.record_previous.insert(a.subnet_id.clone(), back.clone());
                taken.insert(a.subnet_id.clone());
            }
        }
    }
    for p in plans.iter_mut().filter(|p| p.desired.orphaned) {
        let Some(r) = p.retire.as_mut() else {
            continue;
        };
        r.restore.retain(|a| !taken.contains(&a.subnet_id));
        let Some(id) = r.delete_security_group.clone() else {
            continue;
        };
        r.detach
            .retain(|d| !swapped.contains(&(d.interface_id.clone(), id.clone())));
        if let Some(d) = r.detach.iter().find(|d| d.groups.is_empty()) {
            return Err(PlanError::LastGroup {
                interface: d.interface_id.clone(),
                instance: d.instance_id.clone(),
                group: id,
            });
        }
    }
    Ok(())
}

impl AwsBackend {
    /// Executes a retirement in its order; counts each write.
    pub(crate) async fn retire(
        &self,
        r: &Retirement,
        progress: &mut dyn FnMut(String),
        writes: &mut usize,
    ) -> Result<(), AwsError> {
        let c = self.client();
        for d in &r.detach {
            c.modify_network_interface_attribute()
                .network_interface_id(&d.interface_id)
                .set_groups(Some(d.groups.clone()))
                .send()
                .await
                .map_err(api_err("ModifyNetworkInterfaceAttribute"))?;
            *writes += 1;
            progress(format!(
                "~ owned group taken off {} ({})",
                d.interface_id, d.instance_id
            ));
        }
        for a in &r.restore {
            self.move_subnet(&a.association_id, &a.network_acl_id)
                .await?;
            *writes += 1;
            progress(format!(
                "~ subnet {} back on {}",
                a.subnet_id, a.network_acl_id
            ));
        }
        if let Some(acl) = &r.delete_network_acl {
            self.delete_acl(acl).await?;
            *writes += 1;
            progress(format!("- network ACL {acl} deleted"));
        }
        if let Some(group) = &r.delete_security_group {
            c.delete_security_group()
                .group_id(group)
                .send()
                .await
                .map_err(api_err("DeleteSecurityGroup"))?;
            *writes += 1;
            progress(format!("- security group {group} deleted"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
