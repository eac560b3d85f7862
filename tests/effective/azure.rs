//! Azure: the policy's NSG, and the nodes' NICs around it — each NIC's subnet may carry the
//! policy's NSG, another team's NSG or none, and the NIC an NSG of its own or none. Inbound a
//! packet crosses the subnet's NSG, then the NIC's; outbound the reverse; it passes only when
//! every NSG on the way allows it (cloud-facts.md A2).

use std::collections::BTreeMap;

use perimeter_azure::evaluate::{AzureWorld, NicIdentity, decide, winner};
use perimeter_azure::model::{SecurityRule, SecurityRuleProperties};
use perimeter_azure::{
    Azure, AzureDesired, ObservedAzure, ObservedNic, ObservedNsg, ObservedSubnet, OtherNsg,
};
use perimeter_core::Cidr;
use perimeter_core::lifecycle::Cloud;
use perimeter_core::target::AzureNics;
use perimeter_tests::{Rng, packets, policy_cidrs};

use crate::{Intent, Packet, Tally, Verdict, check_case};

fn foreign_rule(rng: &mut Rng, i: usize) -> SecurityRule {
    let inbound = rng.below(3) != 0;
    let range: String = (*rng.pick(&[
        "10.70.3.0/24",
        "10.70.0.0/16",
        "*",
        "VirtualNetwork",
        "Internet",
        "10.0.16.0/24",
    ]))
    .into();
    let (source, destination) = if inbound {
        (range, "*".to_string())
    } else {
        ("*".to_string(), range)
    };
    SecurityRule {
        name: format!("team-{i}"),
        properties: SecurityRuleProperties {
            description: String::new(),
            protocol: (*rng.pick(&["Tcp", "Udp", "*"])).into(),
            source_port_range: "*".into(),
            destination_port_range: Some(
                (*rng.pick(&["22", "443", "8000-8080", "10250", "*"])).into(),
            ),
            destination_port_ranges: Vec::new(),
            source_address_prefix: Some(source),
            source_address_prefixes: Vec::new(),
            source_application_security_groups: Vec::new(),
            destination_address_prefix: Some(destination),
            destination_address_prefixes: Vec::new(),
            destination_application_security_groups: Vec::new(),
            access: (*rng.pick(&["Allow", "Deny"])).into(),
            priority: 100 + 10 * i as u16 + rng.below(10) as u16,
            direction: if inbound { "Inbound" } else { "Outbound" }.into(),
        },
    }
}

/// Where an NSG sits on a subnet or a NIC.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Slot {
    None,
    Own,
    Other(usize),
}

