//! End to end against the EC2 emulator: what the nodes experience, not only what perimeter
//! wrote. Each case failed before the enforcement path was read: plan and drift said "in
//! sync" while the nodes were open.
//!
//! A second interface with groups of its own is tested in providers/aws (effective/tests.rs):
//! moto shows an attached interface with its instance's groups, whatever they were set to.

mod common;

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{Filter, IpPermission, UserIdGroupPair};
use common::aws::{World, authorize, client, path, perimeter, runtime, world};
use common::text;

/// The primary interface of an instance and its groups.
async fn primary_interface(c: &Client, instance: &str) -> (String, Vec<String>) {
    let o = c
        .describe_network_interfaces()
        .filters(
            Filter::builder()
                .name("attachment.instance-id")
                .values(instance)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let eni = o
        .network_interfaces()
        .iter()
        .find(|e| e.attachment().and_then(|a| a.device_index()) == Some(0))
        .expect("a primary interface");
    (
        eni.network_interface_id().unwrap().to_string(),
        eni.groups()
            .iter()
            .filter_map(|g| g.group_id().map(str::to_string))
            .collect(),
    )
}

/// What EKS puts on every node: a cluster group that allows all traffic from itself (and,
/// as every new group, all egress).
async fn eks_cluster_group(c: &Client, vpc: &str) -> String {
    let g = c
        .create_security_group()
        .group_name("eks-cluster-sg-prod")
        .description("EKS created security group applied to ENI")
        .vpc_id(vpc)
        .send()
        .await
        .unwrap()
        .group_id
        .unwrap();
    c.authorize_security_group_ingress()
        .group_id(&g)
        .ip_permissions(
            IpPermission::builder()
                .ip_protocol("-1")
                .user_id_group_pairs(UserIdGroupPair::builder().group_id(&g).build())
                .build(),
        )
        .send()
        .await
        .unwrap();
    g
}

/// Adds `group` to the primary interface of every worker, keeping its groups.
async fn add_to_workers(c: &Client, w: &World, group: &str) {
    for i in &w.instances {
        let (eni, mut groups) = primary_interface(c, i).await;
        groups.push(group.to_string());
        c.modify_network_interface_attribute()
            .network_interface_id(eni)
            .set_groups(Some(groups))
            .send()
            .await
            .unwrap();
    }
}

fn drift_json(p: &str, extra: &[&str]) -> (Option<i32>, serde_json::Value) {
    let mut args = vec!["drift", p, "--format", "json"];
    args.extend(extra);
    let o = perimeter(&args);
    let v = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)));
    (o.status.code(), v)
}

