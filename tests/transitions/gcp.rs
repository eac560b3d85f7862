//! GCP: plans replayed write by write with the evaluator.

use crate::*;
use perimeter_gcp::evaluate::{GcpWorld, decide};
use perimeter_gcp::model::Firewall;
use perimeter_gcp::transition::GcpTransition;
use perimeter_gcp::{FirewallChange, Gcp, GcpDesired, ObservedGcp};
use perimeter_tests::generate::gcp_foreign_rule;

fn land(state: &mut Vec<Firewall>, c: &FirewallChange) {
    state.retain(|f| f.name != c.name);
    if let Some(after) = &c.after {
        state.push(after.clone());
    }
}

pub(super) fn case(a: &Intent, b: &Intent, rng: &mut Rng, tally: &mut Tally) {
    let target = &b.targets.gcp[0];
    let (Ok(ca), Ok(cb)) = (
        perimeter_gcp::compile(a, &a.targets.gcp[0]),
        perimeter_gcp::compile(b, target),
    ) else {
        tally.skipped += 1;
        return;
    };
    let (da, db) = (
        GcpDesired::from_compiled(&ca),
        GcpDesired::from_compiled(&cb),
    );
    let foreign: Vec<Firewall> = (0..rng.below(4) as usize)
        .map(|i| gcp_foreign_rule(rng, i))
        .collect();
    let observed = ObservedGcp {
        network_exists: true,
        owned: da.firewalls.clone(),
        foreign: foreign.clone(),
        quota: None,
        ..Default::default()
    };
    let plan = match Gcp::plan(&db, Vec::new(), &observed, "gen") {
        Ok(p) => p,
        Err(e) if e.to_string().starts_with("no safe order") => {
            if std::env::var("PERIMETER_TRANSITION_VERBOSE").is_ok() {
                eprintln!("REFUSED {e}");
            }
            tally.refused += 1;
            return;
        }
        Err(e) => panic!("plan failed: {e}"),
    };
    let tags = &target.target_tags;
    let old: Vec<Firewall> = da.firewalls.iter().chain(&foreign).cloned().collect();
    let new: Vec<Firewall> = db.firewalls.iter().chain(&foreign).cloned().collect();
    let decide_in = |rules: &[Firewall], p: &Packet| {
        decide(
            &GcpWorld {
                firewalls: rules,
                node_tags: tags,
                node_service_accounts: &[],
            },
            p,
        )
    };
    let extra: Vec<Cidr> = foreign
        .iter()
        .flat_map(|f| f.source_ranges.iter().chain(&f.destination_ranges))
        .filter_map(|r| r.parse().ok())
        .collect();
    let probes = probes(rng, [a, b], &extra);
    let context = || format!("old {old:#?}\nplan {:#?}", plan.changes);
    let mut state = old.clone();
    for step in 1..=plan.steps() {
        let writes: Vec<&FirewallChange> = plan.changes.iter().filter(|c| c.step == step).collect();
        // Each write alone, a random subset, and all of them.
        let mut subsets: Vec<Vec<&FirewallChange>> = writes.iter().map(|w| vec![*w]).collect();
        subsets.push(
            writes
                .iter()
                .copied()
                .filter(|_| rng.below(2) == 0)
                .collect(),
        );
        subsets.push(writes.clone());
        for subset in subsets {
            let mut s = state.clone();
            for w in &subset {
                land(&mut s, w);
            }
            assert_safe(
                &format!("gcp step {step}"),
                &probes,
                &|p| decide_in(&old, p),
                &|p| decide_in(&new, p),
                &|p| decide_in(&s, p),
                &context,
            );
            tally.states += 1;
        }
        for w in &writes {
            land(&mut state, w);
        }
        tally.writes += writes.len();
    }
    for p in &probes {
        assert_eq!(
            decide_in(&state, p),
            decide_in(&new, p),
            "gcp end state differs on {p:?}\n{}",
            context()
        );
    }
    let steps: Vec<Vec<&FirewallChange>> = (1..=plan.steps())
        .map(|s| plan.changes.iter().filter(|c| c.step == s).collect())
        .collect();
    check(
        &GcpTransition {
            node_tags: tags,
            node_service_accounts: &[],
            node_ranges: &target.node_ranges,
        },
        &old,
        &new,
        &steps,
    )
    .expect("the plan's steps check");
    tally.checked += 1;
}
