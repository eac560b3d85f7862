//! Intent → Azure NSG security rules.
//!
//! An NSG is evaluated by priority (100-4096, unique per direction), first match wins, then
//! the built-in defaults (AllowVNetInBound, AllowAzureLoadBalancerInBound,
//! AllowInternetOutBound, ... at 65000+). The compiler gives policy rule *i* a block of
//! priorities starting at `110 + block·i` (100-109 are kept for perimeter's own platform
//! rules) and ends each direction with an explicit rule at 4096 that states the policy's
//! default, so the Azure defaults never decide anything.
//!
//! One NSG rule has one protocol and one kind of source (prefixes, one service tag, or
//! application security groups), so a policy rule becomes one NSG rule per protocol and peer
//! kind. `self` is the nodes' application security group. Azure has no IP-in-IP or GRE: such
//! protocols become `*` with a note.

use std::net::{IpAddr, Ipv4Addr};

use perimeter_core::intent::{IcmpMatch, MetadataMode, Rule, proto};
use perimeter_core::note::{PlatformAddress, platform_notes};
use perimeter_core::target::AzureTarget;
use perimeter_core::{
    Diagnostic, Diagnostics, Direction, Intent, Note, NoteCode, Service, Verdict,
};

use crate::model::{ResourceRef, SecurityRule, SecurityRuleProperties};

/// Lowest user priority.
pub(crate) const PRIORITY_MIN: u16 = 100;
/// Highest user priority; perimeter puts each direction's default here.
pub(crate) const PRIORITY_MAX: u16 = 4096;
/// First priority of policy rules; 100-109 are for platform rules (metadata).
pub(crate) const FIRST_RULE_PRIORITY: u16 = 110;
/// Security rules per NSG.
/// <https://learn.microsoft.com/azure/azure-resource-manager/management/azure-subscription-service-limits>
pub(crate) const RULES_PER_NSG: usize = 1000;
/// Longest rule name.
pub(crate) const NAME_MAX: usize = 80;
/// Most prefixes in one rule's source or destination.
pub(crate) const PREFIXES_PER_RULE: usize = 4000;

/// Everything perimeter wants in one NSG.
#[derive(Clone, Debug)]
pub struct AzureCompiled {
    /// The target compiled for.
    pub target: AzureTarget,
    /// Security rules, by direction and priority.
    pub rules: Vec<SecurityRule>,
    /// What could not be said exactly.
    pub notes: Vec<Note>,
}

/// Azure platform addresses NSGs do not filter unless a rule names their service tag.
/// <https://learn.microsoft.com/azure/virtual-network/network-security-groups-overview#azure-platform-considerations>
pub(crate) fn platform_addresses(metadata: MetadataMode) -> Vec<PlatformAddress> {
    vec![
        PlatformAddress {
            addr: IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)),
            what: "instance metadata service (IMDS)",
            egress: if metadata == MetadataMode::DenyAll {
                Verdict::Deny
            } else {
                Verdict::Allow
            },
            ingress: Verdict::Allow,
        },
        PlatformAddress {
            addr: IpAddr::V4(Ipv4Addr::new(168, 63, 129, 16)),
            what: "platform host (WireServer: DNS, DHCP, health probes, VM agent)",
            egress: Verdict::Allow,
            ingress: Verdict::Allow,
        },
    ]
}

/// The ARM id of an application security group.
pub fn asg_id(target: &AzureTarget) -> String {
    format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Network/applicationSecurityGroups/{}",
        target.subscription, target.resource_group, target.application_security_group
    )
}

#[derive(Clone, PartialEq, Eq, Debug)]
enum PeerForm {
    /// Every address: `*`.
    Star,
    V4(Vec<String>),
    V6(Vec<String>),
    Asg,
}

impl PeerForm {
    fn suffix(&self) -> &'static str {
        match self {
            PeerForm::Star | PeerForm::V4(_) => "",
            PeerForm::V6(_) => "-v6",
            PeerForm::Asg => "-self",
        }
    }
}

