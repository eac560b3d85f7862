//! The effective perimeter on GCP, end to end against `local-cloud` on 127.0.0.1: firewall
//! policies around the VPC rules (hierarchical ones first, the network's after the VPC rules
//! unless the network says otherwise) and foreign VPC rules inside the policy's allows. Each
//! case is one the issue found unreported.

mod common;

use common::gcp::{Emulator, policy, scratch};
use common::{code, text};
use serde_json::{Value, json};

/// A hierarchical policy under `folders/42` (the project's folder) with one rule, associated
/// with the folder; its API name.
fn folder_policy(emulator: &Emulator, rule: Value) -> String {
    let (status, body) = emulator.call(
        "POST",
        "/_emulator/gcp/ancestry",
        Some(json!({"project": "acme-prod", "ancestors": ["organizations/7", "folders/42"]})),
    );
    assert_eq!(status, 200, "{body}");
    let (status, op) = emulator.call(
        "POST",
        "/compute/v1/locations/global/firewallPolicies?parentId=folders/42",
        Some(json!({"shortName": "platform-baseline"})),
    );
    assert_eq!(status, 200, "{op}");
    let name = op["targetLink"]
        .as_str()
        .and_then(|l| l.rsplit('/').next())
        .expect("a target link")
        .to_string();
    let base = format!("/compute/v1/locations/global/firewallPolicies/{name}");
    let (status, body) = emulator.call("POST", &format!("{base}/addRule"), Some(rule));
    assert_eq!(status, 200, "{body}");
    let (status, body) = emulator.call(
        "POST",
        &format!("{base}/addAssociation"),
        Some(json!({"name": "folder-42", "attachmentTarget": "folders/42"})),
    );
    assert_eq!(status, 200, "{body}");
    name
}

