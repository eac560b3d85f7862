//! `perimeter validate POLICY`

use std::path::Path;

use perimeter_core::Diagnostics;
use serde_json::json;

use crate::args::Format;
use crate::{exit, output};

pub(crate) fn run(path: &Path, format: Format) -> anyhow::Result<u8> {
    let source = super::read_policy(path)?;
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
            let result = perimeter_core::policy::load(&source);
            let diags = result
                .as_ref()
                .err()
                .cloned()
                .unwrap_or_else(Diagnostics::default);
            let list: Vec<_> = diags
                .0
                .iter()
                .map(|d| {
                    let (line, column) = d.span.map_or((0, 0), |s| source.line_col(s.offset));
                    json!({
                        "severity": d.severity,
                        "code": d.code,
                        "message": d.message,
                        "file": source.name,
                        "line": line,
                        "column": column,
                        "label": d.label,
                        "help": d.help,
                    })
                })
                .collect();
            let doc = json!({"format_version": 1, "valid": result.is_ok(), "diagnostics": list});
            output::data(&format!("{}\n", serde_json::to_string_pretty(&doc)?));
            Ok(if result.is_ok() {
                exit::OK
            } else {
                exit::ERROR
            })
        }
    }
}
