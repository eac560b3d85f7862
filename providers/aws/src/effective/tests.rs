//! The issue's estates in miniature: an EKS cluster group beside the owned one, a subnet
//! whose NACL denies what the policy allows, an interface without the owned group.

use perimeter_core::policy::load_str;
use perimeter_core::violation::Effect;

use super::*;
use crate::model::{NaclEntry, SgRule};
use crate::state::{ObservedOtherGroup, ObservedSecurityGroup, ObservedSubnetAcl};

fn desired(extra: &str) -> AwsDesired {
    let text = format!(
        "apiVersion: perimeter/v1\nkind: NodePerimeter\nname: t\nprivate: true\ningress:\n  - {{name: ssh, from: 10.0.0.0/8, services: [ssh]}}\n  - {{name: cni, from: self, services: [cni:calico]}}\negress:\n  - {{name: dns, to: 10.0.0.2/32, services: [dns]}}\ntargets:\n  aws:\n    region: us-east-1\n    vpc: vpc-0123456789abcdef0\n    instances: {{tags: {{role: node}}}}\n{extra}"
    );
    let intent = load_str("t.yaml", &text).unwrap();
    let c = crate::compile(&intent, &intent.targets.aws[0]).unwrap();
    AwsDesired::from_compiled(&c, intent.private)
}

fn rule(direction: Direction, proto: &str, ports: (i32, i32), peer: SgPeer) -> SgRule {
    SgRule {
        direction,
        ip_protocol: proto.into(),
        from_port: ports.0,
        to_port: ports.1,
        peer,
        description: String::new(),
    }
}

fn interface(id: &str, groups: &[&str], subnet: &str) -> ObservedInterface {
    ObservedInterface {
        interface_id: id.into(),
        instance_id: "i-1".into(),
        subnet_id: subnet.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
    }
}

fn observed(interfaces: Vec<ObservedInterface>, others: Vec<ObservedOtherGroup>) -> ObservedAws {
    ObservedAws {
        security_group: Some(ObservedSecurityGroup {
            group_id: "sg-own".into(),
            rules: Vec::new(),
        }),
        interfaces,
        other_groups: others,
        node_subnet_cidrs: vec!["10.0.1.0/24".parse().unwrap()],
        ..ObservedAws::default()
    }
}

fn eks_cluster_group() -> ObservedOtherGroup {
    ObservedOtherGroup {
        group_id: "sg-cluster".into(),
        group_name: "eks-cluster-sg".into(),
        rules: vec![
            rule(Direction::Ingress, "-1", (-1, -1), SgPeer::OwnGroup),
            rule(
                Direction::Egress,
                "-1",
                (-1, -1),
                SgPeer::CidrIpv4("0.0.0.0/0".parse().unwrap()),
            ),
        ],
    }
}

#[test]
fn the_eks_cluster_group_opens_node_to_node_traffic_and_all_egress() {
    let o = observed(
        vec![interface("eni-1", &["sg-own", "sg-cluster"], "subnet-1")],
        vec![eks_cluster_group()],
    );
    let (v, findings) = check(&desired(""), &o);
    assert!(findings.is_empty(), "{findings:?}");
    let lines: Vec<String> = v.iter().map(Violation::line).collect();
    assert_eq!(v.len(), 2, "{lines:#?}");
    assert!(v.iter().all(|v| v.object == "sg-cluster (eks-cluster-sg)"));
    assert!(v.iter().all(|v| v.effect == Effect::Opens));
    let ingress = v
        .iter()
        .find(|v| v.rule.starts_with("allows ingress"))
        .unwrap();
    // From the nodes themselves, everything but the CNI ports the policy allows.
    assert!(
        ingress.regions.iter().all(|r| r.contains("from nodes")),
        "{:#?}",
        ingress.regions
    );
    let egress = v
        .iter()
        .find(|v| v.rule.starts_with("allows egress"))
        .unwrap();
    assert!(
        egress
            .regions
            .iter()
            .any(|r| r.contains("to 0.0.0.0/0 except")),
        "{:#?}",
        egress.regions
    );
}

