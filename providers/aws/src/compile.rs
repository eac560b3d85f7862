//! Intent → AWS security group, network ACL and instance metadata options.
//!
//! A security group is stateful, allow-only and unordered: it holds the union of its rules.
//! The compiler therefore emits the *effective allowed set* of the ordered policy
//! (`perimeter_core::effective`): denies subtract from later allows by CIDR arithmetic, and
//! what remains is written as one rule per CIDR. `self` becomes a reference to the owned group.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use perimeter_core::effective::{Class, Effective, effective, icmp_selections};
use perimeter_core::intent::{IcmpMatch, MetadataMode, PortRange};
use perimeter_core::note::{PlatformAddress, addr_peers, platform_notes};
use perimeter_core::target::AwsTarget;
use perimeter_core::{
    AddrSet, Diagnostic, Diagnostics, Direction, Intent, Note, NoteCode, Peers, Service, Verdict,
};

use crate::model::{MetadataOptions, NetworkAcl, SecurityGroup, SgPeer, SgRule};
use crate::nacl;

/// Rules per security group, per direction, per address family (quota L-0EA8095F).
/// <https://docs.aws.amazon.com/vpc/latest/userguide/amazon-vpc-limits.html>
pub(crate) const SG_RULES_PER_DIRECTION_PER_FAMILY: usize = 60;

/// Longest rule description EC2 accepts.
pub(crate) const DESCRIPTION_MAX: usize = 255;

/// Everything perimeter wants in one AWS target.
#[derive(Clone, Debug)]
pub struct AwsCompiled {
    /// The target compiled for.
    pub target: AwsTarget,
    /// The owned security group.
    pub security_group: SecurityGroup,
    /// The owned network ACL, when the target asks for one.
    pub network_acl: Option<NetworkAcl>,
    /// Metadata options for the selected instances, unless the policy says `allow`.
    pub metadata_options: Option<MetadataOptions>,
    /// What could not be said exactly.
    pub notes: Vec<Note>,
}

/// AWS platform addresses that no security group or NACL filters.
/// <https://docs.aws.amazon.com/vpc/latest/userguide/vpc-security-groups.html>
pub(crate) fn platform_addresses(metadata: MetadataMode) -> Vec<PlatformAddress> {
    let imds_egress = if metadata == MetadataMode::DenyAll {
        Verdict::Deny
    } else {
        Verdict::Allow
    };
    let v4 = |a, b, c, d| IpAddr::V4(Ipv4Addr::new(a, b, c, d));
    let v6 = |last| IpAddr::V6(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, last));
    vec![
        PlatformAddress {
            addr: v4(169, 254, 169, 254),
            what: "instance metadata service",
            egress: imds_egress,
            ingress: Verdict::Allow,
        },
        PlatformAddress {
            addr: v6(0x254),
            what: "instance metadata service (IPv6)",
            egress: imds_egress,
            ingress: Verdict::Allow,
        },
        PlatformAddress {
            addr: v4(169, 254, 169, 253),
            what: "Amazon DNS resolver",
            egress: Verdict::Allow,
            ingress: Verdict::Allow,
        },
        PlatformAddress {
            addr: v6(0x253),
            what: "Amazon DNS resolver (IPv6)",
            egress: Verdict::Allow,
            ingress: Verdict::Allow,
        },
        PlatformAddress {
            addr: v4(169, 254, 169, 123),
            what: "Amazon Time Sync Service",
            egress: Verdict::Allow,
            ingress: Verdict::Allow,
        },
        PlatformAddress {
            addr: v6(0x123),
            what: "Amazon Time Sync Service (IPv6)",
            egress: Verdict::Allow,
            ingress: Verdict::Allow,
        },
    ]
}

/// The quotas the compiler checks. Both are adjustable per account; the defaults are AWS's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Security group rules per direction per address family.
    pub sg_rules: usize,
    /// NACL entries per direction per address family, including `*`.
    pub nacl_entries: usize,
}