/// One protocol part of a rule: Azure protocol, destination ports (empty: `*`), and which
/// families it applies to.
#[derive(Clone, PartialEq, Eq, Debug)]
struct ProtocolPart {
    protocol: &'static str,
    ports: Vec<String>,
    v4: bool,
    v6: bool,
}

fn protocol_parts(services: &[Service]) -> (Vec<ProtocolPart>, Vec<u8>) {
    if services.contains(&Service::Any) {
        return (
            vec![ProtocolPart {
                protocol: "*",
                ports: Vec::new(),
                v4: true,
                v6: true,
            }],
            Vec::new(),
        );
    }
    let mut tcp = Vec::new();
    let mut udp = Vec::new();
    let (mut tcp_all, mut udp_all, mut icmp4, mut icmp6, mut esp, mut ah) =
        (false, false, false, false, false, false);
    let mut widened = Vec::new();
    for s in services {
        match s {
            Service::Tcp { ports } if ports.is_all() => tcp_all = true,
            Service::Tcp { ports } => tcp.push(ports.to_string()),
            Service::Udp { ports } if ports.is_all() => udp_all = true,
            Service::Udp { ports } => udp.push(ports.to_string()),
            Service::Icmp { .. } => icmp4 = true,
            Service::Icmpv6 { .. } => icmp6 = true,
            Service::Protocol { number: proto::ESP } => esp = true,
            Service::Protocol { number: proto::AH } => ah = true,
            Service::Protocol { number } => widened.push(*number),
            Service::Any => {}
        }
    }
    let mut parts = Vec::new();
    if !widened.is_empty() {
        parts.push(ProtocolPart {
            protocol: "*",
            ports: Vec::new(),
            v4: true,
            v6: true,
        });
    }
    if tcp_all || !tcp.is_empty() {
        parts.push(ProtocolPart {
            protocol: "Tcp",
            ports: if tcp_all { Vec::new() } else { tcp },
            v4: true,
            v6: true,
        });
    }
    if udp_all || !udp.is_empty() {
        parts.push(ProtocolPart {
            protocol: "Udp",
            ports: if udp_all { Vec::new() } else { udp },
            v4: true,
            v6: true,
        });
    }
    if icmp4 || icmp6 {
        parts.push(ProtocolPart {
            protocol: "Icmp",
            ports: Vec::new(),
            v4: icmp4,
            v6: icmp6,
        });
    }
    if esp {
        parts.push(ProtocolPart {
            protocol: "Esp",
            ports: Vec::new(),
            v4: true,
            v6: true,
        });
    }
    if ah {
        parts.push(ProtocolPart {
            protocol: "Ah",
            ports: Vec::new(),
            v4: true,
            v6: true,
        });
    }
    (parts, widened)
}

fn peer_forms(rule: &Rule) -> Vec<PeerForm> {
    let mut forms = Vec::new();
    let addrs = &rule.peers.addrs;
    if addrs.v4.is_full() && addrs.v6.is_full() {
        forms.push(PeerForm::Star);
    } else {
        let v4: Vec<String> = addrs.v4_cidrs().iter().map(ToString::to_string).collect();
        let v6: Vec<String> = addrs.v6_cidrs().iter().map(ToString::to_string).collect();
        if !v4.is_empty() {
            forms.push(PeerForm::V4(v4));
        }
        if !v6.is_empty() {
            forms.push(PeerForm::V6(v6));
        }
    }
    if rule.peers.nodes {
        forms.push(PeerForm::Asg);
    }
    forms
}

fn applies(part: &ProtocolPart, form: &PeerForm) -> bool {
    match form {
        PeerForm::V4(_) => part.v4,
        PeerForm::V6(_) => part.v6,
        PeerForm::Star | PeerForm::Asg => true,
    }
}

fn short_protocol(p: &str) -> &'static str {
    match p {
        "Tcp" => "tcp",
        "Udp" => "udp",
        "Icmp" => "icmp",
        "Esp" => "esp",
        "Ah" => "ah",
        _ => "any",
    }
}

/// How one policy rule splits into NSG rules.
struct RuleShape<'a> {
    rule: &'a Rule,
    /// One per Azure protocol.
    parts: Vec<ProtocolPart>,
    /// Protocol numbers Azure lacks, written as `*`.
    widened: Vec<u8>,
    /// One per kind of peer (IPv4 prefixes, IPv6 prefixes, `*`, the nodes' ASG).
    forms: Vec<PeerForm>,
}

