//! The nodes' effective perimeter at one shared Azure NSG (core::violation): the rules
//! perimeter plans, and the rules of others in the same NSG (AKS writes its load-balancer
//! rules there).
//!
//! Why the foreign rules' boxes are the only regions: the NSG decides by the first match in
//! priority order, then the default rules. A packet no foreign rule matches is decided by the
//! same owned rule, or the same default, with or without them.

use perimeter_core::plan::fingerprint;
use perimeter_core::transition::{MatchBox, Transition};
use perimeter_core::violation::{Culprit, Estate};
use perimeter_core::{Packet, Verdict};

use crate::evaluate::{AzureWorld, decide, winner};
use crate::model::SecurityRule;
use crate::render_plan::rule_line;
use crate::transition::AzureTransition;

/// One shared NSG as the nodes experience it.
pub(crate) struct AzureEstate<'a> {
    /// The NSG.
    pub(crate) nsg: &'a str,
    /// The rules perimeter plans (the policy).
    pub(crate) desired: &'a [SecurityRule],
    /// Rules of others in the NSG.
    pub(crate) foreign: &'a [SecurityRule],
    /// Both.
    pub(crate) all: Vec<SecurityRule>,
    /// Id of the nodes' application security group.
    pub(crate) node_asg: &'a str,
}

impl<'a> AzureEstate<'a> {
    pub(crate) fn new(
        nsg: &'a str,
        desired: &'a [SecurityRule],
        foreign: &'a [SecurityRule],
        node_asg: &'a str,
    ) -> Self {
        Self {
            nsg,
            desired,
            foreign,
            all: desired.iter().chain(foreign).cloned().collect(),
            node_asg,
        }
    }

    fn world(&self) -> AzureTransition<'a> {
        AzureTransition {
            node_asg: self.node_asg,
        }
    }
}

/// A foreign rule's identity by content: its name and a digest of its properties (not its
/// description), so a broadened rule is reported again.
fn content_key(r: &SecurityRule) -> String {
    let mut decides = r.properties.clone();
    decides.description = String::new();
    let digest = fingerprint(&decides).unwrap_or_default();
    format!("{}/{}", r.name, &digest[..digest.len().min(12)])
}

impl Estate for AzureEstate<'_> {
    fn policy(&self, packet: &Packet) -> Verdict {
        decide(
            &AzureWorld {
                rules: self.desired,
                node_asg: self.node_asg,
            },
            packet,
        )
    }

    fn effective(&self, packet: &Packet) -> Verdict {
        decide(
            &AzureWorld {
                rules: &self.all,
                node_asg: self.node_asg,
            },
            packet,
        )
    }

    fn culprit(&self, packet: &Packet) -> Culprit {
        let world = AzureWorld {
            rules: &self.all,
            node_asg: self.node_asg,
        };
        match winner(&world, packet) {
            Some(r) => Culprit {
                object: format!(
                    "security rule {} of NSG {} (not managed by perimeter)",
                    r.name, self.nsg
                ),
                rule: rule_line(r),
                key: content_key(r),
            },
            None => Culprit {
                object: format!("NSG {}", self.nsg),
                rule: "default rules decide".into(),
                key: "defaults".into(),
            },
        }
    }

    fn boxes(&self) -> Vec<MatchBox> {
        self.world().boxes(&self.all)
    }

    fn regions(&self) -> Vec<MatchBox> {
        let world = self.world();
        self.foreign
            .iter()
            .flat_map(|r| world.boxes_of(r))
            .collect()
    }
}
