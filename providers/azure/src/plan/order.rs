//! The order of a shared NSG's rule writes: each write lands on a free priority, a blocking
//! rule is parked on a free temporary priority, and the transition checker proves every step
//! safe (see the parent module's comment).

use std::collections::{BTreeSet, HashSet};

use perimeter_core::plan::{Action, Change};
use perimeter_core::target::AzureTarget;
use perimeter_core::transition::{Checker, Transition as _};

use super::{PlanError, RuleStep};
use crate::compile::{PRIORITY_MAX, PRIORITY_MIN};
use crate::model::SecurityRule;
use crate::transition::AzureTransition;

/// Orders the writes of a shared NSG (see the module comment). `current` is every rule of the
/// NSG now; `foreign` the ones perimeter leaves. Each write is chosen, one at a time, as the
/// first of these that lands on a free priority and that the transition checker proves safe:
/// a rule onto its final priority, a delete, or — when rules block each other — moving a
/// blocking rule to a free priority, nearest first, so it keeps its place among the others.
pub(super) fn order_steps(
    t: &AzureTarget,
    changes: &[Change<SecurityRule>],
    current: &[SecurityRule],
    foreign: &[SecurityRule],
    desired: &[SecurityRule],
) -> Result<Vec<RuleStep>, PlanError> {
    let nsg = t.nsg.as_str();
    let key = |r: &SecurityRule| (r.properties.direction.clone(), r.properties.priority);
    let foreign_names: HashSet<&str> = foreign.iter().map(|r| r.name.as_str()).collect();
    let mut pending: Vec<&SecurityRule> = changes
        .iter()
        .filter(|c| c.action != Action::Delete)
        .filter_map(|c| c.after.as_ref())
        .collect();
    let mut deletes: Vec<&str> = changes
        .iter()
        .filter(|c| c.action == Action::Delete)
        .filter_map(|c| c.before.as_ref().map(|b| b.name.as_str()))
        .collect();
    // A foreign rule on a priority the policy needs is a plan error, not a write-time conflict.
    for r in &pending {
        if let Some(holder) = current.iter().find(|c| key(c) == key(r))
            && foreign_names.contains(holder.name.as_str())
        {
            return Err(PlanError::PriorityTaken {
                nsg: nsg.into(),
                priority: r.properties.priority,
                direction: r.properties.direction.clone(),
                holder: holder.name.clone(),
                wanted: r.name.clone(),
            });
        }
    }
    let node_asg = crate::compile::asg_id(t);
    let world = AzureTransition {
        node_asg: &node_asg,
    };
    let end: Vec<SecurityRule> = foreign.iter().chain(desired).cloned().collect();
    let start: Vec<SecurityRule> = current.to_vec();
    let checker = Checker::new(&world, &start, &end);
    let mut state = start.clone();
    let mut steps: Vec<RuleStep> = Vec::new();
    let mut parked_once: HashSet<String> = HashSet::new();
    let same = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    while !pending.is_empty() || !deletes.is_empty() {
        let holder_of = |state: &[SecurityRule], r: &SecurityRule| {
            state
                .iter()
                .find(|h| key(h) == key(r) && !same(&h.name, &r.name))
                .cloned()
        };
        let mut candidates: Vec<RuleStep> = Vec::new();
        for r in &pending {
            if holder_of(&state, r).is_none() {
                candidates.push(RuleStep::Put {
                    rule: Box::new((*r).clone()),
                    parked: false,
                });
            }
        }
        for name in &deletes {
            candidates.push(RuleStep::Delete {
                name: (*name).to_string(),
            });
        }
        let wanted: BTreeSet<(String, u16)> = pending.iter().map(|r| key(r)).collect();
        for r in &pending {
            let Some(holder) = holder_of(&state, r) else {
                continue;
            };
            if parked_once.contains(&holder.name.to_ascii_lowercase()) {
                continue;
            }
            for at in parking_places(&state, &wanted, &holder) {
                let mut moved = holder.clone();
                moved.properties.priority = at;
                candidates.push(RuleStep::Put {
                    rule: Box::new(moved),
                    parked: true,
                });
            }
        }
        let step = steps.len() + 1;
        let write =
            checker
                .first_safe(step, &state, candidates)
                .map_err(|refusal| match refusal {
                    Some(unsafe_) => PlanError::UnsafeTransition {
                        nsg: nsg.into(),
                        unsafe_: Box::new(unsafe_),
                    },
                    None => PlanError::PrioritiesExhausted {
                        nsg: nsg.into(),
                        direction: pending
                            .first()
                            .map(|r| r.properties.direction.clone())
                            .unwrap_or_default(),
                    },
                })?;
        match &write {
            RuleStep::Put { rule, parked: true } => {
                parked_once.insert(rule.name.to_ascii_lowercase());
            }
            RuleStep::Put { rule, .. } => pending.retain(|r| !same(&r.name, &rule.name)),
            RuleStep::Delete { name } => deletes.retain(|d| !same(d, name)),
        }
        world.apply(&mut state, &write);
        steps.push(write);
    }
    Ok(steps)
}

/// Free priorities for moving `holder` out of the way: the nearest on each side first (the
/// rule keeps its place among its neighbours), then the two ends of the range.
fn parking_places(
    state: &[SecurityRule],
    wanted: &BTreeSet<(String, u16)>,
    holder: &SecurityRule,
) -> Vec<u16> {
    let direction = &holder.properties.direction;
    let free = |p: u16| {
        let k = (direction.clone(), p);
        !wanted.contains(&k)
            && !state
                .iter()
                .any(|r| &r.properties.direction == direction && r.properties.priority == p)
    };
    let at = holder.properties.priority;
    let mut out = Vec::new();
    let below = (PRIORITY_MIN..at).rev().find(|&p| free(p));
    let above = (at.saturating_add(1)..=PRIORITY_MAX).find(|&p| free(p));
    let lowest = (PRIORITY_MIN..=PRIORITY_MAX).find(|&p| free(p));
    let highest = (PRIORITY_MIN..=PRIORITY_MAX).rev().find(|&p| free(p));
    for p in [below, above, lowest, highest].into_iter().flatten() {
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}
