//! AWS as the transition checker sees it (core::transition): the owned security group's rules
//! and the owned network ACL's entries, and the writes apply makes to them, in apply's order.
//! Decisions come from `evaluate`. Both objects only ever allow (a group is a union; the NACL
//! perimeter writes holds allow entries before its `*` deny), so every decision is monotone in
//! the rules present — which is why adding before removing is safe, and what the checker
//! proves for each plan rather than assumes.

use std::net::IpAddr;

use perimeter_core::interval::IntervalSet;
use perimeter_core::transition::{MatchBox, Transition};
use perimeter_core::{AddrSet, Cidr, Direction, Packet, Verdict};

use crate::evaluate::{AwsWorld, decide};
use crate::model::{NaclEntry, NetworkAcl, SecurityGroup, SgPeer, SgRule};

/// What decides a node's packets, as far as perimeter writes it.
#[derive(Clone, Debug)]
pub struct AwsState {
    /// The owned security group (only its rules matter here).
    pub group: SecurityGroup,
    /// The owned NACL (only its entries matter here).
    pub acl: NetworkAcl,
    /// True when the node's subnet is associated with the owned NACL.
    pub associated: bool,
}

impl AwsState {
    /// A state of these rules and entries.
    pub fn new(rules: Vec<SgRule>, entries: Vec<NaclEntry>, associated: bool) -> Self {
        Self {
            group: SecurityGroup {
                group_name: String::new(),
                vpc_id: String::new(),
                description: String::new(),
                rules,
            },
            acl: NetworkAcl {
                vpc_id: String::new(),
                subnets: Vec::new(),
                entries,
            },
            associated,
        }
    }
}

/// One API write.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum AwsWrite {
    /// `AuthorizeSecurityGroup{Ingress,Egress}` with these rules, in one call.
    Authorize(Vec<SgRule>),
    /// `RevokeSecurityGroup{Ingress,Egress}` of these rules, in one call.
    Revoke(Vec<SgRule>),
    /// `CreateNetworkAclEntry`.
    CreateEntry(NaclEntry),
    /// `DeleteNetworkAclEntry`.
    DeleteEntry(NaclEntry),
    /// `ReplaceNetworkAclAssociation` of the node subnets.
    Associate,
}

/// The checker's view of AWS.
pub struct AwsTransition<'a> {
    /// The NACL target's `node_cidrs` (empty: nodes may have any address).
    pub node_cidrs: &'a [Cidr],
}

pub(crate) const UNFILTERED: [&str; 6] = [
    "169.254.169.254/32",
    "169.254.169.253/32",
    "169.254.169.123/32",
    "fd00:ec2::254/128",
    "fd00:ec2::253/128",
    "fd00:ec2::123/128",
];

fn protocol_number(p: &str) -> Option<Option<u8>> {
    match p {
        "-1" => Some(None),
        "tcp" => Some(Some(6)),
        "udp" => Some(Some(17)),
        "icmp" => Some(Some(1)),
        "icmpv6" => Some(Some(58)),
        n => n.parse().ok().map(Some),
    }
}

fn ports(protocol: Option<u8>, from: i32, to: i32) -> IntervalSet<u16> {
    let as_u8 = |v: i32| u8::try_from(v).ok();
    match protocol {
        Some(6 | 17) => match (u16::try_from(from), u16::try_from(to)) {
            (Ok(a), Ok(b)) => IntervalSet::range(a, b),
            _ => IntervalSet::full(),
        },
        Some(1 | 58) => MatchBox::icmp_types(as_u8(from), as_u8(to)),
        _ => IntervalSet::full(),
    }
}

pub(crate) fn rule_box(r: &SgRule) -> Option<MatchBox> {
    let protocol = protocol_number(&r.ip_protocol)?;
    let (addrs, nodes) = match &r.peer {
        SgPeer::CidrIpv4(c) | SgPeer::CidrIpv6(c) => (AddrSet::from_cidrs([c]), false),
        // A group reference matches the nodes when they carry the group, whatever their address.
        SgPeer::OwnGroup | SgPeer::ReferencedGroup(_) => (AddrSet::empty(), true),
        // The evaluator gives these no members: they match nothing here.
        SgPeer::PrefixList(_) => return None,
    };
    Some(MatchBox {
        direction: r.direction,
        protocol,
        ports: ports(protocol, r.from_port, r.to_port),
        addrs,
        nodes,
    })
}

