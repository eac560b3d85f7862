//! Hostile and odd inputs, as a pull request could bring them: each is refused with a
//! located diagnostic (pinned by a snapshot), exit code 1, within 1 s of CPU and 200 MB of
//! memory. The limits are the kernel's (`ulimit -t 1 -d 204800` on the perimeter process), not
//! a wall clock: a run over either is killed by a signal and has no exit code.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::scratch;

/// Runs perimeter in `dir` under a CPU-time and a data-size limit.
fn limited(dir: &Path, args: &[&str]) -> Output {
    Command::new("bash")
        .arg("-c")
        .arg(r#"ulimit -t 1 -d 204800 && exec "$0" "$@""#)
        .arg(env!("CARGO_BIN_EXE_perimeter"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("run perimeter under limits")
}

const HEADER: &str = "apiVersion: perimeter/v1\nkind: NodePerimeter\nname: hostile\n";

/// Each reproducer: a file name and its bytes.
fn reproducers() -> Vec<(&'static str, Vec<u8>)> {
    let mut bomb = format!("{HEADER}x-anchors:\n  a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..8 {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        bomb.push_str(&format!("  a{i}: &a{i} [{refs}]\n"));
    }
    let mut services = format!("{HEADER}services:\n  s0: [tcp/1]\n");
    for i in 1..=30 {
        services.push_str(&format!("  s{i}: [s{}, s{}]\n", i - 1, i - 1));
    }
    services.push_str("ingress:\n  - {name: all, from: nowhere, services: [s30]}\n");
    let mut many = format!("{HEADER}ingress:\n");
    for i in 0..4000 {
        many.push_str(&format!(
            "  - {{name: r{i}, from: nowhere, services: [ssh]}}\n"
        ));
    }
    let mut not_utf8 = format!("{HEADER}description: caf").into_bytes();
    not_utf8.extend_from_slice(b"\xff\n");
    let mut utf16 = vec![0xFF, 0xFE];
    for unit in HEADER.encode_utf16() {
        utf16.extend_from_slice(&unit.to_le_bytes());
    }
    vec![
        (
            "long-column.yaml",
            format!("{{{}zz: 1}}\n", " ".repeat(65535)).into_bytes(),
        ),
        ("alias-bomb.yaml", bomb.into_bytes()),
        ("exponential-services.yaml", services.into_bytes()),
        ("many-errors.yaml", many.into_bytes()),
        ("not-utf8.yaml", not_utf8),
        ("utf16.yaml", utf16),
    ]
}

#[test]
fn each_hostile_policy_is_refused_with_a_located_diagnostic_within_bounds() {
    let dir = scratch("hostile");
    for (name, bytes) in reproducers() {
        std::fs::write(dir.join(name), bytes).unwrap();
        let o = limited(&dir, &["validate", name]);
        let stderr = String::from_utf8_lossy(&o.stderr).to_string();
        assert_eq!(o.status.code(), Some(1), "{name}: {:?}\n{stderr}", o.status);
        assert!(stderr.starts_with(&format!("{name}:")), "{name}: {stderr}");
        // 4,000 errors: the first 100 are rendered; the end of the report says so.
        let pinned = match name {
            "many-errors.yaml" => {
                let tail: Vec<&str> = stderr.lines().rev().take(2).collect();
                format!("{}\n{}", tail[1], tail[0])
            }
            _ => stderr.clone(),
        };
        insta::assert_snapshot!(name, pinned);
        // The JSON report is always a JSON document, errors included.
        let o = limited(&dir, &["validate", name, "--format", "json"]);
        assert_eq!(o.status.code(), Some(1), "{name} json: {:?}", o.status);
        let doc: serde_json::Value =
            serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{name}: not JSON ({e})"));
        assert_eq!(doc["valid"], false);
        assert!(
            doc["diagnostics"][0]["line"].as_u64().unwrap() >= 1,
            "{name}: {doc}"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn special_files_are_refused_without_reading_them() {
    let dir = scratch("special");
    let fifo = dir.join("fifo.yaml");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    let policy = dir.join("policy.yaml");
    std::fs::write(
        &policy,
        format!("{HEADER}targets:\n  gcp: {{project: acme-prod, network: prod}}\n"),
    )
    .unwrap();
    for args in [
        &["validate", "fifo.yaml"][..],
        &["validate", "/dev/zero"][..],
        &["plan", "fifo.yaml"][..],
        &["apply", "fifo.yaml"][..],
        &["drift", "policy.yaml", "--baseline", "fifo.yaml"][..],
        &["drift", "policy.yaml", "--baseline", "/dev/zero"][..],
    ] {
        let o = limited(&dir, args);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(
            o.status.code(),
            Some(1),
            "{args:?}: {:?} {stderr}",
            o.status
        );
        assert!(
            stderr.contains("error[input::not-a-file]"),
            "{args:?}: {stderr}"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}
