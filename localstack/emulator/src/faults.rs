//! Fault injection, switched on per test through `POST /_emulator/faults`.
//!
//! A fault matches API calls by method and a path substring. It lets `skip` matching calls
//! through, then acts on the next `times` ones (or on all of them when `times` is absent):
//! answering with `status` (429 with `Retry-After`, 503, …) and/or delaying by `latency_ms`.
//! "Fail the 5th insert" is `{"method": "POST", "path_contains": "/firewalls", "skip": 4,
//! "times": 1, "status": 503}`. With `after_commit: true` the call takes effect and only
//! its answer is replaced by the error, as when a response is lost on the way back: that is
//! what request ids exist for.

use std::time::Duration;

use serde::Deserialize;

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct FaultSpec {
    /// HTTP method to match (any when absent).
    #[serde(default)]
    pub(crate) method: Option<String>,
    /// Substring of the path to match (any when absent).
    #[serde(default)]
    pub(crate) path_contains: Option<String>,
    /// Matching calls to let through before the fault starts.
    #[serde(default)]
    pub(crate) skip: u64,
    /// Matching calls the fault acts on; unlimited when absent.
    #[serde(default)]
    pub(crate) times: Option<u64>,
    /// Answer with this status instead of serving the call.
    #[serde(default)]
    pub(crate) status: Option<u16>,
    /// Error reason in the cloud's envelope (default from the status).
    #[serde(default)]
    pub(crate) reason: Option<String>,
    #[serde(default)]
    pub(crate) retry_after_seconds: Option<u64>,
    #[serde(default)]
    pub(crate) latency_ms: u64,
    #[serde(default)]
    pub(crate) after_commit: bool,
    /// Put the request's headers in the error message, as a misbehaving proxy or server
    /// does: for checking that clients never print credentials from an error body.
    #[serde(default)]
    pub(crate) echo_headers: bool,
}

#[derive(Debug)]
struct ActiveFault {
    spec: FaultSpec,
    seen: u64,
    acted: u64,
}

#[derive(Default, Debug)]
pub(crate) struct Faults {
    active: Vec<ActiveFault>,
    /// Calls the faults acted on since the last clear (for the admin API).
    pub(crate) injected: u64,
}

/// What to do with one call.
#[derive(Default, Debug)]
pub(crate) struct FaultDecision {
    pub(crate) latency: Duration,
    pub(crate) failure: Option<Failure>,
}

#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub(crate) status: u16,
    /// The error reason/code to answer with; the cloud's usual one for the status when absent.
    pub(crate) reason: Option<String>,
    pub(crate) message: String,
    pub(crate) retry_after_seconds: Option<u64>,
    pub(crate) after_commit: bool,
}

impl FaultSpec {
    pub(crate) fn validate(&self) -> Result<(), String> {
        if let Some(status) = self.status
            && !(400..=599).contains(&status)
        {
            return Err(format!("status {status} is not an error status (400-599)"));
        }
        if self.status.is_none() && self.latency_ms == 0 {
            return Err("a fault needs a status, a latency_ms, or both".into());
        }
        if self.after_commit && self.status.is_none() {
            return Err("after_commit needs a status".into());
        }
        Ok(())
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        self.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && self
                .path_contains
                .as_deref()
                .is_none_or(|p| path.contains(p))
    }
}

impl Faults {
    pub(crate) fn add(&mut self, spec: FaultSpec) {
        self.active.push(ActiveFault {
            spec,
            seen: 0,
            acted: 0,
        });
    }

    /// Removes every fault and zeroes the count of injected ones.
    pub(crate) fn clear(&mut self) {
        self.active.clear();
        self.injected = 0;
    }

    pub(crate) fn pending(&self) -> usize {
        self.active.len()
    }

    /// Decides the fate of one call; every matching fault counts it.
    #[cfg(test)]
    pub(crate) fn decide(&mut self, method: &str, path: &str) -> FaultDecision {
        self.decide_with_headers(method, path, &[])
    }

