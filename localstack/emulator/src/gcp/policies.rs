//! Firewall policies: hierarchical ones (`locations/global/firewallPolicies`, created under an
//! organization or folder and associated with organizations or folders), global network ones
//! (`projects/{p}/global/firewallPolicies`) and regional network ones
//! (`projects/{p}/regions/{r}/firewallPolicies`), both associated with networks, each with
//! `get`, `insert`, `addRule` and `addAssociation`; `networks.getEffectiveFirewalls`, which
//! answers the VPC rules of the network and every policy that applies to it, hierarchical ones
//! from the top of the project's ancestry down, then the network's; and
//! `regionNetworkFirewallPolicies.getEffectiveFirewalls`, which adds the region's
//! (`NETWORK_REGIONAL`).
//!
//! Differences from the real API, on purpose: a project's ancestry is set by the admin call
//! `POST /_emulator/gcp/ancestry` (there is no Resource Manager here; by default a project has
//! no ancestors); writes answer an operation that is already DONE.

use serde_json::{Value, json};

use super::{GcpError, State};
use crate::http::Request;

/// Priorities of the rules every new policy starts with (`goto_next` for everything).
const DEFAULT_RULE_PRIORITIES: [(i64, &str, &str); 4] = [
    (2_147_483_644, "INGRESS", "::/0"),
    (2_147_483_645, "EGRESS", "::/0"),
    (2_147_483_646, "INGRESS", "0.0.0.0/0"),
    (2_147_483_647, "EGRESS", "0.0.0.0/0"),
];

fn default_rules() -> Vec<Value> {
    DEFAULT_RULE_PRIORITIES
        .iter()
        .map(|(priority, direction, range)| {
            let side = if *direction == "INGRESS" {
                "srcIpRanges"
            } else {
                "destIpRanges"
            };
            json!({"kind": "compute#firewallPolicyRule", "priority": priority, "direction": direction,
                   "action": "goto_next", "match": {side: [range], "layer4Configs": [{"ipProtocol": "all"}]},
                   "description": "default rule"})
        })
        .collect()
}

fn done(state: &mut State, kind: &str, target: &str) -> Value {
    let id = state.id();
    json!({"kind": "compute#operation", "id": id, "name": format!("operation-{id}"),
           "operationType": kind, "targetLink": target, "status": "DONE", "progress": 100})
}

fn body_of(request: &Request) -> Result<Value, GcpError> {
    request.json().map_err(|m| GcpError::invalid(&m))
}

/// A rule as the API stores it; `action` and `priority` are required.
fn rule(body: &Value) -> Result<Value, GcpError> {
    let priority = body
        .get("priority")
        .and_then(Value::as_i64)
        .ok_or_else(|| GcpError::required("firewallPolicyRule.priority"))?;
    if !(0..=2_147_483_647).contains(&priority) {
        return Err(GcpError::invalid(&format!(
            "Invalid value for field 'firewallPolicyRule.priority': '{priority}'."
        )));
    }
    let action = body
        .get("action")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !matches!(action, "allow" | "deny" | "goto_next") {
        return Err(GcpError::invalid(&format!(
            "Invalid value for field 'firewallPolicyRule.action': '{action}'. Must be one of allow, deny, goto_next"
        )));
    }
    let mut stored = body.clone();
    stored["kind"] = json!("compute#firewallPolicyRule");
    if stored.get("direction").is_none() {
        stored["direction"] = json!("INGRESS");
    }
    Ok(stored)
}

fn add_rule(policy: &mut Value, body: &Value) -> Result<(), GcpError> {
    let stored = rule(body)?;
    let rules = policy["rules"].as_array_mut().expect("stored as an array");
    if rules.iter().any(|r| r["priority"] == stored["priority"]) {
        return Err(GcpError::invalid(&format!(
            "A rule with priority {} already exists in the firewall policy.",
            stored["priority"]
        )));
    }
    rules.push(stored);
    rules.sort_by_key(|r| r["priority"].as_i64().unwrap_or(0));
    Ok(())
}

