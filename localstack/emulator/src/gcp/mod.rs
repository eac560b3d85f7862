//! The Compute Engine v1 API surface perimeter uses: `projects/{p}` (quotas),
//! `global/firewalls` (list, get, insert, patch, update, delete), `global/operations` (get,
//! wait, delete, list), a minimal `global/networks` (list, get, insert, delete,
//! getEffectiveFirewalls) and firewall policies, hierarchical, global and regional network
//! (`policies`).
//!
//! Differences from the real API, on purpose: projects exist on first use, each with an
//! auto-mode `default` network and its four `default-allow-*` rules as a new project has;
//! a change takes effect when it is accepted (its operation may still report RUNNING for
//! `polls_until_done` polls); links point back at this emulator, so a client that follows a
//! `selfLink` never leaves 127.0.0.1.

mod filter;
mod firewall;
mod policies;
mod writes;

use std::collections::{BTreeMap, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::http::{Emulator, Request, Response, lock};
use writes::{Change, change, delete, delete_network, insert, insert_network, poll_operation};

/// An API error: status, the legacy `errors[].reason` and the message.
#[derive(Debug)]
pub(crate) struct GcpError {
    pub(crate) status: u16,
    pub(crate) reason: String,
    pub(crate) message: String,
}

impl GcpError {
    fn new(status: u16, reason: &str, message: &str) -> GcpError {
        GcpError {
            status,
            reason: reason.into(),
            message: message.into(),
        }
    }
    pub(crate) fn invalid(message: &str) -> GcpError {
        GcpError::new(400, "invalid", message)
    }
    pub(crate) fn required(field: &str) -> GcpError {
        GcpError::new(
            400,
            "required",
            &format!("Required field '{field}' not specified"),
        )
    }
    fn not_found(resource: &str) -> GcpError {
        GcpError::new(
            404,
            "notFound",
            &format!("The resource '{resource}' was not found"),
        )
    }
    fn already_exists(resource: &str) -> GcpError {
        GcpError::new(
            409,
            "alreadyExists",
            &format!("The resource '{resource}' already exists"),
        )
    }
}

/// The error envelope Compute answers with: the legacy `errors` list (what older clients and
/// Google's Python client read) and the AIP-193 `status` and `ErrorInfo` detail (what the
/// Rust client reads).
pub(crate) fn error(status: u16, reason: &str, message: &str) -> Response {
    let code_name = match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 if reason.contains("imit") || reason.contains("uota") => "RESOURCE_EXHAUSTED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ALREADY_EXISTS",
        412 => "FAILED_PRECONDITION",
        429 => "RESOURCE_EXHAUSTED",
        500 => "INTERNAL",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "UNKNOWN",
    };
    let domain = if status == 429 {
        "usageLimits"
    } else {
        "global"
    };
    let body = json!({"error": {
        "code": status,
        "message": message,
        "errors": [{"message": message, "domain": domain, "reason": reason}],
        "status": code_name,
        "details": [{
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": screaming_snake(reason),
            "domain": "googleapis.com",
            "metadata": {"service": "compute.googleapis.com"},
        }],
    }});
    Response::json(status, &body)
}

