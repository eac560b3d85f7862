//! Compile + diff throughput on generated policies of 1k, 10k and 100k rules.
//!
//! Run with `cargo bench -p perimeter-tests --bench compile`; figures go in
//! docs/benchmarks.md. Each policy rule has its own /24 and its own TCP port, and every tenth
//! rule is a deny, so nothing merges away: the compilers see every rule.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use perimeter_core::Intent;
use perimeter_core::plan::diff;
use perimeter_core::target::{AwsTarget, AzureTarget, GcpTarget};

fn policy_yaml(n: usize) -> String {
    let mut y = String::from(
        "apiVersion: perimeter/v1\nkind: NodePerimeter\nname: bench\nprivate: true\ningress:\n",
    );
    for i in 0..n {
        let action = if i % 10 == 9 { "deny" } else { "allow" };
        y += &format!(
            "  - {{name: r{i}, action: {action}, from: \"10.{}.{}.0/24\", services: [tcp/{}]}}\n",
            (i / 256) % 256,
            i % 256,
            1024 + i % 50_000
        );
    }
    y += "egress:\n  - {name: vpc, to: \"10.0.0.0/8\", services: [any]}\n";
    y
}

fn intent(n: usize) -> Intent {
    perimeter_core::policy::load_str("bench.yaml", &policy_yaml(n)).expect("bench policy loads")
}

fn bench(c: &mut Criterion) {
    let sizes = [1_000usize, 10_000, 100_000];
    let mut g = c.benchmark_group("load");
    g.sample_size(10);
    for n in sizes {
        let text = policy_yaml(n);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &text, |b, t| {
            b.iter(|| perimeter_core::policy::load_str("bench.yaml", t).unwrap());
        });
    }
    g.finish();

    let mut g = c.benchmark_group("compile_diff");
    g.sample_size(10);
    for n in sizes {
        let i = intent(n);
        g.throughput(Throughput::Elements(n as u64));

        let gt = GcpTarget::placeholder("bench");
        let mut observed = perimeter_gcp::compile(&i, &gt).unwrap().firewalls;
        // Drift the observed side: drop 1% of the rules and change the priority of another 1%.
        observed.retain(|f| !f.name.ends_with("00"));
        for f in observed.iter_mut().filter(|f| f.name.ends_with("50")) {
            f.priority += 1;
        }
        let desired = perimeter_gcp::compile(&i, &gt).unwrap().firewalls;
        g.bench_with_input(BenchmarkId::new("gcp-compile-only", n), &i, |b, i| {
            b.iter(|| perimeter_gcp::compile(i, &gt).unwrap().firewalls.len());
        });
        g.bench_with_input(BenchmarkId::new("gcp-diff-only", n), &desired, |b, d| {
            b.iter(|| diff(d, &observed).len());
        });
        g.bench_with_input(BenchmarkId::new("gcp", n), &i, |b, i| {
            b.iter(|| {
                let c = perimeter_gcp::compile(i, &gt).unwrap();
                diff(&c.firewalls, &observed).len()
            });
        });

        let at = AwsTarget::placeholder("bench");
        let limits = perimeter_aws::Limits::UNLIMITED;
        let mut observed = perimeter_aws::compile_with_limits(&i, &at, limits)
            .unwrap()
            .security_group
            .rules;
        observed.truncate(observed.len() * 99 / 100);
        g.bench_with_input(BenchmarkId::new("aws", n), &i, |b, i| {
            b.iter(|| {
                let c = perimeter_aws::compile_with_limits(i, &at, limits).unwrap();
                diff(&c.security_group.rules, &observed).len()
            });
        });
    }
    // An NSG's priorities (100-4096) hold a few hundred policy rules; past that the compiler
    // refuses, so Azure is measured at the sizes it accepts.
    for n in [100usize, 300] {
        let i = intent(n);
        let t = AzureTarget::placeholder("bench");
        let observed = perimeter_azure::compile(&i, &t).unwrap().rules;
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("azure", n), &i, |b, i| {
            b.iter(|| {
                let c = perimeter_azure::compile(i, &t).unwrap();
                diff(&c.rules, &observed).len()
            });
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
