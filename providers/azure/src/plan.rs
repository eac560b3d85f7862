//! Desired (compiled) against observed → what apply does to one NSG. Pure.
//!
//! An owned NSG is written in one PUT carrying every rule, with `If-Match` on the observed
//! etag, so ARM itself refuses the write if anyone changed the NSG since the plan. A shared
//! NSG is written rule by rule, and priorities are unique per direction at every moment, so
//! the order matters (the trap Terraform users hit when two rules swap priorities): the plan
//! orders the PUTs so each lands on a free priority, parks a rule on a free temporary
//! priority when rules block each other in a cycle, and deletes last.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use perimeter_core::Note;
use perimeter_core::plan::{Action, Change, Finding, FingerprintError, Summary, diff, fingerprint};
use perimeter_core::target::AzureTarget;
use serde::{Deserialize, Serialize};

use crate::compile::{AzureCompiled, PRIORITY_MAX, PRIORITY_MIN, RULES_PER_NSG};
use crate::model::SecurityRule;
use crate::state::{OWNER_TAG, ObservedAzure, canonical, is_owned_rule};

/// What the policy wants in one NSG.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AzureDesired {
    /// The target.
    pub target: AzureTarget,
    /// The rules, canonical.
    pub rules: Vec<SecurityRule>,
}

impl AzureDesired {
    /// The desired state of a compiled target.
    pub fn from_compiled(c: &AzureCompiled) -> Self {
        Self {
            target: c.target.clone(),
            rules: c.rules.iter().map(canonical).collect(),
        }
    }
}

/// How apply writes the NSG.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum NsgWrite {
    /// Nothing to write.
    None,
    /// One PUT of the whole NSG (owned mode); `if_match` is the observed etag, absent when the
    /// NSG is created (then `If-None-Match: *`).
    Put {
        /// Observed etag.
        if_match: Option<String>,
        /// Region of the NSG.
        location: String,
        /// The NSG's tags after the PUT: the observed ones (cost centres, Azure Policy's) and
        /// perimeter's ownership tag.
        #[serde(default)]
        tags: BTreeMap<String, String>,
    },
    /// Rule-by-rule writes in this order (shared mode).
    Steps {
        /// The writes.
        steps: Vec<RuleStep>,
    },
}

/// One write of a shared-mode plan.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "op")]
pub enum RuleStep {
    /// PUT the rule (create or replace).
    Put {
        /// The rule as written by this step (a temporary priority when `parked`).
        rule: Box<SecurityRule>,
        /// True when the rule only moves out of the way to a temporary priority.
        parked: bool,
    },
    /// DELETE the rule.
    Delete {
        /// Rule name.
        name: String,
    },
}

/// Everything perimeter will do in one NSG.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AzureTargetPlan {
    /// The target.
    pub target: AzureTarget,
    /// What the policy wants there.
    pub desired: AzureDesired,
    /// Fingerprint of what the plan was made against (the NSG's owned part, or all of it).
    pub fingerprint: String,
    /// Policy name.
    pub policy: String,
    /// Rule changes, for people and drift.
    pub changes: Vec<Change<SecurityRule>>,
    /// True when apply creates the NSG.
    pub create_nsg: bool,
    /// How apply writes.
    pub write: NsgWrite,
    /// Rules of a shared NSG that perimeter leaves alone.
    pub foreign_rules: Vec<String>,
    /// Compiler notes, in their JSON form.
    pub notes: Vec<Note>,
    /// Posture findings.
    pub findings: Vec<Finding>,
}

impl AzureTargetPlan {
    /// Counts for the summary line (a created NSG counts as one add).
    pub fn summary(&self) -> Summary {
        let mut s = Summary::of(&self.changes);
        if self.create_nsg {
            s.add += 1;
        }
        s
    }

    /// True when applying would write nothing.
    pub fn is_empty(&self) -> bool {
        self.summary().is_empty()
    }
}

