//! The Azure backend: observe (one GET per NSG and one per distinct application security
//! group) and
//! apply (one PUT per owned NSG with `If-Match`, or rule-by-rule PUT/DELETE in a shared NSG
//! in the plan's order), each write followed to the end of its long-running operation.

use std::collections::BTreeMap;

use perimeter_core::target::AzureTarget;
use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{ArmClient, ArmError, ArmSettings};
use crate::compile::asg_id;
use crate::credential::Credential;
use crate::lease::new_lease;
use crate::model::{ResourceRef, SecurityRule, SecurityRuleProperties};
use crate::plan::{AzureTargetPlan, NsgWrite, RuleStep};
use crate::state::{ObservedAzure, ObservedNsg, canonical};

/// The NSG's resource id.
pub(crate) fn nsg_id(t: &AzureTarget) -> String {
    format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Network/networkSecurityGroups/{}",
        t.subscription, t.resource_group, t.nsg
    )
}

/// Why apply stopped, and how far it got.
pub(crate) type ApplyStopped = perimeter_core::lifecycle::ApplyStopped<ArmError>;

/// ARM access for one run.
pub struct AzureBackend {
    pub(crate) client: ArmClient,
}

impl AzureBackend {
    /// Settings and credential from the environment (docs/cli.md, Environment).
    pub fn from_env() -> Result<Self, ArmError> {
        let mut settings = ArmSettings::default();
        if let Ok(endpoint) = std::env::var("PERIMETER_AZURE_ENDPOINT")
            && !endpoint.is_empty()
        {
            settings.endpoint = endpoint;
        }
        if let Ok(ms) = std::env::var("PERIMETER_RETRY_BASE_MS")
            && let Ok(ms) = ms.parse()
        {
            settings.retry_base = std::time::Duration::from_millis(ms);
        }
        Ok(Self {
            client: ArmClient::new(settings, Credential::from_env()?)?,
        })
    }

    /// Requests sent so far.
    pub fn api_calls(&self) -> u64 {
        self.client.api_calls()
    }

    /// Requests that were retries.
    pub fn retries(&self) -> u64 {
        self.client.retries()
    }

    /// Observes every target.
    pub async fn observe(
        &self,
        policy: &str,
        targets: &[AzureTarget],
    ) -> Result<Vec<ObservedAzure>, ArmError> {
        let mut out = Vec::with_capacity(targets.len());
        let mut asgs: BTreeMap<String, bool> = BTreeMap::new();
        for t in targets {
            let what = format!(
                "reading NSG {} in resource group {}",
                t.nsg, t.resource_group
            );
            let nsg = match self
                .client
                .send(&what, Method::GET, &nsg_id(t), None, &[])
                .await
            {
                Ok(r) => Some(observed_nsg(&r.body).ok_or_else(|| ArmError::Transport {
                    what: what.clone(),
                    message: "the answer has no properties.securityRules".into(),
                })?),
                Err(e) if e.status() == Some(404) => None,
                Err(e) => return Err(e),
            };
            // Targets usually share one ASG (the nodes'): read each once. A target without
            // one (an orphaned NSG being removed) needs none.
            let asg = asg_id(t).to_ascii_lowercase();
            let asg_exists = match asgs.get(&asg) {
                _ if t.application_security_group.is_empty() => false,
                Some(&known) => known,
                None => {
                    let what = format!(
                        "reading application security group {}",
                        t.application_security_group
                    );
                    let exists = match self
                        .client
                        .send(&what, Method::GET, &asg_id(t), None, &[])
                        .await
                    {
                        Ok(_) => true,
                        Err(e) if e.status() == Some(404) => false,
                        Err(e) => return Err(e),
                    };
                    asgs.insert(asg, exists);
                    exists
                }
            };
            let mut observed = ObservedAzure {
                nsg,
                asg_exists,
                ..ObservedAzure::default()
            };
            self.observe_path(t, &mut observed).await?;
            out.push(observed);
        }
        self.observe_orphans(policy, targets, &mut out).await?;
        Ok(out)
    }

