//! One lifecycle for every cloud: the [`Cloud`] trait each provider crate implements once.
//!
//! ```text
//!            compile            connect → observe          plan (pure)
//! Intent ──────────────▶ Desired ─────────────────▶ Observed ─────────▶ TargetPlan
//!                                                                   │  render, summary,
//!                                  apply (the plan's writes, in order) ◀┘  drift items
//! ```
//!
//! The binary iterates over a registry of clouds and never names one: everything that differs
//! between clouds — how targets are read, what a plan holds, how it is written, how drift is
//! keyed — is behind this trait. Dispatch is static: each command is one generic function
//! instantiated per cloud. The trait needs no I/O dependency: its asynchronous methods return
//! futures that the provider's backend drives.

use std::future::Future;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::drift::DriftItem;
use crate::plan::{Finding, Summary};
use crate::violation::Violation;
use crate::{Diagnostics, Intent, Note};

/// Why apply stopped in one target, and how far it got.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct ApplyStopped<E> {
    /// Writes that took effect before it stopped.
    pub written: usize,
    /// The first failure.
    pub error: E,
}

/// One cloud's lifecycle. A new target kind (another cloud, a host firewall, a second mode of
/// an existing cloud) implements this trait and is added to the binary's registry; nothing
/// else changes.
pub trait Cloud {
    /// Lower-case name: the plan document's key, `cloud` in drift items, `--cloud`'s value.
    const NAME: &'static str;
    /// The name people read: `AWS`, `GCP`, `Azure`.
    const TITLE: &'static str;

    /// One target as the policy declares it (`targets.NAME`).
    type Target: Clone;
    /// The compiler's output for one target (what `compile` shows).
    type Compiled;
    /// What the policy wants in one target, kept in the plan.
    type Desired: Clone;
    /// What was read from the cloud for one target.
    type Observed;
    /// Everything apply will do in one target: what the plan document holds.
    type TargetPlan: Clone + Serialize + DeserializeOwned;
    /// Why one target cannot be planned.
    type PlanError: std::error::Error + Send + Sync + 'static;
    /// Clients, credentials and request counters for one run.
    type Backend;
    /// What reading or writing fails with.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The policy's targets on this cloud.
    fn targets(intent: &Intent) -> &[Self::Target];
    /// The declared targets, or one placeholder named after the policy (for `compile`).
    fn targets_or_placeholder(intent: &Intent) -> Vec<Self::Target>;
    /// Compiles one target. Pure.
    fn compile(intent: &Intent, target: &Self::Target) -> Result<Self::Compiled, Diagnostics>;
    /// The compiler's notes for one target.
    fn compiled_notes(compiled: &Self::Compiled) -> &[Note];
    /// The desired state of a compiled target.
    fn desired(intent: &Intent, compiled: &Self::Compiled) -> Self::Desired;
    /// The desired state that retires a target (`destroy`): nothing perimeter owns is left,
    /// and what it never owned is untouched.
    fn retired(desired: &Self::Desired) -> Self::Desired;
    /// A heading for one target in `compile`'s text output.
    fn compiled_heading(target: &Self::Target) -> String;
    /// The compiled rules as the cloud's console would show them.
    fn compiled_text(compiled: &Self::Compiled) -> String;
    /// The compiled rules as the bodies the cloud's API takes.
    fn compiled_json(compiled: &Self::Compiled) -> serde_json::Value;

    /// What must hold across targets before anything is read (e.g. one target per project).
    fn check_targets(targets: &[Self::Target]) -> Result<(), String>;
    /// The target a desired state is for.
    fn target_of(desired: &Self::Desired) -> &Self::Target;
    /// One line naming a target, for errors and progress.
    fn describe(target: &Self::Target) -> String;

