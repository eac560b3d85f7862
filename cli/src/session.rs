//! One cloud's part of a command: its compiled targets, its connection, its plans. Generic
//! over [`Cloud`], so every command is written once and compiled once per cloud.

use anyhow::Context;
use perimeter_core::drift::DriftItem;
use perimeter_core::lifecycle::Cloud;
use perimeter_core::plan::{Finding, Summary};
use perimeter_core::{Diagnostics, Intent, Note};

/// What a plan is for: writing (plan, apply) or reading only (drift). A read-only plan
/// reports what blocks a target (a missing network, a foreign rule with a wanted name) as a
/// problem instead of failing, and does not check limits.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Mode {
    Write,
    ReadOnly,
}

/// One compiled target, as `perimeter compile` shows it.
pub(crate) struct Shown {
    pub(crate) heading: String,
    /// As the cloud's console would show the rules.
    pub(crate) text: String,
    /// The bodies the cloud's API takes.
    pub(crate) json: serde_json::Value,
    pub(crate) notes: Vec<Note>,
}

pub(crate) struct Session<C: Cloud> {
    backend: Option<C::Backend>,
    /// The compiled targets with their notes.
    desired: Vec<(C::Desired, Vec<Note>)>,
    /// One plan per target that could be planned, in the policy's order.
    pub(crate) plans: Vec<C::TargetPlan>,
    /// Targets a read-only plan could not plan, and why (drift reports them).
    problems: Vec<(C::Target, C::PlanError)>,
}

impl<C: Cloud> Default for Session<C> {
    fn default() -> Self {
        Self {
            backend: None,
            desired: Vec::new(),
            plans: Vec::new(),
            problems: Vec::new(),
        }
    }
}

