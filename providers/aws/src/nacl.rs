//! Intent → network ACL: a coarse, stateless backstop for the node subnets.
//!
//! A NACL holds 20 entries per direction per address family, including the `*` default deny,
//! and is stateless. It cannot carry a per-port CNI policy; the security group does that
//! exactly. The NACL instead limits *who* can talk to the node subnets at all:
//!
//! * inbound: all traffic from every peer some ingress rule allows; plus reply traffic (TCP and
//!   UDP to ephemeral ports 1024-65535, ICMP, other protocols) from peers only egress rules
//!   allow, since a stateless filter must let replies in explicitly;
//! * outbound: the mirror image;
//! * everything else hits the `*` deny.
//!
//! So the NACL never blocks what the policy allows, and the security group never allows what
//! the policy denies: together they decide exactly what the policy decides. Every entry
//! allows, so their order does not change any decision and entries may overlap. Rule numbers
//! here are 100, 200, ... for a new NACL; the planner keeps the numbers of entries an existing
//! NACL already has and gives new entries free numbers (nacl_plan.rs).

use perimeter_core::effective::{Class, Effective};
use perimeter_core::target::{AwsNaclTarget, AwsTarget};
use perimeter_core::{AddrSet, Cidr, Diagnostic, Diagnostics, Direction, Intent};

use crate::model::{NaclEntry, NetworkAcl};

/// Entries per NACL per direction per address family, *including* the `*` default entry.
/// <https://docs.aws.amazon.com/vpc/latest/userguide/amazon-vpc-limits.html>
pub(crate) const NACL_ENTRIES_PER_DIRECTION_PER_FAMILY: usize = 20;

/// Gap between allocated rule numbers.
pub(crate) const RULE_NUMBER_STEP: u16 = 100;

/// First port of the ephemeral range opened for replies ("in practice ... 1024-65535").
pub(crate) const EPHEMERAL_FIRST: u16 = 1024;

/// An entry before it gets a number: protocol, peer, port range, ICMP type/code.
type PendingEntry = (String, Cidr, Option<(u16, u16)>, Option<(i32, i32)>);

/// What one direction's rules allow, by kind of traffic, as seen by the NACL.
#[derive(Default)]
struct Reach {
    /// Peers some rule allows anything to or from.
    any: AddrSet,
    tcp: AddrSet,
    udp: AddrSet,
    icmp: AddrSet,
    /// Other protocols by number; `None` for "every protocol not named".
    other: Vec<(Option<u8>, AddrSet)>,
}

fn reach(eff: &Effective, node_cidrs: &AddrSet) -> Reach {
    let mut r = Reach::default();
    for cell in &eff.cells {
        let mut addrs = cell.addrs.clone();
        if cell.nodes {
            addrs = addrs.union(&node_cidrs.intersection(&cell.class.family_space()));
        }
        if addrs.is_empty() {
            continue;
        }
        r.any = r.any.union(&addrs);
        match cell.class {
            Class::Tcp => r.tcp = r.tcp.union(&addrs),
            Class::Udp => r.udp = r.udp.union(&addrs),
            Class::Icmp | Class::Icmpv6 => r.icmp = r.icmp.union(&addrs),
            Class::Protocol(n) => r.other.push((Some(n), addrs)),
            Class::OtherProtocols => r.other.push((None, addrs)),
        }
    }
    r
}

