//! Random policies for the property tests: small rule lists over peers and services chosen to
//! overlap (nested CIDRs, adjacent port ranges, `self`, `internet`), with a target on every
//! cloud.

use perimeter_gcp::model::{Firewall, ProtocolPorts};

use crate::{NODE_CIDR, Rng};

pub const PEERS: &[&str] = &[
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
pub const SERVICES: &[&str] = &[
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
pub struct GenRule {
    /// Stable across edits (a rule keeps its name), unless an edit renames it.
    pub id: u64,
    pub deny: bool,
    pub peers: Vec<usize>,
    pub services: Vec<usize>,
}

#[derive(Clone, Debug)]
pub struct GenPolicy {
    /// Ingress rules.
    pub ingress: Vec<GenRule>,
    /// Egress rules.
    pub egress: Vec<GenRule>,
    /// Whether the AWS target manages a NACL.
    pub nacl: bool,
}

/// A random rule.
pub fn gen_rule(rng: &mut Rng) -> GenRule {
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

/// A random policy.
pub fn gen_policy(rng: &mut Rng) -> GenPolicy {
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
pub fn mutate(a: &GenPolicy, rng: &mut Rng) -> GenPolicy {
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

/// The policy as YAML, with a target on every cloud.
pub fn yaml(g: &GenPolicy) -> String {
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

/// A rule of GKE or another team in the target network: named `gke-foreign-<i>`, priorities
/// around the policy's own (990–1029), now and then for other instances.
pub fn gcp_foreign_rule(rng: &mut Rng, i: usize) -> Firewall {
    let pp = vec![ProtocolPorts {
        ip_protocol: (*rng.pick(&["tcp", "udp", "all"])).into(),
        ports: if rng.below(2) == 0 {
            vec![(*rng.pick(&["22", "53", "8000-8080", "10250"])).into()]
        } else {
            vec![]
        },
    }];
    let deny = rng.below(2) == 0;
    let ingress = rng.below(3) != 0;
    let range: String =
        (*rng.pick(&["10.70.3.0/24", "10.70.0.0/16", "0.0.0.0/0", "10.0.16.0/24"])).into();
    Firewall {
        name: format!("gke-foreign-{i}"),
        description: "managed by GKE".into(),
        network: "n".into(),
        priority: 990 + rng.below(40) as u16,
        direction: if ingress { "INGRESS" } else { "EGRESS" }.into(),
        source_ranges: if ingress { vec![range.clone()] } else { vec![] },
        source_tags: vec![],
        destination_ranges: if ingress { vec![] } else { vec![range] },
        target_tags: if rng.below(4) == 0 {
            vec!["other".into()]
        } else {
            vec!["gen".into()]
        },
        allowed: if deny { vec![] } else { pp.clone() },
        denied: if deny { pp } else { vec![] },
        disabled: false,
        source_service_accounts: vec![],
        target_service_accounts: vec![],
    }
}

/// A random firewall policy of `kind` with one to three rules (allow, deny or goto_next, any
/// direction, tcp/udp/all, ranges around the generated policies' networks).
pub fn gcp_firewall_policy(
    rng: &mut Rng,
    i: usize,
    kind: perimeter_gcp::firewall_policy::PolicyKind,
) -> perimeter_gcp::firewall_policy::FirewallPolicy {
    use perimeter_gcp::firewall_policy::{FirewallPolicy, PolicyRule};
    let rules = (0..1 + rng.below(3) as usize)
        .map(|j| {
            let ingress = rng.below(3) != 0;
            let range: String =
                (*rng.pick(&["10.70.3.0/24", "10.70.0.0/16", "0.0.0.0/0", "10.0.16.0/24"])).into();
            PolicyRule {
                priority: 100 * j as i64 + rng.below(100) as i64,
                action: (*rng.pick(&["allow", "deny", "goto_next"])).into(),
                direction: if ingress { "INGRESS" } else { "EGRESS" }.into(),
                disabled: rng.below(8) == 0,
                src_ip_ranges: if ingress { vec![range.clone()] } else { vec![] },
                dest_ip_ranges: if ingress { vec![] } else { vec![range] },
                layer4: vec![ProtocolPorts {
                    ip_protocol: (*rng.pick(&["tcp", "udp", "all"])).into(),
                    ports: if rng.below(2) == 0 {
                        vec![(*rng.pick(&["22", "53", "8000-8080", "10250"])).into()]
                    } else {
                        vec![]
                    },
                }],
                target_service_accounts: vec![],
                target_secure_tags: vec![],
                src_secure_tags: vec![],
            }
        })
        .collect();
    FirewallPolicy {
        name: format!("{}", 9000 + i),
        label: format!("generated-{i}"),
        kind,
        rules,
    }
}
