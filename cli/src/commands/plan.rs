//! `perimeter plan POLICY`: observe every target, diff, show; optionally save for apply.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use perimeter_aws::backend::AwsBackend;
use perimeter_aws::plan::{AwsDesired, AwsTargetPlan};
use perimeter_azure::backend::AzureBackend;
use perimeter_azure::plan::{AzureDesired, AzureTargetPlan, PlanError as AzurePlanError};
use perimeter_core::target::{AzureTarget, GcpTarget};
use perimeter_core::{Diagnostics, Intent, SourceFile};
use perimeter_gcp::backend::{GcpBackend, GcpSettings};
use perimeter_gcp::plan::{GcpDesired, GcpTargetPlan, PlanError};

use crate::args::{Cloud, PlanFormat};
use crate::plan_doc::{PlanDocument, Plans};
use crate::{exit, output};

type Notes = Vec<serde_json::Value>;

/// The compiled policy for every target perimeter can plan.
#[derive(Default)]
pub(crate) struct Desired {
    pub(crate) aws: Vec<(AwsDesired, Notes)>,
    pub(crate) gcp: Vec<(GcpDesired, Notes)>,
    pub(crate) azure: Vec<(AzureDesired, Notes)>,
}

impl Desired {
    pub(crate) fn is_empty(&self) -> bool {
        self.aws.is_empty() && self.gcp.is_empty() && self.azure.is_empty()
    }
}

fn notes_json(notes: &[perimeter_core::Note]) -> Notes {
    notes
        .iter()
        .map(|n| serde_json::to_value(n).unwrap_or_default())
        .collect()
}

/// Compiles the policy's targets of the clouds `wants` accepts; on failure prints the
/// diagnostics and returns `None`.
pub(crate) fn desired(
    intent: &Intent,
    source: &SourceFile,
    wants: impl Fn(Cloud) -> bool,
) -> Option<Desired> {
    let mut errors = Diagnostics::default();
    let mut out = Desired::default();
    if wants(Cloud::Aws) {
        for t in &intent.targets.aws {
            match perimeter_aws::compile(intent, t) {
                Ok(c) => out.aws.push((
                    AwsDesired::from_compiled(&c, intent.private),
                    notes_json(&c.notes),
                )),
                Err(d) => errors.0.extend(d.0),
            }
        }
    }
    if wants(Cloud::Gcp) {
        for t in &intent.targets.gcp {
            match perimeter_gcp::compile(intent, t) {
                Ok(c) => out
                    .gcp
                    .push((GcpDesired::from_compiled(&c), notes_json(&c.notes))),
                Err(d) => errors.0.extend(d.0),
            }
        }
    }
    if wants(Cloud::Azure) {
        for t in &intent.targets.azure {
            match perimeter_azure::compile(intent, t) {
                Ok(c) => out
                    .azure
                    .push((AzureDesired::from_compiled(&c), notes_json(&c.notes))),
                Err(d) => errors.0.extend(d.0),
            }
        }
    }
    if errors.0.is_empty() {
        Some(out)
    } else {
        errors.sort();
        super::report(source, &errors);
        None
    }
}

/// The clouds a policy has targets for, for the "nothing to plan" error.
pub(crate) fn nothing_to_do(intent: &Intent, only: Option<Cloud>) -> anyhow::Error {
    match only {
        Some(cloud) => anyhow::anyhow!(
            "policy `{}` declares no {cloud:?} target (targets.{})",
            intent.name,
            format!("{cloud:?}").to_lowercase()
        ),
        None => anyhow::anyhow!(
            "policy `{}` declares no target to plan (targets.aws, targets.gcp, targets.azure); `perimeter compile` shows the rules offline",
            intent.name
        ),
    }
}

/// What a plan is for: writing (plan, apply) or reading only (drift). A read-only plan
/// reports what blocks a target (a missing network, a foreign rule with a wanted name) as a
/// problem instead of failing, and does not check quotas.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Mode {
    Write,
    ReadOnly,
}

/// The connections to each cloud, made on first use and kept for the whole command, so that
/// apply checks, writes and verifies over the same clients and counts every request.
#[derive(Default)]
pub(crate) struct Backends {
    aws: BTreeMap<String, AwsBackend>,
    gcp: Option<GcpBackend>,
    azure: Option<AzureBackend>,
}

impl Backends {
    pub(crate) async fn aws(&mut self, region: &str) -> &AwsBackend {
        if !self.aws.contains_key(region) {
            let backend = AwsBackend::connect(region).await;
            self.aws.insert(region.to_string(), backend);
        }
        &self.aws[region]
    }

    /// Connects to GCP as the environment says (docs/cli.md).
    pub(crate) async fn gcp(&mut self) -> anyhow::Result<&GcpBackend> {
        if self.gcp.is_none() {
            let settings = GcpSettings::from_env()?;
            self.gcp = Some(GcpBackend::connect(settings).await?);
        }
        Ok(self.gcp.as_ref().expect("connected above"))
    }

