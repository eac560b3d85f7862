//! The effective perimeter: where what the nodes experience differs from the policy.
//!
//! perimeter writes only its own objects, but the nodes' packets are decided by everything on
//! their enforcement path: every security group on an interface (a union), the subnet's
//! network ACL, the NSGs of the subnet and of the NIC, foreign firewall rules and firewall
//! policies. A cloud describes that path as an [`Estate`]: two decisions for every packet — the
//! policy's (perimeter's own objects alone, as planned) and the effective one (the whole
//! path) — and the boxes of every rule on it.
//!
//! Both decisions are constant on the cells the boxes cut packet space into, so comparing them
//! at one probe per cell is exact, not sampled. The estate also names the *regions* a
//! difference can lie in (for a union of groups: the foreign rules' boxes; for an AND of two
//! layers: the policy's allow boxes too) — a cloud's argument, written beside its world, that
//! nothing outside them can differ. Each differing cell is attributed to the object and rule
//! that decided it ([`Culprit`]), and cells of one culprit are merged into [`Violation`]s with
//! the exact region they cover.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::addr::AddrSet;
use crate::intent::{Direction, Packet, PacketProtocol, Peer, Verdict, proto};
use crate::interval::IntervalSet;
use crate::transition::{MatchBox, describe_packet};

/// Most packet classes one estate may need before it is reported as too large to check.
pub const MAX_CELLS: usize = 2_000_000;

/// Regions printed per violation; the rest are counted.
const REGIONS_SHOWN: usize = 6;

/// Services named on one region line; the rest are counted.
const SERVICES_SHOWN: usize = 8;

/// The object and rule that decided a packet on the nodes' path.
#[derive(Clone, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct Culprit {
    /// The object, as people name it: `sg-0abc (eks-cluster-sg)`, `nsg aks-agentpool`.
    pub object: String,
    /// The rule, in the cloud's words: `allows ingress tcp 443 from 0.0.0.0/0`.
    pub rule: String,
    /// Stable identity by content (`sg-0abc/ingress/tcp/443-443/0.0.0.0/0`): the same rule
    /// keeps its key, a broadened rule gets a new one.
    pub key: String,
}

/// The nodes' enforcement path in one place, as the finder sees it.
pub trait Estate {
    /// The policy's decision: perimeter's own objects alone, as planned.
    fn policy(&self, packet: &Packet) -> Verdict;
    /// The decision of the whole path.
    fn effective(&self, packet: &Packet) -> Verdict;
    /// Who decided `packet` on the whole path, when that differs from the policy.
    fn culprit(&self, packet: &Packet) -> Culprit;
    /// The boxes of every rule on the path: their edges cut packet space into cells.
    fn boxes(&self) -> Vec<MatchBox>;
    /// Where the two decisions can differ at all (the cloud's argument says why).
    fn regions(&self) -> Vec<MatchBox>;
    /// Addresses the protected nodes can have (node peers are probed there only).
    fn node_addrs(&self) -> AddrSet {
        AddrSet::everything()
    }
    /// Addresses the cloud never filters (metadata, DNS): both decisions agree there, so a
    /// region may be described as if it included them, when that is shorter.
    fn unfiltered(&self) -> AddrSet {
        AddrSet::empty()
    }
}

/// Whether the path lets through what the policy denies, or the reverse.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    /// The nodes receive or send what the policy denies.
    Opens,
    /// The nodes lose what the policy allows.
    Blocks,
}

impl Effect {
    /// `opens` or `blocks`.
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Opens => "opens",
            Effect::Blocks => "blocks",
        }
    }
}

/// One object's rule that makes the nodes' perimeter differ from the policy.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Violation {
    /// The object responsible.
    pub object: String,
    /// Its rule.
    pub rule: String,
    /// Stable, content-based key (see [`Culprit::key`]) with the effect appended.
    pub key: String,
    /// Opens or blocks.
    pub effect: Effect,
    /// What the policy says for the region.
    pub policy: Verdict,
    /// One packet of the region.
    pub example: String,
    /// The region, merged: `ingress tcp 443 from 0.0.0.0/0 except 10.0.0.0/8`, one per line.
    pub regions: Vec<String>,
    /// Packet classes (cells) in the region.
    pub classes: usize,
}