impl Limits {
    /// AWS's default quotas.
    pub const AWS_DEFAULT: Limits = Limits {
        sg_rules: SG_RULES_PER_DIRECTION_PER_FAMILY,
        nacl_entries: nacl::NACL_ENTRIES_PER_DIRECTION_PER_FAMILY,
    };
    /// No limits (for proving semantics on policies larger than a default account allows).
    pub const UNLIMITED: Limits = Limits {
        sg_rules: usize::MAX,
        nacl_entries: usize::MAX,
    };
}

/// Compiles the intent for one AWS target with AWS's default quotas.
pub fn compile(intent: &Intent, target: &AwsTarget) -> Result<AwsCompiled, Diagnostics> {
    compile_with_limits(intent, target, Limits::AWS_DEFAULT)
}

/// Compiles the intent for one AWS target, checking the given quotas.
pub fn compile_with_limits(
    intent: &Intent,
    target: &AwsTarget,
    limits: Limits,
) -> Result<AwsCompiled, Diagnostics> {
    let mut diags = Diagnostics::default();
    let mut notes = Vec::new();
    let mut rules = Vec::new();
    // One effective set per direction, shared by the security group and the NACL.
    let effectives = Direction::BOTH.map(|d| effective(intent.rules(d), intent.default_verdict(d)));
    for (direction, eff) in Direction::BOTH.into_iter().zip(&effectives) {
        rules.extend(sg_rules(intent, direction, eff, &mut notes));
        for w in &eff.node_widenings {
            notes.push(
                Note::new(
                    NoteCode::Widened,
                    format!(
                        "a security group allows its own members by reference, whatever their address; nodes at {} are allowed {} on {} although an earlier rule decides that address differently",
                        describe_addrs(&w.addrs),
                        direction.as_str(),
                        describe_class(w.class, w.ports)
                    ),
                )
                .scoped(direction, vec![scope_service(w.class, w.ports)], addr_peers(w.addrs.clone())),
            );
        }
    }
    rules.sort();
    rules.dedup();
    check_quota(intent, target, &rules, limits.sg_rules, &mut diags);

    let allows_all_egress = rules.iter().any(|r| {
        r.direction == Direction::Egress
            && r.ip_protocol == "-1"
            && r.peer == SgPeer::CidrIpv4(perimeter_core::Cidr::ANY_V4)
    });
    if !allows_all_egress {
        notes.push(Note::new(
            NoteCode::Info,
            "a new security group comes with an allow-all egress rule (0.0.0.0/0); the policy does not allow all egress, so perimeter removes it",
        ));
    }

    let metadata_options = match intent.metadata {
        MetadataMode::DenyPods => Some(MetadataOptions {
            http_endpoint: "enabled".into(),
            http_tokens: Some("required".into()),
            http_put_response_hop_limit: Some(1),
        }),
        MetadataMode::DenyAll => Some(MetadataOptions {
            http_endpoint: "disabled".into(),
            http_tokens: None,
            http_put_response_hop_limit: None,
        }),
        MetadataMode::Allow => None,
    };
    if intent.metadata != MetadataMode::Allow {
        let selector = if target.instances.is_empty() {
            "the target's instances (no `instances.tags` selector is set, so none are selected)"
                .to_string()
        } else {
            let tags: Vec<String> = target
                .instances
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            format!("instances tagged {}", tags.join(", "))
        };
        notes.push(
            Note::new(
                NoteCode::Info,
                format!(
                    "metadata: {} is enforced by instance metadata options on {selector}, not by a packet rule: security groups, network ACLs and routes cannot filter 169.254.169.254",
                    intent.metadata.as_str()
                ),
            )
            .for_rule("metadata", intent.metadata_span),
        );
    }
    notes.extend(platform_notes(
        intent,
        "AWS",
        &platform_addresses(intent.metadata),
    ));

    let network_acl = match &target.network_acl {
        Some(nacl_target) => {
            match nacl::compile(
                intent,
                &effectives,
                target,
                nacl_target,
                limits.nacl_entries,
            ) {
                Ok(n) => Some(n),
                Err(d) => {
                    diags.0.extend(d.0);
                    None
                }
            }
        }
        None => None,
    };
    if diags.has_errors() {
        return Err(diags);
    }
    Ok(AwsCompiled {
        target: target.clone(),
        security_group: SecurityGroup {
            group_name: target.security_group.clone(),
            vpc_id: target.vpc.clone(),
            description: sanitize_description(&format!(
                "perimeter: node perimeter {}",
                intent.name
            )),
            rules,
        },
        network_acl,
        metadata_options,
        notes,
    })
}