fn screaming_snake(camel: &str) -> String {
    let mut out = String::new();
    for c in camel.chars() {
        if c.is_ascii_uppercase() && !out.is_empty() {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

fn reply(result: Result<Value, GcpError>) -> Response {
    match result {
        Ok(body) => Response::json(200, &body),
        Err(e) => error(e.status, &e.reason, &e.message),
    }
}

/// A new project's default firewall quota (the figure the project's quota page shows).
const DEFAULT_FIREWALL_QUOTA: u64 = 500;

pub(crate) struct State {
    api_base: String,
    projects: BTreeMap<String, Project>,
    /// Polls an operation answers RUNNING before DONE (0: done when created).
    pub(crate) polls_until_done: u64,
    next_id: u64,
    /// Hierarchical firewall policies, by name.
    hierarchical: BTreeMap<String, Value>,
    /// Each project's organization and folders, from the top down (admin-set).
    pub(crate) ancestry: BTreeMap<String, Vec<String>>,
}

pub(crate) struct Project {
    firewalls: BTreeMap<String, Value>,
    networks: BTreeMap<String, Value>,
    operations: BTreeMap<String, Operation>,
    /// requestId → the operation it created: a retried request is answered, not repeated.
    request_ids: HashMap<String, String>,
    pub(crate) firewall_quota: u64,
    /// Global network firewall policies, by name.
    network_policies: BTreeMap<String, Value>,
}

struct Operation {
    body: Value,
    polls_left: u64,
}

impl State {
    pub(crate) fn new(base_url: &str) -> State {
        State {
            api_base: format!("{base_url}/compute/v1"),
            projects: BTreeMap::new(),
            polls_until_done: 0,
            next_id: seed_id(),
            hierarchical: BTreeMap::new(),
            ancestry: BTreeMap::new(),
        }
    }

    pub(crate) fn reset(&mut self) {
        self.projects.clear();
        self.polls_until_done = 0;
        self.hierarchical.clear();
        self.ancestry.clear();
    }

    fn id(&mut self) -> String {
        self.next_id += 1;
        self.next_id.to_string()
    }

    pub(crate) fn project(&mut self, name: &str) -> &mut Project {
        if !self.projects.contains_key(name) {
            let project = self.new_project(name);
            self.projects.insert(name.to_string(), project);
        }
        self.projects.get_mut(name).expect("inserted above")
    }

    fn new_project(&mut self, name: &str) -> Project {
        let mut project = Project {
            firewalls: BTreeMap::new(),
            networks: BTreeMap::new(),
            operations: BTreeMap::new(),
            request_ids: HashMap::new(),
            firewall_quota: DEFAULT_FIREWALL_QUOTA,
            network_policies: BTreeMap::new(),
        };
        let id = self.id();
        let network = self.network_body(name, "default", true, id);
        project.networks.insert("default".into(), network);
        // The rules every new project's default network comes with.
        let internal = json!([{"IPProtocol": "tcp", "ports": ["0-65535"]}, {"IPProtocol": "udp", "ports": ["0-65535"]}, {"IPProtocol": "icmp"}]);
        for (rule, ranges, allowed, description) in [
            (
                "default-allow-internal",
                "10.128.0.0/9",
                internal,
                "Allow internal traffic on the default network",
            ),
            (
                "default-allow-ssh",
                "0.0.0.0/0",
                json!([{"IPProtocol": "tcp", "ports": ["22"]}]),
                "Allow SSH from anywhere",
            ),
            (
                "default-allow-rdp",
                "0.0.0.0/0",
                json!([{"IPProtocol": "tcp", "ports": ["3389"]}]),
                "Allow RDP from anywhere",
            ),
            (
                "default-allow-icmp",
                "0.0.0.0/0",
                json!([{"IPProtocol": "icmp"}]),
                "Allow ICMP from anywhere",
            ),
        ] {
            let body = json!({"name": rule, "description": description, "network": "global/networks/default",
                              "priority": 65534, "sourceRanges": [ranges], "allowed": allowed});
            let id = self.id();
            let context = firewall::Context {
                project: name,
                api_base: &self.api_base,
                id,
                creation_timestamp: timestamp(),
            };
            let parsed = firewall::parse_body(&body).expect("built-in rule parses");
            let stored = firewall::normalize(&parsed, &context).expect("built-in rule is valid");
            project.firewalls.insert(rule.into(), stored);
        }
        project
    }

    fn network_body(&self, project: &str, name: &str, auto: bool, id: String) -> Value {
        json!({
            "kind": "compute#network",
            "id": id,
            "creationTimestamp": timestamp(),
            "name": name,
            "autoCreateSubnetworks": auto,
            "routingConfig": {"routingMode": "REGIONAL"},
            "networkFirewallPolicyEnforcementOrder": "AFTER_CLASSIC_FIREWALL",
            "selfLink": format!("{}/projects/{project}/global/networks/{name}", self.api_base),
        })
    }
}

/// Ids look like Compute's: large, unique across restarts of the emulator.
fn seed_id() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    1_000_000_000_000_000_000 + (nanos % 1_000_000_000_000_000) as u64 * 1000
}

/// RFC 3339 in UTC with milliseconds, as Compute writes timestamps (it uses the -08:00 offset;
/// any offset is valid).
pub(crate) fn timestamp() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let seconds = now.as_secs() as i64;
    let (days, rest) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}+00:00",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        now.subsec_millis()
    )
}

