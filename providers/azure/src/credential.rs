//! Bearer tokens for ARM (scope `https://management.azure.com/.default`), from the sources
//! platform pipelines use, chosen by `PERIMETER_AZURE_CREDENTIAL` (default `auto`):
//!
//! | source | how |
//! |---|---|
//! | `static` | `PERIMETER_AZURE_TOKEN` as it is (emulators, or a token minted elsewhere) |
//! | `client-secret` | service principal: `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`, OAuth 2 client credentials at `AZURE_AUTHORITY_HOST` |
//! | `workload-identity` | `AZURE_FEDERATED_TOKEN_FILE` (AKS, GitHub OIDC) as a client assertion, same endpoint |
//! | `managed-identity` | `IDENTITY_ENDPOINT` + `IDENTITY_HEADER` (App Service, Functions), else the instance metadata service |
//! | `azure-cli` | `az account get-access-token` |
//!
//! `auto` takes the first that is configured, in that order, and the CLI when `az` is on the
//! PATH, else managed identity. Tokens are cached until five minutes before they expire.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::client::ArmError;

const SCOPE: &str = "https://management.azure.com/.default";
const RESOURCE: &str = "https://management.azure.com/";

/// Where tokens come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// A fixed token.
    Static(String),
    /// A service principal with a secret.
    ClientSecret {
        /// Tenant.
        tenant: String,
        /// Application id.
        client_id: String,
        /// Secret.
        secret: String,
        /// `https://login.microsoftonline.com` or `AZURE_AUTHORITY_HOST`.
        authority: String,
    },
    /// A federated token file used as the client assertion.
    WorkloadIdentity {
        /// Tenant.
        tenant: String,
        /// Application id.
        client_id: String,
        /// The token file.
        token_file: String,
        /// Authority host.
        authority: String,
    },
    /// The platform's managed identity.
    ManagedIdentity {
        /// A user-assigned identity's client id.
        client_id: Option<String>,
    },
    /// The signed-in Azure CLI.
    AzureCli,
}

/// A token source with its cache.
pub(crate) struct Credential {
    source: Source,
    cached: Mutex<Option<(String, Instant)>>,
    requests: AtomicU64,
}

impl Credential {
    /// A credential from a source.
    pub(crate) fn new(source: Source) -> Self {
        Self {
            source,
            cached: Mutex::new(None),
            requests: AtomicU64::new(0),
        }
    }

    /// The source the environment selects.
    pub(crate) fn from_env() -> Result<Self, ArmError> {
        Ok(Self::new(select(
            &|name| std::env::var(name).ok().filter(|v| !v.is_empty()),
            &|| which("az"),
        )?))
    }

    /// Token requests sent (to an identity endpoint; not the CLI).
    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// A token valid for at least five more minutes.
    pub(crate) async fn token(&self, http: &reqwest::Client) -> Result<String, ArmError> {
        if let Some((token, until)) = self
            .cached
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            && Instant::now() < until
        {
            return Ok(token);
        }
        let (token, lifetime) = self.fetch(http).await?;
        // Renew five minutes early, or at half-life for short-lived tokens.
        let until = Instant::now()
            + lifetime
                .saturating_sub(Duration::from_secs(300))
                .max(lifetime / 2);
        *self.cached.lock().unwrap_or_else(|p| p.into_inner()) = Some((token.clone(), until));
        Ok(token)
    }

