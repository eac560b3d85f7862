//! Diffing desired against observed native rules, and the plan data that results.
//!
//! A plan is data: every name, priority and number is decided before apply runs, and changes
//! are already in execution order (create, then update, then delete: a rule is never missing
//! while it is replaced). Rendering reads a plan and never changes it.

use std::collections::HashMap;
use std::hash::Hash;

use serde::{Deserialize, Serialize};

/// Version of the plan document (`plan --format json`, `plan --out`). Documented in
/// docs/plan-format.md; bumped only on incompatible change. 2 added GCP targets and 3 Azure
/// targets: an older reader would apply only the parts it knows, so it must refuse the plan.
pub const PLAN_FORMAT_VERSION: u32 = 7;

/// A fingerprint of observed state: the SHA-256 of its canonical JSON. A saved plan records
/// one per resource; apply re-observes and refuses to write if any differs ("stale plan").
///
/// Fails when the state cannot be serialized, never hashing a stand-in: two states that both
/// failed would otherwise share a fingerprint, and the stale check would pass them.
pub fn fingerprint<T: Serialize + ?Sized>(value: &T) -> Result<String, FingerprintError> {
    // serde_json writes struct fields in declaration order and our maps are BTreeMaps, so the
    // same state always gives the same bytes.
    let bytes = serde_json::to_vec(value).map_err(|e| FingerprintError(e.to_string()))?;
    Ok(sha256_hex(&bytes))
}

/// SHA-256 of some bytes, in lower-case hex (what `sha256sum` prints).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Observed state that could not be fingerprinted: nothing may be planned or applied on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot fingerprint the observed state ({0}); refusing to plan or apply on it")]
pub struct FingerprintError(pub String);

/// One place where two JSON documents differ: a path such as
/// `aws[0].security_group.changes[1].after.peer` and the value on each side (`None`: absent).
#[derive(Clone, PartialEq, Debug)]
pub struct JsonDifference {
    /// Where, from the root: `.field` and `[index]` steps (no leading dot).
    pub path: String,
    /// The value in the first document.
    pub left: Option<serde_json::Value>,
    /// The value in the second document.
    pub right: Option<serde_json::Value>,
}

/// The places where two JSON values differ, deepest first-found order, at most `limit`
/// (`total` counts them all). Apply uses it to say exactly how a saved plan differs from a
/// fresh one.
pub fn json_differences(
    left: &serde_json::Value,
    right: &serde_json::Value,
    limit: usize,
) -> (Vec<JsonDifference>, usize) {
    let mut found = Vec::new();
    let mut total = 0;
    walk(
        left,
        right,
        &mut String::new(),
        limit,
        &mut found,
        &mut total,
    );
    (found, total)
}

fn walk(
    left: &serde_json::Value,
    right: &serde_json::Value,
    path: &mut String,
    limit: usize,
    found: &mut Vec<JsonDifference>,
    total: &mut usize,
) {
    use serde_json::Value;
    let step = |path: &mut String,
                seg: String,
                l: Option<&Value>,
                r: Option<&Value>,
                found: &mut Vec<JsonDifference>,
                total: &mut usize| {
        let len = path.len();
        path.push_str(&seg);
        match (l, r) {
            (Some(l), Some(r)) => walk(l, r, path, limit, found, total),
            _ => {
                *total += 1;
                if found.len() < limit {
                    found.push(JsonDifference {
                        path: path.clone(),
                        left: l.cloned(),
                        right: r.cloned(),
                    });
                }
            }
        }
        path.truncate(len);
    };
    match (left, right) {
        (Value::Object(l), Value::Object(r)) => {
            let keys: std::collections::BTreeSet<&String> = l.keys().chain(r.keys()).collect();
            for k in keys {
                let seg = if path.is_empty() {
                    k.clone()
                } else {
                    format!(".{k}")
                };
                step(path, seg, l.get(k), r.get(k), found, total);
            }
        }
        (Value::Array(l), Value::Array(r)) => {
            for i in 0..l.len().max(r.len()) {
                step(path, format!("[{i}]"), l.get(i), r.get(i), found, total);
            }
        }
        (l, r) if l == r => {}
        (l, r) => {
            *total += 1;
            if found.len() < limit {
                found.push(JsonDifference {
                    path: path.clone(),
                    left: Some(l.clone()),
                    right: Some(r.clone()),
                });
            }
        }
    }
}

