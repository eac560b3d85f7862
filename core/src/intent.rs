//! The neutral, resolved model of a node perimeter and its packet semantics.
//!
//! An [`Intent`] is what a policy means once every name is resolved: per direction an ordered
//! list of [`Rule`]s, first match wins, then the direction's default. [`Intent::decide`] is the
//! reference semantics every cloud compiler is checked against.

use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};

use crate::addr::AddrSet;
use crate::diag::Span;
use crate::target::Targets;

/// Which way a packet travels, seen from the protected nodes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Towards the nodes.
    Ingress,
    /// From the nodes.
    Egress,
}

impl Direction {
    /// Both directions, ingress first.
    pub const BOTH: [Direction; 2] = [Direction::Ingress, Direction::Egress];

    /// `ingress` or `egress`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

/// What a rule or a default does with the packets it matches.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Let the packet through.
    Allow,
    /// Drop the packet.
    Deny,
}

impl Verdict {
    /// `allow` or `deny`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
        }
    }
}

/// An inclusive range of ports.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortRange {
    /// First port.
    pub first: u16,
    /// Last port (inclusive).
    pub last: u16,
}

impl PortRange {
    /// Every port, 0-65535.
    pub const ALL: PortRange = PortRange {
        first: 0,
        last: u16::MAX,
    };

    /// True when the range is 0-65535.
    pub fn is_all(&self) -> bool {
        *self == Self::ALL
    }

    /// True when `port` is in the range.
    pub fn contains(&self, port: u16) -> bool {
        self.first <= port && port <= self.last
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// ICMP type and code selection. A code is only meaningful with a type.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord, Serialize, Deserialize)]
pub struct IcmpMatch {
    /// ICMP type, or every type.
    #[serde(rename = "type")]
    pub type_: Option<u8>,
    /// ICMP code, or every code.
    pub code: Option<u8>,
}

impl IcmpMatch {
    /// Every type and code.
    pub const ALL: IcmpMatch = IcmpMatch {
        type_: None,
        code: None,
    };

    /// The (type, code) pairs encoded as `type * 256 + code`, as an inclusive range. Encoding the
    /// two bytes into one number lets ICMP share the interval machinery of ports.
    pub fn encoded(&self) -> (u16, u16) {
        match (self.type_, self.code) {
            (None, _) => (0, u16::MAX),
            (Some(t), None) => (u16::from(t) << 8, (u16::from(t) << 8) | 0xff),
            (Some(t), Some(c)) => {
                let v = (u16::from(t) << 8) | u16::from(c);
                (v, v)
            }
        }
    }

    /// True when `(type_, code)` is selected.
    pub fn matches(&self, type_: u8, code: u8) -> bool {
        self.type_.is_none_or(|t| t == type_) && self.code.is_none_or(|c| c == code)
    }
}

/// One entry of a rule's `services`, resolved.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "protocol", rename_all = "lowercase")]
pub enum Service {
    /// Every protocol and port.
    Any,
    /// TCP to the given destination ports.
    Tcp {
        /// Destination ports.
        ports: PortRange,
    },
    /// UDP to the given destination ports.
    Udp {
        /// Destination ports.
        ports: PortRange,
    },
    /// ICMP for IPv4.
    Icmp {
        /// Type and code.
        #[serde(flatten)]
        icmp: IcmpMatch,
    },
    /// ICMPv6.
    Icmpv6 {
        /// Type and code.
        #[serde(flatten)]
        icmp: IcmpMatch,
    },
    /// Another IP protocol, by number (never 1, 6, 17 or 58, which have their own variants).
    Protocol {
        /// IANA protocol number.
        number: u8,
    },
}

impl Service {
    /// True when this service matches the packet's protocol and port.
    pub fn matches(&self, proto: &PacketProtocol) -> bool {
        match (self, proto) {
            (Service::Any, _) => true,
            (Service::Tcp { ports }, PacketProtocol::Tcp { port }) => ports.contains(*port),
            (Service::Udp { ports }, PacketProtocol::Udp { port }) => ports.contains(*port),
            (Service::Icmp { icmp }, PacketProtocol::Icmp { type_, code }) => {
                icmp.matches(*type_, *code)
            }
            (Service::Icmpv6 { icmp }, PacketProtocol::Icmpv6 { type_, code }) => {
                icmp.matches(*type_, *code)
            }
            (Service::Protocol { number }, PacketProtocol::Other { number: n }) => number == n,
            _ => false,
        }
    }
}

/// IANA protocol numbers the model treats specially.
pub mod proto {
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// IP-in-IP encapsulation (Calico's default overlay).
    pub const IPIP: u8 = 4;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// GRE.
    pub const GRE: u8 = 47;
    /// IPsec ESP.
    pub const ESP: u8 = 50;
    /// IPsec AH.
    pub const AH: u8 = 51;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
    /// SCTP.
    pub const SCTP: u8 = 132;
}

/// The addresses a rule matches, plus whether it matches the protected nodes themselves.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Default)]
pub struct Peers {
    /// Addresses (networks, literal CIDRs, `internet`).
    pub addrs: AddrSet,
    /// The built-in `self`: the protected nodes, by identity rather than by address.
    pub nodes: bool,
}

impl Peers {
    /// True when the rule's peers include this peer.
    pub fn matches(&self, peer: &Peer) -> bool {
        (self.nodes && peer.is_node) || self.addrs.contains(peer.addr)
    }
}

/// One resolved rule.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Rule {
    /// The user's rule name (unique per direction).
    pub name: String,
    /// Allow or deny.
    pub action: Verdict,
    /// Who is on the other end.
    pub peers: Peers,
    /// What traffic. Never empty; `[Any]` when the rule covers everything.
    pub services: Vec<Service>,
    /// Where the rule is in the policy file.
    pub span: Span,
}

impl Rule {
    /// True when this rule matches the packet.
    pub fn matches(&self, packet: &Packet) -> bool {
        self.peers.matches(&packet.peer)
            && self.services.iter().any(|s| s.matches(&packet.protocol))
    }
}

/// What perimeter does about the instance metadata service (169.254.169.254).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MetadataMode {
    /// Nodes may use it; pods may not (AWS: IMDSv2 required with hop limit 1).
    DenyPods,
    /// Nobody may use it (AWS: endpoint disabled; Azure: deny to AzurePlatformIMDS).
    DenyAll,
    /// perimeter leaves metadata access alone.
    Allow,
}