    async fn fetch(&self, http: &reqwest::Client) -> Result<(String, Duration), ArmError> {
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            ArmError::Setup(format!("cannot get an Azure token ({what}): {e}"))
        };
        match &self.source {
            Source::Static(token) => Ok((token.clone(), Duration::from_secs(3600 * 24))),
            Source::ClientSecret {
                tenant,
                client_id,
                secret,
                authority,
            } => {
                let form = [
                    ("grant_type", "client_credentials"),
                    ("client_id", client_id),
                    ("client_secret", secret),
                    ("scope", SCOPE),
                ];
                self.oauth(http, authority, tenant, &form)
                    .await
                    .map_err(|e| fail("client secret", &e))
            }
            Source::WorkloadIdentity {
                tenant,
                client_id,
                token_file,
                authority,
            } => {
                let assertion =
                    std::fs::read_to_string(token_file).map_err(|e| fail(token_file, &e))?;
                let form = [
                    ("grant_type", "client_credentials"),
                    ("client_id", client_id.as_str()),
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_assertion", assertion.trim()),
                    ("scope", SCOPE),
                ];
                self.oauth(http, authority, tenant, &form)
                    .await
                    .map_err(|e| fail("workload identity", &e))
            }
            Source::ManagedIdentity { client_id } => {
                self.requests.fetch_add(1, Ordering::Relaxed);
                let (url, header) = match (
                    std::env::var("IDENTITY_ENDPOINT"),
                    std::env::var("IDENTITY_HEADER"),
                ) {
                    (Ok(endpoint), Ok(secret)) => (
                        format!("{endpoint}?api-version=2019-08-01&resource={RESOURCE}"),
                        ("X-IDENTITY-HEADER", secret),
                    ),
                    _ => (
                        format!(
                            "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource={RESOURCE}"
                        ),
                        ("Metadata", "true".to_string()),
                    ),
                };
                let url = match client_id {
                    Some(id) => format!("{url}&client_id={id}"),
                    None => url,
                };
                let response = http
                    .get(url)
                    .header(header.0, header.1)
                    .send()
                    .await
                    .map_err(|e| fail("managed identity", &e))?;
                let body: Value = serde_json::from_slice(
                    &response
                        .bytes()
                        .await
                        .map_err(|e| fail("managed identity", &e))?,
                )
                .map_err(|e| fail("managed identity", &e))?;
                parse_token(&body).ok_or_else(|| fail("managed identity", &body))
            }
            Source::AzureCli => {
                let output = tokio::process::Command::new("az")
                    .args([
                        "account",
                        "get-access-token",
                        "--resource",
                        RESOURCE,
                        "--output",
                        "json",
                    ])
                    .output()
                    .await
                    .map_err(|e| fail("azure cli", &e))?;
                if !output.status.success() {
                    return Err(fail(
                        "azure cli",
                        &String::from_utf8_lossy(&output.stderr).trim(),
                    ));
                }
                let body: Value =
                    serde_json::from_slice(&output.stdout).map_err(|e| fail("azure cli", &e))?;
                parse_token(&body).ok_or_else(|| fail("azure cli", &"no accessToken in the answer"))
            }
        }
    }

    async fn oauth(
        &self,
        http: &reqwest::Client,
        authority: &str,
        tenant: &str,
        form: &[(&str, &str)],
    ) -> Result<(String, Duration), String> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let url = format!(
            "{}/{tenant}/oauth2/v2.0/token",
            authority.trim_end_matches('/')
        );
        let body = form
            .iter()
            .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let response = http
            .post(url)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let body: Value =
            serde_json::from_slice(&response.bytes().await.map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
        if !status.is_success() {
            let message = body
                .get("error_description")
                .and_then(Value::as_str)
                .unwrap_or("no description");
            return Err(format!("HTTP {status}: {message}"));
        }
        parse_token(&body).ok_or_else(|| "no access_token in the answer".to_string())
    }
}

/// Chooses the source from the environment (`var`) and whether `az` is installed.
fn select(
    var: &dyn Fn(&str) -> Option<String>,
    has_az: &dyn Fn() -> bool,
) -> Result<Source, ArmError> {
    let authority =
        var("AZURE_AUTHORITY_HOST").unwrap_or_else(|| "https://login.microsoftonline.com".into());
    let want = var("PERIMETER_AZURE_CREDENTIAL").unwrap_or_else(|| "auto".into());
    let missing = |what: &str, names: &str| {
        ArmError::Setup(format!("PERIMETER_AZURE_CREDENTIAL={what} needs {names}"))
    };
    let client_secret = || match (
        var("AZURE_TENANT_ID"),
        var("AZURE_CLIENT_ID"),
        var("AZURE_CLIENT_SECRET"),
    ) {
        (Some(tenant), Some(client_id), Some(secret)) => Some(Source::ClientSecret {
            tenant,
            client_id,
            secret,
            authority: authority.clone(),
        }),
        _ => None,
    };
    let workload = || match (
        var("AZURE_TENANT_ID"),
        var("AZURE_CLIENT_ID"),
        var("AZURE_FEDERATED_TOKEN_FILE"),
    ) {
        (Some(tenant), Some(client_id), Some(token_file)) => Some(Source::WorkloadIdentity {
            tenant,
            client_id,
            token_file,
            authority: authority.clone(),
        }),
        _ => None,
    };
    match want.as_str() {
        "static" => var("PERIMETER_AZURE_TOKEN")
            .map(Source::Static)
            .ok_or_else(|| missing("static", "PERIMETER_AZURE_TOKEN")),
        "client-secret" => client_secret().ok_or_else(|| {
            missing(
                "client-secret",
                "AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET",
            )
        }),
        "workload-identity" => workload().ok_or_else(|| {
            missing(
                "workload-identity",
                "AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_FEDERATED_TOKEN_FILE",
            )
        }),
        "managed-identity" => Ok(Source::ManagedIdentity {
            client_id: var("AZURE_CLIENT_ID"),
        }),
        "azure-cli" => Ok(Source::AzureCli),
        "auto" => Ok(var("PERIMETER_AZURE_TOKEN")
            .map(Source::Static)
            .or_else(client_secret)
            .or_else(workload)
            .unwrap_or_else(|| {
                if has_az() {
                    Source::AzureCli
                } else {
                    Source::ManagedIdentity {
                        client_id: var("AZURE_CLIENT_ID"),
                    }
                }
            })),
        other => Err(ArmError::Setup(format!(
            "PERIMETER_AZURE_CREDENTIAL={other}: expected auto, static, client-secret, workload-identity, managed-identity or azure-cli"
        ))),
    }
}

