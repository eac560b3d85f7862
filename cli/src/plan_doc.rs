//! The plan document: what `plan --out` saves, `plan --format json` prints and `apply` reads.
//! Versioned and documented in docs/plan-format.md.

use perimeter_core::plan::{PLAN_FORMAT_VERSION, Summary, sha256_hex};
use serde::Serialize;

use crate::clouds::{Clouds, for_each_cloud};

/// One plan over every target of a policy. Its per-cloud sections are the sessions' plans.
#[derive(Serialize)]
pub(crate) struct PlanDocument<'a> {
    /// [`PLAN_FORMAT_VERSION`].
    format_version: u32,
    /// The perimeter version that made it.
    perimeter_version: &'static str,
    /// Policy name.
    pub(crate) policy: &'a str,
    /// Policy file as given.
    policy_file: &'a str,
    /// SHA-256 of the policy file.
    policy_sha256: String,
    /// Requests sent to cloud APIs to make the plan (retries included).
    pub(crate) api_calls: u64,
    /// Totals over every target.
    pub(crate) summary: Summary,
    /// True for a plan that retires the policy (`plan --destroy`, `destroy`): everything the
    /// policy owns is removed.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) destroy: bool,
    /// `"aws": [...], "gcp": [...], "azure": [...]`.
    #[serde(flatten)]
    pub(crate) clouds: &'a Clouds,
    /// `hmac-sha256:HEX` over the document without this field, when `PERIMETER_PLAN_KEY` was
    /// set at plan time (docs/plan-format.md, Signature).
    #[serde(skip_serializing_if = "Option::is_none")]
    signature: Option<String>,
}

impl<'a> PlanDocument<'a> {
    pub(crate) fn new(
        policy: &'a str,
        file: &'a str,
        text: &str,
        api_calls: u64,
        clouds: &'a Clouds,
    ) -> Self {
        let summary = total_summary(clouds);
        Self {
            format_version: PLAN_FORMAT_VERSION,
            perimeter_version: env!("CARGO_PKG_VERSION"),
            policy,
            policy_file: file,
            policy_sha256: sha256_hex(text.as_bytes()),
            api_calls,
            summary,
            destroy: false,
            clouds,
            signature: None,
        }
    }

    /// Signs the document when `PERIMETER_PLAN_KEY` is set.
    pub(crate) fn sign(&mut self) -> anyhow::Result<()> {
        if let Some(key) = plan_key() {
            let unsigned = serde_json::to_value(&*self)?;
            self.signature = Some(perimeter_core::saved_plan::signature(unsigned, &key));
        }
        Ok(())
    }
}

/// "Plan: N to add, N to change, N to destroy." over every cloud's plans.
pub(crate) fn total_summary(clouds: &Clouds) -> Summary {
    let mut summary = Summary::default();
    for_each_cloud!(ref clouds, |s| {
        let t = s.summary();
        summary.add += t.add;
        summary.change += t.change;
        summary.destroy += t.destroy;
    });
    summary
}

/// The key that signs saved plans, from `PERIMETER_PLAN_KEY` (unset or empty: plans are not
/// signed). The key itself is never printed.
pub(crate) fn plan_key() -> Option<Vec<u8>> {
    std::env::var_os("PERIMETER_PLAN_KEY")
        .filter(|k| !k.is_empty())
        .map(|k| k.as_encoded_bytes().to_vec())
}