/// An entry decides packets of its direction, and — being stateless — the replies of flows
/// the other way, whatever their port.
pub(crate) fn entry_boxes(e: &NaclEntry) -> Vec<MatchBox> {
    let Some(protocol) = protocol_number(&e.protocol) else {
        return Vec::new();
    };
    let (own, other) = if e.egress {
        (Direction::Egress, Direction::Ingress)
    } else {
        (Direction::Ingress, Direction::Egress)
    };
    let addrs = AddrSet::from_cidrs([&e.cidr]);
    let own_ports = match (e.port_range, e.icmp_type_code) {
        (Some((a, b)), _) if matches!(protocol, Some(6 | 17)) => IntervalSet::range(a, b),
        (_, Some((t, c))) if matches!(protocol, Some(1 | 58)) => ports(protocol, t, c),
        _ => IntervalSet::full(),
    };
    vec![
        MatchBox {
            direction: own,
            protocol,
            ports: own_ports,
            addrs: addrs.clone(),
            nodes: false,
        },
        MatchBox::any_port(other, protocol, addrs, false),
    ]
}

impl Transition for AwsTransition<'_> {
    type State = AwsState;
    type Write = AwsWrite;

    fn apply(&self, state: &mut AwsState, write: &AwsWrite) {
        match write {
            AwsWrite::Authorize(rules) => state.group.rules.extend(rules.iter().cloned()),
            AwsWrite::Revoke(rules) => state.group.rules.retain(|r| !rules.contains(r)),
            AwsWrite::CreateEntry(e) => state.acl.entries.push(e.clone()),
            AwsWrite::DeleteEntry(e) => state
                .acl
                .entries
                .retain(|x| (x.egress, x.rule_number) != (e.egress, e.rule_number)),
            AwsWrite::Associate => state.associated = true,
        }
    }

    fn decide(&self, state: &AwsState, packet: &Packet) -> Verdict {
        decide(
            &AwsWorld {
                security_group: &state.group,
                other_groups: &[],
                node_groups: &[],
                network_acl: state.associated.then_some(&state.acl),
                metadata_options: None,
            },
            packet,
        )
    }

    fn footprint(&self, state: &AwsState, write: &AwsWrite) -> Vec<MatchBox> {
        match write {
            AwsWrite::Authorize(rules) | AwsWrite::Revoke(rules) => {
                rules.iter().filter_map(rule_box).collect()
            }
            AwsWrite::CreateEntry(e) => entry_boxes(e),
            AwsWrite::DeleteEntry(e) => state
                .acl
                .entries
                .iter()
                .filter(|x| (x.egress, x.rule_number) == (e.egress, e.rule_number))
                .flat_map(entry_boxes)
                .collect(),
            // Association changes the decision of everything.
            AwsWrite::Associate => Direction::BOTH
                .iter()
                .map(|&d| MatchBox::any_port(d, None, AddrSet::everything(), true))
                .collect(),
        }
    }

    fn boxes(&self, state: &AwsState) -> Vec<MatchBox> {
        let mut out: Vec<MatchBox> = state.group.rules.iter().filter_map(rule_box).collect();
        out.extend(state.acl.entries.iter().flat_map(entry_boxes));
        let services: Vec<Cidr> = UNFILTERED.iter().filter_map(|c| c.parse().ok()).collect();
        for d in Direction::BOTH {
            out.push(MatchBox::any_port(
                d,
                None,
                AddrSet::from_cidrs(&services),
                false,
            ));
        }
        out
    }

    fn describe(&self, write: &AwsWrite) -> String {
        let dir = |rules: &[SgRule]| rules.first().map_or("", |r| r.direction.as_str());
        match write {
            AwsWrite::Authorize(rules) => {
                format!("authorize {} {} rule(s)", rules.len(), dir(rules))
            }
            AwsWrite::Revoke(rules) => format!("revoke {} {} rule(s)", rules.len(), dir(rules)),
            AwsWrite::CreateEntry(e) => format!("create NACL entry {}", entry_line(e)),
            AwsWrite::DeleteEntry(e) => format!("delete NACL entry {}", entry_line(e)),
            AwsWrite::Associate => "associate the node subnets with the owned NACL".into(),
        }
    }

    fn node_addrs(&self) -> AddrSet {
        if self.node_cidrs.is_empty() {
            AddrSet::everything()
        } else {
            AddrSet::from_cidrs(self.node_cidrs)
        }
    }
}

fn entry_line(e: &NaclEntry) -> String {
    let dir = if e.egress { "outbound" } else { "inbound" };
    format!("{dir} #{} ({} {})", e.rule_number, e.protocol, e.cidr)
}

/// The address family of an entry, for the per-family quota.
pub(crate) fn is_v4(e: &NaclEntry) -> bool {
    matches!(e.cidr.addr(), IpAddr::V4(_))
}