impl Violation {
    /// One line: `! sg-0abc (eks-cluster-sg) allows ingress tcp 443 from 0.0.0.0/0: the
    /// policy says deny (e.g. ingress tcp 443 from 0.0.0.0)`.
    pub fn line(&self) -> String {
        format!(
            "{} {}: the policy says {} (e.g. {})",
            self.object,
            self.rule,
            self.policy.as_str(),
            self.example
        )
    }
}

/// The violations of one target as plan text: a heading and `! object rule: …` lines with
/// their regions. Empty when there are none.
pub fn render_text(violations: &[Violation]) -> String {
    if violations.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "\nThe nodes' perimeter differs from the policy ({}); perimeter does not own these objects, so apply does not change them:\n",
        violations.len()
    );
    for v in violations {
        out.push_str(&format!("  ! {}\n", v.line()));
        for r in &v.regions {
            out.push_str(&format!("      {} {r}\n", v.effect.as_str()));
        }
    }
    out
}

/// The violations as a markdown list for a pull-request comment. Empty when there are none.
pub fn render_markdown(violations: &[Violation]) -> String {
    if violations.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "\n**The nodes' perimeter differs from the policy** ({}; objects perimeter does not own):\n\n",
        violations.len()
    );
    for v in violations {
        out.push_str(&format!(
            "- `{}` {}: the policy says {} ({} {})\n",
            v.object,
            v.rule,
            v.policy.as_str(),
            v.effect.as_str(),
            v.regions.join("; ")
        ));
    }
    out
}

/// Why an estate was not checked.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
#[error("the nodes' enforcement path cuts into more than {MAX_CELLS} packet classes")]
pub struct TooLarge;

/// One cell: a protocol, a port interval, an address interval and whether the peer is a node.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
struct CellBox {
    direction: Direction,
    protocol: u8,
    ports: (u16, u16),
    addrs: AddrRange,
    node: bool,
    /// The protocol stands for every protocol no rule names.
    others: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum AddrRange {
    V4(u32, u32),
    V6(u128, u128),
}

impl CellBox {
    fn probe(&self) -> Option<Packet> {
        let addr = match self.addrs {
            AddrRange::V4(lo, _) => IpAddr::from(lo.to_be_bytes()),
            AddrRange::V6(lo, _) => IpAddr::from(lo.to_be_bytes()),
        };
        let port = self.ports.0;
        let (type_, code) = ((port >> 8) as u8, (port & 0xff) as u8);
        let protocol = match self.protocol {
            proto::TCP => PacketProtocol::Tcp { port },
            proto::UDP => PacketProtocol::Udp { port },
            proto::ICMP if addr.is_ipv4() => PacketProtocol::Icmp { type_, code },
            proto::ICMPV6 if addr.is_ipv6() => PacketProtocol::Icmpv6 { type_, code },
            proto::ICMP | proto::ICMPV6 => return None,
            number => PacketProtocol::Other { number },
        };
        Some(Packet {
            direction: self.direction,
            protocol,
            peer: Peer {
                addr,
                is_node: self.node,
            },
        })
    }

