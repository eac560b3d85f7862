//! `perimeter compile POLICY [--cloud C] [--format F]`

use std::fmt::Write as _;
use std::path::Path;

use perimeter_core::{Diagnostics, Note};
use serde_json::{Value, json};

use crate::args::Format;
use crate::clouds::{Clouds, for_each_cloud};
use crate::{exit, output};

/// Version of the `compile --format json` document (docs/cli.md).
pub(crate) const COMPILE_FORMAT_VERSION: u32 = 1;

fn notes_text(notes: &[Note]) -> String {
    if notes.is_empty() {
        return "Notes: none\n".into();
    }
    let mut out = format!("Notes ({}):\n", notes.len());
    for n in notes {
        let _ = writeln!(out, "{}", n.line());
    }
    out
}

pub(crate) fn run(path: &Path, only: Option<&str>, format: Format) -> anyhow::Result<u8> {
    let source = super::read_policy(path)?;
    let Some(intent) = super::load_or_report(&source) else {
        return Ok(exit::ERROR);
    };
    let mut errors = Diagnostics::default();
    let mut text = String::new();
    let mut doc = json!({"format_version": COMPILE_FORMAT_VERSION, "policy": intent.name});
    let _ = writeln!(
        text,
        "perimeter compile: policy {} ({})",
        intent.name, source.name
    );
    let clouds = Clouds::default();
    for_each_cloud!(ref clouds, |s| {
        if only.is_none_or(|o| o == s.name()) {
            let mut bodies = Vec::new();
            for shown in s.show(&intent, &mut errors) {
                let _ = writeln!(text, "\n== {} ==", shown.heading);
                text.push_str(&shown.text);
                text.push_str(&notes_text(&shown.notes));
                bodies.push(shown.json);
            }
            doc[s.name()] = Value::Array(bodies);
        }
    });
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
