use perimeter_core::policy::load_str;

use super::*;
use crate::compile::{Limits, compile_with_limits};
use crate::state::{
    ObservedAws, ObservedNetworkAcl, ObservedSecurityGroup, ObservedSgRule, SubnetAssociation,
};

const BASE: &str = "apiVersion: perimeter/v1\nkind: NodePerimeter\nname: t\ntargets:\n  aws:\n    region: us-east-1\n    vpc: vpc-0123456789abcdef0\n    network_acl: {subnets: [subnet-0123456789abcdef0], node_cidrs: [10.0.16.0/20]}\n";

fn compiled(rules: &str) -> crate::plan::AwsDesired {
    let intent = load_str("t.yaml", &format!("{BASE}{rules}")).unwrap();
    let c = compile_with_limits(&intent, &intent.targets.aws[0], Limits::AWS_DEFAULT).unwrap();
    crate::plan::AwsDesired::from_compiled(&c, intent.private)
}

/// The observed state after `d` was applied to a NACL: its entries with the compiled numbers.
fn applied(d: &crate::plan::AwsDesired) -> ObservedAws {
    ObservedAws {
        security_group: Some(ObservedSecurityGroup {
            group_id: "sg-1".into(),
            rules: d
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
        network_acl: Some(ObservedNetworkAcl {
            network_acl_id: "acl-1".into(),
            entries: d.network_acl.as_ref().unwrap().entries.clone(),
            subnets: vec!["subnet-0123456789abcdef0".into()],
        }),
        subnet_associations: vec![SubnetAssociation {
            subnet_id: "subnet-0123456789abcdef0".into(),
            association_id: "aclassoc-1".into(),
            network_acl_id: "acl-1".into(),
        }],
        ..ObservedAws::default()
    }
}

const TWO_PEERS: &str =
    "ingress:\n  - {name: ssh, from: [10.60.2.0/24, 10.60.4.0/24], services: [ssh]}\n";
const THREE_PEERS: &str = "ingress:\n  - {name: ssh, from: [10.60.0.0/24, 10.60.2.0/24, 10.60.4.0/24], services: [ssh]}\n";

/// The repro of issue 11: a peer that sorts first used to shift every entry's number, and the
/// `ReplaceNetworkAclEntry` calls between dropped a peer both versions allow.
#[test]
fn a_new_peer_that_sorts_first_is_one_create_on_a_free_number() {
    let a = compiled(TWO_PEERS);
    let b = compiled(THREE_PEERS);
    let observed = applied(&a);
    let p = crate::plan::plan(&b, Vec::new(), &observed, "t").unwrap();
    let nacl = p.network_acl.as_ref().unwrap();
    let changes: Vec<String> = nacl
        .changes
        .iter()
        .map(|c| {
            let e = c.after.as_ref().or(c.before.as_ref()).unwrap();
            format!(
                "{:?} {} #{} {}",
                c.action,
                if e.egress { "out" } else { "in" },
                e.rule_number,
                e.cidr
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            "Create in #300 10.60.0.0/24",
            "Create out #300 10.60.0.0/24"
        ]
    );
    assert!(p.steps >= 3, "{}", p.steps);
    // Renumbering in place, as before, is caught: the entry for 10.60.2.0/24 at #100 goes
    // away before 10.60.1.0/24 takes its number.
    let old_entries = observed.network_acl.as_ref().unwrap().entries.clone();
    let rules = b.security_group.rules.clone();
    let old = AwsState::new(rules.clone(), old_entries.clone(), true);
    let new = AwsState::new(rules, b.network_acl.as_ref().unwrap().entries.clone(), true);
    let renumbered = old_entries
        .iter()
        .find(|e| !e.egress && e.rule_number == 100)
        .unwrap();
    let delete = AwsWrite::DeleteEntry(renumbered.clone());
    let err = check(
        &AwsTransition { node_cidrs: &[] },
        &old,
        &new,
        &[vec![&delete]],
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("would deny ingress tcp 22 from 10.60.2.0"),
        "{err}"
    );
}

#[test]
fn a_converged_nacl_with_other_numbers_plans_nothing() {
    let b = compiled(THREE_PEERS);
    let mut observed = applied(&b);
    for e in &mut observed.network_acl.as_mut().unwrap().entries {
        e.rule_number += 7;
    }
    let p = crate::plan::plan(&b, Vec::new(), &observed, "t").unwrap();
    assert!(p.is_empty(), "{:?}", p.network_acl);
}

/// DNS to the VPC and four peers inside it needed 64 inbound entries when reply entries were
/// the VPC minus the peers; first-match entries need no subtraction.
#[test]
fn dns_to_the_vpc_with_peers_inside_it_fits_the_quota() {
    let d = compiled(
        "ingress:\n  - {name: ssh, from: [10.40.1.0/24, 10.40.7.0/24, 10.40.19.0/24, 10.40.200.0/24], services: [ssh]}\negress:\n  - {name: dns, to: 10.40.0.0/16, services: [dns]}\n",
    );
    let entries = &d.network_acl.as_ref().unwrap().entries;
    let inbound = entries.iter().filter(|e| !e.egress).count();
    let outbound = entries.iter().filter(|e| e.egress).count();
    assert!(
        inbound <= 6 && outbound <= 6,
        "{inbound} in, {outbound} out: {entries:#?}"
    );
}

#[test]
fn a_full_nacl_makes_room_by_deleting_first_when_that_is_safe() {
    // 19 peers fill the inbound IPv4 quota (with `*`); replacing them all with 19 others needs
    // deletes before creates, and deleting a peer neither end shares is safe.
    let peers = |base: u8| {
        (0..19)
            .map(|i| format!("10.{base}.{}.0/24", 2 * i))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let a = compiled(&format!(
        "ingress:\n  - {{name: ssh, from: [{}], services: [ssh]}}\n",
        peers(61)
    ));
    let b = compiled(&format!(
        "ingress:\n  - {{name: ssh, from: [{}], services: [ssh]}}\n",
        peers(62)
    ));
    let p = crate::plan::plan(&b, Vec::new(), &applied(&a), "t").unwrap();
    let nacl = p.network_acl.as_ref().unwrap();
    assert_eq!(nacl.changes.len(), 4 * 19);
    assert_eq!(
        nacl.changes
            .iter()
            .filter(|c| c.action == Action::Delete)
            .count(),
        2 * 19
    );
}
