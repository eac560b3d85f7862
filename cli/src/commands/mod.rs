//! One module per subcommand; each returns the process exit code.

pub(crate) mod apply;
pub(crate) mod compile;
pub(crate) mod drift;
pub(crate) mod plan;
pub(crate) mod presets;
pub(crate) mod validate;

use std::path::Path;

use anyhow::Context;
use perimeter_core::diag::MAX_INPUT_BYTES;
use perimeter_core::{Diagnostics, Intent, SourceFile};

/// Reads a policy file. A missing, special or oversized file is an error; bytes that are not
/// UTF-8 are reported by the loader at their line and column.
pub(crate) fn read_policy(path: &Path) -> anyhow::Result<SourceFile> {
    let bytes = read_input(path, "policy file")?;
    Ok(SourceFile::from_bytes(path.display().to_string(), bytes))
}

/// Reads an input file (policy, baseline, saved plan) that may come from a pull request: a
/// regular file of at most [`MAX_INPUT_BYTES`], read with that bound, so a FIFO, a device
/// or an endless file can neither block nor exhaust the runner.
pub(crate) fn read_input(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    use std::io::Read as _;
    let name = path.display();
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read {what} {name}"))?;
    if !meta.is_file() {
        anyhow::bail!(
            "{name}: error[input::not-a-file]: the {what} is not a regular file (a directory, FIFO, socket or device)\n  help: pass the path of a file"
        );
    }
    let too_large = || {
        anyhow::anyhow!(
            "{name}: error[input::too-large]: the {what} is larger than {} MiB\n  help: perimeter reads inputs of at most 16 MiB; is this the right file?",
            MAX_INPUT_BYTES / (1024 * 1024)
        )
    };
    if meta.len() > MAX_INPUT_BYTES {
        return Err(too_large());
    }
    let file = std::fs::File::open(path).with_context(|| format!("cannot read {what} {name}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_INPUT_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {what} {name}"))?;
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        return Err(too_large());
    }
    Ok(bytes)
}

/// Reads an input file that must be UTF-8 text (a saved plan, a baseline).
pub(crate) fn read_text(path: &Path, what: &str) -> anyhow::Result<String> {
    String::from_utf8(read_input(path, what)?).map_err(|e| {
        anyhow::anyhow!(
            "{}: error[input::not-utf8]: the {what} is not UTF-8 text (first bad byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })
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