/// Why an NSG cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The observed state could not be fingerprinted.
    #[error(transparent)]
    Fingerprint(#[from] FingerprintError),
    /// An NSG with the name exists without perimeter's tag and the target does not say shared.
    #[error(
        "network security group `{nsg}` in resource group `{group}` exists but is not owned by policy `{policy}` (no {OWNER_TAG}={policy} tag); perimeter never adopts what it does not own. If the NSG belongs to AKS or another team, set `shared: true` in the target and perimeter will manage only its own rules in it"
    )]
    ForeignNsg {
        /// NSG name.
        nsg: String,
        /// Resource group.
        group: String,
        /// Policy name.
        policy: String,
    },
    /// A shared NSG must exist: perimeter does not create what someone else manages.
    #[error(
        "network security group `{nsg}` in resource group `{group}` does not exist; with `shared: true` perimeter only adds rules to an NSG someone else created"
    )]
    SharedNsgMissing {
        /// NSG name.
        nsg: String,
        /// Resource group.
        group: String,
    },
    /// An owned NSG must be created and the target has no location.
    #[error(
        "network security group `{nsg}` does not exist and the target has no `location` to create it in"
    )]
    NoLocation {
        /// NSG name.
        nsg: String,
    },
    /// The application security group that means `self` does not exist.
    #[error(
        "application security group `{asg}` in resource group `{group}` does not exist; create it and put the nodes' network interfaces in it (it is what `self` means on Azure)"
    )]
    AsgMissing {
        /// ASG name.
        asg: String,
        /// Resource group.
        group: String,
    },
    /// A foreign rule holds a priority the policy needs.
    #[error(
        "priority {priority} {direction} in NSG `{nsg}` is taken by rule `{holder}`, which perimeter does not own; the policy's rule `{wanted}` needs it. Move the other rule, or set the target's priorities elsewhere"
    )]
    PriorityTaken {
        /// NSG name.
        nsg: String,
        /// Priority.
        priority: u16,
        /// `Inbound` or `Outbound`.
        direction: String,
        /// The foreign rule.
        holder: String,
        /// The policy's rule.
        wanted: String,
    },
    /// A foreign rule has a name the policy wants.
    #[error(
        "rule `{name}` in NSG `{nsg}` has the name the policy wants but not its `perimeter:{policy}` description marker; perimeter will not overwrite it"
    )]
    NameTaken {
        /// NSG name.
        nsg: String,
        /// Rule name.
        name: String,
        /// Policy name.
        policy: String,
    },
    /// Too many rules in the NSG.
    #[error("NSG `{nsg}` would hold {count} rules; Azure allows {RULES_PER_NSG} per NSG")]
    TooManyRules {
        /// NSG name.
        nsg: String,
        /// Rules after apply.
        count: usize,
    },
    /// No free priority to move a rule out of the way.
    #[error(
        "NSG `{nsg}` has no free {direction} priority between {PRIORITY_MIN} and {PRIORITY_MAX} to reorder rules in"
    )]
    PrioritiesExhausted {
        /// NSG name.
        nsg: String,
        /// `Inbound` or `Outbound`.
        direction: String,
    },
}

/// What apply compares before writing: the owned rules (shared) or the whole NSG (owned).
pub(crate) fn observed_fingerprint(
    observed: &ObservedAzure,
    target: &AzureTarget,
    policy: &str,
) -> Result<String, FingerprintError> {
    match &observed.nsg {
        None => fingerprint(&("absent", observed.asg_exists)),
        Some(nsg) if target.shared => {
            let owned: Vec<&SecurityRule> = nsg
                .rules
                .iter()
                .filter(|r| is_owned_rule(policy, r))
                .collect();
            // Foreign rules' priorities matter to the write order; their contents do not.
            let taken: Vec<(u16, &str, &str)> = nsg
                .rules
                .iter()
                .filter(|r| !is_owned_rule(policy, r))
                .map(|r| {
                    (
                        r.properties.priority,
                        r.properties.direction.as_str(),
                        r.name.as_str(),
                    )
                })
                .collect();
            fingerprint(&(owned, taken, observed.asg_exists))
        }
        Some(nsg) => fingerprint(&(&nsg.etag, &nsg.rules, &nsg.tags, observed.asg_exists)),
    }
}

