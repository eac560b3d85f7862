//! Executes a GCP plan step by step, in the plan's order — each step finished before the next
//! starts. The planner's transition checker proved every state between steps safe, and that
//! the writes of one step touch disjoint traffic, so they run concurrently (bounded) and may
//! land in any order. Each write carries a request
//! id that stays the same across its retries, so a write whose answer was lost is not done
//! twice; each waits for its global operation. After the first failure no new write starts;
//! the ones in flight finish, and the error says how far apply got.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use google_cloud_compute_v1::model::Operation;
use google_cloud_compute_v1::model::operation::Status;
use perimeter_core::plan::sha256_hex;

use crate::backend::{GcpBackend, GcpError};
use crate::convert::to_api;
use crate::plan::{FirewallChange, GcpTargetPlan, WriteMethod};

/// Longest wait for one operation.
const OPERATION_DEADLINE: Duration = Duration::from_secs(600);

/// Why apply stopped, and how far it got.
pub(crate) type ApplyStopped = perimeter_core::lifecycle::ApplyStopped<GcpError>;

/// What became of one change.
pub(crate) enum Outcome {
    /// Written and its operation done.
    Done,
    /// A delete of a rule that was already gone.
    AlreadyGone,
    /// Not started because another write had failed.
    Skipped,
}

impl GcpBackend {
    /// Executes one network's plan; returns the number of writes that took effect.
    pub async fn apply(
        &self,
        plan: &GcpTargetPlan,
        progress: &mut (dyn FnMut(String) + Send),
    ) -> Result<usize, ApplyStopped> {
        // Distinguishes this apply's request ids from an earlier apply of the same plan.
        let nonce = format!("{:?}{}", Instant::now(), std::process::id());
        if plan.changes.is_empty() {
            return Ok(0);
        }
        self.take_lease(plan, &nonce)
            .await
            .map_err(|error| ApplyStopped { written: 0, error })?;
        let result = self.apply_steps(plan, progress, &nonce).await;
        self.release_lease(plan, &nonce).await;
        result
    }

    /// The plan's steps, in order, under the lease.
    async fn apply_steps(
        &self,
        plan: &GcpTargetPlan,
        progress: &mut (dyn FnMut(String) + Send),
        nonce: &str,
    ) -> Result<usize, ApplyStopped> {
        let failed = AtomicBool::new(false);
        let mut written = 0usize;
        for step in 1..=plan.steps() {
            let changes: Vec<&FirewallChange> =
                plan.changes.iter().filter(|c| c.step == step).collect();
            let mut results = futures_util::stream::iter(changes)
                .map(|c| self.write(plan, c, nonce, &failed))
                .buffer_unordered(self.settings.concurrency);
            let mut first_error = None;
            while let Some((change, result)) = results.next().await {
                let line = |what: &str| {
                    format!(
                        "  {} firewall {} ({}): {what}",
                        change.action.symbol(),
                        change.name,
                        method_name(change.method)
                    )
                };
                match result {
                    Ok(Outcome::Done) => {
                        written += 1;
                        progress(line("done"));
                    }
                    Ok(Outcome::AlreadyGone) => progress(line("already gone")),
                    Ok(Outcome::Skipped) => {}
                    Err(e) => {
                        failed.store(true, Ordering::Relaxed);
                        progress(line("failed"));
                        first_error.get_or_insert(e);
                    }
                }
            }
            if let Some(error) = first_error {
                return Err(ApplyStopped { written, error });
            }
        }
        Ok(written)
    }

