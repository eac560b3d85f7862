//! `perimeter plan POLICY`: observe every target, diff, show; optionally save for apply.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, bail};
use perimeter_aws::backend::AwsBackend;
use perimeter_aws::plan::{AwsDesired, AwsTargetPlan};
use perimeter_core::{Diagnostics, Intent, SourceFile};

use crate::args::PlanFormat;
use crate::plan_doc::PlanDocument;
use crate::{exit, output};

/// Compiles the policy's AWS targets; on failure prints diagnostics and returns `None`.
pub(crate) fn desired(
    intent: &Intent,
    source: &SourceFile,
) -> Option<Vec<(AwsDesired, Vec<serde_json::Value>)>> {
    let mut errors = Diagnostics::default();
    let mut out = Vec::new();
    for t in &intent.targets.aws {
        match perimeter_aws::compile(intent, t) {
            Ok(c) => {
                let notes = c
                    .notes
                    .iter()
                    .map(|n| serde_json::to_value(n).unwrap_or_default())
                    .collect();
                out.push((AwsDesired::from_compiled(&c, intent.private), notes));
            }
            Err(d) => errors.0.extend(d.0),
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

/// Observes and plans every AWS target, region by region, with bulk reads per region.
pub(crate) async fn make_plan(
    policy: &str,
    desired: &[(AwsDesired, Vec<serde_json::Value>)],
) -> anyhow::Result<(Vec<AwsTargetPlan>, u64)> {
    let mut by_region: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, (d, _)) in desired.iter().enumerate() {
        by_region
            .entry(d.target.region.as_str())
            .or_default()
            .push(i);
    }
    let mut plans: Vec<Option<AwsTargetPlan>> = desired.iter().map(|_| None).collect();
    let mut calls = 0;
    for (region, idx) in by_region {
        let backend = AwsBackend::connect(region).await;
        let targets: Vec<_> = idx.iter().map(|&i| desired[i].0.target.clone()).collect();
        let observed = backend
            .observe(policy, &targets)
            .await
            .with_context(|| format!("observing AWS {region}"))?;
        for (&i, obs) in idx.iter().zip(&observed) {
            let (d, notes) = &desired[i];
            plans[i] = Some(perimeter_aws::plan::plan(d, notes.clone(), obs, policy)?);
        }
        calls += backend.api_calls();
    }
    Ok((plans.into_iter().flatten().collect(), calls))
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
    // The same note usually holds for every target of a policy: say it once.
    let mut notes: Vec<String> = Vec::new();
    for n in doc.aws.iter().flat_map(|p| &p.notes) {
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
) -> anyhow::Result<u8> {
    let source = super::read_policy(path)?;
    let Some(intent) = super::load_or_report(&source) else {
        return Ok(exit::ERROR);
    };
    let Some(desired) = desired(&intent, &source) else {
        return Ok(exit::ERROR);
    };
    if desired.is_empty() {
        bail!(
            "policy `{}` declares no AWS target to plan (targets.aws); `perimeter compile` shows the rules offline",
            intent.name
        );
    }
    if !intent.targets.gcp.is_empty() || !intent.targets.azure.is_empty() {
        output::diag(
            "note: GCP and Azure targets are not planned yet; this plan covers the AWS targets\n",
        );
    }
    let (plans, calls) = runtime()?.block_on(make_plan(&intent.name, &desired))?;
    let doc = PlanDocument::new(&intent.name, &source.name, &source.text, plans, calls);
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
