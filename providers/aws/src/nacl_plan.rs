//! The owned NACL's writes, and the proof that every state of the whole AWS apply is safe.
//!
//! Entries are matched by what they say (direction, protocol, action, CIDR, ports), never by
//! rule number: an entry the policy keeps keeps its number, a new one gets a free number, and
//! an entry the policy drops is deleted — so a peer both policies allow is never missing for a
//! moment, which renumbering with `ReplaceNetworkAclEntry` could not promise. The writes are
//! ordered one at a time: a create whenever the direction and family have room under the
//! quota, else a delete, each only if the transition checker proves the state after it safe.

use std::collections::BTreeSet;

use perimeter_core::plan::{Action, Change};
use perimeter_core::transition::{Checked, Checker, Transition as _, Unsafe, check};

use crate::model::{NaclEntry, SgRule};
use crate::nacl::{NACL_ENTRIES_PER_DIRECTION_PER_FAMILY, RULE_NUMBER_STEP};
use crate::plan::SgChange;
use crate::transition::{AwsState, AwsTransition, AwsWrite, is_v4};

/// What an entry says, without its number.
type Content<'a> = (
    bool,
    &'a str,
    &'a str,
    &'a perimeter_core::Cidr,
    Option<(u16, u16)>,
    Option<(i32, i32)>,
);

pub(crate) fn content(e: &NaclEntry) -> Content<'_> {
    (
        e.egress,
        &e.protocol,
        &e.rule_action,
        &e.cidr,
        e.port_range,
        e.icmp_type_code,
    )
}

/// The entries to create (on free numbers) and to delete.
pub(crate) fn entry_diff(
    want: &[NaclEntry],
    current: &[NaclEntry],
) -> (Vec<NaclEntry>, Vec<NaclEntry>) {
    let have: BTreeSet<Content<'_>> = current.iter().map(content).collect();
    let wanted: BTreeSet<Content<'_>> = want.iter().map(content).collect();
    let mut used: BTreeSet<(bool, u16)> =
        current.iter().map(|e| (e.egress, e.rule_number)).collect();
    let mut creates = Vec::new();
    let mut seen = BTreeSet::new();
    for e in want {
        if have.contains(&content(e)) || !seen.insert(content(e)) {
            continue;
        }
        let free = (1..=327u16)
            .map(|i| i * RULE_NUMBER_STEP)
            .chain(1..=32766)
            .find(|n| !used.contains(&(e.egress, *n)))
            .unwrap_or(32766);
        used.insert((e.egress, free));
        creates.push(NaclEntry {
            rule_number: free,
            ..e.clone()
        });
    }
    let deletes = current
        .iter()
        .filter(|e| !wanted.contains(&content(e)))
        .cloned()
        .collect();
    (creates, deletes)
}

/// The security group's writes, in apply's order: authorize ingress, egress; revoke ingress,
/// egress. (Description updates change no decision.)
pub(crate) fn group_writes(changes: &[SgChange]) -> Vec<AwsWrite> {
    let mut out = Vec::new();
    let of = |action: Action, direction| -> Vec<SgRule> {
        changes
            .iter()
            .filter(|c| c.action == action)
            .filter_map(|c| {
                if action == Action::Delete {
                    c.before.clone()
                } else {
                    c.after.clone()
                }
            })
            .filter(|r| r.direction == direction)
            .collect()
    };
    for d in perimeter_core::Direction::BOTH {
        let rules = of(Action::Create, d);
        if !rules.is_empty() {
            out.push(AwsWrite::Authorize(rules));
        }
    }
    for d in perimeter_core::Direction::BOTH {
        let rules = of(Action::Delete, d);
        if !rules.is_empty() {
            out.push(AwsWrite::Revoke(rules));
        }
    }
    out
}

/// Why the writes could not be ordered.
#[derive(Debug)]
pub(crate) enum OrderError {
    /// Every remaining write is unsafe.
    Unsafe(Unsafe),
    /// An entry must be created, the direction and family are at the quota, and nothing is
    /// left to delete first.
    NoRoom {
        /// Outbound.
        egress: bool,
    },
}

/// Orders the NACL writes after the group's, and checks the whole sequence (group, NACL,
/// association). Returns the NACL changes in order and what the checker proved.
pub(crate) fn ordered(
    node_cidrs: &[perimeter_core::Cidr],
    old: &AwsState,
    new: &AwsState,
    group: Vec<AwsWrite>,
    creates: Vec<NaclEntry>,
    deletes: Vec<NaclEntry>,
    associate: bool,
) -> Result<(Vec<Change<NaclEntry>>, Checked), OrderError> {
    let world = AwsTransition { node_cidrs };
    let checker = Checker::new(&world, old, new);
    let mut state = old.clone();
    for w in &group {
        world.apply(&mut state, w);
    }
    let room = NACL_ENTRIES_PER_DIRECTION_PER_FAMILY - 1;
    let count = |s: &AwsState, e: &NaclEntry| {
        s.acl
            .entries
            .iter()
            .filter(|x| x.egress == e.egress && is_v4(x) == is_v4(e))
            .count()
    };
    let (mut creates, mut deletes) = (creates, deletes);
    let mut nacl_writes: Vec<AwsWrite> = Vec::new();
    let mut changes = Vec::new();
    while !creates.is_empty() || !deletes.is_empty() {
        let step = group.len() + nacl_writes.len() + 1;
        let candidates = creates
            .iter()
            .filter(|e| count(&state, e) < room)
            .map(|e| AwsWrite::CreateEntry(e.clone()))
            .chain(deletes.iter().map(|e| AwsWrite::DeleteEntry(e.clone())));
        let write =
            checker
                .first_safe(step, &state, candidates)
                .map_err(|refusal| match refusal {
                    Some(e) => OrderError::Unsafe(e),
                    None => OrderError::NoRoom {
                        egress: creates.first().is_some_and(|e| e.egress),
                    },
                })?;
        match &write {
            AwsWrite::CreateEntry(e) => {
                creates.retain(|x| x != e);
                changes.push(Change {
                    action: Action::Create,
                    before: None,
                    after: Some(e.clone()),
                });
            }
            AwsWrite::DeleteEntry(e) => {
                deletes.retain(|x| x != e);
                changes.push(Change {
                    action: Action::Delete,
                    before: Some(e.clone()),
                    after: None,
                });
            }
            _ => {}
        }
        world.apply(&mut state, &write);
        nacl_writes.push(write);
    }
    let mut all: Vec<AwsWrite> = group;
    all.extend(nacl_writes);
    if associate {
        all.push(AwsWrite::Associate);
    }
    let steps: Vec<Vec<&AwsWrite>> = all.iter().map(|w| vec![w]).collect();
    let checked = check(&world, old, new, &steps).map_err(OrderError::Unsafe)?;
    Ok((changes, checked))
}

#[cfg(test)]
mod tests;
