//! `kill -9` of apply after each write in turn, against the local GCP emulator: the state the
//! killed apply leaves behind is safe (every packet the empty network and the policy decide
//! alike is decided that way, checked exactly with the GCP evaluator over the cells of every
//! rule), the next plan sees it without error, and one more apply converges — after taking
//! over the dead apply's lease once it expires.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{LocalCloud, code, root, text};
use perimeter_core::transition::{MatchBox, Transition, probes_in};
use perimeter_core::{AddrSet, Cidr, Direction};
use perimeter_gcp::model::Firewall;
use perimeter_gcp::transition::GcpTransition;
use serde_json::json;

fn env(cloud: &LocalCloud) -> Vec<(&'static str, String)> {
    vec![
        ("PERIMETER_GCP_ENDPOINT", cloud.url()),
        ("PERIMETER_GCP_CREDENTIALS", "anonymous".to_string()),
        ("PERIMETER_LEASE_SECONDS", "1".to_string()),
    ]
}

/// Every rule of the network `prod-vpc` (not the project's `default` network), as the model
/// reads them.
fn rules(cloud: &LocalCloud) -> Vec<Firewall> {
    let (_, list) = cloud.call(
        "GET",
        "/compute/v1/projects/acme-prod/global/firewalls",
        None,
    );
    list["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|item| {
            item["network"]
                .as_str()
                .is_some_and(|n| n == "prod-vpc" || n.ends_with("/networks/prod-vpc"))
        })
        .map(|mut item| {
            for (k, v) in [
                ("description", json!("")),
                ("priority", json!(1000)),
                ("direction", json!("INGRESS")),
            ] {
                item.as_object_mut().unwrap().entry(k).or_insert(v);
            }
            let mut f: Firewall = serde_json::from_value(item).expect("a firewall rule");
            f.network = "prod-vpc".into();
            f
        })
        .collect()
}

/// Fails unless `during` decides every packet as `old` and `new` do where those agree: one
/// probe per cell cut by the edges of every rule of the three states.
fn assert_safe(old: &Vec<Firewall>, new: &Vec<Firewall>, during: &Vec<Firewall>, step: &str) {
    let tags = vec!["gke-workers".to_string()];
    let ranges: Vec<Cidr> = vec!["10.10.0.0/20".parse().unwrap()];
    let world = GcpTransition {
        node_tags: &tags,
        node_service_accounts: &[],
        node_ranges: &ranges,
    };
    let mut boxes = world.boxes(old);
    boxes.extend(world.boxes(new));
    boxes.extend(world.boxes(during));
    let context: Vec<&MatchBox> = boxes.iter().collect();
    for direction in Direction::BOTH {
        let everything = MatchBox::any_port(direction, None, AddrSet::everything(), true);
        for p in probes_in(&everything, &context, &AddrSet::from_cidrs(&ranges)).expect("few cells")
        {
            let (a, b, s) = (
                world.decide(old, &p),
                world.decide(new, &p),
                world.decide(during, &p),
            );
            assert!(
                a != b || s == a,
                "killed at {step}: {p:?} is {a:?} before and after but {s:?} now\n{during:#?}"
            );
        }
    }
}

/// An emulator with the network and policy A applied, and policy B written beside it. A is
/// policies/gke-workers.yaml behind a deny (so its allows sit at the second priority); B drops
/// that deny and appends another, wider one: every allow moves up to the first priority and
/// the new deny takes their old one — issue 11's repro, where inserting the deny before the
/// allows move ties them and the deny wins.
fn start(dir: &Path) -> (LocalCloud, String) {
    let cloud = LocalCloud::start();
    let (status, _) = cloud.call(
        "POST",
        "/compute/v1/projects/acme-prod/global/networks",
        Some(json!({"name": "prod-vpc", "autoCreateSubnetworks": false})),
    );
    assert_eq!(status, 200);
    let gke = std::fs::read_to_string(root().join("policies/gke-workers.yaml")).unwrap();
    let a = gke.replacen(
        "ingress:\n",
        "ingress:\n  - {name: no-telnet, action: deny, from: \"10.0.0.0/8\", services: [tcp/23]}\n",
        1,
    );
    let b = gke.replacen(
        "\negress:\n",
        "\n  - {name: no-other-tcp, action: deny, from: \"10.0.0.0/8\", services: [tcp]}\negress:\n",
        1,
    );
    assert!(a != gke && b != gke, "the edits apply");
    let policy_a = dir.join("gke-workers.yaml");
    std::fs::write(&policy_a, &a).unwrap();
    let o = cloud.perimeter(
        &["apply", policy_a.to_str().unwrap(), "--auto-approve"],
        &env(&cloud),
    );
    assert_eq!(code(&o), 0, "{}", text(&o));
    let policy = dir.join("gke-workers-b.yaml");
    std::fs::write(&policy, b).unwrap();
    (cloud, policy.to_str().unwrap().to_string())
}

#[test]
fn apply_killed_after_any_write_leaves_a_safe_state_and_converges() {
    let dir = common::scratch("gcp-kills");
    // Both ends, from one undisturbed apply of B.
    let (cloud, policy) = start(&dir);
    let before = rules(&cloud);
    cloud.reset_calls();
    let o = cloud.perimeter(&["apply", &policy, "--auto-approve"], &env(&cloud));
    assert_eq!(code(&o), 0, "{}", text(&o));
    let writes: Vec<(&str, u64)> = [
        ("POST", "POST firewalls.insert"),
        ("PATCH", "PATCH firewalls.patch"),
        ("PUT", "PUT firewalls.update"),
        ("DELETE", "DELETE firewalls.delete"),
    ]
    .iter()
    .map(|(m, route)| (*m, cloud.count(&[route])))
    .collect();
    let end: Vec<Firewall> = rules(&cloud);
    drop(cloud);
    let total: u64 = writes.iter().map(|(_, n)| n).sum();
    assert!(total >= 5, "B is a real change: {writes:?}");

    for (method, n) in writes {
        for k in 0..n {
            let (cloud, policy) = start(&dir);
            // Write k of this method hangs; the ones before it (and beside it) land.
            let fault = json!({"method": method, "path_contains": "/global/firewalls", "skip": k, "times": 1, "latency_ms": 30000});
            // Let the writes beside the hung one finish, then kill -9.
            cloud.kill_when_hung(
                fault,
                &["apply", &policy, "--auto-approve"],
                &env(&cloud),
                Duration::from_millis(300),
            );
            let during: Vec<Firewall> = rules(&cloud)
                .into_iter()
                .filter(|f| f.name != "gke-workers-lease")
                .collect();
            let what = format!("{method} {k}");
            assert_safe(&before, &end, &during, &what);

            let plan = cloud.perimeter(&["plan", &policy, "--detailed-exitcode"], &env(&cloud));
            assert!(
                matches!(code(&plan), 0 | 2),
                "killed at {what}: {}",
                text(&plan)
            );
            std::thread::sleep(Duration::from_millis(1100)); // the dead apply's lease expires
            let o = cloud.perimeter(&["apply", &policy, "--auto-approve"], &env(&cloud));
            assert_eq!(code(&o), 0, "killed at {what}, then: {}", text(&o));
            let again = cloud.perimeter(&["plan", &policy, "--detailed-exitcode"], &env(&cloud));
            assert_eq!(code(&again), 0, "killed at {what}: {}", text(&again));
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}
