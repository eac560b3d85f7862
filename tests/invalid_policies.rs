//! Every malformed policy under tests/fixtures/invalid/ is refused with located diagnostics,
//! all of them at once, and what the user sees is pinned by a snapshot.

use std::path::PathBuf;

use perimeter_core::{Diagnostics, SourceFile};

/// Loads and compiles for every cloud, returning all diagnostics (policy or compile).
fn diagnose(source: &SourceFile) -> Diagnostics {
    let intent = match perimeter_core::policy::load(source) {
        Ok(i) => i,
        Err(d) => return d,
    };
    let mut d = Diagnostics::default();
    let name = &intent.name;
    for t in intent.targets.aws_or_placeholder(name) {
        d.0.extend(
            perimeter_aws::compile(&intent, &t)
                .err()
                .map(|e| e.0)
                .unwrap_or_default(),
        );
    }
    for t in intent.targets.gcp_or_placeholder(name) {
        d.0.extend(
            perimeter_gcp::compile(&intent, &t)
                .err()
                .map(|e| e.0)
                .unwrap_or_default(),
        );
    }
    for t in intent.targets.azure_or_placeholder(name) {
        d.0.extend(
            perimeter_azure::compile(&intent, &t)
                .err()
                .map(|e| e.0)
                .unwrap_or_default(),
        );
    }
    d
}

#[test]
fn every_malformed_policy_gets_located_diagnostics() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/invalid");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(
        files.len() >= 20,
        "at least 20 kinds of malformed input, found {}",
        files.len()
    );
    let mut codes = std::collections::BTreeSet::new();
    for path in files {
        let stem = path.file_stem().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        let source = SourceFile::new(format!("fixtures/invalid/{stem}.yaml"), text);
        let diags = diagnose(&source);
        assert!(diags.has_errors(), "{stem}: expected an error");
        for d in &diags.0 {
            assert!(d.span.is_some(), "{stem}: `{}` has no location", d.message);
            assert!(
                d.help.is_some() || !d.label.is_empty(),
                "{stem}: `{}` says nothing about a fix",
                d.message
            );
            codes.insert(d.code);
        }
        insta::assert_snapshot!(format!("invalid__{stem}"), diags.render(&source, false));
    }
    assert!(
        codes.len() >= 20,
        "only {} distinct diagnostic codes: {codes:?}",
        codes.len()
    );
}

#[test]
fn all_problems_are_reported_at_once() {
    let text = "apiVersion: perimeter/v1\nkind: NodePerimeter\nname: x\nnetworks:\n  a: [10.0.0.1/8]\ningress:\n  - {name: r, from: nope, services: [shh]}\n  - {name: r, from: a, services: [tcp/99999]}\nbogus: 1\n";
    let d = perimeter_core::policy::load_str("multi.yaml", text).unwrap_err();
    let codes: Vec<&str> = d.0.iter().map(|d| d.code).collect();
    for expected in [
        "policy::cidr-host-bits",
        "policy::unknown-network",
        "policy::unknown-service",
        "policy::bad-service",
        "policy::unknown-key",
    ] {
        assert!(
            codes.contains(&expected),
            "{expected} missing from {codes:?}"
        );
    }
}

#[test]
fn no_input_panics() {
    // Truncations and byte flips of a real policy must give diagnostics, never a panic.
    let base = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies/multi-cloud.yaml"),
    )
    .unwrap();
    let bytes = base.as_bytes();
    for cut in (0..bytes.len()).step_by(7) {
        let text = String::from_utf8_lossy(&bytes[..cut]);
        let _ = perimeter_core::policy::load_str("cut.yaml", &text);
    }
    let mut rng = perimeter_tests::Rng::new(7);
    for _ in 0..2000 {
        let mut b = bytes.to_vec();
        for _ in 0..3 {
            let i = rng.below(b.len() as u64) as usize;
            b[i] = *rng.pick(b"{}[]:,-'\"#&*!|>% \n\t0aZ/\xc3");
        }
        let text = String::from_utf8_lossy(&b);
        if let Ok(intent) = perimeter_core::policy::load_str("flip.yaml", &text) {
            let _ = diagnose(&SourceFile::new("flip.yaml", text.to_string()));
            let _ = intent;
        }
    }
}