    /// Connects to ARM as the environment says (docs/cli.md).
    pub(crate) fn azure(&mut self) -> anyhow::Result<&AzureBackend> {
        if self.azure.is_none() {
            self.azure = Some(AzureBackend::from_env()?);
        }
        Ok(self.azure.as_ref().expect("connected above"))
    }

    /// Requests sent so far, retries included.
    pub(crate) fn api_calls(&self) -> u64 {
        self.aws.values().map(AwsBackend::api_calls).sum::<u64>()
            + self.gcp.as_ref().map_or(0, GcpBackend::api_calls)
            + self.azure.as_ref().map_or(0, AzureBackend::api_calls)
    }

    /// Requests that were retried (GCP and Azure count them; the AWS SDK retries unseen).
    pub(crate) fn retries(&self) -> u64 {
        self.gcp.as_ref().map_or(0, GcpBackend::retries)
            + self.azure.as_ref().map_or(0, AzureBackend::retries)
    }
}

/// Observes and plans every target: AWS region by region with bulk reads per region, GCP
/// with one filtered list per network, Azure with one read per NSG.
pub(crate) async fn make_plan(
    backends: &mut Backends,
    policy: &str,
    desired: &Desired,
    mode: Mode,
) -> anyhow::Result<Plans> {
    let calls_before = backends.api_calls();
    let aws = plan_aws(backends, policy, &desired.aws).await?;
    let (gcp, gcp_problems) = plan_gcp(backends, policy, &desired.gcp, mode).await?;
    let (azure, azure_problems) = plan_azure(backends, policy, &desired.azure, mode).await?;
    Ok(Plans {
        aws,
        gcp,
        gcp_problems,
        azure,
        azure_problems,
        api_calls: backends.api_calls() - calls_before,
    })
}

async fn plan_aws(
    backends: &mut Backends,
    policy: &str,
    desired: &[(AwsDesired, Notes)],
) -> anyhow::Result<Vec<AwsTargetPlan>> {
    let mut by_region: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, (d, _)) in desired.iter().enumerate() {
        by_region
            .entry(d.target.region.as_str())
            .or_default()
            .push(i);
    }
    let mut plans: Vec<Option<AwsTargetPlan>> = desired.iter().map(|_| None).collect();
    for (region, idx) in by_region {
        let backend = backends.aws(region).await;
        let targets: Vec<_> = idx.iter().map(|&i| desired[i].0.target.clone()).collect();
        let observed = backend
            .observe(policy, &targets)
            .await
            .with_context(|| format!("observing AWS {region}"))?;
        for (&i, obs) in idx.iter().zip(&observed) {
            let (d, notes) = &desired[i];
            plans[i] = Some(perimeter_aws::plan::plan(d, notes.clone(), obs, policy)?);
        }
    }
    Ok(plans.into_iter().flatten().collect())
}

async fn plan_gcp(
    backends: &mut Backends,
    policy: &str,
    desired: &[(GcpDesired, Notes)],
    mode: Mode,
) -> anyhow::Result<(Vec<GcpTargetPlan>, Vec<(GcpTarget, PlanError)>)> {
    if desired.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    perimeter_gcp::plan::check_one_target_per_project(desired.iter().map(|(d, _)| &d.target))?;
    let backend = backends.gcp().await?;
    let targets: Vec<_> = desired.iter().map(|(d, _)| d.target.clone()).collect();
    let observed = backend
        .observe(policy, &targets)
        .await
        .context("observing GCP")?;
    let mut plans = Vec::with_capacity(desired.len());
    let mut problems = Vec::new();
    for ((d, notes), obs) in desired.iter().zip(&observed) {
        let what = || {
            format!(
                "planning GCP project {} network {}",
                d.target.project, d.target.network
            )
        };
        match perimeter_gcp::plan::plan(d, notes.clone(), obs, policy) {
            Ok(plan) => plans.push(plan),
            Err(e) if mode == Mode::ReadOnly => problems.push((d.target.clone(), e)),
            Err(e) => return Err(anyhow::Error::new(e).context(what())),
        }
    }
    if mode == Mode::Write {
        perimeter_gcp::plan::check_quotas(&plans).context("checking the GCP firewall quota")?;
    }
    Ok((plans, problems))
}

type AzurePlans = (Vec<AzureTargetPlan>, Vec<(AzureTarget, AzurePlanError)>);

