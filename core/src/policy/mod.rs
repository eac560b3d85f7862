//! The policy language (v1): YAML in, [`Intent`] out, every problem reported at once.
//!
//! ```text
//! text ──yaml::parse──▶ Node tree (spans) ──decode──▶ PolicyDoc ──resolve──▶ Intent
//! ```

mod decode;
pub mod lint;
mod literal;
mod naming;
pub mod presets;
mod resolve;

pub use decode::Spanned;
pub use literal::parse_literal;
pub use resolve::MAX_NAME_LEN;

use crate::diag::{Diagnostic, Diagnostics, SourceFile, Span};
use crate::intent::Intent;

/// Reads a policy. On failure returns every diagnostic found, sorted by position.
pub fn load(source: &SourceFile) -> Result<Intent, Diagnostics> {
    if let Some(at) = source.not_utf8_at {
        return Err(Diagnostics(vec![
            Diagnostic::error(
                "input::not-utf8",
                Span::new(at, 0),
                "the policy file is not UTF-8 text",
            )
            .label("the first byte that is not UTF-8")
            .help(if source.utf16 {
                "it looks like UTF-16 (a byte-order mark): save it as UTF-8"
            } else {
                "save the file as UTF-8; YAML policies are UTF-8 text"
            }),
        ]));
    }
    let root = match crate::yaml::parse(&source.text) {
        Ok(Some(root)) => root,
        Ok(None) => {
            return Err(Diagnostics(vec![
                Diagnostic::error("policy::empty", Span::new(0, 0), "the policy file is empty")
                    .label("expected a NodePerimeter document")
                    .help("start from one of the examples in policies/"),
            ]));
        }
        Err(d) => return Err(Diagnostics(vec![d])),
    };
    let mut decoder = decode::Decoder {
        diags: Vec::new(),
        text: &source.text,
    };
    let doc = decoder.policy(&root);
    let mut diags = Diagnostics(decoder.diags);
    let Some(doc) = doc else {
        diags.sort();
        return Err(diags);
    };
    let mut resolver = resolve::Resolver::new(&doc, &source.text);
    let intent = resolver.intent();
    diags.0.extend(resolver.diags);
    if diags.has_errors() {
        diags.sort();
        diags.0.dedup();
        return Err(diags);
    }
    let mut intent = intent;
    intent.warnings = lint::shadowed_rules(&intent);
    Ok(intent)
}

/// Reads a policy from a string (tests, benchmarks).
pub fn load_str(name: &str, text: &str) -> Result<Intent, Diagnostics> {
    load(&SourceFile::new(name, text))
}
