//! `perimeter drift POLICY`: a read-only plan, classified for monitoring.
//!
//! Every difference is `missing` (the policy wants it, the cloud lacks it), `unexpected` (the
//! cloud has it, the policy does not) or `modified` (both have it, with different contents).
//! Violations (objects perimeter does not own that make the nodes' perimeter differ from the
//! policy) and posture findings are drift too. Exit 0 in sync, 2 drift (of a `--fail-on`
//! class), 1 error, so a cron job can alert on the code alone; `--format
//! prometheus` writes a node-exporter textfile-collector file; `--baseline` accepts known
//! drift by key.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::Context;
use perimeter_core::drift::{DriftReport, FailClass, baseline_keys};

use super::plan::{compile, has_targets, make_plan, nothing_to_do};
use crate::args::DriftFormat;
use crate::clouds::for_each_cloud;
use crate::{exit, output};
use perimeter_core::session::Mode;

fn read_baseline(path: &Path, policy: &str) -> anyhow::Result<BTreeSet<String>> {
    let text = super::read_text(path, "baseline")?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("baseline {} is not JSON", path.display()))?;
    baseline_keys(&v, policy).with_context(|| format!("baseline {}", path.display()))
}

pub(crate) fn run(
    path: &Path,
    format: DriftFormat,
    baseline: Option<&Path>,
    fail_on: &[FailClass],
    only: Option<&str>,
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
    let accepted_keys = match baseline {
        Some(b) => read_baseline(b, &intent.name)?,
        None => BTreeSet::new(),
    };
    let rt = super::plan::runtime()?;
    let calls = rt.block_on(make_plan(&mut clouds, &intent.name, Mode::ReadOnly))?;
    let mut items = Vec::new();
    let mut findings = Vec::new();
    for_each_cloud!(ref clouds, |s| {
        items.extend(s.drift_items());
        findings.extend(s.findings());
    });
    let report = DriftReport::new(
        &intent.name,
        items,
        &accepted_keys,
        findings,
        calls,
        fail_on,
    );
    match format {
        DriftFormat::Json => output::data(&format!("{}\n", serde_json::to_string_pretty(&report)?)),
        DriftFormat::Text => output::data(&report.text()),
        DriftFormat::Prometheus => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            output::data(&report.prometheus(now));
        }
    }
    Ok(if report.failing {
        exit::CHANGES
    } else {
        exit::OK
    })
}
