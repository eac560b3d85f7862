//! Desired (compiled) against observed → the changes for one GCP network. Pure.
//!
//! Everything apply needs is decided here, including the API method of every write: a rule
//! whose lists only change is PATCHed (JSON merge patch), but the client never sends an empty
//! list, so a change that must clear a list or switch allow ↔ deny is a full PUT (`update`).
//! Foreign rules are never written; where they make the nodes' perimeter differ from the
//! policy is computed exactly (crate::effective) and reported as violations.

use std::collections::BTreeMap;

use perimeter_core::Note;
use perimeter_core::plan::{Action, Finding, FingerprintError, Summary, diff, fingerprint};
use perimeter_core::target::GcpTarget;
use perimeter_core::violation::{TooLarge, Violation};
use serde::{Deserialize, Serialize};

use crate::compile::GcpCompiled;
use crate::effective::GcpEstate;
use crate::model::Firewall;
use crate::state::{FirewallQuota, ObservedGcp, canonical};
use crate::transition::GcpTransition;
use perimeter_core::transition::{Unsafe, order};

/// The Compute API call that carries out a change.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WriteMethod {
    /// `firewalls.insert` (POST).
    Insert,
    /// `firewalls.patch` (PATCH, merge semantics).
    Patch,
    /// `firewalls.update` (PUT, replaces the rule).
    Update,
    /// `firewalls.delete`.
    Delete,
}

/// One firewall rule change.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct FirewallChange {
    /// Create, update or delete.
    pub action: Action,
    /// The API call apply makes.
    pub method: WriteMethod,
    /// Rule name.
    pub name: String,
    /// Observed rule (absent for a create).
    pub before: Option<Firewall>,
    /// Desired rule (absent for a delete).
    pub after: Option<Firewall>,
    /// The step (from 1) the write runs in: steps run one after another, the writes of one
    /// step at once. The transition checker proved every state in between safe. (Absent in
    /// plans of format 3 and older: read as 0, which no fresh plan has.)
    #[serde(default)]
    pub step: usize,
}

/// What the policy wants in one network, kept in the plan so that apply can check
/// convergence without the policy file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GcpDesired {
    /// The target.
    pub target: GcpTarget,
    /// The rules, canonical.
    pub firewalls: Vec<Firewall>,
    /// True when the policy is being retired (`destroy`): no rules, and nothing reported
    /// against an empty policy.
    #[serde(default)]
    pub retired: bool,
    /// True when no target of the policy declares this network any more: its rules of the
    /// policy are removed (retired).
    #[serde(default)]
    pub orphaned: bool,
}

impl GcpDesired {
    /// The desired state of a compiled target.
    pub fn from_compiled(c: &GcpCompiled) -> Self {
        Self {
            target: c.target.clone(),
            firewalls: c.firewalls.iter().map(canonical).collect(),
            retired: false,
            orphaned: false,
        }
    }

    /// No rules: every owned rule is deleted.
    pub fn retired(&self) -> Self {
        Self {
            target: self.target.clone(),
            firewalls: Vec::new(),
            retired: true,
            orphaned: self.orphaned,
        }
    }

    /// The rules of the policy in a network no target declares: removed.
    pub fn orphaned(target: GcpTarget) -> Self {
        Self {
            target,
            firewalls: Vec::new(),
            retired: true,
            orphaned: true,
        }
    }
}

/// Everything perimeter will do in one GCP network.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GcpTargetPlan {
    /// The target.
    pub target: GcpTarget,
    /// What the policy wants there.
    pub desired: GcpDesired,
    /// Fingerprint of what the plan was made against: the owned rules and any foreign rule
    /// with a name the policy wants.
    pub fingerprint: String,
    /// Policy name (the ownership prefix and marker).
    pub policy: String,
    /// Rule changes in the order of their steps.
    pub changes: Vec<FirewallChange>,
    /// Where foreign rules make the nodes' perimeter differ from the policy (exact).
    #[serde(default)]
    pub violations: Vec<Violation>,
    /// The project's rule quota as observed.
    pub quota: Option<FirewallQuota>,
    /// Compiler notes, in their JSON form.
    pub notes: Vec<Note>,
    /// Posture findings.
    pub findings: Vec<Finding>,
}

impl GcpTargetPlan {
    /// Counts for the summary line.
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for c in &self.changes {
            match c.action {
                Action::Create => s.add += 1,
                Action::Update => s.change += 1,
                Action::Delete => s.destroy += 1,
            }
        }
        s
    }

    /// Steps apply runs (each a set of concurrent writes).
    pub fn steps(&self) -> usize {
        self.changes.iter().map(|c| c.step).max().unwrap_or(0)
    }

    /// True when applying would write nothing.
    pub fn is_empty(&self) -> bool {
        self.summary().is_empty()
    }
}

