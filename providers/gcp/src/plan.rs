//! Desired (compiled) against observed → the changes for one GCP network. Pure.
//!
//! Everything apply needs is decided here, including the API method of every write: a rule
//! whose lists only change is PATCHed (JSON merge patch), but the client never sends an empty
//! list, so a change that must clear a list or switch allow ↔ deny is a full PUT (`update`).
//! Foreign rules are never written; the ones that change the policy's decision for some
//! packet are reported as overlaps.

use std::collections::BTreeMap;
use std::net::IpAddr;

use perimeter_core::Note;
use perimeter_core::plan::{Action, Finding, FingerprintError, Summary, diff, fingerprint};
use perimeter_core::target::GcpTarget;
use perimeter_core::{Cidr, Direction, Packet, PacketProtocol, Peer, Verdict};
use serde::{Deserialize, Serialize};

use crate::compile::GcpCompiled;
use crate::evaluate::{GcpWorld, decide};
use crate::model::{Firewall, ProtocolPorts};
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
}

impl GcpDesired {
    /// The desired state of a compiled target.
    pub fn from_compiled(c: &GcpCompiled) -> Self {
        Self {
            target: c.target.clone(),
            firewalls: c.firewalls.iter().map(canonical).collect(),
        }
    }
}

/// A rule perimeter does not own that changes what the policy decides for some traffic to
/// or from the nodes.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Overlap {
    /// The foreign rule's name.
    pub name: String,
    /// Its priority.
    pub priority: u16,
    /// `allow` or `deny`.
    pub action: String,
    /// One packet it decides differently, e.g. `ingress tcp 22 from 0.0.0.0`.
    pub packet: String,
    /// The policy's decision for that packet.
    pub policy: Verdict,
    /// The network's decision with the foreign rule in place.
    pub actual: Verdict,
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
    /// Foreign rules that override the policy somewhere.
    pub overlaps: Vec<Overlap>,
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

    Ok(GcpTargetPlan {
        target: target.clone(),
        desired: desired.clone(),
        fingerprint: observed_fingerprint(observed, desired)?,
        policy: policy.into(),
        changes,
        overlaps: overlaps(&desired.firewalls, &observed.foreign, &target.target_tags),
        quota: observed.quota,
        notes,
        findings: Vec::new(),
    })
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

/// Foreign rules that change the policy's decision for at least one probe packet: the
/// corners of the foreign rule's own ranges and ports, evaluated with the owned rules alone
/// and with the foreign rule added.
pub(crate) fn overlaps(
    desired: &[Firewall],
    foreign: &[Firewall],
    node_tags: &[String],
) -> Vec<Overlap> {
    let mut out = Vec::new();
    let policy_world = GcpWorld {
        firewalls: desired,
        node_tags,
    };
    for rule in foreign {
        // A rule that targets service accounts is assumed to apply (evaluate.rs says why).
        let other_instances = rule.target_service_accounts.is_empty()
            && !rule.target_tags.is_empty()
            && !rule.target_tags.iter().any(|t| node_tags.contains(t));
        if rule.disabled || other_instances {
            continue;
        }
        let mut with = desired.to_vec();
        with.push(rule.clone());
        let actual_world = GcpWorld {
            firewalls: &with,
            node_tags,
        };
        if let Some((packet, policy, actual)) = probes(rule)
            .into_iter()
            .map(|p| (p, decide(&policy_world, &p), decide(&actual_world, &p)))
            .find(|(_, policy, actual)| policy != actual)
        {
            out.push(Overlap {
                name: rule.name.clone(),
                priority: rule.priority,
                action: if rule.denied.is_empty() {
                    "allow"
                } else {
                    "deny"
                }
                .into(),
                packet: describe(&packet),
                policy,
                actual,
            });
        }
    }
    out
}

