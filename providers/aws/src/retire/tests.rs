use super::*;
use crate::state::{ObservedNetworkAcl, ObservedSecurityGroup};
use perimeter_core::policy::load_str;
use perimeter_core::target::AwsTarget;

const VPC: &str = "vpc-0123456789abcdef0";

fn declared(extra_target: &str) -> AwsDesired {
    let text = format!(
        "apiVersion: perimeter/v1\nkind: NodePerimeter\nname: t\ningress:\n  - {{name: ssh, from: 10.0.0.0/8, services: [ssh]}}\ntargets:\n  aws:\n    region: us-east-1\n    vpc: {VPC}\n    security_group: workers-new\n    instances: {{tags: {{role: node}}}}\n{extra_target}"
    );
    let intent = load_str("t.yaml", &text).unwrap();
    let c = crate::compile(&intent, &intent.targets.aws[0]).unwrap();
    AwsDesired::from_compiled(&c, intent.private)
}

fn orphan_target() -> AwsTarget {
    let mut t = declared("").target;
    t.security_group = "workers-old".into();
    t.instances.clear();
    t
}

fn interface(id: &str, instance: &str, groups: &[&str]) -> ObservedInterface {
    ObservedInterface {
        interface_id: id.into(),
        instance_id: instance.into(),
        subnet_id: "subnet-1".into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
    }
}

fn owning(group: &str) -> ObservedAws {
    ObservedAws {
        security_group: Some(ObservedSecurityGroup {
            group_id: group.into(),
            rules: Vec::new(),
        }),
        default_network_acl: Some("acl-default".into()),
        ..ObservedAws::default()
    }
}

#[test]
fn a_renamed_target_swaps_its_group_in_and_the_orphan_leaves_those_interfaces_alone() {
    // The new group exists; eni-1 (selected) carries only the old one, eni-9 (an instance
    // the new selector no longer picks) carries the old one and the default group.
    let mut new = owning("sg-new");
    new.interfaces = vec![interface("eni-1", "i-1", &["sg-old"])];
    let mut old = owning("sg-old");
    old.owned_group_interfaces = vec![
        interface("eni-1", "i-1", &["sg-old"]),
        interface("eni-9", "i-9", &["sg-default", "sg-old"]),
    ];
    let declared_plan = crate::plan::plan(&declared("    attach: true\n"), Vec::new(), &new, "t")
        .expect("declared plan");
    let orphan_plan = crate::plan::plan(
        &AwsDesired::orphaned(orphan_target()),
        Vec::new(),
        &old,
        "t",
    )
    .expect("an orphan's last group waits for settle");
    let mut plans = vec![declared_plan, orphan_plan];
    settle(&mut plans).expect("settles");
    assert_eq!(plans[0].attach.len(), 1);
    assert_eq!(
        plans[0].attach[0].release,
        ["sg-old"],
        "swapped in one write"
    );
    let r = plans[1].retire.as_ref().unwrap();
    assert_eq!(
        r.detach
            .iter()
            .map(|d| d.interface_id.as_str())
            .collect::<Vec<_>>(),
        ["eni-9"],
        "the swapped interface is the declared target's"
    );
    assert_eq!(r.detach[0].groups, ["sg-default"]);
    assert_eq!(r.delete_security_group.as_deref(), Some("sg-old"));

    // Without `attach: true` nothing swaps, and eni-1 would be left with no group.
    let declared_plan =
        crate::plan::plan(&declared(""), Vec::new(), &new, "t").expect("declared plan");
    let orphan_plan = crate::plan::plan(
        &AwsDesired::orphaned(orphan_target()),
        Vec::new(),
        &old,
        "t",
    )
    .unwrap();
    let mut plans = vec![declared_plan, orphan_plan];
    let err = settle(&mut plans).unwrap_err();
    assert!(
        matches!(&err, PlanError::LastGroup { interface, .. } if interface == "eni-1"),
        "{err}"
    );
}

#[test]
fn retiring_reaches_every_interface_that_carries_the_group_and_restores_recorded_nacls() {
    let mut o = owning("sg-own");
    o.interfaces = vec![interface("eni-1", "i-1", &["sg-a", "sg-own"])];
    // The same interface read by group, plus one of no instance (a warm-pool ENI).
    o.owned_group_interfaces = vec![
        interface("eni-1", "i-1", &["sg-a", "sg-own"]),
        interface("eni-7", "", &["sg-b", "sg-own"]),
    ];
    o.network_acl = Some(ObservedNetworkAcl {
        network_acl_id: "acl-own".into(),
        entries: Vec::new(),
        subnets: vec!["subnet-1".into(), "subnet-2".into()],
    });
    o.owned_acl_associations = ["subnet-1", "subnet-2"]
        .iter()
        .map(|s| SubnetAssociation {
            subnet_id: s.to_string(),
            association_id: format!("aclassoc-{s}"),
            network_acl_id: "acl-own".into(),
        })
        .collect();
    // subnet-1 came from a team's NACL (recorded, still there); subnet-2 from the default.
    o.network_acl_restore = [
        ("subnet-1".to_string(), "acl-team".to_string()),
        ("subnet-2".to_string(), "acl-default".to_string()),
    ]
    .into();
    let p = crate::plan::plan(&declared("").retired(), Vec::new(), &o, "t").unwrap();
    let r = p.retire.as_ref().unwrap();
    let detached: Vec<(&str, &[String])> = r
        .detach
        .iter()
        .map(|d| (d.interface_id.as_str(), d.groups.as_slice()))
        .collect();
    assert_eq!(
        detached,
        [
            ("eni-7", &["sg-b".to_string()][..]),
            ("eni-1", &["sg-a".to_string()][..])
        ],
        "each interface once, in instance order"
    );
    let restored: Vec<(&str, &str)> = r
        .restore
        .iter()
        .map(|a| (a.subnet_id.as_str(), a.network_acl_id.as_str()))
        .collect();
    assert_eq!(
        restored,
        [("subnet-1", "acl-team"), ("subnet-2", "acl-default")]
    );
}