/// Security group rules for one direction from its effective allowed set.
fn sg_rules(
    intent: &Intent,
    direction: Direction,
    eff: &Effective,
    notes: &mut Vec<Note>,
) -> Vec<SgRule> {
    // Addresses allowed for every protocol and port can be one `-1` rule each.
    let mut any_v4 = AddrSet::everything().only_v4();
    let mut any_v6 = AddrSet::everything().only_v6();
    let mut any_nodes = true;
    let mut any_rules = std::collections::BTreeSet::new();
    for class in eff.classes() {
        let (addrs, nodes) = eff.allowed_on_all_ports(class);
        if class != Class::Icmpv6 {
            any_v4 = any_v4.intersection(&addrs.only_v4());
        }
        if class != Class::Icmp {
            any_v6 = any_v6.intersection(&addrs.only_v6());
        }
        any_nodes &= nodes;
    }
    let any = any_v4.union(&any_v6);
    for cell in &eff.cells {
        if cell.addrs.intersection(&any).is_empty() && !(any_nodes && cell.nodes) {
            continue;
        }
        any_rules.extend(cell.rules.iter().cloned());
    }
    let mut out = Vec::new();
    let rule_names = |set: &std::collections::BTreeSet<usize>| -> Vec<String> {
        let rules = intent.rules(direction);
        set.iter().map(|&i| rules[i].name.clone()).collect()
    };
    let desc_any = description(&intent.name, rule_names(&any_rules).iter());
    let push = |proto: &str,
                from: i32,
                to: i32,
                addrs: &AddrSet,
                nodes: bool,
                desc: &str,
                out: &mut Vec<SgRule>| {
        for c in addrs.to_cidrs() {
            let peer = if c.is_ipv4() {
                SgPeer::CidrIpv4(c)
            } else {
                SgPeer::CidrIpv6(c)
            };
            out.push(SgRule {
                direction,
                ip_protocol: proto.into(),
                from_port: from,
                to_port: to,
                peer,
                description: desc.into(),
            });
        }
        // A node has an address of the class's family; when every such address is allowed,
        // a group reference would only repeat it.
        if nodes && !covers_family(addrs, proto) {
            out.push(SgRule {
                direction,
                ip_protocol: proto.into(),
                from_port: from,
                to_port: to,
                peer: SgPeer::OwnGroup,
                description: desc.into(),
            });
        }
    };
    push("-1", -1, -1, &any, any_nodes, &desc_any, &mut out);

    for cell in &eff.cells {
        let rest = cell.addrs.difference(&any);
        let nodes = cell.nodes && !any_nodes;
        if rest.is_empty() && !nodes {
            continue;
        }
        let desc = description(&intent.name, rule_names(&cell.rules).iter());
        let (lo, hi) = cell.ports;
        match cell.class {
            Class::Tcp | Class::Udp => {
                let proto = if cell.class == Class::Tcp {
                    "tcp"
                } else {
                    "udp"
                };
                push(
                    proto,
                    i32::from(lo),
                    i32::from(hi),
                    &rest,
                    nodes,
                    &desc,
                    &mut out,
                );
            }
            Class::Icmp | Class::Icmpv6 => {
                let proto = if cell.class == Class::Icmp {
                    "icmp"
                } else {
                    "icmpv6"
                };
                for (t, c) in icmp_selections(lo, hi) {
                    let t = t.map_or(-1, i32::from);
                    let c = c.map_or(-1, i32::from);
                    push(proto, t, c, &rest, nodes, &desc, &mut out);
                }
            }
            Class::Protocol(n) => push(&n.to_string(), -1, -1, &rest, nodes, &desc, &mut out),
            Class::OtherProtocols => {
                // Only `-1` can name "every protocol not listed"; using it here would also allow
                // the listed protocols, which the policy decides otherwise. Say so instead.
                let rules = rule_names(&cell.rules);
                notes.push(
                    Note::new(
                        NoteCode::Narrowed,
                        format!(
                            "a security group cannot allow \"all other IP protocols\" without also allowing the protocols the policy treats separately; {} of protocols other than those named in the policy is not allowed for {} (rules: {})",
                            direction.as_str(),
                            describe_addrs(&rest),
                            rules.join(", ")
                        ),
                    )
                    .scoped(direction, vec![Service::Any], Peers { addrs: rest.clone(), nodes }),
                );
            }
        }
    }
    out
}

