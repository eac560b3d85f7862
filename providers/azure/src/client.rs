//! A small typed client for the Azure Resource Manager calls perimeter makes, on reqwest (the
//! HTTP stack the GCP client already brings) and serde. Why not azure_mgmt_network: see
//! docs/architecture.md ("Plan and apply (Azure)").
//!
//! Every request goes through [`ArmClient::send`], which counts it, adds the bearer token and
//! `api-version`, and retries 429 and 5xx answers and broken connections, waiting the
//! server's `Retry-After` (ARM sends it with every throttled answer) or a jittered backoff.
//! [`ArmClient::wait`] follows a long-running operation the way ARM describes it: poll the
//! `Azure-AsyncOperation` URL until `Succeeded`, `Failed` or `Canceled`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::credential::Credential;

/// The Microsoft.Network API version perimeter speaks.
pub(crate) const API_VERSION: &str = "2024-05-01";

/// How the client reaches ARM.
#[derive(Clone, Debug)]
pub(crate) struct ArmSettings {
    /// `https://management.azure.com` unless `PERIMETER_AZURE_ENDPOINT` says otherwise.
    pub endpoint: String,
    /// First retry delay (doubles, full jitter), when the server sends no `Retry-After`.
    pub retry_base: Duration,
    /// Longest wait between attempts.
    pub max_delay: Duration,
    /// Attempts per request, the first included.
    pub max_attempts: u32,
}

impl Default for ArmSettings {
    fn default() -> Self {
        Self {
            endpoint: "https://management.azure.com".into(),
            retry_base: Duration::from_millis(500),
            max_delay: Duration::from_secs(32),
            max_attempts: 8,
        }
    }
}

/// Why an ARM call failed.
#[derive(Debug, thiserror::Error)]
pub enum ArmError {
    /// A bad setting or no usable credential.
    #[error("{0}")]
    Setup(String),
    /// The service answered with an error (after retries, when retryable).
    #[error("{what}: HTTP {status} {code}: {message}")]
    Service {
        /// The request.
        what: String,
        /// HTTP status.
        status: u16,
        /// ARM's error code, e.g. `SecurityRuleConflict`.
        code: String,
        /// ARM's message.
        message: String,
    },
    /// No answer (connection refused, reset, timeout) after retries.
    #[error("{what}: {message}")]
    Transport {
        /// The request.
        what: String,
        /// What went wrong.
        message: String,
    },
    /// A long-running operation ended in `Failed` or `Canceled`.
    #[error("{what}: the operation ended {status}: {message}")]
    Operation {
        /// The request.
        what: String,
        /// `Failed` or `Canceled`.
        status: String,
        /// The operation's error.
        message: String,
    },
}