pub(crate) fn case(intent: &Intent, rng: &mut Rng, tally: &mut Tally) {
    let mut target = intent.targets.azure_or_placeholder(&intent.name).remove(0);
    target.nics = Some(AzureNics {
        resource_group: None,
        tags: BTreeMap::from([("pool".to_string(), "gen".to_string())]),
    });
    let Ok(compiled) = perimeter_azure::compile(intent, &target) else {
        tally.skipped += 1;
        return;
    };
    let desired = AzureDesired::from_compiled(&compiled);
    let group = format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Network",
        target.subscription, target.resource_group
    );
    let own_id = format!("{group}/networkSecurityGroups/{}", target.nsg);
    let node_asg = perimeter_azure::asg_id(&target);
    // Two other NSGs of one to three rules each.
    let others: Vec<OtherNsg> = (0..2)
        .map(|n| OtherNsg {
            id: format!("{group}/networkSecurityGroups/team-nsg-{n}"),
            name: format!("team-nsg-{n}"),
            rules: (0..1 + rng.below(3) as usize)
                .map(|i| foreign_rule(rng, i))
                .collect(),
            tags: BTreeMap::new(),
        })
        .collect();
    let slot_id = |s: Slot| match s {
        Slot::None => None,
        Slot::Own => Some(own_id.clone()),
        Slot::Other(n) => Some(others[n].id.clone()),
    };
    let pick_slot = |rng: &mut Rng, own: bool| match rng.below(if own { 4 } else { 3 }) {
        0 => Slot::None,
        1 => Slot::Other(0),
        2 => Slot::Other(1),
        _ => Slot::Own,
    };
    // Two subnets and one to three NICs.
    let subnet_slots = [pick_slot(rng, true), pick_slot(rng, true)];
    let subnets: Vec<ObservedSubnet> = subnet_slots
        .iter()
        .enumerate()
        .map(|(i, s)| ObservedSubnet {
            id: format!("{group}/virtualNetworks/vnet/subnets/s{i}"),
            etag: "W/\"1\"".into(),
            nsg: slot_id(*s),
            properties: serde_json::json!({"addressPrefix": format!("10.9.{i}.0/24")}),
        })
        .collect();
    let nics: Vec<(ObservedNic, usize, Slot)> = (0..1 + rng.below(3) as usize)
        .map(|i| {
            let subnet = rng.below(2) as usize;
            let slot = pick_slot(rng, false);
            let in_asg = rng.below(5) != 0;
            (
                ObservedNic {
                    id: format!("{group}/networkInterfaces/node-{i}"),
                    name: format!("node-{i}"),
                    nsg: slot_id(slot),
                    subnet: Some(subnets[subnet].id.clone()),
                    addrs: Vec::new(),
                    asgs: if in_asg {
                        vec![node_asg.clone()]
                    } else {
                        Vec::new()
                    },
                },
                subnet,
                slot,
            )
        })
        .collect();
    let observed = ObservedAzure {
        nsg: Some(ObservedNsg {
            etag: "W/\"1\"".into(),
            location: "westeurope".into(),
            tags: BTreeMap::from([("perimeter:policy".to_string(), intent.name.clone())]),
            rules: desired.rules.clone(),
            subnets: subnets
                .iter()
                .filter(|s| s.nsg.as_deref() == Some(own_id.as_str()))
                .map(|s| s.id.clone())
                .collect(),
            nics: nics
                .iter()
                .filter(|(n, _, _)| n.nsg.as_deref() == Some(own_id.as_str()))
                .map(|(n, _, _)| n.id.clone())
                .collect(),
        }),
        asg_exists: true,
        subnets: subnets
            .iter()
            .map(|s| (s.id.to_ascii_lowercase(), Some(s.clone())))
            .collect(),
        nics: Some(nics.iter().map(|(n, _, _)| n.clone()).collect()),
        other_nsgs: others
            .iter()
            .map(|o| (o.id.to_ascii_lowercase(), o.clone()))
            .collect(),
        orphan_nsgs: Vec::new(),
    };
    let Ok(plan) = Azure::plan(&desired, Vec::new(), &observed, &intent.name) else {
        tally.skipped += 1;
        return;
    };
    assert!(plan.changes.is_empty(), "an applied policy plans nothing");
    // The path of one NIC, from the documentation: (the NSG's name, its rules) in the order a
    // packet of this direction crosses them.
    let layer = |s: Slot| -> Option<(String, &[SecurityRule])> {
        match s {
            Slot::None => None,
            Slot::Own => Some((target.nsg.clone(), &desired.rules[..])),
            Slot::Other(n) => Some((others[n].name.clone(), &others[n].rules[..])),
        }
    };
    let decide_on = |class: usize, p: &Packet| -> (Verdict, Verdict, String) {
        let (nic, subnet, nic_slot) = &nics[class];
        let identity = NicIdentity {
            asgs: nic.asgs.clone(),
        };
        let world = |rules: &'_ [SecurityRule]| -> Verdict {
            decide(
                &AzureWorld {
                    rules,
                    node_asg: &node_asg,
                    nic: Some(&identity),
                },
                p,
            )
        };
        let policy = world(&desired.rules);
        let (first, second) = (subnet_slots[*subnet], *nic_slot);
        let order = match p.direction {
            perimeter_core::Direction::Ingress => [first, second],
            perimeter_core::Direction::Egress => [second, first],
        };
        let layers: Vec<(String, &[SecurityRule])> = order.into_iter().filter_map(layer).collect();
        let denying = layers
            .iter()
            .find(|(_, rules)| world(rules) == Verdict::Deny);
        let path = if denying.is_some() {
            Verdict::Deny
        } else {
            Verdict::Allow
        };
        let own_on_path = order.contains(&Slot::Own);
        let blamed = match denying {
            Some((name, rules)) => {
                let w = AzureWorld {
                    rules,
                    node_asg: &node_asg,
                    nic: Some(&identity),
                };
                match winner(&w, p) {
                    Some(r) => format!("security rule {} of NSG {name}", r.name),
                    None => format!("NSG {name} on"),
                }
            }
            None if !own_on_path => format!("subnet vnet/s{subnet}"),
            None => String::new(),
        };
        (policy, path, blamed)
    };
    let mut cidrs = policy_cidrs(intent);
    cidrs.extend(
        others
            .iter()
            .flat_map(|o| &o.rules)
            .flat_map(|r| {
                r.properties
                    .source_address_prefix
                    .iter()
                    .chain(&r.properties.destination_address_prefix)
            })
            .filter_map(|r| r.parse::<Cidr>().ok()),
    );
    let probes = packets(rng, &cidrs, 200);
    check_case(
        &plan.violations,
        &probes,
        nics.len(),
        &decide_on,
        &|| format!("subnets: {subnet_slots:?}\nnics: {nics:#?}\nother NSGs: {others:#?}"),
        tally,
    );
}
