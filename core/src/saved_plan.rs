//! A saved plan as apply sees it: untrusted JSON, told apart from a policy, and compared with
//! a fresh plan (docs/plan-format.md, "What apply checks"). Nothing in a saved plan is ever
//! executed: apply executes the fresh plan, and only when the two are equal.

use serde_json::{Map, Value};

use crate::plan::{JsonDifference, PLAN_FORMAT_VERSION, json_differences};

/// What a file given to apply is.
#[derive(Debug, Clone, PartialEq)]
pub enum ApplyInput {
    /// A saved plan's JSON object, with `policy`, `policy_file` and `policy_sha256` strings.
    Plan(Map<String, Value>),
    /// Not a plan: a policy (YAML, or JSON with `apiVersion`).
    Policy,
}

/// Why a file that looks like a plan is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SavedPlanError {
    /// It starts like JSON and does not parse.
    #[error(
        "is not a valid perimeter plan: broken JSON ({message}); was it truncated? Make the plan again"
    )]
    BrokenJson {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// JSON, but not an object.
    #[error("is not a perimeter plan: a plan is a JSON object (docs/plan-format.md)")]
    NotAnObject,
    /// A version this perimeter does not read.
    #[error(
        "is a plan of format version {0}; this perimeter reads versions 1 to {PLAN_FORMAT_VERSION}: make the plan again"
    )]
    UnknownVersion(u64),
    /// A field every plan has is missing.
    #[error("is not a valid perimeter plan: it has no `{0}` (docs/plan-format.md)")]
    MissingField(&'static str),
}

/// Tells a saved plan from a policy. Anything that starts like JSON is judged as a plan, so a
/// truncated or broken plan file says so instead of being read as a policy.
pub fn classify(text: &str) -> Result<ApplyInput, SavedPlanError> {
    let looks_like_json = matches!(text.trim_start().as_bytes().first(), Some(b'{' | b'['));
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) if looks_like_json => {
            return Err(SavedPlanError::BrokenJson {
                line: e.line(),
                column: e.column(),
                message: e.to_string(),
            });
        }
        Err(_) => return Ok(ApplyInput::Policy),
    };
    let Value::Object(object) = value else {
        return Err(SavedPlanError::NotAnObject);
    };
    if object.contains_key("apiVersion") {
        return Ok(ApplyInput::Policy);
    }
    match object.get("format_version").and_then(Value::as_u64) {
        // Older plans (1: AWS only; 2: AWS and GCP) read as plans without the newer clouds.
        Some(v) if (1..=u64::from(PLAN_FORMAT_VERSION)).contains(&v) => {}
        Some(v) => return Err(SavedPlanError::UnknownVersion(v)),
        None => return Err(SavedPlanError::MissingField("format_version")),
    }
    for field in ["policy", "policy_file", "policy_sha256"] {
        if object.get(field).and_then(Value::as_str).is_none() {
            return Err(SavedPlanError::MissingField(field));
        }
    }
    Ok(ApplyInput::Plan(object))
}

/// A string field of a saved plan ([`classify`] checked the ones it needs).
pub fn field<'a>(saved: &'a Map<String, Value>, name: &str) -> &'a str {
    saved.get(name).and_then(Value::as_str).unwrap_or_default()
}

/// Why a saved plan is not the fresh one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// A fingerprint differs: the cloud changed since the plan was made.
    pub stale: bool,
    /// One line per difference, at most a dozen, then how many more.
    pub reasons: Vec<String>,
}

/// Fields that say how and when a plan was made; they may differ between equal plans.
const INCIDENTAL: [&str; 5] = [
    "format_version",
    "perimeter_version",
    "policy_file",
    "api_calls",
    "signature",
];

/// Compares a saved plan with a fresh one, both in the same canonical form. `None`: equal.
pub fn compare(saved: &Map<String, Value>, fresh: &Map<String, Value>) -> Option<Mismatch> {
    const SHOWN: usize = 12;
    let strip = |m: &Map<String, Value>| {
        let mut m = m.clone();
        for key in INCIDENTAL {
            m.remove(key);
        }
        Value::Object(m)
    };
    let (mut found, total) = json_differences(&strip(saved), &strip(fresh), usize::MAX);
    if total == 0 {
        return None;
    }
    // What the cloud changed first: one stale fingerprint explains the differences after it.
    found.sort_by_key(|d| !d.path.contains("fingerprint"));
    let stale = found
        .first()
        .is_some_and(|d| d.path.contains("fingerprint"));
    let mut reasons: Vec<String> = found.iter().take(SHOWN).map(difference_line).collect();
    if total > SHOWN {
        reasons.push(format!("… and {} more difference(s)", total - SHOWN));
    }
    Some(Mismatch { stale, reasons })
}

fn difference_line(d: &JsonDifference) -> String {
    fn show(v: Option<&Value>) -> String {
        let Some(v) = v else {
            return "nothing".into();
        };
        let s = v.to_string();
        if s.chars().count() > 96 {
            format!("{}…", s.chars().take(96).collect::<String>())
        } else {
            s
        }
    }
    if d.path.contains("fingerprint") {
        format!(
            "{}: the cloud changed since the plan was made (an object the plan depends on was changed by someone else)",
            d.path
        )
    } else {
        format!(
            "{}: the plan file has {}, a fresh plan has {}",
            d.path,
            show(d.left.as_ref()),
            show(d.right.as_ref())
        )
    }
}