/// Why a network cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The observed state could not be fingerprinted.
    #[error(transparent)]
    Fingerprint(#[from] FingerprintError),
    /// The target's network does not exist.
    #[error(
        "network `{network}` does not exist in project `{project}`; create it (or fix targets.gcp) first"
    )]
    NetworkMissing {
        /// Project id.
        project: String,
        /// Network name.
        network: String,
    },
    /// A rule carries the policy's name prefix but not its ownership marker.
    #[error(
        "firewall rule `{name}` in project `{project}` has the name this policy wants but no `perimeter:{policy}` description marker, so perimeter does not own it and will not overwrite it; rename or delete it, or rename the policy"
    )]
    NotOwned {
        /// Rule name.
        name: String,
        /// Project id.
        project: String,
        /// Policy name.
        policy: String,
    },
    /// Two targets of the policy in one project.
    #[error(
        "the policy has two GCP targets in project `{project}` (networks `{first}` and `{second}`); firewall rule names are unique per project and perimeter names rules after the policy, so one policy can manage one network per project. Split the policy, one per network"
    )]
    SharedProject {
        /// Project id.
        project: String,
        /// One network.
        first: String,
        /// The other.
        second: String,
    },
    /// No order of the writes keeps every moment of the change safe.
    #[error(
        "no safe order of writes for network `{network}` in project `{project}`: {unsafe_}; nothing was planned for writing. Change the policy in two smaller edits (apply one, then the other)"
    )]
    UnsafeTransition {
        /// Project id.
        project: String,
        /// Network name.
        network: String,
        /// The packet and step of the first write that could not be placed.
        unsafe_: Box<Unsafe>,
    },
    /// Applying would exceed the project's firewall-rule quota.
    #[error(
        "project `{project}` would need {needed} firewall rules but its FIREWALLS quota is {limit} ({usage} in use, {add} to add, {destroy} to delete, and a lease rule per network while apply runs); nothing was planned for writing. Ask for more quota or shrink the policy"
    )]
    Quota {
        /// Project id.
        project: String,
        /// Quota limit.
        limit: u64,
        /// Rules in the project now.
        usage: u64,
        /// Rules the plan adds.
        add: u64,
        /// Rules the plan deletes.
        destroy: u64,
        /// usage + add − destroy.
        needed: u64,
    },
}

/// Plans one network.
pub(crate) fn plan(
    desired: &GcpDesired,
    notes: Vec<Note>,
    observed: &ObservedGcp,
    policy: &str,
) -> Result<GcpTargetPlan, PlanError> {
    let target = &desired.target;
    if desired.retired && !observed.network_exists {
        // Nothing of the policy can be left in a network that is gone.
        return Ok(GcpTargetPlan {
            target: target.clone(),
            desired: desired.clone(),
            fingerprint: observed_fingerprint(observed, desired)?,
            policy: policy.into(),
            changes: Vec::new(),
            violations: Vec::new(),
            quota: observed.quota,
            notes,
            findings: Vec::new(),
        });
    }
    if !observed.network_exists {
        return Err(PlanError::NetworkMissing {
            project: target.project.clone(),
            network: target.network.clone(),
        });
    }
    if let Some(taken) = impostors(observed, desired).first() {
        return Err(PlanError::NotOwned {
            name: taken.name.clone(),
            project: target.project.clone(),
            policy: policy.into(),
        });
    }
    let changes: Vec<FirewallChange> = diff(&desired.firewalls, &observed.owned)
        .into_iter()
        .map(|c| {
            let method = match (&c.action, &c.before, &c.after) {
                (Action::Create, _, _) => WriteMethod::Insert,
                (Action::Delete, _, _) => WriteMethod::Delete,
                (Action::Update, Some(before), Some(after)) => update_method(before, after),
                (Action::Update, _, _) => WriteMethod::Update,
            };
            let name = c
                .after
                .as_ref()
                .or(c.before.as_ref())
                .map(|f| f.name.clone())
                .unwrap_or_default();
            FirewallChange {
                action: c.action,
                method,
                name,
                before: c.before,
                after: c.after,
                step: 0,
            }
        })
        .collect();
    let changes = in_safe_steps(changes, desired, observed).map_err(|unsafe_| {
        PlanError::UnsafeTransition {
            project: target.project.clone(),
            network: target.network.clone(),
            unsafe_: Box::new(unsafe_),
        }
    })?;

    let checked = if desired.retired {
        // Retiring the policy: there is no policy left to compare the network with.
        Ok(Vec::new())
    } else {
        violations(desired, observed, target)
    };
    let (violations, mut findings) = match checked {
        Ok(v) => (v, Vec::new()),
        Err(e) => (
            Vec::new(),
            vec![Finding {
                code: "effective-unchecked".into(),
                resource: target.network.clone(),
                message: format!(
                    "{e}: the network's foreign rules were not checked against the policy"
                ),
            }],
        ),
    };
    if !desired.retired {
        findings.extend(assumed_accounts(observed, target));
        findings.extend(assumed_secure_tags(observed));
    }
    Ok(GcpTargetPlan {
        target: target.clone(),
        desired: desired.clone(),
        fingerprint: observed_fingerprint(observed, desired)?,
        policy: policy.into(),
        changes,
        violations,
        quota: observed.quota,
        notes,
        findings,
    })
}