fn add_association(policy: &mut Value, body: &Value) -> Result<(), GcpError> {
    let target = body
        .get("attachmentTarget")
        .and_then(Value::as_str)
        .ok_or_else(|| GcpError::required("firewallPolicyAssociation.attachmentTarget"))?;
    let name = body
        .get("name")
        .and_then(Value::as_str)
        .map_or_else(|| format!("association-{target}"), str::to_string);
    let list = policy["associations"]
        .as_array_mut()
        .expect("stored as an array");
    list.push(json!({"name": name, "attachmentTarget": target}));
    Ok(())
}

/// `locations/global/firewallPolicies…` (hierarchical).
pub(super) fn hierarchical(
    state: &mut State,
    method: &str,
    rest: &[&str],
    request: &Request,
) -> Result<Value, GcpError> {
    let base = format!("{}/locations/global/firewallPolicies", state.api_base);
    match (method, rest) {
        ("POST", []) => {
            let parent = request
                .query("parentId")
                .ok_or_else(|| GcpError::required("parentId"))?
                .to_string();
            let body = body_of(request)?;
            let id = state.id();
            let mut policy = json!({"kind": "compute#firewallPolicy", "id": id, "name": id,
                "shortName": body.get("shortName").cloned().unwrap_or(json!(id)),
                "displayName": body.get("displayName").or(body.get("shortName")).cloned().unwrap_or(json!(id)),
                "description": body.get("description").cloned().unwrap_or(json!("")),
                "parent": parent, "rules": default_rules(), "associations": [],
                "selfLink": format!("{base}/{id}")});
            for r in body
                .get("rules")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                add_rule(&mut policy, r)?;
            }
            state.hierarchical.insert(id.clone(), policy);
            Ok(done(state, "createFirewallPolicy", &format!("{base}/{id}")))
        }
        ("GET", [name]) => state.hierarchical.get(*name).cloned().ok_or_else(|| {
            GcpError::not_found(&format!("locations/global/firewallPolicies/{name}"))
        }),
        ("POST", [name, verb]) => {
            let body = body_of(request)?;
            let policy = state.hierarchical.get_mut(*name).ok_or_else(|| {
                GcpError::not_found(&format!("locations/global/firewallPolicies/{name}"))
            })?;
            match *verb {
                "addRule" => add_rule(policy, &body)?,
                "addAssociation" => add_association(policy, &body)?,
                _ => return Err(GcpError::not_found(verb)),
            }
            Ok(done(state, verb, &format!("{base}/{name}")))
        }
        _ => Err(GcpError::not_found("no such firewallPolicies API")),
    }
}

/// `projects/{p}/{scope}/firewallPolicies…` (network firewall policies; `scope` is `global`
/// or `regions/{r}`). Stored by `{scope}/{name}`.
pub(super) fn network(
    state: &mut State,
    project: &str,
    scope: &str,
    method: &str,
    rest: &[&str],
    request: &Request,
) -> Result<Value, GcpError> {
    let base = format!(
        "{}/projects/{project}/{scope}/firewallPolicies",
        state.api_base
    );
    match (method, rest) {
        ("POST", []) => {
            let body = body_of(request)?;
            let name = body
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| GcpError::required("resource.name"))?
                .to_string();
            let id = state.id();
            let mut policy = json!({"kind": "compute#firewallPolicy", "id": id, "name": name,
                "description": body.get("description").cloned().unwrap_or(json!("")),
                "rules": default_rules(), "associations": [], "selfLink": format!("{base}/{name}")});
            for r in body
                .get("rules")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                add_rule(&mut policy, r)?;
            }
            let p = state.project(project);
            let key = format!("{scope}/{name}");
            if p.network_policies.contains_key(&key) {
                return Err(GcpError::already_exists(&format!(
                    "projects/{project}/{scope}/firewallPolicies/{name}"
                )));
            }
            p.network_policies.insert(key, policy);
            Ok(done(state, "insert", &format!("{base}/{name}")))
        }
        ("GET", [name]) => state
            .project(project)
            .network_policies
            .get(&format!("{scope}/{name}"))
            .cloned()
            .ok_or_else(|| {
                GcpError::not_found(&format!(
                    "projects/{project}/{scope}/firewallPolicies/{name}"
                ))
            }),
        ("POST", [name, verb]) => {
            let body = body_of(request)?;
            let policy = state
                .project(project)
                .network_policies
                .get_mut(&format!("{scope}/{name}"))
                .ok_or_else(|| {
                    GcpError::not_found(&format!(
                        "projects/{project}/{scope}/firewallPolicies/{name}"
                    ))
                })?;
            match *verb {
                "addRule" => add_rule(policy, &body)?,
                "addAssociation" => add_association(policy, &body)?,
                _ => return Err(GcpError::not_found(verb)),
            }
            Ok(done(state, verb, &format!("{base}/{name}")))
        }
        _ => Err(GcpError::not_found("no such firewallPolicies API")),
    }
}

