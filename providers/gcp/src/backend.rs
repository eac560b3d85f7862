//! The GCP backend: google-cloud-compute-v1 clients, a counted retry loop, and observe.
//!
//! Credentials are Application Default Credentials unless `PERIMETER_GCP_CREDENTIALS=anonymous`
//! (for the local emulator); `PERIMETER_GCP_ENDPOINT` points the clients at another endpoint.
//! The clients' own retries are off: every request goes through [`GcpBackend::call`], which
//! counts it, retries 429, 5xx, rate-limit 403s and broken connections with jittered
//! exponential backoff (or the server's `Retry-After`), and gives up after a bounded number
//! of attempts.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use google_cloud_compute_v1::client::{
    Firewalls, Networks, Projects, RegionNetworkFirewallPolicies,
};
use google_cloud_gax::retry_policy::NeverRetry;
use perimeter_core::target::GcpTarget;

use crate::convert::from_api;
use crate::model::Firewall;
use crate::state::{FirewallQuota, ObservedGcp, canonical, is_owned, network_name};

/// How the backend reaches GCP.
#[derive(Clone, Debug)]
pub struct GcpSettings {
    /// Another endpoint than compute.googleapis.com (`PERIMETER_GCP_ENDPOINT`).
    pub endpoint: Option<String>,
    /// Send no credentials (`PERIMETER_GCP_CREDENTIALS=anonymous`): for emulators only.
    pub anonymous: bool,
    /// First retry delay; doubles per attempt up to `max_delay` (`PERIMETER_RETRY_BASE_MS`).
    pub retry_base: Duration,
    /// Longest wait between attempts.
    pub max_delay: Duration,
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    /// Writes in flight at once (`PERIMETER_GCP_CONCURRENCY`).
    pub concurrency: usize,
}

impl Default for GcpSettings {
    fn default() -> Self {
        Self {
            endpoint: None,
            anonymous: false,
            retry_base: Duration::from_millis(500),
            max_delay: Duration::from_secs(32),
            max_attempts: 8,
            concurrency: 8,
        }
    }
}

impl GcpSettings {
    /// Settings from the environment (docs/cli.md, Environment).
    pub fn from_env() -> Result<Self, GcpError> {
        let mut s = Self::default();
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        s.endpoint = var("PERIMETER_GCP_ENDPOINT");
        s.anonymous = match var("PERIMETER_GCP_CREDENTIALS").as_deref() {
            None | Some("adc") => false,
            Some("anonymous") => true,
            Some(other) => {
                return Err(GcpError::Setting(format!(
                    "PERIMETER_GCP_CREDENTIALS={other}: expected `adc` (Application Default Credentials, the default) or `anonymous` (emulators)"
                )));
            }
        };
        if let Some(ms) = var("PERIMETER_RETRY_BASE_MS") {
            let ms: u64 = ms.parse().map_err(|_| {
                GcpError::Setting(format!(
                    "PERIMETER_RETRY_BASE_MS={ms}: expected milliseconds"
                ))
            })?;
            s.retry_base = Duration::from_millis(ms);
        }
        if let Some(n) = var("PERIMETER_GCP_CONCURRENCY") {
            s.concurrency = n
                .parse()
                .ok()
                .filter(|&n| (1..=64).contains(&n))
                .ok_or_else(|| {
                    GcpError::Setting(format!("PERIMETER_GCP_CONCURRENCY={n}: expected 1 to 64"))
                })?;
        }
        Ok(s)
    }
}

