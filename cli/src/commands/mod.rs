//! One module per subcommand; each returns the process exit code.

pub(crate) mod apply;
pub(crate) mod compile;
pub(crate) mod drift;
pub(crate) mod plan;
pub(crate) mod presets;
pub(crate) mod validate;

use std::path::Path;

use anyhow::Context;
use perimeter_core::{Diagnostics, Intent, SourceFile};

/// Reads a policy file as text. A missing or unreadable file is an error, not a diagnostic.
pub(crate) fn read_policy(path: &Path) -> anyhow::Result<SourceFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read policy file {}", path.display()))?;
    Ok(SourceFile::new(path.display().to_string(), text))
}

/// Loads a policy, printing its diagnostics to stderr on failure.
pub(crate) fn load_or_report(source: &SourceFile) -> Option<Intent> {
    match perimeter_core::policy::load(source) {
        Ok(intent) => {
            if !intent.warnings.is_empty() {
                report(source, &Diagnostics(intent.warnings.clone()));
            }
            Some(intent)
        }
        Err(diags) => {
            report(source, &diags);
            None
        }
    }
}

/// Prints diagnostics to stderr.
pub(crate) fn report(source: &SourceFile, diags: &Diagnostics) {
    crate::output::diag(&diags.render(source, crate::output::stderr_color()));
}
