//! An independent model of how AWS decides a packet, written from the documented semantics
//! (../shared/design/cloud-facts.md A1, A3) rather than from the compiler:
//!
//! * traffic to or from the instance metadata service, Amazon DNS and Time Sync is never
//!   filtered by security groups or network ACLs; only the instance metadata options can turn
//!   the metadata endpoint off;
//! * a security group allows a packet if any rule of its direction matches (union); it is
//!   stateful, so replies are always allowed;
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

/// The AWS objects that decide a node's traffic.
#[derive(Clone, Copy, Debug)]
pub struct AwsWorld<'a> {
    /// The owned security group (the only one on the node in this model).
    pub security_group: &'a SecurityGroup,
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
    let sg_allows = world
        .security_group
        .rules
        .iter()
        .any(|r| r.direction == packet.direction && sg_rule_matches(r, packet));
    if !sg_allows {
        return Verdict::Deny;
    }
    if let Some(nacl) = world.network_acl {
        if !nacl_allows(nacl, packet.direction, &packet.protocol, addr) {
            return Verdict::Deny;
        }
        if let Some(reply) = reply_of(&packet.protocol) {
            let back = match packet.direction {
                Direction::Ingress => Direction::Egress,
                Direction::Egress => Direction::Ingress,
            };
            if !nacl_allows(nacl, back, &reply, addr) {
                return Verdict::Deny;
            }
        }
    }
    Verdict::Allow
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

fn sg_rule_matches(rule: &SgRule, packet: &Packet) -> bool {
    let peer_ok = match &rule.peer {
        SgPeer::CidrIpv4(c) | SgPeer::CidrIpv6(c) => c.contains(packet.peer.addr),
        SgPeer::OwnGroup => packet.peer.is_node,
        SgPeer::ReferencedGroup(_) | SgPeer::PrefixList(_) => false,
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

fn nacl_allows(nacl: &NetworkAcl, direction: Direction, p: &PacketProtocol, addr: IpAddr) -> bool {
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
            return e.rule_action == "allow";
        }
    }
    false
}
