//! Request plumbing shared by the emulated APIs: parsing, fault injection, call counting and
//! routing to the cloud that owns the path.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::Value;

use crate::faults::{FaultDecision, Faults};
use crate::{admin, azure, gcp};

/// A parsed request: what the handlers need, nothing of the transport.
pub(crate) struct Request {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) query: Vec<(String, String)>,
    /// Header names in lower case.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Request {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub(crate) fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The body as JSON; an empty body is `null`.
    pub(crate) fn json(&self) -> Result<Value, String> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&self.body)
            .map_err(|error| format!("Invalid JSON payload received. {error}"))
    }
}

pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Response {
    pub(crate) fn json(status: u16, body: &Value) -> Response {
        Response {
            status,
            headers: vec![(
                "Content-Type".into(),
                "application/json; charset=UTF-8".into(),
            )],
            body: serde_json::to_vec_pretty(body).unwrap_or_default(),
        }
    }

    pub(crate) fn with_header(mut self, name: &str, value: impl Into<String>) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// Which cloud's error envelope a path gets.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Cloud {
    Gcp,
    Azure,
    Unknown,
}

pub(crate) fn cloud_of(path: &str) -> Cloud {
    if path.starts_with("/compute/") {
        Cloud::Gcp
    } else if path.starts_with("/subscriptions/") || azure::is_token_path(path) {
        Cloud::Azure
    } else {
        Cloud::Unknown
    }
}

/// An error in the envelope of the cloud the path belongs to.
pub(crate) fn cloud_error(cloud: Cloud, status: u16, reason: &str, message: &str) -> Response {
    match cloud {
        Cloud::Gcp => gcp::error(status, reason, message),
        Cloud::Azure => azure::error(status, reason, message),
        Cloud::Unknown => Response::json(
            status,
            &serde_json::json!({"error": {"code": status, "message": message}}),
        ),
    }
}

/// The whole emulator: every cloud's state, the fault switches and the call counters.
pub(crate) struct Emulator {
    pub(crate) base_url: String,
    pub(crate) gcp: Mutex<gcp::State>,
    pub(crate) azure: Mutex<azure::State>,
    pub(crate) faults: Mutex<Faults>,
    /// API calls per route (`"POST firewalls.insert"`), admin calls excluded.
    pub(crate) calls: Mutex<BTreeMap<String, u64>>,
}

impl Emulator {
    pub(crate) fn new(base_url: String) -> Emulator {
        Emulator {
            gcp: Mutex::new(gcp::State::new(&base_url)),
            azure: Mutex::new(azure::State::default()),
            base_url,
            faults: Mutex::new(Faults::default()),
            calls: Mutex::new(BTreeMap::new()),
        }
    }

    /// Serves one request.
    pub(crate) fn serve(
        &self,
        method: &str,
        target: &str,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> Response {
        let (path, query) = split_url(target);
        let request = Request {
            method: method.to_string(),
            path,
            query,
            headers,
            body,
        };
        self.handle(&request)
    }

    pub(crate) fn handle(&self, request: &Request) -> Response {
        if request.path.starts_with("/_emulator/") || request.path == "/_emulator" {
            return admin::handle(self, request);
        }
        let cloud = cloud_of(&request.path);
        let route = match cloud {
            Cloud::Gcp => gcp::route_name(request),
            Cloud::Azure => azure::route_name(request),
            Cloud::Unknown => None,
        };
        let Some(route) = route else {
            return cloud_error(
                cloud,
                404,
                "notFound",
                &format!("no such API: {} {}", request.method, request.path),
            );
        };
        *lock(&self.calls).entry(route.clone()).or_default() += 1;

        let decision = lock(&self.faults).decide_with_headers(
            &request.method,
            &request.path,
            &request.headers,
        );
        let FaultDecision { latency, failure } = decision;
        if !latency.is_zero() {
            std::thread::sleep(latency);
        }
        let fault_response = |failure: &crate::faults::Failure| {
            let reason = failure
                .reason
                .clone()
                .unwrap_or_else(|| default_reason(cloud, failure.status).to_string());
            let response = cloud_error(cloud, failure.status, &reason, &failure.message);
            match failure.retry_after_seconds {
                Some(seconds) => response.with_header("Retry-After", seconds.to_string()),
                None => response,
            }
        };
        if let Some(failure) = &failure
            && !failure.after_commit
        {
            return fault_response(failure);
        }
        let response = match cloud {
            Cloud::Gcp => gcp::handle(self, request),
            Cloud::Azure => azure::handle(self, request),
            Cloud::Unknown => unreachable_route(cloud, request),
        };
        match &failure {
            // The change happened; only the answer is lost, as when a connection drops.
            Some(failure) => fault_response(failure),
            None => response,
        }
    }
}

fn unreachable_route(cloud: Cloud, request: &Request) -> Response {
    cloud_error(
        cloud,
        404,
        "notFound",
        &format!("no such API: {} {}", request.method, request.path),
    )
}

/// The error reason (GCP) or code (ARM) each cloud answers a status with.
fn default_reason(cloud: Cloud, status: u16) -> &'static str {
    match (cloud, status) {
        (Cloud::Azure, 429) => "SubscriptionRequestsThrottled",
        (Cloud::Azure, 500) => "InternalServerError",
        (Cloud::Azure, 502) => "BadGateway",
        (Cloud::Azure, 503) => "ServiceUnavailable",
        (Cloud::Azure, 504) => "GatewayTimeout",
        (Cloud::Azure, _) => "BadRequest",
        (_, 429) => "rateLimitExceeded",
        (_, 500 | 503) => "backendError",
        (_, 502) => "badGateway",
        (_, 504) => "deadlineExceeded",
        (_, 403) => "forbidden",
        (_, 404) => "notFound",
        (_, 409) => "conflict",
        _ => "badRequest",
    }
}

/// Locks a mutex even if a handler thread panicked while holding it: the state is plain data
/// and every handler leaves it consistent before it can panic.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn split_url(url: &str) -> (String, Vec<(String, String)>) {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let pairs = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect();
    (percent_decode_path(path), pairs)
}

fn percent_decode(text: &str) -> String {
    decode(text, true)
}

fn percent_decode_path(text: &str) -> String {
    decode(text, false)
}

fn decode(text: &str, plus_is_space: bool) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len()
                && bytes[i + 1].is_ascii_hexdigit()
                && bytes[i + 2].is_ascii_hexdigit() =>
            {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("00");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(0));
                i += 3;
                continue;
            }
            b'+' if plus_is_space => out.push(b' '),
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_are_decoded() {
        let (path, query) = split_url(
            "/compute/v1/projects/p/global/firewalls?filter=network%20%3D%20%22x%22&maxResults=2&%24alt=json",
        );
        assert_eq!(path, "/compute/v1/projects/p/global/firewalls");
        assert_eq!(
            query,
            vec![
                ("filter".to_string(), "network = \"x\"".to_string()),
                ("maxResults".to_string(), "2".to_string()),
                ("$alt".to_string(), "json".to_string()),
            ]
        );
    }

    #[test]
    fn broken_percent_escapes_are_kept_literally() {
        assert_eq!(percent_decode("a%zz%4"), "a%zz%4");
        assert_eq!(percent_decode_path("%+5"), "%+5");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("a+b"), "a b");
        assert_eq!(percent_decode_path("a+b"), "a+b");
    }
}