/// Why a GCP operation failed.
#[derive(Debug, thiserror::Error)]
pub enum GcpError {
    /// A bad environment setting.
    #[error("{0}")]
    Setting(String),
    /// The clients could not be built (credentials, endpoint).
    #[error("cannot set up the GCP clients: {0}")]
    Setup(String),
    /// A request failed (after retries, when retryable).
    #[error("{what}: {message}")]
    Api {
        /// The request.
        what: String,
        /// HTTP status, when there was a response.
        status: Option<u16>,
        /// The service's message.
        message: String,
    },
    /// Another apply holds the target's lease.
    #[error("{message}")]
    Leased {
        /// Who holds it, until when, and what to do.
        message: String,
    },
    /// A write was accepted but its operation failed.
    #[error("{what}: the operation failed: {message}")]
    Operation {
        /// The request.
        what: String,
        /// The operation's error.
        message: String,
    },
}

/// Clients for one run, with their call counters.
pub struct GcpBackend {
    pub(crate) firewalls: Firewalls,
    networks: Networks,
    regional_policies: RegionNetworkFirewallPolicies,
    projects: Projects,
    pub(crate) settings: GcpSettings,
    calls: AtomicU64,
    retries: AtomicU64,
}

macro_rules! build_client {
    ($client:ty, $settings:expr) => {{
        let mut builder = <$client>::builder()
            .with_retry_policy(NeverRetry)
            .with_attempt_timeout(Duration::from_secs(60));
        if let Some(endpoint) = &$settings.endpoint {
            builder = builder.with_endpoint(endpoint.clone());
        }
        if $settings.anonymous {
            builder = builder.with_credentials(
                google_cloud_auth::credentials::anonymous::Builder::new().build(),
            );
        }
        builder
            .build()
            .await
            .map_err(|e| GcpError::Setup(e.to_string()))?
    }};
}

impl GcpBackend {
    /// Builds the clients.
    pub async fn connect(settings: GcpSettings) -> Result<Self, GcpError> {
        Ok(Self {
            firewalls: build_client!(Firewalls, settings),
            networks: build_client!(Networks, settings),
            regional_policies: build_client!(RegionNetworkFirewallPolicies, settings),
            projects: build_client!(Projects, settings),
            settings,
            calls: AtomicU64::new(0),
            retries: AtomicU64::new(0),
        })
    }

    /// Requests sent so far, retries included.
    pub fn api_calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Requests that were retries.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// Sends one request with retries. `send` makes a fresh request each time (same request
    /// id for writes, so a retried write the server already did is answered, not repeated).
    pub(crate) async fn call<T, F, Fut>(&self, what: &str, mut send: F) -> Result<T, GcpError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, google_cloud_gax::error::Error>>,
    {
        let mut attempt = 0u32;
        loop {
            self.calls.fetch_add(1, Ordering::Relaxed);
            attempt += 1;
            match send().await {
                Ok(value) => return Ok(value),
                Err(error) if attempt < self.settings.max_attempts && retryable(&error) => {
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    let delay = retry_after(&error).unwrap_or_else(|| self.backoff(attempt));
                    tokio::time::sleep(delay).await;
                }
                Err(error) => return Err(api_error(what, &error)),
            }
        }
    }

    /// Full-jitter exponential backoff: a random wait in [0, base·2^(attempt−1)], capped.
    fn backoff(&self, attempt: u32) -> Duration {
        perimeter_core::retry::full_jitter(
            self.settings.retry_base,
            self.settings.max_delay,
            attempt,
            fastrand::f64(),
        )
    }

