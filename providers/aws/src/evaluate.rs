//! An independent model of how AWS decides a packet, written from the documented semantics
//! (../shared/design/cloud-facts.md A1, A3) rather than from the compiler:
//!
//! * traffic to or from the instance metadata service, Amazon DNS and Time Sync is never
//!   filtered by security groups or network ACLs; only the instance metadata options can turn
//!   the metadata endpoint off;
//! * a security group allows a packet if any rule of its direction matches; an interface with
//!   several groups allows what any of them allows (a union); groups are stateful, so replies
//!   are always allowed;
//! * a rule that references a security group matches the interfaces carrying that group: for
//!   the protected nodes, the groups every node carries;
//! * a network ACL is stateless: rules are read in rule-number order, the first match decides,
//!   no match means the `*` deny. Both the first packet and its reply must pass.
//!
//! The equivalence test compares this against `Intent::decide` for generated packets.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use perimeter_core::{Direction, Packet, PacketProtocol, Verdict};

use crate::model::{MetadataOptions, NaclEntry, NetworkAcl, SecurityGroup, SgPeer, SgRule};

/// The ephemeral port a reply is addressed to in the model (clients pick one from their
/// ephemeral range; 49152 is in every OS's range).
pub const REPLY_PORT: u16 = 49152;

/// A security group perimeter does not own, on the node's interface.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct OtherGroup {
    /// `sg-...`: what rules of any group reference it by.
    pub group_id: String,
    /// `GroupName`.
    pub group_name: String,
    /// Its rules; a reference to itself is [`SgPeer::OwnGroup`].
    pub rules: Vec<SgRule>,
}

/// The AWS objects that decide a node's traffic.
#[derive(Clone, Copy, Debug)]
pub struct AwsWorld<'a> {
    /// The owned security group (a reference to it matches the nodes).
    pub security_group: &'a SecurityGroup,
    /// The other groups on the node's interface.
    pub other_groups: &'a [OtherGroup],
    /// Ids of the groups every protected node carries besides the owned one: a rule
    /// referencing one of them matches node peers.
    pub node_groups: &'a [String],
    /// The NACL of the node's subnet, if perimeter manages one.
    pub network_acl: Option<&'a NetworkAcl>,
    /// The node's metadata options as perimeter sets them (`None`: left at AWS defaults).
    pub metadata_options: Option<&'a MetadataOptions>,
}

fn is_metadata(addr: IpAddr) -> bool {
    addr == IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254))
        || addr == IpAddr::V6(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254))
}

fn is_unfiltered_service(addr: IpAddr) -> bool {
    [
        IpAddr::V4(Ipv4Addr::new(169, 254, 169, 253)),
        IpAddr::V4(Ipv4Addr::new(169, 254, 169, 123)),
        IpAddr::V6(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x253)),
        IpAddr::V6(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x123)),
    ]
    .contains(&addr)
}

/// AWS's decision for the first packet of a flow at a protected node.
pub fn decide(world: &AwsWorld<'_>, packet: &Packet) -> Verdict {
    let addr = packet.peer.addr;
    if is_metadata(addr) {
        let disabled = world
            .metadata_options
            .is_some_and(|m| m.http_endpoint == "disabled");
        return if packet.direction == Direction::Egress && disabled {
            Verdict::Deny
        } else {
            Verdict::Allow
        };
    }
    if is_unfiltered_service(addr) {
        return Verdict::Allow;
    }
    let own = world
        .security_group
        .rules
        .iter()
        .any(|r| r.direction == packet.direction && sg_rule_matches(r, packet, None, world));
    let sg_allows = own || allowing_rule(world, packet).is_some();
    if !sg_allows {
        return Verdict::Deny;
    }
    if let Some(nacl) = world.network_acl
        && nacl_denial(nacl, packet).is_some()
    {
        return Verdict::Deny;
    }
    Verdict::Allow
}

/// The first rule of another group on the interface that allows `packet` (with its group).
pub fn allowing_rule<'a>(
    world: &AwsWorld<'a>,
    packet: &Packet,
) -> Option<(&'a OtherGroup, &'a SgRule)> {
    world.other_groups.iter().find_map(|g| {
        g.rules
            .iter()
            .find(|r| r.direction == packet.direction && sg_rule_matches(r, packet, Some(g), world))
            .map(|r| (g, r))
    })
}

/// Why a NACL drops `packet`: the entry that denies it or its reply (`None` in the entry:
/// no entry matched, so the `*` deny did), and whether it was the reply. `None` when both
/// pass.
pub fn nacl_denial<'a>(
    nacl: &'a NetworkAcl,
    packet: &Packet,
) -> Option<(Option<&'a NaclEntry>, bool)> {
    let addr = packet.peer.addr;
    if let (false, entry) = nacl_decision(nacl, packet.direction, &packet.protocol, addr) {
        return Some((entry, false));
    }
    if let Some(reply) = reply_of(&packet.protocol) {
        let back = match packet.direction {
            Direction::Ingress => Direction::Egress,
            Direction::Egress => Direction::Ingress,
        };
        if let (false, entry) = nacl_decision(nacl, back, &reply, addr) {
            return Some((entry, true));
        }
    }
    None
}

