//! The effective allowed set of an ordered rule list.
//!
//! Unordered, allow-only targets (AWS security groups) cannot say "deny this, then allow that".
//! What they can hold is the *result* of the ordered list: for each protocol and port, the set
//! of peers that end up allowed. This module computes that result exactly, with interval
//! arithmetic on ports and addresses:
//!
//! 1. Split each protocol's port space into elementary intervals at every rule boundary, so a
//!    rule either covers an interval whole or not at all.
//! 2. For each interval, walk the rules in order, keeping the addresses not yet decided: an
//!    allow rule adds `rule ∩ undecided` to the allowed set, a deny only removes from
//!    `undecided`. What is left gets the default.
//! 3. Merge neighbouring intervals with equal results.
//!
//! `self` (the nodes, by identity) is tracked beside the addresses: the nodes' verdict is the
//! verdict of the first rule that names `self`. A target that ORs a group reference with CIDRs
//! (AWS, GCP tags) then allows a node if either matches, which differs from first-match in one
//! case: an address decided one way before the first `self` rule and the other way after. Those
//! addresses are returned as [`Effective::node_widenings`] so the compiler can note them.

use std::collections::{BTreeMap, BTreeSet};

use crate::addr::AddrSet;
use crate::intent::{Rule, Service, Verdict};
use crate::interval::IntervalSet;

/// A protocol class: the unit within which ports are compared.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum Class {
    /// TCP, ports 0-65535.
    Tcp,
    /// UDP, ports 0-65535.
    Udp,
    /// ICMP for IPv4; "ports" are `type * 256 + code`.
    Icmp,
    /// ICMPv6; "ports" are `type * 256 + code`.
    Icmpv6,
    /// One other IP protocol named by some rule; no ports.
    Protocol(u8),
    /// Every IP protocol no rule names specifically; no ports.
    OtherProtocols,
}

impl Class {
    /// The "port" domain of the class.
    pub fn domain(self) -> (u16, u16) {
        match self {
            Class::Tcp | Class::Udp | Class::Icmp | Class::Icmpv6 => (0, u16::MAX),
            Class::Protocol(_) | Class::OtherProtocols => (0, 0),
        }
    }

    /// Addresses a packet of this class can have (ICMP is IPv4-only, ICMPv6 IPv6-only).
    pub fn family_space(self) -> AddrSet {
        match self {
            Class::Icmp => AddrSet::everything().only_v4(),
            Class::Icmpv6 => AddrSet::everything().only_v6(),
            _ => AddrSet::everything(),
        }
    }
}

/// The class and "port" interval a service covers, or `None` for `Any` (every class).
pub fn service_span(s: &Service) -> Option<(Class, u16, u16)> {
    match s {
        Service::Any => None,
        Service::Tcp { ports } => Some((Class::Tcp, ports.first, ports.last)),
        Service::Udp { ports } => Some((Class::Udp, ports.first, ports.last)),
        Service::Icmp { icmp } => {
            let (lo, hi) = icmp.encoded();
            Some((Class::Icmp, lo, hi))
        }
        Service::Icmpv6 { icmp } => {
            let (lo, hi) = icmp.encoded();
            Some((Class::Icmpv6, lo, hi))
        }
        Service::Protocol { number } => Some((Class::Protocol(*number), 0, 0)),
    }
}

/// The allowed peers for one class and port interval.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Cell {
    /// Protocol class.
    pub class: Class,
    /// Inclusive "port" interval within the class domain.
    pub ports: (u16, u16),
    /// Allowed addresses.
    pub addrs: AddrSet,
    /// True when the nodes (`self`) are allowed by identity.
    pub nodes: bool,
    /// Indexes (into the rule slice given to [`effective`]) of the allow rules that
    /// contributed, for descriptions.
    pub rules: BTreeSet<usize>,
}

/// Where an OR-of-group-and-CIDR target allows nodes the policy denies.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct NodeWidening {
    /// Protocol class.
    pub class: Class,
    /// Inclusive "port" interval.
    pub ports: (u16, u16),
    /// Node addresses that are wrongly allowed.
    pub addrs: AddrSet,
}

/// The result of [`effective`].
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Effective {
    /// Cells covering every class domain, merged; cells may be empty (nothing allowed).
    pub cells: Vec<Cell>,
    /// See the module docs.
    pub node_widenings: Vec<NodeWidening>,
}

impl Effective {
    /// The classes present, in order.
    pub fn classes(&self) -> Vec<Class> {
        let mut v: Vec<Class> = self.cells.iter().map(|c| c.class).collect();
        v.dedup();
        v
    }

    /// Addresses (and whether nodes) allowed on every port of `class`.
    pub fn allowed_on_all_ports(&self, class: Class) -> (AddrSet, bool) {
        let mut cells = self.cells.iter().filter(|c| c.class == class);
        let Some(first) = cells.next() else {
            return (AddrSet::empty(), false);
        };
        cells.fold((first.addrs.clone(), first.nodes), |(a, n), c| {
            (a.intersection(&c.addrs), n && c.nodes)
        })
    }
}

