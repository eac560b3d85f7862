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
use perimeter_core::{AddrSet, Direction, Packet, Verdict};

use crate::evaluate::{AzureWorld, NicIdentity, decide, winner};
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
                nic: None,
            },
            packet,
        )
    }

    fn effective(&self, packet: &Packet) -> Verdict {
        decide(
            &AzureWorld {
                rules: &self.all,
                node_asg: self.node_asg,
                nic: None,
            },
            packet,
        )
    }

    fn culprit(&self, packet: &Packet) -> Culprit {
        let world = AzureWorld {
            rules: &self.all,
            node_asg: self.node_asg,
            nic: None,
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

/// One NSG on a NIC's path: the subnet's or the NIC's own.
pub(crate) struct PathLayer<'a> {
    /// How people find it: `NSG aks-agentpool on subnet vnet/nodes`.
    pub(crate) label: String,
    /// The NSG's name.
    pub(crate) nsg: String,
    /// Its rules as they will be (for the target's NSG: as planned).
    pub(crate) rules: &'a [SecurityRule],
    /// True for the target's NSG.
    pub(crate) own: bool,
}

/// One node NIC's path: inbound, the subnet's NSG then the NIC's; outbound, the NIC's then the
/// subnet's; a packet passes only when every NSG on the path allows it (cloud-facts.md A2). A
/// layer without an NSG lets everything through.
///
/// Why the regions are what they are: with the target's NSG alone on the path, only its
/// foreign rules can make a difference (as in [`AzureEstate`]). Any other arrangement — a
/// second NSG, whose default rules deny everything they do not allow, or no NSG of the policy
/// at all — can differ anywhere, so the region is all of packet space and the cells are cut by
/// every rule on the path, default rules included.
pub(crate) struct AzurePathEstate<'a> {
    /// The target's NSG name.
    pub(crate) nsg: &'a str,
    /// The rules perimeter plans (the policy).
    pub(crate) desired: &'a [SecurityRule],
    /// The subnet's NSG, if any.
    pub(crate) subnet: Option<PathLayer<'a>>,
    /// The NIC's NSG, if any.
    pub(crate) nic: Option<PathLayer<'a>>,
    /// The subnet, as `vnet/subnet`.
    pub(crate) subnet_label: String,
    /// Id of the nodes' application security group.
    pub(crate) node_asg: &'a str,
    /// What the rules' near side sees of the NIC.
    pub(crate) identity: NicIdentity,
    /// Where node peers can be: the addresses of the nodes' NICs.
    pub(crate) node_addrs: AddrSet,
}

impl AzurePathEstate<'_> {
    fn world<'w>(&'w self, rules: &'w [SecurityRule]) -> AzureWorld<'w> {
        AzureWorld {
            rules,
            node_asg: self.node_asg,
            nic: Some(&self.identity),
        }
    }

    /// The layers a packet of this direction crosses, in order.
    fn layers(&self, direction: Direction) -> Vec<&PathLayer<'_>> {
        let order = match direction {
            Direction::Ingress => [&self.subnet, &self.nic],
            Direction::Egress => [&self.nic, &self.subnet],
        };
        order.into_iter().flatten().collect()
    }

    fn own_alone(&self) -> bool {
        let layers = self.layers(Direction::Ingress);
        layers.len() == 1 && layers[0].own
    }
}

impl Estate for AzurePathEstate<'_> {
    fn policy(&self, packet: &Packet) -> Verdict {
        decide(&self.world(self.desired), packet)
    }

    fn effective(&self, packet: &Packet) -> Verdict {
        let denied = self
            .layers(packet.direction)
            .iter()
            .any(|l| decide(&self.world(l.rules), packet) == Verdict::Deny);
        if denied {
            Verdict::Deny
        } else {
            Verdict::Allow
        }
    }

    fn culprit(&self, packet: &Packet) -> Culprit {
        let layers = self.layers(packet.direction);
        let direction = match packet.direction {
            Direction::Ingress => "inbound",
            Direction::Egress => "outbound",
        };
        // Denied: the first NSG on the path that denies. Allowed: the target's NSG when it is
        // on the path (a foreign rule in it), otherwise the path itself lacks the policy.
        let denying = layers
            .iter()
            .find(|l| decide(&self.world(l.rules), packet) == Verdict::Deny);
        let layer = match denying {
            Some(l) => Some(*l),
            None => layers.iter().find(|l| l.own).copied(),
        };
        let Some(layer) = layer else {
            let on_path: Vec<String> = layers.iter().map(|l| l.label.clone()).collect();
            return Culprit {
                object: format!("subnet {}", self.subnet_label),
                rule: format!(
                    "has NSG {} neither on it nor on the network interface ({})",
                    self.nsg,
                    if on_path.is_empty() {
                        "no NSG on the path: Azure lets everything through".to_string()
                    } else {
                        format!("{} decides", on_path.join(", then "))
                    }
                ),
                key: format!(
                    "unenforced/{}/{}",
                    self.subnet_label,
                    layers
                        .iter()
                        .map(|l| l.nsg.to_ascii_lowercase())
                        .collect::<Vec<_>>()
                        .join("+")
                ),
            };
        };
        match winner(&self.world(layer.rules), packet) {
            Some(r) => Culprit {
                object: format!(
                    "security rule {} of {}{}",
                    r.name,
                    layer.label,
                    if layer.own {
                        " (not managed by perimeter)"
                    } else {
                        ""
                    }
                ),
                rule: rule_line(r),
                key: format!("{}/{}", layer.nsg.to_ascii_lowercase(), content_key(r)),
            },
            None => Culprit {
                object: layer.label.clone(),
                rule: format!("{direction} default rules decide"),
                key: format!("{}/defaults/{direction}", layer.nsg.to_ascii_lowercase()),
            },
        }
    }

    fn boxes(&self) -> Vec<MatchBox> {
        let world = AzureTransition {
            node_asg: self.node_asg,
        };
        let all: Vec<SecurityRule> = self
            .desired
            .iter()
            .chain(self.subnet.iter().flat_map(|l| l.rules))
            .chain(self.nic.iter().flat_map(|l| l.rules))
            .cloned()
            .collect();
        world.boxes(&all)
    }

    fn node_addrs(&self) -> AddrSet {
        self.node_addrs.clone()
    }

    fn regions(&self) -> Vec<MatchBox> {
        if self.own_alone() {
            let world = AzureTransition {
                node_asg: self.node_asg,
            };
            let layer = self.subnet.as_ref().or(self.nic.as_ref());
            return layer
                .into_iter()
                .flat_map(|l| l.rules)
                .filter(|r| !self.desired.contains(r))
                .flat_map(|r| world.boxes_of(r))
                .collect();
        }
        [Direction::Ingress, Direction::Egress]
            .into_iter()
            .map(|d| MatchBox::any_port(d, None, AddrSet::everything(), true))
            .collect()
    }
}