    /// Executes one target's plan; returns the writes that took effect. Subnets are
    /// dissociated before the NSG is deleted, and associated after it is written.
    pub async fn apply(
        &self,
        plan: &AzureTargetPlan,
        progress: &mut (dyn FnMut(String) + Send),
    ) -> Result<usize, ApplyStopped> {
        if matches!(plan.write, NsgWrite::Delete { .. }) {
            let written = self.write_subnets(plan, 0, progress).await?;
            let deleted = self.write_nsg(plan, progress).await.map_err(|mut s| {
                s.written += written;
                s
            })?;
            return Ok(written + deleted);
        }
        let written = self.write_nsg(plan, progress).await?;
        self.write_subnets(plan, written, progress).await
    }

    /// The subnet association writes, in the plan's order, each conditional on the subnet's
    /// observed etag. `before` counts the writes already made, for the stop report.
    async fn write_subnets(
        &self,
        plan: &AzureTargetPlan,
        before: usize,
        progress: &mut (dyn FnMut(String) + Send),
    ) -> Result<usize, ApplyStopped> {
        let mut written = before;
        for w in &plan.subnet_writes {
            let label = w.label();
            let what = if w.associate {
                format!("associating NSG {} with subnet {label}", plan.target.nsg)
            } else {
                format!("dissociating NSG {} from subnet {label}", plan.target.nsg)
            };
            let stop = |error| ApplyStopped { written, error };
            let body = json!({"properties": w.properties});
            let condition = ("If-Match", w.if_match.clone());
            match self
                .client
                .send(&what, Method::PUT, &w.subnet, Some(&body), &[condition])
                .await
            {
                Ok(started) => self.client.wait(&what, &started).await.map_err(stop)?,
                // Refused because the subnet changed: by this write's own first attempt whose
                // answer was lost, or by someone else. Done only if the NSG is now as planned.
                Err(e) if e.status() == Some(412) => {
                    if !self.subnet_as_planned(plan, w).await {
                        return Err(stop(e));
                    }
                }
                Err(e) => return Err(stop(e)),
            }
            written += 1;
            progress(if w.associate {
                format!("  + subnet {label} associated with NSG {}", plan.target.nsg)
            } else {
                format!(
                    "  - subnet {label} dissociated from NSG {} ({})",
                    plan.target.nsg, w.reason
                )
            });
        }
        Ok(written)
    }

    /// The NSG's own write.
    async fn write_nsg(
        &self,
        plan: &AzureTargetPlan,
        progress: &mut (dyn FnMut(String) + Send),
    ) -> Result<usize, ApplyStopped> {
        let t = &plan.target;
        let id = nsg_id(t);
        match &plan.write {
            NsgWrite::None => Ok(0),
            NsgWrite::Delete { if_match } => {
                // ARM refuses (412) if anyone changed the NSG since the plan, and (400
                // InUseNetworkSecurityGroupCannotBeDeleted) while a subnet or NIC uses it.
                let what = format!("deleting NSG {}", t.nsg);
                let stop = |error| ApplyStopped { written: 0, error };
                let condition = ("If-Match", if_match.clone());
                let started = self
                    .client
                    .send(&what, Method::DELETE, &id, None, &[condition])
                    .await
                    .map_err(stop)?;
                self.client.wait(&what, &started).await.map_err(stop)?;
                progress(format!("  - NSG {} deleted", t.nsg));
                Ok(1)
            }
            NsgWrite::Put {
                if_match,
                location,
                tags,
            } => {
                let rules: Vec<Value> = plan.desired.rules.iter().map(rule_body).collect();
                let body = json!({
                    "location": location,
                    "tags": tags,
                    "properties": {"securityRules": rules},
                });
                // ARM refuses the PUT (412) if anyone changed the NSG since the plan.
                let condition = match if_match {
                    Some(etag) => ("If-Match", etag.clone()),
                    None => ("If-None-Match", "*".to_string()),
                };
                let what = format!("writing NSG {} ({} rules)", t.nsg, rules.len());
                let stop = |error| ApplyStopped { written: 0, error };
                let sent = self
                    .client
                    .send(&what, Method::PUT, &id, Some(&body), &[condition])
                    .await;
                let started = match sent {
                    Ok(started) => started,
                    // Refused because the NSG changed: by this write's own first attempt whose
                    // answer was lost, or by another apply. Done if the NSG is now exactly
                    // what this write would have made it.
                    Err(e) if e.status() == Some(412) => {
                        if self.already_written(plan, tags).await {
                            progress(format!(
                                "  ~ NSG {} already as planned (an earlier attempt or another apply wrote it)",
                                t.nsg
                            ));
                            return Ok(1);
                        }
                        return Err(stop(e));
                    }
                    Err(e) => return Err(stop(e)),
                };
                self.client.wait(&what, &started).await.map_err(stop)?;
                progress(format!(
                    "  {} NSG {} written in one PUT ({} rules)",
                    if plan.create_nsg { '+' } else { '~' },
                    t.nsg,
                    rules.len()
                ));
                Ok(1)
            }
            NsgWrite::Steps { steps } => {
                let lease = new_lease(plan);
                self.take_lease(plan, &lease)
                    .await
                    .map_err(|error| ApplyStopped { written: 0, error })?;
                let result = self.write_steps(plan, steps, progress).await;
                self.release_lease(plan, &lease).await;
                result
            }
        }
    }