/// True when `addrs` holds every address a packet of `proto` can have.
fn covers_family(addrs: &AddrSet, proto: &str) -> bool {
    match proto {
        "icmp" => addrs.v4.is_full(),
        "icmpv6" => addrs.v6.is_full(),
        _ => addrs.v4.is_full() && addrs.v6.is_full(),
    }
}

fn check_quota(
    intent: &Intent,
    target: &AwsTarget,
    rules: &[SgRule],
    limit: usize,
    diags: &mut Diagnostics,
) {
    for direction in Direction::BOTH {
        let in_dir = || rules.iter().filter(|r| r.direction == direction);
        let groups = in_dir().filter(|r| r.peer == SgPeer::OwnGroup).count();
        let v4 = in_dir()
            .filter(|r| matches!(r.peer, SgPeer::CidrIpv4(_)))
            .count()
            + groups;
        let v6 = in_dir()
            .filter(|r| matches!(r.peer, SgPeer::CidrIpv6(_)))
            .count()
            + groups;
        for (family, count) in [("IPv4", v4), ("IPv6", v6)] {
            if count > limit {
                let span = intent
                    .rules(direction)
                    .first()
                    .map_or(target.span, |r| r.span);
                diags.push(
                    Diagnostic::error(
                        "aws::sg-rule-quota",
                        span,
                        format!(
                            "AWS security group `{}` would need {count} {} {family} rules; the quota is {limit} per direction per address family",
                            target.security_group,
                            direction.as_str()
                        ),
                    )
                    .label(format!("the {} rules starting here compile to {count} {family} rules", direction.as_str()))
                    .help("each CIDR and each port range is one rule: aggregate networks, merge port ranges, or move deny-then-allow patterns (which split CIDRs) to aligned blocks; quota code L-0EA8095F"),
                );
            }
        }
    }
}

/// `perimeter:<policy> <rule>,<rule>` within EC2's description charset and length.
fn description<'a>(policy: &str, rules: impl Iterator<Item = &'a String>) -> String {
    let names: Vec<&str> = rules.map(String::as_str).collect();
    let text = if names.is_empty() {
        format!("perimeter:{policy}")
    } else {
        format!("perimeter:{policy} {}", names.join(","))
    };
    sanitize_description(&text)
}

/// Keeps only characters EC2 accepts in descriptions (`a-zA-Z0-9. _-:/()#,@[]+=&;{}!$*`) and
/// truncates to 255 characters.
pub(crate) fn sanitize_description(text: &str) -> String {
    const EXTRA: &str = ". _-:/()#,@[]+=&;{}!$*";
    let clean: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || EXTRA.contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    clean.chars().take(DESCRIPTION_MAX).collect()
}

/// A short human description of an address set.
pub(crate) fn describe_addrs(addrs: &AddrSet) -> String {
    let cidrs = addrs.to_cidrs();
    match cidrs.len() {
        0 => "no address".into(),
        1..=3 => cidrs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        n => format!("{}, {} and {} more", cidrs[0], cidrs[1], n - 2),
    }
}

