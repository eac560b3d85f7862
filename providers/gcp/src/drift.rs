//! Drift items of a GCP plan: each planned change, each foreign rule that makes the nodes'
//! perimeter differ from the policy, and each finding, as a difference with a stable key.

use perimeter_core::drift::{DriftItem, DriftKind, posture_items, violation_items};
use perimeter_core::target::GcpTarget;

use crate::plan::{GcpTargetPlan, PlanError};
use crate::render_plan::{field_changes, rule_line};

fn target_key(t: &GcpTarget) -> String {
    format!("{}/{}", t.project, t.network)
}

/// Every difference in one network, keyed `gcp/project/network/…`.
pub(crate) fn items(p: &GcpTargetPlan) -> Vec<DriftItem> {
    let target = target_key(&p.target);
    let item = |kind, resource, key: &str, detail: String| {
        DriftItem::new("gcp", &target, kind, resource, key, detail)
    };
    let mut out = Vec::new();
    for c in &p.changes {
        let detail = match (&c.before, &c.after) {
            (Some(before), Some(after)) => {
                format!("{}: {}", c.name, field_changes(before, after).join("; "))
            }
            (_, Some(f)) | (Some(f), None) => format!("{}: {}", c.name, rule_line(f)),
            (None, None) => c.name.clone(),
        };
        out.push(item(
            DriftKind::of(c.action),
            "firewall-rule",
            &format!("firewall/{}", c.name),
            detail,
        ));
    }
    // Rules perimeter does not own are drift only where they make the nodes' perimeter differ.
    out.extend(violation_items("gcp", &target, &p.violations));
    out.extend(posture_items("gcp", &target, &p.findings));
    out
}

/// A network that could not be planned is drift too: it is missing, or a rule the policy
/// wants is held by someone else.
pub(crate) fn problem_item(t: &GcpTarget, e: &PlanError) -> DriftItem {
    let (kind, resource, key) = match e {
        PlanError::NetworkMissing { .. } => (DriftKind::Missing, "network", "network".to_string()),
        PlanError::NotOwned { name, .. } => (
            DriftKind::Unexpected,
            "foreign-firewall-rule",
            format!("firewall/{name}"),
        ),
        _ => (DriftKind::Modified, "network", "plan".to_string()),
    };
    DriftItem::new("gcp", &target_key(t), kind, resource, &key, e.to_string())
}
