//! GCP: the policy's rules as applied, and foreign rules of the network around them; GCP picks
//! one rule per packet (cloud-facts.md A2), so the path is all of them together.

use perimeter_core::Cidr;
use perimeter_core::lifecycle::Cloud;
use perimeter_gcp::evaluate::{GcpWorld, decide, winner};
use perimeter_gcp::model::Firewall;
use perimeter_gcp::{Gcp, GcpDesired, ObservedGcp};
use perimeter_tests::generate::gcp_foreign_rule;
use perimeter_tests::{Rng, packets, policy_cidrs};

use crate::{Intent, Packet, Tally, Verdict, check_case};

pub(crate) fn case(intent: &Intent, rng: &mut Rng, tally: &mut Tally) {
    let target = &intent.targets.gcp[0];
    let Ok(compiled) = perimeter_gcp::compile(intent, target) else {
        tally.skipped += 1;
        return;
    };
    let desired = GcpDesired::from_compiled(&compiled);
    let foreign: Vec<Firewall> = (0..1 + rng.below(4) as usize)
        .map(|i| gcp_foreign_rule(rng, i))
        .collect();
    let observed = ObservedGcp {
        network_exists: true,
        owned: desired.firewalls.clone(),
        foreign: foreign.clone(),
        quota: None,
        orphans: Vec::new(),
    };
    let Ok(plan) = Gcp::plan(&desired, Vec::new(), &observed, &intent.name) else {
        tally.skipped += 1;
        return;
    };
    assert!(plan.changes.is_empty(), "an applied policy plans nothing");
    let all: Vec<Firewall> = desired.firewalls.iter().chain(&foreign).cloned().collect();
    let tags = &target.target_tags;
    let decide_on = |_: usize, p: &Packet| -> (Verdict, Verdict, String) {
        let policy = decide(
            &GcpWorld {
                firewalls: &desired.firewalls,
                node_tags: tags,
                node_service_accounts: &[],
            },
            p,
        );
        let world = GcpWorld {
            firewalls: &all,
            node_tags: tags,
            node_service_accounts: &[],
        };
        let blamed = winner(&world, p)
            .map(|f| format!("firewall rule {} ", f.name))
            .unwrap_or_default();
        (policy, decide(&world, p), blamed)
    };
    let mut cidrs = policy_cidrs(intent);
    cidrs.extend(
        foreign
            .iter()
            .flat_map(|f| f.source_ranges.iter().chain(&f.destination_ranges))
            .filter_map(|r| r.parse::<Cidr>().ok()),
    );
    let probes = packets(rng, &cidrs, 200);
    check_case(
        &plan.violations,
        &probes,
        1,
        &decide_on,
        &|| format!("foreign rules: {foreign:#?}"),
        tally,
    );
}