    /// Observes every target: per project one `projects.get` (the rule quota), per network
    /// one `networks.get` and one filtered, paginated `firewalls.list`.
    pub async fn observe(
        &self,
        policy: &str,
        targets: &[GcpTarget],
    ) -> Result<Vec<ObservedGcp>, GcpError> {
        let mut quotas: std::collections::BTreeMap<String, Option<FirewallQuota>> =
            Default::default();
        for t in targets {
            if !quotas.contains_key(&t.project) {
                let quota = self.quota(&t.project).await?;
                quotas.insert(t.project.clone(), quota);
            }
        }
        let mut out = Vec::with_capacity(targets.len());
        for t in targets {
            let mut observed = self.observe_network(policy, t).await?;
            observed.quota = quotas.get(&t.project).copied().flatten();
            out.push(observed);
        }
        // Rules of the policy in networks no target declares any more: one filtered list
        // per project; the session plans their removal.
        for project in quotas.keys() {
            let declared: Vec<&str> = targets
                .iter()
                .filter(|t| &t.project == project)
                .map(|t| t.network.as_str())
                .collect();
            let filter = format!("name eq \"{}.*\"", crate::state::name_prefix(policy));
            let what = format!("listing the rules of policy {policy} in project {project}");
            let orphans: Vec<Firewall> = self
                .list_rules(project, &filter, &what)
                .await?
                .into_iter()
                .filter(|r| is_owned(policy, &r.name, &r.description))
                .filter(|r| !declared.contains(&network_name(&r.network)))
                .collect();
            if let Some(first) = targets.iter().position(|t| &t.project == project) {
                let mut networks: Vec<String> = orphans
                    .iter()
                    .map(|r| network_name(&r.network).to_string())
                    .collect();
                networks.sort();
                networks.dedup();
                out[first].orphan_networks = networks;
            }
        }
        Ok(out)
    }

    async fn quota(&self, project: &str) -> Result<Option<FirewallQuota>, GcpError> {
        let found = self
            .call(&format!("reading project {project}"), || {
                self.projects.get().set_project(project).send()
            })
            .await?;
        Ok(found
            .quotas
            .iter()
            .find(|q| q.metric.as_ref().and_then(|m| m.name()) == Some("FIREWALLS"))
            .map(|q| FirewallQuota {
                limit: q.limit.unwrap_or(0.0).max(0.0) as u64,
                usage: q.usage.unwrap_or(0.0).max(0.0) as u64,
            }))
    }

