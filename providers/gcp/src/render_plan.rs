//! A GCP plan for people: Terraform's symbols (`+ ~ -`), one line per firewall rule, the
//! fields that change with before → after, the API method each change uses, and the foreign
//! rules that override the policy. Markdown for pull-request comments.

use std::fmt::Write as _;

use perimeter_core::plan::Action;

use crate::model::{Firewall, ProtocolPorts};
use crate::plan::{GcpTargetPlan, WriteMethod};

fn protocols(list: &[ProtocolPorts]) -> String {
    list.iter()
        .map(|p| {
            if p.ports.is_empty() {
                p.ip_protocol.clone()
            } else {
                format!("{}:{}", p.ip_protocol, p.ports.join(","))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "-".into()
    } else {
        items.join(", ")
    }
}

/// One line describing a firewall rule.
pub(crate) fn rule_line(f: &Firewall) -> String {
    let (verb, what) = if f.denied.is_empty() {
        ("allow", protocols(&f.allowed))
    } else {
        ("deny", protocols(&f.denied))
    };
    let peers = if f.direction == "EGRESS" {
        format!("to {}", list(&f.destination_ranges))
    } else {
        let mut from: Vec<String> = f.source_ranges.clone();
        from.extend(f.source_tags.iter().map(|t| format!("tag:{t}")));
        from.extend(f.source_service_accounts.iter().map(|a| format!("sa:{a}")));
        format!("from {}", list(&from))
    };
    let on = if !f.target_service_accounts.is_empty() {
        format!("service accounts {}", f.target_service_accounts.join(","))
    } else if f.target_tags.is_empty() {
        "all instances".to_string()
    } else {
        format!("tags {}", f.target_tags.join(","))
    };
    let disabled = if f.disabled { " (disabled)" } else { "" };
    format!(
        "{} {verb} {what} {peers} on {on} priority {}{disabled}",
        f.direction, f.priority
    )
}

fn method(m: WriteMethod) -> &'static str {
    match m {
        WriteMethod::Insert => "insert",
        WriteMethod::Patch => "patch",
        WriteMethod::Update => "update: replaces the rule",
        WriteMethod::Delete => "delete",
    }
}

/// Field-level differences of an update, `field: before → after`.
pub(crate) fn field_changes(before: &Firewall, after: &Firewall) -> Vec<String> {
    let mut out = Vec::new();
    let mut field = |name: &str, b: String, a: String| {
        if b != a {
            out.push(format!("{name}: {b} → {a}"));
        }
    };
    field(
        "direction",
        before.direction.clone(),
        after.direction.clone(),
    );
    field(
        "priority",
        before.priority.to_string(),
        after.priority.to_string(),
    );
    field(
        "sourceRanges",
        list(&before.source_ranges),
        list(&after.source_ranges),
    );
    field(
        "sourceTags",
        list(&before.source_tags),
        list(&after.source_tags),
    );
    field(
        "destinationRanges",
        list(&before.destination_ranges),
        list(&after.destination_ranges),
    );
    field(
        "sourceServiceAccounts",
        list(&before.source_service_accounts),
        list(&after.source_service_accounts),
    );
    field(
        "targetServiceAccounts",
        list(&before.target_service_accounts),
        list(&after.target_service_accounts),
    );
    field(
        "targetTags",
        list(&before.target_tags),
        list(&after.target_tags),
    );
    field(
        "allowed",
        protocols(&before.allowed),
        protocols(&after.allowed),
    );
    field(
        "denied",
        protocols(&before.denied),
        protocols(&after.denied),
    );
    field(
        "description",
        format!("{:?}", before.description),
        format!("{:?}", after.description),
    );
    field(
        "disabled",
        before.disabled.to_string(),
        after.disabled.to_string(),
    );
    out
}

fn paint(color: bool, action: Action, text: &str) -> String {
    if !color {
        return text.to_string();
    }
    let code = match action {
        Action::Create => "32",
        Action::Update => "33",
        Action::Delete => "31",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

/// What the transition checker proved, for reviewers.
pub(crate) fn steps_line(steps: usize) -> String {
    let s = if steps == 1 { "" } else { "s" };
    format!("every intermediate state checked: {steps} step{s}")
}

/// The plan of one network as text.
pub(crate) fn text(p: &GcpTargetPlan, color: bool) -> String {
    let t = &p.target;
    let mut out = if p.desired.orphaned {
        format!(
            "gcp project {} network {} (no target of the policy declares it any more: perimeter's rules there are removed)\n",
            t.project, t.network
        )
    } else {
        format!(
            "gcp project {} network {} (nodes tagged {})\n",
            t.project,
            t.network,
            list(&t.target_tags)
        )
    };
    if p.changes.is_empty() {
        let _ = writeln!(
            out,
            "  no changes to the {} owned firewall rules",
            p.desired.firewalls.len()
        );
    }
    for c in &p.changes {
        let symbol = c.action.symbol();
        match (&c.before, &c.after) {
            (None, Some(after)) => {
                let line = format!("  {symbol} firewall {}: {}", c.name, rule_line(after));
                let _ = writeln!(out, "{}", paint(color, c.action, &line));
            }
            (Some(before), Some(after)) => {
                let line = format!("  {symbol} firewall {} ({})", c.name, method(c.method));
                let _ = writeln!(out, "{}", paint(color, c.action, &line));
                for f in field_changes(before, after) {
                    let _ = writeln!(out, "      {f}");
                }
            }
            (Some(before), None) => {
                let why = if p.desired.orphaned {
                    "network no longer declared"
                } else {
                    "not in the policy"
                };
                let line = format!(
                    "  {symbol} firewall {}: {} ({why})",
                    c.name,
                    rule_line(before)
                );
                let _ = writeln!(out, "{}", paint(color, c.action, &line));
            }
            (None, None) => {}
        }
    }
    if !p.changes.is_empty() {
        let _ = writeln!(out, "  {}", steps_line(p.steps()));
    }
    out.push_str(&perimeter_core::violation::render_text(&p.violations));
    out.push_str(&perimeter_core::plan::Finding::render_text(&p.findings));
    if let Some(q) = p.quota {
        let s = p.summary();
        let _ = writeln!(
            out,
            "  project firewall quota: {} of {} in use, {} after apply",
            q.usage,
            q.limit,
            (q.usage + s.add as u64).saturating_sub(s.destroy as u64)
        );
    }
    out
}

/// The plan of one network as Markdown.
pub(crate) fn markdown(p: &GcpTargetPlan) -> String {
    let t = &p.target;
    let mut out = format!("#### GCP `{}` / `{}`\n\n", t.project, t.network);
    if p.desired.orphaned {
        out.push_str("No target of the policy declares this network any more: perimeter's rules there are removed.\n\n");
    }
    if p.changes.is_empty() {
        out.push_str("No changes.\n");
        out.push_str(&perimeter_core::violation::render_markdown(&p.violations));
        out.push_str(&perimeter_core::plan::Finding::render_markdown(&p.findings));
        out.push('\n');
        return out;
    }
    out.push_str("```diff\n");
    for c in &p.changes {
        let rule = c
            .after
            .as_ref()
            .or(c.before.as_ref())
            .map(rule_line)
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{} {} ({}): {rule}",
            c.action.symbol(),
            c.name,
            method(c.method)
        );
        if let (Some(before), Some(after)) = (&c.before, &c.after) {
            for f in field_changes(before, after) {
                let _ = writeln!(out, "    {f}");
            }
        }
    }
    out.push_str("```\n");
    if !p.changes.is_empty() {
        let _ = writeln!(out, "\n{}", steps_line(p.steps()));
    }
    out.push_str(&perimeter_core::violation::render_markdown(&p.violations));
    out.push_str(&perimeter_core::plan::Finding::render_markdown(&p.findings));
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fw() -> Firewall {
        Firewall {
            name: "web-i-ssh".into(),
            description: "perimeter:web ssh".into(),
            network: "vpc".into(),
            priority: 1000,
            direction: "INGRESS".into(),
            source_ranges: vec!["10.50.0.0/24".into()],
            source_tags: vec!["nodes".into()],
            destination_ranges: vec![],
            target_tags: vec!["nodes".into()],
            allowed: vec![ProtocolPorts {
                ip_protocol: "tcp".into(),
                ports: vec!["22".into()],
            }],
            denied: vec![],
            disabled: false,
            source_service_accounts: Vec::new(),
            target_service_accounts: Vec::new(),
        }
    }

    #[test]
    fn a_rule_reads_as_one_line() {
        assert_eq!(
            rule_line(&fw()),
            "INGRESS allow tcp:22 from 10.50.0.0/24, tag:nodes on tags nodes priority 1000"
        );
    }

    #[test]
    fn updates_show_only_changed_fields() {
        let mut after = fw();
        after.source_ranges = vec!["10.99.0.0/24".into()];
        after.priority = 1010;
        assert_eq!(
            field_changes(&fw(), &after),
            vec![
                "priority: 1000 → 1010".to_string(),
                "sourceRanges: 10.50.0.0/24 → 10.99.0.0/24".to_string()
            ]
        );
    }
}
