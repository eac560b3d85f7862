//! Where a subnet goes when perimeter lets it go, and the record that makes it go back.

use std::collections::BTreeMap;

use perimeter_core::plan::Finding;
use perimeter_core::target::AwsTarget;

use super::PlanError;
use crate::state::{ObservedAws, PREVIOUS_NACL_TAGS_MAX, SubnetAssociation};

/// Where a subnet on the owned NACL goes when perimeter lets it go: back to the NACL recorded
/// when perimeter moved it (if it still exists), else to the VPC's default.
pub(crate) fn restored(
    a: &SubnetAssociation,
    observed: &ObservedAws,
    target: &AwsTarget,
) -> Result<SubnetAssociation, PlanError> {
    observed
        .network_acl_restore
        .get(&a.subnet_id)
        .or(observed.default_network_acl.as_ref())
        .map(|to| SubnetAssociation {
            network_acl_id: to.clone(),
            ..a.clone()
        })
        .ok_or_else(|| PlanError::NoDefaultNacl {
            vpc: target.vpc.clone(),
        })
}

/// The subnets moving to the owned NACL from a NACL other than the default, to be recorded
/// (within the tag limit); those past the limit are findings (they will go back to the
/// default).
pub(super) fn previous_to_record(
    associate: &[SubnetAssociation],
    observed: &ObservedAws,
) -> (BTreeMap<String, String>, Vec<Finding>) {
    let default = observed.default_network_acl.as_deref();
    let mut room = PREVIOUS_NACL_TAGS_MAX.saturating_sub(observed.recorded_previous.len());
    let mut record = BTreeMap::new();
    let mut unrecorded = Vec::new();
    for a in associate {
        // From the default with nothing recorded: nothing to record (the default is where
        // it goes back by default). A stale record is overwritten, even with the default.
        if Some(a.network_acl_id.as_str()) == default
            && !observed.recorded_previous.contains_key(&a.subnet_id)
        {
            continue;
        }
        if observed.recorded_previous.get(&a.subnet_id) == Some(&a.network_acl_id) {
            continue;
        }
        // A subnet already recorded overwrites its own tag; a new one takes room.
        if !observed.recorded_previous.contains_key(&a.subnet_id) {
            if room == 0 {
                unrecorded.push(Finding {
                    code: "previous-nacl-unrecorded".into(),
                    resource: a.subnet_id.clone(),
                    message: format!(
                        "subnet {} leaves network ACL {} for the owned one, but the owned NACL has no tag left to record that ({PREVIOUS_NACL_TAGS_MAX} at most): release and destroy will move it to the VPC's default NACL",
                        a.subnet_id, a.network_acl_id
                    ),
                });
                continue;
            }
            room -= 1;
        }
        record.insert(a.subnet_id.clone(), a.network_acl_id.clone());
    }
    (record, unrecorded)
}
