//! The nodes' effective perimeter in one GCP network (core::violation): the VPC rules
//! perimeter plans, and every other rule of the network that applies to the nodes.
//!
//! Why the foreign rules' boxes are the only regions: GCP picks one rule per packet (the
//! lowest priority number that applies and matches, a deny first at a tie). A packet no foreign
//! rule matches is decided by the same owned rule, or the same implied rule, with or without
//! them. Firewall policies add the boxes of their `allow` and `deny` rules: outside them every
//! policy passes the packet on (`goto_next`, or no match), so the VPC rules decide as before.

use perimeter_core::plan::fingerprint;
use perimeter_core::transition::{MatchBox, Transition};
use perimeter_core::violation::{Culprit, Estate};
use perimeter_core::{AddrSet, Cidr, Packet, Verdict};

use crate::evaluate::{Decider, GcpWorld, PolicyPath, decide, decide_path, path_decider};
use crate::firewall_policy::{FirewallPolicy, PolicyKind, PolicyRule};
use crate::model::{Firewall, ProtocolPorts};
use crate::render_plan::rule_line;
use crate::transition::GcpTransition;

/// One network as the nodes experience it.
pub(crate) struct GcpEstate<'a> {
    /// The rules perimeter plans (the policy).
    pub(crate) desired: &'a [Firewall],
    /// Those and every foreign rule of the network.
    pub(crate) all: Vec<Firewall>,
    /// The foreign rules.
    pub(crate) foreign: &'a [Firewall],
    /// The nodes' tags.
    pub(crate) node_tags: &'a [String],
    /// The nodes' service accounts (empty: not declared).
    pub(crate) node_service_accounts: &'a [String],
    /// The nodes' ranges (empty: any address).
    pub(crate) node_ranges: &'a [Cidr],
    /// Firewall policies evaluated before the VPC rules.
    pub(crate) before: Vec<&'a FirewallPolicy>,
    /// Firewall policies evaluated after them.
    pub(crate) after: Vec<&'a FirewallPolicy>,
}

impl<'a> GcpEstate<'a> {
    pub(crate) fn new(
        desired: &'a [Firewall],
        foreign: &'a [Firewall],
        node_tags: &'a [String],
        node_service_accounts: &'a [String],
        node_ranges: &'a [Cidr],
    ) -> Self {
        let all = desired.iter().chain(foreign).cloned().collect();
        Self {
            desired,
            all,
            foreign,
            node_tags,
            node_service_accounts,
            node_ranges,
            before: Vec::new(),
            after: Vec::new(),
        }
    }

    /// With the network's firewall policies, in GCP's order: hierarchical ones first, the
    /// network's before or after the VPC rules.
    pub(crate) fn with_policies(mut self, policies: &'a [FirewallPolicy], first: bool) -> Self {
        for p in policies {
            match p.kind {
                PolicyKind::Hierarchy => self.before.push(p),
                PolicyKind::Network | PolicyKind::NetworkRegional if first => self.before.push(p),
                PolicyKind::Network | PolicyKind::NetworkRegional => self.after.push(p),
            }
        }
        // Hierarchical policies, then the global network policy, then the regional one, on
        // either side of the VPC rules (stable: hierarchical ones stay top down).
        self.before.sort_by_key(|p| p.kind.rank());
        self.after.sort_by_key(|p| p.kind.rank());
        self
    }

    fn path(&self) -> PolicyPath<'_> {
        PolicyPath {
            before: &self.before,
            after: &self.after,
        }
    }

    /// A policy rule's match as a VPC rule, for its boxes (cuts only: a wider box is safe).
    fn as_firewall(&self, r: &PolicyRule) -> Firewall {
        let any = || vec!["0.0.0.0/0".to_string(), "::/0".to_string()];
        let layer4 = if r.layer4.is_empty() {
            vec![ProtocolPorts {
                ip_protocol: "all".into(),
                ports: Vec::new(),
            }]
        } else {
            r.layer4.clone()
        };
        let ingress = r.direction == "INGRESS";
        let sources = if r.src_ip_ranges.is_empty() && r.src_secure_tags.is_empty() {
            any()
        } else {
            r.src_ip_ranges.clone()
        };
        Firewall {
            name: String::new(),
            description: String::new(),
            network: String::new(),
            priority: 0,
            direction: r.direction.clone(),
            source_ranges: if ingress { sources } else { Vec::new() },
            source_tags: if ingress && !r.src_secure_tags.is_empty() {
                self.node_tags.to_vec()
            } else {
                Vec::new()
            },
            destination_ranges: if ingress || !r.dest_ip_ranges.is_empty() {
                r.dest_ip_ranges.clone()
            } else {
                any()
            },
            target_tags: Vec::new(),
            allowed: layer4,
            denied: Vec::new(),
            disabled: r.disabled,
            source_service_accounts: Vec::new(),
            target_service_accounts: r.target_service_accounts.clone(),
        }
    }

    fn policy_boxes(&self, deciding_only: bool) -> Vec<MatchBox> {
        let world = self.world();
        self.before
            .iter()
            .chain(&self.after)
            .flat_map(|p| &p.rules)
            .filter(|r| !deciding_only || matches!(r.action.as_str(), "allow" | "deny"))
            .flat_map(|r| world.boxes_of(&self.as_firewall(r)))
            .collect()
    }

    fn world(&self) -> GcpTransition<'a> {
        GcpTransition {
            node_tags: self.node_tags,
            node_service_accounts: self.node_service_accounts,
            node_ranges: self.node_ranges,
        }
    }
}

