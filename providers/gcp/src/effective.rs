//! The nodes' effective perimeter in one GCP network (core::violation): the VPC rules
//! perimeter plans, and every other rule of the network that applies to the nodes.
//!
//! Why the foreign rules' boxes are the only regions: GCP picks one rule per packet (the
//! lowest priority number that applies and matches, a deny first at a tie). A packet no foreign
//! rule matches is decided by the same owned rule, or the same implied rule, with or without
//! them.

use perimeter_core::plan::fingerprint;
use perimeter_core::transition::{MatchBox, Transition};
use perimeter_core::violation::{Culprit, Estate};
use perimeter_core::{AddrSet, Cidr, Packet, Verdict};

use crate::evaluate::{GcpWorld, decide, winner};
use crate::model::Firewall;
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
        }
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
        decide(
            &GcpWorld {
                firewalls: &self.all,
                node_tags: self.node_tags,
                node_service_accounts: self.node_service_accounts,
            },
            packet,
        )
    }

    fn culprit(&self, packet: &Packet) -> Culprit {
        let world = GcpWorld {
            firewalls: &self.all,
            node_tags: self.node_tags,
            node_service_accounts: self.node_service_accounts,
        };
        match winner(&world, packet) {
            Some(f) => Culprit {
                object: format!("firewall rule {} (not managed by perimeter)", f.name),
                rule: rule_line(f),
                key: content_key(f),
            },
            // Unreachable when only foreign rules differ; said rather than hidden.
            None => Culprit {
                object: "the network's implied rules".into(),
                rule: "decide".into(),
                key: "implied".into(),
            },
        }
    }

    fn boxes(&self) -> Vec<MatchBox> {
        let world = self.world();
        self.all.iter().flat_map(|f| world.boxes_of(f)).collect()
    }

    fn regions(&self) -> Vec<MatchBox> {
        let world = self.world();
        self.foreign
            .iter()
            .flat_map(|f| world.boxes_of(f))
            .collect()
    }

    fn node_addrs(&self) -> AddrSet {
        self.world().node_addrs()
    }

    fn unfiltered(&self) -> AddrSet {
        AddrSet::from_cidrs(&["169.254.169.254/32".parse::<Cidr>().expect("a CIDR")])
    }
}
