//! The transition property: for random (A, B, observed) triples — observed being policy A as
//! applied, plus foreign rules where the cloud has them — the plan perimeter makes for B is
//! replayed write by write with the cloud's independent evaluator. In every state apply can
//! leave behind (each prefix; for GCP's concurrent steps also each single write and random
//! subsets of a step), every probed packet that A and B decide alike is decided that way, and
//! the last state decides every probed packet as B does. The plan's steps are also re-checked
//! exactly with `core::transition::check`.
//!
//! Cases default to 10,000 checked per cloud (PERIMETER_TRANSITION_CASES changes it). The test
//! prints how many cases each cloud checked, skipped (a policy beyond a cloud's limits) and
//! refused (no safe order: the plan says so instead of writing), and fails if a cloud checked
//! fewer; PERIMETER_TRANSITION_VERBOSE=1 prints each refusal and skip.

use perimeter_core::lifecycle::Cloud;
use perimeter_core::plan::Action;
use perimeter_core::policy::load_str;
use perimeter_core::transition::check;
use perimeter_core::{Cidr, Direction, Intent, Packet, Verdict};
use perimeter_tests::generate::{gen_policy, mutate, yaml};
use perimeter_tests::{Rng, packets, policy_cidrs};

#[derive(Default, Debug)]
struct Tally {
    checked: usize,
    skipped: usize,
    refused: usize,
    writes: usize,
    states: usize,
    seconds: f64,
}

/// Fails with the packet and the state when a state breaks the invariant.
fn assert_safe(
    what: &str,
    probes: &[Packet],
    a: &dyn Fn(&Packet) -> Verdict,
    b: &dyn Fn(&Packet) -> Verdict,
    during: &dyn Fn(&Packet) -> Verdict,
    context: &dyn Fn() -> String,
) {
    for p in probes {
        let (va, vb, vs) = (a(p), b(p), during(p));
        assert!(
            va != vb || vs == va,
            "{what}: {p:?} is {va:?} before and after but {vs:?} in between\n{}",
            context()
        );
    }
}

fn probes(rng: &mut Rng, intents: [&Intent; 2], extra: &[Cidr]) -> Vec<Packet> {
    let mut cidrs = policy_cidrs(intents[0]);
    cidrs.extend(policy_cidrs(intents[1]));
    cidrs.extend_from_slice(extra);
    packets(rng, &cidrs, 160)
}

#[path = "transitions/gcp.rs"]
mod gcp;

#[path = "transitions/azure.rs"]
mod azure;

#[path = "transitions/aws.rs"]
mod aws;

fn cases() -> usize {
    std::env::var("PERIMETER_TRANSITION_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

#[test]
fn every_state_an_apply_passes_through_is_safe_on_every_cloud() {
    let n = cases();
    let mut rng = Rng::new(0x7ea5_1b1e);
    let (mut aws, mut gcp, mut azure) = (Tally::default(), Tally::default(), Tally::default());
    let (mut triples, mut invalid) = (0usize, 0usize);
    // Until every cloud has checked n triples: a cloud skips the ones beyond its limits (AWS:
    // the NACL quota), so it may need more draws; at most 2n.
    while [&aws, &gcp, &azure].iter().any(|t| t.checked < n) && triples < 2 * n {
        triples += 1;
        let ga = gen_policy(&mut rng);
        let gb = mutate(&ga, &mut rng);
        let (Ok(a), Ok(b)) = (
            load_str("a.yaml", &yaml(&ga)),
            load_str("b.yaml", &yaml(&gb)),
        ) else {
            invalid += 1;
            continue;
        };
        let mut run = |tally: &mut Tally, case: fn(&Intent, &Intent, &mut Rng, &mut Tally)| {
            if tally.checked < n {
                let t = std::time::Instant::now();
                case(&a, &b, &mut rng, tally);
                tally.seconds += t.elapsed().as_secs_f64();
            }
        };
        run(&mut aws, aws::case);
        run(&mut gcp, gcp::case);
        run(&mut azure, azure::case);
    }
    eprintln!(
        "{triples} triples ({invalid} invalid policy pairs)\n  aws   {aws:?}\n  gcp   {gcp:?}\n  azure {azure:?}"
    );
    for (cloud, t) in [("aws", &aws), ("gcp", &gcp), ("azure", &azure)] {
        assert!(
            t.checked >= n,
            "{cloud}: only {} triples checked in {triples} drawn ({t:?})",
            t.checked
        );
        assert!(
            t.writes > n,
            "{cloud}: the triples changed too little ({t:?})"
        );
    }
}