/// The signature of a plan document under `key` (`PERIMETER_PLAN_KEY`): `hmac-sha256:HEX`
/// over its canonical JSON (keys sorted, compact) without the `signature` field. A plan
/// re-indented by a tool still verifies; a changed value never does.
pub fn signature(mut doc: Value, key: &[u8]) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    if let Some(o) = doc.as_object_mut() {
        o.remove("signature");
    }
    // HMAC takes a key of any length; the error arm is for the type's sake.
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(doc.to_string().as_bytes());
    let tag: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("hmac-sha256:{tag}")
}

/// Equal strings, compared in time that does not depend on where they differ: a signature
/// check must not tell an attacker how much of a guess was right.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn plan(extra: Value) -> Map<String, Value> {
        let mut m = json!({"format_version": 3, "policy": "p", "policy_file": "p.yaml",
            "policy_sha256": "00", "api_calls": 4, "summary": {"add": 1}, "gcp": [{"fingerprint": "a", "x": 1}]})
        .as_object()
        .unwrap()
        .clone();
        for (k, v) in extra.as_object().unwrap() {
            m.insert(k.clone(), v.clone());
        }
        m
    }

    #[test]
    fn plans_and_policies_and_broken_plans_are_told_apart() {
        assert!(matches!(
            classify(&Value::Object(plan(json!({}))).to_string()),
            Ok(ApplyInput::Plan(_))
        ));
        assert_eq!(
            classify("apiVersion: perimeter/v1\n"),
            Ok(ApplyInput::Policy)
        );
        assert_eq!(
            classify("{\"apiVersion\": \"perimeter/v1\"}"),
            Ok(ApplyInput::Policy)
        );
        assert!(matches!(
            classify("{\"format_version\": 3, \"pol"),
            Err(SavedPlanError::BrokenJson { line: 1, .. })
        ));
        assert_eq!(classify("[1]"), Err(SavedPlanError::NotAnObject));
        assert_eq!(
            classify("{\"format_version\": 99}"),
            Err(SavedPlanError::UnknownVersion(99))
        );
        assert_eq!(
            classify("{\"format_version\": 3, \"policy\": \"p\"}"),
            Err(SavedPlanError::MissingField("policy_file"))
        );
    }

    #[test]
    fn only_incidental_fields_may_differ() {
        let saved = plan(json!({}));
        let again = plan(json!({"api_calls": 9, "perimeter_version": "9.9", "policy_file": "/x"}));
        assert_eq!(compare(&saved, &again), None);
        let widened = plan(json!({"gcp": [{"fingerprint": "a", "x": 2}]}));
        let m = compare(&widened, &saved).unwrap();
        assert!(!m.stale);
        assert_eq!(
            m.reasons,
            ["gcp[0].x: the plan file has 2, a fresh plan has 1"]
        );
        let changed = plan(json!({"gcp": [{"fingerprint": "b", "x": 1}]}));
        assert!(compare(&changed, &saved).unwrap().stale);
        let summary = plan(json!({"summary": {"add": 0}}));
        assert!(compare(&summary, &saved).is_some());
        // A stale fingerprint behind many other differences still says stale, and first.
        let (mut edited, mut fresh) = (Vec::new(), Vec::new());
        for i in 0..20 {
            edited.push(json!({"fingerprint": if i == 19 { "b" } else { "a" }, "x": i}));
            fresh.push(json!({"fingerprint": "a", "x": i + 1}));
        }
        let m = compare(&plan(json!({"gcp": edited})), &plan(json!({"gcp": fresh}))).unwrap();
        assert!(m.stale);
        assert!(
            m.reasons[0].starts_with("gcp[19].fingerprint"),
            "{:?}",
            m.reasons
        );
        assert_eq!(m.reasons.len(), 13);
    }

    #[test]
    fn a_signature_covers_every_value_but_not_the_layout() {
        let doc = Value::Object(plan(json!({})));
        let sig = signature(doc.clone(), b"key");
        assert!(sig.starts_with("hmac-sha256:") && sig.len() == 12 + 64);
        let mut signed = plan(json!({}));
        signed.insert("signature".into(), json!(sig));
        assert_eq!(signature(Value::Object(signed), b"key"), sig);
        let reparsed: Value =
            serde_json::from_str(&serde_json::to_string_pretty(&doc).unwrap()).unwrap();
        assert_eq!(signature(reparsed, b"key"), sig);
        assert_ne!(
            signature(Value::Object(plan(json!({"api_calls": 5}))), b"key"),
            sig
        );
        assert_ne!(signature(doc, b"other key"), sig);
    }

    #[test]
    fn secrets_compare_equal_only_when_equal() {
        assert!(same_secret("hmac-sha256:ab", "hmac-sha256:ab"));
        assert!(!same_secret("hmac-sha256:ab", "hmac-sha256:ac"));
        assert!(!same_secret("hmac-sha256:ab", "hmac-sha256:a"));
    }
}