/// `access_token` + `expires_in` (OAuth, managed identity) or `accessToken` + `expiresOn`
/// (the CLI: an hour is assumed).
fn parse_token(body: &Value) -> Option<(String, Duration)> {
    let token = body
        .get("access_token")
        .or_else(|| body.get("accessToken"))?
        .as_str()?
        .to_string();
    let number = |key: &str| match body.get(key) {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    };
    // `expires_in` (seconds left) or `expires_on` (epoch seconds: App Service identities and
    // the CLI, whose cached token may have only minutes left); an hour when neither is given.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let seconds = number("expires_in")
        .or_else(|| number("expires_on").map(|at| at.saturating_sub(now)))
        .unwrap_or(3600);
    Some((token, Duration::from_secs(seconds)))
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn auto_prefers_explicit_configuration() {
        let sp = env(&[
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_CLIENT_SECRET", "s"),
        ]);
        assert!(matches!(
            select(&sp, &|| true).unwrap(),
            Source::ClientSecret { .. }
        ));
        let wi = env(&[
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_FEDERATED_TOKEN_FILE", "/f"),
        ]);
        assert!(matches!(
            select(&wi, &|| true).unwrap(),
            Source::WorkloadIdentity { .. }
        ));
        assert_eq!(
            select(&env(&[("PERIMETER_AZURE_TOKEN", "x")]), &|| true).unwrap(),
            Source::Static("x".into())
        );
        assert_eq!(select(&env(&[]), &|| true).unwrap(), Source::AzureCli);
        assert_eq!(
            select(&env(&[]), &|| false).unwrap(),
            Source::ManagedIdentity { client_id: None }
        );
    }

    #[test]
    fn explicit_choices_say_what_they_miss() {
        let err = select(
            &env(&[("PERIMETER_AZURE_CREDENTIAL", "client-secret")]),
            &|| false,
        )
        .unwrap_err();
        assert!(err.to_string().contains("AZURE_CLIENT_SECRET"), "{err}");
        assert!(select(&env(&[("PERIMETER_AZURE_CREDENTIAL", "nope")]), &|| false).is_err());
    }

    #[test]
    fn token_answers_of_each_shape() {
        let oauth = serde_json::json!({"access_token": "a", "expires_in": 3599});
        assert_eq!(
            parse_token(&oauth),
            Some(("a".into(), Duration::from_secs(3599)))
        );
        let imds = serde_json::json!({"access_token": "b", "expires_in": "86399"});
        assert_eq!(
            parse_token(&imds).map(|t| t.1),
            Some(Duration::from_secs(86399))
        );
        let cli =
            serde_json::json!({"accessToken": "c", "expiresOn": "2026-11-23 23:00:00.000000"});
        assert_eq!(parse_token(&cli).map(|t| t.0), Some("c".into()));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let soon = serde_json::json!({"accessToken": "d", "expires_on": now + 120});
        let left = parse_token(&soon).unwrap().1;
        assert!(
            left <= Duration::from_secs(120) && left >= Duration::from_secs(100),
            "{left:?}"
        );
        assert_eq!(urlencode("a b/c"), "a%20b%2Fc");
    }
}
