//! Intent → GCP VPC firewall rules.
//!
//! GCP evaluates rules by priority (lower first) and lets a deny win a tie, so list order means
//! nothing to it. The compiler turns the policy's order into explicit priorities: consecutive
//! rules with the same action share one (where they overlap they agree), and each change
//! between allow and deny moves to a later priority (`allocate_priorities`), so no allow ever
//! meets a deny at the same priority. A rule is split by address family (GCP
//! forbids mixing IPv4 and IPv6 ranges) and into chunks of at most 256 ranges; the pieces keep
//! the same priority and action, so their union is the original rule. `self` is the nodes'
//! network tags as a source; as a destination (egress) GCP has no tags, so `self` becomes the
//! target's `node_ranges`. Ingress rules always carry a source, since the API would otherwise
//! default to 0.0.0.0/0.

use std::net::{IpAddr, Ipv4Addr};

use perimeter_core::intent::{IcmpMatch, MetadataMode, Rule};
use perimeter_core::note::{PlatformAddress, platform_notes};
use perimeter_core::target::GcpTarget;
use perimeter_core::{
    AddrSet, Cidr, Diagnostic, Diagnostics, Direction, Intent, Note, NoteCode, Peers, Service,
    Verdict,
};

use crate::model::{Firewall, ProtocolPorts};

/// Longest firewall rule name (RFC 1035 label).
pub(crate) const NAME_MAX: usize = 63;
/// Most source or destination ranges in one rule.
pub(crate) const RANGES_PER_RULE: usize = 256;
/// Most target tags in one rule.
pub(crate) const TARGET_TAGS_MAX: usize = 70;
/// Most source tags in one rule.
pub(crate) const SOURCE_TAGS_MAX: usize = 30;
/// Priority distance between consecutive runs of same-action rules, when it fits.
pub(crate) const PRIORITY_STEP: u16 = 10;
/// Priority of the explicit egress default deny of a private perimeter: below every policy
/// rule, above GCP's implied allow-all egress at 65535.
pub(crate) const EGRESS_DEFAULT_PRIORITY: u16 = 65534;

/// Everything perimeter wants in one GCP network.
#[derive(Clone, Debug)]
pub struct GcpCompiled {
    /// The target compiled for.
    pub target: GcpTarget,
    /// Firewall rules: ingress then egress, by priority, then policy order.
    pub firewalls: Vec<Firewall>,
    /// What could not be said exactly.
    pub notes: Vec<Note>,
}

/// GCP platform addresses no VPC firewall rule applies to.
/// <https://cloud.google.com/firewall/docs/firewalls#alwaysallowed>
pub(crate) fn platform_addresses() -> Vec<PlatformAddress> {
    vec![PlatformAddress {
        addr: IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)),
        what: "metadata server (also DHCP, DNS and NTP)",
        egress: Verdict::Allow,
        ingress: Verdict::Allow,
    }]
}

fn is_rfc1035(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= NAME_MAX
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && !s.ends_with('-')
}

