//! The nodes' enforcement path on Azure: the subnets perimeter associates the owned NSG with
//! (or that carry it), the nodes' NICs (selected by tag in one paged list per resource group),
//! the subnets those NICs are in, and every other NSG on a NIC or on such a subnet. One GET per
//! distinct subnet and NSG; nothing per NIC beyond the list.

use std::collections::{BTreeMap, BTreeSet};

use perimeter_core::target::AzureTarget;
use reqwest::Method;
use serde_json::Value;

use crate::backend::{AzureBackend, nsg_id, observed_nsg};
use crate::client::ArmError;
use crate::state::{
    ObservedAzure, ObservedNic, ObservedSubnet, OtherNsg, resource_name, subnet_id,
};

/// Pages one list may take before the answer is treated as broken.
const MAX_PAGES: usize = 1000;

fn text(v: &Value, pointer: &str) -> Option<String> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn observed_subnet(body: &Value) -> ObservedSubnet {
    ObservedSubnet {
        id: text(body, "/id").unwrap_or_default(),
        etag: text(body, "/etag").unwrap_or_default(),
        nsg: text(body, "/properties/networkSecurityGroup/id"),
        properties: body.get("properties").cloned().unwrap_or(Value::Null),
    }
}

fn observed_nic(body: &Value) -> ObservedNic {
    let configs: Vec<&Value> = body
        .pointer("/properties/ipConfigurations")
        .and_then(Value::as_array)
        .map(|c| c.iter().collect())
        .unwrap_or_default();
    let primary = configs
        .iter()
        .find(|c| c.pointer("/properties/primary") == Some(&Value::Bool(true)))
        .or(configs.first());
    let mut asgs: Vec<String> = configs
        .iter()
        .flat_map(|c| {
            c.pointer("/properties/applicationSecurityGroups")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|a| text(&a, "/id"))
        .collect();
    asgs.sort();
    asgs.dedup();
    ObservedNic {
        id: text(body, "/id").unwrap_or_default(),
        name: text(body, "/name").unwrap_or_default(),
        nsg: text(body, "/properties/networkSecurityGroup/id"),
        subnet: primary.and_then(|c| text(c, "/properties/subnet/id")),
        addrs: configs
            .iter()
            .filter_map(|c| text(c, "/properties/privateIPAddress")?.parse().ok())
            .collect(),
        asgs,
    }
}

fn has_tags(body: &Value, wanted: &BTreeMap<String, String>) -> bool {
    let tags = body.get("tags");
    wanted
        .iter()
        .all(|(k, v)| tags.and_then(|t| t.get(k)).and_then(Value::as_str) == Some(v))
}

impl AzureBackend {
    /// NSGs tagged as the policy's that no target declares: one paged NSG list per resource
    /// group, noted on the group's first target.
    pub(crate) async fn observe_orphans(
        &self,
        policy: &str,
        targets: &[AzureTarget],
        out: &mut [ObservedAzure],
    ) -> Result<(), ArmError> {
        let mut groups: Vec<(String, String)> = Vec::new();
        for t in targets {
            let key = (
                t.subscription.to_ascii_lowercase(),
                t.resource_group.to_ascii_lowercase(),
            );
            if !groups.contains(&key) {
                groups.push(key);
            }
        }
        for (sub, group) in groups {
            let in_group = |t: &&AzureTarget| {
                t.subscription.eq_ignore_ascii_case(&sub)
                    && t.resource_group.eq_ignore_ascii_case(&group)
            };
            let Some(first) = targets.iter().position(|t| in_group(&t)) else {
                continue;
            };
            let t = &targets[first];
            let path = format!(
                "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Network/networkSecurityGroups",
                t.subscription, t.resource_group
            );
            let what = format!("listing NSGs in resource group {}", t.resource_group);
            let declared: Vec<&str> = targets
                .iter()
                .filter(in_group)
                .map(|t| t.nsg.as_str())
                .collect();
            let mut orphans: Vec<String> = self
                .list_all(&what, &path)
                .await?
                .iter()
                .filter(|n| {
                    n.get("tags")
                        .and_then(|tags| tags.get(crate::state::OWNER_TAG))
                        .and_then(Value::as_str)
                        == Some(policy)
                })
                .filter_map(|n| n.get("name").and_then(Value::as_str))
                .filter(|name| !declared.iter().any(|d| d.eq_ignore_ascii_case(name)))
                .map(str::to_string)
                .collect();
            orphans.sort();
            out[first].orphan_nsgs = orphans;
        }
        Ok(())
    }

    /// Every item of a paged ARM list, following `nextLink` only on the configured endpoint
    /// (the bearer token goes with each request).
    async fn list_all(&self, what: &str, path: &str) -> Result<Vec<Value>, ArmError> {
        let mut out = Vec::new();
        let mut next = Some(path.to_string());
        let endpoint = self.client.url("/");
        let origin = endpoint.split("/?").next().unwrap_or(&endpoint).to_string();
        for _ in 0..MAX_PAGES {
            let Some(url) = next.take() else {
                return Ok(out);
            };
            let r = self.client.send(what, Method::GET, &url, None, &[]).await?;
            out.extend(
                r.body
                    .get("value")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
            );
            next = match r.body.get("nextLink").and_then(Value::as_str) {
                Some(link) if link.starts_with(&origin) => Some(link.to_string()),
                Some(_) => {
                    return Err(ArmError::Transport {
                        what: what.into(),
                        message:
                            "the answer's nextLink points to another host; it was not followed"
                                .into(),
                    });
                }
                None => None,
            };
        }
        Err(ArmError::Transport {
            what: what.into(),
            message: format!("more than {MAX_PAGES} pages"),
        })
    }

    /// Reads the target's enforcement path into `observed` (its `nsg` already read).
    pub(crate) async fn observe_path(
        &self,
        t: &AzureTarget,
        observed: &mut ObservedAzure,
    ) -> Result<(), ArmError> {
        let own = nsg_id(t).to_ascii_lowercase();
        let mut subnets: BTreeMap<String, String> = BTreeMap::new();
        for s in &t.subnets {
            let id = subnet_id(t, s);
            subnets.insert(id.to_ascii_lowercase(), id);
        }
        if let Some(nsg) = &observed.nsg {
            for id in &nsg.subnets {
                subnets.insert(id.to_ascii_lowercase(), id.clone());
            }
        }
        if let Some(selector) = &t.nics {
            let group = selector
                .resource_group
                .as_deref()
                .unwrap_or(&t.resource_group);
            let path = format!(
                "/subscriptions/{}/resourceGroups/{group}/providers/Microsoft.Network/networkInterfaces",
                t.subscription
            );
            let what = format!("listing network interfaces in resource group {group}");
            let nics: Vec<ObservedNic> = self
                .list_all(&what, &path)
                .await?
                .iter()
                .filter(|n| has_tags(n, &selector.tags))
                .map(observed_nic)
                .collect();
            for id in nics.iter().filter_map(|n| n.subnet.as_ref()) {
                subnets.insert(id.to_ascii_lowercase(), id.clone());
            }
            observed.nics = Some(nics);
        }
        for (key, id) in subnets {
            let what = format!("reading subnet {}", crate::state::subnet_label(&id));
            let found = match self.client.send(&what, Method::GET, &id, None, &[]).await {
                Ok(r) => Some(observed_subnet(&r.body)),
                Err(e) if e.status() == Some(404) => None,
                Err(e) => return Err(e),
            };
            observed.subnets.insert(key, found);
        }
        // Other NSGs that decide the nodes' packets: on a node NIC, or on a node NIC's subnet.
        let mut others: BTreeSet<String> = BTreeSet::new();
        for nic in observed.nics.iter().flatten() {
            others.extend(nic.nsg.clone());
            let subnet = nic.subnet.as_ref().map(|s| s.to_ascii_lowercase());
            if let Some(Some(s)) = subnet.and_then(|s| observed.subnets.get(&s)) {
                others.extend(s.nsg.clone());
            }
        }
        // And the NSG on a declared subnet, when it is not the target's: it may be another NSG
        // of the policy that the subnet moves from.
        for s in &t.subnets {
            if let Some(Some(subnet)) = observed.subnets.get(&subnet_id(t, s).to_ascii_lowercase())
            {
                others.extend(subnet.nsg.clone());
            }
        }
        let mut seen = BTreeSet::new();
        for id in others {
            let key = id.to_ascii_lowercase();
            if key == own || !seen.insert(key.clone()) {
                continue;
            }
            let what = format!("reading NSG {}", resource_name(&id));
            let r = self.client.send(&what, Method::GET, &id, None, &[]).await?;
            let nsg = observed_nsg(&r.body).ok_or_else(|| ArmError::Transport {
                what: what.clone(),
                message: "the answer has no properties.securityRules".into(),
            })?;
            observed.other_nsgs.insert(
                key,
                OtherNsg {
                    id: id.clone(),
                    name: resource_name(&id).to_string(),
                    rules: nsg.rules,
                    tags: nsg.tags,
                },
            );
        }
        Ok(())
    }
}
