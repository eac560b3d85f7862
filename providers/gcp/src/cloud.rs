//! GCP's lifecycle: the [`Cloud`] implementation the binary runs.

use perimeter_core::drift::DriftItem;
use perimeter_core::lifecycle::{ApplyStopped, Cloud};
use perimeter_core::plan::{Finding, Summary};
use perimeter_core::target::GcpTarget;
use perimeter_core::violation::Violation;
use perimeter_core::{Diagnostics, Intent, Note};

use crate::backend::{GcpBackend, GcpError, GcpSettings};
use crate::compile::GcpCompiled;
use crate::plan::{GcpDesired, GcpTargetPlan, PlanError};
use crate::state::ObservedGcp;

/// GCP: VPC firewall rules per network, owned by name prefix and description marker.
pub struct Gcp;

impl Cloud for Gcp {
    const NAME: &'static str = "gcp";
    const TITLE: &'static str = "GCP";
    // The project's quota usage and foreign rules change whenever GKE or another team touches
    // the project; the fresh plan checks the quota again before any write.
    const REPORT_ONLY: &'static [&'static str] = &["quota", "violations", "findings"];
    type Target = GcpTarget;
    type Compiled = GcpCompiled;
    type Desired = GcpDesired;
    type Observed = ObservedGcp;
    type TargetPlan = GcpTargetPlan;
    type PlanError = PlanError;
    type Backend = GcpBackend;
    type Error = GcpError;

    fn targets(intent: &Intent) -> &[GcpTarget] {
        &intent.targets.gcp
    }

    fn targets_or_placeholder(intent: &Intent) -> Vec<GcpTarget> {
        intent.targets.gcp_or_placeholder(&intent.name)
    }

    fn compile(intent: &Intent, target: &GcpTarget) -> Result<GcpCompiled, Diagnostics> {
        crate::compile(intent, target)
    }

    fn compiled_notes(compiled: &GcpCompiled) -> &[Note] {
        &compiled.notes
    }

    fn desired(_: &Intent, compiled: &GcpCompiled) -> GcpDesired {
        GcpDesired::from_compiled(compiled)
    }

    fn compiled_heading(t: &GcpTarget) -> String {
        format!("GCP {} / {}", t.project, t.network)
    }

    fn compiled_text(compiled: &GcpCompiled) -> String {
        crate::render::text(compiled)
    }

    fn compiled_json(compiled: &GcpCompiled) -> serde_json::Value {
        crate::render::json(compiled)
    }

    fn check_targets(targets: &[GcpTarget]) -> Result<(), String> {
        crate::plan::check_one_target_per_project(targets).map_err(|e| e.to_string())
    }

    fn target_of(desired: &GcpDesired) -> &GcpTarget {
        &desired.target
    }

    fn describe(t: &GcpTarget) -> String {
        format!("gcp project {} network {}", t.project, t.network)
    }

    async fn connect() -> Result<GcpBackend, GcpError> {
        GcpBackend::connect(GcpSettings::from_env()?).await
    }

    async fn observe(
        backend: &mut GcpBackend,
        policy: &str,
        targets: &[GcpTarget],
    ) -> Result<Vec<ObservedGcp>, GcpError> {
        backend.observe(policy, targets).await
    }

    fn api_calls(backend: &GcpBackend) -> u64 {
        backend.api_calls()
    }

    fn retries(backend: &GcpBackend) -> u64 {
        backend.retries()
    }

    fn plan(
        desired: &GcpDesired,
        notes: Vec<Note>,
        observed: &ObservedGcp,
        policy: &str,
    ) -> Result<GcpTargetPlan, PlanError> {
        crate::plan::plan(desired, notes, observed, policy)
    }

    fn check_limits(plans: &[GcpTargetPlan]) -> Result<(), PlanError> {
        crate::plan::check_quotas(plans)
    }

    async fn apply(
        backend: &mut GcpBackend,
        plan: &GcpTargetPlan,
        progress: &mut (dyn FnMut(String) + Send),
    ) -> Result<usize, ApplyStopped<GcpError>> {
        progress(format!("{}:", Self::describe(&plan.target)));
        backend.apply(plan, progress).await
    }

    fn planned_desired(plan: &GcpTargetPlan) -> &GcpDesired {
        &plan.desired
    }

    fn summary(plan: &GcpTargetPlan) -> Summary {
        plan.summary()
    }

    fn notes(plan: &GcpTargetPlan) -> &[Note] {
        &plan.notes
    }

    fn retired(desired: &GcpDesired) -> GcpDesired {
        desired.retired()
    }

    fn orphan_targets(
        policy: &str,
        targets: &[GcpTarget],
        observed: &[ObservedGcp],
    ) -> Vec<GcpTarget> {
        targets
            .iter()
            .zip(observed)
            .flat_map(|(t, o)| {
                o.orphan_networks.iter().map(|network| GcpTarget {
                    project: t.project.clone(),
                    network: network.clone(),
                    target_tags: vec![policy.to_string()],
                    service_accounts: Vec::new(),
                    regions: Vec::new(),
                    node_ranges: Vec::new(),
                    priority_base: t.priority_base,
                    placeholder: false,
                    span: Default::default(),
                })
            })
            .collect()
    }

    fn orphan_desired(target: &GcpTarget) -> Option<GcpDesired> {
        Some(GcpDesired::orphaned(target.clone()))
    }

    fn is_orphan(desired: &GcpDesired) -> bool {
        desired.orphaned
    }

    fn findings(plan: &GcpTargetPlan) -> &[Finding] {
        &plan.findings
    }

    fn violations(plan: &GcpTargetPlan) -> &[Violation] {
        &plan.violations
    }

    fn render_text(plan: &GcpTargetPlan, color: bool) -> String {
        crate::render_plan::text(plan, color)
    }

    fn render_markdown(plan: &GcpTargetPlan) -> String {
        crate::render_plan::markdown(plan)
    }

    fn drift_items(plan: &GcpTargetPlan) -> Vec<DriftItem> {
        crate::drift::items(plan)
    }

    fn problem_item(target: &GcpTarget, error: &PlanError) -> Option<DriftItem> {
        Some(crate::drift::problem_item(target, error))
    }
}