fn effective_policy(policy: &Value, kind: &str) -> Value {
    json!({"name": policy["name"], "shortName": policy.get("shortName").cloned().unwrap_or(policy["name"].clone()),
           "displayName": policy.get("displayName").cloned().unwrap_or(policy["name"].clone()),
           "type": kind, "rules": policy["rules"]})
}

/// `regionNetworkFirewallPolicies.getEffectiveFirewalls?network=URL`: the network's answer
/// plus the region's network policies associated with it.
pub(super) fn effective_in_region(
    state: &mut State,
    project: &str,
    region: &str,
    request: &Request,
) -> Result<Value, GcpError> {
    let url = request
        .query("network")
        .ok_or_else(|| GcpError::required("network"))?
        .to_string();
    let network = url
        .rsplit_once("/global/networks/")
        .map_or(url.as_str(), |(_, n)| n)
        .to_string();
    effective_scoped(state, project, &network, Some(region))
}

/// `networks.getEffectiveFirewalls`.
pub(super) fn effective(
    state: &mut State,
    project: &str,
    network: &str,
) -> Result<Value, GcpError> {
    effective_scoped(state, project, network, None)
}

fn effective_scoped(
    state: &mut State,
    project: &str,
    network: &str,
    region: Option<&str>,
) -> Result<Value, GcpError> {
    let ancestry = state.ancestry.get(project).cloned().unwrap_or_default();
    let api_base = state.api_base.clone();
    let p = state.project(project);
    if !p.networks.contains_key(network) {
        return Err(GcpError::not_found(&format!(
            "projects/{project}/global/networks/{network}"
        )));
    }
    let on_network = |fw: &&Value| {
        fw["network"]
            .as_str()
            .is_some_and(|n| n.ends_with(&format!("/global/networks/{network}")))
    };
    let firewalls: Vec<Value> = p.firewalls.values().filter(on_network).cloned().collect();
    let network_url = format!("projects/{project}/global/networks/{network}");
    let mut policies = Vec::new();
    for ancestor in &ancestry {
        for policy in state.hierarchical.values() {
            let associated = policy["associations"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|a| a["attachmentTarget"].as_str() == Some(ancestor.as_str()));
            if associated {
                policies.push(effective_policy(policy, "HIERARCHY"));
            }
        }
    }
    let p = state.project(project);
    let regional = region.map(|r| format!("regions/{r}/"));
    for (key, policy) in &p.network_policies {
        let kind = if key.starts_with("global/") {
            "NETWORK"
        } else if regional.as_deref().is_some_and(|r| key.starts_with(r)) {
            "NETWORK_REGIONAL"
        } else {
            continue;
        };
        let associated = policy["associations"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|a| {
                a["attachmentTarget"].as_str().is_some_and(|t| {
                    t == network_url
                        || t.ends_with(&format!("/{network_url}"))
                        || t == format!("{api_base}/{network_url}")
                })
            });
        if associated {
            policies.push(effective_policy(policy, kind));
        }
    }
    Ok(json!({"firewalls": firewalls, "firewallPolicys": policies}))
}
