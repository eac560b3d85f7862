//! One module per subcommand; each returns the process exit code.

pub(crate) mod apply;
pub(crate) mod compile;
pub(crate) mod drift;
pub(crate) mod plan;
pub(crate) mod presets;
pub(crate) mod validate;

use std::path::Path;

use perimeter_core::diag::MAX_INPUT_BYTES;
use perimeter_core::{Diagnostics, Intent, SourceFile};

/// Reads a policy file. A missing, special or oversized file is an error; bytes that are not
/// UTF-8 are reported by the loader at their line and column.
pub(crate) fn read_policy(path: &Path) -> anyhow::Result<SourceFile> {
    let bytes = read_input(path, "policy file")?;
    Ok(SourceFile::from_bytes(path.display().to_string(), bytes))
}

/// An input file perimeter will not read: missing, special, too large, not text.
#[derive(Debug)]
pub(crate) struct InputError {
    pub(crate) file: String,
    /// `input::unreadable`, `input::not-a-file`, `input::too-large`, `input::not-utf8`.
    pub(crate) code: &'static str,
    pub(crate) message: String,
    pub(crate) help: String,
}

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: error[{}]: {}\n  help: {}",
            self.file, self.code, self.message, self.help
        )
    }
}

impl std::error::Error for InputError {}

/// Reads an input file (policy, baseline, saved plan) that may come from a pull request: a
/// regular file of at most [`MAX_INPUT_BYTES`], read with that bound, so a FIFO, a device
/// or an endless file can neither block nor exhaust the runner.
pub(crate) fn read_input(path: &Path, what: &str) -> Result<Vec<u8>, InputError> {
    use std::io::Read as _;
    let error = |code, message: String, help: &str| InputError {
        file: path.display().to_string(),
        code,
        message,
        help: help.into(),
    };
    let unreadable = |e: std::io::Error| {
        error(
            "input::unreadable",
            format!("cannot read the {what}: {e}"),
            "check the path and the file's permissions",
        )
    };
    let too_large = || {
        error(
            "input::too-large",
            format!(
                "the {what} is larger than {} MiB",
                MAX_INPUT_BYTES / (1024 * 1024)
            ),
            "perimeter reads inputs of at most 16 MiB; is this the right file?",
        )
    };
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    if !meta.is_file() {
        return Err(error(
            "input::not-a-file",
            format!("the {what} is not a regular file (a directory, FIFO, socket or device)"),
            "pass the path of a file",
        ));
    }
    if meta.len() > MAX_INPUT_BYTES {
        return Err(too_large());
    }
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let mut bytes = Vec::new();
    file.take(MAX_INPUT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        return Err(too_large());
    }
    Ok(bytes)
}

/// Reads an input file that must be UTF-8 text (a saved plan, a baseline).
pub(crate) fn read_text(path: &Path, what: &str) -> Result<String, InputError> {
    String::from_utf8(read_input(path, what)?).map_err(|e| InputError {
        file: path.display().to_string(),
        code: "input::not-utf8",
        message: format!(
            "the {what} is not UTF-8 text (first bad byte at offset {})",
            e.utf8_error().valid_up_to()
        ),
        help: "perimeter writes plans and reports as UTF-8 JSON; make it again".into(),
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
