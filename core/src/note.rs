//! Notes: everything a compiler could not say exactly.
//!
//! Each cloud lacks something: AWS security groups cannot deny, GCP firewall rules cannot
//! match ICMP types, Azure has no IP-in-IP protocol, and no packet filter on AWS or GCP sees
//! traffic to the metadata service. A compiler never drops such a difference silently: it
//! emits a [`Note`] with a stable [`NoteCode`] and, where the difference is about packets, a
//! [`NoteScope`] that says exactly which packets may be decided differently from the policy.
//! The equivalence property test holds compilers to that: a packet decided differently must be
//! covered by some note's scope.

use serde::{Deserialize, Serialize};

use crate::addr::AddrSet;
use crate::diag::Span;
use crate::intent::{Direction, Packet, Peers, Service};

/// Stable note codes. Documented in docs/policy-reference.md; never renamed.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NoteCode {
    /// The cloud cannot enforce this part of the policy at all with packet rules.
    Unenforceable,
    /// The cloud allows more than the policy says.
    Widened,
    /// The cloud allows less than the policy says.
    Narrowed,
    /// `self` or another symbol is expressed by addresses, which may include other machines.
    Approximated,
    /// The compiled control has an effect beyond the policy (e.g. it breaks managed identity).
    SideEffect,
    /// Something the user should know that does not change any decision.
    Info,
}

impl NoteCode {
    /// The stable spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            NoteCode::Unenforceable => "unenforceable",
            NoteCode::Widened => "widened",
            NoteCode::Narrowed => "narrowed",
            NoteCode::Approximated => "approximated",
            NoteCode::SideEffect => "side-effect",
            NoteCode::Info => "info",
        }
    }
}

/// Which packets a note is about.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct NoteScope {
    /// Direction of the packets.
    pub direction: Direction,
    /// Protocols and ports (`[Any]` for all).
    pub services: Vec<Service>,
    /// Peers.
    pub peers: Peers,
}

impl NoteScope {
    /// True when the packet is inside the scope.
    pub fn covers(&self, packet: &Packet) -> bool {
        self.direction == packet.direction
            && self.peers.matches(&packet.peer)
            && self.services.iter().any(|s| s.matches(&packet.protocol))
    }
}

/// The JSON form of a scope: peers as CIDRs, `self` for the nodes.
#[derive(Serialize, Deserialize)]
struct ScopeForm {
    direction: Direction,
    services: Vec<Service>,
    peers: Vec<crate::addr::Cidr>,
    #[serde(rename = "self")]
    nodes: bool,
}

impl Serialize for NoteScope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ScopeForm {
            direction: self.direction,
            services: self.services.clone(),
            peers: self.peers.addrs.to_cidrs(),
            nodes: self.peers.nodes,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for NoteScope {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let f = ScopeForm::deserialize(d)?;
        Ok(NoteScope {
            direction: f.direction,
            services: f.services,
            peers: Peers {
                addrs: AddrSet::from_cidrs(&f.peers),
                nodes: f.nodes,
            },
        })
    }
}

/// One thing a compiler could not express exactly, or wants said out loud. Plans carry notes
/// in this form and read them back (docs/policy-reference.md, Notes).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Note {
    /// Stable code.
    pub code: NoteCode,
    /// The policy rule it concerns, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// What happens and why, in a sentence or two.
    pub message: String,
    /// The packets affected; absent when the note is not about packet decisions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<NoteScope>,
    /// Where in the policy.
    #[serde(skip)]
    pub span: Option<Span>,
}

impl Note {
    /// A note with no packet scope.
    pub fn new(code: NoteCode, message: impl Into<String>) -> Self {
        Self {
            code,
            rule: None,
            message: message.into(),
            scope: None,
            span: None,
        }
    }

    /// Attaches the rule it concerns.
    #[must_use]
    pub fn for_rule(mut self, name: &str, span: Span) -> Self {
        self.rule = Some(name.to_string());
        self.span = Some(span);
        self
    }

    /// Attaches the affected packets.
    #[must_use]
    pub fn scoped(mut self, direction: Direction, services: Vec<Service>, peers: Peers) -> Self {
        self.scope = Some(NoteScope {
            direction,
            services,
            peers,
        });
        self
    }

    /// The note as one indented line: `  code [rule]: message`.
    pub fn line(&self) -> String {
        let rule = self
            .rule
            .as_ref()
            .map(|r| format!(" [{r}]"))
            .unwrap_or_default();
        format!("  {}{rule}: {}", self.code.as_str(), self.message)
    }

    /// True when this note's scope covers the packet.
    pub fn covers(&self, packet: &Packet) -> bool {
        self.scope.as_ref().is_some_and(|s| s.covers(packet))
    }
}

/// Peers given only by addresses.
pub fn addr_peers(addrs: AddrSet) -> Peers {
    Peers {
        addrs,
        nodes: false,
    }
}

