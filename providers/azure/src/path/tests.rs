use perimeter_core::SourceFile;
use serde_json::json;

use super::*;
use crate::plan::AzureDesired;
use crate::state::{ObservedNsg, ObservedSubnet, OtherNsg};

const SUB: &str = "11111111-2222-3333-4444-555555555555";
const GROUP: &str = "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg/providers/Microsoft.Network";

fn desired(extra: &str) -> AzureDesired {
    let text = format!(
        "apiVersion: perimeter/v1
kind: NodePerimeter
name: web
networks:
  admins: [10.50.0.0/24]
ingress:
  - {{name: ssh, from: admins, services: [ssh]}}
targets:
  azure:
    - subscription: {SUB}
      resource_group: rg
      nsg: web-nsg
      location: westeurope
      application_security_group: web-nodes
{extra}"
    );
    let intent =
        perimeter_core::policy::load(&SourceFile::new("t.yaml", text.as_str())).expect("policy");
    let compiled = crate::compile(&intent, &intent.targets.azure[0]).expect("compiles");
    AzureDesired::from_compiled(&compiled)
}

fn subnet(name: &str, nsg: Option<&str>) -> ObservedSubnet {
    ObservedSubnet {
        id: format!("{GROUP}/virtualNetworks/vnet/subnets/{name}"),
        etag: "W/\"7\"".into(),
        nsg: nsg.map(|n| format!("{GROUP}/networkSecurityGroups/{n}")),
        properties: json!({"addressPrefix": "10.0.0.0/24", "provisioningState": "Succeeded"}),
    }
}

fn observed(subnets: &[ObservedSubnet], carrying: &[&str]) -> ObservedAzure {
    ObservedAzure {
        nsg: Some(ObservedNsg {
            subnets: carrying
                .iter()
                .map(|s| format!("{GROUP}/virtualNetworks/vnet/subnets/{s}"))
                .collect(),
            ..ObservedNsg::default()
        }),
        asg_exists: true,
        subnets: subnets
            .iter()
            .map(|s| (s.id.to_ascii_lowercase(), Some(s.clone())))
            .collect(),
        ..ObservedAzure::default()
    }
}

#[test]
fn declared_subnets_are_associated_and_undeclared_ones_dissociated() {
    let d = desired("      subnets: [vnet/a, vnet/b]\n");
    let o = observed(
        &[
            subnet("a", None),
            subnet("b", Some("web-nsg")),
            subnet("c", Some("web-nsg")),
        ],
        &["b", "c"],
    );
    let writes = plan_subnets(&d, &o, "web").unwrap();
    let summary: Vec<(String, bool)> = writes.iter().map(|w| (w.label(), w.associate)).collect();
    assert_eq!(
        summary,
        vec![("vnet/a".to_string(), true), ("vnet/c".to_string(), false)]
    );
    // The PUT sends the subnet back with only the NSG changed, on the observed etag.
    assert_eq!(
        writes[0].properties["networkSecurityGroup"]["id"],
        format!("{GROUP}/networkSecurityGroups/web-nsg")
    );
    assert_eq!(writes[0].properties["addressPrefix"], "10.0.0.0/24");
    assert!(writes[0].properties.get("provisioningState").is_none());
    assert!(writes[1].properties.get("networkSecurityGroup").is_none());
    assert_eq!(writes[0].if_match, "W/\"7\"");
    // Retired: every subnet carrying the NSG is dissociated, none associated.
    let retired = plan_subnets(&d.retired(), &o, "web").unwrap();
    assert!(retired.iter().all(|w| !w.associate) && retired.len() == 2);
}

#[test]
fn missing_subnets_and_subnets_with_another_nsg_are_refused() {
    let d = desired("      subnets: [vnet/a]\n");
    let err = plan_subnets(&d, &observed(&[], &[]), "web").unwrap_err();
    assert!(matches!(err, PlanError::UnknownSubnet { .. }), "{err}");
    let err = plan_subnets(&d, &observed(&[subnet("a", Some("aks"))], &[]), "web").unwrap_err();
    assert!(
        matches!(&err, PlanError::SubnetHasOtherNsg { other, .. } if other == "aks"),
        "{err}"
    );
}

fn nic(name: &str, nsg: Option<&str>, in_asg: bool) -> ObservedNic {
    ObservedNic {
        id: format!("{GROUP}/networkInterfaces/{name}"),
        name: name.into(),
        nsg: nsg.map(|n| format!("{GROUP}/networkSecurityGroups/{n}")),
        subnet: Some(format!("{GROUP}/virtualNetworks/vnet/subnets/a")),
        addrs: vec!["10.0.0.4".parse().unwrap()],
        asgs: if in_asg {
            vec![format!("{GROUP}/applicationSecurityGroups/web-nodes")]
        } else {
            Vec::new()
        },
    }
}

