//! Drift: how the clouds differ from the policy, as `perimeter drift` reports it
//! (docs/drift-format.md). Pure: the items come from each cloud's [`crate::lifecycle::Cloud`]
//! implementation; this module counts them, applies a baseline and renders the report.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde::Serialize;

use crate::plan::{Action, Finding};
use crate::violation::{Effect, Violation};

/// Version of the drift JSON document (docs/drift-format.md).
pub const DRIFT_FORMAT_VERSION: u32 = 2;

/// Older drift report versions whose keys a baseline may still use (version 2 added kinds,
/// not new keys for old items).
const BASELINE_VERSIONS: &[u64] = &[1, 2];

/// How the cloud differs from the policy in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DriftKind {
    /// The policy wants it, the cloud lacks it.
    Missing,
    /// The cloud has it, the policy does not.
    Unexpected,
    /// Both have it, with different contents.
    Modified,
    /// An object perimeter does not own makes the nodes' perimeter differ from the policy
    /// (apply cannot repair it; the item names the object and rule).
    Violation,
    /// A posture finding in a `private: true` perimeter (a public address, an internet route).
    Posture,
}

/// The classes `--fail-on` chooses from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FailClass {
    /// `missing`, `unexpected`, `modified`: what apply would repair.
    Changes,
    /// `violation`: what the nodes experience beyond perimeter's objects.
    Violations,
    /// `posture`: findings in a private perimeter.
    Posture,
}

impl FailClass {
    /// Every class: the default.
    pub const ALL: [FailClass; 3] = [
        FailClass::Changes,
        FailClass::Violations,
        FailClass::Posture,
    ];

    /// The class of an item kind.
    pub fn of(kind: DriftKind) -> Self {
        match kind {
            DriftKind::Missing | DriftKind::Unexpected | DriftKind::Modified => FailClass::Changes,
            DriftKind::Violation => FailClass::Violations,
            DriftKind::Posture => FailClass::Posture,
        }
    }
}

impl DriftKind {
    /// The drift a planned action repairs.
    pub fn of(a: Action) -> Self {
        match a {
            Action::Create => DriftKind::Missing,
            Action::Delete => DriftKind::Unexpected,
            Action::Update => DriftKind::Modified,
        }
    }

    /// The stable spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DriftKind::Missing => "missing",
            DriftKind::Unexpected => "unexpected",
            DriftKind::Modified => "modified",
            DriftKind::Violation => "violation",
            DriftKind::Posture => "posture",
        }
    }
}

/// One difference, as `drift` reports it (docs/drift-format.md).
#[derive(Debug, Clone, Serialize)]
pub struct DriftItem {
    /// What kind of difference.
    pub kind: DriftKind,
    /// [`Cloud::NAME`].
    pub cloud: &'static str,
    /// The target, e.g. `region/vpc/group` (AWS), `project/network` (GCP).
    pub target: String,
    /// The kind of object, e.g. `security-group-rule`, `firewall-rule`, `security-rule`.
    pub resource: &'static str,
    /// Stable identity, for baselines: `cloud/target/…`.
    pub key: String,
    /// One line for people.
    pub detail: String,
    /// For a violation: `opens` or `blocks`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effect: Option<Effect>,
}

impl DriftItem {
    /// An item of `cloud`'s `target`, keyed `cloud/target/key`.
    pub fn new(
        cloud: &'static str,
        target: &str,
        kind: DriftKind,
        resource: &'static str,
        key: &str,
        detail: String,
    ) -> Self {
        Self {
            kind,
            cloud,
            target: target.to_string(),
            resource,
            key: format!("{cloud}/{target}/{key}"),
            detail,
            effect: None,
        }
    }
}

/// The drift items of a target's violations: keyed `cloud/target/violation/<culprit key>`.
pub fn violation_items(
    cloud: &'static str,
    target: &str,
    violations: &[Violation],
) -> Vec<DriftItem> {
    violations
        .iter()
        .map(|v| {
            let mut item = DriftItem::new(
                cloud,
                target,
                DriftKind::Violation,
                "enforcement-path",
                &format!("violation/{}", v.key),
                v.line(),
            );
            item.effect = Some(v.effect);
            item
        })
        .collect()
}

/// The drift items of a private perimeter's posture findings: keyed
/// `cloud/target/posture/<code>/<resource>`.
pub fn posture_items(cloud: &'static str, target: &str, findings: &[Finding]) -> Vec<DriftItem> {
    findings
        .iter()
        .map(|f| {
            DriftItem::new(
                cloud,
                target,
                DriftKind::Posture,
                "posture",
                &format!("posture/{}/{}", f.code, f.resource),
                format!("{} {}: {}", f.code, f.resource, f.message),
            )
        })
        .collect()
}