fn probes(rule: &Firewall) -> Vec<Packet> {
    let direction = if rule.direction == "EGRESS" {
        Direction::Egress
    } else {
        Direction::Ingress
    };
    let ranges = if direction == Direction::Ingress {
        &rule.source_ranges
    } else {
        &rule.destination_ranges
    };
    let mut peers: Vec<Peer> = ranges
        .iter()
        .filter_map(|r| r.parse::<Cidr>().ok())
        .flat_map(|c| [first(&c), last(&c)])
        .map(|addr| Peer {
            addr,
            is_node: false,
        })
        .collect();
    let by_identity = !rule.source_tags.is_empty() || !rule.source_service_accounts.is_empty();
    if direction == Direction::Ingress && by_identity {
        peers.push(Peer {
            addr: IpAddr::from([10, 255, 255, 254]),
            is_node: true,
        });
    }
    if ranges.is_empty() && !by_identity {
        peers.push(Peer {
            addr: IpAddr::from([0, 0, 0, 0]),
            is_node: false,
        });
        peers.push(Peer {
            addr: IpAddr::from([255, 255, 255, 255]),
            is_node: false,
        });
    }
    let mut protocols = Vec::new();
    for pp in rule.allowed.iter().chain(&rule.denied) {
        protocols.extend(protocol_probes(pp));
    }
    let mut packets = Vec::new();
    for peer in &peers {
        for protocol in &protocols {
            let fits = match protocol {
                PacketProtocol::Icmp { .. } => peer.addr.is_ipv4(),
                PacketProtocol::Icmpv6 { .. } => peer.addr.is_ipv6(),
                _ => true,
            };
            if fits {
                packets.push(Packet {
                    direction,
                    protocol: *protocol,
                    peer: *peer,
                });
            }
        }
    }
    // A foreign rule with thousands of ranges and ports needs no more evidence than this.
    packets.truncate(4096);
    packets
}

fn protocol_probes(pp: &ProtocolPorts) -> Vec<PacketProtocol> {
    let ports: Vec<u16> = if pp.ports.is_empty() {
        vec![0, 22, 443, 10250, 65535]
    } else {
        pp.ports
            .iter()
            .flat_map(|r| match r.split_once('-') {
                Some((a, b)) => vec![a.parse().unwrap_or(0), b.parse().unwrap_or(0)],
                None => vec![r.parse().unwrap_or(0)],
            })
            .collect()
    };
    let tcp = || {
        ports
            .iter()
            .map(|&port| PacketProtocol::Tcp { port })
            .collect::<Vec<_>>()
    };
    let udp = || {
        ports
            .iter()
            .map(|&port| PacketProtocol::Udp { port })
            .collect::<Vec<_>>()
    };
    match pp.ip_protocol.as_str() {
        "tcp" | "6" => tcp(),
        "udp" | "17" => udp(),
        "icmp" | "1" => vec![PacketProtocol::Icmp { type_: 8, code: 0 }],
        "58" | "ipv6-icmp" => vec![PacketProtocol::Icmpv6 {
            type_: 128,
            code: 0,
        }],
        "all" => {
            let mut v = tcp();
            v.extend(udp());
            v.push(PacketProtocol::Icmp { type_: 8, code: 0 });
            v.push(PacketProtocol::Icmpv6 {
                type_: 128,
                code: 0,
            });
            v.push(PacketProtocol::Other { number: 4 });
            v
        }
        other => match other.parse::<u8>() {
            Ok(number) => vec![PacketProtocol::Other { number }],
            Err(_) => match other {
                "esp" => vec![PacketProtocol::Other { number: 50 }],
                "ah" => vec![PacketProtocol::Other { number: 51 }],
                "sctp" => vec![PacketProtocol::Other { number: 132 }],
                "ipip" => vec![PacketProtocol::Other { number: 4 }],
                _ => Vec::new(),
            },
        },
    }
}

fn first(c: &Cidr) -> IpAddr {
    c.addr()
}

fn last(c: &Cidr) -> IpAddr {
    match c.addr() {
        IpAddr::V4(a) => {
            let host = u32::MAX.checked_shr(u32::from(c.prefix())).unwrap_or(0);
            IpAddr::from((u32::from(a) | host).to_be_bytes())
        }
        IpAddr::V6(a) => {
            let host = u128::MAX.checked_shr(u32::from(c.prefix())).unwrap_or(0);
            IpAddr::from((u128::from(a) | host).to_be_bytes())
        }
    }
}

/// `ingress tcp 22 from 0.0.0.0`.
pub(crate) fn describe(p: &Packet) -> String {
    let protocol = match p.protocol {
        PacketProtocol::Tcp { port } => format!("tcp {port}"),
        PacketProtocol::Udp { port } => format!("udp {port}"),
        PacketProtocol::Icmp { type_, code } => format!("icmp type {type_} code {code}"),
        PacketProtocol::Icmpv6 { type_, code } => format!("icmpv6 type {type_} code {code}"),
        PacketProtocol::Other { number } => format!("protocol {number}"),
    };
    let (way, peer) = match p.direction {
        Direction::Ingress => ("from", p.peer),
        Direction::Egress => ("to", p.peer),
    };
    let who = if peer.is_node {
        "a node (by tag)".to_string()
    } else {
        peer.addr.to_string()
    };
    format!("{} {protocol} {way} {who}", p.direction.as_str())
}

#[cfg(test)]
mod tests;