/// How a cloud treats traffic to or from one of its platform addresses (metadata service,
/// DNS, time) regardless of any packet rule.
#[derive(Clone, Copy, Debug)]
pub struct PlatformAddress {
    /// The address.
    pub addr: std::net::IpAddr,
    /// What it is, for the message.
    pub what: &'static str,
    /// The cloud's fixed decision for packets from the nodes to it.
    pub egress: crate::intent::Verdict,
    /// The cloud's fixed decision for packets from it to the nodes.
    pub ingress: crate::intent::Verdict,
}

/// The policy's decision for every packet between the nodes and `addr` in `direction`:
/// `Some` when all packets get the same verdict, `None` when it depends on protocol or port.
pub fn uniform_policy_verdict(
    intent: &crate::intent::Intent,
    direction: Direction,
    addr: std::net::IpAddr,
) -> Option<crate::intent::Verdict> {
    use crate::intent::{MetadataMode, Verdict};
    if intent.metadata == MetadataMode::DenyAll
        && direction == Direction::Egress
        && addr == std::net::IpAddr::V4(crate::intent::METADATA_V4)
    {
        return Some(Verdict::Deny);
    }
    // Only rules naming this address can decide it; the platform address is never a node.
    let naming: Vec<crate::intent::Rule> = intent
        .rules(direction)
        .iter()
        .filter(|r| r.peers.addrs.contains(addr))
        .cloned()
        .collect();
    let eff = crate::effective::effective(&naming, intent.default_verdict(direction));
    let space = |c: crate::effective::Class| c.family_space().contains(addr);
    let relevant: Vec<bool> = eff
        .cells
        .iter()
        .filter(|c| space(c.class))
        .map(|c| c.addrs.contains(addr))
        .collect();
    if relevant.iter().all(|a| *a) {
        Some(Verdict::Allow)
    } else if relevant.iter().all(|a| !*a) {
        Some(Verdict::Deny)
    } else {
        None
    }
}

/// Notes for platform addresses where the cloud's fixed treatment differs from the policy:
/// at most one per direction and fixed verdict, listing every such address.
pub fn platform_notes(
    intent: &crate::intent::Intent,
    cloud: &str,
    addresses: &[PlatformAddress],
) -> Vec<Note> {
    use crate::intent::Verdict;
    let mut notes = Vec::new();
    for direction in Direction::BOTH {
        for fixed in [Verdict::Allow, Verdict::Deny] {
            let differing: Vec<&PlatformAddress> = addresses
                .iter()
                .filter(|pa| {
                    let cloud_verdict = match direction {
                        Direction::Ingress => pa.ingress,
                        Direction::Egress => pa.egress,
                    };
                    cloud_verdict == fixed
                        && uniform_policy_verdict(intent, direction, pa.addr) != Some(fixed)
                })
                .collect();
            if differing.is_empty() {
                continue;
            }
            let list: Vec<String> = differing
                .iter()
                .map(|pa| format!("{} {}", pa.what, pa.addr))
                .collect();
            let (verb, way) = match (fixed, direction) {
                (Verdict::Allow, Direction::Ingress) => ("always allows", "from"),
                (Verdict::Allow, Direction::Egress) => ("always allows", "to"),
                (Verdict::Deny, Direction::Ingress) => ("always blocks", "from"),
                (Verdict::Deny, Direction::Egress) => ("always blocks", "to"),
            };
            let cidrs: Vec<crate::addr::Cidr> = differing
                .iter()
                .map(|pa| crate::addr::Cidr::host(pa.addr))
                .collect();
            notes.push(
                Note::new(
                    NoteCode::Unenforceable,
                    format!(
                        "{cloud} {verb} {} traffic {way} its platform services ({}); no packet rule applies to it, so the policy's decisions for these addresses are not enforced",
                        direction.as_str(),
                        list.join("; ")
                    ),
                )
                .scoped(direction, vec![Service::Any], addr_peers(AddrSet::from_cidrs(&cidrs))),
            );
        }
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intent::{IcmpMatch, PortRange};

    #[test]
    fn a_note_reads_back_as_it_was_written() {
        let peers = Peers {
            addrs: AddrSet::from_cidrs(&[
                "10.0.0.0/8".parse().unwrap(),
                "fd00::/8".parse().unwrap(),
            ]),
            nodes: true,
        };
        let services = vec![
            Service::Tcp {
                ports: PortRange {
                    first: 22,
                    last: 22,
                },
            },
            Service::Icmp {
                icmp: IcmpMatch {
                    type_: Some(8),
                    code: None,
                },
            },
            Service::Any,
        ];
        let note = Note::new(NoteCode::Widened, "every ICMP type").scoped(
            Direction::Ingress,
            services,
            peers,
        );
        let note = Note {
            rule: Some("cilium".into()),
            ..note
        };
        let json = serde_json::to_string(&note).unwrap();
        let back: Note = serde_json::from_str(&json).unwrap();
        assert_eq!(back, note);
        let plain = Note::new(NoteCode::Info, "no scope");
        let back: Note = serde_json::from_str(&serde_json::to_string(&plain).unwrap()).unwrap();
        assert_eq!(back, plain);
        assert!(serde_json::from_str::<Note>(r#"{"code": "nonsense", "message": ""}"#).is_err());
    }
}
