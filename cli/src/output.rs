//! Where output goes: data to stdout, diagnostics to stderr (redacted), colour only on a
//! terminal and never with NO_COLOR.

use std::io::{IsTerminal, Write};

/// True when stderr is a terminal and NO_COLOR is unset or empty.
pub(crate) fn stderr_color() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

/// True when stdout is a terminal and NO_COLOR is unset or empty.
pub(crate) fn stdout_color() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stdout().is_terminal()
}

/// Writes data to stdout. A closed pipe (`| head`) is not an error worth a panic.
pub(crate) fn data(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Writes a diagnostic or progress message to stderr, without credentials: errors quote
/// servers and SDKs, and a server or proxy may echo the request's headers.
pub(crate) fn diag(text: &str) {
    let text = perimeter_core::redact::redact(text, &known_secrets());
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes());
    let _ = err.flush();
}

/// The credentials this process was given in its environment.
fn known_secrets() -> Vec<String> {
    [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "PERIMETER_AZURE_TOKEN",
        "AZURE_CLIENT_SECRET",
        "PERIMETER_PLAN_KEY",
    ]
    .into_iter()
    .filter_map(|name| std::env::var(name).ok())
    .collect()
}
