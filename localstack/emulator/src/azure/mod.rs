//! The Azure Resource Manager surface perimeter uses: `Microsoft.Network/networkSecurityGroups`
//! (GET, PUT with inline `securityRules`, DELETE, list per resource group), their
//! `securityRules` (list with `nextLink` paging, GET, PUT, DELETE) and `defaultSecurityRules`,
//! `applicationSecurityGroups` (GET, PUT, DELETE), and long-running operations the ARM way:
//! PUT answers 201/200 with `provisioningState` and an `Azure-AsyncOperation` header, DELETE
//! answers 202 with `Azure-AsyncOperation` and `Location` (204 when there was nothing), and
//! the operation status is polled at `/subscriptions/{s}/providers/Microsoft.Network/
//! locations/{l}/operations/{id}`.
//!
//! Every call needs `api-version` (one Microsoft.Network has registered) and a bearer token
//! (any value). Differences from ARM, on purpose: resource groups exist on first use; a
//! change takes effect when accepted (its operation can be made to report InProgress for a
//! few polls); `Retry-After` on operations is 0 unless a test asks for delays.

mod rule;

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::http::{Emulator, Request, Response, lock};

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
            },
        );
        id
    }

    fn nsg_json(&self, nsg: &Nsg, state: &str) -> Value {
        let rules: Vec<Value> = nsg.rules.iter().map(|r| with_state(r, state)).collect();
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

/// A parsed ARM path.
enum Route<'a> {
    NsgList {
        group: &'a str,
    },
    Nsg {
        group: &'a str,
        nsg: &'a str,
    },
    Rules {
        group: &'a str,
        nsg: &'a str,
    },
    Rule {
        group: &'a str,
        nsg: &'a str,
        rule: &'a str,
    },
    DefaultRules {
        group: &'a str,
        nsg: &'a str,
    },
    DefaultRule {
        group: &'a str,
        nsg: &'a str,
        rule: &'a str,
    },
    Asg {
        group: &'a str,
        asg: &'a str,
    },
    Operation {
        id: &'a str,
    },
    OperationResult {
        id: &'a str,
    },
}

fn parse(path: &str) -> Option<(&str, Route<'_>)> {
    let tail = path.strip_prefix("/subscriptions/")?;
    let parts: Vec<&str> = tail.trim_end_matches('/').split('/').collect();
    let is = |part: &str, word: &str| part.eq_ignore_ascii_case(word);
    let sub = *parts.first().filter(|s| !s.is_empty())?;
    let rest = &parts[1..];
    let route = match rest {
        [rg, g, p, ns, kind]
            if is(rg, "resourceGroups")
                && is(p, "providers")
                && is(ns, "Microsoft.Network")
                && is(kind, "networkSecurityGroups") =>
        {
            Route::NsgList { group: g }
        }
        [rg, g, p, ns, kind, n]
            if is(rg, "resourceGroups") && is(p, "providers") && is(ns, "Microsoft.Network") =>
        {
            if is(kind, "networkSecurityGroups") {
                Route::Nsg { group: g, nsg: n }
            } else if is(kind, "applicationSecurityGroups") {
                Route::Asg { group: g, asg: n }
            } else {
                return None;
            }
        }
        [rg, g, p, ns, kind, n, sub_kind]
            if is(rg, "resourceGroups")
                && is(p, "providers")
                && is(ns, "Microsoft.Network")
                && is(kind, "networkSecurityGroups") =>
        {
            if is(sub_kind, "securityRules") {
                Route::Rules { group: g, nsg: n }
            } else if is(sub_kind, "defaultSecurityRules") {
                Route::DefaultRules { group: g, nsg: n }
            } else {
                return None;
            }
        }
        [rg, g, p, ns, kind, n, sub_kind, r]
            if is(rg, "resourceGroups")
                && is(p, "providers")
                && is(ns, "Microsoft.Network")
                && is(kind, "networkSecurityGroups") =>
        {
            if is(sub_kind, "securityRules") {
                Route::Rule {
                    group: g,
                    nsg: n,
                    rule: r,
                }
            } else if is(sub_kind, "defaultSecurityRules") {
                Route::DefaultRule {
                    group: g,
                    nsg: n,
                    rule: r,
                }
            } else {
                return None;
            }
        }
        [p, ns, l, _location, ops, id]
            if is(p, "providers") && is(ns, "Microsoft.Network") && is(l, "locations") =>
        {
            if is(ops, "operations") {
                Route::Operation { id }
            } else if is(ops, "operationResults") {
                Route::OperationResult { id }
            } else {
                return None;
            }
        }
        _ => return None,
    };
    Some((sub, route))
}