/// Compiles the intent for one GCP target.
pub fn compile(intent: &Intent, target: &GcpTarget) -> Result<GcpCompiled, Diagnostics> {
    let mut diags = Diagnostics::default();
    let mut notes = Vec::new();
    let mut firewalls = Vec::new();

    if target.target_tags.len() > TARGET_TAGS_MAX {
        diags.push(
            Diagnostic::error(
                "gcp::too-many-target-tags",
                target.span,
                format!(
                    "{} target tags; GCP allows {TARGET_TAGS_MAX} per rule",
                    target.target_tags.len()
                ),
            )
            .label("this target"),
        );
    }
    if target.target_tags.len() > SOURCE_TAGS_MAX {
        diags.push(
            Diagnostic::error(
                "gcp::too-many-source-tags",
                target.span,
                format!(
                    "`self` would need {} source tags; GCP allows {SOURCE_TAGS_MAX} per rule",
                    target.target_tags.len()
                ),
            )
            .label("this target"),
        );
    }
    for tag in &target.target_tags {
        if !is_rfc1035(tag) {
            diags.push(
                Diagnostic::error("gcp::bad-tag", target.span, format!("network tag `{tag}` is not valid on GCP"))
                    .label("in this target")
                    .help("tags are lowercase letters, digits and `-`, start with a letter, at most 63 characters"),
            );
        }
    }

    let node_ranges = AddrSet::from_cidrs(&target.node_ranges);
    for direction in Direction::BOTH {
        let rules = intent.rules(direction);
        let priorities = allocate_priorities(rules, target.priority_base);
        for (rule, &priority) in rules.iter().zip(&priorities) {
            if priority >= u32::from(EGRESS_DEFAULT_PRIORITY) {
                let over = priorities
                    .iter()
                    .filter(|p| **p >= u32::from(EGRESS_DEFAULT_PRIORITY))
                    .count();
                diags.push(
                    Diagnostic::error(
                        "gcp::priority-exhausted",
                        rule.span,
                        format!(
                            "{} rule `{}` would get priority {priority} ({over} rules in all are past the end); GCP priorities end at 65535 and perimeter keeps 65534 for the default",
                            direction.as_str(),
                            rule.name
                        ),
                    )
                    .label("the first rule that does not fit")
                    .help("lower `priority_base` in the gcp target, or use fewer alternations between allow and deny rules (consecutive rules with the same action share a priority)"),
                );
                break;
            }
            compile_rule(
                intent,
                target,
                direction,
                rule,
                priority as u16,
                &node_ranges,
                &mut firewalls,
                &mut notes,
                &mut diags,
            );
        }
    }
    if intent.default_verdict(Direction::Egress) == Verdict::Deny {
        for (suffix, cidr) in [("", Cidr::ANY_V4), ("-v6", Cidr::ANY_V6)] {
            firewalls.push(Firewall {
                name: format!("{}-e-default-deny{suffix}", intent.name),
                description: description(&intent.name, "default egress deny (private: true)"),
                network: target.network.clone(),
                priority: EGRESS_DEFAULT_PRIORITY,
                direction: "EGRESS".into(),
                source_ranges: Vec::new(),
                source_tags: Vec::new(),
                destination_ranges: vec![cidr.to_string()],
                target_tags: target.target_tags.clone(),
                allowed: Vec::new(),
                denied: vec![ProtocolPorts {
                    ip_protocol: "all".into(),
                    ports: Vec::new(),
                }],
                disabled: false,
                source_service_accounts: Vec::new(),
                target_service_accounts: Vec::new(),
            });
        }
    }
    for fw in &firewalls {
        if fw.name.len() > NAME_MAX {
            diags.push(
                Diagnostic::error(
                    "gcp::name-too-long",
                    intent
                        .rule_span_for_name(&fw.name, "i", "e")
                        .unwrap_or(target.span),
                    format!(
                        "firewall rule name `{}` is {} characters; GCP allows {NAME_MAX}",
                        fw.name,
                        fw.name.len()
                    ),
                )
                .label("names are <policy>-<i|e>-<rule>[-self|-v6][-N]")
                .help("shorten the policy name or the rule name"),
            );
        }
    }

    match intent.metadata {
        MetadataMode::DenyPods | MetadataMode::DenyAll => notes.push(
            Note::new(
                NoteCode::Unenforceable,
                format!(
                    "metadata: {} cannot be enforced by VPC firewall rules, which never apply to the metadata server; on GKE use Workload Identity (node metadata mode GKE_METADATA) and a least-privilege node service account",
                    intent.metadata.as_str()
                ),
            )
            .for_rule("metadata", intent.metadata_span),
        ),
        MetadataMode::Allow => {}
    }
    notes.extend(platform_notes(intent, "GCP", &platform_addresses()));

    if diags.has_errors() {
        return Err(diags);
    }
    // Ingress then egress, by priority; within a priority, policy order (stable sort).
    firewalls.sort_by_key(|f| (f.direction != "INGRESS", f.priority));
    Ok(GcpCompiled {
        target: target.clone(),
        firewalls,
        notes,
    })
}

