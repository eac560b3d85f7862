//! Drift items of an Azure plan: each planned change, each foreign rule that makes the nodes'
//! perimeter differ from the policy, and each finding, as a difference with a stable key.

use perimeter_core::drift::{DriftItem, DriftKind, posture_items, violation_items};
use perimeter_core::target::AzureTarget;

use crate::plan::{AzureTargetPlan, PlanError};
use crate::render_plan::{field_changes, rule_line};

fn target_key(t: &AzureTarget) -> String {
    format!("{}/{}/{}", t.subscription, t.resource_group, t.nsg)
}

/// Every difference in one NSG, keyed `azure/subscription/group/nsg/…`.
pub(crate) fn items(p: &AzureTargetPlan) -> Vec<DriftItem> {
    let t = &p.target;
    let target = target_key(t);
    let item = |kind, resource, key: &str, detail: String| {
        DriftItem::new("azure", &target, kind, resource, key, detail)
    };
    if p.create_nsg {
        return vec![item(
            DriftKind::Missing,
            "network-security-group",
            "nsg",
            format!("network security group {} does not exist", t.nsg),
        )];
    }
    let mut out = Vec::new();
    for c in &p.changes {
        let Some(rule) = c.after.as_ref().or(c.before.as_ref()) else {
            continue;
        };
        let detail = match (&c.before, &c.after) {
            (Some(b), Some(a)) => format!("{}: {}", rule.name, field_changes(b, a).join("; ")),
            _ => format!("{}: {}", rule.name, rule_line(rule)),
        };
        out.push(item(
            DriftKind::of(c.action),
            "security-rule",
            &format!("rule/{}", rule.name),
            detail,
        ));
    }
    for w in &p.subnet_writes {
        let (kind, detail) = if w.associate {
            (
                DriftKind::Missing,
                format!("subnet {} does not have NSG {}", w.label(), t.nsg),
            )
        } else {
            (
                DriftKind::Unexpected,
                format!("subnet {} has NSG {} ({})", w.label(), t.nsg, w.reason),
            )
        };
        out.push(item(
            kind,
            "subnet-association",
            &format!("subnet/{}", w.label().to_ascii_lowercase()),
            detail,
        ));
    }
    out.extend(violation_items("azure", &target, &p.violations));
    out.extend(posture_items("azure", &target, &p.findings));
    out
}

/// An NSG that could not be planned is drift too: it or its ASG is missing, or a name or
/// priority the policy needs is held by another rule.
pub(crate) fn problem_item(t: &AzureTarget, e: &PlanError) -> DriftItem {
    let (kind, resource, key) = match e {
        PlanError::SharedNsgMissing { .. } | PlanError::NoLocation { .. } => (
            DriftKind::Missing,
            "network-security-group",
            "nsg".to_string(),
        ),
        PlanError::UnknownSubnet { subnet, .. } | PlanError::SubnetHasOtherNsg { subnet, .. } => (
            DriftKind::Missing,
            "subnet-association",
            format!("subnet/{}", subnet.to_ascii_lowercase()),
        ),
        PlanError::AsgMissing { asg, .. } => (
            DriftKind::Missing,
            "application-security-group",
            format!("asg/{asg}"),
        ),
        PlanError::NameTaken { name, .. } => (
            DriftKind::Unexpected,
            "security-rule",
            format!("rule/{name}"),
        ),
        PlanError::PriorityTaken {
            priority,
            direction,
            ..
        } => (
            DriftKind::Unexpected,
            "security-rule",
            format!("priority/{direction}/{priority}"),
        ),
        _ => (
            DriftKind::Modified,
            "network-security-group",
            "nsg".to_string(),
        ),
    };
    DriftItem::new("azure", &target_key(t), kind, resource, &key, e.to_string())
}
