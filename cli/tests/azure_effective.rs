//! The effective perimeter on Azure, end to end against `local-cloud` on 127.0.0.1: where
//! the NSG takes effect (subnet associations planned, written, repaired and removed), and what
//! the nodes' NICs experience — the NSG of their subnet and their own, their ASG membership.
//! Each case is one the issue found unreported.

mod common;

use std::path::{Path, PathBuf};

use common::azure::{Emulator, policy, scratch};
use common::{code, text};

fn owned(dir: &Path) -> PathBuf {
    policy(dir, false)
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).expect("policy");
    assert!(text.contains(from), "{from:?} not in the policy");
    std::fs::write(path, text.replace(from, to)).expect("write");
}

#[test]
fn an_nsg_associated_with_nothing_is_a_posture_finding_that_fails_drift() {
    let emulator = Emulator::start();
    let dir = scratch("unassociated");
    let p = owned(&dir);
    edit(&p, "    subnets: [aks-vnet/aks-nodes]\n", "");
    edit(&p, "    nics:\n      tags: {aks-nodepool: workers}\n", "");
    let p = p.to_str().unwrap();
    let apply = emulator.perimeter(&["apply", p, "--auto-approve"]);
    assert_eq!(code(&apply), 0, "{}", text(&apply));
    // Every rule is as planned, yet the NSG protects nothing: the case.
    let plan = emulator.perimeter(&["plan", p, "--detailed-exitcode"]);
    assert_eq!(code(&plan), 2, "{}", text(&plan));
    assert!(
        text(&plan).contains("NSG aks-workers is associated with no subnet and no network interface, so it enforces nothing"),
        "{}",
        text(&plan)
    );
    let drift = emulator.perimeter(&["drift", p, "--format", "json"]);
    assert_eq!(code(&drift), 2, "{}", text(&drift));
    assert!(
        text(&drift).contains("nsg-unassociated"),
        "{}",
        text(&drift)
    );
    // Only posture fails: `--fail-on changes` passes.
    let changes_only = emulator.perimeter(&["drift", p, "--fail-on", "changes"]);
    assert_eq!(code(&changes_only), 0, "{}", text(&changes_only));
    // With the nodes' NICs declared, what they experience is checked: no NSG on their path,
    // so everything the policy denies reaches them.
    let path = Path::new(p);
    edit(
        path,
        "    application_security_group: aks-workers-nodes\n",
        "    application_security_group: aks-workers-nodes\n    nics:\n      tags: {aks-nodepool: workers}\n",
    );
    let plan = emulator.perimeter(&["plan", p, "--detailed-exitcode"]);
    assert_eq!(code(&plan), 2, "{}", text(&plan));
    assert!(
        text(&plan).contains("! subnet aks-vnet/aks-nodes (for network interface aks-node-0, aks-node-1) has NSG aks-workers neither on it nor on the network interface (no NSG on the path: Azure lets everything through): the policy says deny"),
        "{}",
        text(&plan)
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_subnet_association_removed_out_of_band_is_drift_and_apply_restores_it() {
    let emulator = Emulator::start();
    let dir = scratch("dissociated");
    let p = owned(&dir);
    let p = p.to_str().unwrap();
    let apply = emulator.perimeter(&["apply", p, "--auto-approve"]);
    assert_eq!(code(&apply), 0, "{}", text(&apply));
    assert!(
        text(&apply).contains("+ subnet aks-vnet/aks-nodes associated with NSG aks-workers"),
        "{}",
        text(&apply)
    );
    let clean = emulator.perimeter(&["drift", p]);
    assert_eq!(code(&clean), 0, "{}", text(&clean));

    emulator.set_subnet_nsg(None);
    let drift = emulator.perimeter(&["drift", p, "--format", "json"]);
    assert_eq!(code(&drift), 2, "{}", text(&drift));
    let out = text(&drift);
    assert!(out.contains("subnet/aks-vnet/aks-nodes"), "{out}");
    assert!(
        out.contains("subnet aks-vnet/aks-nodes does not have NSG aks-workers"),
        "{out}"
    );
    let repair = emulator.perimeter(&["apply", p, "--auto-approve"]);
    assert_eq!(code(&repair), 0, "{}", text(&repair));
    assert_eq!(emulator.subnet_nsg().as_deref(), Some("aks-workers"));
    let again = emulator.perimeter(&["plan", p, "--detailed-exitcode"]);
    assert_eq!(code(&again), 0, "{}", text(&again));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_nic_nsg_that_denies_what_the_policy_allows_and_a_nic_outside_the_asg_are_reported() {
    let emulator = Emulator::start();
    let dir = scratch("nic-nsg");
    let p = owned(&dir);
    let p = p.to_str().unwrap();
    let apply = emulator.perimeter(&["apply", p, "--auto-approve"]);
    assert_eq!(code(&apply), 0, "{}", text(&apply));
    // A team's NSG on one node's NIC that denies kubelet, which the policy allows from the
    // control plane: inbound, the subnet's NSG allows it, then the NIC's denies it.
    let group = format!(
        "/subscriptions/{}/resourceGroups/rg-aks-prod/providers/Microsoft.Network",
        common::azure::SUB
    );
    let (status, body) = emulator.arm(
        "PUT",
        &format!("{group}/networkSecurityGroups/team-nic-nsg?api-version=2024-05-01"),
        Some(serde_json::json!({"location": "westeurope", "properties": {"securityRules": [
            {"name": "deny-kubelet", "properties": {"protocol": "Tcp", "access": "Deny", "direction": "Inbound",
             "priority": 100, "sourcePortRange": "*", "destinationPortRange": "10250",
             "sourceAddressPrefix": "*", "destinationAddressPrefix": "*"}}]}})),
    );
    assert_eq!(status, 201, "{body}");
    emulator.node_nic("aks-node-1", Some("team-nic-nsg"));
    // And a node NIC someone forgot to put in the nodes' ASG.
    let (status, body) = emulator.arm(
        "PUT",
        &format!("{group}/networkInterfaces/aks-node-9?api-version=2024-05-01"),
        Some(serde_json::json!({"location": "westeurope", "tags": {"aks-nodepool": "workers"},
            "properties": {"ipConfigurations": [{"name": "ipconfig1", "properties": {
                "subnet": {"id": format!("{group}/virtualNetworks/aks-vnet/subnets/aks-nodes")}}}]}})),
    );
    assert_eq!(status, 201, "{body}");

    let plan = emulator.perimeter(&["plan", p, "--detailed-exitcode"]);
    assert_eq!(code(&plan), 2, "{}", text(&plan));
    let out = text(&plan);
    assert!(
        out.contains("! security rule deny-kubelet of NSG team-nic-nsg on network interface aks-node-1 Inbound Deny Tcp 10250 from * to * priority 100: the policy says allow"),
        "{out}"
    );
    assert!(
        out.contains("blocks ingress tcp 10250 from 10.224.0.0/24"),
        "{out}"
    );
    assert!(
        out.contains(
            "network interface aks-node-9 is not in application security group aks-workers-nodes"
        ),
        "{out}"
    );
    // perimeter writes only what it owns: the other NSG stays, apply has nothing to write.
    emulator.reset_calls();
    let apply = emulator.perimeter(&["apply", p, "--auto-approve"]);
    assert_eq!(code(&apply), 0, "{}", text(&apply));
    assert_eq!(emulator.writes(), 0);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_subnet_removed_from_the_policy_is_dissociated_and_bad_subnets_are_refused() {
    let emulator = Emulator::start();
    let dir = scratch("subnet-removed");
    let path = owned(&dir);
    let p = path.to_str().unwrap();
    let apply = emulator.perimeter(&["apply", p, "--auto-approve"]);
    assert_eq!(code(&apply), 0, "{}", text(&apply));

    edit(&path, "    subnets: [aks-vnet/aks-nodes]\n", "");
    let plan = emulator.perimeter(&["plan", p, "--detailed-exitcode"]);
    assert_eq!(code(&plan), 2, "{}", text(&plan));
    assert!(
        text(&plan).contains(
            "- subnet aks-vnet/aks-nodes: dissociate NSG aks-workers (no longer declared in subnets)"
        ),
        "{}",
        text(&plan)
    );
    let apply = emulator.perimeter(&["apply", p, "--auto-approve"]);
    assert_eq!(code(&apply), 0, "{}", text(&apply));
    assert_eq!(emulator.subnet_nsg(), None);

    // A subnet that does not exist, and one that has someone else's NSG: plan errors.
    edit(
        &path,
        "    nics:\n",
        "    subnets: [aks-vnet/aks-typo]\n    nics:\n",
    );
    let typo = emulator.perimeter(&["plan", p]);
    assert_eq!(code(&typo), 1, "{}", text(&typo));
    assert!(
        text(&typo).contains("subnet `aks-vnet/aks-typo` named in `subnets` of the target for NSG `aks-workers` does not exist"),
        "{}",
        text(&typo)
    );
    edit(&path, "aks-vnet/aks-typo", "aks-vnet/aks-nodes");
    emulator.aks_nsg_named("aks-agentpool");
    emulator.set_subnet_nsg(Some("aks-agentpool"));
    let taken = emulator.perimeter(&["plan", p]);
    assert_eq!(code(&taken), 1, "{}", text(&taken));
    assert!(
        text(&taken).contains("subnet `aks-vnet/aks-nodes` already has NSG `aks-agentpool`"),
        "{}",
        text(&taken)
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_nsg_no_target_declares_any_more_is_removed_and_its_subnet_moves_first() {
    let emulator = Emulator::start();
    let dir = scratch("renamed");
    let path = owned(&dir);
    let p = path.to_str().unwrap();
    let apply = emulator.perimeter(&["apply", p, "--auto-approve"]);
    assert_eq!(code(&apply), 0, "{}", text(&apply));
    // The target now names another NSG: the old one is the policy's, declared by no target.
    edit(&path, "    nsg: aks-workers\n", "    nsg: aks-workers-v2\n");
    let plan = emulator.perimeter(&["plan", p, "--detailed-exitcode"]);
    assert_eq!(code(&plan), 2, "{}", text(&plan));
    let out = text(&plan);
    for line in [
        "+ network security group aks-workers-v2",
        "+ subnet aks-vnet/aks-nodes: associate NSG aks-workers-v2 (declared in subnets; moved from NSG aks-workers, the policy's, no longer declared)",
        "NSG aks-workers (no target of the policy declares it any more: it is removed)",
        "- network security group aks-workers (destroy)",
    ] {
        assert!(out.contains(line), "{line:?} missing:\n{out}");
    }
    let apply = emulator.perimeter(&["apply", p, "--auto-approve"]);
    assert_eq!(code(&apply), 0, "{}", text(&apply));
    assert_eq!(emulator.subnet_nsg().as_deref(), Some("aks-workers-v2"));
    let (status, _) = emulator.nsg();
    assert_eq!(status, 404, "the old NSG is gone");
    let again = emulator.perimeter(&["plan", p, "--detailed-exitcode"]);
    assert_eq!(code(&again), 0, "{}", text(&again));
    let _ = std::fs::remove_dir_all(dir);
}