/// Where the foreign rules of the network make the nodes' perimeter differ from the policy.
/// A network too large to check exactly says so as a finding, never as silence.
fn violations(
    desired: &GcpDesired,
    observed: &ObservedGcp,
    target: &GcpTarget,
) -> Result<Vec<Violation>, TooLarge> {
    let check = |policies: &[crate::firewall_policy::FirewallPolicy]| {
        let estate = GcpEstate::new(
            &desired.firewalls,
            &observed.foreign,
            &target.target_tags,
            &target.service_accounts,
            &target.node_ranges,
        )
        .with_policies(policies, observed.policies_first);
        perimeter_core::violation::violations(&estate)
    };
    if observed.regional_policies.is_empty() {
        return check(&observed.firewall_policies);
    }
    // Nodes in each region see that region's policies after the global one: one check per
    // region, and a violation found in several regions is reported once.
    let mut out: Vec<Violation> = Vec::new();
    for regional in observed.regional_policies.values() {
        let mut policies = observed.firewall_policies.clone();
        policies.extend(regional.iter().cloned());
        for v in check(&policies)? {
            if !out.iter().any(|o| o.key == v.key) {
                out.push(v);
            }
        }
    }
    Ok(out)
}

/// Firewall-policy rules that select by secure tag: the nodes' secure tags are not read, so
/// they are checked as if they applied, and said so.
fn assumed_secure_tags(observed: &ObservedGcp) -> Vec<Finding> {
    observed
        .firewall_policies
        .iter()
        .chain(observed.regional_policies.values().flatten())
        .flat_map(|p| p.rules.iter().map(move |r| (p, r)))
        .filter(|(_, r)| !r.disabled && (!r.target_secure_tags.is_empty() || !r.src_secure_tags.is_empty()))
        .map(|(p, r)| Finding {
            code: "assumed-secure-tag".into(),
            resource: format!("{}/{}", p.label, r.priority),
            message: format!(
                "rule {} of firewall policy {} selects instances by secure tag; perimeter does not read the nodes' secure tags, so it checked the rule as if they carried them",
                r.priority, p.label
            ),
        })
        .collect()
}

/// Rules of others that select instances by service account, when the target does not say
/// which accounts the nodes run as: checked as if they did, and said so.
fn assumed_accounts(observed: &ObservedGcp, target: &GcpTarget) -> Vec<Finding> {
    if !target.service_accounts.is_empty() {
        return Vec::new();
    }
    observed
        .foreign
        .iter()
        .filter(|f| !f.disabled)
        .filter(|f| !f.target_service_accounts.is_empty() || !f.source_service_accounts.is_empty())
        .map(|f| Finding {
            code: "assumed-service-account".into(),
            resource: f.name.clone(),
            message: format!(
                "firewall rule {} selects instances by service account; the target does not declare `service_accounts`, so perimeter checked it as if the nodes ran as them",
                f.name
            ),
        })
        .collect()
}

/// Most writes of one step (the backend's default concurrency).
const MAX_CONCURRENT_WRITES: usize = 8;

