use super::*;
use crate::state::{ObservedInstance, ObservedSecurityGroup, ObservedSgRule};
use perimeter_core::policy::load_str;

fn desired(extra_target: &str) -> AwsDesired {
    let text = format!(
        "apiVersion: perimeter/v1\nkind: NodePerimeter\nname: t\ningress:\n  - {{name: ssh, from: 10.0.0.0/8, services: [ssh]}}\ntargets:\n  aws:\n    region: us-east-1\n    vpc: vpc-0123456789abcdef0\n    instances: {{tags: {{role: node}}}}\n{extra_target}"
    );
    let intent = load_str("t.yaml", &text).unwrap();
    let c = crate::compile(&intent, &intent.targets.aws[0]).unwrap();
    AwsDesired::from_compiled(&c, intent.private)
}

fn instance(id: &str, tokens: &str, groups: &[&str]) -> ObservedInstance {
    ObservedInstance {
        instance_id: id.into(),
        metadata: MetadataOptions {
            http_endpoint: "enabled".into(),
            http_tokens: Some(tokens.into()),
            http_put_response_hop_limit: Some(2),
        },
        public_ip: Some("54.1.2.3".into()),
        subnet_id: Some("subnet-1".into()),
        security_groups: groups.iter().map(|g| g.to_string()).collect(),
    }
}

#[test]
fn a_new_group_plans_its_own_default_egress_rules_away() {
    let d = desired("");
    let observed = ObservedAws {
        vpc_has_ipv6: true,
        ..ObservedAws::default()
    };
    let p = plan(&d, Vec::new(), &observed, "t").unwrap();
    assert!(p.security_group.group_id.is_none());
    let deletes: Vec<&SgChange> = p
        .security_group
        .changes
        .iter()
        .filter(|c| c.action == Action::Delete)
        .collect();
    assert_eq!(deletes.len(), 2, "0.0.0.0/0 and ::/0 in an IPv6 VPC");
    assert!(deletes.iter().all(|c| c.rule_id.is_none()));
    assert_eq!(
        p.summary(),
        Summary {
            add: 2,
            change: 0,
            destroy: 2
        }
    );
}

#[test]
fn a_foreign_group_with_the_name_is_refused() {
    let observed = ObservedAws {
        foreign_group: Some("sg-9".into()),
        ..ObservedAws::default()
    };
    let err = plan(&desired(""), Vec::new(), &observed, "t").unwrap_err();
    assert!(err.to_string().contains("not owned by policy `t`"), "{err}");
}

#[test]
fn converged_state_plans_nothing_and_updates_carry_rule_ids() {
    let d = desired("");
    let mut rules: Vec<ObservedSgRule> = d
        .security_group
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| ObservedSgRule {
            rule_id: format!("sgr-{i}"),
            rule: r.clone(),
        })
        .collect();
    let observed = ObservedAws {
        security_group: Some(ObservedSecurityGroup {
            group_id: "sg-1".into(),
            rules: rules.clone(),
        }),
        instances: vec![instance("i-1", "required", &["sg-1"])],
        ..ObservedAws::default()
    };
    let mut d_hop = d.clone();
    d_hop
        .metadata_options
        .as_mut()
        .unwrap()
        .http_put_response_hop_limit = Some(2);
    let p = plan(&d_hop, Vec::new(), &observed, "t").unwrap();
    assert!(p.is_empty(), "{:?}", p.summary());
    // Someone edits a description: an in-place update of that rule id.
    rules[0].rule.description = "edited".into();
    let observed = ObservedAws {
        security_group: Some(ObservedSecurityGroup {
            group_id: "sg-1".into(),
            rules,
        }),
        ..observed
    };
    let p = plan(&d_hop, Vec::new(), &observed, "t").unwrap();
    assert_eq!(p.security_group.changes.len(), 1);
    assert_eq!(p.security_group.changes[0].action, Action::Update);
    assert_eq!(
        p.security_group.changes[0].rule_id.as_deref(),
        Some("sgr-0")
    );
}

#[test]
fn fingerprints_change_with_what_apply_depends_on() {
    let a = ObservedAws {
        instances: vec![instance("i-1", "optional", &["sg-1"])],
        ..ObservedAws::default()
    };
    let mut b = a.clone();
    assert_eq!(Fingerprints::of(&a).unwrap(), Fingerprints::of(&b).unwrap());
    b.instances[0].security_groups.push("sg-2".into());
    assert_ne!(
        Fingerprints::of(&a).unwrap().instances,
        Fingerprints::of(&b).unwrap().instances
    );
    assert_eq!(
        Fingerprints::of(&a).unwrap().security_group,
        Fingerprints::of(&b).unwrap().security_group
    );
}

