//! The transition checker: every state an apply passes through is as safe as its two ends.
//!
//! An apply turns the observed state A into the planned state B by a sequence of steps; the
//! writes of one step run concurrently, so they may land in any order and any subset of them
//! may have landed when apply is killed. The invariant, for every packet p:
//!
//! ```text
//! A(p) == B(p)  ⇒  S(p) == A(p)   for every state S apply can leave behind
//! ```
//!
//! — no lockout of traffic both policies allow, no opening of traffic both deny.
//!
//! The check is exact, not sampled. A write changes the decision only for packets its
//! old or new rule matches (its *footprint*, a set of [`MatchBox`]es), and every cloud's
//! decision is constant on the cells that the boxes of all rules cut packet space into. So
//! after each write it is enough to evaluate one probe per cell inside the write's footprint,
//! in A, in B and in the new state. The writes of one step must have pairwise disjoint
//! footprints: then a packet is touched by at most one of them, and every subset of the step
//! is safe when each write is safe alone.
//!
//! The decisions come from the cloud's independent evaluator (through [`Transition`]), so the
//! planner that proposes an order is judged by code it shares nothing with.

use std::collections::{BTreeSet, HashSet};
use std::net::IpAddr;

use crate::addr::AddrSet;
use crate::intent::{Direction, Packet, PacketProtocol, Peer, Verdict, proto};
use crate::interval::IntervalSet;

/// Most probes one write may need before the plan is refused as too large to check.
pub const MAX_PROBES_PER_WRITE: usize = 200_000;

/// The packets one rule can match, as a product of intervals.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct MatchBox {
    /// Towards or from the node.
    pub direction: Direction,
    /// IP protocol number; `None`: every protocol.
    pub protocol: Option<u8>,
    /// TCP/UDP destination ports; ICMP `type << 8 | code`. Full for other protocols.
    pub ports: IntervalSet<u16>,
    /// Peer addresses.
    pub addrs: AddrSet,
    /// True when node peers match by identity (tag, own group, ASG), whatever their address.
    pub nodes: bool,
}

impl MatchBox {
    /// A box over every port (or ICMP type and code) of a protocol.
    pub fn any_port(
        direction: Direction,
        protocol: Option<u8>,
        addrs: AddrSet,
        nodes: bool,
    ) -> Self {
        Self {
            direction,
            protocol,
            ports: IntervalSet::full(),
            addrs,
            nodes,
        }
    }

    /// ICMP type `t` (any code) or every type, as a port set.
    pub fn icmp_types(type_: Option<u8>, code: Option<u8>) -> IntervalSet<u16> {
        match (type_, code) {
            (None, _) => IntervalSet::full(),
            (Some(t), None) => IntervalSet::range(u16::from(t) << 8, u16::from(t) << 8 | 0xff),
            (Some(t), Some(c)) => {
                let point = u16::from(t) << 8 | u16::from(c);
                IntervalSet::range(point, point)
            }
        }
    }

    /// True when some packet can match both boxes. Node peers may have any address, so a box
    /// that matches nodes by identity meets every box of its direction and protocol.
    pub fn meets(&self, other: &MatchBox) -> bool {
        if self.direction != other.direction {
            return false;
        }
        let ports = match (self.protocol, other.protocol) {
            (Some(a), Some(b)) if a != b => return false,
            (Some(_), Some(_)) => !self.ports.intersection(&other.ports).is_empty(),
            _ => true,
        };
        ports && (self.nodes || other.nodes || !self.addrs.intersection(&other.addrs).is_empty())
    }
}

/// A cloud's state and writes, as the checker sees them.
pub trait Transition {
    /// Everything that decides the nodes' packets (perimeter's objects and foreign ones).
    type State: Clone;
    /// One API write.
    type Write;
    /// The state after `write` has landed.
    fn apply(&self, state: &mut Self::State, write: &Self::Write);
    /// The cloud's decision, from its independent evaluator.
    fn decide(&self, state: &Self::State, packet: &Packet) -> Verdict;
    /// The packets whose decision `write` can change when applied to `state`.
    fn footprint(&self, state: &Self::State, write: &Self::Write) -> Vec<MatchBox>;
    /// The boxes of every rule in `state` (their edges cut packet space into cells).
    fn boxes(&self, state: &Self::State) -> Vec<MatchBox>;
    /// The write, for a refusal: `insert firewall ssh at priority 1000`.
    fn describe(&self, write: &Self::Write) -> String;
    /// The addresses the protected nodes can have (the target's declared node ranges): node
    /// peers are probed there only. Every address when the target declares none.
    fn node_addrs(&self) -> AddrSet {
        AddrSet::everything()
    }
}

