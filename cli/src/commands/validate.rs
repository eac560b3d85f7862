//! `perimeter validate POLICY`

use std::path::Path;

use perimeter_core::Diagnostics;
use serde_json::json;

use crate::args::Format;
use crate::{exit, output};

pub(crate) fn run(path: &Path, format: Format) -> anyhow::Result<u8> {
    let source = match super::read_policy(path) {
        Ok(source) => source,
        // The JSON report is a JSON document whatever went wrong.
        Err(e) if format == Format::Json => {
            let input = e.downcast_ref::<super::InputError>();
            let diagnostic = json!({
                "severity": "error",
                "code": input.map_or("input::unreadable", |i| i.code),
                "message": input.map_or_else(|| format!("{e:#}"), |i| i.message.clone()),
                "file": path.display().to_string(),
                "line": 0,
                "column": 0,
                "label": "",
                "help": input.map(|i| i.help.clone()),
            });
            let doc = json!({"format_version": 1, "valid": false, "diagnostics": [diagnostic]});
            output::data(&format!("{}\n", serde_json::to_string_pretty(&doc)?));
            return Ok(exit::ERROR);
        }
        Err(e) => return Err(e),
    };
    match format {
        Format::Text => match super::load_or_report(&source) {
            Some(intent) => {
                output::data(&format!(
                    "{}: valid policy `{}` ({} ingress, {} egress rules)\n",
                    source.name,
                    intent.name,
                    intent.ingress.len(),
                    intent.egress.len()
                ));
                Ok(exit::OK)
            }
            None => Ok(exit::ERROR),
        },
        Format::Json => {
            // A valid policy's lint warnings are diagnostics too.
            let result = perimeter_core::policy::load(&source);
            let (valid, diags) = match &result {
                Ok(intent) => (true, Diagnostics(intent.warnings.clone())),
                Err(diags) => (false, diags.clone()),
            };
            let doc =
                json!({"format_version": 1, "valid": valid, "diagnostics": diags.json(&source)});
            output::data(&format!("{}\n", serde_json::to_string_pretty(&doc)?));
            Ok(if valid { exit::OK } else { exit::ERROR })
        }
    }
}
