use perimeter_core::SourceFile;

use super::*;
use crate::state::ObservedNsg;
use crate::transition::AzureTransition;

fn policy(shared: bool) -> String {
    format!(
        "apiVersion: perimeter/v1
kind: NodePerimeter
name: web
private: true
networks:
  admins: [10.50.0.0/24]
ingress:
  - {{name: ssh, from: admins, services: [ssh]}}
  - {{name: kubelet, from: self, services: [kubelet]}}
targets:
  azure:
    - {{subscription: 11111111-2222-3333-4444-555555555555, resource_group: rg, nsg: web-nsg, location: westeurope, application_security_group: web-nodes, shared: {shared}}}
"
    )
}

fn desired(shared: bool) -> AzureDesired {
    let intent = perimeter_core::policy::load(&SourceFile::new("t.yaml", policy(shared).as_str()))
        .expect("policy");
    let compiled = crate::compile(&intent, &intent.targets.azure[0]).expect("compiles");
    AzureDesired::from_compiled(&compiled)
}

fn nsg(rules: Vec<SecurityRule>, owned: bool) -> ObservedAzure {
    let mut tags = std::collections::BTreeMap::new();
    if owned {
        tags.insert(OWNER_TAG.to_string(), "web".to_string());
    }
    ObservedAzure {
        nsg: Some(ObservedNsg {
            etag: "W/\"1\"".into(),
            location: "westeurope".into(),
            tags,
            rules,
            ..Default::default()
        }),
        asg_exists: true,
        ..Default::default()
    }
}

fn foreign(name: &str, priority: u16, direction: &str) -> SecurityRule {
    let mut r = desired(true).rules[0].clone();
    r.name = name.into();
    r.properties.description = "managed by AKS".into();
    r.properties.priority = priority;
    r.properties.direction = direction.into();
    r
}

#[test]
fn a_missing_owned_nsg_is_created_in_one_put() {
    let d = desired(false);
    let p = plan(
        &d,
        vec![],
        &ObservedAzure {
            nsg: None,
            asg_exists: true,
            ..Default::default()
        },
        "web",
    )
    .unwrap();
    assert!(p.create_nsg);
    assert_eq!(
        p.write,
        NsgWrite::Put {
            if_match: None,
            location: "westeurope".into(),
            tags: std::collections::BTreeMap::from([(OWNER_TAG.to_string(), "web".to_string())]),
        }
    );
    assert_eq!(p.summary().add, d.rules.len() + 1);
}

#[test]
fn an_owned_nsg_converges_and_is_rewritten_with_if_match() {
    let d = desired(false);
    let same = plan(&d, vec![], &nsg(d.rules.clone(), true), "web").unwrap();
    assert!(same.is_empty() && same.write == NsgWrite::None);
    let mut extra = d.rules.clone();
    extra.push(foreign("hand-made", 3000, "Inbound"));
    let p = plan(&d, vec![], &nsg(extra, true), "web").unwrap();
    assert_eq!(p.summary().destroy, 1, "an owned NSG is owned whole");
    assert_eq!(
        p.write,
        NsgWrite::Put {
            if_match: Some("W/\"1\"".into()),
            location: "westeurope".into(),
            tags: std::collections::BTreeMap::from([(OWNER_TAG.to_string(), "web".to_string())]),
        }
    );
}

#[test]
fn an_untagged_nsg_is_refused_unless_shared() {
    let d = desired(false);
    let err = plan(&d, vec![], &nsg(vec![], false), "web").unwrap_err();
    assert!(matches!(err, PlanError::ForeignNsg { .. }), "{err}");
    assert!(err.to_string().contains("shared: true"));
}

#[test]
fn a_shared_nsg_keeps_foreign_rules_and_writes_rule_by_rule() {
    let d = desired(true);
    let aks = vec![
        foreign("k8s-azure-lb_allow_IPv4_443", 500, "Inbound"),
        foreign("aks-outbound", 500, "Outbound"),
    ];
    let p = plan(&d, vec![], &nsg(aks.clone(), false), "web").unwrap();
    assert_eq!(p.foreign_rules.len(), 2);
    let NsgWrite::Steps { steps } = &p.write else {
        panic!("{:?}", p.write)
    };
    assert_eq!(steps.len(), d.rules.len());
    assert!(
        steps
            .iter()
            .all(|s| matches!(s, RuleStep::Put { parked: false, .. }))
    );
    // Converged: nothing to do, and the foreign rules never appear as changes.
    let mut all = aks;
    all.extend(d.rules.iter().cloned());
    let again = plan(&d, vec![], &nsg(all, false), "web").unwrap();
    assert!(
        again.is_empty() && again.write == NsgWrite::None,
        "{:?}",
        again.changes
    );
}

