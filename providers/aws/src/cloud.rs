//! AWS's lifecycle: the [`Cloud`] implementation the binary runs.
//!
//! A target lives in a region, and EC2 is reached region by region, so the backend is one
//! connection per region, made on first use; targets of one region are observed together with
//! shared bulk reads.

use std::collections::BTreeMap;

use perimeter_core::drift::DriftItem;
use perimeter_core::lifecycle::{ApplyStopped, Cloud};
use perimeter_core::plan::{Finding, Summary};
use perimeter_core::target::AwsTarget;
use perimeter_core::violation::Violation;
use perimeter_core::{Diagnostics, Intent, Note};

use crate::backend::{AwsBackend, AwsError};
use crate::compile::AwsCompiled;
use crate::plan::{AwsDesired, AwsTargetPlan, PlanError};
use crate::state::ObservedAws;

/// AWS: a security group, a network ACL and instance metadata options per target.
pub struct Aws;

/// One EC2 connection per region, made on first use.
#[derive(Default)]
pub struct AwsBackends {
    regions: BTreeMap<String, AwsBackend>,
}

impl AwsBackends {
    async fn region(&mut self, region: &str) -> &AwsBackend {
        if !self.regions.contains_key(region) {
            let backend = AwsBackend::connect(region).await;
            self.regions.insert(region.to_string(), backend);
        }
        &self.regions[region]
    }
}

impl Cloud for Aws {
    const NAME: &'static str = "aws";
    const TITLE: &'static str = "AWS";
    type Target = AwsTarget;
    type Compiled = AwsCompiled;
    type Desired = AwsDesired;
    type Observed = ObservedAws;
    type TargetPlan = AwsTargetPlan;
    type PlanError = PlanError;
    type Backend = AwsBackends;
    type Error = AwsError;

    fn targets(intent: &Intent) -> &[AwsTarget] {
        &intent.targets.aws
    }

    fn targets_or_placeholder(intent: &Intent) -> Vec<AwsTarget> {
        intent.targets.aws_or_placeholder(&intent.name)
    }

    fn compile(intent: &Intent, target: &AwsTarget) -> Result<AwsCompiled, Diagnostics> {
        crate::compile(intent, target)
    }

    fn compiled_notes(compiled: &AwsCompiled) -> &[Note] {
        &compiled.notes
    }

    fn desired(intent: &Intent, compiled: &AwsCompiled) -> AwsDesired {
        AwsDesired::from_compiled(compiled, intent.private)
    }

    fn compiled_heading(target: &AwsTarget) -> String {
        format!("AWS {} / {}", target.region, target.vpc)
    }

    fn compiled_text(compiled: &AwsCompiled) -> String {
        crate::render::text(compiled)
    }

    fn compiled_json(compiled: &AwsCompiled) -> serde_json::Value {
        crate::render::json(compiled)
    }

    fn check_targets(_: &[AwsTarget]) -> Result<(), String> {
        Ok(())
    }

    fn target_of(desired: &AwsDesired) -> &AwsTarget {
        &desired.target
    }

    fn describe(t: &AwsTarget) -> String {
        format!("aws {} {} ({})", t.region, t.vpc, t.security_group)
    }

    async fn connect() -> Result<AwsBackends, AwsError> {
        Ok(AwsBackends::default())
    }

    async fn observe(
        backend: &mut AwsBackends,
        policy: &str,
        targets: &[AwsTarget],
    ) -> Result<Vec<ObservedAws>, AwsError> {
        let mut by_region: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, t) in targets.iter().enumerate() {
            by_region.entry(t.region.as_str()).or_default().push(i);
        }
        let mut out: Vec<Option<ObservedAws>> = targets.iter().map(|_| None).collect();
        for (region, idx) in by_region {
            let in_region: Vec<AwsTarget> = idx.iter().map(|&i| targets[i].clone()).collect();
            let observed = backend
                .region(region)
                .await
                .observe(policy, &in_region)
                .await?;
            for (&i, o) in idx.iter().zip(observed) {
                out[i] = Some(o);
            }
        }
        Ok(out.into_iter().flatten().collect())
    }

    fn orphan_targets(
        _policy: &str,
        targets: &[AwsTarget],
        observed: &[ObservedAws],
    ) -> Vec<AwsTarget> {
        targets
            .iter()
            .zip(observed)
            .flat_map(|(t, o)| {
                o.orphan_groups.iter().map(|g| AwsTarget {
                    account: None,
                    region: t.region.clone(),
                    vpc: g.vpc_id.clone(),
                    security_group: g.group_name.clone(),
                    instances: BTreeMap::new(),
                    network_acl: None,
                    attach: false,
                    span: Default::default(),
                })
            })
            .collect()
    }

    fn orphan_desired(target: &AwsTarget) -> Option<AwsDesired> {
        Some(AwsDesired::orphaned(target.clone()))
    }

    fn is_orphan(desired: &AwsDesired) -> bool {
        desired.orphaned
    }

    // After the declared targets: a renamed target's group goes onto the interfaces (in place
    // of the orphan's, `settle`) before the orphan is deleted.
    const ORPHANS_FIRST: bool = false;

    fn settle(plans: &mut [AwsTargetPlan]) -> Result<(), PlanError> {
        crate::retire::settle(plans)
    }

    fn api_calls(backend: &AwsBackends) -> u64 {
        backend.regions.values().map(AwsBackend::api_calls).sum()
    }

    fn retries(_: &AwsBackends) -> u64 {
        // The SDK's standard retry mode retries without telling.
        0
    }

    fn plan(
        desired: &AwsDesired,
        notes: Vec<Note>,
        observed: &ObservedAws,
        policy: &str,
    ) -> Result<AwsTargetPlan, PlanError> {
        crate::plan::plan(desired, notes, observed, policy)
    }

    fn check_limits(_: &[AwsTargetPlan]) -> Result<(), PlanError> {
        // Quotas (rules per group, entries per NACL) are the compiler's: they hold per target.
        Ok(())
    }

    async fn apply(
        backend: &mut AwsBackends,
        plan: &AwsTargetPlan,
        progress: &mut (dyn FnMut(String) + Send),
    ) -> Result<usize, ApplyStopped<AwsError>> {
        backend
            .region(&plan.target.region)
            .await
            .apply(plan, progress)
            .await
    }

    fn planned_desired(plan: &AwsTargetPlan) -> &AwsDesired {
        &plan.desired
    }

    fn summary(plan: &AwsTargetPlan) -> Summary {
        plan.summary()
    }

    fn notes(plan: &AwsTargetPlan) -> &[Note] {
        &plan.notes
    }

    fn retired(desired: &AwsDesired) -> AwsDesired {
        desired.retired()
    }

    fn findings(plan: &AwsTargetPlan) -> &[Finding] {
        &plan.findings
    }

    fn violations(plan: &AwsTargetPlan) -> &[Violation] {
        &plan.violations
    }

    fn render_text(plan: &AwsTargetPlan, color: bool) -> String {
        crate::render_plan::text(plan, crate::render_plan::Style { color })
    }

    fn render_markdown(plan: &AwsTargetPlan) -> String {
        crate::render_plan::markdown(plan)
    }

    fn drift_items(plan: &AwsTargetPlan) -> Vec<DriftItem> {
        crate::drift::items(plan)
    }

    fn problem_item(_: &AwsTarget, _: &PlanError) -> Option<DriftItem> {
        // A group with the target's name that perimeter does not own stops drift too: the
        // owner must rename one of them before anything about this target can be said.
        None
    }
}
