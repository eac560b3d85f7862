//! `perimeter destroy` and `plan --destroy` end to end on every cloud's emulator: everything
//! the policy owns goes, in an order the cloud accepts, with the same saved-plan checks as
//! apply; what it does not own stays; afterwards `plan --destroy` has nothing left to do.

mod common;

use aws_sdk_ec2::types::Filter;
use common::{code, text};
use serde_json::json;

#[test]
fn aws_destroy_takes_the_group_off_the_nodes_moves_the_subnets_back_and_deletes_both() {
    use common::aws::{client, path, perimeter, runtime, world};
    let rt = runtime();
    let w = rt.block_on(world("us-west-2"));
    let p = path(&w.policy);
    assert_eq!(
        perimeter(&["apply", p, "--auto-approve"]).status.code(),
        Some(0)
    );

    // Without --auto-approve, destroy only says how.
    let o = perimeter(&["destroy", p]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("--destroy --out plan.json"),
        "{}",
        text(&o)
    );

    let plan_file = w.policy.with_file_name("destroy.json");
    let o = perimeter(&[
        "plan",
        p,
        "--destroy",
        "--out",
        path(&plan_file),
        "--detailed-exitcode",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("- security group eks-workers"), "{out}");
    assert!(out.contains("(the owned group taken off)"), "{out}");
    assert!(out.contains("back to NACL acl-"), "{out}");
    assert!(out.contains("to destroy"), "{out}");
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&plan_file).unwrap()).unwrap();
    assert_eq!(saved["destroy"], true);

    let o = perimeter(&["apply", path(&plan_file)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("0 change(s) left"), "{}", text(&o));

    rt.block_on(async {
        let c = client(&w.region).await;
        let groups = c
            .describe_security_groups()
            .filters(Filter::builder().name("vpc-id").values(&w.vpc).build())
            .send()
            .await
            .unwrap();
        let names: Vec<&str> = groups
            .security_groups()
            .iter()
            .filter_map(|g| g.group_name())
            .collect();
        assert_eq!(names, ["default"], "only the VPC's own group is left");
        let acls = c
            .describe_network_acls()
            .filters(Filter::builder().name("vpc-id").values(&w.vpc).build())
            .send()
            .await
            .unwrap();
        assert_eq!(
            acls.network_acls().len(),
            1,
            "only the default NACL is left"
        );
        assert_eq!(acls.network_acls()[0].is_default(), Some(true));
        assert_eq!(acls.network_acls()[0].associations().len(), 2);
    });
    let o = perimeter(&["plan", p, "--destroy", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn gcp_destroy_deletes_the_owned_rules_and_leaves_gkes() {
    use common::gcp::{Emulator, gke_rule, policy, scratch};
    let emulator = Emulator::start();
    emulator.insert(gke_rule());
    let dir = scratch("destroy");
    let policy = policy(&dir);
    let p = policy.to_str().unwrap();
    assert_eq!(
        code(&emulator.perimeter(&["apply", p, "--auto-approve"])),
        0
    );
    let owned = |names: &[String]| {
        names
            .iter()
            .filter(|n| n.starts_with("gke-workers-"))
            .count()
    };
    let before = emulator.names();
    assert!(owned(&before) > 5, "{before:?}");

    let o = emulator.perimeter(&["destroy", p, "--auto-approve"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let after = emulator.names();
    assert_eq!(owned(&after), 0, "{after:?}");
    assert_eq!(
        after.len(),
        before.len() - owned(&before),
        "the rules of others stay: {after:?}"
    );
    assert!(after.iter().any(|n| n == "gke-prod-abc123-hc"));
    let o = emulator.perimeter(&["plan", p, "--destroy", "--detailed-exitcode"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn azure_destroy_deletes_an_owned_nsg_and_only_perimeters_rules_of_a_shared_one() {
    use common::azure::{Emulator, policy, rule_names, scratch};
    // Owned: the NSG goes.
    let emulator = Emulator::start();
    let dir = scratch("destroy-owned");
    let owned = policy(&dir, false);
    let p = owned.to_str().unwrap();
    assert_eq!(
        code(&emulator.perimeter(&["apply", p, "--auto-approve"])),
        0
    );
    let o = emulator.perimeter(&["destroy", p, "--auto-approve"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(text(&o).contains("NSG aks-workers deleted"), "{}", text(&o));
    assert_eq!(emulator.nsg().0, 404);
    let o = emulator.perimeter(&["plan", p, "--destroy", "--detailed-exitcode"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let _ = std::fs::remove_dir_all(dir);

    // Shared: AKS's rules stay, perimeter's go.
    let emulator = Emulator::start();
    emulator.aks_nsg(0);
    let dir = scratch("destroy-shared");
    let shared = policy(&dir, true);
    let p = shared.to_str().unwrap();
    assert_eq!(
        code(&emulator.perimeter(&["apply", p, "--auto-approve"])),
        0
    );
    assert_eq!(rule_names(&emulator.nsg().1).len(), 15);
    let o = emulator.perimeter(&["destroy", p, "--auto-approve"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let mut left = rule_names(&emulator.nsg().1);
    left.sort();
    assert_eq!(
        left,
        json!([
            "aks-allow-outbound",
            "k8s-azure-lb_allow_IPv4_443",
            "k8s-azure-lb_allow_IPv4_80"
        ])
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect::<Vec<_>>()
    );
    let _ = std::fs::remove_dir_all(dir);
}
