//! An independent model of how GCP decides a packet, from the documented semantics
//! (../shared/design/cloud-facts.md A2, A4), not from the compiler:
//!
//! * traffic between a VM and the metadata server (169.254.169.254) is always allowed;
//! * of the enabled rules that apply to the instance (target tags) and match the packet, the
//!   one with the lowest priority number wins; at equal priority a deny beats an allow;
//! * an ingress rule's source is its source ranges OR its source tags (a missing source means
//!   0.0.0.0/0); an egress rule's destination is its destination ranges (missing: 0.0.0.0/0);
//! * implied rules at 65535: deny all ingress, allow all egress. Rules are stateful;
//! * firewall policies (`path_decider`): hierarchical ones from the organization down, then
//!   the VPC rules, then the network's policy (or the network's before the VPC rules with
//!   `BEFORE_CLASSIC_FIREWALL`); in each policy the lowest priority that matches decides, and
//!   `goto_next` or no match passes to the next step
//!   (https://docs.cloud.google.com/firewall/docs/firewall-policies-rule-eval-order).

use std::net::{IpAddr, Ipv4Addr};

use perimeter_core::{Cidr, Direction, Packet, PacketProtocol, Verdict};

use crate::firewall_policy::{FirewallPolicy, PolicyRule};
use crate::model::{Firewall, ProtocolPorts};

/// The network tags carried by the protected node (and by every node peer).
#[derive(Clone, Copy, Debug)]
pub struct GcpWorld<'a> {
    /// All firewall rules of the network.
    pub firewalls: &'a [Firewall],
    /// Tags of the nodes.
    pub node_tags: &'a [String],
    /// Service accounts the nodes run as (empty: not known).
    pub node_service_accounts: &'a [String],
}

fn in_ranges(ranges: &[String], addr: IpAddr) -> bool {
    ranges
        .iter()
        .any(|r| r.parse::<Cidr>().is_ok_and(|c| c.contains(addr)))
}

/// The IP protocol number of a GCP protocol name; `None` for `all` and for names GCP does not
/// know (they match nothing).
pub(crate) fn protocol_number(name: &str) -> Option<u8> {
    match name {
        "tcp" => Some(6),
        "udp" => Some(17),
        "icmp" => Some(1),
        "esp" => Some(50),
        "ah" => Some(51),
        "sctp" => Some(132),
        "ipip" => Some(4),
        "ipv6-icmp" => Some(58),
        "all" => None,
        n => n.parse().ok(),
    }
}

fn protocol_matches(pp: &ProtocolPorts, p: &PacketProtocol) -> bool {
    if pp.ip_protocol == "all" {
        return true;
    }
    if protocol_number(&pp.ip_protocol) != Some(p.number()) {
        return false;
    }
    match p.port() {
        Some(port) if !pp.ports.is_empty() => pp.ports.iter().any(|r| match r.split_once('-') {
            Some((a, b)) => {
                a.parse::<u16>().is_ok_and(|a| a <= port)
                    && b.parse::<u16>().is_ok_and(|b| port <= b)
            }
            None => r.parse::<u16>() == Ok(port),
        }),
        _ => true,
    }
}

fn applies(fw: &Firewall, world: &GcpWorld<'_>, packet: &Packet) -> bool {
    let dir = match packet.direction {
        Direction::Ingress => "INGRESS",
        Direction::Egress => "EGRESS",
    };
    if fw.disabled || fw.direction != dir {
        return false;
    }
    // A rule targets instances by tag or by service account. When the nodes' service
    // accounts are not declared, a rule that targets service accounts is assumed to apply to
    // the nodes, and one whose sources are service accounts to match the nodes as peers.
    let runs_as = |accounts: &[String]| {
        world.node_service_accounts.is_empty()
            || accounts
                .iter()
                .any(|a| world.node_service_accounts.contains(a))
    };
    if fw.target_service_accounts.is_empty()
        && !fw.target_tags.is_empty()
        && !fw.target_tags.iter().any(|t| world.node_tags.contains(t))
    {
        return false;
    }
    if !fw.target_service_accounts.is_empty() && !runs_as(&fw.target_service_accounts) {
        return false;
    }
    let addr = packet.peer.addr;
    let peer_ok = match packet.direction {
        Direction::Ingress => {
            let by_tag = packet.peer.is_node
                && (fw.source_tags.iter().any(|t| world.node_tags.contains(t))
                    || (!fw.source_service_accounts.is_empty()
                        && runs_as(&fw.source_service_accounts)));
            let no_source = fw.source_ranges.is_empty()
                && fw.source_tags.is_empty()
                && fw.source_service_accounts.is_empty();
            by_tag || in_ranges(&fw.source_ranges, addr) || (no_source && addr.is_ipv4())
        }
        Direction::Egress => {
            in_ranges(&fw.destination_ranges, addr)
                || (fw.destination_ranges.is_empty() && addr.is_ipv4())
        }
    };
    peer_ok
        && fw
            .allowed
            .iter()
            .chain(fw.denied.iter())
            .any(|pp| protocol_matches(pp, &packet.protocol))
}

/// GCP's decision for the first packet of a flow at a protected node.
pub fn decide(world: &GcpWorld<'_>, packet: &Packet) -> Verdict {
    if packet.peer.addr == IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)) {
        return Verdict::Allow;
    }
    match winner(world, packet) {
        Some(fw) => verdict_of(fw),
        None => match packet.direction {
            Direction::Ingress => Verdict::Deny,
            Direction::Egress => Verdict::Allow,
        },
    }
}

