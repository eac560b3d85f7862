//! `perimeter plan POLICY`: observe every target, diff, show; optionally save for apply.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use perimeter_core::drift::FailClass;
use perimeter_core::{Diagnostics, Intent, SourceFile};

use crate::args::PlanFormat;
use crate::clouds::{Clouds, for_each_cloud};
use crate::plan_doc::PlanDocument;
use crate::{exit, output};
use perimeter_core::session::Mode;

/// Compiles the policy's targets on the clouds `wants` accepts (by name); on failure prints
/// the diagnostics and returns `None`.
pub(crate) fn compile(
    intent: &Intent,
    source: &SourceFile,
    wants: impl Fn(&str) -> bool,
) -> Option<Clouds> {
    let mut errors = Diagnostics::default();
    let mut clouds = Clouds::default();
    for_each_cloud!(clouds, |s| {
        if wants(s.name()) {
            s.compile(intent, &mut errors);
        }
    });
    if errors.0.is_empty() {
        Some(clouds)
    } else {
        errors.sort();
        super::report(source, &errors);
        None
    }
}

/// True when some cloud has a compiled target.
pub(crate) fn has_targets(clouds: &Clouds) -> bool {
    let mut any = false;
    for_each_cloud!(ref clouds, |s| {
        any |= s.has_targets();
    });
    any
}

/// The error for a policy with nothing to plan (on the cloud asked for).
pub(crate) fn nothing_to_do(intent: &Intent, only: Option<&str>) -> anyhow::Error {
    match only {
        Some(cloud) => anyhow::anyhow!(
            "policy `{}` declares no {cloud} target (targets.{cloud})",
            intent.name
        ),
        None => anyhow::anyhow!(
            "policy `{}` declares no target to plan (targets.{}); `perimeter compile` shows the rules offline",
            intent.name,
            crate::clouds::NAMES.join(", targets.")
        ),
    }
}

/// Plans the removal of everything the policy owns instead of the policy.
pub(crate) fn retire(clouds: &mut Clouds) {
    for_each_cloud!(clouds, |s| {
        s.retire();
    });
}

/// Observes and plans every compiled target, cloud by cloud; returns the requests it sent.
pub(crate) async fn make_plan(
    clouds: &mut Clouds,
    policy: &str,
    mode: Mode,
) -> anyhow::Result<u64> {
    let before = api_calls(clouds);
    for_each_cloud!(clouds, |s| {
        s.plan(policy, mode).await?;
    });
    Ok(api_calls(clouds) - before)
}

/// Requests sent to every cloud so far, retries included.
pub(crate) fn api_calls(clouds: &Clouds) -> u64 {
    let mut calls = 0;
    for_each_cloud!(ref clouds, |s| {
        calls += s.api_calls();
    });
    calls
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Renders a plan document as text (Terraform-like).
pub(crate) fn text(doc: &PlanDocument<'_>, color: bool) -> String {
    let mut out = String::new();
    // The same note usually holds for every target of a policy: say it once.
    let mut notes: Vec<String> = Vec::new();
    for_each_cloud!(ref doc.clouds, |s| {
        out.push_str(&s.render_text(color));
        for n in s.notes() {
            let line = n.line();
            if !notes.contains(&line) {
                notes.push(line);
            }
        }
    });
    if !notes.is_empty() {
        let _ = writeln!(out, "Notes ({}):\n{}", notes.len(), notes.join("\n"));
    }
    let mut violations = 0;
    for_each_cloud!(ref doc.clouds, |s| {
        violations += s.violations().count();
    });
    if doc.summary.is_empty() && violations == 0 {
        let _ = writeln!(out, "No changes. The cloud matches the policy.");
    } else if doc.summary.is_empty() {
        let _ = writeln!(
            out,
            "No changes to perimeter's objects, but the nodes' perimeter differs from the policy: {violations} violation(s) above."
        );
    } else {
        let _ = writeln!(out, "{}", doc.summary);
    }
    let _ = writeln!(out, "API calls: {}", doc.api_calls);
    out
}

fn markdown(doc: &PlanDocument<'_>) -> String {
    let mut out = format!(
        "### perimeter plan: `{}`\n\n**{}**\n\n",
        doc.policy,
        if doc.summary.is_empty() {
            "No changes.".to_string()
        } else {
            doc.summary.to_string()
        }
    );
    for_each_cloud!(ref doc.clouds, |s| {
        out.push_str(&s.render_markdown());
    });
    let _ = writeln!(
        out,
        "<sub>{} API calls · perimeter {}</sub>",
        doc.api_calls,
        env!("CARGO_PKG_VERSION")
    );
    out
}

pub(crate) fn run(
    path: &Path,
    out: Option<&Path>,
    format: PlanFormat,
    detailed: Option<Vec<FailClass>>,
    only: Option<&str>,
    destroy: bool,
) -> anyhow::Result<u8> {
    let source = super::read_policy(path)?;
    let Some(intent) = super::load_or_report(&source) else {
        return Ok(exit::ERROR);
    };
    let Some(mut clouds) = compile(&intent, &source, |c| only.is_none_or(|o| o == c)) else {
        return Ok(exit::ERROR);
    };
    if !has_targets(&clouds) {
        return Err(nothing_to_do(&intent, only));
    }
    if destroy {
        retire(&mut clouds);
    }
    let calls = runtime()?.block_on(make_plan(&mut clouds, &intent.name, Mode::Write))?;
    let mut doc = PlanDocument::new(&intent.name, &source.name, &source.text, calls, &clouds);
    doc.destroy = destroy;
    doc.sign()?;
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
    let fails = |class| detailed.as_ref().is_some_and(|d| d.contains(&class));
    let (mut violations, mut findings) = (false, false);
    for_each_cloud!(ref clouds, |s| {
        violations |= s.violations().next().is_some();
        findings |= s.findings().next().is_some();
    });
    let failing = (fails(FailClass::Changes) && !doc.summary.is_empty())
        || (fails(FailClass::Violations) && violations)
        || (fails(FailClass::Posture) && findings);
    Ok(if failing { exit::CHANGES } else { exit::OK })
}