/// `/{tenant}/oauth2/v2.0/token`: Microsoft Entra ID's token endpoint, so that the
/// client-secret and workload-identity flows can be tested against the emulator.
pub(crate) fn is_token_path(path: &str) -> bool {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    matches!(parts.as_slice(), [tenant, "oauth2", "v2.0", "token"] if !tenant.is_empty())
}

/// Issues a token for a client-credentials request (a secret or a client assertion).
fn token(request: &Request) -> Response {
    let form: BTreeMap<String, String> = String::from_utf8_lossy(&request.body)
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_string(), v.replace('+', " ")))
        .collect();
    let field = |name: &str| form.get(name).filter(|v| !v.is_empty());
    let credential = field("client_secret").or_else(|| field("client_assertion"));
    if request.method != "POST"
        || form.get("grant_type").map(String::as_str) != Some("client_credentials")
        || field("client_id").is_none()
        || credential.is_none()
    {
        return Response::json(
            400,
            &json!({"error": "invalid_request", "error_description": "AADSTS900144: a client_credentials request needs client_id and client_secret or client_assertion."}),
        );
    }
    let client = field("client_id").cloned().unwrap_or_default();
    Response::json(
        200,
        &json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": format!("local-cloud-token-for-{client}")}),
    )
}

/// The route a request takes, for call counting.
pub(crate) fn route_name(request: &Request) -> Option<String> {
    if is_token_path(&request.path) {
        return Some(format!("{} entra.token", request.method));
    }
    let (_, route) = parse(&request.path)?;
    let name = match route {
        Route::NsgList { .. } => "networkSecurityGroups.list",
        Route::Nsg { .. } => match request.method.as_str() {
            "GET" => "networkSecurityGroups.get",
            "PUT" => "networkSecurityGroups.createOrUpdate",
            "DELETE" => "networkSecurityGroups.delete",
            _ => return None,
        },
        Route::Rules { .. } => "securityRules.list",
        Route::Rule { .. } => match request.method.as_str() {
            "GET" => "securityRules.get",
            "PUT" => "securityRules.createOrUpdate",
            "DELETE" => "securityRules.delete",
            _ => return None,
        },
        Route::DefaultRules { .. } => "defaultSecurityRules.list",
        Route::DefaultRule { .. } => "defaultSecurityRules.get",
        Route::Asg { .. } => match request.method.as_str() {
            "GET" => "applicationSecurityGroups.get",
            "PUT" => "applicationSecurityGroups.createOrUpdate",
            "DELETE" => "applicationSecurityGroups.delete",
            _ => return None,
        },
        Route::Operation { .. } => "operations.get",
        Route::OperationResult { .. } => "operationResults.get",
    };
    Some(format!("{} {name}", request.method))
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
        ("DELETE", Route::Nsg { group, nsg }) => {
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

fn asg_id(sub: &str, group: &str, asg: &str) -> String {
    format!(
        "/subscriptions/{sub}/resourceGroups/{group}/providers/Microsoft.Network/applicationSecurityGroups/{asg}"
    )
}

fn find_nsg<'a>(state: &'a State, id: &str, group: &str, nsg: &str) -> Result<&'a Nsg, ArmError> {
    state
        .nsgs
        .get(&id.to_ascii_lowercase())
        .ok_or_else(|| ArmError::not_found("Microsoft.Network/networkSecurityGroups", nsg, group))
}

fn find_nsg_mut<'a>(
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

fn with_async_headers(
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
fn accepted_delete(state: &mut State, base: &str, sub: &str, location: Option<String>) -> Response {
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
fn check_conflicts(rules: &[Value]) -> Result<(), ArmError> {
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

fn if_match(request: &Request, current: Option<&str>) -> Result<(), ArmError> {
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

fn put_nsg(
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
fn put_rule(
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

fn list_rules(
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