/// What the checker proved.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Checked {
    /// Steps (each a set of concurrent writes).
    pub steps: usize,
    /// Writes.
    pub writes: usize,
    /// Packets evaluated.
    pub probes: usize,
}

/// Why a sequence (or every sequence the planner tried) is unsafe.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum Unsafe {
    /// A state apply could leave behind decides a packet unlike both ends.
    #[error(
        "step {step} ({write}) would {verb} {packet}, which the policy before and after the change both {both}"
    )]
    Packet {
        /// 1-based step.
        step: usize,
        /// The write.
        write: String,
        /// The packet, described.
        packet: String,
        /// `deny` or `allow`.
        verb: &'static str,
        /// `allow` or `deny`.
        both: &'static str,
    },
    /// Two writes of one step can change the decision of the same packet.
    #[error("step {step} runs `{first}` and `{second}` at once, and they touch the same traffic")]
    Concurrent {
        /// 1-based step.
        step: usize,
        /// One write.
        first: String,
        /// The other.
        second: String,
    },
    /// One write's footprint cuts into more cells than the checker evaluates.
    #[error(
        "step {step} ({write}) touches more than {MAX_PROBES_PER_WRITE} distinct packet classes; split the change into smaller policy edits"
    )]
    TooLarge {
        /// 1-based step.
        step: usize,
        /// The write.
        write: String,
    },
}

/// The two ends of a change and the boxes of both: checks one write at a time, for planners
/// that search for an order write by write.
pub struct Checker<'a, T: Transition> {
    world: &'a T,
    old: &'a T::State,
    new: &'a T::State,
    context: Vec<MatchBox>,
    nodes: AddrSet,
}

impl<'a, T: Transition> Checker<'a, T> {
    /// A checker for the change from `old` to `new`.
    pub fn new(world: &'a T, old: &'a T::State, new: &'a T::State) -> Self {
        let mut context = world.boxes(old);
        context.extend(world.boxes(new));
        Self {
            world,
            old,
            new,
            context,
            nodes: world.node_addrs(),
        }
    }

    /// Checks the state after `write` lands on `state` (at 1-based `step`); returns the
    /// number of packets evaluated.
    pub fn check(&self, step: usize, state: &T::State, write: &T::Write) -> Result<usize, Unsafe> {
        let footprint = self.world.footprint(state, write);
        self.check_write(step, state, write, &footprint)
    }

    /// The first of `candidates` whose state after it is safe, for planners that place one
    /// write at a time. `Err(Some(why))` names why the first candidate was refused;
    /// `Err(None)` means there was no candidate.
    pub fn first_safe(
        &self,
        step: usize,
        state: &T::State,
        candidates: impl IntoIterator<Item = T::Write>,
    ) -> Result<T::Write, Option<Unsafe>> {
        let mut refusal = None;
        for c in candidates {
            match self.check(step, state, &c) {
                Ok(_) => return Ok(c),
                Err(e) => {
                    refusal.get_or_insert(e);
                }
            }
        }
        Err(refusal)
    }

    fn check_write(
        &self,
        step: usize,
        state: &T::State,
        write: &T::Write,
        footprint: &[MatchBox],
    ) -> Result<usize, Unsafe> {
        let mut after = state.clone();
        self.world.apply(&mut after, write);
        let mut context: Vec<&MatchBox> = self.context.iter().collect();
        context.extend(footprint);
        // Boxes of one write overlap (a rule's old and new version): probe each cell once, in
        // a fixed order so that a refusal names the same packet every run.
        let mut seen: HashSet<Packet> = HashSet::new();
        let mut packets: Vec<Packet> = Vec::new();
        for fb in footprint {
            let cells = probes_in(fb, &context, &self.nodes).ok_or_else(|| Unsafe::TooLarge {
                step,
                write: self.world.describe(write),
            })?;
            packets.extend(cells.into_iter().filter(|p| seen.insert(*p)));
            if packets.len() > MAX_PROBES_PER_WRITE {
                return Err(Unsafe::TooLarge {
                    step,
                    write: self.world.describe(write),
                });
            }
        }
        let probes = packets.len();
        {
            for packet in packets {
                let before = self.world.decide(self.old, &packet);
                if before != self.world.decide(self.new, &packet) {
                    continue;
                }
                let during = self.world.decide(&after, &packet);
                if during != before {
                    return Err(Unsafe::Packet {
                        step,
                        write: self.world.describe(write),
                        packet: describe_packet(&packet),
                        verb: verdict_word(during),
                        both: verdict_word(before),
                    });
                }
            }
        }
        Ok(probes)
    }
}

fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Allow => "allow",
        Verdict::Deny => "deny",
    }
}

/// Checks a planned sequence of steps from `old` (observed) to `new` (planned).
pub fn check<T: Transition>(
    world: &T,
    old: &T::State,
    new: &T::State,
    steps: &[Vec<&T::Write>],
) -> Result<Checked, Unsafe> {
    let ends = Checker::new(world, old, new);
    let mut state = old.clone();
    let mut checked = Checked::default();
    for (i, step) in steps.iter().enumerate() {
        let mut seen: Vec<(Vec<MatchBox>, &T::Write)> = Vec::new();
        for write in step {
            let footprint = world.footprint(&state, write);
            checked.probes += ends.check_write(i + 1, &state, write, &footprint)?;
            if let Some((_, other)) = seen.iter().find(|(f, _)| overlap(f, &footprint)) {
                return Err(Unsafe::Concurrent {
                    step: i + 1,
                    first: world.describe(other),
                    second: world.describe(write),
                });
            }
            seen.push((footprint, write));
        }
        for write in step {
            world.apply(&mut state, write);
        }
        checked.writes += step.len();
        checked.steps += 1;
    }
    Ok(checked)
}

fn overlap(a: &[MatchBox], b: &[MatchBox]) -> bool {
    a.iter().any(|x| b.iter().any(|y| x.meets(y)))
}

/// Orders `writes` (given in the planner's preferred order) into safe steps of at most
/// `max_concurrent` writes: each step takes, in order, every remaining write that is safe now
/// and touches traffic no other write of the step touches. Returns the steps as indices into
/// `writes`, or the reason the first remaining write is unsafe when none is.
pub fn order<T: Transition>(
    world: &T,
    old: &T::State,
    new: &T::State,
    writes: &[T::Write],
    max_concurrent: usize,
) -> Result<(Vec<Vec<usize>>, Checked), Unsafe> {
    let ends = Checker::new(world, old, new);
    let mut state = old.clone();
    let mut remaining: Vec<usize> = (0..writes.len()).collect();
    let mut steps = Vec::new();
    let mut checked = Checked::default();
    while !remaining.is_empty() {
        let step_number = steps.len() + 1;
        let mut step: Vec<usize> = Vec::new();
        let mut footprints: Vec<Vec<MatchBox>> = Vec::new();
        let mut first_refusal = None;
        for &i in &remaining {
            if step.len() >= max_concurrent.max(1) {
                break;
            }
            let footprint = world.footprint(&state, &writes[i]);
            if footprints.iter().any(|f| overlap(f, &footprint)) {
                continue;
            }
            match ends.check_write(step_number, &state, &writes[i], &footprint) {
                Ok(probes) => {
                    checked.probes += probes;
                    footprints.push(footprint);
                    step.push(i);
                }
                Err(e @ Unsafe::TooLarge { .. }) => return Err(e),
                Err(e) => {
                    first_refusal.get_or_insert(e);
                }
            }
        }
        if step.is_empty() {
            return Err(first_refusal.expect("a write was refused"));
        }
        for &i in &step {
            world.apply(&mut state, &writes[i]);
        }
        remaining.retain(|i| !step.contains(i));
        checked.writes += step.len();
        checked.steps += 1;
        steps.push(step);
    }
    Ok((steps, checked))
}