/// The route a request takes, for call counting; `None` when it is not an API call.
pub(crate) fn route_name(request: &Request) -> Option<String> {
    let method = request.method.as_str();
    if let Some(rest) = hierarchical_path(&request.path) {
        let name = match (method, rest.as_slice()) {
            ("POST", []) => "firewallPolicies.insert",
            ("GET", [_]) => "firewallPolicies.get",
            ("POST", [_, "addRule"]) => "firewallPolicies.addRule",
            ("POST", [_, "addAssociation"]) => "firewallPolicies.addAssociation",
            _ => return None,
        };
        return Some(format!("{method} {name}"));
    }
    let segments = segments(&request.path)?;
    let name = match (method, segments.rest.as_slice()) {
        ("GET", []) => "projects.get",
        ("GET", ["global", "firewalls"]) => "firewalls.list",
        ("POST", ["global", "firewalls"]) => "firewalls.insert",
        ("GET", ["global", "firewalls", _]) => "firewalls.get",
        ("PATCH", ["global", "firewalls", _]) => "firewalls.patch",
        ("PUT", ["global", "firewalls", _]) => "firewalls.update",
        ("DELETE", ["global", "firewalls", _]) => "firewalls.delete",
        ("GET", ["global", "operations"]) => "globalOperations.list",
        ("GET", ["global", "operations", _]) => "globalOperations.get",
        ("POST", ["global", "operations", _, "wait"]) => "globalOperations.wait",
        ("DELETE", ["global", "operations", _]) => "globalOperations.delete",
        ("GET", ["global", "networks"]) => "networks.list",
        ("POST", ["global", "networks"]) => "networks.insert",
        ("GET", ["global", "networks", _]) => "networks.get",
        ("DELETE", ["global", "networks", _]) => "networks.delete",
        ("GET", ["global", "networks", _, "getEffectiveFirewalls"]) => {
            "networks.getEffectiveFirewalls"
        }
        ("POST", ["global", "firewallPolicies"]) => "networkFirewallPolicies.insert",
        ("GET", ["global", "firewallPolicies", _]) => "networkFirewallPolicies.get",
        ("POST", ["global", "firewallPolicies", _, "addRule"]) => "networkFirewallPolicies.addRule",
        ("POST", ["global", "firewallPolicies", _, "addAssociation"]) => {
            "networkFirewallPolicies.addAssociation"
        }
        ("GET", ["regions", _, "firewallPolicies", "getEffectiveFirewalls"]) => {
            "regionNetworkFirewallPolicies.getEffectiveFirewalls"
        }
        ("POST", ["regions", _, "firewallPolicies"]) => "regionNetworkFirewallPolicies.insert",
        ("GET", ["regions", _, "firewallPolicies", _]) => "regionNetworkFirewallPolicies.get",
        ("POST", ["regions", _, "firewallPolicies", _, "addRule"]) => {
            "regionNetworkFirewallPolicies.addRule"
        }
        ("POST", ["regions", _, "firewallPolicies", _, "addAssociation"]) => {
            "regionNetworkFirewallPolicies.addAssociation"
        }
        _ => return None,
    };
    Some(format!("{method} {name}"))
}

struct Segments<'a> {
    project: &'a str,
    rest: Vec<&'a str>,
}

fn segments(path: &str) -> Option<Segments<'_>> {
    let tail = path.strip_prefix("/compute/v1/projects/")?;
    let mut parts = tail.trim_end_matches('/').split('/');
    let project = parts.next().filter(|p| !p.is_empty())?;
    Some(Segments {
        project,
        rest: parts.collect(),
    })
}

