//! The proof obligation of every compiler: for generated policies and generated packets, each
//! cloud's independent evaluator decides exactly what the policy decides, unless a Note the
//! compiler emitted covers that packet.
//!
//! Cases default to 10,000 (set PROPTEST_CASES to change); each case compiles the policy for
//! all three clouds and compares 64 packets per cloud.

use perimeter_core::policy::load_str;
use perimeter_tests::{NODE_CIDR, Rng, check, packets, policy_cidrs};
use proptest::prelude::*;

const V4_POOL: &[&str] = &[
    "10.0.0.0/8",
    "10.0.0.0/16",
    "10.0.5.0/24",
    "10.0.5.128/25",
    "10.0.16.0/22",
    "10.1.0.0/16",
    "192.168.0.0/16",
    "192.168.1.0/24",
    "172.16.0.0/12",
    "203.0.113.0/24",
    "8.8.8.8/32",
];
const V6_POOL: &[&str] = &["fd00::/8", "fd00:1::/32", "fd00:1:2::/48", "2001:db8::/32"];
const SERVICES: &[&str] = &[
    "any",
    "ssh",
    "dns",
    "kubelet",
    "nodeports",
    "icmp-echo",
    "node-exporter",
    "ntp",
    "tcp/22",
    "tcp/8000-8080",
    "tcp",
    "udp/53",
    "udp/4789",
    "udp",
    "icmp",
    "icmp/8",
    "icmp/3/4",
    "icmpv6/128",
    "icmpv6",
    "proto/4",
    "ipip",
    "gre",
    "esp",
    "ah",
    "cni:calico",
    "cni:cilium",
    "cni:flannel/vxlan",
    "cni:calico/wireguard",
];

#[derive(Debug, Clone)]
struct GenRule {
    deny: bool,
    peers: Vec<usize>,
    services: Vec<usize>,
}

#[derive(Debug, Clone)]
struct GenPolicy {
    private: bool,
    metadata: usize,
    networks: Vec<Vec<usize>>,
    ingress: Vec<GenRule>,
    egress: Vec<GenRule>,
    nacl: bool,
    seed: u64,
}

fn rule() -> impl Strategy<Value = GenRule> {
    (
        prop::bool::weighted(0.3),
        prop::collection::vec(0usize..64, 1..3),
        prop::collection::vec(0..SERVICES.len(), 1..4),
    )
        .prop_map(|(deny, peers, services)| GenRule {
            deny,
            peers,
            services,
        })
}

fn policy() -> impl Strategy<Value = GenPolicy> {
    (
        any::<bool>(),
        0usize..3,
        prop::collection::vec(prop::collection::vec(0usize..64, 1..4), 1..4),
        prop::collection::vec(rule(), 0..9),
        prop::collection::vec(rule(), 0..9),
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(
            |(private, metadata, networks, ingress, egress, nacl, seed)| GenPolicy {
                private,
                metadata,
                networks,
                ingress,
                egress,
                nacl,
                seed,
            },
        )
}

fn cidr(i: usize) -> &'static str {
    if i % 4 == 3 {
        V6_POOL[i / 4 % V6_POOL.len()]
    } else {
        V4_POOL[i % V4_POOL.len()]
    }
}

fn peer(g: &GenPolicy, i: usize) -> String {
    match i % 8 {
        0 => "self".into(),
        1 => "internet".into(),
        2..=4 => format!("net{}", i % g.networks.len()),
        _ => format!("\"{}\"", cidr(i / 8)),
    }
}

