//! Diffing desired against observed native rules, and the plan data that results.
//!
//! A plan is data: every name, priority and number is decided before apply runs, and changes
//! are already in execution order (create, then update, then delete: a rule is never missing
//! while it is replaced). Rendering reads a plan and never changes it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A native rule with an identity. Rules with the same key are the same cloud object; rules
/// with equal keys but different contents are updates.
pub trait Keyed {
    /// The identity (e.g. GCP rule name, NACL direction + rule number).
    type Key: Ord + Clone;
    /// The rule's key.
    fn key(&self) -> Self::Key;
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
        write!(f, "Plan: {} to add, {} to change, {} to destroy.", self.add, self.change, self.destroy)
    }
}

/// Diffs desired against observed by key. Output order: creates, updates, deletes, each in key
/// order, so apply adds before it removes.
pub fn diff<R: Keyed + PartialEq + Clone>(desired: &[R], observed: &[R]) -> Vec<Change<R>> {
    let observed_by_key: BTreeMap<R::Key, &R> = observed.iter().map(|r| (r.key(), r)).collect();
    let desired_by_key: BTreeMap<R::Key, &R> = desired.iter().map(|r| (r.key(), r)).collect();
    let mut creates = Vec::new();
    let mut updates = Vec::new();
    for (key, want) in &desired_by_key {
        match observed_by_key.get(key) {
            None => creates.push(Change { action: Action::Create, before: None, after: Some((*want).clone()) }),
            Some(have) if *have != *want => updates.push(Change {
                action: Action::Update,
                before: Some((*have).clone()),
                after: Some((*want).clone()),
            }),
            Some(_) => {}
        }
    }
    let deletes = observed_by_key
        .iter()
        .filter(|(k, _)| !desired_by_key.contains_key(*k))
        .map(|(_, have)| Change { action: Action::Delete, before: Some((*have).clone()), after: None });
    creates.into_iter().chain(updates).chain(deletes).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, PartialEq, Eq, Debug)]
    struct R(&'static str, u32);
    impl Keyed for R {
        type Key = &'static str;
        fn key(&self) -> Self::Key {
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
        assert_eq!(Summary::of(&changes).to_string(), "Plan: 1 to add, 1 to change, 1 to destroy.");
    }

    #[test]
    fn equal_sets_diff_to_nothing() {
        let rules = [R("a", 1), R("b", 2)];
        assert!(diff(&rules, &rules).is_empty());
    }
}
