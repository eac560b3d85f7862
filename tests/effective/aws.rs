//! AWS: the policy's group and NACL as applied, and around them other groups on the nodes'
//! interfaces and, where the policy manages no NACL, the subnet's own. An interface passes the
//! union of its groups, then its subnet's NACL (cloud-facts.md A1, A3).

use std::collections::BTreeSet;

use perimeter_aws::evaluate::{AwsWorld, OtherGroup, allowing_rule, decide, nacl_denial};
use perimeter_aws::model::{NaclEntry, NetworkAcl, SecurityGroup, SgPeer, SgRule};
use perimeter_aws::{
    Aws, AwsDesired, ObservedAws, ObservedInterface, ObservedNetworkAcl, ObservedOtherGroup,
    ObservedSecurityGroup, ObservedSgRule, ObservedSubnetAcl, SubnetAssociation,
};
use perimeter_core::lifecycle::Cloud;
use perimeter_core::{Cidr, Direction};
use perimeter_tests::{NODE_CIDR, Rng, packets, policy_cidrs};

use crate::{Intent, Packet, Tally, Verdict, check_case};

const OWN: &str = "sg-own";
const CIDRS: &[&str] = &[
    "10.70.3.0/24",
    "10.0.0.0/8",
    "0.0.0.0/0",
    "10.0.16.0/24",
    "192.168.1.0/24",
];

fn cidr(rng: &mut Rng) -> Cidr {
    rng.pick(CIDRS).parse().expect("static")
}

fn other_rule(rng: &mut Rng, groups: &[String]) -> SgRule {
    let (ip_protocol, from_port, to_port) = match rng.below(5) {
        0 | 1 => {
            let (a, b) = *rng.pick(&[(22, 22), (53, 53), (0, 65535), (8000, 8080), (443, 443)]);
            (*rng.pick(&["tcp", "udp"]), a, b)
        }
        2 => ("icmp", *rng.pick(&[-1, 8]), -1),
        _ => ("-1", -1, -1),
    };
    let peer = match rng.below(6) {
        0 => SgPeer::OwnGroup,
        1 => SgPeer::ReferencedGroup(if rng.below(2) == 0 {
            OWN.into()
        } else {
            rng.pick(groups).clone()
        }),
        2 => SgPeer::CidrIpv6("::/0".parse().expect("static")),
        _ => SgPeer::CidrIpv4(cidr(rng)),
    };
    SgRule {
        direction: if rng.below(2) == 0 {
            Direction::Ingress
        } else {
            Direction::Egress
        },
        ip_protocol: ip_protocol.into(),
        from_port,
        to_port,
        peer,
        description: String::new(),
    }
}

fn foreign_acl(rng: &mut Rng) -> Vec<NaclEntry> {
    let mut entries = Vec::new();
    for egress in [false, true] {
        for n in 0..rng.below(4) {
            let protocol = *rng.pick(&["-1", "6", "17"]);
            entries.push(NaclEntry {
                egress,
                rule_number: 100 + n as u16 * 10,
                protocol: protocol.into(),
                rule_action: (*rng.pick(&["allow", "deny"])).into(),
                cidr: cidr(rng),
                port_range: (protocol != "-1")
                    .then(|| *rng.pick(&[(22, 22), (0, 65535), (1024, 65535)])),
                icmp_type_code: None,
            });
        }
        if rng.below(3) != 0 {
            entries.push(NaclEntry {
                egress,
                rule_number: 32000,
                protocol: "-1".into(),
                rule_action: "allow".into(),
                cidr: Cidr::ANY_V4,
                port_range: None,
                icmp_type_code: None,
            });
        }
    }
    entries
}