/// Computes the effective allowed set of `rules` (first match wins) with `default` for
/// packets no rule matches.
pub fn effective(rules: &[Rule], default: Verdict) -> Effective {
    let mut classes: BTreeSet<Class> = [
        Class::Tcp,
        Class::Udp,
        Class::Icmp,
        Class::Icmpv6,
        Class::OtherProtocols,
    ]
    .into();
    for rule in rules {
        for s in &rule.services {
            if let Some((class, _, _)) = service_span(s) {
                classes.insert(class);
            }
        }
    }
    let mut out = Effective::default();
    for class in classes {
        let (dom_lo, dom_hi) = class.domain();
        // Sweep the class's port line: at each cut, rules whose spans start there become
        // active and rules whose spans ended just before it leave. Each elementary interval
        // then walks only its active rules, in policy order, instead of every rule.
        let mut starts: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
        let mut ends: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
        for (idx, rule) in rules.iter().enumerate() {
            for s in &rule.services {
                let (lo, hi) = match service_span(s) {
                    None => (dom_lo, dom_hi),
                    Some((c, lo, hi)) if c == class => (lo, hi),
                    Some(_) => continue,
                };
                starts.entry(lo).or_default().push(idx);
                if hi < dom_hi {
                    ends.entry(hi + 1).or_default().push(idx);
                }
            }
        }
        let mut cuts: BTreeSet<u16> = starts.keys().chain(ends.keys()).copied().collect();
        cuts.insert(dom_lo);
        let cuts: Vec<u16> = cuts.into_iter().collect();
        // rule index → number of its services covering the current interval
        let mut active: BTreeMap<usize, u32> = BTreeMap::new();
        for (i, &lo) in cuts.iter().enumerate() {
            for idx in ends.get(&lo).into_iter().flatten() {
                if let Some(n) = active.get_mut(idx) {
                    *n -= 1;
                    if *n == 0 {
                        active.remove(idx);
                    }
                }
            }
            for idx in starts.get(&lo).into_iter().flatten() {
                *active.entry(*idx).or_default() += 1;
            }
            let hi = cuts.get(i + 1).map_or(dom_hi, |next| next - 1);
            let covering = active.keys().map(|&idx| (idx, &rules[idx]));
            let (cell, widening) = if active.is_empty() {
                // Nothing but the default: no set arithmetic needed.
                let addrs = match default {
                    Verdict::Allow => class.family_space(),
                    Verdict::Deny => AddrSet::empty(),
                };
                let nodes = default == Verdict::Allow;
                (
                    Cell {
                        class,
                        ports: (lo, hi),
                        addrs,
                        nodes,
                        rules: BTreeSet::new(),
                    },
                    None,
                )
            } else {
                decide_interval(covering, default, class, lo, hi)
            };
            push_merged_cell(&mut out.cells, cell);
            if let Some(w) = widening {
                push_merged_widening(&mut out.node_widenings, w);
            }
        }
    }
    out
}

fn decide_interval<'r>(
    covering: impl Iterator<Item = (usize, &'r Rule)>,
    default: Verdict,
    class: Class,
    lo: u16,
    hi: u16,
) -> (Cell, Option<NodeWidening>) {
    let mut undecided = class.family_space();
    let mut allowed = AddrSet::empty();
    let mut denied = AddrSet::empty();
    let mut names = BTreeSet::new();
    // (verdict of the first rule naming self, allowed and denied sets just before it)
    let mut node_decision: Option<(Verdict, AddrSet, AddrSet)> = None;
    for (idx, rule) in covering {
        if rule.peers.nodes && node_decision.is_none() {
            node_decision = Some((rule.action, allowed.clone(), denied.clone()));
            if rule.action == Verdict::Allow {
                names.insert(idx);
            }
        }
        let matched = rule.peers.addrs.intersection(&undecided);
        if !matched.is_empty() {
            match rule.action {
                Verdict::Allow => {
                    allowed = allowed.union(&matched);
                    names.insert(idx);
                }
                Verdict::Deny => denied = denied.union(&matched),
            }
            undecided = undecided.difference(&matched);
        }
    }
    let (node_verdict, allowed_before, denied_before) =
        node_decision.unwrap_or_else(|| (default, allowed.clone(), denied.clone()));
    if default == Verdict::Allow {
        allowed = allowed.union(&undecided);
    }
    let nodes = node_verdict == Verdict::Allow;
    // Nodes whose address was decided the other way before the first `self` rule (when the
    // nodes are allowed), or is allowed by address after it (when they are denied).
    let wrongly_allowed = if nodes {
        denied_before
    } else {
        allowed.difference(&allowed_before)
    };
    let widening = (!wrongly_allowed.is_empty()).then_some(NodeWidening {
        class,
        ports: (lo, hi),
        addrs: wrongly_allowed,
    });
    (
        Cell {
            class,
            ports: (lo, hi),
            addrs: allowed,
            nodes,
            rules: names,
        },
        widening,
    )
}