#[test]
fn a_hierarchical_policy_allowing_what_the_policy_denies_is_a_violation() {
    let emulator = Emulator::start();
    let dir = scratch("hierarchical");
    let p = policy(&dir);
    let p = p.to_str().unwrap();
    let apply = emulator.perimeter(&["apply", p, "--auto-approve"]);
    assert_eq!(code(&apply), 0, "{}", text(&apply));
    let clean = emulator.perimeter(&["plan", p, "--detailed-exitcode"]);
    assert_eq!(code(&clean), 0, "{}", text(&clean));

    // The platform team's folder policy lets ssh in from anywhere, before any VPC rule.
    let name = folder_policy(
        &emulator,
        json!({"priority": 1000, "direction": "INGRESS", "action": "allow",
               "match": {"srcIpRanges": ["0.0.0.0/0"], "layer4Configs": [{"ipProtocol": "tcp", "ports": ["22"]}]}}),
    );
    emulator.reset_calls();
    let plan = emulator.perimeter(&["plan", p, "--detailed-exitcode"]);
    assert_eq!(code(&plan), 2, "{}", text(&plan));
    let out = text(&plan);
    assert!(
        out.contains("! hierarchical firewall policy platform-baseline rule 1000 allows ingress tcp:22 from 0.0.0.0/0: the policy says deny"),
        "{out}"
    );
    assert!(out.contains("opens ingress tcp 22 from 0.0.0.0/0"), "{out}");
    assert_eq!(
        emulator.count(&["GET networks.getEffectiveFirewalls"]),
        1,
        "one read per network"
    );
    let drift = emulator.perimeter(&["drift", p, "--format", "json"]);
    assert_eq!(code(&drift), 2, "{}", text(&drift));
    assert!(
        text(&drift).contains(&format!("violation/policy/{name}/1000/")),
        "{}",
        text(&drift)
    );
    // perimeter writes only what it owns: nothing to apply.
    emulator.reset_calls();
    let apply = emulator.perimeter(&["apply", p, "--auto-approve"]);
    assert_eq!(code(&apply), 0, "{}", text(&apply));
    assert_eq!(emulator.writes(), 0);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn goto_next_passes_on_and_a_network_policy_decides_what_the_vpc_rules_leave_to_the_implied_rules()
{
    let emulator = Emulator::start();
    let dir = scratch("network-policy");
    let p = policy(&dir);
    let p = p.to_str().unwrap();
    let apply = emulator.perimeter(&["apply", p, "--auto-approve"]);
    assert_eq!(code(&apply), 0, "{}", text(&apply));
    // A hierarchical goto_next for everything changes nothing.
    folder_policy(
        &emulator,
        json!({"priority": 10, "direction": "INGRESS", "action": "goto_next",
               "match": {"srcIpRanges": ["0.0.0.0/0"], "layer4Configs": [{"ipProtocol": "all"}]}}),
    );
    // A network policy that allows ssh from anywhere: after the VPC rules. The policy's rules
    // do not match ssh from the internet (the implied deny-ingress would refuse it), so the
    // network policy is what decides it.
    let base = "/compute/v1/projects/acme-prod/global/firewallPolicies";
    let (status, body) = emulator.call("POST", base, Some(json!({"name": "team-net"})));
    assert_eq!(status, 200, "{body}");
    let (status, body) = emulator.call(
        "POST",
        &format!("{base}/team-net/addRule"),
        Some(json!({"priority": 100, "direction": "INGRESS", "action": "allow",
                    "match": {"srcIpRanges": ["0.0.0.0/0"], "layer4Configs": [{"ipProtocol": "tcp", "ports": ["22"]}]}})),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = emulator.call(
        "POST",
        &format!("{base}/team-net/addAssociation"),
        Some(json!({"name": "prod", "attachmentTarget": "projects/acme-prod/global/networks/prod-vpc"})),
    );
    assert_eq!(status, 200, "{body}");
    let plan = emulator.perimeter(&["plan", p, "--detailed-exitcode"]);
    assert_eq!(code(&plan), 2, "{}", text(&plan));
    let out = text(&plan);
    assert!(
        out.contains("The nodes' perimeter differs from the policy (1)")
            && out.contains("! network firewall policy team-net rule 100 allows ingress tcp:22 from 0.0.0.0/0: the policy says deny"),
        "only the network policy, not the goto_next: {out}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_foreign_deny_inside_a_policy_allow_blocks_it() {
    let emulator = Emulator::start();
    let dir = scratch("foreign-deny");
    let p = policy(&dir);
    let p = p.to_str().unwrap();
    let apply = emulator.perimeter(&["apply", p, "--auto-approve"]);
    assert_eq!(code(&apply), 0, "{}", text(&apply));
    // The case: a deny of everything from 10.0.0.0/8 at priority 900, above the
    // policy's allows (priority 1000) for the control plane's kubelet traffic.
    emulator.insert(
        json!({"name": "sec-deny-rfc1918", "network": "global/networks/prod-vpc",
        "priority": 900, "sourceRanges": ["10.0.0.0/8"], "targetTags": ["gke-workers"],
        "denied": [{"IPProtocol": "all"}]}),
    );
    let plan = emulator.perimeter(&["plan", p, "--detailed-exitcode"]);
    assert_eq!(code(&plan), 2, "{}", text(&plan));
    let out = text(&plan);
    assert!(
        out.contains("! firewall rule sec-deny-rfc1918 (not managed by perimeter)"),
        "{out}"
    );
    assert!(out.contains("the policy says allow"), "{out}");
    assert!(
        out.contains("blocks ingress tcp 9100 from 10.30.0.0/24"),
        "monitoring's node-exporter scrapes: {out}"
    );
    assert!(out.contains("from nodes at 10.10.0.0/20"), "{out}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_regional_policy_is_seen_in_the_regions_the_nodes_run_in() {
    let emulator = Emulator::start();
    let dir = scratch("regional-policy");
    let p = policy(&dir);
    let p = p.to_str().unwrap();
    let apply = emulator.perimeter(&["apply", p, "--auto-approve"]);
    assert_eq!(code(&apply), 0, "{}", text(&apply));
    // A regional network policy in us-central1 lets ssh in from anywhere. It comes after the
    // VPC rules and the global policy, where the implied deny would otherwise refuse ssh.
    let base = "/compute/v1/projects/acme-prod/regions/us-central1/firewallPolicies";
    let (status, body) = emulator.call("POST", base, Some(json!({"name": "central-debug"})));
    assert_eq!(status, 200, "{body}");
    let (status, body) = emulator.call(
        "POST",
        &format!("{base}/central-debug/addRule"),
        Some(json!({"priority": 10, "direction": "INGRESS", "action": "allow",
                    "match": {"srcIpRanges": ["0.0.0.0/0"], "layer4Configs": [{"ipProtocol": "tcp", "ports": ["22"]}]}})),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = emulator.call(
        "POST",
        &format!("{base}/central-debug/addAssociation"),
        Some(json!({"name": "prod", "attachmentTarget": "projects/acme-prod/global/networks/prod-vpc"})),
    );
    assert_eq!(status, 200, "{body}");
    // A target that does not say where its nodes run reads no regional policy.
    let plan = emulator.perimeter(&["plan", p, "--detailed-exitcode"]);
    assert_eq!(code(&plan), 0, "{}", text(&plan));

    let before = std::fs::read_to_string(p).unwrap();
    let regional = before.replace(
        "    node_ranges: [10.10.0.0/20]",
        "    node_ranges: [10.10.0.0/20]\n    regions: [europe-west1, us-central1]",
    );
    assert_ne!(regional, before);
    std::fs::write(p, regional).unwrap();
    emulator.reset_calls();
    let plan = emulator.perimeter(&["plan", p, "--detailed-exitcode"]);
    let out = text(&plan);
    assert_eq!(code(&plan), 2, "{out}");
    assert!(
        out.contains("! regional network firewall policy central-debug (us-central1) rule 10 allows ingress tcp:22 from 0.0.0.0/0: the policy says deny"),
        "{out}"
    );
    assert!(
        out.contains("The nodes' perimeter differs from the policy (1)"),
        "{out}"
    );
    assert_eq!(
        emulator.count(&["GET regionNetworkFirewallPolicies.getEffectiveFirewalls"]),
        2,
        "one read per region"
    );
    // Only europe-west1: nothing there.
    let europe = std::fs::read_to_string(p).unwrap().replace(
        "regions: [europe-west1, us-central1]",
        "regions: [europe-west1]",
    );
    std::fs::write(p, europe).unwrap();
    let plan = emulator.perimeter(&["plan", p, "--detailed-exitcode"]);
    assert_eq!(code(&plan), 0, "{}", text(&plan));
    let _ = std::fs::remove_dir_all(dir);
}
