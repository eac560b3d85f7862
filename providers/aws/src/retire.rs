//! Retiring a policy on AWS (`destroy`): take the owned group off every interface of the
//! selected instances, move the owned NACL's subnets back to the VPC's default NACL, then
//! delete the NACL and the group. Instance metadata options are left as they are (they are the
//! instances', not perimeter's objects).
//!
//! The order is the one EC2 needs: a group still on an interface, or a NACL still associated,
//! cannot be deleted (`DependencyViolation`, `InvalidNetworkAclID.InUse`).

use perimeter_core::Note;
use serde::{Deserialize, Serialize};

use crate::backend::{AwsBackend, AwsError, api_err};
use crate::plan::{
    AttachChange, AwsDesired, AwsTargetPlan, Fingerprints, PlanError, SecurityGroupPlan,
};
use crate::state::{ObservedAws, SubnetAssociation};

/// What apply removes, in this order.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Retirement {
    /// Interfaces that lose the owned group; `groups` are their groups after.
    pub detach: Vec<AttachChange>,
    /// The owned NACL's subnets, each moved to `network_acl_id` (the VPC's default NACL).
    pub restore: Vec<SubnetAssociation>,
    /// The owned NACL, deleted after its subnets moved.
    pub delete_network_acl: Option<String>,
    /// The owned group, deleted last.
    pub delete_security_group: Option<String>,
}

impl Retirement {
    /// True when nothing of the policy is left.
    pub fn is_empty(&self) -> bool {
        self.detach.is_empty()
            && self.restore.is_empty()
            && self.delete_network_acl.is_none()
            && self.delete_security_group.is_none()
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
        for i in observed.interfaces.iter().filter(|i| i.groups.contains(id)) {
            let groups: Vec<String> = i.groups.iter().filter(|g| *g != id).cloned().collect();
            if groups.is_empty() {
                return Err(PlanError::LastGroup {
                    interface: i.interface_id.clone(),
                    instance: i.instance_id.clone(),
                    group: id.clone(),
                });
            }
            detach.push(AttachChange {
                instance_id: i.instance_id.clone(),
                interface_id: i.interface_id.clone(),
                groups,
            });
        }
    }
    let mut restore = Vec::new();
    if observed.network_acl.is_some() && !observed.owned_acl_associations.is_empty() {
        let Some(default) = &observed.default_network_acl else {
            return Err(PlanError::NoDefaultNacl {
                vpc: target.vpc.clone(),
            });
        };
        restore = observed
            .owned_acl_associations
            .iter()
            .map(|a| SubnetAssociation {
                network_acl_id: default.clone(),
                ..a.clone()
            })
            .collect();
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
        fingerprints: Fingerprints::of(observed)?,
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