/// Compiles the NACL for one target.
///
/// `effectives` are the policy's effective sets for ingress and egress, as the security group
/// compiler already computed them.
pub(crate) fn compile(
    intent: &Intent,
    effectives: &[Effective; 2],
    target: &AwsTarget,
    nacl: &AwsNaclTarget,
    limit: usize,
) -> Result<NetworkAcl, Diagnostics> {
    let mut diags = Diagnostics::default();
    let uses_self = Direction::BOTH
        .iter()
        .any(|d| intent.rules(*d).iter().any(|r| r.peers.nodes));
    if uses_self && nacl.node_cidrs.is_empty() {
        diags.push(
            Diagnostic::error(
                "aws::nacl-needs-node-cidrs",
                nacl.span,
                "the policy names `self`, but a network ACL cannot name instances",
            )
            .label("`network_acl` has no `node_cidrs`")
            .help("add `node_cidrs:` with the CIDRs of the node subnets, so `self` can be written as addresses"),
        );
        return Err(diags);
    }
    let node_cidrs = AddrSet::from_cidrs(&nacl.node_cidrs);
    let [ingress_eff, egress_eff] = effectives;
    let ingress = reach(ingress_eff, &node_cidrs);
    let egress = reach(egress_eff, &node_cidrs);

    let mut entries = Vec::new();
    for (direction, same, other) in [
        (Direction::Ingress, &ingress, &egress),
        (Direction::Egress, &egress, &ingress),
    ] {
        let egress_flag = direction == Direction::Egress;
        let mut list: Vec<PendingEntry> = Vec::new();
        for c in same.any.to_cidrs() {
            list.push(("-1".into(), c, None, None));
        }
        // Replies to flows the other direction allows. Entries are first-match and every one
        // allows, so a reply entry may overlap an all-traffic entry: nothing is subtracted (a
        // peer set minus the peers inside it would shatter into many CIDRs); a reply CIDR
        // wholly inside the all-traffic peers adds nothing and is left out.
        let reply = |set: &AddrSet| {
            set.to_cidrs()
                .into_iter()
                .filter(|c| !AddrSet::from_cidrs([c]).difference(&same.any).is_empty())
                .collect::<Vec<Cidr>>()
        };
        for c in reply(&other.tcp) {
            list.push(("6".into(), c, Some((EPHEMERAL_FIRST, u16::MAX)), None));
        }
        for c in reply(&other.udp) {
            list.push(("17".into(), c, Some((EPHEMERAL_FIRST, u16::MAX)), None));
        }
        for c in reply(&other.icmp) {
            let proto = if c.is_ipv4() { "1" } else { "58" };
            list.push((proto.into(), c, None, Some((-1, -1))));
        }
        for (number, set) in &other.other {
            for c in reply(set) {
                let proto = number.map_or("-1".to_string(), |n| n.to_string());
                list.push((proto, c, None, None));
            }
        }
        list.dedup();
        for family_v4 in [true, false] {
            let count = list.iter().filter(|e| e.1.is_ipv4() == family_v4).count() + 1;
            if count > limit {
                let family = if family_v4 { "IPv4" } else { "IPv6" };
                diags.push(
                    Diagnostic::error(
                        "aws::nacl-entry-quota",
                        nacl.span,
                        format!(
                            "the network ACL for `{}` would need {count} {} {family} entries (with the `*` entry); the quota is {limit} per direction per address family",
                            target.security_group,
                            if egress_flag { "outbound" } else { "inbound" },
                        ),
                    )
                    .label("this network ACL")
                    .help("a NACL is a coarse backstop listing peers: use fewer, larger peer networks, or remove `network_acl` and rely on the security group"),
                );
            }
        }
        for (i, (protocol, cidr, port_range, icmp_type_code)) in list.into_iter().enumerate() {
            let rule_number = u16::try_from(i + 1)
                .unwrap_or(u16::MAX)
                .saturating_mul(RULE_NUMBER_STEP);
            entries.push(NaclEntry {
                egress: egress_flag,
                rule_number,
                protocol,
                rule_action: "allow".into(),
                cidr,
                port_range,
                icmp_type_code,
            });
        }
    }
    if diags.has_errors() {
        return Err(diags);
    }
    entries.sort_by_key(|e| (e.egress, e.rule_number));
    Ok(NetworkAcl {
        vpc_id: target.vpc.clone(),
        subnets: nacl.subnets.clone(),
        entries,
    })
}

#[cfg(test)]
mod tests {
    use perimeter_core::policy::load_str;

    use crate::compile::{Limits, compile_with_limits};

    const BASE: &str = "apiVersion: perimeter/v1\nkind: NodePerimeter\nname: t\ntargets:\n  aws:\n    region: us-east-1\n    vpc: vpc-0123456789abcdef0\n    network_acl: {subnets: [subnet-0123456789abcdef0], node_cidrs: [10.0.16.0/20]}\n";

    #[test]
    fn peers_get_all_traffic_and_one_way_peers_get_reply_entries() {
        let text = format!(
            "{BASE}ingress:\n  - {{name: kubelet, from: 10.0.0.0/24, services: [kubelet]}}\negress:\n  - {{name: https, to: 10.9.0.0/24, services: [https]}}\n"
        );
        let intent = load_str("t.yaml", &text).unwrap();
        let c = compile_with_limits(&intent, &intent.targets.aws[0], Limits::AWS_DEFAULT).unwrap();
        let nacl = c.network_acl.unwrap();
        let entries = |egress: bool| -> Vec<String> {
            nacl.entries
                .iter()
                .filter(|e| e.egress == egress)
                .map(|e| {
                    format!(
                        "{} {} {} {:?}",
                        e.rule_number, e.protocol, e.cidr, e.port_range
                    )
                })
                .collect()
        };
        let inbound = entries(false);
        assert_eq!(
            inbound,
            [
                "100 -1 10.0.0.0/24 None",
                "200 6 10.9.0.0/24 Some((1024, 65535))"
            ]
        );
        let outbound = entries(true);
        assert_eq!(
            outbound,
            [
                "100 -1 10.9.0.0/24 None",
                "200 6 10.0.0.0/24 Some((1024, 65535))"
            ]
        );
    }

    #[test]
    fn the_default_entry_counts_against_the_budget() {
        // 19 peers + `*` = 20 entries: fits; 20 peers do not.
        let peers = |n: usize| {
            (0..n)
                .map(|i| format!("10.{}.0.0/16", 2 * i))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let ok = format!(
            "{BASE}ingress:\n  - {{name: r, from: [{}], services: [ssh]}}\n",
            peers(19)
        );
        let intent = load_str("t.yaml", &ok).unwrap();
        assert!(compile_with_limits(&intent, &intent.targets.aws[0], Limits::AWS_DEFAULT).is_ok());
        let over = format!(
            "{BASE}ingress:\n  - {{name: r, from: [{}], services: [ssh]}}\n",
            peers(20)
        );
        let intent = load_str("t.yaml", &over).unwrap();
        let err =
            compile_with_limits(&intent, &intent.targets.aws[0], Limits::AWS_DEFAULT).unwrap_err();
        assert!(
            err.0.iter().any(|d| d.code == "aws::nacl-entry-quota"
                && d.message.contains("21 inbound IPv4 entries")),
            "{err:?}"
        );
    }
}