/// One probe per cell of `fb`, where cells are cut by the edges of every box in `context`
/// that meets `fb`; node peers are probed at the addresses in `nodes` only. `None` when there
/// would be more than [`MAX_PROBES_PER_WRITE`].
pub fn probes_in(fb: &MatchBox, context: &[&MatchBox], nodes: &AddrSet) -> Option<Vec<Packet>> {
    let near: Vec<&MatchBox> = context.iter().copied().filter(|c| c.meets(fb)).collect();
    let protocols: Vec<u8> = match fb.protocol {
        Some(p) => vec![p],
        None => {
            let mut named: BTreeSet<u8> = near.iter().filter_map(|c| c.protocol).collect();
            named.extend([proto::TCP, proto::UDP, proto::ICMP, proto::ICMPV6]);
            // One protocol no rule names stands for all of them.
            if let Some(unnamed) = (0..=255u8).find(|n| !named.contains(n)) {
                named.insert(unnamed);
            }
            named.into_iter().collect()
        }
    };
    let v4 = cells_u32(&fb.addrs.v4, near.iter().map(|c| &c.addrs.v4));
    let v6 = cells_u128(&fb.addrs.v6, near.iter().map(|c| &c.addrs.v6));
    let mut peers: Vec<Peer> = v4
        .iter()
        .map(|&a| IpAddr::from(a.to_be_bytes()))
        .chain(v6.iter().map(|&a| IpAddr::from(a.to_be_bytes())))
        .map(|addr| Peer {
            addr,
            is_node: false,
        })
        .collect();
    if fb.nodes || near.iter().any(|c| c.nodes) {
        // A node peer matches identity rules anywhere and address rules at its address.
        let at = if fb.nodes {
            nodes.clone()
        } else {
            fb.addrs.intersection(nodes)
        };
        let near_v4 = cells_u32(&at.v4, near.iter().map(|c| &c.addrs.v4));
        let near_v6 = cells_u128(&at.v6, near.iter().map(|c| &c.addrs.v6));
        peers.extend(
            near_v4
                .iter()
                .map(|&a| IpAddr::from(a.to_be_bytes()))
                .chain(near_v6.iter().map(|&a| IpAddr::from(a.to_be_bytes())))
                .map(|addr| Peer {
                    addr,
                    is_node: true,
                }),
        );
    }
    let mut packets = Vec::new();
    for protocol in protocols {
        let ports = if has_ports(protocol) {
            let same = near
                .iter()
                .filter(|c| c.protocol == Some(protocol))
                .map(|c| &c.ports);
            cells_u16(&fb.ports, same)
        } else {
            vec![0]
        };
        for peer in &peers {
            for &port in &ports {
                let Some(protocol) = packet_protocol(protocol, port, peer.addr) else {
                    continue;
                };
                if packets.len() >= MAX_PROBES_PER_WRITE {
                    return None;
                }
                packets.push(Packet {
                    direction: fb.direction,
                    protocol,
                    peer: *peer,
                });
            }
        }
    }
    Some(packets)
}

fn has_ports(protocol: u8) -> bool {
    matches!(
        protocol,
        proto::TCP | proto::UDP | proto::ICMP | proto::ICMPV6
    )
}

fn packet_protocol(number: u8, port: u16, addr: IpAddr) -> Option<PacketProtocol> {
    let (type_, code) = ((port >> 8) as u8, (port & 0xff) as u8);
    Some(match number {
        proto::TCP => PacketProtocol::Tcp { port },
        proto::UDP => PacketProtocol::Udp { port },
        proto::ICMP if addr.is_ipv4() => PacketProtocol::Icmp { type_, code },
        proto::ICMPV6 if addr.is_ipv6() => PacketProtocol::Icmpv6 { type_, code },
        proto::ICMP | proto::ICMPV6 => return None,
        number => PacketProtocol::Other { number },
    })
}

/// The first point of every cell of `within` cut at the edges of `edges`.
fn firsts<T: Copy>(cells: Vec<(T, T)>) -> Vec<T> {
    cells.into_iter().map(|(lo, _)| lo).collect()
}

fn cells_u16<'s>(
    within: &IntervalSet<u16>,
    edges: impl Iterator<Item = &'s IntervalSet<u16>>,
) -> Vec<u16> {
    firsts(crate::violation::intervals_u16(within, edges))
}

fn cells_u32<'s>(
    within: &IntervalSet<u32>,
    edges: impl Iterator<Item = &'s IntervalSet<u32>>,
) -> Vec<u32> {
    firsts(crate::violation::intervals_u32(within, edges))
}

fn cells_u128<'s>(
    within: &IntervalSet<u128>,
    edges: impl Iterator<Item = &'s IntervalSet<u128>>,
) -> Vec<u128> {
    firsts(crate::violation::intervals_u128(within, edges))
}

/// `ingress tcp 22 from 10.0.0.1`, `egress udp 53 to a node 10.0.0.7`.
pub fn describe_packet(p: &Packet) -> String {
    let protocol = match p.protocol {
        PacketProtocol::Tcp { port } => format!("tcp {port}"),
        PacketProtocol::Udp { port } => format!("udp {port}"),
        PacketProtocol::Icmp { type_, code } => format!("icmp type {type_} code {code}"),
        PacketProtocol::Icmpv6 { type_, code } => format!("icmpv6 type {type_} code {code}"),
        PacketProtocol::Other { number } => format!("protocol {number}"),
    };
    let way = match p.direction {
        Direction::Ingress => "from",
        Direction::Egress => "to",
    };
    let who = if p.peer.is_node {
        format!("node {}", p.peer.addr)
    } else {
        p.peer.addr.to_string()
    };
    format!("{} {protocol} {way} {who}", p.direction.as_str())
}

#[cfg(test)]
mod tests;