#[test]
fn attach_replaces_the_unattached_finding_and_findings_need_private() {
    let observed = ObservedAws {
        security_group: Some(ObservedSecurityGroup {
            group_id: "sg-1".into(),
            rules: Vec::new(),
        }),
        instances: vec![instance("i-1", "required", &["sg-default"])],
        interfaces: vec![
            crate::state::ObservedInterface {
                interface_id: "eni-1".into(),
                instance_id: "i-1".into(),
                subnet_id: "subnet-1".into(),
                groups: vec!["sg-default".into()],
            },
            crate::state::ObservedInterface {
                interface_id: "eni-2".into(),
                instance_id: "i-1".into(),
                subnet_id: "subnet-1".into(),
                groups: vec!["sg-1".into()],
            },
        ],
        internet_routed_subnets: vec!["subnet-1".into()],
        ..ObservedAws::default()
    };
    let p = plan(&desired(""), Vec::new(), &observed, "t").unwrap();
    let codes: Vec<&str> = p.findings.iter().map(|f| f.code.as_str()).collect();
    assert_eq!(codes, ["group-not-attached", "internet-route", "public-ip"]);
    assert!(p.attach.is_empty());
    let p = plan(&desired("    attach: true\n"), Vec::new(), &observed, "t").unwrap();
    assert_eq!(
        p.attach,
        [AttachChange {
            instance_id: "i-1".into(),
            interface_id: "eni-1".into(),
            groups: vec!["sg-default".into()],
            release: Vec::new(),
        }],
        "only the interface without the owned group"
    );
    assert!(!p.findings.iter().any(|f| f.code == "group-not-attached"));
    let mut full = observed.clone();
    full.interfaces[0].groups = (1..=5).map(|i| format!("sg-{i}0")).collect();
    let err = plan(&desired("    attach: true\n"), Vec::new(), &full, "t").unwrap_err();
    assert!(
        matches!(err, PlanError::TooManyGroups { count: 6, .. }),
        "{err}"
    );
}

#[test]
fn retiring_takes_the_group_off_moves_subnets_back_and_deletes_in_that_order() {
    use crate::state::{ObservedInterface, ObservedNetworkAcl, SubnetAssociation};
    let interface = |id: &str, groups: &[&str]| ObservedInterface {
        interface_id: id.into(),
        instance_id: "i-1".into(),
        subnet_id: "subnet-1".into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
    };
    let mut observed = ObservedAws {
        security_group: Some(ObservedSecurityGroup {
            group_id: "sg-own".into(),
            rules: Vec::new(),
        }),
        interfaces: vec![
            interface("eni-1", &["sg-default", "sg-own"]),
            interface("eni-2", &["sg-default"]),
        ],
        network_acl: Some(ObservedNetworkAcl {
            network_acl_id: "acl-own".into(),
            entries: Vec::new(),
            subnets: vec!["subnet-1".into()],
        }),
        owned_acl_associations: vec![SubnetAssociation {
            subnet_id: "subnet-1".into(),
            association_id: "aclassoc-1".into(),
            network_acl_id: "acl-own".into(),
        }],
        default_network_acl: Some("acl-default".into()),
        ..ObservedAws::default()
    };
    let d = desired("").retired();
    let p = plan(&d, Vec::new(), &observed, "t").unwrap();
    let r = p.retire.as_ref().expect("a retirement");
    assert_eq!(r.detach.len(), 1, "only the interface that carries it");
    assert_eq!(r.detach[0].groups, ["sg-default"]);
    assert_eq!(r.restore[0].network_acl_id, "acl-default");
    assert_eq!(r.restore[0].association_id, "aclassoc-1");
    assert_eq!(r.delete_network_acl.as_deref(), Some("acl-own"));
    assert_eq!(r.delete_security_group.as_deref(), Some("sg-own"));
    assert_eq!(
        p.summary(),
        Summary {
            add: 0,
            change: 2,
            destroy: 2
        }
    );
    // EC2 needs a group on every interface: the owned one cannot be the last.
    observed.interfaces[0].groups = vec!["sg-own".into()];
    let err = plan(&d, Vec::new(), &observed, "t").unwrap_err();
    assert!(matches!(err, PlanError::LastGroup { .. }), "{err}");
    // Nothing owned: nothing to do.
    let p = plan(&d, Vec::new(), &ObservedAws::default(), "t").unwrap();
    assert!(p.summary().is_empty());
}