#[test]
fn a_foreign_rule_on_a_needed_priority_is_refused_at_plan_time() {
    let d = desired(true);
    let wanted = &d.rules[0];
    let squatter = foreign(
        "someone-else",
        wanted.properties.priority,
        &wanted.properties.direction,
    );
    let err = plan(&d, vec![], &nsg(vec![squatter], false), "web").unwrap_err();
    assert!(matches!(err, PlanError::PriorityTaken { .. }), "{err}");
    let mut named = foreign(&wanted.name, 3000, "Inbound");
    named.properties.description = "hand-made".into();
    let err = plan(&d, vec![], &nsg(vec![named], false), "web").unwrap_err();
    assert!(matches!(err, PlanError::NameTaken { .. }), "{err}");
}

#[test]
fn swapped_priorities_are_reordered_through_a_parked_rule() {
    let d = desired(true);
    let inbound: Vec<&SecurityRule> = d
        .rules
        .iter()
        .filter(|r| r.properties.direction == "Inbound")
        .collect();
    assert!(inbound.len() >= 2);
    let (a, b) = (inbound[0], inbound[1]);
    // Observed: a and b hold each other's priorities.
    let mut observed: Vec<SecurityRule> = d.rules.clone();
    for r in observed.iter_mut() {
        if r.name == a.name {
            r.properties.priority = b.properties.priority;
        } else if r.name == b.name {
            r.properties.priority = a.properties.priority;
        }
    }
    let p = plan(&d, vec![], &nsg(observed.clone(), false), "web").unwrap();
    let NsgWrite::Steps { steps } = &p.write else {
        panic!()
    };
    assert_eq!(steps.len(), 3, "park one, then two puts: {steps:?}");
    assert!(matches!(&steps[0], RuleStep::Put { parked: true, .. }));
    // Replaying the steps never puts two rules on one priority and direction.
    let mut state: std::collections::BTreeMap<String, (String, u16)> = observed
        .iter()
        .map(|r| {
            (
                r.name.clone(),
                (r.properties.direction.clone(), r.properties.priority),
            )
        })
        .collect();
    for s in steps {
        if let RuleStep::Put { rule, .. } = s {
            state.insert(
                rule.name.clone(),
                (rule.properties.direction.clone(), rule.properties.priority),
            );
            let mut seen = std::collections::BTreeSet::new();
            assert!(
                state.values().all(|k| seen.insert(k.clone())),
                "conflict after {s:?}"
            );
        }
    }
}

#[test]
fn deletes_come_last_and_limits_hold() {
    let d = desired(true);
    let mut observed = d.rules.clone();
    let mut old = d.rules[0].clone();
    old.name = "web-in-old".into();
    old.properties.priority = 3000;
    observed.push(old);
    let p = plan(&d, vec![], &nsg(observed, false), "web").unwrap();
    let NsgWrite::Steps { steps } = &p.write else {
        panic!()
    };
    assert_eq!(
        steps.last(),
        Some(&RuleStep::Delete {
            name: "web-in-old".into()
        })
    );

    let many: Vec<SecurityRule> = (0..(RULES_PER_NSG - 1))
        .map(|i| {
            foreign(
                &format!("aks-{i}"),
                100 + (i % 3900) as u16,
                if i < 3900 { "Outbound" } else { "Inbound" },
            )
        })
        .collect();
    let err = plan(&d, vec![], &nsg(many, false), "web").unwrap_err();
    assert!(matches!(err, PlanError::TooManyRules { .. }), "{err}");
}

#[test]
fn a_missing_asg_or_shared_nsg_is_refused() {
    let d = desired(true);
    let err = plan(
        &d,
        vec![],
        &ObservedAzure {
            nsg: None,
            asg_exists: true,
            ..Default::default()
        },
        "web",
    )
    .unwrap_err();
    assert!(matches!(err, PlanError::SharedNsgMissing { .. }));
    let mut o = nsg(vec![], false);
    o.asg_exists = false;
    assert!(matches!(
        plan(&d, vec![], &o, "web").unwrap_err(),
        PlanError::AsgMissing { .. }
    ));
}

/// An owned inbound rule of policy `web` for tcp `port` from `source`.
fn owned(name: &str, priority: u16, access: &str, source: &str, port: &str) -> SecurityRule {
    let mut r = foreign(name, priority, "Inbound");
    r.properties.description = format!("perimeter:web {name}");
    r.properties.access = access.into();
    r.properties.protocol = "Tcp".into();
    r.properties.source_address_prefix = Some(source.into());
    r.properties.source_address_prefixes = Vec::new();
    r.properties.source_application_security_groups = Vec::new();
    r.properties.destination_port_range = Some(port.into());
    r.properties.destination_port_ranges = Vec::new();
    r
}

fn replay(
    observed: &[SecurityRule],
    end: &[SecurityRule],
    steps: &[RuleStep],
) -> Result<usize, Unsafe> {
    let asg = crate::compile::asg_id(&desired(true).target);
    let world = AzureTransition { node_asg: &asg };
    let steps: Vec<Vec<&RuleStep>> = steps.iter().map(|s| vec![s]).collect();
    perimeter_core::transition::check(&world, &observed.to_vec(), &end.to_vec(), &steps)
        .map(|c| c.steps)
}