fn describe_class(class: Class, (lo, hi): (u16, u16)) -> String {
    match class {
        Class::Tcp => format!(
            "tcp/{}",
            PortRange {
                first: lo,
                last: hi
            }
        ),
        Class::Udp => format!(
            "udp/{}",
            PortRange {
                first: lo,
                last: hi
            }
        ),
        Class::Icmp => "icmp".into(),
        Class::Icmpv6 => "icmpv6".into(),
        Class::Protocol(n) => format!("protocol {n}"),
        Class::OtherProtocols => "other protocols".into(),
    }
}

/// A service covering at least the class and port interval (ICMP intervals widen to all ICMP).
pub(crate) fn scope_service(class: Class, (lo, hi): (u16, u16)) -> Service {
    match class {
        Class::Tcp => Service::Tcp {
            ports: PortRange {
                first: lo,
                last: hi,
            },
        },
        Class::Udp => Service::Udp {
            ports: PortRange {
                first: lo,
                last: hi,
            },
        },
        Class::Icmp => Service::Icmp {
            icmp: IcmpMatch::ALL,
        },
        Class::Icmpv6 => Service::Icmpv6 {
            icmp: IcmpMatch::ALL,
        },
        Class::Protocol(number) => Service::Protocol { number },
        Class::OtherProtocols => Service::Any,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use perimeter_core::policy::load_str;

    fn compile_str(body: &str) -> Result<AwsCompiled, Diagnostics> {
        let text = format!("apiVersion: perimeter/v1\nkind: NodePerimeter\nname: t\n{body}");
        let intent = load_str("t.yaml", &text).expect("valid policy");
        compile(&intent, &AwsTarget::placeholder("t"))
    }

    #[test]
    fn descriptions_keep_to_the_ec2_charset() {
        assert_eq!(sanitize_description("it's <ok> — yes"), "it_s _ok_ _ yes");
        assert_eq!(
            sanitize_description(&"x".repeat(300)).len(),
            DESCRIPTION_MAX
        );
    }

    #[test]
    fn open_egress_is_one_allow_all_rule_per_family_and_no_removal_note() {
        let c = compile_str("private: false\n").unwrap();
        let egress: Vec<&SgRule> = c.security_group.rules(Direction::Egress).collect();
        assert_eq!(egress.len(), 2);
        assert!(egress.iter().all(|r| r.ip_protocol == "-1"));
        assert!(
            !c.notes
                .iter()
                .any(|n| n.message.contains("allow-all egress rule"))
        );
    }

    #[test]
    fn private_egress_removes_the_default_rule_and_says_so() {
        let c = compile_str("private: true\n").unwrap();
        assert_eq!(c.security_group.rules(Direction::Egress).count(), 0);
        assert!(
            c.notes
                .iter()
                .any(|n| n.code == NoteCode::Info && n.message.contains("allow-all egress rule"))
        );
    }

    #[test]
    fn a_group_reference_counts_against_both_families() {
        // 59 IPv6 CIDRs plus one `self` reference is 60 IPv6 rules: exactly the quota.
        let cidrs: Vec<String> = (0..59)
            .map(|i| format!("\"fd00:{:x}::/32\"", 2 * i))
            .collect();
        let body = format!(
            "ingress:\n  - {{name: r, from: [self, {}], services: [ssh]}}\n",
            cidrs.join(", ")
        );
        assert!(compile_str(&body).is_ok());
        let cidrs: Vec<String> = (0..60)
            .map(|i| format!("\"fd00:{:x}::/32\"", 2 * i))
            .collect();
        let body = format!(
            "ingress:\n  - {{name: r, from: [self, {}], services: [ssh]}}\n",
            cidrs.join(", ")
        );
        let err = compile_str(&body).unwrap_err();
        assert_eq!(err.0[0].code, "aws::sg-rule-quota");
        assert!(
            err.0[0].message.contains("61 ingress IPv6 rules"),
            "{}",
            err.0[0].message
        );
    }

    #[test]
    fn deny_all_metadata_disables_the_endpoint() {
        let c = compile_str("metadata: deny-all\n").unwrap();
        let m = c.metadata_options.unwrap();
        assert_eq!(m.http_endpoint, "disabled");
        let c = compile_str("metadata: allow\n").unwrap();
        assert!(c.metadata_options.is_none());
    }
}
