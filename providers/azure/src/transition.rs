//! Azure as the transition checker sees it (core::transition): every rule of the NSG, owned and
//! foreign, and the rule-by-rule writes of a shared NSG. Decisions come from `evaluate`; the
//! boxes read a rule as the documentation does (cloud-facts.md A2, A5), service tags included,
//! so that cells are cut where the evaluator's answers can change.

use perimeter_core::interval::IntervalSet;
use perimeter_core::transition::{MatchBox, Transition};
use perimeter_core::{AddrSet, Cidr, Direction, Packet, Verdict};

use crate::evaluate::{AzureWorld, decide};
use crate::model::SecurityRule;
use crate::plan::RuleStep;

/// One NSG as seen from the nodes.
pub struct AzureTransition<'a> {
    /// Id of the nodes' application security group.
    pub node_asg: &'a str,
}

fn cidrs(list: &[&str]) -> AddrSet {
    let parsed: Vec<Cidr> = list.iter().filter_map(|c| c.parse().ok()).collect();
    AddrSet::from_cidrs(&parsed)
}

/// The addresses a prefix or service tag stands for, as the evaluator reads them.
fn selector(prefix: &str) -> AddrSet {
    let private = || cidrs(&["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"]);
    match prefix {
        "*" | "Any" => AddrSet::everything(),
        "VirtualNetwork" => private(),
        "Internet" => AddrSet::everything().difference(&private()),
        "AzureLoadBalancer" | "AzurePlatformDNS" => cidrs(&["168.63.129.16/32"]),
        "AzurePlatformIMDS" => cidrs(&["169.254.169.254/32"]),
        p => cidrs(&[p]),
    }
}

fn ports(list: Vec<&String>) -> IntervalSet<u16> {
    IntervalSet::from_ranges(list.into_iter().filter_map(|r| {
        if r == "*" {
            return Some((0, u16::MAX));
        }
        match r.split_once('-') {
            Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
            None => r.parse().ok().map(|p| (p, p)),
        }
    }))
}

impl AzureTransition<'_> {
    pub(crate) fn boxes_of(&self, r: &SecurityRule) -> Vec<MatchBox> {
        let p = &r.properties;
        let (direction, single, many, asgs) = if p.direction == "Outbound" {
            (
                Direction::Egress,
                &p.destination_address_prefix,
                &p.destination_address_prefixes,
                &p.destination_application_security_groups,
            )
        } else {
            (
                Direction::Ingress,
                &p.source_address_prefix,
                &p.source_address_prefixes,
                &p.source_application_security_groups,
            )
        };
        let addrs = single
            .iter()
            .chain(many)
            .map(|s| selector(s))
            .fold(AddrSet::empty(), |a, b| a.union(&b));
        let nodes = asgs
            .iter()
            .any(|a| a.id.eq_ignore_ascii_case(self.node_asg));
        let dports = ports(
            p.destination_port_range
                .iter()
                .chain(&p.destination_port_ranges)
                .collect(),
        );
        let protocols: Vec<(Option<u8>, IntervalSet<u16>)> = match p.protocol.as_str() {
            "Tcp" => vec![(Some(6), dports)],
            "Udp" => vec![(Some(17), dports)],
            "Icmp" => vec![
                (Some(1), IntervalSet::full()),
                (Some(58), IntervalSet::full()),
            ],
            "Esp" => vec![(Some(50), IntervalSet::full())],
            "Ah" => vec![(Some(51), IntervalSet::full())],
            // `*`: every protocol, with TCP and UDP limited to the rule's ports.
            _ => vec![
                (Some(6), dports.clone()),
                (Some(17), dports),
                (None, IntervalSet::full()),
            ],
        };
        protocols
            .into_iter()
            .map(|(protocol, ports)| MatchBox {
                direction,
                protocol,
                ports,
                addrs: addrs.clone(),
                nodes,
            })
            .collect()
    }
}

impl Transition for AzureTransition<'_> {
    type State = Vec<SecurityRule>;
    type Write = RuleStep;

    fn apply(&self, state: &mut Vec<SecurityRule>, write: &RuleStep) {
        let name = step_name(write);
        state.retain(|r| !r.name.eq_ignore_ascii_case(name));
        if let RuleStep::Put { rule, .. } = write {
            state.push((**rule).clone());
        }
    }

    fn decide(&self, state: &Vec<SecurityRule>, packet: &Packet) -> Verdict {
        decide(
            &AzureWorld {
                rules: state,
                node_asg: self.node_asg,
                nic: None,
            },
            packet,
        )
    }

    fn footprint(&self, state: &Vec<SecurityRule>, write: &RuleStep) -> Vec<MatchBox> {
        let name = step_name(write);
        let mut out: Vec<MatchBox> = state
            .iter()
            .filter(|r| r.name.eq_ignore_ascii_case(name))
            .flat_map(|r| self.boxes_of(r))
            .collect();
        if let RuleStep::Put { rule, .. } = write {
            out.extend(self.boxes_of(rule));
        }
        out
    }

    fn boxes(&self, state: &Vec<SecurityRule>) -> Vec<MatchBox> {
        let mut out: Vec<MatchBox> = state.iter().flat_map(|r| self.boxes_of(r)).collect();
        // The default rules and the platform addresses the NSG does not filter cut cells too.
        for direction in [Direction::Ingress, Direction::Egress] {
            for tag in ["VirtualNetwork", "AzureLoadBalancer", "AzurePlatformIMDS"] {
                out.push(MatchBox::any_port(direction, None, selector(tag), false));
            }
        }
        out
    }

    fn describe(&self, write: &RuleStep) -> String {
        match write {
            RuleStep::Put { rule, parked: true } => format!(
                "park rule {} at priority {}",
                rule.name, rule.properties.priority
            ),
            RuleStep::Put { rule, .. } => format!(
                "put rule {} at priority {}",
                rule.name, rule.properties.priority
            ),
            RuleStep::Delete { name } => format!("delete rule {name}"),
        }
    }
}

/// The rule a write touches.
pub(crate) fn step_name(write: &RuleStep) -> &str {
    match write {
        RuleStep::Put { rule, .. } => &rule.name,
        RuleStep::Delete { name } => name,
    }
}
