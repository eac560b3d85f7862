//! A plan for people: Terraform's symbols (`+ ~ -`), one line per rule, field-level before →
//! after for changes (word diffs by `similar`), colour only when asked; and Markdown for
//! pull-request comments.

use std::fmt::Write as _;

use perimeter_core::plan::Action;

use crate::model::{MetadataOptions, NaclEntry, SgRule};
use crate::plan::AwsTargetPlan;
use crate::render::sg_peer;

/// ANSI styling, or none.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Style {
    /// Emit ANSI colour codes.
    pub color: bool,
}

impl Style {
    fn paint(&self, action: Action, text: &str) -> String {
        if !self.color {
            return text.to_string();
        }
        let code = match action {
            Action::Create => "32",
            Action::Update => "33",
            Action::Delete => "31",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    }
}

fn ports(r: &SgRule) -> String {
    match (r.ip_protocol.as_str(), r.from_port, r.to_port) {
        ("-1", _, _) => "traffic".into(),
        ("icmp" | "icmpv6", -1, _) => "all types".into(),
        ("icmp" | "icmpv6", t, -1) => format!("type {t}"),
        ("icmp" | "icmpv6", t, c) => format!("type {t} code {c}"),
        (_, -1, _) => "all ports".into(),
        (_, a, b) if a == b => a.to_string(),
        (_, a, b) => format!("{a}-{b}"),
    }
}

/// One line describing a security group rule.
pub(crate) fn rule_line(r: &SgRule) -> String {
    let way = if r.direction == perimeter_core::Direction::Ingress {
        "from"
    } else {
        "to"
    };
    let proto = match r.ip_protocol.as_str() {
        "-1" => "all".to_string(),
        p if p.parse::<u8>().is_ok() => format!("protocol {p}"),
        p => p.to_string(),
    };
    let desc = if r.description.is_empty() {
        String::new()
    } else {
        format!("  \"{}\"", r.description)
    };
    format!(
        "{} {proto} {} {way} {}{desc}",
        r.direction.as_str(),
        ports(r),
        sg_peer(&r.peer)
    )
}

pub(crate) fn nacl_line(e: &NaclEntry) -> String {
    let dir = if e.egress { "outbound" } else { "inbound" };
    let proto = match e.protocol.as_str() {
        "-1" => "all".to_string(),
        "6" => "tcp".into(),
        "17" => "udp".into(),
        "1" => "icmp".into(),
        "58" => "icmpv6".into(),
        n => format!("protocol {n}"),
    };
    let ports = e
        .port_range
        .map(|(a, b)| {
            if a == b {
                format!(" {a}")
            } else {
                format!(" {a}-{b}")
            }
        })
        .unwrap_or_default();
    let way = if e.egress { "to" } else { "from" };
    format!(
        "{dir} #{} {proto}{ports} {way} {} {}",
        e.rule_number, e.cidr, e.rule_action
    )
}

/// A word-level diff of two strings: `[-removed-]{+added+}`, runs merged.
fn word_diff(old: &str, new: &str) -> String {
    let diff = similar::TextDiff::from_words(old, new);
    let mut out = String::new();
    let mut run: Option<(similar::ChangeTag, String)> = None;
    let flush = |run: &mut Option<(similar::ChangeTag, String)>, out: &mut String| {
        if let Some((tag, text)) = run.take() {
            match tag {
                similar::ChangeTag::Equal => out.push_str(&text),
                similar::ChangeTag::Delete => {
                    let _ = write!(out, "[-{text}-]");
                }
                similar::ChangeTag::Insert => {
                    let _ = write!(out, "{{+{text}+}}");
                }
            }
        }
    };
    for change in diff.iter_all_changes() {
        match &mut run {
            Some((tag, text)) if *tag == change.tag() => text.push_str(change.value()),
            _ => {
                flush(&mut run, &mut out);
                run = Some((change.tag(), change.value().to_string()));
            }
        }
    }
    flush(&mut run, &mut out);
    if old.is_empty() || new.is_empty() {
        return format!("\"{old}\" → \"{new}\"");
    }
    out
}

fn metadata_fields(before: &MetadataOptions, after: &MetadataOptions) -> Vec<String> {
    let mut v = Vec::new();
    if before.http_endpoint != after.http_endpoint {
        v.push(format!(
            "HttpEndpoint {} → {}",
            before.http_endpoint, after.http_endpoint
        ));
    }
    if before.http_tokens != after.http_tokens {
        v.push(format!(
            "HttpTokens {} → {}",
            before.http_tokens.as_deref().unwrap_or("-"),
            after.http_tokens.as_deref().unwrap_or("-")
        ));
    }
    if before.http_put_response_hop_limit != after.http_put_response_hop_limit {
        v.push(format!(
            "HttpPutResponseHopLimit {} → {}",
            before
                .http_put_response_hop_limit
                .map_or("-".into(), |h| h.to_string()),
            after
                .http_put_response_hop_limit
                .map_or("-".into(), |h| h.to_string())
        ));
    }
    v
}

/// Terraform-like text for one target's plan.
pub(crate) fn text(p: &AwsTargetPlan, style: Style) -> String {
    if let Some(r) = &p.retire {
        return retirement_lines(p, r)
            .iter()
            .map(|(action, line)| format!("  {}\n", style.paint(*action, line)))
            .fold(retirement_heading(p), |out, l| out + &l);
    }
    let mut out = String::new();
    let t = &p.target;
    let sg = &p.security_group;
    let state = match &sg.group_id {
        Some(id) => id.clone(),
        None => "will be created".into(),
    };
    let _ = writeln!(
        out,
        "aws {} {}: security group {} ({state})",
        t.region, t.vpc, sg.group_name
    );
    if sg.group_id.is_none() {
        let _ = writeln!(
            out,
            "  {}",
            style.paint(
                Action::Create,
                &format!("+ security group {} in {}", sg.group_name, sg.vpc_id)
            )
        );
    }
    for c in &sg.changes {
        let line = match c.action {
            Action::Create => format!("+ {}", c.after.as_ref().map(rule_line).unwrap_or_default()),
            Action::Delete => {
                let why = if c.rule_id.is_none() {
                    "default rule of a new group"
                } else {
                    "not in the policy"
                };
                format!(
                    "- {}  ({why}{})",
                    c.before.as_ref().map(rule_line).unwrap_or_default(),
                    c.rule_id
                        .as_ref()
                        .map(|id| format!(", {id}"))
                        .unwrap_or_default()
                )
            }
            Action::Update => {
                let (b, a) = (c.before.as_ref(), c.after.as_ref());
                let head = a
                    .map(|r| {
                        rule_line(&SgRule {
                            description: String::new(),
                            ..r.clone()
                        })
                    })
                    .unwrap_or_default();
                let desc = word_diff(
                    b.map_or("", |r| r.description.as_str()),
                    a.map_or("", |r| r.description.as_str()),
                );
                format!("~ {head}\n      description: {desc}")
            }
        };
        let _ = writeln!(out, "  {}", style.paint(c.action, &line));
    }
    if let Some(n) = &p.network_acl {
        let state = n
            .network_acl_id
            .clone()
            .unwrap_or_else(|| "will be created".into());
        let _ = writeln!(
            out,
            "aws {} {}: network ACL for {} ({state})",
            t.region, t.vpc, sg.group_name
        );
        if n.network_acl_id.is_none() {
            let _ = writeln!(
                out,
                "  {}",
                style.paint(Action::Create, &format!("+ network ACL in {}", n.vpc_id))
            );
        }
        for c in &n.changes {
            let line = match c.action {
                Action::Create => {
                    format!("+ {}", c.after.as_ref().map(nacl_line).unwrap_or_default())
                }
                Action::Delete => {
                    format!("- {}", c.before.as_ref().map(nacl_line).unwrap_or_default())
                }
                Action::Update => format!(
                    "~ {} → {}",
                    c.before.as_ref().map(nacl_line).unwrap_or_default(),
                    c.after.as_ref().map(nacl_line).unwrap_or_default()
                ),
            };
            let _ = writeln!(out, "  {}", style.paint(c.action, &line));
        }
        for a in &n.associate {
            let _ = writeln!(
                out,
                "  {}",
                style.paint(
                    Action::Update,
                    &format!(
                        "~ subnet {}: {} → this network ACL{}",
                        a.subnet_id,
                        a.network_acl_id,
                        if n.record_previous.contains_key(&a.subnet_id) {
                            " (recorded on it, to go back there when released)"
                        } else {
                            ""
                        }
                    )
                )
            );
        }
        for a in &n.release {
            let line = format!(
                "~ subnet {}: this network ACL → {} (not in the policy; back where it was, or the VPC's default)",
                a.subnet_id, a.network_acl_id
            );
            let _ = writeln!(out, "  {}", style.paint(Action::Update, &line));
        }
        if n.delete {
            let line = "- this network ACL (the target no longer declares one)";
            let _ = writeln!(out, "  {}", style.paint(Action::Delete, line));
        }
    }
    if p.steps > 0 {
        let s = if p.steps == 1 { "" } else { "s" };
        let _ = writeln!(
            out,
            "  every intermediate state checked: {} step{s} (group and network ACL writes, one at a time)",
            p.steps
        );
    }
    if !p.metadata.is_empty() {
        let _ = writeln!(out, "aws {} {}: instance metadata options", t.region, t.vpc);
        for m in &p.metadata {
            let line = format!(
                "~ {}: {}",
                m.instance_id,
                metadata_fields(&m.before, &m.after).join(", ")
            );
            let _ = writeln!(out, "  {}", style.paint(Action::Update, &line));
        }
    }
    if !p.attach.is_empty() {
        let _ = writeln!(out, "aws {} {}: security group attachment", t.region, t.vpc);
        for a in &p.attach {
            let before = if a.groups.is_empty() {
                "(none)".to_string()
            } else {
                a.groups.join(", ")
            };
            let swapped: String = a.release.iter().map(|g| format!(" − {g}")).collect();
            let line = format!(
                "~ {} ({}): groups {before} → + {}{swapped}",
                a.interface_id, a.instance_id, sg.group_name
            );
            let _ = writeln!(out, "  {}", style.paint(Action::Update, &line));
        }
    }
    out.push_str(&perimeter_core::violation::render_text(&p.violations));
    out.push_str(&perimeter_core::plan::Finding::render_text(&p.findings));
    out
}

fn retirement_heading(p: &AwsTargetPlan) -> String {
    let t = &p.target;
    let what = if p.desired.orphaned {
        "remove what policy {} owns but no longer declares"
    } else {
        "destroy what policy {} owns"
    }
    .replace("{}", &p.policy);
    format!(
        "aws {} {}: {what} ({})\n",
        t.region, t.vpc, p.security_group.group_name
    )
}

/// What `destroy` removes, in apply's order.
fn retirement_lines(p: &AwsTargetPlan, r: &crate::retire::Retirement) -> Vec<(Action, String)> {
    let mut lines = Vec::new();
    for d in &r.detach {
        lines.push((
            Action::Update,
            format!(
                "~ {} ({}): groups → {} (the owned group taken off)",
                d.interface_id,
                if d.instance_id.is_empty() {
                    "not attached"
                } else {
                    &d.instance_id
                },
                d.groups.join(", ")
            ),
        ));
    }
    for a in &r.restore {
        lines.push((
            Action::Update,
            format!("~ subnet {} back to NACL {}", a.subnet_id, a.network_acl_id),
        ));
    }
    let why = if p.desired.orphaned {
        "no target of the policy declares it"
    } else {
        "destroy"
    };
    if let Some(acl) = &r.delete_network_acl {
        lines.push((Action::Delete, format!("- network ACL {acl} ({why})")));
    }
    if let Some(g) = &r.delete_security_group {
        lines.push((
            Action::Delete,
            format!(
                "- security group {} {g} ({why})",
                p.security_group.group_name
            ),
        ));
    }
    if lines.is_empty() {
        lines.push((Action::Delete, "nothing of the policy is left here".into()));
    }
    lines
}

/// Markdown for one target's plan (a pull-request comment section).
pub(crate) fn markdown(p: &AwsTargetPlan) -> String {
    if let Some(r) = &p.retire {
        let mut out = format!("#### {}\n```diff\n", retirement_heading(p).trim_end());
        for (_, line) in retirement_lines(p, r) {
            out.push_str(&line);
            out.push('\n');
        }
        out.push_str("```\n\n");
        return out;
    }
    let mut out = String::new();
    let t = &p.target;
    let sg = &p.security_group;
    let _ = writeln!(
        out,
        "#### aws `{}` `{}`: security group `{}` ({})\n",
        t.region,
        t.vpc,
        sg.group_name,
        sg.group_id
            .as_deref()
            .map_or("will be created".to_string(), |id| format!("`{id}`"))
    );
    let s = p.summary();
    if s.is_empty() {
        out.push_str("No changes.\n\n");
    } else {
        out.push_str("| | change |\n|---|---|\n");
        if sg.group_id.is_none() {
            let _ = writeln!(out, "| + | security group `{}` |", sg.group_name);
        }
        for c in &sg.changes {
            let r = c
                .after
                .as_ref()
                .or(c.before.as_ref())
                .map(rule_line)
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "| {} | `{}` |",
                c.action.symbol(),
                r.replace('|', "\\|")
            );
        }
        if let Some(n) = &p.network_acl {
            for c in &n.changes {
                let e = c
                    .after
                    .as_ref()
                    .or(c.before.as_ref())
                    .map(nacl_line)
                    .unwrap_or_default();
                let _ = writeln!(out, "| {} | NACL `{e}` |", c.action.symbol());
            }
            for a in &n.associate {
                let _ = writeln!(out, "| ~ | subnet `{}` to the owned NACL |", a.subnet_id);
            }
        }
        for m in &p.metadata {
            let _ = writeln!(
                out,
                "| ~ | `{}` metadata: {} |",
                m.instance_id,
                metadata_fields(&m.before, &m.after).join(", ")
            );
        }
        for a in &p.attach {
            let _ = writeln!(
                out,
                "| ~ | attach `{}` to `{}` (`{}`){} |",
                sg.group_name,
                a.interface_id,
                a.instance_id,
                a.release
                    .iter()
                    .map(|g| format!(" in place of `{g}`"))
                    .collect::<String>()
            );
        }
        out.push('\n');
        if p.steps > 0 {
            let _ = writeln!(
                out,
                "Every intermediate state checked: {} step(s).\n",
                p.steps
            );
        }
    }
    out.push_str(&perimeter_core::violation::render_markdown(&p.violations));
    out.push_str(&perimeter_core::plan::Finding::render_markdown(&p.findings));
    out
}
