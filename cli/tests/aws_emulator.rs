//! End to end against a real EC2 emulator (moto server, LocalStack's EC2 engine) on
//! 127.0.0.1: plan, apply, out-of-band changes, stale plans, ownership.
//!
//! The tests start the emulator themselves with `localstack/moto.sh start` (installing it into
//! a virtualenv on first use) and leave it running for the other tests; `.ci/run` stops it.
//! Each test works in its own region, which moto keeps as a separate backend, so the tests
//! run in parallel without seeing each other.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::aws::{client, launch, runtime};
use common::{root, text};

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{Filter, HttpTokensState, IpPermission, IpRange};

fn perimeter(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_perimeter"))
        .args(args)
        .envs(common::aws::env())
        .env("NO_COLOR", "1")
        .output()
        .expect("run perimeter")
}

/// A VPC with two node subnets and two worker instances, IMDSv1 allowed (as AMIs often are).
struct World {
    region: String,
    vpc: String,
    subnets: [String; 2],
    instances: Vec<String>,
    policy: PathBuf,
    _dir: TempDir,
}

struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn world(region: &str) -> World {
    let c = client(region).await;
    let vpc = c
        .create_vpc()
        .cidr_block("10.0.0.0/16")
        .send()
        .await
        .unwrap()
        .vpc
        .unwrap()
        .vpc_id
        .unwrap();
    let mut subnets = Vec::new();
    for cidr in ["10.0.16.0/20", "10.0.32.0/20"] {
        let s = c
            .create_subnet()
            .vpc_id(&vpc)
            .cidr_block(cidr)
            .send()
            .await
            .unwrap();
        subnets.push(s.subnet.unwrap().subnet_id.unwrap());
    }
    let instances = launch(&c, &subnets[0], 2, Some(("eks:nodegroup-name", "workers"))).await;
    let dir = std::env::temp_dir().join(format!("perimeter-e2e-{region}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let policy = std::fs::read_to_string(root().join("policies/eks-workers.yaml"))
        .unwrap()
        .replace("us-east-1", region)
        .replace("vpc-0a1b2c3d4e5f60718", &vpc)
        .replace("subnet-0aaa1111bbbb2222c", &subnets[0])
        .replace("subnet-0ddd3333eeee4444f", &subnets[1]);
    let path = dir.join("eks-workers.yaml");
    std::fs::write(&path, policy).unwrap();
    World {
        region: region.into(),
        vpc,
        subnets: [subnets[0].clone(), subnets[1].clone()],
        instances,
        policy: path,
        _dir: TempDir(dir),
    }
}

/// A group in the VPC that perimeter does not own.
async fn team_owned_group(c: &Client, vpc: &str) -> String {
    c.create_security_group()
        .group_name("team-owned")
        .description("not perimeter's")
        .vpc_id(vpc)
        .send()
        .await
        .unwrap()
        .group_id
        .unwrap()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// An out-of-band rule, as someone with console access would add it.
async fn authorize(c: &Client, group: &str, protocol: &str, port: i32, cidr: &str) {
    c.authorize_security_group_ingress()
        .group_id(group)
        .ip_permissions(
            IpPermission::builder()
                .ip_protocol(protocol)
                .from_port(port)
                .to_port(port)
                .ip_ranges(IpRange::builder().cidr_ip(cidr).build())
                .build(),
        )
        .send()
        .await
        .unwrap();
}

async fn rule_count(c: &Client, group: &str) -> usize {
    c.describe_security_group_rules()
        .filters(Filter::builder().name("group-id").values(group).build())
        .send()
        .await
        .unwrap()
        .security_group_rules()
        .len()
}

async fn owned_group(c: &Client, vpc: &str) -> String {
    let o = c
        .describe_security_groups()
        .filters(Filter::builder().name("vpc-id").values(vpc).build())
        .filters(
            Filter::builder()
                .name("group-name")
                .values("eks-workers")
                .build(),
        )
        .send()
        .await
        .unwrap();
    o.security_groups()[0].group_id().unwrap().to_string()
}

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
    c.modify_instance_metadata_options()
        .instance_id(&w.instances[0])
        .http_tokens(HttpTokensState::Optional)
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
        serde_json::json!({"missing": 1, "unexpected": 1, "modified": 1})
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
            .contains("In sync: 0 missing, 0 unexpected, 0 modified (3 accepted by the baseline)"),
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
    // A group perimeter does not own, in the same VPC, with an open rule.
    let other = rt.block_on(async {
        let c = client(&w.region).await;
        let g = team_owned_group(&c, &w.vpc).await;
        authorize(&c, &g, "tcp", 22, "0.0.0.0/0").await;
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

/// Everything a tampered plan could write to, as one comparable text: every group's rules,
/// every NACL's entries and associations, every instance's groups and metadata options.
async fn vpc_state(c: &Client, vpc: &str) -> String {
    let by_vpc = || Filter::builder().name("vpc-id").values(vpc).build();
    let mut facts = Vec::new();
    let groups = c
        .describe_security_groups()
        .filters(by_vpc())
        .send()
        .await
        .unwrap();
    for g in groups.security_groups() {
        let gid = g.group_id().unwrap();
        let rules = c
            .describe_security_group_rules()
            .filters(Filter::builder().name("group-id").values(gid).build())
            .send()
            .await
            .unwrap();
        for r in rules.security_group_rules() {
            facts.push(format!(
                "rule {gid} egress={:?} {:?} {:?}-{:?} {:?} {:?} {:?}",
                r.is_egress(),
                r.ip_protocol(),
                r.from_port(),
                r.to_port(),
                r.cidr_ipv4(),
                r.referenced_group_info().and_then(|g| g.group_id()),
                r.description()
            ));
        }
    }
    let acls = c
        .describe_network_acls()
        .filters(by_vpc())
        .send()
        .await
        .unwrap();
    for a in acls.network_acls() {
        let id = a.network_acl_id().unwrap();
        for e in a.entries() {
            facts.push(format!(
                "entry {id} {:?} {:?} {:?} {:?} {:?}",
                e.egress(),
                e.rule_number(),
                e.protocol(),
                e.cidr_block(),
                e.rule_action()
            ));
        }
        for s in a.associations() {
            facts.push(format!("assoc {id} {:?}", s.subnet_id()));
        }
    }
    let instances = c
        .describe_instances()
        .filters(by_vpc())
        .send()
        .await
        .unwrap();
    for i in instances.reservations().iter().flat_map(|r| r.instances()) {
        let groups: Vec<_> = i.security_groups().iter().map(|g| g.group_id()).collect();
        let m = i.metadata_options().unwrap();
        facts.push(format!(
            "instance {:?} {groups:?} {:?} {:?} {:?}",
            i.instance_id(),
            m.http_endpoint(),
            m.http_tokens(),
            m.http_put_response_hop_limit()
        ));
    }
    facts.sort();
    facts.join("\n")
}

/// What an edited plan would aim at: a group perimeter does not own, the VPC's default NACL
/// and an instance the target does not select. Also gives the plan something to do.
struct Aims {
    foreign_group: String,
    default_acl: String,
    unselected: String,
}

async fn aims_of_an_edited_plan(w: &World) -> Aims {
    let c = client(&w.region).await;
    let gid = owned_group(&c, &w.vpc).await;
    authorize(&c, &gid, "tcp", 8080, "10.9.0.0/16").await;
    let foreign = team_owned_group(&c, &w.vpc).await;
    let acls = c
        .describe_network_acls()
        .filters(Filter::builder().name("vpc-id").values(&w.vpc).build())
        .filters(Filter::builder().name("default").values("true").build())
        .send()
        .await
        .unwrap();
    let default_acl = acls.network_acls()[0].network_acl_id().unwrap().to_string();
    let unselected = launch(&c, &w.subnets[1], 1, None).await.remove(0);
    Aims {
        foreign_group: foreign,
        default_acl,
        unselected,
    }
}

type Edit = Box<dyn Fn(&mut serde_json::Value)>;

/// The edits a new user tried on a saved plan: each was written before apply checked plans.
fn plan_edits(w: &World, aims: &Aims) -> Vec<(&'static str, Edit)> {
    let foreign_group = aims.foreign_group.clone();
    let default_acl = aims.default_acl.clone();
    let unselected = aims.unselected.clone();
    let world_open = serde_json::json!({"direction": "ingress", "ip_protocol": "tcp",
        "from_port": 22, "to_port": 22, "peer": {"cidr_ipv4": "0.0.0.0/0"}, "description": ""});
    vec![
        (
            "ssh opened to the world, in changes and desired",
            Box::new(move |d| {
                let t = &mut d["aws"][0];
                t["security_group"]["changes"]
                    .as_array_mut()
                    .unwrap()
                    .insert(0, serde_json::json!({"action": "create", "rule_id": null, "before": null, "after": world_open.clone()}));
                t["desired"]["security_group"]["rules"]
                    .as_array_mut()
                    .unwrap()
                    .push(world_open.clone());
                d["summary"]["add"] = serde_json::json!(1);
            }),
        ),
        (
            "group_id pointed at a foreign group",
            Box::new({
                let g = foreign_group.clone();
                move |d| d["aws"][0]["security_group"]["group_id"] = serde_json::json!(g)
            }),
        ),
        (
            "network_acl_id pointed at the default NACL",
            Box::new(move |d| {
                d["aws"][0]["network_acl"]["network_acl_id"] = serde_json::json!(default_acl)
            }),
        ),
        (
            "metadata disabled on an instance the target does not select",
            Box::new(move |d| {
                d["aws"][0]["metadata"] = serde_json::json!([{"instance_id": unselected,
                    "before": {"http_endpoint": "enabled", "http_tokens": "optional", "http_put_response_hop_limit": 1},
                    "after": {"http_endpoint": "disabled", "http_tokens": "required", "http_put_response_hop_limit": 1}}]);
            }),
        ),
        (
            "a foreign group attached to every worker",
            Box::new({
                let (g, ids) = (foreign_group.clone(), w.instances.clone());
                move |d| {
                    d["aws"][0]["attach"] = ids
                        .iter()
                        .map(|i| serde_json::json!({"instance_id": i, "groups": [g]}))
                        .collect();
                }
            }),
        ),
        (
            "another subnet added to the associations",
            Box::new({
                let s = w.subnets[1].clone();
                move |d| {
                    d["aws"][0]["network_acl"]["associate"] = serde_json::json!([{"subnet_id": s,
                        "association_id": "aclassoc-0123456789abcdef0", "network_acl_id": "acl-0123456789abcdef0"}]);
                }
            }),
        ),
        (
            "the target removed, the summary kept",
            Box::new(|d| d["aws"] = serde_json::json!([])),
        ),
        (
            "only the summary changed",
            Box::new(|d| d["summary"]["destroy"] = serde_json::json!(7)),
        ),
    ]
}

/// A truncated plan and a plan of an edited policy are refused; returns an unedited copy of
/// the policy at another path.
fn a_broken_plan_or_an_edited_policy_is_refused(
    w: &World,
    plan_file: &Path,
    before: &str,
) -> PathBuf {
    let rt = runtime();
    // A truncated plan says it is a broken plan, not a policy.
    let text_of_plan = std::fs::read_to_string(plan_file).unwrap();
    let truncated = w.policy.with_file_name("truncated.json");
    std::fs::write(&truncated, &text_of_plan[..text_of_plan.len() / 2]).unwrap();
    let o = perimeter(&["apply", path(&truncated)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("is not a valid perimeter plan: broken JSON"),
        "{}",
        text(&o)
    );

    // The policy edited after the plan was made: refused, and --policy must hash the same.
    let original = std::fs::read_to_string(&w.policy).unwrap();
    std::fs::write(&w.policy, format!("{original}# edited\n")).unwrap();
    let o = perimeter(&["apply", path(plan_file)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("the policy changed since the plan was made"),
        "{}",
        text(&o)
    );
    let elsewhere = w.policy.with_file_name("checkout-copy.yaml");
    std::fs::write(&elsewhere, &original).unwrap();
    let after = rt.block_on(async { vpc_state(&client(&w.region).await, &w.vpc).await });
    assert_eq!(before, after);
    elsewhere
}

#[test]
fn an_edited_plan_file_is_refused_and_nothing_is_written() {
    let rt = runtime();
    let w = rt.block_on(world("sa-east-1"));
    let p = path(&w.policy);
    assert_eq!(
        perimeter(&["apply", p, "--auto-approve"]).status.code(),
        Some(0)
    );
    let aims = rt.block_on(aims_of_an_edited_plan(&w));
    let plan_file = w.policy.with_file_name("plan.json");
    let o = perimeter(&["plan", p, "--out", path(&plan_file)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&plan_file).unwrap()).unwrap();
    let edits = plan_edits(&w, &aims);
    let before = rt.block_on(async { vpc_state(&client(&w.region).await, &w.vpc).await });
    for (what, edit) in &edits {
        let mut doc = saved.clone();
        edit(&mut doc);
        let edited = w.policy.with_file_name("edited.json");
        std::fs::write(&edited, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
        let o = perimeter(&["apply", path(&edited)]);
        assert_eq!(o.status.code(), Some(1), "{what}: {}", text(&o));
        assert!(
            text(&o).contains("nothing was written") && !text(&o).contains("Apply complete"),
            "{what}: {}",
            text(&o)
        );
        let after = rt.block_on(async { vpc_state(&client(&w.region).await, &w.vpc).await });
        assert_eq!(before, after, "{what}: a refused apply wrote something");
    }

    let elsewhere = a_broken_plan_or_an_edited_policy_is_refused(&w, &plan_file, &before);

    // The unedited plan, with the policy from another path, applies.
    let o = perimeter(&["apply", path(&plan_file), "--policy", path(&elsewhere)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("0 added, 0 changed, 1 destroyed in 1 write call(s)"),
        "{}",
        text(&o)
    );
}