/// Something about the cloud's posture that the policy cares about but perimeter does not
/// change (e.g. a node with a public IP in a private perimeter).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Finding {
    /// Stable code, e.g. `public-ip`, `internet-route`, `group-not-attached`.
    pub code: String,
    /// The cloud object it concerns.
    pub resource: String,
    /// What is wrong and why it matters.
    pub message: String,
}

impl Finding {
    /// The findings of one target as plan text (`Findings (n):` and one line each); empty when
    /// there are none.
    pub fn render_text(findings: &[Finding]) -> String {
        if findings.is_empty() {
            return String::new();
        }
        let mut out = format!("Findings ({}):\n", findings.len());
        for f in findings {
            out.push_str(&format!("  {} {}: {}\n", f.code, f.resource, f.message));
        }
        out
    }

    /// The findings as Markdown list items.
    pub fn render_markdown(findings: &[Finding]) -> String {
        findings
            .iter()
            .map(|f| {
                format!(
                    "- :warning: **{}** `{}`: {}\n",
                    f.code, f.resource, f.message
                )
            })
            .collect()
    }
}

/// A native rule with an identity. Rules with the same key are the same cloud object; rules
/// with equal keys but different contents are updates.
pub trait Keyed {
    /// The identity (e.g. GCP rule name, NACL direction + rule number), borrowed from the rule
    /// so that diffing large rule sets copies nothing.
    type Key<'a>: Eq + Hash
    where
        Self: 'a;
    /// The rule's key.
    fn key(&self) -> Self::Key<'_>;
}

/// What happens to one native rule. Symbols follow Terraform.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Created (`+`).
    Create,
    /// Changed in place (`~`).
    Update,
    /// Deleted (`-`).
    Delete,
}

impl Action {
    /// Terraform's symbol for the action.
    pub fn symbol(self) -> char {
        match self {
            Action::Create => '+',
            Action::Update => '~',
            Action::Delete => '-',
        }
    }
}

/// One planned change. `before` is `None` exactly for creates, `after` exactly for deletes.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Change<R> {
    /// What happens.
    pub action: Action,
    /// The observed rule (absent for a create).
    pub before: Option<R>,
    /// The desired rule (absent for a delete).
    pub after: Option<R>,
}

/// Counts in Terraform's "Plan: N to add, N to change, N to destroy." line.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct Summary {
    /// Creates.
    pub add: usize,
    /// In-place updates.
    pub change: usize,
    /// Deletes.
    pub destroy: usize,
}

impl Summary {
    /// Counts the changes.
    pub fn of<R>(changes: &[Change<R>]) -> Self {
        let mut s = Summary::default();
        for c in changes {
            match c.action {
                Action::Create => s.add += 1,
                Action::Update => s.change += 1,
                Action::Delete => s.destroy += 1,
            }
        }
        s
    }

    /// True when nothing changes.
    pub fn is_empty(&self) -> bool {
        self.add == 0 && self.change == 0 && self.destroy == 0
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Plan: {} to add, {} to change, {} to destroy.",
            self.add, self.change, self.destroy
        )
    }
}