/// The reply a stateless filter must also let through, if the protocol has one.
fn reply_of(p: &PacketProtocol) -> Option<PacketProtocol> {
    match p {
        PacketProtocol::Tcp { .. } => Some(PacketProtocol::Tcp { port: REPLY_PORT }),
        PacketProtocol::Udp { .. } => Some(PacketProtocol::Udp { port: REPLY_PORT }),
        PacketProtocol::Icmp { type_: 8, .. } => Some(PacketProtocol::Icmp { type_: 0, code: 0 }),
        PacketProtocol::Icmpv6 { type_: 128, .. } => Some(PacketProtocol::Icmpv6 {
            type_: 129,
            code: 0,
        }),
        PacketProtocol::Icmp { .. } | PacketProtocol::Icmpv6 { .. } => None,
        PacketProtocol::Other { number } => Some(PacketProtocol::Other { number: *number }),
    }
}

fn protocol_number(name: &str) -> Option<i32> {
    match name {
        "-1" => Some(-1),
        "tcp" => Some(6),
        "udp" => Some(17),
        "icmp" => Some(1),
        "icmpv6" => Some(58),
        n => n.parse().ok(),
    }
}

/// Whether a rule of `group` (`None`: the owned group) matches. Members of a referenced group
/// other than the protected nodes are not known to the model: such peers match nothing.
fn sg_rule_matches(
    rule: &SgRule,
    packet: &Packet,
    group: Option<&OtherGroup>,
    world: &AwsWorld<'_>,
) -> bool {
    let carried = |id: &str| world.node_groups.iter().any(|g| g == id);
    let peer_ok = match &rule.peer {
        SgPeer::CidrIpv4(c) | SgPeer::CidrIpv6(c) => c.contains(packet.peer.addr),
        SgPeer::OwnGroup => packet.peer.is_node && group.is_none_or(|g| carried(&g.group_id)),
        SgPeer::ReferencedGroup(id) => packet.peer.is_node && carried(id),
        SgPeer::PrefixList(_) => false,
    };
    peer_ok
        && protocol_matches(
            rule.ip_protocol.as_str(),
            rule.from_port,
            rule.to_port,
            &packet.protocol,
        )
}

/// EC2's protocol/port matching, shared by the SG and NACL models: `-1` is everything; TCP and
/// UDP compare the destination port with the range; ICMP compares type and code, -1 being any.
fn protocol_matches(proto: &str, from: i32, to: i32, p: &PacketProtocol) -> bool {
    let Some(number) = protocol_number(proto) else {
        return false;
    };
    if number == -1 {
        return true;
    }
    if number != i32::from(p.number()) {
        return false;
    }
    match p {
        PacketProtocol::Tcp { port } | PacketProtocol::Udp { port } => {
            from <= i32::from(*port) && i32::from(*port) <= to
        }
        PacketProtocol::Icmp { type_, code } | PacketProtocol::Icmpv6 { type_, code } => {
            (from == -1 || from == i32::from(*type_)) && (to == -1 || to == i32::from(*code))
        }
        PacketProtocol::Other { .. } => true,
    }
}

/// The NACL's first match for one direction: allowed, and the entry (`None`: the `*` deny).
fn nacl_decision<'a>(
    nacl: &'a NetworkAcl,
    direction: Direction,
    p: &PacketProtocol,
    addr: IpAddr,
) -> (bool, Option<&'a NaclEntry>) {
    let egress = direction == Direction::Egress;
    let mut entries: Vec<&NaclEntry> = nacl.entries.iter().filter(|e| e.egress == egress).collect();
    entries.sort_by_key(|e| e.rule_number);
    for e in entries {
        if !e.cidr.contains(addr) {
            continue;
        }
        let (from, to) = match (e.port_range, e.icmp_type_code) {
            (Some((a, b)), _) => (i32::from(a), i32::from(b)),
            (None, Some((t, c))) => (t, c),
            (None, None) => (-1, -1),
        };
        // A TCP/UDP entry without a port range would match nothing useful; treat as all ports.
        let (from, to) = if e.port_range.is_none() && matches!(e.protocol.as_str(), "6" | "17") {
            (0, 65535)
        } else {
            (from, to)
        };
        if protocol_matches(&e.protocol, from, to, p) {
            return (e.rule_action == "allow", Some(e));
        }
    }
    (false, None)
}