/// Priorities for one direction's rules, in policy order.
///
/// Consecutive rules with the same action share a priority: where two such rules overlap they
/// decide alike, so their relative order cannot matter, and a new allow among allows does not
/// renumber the rest. Each change of action moves to the next priority, `PRIORITY_STEP` apart
/// when every run fits below 65534, otherwise 1 apart.
pub(crate) fn allocate_priorities(rules: &[Rule], base: u16) -> Vec<u32> {
    let mut runs = Vec::with_capacity(rules.len());
    let mut run = 0u32;
    for (i, rule) in rules.iter().enumerate() {
        if i > 0 && rule.action != rules[i - 1].action {
            run += 1;
        }
        runs.push(run);
    }
    let last = runs.last().copied().unwrap_or(0);
    let step =
        if u32::from(base) + u32::from(PRIORITY_STEP) * last < u32::from(EGRESS_DEFAULT_PRIORITY) {
            u32::from(PRIORITY_STEP)
        } else {
            1
        };
    runs.into_iter()
        .map(|r| u32::from(base) + step * r)
        .collect()
}

fn description(policy: &str, what: &str) -> String {
    format!("perimeter:{policy} {what}")
}

#[allow(clippy::too_many_arguments)]
fn compile_rule(
    intent: &Intent,
    target: &GcpTarget,
    direction: Direction,
    rule: &Rule,
    priority: u16,
    node_ranges: &AddrSet,
    firewalls: &mut Vec<Firewall>,
    notes: &mut Vec<Note>,
    diags: &mut Diagnostics,
) {
    let dir_letter = if direction == Direction::Ingress {
        "i"
    } else {
        "e"
    };
    let mut addrs = std::borrow::Cow::Borrowed(&rule.peers.addrs);
    let mut tags = false;
    if rule.peers.nodes {
        match direction {
            Direction::Ingress => tags = true,
            Direction::Egress if node_ranges.is_empty() && target.placeholder => {
                // No GCP target to take node ranges from: show the rest of the rule and say
                // plainly that egress to the nodes is missing.
                notes.push(
                    Note::new(
                        NoteCode::Narrowed,
                        format!(
                            "GCP egress rules cannot name instances by tag and the policy has no gcp target with `node_ranges`; egress rule `{}` does not allow traffic to `self`",
                            rule.name
                        ),
                    )
                    .for_rule(&rule.name, rule.span)
                    .scoped(direction, rule.services.clone(), Peers { addrs: AddrSet::empty(), nodes: true }),
                );
            }
            Direction::Egress if node_ranges.is_empty() => {
                diags.push(
                    Diagnostic::error(
                        "gcp::egress-self-needs-ranges",
                        rule.span,
                        format!("egress rule `{}` names `self`, but GCP egress rules cannot select destinations by tag", rule.name),
                    )
                    .label("egress to `self`")
                    .help("add `node_ranges:` (the node subnets' CIDRs) to the gcp target"),
                );
                return;
            }
            Direction::Egress => {
                addrs = std::borrow::Cow::Owned(addrs.union(node_ranges));
                notes.push(
                    Note::new(
                        NoteCode::Approximated,
                        format!(
                            "GCP egress rules cannot name instances by tag; `self` in egress rule `{}` is written as the target's node_ranges, which also match any other machine in those ranges",
                            rule.name
                        ),
                    )
                    .for_rule(&rule.name, rule.span)
                    .scoped(direction, rule.services.clone(), Peers { addrs: node_ranges.clone(), nodes: true }),
                );
            }
        }
    }
    let typed_icmp: Vec<Service> = rule
        .services
        .iter()
        .filter_map(|s| match s {
            Service::Icmp { icmp } if *icmp != IcmpMatch::ALL => Some(Service::Icmp {
                icmp: IcmpMatch::ALL,
            }),
            Service::Icmpv6 { icmp } if *icmp != IcmpMatch::ALL => Some(Service::Icmpv6 {
                icmp: IcmpMatch::ALL,
            }),
            _ => None,
        })
        .collect();
    if !typed_icmp.is_empty() {
        let (code, how) = match rule.action {
            Verdict::Allow => (NoteCode::Widened, "allows every ICMP type"),
            Verdict::Deny => (NoteCode::Narrowed, "denies every ICMP type"),
        };
        let mut peers = rule.peers.clone();
        if direction == Direction::Egress && peers.nodes {
            peers.addrs = peers.addrs.union(node_ranges);
        }
        notes.push(
            Note::new(
                code,
                format!(
                    "GCP firewall rules cannot match ICMP types or codes; rule `{}` {how}",
                    rule.name
                ),
            )
            .for_rule(&rule.name, rule.span)
            .scoped(direction, typed_icmp, peers),
        );
    }
    let v4: Vec<String> = addrs.v4_cidrs().iter().map(ToString::to_string).collect();
    let v6: Vec<String> = addrs.v6_cidrs().iter().map(ToString::to_string).collect();
    // (name suffix, ranges, with tags, family filter)
    let mut pieces: Vec<(&str, Vec<String>, bool, Family)> = Vec::new();
    // `self` gets a piece of its own: a tag-only source has no address family, and keeping it
    // apart from IPv4 ranges lets it carry ICMPv6 too.
    if tags {
        pieces.push(("-self", Vec::new(), true, Family::Both));
    }
    if !v4.is_empty() {
        pieces.push(("", v4, false, Family::V4));
    }
    if !v6.is_empty() {
        pieces.push(("-v6", v6, false, Family::V6));
    }
    for (suffix, ranges, with_tags, family) in pieces {
        let protocols = protocols(&rule.services, family);
        if protocols.is_empty() {
            continue;
        }
        // Almost every rule fits in one chunk: move its ranges rather than copy them.
        let chunks: Vec<Vec<String>> = if ranges.len() <= RANGES_PER_RULE {
            vec![ranges]
        } else {
            ranges
                .chunks(RANGES_PER_RULE)
                .map(<[String]>::to_vec)
                .collect()
        };
        let last_chunk = chunks.len() - 1;
        let mut protocols = Some(protocols);
        for (k, chunk) in chunks.into_iter().enumerate() {
            let name = if k == 0 {
                format!("{}-{dir_letter}-{}{suffix}", intent.name, rule.name)
            } else {
                format!(
                    "{}-{dir_letter}-{}{suffix}-{}",
                    intent.name,
                    rule.name,
                    k + 1
                )
            };
            let (source_ranges, destination_ranges) = match direction {
                Direction::Ingress => (chunk, Vec::new()),
                Direction::Egress => (Vec::new(), chunk),
            };
            let list = if k == last_chunk {
                protocols.take().unwrap_or_default()
            } else {
                protocols.clone().unwrap_or_default()
            };
            let (allowed, denied) = match rule.action {
                Verdict::Allow => (list, Vec::new()),
                Verdict::Deny => (Vec::new(), list),
            };
            firewalls.push(Firewall {
                name,
                description: description(&intent.name, &rule.name),
                network: target.network.clone(),
                priority,
                direction: if direction == Direction::Ingress {
                    "INGRESS"
                } else {
                    "EGRESS"
                }
                .into(),
                source_ranges,
                source_tags: if with_tags && k == 0 {
                    target.target_tags.clone()
                } else {
                    Vec::new()
                },
                destination_ranges,
                target_tags: target.target_tags.clone(),
                allowed,
                denied,
                disabled: false,
                source_service_accounts: Vec::new(),
                target_service_accounts: Vec::new(),
            });
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
    Both,
}

/// The `allowed`/`denied` list for a rule's services, for one address family.
fn protocols(services: &[Service], family: Family) -> Vec<ProtocolPorts> {
    if services.contains(&Service::Any) {
        return vec![ProtocolPorts {
            ip_protocol: "all".into(),
            ports: Vec::new(),
        }];
    }
    let mut tcp = Vec::new();
    let mut udp = Vec::new();
    let mut tcp_all = false;
    let mut udp_all = false;
    let mut out = Vec::new();
    for s in services {
        match s {
            Service::Tcp { ports } if ports.is_all() => tcp_all = true,
            Service::Tcp { ports } => tcp.push(ports.to_string()),
            Service::Udp { ports } if ports.is_all() => udp_all = true,
            Service::Udp { ports } => udp.push(ports.to_string()),
            Service::Icmp { .. } if family != Family::V6 => {
                out.push(ProtocolPorts {
                    ip_protocol: "icmp".into(),
                    ports: Vec::new(),
                });
            }
            Service::Icmpv6 { .. } if family != Family::V4 => {
                out.push(ProtocolPorts {
                    ip_protocol: "58".into(),
                    ports: Vec::new(),
                });
            }
            Service::Protocol { number } => {
                out.push(ProtocolPorts {
                    ip_protocol: number.to_string(),
                    ports: Vec::new(),
                });
            }
            _ => {}
        }
    }
    if tcp_all || !tcp.is_empty() {
        out.push(ProtocolPorts {
            ip_protocol: "tcp".into(),
            ports: if tcp_all { Vec::new() } else { tcp },
        });
    }
    if udp_all || !udp.is_empty() {
        out.push(ProtocolPorts {
            ip_protocol: "udp".into(),
            ports: if udp_all { Vec::new() } else { udp },
        });
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use perimeter_core::policy::load_str;

    fn compile_str(body: &str) -> Result<GcpCompiled, Diagnostics> {
        let text = format!("apiVersion: perimeter/v1\nkind: NodePerimeter\nname: t\n{body}");
        let intent = load_str("t.yaml", &text).expect("valid policy");
        compile(&intent, &GcpTarget::placeholder("t"))
    }

    #[test]
    fn runs_of_same_action_share_a_priority_and_changes_move_on() {
        let c = compile_str(
            "ingress:\n  - {name: a, from: 10.0.0.0/8, services: [ssh]}\n  - {name: b, from: 10.1.0.0/16, services: [kubelet]}\n  - {name: c, action: deny, from: 10.2.0.0/16, services: [any]}\n  - {name: d, from: 10.0.0.0/8, services: [any]}\n",
        )
        .unwrap();
        let prio: Vec<(String, u16)> = c
            .firewalls
            .iter()
            .filter(|f| f.direction == "INGRESS")
            .map(|f| (f.name.clone(), f.priority))
            .collect();
        assert_eq!(
            prio,
            [
                ("t-i-a".into(), 1000),
                ("t-i-b".into(), 1000),
                ("t-i-c".into(), 1010),
                ("t-i-d".into(), 1020)
            ]
        );
    }

    #[test]
    fn more_than_256_ranges_split_into_rules_of_the_same_priority() {
        let cidrs: Vec<String> = (0..300)
            .map(|i| format!("10.{}.{}.0/24", i / 128, (i % 128) * 2))
            .collect();
        let c = compile_str(&format!(
            "ingress:\n  - {{name: many, from: [{}], services: [ssh]}}\n",
            cidrs.join(", ")
        ))
        .unwrap();
        let parts: Vec<(&str, usize, u16)> = c
            .firewalls
            .iter()
            .filter(|f| f.direction == "INGRESS")
            .map(|f| (f.name.as_str(), f.source_ranges.len(), f.priority))
            .collect();
        assert_eq!(parts, [("t-i-many", 256, 1000), ("t-i-many-2", 44, 1000)]);
    }

    #[test]
    fn private_egress_gets_explicit_denies_above_the_implied_allow() {
        let c = compile_str("private: true\n").unwrap();
        let names: Vec<&str> = c.firewalls.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["t-e-default-deny", "t-e-default-deny-v6"]);
        assert!(
            c.firewalls
                .iter()
                .all(|f| f.priority == EGRESS_DEFAULT_PRIORITY && !f.denied.is_empty())
        );
        assert!(
            compile_str("private: false\n")
                .unwrap()
                .firewalls
                .is_empty()
        );
    }

    #[test]
    fn names_over_63_characters_are_an_error() {
        let text = format!(
            "apiVersion: perimeter/v1\nkind: NodePerimeter\nname: {}\ningress:\n  - {{name: {}, from: \"fd00::/8\", services: [ssh]}}\n",
            "p".repeat(30),
            "r".repeat(30)
        );
        let intent = load_str("t.yaml", &text).unwrap();
        let err = compile(&intent, &GcpTarget::placeholder("t")).unwrap_err();
        assert_eq!(err.0[0].code, "gcp::name-too-long");
        // Located at the rule that made the name, not at 1:1.
        assert_eq!(err.0[0].span, Some(intent.ingress[0].span));
        assert!(
            err.0[0].message.contains("is 66 characters"),
            "{}",
            err.0[0].message
        );
    }
}
