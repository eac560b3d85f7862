//! The Compute writes — firewall insert, patch, update, delete; network insert and delete —
//! and the global operations they return (request-id replay, polling).

use serde_json::{Value, json};

use super::{GcpError, Operation, State, firewall, timestamp};
use crate::http::Request;

/// Looks up a request id: the operation an earlier identical request created.
pub(super) fn replayed(state: &mut State, project: &str, request: &Request) -> Option<Value> {
    let id = request.query("requestId")?;
    let p = state.project(project);
    let name = p.request_ids.get(id)?.clone();
    p.operations.get(&name).map(|op| op.body.clone())
}

pub(super) fn valid_request_id(request: &Request) -> Result<(), GcpError> {
    match request.query("requestId") {
        // The API wants a UUID; it refuses the all-zero one.
        Some(id) if !is_uuid(id) || id == "00000000-0000-0000-0000-000000000000" => {
            Err(GcpError::invalid(&format!(
                "Invalid value for field 'requestId': '{id}'. The request id must be a valid UUID with the exception that zero UUID is not supported."
            )))
        }
        _ => Ok(()),
    }
}

pub(super) fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

pub(super) fn insert(
    state: &mut State,
    project: &str,
    request: &Request,
) -> Result<Value, GcpError> {
    valid_request_id(request)?;
    if let Some(op) = replayed(state, project, request) {
        return Ok(op);
    }
    let body = firewall::parse_body(&request.json().map_err(|m| GcpError::invalid(&m))?)?;
    let context = firewall::Context {
        project,
        api_base: &state.api_base.clone(),
        id: state.id(),
        creation_timestamp: timestamp(),
    };
    let rule = firewall::normalize(&body, &context)?;
    let name = rule["name"].as_str().unwrap_or_default().to_string();
    network_must_exist(state, project, &rule)?;
    let resource = format!("projects/{project}/global/firewalls/{name}");
    let p = state.project(project);
    if p.firewalls.contains_key(&name) {
        return Err(GcpError::already_exists(&resource));
    }
    if p.firewalls.len() as u64 >= p.firewall_quota {
        // Quota is checked when the operation runs: the call succeeds, the operation fails.
        let message = format!(
            "Quota 'FIREWALLS' exceeded.  Limit: {}.0 globally.",
            p.firewall_quota
        );
        let failure = json!({"errors": [{"code": "QUOTA_EXCEEDED", "message": message}]});
        return Ok(new_operation(
            state,
            project,
            "insert",
            &name,
            rule["id"].clone(),
            request,
            Some((403, "Forbidden", failure)),
        ));
    }
    let id = rule["id"].clone();
    p.firewalls.insert(name.clone(), rule);
    Ok(new_operation(
        state, project, "insert", &name, id, request, None,
    ))
}

pub(super) enum Change {
    Patch,
    Update,
}