/// Diffs desired against observed by key. Output order: creates, then updates (both in the
/// order of `desired`), then deletes (in the order of `observed`), so apply adds before it
/// removes and the same inputs always give the same plan.
pub fn diff<R: Keyed + PartialEq + Clone>(desired: &[R], observed: &[R]) -> Vec<Change<R>> {
    let mut observed_index: HashMap<R::Key<'_>, usize, BuildFxHasher> =
        HashMap::with_capacity_and_hasher(observed.len(), BuildFxHasher);
    for (i, r) in observed.iter().enumerate() {
        observed_index.insert(r.key(), i);
    }
    let mut matched = vec![false; observed.len()];
    let mut creates = Vec::new();
    let mut updates = Vec::new();
    for want in desired {
        match observed_index.get(&want.key()) {
            None => creates.push(Change {
                action: Action::Create,
                before: None,
                after: Some(want.clone()),
            }),
            Some(&i) => {
                matched[i] = true;
                if observed[i] != *want {
                    updates.push(Change {
                        action: Action::Update,
                        before: Some(observed[i].clone()),
                        after: Some(want.clone()),
                    });
                }
            }
        }
    }
    let deletes = observed
        .iter()
        .zip(matched)
        .filter(|(_, m)| !m)
        .map(|(have, _)| Change {
            action: Action::Delete,
            before: Some(have.clone()),
            after: None,
        });
    creates.into_iter().chain(updates).chain(deletes).collect()
}

/// A fast, non-cryptographic hasher (the Fx hash used inside rustc). Keys here are rule names
/// and tuples from our own compilers, not attacker-chosen input worth SipHash's cost.
#[derive(Clone, Copy, Default)]
struct BuildFxHasher;

impl std::hash::BuildHasher for BuildFxHasher {
    type Hasher = FxHasher;
    fn build_hasher(&self) -> FxHasher {
        FxHasher(0)
    }
}

struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let v = u64::from_le_bytes(c.try_into().expect("8 bytes"));
            self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, PartialEq, Eq, Debug)]
    struct R(&'static str, u32);
    impl Keyed for R {
        type Key<'a> = &'static str;
        fn key(&self) -> Self::Key<'_> {
            self.0
        }
    }

    #[test]
    fn creates_come_before_updates_before_deletes() {
        let desired = [R("b", 2), R("c", 1)];
        let observed = [R("a", 1), R("b", 1)];
        let changes = diff(&desired, &observed);
        let actions: Vec<Action> = changes.iter().map(|c| c.action).collect();
        assert_eq!(actions, [Action::Create, Action::Update, Action::Delete]);
        assert_eq!(
            Summary::of(&changes).to_string(),
            "Plan: 1 to add, 1 to change, 1 to destroy."
        );
    }

    #[test]
    fn a_state_that_cannot_be_serialized_has_no_fingerprint() {
        // JSON object keys must be strings: a map keyed by tuples fails to serialize.
        let mut unserializable = std::collections::BTreeMap::new();
        unserializable.insert((1, 2), "x");
        assert!(fingerprint(&unserializable).is_err());
        assert_eq!(fingerprint(&[1, 2]), fingerprint(&[1, 2]));
        assert_ne!(fingerprint(&[1, 2]).unwrap(), fingerprint(&[2, 1]).unwrap());
    }

    #[test]
    fn json_differences_name_the_path_of_each_difference() {
        let a = serde_json::json!({"aws": [{"cidr": "10.0.0.0/8", "port": 22}], "n": 1});
        let b = serde_json::json!({"aws": [{"cidr": "0.0.0.0/0", "port": 22}, {}], "n": 1});
        let (found, total) = json_differences(&a, &b, 10);
        assert_eq!(total, 2);
        assert_eq!(found[0].path, "aws[0].cidr");
        assert_eq!(found[0].right, Some(serde_json::json!("0.0.0.0/0")));
        assert_eq!(found[1].path, "aws[1]");
        assert_eq!(found[1].left, None);
        assert_eq!(json_differences(&a, &a, 10), (Vec::new(), 0));
        let (found, total) = json_differences(&a, &b, 1);
        assert_eq!((found.len(), total), (1, 2));
    }

    #[test]
    fn equal_sets_diff_to_nothing() {
        let rules = [R("a", 1), R("b", 2)];
        assert!(diff(&rules, &rules).is_empty());
    }
}
