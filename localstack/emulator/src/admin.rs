//! The admin API tests use to set the emulator up and to look inside it. It lives under
//! `/_emulator/`, is never counted as an API call and never faulted.
//!
//! | call | effect |
//! |---|---|
//! | `GET /_emulator/health` | `{"ok": true, "url": …}` |
//! | `POST /_emulator/reset` | forget every project, fault and counter |
//! | `POST /_emulator/faults` | add a fault (`faults::FaultSpec`) or a list of them |
//! | `GET /_emulator/faults` | `{"pending": n, "injected": n}` |
//! | `DELETE /_emulator/faults` | remove every fault |
//! | `GET /_emulator/calls` | `{"total": n, "by_route": {"GET firewalls.list": n, …}}` |
//! | `DELETE /_emulator/calls` | zero the counters |
//! | `POST /_emulator/gcp/projects/{p}/quota` | `{"FIREWALLS": n}`: the project's rule quota |
//! | `POST /_emulator/gcp/operations` | `{"polls_until_done": n}`: operations stay RUNNING for n polls |
//! | `POST /_emulator/gcp/ancestry` | `{"project": p, "ancestors": ["organizations/1", "folders/2"]}`: the project's organization and folders, top down (which hierarchical firewall policies apply) |
//! | `POST /_emulator/azure/operations` | `{"polls_until_done": n}`: operations stay InProgress for n polls |

use serde_json::{Value, json};

use crate::faults::FaultSpec;
use crate::http::{Emulator, Request, Response, lock};

pub(crate) fn handle(emulator: &Emulator, request: &Request) -> Response {
    let path = request.path.trim_end_matches('/');
    let segments: Vec<&str> = path.split('/').skip(2).collect();
    match (request.method.as_str(), segments.as_slice()) {
        ("GET", ["health"]) => ok(json!({"ok": true, "url": emulator.base_url})),
        ("POST", ["reset"]) => {
            lock(&emulator.gcp).reset();
            lock(&emulator.azure).reset();
            lock(&emulator.faults).clear();
            lock(&emulator.calls).clear();
            ok(json!({"reset": true}))
        }
        ("POST", ["faults"]) => add_faults(emulator, request),
        ("GET", ["faults"]) => {
            let faults = lock(&emulator.faults);
            ok(json!({"pending": faults.pending(), "injected": faults.injected}))
        }
        ("DELETE", ["faults"]) => {
            lock(&emulator.faults).clear();
            ok(json!({"pending": 0}))
        }
        ("GET", ["calls"]) => {
            let calls = lock(&emulator.calls);
            let total: u64 = calls.values().sum();
            ok(json!({"total": total, "by_route": *calls}))
        }
        ("DELETE", ["calls"]) => {
            lock(&emulator.calls).clear();
            ok(json!({"total": 0}))
        }
        ("POST", ["gcp", "projects", project, "quota"]) => {
            let body = match request.json() {
                Ok(body) => body,
                Err(message) => return bad(&message),
            };
            match body.get("FIREWALLS").and_then(Value::as_u64) {
                Some(limit) => {
                    lock(&emulator.gcp).project(project).firewall_quota = limit;
                    ok(json!({"FIREWALLS": limit}))
                }
                None => bad("expected {\"FIREWALLS\": <limit>}"),
            }
        }
        ("POST", ["azure", "operations"]) => {
            let body = match request.json() {
                Ok(body) => body,
                Err(message) => return bad(&message),
            };
            match body.get("polls_until_done").and_then(Value::as_u64) {
                Some(polls) => {
                    lock(&emulator.azure).polls_until_done = polls;
                    ok(json!({"polls_until_done": polls}))
                }
                None => bad("expected {\"polls_until_done\": <n>}"),
            }
        }
        ("POST", ["gcp", "ancestry"]) => {
            let body = match request.json() {
                Ok(body) => body,
                Err(message) => return bad(&message),
            };
            let project = body.get("project").and_then(Value::as_str);
            let ancestors: Option<Vec<String>> = body.get("ancestors").and_then(|a| {
                a.as_array()?
                    .iter()
                    .map(|v| v.as_str().map(str::to_string))
                    .collect()
            });
            match (project, ancestors) {
                (Some(project), Some(ancestors)) => {
                    lock(&emulator.gcp)
                        .ancestry
                        .insert(project.to_string(), ancestors.clone());
                    ok(json!({"project": project, "ancestors": ancestors}))
                }
                _ => bad(
                    "expected {\"project\": p, \"ancestors\": [\"organizations/1\", \"folders/2\"]}",
                ),
            }
        }
        ("POST", ["gcp", "operations"]) => {
            let body = match request.json() {
                Ok(body) => body,
                Err(message) => return bad(&message),
            };
            match body.get("polls_until_done").and_then(Value::as_u64) {
                Some(polls) => {
                    lock(&emulator.gcp).polls_until_done = polls;
                    ok(json!({"polls_until_done": polls}))
                }
                None => bad("expected {\"polls_until_done\": <n>}"),
            }
        }
        _ => Response::json(
            404,
            &json!({"error": format!("no admin call {} {}", request.method, request.path)}),
        ),
    }
}

fn add_faults(emulator: &Emulator, request: &Request) -> Response {
    let body = match request.json() {
        Ok(body) => body,
        Err(message) => return bad(&message),
    };
    let specs: Result<Vec<FaultSpec>, _> = match body {
        Value::Array(_) => serde_json::from_value(body),
        other => serde_json::from_value(other).map(|spec| vec![spec]),
    };
    let specs = match specs {
        Ok(specs) => specs,
        Err(error) => return bad(&format!("bad fault: {error}")),
    };
    if let Some(message) = specs.iter().find_map(|spec| spec.validate().err()) {
        return bad(&message);
    }
    let mut faults = lock(&emulator.faults);
    for spec in specs {
        faults.add(spec);
    }
    ok(json!({"pending": faults.pending()}))
}

fn ok(body: Value) -> Response {
    Response::json(200, &body)
}

fn bad(message: &str) -> Response {
    Response::json(400, &json!({"error": message}))
}