    fn addr_set(&self) -> AddrSet {
        match self.addrs {
            AddrRange::V4(lo, hi) => AddrSet {
                v4: IntervalSet::range(lo, hi),
                v6: IntervalSet::empty(),
            },
            AddrRange::V6(lo, hi) => AddrSet {
                v4: IntervalSet::empty(),
                v6: IntervalSet::range(lo, hi),
            },
        }
    }
}

type Found = BTreeMap<(Culprit, Effect, Verdict), Vec<CellBox>>;

/// Every place the estate's effective decision differs from the policy, by culprit.
pub fn violations<E: Estate>(estate: &E) -> Result<Vec<Violation>, TooLarge> {
    let unfiltered = estate.unfiltered();
    Ok(find(estate)?
        .into_iter()
        .map(|((culprit, effect, policy), cells)| {
            // A TCP or UDP packet says it best; "protocol 0" stands for every unnamed one.
            let named = |c: &&CellBox| matches!(c.protocol, proto::TCP | proto::UDP);
            let example = cells
                .iter()
                .filter(named)
                .chain(cells.iter())
                .find_map(CellBox::probe)
                .map(|p| describe_packet(&p))
                .unwrap_or_default();
            Violation {
                key: format!("{}/{}", culprit.key, effect.as_str()),
                object: culprit.object,
                rule: culprit.rule,
                effect,
                policy,
                example,
                regions: describe_regions(&cells, &unfiltered),
                classes: cells.len(),
            }
        })
        .collect())
}

/// The differing cells, by culprit, effect and the policy's decision.
fn find<E: Estate>(estate: &E) -> Result<Found, TooLarge> {
    let boxes = estate.boxes();
    let nodes = estate.node_addrs();
    let mut seen: HashSet<CellBox> = HashSet::new();
    let mut budget = MAX_CELLS;
    let mut found = Found::new();
    for region in estate.regions() {
        let near: Vec<&MatchBox> = boxes.iter().filter(|b| b.meets(&region)).collect();
        for cell in cells(&region, &near, &nodes, &mut budget)? {
            if !seen.insert(cell) {
                continue;
            }
            let Some(packet) = cell.probe() else {
                continue;
            };
            let policy = estate.policy(&packet);
            let actual = estate.effective(&packet);
            if policy == actual {
                continue;
            }
            let effect = if actual == Verdict::Allow {
                Effect::Opens
            } else {
                Effect::Blocks
            };
            found
                .entry((estate.culprit(&packet), effect, policy))
                .or_default()
                .push(cell);
        }
    }
    Ok(found)
}

/// The cells of `region` cut by the edges of `near` (which includes every box meeting it).
fn cells(
    region: &MatchBox,
    near: &[&MatchBox],
    nodes: &AddrSet,
    budget: &mut usize,
) -> Result<Vec<CellBox>, TooLarge> {
    let mut unnamed = None;
    let protocols: Vec<u8> = match region.protocol {
        Some(p) => vec![p],
        None => {
            let mut named: BTreeSet<u8> = near.iter().filter_map(|c| c.protocol).collect();
            named.extend([proto::TCP, proto::UDP, proto::ICMP, proto::ICMPV6]);
            // One protocol no rule names stands for all of them.
            unnamed = (0..=255u8).find(|n| !named.contains(n));
            named.extend(unnamed);
            named.into_iter().collect()
        }
    };
    // A node peer matches identity rules anywhere and address rules at its address.
    let node_addrs = (region.nodes || near.iter().any(|c| c.nodes)).then(|| {
        if region.nodes {
            nodes.clone()
        } else {
            region.addrs.intersection(nodes)
        }
    });
    let mut out = Vec::new();
    for protocol in protocols {
        let relevant: Vec<&MatchBox> = near
            .iter()
            .copied()
            .filter(|c| c.protocol.is_none_or(|p| p == protocol))
            .collect();
        let ported = matches!(
            protocol,
            proto::TCP | proto::UDP | proto::ICMP | proto::ICMPV6
        );
        let ports = if ported {
            let same = relevant
                .iter()
                .filter(|c| c.protocol == Some(protocol))
                .map(|c| &c.ports);
            intervals_u16(&region.ports, same)
        } else {
            vec![(0, u16::MAX)]
        };
        for &(lo, hi) in &ports {
            // Only the boxes that cover this port cell cut its addresses: a box either covers
            // the whole cell or none of it, and one that does not cannot decide its packets.
            let covering: Vec<&MatchBox> = relevant
                .iter()
                .copied()
                .filter(|c| c.protocol.is_none() || !ported || c.ports.contains(lo))
                .collect();
            let mut push = |addrs: AddrRange, node: bool| -> Result<(), TooLarge> {
                *budget = budget.checked_sub(1).ok_or(TooLarge)?;
                out.push(CellBox {
                    direction: region.direction,
                    protocol,
                    ports: (lo, hi),
                    addrs,
                    node,
                    others: unnamed == Some(protocol),
                });
                Ok(())
            };
            let mut peers = |within: &AddrSet, node: bool| -> Result<(), TooLarge> {
                for (a, b) in intervals_u32(&within.v4, covering.iter().map(|c| &c.addrs.v4)) {
                    push(AddrRange::V4(a, b), node)?;
                }
                for (a, b) in intervals_u128(&within.v6, covering.iter().map(|c| &c.addrs.v6)) {
                    push(AddrRange::V6(a, b), node)?;
                }
                Ok(())
            };
            peers(&region.addrs, false)?;
            if let Some(at) = &node_addrs {
                peers(at, true)?;
            }
        }
    }
    Ok(out)
}

macro_rules! intervals {
    ($name:ident, $t:ty) => {
        /// The cells of `within` cut at the edges of `edges`, as closed intervals (the
        /// transition checker probes their first points).
        pub(crate) fn $name<'s>(
            within: &IntervalSet<$t>,
            edges: impl Iterator<Item = &'s IntervalSet<$t>>,
        ) -> Vec<($t, $t)> {
            let mut cuts: BTreeSet<$t> = BTreeSet::new();
            for set in edges {
                for &(lo, hi) in set.ranges() {
                    cuts.insert(lo);
                    if let Some(next) = hi.checked_add(1) {
                        cuts.insert(next);
                    }
                }
            }
            let mut out = Vec::new();
            for &(lo, hi) in within.ranges() {
                let mut start = lo;
                for &c in cuts.range(lo..=hi) {
                    if c > start {
                        out.push((start, c - 1));
                        start = c;
                    }
                }
                out.push((start, hi));
            }
            out
        }
    };
}
intervals!(intervals_u16, u16);
intervals!(intervals_u32, u32);
intervals!(intervals_u128, u128);