/// Plans one NSG.
pub(crate) fn plan(
    desired: &AzureDesired,
    notes: Vec<Note>,
    observed: &ObservedAzure,
    policy: &str,
) -> Result<AzureTargetPlan, PlanError> {
    let t = &desired.target;
    let uses_asg = desired.rules.iter().any(|r| {
        !r.properties.source_application_security_groups.is_empty()
            || !r
                .properties
                .destination_application_security_groups
                .is_empty()
    });
    if uses_asg && !observed.asg_exists {
        return Err(PlanError::AsgMissing {
            asg: t.application_security_group.clone(),
            group: t.resource_group.clone(),
        });
    }
    let fp = observed_fingerprint(observed, t, policy)?;
    let base = |changes, create_nsg, write, foreign_rules| AzureTargetPlan {
        target: t.clone(),
        desired: desired.clone(),
        fingerprint: fp.clone(),
        policy: policy.into(),
        changes,
        create_nsg,
        write,
        foreign_rules,
        notes: notes.clone(),
        findings: Vec::new(),
    };
    if t.shared {
        let Some(nsg) = &observed.nsg else {
            return Err(PlanError::SharedNsgMissing {
                nsg: t.nsg.clone(),
                group: t.resource_group.clone(),
            });
        };
        let (owned, foreign): (Vec<SecurityRule>, Vec<SecurityRule>) = nsg
            .rules
            .iter()
            .cloned()
            .partition(|r| is_owned_rule(policy, r));
        let wanted: HashSet<&str> = desired.rules.iter().map(|r| r.name.as_str()).collect();
        if let Some(f) = foreign
            .iter()
            .find(|f| wanted.iter().any(|w| w.eq_ignore_ascii_case(&f.name)))
        {
            return Err(PlanError::NameTaken {
                nsg: t.nsg.clone(),
                name: f.name.clone(),
                policy: policy.into(),
            });
        }
        let changes = diff(&desired.rules, &owned);
        // Deletes run last, so the peak is everything there now plus the creates (never less
        // than the end state).
        let creates = changes
            .iter()
            .filter(|c| c.action == Action::Create)
            .count();
        let count = foreign.len() + owned.len() + creates;
        if count > RULES_PER_NSG {
            return Err(PlanError::TooManyRules {
                nsg: t.nsg.clone(),
                count,
            });
        }
        let steps = order_steps(&t.nsg, &changes, &nsg.rules, &foreign)?;
        let write = if steps.is_empty() {
            NsgWrite::None
        } else {
            NsgWrite::Steps { steps }
        };
        let foreign_names = foreign.iter().map(|r| r.name.clone()).collect();
        return Ok(base(changes, false, write, foreign_names));
    }
    if desired.rules.len() > RULES_PER_NSG {
        return Err(PlanError::TooManyRules {
            nsg: t.nsg.clone(),
            count: desired.rules.len(),
        });
    }
    match &observed.nsg {
        Some(nsg) => {
            if nsg.tags.get(OWNER_TAG).map(String::as_str) != Some(policy) {
                return Err(PlanError::ForeignNsg {
                    nsg: t.nsg.clone(),
                    group: t.resource_group.clone(),
                    policy: policy.into(),
                });
            }
            let changes = diff(&desired.rules, &nsg.rules);
            let write = if changes.is_empty() {
                NsgWrite::None
            } else {
                NsgWrite::Put {
                    if_match: Some(nsg.etag.clone()),
                    location: nsg.location.clone(),
                    tags: nsg.tags.clone(),
                }
            };
            Ok(base(changes, false, write, Vec::new()))
        }
        None => {
            let Some(location) = t.location.clone() else {
                return Err(PlanError::NoLocation { nsg: t.nsg.clone() });
            };
            let changes = diff(&desired.rules, &[]);
            Ok(base(
                changes,
                true,
                NsgWrite::Put {
                    if_match: None,
                    location,
                    tags: BTreeMap::from([(OWNER_TAG.to_string(), policy.to_string())]),
                },
                Vec::new(),
            ))
        }
    }
}

/// Two targets on one NSG would be planned against the same state and overwrite each other.
pub(crate) fn check_one_target_per_nsg<'a>(
    targets: impl IntoIterator<Item = &'a AzureTarget>,
) -> Result<(), String> {
    let mut seen = BTreeSet::new();
    for t in targets {
        let key = format!("{}/{}/{}", t.subscription, t.resource_group, t.nsg).to_ascii_lowercase();
        if !seen.insert(key) {
            return Err(format!(
                "the policy has two Azure targets on NSG `{}` in resource group `{}`; one policy manages an NSG through one target",
                t.nsg, t.resource_group
            ));
        }
    }
    Ok(())
}