    /// A shared NSG's rule writes, one at a time, under the lease.
    async fn write_steps(
        &self,
        plan: &AzureTargetPlan,
        steps: &[RuleStep],
        progress: &mut (dyn FnMut(String) + Send),
    ) -> Result<usize, ApplyStopped> {
        let t = &plan.target;
        let id = nsg_id(t);
        let mut written = 0;
        for step in steps {
            let (method, name, body, line) = match step {
                RuleStep::Put { rule, parked } => (
                    Method::PUT,
                    &rule.name,
                    Some(json!({"properties": rule.properties})),
                    if *parked {
                        format!(
                            "  ~ rule {} parked at priority {}",
                            rule.name, rule.properties.priority
                        )
                    } else {
                        format!(
                            "  + rule {} written (priority {} {})",
                            rule.name, rule.properties.priority, rule.properties.direction
                        )
                    },
                ),
                RuleStep::Delete { name } => (
                    Method::DELETE,
                    name,
                    None,
                    format!("  - rule {name} deleted"),
                ),
            };
            let what = format!("{method} rule {name} in NSG {}", t.nsg);
            let url = format!("{id}/securityRules/{name}");
            let stop = |error| ApplyStopped { written, error };
            let started = self
                .client
                .send(&what, method, &url, body.as_ref(), &[])
                .await
                .map_err(stop)?;
            self.client.wait(&what, &started).await.map_err(stop)?;
            written += 1;
            progress(line);
        }
        Ok(written)
    }
}

impl AzureBackend {
    /// True when the subnet's NSG is now what the write would have made it.
    async fn subnet_as_planned(
        &self,
        plan: &AzureTargetPlan,
        w: &crate::path::SubnetWrite,
    ) -> bool {
        let what = format!("re-reading subnet {}", w.label());
        let Ok(r) = self
            .client
            .send(&what, Method::GET, &w.subnet, None, &[])
            .await
        else {
            return false;
        };
        let nsg = r
            .body
            .pointer("/properties/networkSecurityGroup/id")
            .and_then(Value::as_str);
        match nsg {
            Some(id) => w.associate && id.eq_ignore_ascii_case(&nsg_id(&plan.target)),
            None => !w.associate,
        }
    }

