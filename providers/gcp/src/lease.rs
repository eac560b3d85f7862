//! The GCP lease (core::lease): a disabled firewall rule `<policy>-lease` in the network, its
//! description holding the lease. `firewalls.insert` refuses a name that exists (409), which
//! makes taking the lease a conditional write: of two applies, one inserts and the other is
//! told who holds it. A disabled rule decides nothing; its description does not carry the
//! ownership marker, so planning sees it as someone else's rule and never writes it.

use std::time::{SystemTime, UNIX_EPOCH};

use perimeter_core::lease::Lease;

use crate::backend::{GcpBackend, GcpError};
use crate::model::{Firewall, ProtocolPorts};
use crate::plan::{FirewallChange, GcpTargetPlan, WriteMethod, observed_fingerprint};

/// The description prefix of a lease rule.
const LEASE_MARKER: &str = "perimeter-lease ";

/// The lease rule's name for a policy.
pub(crate) fn lease_name(policy: &str) -> String {
    format!("{policy}-lease")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn lease_rule(plan: &GcpTargetPlan, lease: &Lease) -> Firewall {
    Firewall {
        name: lease_name(&plan.policy),
        description: format!("{LEASE_MARKER}{}", lease.encode()),
        network: plan.target.network.clone(),
        priority: 65535,
        direction: "INGRESS".into(),
        // TEST-NET-1, a tag no instance carries, and disabled: it matches nothing.
        source_ranges: vec!["192.0.2.1/32".into()],
        source_tags: Vec::new(),
        destination_ranges: Vec::new(),
        target_tags: vec!["perimeter-lease".into()],
        allowed: Vec::new(),
        denied: vec![ProtocolPorts {
            ip_protocol: "all".into(),
            ports: Vec::new(),
        }],
        disabled: true,
        source_service_accounts: Vec::new(),
        target_service_accounts: Vec::new(),
    }
}

fn change(plan: &GcpTargetPlan, method: WriteMethod, after: Option<Firewall>) -> FirewallChange {
    FirewallChange {
        action: perimeter_core::plan::Action::Create,
        method,
        name: lease_name(&plan.policy),
        before: None,
        after,
        step: 0,
    }
}

impl GcpBackend {
    /// Takes the network's lease, taking over an expired one, and checks again that the
    /// network is as the plan saw it (another apply may have finished in between).
    pub(crate) async fn take_lease(
        &self,
        plan: &GcpTargetPlan,
        nonce: &str,
    ) -> Result<(), GcpError> {
        let lease = Lease::for_apply(
            |k| std::env::var(k).ok(),
            std::process::id(),
            now(),
            &plan.fingerprint,
        );
        let insert = change(plan, WriteMethod::Insert, Some(lease_rule(plan, &lease)));
        let mut took_over = false;
        loop {
            match self.write_one(plan, &insert, nonce).await {
                Ok(_) => break,
                Err(GcpError::Api {
                    status: Some(409), ..
                }) if !took_over => {
                    let held = self.read_lease(plan).await?;
                    match held {
                        Some(l) if l.expired(now()) => {
                            took_over = true;
                            let delete = change(plan, WriteMethod::Delete, None);
                            self.write_one(plan, &delete, nonce).await?;
                        }
                        // Gone meanwhile: try once more.
                        None if !took_over => took_over = true,
                        held => return Err(self.leased(plan, held)),
                    }
                }
                Err(GcpError::Api {
                    status: Some(409), ..
                }) => {
                    let held = self.read_lease(plan).await?;
                    return Err(self.leased(plan, held));
                }
                Err(e) => return Err(e),
            }
        }
        let observed = self
            .observe(&plan.policy, std::slice::from_ref(&plan.target))
            .await?;
        let now_fingerprint = observed
            .first()
            .map(|o| observed_fingerprint(o, &plan.desired));
        if !matches!(now_fingerprint, Some(Ok(f)) if f == plan.fingerprint) {
            self.release_lease(plan, nonce).await;
            return Err(GcpError::Setting(format!(
                "network {} in project {} changed after the plan was checked (another apply finished meanwhile?); nothing was written. Run `perimeter plan` again",
                plan.target.network, plan.target.project
            )));
        }
        Ok(())
    }

    /// Deletes the lease rule; a failure only means the lease runs out on its own.
    pub(crate) async fn release_lease(&self, plan: &GcpTargetPlan, nonce: &str) {
        let delete = change(plan, WriteMethod::Delete, None);
        let _ = self
            .write_one(plan, &delete, &format!("{nonce}release"))
            .await;
    }

    /// The lease as stored, or `None` when the rule is gone. A rule of that name that is not
    /// a lease reads as held by it, forever.
    async fn read_lease(&self, plan: &GcpTargetPlan) -> Result<Option<Lease>, GcpError> {
        let name = lease_name(&plan.policy);
        let project = plan.target.project.as_str();
        let found = self
            .call(
                &format!("reading the lease {name} in project {project}"),
                || {
                    self.firewalls
                        .get()
                        .set_project(project)
                        .set_firewall(&name)
                        .send()
                },
            )
            .await;
        match found {
            Ok(rule) => {
                let description = rule.description.unwrap_or_default();
                Ok(Some(
                    description
                        .strip_prefix(LEASE_MARKER)
                        .and_then(Lease::decode)
                        .unwrap_or(Lease {
                            owner: format!("a rule named {name} that is not a lease"),
                            expires: u64::MAX,
                            plan: String::new(),
                        }),
                ))
            }
            Err(GcpError::Api {
                status: Some(404), ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn leased(&self, plan: &GcpTargetPlan, held: Option<Lease>) -> GcpError {
        let who = held.map_or_else(|| "by another apply".to_string(), |l| l.to_string());
        GcpError::Leased {
            message: format!(
                "network {} in project {} is being applied: lease {who} (firewall rule {}); nothing was written. Wait for that apply and plan again; if its holder is gone, the lease is taken over once it expires (or delete the rule)",
                plan.target.network,
                plan.target.project,
                lease_name(&plan.policy)
            ),
        }
    }
}