/// A foreign rule's identity by content: its name and a digest of everything that decides
/// packets (not its description), so a broadened rule is reported again.
fn content_key(f: &Firewall) -> String {
    let decides = Firewall {
        description: String::new(),
        ..f.clone()
    };
    let digest = fingerprint(&decides).unwrap_or_default();
    format!("{}/{}", f.name, &digest[..digest.len().min(12)])
}

impl Estate for GcpEstate<'_> {
    fn policy(&self, packet: &Packet) -> Verdict {
        decide(
            &GcpWorld {
                firewalls: self.desired,
                node_tags: self.node_tags,
                node_service_accounts: self.node_service_accounts,
            },
            packet,
        )
    }

    fn effective(&self, packet: &Packet) -> Verdict {
        decide_path(
            &GcpWorld {
                firewalls: &self.all,
                node_tags: self.node_tags,
                node_service_accounts: self.node_service_accounts,
            },
            &self.path(),
            packet,
        )
    }

    fn culprit(&self, packet: &Packet) -> Culprit {
        let world = GcpWorld {
            firewalls: &self.all,
            node_tags: self.node_tags,
            node_service_accounts: self.node_service_accounts,
        };
        match path_decider(&world, &self.path(), packet) {
            Decider::Rule(f) => Culprit {
                object: format!("firewall rule {} (not managed by perimeter)", f.name),
                rule: rule_line(f),
                key: content_key(f),
            },
            Decider::Policy(p, r) => {
                let digest = fingerprint(r).unwrap_or_default();
                Culprit {
                    object: format!(
                        "{} firewall policy {} rule {}",
                        match p.kind {
                            PolicyKind::Hierarchy => "hierarchical",
                            PolicyKind::Network => "network",
                            PolicyKind::NetworkRegional => "regional network",
                        },
                        p.label,
                        r.priority
                    ),
                    rule: policy_rule_line(r),
                    key: format!(
                        "policy/{}/{}/{}",
                        p.name,
                        r.priority,
                        &digest[..digest.len().min(12)]
                    ),
                }
            }
            // Unreachable when only foreign rules differ; said rather than hidden.
            Decider::Implied => Culprit {
                object: "the network's implied rules".into(),
                rule: "decide".into(),
                key: "implied".into(),
            },
        }
    }

    fn boxes(&self) -> Vec<MatchBox> {
        let world = self.world();
        let mut out: Vec<MatchBox> = self.all.iter().flat_map(|f| world.boxes_of(f)).collect();
        out.extend(self.policy_boxes(false));
        out
    }

    fn regions(&self) -> Vec<MatchBox> {
        let world = self.world();
        let mut out: Vec<MatchBox> = self
            .foreign
            .iter()
            .flat_map(|f| world.boxes_of(f))
            .collect();
        out.extend(self.policy_boxes(true));
        out
    }

    fn node_addrs(&self) -> AddrSet {
        self.world().node_addrs()
    }

    fn unfiltered(&self) -> AddrSet {
        AddrSet::from_cidrs(&["169.254.169.254/32".parse::<Cidr>().expect("a CIDR")])
    }
}

/// One policy rule for people: `allows ingress tcp:22 from 0.0.0.0/0`.
fn policy_rule_line(r: &PolicyRule) -> String {
    let verb = match r.action.as_str() {
        "allow" => "allows",
        "deny" => "denies",
        other => other,
    };
    let what: Vec<String> = r
        .layer4
        .iter()
        .map(|pp| {
            if pp.ports.is_empty() {
                pp.ip_protocol.clone()
            } else {
                format!("{}:{}", pp.ip_protocol, pp.ports.join(","))
            }
        })
        .collect();
    let what = if what.is_empty() {
        "all".to_string()
    } else {
        what.join(" ")
    };
    let (word, peers) = if r.direction == "EGRESS" {
        ("to", &r.dest_ip_ranges)
    } else {
        ("from", &r.src_ip_ranges)
    };
    let mut peers = peers.clone();
    if r.direction != "EGRESS" && !r.src_secure_tags.is_empty() {
        peers.extend(r.src_secure_tags.iter().map(|t| format!("secure tag {t}")));
    }
    let peers = if peers.is_empty() {
        "anywhere".to_string()
    } else {
        peers.join(", ")
    };
    format!(
        "{verb} {} {what} {word} {peers}",
        r.direction.to_ascii_lowercase()
    )
}
