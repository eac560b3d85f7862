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
use perimeter_tests::{NODE_CIDR, Rng, packets, policy_cidrs};

const PEERS: &[&str] = &[
    "\"10.70.3.0/24\"",
    "\"10.70.0.0/16\"",
    "\"10.0.0.0/8\"",
    "\"10.70.3.128/25\"",
    "\"192.168.1.0/24\"",
    "\"203.0.113.0/24\"",
    "\"fd00:1::/32\"",
    "\"10.0.16.0/22\"",
    "self",
    "internet",
];
const SERVICES: &[&str] = &[
    "ssh",
    "dns",
    "kubelet",
    "tcp/8000-8080",
    "tcp/8080-8090",
    "udp/53",
    "icmp",
    "tcp",
    "any",
    "node-exporter",
    "tcp/22",
    "tcp/23",
    "udp",
    "icmp/8",
];

#[derive(Clone, Debug)]
struct GenRule {
    /// Stable across edits (a rule keeps its name), unless an edit renames it.
    id: u64,
    deny: bool,
    peers: Vec<usize>,
    services: Vec<usize>,
}

#[derive(Clone, Debug)]
struct GenPolicy {
    ingress: Vec<GenRule>,
    egress: Vec<GenRule>,
    nacl: bool,
}

fn gen_rule(rng: &mut Rng) -> GenRule {
    let n = 1 + rng.below(2) as usize;
    let m = 1 + rng.below(2) as usize;
    GenRule {
        id: rng.below(1_000_000),
        deny: rng.below(10) < 3,
        peers: (0..n)
            .map(|_| rng.below(PEERS.len() as u64) as usize)
            .collect(),
        services: (0..m)
            .map(|_| rng.below(SERVICES.len() as u64) as usize)
            .collect(),
    }
}

fn gen_policy(rng: &mut Rng) -> GenPolicy {
    let rules = |rng: &mut Rng| {
        let n = rng.below(9) as usize;
        (0..n).map(|_| gen_rule(rng)).collect()
    };
    GenPolicy {
        ingress: rules(rng),
        egress: rules(rng),
        nacl: rng.below(2) == 0,
    }
}

/// B: A after one to three edits a reviewer would see in a pull request.
fn mutate(a: &GenPolicy, rng: &mut Rng) -> GenPolicy {
    let mut b = a.clone();
    for _ in 0..1 + rng.below(3) {
        let list = if rng.below(2) == 0 {
            &mut b.ingress
        } else {
            &mut b.egress
        };
        let len = list.len();
        match rng.below(7) {
            5 if len >= 1 => {
                let i = rng.below(len as u64) as usize;
                list[i].id = rng.below(1_000_000);
            }
            0 if len >= 2 => {
                let i = rng.below(len as u64 - 1) as usize;
                list.swap(i, i + 1);
            }
            1 if len >= 1 => {
                list.remove(rng.below(len as u64) as usize);
            }
            2 if len >= 1 => {
                let i = rng.below(len as u64) as usize;
                list[i].deny = !list[i].deny;
            }
            3 if len >= 1 => {
                let i = rng.below(len as u64) as usize;
                list[i].peers = gen_rule(rng).peers;
            }
            4 if len >= 1 => {
                let i = rng.below(len as u64) as usize;
                list[i].services = gen_rule(rng).services;
            }
            _ => {
                let at = rng.below(len as u64 + 1) as usize;
                list.insert(at, gen_rule(rng));
            }
        }
    }
    b
}

fn yaml(g: &GenPolicy) -> String {
    let mut y =
        String::from("apiVersion: perimeter/v1\nkind: NodePerimeter\nname: gen\nprivate: false\n");
    for (key, peer_key, rules) in [("ingress", "from", &g.ingress), ("egress", "to", &g.egress)] {
        y += &format!("{key}:\n");
        if rules.is_empty() {
            y += "  []\n";
        }
        let mut seen = std::collections::BTreeSet::new();
        for r in rules.iter().filter(|r| seen.insert(r.id)) {
            let peers: Vec<&str> = r.peers.iter().map(|p| PEERS[*p]).collect();
            let services: Vec<&str> = r.services.iter().map(|s| SERVICES[*s]).collect();
            y += &format!(
                "  - {{name: r{}, action: {}, {peer_key}: [{}], services: [{}]}}\n",
                r.id,
                if r.deny { "deny" } else { "allow" },
                peers.join(", "),
                services.join(", ")
            );
        }
    }
    y += "targets:\n  aws:\n    region: us-east-1\n    vpc: vpc-0123456789abcdef0\n";
    if g.nacl {
        y += &format!(
            "    network_acl: {{subnets: [subnet-0123456789abcdef0], node_cidrs: [{NODE_CIDR}]}}\n"
        );
    }
    y += &format!(
        "  gcp: {{project: proj-1, network: n, target_tags: [gen], node_ranges: [{NODE_CIDR}]}}\n"
    );
    y += "  azure: {subscription: 11111111-2222-3333-4444-555555555555, resource_group: rg, nsg: gen-nsg, location: westeurope, application_security_group: gen-nodes, shared: true}\n";
    y
}

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
