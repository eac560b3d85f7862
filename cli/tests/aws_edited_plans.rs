//! End to end against the EC2 emulator (moto): a saved plan edited in every way a new user
//! tried is refused, and nothing is written; so are a truncated plan and a plan of an edited
//! policy.

mod common;

use std::path::{Path, PathBuf};

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::Filter;
use common::aws::{
    World, authorize, client, launch, owned_group, path, perimeter, runtime, team_owned_group,
    world,
};
use common::text;

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
                        .map(|i| serde_json::json!({"instance_id": i, "interface_id": "eni-0123456789abcdef0", "groups": [g]}))
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
    let o = perimeter(&["apply", p, "--auto-approve"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
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
