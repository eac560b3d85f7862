//! An Azure plan for people: Terraform's symbols, one line per security rule, the fields that
//! change, and how apply will write (one PUT of the NSG, or rule by rule). Markdown for pull
//! requests.

use std::fmt::Write as _;

use perimeter_core::plan::Action;

use crate::model::{ResourceRef, SecurityRule};
use crate::path::SubnetWrite;
use crate::plan::{AzureTargetPlan, NsgWrite, RuleStep};

fn side(single: &Option<String>, list: &[String], asgs: &[ResourceRef]) -> String {
    let mut all: Vec<String> = single.iter().cloned().chain(list.iter().cloned()).collect();
    all.extend(
        asgs.iter()
            .map(|a| format!("asg:{}", a.id.rsplit('/').next().unwrap_or(&a.id))),
    );
    if all.is_empty() {
        "-".into()
    } else {
        all.join(", ")
    }
}

/// One line describing a security rule.
pub(crate) fn rule_line(r: &SecurityRule) -> String {
    let p = &r.properties;
    let ports = side(&p.destination_port_range, &p.destination_port_ranges, &[]);
    format!(
        "{} {} {} {ports} from {} to {} priority {}",
        p.direction,
        p.access,
        p.protocol,
        side(
            &p.source_address_prefix,
            &p.source_address_prefixes,
            &p.source_application_security_groups
        ),
        side(
            &p.destination_address_prefix,
            &p.destination_address_prefixes,
            &p.destination_application_security_groups
        ),
        p.priority
    )
}

/// Field-level differences of an update.
pub(crate) fn field_changes(before: &SecurityRule, after: &SecurityRule) -> Vec<String> {
    let (b, a) = (&before.properties, &after.properties);
    let mut out = Vec::new();
    let mut field = |name: &str, x: String, y: String| {
        if x != y {
            out.push(format!("{name}: {x} → {y}"));
        }
    };
    field("priority", b.priority.to_string(), a.priority.to_string());
    field("direction", b.direction.clone(), a.direction.clone());
    field("access", b.access.clone(), a.access.clone());
    field("protocol", b.protocol.clone(), a.protocol.clone());
    field(
        "sourcePortRange",
        b.source_port_range.clone(),
        a.source_port_range.clone(),
    );
    field(
        "destinationPorts",
        side(&b.destination_port_range, &b.destination_port_ranges, &[]),
        side(&a.destination_port_range, &a.destination_port_ranges, &[]),
    );
    field(
        "source",
        side(
            &b.source_address_prefix,
            &b.source_address_prefixes,
            &b.source_application_security_groups,
        ),
        side(
            &a.source_address_prefix,
            &a.source_address_prefixes,
            &a.source_application_security_groups,
        ),
    );
    field(
        "destination",
        side(
            &b.destination_address_prefix,
            &b.destination_address_prefixes,
            &b.destination_application_security_groups,
        ),
        side(
            &a.destination_address_prefix,
            &a.destination_address_prefixes,
            &a.destination_application_security_groups,
        ),
    );
    field(
        "description",
        format!("{:?}", b.description),
        format!("{:?}", a.description),
    );
    out
}

fn how(p: &AzureTargetPlan) -> Option<String> {
    match &p.write {
        NsgWrite::None => None,
        NsgWrite::Delete { if_match } => Some(format!(
            "delete the NSG, If-Match {if_match} (its rules go with it)"
        )),
        NsgWrite::Put {
            if_match: Some(etag),
            ..
        } => Some(format!(
            "one PUT of the whole NSG, If-Match {etag} (atomic: no intermediate state)"
        )),
        NsgWrite::Put {
            if_match: None,
            location,
            ..
        } => Some(format!("one PUT creating the NSG in {location}")),
        NsgWrite::Steps { steps } => {
            let parked = steps
                .iter()
                .filter(|s| matches!(s, RuleStep::Put { parked: true, .. }))
                .count();
            let n = steps.len();
            let s = if n == 1 { "" } else { "s" };
            Some(if parked > 0 {
                format!(
                    "{n} rule write(s), in order ({parked} rule(s) moved to a free priority so that no two rules ever share one); every intermediate state checked: {n} step{s}"
                )
            } else {
                format!(
                    "{n} rule write(s), in order; every intermediate state checked: {n} step{s}"
                )
            })
        }
    }
}