impl MetadataMode {
    /// The policy spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            MetadataMode::DenyPods => "deny-pods",
            MetadataMode::DenyAll => "deny-all",
            MetadataMode::Allow => "allow",
        }
    }
}

/// The address of the instance metadata service on every cloud.
pub const METADATA_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);

/// A node perimeter with every name resolved.
#[derive(Clone, Debug)]
pub struct Intent {
    /// The policy name; prefixes every cloud object perimeter owns.
    pub name: String,
    /// `private: true`: egress is denied unless a rule allows it, and no ingress from public
    /// addresses is allowed.
    pub private: bool,
    /// Metadata control.
    pub metadata: MetadataMode,
    /// Where `metadata:` is in the file (for diagnostics that concern it).
    pub metadata_span: Span,
    /// Ordered ingress rules.
    pub ingress: Vec<Rule>,
    /// Ordered egress rules.
    pub egress: Vec<Rule>,
    /// Per-cloud targets.
    pub targets: Targets,
    /// Warnings about the policy (e.g. shadowed rules); it is usable regardless.
    pub warnings: Vec<crate::diag::Diagnostic>,
}

impl Intent {
    /// The rules of one direction, in order.
    pub fn rules(&self, direction: Direction) -> &[Rule] {
        match direction {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }

    /// What happens to packets no rule matches. Ingress is always default-deny; egress is
    /// default-deny for a private perimeter and default-allow otherwise.
    pub fn default_verdict(&self, direction: Direction) -> Verdict {
        match direction {
            Direction::Ingress => Verdict::Deny,
            Direction::Egress if self.private => Verdict::Deny,
            Direction::Egress => Verdict::Allow,
        }
    }

    /// The reference decision for a packet: metadata control first (it is not a packet rule on
    /// most clouds, but it is part of what the policy means), then the first matching rule, then
    /// the default.
    pub fn decide(&self, packet: &Packet) -> Verdict {
        if self.metadata == MetadataMode::DenyAll
            && packet.direction == Direction::Egress
            && packet.peer.addr == IpAddr::V4(METADATA_V4)
        {
            return Verdict::Deny;
        }
        self.first_match(packet).map_or_else(
            || self.default_verdict(packet.direction),
            |rule| rule.action,
        )
    }

    /// Where the policy rule is that a native rule named `<policy>-<mark>-<rule>…` came from
    /// (`mark` is the direction's mark, e.g. `i`/`e` or `in`/`out`), so a diagnostic about the
    /// native rule points at it; `None` for rules no policy rule made (defaults, metadata).
    pub fn rule_span_for_name(&self, native: &str, ingress: &str, egress: &str) -> Option<Span> {
        Direction::BOTH
            .into_iter()
            .flat_map(|d| {
                let mark = if d == Direction::Ingress {
                    ingress
                } else {
                    egress
                };
                let prefix = format!("{}-{mark}-", self.name);
                self.rules(d)
                    .iter()
                    .filter(move |r| {
                        native.strip_prefix(&prefix).is_some_and(|rest| {
                            rest == r.name || rest.starts_with(&format!("{}-", r.name))
                        })
                    })
                    .collect::<Vec<_>>()
            })
            .max_by_key(|r| r.name.len())
            .map(|r| r.span)
    }

    /// The first rule that matches the packet, if any.
    pub fn first_match(&self, packet: &Packet) -> Option<&Rule> {
        self.rules(packet.direction)
            .iter()
            .find(|rule| rule.matches(packet))
    }
}

/// The protocol part of a [`Packet`].
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, Serialize)]
#[serde(tag = "protocol", rename_all = "lowercase")]
pub enum PacketProtocol {
    /// TCP to a destination port.
    Tcp {
        /// Destination port.
        port: u16,
    },
    /// UDP to a destination port.
    Udp {
        /// Destination port.
        port: u16,
    },
    /// ICMP (IPv4 peers only).
    Icmp {
        /// ICMP type.
        #[serde(rename = "type")]
        type_: u8,
        /// ICMP code.
        code: u8,
    },
    /// ICMPv6 (IPv6 peers only).
    Icmpv6 {
        /// ICMPv6 type.
        #[serde(rename = "type")]
        type_: u8,
        /// ICMPv6 code.
        code: u8,
    },
    /// Any other IP protocol.
    Other {
        /// IANA protocol number (not 1, 6, 17 or 58).
        number: u8,
    },
}