/// The segments after `/compute/v1/locations/global/firewallPolicies`.
fn hierarchical_path(path: &str) -> Option<Vec<&str>> {
    let tail = path.strip_prefix("/compute/v1/locations/global/firewallPolicies")?;
    Some(
        tail.trim_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .collect(),
    )
}

pub(crate) fn handle(emulator: &Emulator, request: &Request) -> Response {
    if let Some(rest) = hierarchical_path(&request.path) {
        let mut state = lock(&emulator.gcp);
        return reply(policies::hierarchical(
            &mut state,
            request.method.as_str(),
            &rest,
            request,
        ));
    }
    let Some(segments) = segments(&request.path) else {
        return error(404, "notFound", "no such API");
    };
    let project = segments.project;
    let mut state = lock(&emulator.gcp);
    let state = &mut *state;
    match (request.method.as_str(), segments.rest.as_slice()) {
        ("GET", []) => reply(Ok(project_body(state, project))),
        ("GET", ["global", "firewalls"]) => reply(list(state, project, request)),
        ("POST", ["global", "firewalls"]) => reply(insert(state, project, request)),
        ("GET", ["global", "firewalls", name]) => {
            let found = state.project(project).firewalls.get(*name).cloned();
            reply(found.ok_or_else(|| {
                GcpError::not_found(&format!("projects/{project}/global/firewalls/{name}"))
            }))
        }
        ("PATCH", ["global", "firewalls", name]) => {
            reply(change(state, project, name, request, Change::Patch))
        }
        ("PUT", ["global", "firewalls", name]) => {
            reply(change(state, project, name, request, Change::Update))
        }
        ("DELETE", ["global", "firewalls", name]) => reply(delete(state, project, name, request)),
        ("GET", ["global", "operations"]) => {
            let items: Vec<Value> = state
                .project(project)
                .operations
                .values()
                .map(|op| op.body.clone())
                .collect();
            reply(Ok(
                json!({"kind": "compute#operationList", "id": format!("projects/{project}/global/operations"), "items": items}),
            ))
        }
        ("GET", ["global", "operations", name]) => {
            reply(poll_operation(state, project, name, false))
        }
        ("POST", ["global", "operations", name, "wait"]) => {
            reply(poll_operation(state, project, name, true))
        }
        ("DELETE", ["global", "operations", name]) => {
            let removed = state.project(project).operations.remove(*name);
            match removed {
                Some(_) => Response {
                    status: 204,
                    headers: Vec::new(),
                    body: Vec::new(),
                },
                None => reply(Err(GcpError::not_found(&format!(
                    "projects/{project}/global/operations/{name}"
                )))),
            }
        }
        ("GET", ["global", "networks"]) => {
            let items: Vec<Value> = state.project(project).networks.values().cloned().collect();
            reply(Ok(
                json!({"kind": "compute#networkList", "id": format!("projects/{project}/global/networks"), "items": items}),
            ))
        }
        ("GET", ["global", "networks", name]) => {
            let found = state.project(project).networks.get(*name).cloned();
            reply(found.ok_or_else(|| {
                GcpError::not_found(&format!("projects/{project}/global/networks/{name}"))
            }))
        }
        ("POST", ["global", "networks"]) => reply(insert_network(state, project, request)),
        ("GET", ["global", "networks", name, "getEffectiveFirewalls"]) => {
            reply(policies::effective(state, project, name))
        }
        (
            "GET",
            [
                "regions",
                region,
                "firewallPolicies",
                "getEffectiveFirewalls",
            ],
        ) => reply(policies::effective_in_region(
            state, project, region, request,
        )),
        (method, ["global", "firewallPolicies", rest @ ..]) => reply(policies::network(
            state, project, "global", method, rest, request,
        )),
        (method, ["regions", region, "firewallPolicies", rest @ ..]) => {
            let scope = format!("regions/{region}");
            reply(policies::network(
                state, project, &scope, method, rest, request,
            ))
        }
        ("DELETE", ["global", "networks", name]) => {
            reply(delete_network(state, project, name, request))
        }
        _ => error(
            404,
            "notFound",
            &format!("no such API: {} {}", request.method, request.path),
        ),
    }
}

