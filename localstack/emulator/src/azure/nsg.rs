//! The NSG and security-rule writes (PUT with validation, conflicts and conditions; DELETE
//! as an accepted operation), their lookups and the rule list with `nextLink` paging.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::{ArmError, MAX_RULES, Nsg, PAGE_SIZE, State, rule, uuid_like, with_state};
use crate::http::{Request, Response};

pub(super) fn asg_id(sub: &str, group: &str, asg: &str) -> String {
    format!(
        "/subscriptions/{sub}/resourceGroups/{group}/providers/Microsoft.Network/applicationSecurityGroups/{asg}"
    )
}

pub(super) fn find_nsg<'a>(
    state: &'a State,
    id: &str,
    group: &str,
    nsg: &str,
) -> Result<&'a Nsg, ArmError> {
    state
        .nsgs
        .get(&id.to_ascii_lowercase())
        .ok_or_else(|| ArmError::not_found("Microsoft.Network/networkSecurityGroups", nsg, group))
}

pub(super) fn find_nsg_mut<'a>(
    state: &'a mut State,
    id: &str,
    group: &str,
    nsg: &str,
) -> Result<&'a mut Nsg, ArmError> {
    state
        .nsgs
        .get_mut(&id.to_ascii_lowercase())
        .ok_or_else(|| ArmError::not_found("Microsoft.Network/networkSecurityGroups", nsg, group))
}

pub(super) fn with_async_headers(
    response: Response,
    base: &str,
    sub: &str,
    location: &str,
    op: &str,
) -> Response {
    response
        .with_header(
            "Azure-AsyncOperation",
            format!("{base}/subscriptions/{sub}/providers/Microsoft.Network/locations/{location}/operations/{op}?api-version=2024-05-01"),
        )
        .with_header("Retry-After", "0")
}

/// 202 with the operation headers when something was deleted; 204 when nothing was there.
pub(super) fn accepted_delete(
    state: &mut State,
    base: &str,
    sub: &str,
    location: Option<String>,
) -> Response {
    match location {
        Some(location) => {
            let op = state.operation();
            with_async_headers(Response { status: 202, headers: Vec::new(), body: Vec::new() }, base, sub, &location, &op).with_header(
                "Location",
                format!("{base}/subscriptions/{sub}/providers/Microsoft.Network/locations/{location}/operationResults/{op}?api-version=2024-05-01"),
            )
        }
        None => Response {
            status: 204,
            headers: Vec::new(),
            body: Vec::new(),
        },
    }
}

/// Priority and direction are unique among an NSG's rules.
pub(super) fn check_conflicts(rules: &[Value]) -> Result<(), ArmError> {
    let mut seen: BTreeMap<(i64, String), &str> = BTreeMap::new();
    for r in rules {
        let p = &r["properties"];
        let key = (
            p["priority"].as_i64().unwrap_or(0),
            p["direction"].as_str().unwrap_or_default().to_string(),
        );
        let name = r["name"].as_str().unwrap_or_default();
        if let Some(other) = seen.insert(key, name) {
            return Err(ArmError::new(
                400,
                "SecurityRuleConflict",
                &format!(
                    "Security rule {other} conflicts with rule {name}. Rules cannot have the same Priority and Direction. To learn more, see aka.ms/nsgrules."
                ),
            ));
        }
    }
    if rules.len() > MAX_RULES {
        return Err(ArmError::new(
            400,
            "SecurityRulesLimitReached",
            &format!(
                "The network security group would have {} security rules; at most {MAX_RULES} are allowed.",
                rules.len()
            ),
        ));
    }
    Ok(())
}

pub(super) fn if_match(request: &Request, current: Option<&str>) -> Result<(), ArmError> {
    let Some(wanted) = request.header("if-match") else {
        return Ok(());
    };
    let ok = match current {
        Some(etag) => wanted == "*" || wanted == etag,
        None => false,
    };
    if ok {
        Ok(())
    } else {
        Err(ArmError::new(
            412,
            "PreconditionFailed",
            "The condition specified using HTTP conditional header(s) is not met.",
        ))
    }
}