impl<C: Cloud> Session<C> {
    pub(crate) fn name(&self) -> &'static str {
        C::NAME
    }

    /// True when the policy has targets here that were compiled.
    pub(crate) fn has_targets(&self) -> bool {
        !self.desired.is_empty()
    }

    /// Compiles the policy's targets on this cloud; errors go to `errors`.
    pub(crate) fn compile(&mut self, intent: &Intent, errors: &mut Diagnostics) {
        for t in C::targets(intent) {
            match C::compile(intent, t) {
                Ok(c) => self
                    .desired
                    .push((C::desired(intent, &c), C::compiled_notes(&c).to_vec())),
                Err(d) => errors.0.extend(d.0),
            }
        }
    }

    /// Compiles every target, or a placeholder, for `perimeter compile`.
    pub(crate) fn show(&self, intent: &Intent, errors: &mut Diagnostics) -> Vec<Shown> {
        let mut out = Vec::new();
        for t in C::targets_or_placeholder(intent) {
            match C::compile(intent, &t) {
                Ok(c) => out.push(Shown {
                    heading: C::compiled_heading(&t),
                    text: C::compiled_text(&c),
                    json: C::compiled_json(&c),
                    notes: C::compiled_notes(&c).to_vec(),
                }),
                Err(d) => errors.0.extend(d.0),
            }
        }
        out
    }

    /// Plans against what the plans of this session were made for (to verify an apply).
    pub(crate) fn replan_planned(&mut self) {
        self.desired = self
            .plans
            .iter()
            .map(|p| (C::planned_desired(p).clone(), Vec::new()))
            .collect();
    }

    async fn backend(&mut self) -> anyhow::Result<&mut C::Backend> {
        if self.backend.is_none() {
            let backend = C::connect()
                .await
                .with_context(|| format!("connecting to {}", C::TITLE))?;
            self.backend = Some(backend);
        }
        Ok(self.backend.as_mut().expect("connected above"))
    }

    /// Observes every compiled target and plans it.
    pub(crate) async fn plan(&mut self, policy: &str, mode: Mode) -> anyhow::Result<()> {
        self.plans.clear();
        self.problems.clear();
        if self.desired.is_empty() {
            return Ok(());
        }
        let targets: Vec<C::Target> = self
            .desired
            .iter()
            .map(|(d, _)| C::target_of(d).clone())
            .collect();
        C::check_targets(&targets).map_err(anyhow::Error::msg)?;
        let backend = self.backend().await?;
        let observed = C::observe(backend, policy, &targets)
            .await
            .with_context(|| format!("observing {}", C::TITLE))?;
        for ((d, notes), obs) in self.desired.iter().zip(&observed) {
            match C::plan(d, notes.clone(), obs, policy) {
                Ok(p) => self.plans.push(p),
                Err(e)
                    if mode == Mode::ReadOnly && C::problem_item(C::target_of(d), &e).is_some() =>
                {
                    self.problems.push((C::target_of(d).clone(), e));
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e)
                        .context(format!("planning {}", C::describe(C::target_of(d)))));
                }
            }
        }
        if mode == Mode::Write {
            C::check_limits(&self.plans)
                .with_context(|| format!("checking {} limits across targets", C::TITLE))?;
        }
        Ok(())
    }

    /// Executes every plan in order. On failure: the writes made here, and the error.
    pub(crate) async fn apply(
        &mut self,
        progress: &mut (dyn FnMut(String) + Send),
    ) -> Result<usize, (usize, anyhow::Error)> {
        let mut written = 0;
        let Self { backend, plans, .. } = self;
        for p in plans.iter().filter(|p| !C::summary(p).is_empty()) {
            let Some(backend) = backend.as_mut() else {
                return Err((written, anyhow::anyhow!("{} is not connected", C::TITLE)));
            };
            match C::apply(backend, p, progress).await {
                Ok(n) => written += n,
                Err(stop) => return Err((written + stop.written, stop.error.into())),
            }
        }
        Ok(written)
    }

    pub(crate) fn summary(&self) -> Summary {
        let mut total = Summary::default();
        for s in self.plans.iter().map(C::summary) {
            total.add += s.add;
            total.change += s.change;
            total.destroy += s.destroy;
        }
        total
    }

    pub(crate) fn api_calls(&self) -> u64 {
        self.backend.as_ref().map_or(0, C::api_calls)
    }

    pub(crate) fn retries(&self) -> u64 {
        self.backend.as_ref().map_or(0, C::retries)
    }

    pub(crate) fn render_text(&self, color: bool) -> String {
        self.plans
            .iter()
            .map(|p| format!("{}\n", C::render_text(p, color)))
            .collect()
    }

    pub(crate) fn render_markdown(&self) -> String {
        self.plans.iter().map(C::render_markdown).collect()
    }

    pub(crate) fn notes(&self) -> impl Iterator<Item = &Note> {
        self.plans.iter().flat_map(C::notes)
    }

    pub(crate) fn findings(&self) -> impl Iterator<Item = &Finding> {
        self.plans.iter().flat_map(C::findings)
    }

    /// Every difference, then every target that could not be planned.
    pub(crate) fn drift_items(&self) -> Vec<DriftItem> {
        let mut items: Vec<DriftItem> = self.plans.iter().flat_map(C::drift_items).collect();
        items.extend(
            self.problems
                .iter()
                .filter_map(|(t, e)| C::problem_item(t, e)),
        );
        items
    }

    /// A saved plan's section for this cloud in this perimeter's canonical form: read as plans
    /// of this cloud and written back, so defaults of older formats are filled in.
    pub(crate) fn canonical_section(
        &self,
        section: Option<&serde_json::Value>,
    ) -> anyhow::Result<serde_json::Value> {
        let plans: Vec<C::TargetPlan> = match section {
            None => Vec::new(),
            Some(v) => serde_json::from_value(v.clone())
                .with_context(|| format!("its `{}` plans are not valid", C::NAME))?,
        };
        Ok(serde_json::to_value(plans)?)
    }
}
