//! The effective-perimeter check on a large estate, planned without a cloud: 500 node
//! interfaces, each with the owned group and 2 of 200 groups perimeter does not own, those
//! holding 50 rules each (10,000 rules) — the estate localstack/bench-effective.sh builds on
//! the EC2 emulator, where the same plan also counts its API calls.
//!
//! Run with `cargo bench -p perimeter-tests --bench effective`; figures go in
//! docs/benchmarks.md.

use criterion::{Criterion, criterion_group, criterion_main};
use perimeter_aws::model::{SgPeer, SgRule};
use perimeter_aws::{
    Aws, AwsDesired, ObservedAws, ObservedInterface, ObservedOtherGroup, ObservedSecurityGroup,
    ObservedSgRule,
};
use perimeter_core::Direction;
use perimeter_core::lifecycle::Cloud;

const NODES: usize = 500;
const GROUPS: usize = 200;
const RULES: usize = 50;

const POLICY: &str = "apiVersion: perimeter/v1
kind: NodePerimeter
name: bench
private: true
metadata: allow
networks:
  vpc: [10.0.0.0/16]
  control-plane: [10.0.0.0/24]
  monitoring: [10.0.200.0/24]
ingress:
  - {name: cni, from: self, services: [cni:calico]}
  - {name: kubelet, from: control-plane, services: [kubelet]}
  - {name: node-exporter, from: monitoring, services: [node-exporter]}
  - {name: nodeports, from: vpc, services: [nodeports]}
egress:
  - {name: cni, to: self, services: [cni:calico]}
  - {name: apiserver, to: control-plane, services: [https]}
  - {name: dns, to: vpc, services: [dns]}
targets:
  aws: {region: us-east-1, vpc: vpc-0123456789abcdef0, security_group: bench-workers, attach: true, instances: {tags: {role: node}}}
";

fn rule(direction: Direction, port: i32, cidr: String) -> SgRule {
    SgRule {
        direction,
        ip_protocol: "tcp".into(),
        from_port: port,
        to_port: port,
        peer: SgPeer::CidrIpv4(cidr.parse().expect("a CIDR")),
        description: String::new(),
    }
}

fn estate() -> (AwsDesired, ObservedAws) {
    let intent = perimeter_core::policy::load_str("bench.yaml", POLICY).expect("loads");
    let compiled = perimeter_aws::compile(&intent, &intent.targets.aws[0]).expect("compiles");
    let desired = AwsDesired::from_compiled(&compiled, intent.private);
    let others: Vec<ObservedOtherGroup> = (0..GROUPS)
        .map(|g| {
            let mut rules: Vec<SgRule> = (0..RULES / 2)
                .map(|r| {
                    let port = 1000 + ((g * RULES + r) % 60_000) as i32;
                    rule(
                        Direction::Ingress,
                        port,
                        format!("10.{}.{}.0/24", (g + r) % 250, r % 250),
                    )
                })
                .collect();
            rules.extend((0..RULES - RULES / 2).map(|r| {
                rule(
                    Direction::Egress,
                    2000 + r as i32,
                    format!("10.{}.{}.0/24", g % 250, r % 250),
                )
            }));
            rules.sort();
            ObservedOtherGroup {
                group_id: format!("sg-team{g:03}"),
                group_name: format!("team-{g}"),
                rules,
            }
        })
        .collect();
    let interfaces = (0..NODES)
        .map(|i| {
            let mut groups = vec![
                "sg-owned".to_string(),
                others[(2 * i) % GROUPS].group_id.clone(),
                others[(2 * i + 1) % GROUPS].group_id.clone(),
            ];
            groups.sort();
            ObservedInterface {
                interface_id: format!("eni-{i:04}"),
                instance_id: format!("i-{i:04}"),
                subnet_id: "subnet-0123456789abcdef0".into(),
                groups,
            }
        })
        .collect();
    let observed = ObservedAws {
        security_group: Some(ObservedSecurityGroup {
            group_id: "sg-owned".into(),
            rules: desired
                .security_group
                .rules
                .iter()
                .enumerate()
                .map(|(i, r)| ObservedSgRule {
                    rule_id: format!("sgr-{i}"),
                    rule: r.clone(),
                })
                .collect(),
        }),
        interfaces,
        other_groups: others,
        node_subnet_cidrs: vec!["10.0.16.0/20".parse().expect("a CIDR")],
        ..ObservedAws::default()
    };
    (desired, observed)
}

fn bench(c: &mut Criterion) {
    let (desired, observed) = estate();
    let plan = Aws::plan(&desired, Vec::new(), &observed, "bench").expect("plans");
    eprintln!(
        "aws: {} interfaces, {} groups of others, {} violations",
        observed.interfaces.len(),
        observed.other_groups.len(),
        plan.violations.len()
    );
    let mut g = c.benchmark_group("effective_500_nodes_200_groups_10000_rules");
    g.sample_size(10);
    g.bench_function("aws_plan", |b| {
        b.iter(|| Aws::plan(&desired, Vec::new(), &observed, "bench").expect("plans"))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
