//! The Azure Resource Manager surface perimeter uses: `Microsoft.Network/networkSecurityGroups`
//! (GET, PUT with inline `securityRules`, DELETE, list per resource group), their
//! `securityRules` (list with `nextLink` paging, GET, PUT, DELETE) and `defaultSecurityRules`,
//! `applicationSecurityGroups` (GET, PUT, DELETE), `virtualNetworks` and their `subnets`
//! (with an NSG association), `networkInterfaces` (NSG, subnet and ASG membership; list per
//! resource group with paging) and their `effectiveNetworkSecurityGroups` (see `network`),
//! and long-running operations the ARM way:
//! PUT answers 201/200 with `provisioningState` and an `Azure-AsyncOperation` header, DELETE
//! answers 202 with `Azure-AsyncOperation` and `Location` (204 when there was nothing), and
//! the operation status is polled at `/subscriptions/{s}/providers/Microsoft.Network/
//! locations/{l}/operations/{id}`.
//!
//! Every call needs `api-version` (one Microsoft.Network has registered) and a bearer token
//! (any value). Differences from ARM, on purpose: resource groups exist on first use; a
//! change takes effect when accepted (its operation can be made to report InProgress for a
//! few polls); `Retry-After` on operations is 0 unless a test asks for delays.

mod network;
mod nsg;
mod routes;
mod rule;

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::http::{Emulator, Request, Response, lock};
use nsg::{
    accepted_delete, asg_id, find_nsg, find_nsg_mut, list_rules, put_nsg, put_rule,
    with_async_headers,
};
use routes::{Route, parse, token};
pub(crate) use routes::{is_token_path, route_name};

/// Microsoft.Network API versions the emulator accepts (the real service lists many more).
const API_VERSIONS: &[&str] = &[
    "2020-11-01",
    "2021-02-01",
    "2021-05-01",
    "2022-01-01",
    "2022-05-01",
    "2022-07-01",
    "2022-09-01",
    "2022-11-01",
    "2023-02-01",
    "2023-04-01",
    "2023-05-01",
    "2023-06-01",
    "2023-09-01",
    "2023-11-01",
    "2024-01-01",
    "2024-03-01",
    "2024-05-01",
    "2024-07-01",
    "2024-10-01",
    "2025-01-01",
    "2025-03-01",
    "2025-05-01",
    "2025-07-01",
    "2026-01-01",
    "2026-03-01",
];

/// Rules one NSG may hold (ARM's documented limit).
const MAX_RULES: usize = 1000;
/// Rules per page of a `securityRules` list; the rest is behind `nextLink`.
const PAGE_SIZE: usize = 100;

/// An ARM error: status, code and message, answered as `{"error": {"code", "message"}}`.
#[derive(Debug)]
pub(crate) struct ArmError {
    pub(crate) status: u16,
    pub(crate) code: String,
    pub(crate) message: String,
}

impl ArmError {
    pub(crate) fn new(status: u16, code: &str, message: &str) -> ArmError {
        ArmError {
            status,
            code: code.into(),
            message: message.into(),
        }
    }
    fn not_found(kind: &str, name: &str, group: &str) -> ArmError {
        ArmError::new(
            404,
            "NotFound",
            &format!(
                "Resource /{kind}/{name} under resource group {group} was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"
            ),
        )
    }
}

pub(crate) fn error(status: u16, code: &str, message: &str) -> Response {
    Response::json(
        status,
        &json!({"error": {"code": code, "message": message, "details": []}}),
    )
}

#[derive(Default)]
pub(crate) struct State {
    /// By lower-case resource id (ARM ids are case-insensitive).
    nsgs: BTreeMap<String, Nsg>,
    asgs: BTreeMap<String, Value>,
    /// Virtual networks with their subnets inline, as ARM JSON.
    vnets: BTreeMap<String, Value>,
    /// Network interfaces, as ARM JSON.
    nics: BTreeMap<String, Value>,
    operations: BTreeMap<String, Operation>,
    /// Polls an operation answers InProgress before Succeeded (0: done when created).
    pub(crate) polls_until_done: u64,
    counter: u64,
}

struct Nsg {
    id: String,
    name: String,
    location: String,
    tags: Value,
    etag: String,
    guid: String,
    rules: Vec<Value>,
}

struct Operation {
    polls_left: u64,
    /// What the operation's `Location` answers when done (a POST's result), if anything.
    result: Option<Value>,
}

impl State {
    pub(crate) fn reset(&mut self) {
        *self = State::default();
    }