/// The drift report: what `drift --format json` prints and a baseline is made from.
#[derive(Debug, Serialize)]
pub struct DriftReport<'a> {
    /// [`DRIFT_FORMAT_VERSION`].
    pub format_version: u32,
    /// Policy name.
    pub policy: &'a str,
    /// No item is left after the baseline.
    pub in_sync: bool,
    /// Some item left is of a class `--fail-on` names (the exit code is 2).
    pub failing: bool,
    /// Items by kind, after the baseline.
    pub counts: Counts,
    /// Items the baseline accepted.
    pub accepted: usize,
    /// Items left after the baseline.
    pub items: Vec<DriftItem>,
    /// Posture findings.
    pub findings: Vec<&'a Finding>,
    /// Requests the check sent.
    pub api_calls: u64,
}

/// Items by kind.
#[derive(Debug, Default, Serialize)]
pub struct Counts {
    /// [`DriftKind::Missing`].
    pub missing: usize,
    /// [`DriftKind::Unexpected`].
    pub unexpected: usize,
    /// [`DriftKind::Modified`].
    pub modified: usize,
    /// [`DriftKind::Violation`].
    pub violation: usize,
    /// [`DriftKind::Posture`].
    pub posture: usize,
}

impl<'a> DriftReport<'a> {
    /// The report of `items`, less those whose key the baseline accepts; it fails when an
    /// item left is of a class in `fail_on`.
    pub fn new(
        policy: &'a str,
        items: Vec<DriftItem>,
        accepted_keys: &BTreeSet<String>,
        findings: Vec<&'a Finding>,
        api_calls: u64,
        fail_on: &[FailClass],
    ) -> Self {
        let (accepted, items): (Vec<DriftItem>, Vec<DriftItem>) = items
            .into_iter()
            .partition(|i| accepted_keys.contains(&i.key));
        let mut counts = Counts::default();
        for i in &items {
            match i.kind {
                DriftKind::Missing => counts.missing += 1,
                DriftKind::Unexpected => counts.unexpected += 1,
                DriftKind::Modified => counts.modified += 1,
                DriftKind::Violation => counts.violation += 1,
                DriftKind::Posture => counts.posture += 1,
            }
        }
        Self {
            format_version: DRIFT_FORMAT_VERSION,
            policy,
            in_sync: items.is_empty(),
            failing: items
                .iter()
                .any(|i| fail_on.contains(&FailClass::of(i.kind))),
            counts,
            accepted: accepted.len(),
            items,
            findings,
            api_calls,
        }
    }

    /// One line per item and finding, then the totals.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for i in &self.items {
            let _ = writeln!(
                out,
                "{:<10} {} {}: {}",
                i.kind.as_str(),
                i.target,
                i.resource,
                i.detail
            );
        }
        for f in &self.findings {
            let _ = writeln!(out, "finding    {} {}: {}", f.code, f.resource, f.message);
        }
        let c = &self.counts;
        let _ = writeln!(
            out,
            "{}: {} missing, {} unexpected, {} modified, {} violations, {} posture ({} accepted by the baseline). API calls: {}",
            if self.in_sync { "In sync" } else { "Drift" },
            c.missing,
            c.unexpected,
            c.modified,
            c.violation,
            c.posture,
            self.accepted,
            self.api_calls
        );
        out
    }

    /// A node-exporter textfile-collector file; `now` is the run's Unix time in seconds.
    pub fn prometheus(&self, now: u64) -> String {
        let p = label(self.policy);
        let mut out = String::new();
        out.push_str("# HELP perimeter_drift_items Differences between the cloud and the policy, by kind.\n# TYPE perimeter_drift_items gauge\n");
        for (kind, n) in [
            ("missing", self.counts.missing),
            ("unexpected", self.counts.unexpected),
            ("modified", self.counts.modified),
        ] {
            let _ = writeln!(
                out,
                "perimeter_drift_items{{policy=\"{p}\",kind=\"{kind}\"}} {n}"
            );
        }
        out.push_str("# HELP perimeter_violations Places where the nodes' enforcement path differs from the policy, or private-perimeter posture findings, by cloud and kind (opens, blocks, posture).\n# TYPE perimeter_violations gauge\n");
        let mut violations: std::collections::BTreeMap<(&str, &str), usize> = Default::default();
        for i in &self.items {
            let kind = match (i.kind, i.effect) {
                (DriftKind::Violation, Some(e)) => e.as_str(),
                (DriftKind::Posture, _) => "posture",
                _ => continue,
            };
            *violations.entry((i.cloud, kind)).or_default() += 1;
        }
        for ((cloud, kind), n) in violations {
            let _ = writeln!(
                out,
                "perimeter_violations{{policy=\"{p}\",cloud=\"{cloud}\",kind=\"{kind}\"}} {n}"
            );
        }
        let gauges = [
            (
                "perimeter_in_sync",
                "1 when the cloud matches the policy (after the baseline).",
                u64::from(self.in_sync),
            ),
            (
                "perimeter_drift_accepted_items",
                "Differences accepted by the baseline.",
                self.accepted as u64,
            ),
            (
                "perimeter_findings",
                "Posture findings (public IPs, internet routes, unattached groups).",
                self.findings.len() as u64,
            ),
            (
                "perimeter_drift_api_calls",
                "API requests the check made.",
                self.api_calls,
            ),
            (
                "perimeter_drift_last_run_timestamp_seconds",
                "When the check ran.",
                now,
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{policy=\"{p}\"}} {value}"
            );
        }
        out
    }
}