/// The repro of issue 11: ssh (allowed before and after) moves from 120 to 110 and a deny
/// takes 120. The old order parked ssh at 4095 behind the deny and locked ssh out.
#[test]
fn a_rule_moving_up_is_written_before_the_deny_that_takes_its_place() {
    let mut d = desired(true);
    let ssh = |p| owned("web-in-ssh", p, "Allow", "10.70.3.0/24", "22");
    let deny = owned("web-in-deny", 120, "Deny", "10.70.0.0/16", "*");
    d.rules = vec![ssh(110), deny.clone()];
    let observed = vec![ssh(120), foreign("aks-lb", 500, "Inbound")];
    let p = plan(&d, vec![], &nsg(observed.clone(), false), "web").unwrap();
    let NsgWrite::Steps { steps } = &p.write else {
        panic!()
    };
    assert_eq!(
        steps,
        &vec![
            RuleStep::Put {
                rule: Box::new(ssh(110)),
                parked: false
            },
            RuleStep::Put {
                rule: Box::new(deny.clone()),
                parked: false
            },
        ]
    );
    let end = vec![ssh(110), deny.clone(), foreign("aks-lb", 500, "Inbound")];
    assert_eq!(replay(&observed, &end, steps), Ok(2));
    // The old order is caught by the checker, with the packet and the step.
    let old_order = vec![
        RuleStep::Put {
            rule: Box::new(ssh(4095)),
            parked: true,
        },
        RuleStep::Put {
            rule: Box::new(deny),
            parked: false,
        },
        RuleStep::Put {
            rule: Box::new(ssh(110)),
            parked: false,
        },
    ];
    let err = replay(&observed, &end, &old_order).unwrap_err();
    assert!(
        err.to_string().starts_with(
            "step 2 (put rule web-in-deny at priority 120) would deny ingress tcp 22 from 10.70.3.0"
        ),
        "{err}"
    );
}

#[test]
fn a_parked_rule_keeps_its_place_among_its_neighbours() {
    // ssh and the deny swap priorities; a foreign allow sits far below. Parking either at an
    // end would reorder it against the foreign rule; the nearest free priority does not.
    let mut d = desired(true);
    let ssh = |p| owned("web-in-ssh", p, "Allow", "10.70.3.0/24", "22");
    let deny = |p| owned("web-in-deny", p, "Deny", "10.80.0.0/16", "*");
    d.rules = vec![ssh(200), deny(210)];
    let observed = vec![ssh(210), deny(200), foreign("aks-lb", 4000, "Inbound")];
    let p = plan(&d, vec![], &nsg(observed.clone(), false), "web").unwrap();
    let NsgWrite::Steps { steps } = &p.write else {
        panic!()
    };
    let RuleStep::Put { rule, parked: true } = &steps[0] else {
        panic!("{steps:?}")
    };
    assert!((199..=211).contains(&rule.properties.priority), "{steps:?}");
    let end = vec![ssh(200), deny(210), foreign("aks-lb", 4000, "Inbound")];
    assert_eq!(replay(&observed, &end, steps), Ok(3));
}

#[test]
fn rule_names_are_matched_without_case() {
    let d = desired(true);
    let mut shouted = d.rules.clone();
    shouted[0].name = shouted[0]
        .name
        .to_ascii_uppercase()
        .replacen("WEB-", "web-", 1);
    let observed = nsg(shouted.iter().map(crate::state::canonical).collect(), false);
    let p = plan(&d, vec![], &observed, "web").unwrap();
    assert!(p.is_empty(), "{:?}", p.changes);
}

#[test]
fn retiring_deletes_an_owned_nsg_and_only_perimeters_rules_of_a_shared_one() {
    let d = desired(false);
    let p = plan(&d.retired(), vec![], &nsg(d.rules.clone(), true), "web").unwrap();
    assert_eq!(
        p.write,
        NsgWrite::Delete {
            if_match: "W/\"1\"".into()
        }
    );
    assert_eq!(
        p.summary().destroy,
        d.rules.len() + 1,
        "the rules and the NSG"
    );
    let gone = ObservedAzure {
        nsg: None,
        asg_exists: false,
        ..Default::default()
    };
    assert!(plan(&d.retired(), vec![], &gone, "web").unwrap().is_empty());
    // An NSG of someone else is still refused, never deleted.
    assert!(plan(&d.retired(), vec![], &nsg(d.rules.clone(), false), "web").is_err());

    let d = desired(true);
    let mut rules = d.rules.clone();
    rules.push(foreign("aks-lb", 500, "Inbound"));
    let p = plan(&d.retired(), vec![], &nsg(rules, false), "web").unwrap();
    let NsgWrite::Steps { steps } = &p.write else {
        panic!("a shared NSG is written rule by rule: {:?}", p.write)
    };
    assert_eq!(steps.len(), d.rules.len());
    assert!(
        steps
            .iter()
            .all(|s| matches!(s, RuleStep::Delete { name } if name != "aks-lb"))
    );
    assert!(
        p.violations.is_empty(),
        "nothing is compared with an empty policy"
    );
}