#[test]
fn a_world_open_https_rule_is_reported_as_the_issue_words_it() {
    let open = ObservedOtherGroup {
        group_id: "sg-0abc".into(),
        group_name: "web".into(),
        rules: vec![rule(
            Direction::Ingress,
            "tcp",
            (443, 443),
            SgPeer::CidrIpv4("0.0.0.0/0".parse().unwrap()),
        )],
    };
    let o = observed(
        vec![interface("eni-1", &["sg-own", "sg-0abc"], "subnet-1")],
        vec![open],
    );
    let (v, _) = check(&desired(""), &o);
    assert_eq!(v.len(), 1);
    assert_eq!(
        v[0].line(),
        "sg-0abc (web) allows ingress tcp 443 from 0.0.0.0/0: the policy says deny (e.g. ingress tcp 443 from 0.0.0.0)"
    );
    assert_eq!(v[0].regions, ["ingress tcp 443 from 0.0.0.0/0"]);
    assert_eq!(v[0].key, "sg-0abc/ingress/tcp/443/443/0.0.0.0/0/opens");
}

#[test]
fn a_subnet_nacl_that_denies_what_the_policy_allows_blocks_it() {
    let mut o = observed(vec![interface("eni-1", &["sg-own"], "subnet-1")], vec![]);
    let entry = |n, action: &str, cidr: &str, egress| NaclEntry {
        egress,
        rule_number: n,
        protocol: "-1".into(),
        rule_action: action.into(),
        cidr: cidr.parse().unwrap(),
        port_range: None,
        icmp_type_code: None,
    };
    o.subnet_acls = vec![ObservedSubnetAcl {
        subnet_id: "subnet-1".into(),
        network_acl_id: "acl-9".into(),
        is_default: false,
        entries: vec![
            entry(100, "deny", "10.1.0.0/16", false),
            entry(200, "allow", "0.0.0.0/0", false),
            entry(200, "allow", "0.0.0.0/0", true),
        ],
    }];
    let (v, _) = check(&desired(""), &o);
    let lines: Vec<String> = v.iter().map(Violation::line).collect();
    assert_eq!(v.len(), 1, "{lines:#?}");
    assert_eq!(v[0].effect, Effect::Blocks);
    assert_eq!(v[0].object, "acl-9 (on subnet-1)");
    assert_eq!(v[0].regions, ["ingress tcp 22 from 10.1.0.0/16"]);
}

#[test]
fn an_interface_without_the_owned_group_blocks_what_the_policy_allows() {
    let o = observed(
        vec![
            interface("eni-1", &["sg-own"], "subnet-1"),
            interface("eni-2", &["sg-other"], "subnet-1"),
        ],
        vec![ObservedOtherGroup {
            group_id: "sg-other".into(),
            group_name: "other".into(),
            rules: vec![],
        }],
    );
    let (v, _) = check(&desired(""), &o);
    assert!(!v.is_empty());
    assert!(
        v.iter()
            .all(|v| v.object == "interface eni-2" && v.effect == Effect::Blocks)
    );
    // `attach: true` adds the group to every interface: nothing is left uncovered.
    let (v, _) = check(&desired("    attach: true\n"), &o);
    assert!(v.is_empty(), "{v:#?}");
}

#[test]
fn members_of_a_group_the_nodes_do_not_carry_are_said_to_be_unchecked() {
    let g = ObservedOtherGroup {
        group_id: "sg-x".into(),
        group_name: "x".into(),
        rules: vec![rule(
            Direction::Ingress,
            "tcp",
            (0, 65535),
            SgPeer::ReferencedGroup("sg-bastion".into()),
        )],
    };
    let o = observed(
        vec![interface("eni-1", &["sg-own", "sg-x"], "subnet-1")],
        vec![g],
    );
    let (v, findings) = check(&desired(""), &o);
    assert!(v.is_empty(), "{v:#?}");
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0].code, "unresolved-peer");
    assert!(findings[0].message.contains("members of sg-bastion"));
}