    /// Connects as the environment says (docs/cli.md, Environment). Reads nothing yet.
    fn connect() -> impl Future<Output = Result<Self::Backend, Self::Error>>;
    /// Reads every target with as few requests as the API allows, in the order given.
    fn observe(
        backend: &mut Self::Backend,
        policy: &str,
        targets: &[Self::Target],
    ) -> impl Future<Output = Result<Vec<Self::Observed>, Self::Error>>;
    /// Targets for objects of the policy that observe found outside every declared target
    /// (found by the ownership marker): they are observed and planned retired, so that
    /// removing a target from the policy removes what perimeter wrote there.
    fn orphan_targets(
        _policy: &str,
        _targets: &[Self::Target],
        _observed: &[Self::Observed],
    ) -> Vec<Self::Target> {
        Vec::new()
    }
    /// The desired state of an orphan target: nothing of perimeter's, retired.
    fn orphan_desired(_target: &Self::Target) -> Option<Self::Desired> {
        None
    }
    /// Whether orphan targets are applied before the declared ones (GCP: their removal frees
    /// rule names) or after them (Azure: a subnet moves to a declared NSG first).
    const ORPHANS_FIRST: bool = true;
    /// True for the desired state of an orphan target (it is not one of the policy's, so the
    /// checks across declared targets leave it out).
    fn is_orphan(_desired: &Self::Desired) -> bool {
        false
    }
    /// Fits the plans of one cloud to each other, in apply order, after every target is
    /// planned (AWS: an interface that a declared target attaches to swaps an orphaned group
    /// out in the same write, which the orphan's retirement then leaves alone). Pure.
    fn settle(_plans: &mut [Self::TargetPlan]) -> Result<(), Self::PlanError> {
        Ok(())
    }
    /// Requests sent so far, retries included.
    fn api_calls(backend: &Self::Backend) -> u64;
    /// Requests that were retries (0 where the SDK retries unseen).
    fn retries(backend: &Self::Backend) -> u64;

    /// Fields of a [`Self::TargetPlan`] that report on the cloud but decide no write (quota
    /// usage, violations by objects perimeter does not own, posture findings). A saved plan
    /// is compared with a fresh one without them: they change with objects perimeter does not
    /// own, and the fresh plan re-derives and re-checks them.
    const REPORT_ONLY: &'static [&'static str] = &["findings", "violations"];

    /// Plans one target. Pure: every id, name, priority and number is decided here.
    fn plan(
        desired: &Self::Desired,
        notes: Vec<Note>,
        observed: &Self::Observed,
        policy: &str,
    ) -> Result<Self::TargetPlan, Self::PlanError>;
    /// Limits that span targets, checked at plan time before any write (GCP: the project's
    /// firewall quota).
    fn check_limits(plans: &[Self::TargetPlan]) -> Result<(), Self::PlanError>;

    /// Executes one target's plan in its order and makes no choices.
    fn apply(
        backend: &mut Self::Backend,
        plan: &Self::TargetPlan,
        progress: &mut (dyn FnMut(String) + Send),
    ) -> impl Future<Output = Result<usize, ApplyStopped<Self::Error>>>;

    /// What the plan was made for.
    fn planned_desired(plan: &Self::TargetPlan) -> &Self::Desired;
    /// Counts for the summary line.
    fn summary(plan: &Self::TargetPlan) -> Summary;
    /// The compiler's notes.
    fn notes(plan: &Self::TargetPlan) -> &[Note];
    /// Posture findings.
    fn findings(plan: &Self::TargetPlan) -> &[Finding];
    /// Where the nodes' enforcement path (objects perimeter owns and objects it does not)
    /// decides differently from the policy.
    fn violations(plan: &Self::TargetPlan) -> &[Violation];
    /// The plan as text, Terraform-like.
    fn render_text(plan: &Self::TargetPlan, color: bool) -> String;
    /// The plan as markdown, for a pull-request comment.
    fn render_markdown(plan: &Self::TargetPlan) -> String;
    /// Each difference between the cloud and the policy, with a stable key.
    fn drift_items(plan: &Self::TargetPlan) -> Vec<DriftItem>;
    /// What blocks a target, as drift (`None`: it is an error, not drift).
    fn problem_item(target: &Self::Target, error: &Self::PlanError) -> Option<DriftItem>;
}