fn verdict_of(fw: &Firewall) -> Verdict {
    if fw.denied.is_empty() {
        Verdict::Allow
    } else {
        Verdict::Deny
    }
}

/// The rule that decides `packet` (metadata traffic aside): of the enabled rules that apply and
/// match, the lowest priority number, a deny before an allow at equal priority; `None` when
/// only the implied rules match.
pub fn winner<'a>(world: &GcpWorld<'a>, packet: &Packet) -> Option<&'a Firewall> {
    let mut best: Option<&Firewall> = None;
    for fw in world
        .firewalls
        .iter()
        .filter(|fw| applies(fw, world, packet))
    {
        best = match best {
            None => Some(fw),
            Some(b) if fw.priority < b.priority => Some(fw),
            Some(b)
                if fw.priority == b.priority
                    && verdict_of(fw) == Verdict::Deny
                    && verdict_of(b) == Verdict::Allow =>
            {
                Some(fw)
            }
            keep => keep,
        };
    }
    best
}

/// What decided a packet on the whole path (cloud-facts.md A4, firewall policies): a rule of
/// a firewall policy, a VPC rule, or the implied rules.
#[derive(Clone, Copy, Debug)]
pub enum Decider<'a> {
    /// An `allow` or `deny` rule of a firewall policy.
    Policy(&'a FirewallPolicy, &'a PolicyRule),
    /// A VPC firewall rule.
    Rule(&'a Firewall),
    /// The implied rules (deny ingress, allow egress), or the metadata server's exemption.
    Implied,
}

/// The firewall policies around the VPC rules, in evaluation order.
#[derive(Clone, Copy, Debug, Default)]
pub struct PolicyPath<'a> {
    /// Evaluated before the VPC rules: hierarchical policies top down, then (with
    /// `BEFORE_CLASSIC_FIREWALL`) the network's.
    pub before: &'a [&'a FirewallPolicy],
    /// Evaluated after the VPC rules when none matched (`AFTER_CLASSIC_FIREWALL`, the
    /// default): the network's.
    pub after: &'a [&'a FirewallPolicy],
}

fn policy_rule_matches(r: &PolicyRule, world: &GcpWorld<'_>, packet: &Packet) -> bool {
    let dir = match packet.direction {
        Direction::Ingress => "INGRESS",
        Direction::Egress => "EGRESS",
    };
    if r.disabled || r.direction != dir {
        return false;
    }
    // Service accounts as for VPC rules; secure tags are not known for the nodes, so a rule
    // that targets them is taken to apply (the planner says so in a finding).
    if !r.target_service_accounts.is_empty()
        && !world.node_service_accounts.is_empty()
        && !r
            .target_service_accounts
            .iter()
            .any(|a| world.node_service_accounts.contains(a))
    {
        return false;
    }
    let addr = packet.peer.addr;
    let peer_ok = match packet.direction {
        Direction::Ingress => {
            (r.src_ip_ranges.is_empty() && r.src_secure_tags.is_empty())
                || in_ranges(&r.src_ip_ranges, addr)
                || (packet.peer.is_node && !r.src_secure_tags.is_empty())
        }
        Direction::Egress => r.dest_ip_ranges.is_empty() || in_ranges(&r.dest_ip_ranges, addr),
    };
    peer_ok
        && (r.layer4.is_empty()
            || r.layer4
                .iter()
                .any(|pp| protocol_matches(pp, &packet.protocol)))
}

/// The first rule of `policies`, in order, that decides `packet`: within a policy the lowest
/// priority that matches; `goto_next`, or no match, passes to the next policy.
fn policy_decider<'a>(
    policies: &[&'a FirewallPolicy],
    world: &GcpWorld<'_>,
    packet: &Packet,
) -> Option<(&'a FirewallPolicy, &'a PolicyRule)> {
    for &policy in policies {
        let first = policy
            .rules
            .iter()
            .filter(|r| policy_rule_matches(r, world, packet))
            .min_by_key(|r| r.priority);
        if let Some(r) = first
            && matches!(r.action.as_str(), "allow" | "deny")
        {
            return Some((policy, r));
        }
    }
    None
}

/// Who decides `packet` on the whole path: the policies before the VPC rules, the VPC rules,
/// the policies after them, then the implied rules. Metadata traffic is never filtered.
pub fn path_decider<'a>(
    world: &GcpWorld<'a>,
    path: &PolicyPath<'a>,
    packet: &Packet,
) -> Decider<'a> {
    if packet.peer.addr == IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)) {
        return Decider::Implied;
    }
    if let Some((p, r)) = policy_decider(path.before, world, packet) {
        return Decider::Policy(p, r);
    }
    if let Some(fw) = winner(world, packet) {
        return Decider::Rule(fw);
    }
    match policy_decider(path.after, world, packet) {
        Some((p, r)) => Decider::Policy(p, r),
        None => Decider::Implied,
    }
}

/// GCP's decision on the whole path.
pub fn decide_path(world: &GcpWorld<'_>, path: &PolicyPath<'_>, packet: &Packet) -> Verdict {
    match path_decider(world, path, packet) {
        Decider::Policy(_, r) if r.action == "allow" => Verdict::Allow,
        Decider::Policy(..) => Verdict::Deny,
        Decider::Rule(fw) => verdict_of(fw),
        Decider::Implied => decide(world, packet),
    }
}
