//! `perimeter compile POLICY [--cloud C] [--format F]`

use std::fmt::Write as _;
use std::path::Path;

use perimeter_core::{Diagnostics, Note};
use serde_json::{Value, json};

use crate::args::{Cloud, Format};
use crate::{exit, output};

/// Version of the `compile --format json` document (docs/cli.md).
pub(crate) const COMPILE_FORMAT_VERSION: u32 = 1;

fn notes_text(notes: &[Note]) -> String {
    if notes.is_empty() {
        return "Notes: none\n".into();
    }
    let mut out = format!("Notes ({}):\n", notes.len());
    for n in notes {
        let rule = n
            .rule
            .as_ref()
            .map(|r| format!(" [{r}]"))
            .unwrap_or_default();
        let _ = writeln!(out, "  {}{rule}: {}", n.code.as_str(), n.message);
    }
    out
}

pub(crate) fn run(path: &Path, cloud: Option<Cloud>, format: Format) -> anyhow::Result<u8> {
    let source = super::read_policy(path)?;
    let Some(intent) = super::load_or_report(&source) else {
        return Ok(exit::ERROR);
    };
    let wants = |c: Cloud| cloud.is_none_or(|x| x == c);

    let mut errors = Diagnostics::default();
    let mut text = String::new();
    let mut doc = json!({"format_version": COMPILE_FORMAT_VERSION, "policy": intent.name});
    let _ = writeln!(
        text,
        "perimeter compile: policy {} ({})",
        intent.name, source.name
    );

    if wants(Cloud::Aws) {
        let mut out = Vec::new();
        for t in intent.targets.aws_or_placeholder(&intent.name) {
            match perimeter_aws::compile(&intent, &t) {
                Ok(c) => {
                    let _ = writeln!(text, "\n== AWS {} / {} ==", t.region, t.vpc);
                    text.push_str(&perimeter_aws::render::text(&c));
                    text.push_str(&notes_text(&c.notes));
                    out.push(perimeter_aws::render::json(&c));
                }
                Err(d) => errors.0.extend(d.0),
            }
        }
        doc["aws"] = Value::Array(out);
    }
    if wants(Cloud::Gcp) {
        let mut out = Vec::new();
        for t in intent.targets.gcp_or_placeholder(&intent.name) {
            match perimeter_gcp::compile(&intent, &t) {
                Ok(c) => {
                    let _ = writeln!(text, "\n== GCP {} / {} ==", t.project, t.network);
                    text.push_str(&perimeter_gcp::render::text(&c));
                    text.push_str(&notes_text(&c.notes));
                    out.push(perimeter_gcp::render::json(&c));
                }
                Err(d) => errors.0.extend(d.0),
            }
        }
        doc["gcp"] = Value::Array(out);
    }
    if wants(Cloud::Azure) {
        let mut out = Vec::new();
        for t in intent.targets.azure_or_placeholder(&intent.name) {
            match perimeter_azure::compile(&intent, &t) {
                Ok(c) => {
                    let _ = writeln!(text, "\n== Azure {} / {} ==", t.resource_group, t.nsg);
                    text.push_str(&perimeter_azure::render::text(&c));
                    text.push_str(&notes_text(&c.notes));
                    out.push(perimeter_azure::render::json(&c));
                }
                Err(d) => errors.0.extend(d.0),
            }
        }
        doc["azure"] = Value::Array(out);
    }
    if !errors.0.is_empty() {
        // Nothing on stdout when any cloud failed: a partial document would look complete.
        errors.sort();
        super::report(&source, &errors);
        return Ok(exit::ERROR);
    }
    match format {
        Format::Text => output::data(&text),
        Format::Json => output::data(&format!("{}\n", serde_json::to_string_pretty(&doc)?)),
    }
    Ok(exit::OK)
}