    /// [`Faults::decide`], with the request's headers for `echo_headers` faults.
    pub(crate) fn decide_with_headers(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(String, String)],
    ) -> FaultDecision {
        let mut decision = FaultDecision::default();
        for fault in &mut self.active {
            if !fault.spec.matches(method, path) {
                continue;
            }
            fault.seen += 1;
            if fault.seen <= fault.spec.skip {
                continue;
            }
            if fault.spec.times.is_some_and(|times| fault.acted >= times) {
                continue;
            }
            fault.acted += 1;
            self.injected += 1;
            decision.latency += Duration::from_millis(fault.spec.latency_ms);
            if let Some(status) = fault.spec.status
                && decision.failure.is_none()
            {
                decision.failure = Some(Failure {
                    status,
                    reason: fault.spec.reason.clone(),
                    message: if fault.spec.echo_headers {
                        let echoed: Vec<String> =
                            headers.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                        format!(
                            "injected fault: HTTP {status}; request headers: {}",
                            echoed.join("; ")
                        )
                    } else {
                        format!("injected fault: HTTP {status}")
                    },
                    retry_after_seconds: fault.spec.retry_after_seconds,
                    after_commit: fault.spec.after_commit,
                });
            }
        }
        // Spent faults go away so that `pending` tells a test whether all of them fired.
        self.active
            .retain(|fault| fault.spec.times.is_none_or(|times| fault.acted < times));
        decision
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> FaultSpec {
        let spec: FaultSpec = serde_json::from_str(json).unwrap();
        spec.validate().unwrap();
        spec
    }

    #[test]
    fn fail_the_nth_matching_call_only() {
        let mut faults = Faults::default();
        faults.add(spec(r#"{"method": "POST", "path_contains": "/firewalls", "skip": 2, "times": 1, "status": 503}"#));
        let statuses: Vec<_> = (0..5)
            .map(|_| {
                faults
                    .decide("POST", "/compute/v1/projects/p/global/firewalls")
                    .failure
                    .map(|f| f.status)
            })
            .collect();
        assert_eq!(statuses, vec![None, None, Some(503), None, None]);
        // GETs never matched.
        assert!(
            faults
                .decide("GET", "/compute/v1/projects/p/global/firewalls")
                .failure
                .is_none()
        );
        assert_eq!(faults.pending(), 0);
    }

    #[test]
    fn throttling_carries_retry_after_and_runs_out() {
        let mut faults = Faults::default();
        faults.add(spec(
            r#"{"times": 2, "status": 429, "retry_after_seconds": 1}"#,
        ));
        let first = faults.decide("GET", "/x").failure.unwrap();
        assert_eq!(
            (
                first.status,
                first.reason.as_deref(),
                first.retry_after_seconds
            ),
            (429, None, Some(1))
        );
        assert!(faults.decide("GET", "/x").failure.is_some());
        assert!(faults.decide("GET", "/x").failure.is_none());
    }

    #[test]
    fn latency_adds_up_and_lasts_without_times() {
        let mut faults = Faults::default();
        faults.add(spec(r#"{"latency_ms": 5}"#));
        faults.add(spec(r#"{"latency_ms": 7, "path_contains": "operations"}"#));
        assert_eq!(
            faults.decide("GET", "/a/operations/x").latency,
            Duration::from_millis(12)
        );
        assert_eq!(faults.decide("GET", "/a").latency, Duration::from_millis(5));
        assert_eq!(faults.pending(), 2);
    }

    #[test]
    fn nonsense_specs_are_refused() {
        for json in [
            r#"{}"#,
            r#"{"status": 200}"#,
            r#"{"latency_ms": 1, "after_commit": true}"#,
        ] {
            let spec: FaultSpec = serde_json::from_str(json).unwrap();
            assert!(spec.validate().is_err(), "{json}");
        }
        assert!(serde_json::from_str::<FaultSpec>(r#"{"statsu": 429}"#).is_err());
    }
}