/// Orders the writes into steps whose every intermediate state the transition checker proves
/// safe, trying them creates first, then updates by ascending new priority (a rule that moves
/// up lands before the rule that takes its old place), then deletes.
fn in_safe_steps(
    mut changes: Vec<FirewallChange>,
    desired: &GcpDesired,
    observed: &ObservedGcp,
) -> Result<Vec<FirewallChange>, Unsafe> {
    changes.sort_by_key(|c| {
        let rank = match c.action {
            Action::Update => 0,
            Action::Create => 1,
            Action::Delete => 2,
        };
        (rank, c.after.as_ref().map_or(u16::MAX, |f| f.priority))
    });
    let world = GcpTransition {
        node_tags: &desired.target.target_tags,
        node_service_accounts: &desired.target.service_accounts,
        node_ranges: &desired.target.node_ranges,
    };
    let old: Vec<Firewall> = observed
        .owned
        .iter()
        .chain(&observed.foreign)
        .cloned()
        .collect();
    let new: Vec<Firewall> = desired
        .firewalls
        .iter()
        .chain(&observed.foreign)
        .cloned()
        .collect();
    let (steps, _) = order(&world, &old, &new, &changes, MAX_CONCURRENT_WRITES)?;
    let mut out = Vec::with_capacity(changes.len());
    for (n, step) in steps.iter().enumerate() {
        for &i in step {
            out.push(FirewallChange {
                step: n + 1,
                ..changes[i].clone()
            });
        }
    }
    Ok(out)
}

/// Foreign rules with a name the policy wants.
fn impostors<'a>(observed: &'a ObservedGcp, desired: &GcpDesired) -> Vec<&'a Firewall> {
    let wanted: std::collections::HashSet<&str> =
        desired.firewalls.iter().map(|f| f.name.as_str()).collect();
    observed
        .foreign
        .iter()
        .filter(|f| wanted.contains(f.name.as_str()))
        .collect()
}

/// What apply compares before its first write: the owned rules, and the foreign rules with a
/// name the policy wants. Other foreign rules are not part of it: perimeter never writes them,
/// and GKE changing its own rules must not make every saved plan stale.
pub(crate) fn observed_fingerprint(
    observed: &ObservedGcp,
    desired: &GcpDesired,
) -> Result<String, FingerprintError> {
    fingerprint(&(&observed.owned, impostors(observed, desired)))
}

/// Checks the plans of every network against their projects' `FIREWALLS` quota. The quota
/// counts rules across the project, so the adds of every network in one project are summed;
/// the peak is at most usage + adds + one lease rule per network being applied.
pub(crate) fn check_quotas(plans: &[GcpTargetPlan]) -> Result<(), PlanError> {
    let mut by_project: BTreeMap<&str, (Option<FirewallQuota>, u64, u64, u64)> = BTreeMap::new();
    for p in plans {
        let s = p.summary();
        let entry = by_project
            .entry(p.target.project.as_str())
            .or_insert((p.quota, 0, 0, 0));
        entry.1 += s.add as u64;
        entry.2 += s.destroy as u64;
        // While a network is applied its lease is one more rule (lease.rs).
        entry.3 += u64::from(!s.is_empty());
    }
    for (project, (quota, add, destroy, leases)) in by_project {
        let Some(quota) = quota else { continue };
        let needed = quota.usage + add + leases;
        if leases > 0 && needed > quota.limit {
            return Err(PlanError::Quota {
                project: project.to_string(),
                limit: quota.limit,
                usage: quota.usage,
                add,
                destroy,
                needed,
            });
        }
    }
    Ok(())
}

/// Rule names are unique per project and do not name the network, so two targets of one
/// policy in one project would want the same names.
pub(crate) fn check_one_target_per_project<'a>(
    targets: impl IntoIterator<Item = &'a GcpTarget>,
) -> Result<(), PlanError> {
    let mut seen = BTreeMap::new();
    for t in targets {
        if let Some(first) = seen.insert(t.project.as_str(), t.network.as_str()) {
            return Err(PlanError::SharedProject {
                project: t.project.clone(),
                first: first.to_string(),
                second: t.network.clone(),
            });
        }
    }
    Ok(())
}

/// PATCH when every list that changes stays non-empty and the action stays; PUT otherwise.
fn update_method(before: &Firewall, after: &Firewall) -> WriteMethod {
    let clears = |b: &[String], a: &[String]| !b.is_empty() && a.is_empty();
    let switches_action = before.allowed.is_empty() != after.allowed.is_empty();
    if clears(&before.source_ranges, &after.source_ranges)
        || clears(&before.source_tags, &after.source_tags)
        || clears(&before.destination_ranges, &after.destination_ranges)
        || clears(&before.target_tags, &after.target_tags)
        || clears(
            &before.source_service_accounts,
            &after.source_service_accounts,
        )
        || clears(
            &before.target_service_accounts,
            &after.target_service_accounts,
        )
        || switches_action
        || before.direction != after.direction
    {
        WriteMethod::Update
    } else {
        WriteMethod::Patch
    }
}

#[cfg(test)]
mod tests;
