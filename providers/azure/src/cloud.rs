//! Azure's lifecycle: the [`Cloud`] implementation the binary runs.

use perimeter_core::drift::DriftItem;
use perimeter_core::lifecycle::{ApplyStopped, Cloud};
use perimeter_core::plan::{Finding, Summary};
use perimeter_core::target::AzureTarget;
use perimeter_core::violation::Violation;
use perimeter_core::{Diagnostics, Intent, Note};

use crate::backend::AzureBackend;
use crate::client::ArmError;
use crate::compile::AzureCompiled;
use crate::plan::{AzureDesired, AzureTargetPlan, PlanError};
use crate::state::ObservedAzure;

/// Azure: NSG rules, in an NSG perimeter owns or among others' rules in a shared one.
pub struct Azure;

impl Cloud for Azure {
    const NAME: &'static str = "azure";
    const TITLE: &'static str = "Azure";
    type Target = AzureTarget;
    type Compiled = AzureCompiled;
    type Desired = AzureDesired;
    type Observed = ObservedAzure;
    type TargetPlan = AzureTargetPlan;
    type PlanError = PlanError;
    type Backend = AzureBackend;
    type Error = ArmError;

    fn targets(intent: &Intent) -> &[AzureTarget] {
        &intent.targets.azure
    }

    fn targets_or_placeholder(intent: &Intent) -> Vec<AzureTarget> {
        intent.targets.azure_or_placeholder(&intent.name)
    }

    fn compile(intent: &Intent, target: &AzureTarget) -> Result<AzureCompiled, Diagnostics> {
        crate::compile(intent, target)
    }

    fn compiled_notes(compiled: &AzureCompiled) -> &[Note] {
        &compiled.notes
    }

    fn desired(_: &Intent, compiled: &AzureCompiled) -> AzureDesired {
        AzureDesired::from_compiled(compiled)
    }

    fn compiled_heading(t: &AzureTarget) -> String {
        format!("Azure {} / {}", t.resource_group, t.nsg)
    }

    fn compiled_text(compiled: &AzureCompiled) -> String {
        crate::render::text(compiled)
    }

    fn compiled_json(compiled: &AzureCompiled) -> serde_json::Value {
        crate::render::json(compiled)
    }

    fn check_targets(targets: &[AzureTarget]) -> Result<(), String> {
        crate::plan::check_one_target_per_nsg(targets)
    }

    fn target_of(desired: &AzureDesired) -> &AzureTarget {
        &desired.target
    }

    fn describe(t: &AzureTarget) -> String {
        format!(
            "azure {}/{} NSG {}",
            t.subscription, t.resource_group, t.nsg
        )
    }

    async fn connect() -> Result<AzureBackend, ArmError> {
        AzureBackend::from_env()
    }

    async fn observe(
        backend: &mut AzureBackend,
        policy: &str,
        targets: &[AzureTarget],
    ) -> Result<Vec<ObservedAzure>, ArmError> {
        backend.observe(policy, targets).await
    }

    fn orphan_targets(
        _policy: &str,
        targets: &[AzureTarget],
        observed: &[ObservedAzure],
    ) -> Vec<AzureTarget> {
        // The subnets declared targets take over, by resource id: the orphan's plan leaves them.
        let taken_over: Vec<String> = targets
            .iter()
            .flat_map(|t| t.subnets.iter().map(|s| crate::state::subnet_id(t, s)))
            .collect();
        targets
            .iter()
            .zip(observed)
            .flat_map(|(t, o)| {
                o.orphan_nsgs.iter().map(|nsg| AzureTarget {
                    subscription: t.subscription.clone(),
                    resource_group: t.resource_group.clone(),
                    nsg: nsg.clone(),
                    location: None,
                    application_security_group: String::new(),
                    shared: false,
                    subnets: taken_over.clone(),
                    nics: None,
                    span: Default::default(),
                })
            })
            .collect()
    }

    fn orphan_desired(target: &AzureTarget) -> Option<AzureDesired> {
        Some(AzureDesired::orphaned(target.clone()))
    }

    fn is_orphan(desired: &AzureDesired) -> bool {
        desired.orphaned
    }

    // After the declared targets: a subnet moves to a declared NSG before the orphaned one,
    // no longer associated with anything, is deleted.
    const ORPHANS_FIRST: bool = false;

    fn api_calls(backend: &AzureBackend) -> u64 {
        backend.api_calls()
    }

    fn retries(backend: &AzureBackend) -> u64 {
        backend.retries()
    }

    fn plan(
        desired: &AzureDesired,
        notes: Vec<Note>,
        observed: &ObservedAzure,
        policy: &str,
    ) -> Result<AzureTargetPlan, PlanError> {
        crate::plan::plan(desired, notes, observed, policy)
    }

    fn check_limits(_: &[AzureTargetPlan]) -> Result<(), PlanError> {
        // The 1,000-rule limit is per NSG and checked by the planner at each plan's peak.
        Ok(())
    }

    async fn apply(
        backend: &mut AzureBackend,
        plan: &AzureTargetPlan,
        progress: &mut (dyn FnMut(String) + Send),
    ) -> Result<usize, ApplyStopped<ArmError>> {
        progress(format!("{}:", Self::describe(&plan.target)));
        backend.apply(plan, progress).await
    }

    fn planned_desired(plan: &AzureTargetPlan) -> &AzureDesired {
        &plan.desired
    }

    fn summary(plan: &AzureTargetPlan) -> Summary {
        plan.summary()
    }

    fn notes(plan: &AzureTargetPlan) -> &[Note] {
        &plan.notes
    }

    fn retired(desired: &AzureDesired) -> AzureDesired {
        desired.retired()
    }

    fn findings(plan: &AzureTargetPlan) -> &[Finding] {
        &plan.findings
    }

    fn violations(plan: &AzureTargetPlan) -> &[Violation] {
        &plan.violations
    }

    fn render_text(plan: &AzureTargetPlan, color: bool) -> String {
        crate::render_plan::text(plan, color)
    }

    fn render_markdown(plan: &AzureTargetPlan) -> String {
        crate::render_plan::markdown(plan)
    }

    fn drift_items(plan: &AzureTargetPlan) -> Vec<DriftItem> {
        crate::drift::items(plan)
    }

    fn problem_item(target: &AzureTarget, error: &PlanError) -> Option<DriftItem> {
        Some(crate::drift::problem_item(target, error))
    }
}