/// The cells merged: for each direction, protocol, peer kind and port interval the addresses,
/// then neighbouring port intervals with equal addresses joined.
fn describe_regions(cells: &[CellBox], unfiltered: &AddrSet) -> Vec<String> {
    type Slot = (Direction, bool, u8, bool);
    let mut by_ports: BTreeMap<Slot, BTreeMap<(u16, u16), AddrSet>> = BTreeMap::new();
    for c in cells {
        let slot = by_ports
            .entry((c.direction, c.node, c.protocol, c.others))
            .or_default()
            .entry(c.ports)
            .or_default();
        *slot = slot.union(&c.addr_set());
    }
    // Services with the same peers share a line: `egress tcp 0-52, udp, other protocols to …`.
    let mut lines: Vec<((Direction, bool, AddrSet), Vec<String>)> = Vec::new();
    for ((direction, node, protocol, others), ports) in by_ports {
        let mut merged: Vec<(u16, u16, AddrSet)> = Vec::new();
        for ((lo, hi), addrs) in ports {
            match merged.last_mut() {
                Some((_, last_hi, last))
                    if *last == addrs && u32::from(*last_hi) + 1 == u32::from(lo) =>
                {
                    *last_hi = hi;
                }
                _ => merged.push((lo, hi, addrs)),
            }
        }
        for (lo, hi, addrs) in merged {
            let service = describe_service(protocol, lo, hi, others);
            let key = (direction, node, addrs);
            match lines.iter_mut().find(|(k, _)| *k == key) {
                Some((_, services)) => services.push(service),
                None => lines.push((key, vec![service])),
            }
        }
    }
    let mut out: Vec<String> = lines
        .into_iter()
        .map(|((direction, node, addrs), services)| {
            let way = if direction == Direction::Ingress {
                "from"
            } else {
                "to"
            };
            let peers = describe_peers(&addrs, unfiltered);
            let who = if node {
                format!("nodes at {peers}")
            } else {
                peers
            };
            format!(
                "{} {} {way} {who}",
                direction.as_str(),
                join_services(&services)
            )
        })
        .collect();
    let total = out.len();
    if total > REGIONS_SHOWN {
        out.truncate(REGIONS_SHOWN);
        out.push(format!("… and {} more regions", total - REGIONS_SHOWN));
    }
    out
}

