//! The `perimeter` binary as a user runs it: exit codes, where output goes, JSON shapes.
//! Fixtures live in the workspace's tests/ directory.

use std::path::PathBuf;
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn perimeter(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_perimeter"))
        .args(args)
        .current_dir(root())
        .env("NO_COLOR", "1")
        .output()
        .expect("run perimeter")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn validate_accepts_every_example() {
    for name in ["eks-workers", "gke-workers", "aks-workers", "multi-cloud"] {
        let path = format!("policies/{name}.yaml");
        let o = perimeter(&["validate", &path]);
        assert_eq!(o.status.code(), Some(0), "{name}: {}", stderr(&o));
        assert!(stdout(&o).contains("valid policy"), "{}", stdout(&o));
    }
}

#[test]
fn every_invalid_fixture_exits_1_with_a_location_and_prints_no_data() {
    let dir = root().join("tests/fixtures/invalid");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 20);
    for path in files {
        let rel = format!(
            "tests/fixtures/invalid/{}",
            path.file_name().unwrap().to_string_lossy()
        );
        let o = perimeter(&["compile", &rel]);
        assert_eq!(o.status.code(), Some(1), "{rel}: {}", stderr(&o));
        assert!(stdout(&o).is_empty(), "{rel}: data printed despite errors");
        let err = stderr(&o);
        let located = err.lines().any(|l| {
            l.strip_prefix(&format!("{rel}:"))
                .and_then(|rest| rest.split(':').next())
                .is_some_and(|line| line.parse::<usize>().is_ok())
        });
        assert!(located, "{rel}: no file:line:column in\n{err}");
        assert!(!err.contains('\u{1b}'), "{rel}: colour despite NO_COLOR");
    }
}

#[test]
fn validate_json_reports_diagnostics_with_positions() {
    let o = perimeter(&[
        "validate",
        "tests/fixtures/invalid/10-unknown-network.yaml",
        "--format",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["valid"], false);
    let d = &doc["diagnostics"][0];
    assert_eq!(d["code"], "policy::unknown-network");
    assert_eq!(
        (d["line"].as_u64(), d["column"].as_u64()),
        (Some(7), Some(26))
    );
    assert_eq!(d["help"], "did you mean `monitoring`?");
}

#[test]
fn compile_json_uses_each_api_s_field_names() {
    let o = perimeter(&["compile", "policies/multi-cloud.yaml", "--format", "json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["format_version"], 1);
    let sg = &doc["aws"][0]["SecurityGroup"];
    assert!(
        sg["IpPermissions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["IpProtocol"] == "tcp" && p["FromPort"] == 10250)
    );
    assert!(doc["aws"][0]["NetworkAcl"]["Entries"][0]["RuleNumber"].is_u64());
    assert_eq!(
        doc["aws"][0]["InstanceMetadataOptions"]["HttpTokens"],
        "required"
    );
    let fw = &doc["gcp"][0]["firewalls"][0];
    assert!(fw["priority"].is_u64() && fw["direction"].is_string() && fw["targetTags"].is_array());
    let rule = &doc["azure"][0]["securityRules"][0];
    assert!(rule["properties"]["priority"].is_u64() && rule["properties"]["access"].is_string());
    assert!(
        doc["gcp"][0]["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["code"] == "unenforceable")
    );
}

#[test]
fn compile_one_cloud_only() {
    let o = perimeter(&[
        "compile",
        "policies/gke-workers.yaml",
        "--cloud",
        "gcp",
        "--format",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(doc.get("gcp").is_some() && doc.get("aws").is_none() && doc.get("azure").is_none());
    let text = stdout(&perimeter(&[
        "compile",
        "policies/gke-workers.yaml",
        "--cloud",
        "gcp",
    ]));
    assert!(text.contains("gke-workers-i-cilium-self") && !text.contains("AWS security group"));
}

#[test]
fn usage_and_io_errors() {
    let o = perimeter(&["validate", "does/not/exist.yaml"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with(
            "does/not/exist.yaml: error[input::unreadable]: cannot read the policy file"
        ),
        "{}",
        stderr(&o)
    );
    // A usage error exits 1 (as Terraform): 2 means "changes present" to a pipeline, and a
    // mistyped flag must never read as drift.
    let o = perimeter(&["compile", "policies/eks-workers.yaml", "--cloud", "oracle"]);
    assert_eq!(o.status.code(), Some(1), "a usage error exits 1");
    assert!(
        stderr(&o).contains("invalid value 'oracle'"),
        "{}",
        stderr(&o)
    );
    for args in [
        &["drift", "policies/eks-workers.yaml", "--formt", "json"][..],
        &["plan"][..],
        &["no-such-command"][..],
    ] {
        let o = perimeter(args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
    }
    let o = perimeter(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("Examples:") && stdout(&o).contains("Exit codes"));
    let o = perimeter(&["--version"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).starts_with("perimeter "), "{}", stdout(&o));
    let o = perimeter(&["presets"]);
    assert!(stdout(&o).contains("cni:cilium/wireguard") && stdout(&o).contains("51871"));
}

#[test]
fn shadowed_rules_are_warned_about_but_the_policy_stays_valid() {
    let dir = std::env::temp_dir().join(format!("perimeter-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("shadow.yaml");
    std::fs::write(
        &path,
        "apiVersion: perimeter/v1\nkind: NodePerimeter\nname: s\ningress:\n  - {name: all, from: 10.0.0.0/16, services: [any]}\n  - {name: ssh, from: 10.0.1.0/24, services: [ssh]}\n",
    )
    .unwrap();
    let o = perimeter(&["validate", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        stderr(&o).contains("warning[policy::shadowed-rule]"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains(":6:5:"), "{}", stderr(&o));
    // The JSON form carries the warning too, and the policy stays valid.
    let o = perimeter(&["validate", path.to_str().unwrap(), "--format", "json"]);
    assert_eq!(o.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(doc["valid"], true);
    assert_eq!(doc["diagnostics"][0]["code"], "policy::shadowed-rule");
    assert_eq!(doc["diagnostics"][0]["severity"], "warning");
    assert_eq!(doc["diagnostics"][0]["line"], 6);
    let _ = std::fs::remove_dir_all(dir);
}
