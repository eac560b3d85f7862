//! An independent model of how Azure decides a packet at a node's NSG, from the documented
//! semantics (../shared/design/cloud-facts.md A2, A5), not from the compiler:
//!
//! * traffic to or from the platform addresses 169.254.169.254 (IMDS) and 168.63.129.16 is not
//!   subject to NSG rules, except rules that name the platform service tags
//!   (`AzurePlatformIMDS`, `AzurePlatformDNS`);
//! * otherwise the rules of the packet's direction, user rules and then the default rules
//!   (65000+), are read in priority order and the first match decides;
//! * `*` matches every address; an application security group matches the NICs in it.

use std::net::{IpAddr, Ipv4Addr};

use perimeter_core::{AddrSet, Cidr, Direction, Packet, PacketProtocol, Verdict};

use crate::model::{SecurityRule, SecurityRuleProperties};

const IMDS: IpAddr = IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254));
const WIRESERVER: IpAddr = IpAddr::V4(Ipv4Addr::new(168, 63, 129, 16));

/// The NSG and the node's identity.
#[derive(Clone, Copy, Debug)]
pub struct AzureWorld<'a> {
    /// The NSG's security rules (the default rules are added by the model).
    pub rules: &'a [SecurityRule],
    /// Id of the application security group the nodes' NICs are in.
    pub node_asg: &'a str,
    /// The protected NIC, when known: a rule's near side (the destination of inbound, the
    /// source of outbound) must match it. Unknown: every rule is taken to concern the node.
    pub nic: Option<&'a NicIdentity>,
}

/// What a rule's near side can select a NIC by.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NicIdentity {
    /// Ids of the application security groups its IP configurations are in.
    pub asgs: Vec<String>,
}

/// A built-in default rule: (priority, direction, source, destination, access).
const DEFAULTS: &[(u16, &str, &str, &str, &str)] = &[
    (
        65000,
        "Inbound",
        "VirtualNetwork",
        "VirtualNetwork",
        "Allow",
    ),
    (65001, "Inbound", "AzureLoadBalancer", "*", "Allow"),
    (65500, "Inbound", "*", "*", "Deny"),
    (
        65000,
        "Outbound",
        "VirtualNetwork",
        "VirtualNetwork",
        "Allow",
    ),
    (65001, "Outbound", "*", "Internet", "Allow"),
    (65500, "Outbound", "*", "*", "Deny"),
];

fn private_space() -> AddrSet {
    AddrSet::from_cidrs(
        &["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"]
            .map(|s| s.parse::<Cidr>().expect("static")),
    )
}

/// Whether one address selector matches the peer. Service tags are modelled coarsely: the
/// model only needs them for the defaults, which perimeter's compiled NSGs never reach.
fn selector_matches(prefix: &str, addr: IpAddr) -> bool {
    match prefix {
        "*" | "Any" => true,
        "VirtualNetwork" => private_space().contains(addr),
        "Internet" => !private_space().contains(addr),
        "AzureLoadBalancer" => addr == WIRESERVER,
        "AzurePlatformIMDS" => addr == IMDS,
        "AzurePlatformDNS" => addr == WIRESERVER,
        p => p.parse::<Cidr>().is_ok_and(|c| c.contains(addr)),
    }
}

fn peer_matches(
    single: Option<&String>,
    many: &[String],
    asgs: &[crate::model::ResourceRef],
    world: &AzureWorld<'_>,
    packet: &Packet,
) -> bool {
    let addr = packet.peer.addr;
    single.is_some_and(|p| selector_matches(p, addr))
        || many.iter().any(|p| selector_matches(p, addr))
        // ARM ids are case-insensitive.
        || (packet.peer.is_node
            && asgs
                .iter()
                .any(|a| a.id.eq_ignore_ascii_case(world.node_asg)))
}

/// Whether the rule's near side can select the protected NIC. Addresses always can: with a
/// load balancer's floating IP (AKS's services) a packet reaches the node with the frontend's
/// address as its destination, not the NIC's, so a rule naming any address may decide the
/// node's packets (the model errs towards reporting). Application security groups select by
/// membership, which is known.
fn near_matches(
    single: Option<&String>,
    many: &[String],
    asgs: &[crate::model::ResourceRef],
    nic: Option<&NicIdentity>,
) -> bool {
    let Some(nic) = nic else {
        return true;
    };
    single.is_some()
        || !many.is_empty()
        || asgs
            .iter()
            .any(|a| nic.asgs.iter().any(|n| n.eq_ignore_ascii_case(&a.id)))
}