    /// One write and its operation, unless another write failed already.
    async fn write<'c>(
        &self,
        plan: &GcpTargetPlan,
        change: &'c FirewallChange,
        nonce: &str,
        failed: &AtomicBool,
    ) -> (&'c FirewallChange, Result<Outcome, GcpError>) {
        if failed.load(Ordering::Relaxed) {
            return (change, Ok(Outcome::Skipped));
        }
        (change, self.write_one(plan, change, nonce).await)
    }

    pub(crate) async fn write_one(
        &self,
        plan: &GcpTargetPlan,
        change: &FirewallChange,
        nonce: &str,
    ) -> Result<Outcome, GcpError> {
        let project = plan.target.project.as_str();
        let name = change.name.as_str();
        let request_id = request_id(&format!(
            "{}\0{name}\0{:?}\0{nonce}",
            plan.fingerprint, change.method
        ));
        let what = format!(
            "{} firewall rule {name} in project {project}",
            method_name(change.method)
        );
        let body = change.after.as_ref().map(|f| to_api(f, project));
        let body = || body.clone().unwrap_or_default();
        let firewalls = &self.firewalls;
        let sent = match change.method {
            WriteMethod::Insert => {
                self.call(&what, || {
                    firewalls
                        .insert()
                        .set_project(project)
                        .set_request_id(&request_id)
                        .set_body(body())
                        .send()
                })
                .await
            }
            WriteMethod::Patch => {
                self.call(&what, || {
                    firewalls
                        .patch()
                        .set_project(project)
                        .set_firewall(name)
                        .set_request_id(&request_id)
                        .set_body(body())
                        .send()
                })
                .await
            }
            WriteMethod::Update => {
                self.call(&what, || {
                    firewalls
                        .update()
                        .set_project(project)
                        .set_firewall(name)
                        .set_request_id(&request_id)
                        .set_body(body())
                        .send()
                })
                .await
            }
            WriteMethod::Delete => {
                self.call(&what, || {
                    firewalls
                        .delete()
                        .set_project(project)
                        .set_firewall(name)
                        .set_request_id(&request_id)
                        .send()
                })
                .await
            }
        };
        let operation = match sent {
            Ok(op) => op,
            // Already gone: what the delete wanted.
            Err(GcpError::Api {
                status: Some(404), ..
            }) if change.method == WriteMethod::Delete => return Ok(Outcome::AlreadyGone),
            Err(e) => return Err(e),
        };
        let done = self.wait(&what, project, operation).await?;
        done.to_result()
            .map(|_| Outcome::Done)
            .map_err(|e| GcpError::Operation {
                what,
                message: operation_message(&e),
            })
    }

    /// Polls a global operation until it is DONE, backing off from 250 ms to 5 s.
    async fn wait(
        &self,
        what: &str,
        project: &str,
        mut op: Operation,
    ) -> Result<Operation, GcpError> {
        let started = Instant::now();
        let mut delay = Duration::from_millis(250);
        while op.status != Some(Status::Done) {
            if started.elapsed() > OPERATION_DEADLINE {
                return Err(GcpError::Operation {
                    what: what.into(),
                    message: format!(
                        "not done after {} s (operation {}); it may still finish: run `perimeter plan` to see",
                        OPERATION_DEADLINE.as_secs(),
                        op.name.clone().unwrap_or_default()
                    ),
                });
            }
            let Some(name) = op.name.clone() else {
                return Err(GcpError::Operation {
                    what: what.into(),
                    message: "the operation has no name".into(),
                });
            };
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
            op = self
                .call(&format!("{what} (waiting for {name})"), || {
                    self.firewalls
                        .get_operation()
                        .set_project(project)
                        .set_operation(&name)
                        .send()
                })
                .await?;
        }
        Ok(op)
    }
}

fn method_name(m: WriteMethod) -> &'static str {
    match m {
        WriteMethod::Insert => "insert",
        WriteMethod::Patch => "patch",
        WriteMethod::Update => "update",
        WriteMethod::Delete => "delete",
    }
}

fn operation_message(e: &google_cloud_compute_v1::errors::OperationError) -> String {
    use google_cloud_compute_v1::errors::OperationError;
    match e {
        OperationError::Generic(g) => {
            let details: Vec<String> = g
                .details
                .iter()
                .flat_map(|d| &d.errors)
                .map(|x| {
                    format!(
                        "{}: {}",
                        x.code.clone().unwrap_or_default(),
                        x.message.clone().unwrap_or_default()
                    )
                })
                .collect();
            match (details.is_empty(), &g.message) {
                (false, _) => details.join("; "),
                (true, Some(m)) => m.clone(),
                (true, None) => format!("HTTP {}", g.status_code.unwrap_or_default()),
            }
        }
        other => other.to_string(),
    }
}

/// A version-4-shaped UUID derived from what identifies one write of one apply: the API
/// wants a UUID, and a retried write must send the same one.
fn request_id(identity: &str) -> String {
    let hex = sha256_hex(identity.as_bytes());
    let mut bytes: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or(0))
        .collect();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let h: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_stable_uuids() {
        let a = request_id("fp\0web-i-ssh\0Insert\0n1");
        assert_eq!(a, request_id("fp\0web-i-ssh\0Insert\0n1"));
        assert_ne!(a, request_id("fp\0web-i-ssh\0Insert\0n2"));
        let groups: Vec<usize> = a.split('-').map(str::len).collect();
        assert_eq!(groups, vec![8, 4, 4, 4, 12]);
        assert_eq!(&a[14..15], "4");
        assert!(a != "00000000-0000-0000-0000-000000000000");
    }
}