    /// Every rule of a project that `filter` selects, following page tokens (a repeated token
    /// is an error, not a loop).
    async fn list_rules(
        &self,
        project: &str,
        filter: &str,
        what: &str,
    ) -> Result<Vec<Firewall>, GcpError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        let mut seen_tokens = std::collections::HashSet::new();
        loop {
            let page = self
                .call(what, || {
                    self.firewalls
                        .list()
                        .set_project(project)
                        .set_filter(filter.to_string())
                        .set_max_results(500u32)
                        .set_or_clear_page_token(token.clone())
                        .send()
                })
                .await?;
            out.extend(page.items.iter().map(from_api));
            match page.next_page_token.filter(|t| !t.is_empty()) {
                // A server that hands back a token it gave before would loop forever.
                Some(next) if seen_tokens.insert(next.clone()) => token = Some(next),
                Some(_) => {
                    return Err(GcpError::Api {
                        what: what.to_string(),
                        status: None,
                        message: "the API returned a page token it had returned before".into(),
                    });
                }
                None => return Ok(out),
            }
        }
    }

    async fn observe_network(&self, policy: &str, t: &GcpTarget) -> Result<ObservedGcp, GcpError> {
        let what = format!("reading network {} in project {}", t.network, t.project);
        let network = self
            .call(&what, || {
                self.networks
                    .get()
                    .set_project(&t.project)
                    .set_network(&t.network)
                    .send()
            })
            .await;
        let policies_first = match network {
            Ok(n) => serde_json::to_value(&n)
                .ok()
                .and_then(|v| {
                    v.get("networkFirewallPolicyEnforcementOrder")
                        .and_then(|o| o.as_str().map(|o| o == "BEFORE_CLASSIC_FIREWALL"))
                })
                .unwrap_or(false),
            Err(GcpError::Api {
                status: Some(404), ..
            }) => return Ok(ObservedGcp::default()),
            Err(e) => return Err(e),
        };
        // The firewall policies around the VPC rules: hierarchical ones (organization,
        // folders) and the network's, in one call.
        let what = format!(
            "reading the firewall policies of network {} in project {}",
            t.network, t.project
        );
        let effective = self
            .call(&what, || {
                self.networks
                    .get_effective_firewalls()
                    .set_project(&t.project)
                    .set_network(&t.network)
                    .send()
            })
            .await?;
        let firewall_policies = serde_json::to_value(&effective)
            .map(|v| crate::firewall_policy::from_effective(&v))
            .unwrap_or_default();
        // Each region's network firewall policies, after the global one: one call per region
        // the nodes run in (the answer repeats the network-level policies, which are taken
        // from the call above).
        let mut regional_policies = std::collections::BTreeMap::new();
        let network_url = format!("projects/{}/global/networks/{}", t.project, t.network);
        for region in &t.regions {
            let what = format!(
                "reading the regional firewall policies of network {} in {region}",
                t.network
            );
            let answer = self
                .call(&what, || {
                    self.regional_policies
                        .get_effective_firewalls()
                        .set_project(&t.project)
                        .set_region(region)
                        .set_network(&network_url)
                        .send()
                })
                .await?;
            let policies: Vec<_> = serde_json::to_value(&answer)
                .map(|v| crate::firewall_policy::from_effective(&v))
                .unwrap_or_default()
                .into_iter()
                .filter(|p| p.kind == crate::firewall_policy::PolicyKind::NetworkRegional)
                .map(|mut p| {
                    // Names are per region: say which.
                    p.name = format!("regions/{region}/{}", p.name);
                    p.label = format!("{} ({region})", p.label);
                    p
                })
                .collect();
            regional_policies.insert(region.clone(), policies);
        }
        // RE2 against the stored URL: any endpoint's form of it matches.
        let filter = format!(
            "network eq \".*/projects/{}/global/networks/{}\"",
            t.project, t.network
        );
        let mut observed = ObservedGcp {
            network_exists: true,
            firewall_policies,
            regional_policies,
            policies_first,
            ..ObservedGcp::default()
        };
        let what = format!(
            "listing firewall rules of network {} in project {}",
            t.network, t.project
        );
        for rule in self.list_rules(&t.project, &filter, &what).await? {
            if is_owned(policy, &rule.name, &rule.description) {
                observed.owned.push(canonical(&rule));
            } else {
                observed.foreign.push(canonical(&rule));
            }
        }
        observed.owned.sort_by(|a, b| a.name.cmp(&b.name));
        observed.foreign.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(observed)
    }
}

/// Throttling, server errors and broken connections are worth another attempt; a 4xx that
/// says the request is wrong is not.
fn retryable(e: &google_cloud_gax::error::Error) -> bool {
    if e.is_connect() || e.is_io() || e.is_timeout() {
        return true;
    }
    match e.http_status_code() {
        Some(429 | 500 | 502 | 503 | 504) => true,
        // Compute's per-minute quota answers 403 rateLimitExceeded.
        Some(403) => reason(e).is_some_and(|r| r.contains("RATE_LIMIT")),
        _ => false,
    }
}

fn reason(e: &google_cloud_gax::error::Error) -> Option<String> {
    use google_cloud_gax::error::rpc::StatusDetails;
    e.status()?.details.iter().find_map(|d| match d {
        StatusDetails::ErrorInfo(info) => Some(info.reason.clone()),
        _ => None,
    })
}

/// `Retry-After` in seconds, capped: a server asking for an hour is not waited for.
fn retry_after(e: &google_cloud_gax::error::Error) -> Option<Duration> {
    let value = e.http_headers()?.get("retry-after")?.to_str().ok()?;
    let seconds: u64 = value.trim().parse().ok()?;
    Some(Duration::from_secs(seconds.min(60)))
}

pub(crate) fn api_error(what: &str, e: &google_cloud_gax::error::Error) -> GcpError {
    let message = match e.status() {
        Some(status) if !status.message.is_empty() => status.message.clone(),
        _ => e.to_string(),
    };
    GcpError::Api {
        what: what.to_string(),
        status: e.http_status_code(),
        message,
    }
}