impl PacketProtocol {
    /// The IANA protocol number.
    pub fn number(&self) -> u8 {
        match self {
            PacketProtocol::Tcp { .. } => proto::TCP,
            PacketProtocol::Udp { .. } => proto::UDP,
            PacketProtocol::Icmp { .. } => proto::ICMP,
            PacketProtocol::Icmpv6 { .. } => proto::ICMPV6,
            PacketProtocol::Other { number } => *number,
        }
    }

    /// Destination port for TCP and UDP.
    pub fn port(&self) -> Option<u16> {
        match self {
            PacketProtocol::Tcp { port } | PacketProtocol::Udp { port } => Some(*port),
            _ => None,
        }
    }
}

/// The other end of a packet.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, Serialize)]
pub struct Peer {
    /// Its address.
    pub addr: IpAddr,
    /// True when the peer is one of the protected nodes (what `self` means).
    pub is_node: bool,
}

/// A packet seen at a protected node: the first packet of a flow. Clouds that track
/// connections let the replies through; stateless filters are checked for the reply as well.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, Serialize)]
pub struct Packet {
    /// Towards or from the node.
    pub direction: Direction,
    /// Protocol and port.
    #[serde(flatten)]
    pub protocol: PacketProtocol,
    /// Who is on the other end.
    pub peer: Peer,
}
