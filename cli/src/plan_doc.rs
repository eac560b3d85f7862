//! The plan document: what `plan --out` saves, `plan --format json` prints and `apply` reads.
//! Versioned and documented in docs/plan-format.md.

use perimeter_aws::plan::AwsTargetPlan;
use perimeter_azure::plan::{AzureTargetPlan, PlanError as AzurePlanError};
use perimeter_core::plan::{PLAN_FORMAT_VERSION, Summary, sha256_hex};
use perimeter_core::target::{AzureTarget, GcpTarget};
use perimeter_gcp::plan::{GcpTargetPlan, PlanError};
use serde::{Deserialize, Serialize};

/// One plan over every target of a policy.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PlanDocument {
    /// [`PLAN_FORMAT_VERSION`].
    pub(crate) format_version: u32,
    /// The perimeter version that made it.
    pub(crate) perimeter_version: String,
    /// Policy name.
    pub(crate) policy: String,
    /// Policy file as given.
    pub(crate) policy_file: String,
    /// SHA-256 of the policy file.
    pub(crate) policy_sha256: String,
    /// Requests sent to cloud APIs to make the plan (retries included).
    pub(crate) api_calls: u64,
    /// Totals over every target.
    pub(crate) summary: Summary,
    /// AWS targets.
    #[serde(default)]
    pub(crate) aws: Vec<AwsTargetPlan>,
    /// GCP networks.
    #[serde(default)]
    pub(crate) gcp: Vec<GcpTargetPlan>,
    /// Azure network security groups.
    #[serde(default)]
    pub(crate) azure: Vec<AzureTargetPlan>,
    /// `hmac-sha256:HEX` over the document without this field, when `PERIMETER_PLAN_KEY` was
    /// set at plan time (docs/plan-format.md, Signature).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) signature: Option<String>,
}

/// The plans of every cloud, before they become a document.
#[derive(Debug, Default)]
pub(crate) struct Plans {
    pub(crate) aws: Vec<AwsTargetPlan>,
    pub(crate) gcp: Vec<GcpTargetPlan>,
    /// GCP targets a read-only plan could not plan, and why (drift reports them).
    pub(crate) gcp_problems: Vec<(GcpTarget, PlanError)>,
    pub(crate) azure: Vec<AzureTargetPlan>,
    /// Azure targets a read-only plan could not plan, and why.
    pub(crate) azure_problems: Vec<(AzureTarget, AzurePlanError)>,
    /// Requests sent to make them.
    pub(crate) api_calls: u64,
}

impl PlanDocument {
    pub(crate) fn new(policy: &str, file: &str, text: &str, plans: Plans) -> Self {
        let Plans {
            aws,
            gcp,
            azure,
            api_calls,
            ..
        } = plans;
        let mut summary = Summary::default();
        for s in aws
            .iter()
            .map(AwsTargetPlan::summary)
            .chain(gcp.iter().map(GcpTargetPlan::summary))
            .chain(azure.iter().map(AzureTargetPlan::summary))
        {
            summary.add += s.add;
            summary.change += s.change;
            summary.destroy += s.destroy;
        }
        Self {
            format_version: PLAN_FORMAT_VERSION,
            perimeter_version: env!("CARGO_PKG_VERSION").to_string(),
            policy: policy.to_string(),
            policy_file: file.to_string(),
            policy_sha256: sha256_hex(text.as_bytes()),
            api_calls,
            summary,
            aws,
            gcp,
            azure,
            signature: None,
        }
    }

    /// The signature of this document under `key`: HMAC-SHA256 over its canonical JSON with
    /// no signature field. Canonical JSON is what this perimeter writes, so a plan re-indented
    /// by a tool still verifies, and a changed value never does.
    pub(crate) fn signature_under(&self, key: &[u8]) -> anyhow::Result<String> {
        use hmac::{Hmac, KeyInit, Mac};
        let unsigned = Self {
            signature: None,
            ..self.clone()
        };
        let bytes = serde_json::to_vec(&unsigned)?;
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key)
            .map_err(|_| anyhow::anyhow!("PERIMETER_PLAN_KEY cannot be used as an HMAC key"))?;
        mac.update(&bytes);
        let tag: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(format!("hmac-sha256:{tag}"))
    }
}

/// The key that signs saved plans, from `PERIMETER_PLAN_KEY` (unset or empty: plans are not
/// signed). The key itself is never printed.
pub(crate) fn plan_key() -> Option<Vec<u8>> {
    std::env::var_os("PERIMETER_PLAN_KEY")
        .filter(|k| !k.is_empty())
        .map(|k| k.as_encoded_bytes().to_vec())
}