fn check(d: &AzureDesired, o: &ObservedAzure) -> (Vec<Violation>, Vec<Finding>) {
    let writes = plan_subnets(d, o, "web").unwrap();
    PlannedPath {
        target: &d.target,
        observed: o,
        own_rules: &d.rules,
        desired: &d.rules,
        writes: &writes,
    }
    .check()
}

#[test]
fn an_nsg_on_nothing_is_a_finding_and_a_planned_association_is_enough() {
    let d = desired("");
    let (_, findings) = check(&d, &observed(&[], &[]));
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0].code, "nsg-unassociated");
    let d = desired("      subnets: [vnet/a]\n");
    let (_, findings) = check(&d, &observed(&[subnet("a", None)], &[]));
    assert!(findings.is_empty(), "{findings:?}");
}

#[test]
fn the_nodes_path_is_checked_per_nic_with_both_layers() {
    let d = desired("      subnets: [vnet/a]\n      nics: {tags: {pool: web}}\n");
    let mut o = observed(&[subnet("a", None)], &[]);
    // No NICs: a finding, nothing checked.
    o.nics = Some(Vec::new());
    let (v, f) = check(&d, &o);
    assert!(
        v.is_empty() && f.iter().any(|f| f.code == "no-nodes"),
        "{f:?}"
    );
    // Two NICs behind the planned subnet NSG alone: nothing differs.
    o.nics = Some(vec![nic("n0", None, true), nic("n1", None, true)]);
    let (v, f) = check(&d, &o);
    assert!(v.is_empty() && f.is_empty(), "{v:?} {f:?}");
    // A NIC NSG with only its default rules behind the subnet's: it allows the VNet, which
    // includes the admins' range the policy allows ssh from, and what it allows beyond that
    // the subnet's NSG denies first. No violation.
    let other = OtherNsg {
        id: format!("{GROUP}/networkSecurityGroups/team"),
        name: "team".into(),
        rules: Vec::new(),
        tags: Default::default(),
    };
    o.other_nsgs
        .insert(other.id.to_ascii_lowercase(), other.clone());
    o.nics = Some(vec![nic("n0", Some("team"), true), nic("n1", None, false)]);
    let (v, f) = check(&d, &o);
    assert!(v.is_empty(), "{v:#?}");
    assert!(
        f.iter()
            .any(|f| f.code == "nic-not-in-asg" && f.message.contains("n1"))
    );
    // Without the subnet association, n0's path is the team NSG alone: its default
    // AllowVnetInBound opens what the policy denies.
    let bare = desired("      nics: {tags: {pool: web}}\n");
    let (v, _) = check(&bare, &o);
    assert!(
        v.iter().any(|v| v.object.starts_with("subnet vnet/a")
            && v.rule.contains("NSG team on network interface n0 decides")
            && v.key == "unenforced/vnet/a/team/opens"),
        "{v:#?}"
    );
    assert!(
        v.iter().any(|v| v.object.starts_with("subnet vnet/a")
            && v.rule.contains("no NSG on the path")
            && v.object.contains("n1")),
        "{v:#?}"
    );
}

#[test]
fn a_subnet_moves_from_another_nsg_of_the_policy_and_the_orphan_leaves_it() {
    let d = desired("      subnets: [vnet/a]\n");
    let mut o = observed(&[subnet("a", Some("web-old"))], &[]);
    let old = OtherNsg {
        id: format!("{GROUP}/networkSecurityGroups/web-old"),
        name: "web-old".into(),
        rules: Vec::new(),
        tags: [(crate::state::OWNER_TAG.to_string(), "web".to_string())].into(),
    };
    o.other_nsgs.insert(old.id.to_ascii_lowercase(), old);
    let writes = plan_subnets(&d, &o, "web").unwrap();
    assert_eq!(writes.len(), 1);
    assert!(writes[0].associate && writes[0].reason.contains("moved from NSG web-old"));
    // Another policy's NSG is still refused.
    assert!(plan_subnets(&d, &o, "other").is_err());
    // The orphaned NSG, whose subnet a declared target takes over, does not dissociate it.
    let mut orphan_target = d.target.clone();
    orphan_target.nsg = "web-old".into();
    orphan_target.subnets = vec![format!("{GROUP}/virtualNetworks/vnet/subnets/a")];
    let orphan = AzureDesired::orphaned(orphan_target);
    let carrying = observed(&[subnet("a", Some("web-old"))], &["a"]);
    assert!(plan_subnets(&orphan, &carrying, "web").unwrap().is_empty());
    let mut alone = orphan.clone();
    alone.target.subnets.clear();
    let writes = plan_subnets(&alone, &carrying, "web").unwrap();
    assert!(writes.len() == 1 && !writes[0].associate, "{writes:?}");
}
