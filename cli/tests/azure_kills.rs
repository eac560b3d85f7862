//! `kill -9` of apply after each rule write in turn, against the local Azure emulator, on a
//! shared AKS NSG: the state a killed apply leaves behind is safe (checked exactly with the
//! Azure evaluator over the cells of every rule), the next plan sees it without error, and one
//! more apply converges — after taking over the dead apply's lease once it expires.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{LocalCloud, code, root, text};
use perimeter_azure::model::SecurityRule;
use perimeter_azure::transition::AzureTransition;
use perimeter_core::transition::{MatchBox, Transition, probes_in};
use perimeter_core::{AddrSet, Direction};
use serde_json::{Value, json};

const SUB: &str = "11111111-2222-3333-4444-555555555555";
const AUTH: (&str, &str) = ("Authorization", "Bearer test");

fn nsg_path() -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/rg-aks-prod/providers/Microsoft.Network/networkSecurityGroups/aks-workers"
    )
}

fn env(cloud: &LocalCloud) -> Vec<(&'static str, String)> {
    vec![
        ("PERIMETER_AZURE_ENDPOINT", cloud.url()),
        ("PERIMETER_AZURE_TOKEN", "test-token".to_string()),
        ("PERIMETER_LEASE_SECONDS", "1".to_string()),
    ]
}

fn rules(cloud: &LocalCloud) -> Vec<SecurityRule> {
    let (_, nsg) = cloud.call_with(
        "GET",
        &format!("{}?api-version=2024-05-01", nsg_path()),
        None,
        &[AUTH],
    );
    nsg["properties"]["securityRules"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|r| serde_json::from_value(r).expect("a security rule"))
        .collect()
}

fn assert_safe(
    old: &Vec<SecurityRule>,
    new: &Vec<SecurityRule>,
    during: &Vec<SecurityRule>,
    at: &str,
) {
    let asg = format!(
        "/subscriptions/{SUB}/resourceGroups/rg-aks-prod/providers/Microsoft.Network/applicationSecurityGroups/aks-workers-nodes"
    );
    let world = AzureTransition { node_asg: &asg };
    let mut boxes = world.boxes(old);
    boxes.extend(world.boxes(new));
    boxes.extend(world.boxes(during));
    let context: Vec<&MatchBox> = boxes.iter().collect();
    for direction in Direction::BOTH {
        let everything = MatchBox::any_port(direction, None, AddrSet::everything(), true);
        for p in probes_in(&everything, &context, &AddrSet::everything()).expect("few cells") {
            let (a, b, s) = (
                world.decide(old, &p),
                world.decide(new, &p),
                world.decide(during, &p),
            );
            assert!(
                a != b || s == a,
                "killed at {at}: {p:?} is {a:?} before and after but {s:?} now\n{during:#?}"
            );
        }
    }
}

