//! What a plan was made against, and so what a saved plan or a lease checks again.

use perimeter_core::plan::{FingerprintError, fingerprint};
use serde::{Deserialize, Serialize};

use super::AwsDesired;
use crate::state::ObservedAws;

/// Fingerprints of what a plan was made against; apply refuses to write if any changed.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Fingerprints {
    /// The owned security group and its rules (and any foreign group with its name).
    pub security_group: String,
    /// The owned NACL and the subnets' associations.
    pub network_acl: String,
    /// The selected instances' metadata options and security groups.
    pub instances: String,
}

impl Fingerprints {
    /// What a plan of `desired` depends on in an observation.
    pub fn for_desired(desired: &AwsDesired, o: &ObservedAws) -> Result<Self, FingerprintError> {
        if desired.orphaned {
            Self::of_orphan(o)
        } else {
            Self::of(o)
        }
    }

    /// An orphan's objects themselves: the group's rules, the NACL and its entries. The
    /// interfaces and subnets it lets go are not included, because declared targets applied
    /// before it take some of them over (`settle`); apply checks the rest write by write
    /// (`Retirement::holds`).
    pub fn of_orphan(o: &ObservedAws) -> Result<Self, FingerprintError> {
        Ok(Self {
            security_group: fingerprint(&(&o.security_group, &o.foreign_group))?,
            network_acl: fingerprint(
                &o.network_acl
                    .as_ref()
                    .map(|n| (&n.network_acl_id, &n.entries)),
            )?,
            instances: fingerprint(&())?,
        })
    }

    /// Fingerprints of an observation.
    pub fn of(o: &ObservedAws) -> Result<Self, FingerprintError> {
        Ok(Self {
            security_group: fingerprint(&(&o.security_group, &o.foreign_group))?,
            network_acl: fingerprint(&(&o.network_acl, &o.subnet_associations))?,
            instances: fingerprint(&(
                o.instances
                    .iter()
                    .map(|i| (&i.instance_id, &i.metadata, &i.security_groups))
                    .collect::<Vec<_>>(),
                o.interfaces
                    .iter()
                    .map(|i| (&i.interface_id, &i.groups))
                    .collect::<Vec<_>>(),
            ))?,
        })
    }
}