#[test]
fn moving_a_subnet_records_the_nacl_it_leaves_unless_it_is_the_default() {
    let mut o = owning("sg-new");
    o.network_acl = Some(ObservedNetworkAcl {
        network_acl_id: "acl-own".into(),
        entries: Vec::new(),
        subnets: Vec::new(),
    });
    let assoc = |s: &str, acl: &str| SubnetAssociation {
        subnet_id: s.into(),
        association_id: format!("aclassoc-{s}"),
        network_acl_id: acl.into(),
    };
    o.subnet_associations = vec![
        assoc("subnet-00000001", "acl-team"),
        assoc("subnet-00000002", "acl-default"),
        assoc("subnet-00000003", "acl-default"),
    ];
    // subnet-3 has a stale record from an earlier move: the default overwrites it.
    o.recorded_previous = [("subnet-00000003".to_string(), "acl-gone".to_string())].into();
    let d = declared(
        "    network_acl: {subnets: [subnet-00000001, subnet-00000002, subnet-00000003], node_cidrs: [10.0.16.0/20]}\n",
    );
    let p = crate::plan::plan(&d, Vec::new(), &o, "t").unwrap();
    let n = p.network_acl.as_ref().unwrap();
    assert_eq!(n.associate.len(), 3);
    let recorded: Vec<(&str, &str)> = n
        .record_previous
        .iter()
        .map(|(s, a)| (s.as_str(), a.as_str()))
        .collect();
    assert_eq!(
        recorded,
        [
            ("subnet-00000001", "acl-team"),
            ("subnet-00000003", "acl-default")
        ]
    );

    // Past the tag limit, a subnet is not recorded and a finding says where it will go.
    o.recorded_previous = (0..crate::state::PREVIOUS_NACL_TAGS_MAX)
        .map(|i| (format!("subnet-x{i}"), "acl-team".to_string()))
        .collect();
    let p = crate::plan::plan(&d, Vec::new(), &o, "t").unwrap();
    assert!(p.network_acl.as_ref().unwrap().record_previous.is_empty());
    assert!(
        p.findings
            .iter()
            .any(|f| f.code == "previous-nacl-unrecorded" && f.resource == "subnet-00000001"),
        "{:?}",
        p.findings
    );
}

#[test]
fn a_renamed_targets_nacl_takes_the_orphans_subnets_and_its_record() {
    const SUBNET: &str = "subnet-00000001";
    let assoc = |acl: &str| SubnetAssociation {
        subnet_id: SUBNET.into(),
        association_id: "aclassoc-1".into(),
        network_acl_id: acl.into(),
    };
    let mut new = owning("sg-new");
    new.subnet_associations = vec![assoc("acl-old")];
    let mut old = owning("sg-old");
    old.network_acl = Some(ObservedNetworkAcl {
        network_acl_id: "acl-old".into(),
        entries: Vec::new(),
        subnets: vec![SUBNET.into()],
    });
    old.owned_acl_associations = vec![assoc("acl-old")];
    // Before perimeter, the subnet was on a team's NACL (recorded on the old NACL).
    old.network_acl_restore = [(SUBNET.to_string(), "acl-team".to_string())].into();
    let d = declared(&format!(
        "    network_acl: {{subnets: [{SUBNET}], node_cidrs: [10.0.16.0/20]}}\n"
    ));
    let mut plans = vec![
        crate::plan::plan(&d, Vec::new(), &new, "t").unwrap(),
        crate::plan::plan(
            &AwsDesired::orphaned(orphan_target()),
            Vec::new(),
            &old,
            "t",
        )
        .unwrap(),
    ];
    assert_eq!(plans[1].retire.as_ref().unwrap().restore.len(), 1);
    settle(&mut plans).unwrap();
    let n = plans[0].network_acl.as_ref().unwrap();
    assert_eq!(
        n.associate.len(),
        1,
        "moved straight from the old NACL to the new"
    );
    assert_eq!(
        n.record_previous.get(SUBNET).map(String::as_str),
        Some("acl-team"),
        "where the orphan would have put it back"
    );
    let r = plans[1].retire.as_ref().unwrap();
    assert!(r.restore.is_empty(), "the orphan leaves the subnet alone");
    assert_eq!(r.delete_network_acl.as_deref(), Some("acl-old"));
}