/// The AKS NSG with policy A (policies/aks-workers.yaml, shared) applied, and policy B beside
/// it: B drops A's first ingress rule and puts a wider deny last, so the rules after the
/// first move up a priority each while the new deny arrives.
fn start(dir: &Path) -> (LocalCloud, String) {
    let cloud = LocalCloud::start();
    let asg = format!(
        "/subscriptions/{SUB}/resourceGroups/rg-aks-prod/providers/Microsoft.Network/applicationSecurityGroups/aks-workers-nodes?api-version=2024-05-01"
    );
    let (status, body) = cloud.call_with(
        "PUT",
        &asg,
        Some(json!({"location": "westeurope"})),
        &[AUTH],
    );
    assert_eq!(status, 201, "{body}");
    let aks = json!({"name": "k8s-azure-lb_allow_IPv4_443", "properties": {"protocol": "Tcp", "access": "Allow", "direction": "Inbound", "priority": 500,
        "sourcePortRange": "*", "destinationPortRange": "443", "sourceAddressPrefix": "Internet",
        "destinationAddressPrefix": "20.1.2.3", "description": "managed by AKS"}});
    let (status, body) = cloud.call_with(
        "PUT",
        &format!("{}?api-version=2024-05-01", nsg_path()),
        Some(json!({"location": "westeurope", "properties": {"securityRules": [aks]}})),
        &[AUTH],
    );
    assert_eq!(status, 201, "{body}");
    let shared = std::fs::read_to_string(root().join("policies/aks-workers.yaml"))
        .unwrap()
        .replace(
            "    nsg: aks-workers\n",
            "    nsg: aks-workers\n    shared: true\n",
        )
        // A shared NSG's associations are its owner's; this test is about its rules.
        .replace("    subnets: [aks-vnet/aks-nodes]\n", "")
        .replace("    nics:\n      tags: {aks-nodepool: workers}\n", "");
    let a = shared.replacen(
        "ingress:\n",
        "ingress:\n  - {name: no-telnet, action: deny, from: \"10.0.0.0/8\", services: [tcp/23]}\n",
        1,
    );
    let b = shared.replacen(
        "\negress:\n",
        "\n  - {name: no-other-tcp, action: deny, from: \"10.0.0.0/8\", services: [tcp]}\negress:\n",
        1,
    );
    assert!(
        a != shared && b != shared && shared.contains("shared: true"),
        "the edits apply"
    );
    let policy_a = dir.join("aks-workers.yaml");
    std::fs::write(&policy_a, &a).unwrap();
    let o = cloud.perimeter(
        &["apply", policy_a.to_str().unwrap(), "--auto-approve"],
        &env(&cloud),
    );
    assert_eq!(code(&o), 0, "{}", text(&o));
    let policy = dir.join("aks-workers-b.yaml");
    std::fs::write(&policy, b).unwrap();
    (cloud, policy.to_str().unwrap().to_string())
}

#[test]
fn apply_killed_after_any_rule_write_leaves_a_safe_state_and_converges() {
    let dir = common::scratch("azure-kills");
    let (cloud, policy) = start(&dir);
    let before = rules(&cloud);
    cloud.reset_calls();
    let o = cloud.perimeter(&["apply", &policy, "--auto-approve"], &env(&cloud));
    assert_eq!(code(&o), 0, "{}", text(&o));
    let writes = cloud.count(&[
        "PUT securityRules.createOrUpdate",
        "DELETE securityRules.delete",
    ]);
    let end = rules(&cloud);
    drop(cloud);
    assert!(writes >= 3, "B is a real change: {writes} writes");

    for k in 0..writes {
        let (cloud, policy) = start(&dir);
        // Rule writes are one at a time: write k hangs, the ones before it landed.
        let fault: Value =
            json!({"path_contains": "/securityRules/", "skip": k, "times": 1, "latency_ms": 30000});
        cloud.kill_when_hung(
            fault,
            &["apply", &policy, "--auto-approve"],
            &env(&cloud),
            Duration::ZERO,
        );
        let at = format!("rule write {k}");
        assert_safe(&before, &end, &rules(&cloud), &at);
        let plan = cloud.perimeter(&["plan", &policy, "--detailed-exitcode"], &env(&cloud));
        assert!(
            matches!(code(&plan), 0 | 2),
            "killed at {at}: {}",
            text(&plan)
        );
        std::thread::sleep(Duration::from_millis(1100)); // the dead apply's lease expires
        let o = cloud.perimeter(&["apply", &policy, "--auto-approve"], &env(&cloud));
        assert_eq!(code(&o), 0, "killed at {at}, then: {}", text(&o));
        // AKS's own rules are violations of the policy; only changes must be gone.
        let again = cloud.perimeter(
            &[
                "plan",
                &policy,
                "--detailed-exitcode",
                "--fail-on",
                "changes",
            ],
            &env(&cloud),
        );
        assert_eq!(code(&again), 0, "killed at {at}: {}", text(&again));
    }
    let _ = std::fs::remove_dir_all(dir);
}