fn yaml(g: &GenPolicy, private: bool) -> String {
    let mut y = String::from("apiVersion: perimeter/v1\nkind: NodePerimeter\nname: gen\n");
    y += &format!(
        "private: {private}\nmetadata: {}\nnetworks:\n",
        ["deny-pods", "deny-all", "allow"][g.metadata]
    );
    for (i, n) in g.networks.iter().enumerate() {
        let list: Vec<String> = n.iter().map(|c| format!("\"{}\"", cidr(*c))).collect();
        y += &format!("  net{i}: [{}]\n", list.join(", "));
    }
    for (key, peer_key, rules) in [("ingress", "from", &g.ingress), ("egress", "to", &g.egress)] {
        y += &format!("{key}:\n");
        if rules.is_empty() {
            y += "  []\n";
        }
        for (i, r) in rules.iter().enumerate() {
            let peers: Vec<String> = r.peers.iter().map(|p| peer(g, *p)).collect();
            let services: Vec<&str> = r.services.iter().map(|s| SERVICES[*s]).collect();
            y += &format!(
                "  - {{name: r{i}, action: {}, {peer_key}: [{}], services: [{}]}}\n",
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
    y += "  azure: {subscription: 11111111-2222-3333-4444-555555555555, resource_group: rg}\n";
    y
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn every_cloud_decides_like_the_policy_or_says_why(g in policy()) {
        let text = yaml(&g, g.private);
        // A private perimeter refuses ingress from public addresses; such draws are re-read
        // as non-private rather than thrown away.
        let intent = match load_str("gen.yaml", &text) {
            Ok(i) => i,
            Err(d) if d.0.iter().all(|x| x.code == "policy::private-ingress") => {
                load_str("gen.yaml", &yaml(&g, false)).expect("valid without private")
            }
            Err(d) => panic!("generated policy did not load: {d:?}\n{text}"),
        };
        let mut rng = Rng::new(g.seed);
        let probes = packets(&mut rng, &policy_cidrs(&intent), 64);
        let (mismatches, _stats) = check(&intent, &probes);
        prop_assert!(mismatches.is_empty(), "unexplained mismatches: {:#?}\npolicy:\n{}", &mismatches[..mismatches.len().min(5)], text);
    }
}

/// The property above is only as strong as the policies it sees: most generated policies must
/// compile for every cloud (not be skipped for exceeding a limit), and most packets must be
/// decided the same way outright rather than excused by a note.
#[test]
fn generated_policies_exercise_every_cloud() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut policies, mut skipped, mut compared, mut explained) = (0usize, 0usize, 0usize, 0usize);
    let mut by_cloud = [0usize; 3];
    for _ in 0..500 {
        let g = policy().new_tree(&mut runner).expect("strategy").current();
        let Ok(intent) = load_str("gen.yaml", &yaml(&g, false)) else {
            continue;
        };
        let mut rng = Rng::new(g.seed);
        let probes = packets(&mut rng, &policy_cidrs(&intent), 64);
        let (mismatches, stats) = check(&intent, &probes);
        assert!(mismatches.is_empty(), "{mismatches:#?}");
        policies += 1;
        skipped += stats.skipped_clouds;
        for (total, n) in by_cloud.iter_mut().zip(stats.skipped_by_cloud) {
            *total += n;
        }
        compared += stats.compared;
        explained += stats.explained;
    }
    eprintln!(
        "{policies} policies, {skipped} cloud compilations skipped for limits (aws {}, gcp {}, azure {}), {compared} decisions compared, {explained} explained by notes",
        by_cloud[0], by_cloud[1], by_cloud[2]
    );
    // Each cloud on its own: a budget shared by three could hide one cloud skipped always.
    for (cloud, n) in ["aws", "gcp", "azure"].iter().zip(by_cloud) {
        assert!(
            n * 10 < policies,
            "{cloud}: {n} of {policies} policies skipped for its limits"
        );
    }
    assert!(
        policies >= 450,
        "only {policies} of 500 generated policies loaded"
    );
    assert!(
        skipped * 20 < policies * 3,
        "{skipped} of {} compilations skipped",
        policies * 3
    );
    assert!(
        explained * 5 < compared,
        "{explained} of {compared} decisions needed a note"
    );
}

/// Issue 11's NACL case: DNS to the VPC and four peers inside it. With reply entries that were
/// the VPC minus the peers it needed 64 inbound entries and was refused; first-match entries
/// fit the quota, and every cloud still decides like the policy.
#[test]
fn dns_to_the_vpc_with_peers_inside_it_compiles_within_quota_and_is_equivalent() {
    let text = format!(
        "apiVersion: perimeter/v1\nkind: NodePerimeter\nname: dns\nprivate: true\ningress:\n  - {{name: ssh, from: [10.40.1.0/24, 10.40.7.0/24, 10.40.19.0/24, 10.40.200.0/24], services: [ssh]}}\negress:\n  - {{name: dns, to: 10.40.0.0/16, services: [dns]}}\ntargets:\n  aws:\n    region: us-east-1\n    vpc: vpc-0123456789abcdef0\n    network_acl: {{subnets: [subnet-0123456789abcdef0], node_cidrs: [{NODE_CIDR}]}}\n"
    );
    let intent = load_str("dns.yaml", &text).expect("loads");
    let c =
        perimeter_aws::compile(&intent, &intent.targets.aws[0]).expect("fits the default quotas");
    let entries = &c.network_acl.as_ref().expect("a NACL").entries;
    let inbound = entries.iter().filter(|e| !e.egress).count();
    assert!(inbound <= 6, "{inbound} inbound entries: {entries:#?}");
    let mut rng = Rng::new(11);
    let probes = packets(&mut rng, &policy_cidrs(&intent), 20_000);
    let (mismatches, stats) = check(&intent, &probes);
    assert!(
        mismatches.is_empty(),
        "{:#?}",
        &mismatches[..mismatches.len().min(5)]
    );
    assert_eq!(stats.skipped_clouds, 0);
}
