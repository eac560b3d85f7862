//! The transition checker's cost on a 1,000-rule change, per cloud: the plan (which orders the
//! writes, asking the checker about each) and the check of the finished plan on its own.
//!
//! Run with `cargo bench -p perimeter-tests --bench transition`; figures go in
//! docs/benchmarks.md. Policy A has 1,000 rules, each with its own /24 and TCP port (every
//! tenth a deny); B inserts one deny above them all and moves every port by one, so every
//! rule of every cloud changes.

use criterion::{Criterion, criterion_group, criterion_main};
use perimeter_core::Intent;
use perimeter_core::lifecycle::Cloud;
use perimeter_core::transition::check;

const RULES: usize = 1_000;

fn policy(n: usize, edited: bool) -> Intent {
    let mut y = String::from(
        "apiVersion: perimeter/v1\nkind: NodePerimeter\nname: bench\nprivate: true\ningress:\n",
    );
    if edited {
        y += "  - {name: first, action: deny, from: \"10.255.0.0/16\", services: [tcp]}\n";
    }
    for i in 0..n {
        let action = if i % 10 == 9 { "deny" } else { "allow" };
        let port = 1024 + i % 50_000 + usize::from(edited);
        y += &format!(
            "  - {{name: r{i}, action: {action}, from: \"10.{}.{}.0/24\", services: [tcp/{port}]}}\n",
            (i / 256) % 256,
            i % 256,
        );
    }
    y += "egress:\n  - {name: vpc, to: \"10.0.0.0/8\", services: [any]}\n";
    y += "targets:\n  aws: {region: us-east-1, vpc: vpc-0123456789abcdef0}\n";
    y +=
        "  gcp: {project: proj-1, network: n, target_tags: [bench], node_ranges: [10.0.16.0/20]}\n";
    y += "  azure: {subscription: 11111111-2222-3333-4444-555555555555, resource_group: rg, nsg: bench-nsg, location: westeurope, application_security_group: bench-nodes, shared: true}\n";
    perimeter_core::policy::load_str("bench.yaml", &y).expect("bench policy loads")
}

fn bench(c: &mut Criterion) {
    let (a, b) = (policy(RULES, false), policy(RULES, true));
    let mut g = c.benchmark_group("transition_1000_rules");
    g.sample_size(10);

    // GCP: every priority moves by one and every port changes: 1,001 writes.
    let gcp = |i: &Intent| {
        let c = perimeter_gcp::compile(i, &i.targets.gcp[0]).expect("compiles");
        perimeter_gcp::GcpDesired::from_compiled(&c)
    };
    let (da, db) = (gcp(&a), gcp(&b));
    let observed = perimeter_gcp::ObservedGcp {
        network_exists: true,
        owned: da.firewalls.clone(),
        foreign: Vec::new(),
        quota: None,
        ..Default::default()
    };
    let plan = perimeter_gcp::Gcp::plan(&db, Vec::new(), &observed, "bench").expect("plans");
    eprintln!(
        "gcp: {} writes in {} steps",
        plan.changes.len(),
        plan.steps()
    );
    g.bench_function("gcp_plan", |bn| {
        bn.iter(|| perimeter_gcp::Gcp::plan(&db, Vec::new(), &observed, "bench").unwrap())
    });
    let world = perimeter_gcp::transition::GcpTransition {
        node_tags: &db.target.target_tags,
        node_service_accounts: &db.target.service_accounts,
        node_ranges: &db.target.node_ranges,
    };
    let steps: Vec<Vec<&perimeter_gcp::FirewallChange>> = (1..=plan.steps())
        .map(|s| plan.changes.iter().filter(|c| c.step == s).collect())
        .collect();
    g.bench_function("gcp_check", |bn| {
        bn.iter(|| check(&world, &da.firewalls, &db.firewalls, &steps).unwrap())
    });

    // Azure shared NSG: 300 rules (what an NSG holds), every one changing content and priority.
    let azure = |i: &Intent| {
        let c = perimeter_azure::compile(i, &i.targets.azure[0]).expect("compiles");
        perimeter_azure::AzureDesired::from_compiled(&c)
    };
    let (za, zb) = (azure(&policy(300, false)), azure(&policy(300, true)));
    let observed = perimeter_azure::ObservedAzure {
        nsg: Some(perimeter_azure::ObservedNsg {
            etag: "W/\"1\"".into(),
            location: "westeurope".into(),
            tags: Default::default(),
            rules: za.rules.clone(),
            ..Default::default()
        }),
        asg_exists: true,
        ..Default::default()
    };
    let plan = <perimeter_azure::Azure as Cloud>::plan(&zb, Vec::new(), &observed, "bench")
        .expect("plans");
    if let perimeter_azure::NsgWrite::Steps { steps } = &plan.write {
        eprintln!("azure: {} writes", steps.len());
    }
    g.bench_function("azure_plan_300", |bn| {
        bn.iter(|| {
            <perimeter_azure::Azure as Cloud>::plan(&zb, Vec::new(), &observed, "bench").unwrap()
        })
    });

    // AWS: 1,000 rules authorized and 1,000 revoked, in two calls.
    let limits = perimeter_aws::Limits::UNLIMITED;
    let aws = |i: &Intent| {
        let c = perimeter_aws::compile_with_limits(i, &i.targets.aws[0], limits).expect("compiles");
        perimeter_aws::AwsDesired::from_compiled(&c, i.private)
    };
    let (wa, wb) = (aws(&a), aws(&b));
    let observed = perimeter_aws::ObservedAws {
        security_group: Some(perimeter_aws::ObservedSecurityGroup {
            group_id: "sg-1".into(),
            rules: wa
                .security_group
                .rules
                .iter()
                .enumerate()
                .map(|(i, r)| perimeter_aws::ObservedSgRule {
                    rule_id: format!("sgr-{i}"),
                    rule: r.clone(),
                })
                .collect(),
        }),
        ..perimeter_aws::ObservedAws::default()
    };
    let plan =
        <perimeter_aws::Aws as Cloud>::plan(&wb, Vec::new(), &observed, "bench").expect("plans");
    eprintln!(
        "aws: {} rule changes in {} steps",
        plan.security_group.changes.len(),
        plan.steps
    );
    g.bench_function("aws_plan", |bn| {
        bn.iter(|| {
            <perimeter_aws::Aws as Cloud>::plan(&wb, Vec::new(), &observed, "bench").unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
