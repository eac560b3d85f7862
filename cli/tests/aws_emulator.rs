//! End to end against a real EC2 emulator (moto server, LocalStack's EC2 engine) on
//! 127.0.0.1: plan, apply, out-of-band changes, stale plans, ownership.
//!
//! The tests start the emulator themselves with `localstack/moto.sh start` (installing it into
//! a virtualenv on first use) and leave it running for the other tests; `.ci/run` stops it.
//! Each test works in its own region, which moto keeps as a separate backend, so the tests
//! run in parallel without seeing each other.

mod common;

use aws_sdk_ec2::types::{Filter, HttpTokensState};
use common::aws::{
    World, authorize, client, owned_group, path, perimeter, rule_count, runtime, team_owned_group,
    world,
};
use common::text;

#[test]
fn fresh_account_plan_apply_plan_converges_and_a_second_apply_writes_nothing() {
    let rt = runtime();
    let w = rt.block_on(world("us-west-1"));
    let p = path(&w.policy);

    let o = perimeter(&["plan", p, "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("+ security group eks-workers"), "{out}");
    assert!(
        out.contains("- egress all traffic to 0.0.0.0/0  (default rule of a new group)"),
        "{out}"
    );
    assert!(out.contains("HttpTokens optional → required"), "{out}");

    let o = perimeter(&["apply", p, "--auto-approve"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("0 change(s) left"), "{}", text(&o));

    let o = perimeter(&["plan", p, "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("No changes."), "{}", text(&o));

    let o = perimeter(&["apply", p, "--auto-approve"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("in 0 write call(s)"), "{}", text(&o));

    // The cloud holds what the policy says: IMDSv2 with hop limit 1 on both workers, the
    // subnets on the owned NACL.
    rt.block_on(async {
        let c = client(&w.region).await;
        let d = c
            .describe_instances()
            .set_instance_ids(Some(w.instances.clone()))
            .send()
            .await
            .unwrap();
        for i in d.reservations().iter().flat_map(|r| r.instances()) {
            let m = i.metadata_options().unwrap();
            assert_eq!(m.http_tokens(), Some(&HttpTokensState::Required));
            assert_eq!(m.http_put_response_hop_limit(), Some(1));
        }
        let acls = c
            .describe_network_acls()
            .filters(
                Filter::builder()
                    .name("association.subnet-id")
                    .values(&w.subnets[0])
                    .values(&w.subnets[1])
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let owned: Vec<_> = acls
            .network_acls()
            .iter()
            .filter(|a| a.tags().iter().any(|t| t.key() == Some("perimeter:policy")))
            .collect();
        assert_eq!(owned.len(), 1);
        assert_eq!(owned[0].associations().len(), 2);
    });
}

/// Out of band: someone opens SSH to the world, deletes the node-exporter rule and turns
/// IMDSv1 back on.
async fn open_ssh_drop_exporter_allow_imdsv1(w: &World) {
    let c = client(&w.region).await;
    let gid = owned_group(&c, &w.vpc).await;
    authorize(&c, &gid, "tcp", 22, "0.0.0.0/0").await;
    let rules = c
        .describe_security_group_rules()
        .filters(Filter::builder().name("group-id").values(&gid).build())
        .send()
        .await
        .unwrap();
    let exporter = rules
        .security_group_rules()
        .iter()
        .find(|r| r.from_port() == Some(9100))
        .unwrap()
        .security_group_rule_id()
        .unwrap()
        .to_string();
    c.revoke_security_group_ingress()
        .group_id(&gid)
        .security_group_rule_ids(exporter)
        .send()
        .await
        .unwrap();
    // With the hop limit it has: LocalStack 4.14 answers 500 when the request leaves it out.
    c.modify_instance_metadata_options()
        .instance_id(&w.instances[0])
        .http_tokens(HttpTokensState::Optional)
        .http_put_response_hop_limit(2)
        .send()
        .await
        .unwrap();
}

/// drift reports each change, classified, with exit code 2; a baseline made from the report
/// accepts exactly that drift; the Prometheus file says so.
fn drift_is_reported_classified_and_accepted_by_a_baseline(w: &World) {
    let p = path(&w.policy);
    let o = perimeter(&["drift", p, "--format", "json"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["in_sync"], false);
    assert_eq!(
        report["counts"],
        serde_json::json!({"missing": 1, "unexpected": 1, "modified": 1, "violation": 0, "posture": 0})
    );
    let kinds: Vec<(String, String)> = report["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["kind"].as_str().unwrap().to_string(),
                i["detail"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        kinds
            .iter()
            .any(|(k, d)| k == "missing" && d.contains("tcp 9100")),
        "{kinds:?}"
    );
    assert!(
        kinds
            .iter()
            .any(|(k, d)| k == "unexpected" && d.contains("tcp 22 from 0.0.0.0/0")),
        "{kinds:?}"
    );
    assert!(
        kinds
            .iter()
            .any(|(k, d)| k == "modified" && d.contains(&w.instances[0])),
        "{kinds:?}"
    );
    // A baseline made from that report accepts exactly that drift.
    let baseline = w.policy.with_file_name("baseline.json");
    std::fs::write(&baseline, &o.stdout).unwrap();
    let o = perimeter(&["drift", p, "--baseline", path(&baseline)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o)
            .contains("In sync: 0 missing, 0 unexpected, 0 modified, 0 violations, 0 posture (3 accepted by the baseline)"),
        "{}",
        text(&o)
    );
    let o = perimeter(&["drift", p, "--format", "prometheus"]);
    assert_eq!(o.status.code(), Some(2));
    let prom = text(&o);
    assert!(
        prom.contains("perimeter_drift_items{policy=\"eks-workers\",kind=\"unexpected\"} 1"),
        "{prom}"
    );
    assert!(
        prom.contains("perimeter_in_sync{policy=\"eks-workers\"} 0"),
        "{prom}"
    );
}

#[test]
fn out_of_band_changes_are_planned_and_repaired() {
    let rt = runtime();
    let w = rt.block_on(world("eu-west-1"));
    let p = path(&w.policy);
    assert_eq!(
        perimeter(&["apply", p, "--auto-approve"]).status.code(),
        Some(0)
    );

    rt.block_on(open_ssh_drop_exporter_allow_imdsv1(&w));
    drift_is_reported_classified_and_accepted_by_a_baseline(&w);

    let o = perimeter(&["plan", p, "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains("+ ingress tcp 9100 from 10.0.200.0/24"),
        "{out}"
    );
    assert!(out.contains("- ingress tcp 22 from 0.0.0.0/0"), "{out}");
    assert!(
        out.contains(&format!(
            "~ {}: HttpTokens optional → required",
            w.instances[0]
        )),
        "{out}"
    );
    assert!(
        out.contains("Plan: 1 to add, 1 to change, 1 to destroy."),
        "{out}"
    );

    assert_eq!(
        perimeter(&["apply", p, "--auto-approve"]).status.code(),
        Some(0)
    );
    assert_eq!(
        perimeter(&["plan", p, "--detailed-exitcode"]).status.code(),
        Some(0)
    );
    assert_eq!(perimeter(&["drift", p]).status.code(), Some(0));
}

#[test]
fn a_stale_saved_plan_is_refused_and_nothing_is_written() {
    let rt = runtime();
    let w = rt.block_on(world("ap-southeast-2"));
    let p = path(&w.policy);
    assert_eq!(
        perimeter(&["apply", p, "--auto-approve"]).status.code(),
        Some(0)
    );

    // A saved plan that would remove a hand-added rule...
    let gid = rt.block_on(async {
        let c = client(&w.region).await;
        let gid = owned_group(&c, &w.vpc).await;
        authorize(&c, &gid, "tcp", 8080, "10.9.0.0/16").await;
        gid
    });
    let plan_file = w.policy.with_file_name("plan.json");
    let o = perimeter(&["plan", p, "--out", path(&plan_file)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("- ingress tcp 8080 from 10.9.0.0/16"),
        "{}",
        text(&o)
    );

    // ...then someone changes the group again before apply.
    let rules_before = rt.block_on(async {
        let c = client(&w.region).await;
        authorize(&c, &gid, "udp", 5000, "10.8.0.0/16").await;
        rule_count(&c, &gid).await
    });
    let o = perimeter(&["apply", path(&plan_file)]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("saved plan is stale; nothing was written"),
        "{}",
        text(&o)
    );
    let rules_after = rt.block_on(async {
        let c = client(&w.region).await;
        rule_count(&c, &gid).await
    });
    assert_eq!(rules_before, rules_after, "a refused apply must not write");
}

#[test]
fn only_what_perimeter_owns_is_written() {
    let rt = runtime();
    let w = rt.block_on(world("ca-central-1"));
    let p = path(&w.policy);
    // A group perimeter does not own, in the same VPC, with an open rule — and with what
    // perimeter selects its own groups by, but for another policy: the ownership tag key and
    // the Name tag of the owned group. A filter that looked at the key or the name alone would
    // write to it.
    let other = rt.block_on(async {
        let c = client(&w.region).await;
        let g = team_owned_group(&c, &w.vpc).await;
        authorize(&c, &g, "tcp", 22, "0.0.0.0/0").await;
        c.create_tags()
            .resources(&g)
            .tags(
                aws_sdk_ec2::types::Tag::builder()
                    .key("perimeter:policy")
                    .value("eks-workers-staging")
                    .build(),
            )
            .tags(
                aws_sdk_ec2::types::Tag::builder()
                    .key("Name")
                    .value("eks-workers")
                    .build(),
            )
            .send()
            .await
            .unwrap();
        g
    });
    let count_rules = |gid: String| {
        rt.block_on(async {
            let c = client(&w.region).await;
            rule_count(&c, &gid).await
        })
    };
    let before = count_rules(other.clone());
    assert_eq!(
        perimeter(&["apply", p, "--auto-approve"]).status.code(),
        Some(0)
    );
    // A hand-added rule in the owned group is removed by the next apply.
    rt.block_on(async {
        let c = client(&w.region).await;
        let gid = owned_group(&c, &w.vpc).await;
        authorize(&c, &gid, "tcp", 3389, "10.0.0.0/8").await;
    });
    let o = perimeter(&["apply", p, "--auto-approve"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("- ingress tcp 3389 from 10.0.0.0/8"),
        "{}",
        text(&o)
    );
    assert_eq!(
        count_rules(other.clone()),
        before,
        "the group perimeter does not own is untouched"
    );

    // A group with the target's name that perimeter does not own is refused, not adopted.
    let foreign = w.policy.with_file_name("foreign.yaml");
    std::fs::write(
        &foreign,
        std::fs::read_to_string(&w.policy)
            .unwrap()
            .replace("security_group: eks-workers", "security_group: team-owned"),
    )
    .unwrap();
    let o = perimeter(&["plan", path(&foreign)]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("is not owned by policy `eks-workers`"),
        "{}",
        text(&o)
    );
    assert_eq!(count_rules(other), before);
}
