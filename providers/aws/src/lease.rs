//! The AWS lease (core::lease): a `perimeter:lease` tag on the owned security group. EC2 has
//! no conditional tag write, so taking it is write, wait, read back: of two applies that both
//! write, the one whose value is not there on the read-back stops. A group apply creates
//! carries the tag from its creation, which is conditional (group names are unique per VPC).
//! Release deletes the tag with its value, so it never removes another holder's lease.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_ec2::types::{Filter, Tag};
use perimeter_core::lease::Lease;

use crate::backend::{AwsBackend, AwsError, api_err};
use crate::plan::{AwsTargetPlan, Fingerprints};

/// The tag key.
pub(crate) const LEASE_TAG: &str = "perimeter:lease";

/// How long apply waits between writing its lease and reading it back.
const SETTLE: Duration = Duration::from_millis(500);

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// This apply's lease on a plan's target.
pub(crate) fn new_lease(plan: &AwsTargetPlan) -> Lease {
    Lease::for_apply(
        |k| std::env::var(k).ok(),
        std::process::id(),
        now(),
        &plan.fingerprints.security_group,
    )
}

/// The lease tag for a new group's `TagSpecifications`.
pub(crate) fn lease_tag(lease: &Lease) -> Tag {
    Tag::builder().key(LEASE_TAG).value(lease.encode()).build()
}

impl AwsBackend {
    /// Takes the lease on an existing group, then checks again that the target is as the plan
    /// saw it (another apply may have finished in between).
    pub(crate) async fn take_lease(
        &self,
        plan: &AwsTargetPlan,
        group_id: &str,
        lease: &Lease,
    ) -> Result<(), AwsError> {
        if let Some(held) = self.read_lease(group_id).await?
            && !held.expired(now())
            && held != *lease
        {
            return Err(leased(plan, &held));
        }
        self.client()
            .create_tags()
            .resources(group_id)
            .tags(lease_tag(lease))
            .send()
            .await
            .map_err(api_err("CreateTags"))?;
        tokio::time::sleep(SETTLE).await;
        match self.read_lease(group_id).await? {
            Some(held) if held == *lease => {}
            Some(held) => return Err(leased(plan, &held)),
            None => {
                return Err(AwsError::Unexpected(format!(
                    "the lease tag on {group_id} vanished right after apply wrote it; nothing was written. Is another apply running?"
                )));
            }
        }
        let observed = self
            .observe(&plan.policy, std::slice::from_ref(&plan.target))
            .await?;
        let same = observed.first().is_some_and(|o| {
            let holds = plan
                .retire
                .as_ref()
                .is_none_or(|r| r.holds(Some(group_id), o));
            holds
                && Fingerprints::for_desired(&plan.desired, o).is_ok_and(|f| f == plan.fingerprints)
        });
        if !same {
            self.release_lease(group_id, lease).await;
            return Err(AwsError::Unexpected(format!(
                "security group {} changed after the plan was checked (another apply finished meanwhile?); nothing was written. Run `perimeter plan` again",
                plan.security_group.group_name
            )));
        }
        Ok(())
    }

    /// Deletes this apply's lease tag (only with its own value); a failure only means the
    /// lease runs out on its own.
    pub(crate) async fn release_lease(&self, group_id: &str, lease: &Lease) {
        let _ = self
            .client()
            .delete_tags()
            .resources(group_id)
            .tags(lease_tag(lease))
            .send()
            .await;
    }

    async fn read_lease(&self, group_id: &str) -> Result<Option<Lease>, AwsError> {
        let out = self
            .client()
            .describe_tags()
            .filters(
                Filter::builder()
                    .name("resource-id")
                    .values(group_id)
                    .build(),
            )
            .filters(Filter::builder().name("key").values(LEASE_TAG).build())
            .send()
            .await
            .map_err(api_err("DescribeTags"))?;
        Ok(out.tags().first().and_then(|t| t.value()).map(|v| {
            Lease::decode(v).unwrap_or(Lease {
                owner: format!("a {LEASE_TAG} tag perimeter cannot read"),
                expires: u64::MAX,
                plan: String::new(),
            })
        }))
    }
}

fn leased(plan: &AwsTargetPlan, held: &Lease) -> AwsError {
    AwsError::Unexpected(format!(
        "security group {} is being applied: lease {held} (tag {LEASE_TAG}); nothing was written. Wait for that apply and plan again; if its holder is gone, the lease is taken over once it expires (or delete the tag)",
        plan.security_group.group_name
    ))
}