async fn plan_azure(
    backends: &mut Backends,
    policy: &str,
    desired: &[(AzureDesired, Notes)],
    mode: Mode,
) -> anyhow::Result<AzurePlans> {
    if desired.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    perimeter_azure::plan::check_one_target_per_nsg(desired.iter().map(|(d, _)| &d.target))
        .map_err(anyhow::Error::msg)?;
    let backend = backends.azure()?;
    let targets: Vec<_> = desired.iter().map(|(d, _)| d.target.clone()).collect();
    let observed = backend.observe(&targets).await.context("observing Azure")?;
    let mut plans = Vec::with_capacity(desired.len());
    let mut problems = Vec::new();
    for ((d, notes), obs) in desired.iter().zip(&observed) {
        match perimeter_azure::plan::plan(d, notes.clone(), obs, policy) {
            Ok(plan) => plans.push(plan),
            Err(e) if mode == Mode::ReadOnly => problems.push((d.target.clone(), e)),
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "planning Azure NSG {} in resource group {}",
                    d.target.nsg, d.target.resource_group
                )));
            }
        }
    }
    Ok((plans, problems))
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Renders a plan document as text (Terraform-like).
pub(crate) fn text(doc: &PlanDocument, color: bool) -> String {
    let style = perimeter_aws::render_plan::Style { color };
    let mut out = String::new();
    for p in &doc.aws {
        out.push_str(&perimeter_aws::render_plan::text(p, style));
        out.push('\n');
    }
    for p in &doc.gcp {
        out.push_str(&perimeter_gcp::render_plan::text(p, color));
        out.push('\n');
    }
    for p in &doc.azure {
        out.push_str(&perimeter_azure::render_plan::text(p, color));
        out.push('\n');
    }
    // The same note usually holds for every target of a policy: say it once.
    let mut notes: Vec<String> = Vec::new();
    let all_notes = doc
        .aws
        .iter()
        .flat_map(|p| &p.notes)
        .chain(doc.gcp.iter().flat_map(|p| &p.notes))
        .chain(doc.azure.iter().flat_map(|p| &p.notes));
    for n in all_notes {
        let code = n.get("code").and_then(|v| v.as_str()).unwrap_or("note");
        let rule = n
            .get("rule")
            .and_then(|v| v.as_str())
            .map(|r| format!(" [{r}]"))
            .unwrap_or_default();
        let message = n
            .get("message")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        let line = format!("  {code}{rule}: {message}");
        if !notes.contains(&line) {
            notes.push(line);
        }
    }
    if !notes.is_empty() {
        let _ = writeln!(out, "Notes ({}):\n{}", notes.len(), notes.join("\n"));
    }
    if doc.summary.is_empty() {
        let _ = writeln!(out, "No changes. The cloud matches the policy.");
    } else {
        let _ = writeln!(out, "{}", doc.summary);
    }
    let _ = writeln!(out, "API calls: {}", doc.api_calls);
    out
}

fn markdown(doc: &PlanDocument) -> String {
    let mut out = format!(
        "### perimeter plan: `{}`\n\n**{}**\n\n",
        doc.policy,
        if doc.summary.is_empty() {
            "No changes.".to_string()
        } else {
            doc.summary.to_string()
        }
    );
    for p in &doc.aws {
        out.push_str(&perimeter_aws::render_plan::markdown(p));
    }
    for p in &doc.gcp {
        out.push_str(&perimeter_gcp::render_plan::markdown(p));
    }
    for p in &doc.azure {
        out.push_str(&perimeter_azure::render_plan::markdown(p));
    }
    let _ = writeln!(
        out,
        "<sub>{} API calls · perimeter {}</sub>",
        doc.api_calls, doc.perimeter_version
    );
    out
}

pub(crate) fn run(
    path: &Path,
    out: Option<&Path>,
    format: PlanFormat,
    detailed: bool,
    only: Option<Cloud>,
) -> anyhow::Result<u8> {
    let source = super::read_policy(path)?;
    let Some(intent) = super::load_or_report(&source) else {
        return Ok(exit::ERROR);
    };
    let Some(desired) = desired(&intent, &source, |c| only.is_none_or(|o| o == c)) else {
        return Ok(exit::ERROR);
    };
    if desired.is_empty() {
        return Err(nothing_to_do(&intent, only));
    }
    let mut backends = Backends::default();
    let plans = runtime()?.block_on(make_plan(
        &mut backends,
        &intent.name,
        &desired,
        Mode::Write,
    ))?;
    let mut doc = PlanDocument::new(&intent.name, &source.name, &source.text, plans);
    if let Some(key) = crate::plan_doc::plan_key() {
        doc.signature = Some(doc.signature_under(&key)?);
    }
    if let Some(out) = out {
        let json = serde_json::to_string_pretty(&doc)?;
        std::fs::write(out, json)
            .with_context(|| format!("cannot write plan file {}", out.display()))?;
        output::diag(&format!(
            "Saved the plan to {}. Apply it with: perimeter apply {}\n",
            out.display(),
            out.display()
        ));
    }
    match format {
        PlanFormat::Text => output::data(&text(&doc, output::stdout_color())),
        PlanFormat::Json => output::data(&format!("{}\n", serde_json::to_string_pretty(&doc)?)),
        PlanFormat::Markdown => output::data(&markdown(&doc)),
    }
    Ok(if detailed && !doc.summary.is_empty() {
        exit::CHANGES
    } else {
        exit::OK
    })
}