    fn next(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    fn etag(&mut self) -> String {
        let n = self.next();
        format!("W/\"{}\"", uuid_like(n))
    }

    /// Starts an operation; returns its id.
    fn operation(&mut self) -> String {
        let n = self.next();
        let id = uuid_like(n + 0x5eed);
        self.operations.insert(
            id.clone(),
            Operation {
                polls_left: self.polls_until_done,
                result: None,
            },
        );
        id
    }

    fn nsg_json(&self, nsg: &Nsg, state: &str) -> Value {
        let rules: Vec<Value> = nsg.rules.iter().map(|r| with_state(r, state)).collect();
        let (subnets, nics) = network::nsg_users(self, &nsg.id);
        json!({
            "name": nsg.name,
            "id": nsg.id,
            "etag": nsg.etag,
            "type": "Microsoft.Network/networkSecurityGroups",
            "location": nsg.location,
            "tags": nsg.tags,
            "properties": {
                "provisioningState": state,
                "resourceGuid": nsg.guid,
                "securityRules": rules,
                "defaultSecurityRules": default_rules(&nsg.id, &nsg.etag),
                "subnets": subnets,
                "networkInterfaces": nics,
            }
        })
    }
}

fn with_state(rule: &Value, state: &str) -> Value {
    let mut rule = rule.clone();
    rule["properties"]["provisioningState"] = json!(state);
    rule
}

fn uuid_like(n: u64) -> String {
    let h = format!(
        "{:032x}",
        u128::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)
    );
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// The six rules every NSG has and no one can remove.
fn default_rules(nsg_id: &str, etag: &str) -> Vec<Value> {
    let rule = |name: &str,
                priority: u16,
                direction: &str,
                access: &str,
                source: &str,
                destination: &str,
                description: &str| {
        json!({
            "name": name,
            "id": format!("{nsg_id}/defaultSecurityRules/{name}"),
            "etag": etag,
            "type": "Microsoft.Network/networkSecurityGroups/defaultSecurityRules",
            "properties": {
                "provisioningState": "Succeeded", "description": description, "protocol": "*",
                "sourcePortRange": "*", "destinationPortRange": "*",
                "sourceAddressPrefix": source, "destinationAddressPrefix": destination,
                "access": access, "priority": priority, "direction": direction,
                "sourcePortRanges": [], "destinationPortRanges": [],
                "sourceAddressPrefixes": [], "destinationAddressPrefixes": [],
            }
        })
    };
    vec![
        rule(
            "AllowVnetInBound",
            65000,
            "Inbound",
            "Allow",
            "VirtualNetwork",
            "VirtualNetwork",
            "Allow inbound traffic from all VMs in VNET",
        ),
        rule(
            "AllowAzureLoadBalancerInBound",
            65001,
            "Inbound",
            "Allow",
            "AzureLoadBalancer",
            "*",
            "Allow inbound traffic from azure load balancer",
        ),
        rule(
            "DenyAllInBound",
            65500,
            "Inbound",
            "Deny",
            "*",
            "*",
            "Deny all inbound traffic",
        ),
        rule(
            "AllowVnetOutBound",
            65000,
            "Outbound",
            "Allow",
            "VirtualNetwork",
            "VirtualNetwork",
            "Allow outbound traffic from all VMs to all VMs in VNET",
        ),
        rule(
            "AllowInternetOutBound",
            65001,
            "Outbound",
            "Allow",
            "*",
            "Internet",
            "Allow outbound traffic from all VMs to Internet",
        ),
        rule(
            "DenyAllOutBound",
            65500,
            "Outbound",
            "Deny",
            "*",
            "*",
            "Deny all outbound traffic",
        ),
    ]
}

pub(crate) fn handle(emulator: &Emulator, request: &Request) -> Response {
    match serve(emulator, request) {
        Ok(response) => response,
        Err(e) => error(e.status, &e.code, &e.message),
    }
}

fn serve(emulator: &Emulator, request: &Request) -> Result<Response, ArmError> {
    if is_token_path(&request.path) {
        return Ok(token(request));
    }
    match request.query("api-version") {
        None | Some("") => {
            return Err(ArmError::new(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            ));
        }
        Some(v) if !API_VERSIONS.contains(&v) => {
            return Err(ArmError::new(
                400,
                "InvalidResourceType",
                &format!(
                    "The resource type could not be found in the namespace 'Microsoft.Network' for api version '{v}'. The supported api-versions are '{}'.",
                    API_VERSIONS.join(",")
                ),
            ));
        }
        Some(_) => {}
    }
    let authorized = request.header("authorization").is_some_and(|value| {
        value.len() > 7
            && value
                .get(..7)
                .is_some_and(|b| b.eq_ignore_ascii_case("Bearer "))
    });
    if !authorized {
        return Err(ArmError::new(
            401,
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing or is not a bearer token.",
        ));
    }
    let Some((sub, route)) = parse(&request.path) else {
        return Err(ArmError::new(
            404,
            "InvalidResourceType",
            &format!("The resource type could not be found: {}", request.path),
        ));
    };
    let base = &emulator.base_url;
    let mut state = lock(&emulator.azure);
    let state = &mut *state;
    let method = request.method.as_str();
    let nsg_id = |group: &str, nsg: &str| {
        format!(
            "/subscriptions/{sub}/resourceGroups/{group}/providers/Microsoft.Network/networkSecurityGroups/{nsg}"
        )
    };
    match (method, route) {
        ("GET", Route::NsgList { group }) => {
            let prefix = nsg_id(group, "").to_ascii_lowercase();
            let items: Vec<Value> = state
                .nsgs
                .iter()
                .filter(|(key, _)| key.starts_with(&prefix))
                .map(|(_, nsg)| state.nsg_json(nsg, "Succeeded"))
                .collect();
            Ok(Response::json(200, &json!({"value": items})))
        }
        ("GET", Route::Nsg { group, nsg }) => {
            let found = state
                .nsgs
                .get(&nsg_id(group, nsg).to_ascii_lowercase())
                .ok_or_else(|| {
                    ArmError::not_found("Microsoft.Network/networkSecurityGroups", nsg, group)
                })?;
            Ok(Response::json(200, &state.nsg_json(found, "Succeeded")))
        }
        ("PUT", Route::Nsg { group, nsg }) => {
            put_nsg(state, base, sub, request, &nsg_id(group, nsg), nsg)
        }
        // updateTags: replaces the NSG's tags, honours If-Match, answers synchronously.
        ("PATCH", Route::Nsg { group, nsg }) => {
            let key = nsg_id(group, nsg).to_ascii_lowercase();
            nsg::if_match(request, state.nsgs.get(&key).map(|n| n.etag.as_str()))?;
            let body = request
                .json()
                .map_err(|m| ArmError::new(400, "InvalidRequestContent", &m))?;
            let tags = body.get("tags").cloned().unwrap_or_else(|| json!({}));
            if !tags.is_object() {
                return Err(ArmError::new(
                    400,
                    "InvalidRequestContent",
                    "tags must be an object",
                ));
            }
            let etag = state.etag();
            let found = state.nsgs.get_mut(&key).ok_or_else(|| {
                ArmError::not_found("Microsoft.Network/networkSecurityGroups", nsg, group)
            })?;
            found.tags = tags;
            found.etag = etag;
            let found = state.nsgs.get(&key).expect("just updated");
            Ok(Response::json(200, &state.nsg_json(found, "Succeeded")))
        }
        ("DELETE", Route::Nsg { group, nsg }) => {
            let (subnets, nics) = network::nsg_users(state, &nsg_id(group, nsg));
            if !subnets.is_empty() || !nics.is_empty() {
                return Err(ArmError::new(
                    400,
                    "InUseNetworkSecurityGroupCannotBeDeleted",
                    &format!(
                        "Network security group {} cannot be deleted because it is in use by the following resources: {}.",
                        nsg_id(group, nsg),
                        subnets
                            .iter()
                            .chain(&nics)
                            .filter_map(|v| v["id"].as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
            let removed = state.nsgs.remove(&nsg_id(group, nsg).to_ascii_lowercase());
            Ok(accepted_delete(
                state,
                base,
                sub,
                removed.map(|n| n.location),
            ))
        }
        ("GET", Route::Rules { group, nsg }) => {
            list_rules(state, base, request, &nsg_id(group, nsg), group, nsg)
        }
        ("GET", Route::Rule { group, nsg, rule }) => {
            let found = find_nsg(state, &nsg_id(group, nsg), group, nsg)?;
            let stored = found
                .rules
                .iter()
                .find(|r| {
                    r["name"]
                        .as_str()
                        .is_some_and(|n| n.eq_ignore_ascii_case(rule))
                })
                .cloned()
                .ok_or_else(|| {
                    ArmError::not_found(
                        &format!("Microsoft.Network/networkSecurityGroups/{nsg}/securityRules"),
                        rule,
                        group,
                    )
                })?;
            Ok(Response::json(200, &stored))
        }
        ("PUT", Route::Rule { group, nsg, rule }) => put_rule(
            state,
            base,
            sub,
            request,
            &nsg_id(group, nsg),
            group,
            nsg,
            rule,
        ),
        ("DELETE", Route::Rule { group, nsg, rule }) => {
            let etag = state.etag();
            let found = find_nsg_mut(state, &nsg_id(group, nsg), group, nsg)?;
            let before = found.rules.len();
            found.rules.retain(|r| {
                !r["name"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case(rule))
            });
            let removed = found.rules.len() != before;
            let location = found.location.clone();
            if removed {
                found.etag = etag;
            }
            Ok(accepted_delete(
                state,
                base,
                sub,
                removed.then_some(location),
            ))
        }
        ("GET", Route::DefaultRules { group, nsg }) => {
            let found = find_nsg(state, &nsg_id(group, nsg), group, nsg)?;
            Ok(Response::json(
                200,
                &json!({"value": default_rules(&found.id, &found.etag)}),
            ))
        }
        ("GET", Route::DefaultRule { group, nsg, rule }) => {
            let found = find_nsg(state, &nsg_id(group, nsg), group, nsg)?;
            default_rules(&found.id, &found.etag)
                .into_iter()
                .find(|r| {
                    r["name"]
                        .as_str()
                        .is_some_and(|n| n.eq_ignore_ascii_case(rule))
                })
                .map(|r| Response::json(200, &r))
                .ok_or_else(|| ArmError::not_found("defaultSecurityRules", rule, group))
        }
        ("GET", Route::Asg { group, asg }) => {
            let id = asg_id(sub, group, asg);
            state
                .asgs
                .get(&id.to_ascii_lowercase())
                .map(|a| Response::json(200, a))
                .ok_or_else(|| {
                    ArmError::not_found("Microsoft.Network/applicationSecurityGroups", asg, group)
                })
        }
        ("PUT", Route::Asg { group, asg }) => {
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
            let id = asg_id(sub, group, asg);
            let existed = state.asgs.contains_key(&id.to_ascii_lowercase());
            let guid = uuid_like(state.next());
            let etag = state.etag();
            let stored = json!({"name": asg, "id": id, "etag": etag, "type": "Microsoft.Network/applicationSecurityGroups",
                "location": location, "tags": body.get("tags").cloned().unwrap_or(json!({})),
                "properties": {"provisioningState": "Succeeded", "resourceGuid": guid}});
            state.asgs.insert(id.to_ascii_lowercase(), stored.clone());
            let op = state.operation();
            Ok(with_async_headers(
                Response::json(if existed { 200 } else { 201 }, &stored),
                base,
                sub,
                &location,
                &op,
            ))
        }
        ("DELETE", Route::Asg { group, asg }) => {
            let id = asg_id(sub, group, asg).to_ascii_lowercase();
            let in_use = state
                .nsgs
                .values()
                .flat_map(|n| &n.rules)
                .any(|r| r.to_string().to_ascii_lowercase().contains(&id));
            if in_use {
                return Err(ArmError::new(
                    400,
                    "InUseApplicationSecurityGroupCannotBeDeleted",
                    &format!(
                        "Application security group {asg} cannot be deleted because it is in use by security rules."
                    ),
                ));
            }
            let removed = state.asgs.remove(&id);
            let location = removed.map(|a| a["location"].as_str().unwrap_or_default().to_string());
            Ok(accepted_delete(state, base, sub, location))
        }
        (
            method,
            route @ (Route::Vnet { .. }
            | Route::Subnet { .. }
            | Route::NicList { .. }
            | Route::Nic { .. }
            | Route::EffectiveNsgs { .. }),
        ) => network::serve(state, base, sub, method, route, request),
        ("GET", Route::Operation { id }) => {
            let op = state.operations.get_mut(id).ok_or_else(|| {
                ArmError::new(
                    404,
                    "OperationNotFound",
                    &format!("Operation {id} was not found."),
                )
            })?;
            op.polls_left = op.polls_left.saturating_sub(1);
            let status = if op.polls_left > 0 {
                "InProgress"
            } else {
                "Succeeded"
            };
            let mut response = Response::json(200, &json!({"name": id, "status": status}));
            if status == "InProgress" {
                response = response.with_header("Retry-After", "0");
            }
            Ok(response)
        }
        ("GET", Route::OperationResult { id }) => {
            let op = state.operations.get_mut(id).ok_or_else(|| {
                ArmError::new(
                    404,
                    "OperationNotFound",
                    &format!("Operation {id} was not found."),
                )
            })?;
            op.polls_left = op.polls_left.saturating_sub(1);
            if op.polls_left > 0 {
                Ok(Response {
                    status: 202,
                    headers: vec![("Retry-After".into(), "0".into())],
                    body: Vec::new(),
                })
            } else if let Some(result) = &op.result {
                Ok(Response::json(200, result))
            } else {
                Ok(Response {
                    status: 204,
                    headers: Vec::new(),
                    body: Vec::new(),
                })
            }
        }
        _ => Err(ArmError::new(
            405,
            "MethodNotAllowed",
            &format!("The requested method {method} is not allowed here."),
        )),
    }
}