struct Emit<'a> {
    target: &'a AzureTarget,
    policy: &'a str,
}

impl Emit<'_> {
    #[allow(clippy::too_many_arguments)]
    fn rule(
        &self,
        name: String,
        what: &str,
        direction: Direction,
        access: Verdict,
        priority: u16,
        protocol: &str,
        ports: &[String],
        form: &PeerForm,
    ) -> SecurityRule {
        let mut p = SecurityRuleProperties {
            description: format!("perimeter:{} {what}", self.policy),
            protocol: protocol.into(),
            source_port_range: "*".into(),
            destination_port_range: None,
            destination_port_ranges: Vec::new(),
            source_address_prefix: None,
            source_address_prefixes: Vec::new(),
            source_application_security_groups: Vec::new(),
            destination_address_prefix: None,
            destination_address_prefixes: Vec::new(),
            destination_application_security_groups: Vec::new(),
            access: if access == Verdict::Allow {
                "Allow"
            } else {
                "Deny"
            }
            .into(),
            priority,
            direction: if direction == Direction::Ingress {
                "Inbound"
            } else {
                "Outbound"
            }
            .into(),
        };
        match ports {
            [] => p.destination_port_range = Some("*".into()),
            [one] => p.destination_port_range = Some(one.clone()),
            many => p.destination_port_ranges = many.to_vec(),
        }
        // The peer goes on the far side: the source of inbound, the destination of outbound.
        let (prefix, prefixes, asgs, other_prefix) = match direction {
            Direction::Ingress => (
                &mut p.source_address_prefix,
                &mut p.source_address_prefixes,
                &mut p.source_application_security_groups,
                &mut p.destination_address_prefix,
            ),
            Direction::Egress => (
                &mut p.destination_address_prefix,
                &mut p.destination_address_prefixes,
                &mut p.destination_application_security_groups,
                &mut p.source_address_prefix,
            ),
        };
        *other_prefix = Some("*".into());
        match form {
            PeerForm::Star => *prefix = Some("*".into()),
            PeerForm::V4(list) | PeerForm::V6(list) if list.len() == 1 => {
                *prefix = Some(list[0].clone())
            }
            PeerForm::V4(list) | PeerForm::V6(list) => *prefixes = list.clone(),
            PeerForm::Asg => asgs.push(ResourceRef {
                id: asg_id(self.target),
            }),
        }
        SecurityRule {
            name,
            properties: p,
        }
    }
}