/// A Prometheus label value, escaped.
fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Why a baseline cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BaselineError {
    /// Neither a saved report nor an accept list.
    #[error("has neither `items` (a saved drift report) nor `accept` (a list of keys)")]
    Shape,
    /// A saved report of another format version.
    #[error(
        "is a drift report of format version {0}; this perimeter reads version {DRIFT_FORMAT_VERSION}: make the baseline again"
    )]
    Version(u64),
    /// A saved report or accept list of another policy.
    #[error(
        "belongs to policy `{found}`, not `{expected}`: a baseline accepts drift of one policy"
    )]
    OtherPolicy {
        /// The policy being checked.
        expected: String,
        /// The policy the baseline names.
        found: String,
    },
    /// An entry that is not a key.
    #[error("entry {0} is not a drift key (a string such as `gcp/project/network/firewall/NAME`)")]
    NotAKey(usize),
}

/// The keys a baseline accepts for `policy`: a saved `drift --format json` report of that
/// policy (its items' keys) or `{"policy": NAME, "accept": [KEY, ...]}` (`policy` optional).
/// Anything else is refused, not ignored: a baseline that silently accepted nothing, or
/// another policy's drift, would hide what it should show.
pub fn baseline_keys(
    baseline: &serde_json::Value,
    policy: &str,
) -> Result<BTreeSet<String>, BaselineError> {
    if let Some(found) = baseline.get("policy").and_then(|p| p.as_str())
        && found != policy
    {
        return Err(BaselineError::OtherPolicy {
            expected: policy.into(),
            found: found.into(),
        });
    }
    let keys: Vec<Option<&str>> =
        if let Some(items) = baseline.get("items").and_then(|i| i.as_array()) {
            let version = baseline.get("format_version").and_then(|v| v.as_u64());
            if !version.is_some_and(|v| BASELINE_VERSIONS.contains(&v)) {
                return Err(BaselineError::Version(version.unwrap_or(0)));
            }
            items
                .iter()
                .map(|i| i.get("key").and_then(|k| k.as_str()))
                .collect()
        } else if let Some(accept) = baseline.get("accept").and_then(|a| a.as_array()) {
            accept.iter().map(|k| k.as_str()).collect()
        } else {
            return Err(BaselineError::Shape);
        };
    keys.into_iter()
        .enumerate()
        .map(|(i, k)| k.map(str::to_string).ok_or(BaselineError::NotAKey(i + 1)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(kind: DriftKind, key: &str) -> DriftItem {
        DriftItem::new("gcp", "p/n", kind, "firewall-rule", key, key.into())
    }

    #[test]
    fn a_baseline_accepts_items_by_key_and_the_rest_are_counted() {
        let items = vec![
            item(DriftKind::Missing, "a"),
            item(DriftKind::Unexpected, "b"),
            item(DriftKind::Modified, "c"),
        ];
        let accept = baseline_keys(&serde_json::json!({"accept": ["gcp/p/n/b"]}), "pol").unwrap();
        let r = DriftReport::new("pol", items, &accept, Vec::new(), 3, &FailClass::ALL);
        assert_eq!(
            (r.counts.missing, r.counts.unexpected, r.counts.modified),
            (1, 0, 1)
        );
        assert_eq!(r.accepted, 1);
        assert!(!r.in_sync);
        assert!(r.text().ends_with("Drift: 1 missing, 0 unexpected, 1 modified, 0 violations, 0 posture (1 accepted by the baseline). API calls: 3\n"));
        let saved = serde_json::to_value(&r).unwrap();
        let again = baseline_keys(&saved, "pol").unwrap();
        let r = DriftReport::new(
            "pol",
            vec![item(DriftKind::Missing, "a")],
            &again,
            Vec::new(),
            0,
            &FailClass::ALL,
        );
        assert!(r.in_sync);
        assert_eq!(
            baseline_keys(&serde_json::json!({"other": 1}), "pol"),
            Err(BaselineError::Shape)
        );
        assert!(matches!(
            baseline_keys(&saved, "another"),
            Err(BaselineError::OtherPolicy { .. })
        ));
        let mut future = saved.clone();
        future["format_version"] = serde_json::json!(99);
        assert_eq!(
            baseline_keys(&future, "pol"),
            Err(BaselineError::Version(99))
        );
        assert_eq!(
            baseline_keys(&serde_json::json!({"accept": ["a", 7]}), "pol"),
            Err(BaselineError::NotAKey(2))
        );
    }

    #[test]
    fn prometheus_labels_are_escaped() {
        let r = DriftReport::new(
            "a\"b\\c\nd",
            Vec::new(),
            &BTreeSet::new(),
            Vec::new(),
            0,
            &FailClass::ALL,
        );
        let out = r.prometheus(7);
        assert!(
            out.contains("perimeter_in_sync{policy=\"a\\\"b\\\\c\\nd\"} 1"),
            "{out}"
        );
        assert!(
            out.contains(
                "perimeter_drift_last_run_timestamp_seconds{policy=\"a\\\"b\\\\c\\nd\"} 7"
            )
        );
    }
}
