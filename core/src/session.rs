//! One cloud's part of a command: its compiled targets, its connection, its plans. Generic
//! over [`Cloud`], so every command is written once and compiled once per cloud; the binary
//! holds one session per cloud in its registry.

use crate::drift::DriftItem;
use crate::lifecycle::Cloud;
use crate::plan::{Finding, Summary};
use crate::violation::Violation;
use crate::{Diagnostics, Intent, Note};

/// A failure of one step of the lifecycle, naming the cloud or target it concerns.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// The cloud could not be reached with the environment's settings and credentials.
    #[error("connecting to {cloud}")]
    Connect {
        /// [`Cloud::TITLE`].
        cloud: &'static str,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Two targets of the policy cannot coexist on this cloud.
    #[error("{0}")]
    Targets(String),
    /// Reading the targets failed.
    #[error("observing {cloud}")]
    Observe {
        /// [`Cloud::TITLE`].
        cloud: &'static str,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A target cannot be planned.
    #[error("planning {target}")]
    Plan {
        /// [`Cloud::describe`] of the target.
        target: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The plans of several targets cannot be made together.
    #[error("planning {cloud} targets together")]
    Settle {
        /// [`Cloud::TITLE`].
        cloud: &'static str,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The plans together exceed a limit of the cloud.
    #[error("checking {cloud} limits across targets")]
    Limits {
        /// [`Cloud::TITLE`].
        cloud: &'static str,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A write failed, or there was no connection to write with.
    #[error("{0}")]
    Write(Box<dyn std::error::Error + Send + Sync>),
    /// A saved plan's section for this cloud is not a list of its plans.
    #[error("its `{cloud}` plans are not valid")]
    SavedPlan {
        /// [`Cloud::NAME`].
        cloud: &'static str,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

/// What a plan is for: writing (plan, apply) or reading only (drift). A read-only plan
/// reports what blocks a target (a missing network, a foreign rule with a wanted name) as a
/// problem instead of failing, and does not check limits.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    /// For plan and apply: every problem is an error; limits are checked.
    Write,
    /// For drift: what blocks a target is reported.
    ReadOnly,
}

/// One compiled target, as `perimeter compile` shows it.
pub struct Shown {
    /// [`Cloud::compiled_heading`].
    pub heading: String,
    /// As the cloud's console would show the rules.
    pub text: String,
    /// The bodies the cloud's API takes.
    pub json: serde_json::Value,
    /// The compiler's notes.
    pub notes: Vec<Note>,
}

/// One cloud's compiled targets, connection and plans.
pub struct Session<C: Cloud> {
    backend: Option<C::Backend>,
    /// The compiled targets with their notes.
    desired: Vec<(C::Desired, Vec<Note>)>,
    /// One plan per target that could be planned, in the policy's order.
    pub plans: Vec<C::TargetPlan>,
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
    /// [`Cloud::NAME`].
    pub fn name(&self) -> &'static str {
        C::NAME
    }

    /// True when the policy has targets here that were compiled.
    pub fn has_targets(&self) -> bool {
        !self.desired.is_empty()
    }

    /// Compiles the policy's targets on this cloud; errors go to `errors`.
    pub fn compile(&mut self, intent: &Intent, errors: &mut Diagnostics) {
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
    pub fn show(&self, intent: &Intent, errors: &mut Diagnostics) -> Vec<Shown> {
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

    /// Plans the removal of everything the policy owns in its targets instead of the policy
    /// (`destroy`, `plan --destroy`).
    pub fn retire(&mut self) {
        for (d, _) in &mut self.desired {
            *d = C::retired(d);
        }
    }

    /// Plans against what the plans of this session were made for (to verify an apply).
    pub fn replan_planned(&mut self) {
        self.desired = self
            .plans
            .iter()
            .map(|p| (C::planned_desired(p).clone(), Vec::new()))
            .collect();
    }

    async fn connect(&mut self) -> Result<(), LifecycleError> {
        if self.backend.is_none() {
            let backend = C::connect().await.map_err(|e| LifecycleError::Connect {
                cloud: C::TITLE,
                source: e.into(),
            })?;
            self.backend = Some(backend);
        }
        Ok(())
    }

    /// Observes every compiled target and plans it.
    pub async fn plan(&mut self, policy: &str, mode: Mode) -> Result<(), LifecycleError> {
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
        let declared: Vec<C::Target> = self
            .desired
            .iter()
            .filter(|(d, _)| !C::is_orphan(d))
            .map(|(d, _)| C::target_of(d).clone())
            .collect();
        C::check_targets(&declared).map_err(LifecycleError::Targets)?;
        self.connect().await?;
        let Some(backend) = self.backend.as_mut() else {
            return Ok(());
        };
        let observed =
            C::observe(backend, policy, &targets)
                .await
                .map_err(|e| LifecycleError::Observe {
                    cloud: C::TITLE,
                    source: e.into(),
                })?;
        // Objects of the policy outside every declared target: observed as targets of their
        // own and planned retired (a target removed from the policy is removed from the cloud).
        let orphans: Vec<(C::Target, C::Desired)> = C::orphan_targets(policy, &targets, &observed)
            .into_iter()
            .filter_map(|t| C::orphan_desired(&t).map(|d| (t, d)))
            .collect();
        let mut planned: Vec<(C::Desired, Vec<Note>, C::Observed)> = self
            .desired
            .iter()
            .cloned()
            .zip(observed)
            .map(|((d, n), o)| (d, n, o))
            .collect();
        if !orphans.is_empty() {
            let orphan_targets: Vec<C::Target> = orphans.iter().map(|(t, _)| t.clone()).collect();
            let more = C::observe(backend, policy, &orphan_targets)
                .await
                .map_err(|e| LifecycleError::Observe {
                    cloud: C::TITLE,
                    source: e.into(),
                })?;
            // Before the declared targets (GCP: their removal frees rule names a declared
            // target may need) or after them (Azure: subnets move to a declared NSG first).
            let removals: Vec<(C::Desired, Vec<Note>, C::Observed)> = orphans
                .into_iter()
                .zip(more)
                .map(|((_, d), o)| (d, Vec::new(), o))
                .collect();
            if C::ORPHANS_FIRST {
                planned.splice(0..0, removals);
            } else {
                planned.extend(removals);
            }
        }
        for (d, notes, obs) in &planned {
            match C::plan(d, notes.clone(), obs, policy) {
                Ok(p) => self.plans.push(p),
                Err(e)
                    if mode == Mode::ReadOnly && C::problem_item(C::target_of(d), &e).is_some() =>
                {
                    self.problems.push((C::target_of(d).clone(), e));
                }
                Err(e) => {
                    return Err(LifecycleError::Plan {
                        target: C::describe(C::target_of(d)),
                        source: e.into(),
                    });
                }
            }
        }
        C::settle(&mut self.plans).map_err(|e| LifecycleError::Settle {
            cloud: C::TITLE,
            source: e.into(),
        })?;
        if mode == Mode::Write {
            C::check_limits(&self.plans).map_err(|e| LifecycleError::Limits {
                cloud: C::TITLE,
                source: e.into(),
            })?;
        }
        Ok(())
    }

    /// Executes every plan in order. On failure: the writes made here, and the error.
    pub async fn apply(
        &mut self,
        progress: &mut (dyn FnMut(String) + Send),
    ) -> Result<usize, (usize, LifecycleError)> {
        let mut written = 0;
        let Self { backend, plans, .. } = self;
        for p in plans.iter().filter(|p| !C::summary(p).is_empty()) {
            let Some(backend) = backend.as_mut() else {
                let why = format!("{} is not connected", C::TITLE);
                return Err((written, LifecycleError::Write(why.into())));
            };
            match C::apply(backend, p, progress).await {
                Ok(n) => written += n,
                Err(stop) => {
                    return Err((
                        written + stop.written,
                        LifecycleError::Write(stop.error.into()),
                    ));
                }
            }
        }
        Ok(written)
    }

    /// Totals over this cloud's plans.
    pub fn summary(&self) -> Summary {
        let mut total = Summary::default();
        for s in self.plans.iter().map(C::summary) {
            total.add += s.add;
            total.change += s.change;
            total.destroy += s.destroy;
        }
        total
    }

    /// Requests sent to this cloud so far, retries included.
    pub fn api_calls(&self) -> u64 {
        self.backend.as_ref().map_or(0, C::api_calls)
    }

    /// Requests to this cloud that were retries.
    pub fn retries(&self) -> u64 {
        self.backend.as_ref().map_or(0, C::retries)
    }

    /// Every plan as text, each followed by a blank line.
    pub fn render_text(&self, color: bool) -> String {
        self.plans
            .iter()
            .map(|p| format!("{}\n", C::render_text(p, color)))
            .collect()
    }

    /// Every plan as markdown.
    pub fn render_markdown(&self) -> String {
        self.plans.iter().map(C::render_markdown).collect()
    }

    /// The notes of every plan, in order (the same note may repeat across targets).
    pub fn notes(&self) -> impl Iterator<Item = &Note> {
        self.plans.iter().flat_map(C::notes)
    }

    /// The posture findings of every plan.
    pub fn findings(&self) -> impl Iterator<Item = &Finding> {
        self.plans.iter().flat_map(C::findings)
    }

    /// The violations of every plan.
    pub fn violations(&self) -> impl Iterator<Item = &Violation> {
        self.plans.iter().flat_map(C::violations)
    }

    /// Every difference, then every target that could not be planned.
    pub fn drift_items(&self) -> Vec<DriftItem> {
        let mut items: Vec<DriftItem> = self.plans.iter().flat_map(C::drift_items).collect();
        items.extend(
            self.problems
                .iter()
                .filter_map(|(t, e)| C::problem_item(t, e)),
        );
        items
    }

    /// A plan document's section for this cloud in the form saved and fresh plans are
    /// compared in: read as plans of this cloud and written back (so defaults of older formats
    /// are filled in), without the fields that decide no write ([`Cloud::REPORT_ONLY`]).
    pub fn comparable_section(
        &self,
        section: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value, LifecycleError> {
        let invalid = |source| LifecycleError::SavedPlan {
            cloud: C::NAME,
            source,
        };
        let plans: Vec<C::TargetPlan> = match section {
            None => Vec::new(),
            Some(v) => serde_json::from_value(v.clone()).map_err(invalid)?,
        };
        let mut value = serde_json::to_value(plans).map_err(invalid)?;
        for plan in value.as_array_mut().into_iter().flatten() {
            if let Some(fields) = plan.as_object_mut() {
                for field in C::REPORT_ONLY {
                    fields.remove(*field);
                }
            }
        }
        Ok(value)
    }
}