fn protocol_matches(p: &SecurityRuleProperties, proto: &PacketProtocol) -> bool {
    let ok = match p.protocol.as_str() {
        "*" => true,
        "Tcp" => matches!(proto, PacketProtocol::Tcp { .. }),
        "Udp" => matches!(proto, PacketProtocol::Udp { .. }),
        "Icmp" => matches!(
            proto,
            PacketProtocol::Icmp { .. } | PacketProtocol::Icmpv6 { .. }
        ),
        "Esp" => proto.number() == 50,
        "Ah" => proto.number() == 51,
        _ => false,
    };
    if !ok {
        return false;
    }
    let Some(port) = proto.port() else {
        return true;
    };
    let in_range = |r: &String| -> bool {
        if r == "*" {
            return true;
        }
        match r.split_once('-') {
            Some((a, b)) => {
                a.parse::<u16>().is_ok_and(|a| a <= port)
                    && b.parse::<u16>().is_ok_and(|b| port <= b)
            }
            None => r.parse::<u16>() == Ok(port),
        }
    };
    p.destination_port_range.as_ref().is_some_and(in_range)
        || p.destination_port_ranges.iter().any(in_range)
}

fn rule_matches(p: &SecurityRuleProperties, world: &AzureWorld<'_>, packet: &Packet) -> bool {
    let source = (
        &p.source_address_prefix,
        &p.source_address_prefixes,
        &p.source_application_security_groups,
    );
    let destination = (
        &p.destination_address_prefix,
        &p.destination_address_prefixes,
        &p.destination_application_security_groups,
    );
    let (far, near) = match packet.direction {
        Direction::Ingress => (source, destination),
        Direction::Egress => (destination, source),
    };
    protocol_matches(p, &packet.protocol)
        && peer_matches(far.0.as_ref(), far.1, far.2, world, packet)
        && near_matches(near.0.as_ref(), near.1, near.2, world.nic)
}

fn verdict(access: &str) -> Verdict {
    if access == "Allow" {
        Verdict::Allow
    } else {
        Verdict::Deny
    }
}

/// The user rule that decides `packet`: the first match in priority order of the packet's
/// direction (for platform addresses, only among rules naming their service tag); `None` when
/// the default rules (or, for platform traffic, nothing) decide.
pub fn winner<'a>(world: &AzureWorld<'a>, packet: &Packet) -> Option<&'a SecurityRule> {
    let dir = match packet.direction {
        Direction::Ingress => "Inbound",
        Direction::Egress => "Outbound",
    };
    let mut rules: Vec<&SecurityRule> = world
        .rules
        .iter()
        .filter(|r| r.properties.direction == dir)
        .collect();
    rules.sort_by_key(|r| r.properties.priority);
    let addr = packet.peer.addr;
    if addr == IMDS || addr == WIRESERVER {
        // Only rules naming a platform service tag see this traffic.
        let tag = if addr == IMDS {
            "AzurePlatformIMDS"
        } else {
            "AzurePlatformDNS"
        };
        let names_tag = |r: &&&SecurityRule| {
            let far = match packet.direction {
                Direction::Ingress => &r.properties.source_address_prefix,
                Direction::Egress => &r.properties.destination_address_prefix,
            };
            far.as_deref() == Some(tag)
        };
        return rules
            .iter()
            .filter(names_tag)
            .find(|r| rule_matches(&r.properties, world, packet))
            .copied();
    }
    rules
        .into_iter()
        .find(|r| rule_matches(&r.properties, world, packet))
}

/// Azure's decision for the first packet of a flow at a protected node.
pub fn decide(world: &AzureWorld<'_>, packet: &Packet) -> Verdict {
    if let Some(r) = winner(world, packet) {
        return verdict(&r.properties.access);
    }
    let addr = packet.peer.addr;
    if addr == IMDS || addr == WIRESERVER {
        return Verdict::Allow;
    }
    let dir = match packet.direction {
        Direction::Ingress => "Inbound",
        Direction::Egress => "Outbound",
    };
    for &(_, d, src, dst, access) in DEFAULTS {
        if d != dir {
            continue;
        }
        let far = if packet.direction == Direction::Ingress {
            src
        } else {
            dst
        };
        if selector_matches(far, addr) {
            return verdict(access);
        }
    }
    Verdict::Deny
}