/// `tcp 0-21, tcp 23-65535, udp 53` as `tcp 0-21, 23-65535, udp 53`.
fn join_services(services: &[String]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut last_name = "";
    for s in services {
        match s.split_once(' ') {
            Some((name, span)) if name == last_name && !span.contains(' ') => {
                out.push(span.to_string())
            }
            Some((name, _)) => {
                last_name = name;
                out.push(s.clone());
            }
            None => {
                last_name = "";
                out.push(s.clone());
            }
        }
    }
    if out.len() > SERVICES_SHOWN {
        let more = out.len() - SERVICES_SHOWN;
        out.truncate(SERVICES_SHOWN);
        out.push(format!("{more} more port ranges"));
    }
    out.join(", ")
}

/// The peers of a region, as if they included the unfiltered addresses of its families when
/// that says it shorter (both decisions agree there anyway).
fn describe_peers(addrs: &AddrSet, unfiltered: &AddrSet) -> String {
    let plain = describe_addrs(addrs);
    let dont_care = AddrSet {
        v4: if addrs.v4.is_empty() {
            IntervalSet::empty()
        } else {
            unfiltered.v4.clone()
        },
        v6: if addrs.v6.is_empty() {
            IntervalSet::empty()
        } else {
            unfiltered.v6.clone()
        },
    };
    let with = describe_addrs(&addrs.union(&dont_care));
    if with.len() < plain.len() {
        with
    } else {
        plain
    }
}

fn describe_service(protocol: u8, lo: u16, hi: u16, others: bool) -> String {
    if others {
        return "other protocols".into();
    }
    let span = |lo: u16, hi: u16| {
        if lo == hi {
            lo.to_string()
        } else {
            format!("{lo}-{hi}")
        }
    };
    match protocol {
        proto::TCP | proto::UDP => {
            let name = if protocol == proto::TCP { "tcp" } else { "udp" };
            if (lo, hi) == (0, u16::MAX) {
                format!("{name} all ports")
            } else {
                format!("{name} {}", span(lo, hi))
            }
        }
        proto::ICMP | proto::ICMPV6 => {
            let name = if protocol == proto::ICMP {
                "icmp"
            } else {
                "icmpv6"
            };
            if (lo, hi) == (0, u16::MAX) {
                format!("{name} all types")
            } else if lo & 0xff == 0 && hi & 0xff == 0xff {
                format!("{name} type {}", span(lo >> 8, hi >> 8))
            } else {
                format!(
                    "{name} type/code {}/{}..{}/{}",
                    lo >> 8,
                    lo & 0xff,
                    hi >> 8,
                    hi & 0xff
                )
            }
        }
        n => format!("protocol {n}"),
    }
}

/// `0.0.0.0/0`, `0.0.0.0/0 except 10.0.0.0/8`, or the first CIDRs and a count; per family.
fn describe_addrs(addrs: &AddrSet) -> String {
    let list = |cidrs: Vec<crate::Cidr>| {
        let mut s: Vec<String> = cidrs.iter().take(4).map(ToString::to_string).collect();
        if cidrs.len() > 4 {
            s.push(format!("{} more", cidrs.len() - 4));
        }
        s.join(", ")
    };
    let family = |set: AddrSet, all: AddrSet, any: &str| {
        if set.is_empty() {
            return None;
        }
        let missing = all.difference(&set);
        let (inside, outside) = (set.to_cidrs(), missing.to_cidrs());
        Some(if missing.is_empty() {
            any.to_string()
        } else if outside.len() < inside.len() {
            format!("{any} except {}", list(outside))
        } else {
            list(inside)
        })
    };
    let everything = AddrSet::everything();
    let parts: Vec<String> = [
        family(addrs.only_v4(), everything.only_v4(), "0.0.0.0/0"),
        family(addrs.only_v6(), everything.only_v6(), "::/0"),
    ]
    .into_iter()
    .flatten()
    .collect();
    parts.join("; ")
}

#[cfg(test)]
mod tests;