/// Compiles the intent for one NSG.
pub fn compile(intent: &Intent, target: &AzureTarget) -> Result<AzureCompiled, Diagnostics> {
    let mut diags = Diagnostics::default();
    let mut notes = Vec::new();
    let mut rules = Vec::new();
    let emit = Emit {
        target,
        policy: &intent.name,
    };

    if intent.metadata == MetadataMode::DenyAll {
        let mut r = emit.rule(
            format!("{}-out-metadata-deny", intent.name),
            "metadata: deny-all",
            Direction::Egress,
            Verdict::Deny,
            PRIORITY_MIN,
            "*",
            &[],
            &PeerForm::Star,
        );
        r.properties.destination_address_prefix = Some("AzurePlatformIMDS".into());
        rules.push(r);
        notes.push(
            Note::new(
                NoteCode::SideEffect,
                "metadata: deny-all is an outbound deny to service tag AzurePlatformIMDS; it also stops managed identity token requests and the VM's own use of IMDS",
            )
            .for_rule("metadata", intent.metadata_span),
        );
    } else if intent.metadata == MetadataMode::DenyPods {
        notes.push(
            Note::new(
                NoteCode::Unenforceable,
                "metadata: deny-pods cannot be enforced by an NSG, which cannot tell pods from their node; on AKS use Microsoft Entra Workload ID and block IMDS for pods with a network policy",
            )
            .for_rule("metadata", intent.metadata_span),
        );
    }

    for direction in Direction::BOTH {
        let dir = if direction == Direction::Ingress {
            "in"
        } else {
            "out"
        };
        let compiled: Vec<RuleShape<'_>> = intent
            .rules(direction)
            .iter()
            .map(|r| {
                let (parts, widened) = protocol_parts(&r.services);
                RuleShape {
                    rule: r,
                    parts,
                    widened,
                    forms: peer_forms(r),
                }
            })
            .collect();
        let max_parts = compiled
            .iter()
            .map(|RuleShape { parts, forms, .. }| {
                forms
                    .iter()
                    .map(|f| parts.iter().filter(|p| applies(p, f)).count())
                    .sum::<usize>()
            })
            .max()
            .unwrap_or(0);
        let block = (max_parts.div_ceil(10).max(1) * 10) as u32;
        let mut exhausted = false;
        for (
            i,
            RuleShape {
                rule,
                parts,
                widened,
                forms,
            },
        ) in compiled.iter().enumerate()
        {
            let base = u32::from(FIRST_RULE_PRIORITY) + block * i as u32;
            let mut offset = 0u32;
            'forms: for form in forms {
                for part in parts.iter().filter(|p| applies(p, form)) {
                    let priority = base + offset;
                    offset += 1;
                    if priority >= u32::from(PRIORITY_MAX) {
                        // One diagnostic for the first rule that does not fit, not one per rule.
                        if !exhausted {
                            let over = compiled.len() - i;
                            diags.push(
                                Diagnostic::error(
                                    "azure::priority-exhausted",
                                    rule.span,
                                    format!(
                                        "{} rule `{}` needs NSG priority {priority} ({over} rules from here on do not fit); Azure priorities end at {PRIORITY_MAX}, which perimeter keeps for the default",
                                        direction.as_str(),
                                        rule.name
                                    ),
                                )
                                .label("the first rule that does not fit")
                                .help(format!("each policy rule gets a block of {block} priorities; use fewer rules, or fewer protocols and peer kinds per rule")),
                            );
                        }
                        exhausted = true;
                        break 'forms;
                    }
                    let name = format!(
                        "{}-{dir}-{}-{}{}",
                        intent.name,
                        rule.name,
                        short_protocol(part.protocol),
                        form.suffix()
                    );
                    // Azure's `Icmp` is ICMP and ICMPv6 at once. For every address, a
                    // one-family ICMP rule names that family's whole space instead of `*`.
                    let single_family_icmp = part.protocol == "Icmp" && part.v4 != part.v6;
                    let form = match form {
                        PeerForm::Star if single_family_icmp && part.v4 => {
                            &PeerForm::V4(vec!["0.0.0.0/0".into()])
                        }
                        PeerForm::Star if single_family_icmp => &PeerForm::V6(vec!["::/0".into()]),
                        other => other,
                    };
                    if *form == PeerForm::Asg && single_family_icmp {
                        let (code, how) = match rule.action {
                            Verdict::Allow => (NoteCode::Widened, "also allows"),
                            Verdict::Deny => (NoteCode::Narrowed, "also denies"),
                        };
                        let (other, other_name) = if part.v4 {
                            (
                                Service::Icmpv6 {
                                    icmp: IcmpMatch::ALL,
                                },
                                "ICMPv6",
                            )
                        } else {
                            (
                                Service::Icmp {
                                    icmp: IcmpMatch::ALL,
                                },
                                "ICMP for IPv4",
                            )
                        };
                        notes.push(
                            Note::new(
                                code,
                                format!("Azure's Icmp protocol covers ICMP and ICMPv6 together; for `self`, rule `{}` {how} {other_name}", rule.name),
                            )
                            .for_rule(&rule.name, rule.span)
                            .scoped(direction, vec![other], perimeter_core::Peers { addrs: perimeter_core::AddrSet::empty(), nodes: true }),
                        );
                    }
                    rules.push(emit.rule(
                        name,
                        &rule.name,
                        direction,
                        rule.action,
                        priority as u16,
                        part.protocol,
                        &part.ports,
                        form,
                    ));
                }
            }
            if !widened.is_empty() {
                let (code, how) = match rule.action {
                    Verdict::Allow => (NoteCode::Widened, "allows every protocol"),
                    Verdict::Deny => (NoteCode::Narrowed, "denies every protocol"),
                };
                let list: Vec<String> = widened.iter().map(ToString::to_string).collect();
                notes.push(
                    Note::new(
                        code,
                        format!(
                            "Azure NSGs support only TCP, UDP, ICMP, ESP and AH; for IP protocol {} rule `{}` {how} (`*`) for its peers",
                            list.join(", "),
                            rule.name
                        ),
                    )
                    .for_rule(&rule.name, rule.span)
                    .scoped(direction, vec![Service::Any], rule.peers.clone()),
                );
            }
            let typed_icmp = rule.services.iter().any(|s| {
                matches!(s, Service::Icmp { icmp } | Service::Icmpv6 { icmp } if *icmp != IcmpMatch::ALL)
            });
            if typed_icmp {
                let (code, how) = match rule.action {
                    Verdict::Allow => (NoteCode::Widened, "allows every ICMP type"),
                    Verdict::Deny => (NoteCode::Narrowed, "denies every ICMP type"),
                };
                notes.push(
                    Note::new(
                        code,
                        format!(
                            "Azure NSGs cannot match ICMP types; rule `{}` {how}",
                            rule.name
                        ),
                    )
                    .for_rule(&rule.name, rule.span)
                    .scoped(
                        direction,
                        vec![
                            Service::Icmp {
                                icmp: IcmpMatch::ALL,
                            },
                            Service::Icmpv6 {
                                icmp: IcmpMatch::ALL,
                            },
                        ],
                        rule.peers.clone(),
                    ),
                );
            }
        }
        let default = intent.default_verdict(direction);
        rules.push(emit.rule(
            format!("{}-{dir}-default-{}", intent.name, default.as_str()),
            &format!("default {} {}", direction.as_str(), default.as_str()),
            direction,
            default,
            PRIORITY_MAX,
            "*",
            &[],
            &PeerForm::Star,
        ));
    }

    if rules.len() > RULES_PER_NSG {
        diags.push(
            Diagnostic::error(
                "azure::rule-quota",
                target.span,
                format!(
                    "NSG `{}` would hold {} rules; Azure allows {RULES_PER_NSG}",
                    target.nsg,
                    rules.len()
                ),
            )
            .label("this target")
            .help("each policy rule becomes one NSG rule per protocol and peer kind; merge rules"),
        );
    }
    for r in &rules {
        let p = &r.properties;
        if r.name.len() > NAME_MAX {
            diags.push(
                Diagnostic::error(
                    "azure::name-too-long",
                    intent
                        .rule_span_for_name(&r.name, "in", "out")
                        .unwrap_or(target.span),
                    format!(
                        "NSG rule name `{}` is {} characters; Azure allows {NAME_MAX}",
                        r.name,
                        r.name.len()
                    ),
                )
                .label("names are <policy>-<in|out>-<rule>-<protocol>[-v6|-self]")
                .help("shorten the policy name or the rule name"),
            );
        }
        let count = p
            .source_address_prefixes
            .len()
            .max(p.destination_address_prefixes.len());
        if count > PREFIXES_PER_RULE {
            diags.push(
                Diagnostic::error(
                    "azure::prefix-quota",
                    intent
                        .rule_span_for_name(&r.name, "in", "out")
                        .unwrap_or(target.span),
                    format!(
                        "NSG rule `{}` would list {count} prefixes; Azure allows {PREFIXES_PER_RULE}",
                        r.name
                    ),
                )
                .label("this rule's peers")
                .help("split the rule's peers over several rules, or summarise them in fewer CIDRs"),
            );
        }
    }
    notes.extend(platform_notes(
        intent,
        "Azure",
        &platform_addresses(intent.metadata),
    ));
    if diags.has_errors() {
        return Err(diags);
    }
    rules.sort_by(|a, b| {
        (&a.properties.direction, a.properties.priority)
            .cmp(&(&b.properties.direction, b.properties.priority))
    });
    Ok(AzureCompiled {
        target: target.clone(),
        rules,
        notes,
    })
}

#[cfg(test)]
mod tests;
