//! Azure: plans replayed write by write with the evaluator.

use crate::*;
use perimeter_azure::evaluate::{AzureWorld, decide};
use perimeter_azure::model::SecurityRule;
use perimeter_azure::{AzureDesired, NsgWrite, ObservedAzure, ObservedNsg, RuleStep};

fn foreign(
    template: &SecurityRule,
    rng: &mut Rng,
    i: usize,
    taken: &[(String, u16)],
) -> SecurityRule {
    let mut r = template.clone();
    r.name = format!("aks-foreign-{i}");
    r.properties.description = "managed by AKS".into();
    let direction: String = (*rng.pick(&["Inbound", "Outbound"])).into();
    let priority = loop {
        let p = 100 + rng.below(400) as u16;
        if !taken.contains(&(direction.clone(), p)) {
            break p;
        }
    };
    r.properties.direction = direction;
    r.properties.priority = priority;
    r.properties.access = (*rng.pick(&["Allow", "Deny"])).into();
    r.properties.protocol = (*rng.pick(&["Tcp", "Udp", "*"])).into();
    let prefix: String =
        (*rng.pick(&["10.70.3.0/24", "10.70.0.0/16", "*", "VirtualNetwork"])).into();
    r.properties.source_address_prefix = Some(prefix.clone());
    r.properties.source_address_prefixes = vec![];
    r.properties.source_application_security_groups = vec![];
    r.properties.destination_address_prefix = Some(prefix);
    r.properties.destination_address_prefixes = vec![];
    r.properties.destination_application_security_groups = vec![];
    r.properties.destination_port_range = Some((*rng.pick(&["22", "53", "8000-8080", "*"])).into());
    r.properties.destination_port_ranges = vec![];
    r
}

fn land(state: &mut Vec<SecurityRule>, w: &RuleStep) {
    let name = match w {
        RuleStep::Put { rule, .. } => &rule.name,
        RuleStep::Delete { name } => name,
    };
    state.retain(|r| !r.name.eq_ignore_ascii_case(name));
    if let RuleStep::Put { rule, .. } = w {
        state.push((**rule).clone());
    }
    let mut seen = std::collections::BTreeSet::new();
    assert!(
        state
            .iter()
            .all(|r| seen.insert((r.properties.direction.clone(), r.properties.priority))),
        "two rules share a priority after {w:?}"
    );
}

pub(super) fn case(a: &Intent, b: &Intent, rng: &mut Rng, tally: &mut Tally) {
    let target = &b.targets.azure[0];
    let (Ok(ca), Ok(cb)) = (
        perimeter_azure::compile(a, &a.targets.azure[0]),
        perimeter_azure::compile(b, target),
    ) else {
        tally.skipped += 1;
        return;
    };
    let (da, db) = (
        AzureDesired::from_compiled(&ca),
        AzureDesired::from_compiled(&cb),
    );
    let taken: Vec<(String, u16)> = da
        .rules
        .iter()
        .chain(&db.rules)
        .map(|r| (r.properties.direction.clone(), r.properties.priority))
        .collect();
    let template = da.rules.first().or(db.rules.first()).cloned();
    let mut taken = taken;
    let mut foreign_rules: Vec<SecurityRule> = Vec::new();
    if let Some(t) = &template {
        for i in 0..rng.below(4) as usize {
            let r = foreign(t, rng, i, &taken);
            taken.push((r.properties.direction.clone(), r.properties.priority));
            foreign_rules.push(r);
        }
    }
    let foreign = foreign_rules;
    let observed = ObservedAzure {
        nsg: Some(ObservedNsg {
            etag: "W/\"1\"".into(),
            location: "westeurope".into(),
            tags: Default::default(),
            rules: da.rules.iter().chain(&foreign).cloned().collect(),
            ..Default::default()
        }),
        asg_exists: true,
        ..Default::default()
    };
    let plan = match <perimeter_azure::Azure as Cloud>::plan(&db, Vec::new(), &observed, "gen") {
        Ok(p) => p,
        Err(e) if e.to_string().starts_with("no safe order") => {
            if std::env::var("PERIMETER_TRANSITION_VERBOSE").is_ok() {
                eprintln!("REFUSED {e}");
            }
            tally.refused += 1;
            return;
        }
        Err(e) if e.to_string().contains("priorit") => {
            tally.skipped += 1;
            return;
        }
        Err(e) => panic!("plan failed: {e}"),
    };
    let asg = perimeter_azure::asg_id(target);
    let old: Vec<SecurityRule> = da.rules.iter().chain(&foreign).cloned().collect();
    let new: Vec<SecurityRule> = db.rules.iter().chain(&foreign).cloned().collect();
    let decide_in = |rules: &[SecurityRule], p: &Packet| {
        decide(
            &AzureWorld {
                rules,
                node_asg: &asg,
                nic: None,
            },
            p,
        )
    };
    let steps = match &plan.write {
        NsgWrite::Steps { steps } => steps.clone(),
        NsgWrite::None => Vec::new(),
        NsgWrite::Put { .. } | NsgWrite::Delete { .. } => {
            panic!("a shared NSG is written rule by rule")
        }
    };
    let probes = probes(rng, [a, b], &[]);
    let context = || format!("old {old:#?}\nsteps {steps:#?}");
    let mut state = old.clone();
    for (i, w) in steps.iter().enumerate() {
        land(&mut state, w);
        assert_safe(
            &format!("azure step {}", i + 1),
            &probes,
            &|p| decide_in(&old, p),
            &|p| decide_in(&new, p),
            &|p| decide_in(&state, p),
            &context,
        );
        tally.states += 1;
    }
    tally.writes += steps.len();
    for p in &probes {
        assert_eq!(
            decide_in(&state, p),
            decide_in(&new, p),
            "azure end state differs on {p:?}\n{}",
            context()
        );
    }
    let world = perimeter_azure::transition::AzureTransition { node_asg: &asg };
    let one_by_one: Vec<Vec<&RuleStep>> = steps.iter().map(|s| vec![s]).collect();
    check(&world, &old, &new, &one_by_one).expect("the plan's steps check");
    tally.checked += 1;
}