pub(super) fn put_nsg(
    state: &mut State,
    base: &str,
    sub: &str,
    request: &Request,
    id: &str,
    name: &str,
) -> Result<Response, ArmError> {
    if !rule::valid_name(name) {
        return Err(ArmError::new(
            400,
            "InvalidResourceName",
            &format!("Resource name {name} is invalid."),
        ));
    }
    let key = id.to_ascii_lowercase();
    if_match(request, state.nsgs.get(&key).map(|n| n.etag.as_str()))?;
    if request.header("if-none-match") == Some("*") && state.nsgs.contains_key(&key) {
        return Err(ArmError::new(
            412,
            "PreconditionFailed",
            "The resource exists already (If-None-Match: *).",
        ));
    }
    let body = request
        .json()
        .map_err(|m| ArmError::new(400, "InvalidRequestContent", &m))?;
    let location = body
        .get("location")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if location.is_empty() {
        return Err(ArmError::new(
            400,
            "LocationRequired",
            "The location property is required for this definition.",
        ));
    }
    if let Some(existing) = state.nsgs.get(&key)
        && !existing.location.eq_ignore_ascii_case(&location)
    {
        return Err(ArmError::new(
            400,
            "InvalidResourceLocation",
            &format!(
                "The resource '{name}' already exists in location '{}'. A resource with the same name cannot be created in location '{location}'.",
                existing.location
            ),
        ));
    }
    let etag = state.etag();
    let asgs: Vec<String> = state.asgs.keys().cloned().collect();
    let asg_exists = |asg: &str| asgs.contains(&asg.to_ascii_lowercase());
    let given = body
        .pointer("/properties/securityRules")
        .cloned()
        .unwrap_or(Value::Array(Vec::new()));
    let Value::Array(given) = given else {
        return Err(ArmError::new(
            400,
            "InvalidRequestFormat",
            "Cannot parse the request: securityRules must be an array.",
        ));
    };
    let mut rules = Vec::with_capacity(given.len());
    for r in &given {
        let rule_name = r.get("name").and_then(Value::as_str).unwrap_or_default();
        rules.push(rule::normalize(
            rule_name,
            &format!("{id}/securityRules/{rule_name}"),
            &etag,
            r,
            &asg_exists,
        )?);
    }
    check_conflicts(&rules)?;
    let existed = state.nsgs.contains_key(&key);
    let guid = match state.nsgs.get(&key) {
        Some(n) => n.guid.clone(),
        None => uuid_like(state.next()),
    };
    let nsg = Nsg {
        id: id.to_string(),
        name: name.to_string(),
        location: location.clone(),
        tags: body.get("tags").cloned().unwrap_or(json!({})),
        etag,
        guid,
        rules,
    };
    let op = state.operation();
    let shown = if state.polls_until_done > 0 {
        "Updating"
    } else {
        "Succeeded"
    };
    let answer = state.nsg_json(&nsg, shown);
    state.nsgs.insert(key, nsg);
    Ok(with_async_headers(
        Response::json(if existed { 200 } else { 201 }, &answer),
        base,
        sub,
        &location,
        &op,
    ))
}

#[allow(clippy::too_many_arguments)]
pub(super) fn put_rule(
    state: &mut State,
    base: &str,
    sub: &str,
    request: &Request,
    nsg_id: &str,
    group: &str,
    nsg: &str,
    name: &str,
) -> Result<Response, ArmError> {
    let body = request
        .json()
        .map_err(|m| ArmError::new(400, "InvalidRequestContent", &m))?;
    let etag = state.etag();
    let asgs: Vec<String> = state.asgs.keys().cloned().collect();
    let asg_exists = |asg: &str| asgs.contains(&asg.to_ascii_lowercase());
    let polls = state.polls_until_done;
    let found = find_nsg_mut(state, nsg_id, group, nsg)?;
    let position = found.rules.iter().position(|r| {
        r["name"]
            .as_str()
            .is_some_and(|n| n.eq_ignore_ascii_case(name))
    });
    if_match(
        request,
        position.map(|i| found.rules[i]["etag"].as_str().unwrap_or_default()),
    )?;
    let stored_name = position.map_or(name.to_string(), |i| {
        found.rules[i]["name"].as_str().unwrap_or(name).to_string()
    });
    let stored = rule::normalize(
        &stored_name,
        &format!("{nsg_id}/securityRules/{stored_name}"),
        &etag,
        &body,
        &asg_exists,
    )?;
    let mut rules = found.rules.clone();
    match position {
        Some(i) => rules[i] = stored.clone(),
        None => rules.push(stored.clone()),
    }
    check_conflicts(&rules)?;
    found.rules = rules;
    found.etag = etag;
    let location = found.location.clone();
    let op = state.operation();
    let shown = if polls > 0 { "Updating" } else { "Succeeded" };
    Ok(with_async_headers(
        Response::json(
            if position.is_some() { 200 } else { 201 },
            &with_state(&stored, shown),
        ),
        base,
        sub,
        &location,
        &op,
    ))
}

pub(super) fn list_rules(
    state: &State,
    base: &str,
    request: &Request,
    nsg_id: &str,
    group: &str,
    nsg: &str,
) -> Result<Response, ArmError> {
    let found = find_nsg(state, nsg_id, group, nsg)?;
    let skip = match request.query("$skiptoken") {
        Some(token) => token.parse::<usize>().map_err(|_| {
            ArmError::new(
                400,
                "InvalidSkipToken",
                &format!("The skip token '{token}' is not valid."),
            )
        })?,
        None => 0,
    };
    let page: Vec<Value> = found
        .rules
        .iter()
        .skip(skip)
        .take(PAGE_SIZE)
        .cloned()
        .collect();
    let mut body = Map::new();
    body.insert("value".into(), Value::Array(page));
    if skip.saturating_add(PAGE_SIZE) < found.rules.len() {
        let version = request.query("api-version").unwrap_or("2024-05-01");
        body.insert(
            "nextLink".into(),
            json!(format!(
                "{base}{nsg_id}/securityRules?api-version={version}&$skiptoken={}",
                skip.saturating_add(PAGE_SIZE)
            )),
        );
    }
    Ok(Response::json(200, &Value::Object(body)))
}