    /// True when the owned NSG now holds exactly the planned rules and tags.
    async fn already_written(
        &self,
        plan: &AzureTargetPlan,
        tags: &BTreeMap<String, String>,
    ) -> bool {
        let what = format!("re-reading NSG {}", plan.target.nsg);
        let Ok(r) = self
            .client
            .send(&what, Method::GET, &nsg_id(&plan.target), None, &[])
            .await
        else {
            return false;
        };
        let Some(nsg) = observed_nsg(&r.body) else {
            return false;
        };
        let key = |r: &SecurityRule| r.name.to_ascii_lowercase();
        let mut have: Vec<SecurityRule> = nsg.rules.iter().map(canonical).collect();
        let mut want: Vec<SecurityRule> = plan.desired.rules.iter().map(canonical).collect();
        have.sort_by_key(key);
        want.sort_by_key(key);
        have == want && nsg.tags == *tags
    }
}

fn rule_body(rule: &SecurityRule) -> Value {
    json!({"name": rule.name, "properties": rule.properties})
}

/// The NSG of a GET answer; `None` when the answer is not an NSG (then nothing may be
/// concluded from it: an empty rule list read from a broken answer would plan every rule).
pub(crate) fn observed_nsg(body: &Value) -> Option<ObservedNsg> {
    body.pointer("/properties/securityRules")?.as_array()?;
    let tags: BTreeMap<String, String> = body
        .get("tags")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default();
    let mut rules: Vec<SecurityRule> = body
        .pointer("/properties/securityRules")
        .and_then(Value::as_array)
        .map(|rules| {
            rules
                .iter()
                .map(rule_from_arm)
                .map(|r| canonical(&r))
                .collect()
        })
        .unwrap_or_default();
    rules.sort_by(|a, b| a.name.cmp(&b.name));
    Some(ObservedNsg {
        etag: body
            .get("etag")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        location: body
            .get("location")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        tags,
        rules,
        subnets: ids(body, "/properties/subnets"),
        nics: ids(body, "/properties/networkInterfaces"),
    })
}

/// The `id`s of a list of resource references.
fn ids(body: &Value, pointer: &str) -> Vec<String> {
    body.pointer(pointer)
        .and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .filter_map(|r| r.get("id")?.as_str())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// A rule as ARM returns it, read leniently: any rule someone else wrote must be readable.
/// Source port lists (perimeter writes `*`) are folded into `source_port_range` so that a
/// rule narrowed by hand differs from the policy's.
pub(crate) fn rule_from_arm(rule: &Value) -> SecurityRule {
    let p = rule.get("properties").cloned().unwrap_or(Value::Null);
    let text = |key: &str| p.get(key).and_then(Value::as_str).map(str::to_string);
    let list = |key: &str| -> Vec<String> {
        p.get(key)
            .and_then(Value::as_array)
            .map(|l| {
                l.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let refs = |key: &str| -> Vec<ResourceRef> {
        p.get(key)
            .and_then(Value::as_array)
            .map(|l| {
                l.iter()
                    .filter_map(|r| r.get("id")?.as_str())
                    .map(|id| ResourceRef { id: id.to_string() })
                    .collect()
            })
            .unwrap_or_default()
    };
    let source_ports = list("sourcePortRanges");
    SecurityRule {
        name: rule
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        properties: SecurityRuleProperties {
            description: text("description").unwrap_or_default(),
            protocol: text("protocol").unwrap_or_default(),
            source_port_range: text("sourcePortRange").unwrap_or_else(|| source_ports.join(",")),
            destination_port_range: text("destinationPortRange"),
            destination_port_ranges: list("destinationPortRanges"),
            source_address_prefix: text("sourceAddressPrefix"),
            source_address_prefixes: list("sourceAddressPrefixes"),
            source_application_security_groups: refs("sourceApplicationSecurityGroups"),
            destination_address_prefix: text("destinationAddressPrefix"),
            destination_address_prefixes: list("destinationAddressPrefixes"),
            destination_application_security_groups: refs("destinationApplicationSecurityGroups"),
            access: text("access").unwrap_or_default(),
            priority: p
                .get("priority")
                .and_then(Value::as_u64)
                .map_or(0, |n| u16::try_from(n).unwrap_or(u16::MAX)),
            direction: text("direction").unwrap_or_default(),
        },
    }
}
