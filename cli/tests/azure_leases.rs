//! The lease on a shared AKS NSG (providers/azure/src/lease.rs), against the local Azure
//! emulator: a held lease stops apply before any rule write, an expired one is taken over, and
//! of two applies at once one writes and the other stops.

mod common;

use common::{LocalCloud, code, root, text};
use serde_json::json;

const SUB: &str = "11111111-2222-3333-4444-555555555555";
const AUTH: (&str, &str) = ("Authorization", "Bearer test");
const TAG: &str = "perimeter-lease-aks-workers";

fn nsg() -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/rg-aks-prod/providers/Microsoft.Network/networkSecurityGroups/aks-workers?api-version=2024-05-01"
    )
}

fn env(cloud: &LocalCloud) -> Vec<(&'static str, String)> {
    vec![
        ("PERIMETER_AZURE_ENDPOINT", cloud.url()),
        ("PERIMETER_AZURE_TOKEN", "test-token".to_string()),
    ]
}

/// The emulator with the nodes' ASG and an AKS NSG, and the shared policy's path.
fn start(dir: &std::path::Path) -> (LocalCloud, String) {
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
    let (status, body) = cloud.call_with(
        "PUT",
        &nsg(),
        Some(json!({"location": "westeurope", "tags": {"owner": "aks"}, "properties": {"securityRules": []}})),
        &[AUTH],
    );
    assert_eq!(status, 201, "{body}");
    let policy = std::fs::read_to_string(root().join("policies/aks-workers.yaml"))
        .unwrap()
        .replace(
            "    nsg: aks-workers\n",
            "    nsg: aks-workers\n    shared: true\n",
        )
        // A shared NSG's associations are its owner's; this test is about the lease.
        .replace("    subnets: [aks-vnet/aks-nodes]\n", "")
        .replace("    nics:\n      tags: {aks-nodepool: workers}\n", "");
    let path = dir.join("aks-workers.yaml");
    std::fs::write(&path, policy).unwrap();
    (cloud, path.to_str().unwrap().to_string())
}

fn set_lease(cloud: &LocalCloud, value: &str) {
    let (status, body) = cloud.call_with(
        "PATCH",
        &nsg(),
        Some(json!({"tags": {"owner": "aks", TAG: value}})),
        &[AUTH],
    );
    assert_eq!(status, 200, "{body}");
}

#[test]
fn a_held_lease_stops_apply_and_an_expired_one_is_taken_over() {
    let dir = common::scratch("azure-lease");
    let (cloud, policy) = start(&dir);
    set_lease(
        &cloud,
        "owner=ci job 41;expires=4102444800;plan=0123456789ab",
    );
    let o = cloud.perimeter(&["apply", &policy, "--auto-approve"], &env(&cloud));
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(
        text(&o).contains(
            "NSG aks-workers is being applied: lease held by ci job 41 until 2100-01-01T00:00:00Z"
        ),
        "{}",
        text(&o)
    );
    assert_eq!(
        cloud.count(&["PUT securityRules.createOrUpdate"]),
        0,
        "nothing was written"
    );

    set_lease(&cloud, "owner=ci job 41;expires=1000;plan=0123456789ab");
    let o = cloud.perimeter(&["apply", &policy, "--auto-approve"], &env(&cloud));
    assert_eq!(code(&o), 0, "{}", text(&o));
    let (_, after) = cloud.call_with("GET", &nsg(), None, &[AUTH]);
    assert_eq!(
        after["tags"],
        json!({"owner": "aks"}),
        "released, AKS's tags kept"
    );
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
    assert_eq!(code(&again), 0, "{}", text(&again));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn two_applies_at_once_one_writes_and_the_other_stops() {
    let dir = common::scratch("azure-two-applies");
    let (cloud, policy) = start(&dir);
    // Slow rule writes, so the two applies overlap.
    cloud.call(
        "POST",
        "/_emulator/faults",
        Some(json!({"method": "PUT", "path_contains": "/securityRules/", "latency_ms": 100})),
    );
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| cloud.perimeter(&["apply", &policy, "--auto-approve"], &env(&cloud)));
        let b = s.spawn(|| cloud.perimeter(&["apply", &policy, "--auto-approve"], &env(&cloud)));
        (a.join().unwrap(), b.join().unwrap())
    });
    let mut codes = [code(&a), code(&b)];
    codes.sort();
    let both = format!("{}\n---\n{}", text(&a), text(&b));
    assert_eq!(codes, [0, 1], "{both}");
    assert!(
        both.contains("is being applied: lease held by")
            || both.contains("changed after the plan was checked"),
        "{both}"
    );
    cloud.call("DELETE", "/_emulator/faults", None);
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
    assert_eq!(code(&again), 0, "{}", text(&again));
    let _ = std::fs::remove_dir_all(dir);
}
