//! Every example policy in policies/ loads, compiles for every cloud, decides packets like the
//! policy (or says why in a note), and its compile output is pinned by a snapshot.

use std::path::PathBuf;

use perimeter_core::SourceFile;
use perimeter_tests::{Rng, check, packets, policy_cidrs};

fn examples() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("policies/ exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 4,
        "expected the four seed examples, found {files:?}"
    );
    files
}

fn load(path: &PathBuf) -> perimeter_core::Intent {
    let text = std::fs::read_to_string(path).expect("readable");
    let name = format!("policies/{}", path.file_name().unwrap().to_string_lossy());
    let source = SourceFile::new(name, text);
    match perimeter_core::policy::load(&source) {
        Ok(i) => i,
        Err(d) => panic!("{}", d.render(&source, false)),
    }
}

#[test]
fn examples_compile_for_every_cloud_and_match_snapshots() {
    for path in examples() {
        let intent = load(&path);
        let stem = path.file_stem().unwrap().to_string_lossy().to_string();

        let aws_t = intent.targets.aws_or_placeholder(&intent.name).remove(0);
        let aws =
            perimeter_aws::compile(&intent, &aws_t).unwrap_or_else(|d| panic!("{stem} aws: {d:?}"));
        let gcp_t = intent.targets.gcp_or_placeholder(&intent.name).remove(0);
        let gcp =
            perimeter_gcp::compile(&intent, &gcp_t).unwrap_or_else(|d| panic!("{stem} gcp: {d:?}"));
        let az_t = intent.targets.azure_or_placeholder(&intent.name).remove(0);
        let azure = perimeter_azure::compile(&intent, &az_t)
            .unwrap_or_else(|d| panic!("{stem} azure: {d:?}"));

        insta::assert_snapshot!(
            format!("{stem}__aws_text"),
            perimeter_aws::render::text(&aws)
        );
        insta::assert_json_snapshot!(
            format!("{stem}__aws_json"),
            perimeter_aws::render::json(&aws)
        );
        insta::assert_snapshot!(
            format!("{stem}__gcp_text"),
            perimeter_gcp::render::text(&gcp)
        );
        insta::assert_json_snapshot!(
            format!("{stem}__gcp_json"),
            perimeter_gcp::render::json(&gcp)
        );
        insta::assert_snapshot!(
            format!("{stem}__azure_text"),
            perimeter_azure::render::text(&azure)
        );
        insta::assert_json_snapshot!(
            format!("{stem}__azure_json"),
            perimeter_azure::render::json(&azure)
        );
    }
}

#[test]
fn examples_decide_like_the_policy_or_say_why() {
    for path in examples() {
        let intent = load(&path);
        let mut rng = Rng::new(0x5eed ^ path.to_string_lossy().len() as u64);
        let probes = packets(&mut rng, &policy_cidrs(&intent), 20_000);
        let (mismatches, stats) = check(&intent, &probes);
        assert_eq!(stats.skipped_clouds, 0, "{path:?}");
        assert!(
            mismatches.is_empty(),
            "{path:?}: {:#?}",
            &mismatches[..mismatches.len().min(5)]
        );
    }
}

/// Structural facts the snapshots alone would not guard.
#[test]
fn example_structure() {
    let eks = load(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies/eks-workers.yaml"));
    let aws = perimeter_aws::compile(&eks, &eks.targets.aws[0]).unwrap();
    // Calico IP-in-IP between nodes is a self-referencing protocol-4 rule.
    assert!(
        aws.security_group
            .rules
            .iter()
            .any(|r| r.ip_protocol == "4" && r.peer == perimeter_aws::model::SgPeer::OwnGroup)
    );
    // deny-pods is IMDSv2 with hop limit 1, never a packet rule to 169.254.169.254.
    let m = aws.metadata_options.as_ref().unwrap();
    assert_eq!(
        (m.http_tokens.as_deref(), m.http_put_response_hop_limit),
        (Some("required"), Some(1))
    );
    assert!(
        !aws.security_group
            .rules
            .iter()
            .any(|r| format!("{:?}", r.peer).contains("169.254"))
    );
    // NACL entries are gapped and within the budget.
    let nacl = aws.network_acl.as_ref().unwrap();
    assert!(nacl.entries.iter().all(|e| e.rule_number % 100 == 0));

    let gke = load(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies/gke-workers.yaml"));
    let gcp = perimeter_gcp::compile(&gke, &gke.targets.gcp[0]).unwrap();
    // Order is explicit: per direction, priorities never decrease in policy order, and no
    // priority holds both an allow and a deny (GCP lets a deny win a tie); no GCP rule is an
    // ingress rule without a source.
    for dir in ["INGRESS", "EGRESS"] {
        let rules: Vec<(u16, bool)> = gcp
            .firewalls
            .iter()
            .filter(|f| f.direction == dir)
            .map(|f| (f.priority, f.allowed.is_empty()))
            .collect();
        assert!(rules.len() > 1, "{dir}: too few rules to say anything");
        assert!(
            rules.windows(2).all(|w| w[0].0 <= w[1].0),
            "{dir}: priorities decrease: {rules:?}"
        );
        for (priority, deny) in &rules {
            assert!(
                !rules.iter().any(|(p, d)| p == priority && d != deny),
                "{dir}: an allow and a deny share priority {priority}"
            );
        }
    }
    for fw in &gcp.firewalls {
        if fw.direction == "INGRESS" {
            assert!(
                !fw.source_ranges.is_empty() || !fw.source_tags.is_empty(),
                "{}",
                fw.name
            );
        }
        assert!(fw.name.len() <= 63);
    }
    assert!(
        gcp.notes
            .iter()
            .any(|n| n.code == perimeter_core::NoteCode::Unenforceable
                && n.message.contains("Workload Identity"))
    );

    let aks = load(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies/aks-workers.yaml"));
    let az = perimeter_azure::compile(&aks, &aks.targets.azure[0]).unwrap();
    let imds = az
        .rules
        .iter()
        .find(|r| r.properties.destination_address_prefix.as_deref() == Some("AzurePlatformIMDS"))
        .unwrap();
    assert_eq!(
        (imds.properties.access.as_str(), imds.properties.priority),
        ("Deny", 100)
    );
    for dir in ["Inbound", "Outbound"] {
        let mut prios: Vec<u16> = az
            .rules
            .iter()
            .filter(|r| r.properties.direction == dir)
            .map(|r| r.properties.priority)
            .collect();
        let n = prios.len();
        prios.sort_unstable();
        prios.dedup();
        assert_eq!(prios.len(), n, "priorities unique per direction");
        assert!(prios.iter().all(|p| (100..=4096).contains(p)));
    }
    // Flannel's VXLAN is 8472 (kernel default), not Calico's 4789.
    assert!(az.rules.iter().any(|r| {
        r.properties
            .destination_port_ranges
            .iter()
            .any(|p| p == "8472")
            || r.properties.destination_port_range.as_deref() == Some("8472")
    }));
}