fn items_of(report: &serde_json::Value, kind: &str) -> Vec<serde_json::Value> {
    report["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["kind"] == kind)
        .cloned()
        .collect()
}

#[test]
fn an_eks_cluster_group_on_the_nodes_is_a_violation_until_accepted_and_again_when_broadened() {
    let rt = runtime();
    let w = rt.block_on(world("us-east-2"));
    let p = path(&w.policy);
    let o = perimeter(&["apply", p, "--auto-approve"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = perimeter(&["plan", p, "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    let cluster = rt.block_on(async {
        let c = client(&w.region).await;
        let g = eks_cluster_group(&c, &w.vpc).await;
        add_to_workers(&c, &w, &g).await;
        g
    });

    // plan: nothing to write, but the nodes' perimeter is not the policy.
    let o = perimeter(&["plan", p, "--detailed-exitcode"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(
        out.contains(&format!(
            "! {cluster} (eks-cluster-sg-prod) allows ingress all traffic from {cluster}"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "! {cluster} (eks-cluster-sg-prod) allows egress all traffic to 0.0.0.0/0"
        )),
        "{out}"
    );
    assert!(out.contains("No changes to perimeter's objects"), "{out}");
    // Only changes fail: there are none.
    let o = perimeter(&["plan", p, "--detailed-exitcode", "--fail-on", "changes"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // drift: a violation, keyed by the rule's content.
    let (code, report) = drift_json(p, &[]);
    assert_eq!(code, Some(2), "{report:#}");
    let violations = items_of(&report, "violation");
    assert_eq!(violations.len(), 2, "{report:#}");
    assert!(violations.iter().all(|v| v["effect"] == "opens"));
    assert_eq!(report["counts"]["violation"], 2);
    let (code, _) = drift_json(p, &["--fail-on", "changes,posture"]);
    assert_eq!(code, Some(0));
    let baseline = w.policy.with_file_name("baseline.json");
    std::fs::write(&baseline, serde_json::to_vec(&report).unwrap()).unwrap();
    let (code, accepted) = drift_json(p, &["--baseline", path(&baseline)]);
    assert_eq!(code, Some(0), "{accepted:#}");
    assert_eq!(accepted["accepted"], 2);

    // Someone opens the cluster group to the world: reported despite the baseline.
    rt.block_on(async {
        let c = client(&w.region).await;
        authorize(&c, &cluster, "tcp", 443, "0.0.0.0/0").await;
    });
    let (code, again) = drift_json(p, &["--baseline", path(&baseline)]);
    assert_eq!(code, Some(2), "{again:#}");
    let new = items_of(&again, "violation");
    assert_eq!(new.len(), 1, "{again:#}");
    assert!(
        new[0]["detail"]
            .as_str()
            .unwrap()
            .contains("allows ingress tcp 443 from 0.0.0.0/0: the policy says deny"),
        "{again:#}"
    );

    let o = perimeter(&["drift", p, "--format", "prometheus"]);
    assert_eq!(o.status.code(), Some(2));
    let prom = text(&o);
    assert!(
        prom.contains(
            "perimeter_violations{policy=\"eks-workers\",cloud=\"aws\",kind=\"opens\"} 3"
        ),
        "{prom}"
    );
    assert!(
        prom.contains("perimeter_in_sync{policy=\"eks-workers\"} 0"),
        "{prom}"
    );

    // Apply still converges what perimeter owns and leaves the cluster group alone.
    let o = perimeter(&["apply", p, "--auto-approve"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("in 0 write call(s)"), "{}", text(&o));
}

#[test]
fn a_subnet_moved_back_to_the_default_nacl_is_drift_and_apply_moves_it_again() {
    let rt = runtime();
    let w = rt.block_on(world("eu-central-1"));
    let p = path(&w.policy);
    assert_eq!(
        perimeter(&["apply", p, "--auto-approve"]).status.code(),
        Some(0)
    );
    rt.block_on(async {
        let c = client(&w.region).await;
        let acls = c
            .describe_network_acls()
            .filters(Filter::builder().name("vpc-id").values(&w.vpc).build())
            .send()
            .await
            .unwrap();
        let default = acls
            .network_acls()
            .iter()
            .find(|a| a.is_default() == Some(true))
            .unwrap()
            .network_acl_id()
            .unwrap()
            .to_string();
        let association = acls
            .network_acls()
            .iter()
            .flat_map(|a| a.associations())
            .find(|s| s.subnet_id() == Some(w.subnets[0].as_str()))
            .unwrap()
            .network_acl_association_id()
            .unwrap()
            .to_string();
        c.replace_network_acl_association()
            .association_id(association)
            .network_acl_id(default)
            .send()
            .await
            .unwrap();
    });
    let (code, report) = drift_json(p, &[]);
    assert_eq!(code, Some(2), "{report:#}");
    let moved: Vec<_> = report["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["resource"] == "subnet-association")
        .collect();
    assert_eq!(moved.len(), 1, "{report:#}");
    assert!(moved[0]["detail"].as_str().unwrap().contains(&w.subnets[0]));
    let o = perimeter(&["apply", p, "--auto-approve"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(perimeter(&["drift", p]).status.code(), Some(0));
}

#[test]
fn a_mistyped_subnet_is_an_error_at_plan_time() {
    let rt = runtime();
    let w = rt.block_on(world("eu-west-2"));
    let policy = std::fs::read_to_string(&w.policy)
        .unwrap()
        .replace(&w.subnets[1], "subnet-0123456789abcdef0");
    let typo = w.policy.with_file_name("typo.yaml");
    std::fs::write(&typo, policy).unwrap();
    let o = perimeter(&["plan", path(&typo)]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains(&format!(
            "names a subnet that VPC {} does not have: subnet-0123456789abcdef0",
            w.vpc
        )),
        "{}",
        text(&o)
    );
}

#[test]
fn a_public_ip_in_a_private_perimeter_is_posture_drift() {
    let rt = runtime();
    let w = rt.block_on(world("ap-northeast-1"));
    let p = path(&w.policy);
    assert_eq!(
        perimeter(&["apply", p, "--auto-approve"]).status.code(),
        Some(0)
    );
    assert_eq!(perimeter(&["drift", p]).status.code(), Some(0));
    rt.block_on(async {
        let c = client(&w.region).await;
        let eip = c.allocate_address().send().await.unwrap();
        c.associate_address()
            .allocation_id(eip.allocation_id().unwrap())
            .instance_id(&w.instances[0])
            .send()
            .await
            .unwrap();
    });
    let (code, report) = drift_json(p, &[]);
    assert_eq!(code, Some(2), "{report:#}");
    let posture = items_of(&report, "posture");
    assert_eq!(posture.len(), 1, "{report:#}");
    assert_eq!(
        posture[0]["key"],
        format!(
            "aws/{}/{}/eks-workers/posture/public-ip/{}",
            w.region, w.vpc, w.instances[0]
        )
    );
    let (code, _) = drift_json(p, &["--fail-on", "changes,violations"]);
    assert_eq!(code, Some(0));
}

#[test]
fn a_node_subnet_routed_to_the_internet_by_the_main_route_table_is_posture_drift() {
    let rt = runtime();
    let w = rt.block_on(world("ap-northeast-3"));
    let p = path(&w.policy);
    assert_eq!(
        perimeter(&["apply", p, "--auto-approve"]).status.code(),
        Some(0)
    );
    assert_eq!(perimeter(&["drift", p]).status.code(), Some(0));
    // The node subnet has no route table of its own: the VPC's main table decides, and
    // someone points its default route at an internet gateway.
    rt.block_on(async {
        let c = client(&w.region).await;
        let igw = c
            .create_internet_gateway()
            .send()
            .await
            .unwrap()
            .internet_gateway
            .unwrap()
            .internet_gateway_id
            .unwrap();
        c.attach_internet_gateway()
            .internet_gateway_id(&igw)
            .vpc_id(&w.vpc)
            .send()
            .await
            .unwrap();
        let tables = c
            .describe_route_tables()
            .filters(Filter::builder().name("vpc-id").values(&w.vpc).build())
            .send()
            .await
            .unwrap();
        let main = tables
            .route_tables()
            .iter()
            .find(|t| t.associations().iter().any(|a| a.main() == Some(true)))
            .expect("a main route table");
        assert!(
            !main
                .associations()
                .iter()
                .any(|a| a.subnet_id() == Some(w.subnets[0].as_str())),
            "the node subnet has no explicit association"
        );
        c.create_route()
            .route_table_id(main.route_table_id().unwrap())
            .destination_cidr_block("0.0.0.0/0")
            .gateway_id(&igw)
            .send()
            .await
            .unwrap();
    });
    let (code, report) = drift_json(p, &[]);
    assert_eq!(code, Some(2), "{report:#}");
    let keys: Vec<String> = items_of(&report, "posture")
        .iter()
        .map(|i| i["key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        keys,
        [format!(
            "aws/{}/{}/eks-workers/posture/internet-route/{}",
            w.region, w.vpc, w.subnets[0]
        )],
        "{report:#}"
    );
}

#[test]
fn an_instance_selector_that_matches_nothing_is_a_finding() {
    let rt = runtime();
    let w = rt.block_on(world("eu-south-1"));
    let p = path(&w.policy);
    assert_eq!(
        perimeter(&["apply", p, "--auto-approve"]).status.code(),
        Some(0)
    );
    let typo = std::fs::read_to_string(&w.policy)
        .unwrap()
        .replace("eks:nodegroup-name: workers", "eks:nodegroup-name: wokers");
    std::fs::write(&w.policy, typo).unwrap();
    let o = perimeter(&["plan", p]);
    assert!(
        text(&o).contains("the instance selector (eks:nodegroup-name=wokers) matches no running or stopped instance"),
        "{}",
        text(&o)
    );
    let (code, report) = drift_json(p, &[]);
    assert_eq!(code, Some(2), "{report:#}");
    assert!(
        items_of(&report, "posture").iter().any(|i| i["key"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/posture/no-nodes/{}", w.vpc))),
        "{report:#}"
    );
}

#[test]
fn a_subnet_or_a_nacl_taken_out_of_the_policy_goes_back_where_it_was() {
    let rt = runtime();
    let w = rt.block_on(world("ap-southeast-1"));
    let p = path(&w.policy);
    // Before perimeter, the second subnet is on a team's NACL.
    let team = rt.block_on(async {
        let c = client(&w.region).await;
        let team = c
            .create_network_acl()
            .vpc_id(&w.vpc)
            .send()
            .await
            .unwrap()
            .network_acl
            .unwrap()
            .network_acl_id
            .unwrap();
        let assoc = c
            .describe_network_acls()
            .filters(
                Filter::builder()
                    .name("association.subnet-id")
                    .values(&w.subnets[1])
                    .build(),
            )
            .send()
            .await
            .unwrap()
            .network_acls()
            .iter()
            .flat_map(|a| a.associations())
            .find(|a| a.subnet_id() == Some(w.subnets[1].as_str()))
            .and_then(|a| a.network_acl_association_id().map(str::to_string))
            .unwrap();
        c.replace_network_acl_association()
            .association_id(assoc)
            .network_acl_id(&team)
            .send()
            .await
            .unwrap();
        team
    });
    let o = perimeter(&["plan", p]);
    assert!(
        text(&o).contains(&format!(
            "~ subnet {}: {team} → this network ACL (recorded on it, to go back there when released)",
            w.subnets[1]
        )),
        "{}",
        text(&o)
    );
    assert_eq!(
        perimeter(&["apply", p, "--auto-approve"]).status.code(),
        Some(0)
    );
    let original = std::fs::read_to_string(&w.policy).unwrap();
    // (id, is default, subnets) of every NACL in the VPC.
    let acls = || {
        rt.block_on(async {
            let c = client(&w.region).await;
            let o = c
                .describe_network_acls()
                .filters(Filter::builder().name("vpc-id").values(&w.vpc).build())
                .send()
                .await
                .unwrap();
            let mut v: Vec<(String, bool, Vec<String>)> = o
                .network_acls()
                .iter()
                .map(|a| {
                    let mut subnets: Vec<String> = a
                        .associations()
                        .iter()
                        .filter_map(|s| s.subnet_id().map(str::to_string))
                        .collect();
                    subnets.sort();
                    let id = a.network_acl_id().unwrap().to_string();
                    (id, a.is_default() == Some(true), subnets)
                })
                .collect();
            v.sort();
            v
        })
    };
    assert!(
        acls().iter().any(|(id, _, s)| *id == team && s.is_empty()),
        "{:?}",
        acls()
    );

    // One subnet leaves the policy: it goes back to the team's NACL, recorded on the owned
    // one when perimeter moved it.
    let one = original.replace(
        &format!("subnets: [{}, {}]", w.subnets[0], w.subnets[1]),
        &format!("subnets: [{}]", w.subnets[0]),
    );
    assert_ne!(one, original);
    std::fs::write(&w.policy, &one).unwrap();
    let o = perimeter(&["plan", p, "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains(&format!(
            "~ subnet {}: this network ACL → {team} (not in the policy",
            w.subnets[1]
        )),
        "{}",
        text(&o)
    );
    let o = perimeter(&["apply", p, "--auto-approve"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        acls().contains(&(team.clone(), false, vec![w.subnets[1].clone()])),
        "{:?}",
        acls()
    );

    // The NACL leaves the policy: its last subnet goes back to the default (where it was),
    // and the NACL is deleted.
    let start = one.find("    network_acl:").unwrap();
    let none = one[..start].to_string();
    std::fs::write(&w.policy, &none).unwrap();
    let o = perimeter(&["plan", p, "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("- this network ACL (the target no longer declares one)"),
        "{}",
        text(&o)
    );
    let o = perimeter(&["apply", p, "--auto-approve"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let left: Vec<(bool, Vec<String>)> = acls().into_iter().map(|(_, d, s)| (d, s)).collect();
    let mut expect = vec![
        (false, vec![w.subnets[1].clone()]),
        (true, vec![w.subnets[0].clone()]),
    ];
    expect.sort();
    let mut left_sorted = left.clone();
    left_sorted.sort();
    assert_eq!(
        left_sorted, expect,
        "the team's NACL and the default, nothing of perimeter's"
    );
}

#[test]
fn a_renamed_target_swaps_groups_on_the_nodes_and_removes_the_old_group_and_nacl() {
    let rt = runtime();
    let w = rt.block_on(world("ap-northeast-2"));
    let p = path(&w.policy);
    assert_eq!(
        perimeter(&["apply", p, "--auto-approve"]).status.code(),
        Some(0)
    );
    let groups_named = |name: &str| {
        rt.block_on(async {
            let c = client(&w.region).await;
            let o = c
                .describe_security_groups()
                .filters(Filter::builder().name("group-name").values(name).build())
                .send()
                .await
                .unwrap();
            o.security_groups()
                .iter()
                .filter_map(|g| g.group_id().map(str::to_string))
                .collect::<Vec<_>>()
        })
    };
    let old = groups_named("eks-workers");
    assert_eq!(old.len(), 1);
    let renamed = std::fs::read_to_string(&w.policy).unwrap().replace(
        "security_group: eks-workers",
        "security_group: eks-workers-v2",
    );
    std::fs::write(&w.policy, renamed).unwrap();

    // Drift names the old group as perimeter's and unwanted.
    let (code, report) = drift_json(p, &[]);
    assert_eq!(code, Some(2), "{report:#}");
    let unexpected = items_of(&report, "unexpected");
    assert!(
        unexpected.iter().any(|i| i["key"]
            .as_str()
            .unwrap()
            .ends_with("/eks-workers/security-group")
            && i["detail"]
                .as_str()
                .unwrap()
                .contains("no target declares it")),
        "{report:#}"
    );

    // The plan swaps the groups on each interface in one write, and removes the old ones.
    let o = perimeter(&["plan", p, "--detailed-exitcode"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(out.contains(&format!("− {}", old[0])), "{out}");
    assert!(
        out.contains("remove what policy eks-workers owns but no longer declares (eks-workers)"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "- security group eks-workers {} (no target of the policy declares it)",
            old[0]
        )),
        "{out}"
    );
    assert!(!out.contains("groups → "), "no separate detach: {out}");
    let o = perimeter(&["apply", p, "--auto-approve"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        groups_named("eks-workers").is_empty(),
        "the old group is gone"
    );
    let new = groups_named("eks-workers-v2");
    assert_eq!(new.len(), 1);
    rt.block_on(async {
        let c = client(&w.region).await;
        for i in &w.instances {
            let (_, groups) = primary_interface(&c, i).await;
            assert!(groups.contains(&new[0]), "{groups:?}");
            assert!(!groups.contains(&old[0]), "{groups:?}");
        }
        let acls = c
            .describe_network_acls()
            .filters(Filter::builder().name("vpc-id").values(&w.vpc).build())
            .send()
            .await
            .unwrap();
        let names: Vec<String> = acls
            .network_acls()
            .iter()
            .filter(|a| a.is_default() != Some(true))
            .flat_map(|a| a.tags().iter().filter(|t| t.key() == Some("Name")))
            .filter_map(|t| t.value().map(str::to_string))
            .collect();
        assert_eq!(names, ["eks-workers-v2"], "the old NACL is gone");
    });
    let o = perimeter(&["plan", p, "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}