pub(crate) fn case(intent: &Intent, rng: &mut Rng, tally: &mut Tally) {
    let target = &intent.targets.aws[0];
    let Ok(compiled) = perimeter_aws::compile(intent, target) else {
        tally.skipped += 1;
        return;
    };
    let desired = AwsDesired::from_compiled(&compiled, intent.private);
    let subnet = "subnet-0123456789abcdef0".to_string();
    let ids: Vec<String> = (0..1 + rng.below(3))
        .map(|i| format!("sg-other{i}"))
        .collect();
    let others: Vec<ObservedOtherGroup> = ids
        .iter()
        .map(|id| ObservedOtherGroup {
            group_id: id.clone(),
            group_name: format!("{id}-name"),
            rules: (0..rng.below(4)).map(|_| other_rule(rng, &ids)).collect(),
        })
        .collect();
    let interfaces: Vec<ObservedInterface> = (0..1 + rng.below(2))
        .map(|i| {
            let mut groups: Vec<String> =
                ids.iter().filter(|_| rng.below(2) == 0).cloned().collect();
            if i == 0 || rng.below(3) != 0 {
                groups.push(OWN.into());
            }
            groups.sort();
            ObservedInterface {
                interface_id: format!("eni-{i}"),
                instance_id: "i-1".into(),
                subnet_id: subnet.clone(),
                groups,
            }
        })
        .collect();
    let acl_entries = foreign_acl(rng);
    let mut observed = ObservedAws {
        security_group: Some(ObservedSecurityGroup {
            group_id: OWN.into(),
            rules: desired
                .security_group
                .rules
                .iter()
                .enumerate()
                .map(|(i, r)| ObservedSgRule {
                    rule_id: format!("sgr-{i}"),
                    rule: r.clone(),
                })
                .collect(),
        }),
        interfaces: interfaces.clone(),
        other_groups: others.clone(),
        node_subnet_cidrs: vec![NODE_CIDR.parse().expect("static")],
        ..ObservedAws::default()
    };
    if let Some(acl) = &desired.network_acl {
        observed.network_acl = Some(ObservedNetworkAcl {
            network_acl_id: "acl-own".into(),
            entries: acl.entries.clone(),
            subnets: vec![subnet.clone()],
        });
        observed.subnet_associations = vec![SubnetAssociation {
            subnet_id: subnet.clone(),
            association_id: "aclassoc-1".into(),
            network_acl_id: "acl-own".into(),
        }];
    } else {
        observed.subnet_acls = vec![ObservedSubnetAcl {
            subnet_id: subnet.clone(),
            network_acl_id: "acl-foreign".into(),
            is_default: false,
            entries: acl_entries.clone(),
        }];
    }
    let Ok(plan) = Aws::plan(&desired, Vec::new(), &observed, &intent.name) else {
        tally.skipped += 1;
        return;
    };
    assert!(
        plan.security_group.changes.is_empty(),
        "an applied policy plans nothing"
    );

    // The path, from the documentation: a reference to a group matches the nodes when every
    // node interface carries it.
    let carried: Vec<BTreeSet<&String>> = interfaces
        .iter()
        .map(|i| i.groups.iter().collect())
        .collect();
    let node_groups: Vec<String> = carried
        .iter()
        .skip(1)
        .fold(carried[0].clone(), |all, here| {
            all.intersection(here).copied().collect()
        })
        .into_iter()
        .cloned()
        .collect();
    let empty = SecurityGroup {
        rules: Vec::new(),
        ..desired.security_group.clone()
    };
    let foreign_nacl = NetworkAcl {
        vpc_id: String::new(),
        subnets: vec![subnet.clone()],
        entries: acl_entries,
    };
    let path_nacl = desired.network_acl.as_ref().unwrap_or(&foreign_nacl);
    let on: Vec<Vec<OtherGroup>> = interfaces
        .iter()
        .map(|i| {
            others
                .iter()
                .filter(|g| i.groups.contains(&g.group_id))
                .map(|g| OtherGroup {
                    group_id: g.group_id.clone(),
                    group_name: g.group_name.clone(),
                    rules: g.rules.clone(),
                })
                .collect()
        })
        .collect();
    let decide_on = |class: usize, p: &Packet| -> (Verdict, Verdict, String) {
        let policy = decide(
            &AwsWorld {
                security_group: &desired.security_group,
                other_groups: &[],
                node_groups: &[],
                network_acl: desired.network_acl.as_ref(),
                metadata_options: None,
            },
            p,
        );
        let carries = interfaces[class].groups.iter().any(|g| g == OWN);
        let world = AwsWorld {
            security_group: if carries {
                &desired.security_group
            } else {
                &empty
            },
            other_groups: &on[class],
            node_groups: &node_groups,
            network_acl: Some(path_nacl),
            metadata_options: None,
        };
        let path = decide(&world, p);
        let blamed = if path == Verdict::Allow {
            allowing_rule(&world, p).map_or(String::new(), |(g, _)| format!("{} (", g.group_id))
        } else if desired.network_acl.is_none() && nacl_denial(path_nacl, p).is_some() {
            "acl-foreign (".into()
        } else {
            format!("interface {}", interfaces[class].interface_id)
        };
        (policy, path, blamed)
    };
    let mut cidrs = policy_cidrs(intent);
    cidrs.extend(CIDRS.iter().map(|c| c.parse::<Cidr>().expect("static")));
    let probes = packets(rng, &cidrs, 200);
    check_case(
        &plan.violations,
        &probes,
        interfaces.len(),
        &decide_on,
        &|| {
            format!(
                "interfaces {interfaces:#?}\nother groups {others:#?}\nsubnet NACL {foreign_nacl:#?}"
            )
        },
        tally,
    );
}