pub(super) fn change(
    state: &mut State,
    project: &str,
    name: &str,
    request: &Request,
    kind: Change,
) -> Result<Value, GcpError> {
    valid_request_id(request)?;
    if let Some(op) = replayed(state, project, request) {
        return Ok(op);
    }
    let resource = format!("projects/{project}/global/firewalls/{name}");
    let existing = state
        .project(project)
        .firewalls
        .get(name)
        .cloned()
        .ok_or_else(|| GcpError::not_found(&resource))?;
    let body = request.json().map_err(|m| GcpError::invalid(&m))?;
    // Checks field names and types before merging.
    firewall::parse_body(&body)?;
    let merged = match kind {
        // JSON merge patch: present fields replace, null resets, absent fields stay.
        Change::Patch => {
            let mut merged = existing.clone();
            if let (Some(target), Some(patch)) = (merged.as_object_mut(), body.as_object()) {
                for (key, value) in patch {
                    if value.is_null() {
                        target.remove(key);
                    } else {
                        target.insert(key.clone(), value.clone());
                    }
                }
                // A patch that sets one action replaces the other.
                if patch.contains_key("allowed") && !patch.contains_key("denied") {
                    target.remove("denied");
                }
                if patch.contains_key("denied") && !patch.contains_key("allowed") {
                    target.remove("allowed");
                }
            }
            merged
        }
        Change::Update => body,
    };
    if let Some(given) = merged.get("name").and_then(Value::as_str)
        && given != name
    {
        return Err(GcpError::invalid(&format!(
            "Invalid value for field 'resource.name': '{given}'. The name of a firewall cannot be changed."
        )));
    }
    if let (Some(before), Some(after)) = (existing.get("network"), merged.get("network"))
        && firewall::network_url(&state.api_base, project, after.as_str().unwrap_or_default())
            .map(|(url, _)| url)
            .ok()
            .as_ref()
            != before.as_str().map(str::to_string).as_ref()
    {
        return Err(GcpError::invalid(
            "Invalid value for field 'resource.network': ''. The network of a firewall cannot be changed.",
        ));
    }
    let mut merged = merged;
    if let Some(object) = merged.as_object_mut() {
        object.insert("name".into(), json!(name));
        // A rule's network never changes: a body without one keeps the rule where it is.
        if object.get("network").is_none_or(Value::is_null) {
            object.insert("network".into(), existing["network"].clone());
        }
        for output_only in ["kind", "id", "creationTimestamp", "selfLink"] {
            object.remove(output_only);
        }
    }
    let parsed = firewall::parse_body(&merged)?;
    let context = firewall::Context {
        project,
        api_base: &state.api_base.clone(),
        id: existing["id"].as_str().unwrap_or_default().to_string(),
        creation_timestamp: existing["creationTimestamp"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    };
    let rule = firewall::normalize(&parsed, &context)?;
    let id = rule["id"].clone();
    state
        .project(project)
        .firewalls
        .insert(name.to_string(), rule);
    let kind = match kind {
        Change::Patch => "patch",
        Change::Update => "update",
    };
    Ok(new_operation(state, project, kind, name, id, request, None))
}

pub(super) fn delete(
    state: &mut State,
    project: &str,
    name: &str,
    request: &Request,
) -> Result<Value, GcpError> {
    valid_request_id(request)?;
    if let Some(op) = replayed(state, project, request) {
        return Ok(op);
    }
    let removed = state.project(project).firewalls.remove(name);
    let Some(rule) = removed else {
        return Err(GcpError::not_found(&format!(
            "projects/{project}/global/firewalls/{name}"
        )));
    };
    Ok(new_operation(
        state,
        project,
        "delete",
        name,
        rule["id"].clone(),
        request,
        None,
    ))
}

pub(super) fn network_must_exist(
    state: &mut State,
    project: &str,
    rule: &Value,
) -> Result<(), GcpError> {
    let url = rule["network"].as_str().unwrap_or_default();
    let name = url.rsplit('/').next().unwrap_or_default();
    if state.project(project).networks.contains_key(name) {
        Ok(())
    } else {
        Err(GcpError::not_found(&format!(
            "projects/{project}/global/networks/{name}"
        )))
    }
}

pub(super) fn insert_network(
    state: &mut State,
    project: &str,
    request: &Request,
) -> Result<Value, GcpError> {
    valid_request_id(request)?;
    if let Some(op) = replayed(state, project, request) {
        return Ok(op);
    }
    let body = request.json().map_err(|m| GcpError::invalid(&m))?;
    let name = body
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if name.is_empty() {
        return Err(GcpError::required("resource.name"));
    }
    if firewall::network_url(&state.api_base, project, &name).is_err()
        || !name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
    {
        return Err(GcpError::invalid(&format!(
            "Invalid value for field 'resource.name': '{name}'. Must be a match of regex '{}'",
            firewall::NAME_PATTERN
        )));
    }
    let auto = body
        .get("autoCreateSubnetworks")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let id = state.id();
    let mut network = state.network_body(project, &name, auto, id.clone());
    if let Some(order) = body
        .get("networkFirewallPolicyEnforcementOrder")
        .and_then(Value::as_str)
    {
        if !matches!(order, "AFTER_CLASSIC_FIREWALL" | "BEFORE_CLASSIC_FIREWALL") {
            return Err(GcpError::invalid(&format!(
                "Invalid value for field 'resource.networkFirewallPolicyEnforcementOrder': '{order}'."
            )));
        }
        network["networkFirewallPolicyEnforcementOrder"] = json!(order);
    }
    let p = state.project(project);
    if p.networks.contains_key(&name) {
        return Err(GcpError::already_exists(&format!(
            "projects/{project}/global/networks/{name}"
        )));
    }
    p.networks.insert(name.clone(), network);
    let op = new_operation(state, project, "insert", &name, json!(id), request, None);
    // Networks are the one resource here whose target link is not a firewall.
    Ok(retarget(state, project, op, &format!("networks/{name}")))
}

pub(super) fn delete_network(
    state: &mut State,
    project: &str,
    name: &str,
    request: &Request,
) -> Result<Value, GcpError> {
    valid_request_id(request)?;
    let resource = format!("projects/{project}/global/networks/{name}");
    let p = state.project(project);
    let Some(network) = p.networks.get(name).cloned() else {
        return Err(GcpError::not_found(&resource));
    };
    let url = network["selfLink"].as_str().unwrap_or_default().to_string();
    if let Some(user) = p
        .firewalls
        .values()
        .find(|rule| rule["network"] == url.as_str())
    {
        return Err(GcpError::new(
            400,
            "resourceInUseByAnotherResource",
            &format!(
                "The network resource '{resource}' is already being used by 'projects/{project}/global/firewalls/{}'",
                user["name"].as_str().unwrap_or_default()
            ),
        ));
    }
    p.networks.remove(name);
    let op = new_operation(
        state,
        project,
        "delete",
        name,
        network["id"].clone(),
        request,
        None,
    );
    Ok(retarget(state, project, op, &format!("networks/{name}")))
}

pub(super) fn retarget(state: &mut State, project: &str, mut op: Value, target: &str) -> Value {
    let link = format!("{}/projects/{project}/global/{target}", state.api_base);
    op["targetLink"] = json!(link);
    if let Some(name) = op["name"].as_str()
        && let Some(stored) = state.project(project).operations.get_mut(name)
    {
        stored.body["targetLink"] = json!(link);
    }
    op
}

pub(super) fn new_operation(
    state: &mut State,
    project: &str,
    kind: &str,
    target: &str,
    target_id: Value,
    request: &Request,
    failure: Option<(u16, &str, Value)>,
) -> Value {
    let id = state.id();
    let name = format!("operation-{}-{}", id, &id[id.len().saturating_sub(8)..]);
    let polls_left = state.polls_until_done;
    let now = timestamp();
    let mut body = json!({
        "kind": "compute#operation",
        "id": id,
        "name": name,
        "operationType": kind,
        "targetLink": format!("{}/projects/{project}/global/firewalls/{target}", state.api_base),
        "targetId": target_id,
        "status": if polls_left == 0 { "DONE" } else { "RUNNING" },
        "user": "local-cloud@emulator.invalid",
        "progress": if polls_left == 0 { 100 } else { 0 },
        "insertTime": now,
        "startTime": now,
        "selfLink": format!("{}/projects/{project}/global/operations/{name}", state.api_base),
    });
    if polls_left == 0 {
        body["endTime"] = json!(now);
    }
    if let Some((status, message, errors)) = failure {
        body["error"] = errors;
        body["httpErrorStatusCode"] = json!(status);
        body["httpErrorMessage"] = json!(message);
    }
    let p = state.project(project);
    if let Some(request_id) = request.query("requestId") {
        p.request_ids.insert(request_id.to_string(), name.clone());
    }
    p.operations.insert(
        name,
        Operation {
            body: body.clone(),
            polls_left,
        },
    );
    body
}

pub(super) fn poll_operation(
    state: &mut State,
    project: &str,
    name: &str,
    wait: bool,
) -> Result<Value, GcpError> {
    let resource = format!("projects/{project}/global/operations/{name}");
    let op = state
        .project(project)
        .operations
        .get_mut(name)
        .ok_or_else(|| GcpError::not_found(&resource))?;
    op.polls_left = if wait {
        0
    } else {
        op.polls_left.saturating_sub(1)
    };
    if op.polls_left == 0 && op.body["status"] != "DONE" {
        op.body["status"] = json!("DONE");
        op.body["progress"] = json!(100);
        op.body["endTime"] = json!(timestamp());
    }
    Ok(op.body.clone())
}