fn project_body(state: &mut State, project: &str) -> Value {
    let api_base = state.api_base.clone();
    let p = state.project(project);
    json!({
        "kind": "compute#project",
        "name": project,
        "quotas": [
            {"metric": "FIREWALLS", "limit": p.firewall_quota as f64, "usage": p.firewalls.len() as f64},
            {"metric": "NETWORKS", "limit": 15.0, "usage": p.networks.len() as f64},
        ],
        "selfLink": format!("{api_base}/projects/{project}"),
    })
}

fn list(state: &mut State, project: &str, request: &Request) -> Result<Value, GcpError> {
    let max_results = match request.query("maxResults") {
        None => 500,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| *n <= 500)
            .ok_or_else(|| {
                GcpError::invalid(&format!(
                    "Invalid value for field 'maxResults': '{text}'. Must be between 0 and 500"
                ))
            })?,
    };
    // maxResults=0 means the default page size, as in the API.
    let max_results = if max_results == 0 { 500 } else { max_results };
    let filter = match request.query("filter").filter(|f| !f.trim().is_empty()) {
        Some(text) => Some(filter::parse(text).map_err(|message| {
            GcpError::invalid(&format!(
                "Invalid value for field 'filter': '{text}'. {message}"
            ))
        })?),
        None => None,
    };
    // The page token is the name the next page starts after: stable under concurrent inserts.
    let after = match request.query("pageToken").filter(|t| !t.is_empty()) {
        Some(token) => Some(decode_token(token).ok_or_else(|| {
            GcpError::invalid(&format!("Invalid value for field 'pageToken': '{token}'."))
        })?),
        None => None,
    };
    let p = state.project(project);
    let mut matching = p
        .firewalls
        .iter()
        .filter(|(name, _)| after.as_deref().is_none_or(|after| name.as_str() > after))
        .filter(|(_, rule)| filter.as_ref().is_none_or(|f| f.matches(rule)));
    let items: Vec<Value> = matching
        .by_ref()
        .take(max_results)
        .map(|(_, rule)| rule.clone())
        .collect();
    let more = matching.next().is_some();
    let mut body = json!({
        "kind": "compute#firewallList",
        "id": format!("projects/{project}/global/firewalls"),
        "items": items,
        "selfLink": format!("{}/projects/{project}/global/firewalls", state.api_base),
    });
    if more && let Some(last) = items.last().and_then(|item| item["name"].as_str()) {
        body["nextPageToken"] = json!(encode_token(last));
    }
    if items.is_empty() {
        // The API leaves `items` out of an empty page.
        body.as_object_mut().map(|o| o.remove("items"));
    }
    Ok(body)
}

fn encode_token(name: &str) -> String {
    name.bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_token(token: &str) -> Option<String> {
    if !token.len().is_multiple_of(2) || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(token.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip() {
        assert_eq!(decode_token(&encode_token("fw-1")).as_deref(), Some("fw-1"));
        assert_eq!(decode_token("zz"), None);
        assert_eq!(decode_token("abc"), None);
        assert_eq!(decode_token("+a"), None);
    }

    #[test]
    fn error_envelope_has_both_forms() {
        let response = error(429, "rateLimitExceeded", "slow down");
        let body: Value = serde_json::from_slice(&response.body).unwrap();
        assert_eq!(body["error"]["status"], "RESOURCE_EXHAUSTED");
        assert_eq!(body["error"]["errors"][0]["reason"], "rateLimitExceeded");
        assert_eq!(body["error"]["details"][0]["reason"], "RATE_LIMIT_EXCEEDED");
    }

    #[test]
    fn timestamps_are_rfc3339() {
        let t = timestamp();
        assert_eq!(t.len(), "2026-11-23T21:08:44.123+00:00".len(), "{t}");
        assert!(t.starts_with("20"));
    }

    #[test]
    fn request_ids_must_be_uuids() {
        assert!(writes::is_uuid("0f8fad5b-d9cb-469f-a165-70867728950e"));
        assert!(!writes::is_uuid("0f8fad5b-d9cb-469f-a165-70867728950"));
        assert!(!writes::is_uuid("not-a-uuid"));
    }
}
