//! GCP: the policy's rules as applied, and foreign rules of the network around them; GCP picks
//! one rule per packet (cloud-facts.md A2), so the path is all of them together.

use perimeter_core::Cidr;
use perimeter_core::lifecycle::Cloud;
use perimeter_gcp::evaluate::{Decider, GcpWorld, PolicyPath, decide, decide_path, path_decider};
use perimeter_gcp::firewall_policy::{FirewallPolicy, PolicyKind};
use perimeter_gcp::model::Firewall;
use perimeter_gcp::{Gcp, GcpDesired, ObservedGcp};
use perimeter_tests::generate::{gcp_firewall_policy, gcp_foreign_rule};
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
    // Hierarchical policies (organization, folder) and the network's, evaluated before the
    // VPC rules or after them.
    let mut policies: Vec<FirewallPolicy> = (0..rng.below(3) as usize)
        .map(|i| gcp_firewall_policy(rng, i, PolicyKind::Hierarchy))
        .collect();
    if rng.below(2) == 0 {
        policies.push(gcp_firewall_policy(rng, 9, PolicyKind::Network));
    }
    let policies_first = rng.below(2) == 0;
    let observed = ObservedGcp {
        network_exists: true,
        owned: desired.firewalls.clone(),
        foreign: foreign.clone(),
        firewall_policies: policies.clone(),
        policies_first,
        ..ObservedGcp::default()
    };
    // The order GCP documents, written here from the documentation, not from the estate.
    let hierarchy: Vec<&FirewallPolicy> = policies
        .iter()
        .filter(|p| p.kind == PolicyKind::Hierarchy)
        .collect();
    let network: Vec<&FirewallPolicy> = policies
        .iter()
        .filter(|p| p.kind == PolicyKind::Network)
        .collect();
    let before: Vec<&FirewallPolicy> = if policies_first {
        hierarchy.iter().chain(&network).copied().collect()
    } else {
        hierarchy.clone()
    };
    let after: Vec<&FirewallPolicy> = if policies_first { Vec::new() } else { network };
    let path = PolicyPath {
        before: &before,
        after: &after,
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
        let blamed = match path_decider(&world, &path, p) {
            Decider::Rule(f) => format!("firewall rule {} ", f.name),
            Decider::Policy(fp, r) => format!(
                "{} firewall policy {} rule {}",
                if fp.kind == PolicyKind::Hierarchy {
                    "hierarchical"
                } else {
                    "network"
                },
                fp.label,
                r.priority
            ),
            Decider::Implied => String::new(),
        };
        (policy, decide_path(&world, &path, p), blamed)
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
        &|| {
            format!(
                "foreign rules: {foreign:#?}\nfirewall policies (first: {policies_first}): {policies:#?}"
            )
        },
        tally,
    );
}