impl ArmError {
    /// The HTTP status of a service error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ArmError::Service { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// An answer: status, the headers perimeter reads, and the JSON body (null when empty).
#[derive(Debug)]
pub(crate) struct ArmResponse {
    /// HTTP status.
    pub status: u16,
    /// `Azure-AsyncOperation`.
    pub async_operation: Option<String>,
    /// `Location`.
    pub location: Option<String>,
    /// `Retry-After`, in seconds.
    pub retry_after: Option<Duration>,
    /// The body.
    pub body: Value,
}

/// The ARM client of one run.
pub(crate) struct ArmClient {
    http: reqwest::Client,
    settings: ArmSettings,
    credential: Credential,
    calls: AtomicU64,
    retries: AtomicU64,
}

impl ArmClient {
    /// A client with these settings and this credential.
    pub(crate) fn new(settings: ArmSettings, credential: Credential) -> Result<Self, ArmError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| ArmError::Setup(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            http,
            settings,
            credential,
            calls: AtomicU64::new(0),
            retries: AtomicU64::new(0),
        })
    }

    /// Requests sent so far (token requests and retries included).
    pub(crate) fn api_calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed) + self.credential.requests()
    }

    /// Requests that were retries.
    pub(crate) fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// The URL of a resource id (or an absolute URL, as ARM's operation headers are).
    pub(crate) fn url(&self, id_or_url: &str) -> String {
        let base = if id_or_url.starts_with("http://") || id_or_url.starts_with("https://") {
            id_or_url.to_string()
        } else {
            format!(
                "{}{id_or_url}",
                self.settings.endpoint.trim_end_matches('/')
            )
        };
        if base.contains("api-version=") {
            base
        } else if base.contains('?') {
            format!("{base}&api-version={API_VERSION}")
        } else {
            format!("{base}?api-version={API_VERSION}")
        }
    }

    /// One request with retries. `headers` are extra request headers (`If-Match`, …).
    pub(crate) async fn send(
        &self,
        what: &str,
        method: reqwest::Method,
        id_or_url: &str,
        body: Option<&Value>,
        headers: &[(&str, String)],
    ) -> Result<ArmResponse, ArmError> {
        let url = self.url(id_or_url);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let token = self.credential.token(&self.http).await?;
            self.calls.fetch_add(1, Ordering::Relaxed);
            let mut request = self.http.request(method.clone(), &url).bearer_auth(&token);
            for (name, value) in headers {
                request = request.header(*name, value.as_str());
            }
            if let Some(body) = body {
                request = request
                    .header("Content-Type", "application/json")
                    .body(serde_json::to_vec(body).unwrap_or_default());
            }
            let outcome = match request.send().await {
                Ok(response) => Ok(read(response).await),
                Err(e) => Err(e.to_string()),
            };
            let (retry_after, failure) = match outcome {
                // A 2xx with a body that is not JSON is a broken answer, not a result.
                Ok(r) if (200..300).contains(&r.status) && !r.body.is_string() => return Ok(r),
                Ok(r) if (200..300).contains(&r.status) => (
                    Some(None),
                    ArmError::Transport {
                        what: what.into(),
                        message: format!("HTTP {} with a body that is not JSON", r.status),
                    },
                ),
                Ok(r) if matches!(r.status, 429 | 500 | 502 | 503 | 504) => {
                    (Some(r.retry_after), service_error(what, &r))
                }
                // The NSG is busy with another write (AKS's, often): the request was not
                // applied, so it is safe to send again.
                Ok(r) if r.status == 409 && error_code(&r) == "AnotherOperationInProgress" => {
                    (Some(r.retry_after), service_error(what, &r))
                }
                // A conditional write retried after a lost answer can find its own first
                // attempt applied: say so rather than report a plain failure.
                Ok(r) if r.status == 412 && attempt > 1 => (
                    None,
                    ArmError::Service {
                        what: what.into(),
                        status: 412,
                        code: error_code(&r),
                        message: "the NSG changed during a retried write; an earlier attempt may have been applied: run `perimeter plan` to see".into(),
                    },
                ),
                Ok(r) => (None, service_error(what, &r)),
                Err(message) => (Some(None), ArmError::Transport { what: what.into(), message }),
            };
            match retry_after {
                Some(wait) if attempt < self.settings.max_attempts => {
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    let delay = wait
                        .unwrap_or_else(|| self.backoff(attempt))
                        .min(Duration::from_secs(60));
                    tokio::time::sleep(delay).await;
                }
                _ => return Err(failure),
            }
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        perimeter_core::retry::full_jitter(
            self.settings.retry_base,
            self.settings.max_delay,
            attempt,
            fastrand::f64(),
        )
    }

    /// Waits for the long-running operation an answer started, if any.
    pub(crate) async fn wait(&self, what: &str, started: &ArmResponse) -> Result<(), ArmError> {
        let Some(operation) = &started.async_operation else {
            // Some operations only give a `Location`: it answers 202 until the work is done.
            if started.status == 202
                && let Some(location) = &started.location
            {
                return self
                    .wait_location(what, location, started.retry_after)
                    .await;
            }
            return Ok(());
        };
        let deadline = Instant::now() + Duration::from_secs(900);
        let mut delay = started.retry_after.unwrap_or(Duration::from_secs(1));
        loop {
            tokio::time::sleep(delay.min(Duration::from_secs(30))).await;
            let polled = self
                .send(
                    &format!("{what} (waiting)"),
                    reqwest::Method::GET,
                    operation,
                    None,
                    &[],
                )
                .await?;
            let status = polled
                .body
                .get("status")
                .and_then(Value::as_str)
                .unwrap_or("InProgress");
            match status {
                "Succeeded" => return Ok(()),
                "Failed" | "Canceled" => {
                    let message = polled
                        .body
                        .pointer("/error/message")
                        .and_then(Value::as_str)
                        .unwrap_or("no error message")
                        .to_string();
                    return Err(ArmError::Operation {
                        what: what.into(),
                        status: status.into(),
                        message,
                    });
                }
                _ if Instant::now() > deadline => {
                    return Err(ArmError::Operation {
                        what: what.into(),
                        status: "unfinished".into(),
                        message: "still in progress after 15 minutes; it may still finish: run `perimeter plan` to see".into(),
                    });
                }
                _ => delay = polled.retry_after.unwrap_or(Duration::from_secs(2)),
            }
        }
    }
}

async fn read(response: reqwest::Response) -> ArmResponse {
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let async_operation = header("azure-asyncoperation");
    let location = header("location");
    let retry_after = header("retry-after")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let bytes = response.bytes().await.unwrap_or_default();
    let body = if bytes.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    ArmResponse {
        status,
        async_operation,
        location,
        retry_after,
        body,
    }
}

impl ArmClient {
    async fn wait_location(
        &self,
        what: &str,
        location: &str,
        first: Option<Duration>,
    ) -> Result<(), ArmError> {
        let deadline = Instant::now() + Duration::from_secs(900);
        let mut delay = first.unwrap_or(Duration::from_secs(1));
        loop {
            tokio::time::sleep(delay.min(Duration::from_secs(30))).await;
            let polled = self
                .send(
                    &format!("{what} (waiting)"),
                    reqwest::Method::GET,
                    location,
                    None,
                    &[],
                )
                .await?;
            if polled.status != 202 {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(ArmError::Operation {
                    what: what.into(),
                    status: "unfinished".into(),
                    message: "still in progress after 15 minutes; run `perimeter plan` to see"
                        .into(),
                });
            }
            delay = polled.retry_after.unwrap_or(Duration::from_secs(2));
        }
    }
}

fn error_code(r: &ArmResponse) -> String {
    r.body
        .pointer("/error/code")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

fn service_error(what: &str, r: &ArmResponse) -> ArmError {
    let code = r
        .body
        .pointer("/error/code")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let message = r
        .body
        .pointer("/error/message")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| r.body.to_string());
    ArmError::Service {
        what: what.into(),
        status: r.status,
        code,
        message,
    }
}
