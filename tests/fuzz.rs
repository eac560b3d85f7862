//! Mutation fuzzing of the two loaders that read untrusted files: the policy loader (policy
//! files come from pull requests) and the saved-plan loader (plan files travel between
//! pipeline jobs). Seeds are the checked-in corpus — tests/fixtures (invalid policies, plans),
//! policies/ and the hostile reproducers of cli/tests/hostile.rs — and each case is a seed
//! mutated by byte flips, YAML/JSON token insertions, deletions, duplications, truncations
//! and splices with another seed. Every case must load or be refused without a panic, and
//! every refusal of a policy must be located (a span, a code).
//!
//! `cargo test` runs a few thousand cases. `PERIMETER_FUZZ_SECONDS=N` runs for N seconds
//! instead (CI: 60 per loader; a long local run: 3600) and prints what it did;
//! `PERIMETER_FUZZ_SEED` picks another seed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use perimeter_core::SourceFile;
use perimeter_core::lifecycle::Cloud;
use perimeter_core::saved_plan::{ApplyInput, classify};
use perimeter_core::session::Session;
use perimeter_tests::Rng;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn files(dir: &Path, ext: &str) -> Vec<Vec<u8>> {
    let mut out: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    out.sort();
    out.into_iter().map(|(_, b)| b).collect()
}

/// How long, or how many cases, one loader is fuzzed for.
struct Budget {
    deadline: Option<Instant>,
    cases: u64,
}

impl Budget {
    fn from_env(default_cases: u64) -> Self {
        match std::env::var("PERIMETER_FUZZ_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
        {
            Some(secs) => Budget {
                deadline: Some(Instant::now() + Duration::from_secs(secs)),
                cases: u64::MAX,
            },
            None => Budget {
                deadline: None,
                cases: default_cases,
            },
        }
    }

    fn more(&self, done: u64) -> bool {
        done < self.cases && self.deadline.is_none_or(|d| Instant::now() < d)
    }
}

fn seed() -> u64 {
    std::env::var("PERIMETER_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed)
}

const TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b",",
    b"-",
    b"'",
    b"\"",
    b"#",
    b"&a",
    b"*a",
    b"!",
    b"|",
    b">",
    b"%",
    b" ",
    b"\n",
    b"\t",
    b"\n  ",
    b"0",
    b"65536",
    b"-1",
    b"/",
    b"\xc3",
    b"\xff",
    b"\x00",
    b"null",
    b"true",
    b"tcp/",
    b"cni:",
    b"self",
    b"internet",
    b"0.0.0.0/0",
    b"::/0",
    b"{}",
    b"[]",
    b"\\u0000",
    b"1e999",
    b"\xef\xbb\xbf",
];

/// One mutation of `seed`, sometimes spliced with `other`.
fn mutate(rng: &mut Rng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut b = seed.to_vec();
    let rounds = 1 + rng.below(8);
    for _ in 0..rounds {
        let at = if b.is_empty() {
            0
        } else {
            rng.below(b.len() as u64 + 1) as usize
        };
        match rng.below(7) {
            0 if !b.is_empty() => {
                let i = at.min(b.len() - 1);
                b[i] = rng.next_u64() as u8;
            }
            1 | 2 => {
                let t = rng.pick(TOKENS);
                b.splice(at..at, t.iter().copied());
            }
            3 => {
                let end = (at + rng.below(64) as usize).min(b.len());
                b.drain(at..end);
            }
            4 => {
                let end = (at + rng.below(256) as usize).min(b.len());
                let copy: Vec<u8> = b[at..end].to_vec();
                b.splice(at..at, copy);
            }
            5 => b.truncate(at),
            _ if !other.is_empty() => {
                let from = rng.below(other.len() as u64) as usize;
                let end = (from + rng.below(512) as usize).min(other.len());
                b.splice(at..at, other[from..end].iter().copied());
            }
            _ => {}
        }
    }
    b
}

/// Loads and compiles a policy for every cloud, as `validate` and `compile` do.
fn load_policy(bytes: Vec<u8>) {
    let source = SourceFile::from_bytes("fuzz.yaml", bytes);
    match perimeter_core::policy::load(&source) {
        Err(diags) => {
            for d in &diags.0 {
                assert!(d.span.is_some(), "unlocated `{}` ({})", d.message, d.code);
                assert!(!d.code.is_empty());
            }
            // The report renders without a panic, whatever the lines look like.
            let _ = diags.render(&source, false);
        }
        Ok(intent) => {
            for t in perimeter_aws::Aws::targets_or_placeholder(&intent) {
                let _ = perimeter_aws::compile(&intent, &t);
            }
            for t in perimeter_gcp::Gcp::targets_or_placeholder(&intent) {
                let _ = perimeter_gcp::compile(&intent, &t);
            }
            for t in perimeter_azure::Azure::targets_or_placeholder(&intent) {
                let _ = perimeter_azure::compile(&intent, &t);
            }
        }
    }
}

/// Reads a saved plan as apply does before it compares it with a fresh one.
fn load_plan(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    if let Ok(ApplyInput::Plan(saved)) = classify(&text) {
        let _ = Session::<perimeter_aws::Aws>::default().comparable_section(saved.get("aws"));
        let _ = Session::<perimeter_gcp::Gcp>::default().comparable_section(saved.get("gcp"));
        let _ = Session::<perimeter_azure::Azure>::default().comparable_section(saved.get("azure"));
        let _ = perimeter_core::saved_plan::signature(serde_json::Value::Object(saved), b"k");
    }
}

fn run(name: &str, seeds: &[Vec<u8>], default_cases: u64, check: impl Fn(Vec<u8>)) {
    assert!(!seeds.is_empty(), "{name}: no seeds");
    let budget = Budget::from_env(default_cases);
    let mut rng = Rng::new(seed());
    let started = Instant::now();
    let mut done = 0u64;
    for s in seeds {
        check(s.clone());
    }
    while budget.more(done) {
        let a = rng.pick(seeds);
        let b = rng.pick(seeds);
        check(mutate(&mut rng, a, b));
        done += 1;
    }
    if budget.deadline.is_some() {
        println!(
            "fuzz {name}: {done} cases from {} seeds in {:.0?}, no failure",
            seeds.len(),
            started.elapsed()
        );
    }
}

#[test]
fn the_policy_loader_never_panics_and_locates_every_error() {
    let mut seeds = files(&root().join("tests/fixtures/invalid"), "yaml");
    seeds.extend(files(&root().join("policies"), "yaml"));
    seeds.extend(files(&root().join("tests/fixtures/hostile"), "yaml"));
    run("policy loader", &seeds, 3_000, load_policy);
}

#[test]
fn the_plan_loader_never_panics() {
    let seeds = files(&root().join("tests/fixtures/plans"), "json");
    run("plan loader", &seeds, 300, |b| load_plan(&b));
}