/// The plan of one NSG as text.
pub(crate) fn text(p: &AzureTargetPlan, color: bool) -> String {
    let t = &p.target;
    let mode = if p.desired.orphaned {
        "no target of the policy declares it any more: it is removed".to_string()
    } else if t.shared {
        format!(
            "shared: {} rule(s) of others left alone",
            p.foreign_rules.len()
        )
    } else {
        "owned by perimeter".to_string()
    };
    let mut out = format!(
        "azure {}/{} NSG {} ({mode})\n",
        t.subscription, t.resource_group, t.nsg
    );
    if p.create_nsg {
        let _ = writeln!(out, "  + network security group {}", t.nsg);
    }
    if matches!(p.write, NsgWrite::Delete { .. }) {
        let line = format!("  - network security group {} (destroy)", t.nsg);
        let _ = writeln!(out, "{}", paint(color, Action::Delete, &line));
    }
    if p.changes.is_empty() {
        let _ = writeln!(
            out,
            "  no changes to the {} rules perimeter manages",
            p.desired.rules.len()
        );
    }
    for c in &p.changes {
        let line = match (&c.before, &c.after) {
            (None, Some(a)) => format!("  + rule {}: {}", a.name, rule_line(a)),
            (Some(b), Some(_)) => format!("  ~ rule {}", b.name),
            (Some(b), None) => format!("  - rule {}: {} (not in the policy)", b.name, rule_line(b)),
            (None, None) => continue,
        };
        let _ = writeln!(out, "{}", paint(color, c.action, &line));
        if let (Some(b), Some(a)) = (&c.before, &c.after) {
            for f in field_changes(b, a) {
                let _ = writeln!(out, "      {f}");
            }
        }
    }
    for w in &p.subnet_writes {
        let _ = writeln!(
            out,
            "{}",
            paint(color, association_action(w), &subnet_line(p, w))
        );
    }
    if let Some(how) = how(p) {
        let _ = writeln!(out, "  write: {how}");
    }
    out.push_str(&perimeter_core::violation::render_text(&p.violations));
    out.push_str(&perimeter_core::plan::Finding::render_text(&p.findings));
    out
}

fn association_action(w: &SubnetWrite) -> Action {
    if w.associate {
        Action::Create
    } else {
        Action::Delete
    }
}

/// `  + subnet vnet/workers: associate NSG workers (declared in subnets)`.
fn subnet_line(p: &AzureTargetPlan, w: &SubnetWrite) -> String {
    let (symbol, verb) = if w.associate {
        ("+", "associate")
    } else {
        ("-", "dissociate")
    };
    format!(
        "  {symbol} subnet {}: {verb} NSG {} ({})",
        w.label(),
        p.target.nsg,
        w.reason
    )
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

/// The plan of one NSG as Markdown.
pub(crate) fn markdown(p: &AzureTargetPlan) -> String {
    let t = &p.target;
    let mut out = format!("#### Azure `{}` / `{}`\n\n", t.resource_group, t.nsg);
    if p.desired.orphaned {
        out.push_str("No target of the policy declares this NSG any more: it is removed.\n\n");
    }
    if p.is_empty() {
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
        let name = c
            .after
            .as_ref()
            .or(c.before.as_ref())
            .map(|r| r.name.as_str())
            .unwrap_or_default();
        let _ = writeln!(out, "{} {name}: {rule}", c.action.symbol());
    }
    for w in &p.subnet_writes {
        let _ = writeln!(out, "{}", subnet_line(p, w).trim_start());
    }
    out.push_str("```\n");
    if let Some(how) = how(p) {
        let _ = writeln!(out, "\nWrite: {how}.");
    }
    out.push_str(&perimeter_core::violation::render_markdown(&p.violations));
    out.push_str(&perimeter_core::plan::Finding::render_markdown(&p.findings));
    out.push('\n');
    out
}
