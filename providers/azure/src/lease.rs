//! The Azure lease (core::lease) on a shared NSG: a `perimeter-lease-<policy>` tag, written
//! with ARM's tag update (PATCH) under `If-Match` on the etag just read — a conditional write:
//! of two applies that read the same etag, one updates and the other gets 412, reads again and
//! finds the lease. Shared-mode fingerprints do not cover the NSG's tags, so the lease never
//! makes a plan stale. (An owned NSG needs none: its one PUT carries `If-Match` itself.)

use std::time::{SystemTime, UNIX_EPOCH};

use perimeter_core::lease::Lease;
use reqwest::Method;
use serde_json::{Value, json};

use crate::backend::{AzureBackend, nsg_id};
use crate::client::ArmError;
use crate::plan::{AzureTargetPlan, observed_fingerprint};

/// Reads and conditional writes before giving up on an NSG others keep changing.
const ATTEMPTS: usize = 5;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn tag_name(policy: &str) -> String {
    format!("perimeter-lease-{policy}")
}

/// This apply's lease on a plan's NSG.
pub(crate) fn new_lease(plan: &AzureTargetPlan) -> Lease {
    Lease::for_apply(
        |k| std::env::var(k).ok(),
        std::process::id(),
        now(),
        &plan.fingerprint,
    )
}

impl AzureBackend {
    /// Takes the lease, taking over an expired one, then checks again that the NSG is as the
    /// plan saw it.
    pub(crate) async fn take_lease(
        &self,
        plan: &AzureTargetPlan,
        lease: &Lease,
    ) -> Result<(), ArmError> {
        let key = tag_name(&plan.policy);
        self.update_tags(plan, |tags| {
            if let Some(held) = tags.get(&key).and_then(Value::as_str) {
                let held = Lease::decode(held).unwrap_or(Lease {
                    owner: format!("a {key} tag perimeter cannot read"),
                    expires: u64::MAX,
                    plan: String::new(),
                });
                if !held.expired(now()) && held != *lease {
                    return Err(leased(plan, &held, &key));
                }
            }
            tags.insert(key.clone(), json!(lease.encode()));
            Ok(true)
        })
        .await?;
        let observed = self
            .observe(&plan.policy, std::slice::from_ref(&plan.target))
            .await?;
        let same = observed
            .first()
            .and_then(|o| observed_fingerprint(o, &plan.target, &plan.policy).ok())
            .is_some_and(|f| f == plan.fingerprint);
        if !same {
            self.release_lease(plan, lease).await;
            return Err(ArmError::Setup(format!(
                "NSG {} changed after the plan was checked (another apply finished meanwhile?); nothing was written. Run `perimeter plan` again",
                plan.target.nsg
            )));
        }
        Ok(())
    }

    /// Removes this apply's lease tag (only with its own value); a failure only means the
    /// lease runs out on its own.
    pub(crate) async fn release_lease(&self, plan: &AzureTargetPlan, lease: &Lease) {
        let key = tag_name(&plan.policy);
        let _ = self
            .update_tags(plan, |tags| {
                let ours = tags.get(&key).and_then(Value::as_str) == Some(lease.encode().as_str());
                if ours {
                    tags.remove(&key);
                }
                Ok(ours)
            })
            .await;
    }

    /// Reads the NSG's tags, lets `change` edit them (`Ok(false)`: nothing to write), and
    /// writes them back under `If-Match`; reads again after a 412.
    async fn update_tags(
        &self,
        plan: &AzureTargetPlan,
        mut change: impl FnMut(&mut serde_json::Map<String, Value>) -> Result<bool, ArmError>,
    ) -> Result<(), ArmError> {
        let id = nsg_id(&plan.target);
        let what = format!("updating the tags of NSG {}", plan.target.nsg);
        for _ in 0..ATTEMPTS {
            let read = self.client.send(&what, Method::GET, &id, None, &[]).await?;
            let etag = read.body["etag"].as_str().unwrap_or_default().to_string();
            let mut tags = read.body["tags"].as_object().cloned().unwrap_or_default();
            if !change(&mut tags)? {
                return Ok(());
            }
            let body = json!({"tags": tags});
            match self
                .client
                .send(
                    &what,
                    Method::PATCH,
                    &id,
                    Some(&body),
                    &[("If-Match", etag)],
                )
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if e.status() == Some(412) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(ArmError::Setup(format!(
            "{what}: the NSG changed under every one of {ATTEMPTS} attempts; nothing was written. Try again"
        )))
    }
}

fn leased(plan: &AzureTargetPlan, held: &Lease, key: &str) -> ArmError {
    ArmError::Setup(format!(
        "NSG {} is being applied: lease {held} (tag {key}); nothing was written. Wait for that apply and plan again; if its holder is gone, the lease is taken over once it expires (or delete the tag)",
        plan.target.nsg
    ))
}
