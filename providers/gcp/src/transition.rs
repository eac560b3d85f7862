//! GCP as the transition checker sees it (core::transition): the network's rules, owned and
//! foreign, and perimeter's firewall writes. Decisions come from `evaluate`; the boxes read a
//! rule the way the documentation does (cloud-facts.md A2), not the way the compiler writes it.

use perimeter_core::interval::IntervalSet;
use perimeter_core::transition::{MatchBox, Transition};
use perimeter_core::{AddrSet, Cidr, Direction, Packet, Verdict};

use crate::evaluate::{GcpWorld, decide, protocol_number};
use crate::model::{Firewall, ProtocolPorts};
use crate::plan::{FirewallChange, WriteMethod};

/// One network: its node tags, and every rule in it.
pub struct GcpTransition<'a> {
    /// Tags of the protected nodes.
    pub node_tags: &'a [String],
    /// Service accounts of the protected nodes (empty: not declared; rules that target or
    /// come from service accounts are then assumed to concern the nodes).
    pub node_service_accounts: &'a [String],
    /// The target's `node_ranges` (empty: nodes may have any address).
    pub node_ranges: &'a [Cidr],
}

impl Transition for GcpTransition<'_> {
    type State = Vec<Firewall>;
    type Write = FirewallChange;

    fn apply(&self, state: &mut Vec<Firewall>, write: &FirewallChange) {
        state.retain(|f| f.name != write.name);
        if let Some(after) = &write.after {
            state.push(after.clone());
        }
    }

    fn decide(&self, state: &Vec<Firewall>, packet: &Packet) -> Verdict {
        decide(
            &GcpWorld {
                firewalls: state,
                node_tags: self.node_tags,
                node_service_accounts: self.node_service_accounts,
            },
            packet,
        )
    }

    fn footprint(&self, state: &Vec<Firewall>, write: &FirewallChange) -> Vec<MatchBox> {
        let mut out: Vec<MatchBox> = state
            .iter()
            .filter(|f| f.name == write.name)
            .flat_map(|f| self.boxes_of(f))
            .collect();
        if let Some(after) = &write.after {
            out.extend(self.boxes_of(after));
        }
        out
    }

    fn boxes(&self, state: &Vec<Firewall>) -> Vec<MatchBox> {
        state.iter().flat_map(|f| self.boxes_of(f)).collect()
    }

    fn describe(&self, write: &FirewallChange) -> String {
        let verb = match write.method {
            WriteMethod::Insert => "insert",
            WriteMethod::Patch => "patch",
            WriteMethod::Update => "update",
            WriteMethod::Delete => "delete",
        };
        match &write.after {
            Some(f) => format!("{verb} firewall {} at priority {}", write.name, f.priority),
            None => format!("{verb} firewall {}", write.name),
        }
    }

    fn node_addrs(&self) -> AddrSet {
        if self.node_ranges.is_empty() {
            AddrSet::everything()
        } else {
            AddrSet::from_cidrs(self.node_ranges)
        }
    }
}

impl GcpTransition<'_> {
    /// The packets a rule can match at the nodes (none when it is disabled or targets other
    /// instances).
    pub(crate) fn boxes_of(&self, f: &Firewall) -> Vec<MatchBox> {
        let other_instances = f.target_service_accounts.is_empty()
            && !f.target_tags.is_empty()
            && !f.target_tags.iter().any(|t| self.node_tags.contains(t));
        let other_accounts = !self.node_service_accounts.is_empty()
            && !f.target_service_accounts.is_empty()
            && !f
                .target_service_accounts
                .iter()
                .any(|a| self.node_service_accounts.contains(a));
        if f.disabled || other_instances || other_accounts {
            return Vec::new();
        }
        let ipv4_any = || AddrSet::from_cidrs(&["0.0.0.0/0".parse::<Cidr>().expect("a CIDR")]);
        let ranges = |list: &[String]| {
            let cidrs: Vec<Cidr> = list.iter().filter_map(|r| r.parse().ok()).collect();
            AddrSet::from_cidrs(&cidrs)
        };
        let (direction, addrs, nodes) = if f.direction == "EGRESS" {
            let addrs = if f.destination_ranges.is_empty() {
                ipv4_any()
            } else {
                ranges(&f.destination_ranges)
            };
            (Direction::Egress, addrs, false)
        } else {
            let by_identity = !f.source_tags.is_empty() || !f.source_service_accounts.is_empty();
            let addrs = if f.source_ranges.is_empty() && !by_identity {
                ipv4_any()
            } else {
                ranges(&f.source_ranges)
            };
            (Direction::Ingress, addrs, by_identity)
        };
        f.allowed
            .iter()
            .chain(&f.denied)
            .map(|pp| MatchBox {
                direction,
                // `all` and unknown names: a box over every protocol only adds probes.
                protocol: protocol_number(&pp.ip_protocol),
                ports: ports_of(pp),
                addrs: addrs.clone(),
                nodes,
            })
            .collect()
    }
}

fn ports_of(pp: &ProtocolPorts) -> IntervalSet<u16> {
    let is_ported = matches!(pp.ip_protocol.as_str(), "tcp" | "udp" | "6" | "17");
    if pp.ports.is_empty() || !is_ported {
        return IntervalSet::full();
    }
    IntervalSet::from_ranges(pp.ports.iter().filter_map(|r| match r.split_once('-') {
        Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
        None => r.parse().ok().map(|p| (p, p)),
    }))
}