fn push_merged_cell(cells: &mut Vec<Cell>, cell: Cell) {
    if let Some(last) = cells.last_mut()
        && last.class == cell.class
        && last.addrs == cell.addrs
        && last.nodes == cell.nodes
        && last.ports.1.checked_add(1) == Some(cell.ports.0)
    {
        last.ports.1 = cell.ports.1;
        last.rules.extend(cell.rules);
        return;
    }
    cells.push(cell);
}

fn push_merged_widening(list: &mut Vec<NodeWidening>, w: NodeWidening) {
    if let Some(last) = list.last_mut()
        && last.class == w.class
        && last.addrs == w.addrs
        && last.ports.1.checked_add(1) == Some(w.ports.0)
    {
        last.ports.1 = w.ports.1;
        return;
    }
    list.push(w);
}

/// Splits an encoded ICMP interval (`type * 256 + code`) into `(type, code)` selections a
/// cloud can hold: `(None, None)` for everything, `(Some(t), None)` for a whole type, and
/// `(Some(t), Some(c))` for single codes.
pub fn icmp_selections(lo: u16, hi: u16) -> Vec<(Option<u8>, Option<u8>)> {
    if lo == 0 && hi == u16::MAX {
        return vec![(None, None)];
    }
    let mut out = Vec::new();
    let set = IntervalSet::range(lo, hi);
    for t in (lo >> 8)..=(hi >> 8) {
        let t8 = t as u8;
        let type_range = IntervalSet::range(t << 8, (t << 8) | 0xff);
        let part = set.intersection(&type_range);
        if part == type_range {
            out.push((Some(t8), None));
        } else {
            for &(a, b) in part.ranges() {
                for v in a..=b {
                    out.push((Some(t8), Some((v & 0xff) as u8)));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::Cidr;
    use crate::diag::Span;
    use crate::intent::{Peers, PortRange};

    fn rule(
        name: &str,
        action: Verdict,
        cidrs: &[&str],
        nodes: bool,
        services: Vec<Service>,
    ) -> Rule {
        let cidrs: Vec<Cidr> = cidrs.iter().map(|c| c.parse().unwrap()).collect();
        Rule {
            name: name.into(),
            action,
            peers: Peers {
                addrs: AddrSet::from_cidrs(&cidrs),
                nodes,
            },
            services,
            span: Span::default(),
        }
    }

    fn tcp(p: u16) -> Service {
        Service::Tcp {
            ports: PortRange { first: p, last: p },
        }
    }

    #[test]
    fn deny_subtracts_from_later_allow() {
        let rules = [
            rule(
                "no-bastion",
                Verdict::Deny,
                &["10.0.5.0/24"],
                false,
                vec![tcp(22)],
            ),
            rule(
                "ssh",
                Verdict::Allow,
                &["10.0.0.0/16"],
                false,
                vec![tcp(22)],
            ),
        ];
        let eff = effective(&rules, Verdict::Deny);
        let cell = eff
            .cells
            .iter()
            .find(|c| c.class == Class::Tcp && c.ports == (22, 22))
            .unwrap();
        assert_eq!(cell.addrs.to_cidrs().len(), 8);
        assert!(!cell.addrs.contains("10.0.5.7".parse().unwrap()));
        assert!(cell.addrs.contains("10.0.6.7".parse().unwrap()));
        // Ports next to 22 allow nothing.
        assert!(
            eff.cells
                .iter()
                .filter(|c| c.class == Class::Tcp && c.ports != (22, 22))
                .all(|c| c.addrs.is_empty())
        );
    }

    #[test]
    fn deny_before_self_allow_is_a_node_widening() {
        let rules = [
            rule(
                "deny-mgmt",
                Verdict::Deny,
                &["10.9.0.0/16"],
                false,
                vec![tcp(22)],
            ),
            rule("nodes", Verdict::Allow, &[], true, vec![tcp(22)]),
        ];
        let eff = effective(&rules, Verdict::Deny);
        assert_eq!(eff.node_widenings.len(), 1);
        assert!(
            eff.node_widenings[0]
                .addrs
                .contains("10.9.1.1".parse().unwrap())
        );
    }

    #[test]
    fn icmp_selection_shapes() {
        assert_eq!(icmp_selections(0, u16::MAX), vec![(None, None)]);
        assert_eq!(
            icmp_selections(8 << 8, (8 << 8) | 0xff),
            vec![(Some(8), None)]
        );
        assert_eq!(
            icmp_selections(3 << 8 | 4, 3 << 8 | 4),
            vec![(Some(3), Some(4))]
        );
    }
}