/// Orders the writes of a shared NSG so every PUT lands on a free priority (see the module
/// comment). `current` is every rule of the NSG now; `foreign` the ones perimeter leaves.
fn order_steps(
    nsg: &str,
    changes: &[Change<SecurityRule>],
    current: &[SecurityRule],
    foreign: &[SecurityRule],
) -> Result<Vec<RuleStep>, PlanError> {
    // (direction, priority) → name, as the NSG will be after each step.
    let mut taken: BTreeMap<(String, u16), String> = current
        .iter()
        .map(|r| {
            (
                (r.properties.direction.clone(), r.properties.priority),
                r.name.clone(),
            )
        })
        .collect();
    let foreign_names: HashSet<&str> = foreign.iter().map(|r| r.name.as_str()).collect();
    let mut pending: Vec<&SecurityRule> = changes
        .iter()
        .filter(|c| c.action != Action::Delete)
        .filter_map(|c| c.after.as_ref())
        .collect();
    // A foreign rule on a priority the policy needs is a plan error, not a write-time conflict.
    for r in &pending {
        let key = (r.properties.direction.clone(), r.properties.priority);
        if let Some(holder) = taken.get(&key)
            && foreign_names.contains(holder.as_str())
        {
            return Err(PlanError::PriorityTaken {
                nsg: nsg.into(),
                priority: key.1,
                direction: key.0,
                holder: holder.clone(),
                wanted: r.name.clone(),
            });
        }
    }
    let targets: BTreeSet<(String, u16)> = pending
        .iter()
        .map(|r| (r.properties.direction.clone(), r.properties.priority))
        .collect();
    let mut steps = Vec::new();
    let put = |taken: &mut BTreeMap<(String, u16), String>, rule: &SecurityRule| {
        taken.retain(|_, name| name != &rule.name);
        taken.insert(
            (rule.properties.direction.clone(), rule.properties.priority),
            rule.name.clone(),
        );
    };
    while !pending.is_empty() {
        let free = pending.iter().position(|r| {
            taken
                .get(&(r.properties.direction.clone(), r.properties.priority))
                .is_none_or(|holder| holder == &r.name)
        });
        if let Some(i) = free {
            let rule = pending.remove(i);
            put(&mut taken, rule);
            steps.push(RuleStep::Put {
                rule: Box::new(rule.clone()),
                parked: false,
            });
            continue;
        }
        // Every pending rule is blocked by an owned rule: park the first blocker on a free
        // priority that no pending rule wants.
        let blocked = pending[0];
        let key = (
            blocked.properties.direction.clone(),
            blocked.properties.priority,
        );
        let holder_name = taken.get(&key).cloned().unwrap_or_default();
        let exhausted = || PlanError::PrioritiesExhausted {
            nsg: nsg.into(),
            direction: key.0.clone(),
        };
        let mut parked = current
            .iter()
            .find(|r| r.name == holder_name)
            .cloned()
            .ok_or_else(exhausted)?;
        // While parked, a rule may only ever restrict more than before: a deny moves to the
        // best free priority (decides earlier), an allow to the worst (decides later).
        let free = |p: &u16| {
            let k = (key.0.clone(), *p);
            !taken.contains_key(&k) && !targets.contains(&k)
        };
        let park_at = if parked.properties.access == "Deny" {
            (PRIORITY_MIN..PRIORITY_MAX).find(free)
        } else {
            (PRIORITY_MIN..PRIORITY_MAX).rev().find(free)
        }
        .ok_or_else(exhausted)?;
        parked.properties.priority = park_at;
        put(&mut taken, &parked);
        steps.push(RuleStep::Put {
            rule: Box::new(parked),
            parked: true,
        });
    }
    for c in changes.iter().filter(|c| c.action == Action::Delete) {
        if let Some(before) = &c.before {
            steps.push(RuleStep::Delete {
                name: before.name.clone(),
            });
        }
    }
    Ok(steps)
}

#[cfg(test)]
mod tests;
