//! End to end against perimeter's own Compute firewall emulator (`local-cloud`, the workspace
//! crate under localstack/emulator) on 127.0.0.1: plan, apply, drift, out-of-band changes,
//! stale plans, foreign rules, injected throttling and outages, quota and name limits.
//!
//! Each test starts its own emulator process on a free port, so tests run in parallel without
//! seeing each other. The emulator's admin API (`/_emulator/...`) sets faults and counts calls.

use serde_json::{Value, json};

mod common;

use common::gcp::{Emulator, gke_rule, policy, saved_plan, scratch};
use common::{code, text};

#[test]
fn plan_apply_plan_converges_and_leaves_foreign_rules_alone() {
    let emulator = Emulator::start();
    emulator.insert(gke_rule());
    emulator.insert(json!({"name": "team-db-allow-psql", "network": "global/networks/prod-vpc",
        "sourceRanges": ["10.0.0.0/8"], "targetTags": ["db"], "allowed": [{"IPProtocol": "tcp", "ports": ["5432"]}]}));
    let foreign_before = (
        emulator.firewall("gke-prod-abc123-hc").1,
        emulator.firewall("team-db-allow-psql").1,
    );
    let dir = scratch("converge");
    let policy = policy(&dir);
    let plan_file = dir.join("plan.json");

    let plan = emulator.perimeter(&[
        "plan",
        policy.to_str().unwrap(),
        "--out",
        plan_file.to_str().unwrap(),
        "--detailed-exitcode",
    ]);
    assert_eq!(code(&plan), 2, "{}", text(&plan));
    let out = text(&plan);
    assert!(out.contains("+ firewall gke-workers-i-kubelet: INGRESS allow tcp:10250 from 172.16.0.0/28 on tags gke-workers"), "{out}");
    assert!(
        out.contains("Plan: 9 to add, 0 to change, 0 to destroy."),
        "{out}"
    );
    assert!(
        out.contains("API calls: 5"),
        "one projects.get, one networks.get, one getEffectiveFirewalls, one list of the network, one list of the policy's rules in the project:\n{out}"
    );
    assert!(
        !out.contains("gke-prod-abc123-hc"),
        "a foreign rule that agrees with the policy is not news:\n{out}"
    );

    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&plan_file).unwrap()).unwrap();
    assert_eq!(doc["gcp"][0]["changes"][0]["method"], "insert");
    assert_eq!(doc["summary"]["add"], 9);

    let apply = emulator.perimeter(&["apply", plan_file.to_str().unwrap()]);
    assert_eq!(code(&apply), 0, "{}", text(&apply));
    assert!(
        text(&apply).contains(
            "Apply complete: 9 added, 0 changed, 0 destroyed in 9 write call(s); 0 change(s) left."
        ),
        "{}",
        text(&apply)
    );

    let again = emulator.perimeter(&["plan", policy.to_str().unwrap(), "--detailed-exitcode"]);
    assert_eq!(code(&again), 0, "{}", text(&again));
    assert!(text(&again).contains("No changes. The cloud matches the policy."));

    emulator.reset_calls();
    let noop = emulator.perimeter(&["apply", policy.to_str().unwrap(), "--auto-approve"]);
    assert_eq!(code(&noop), 0, "{}", text(&noop));
    assert!(
        text(&noop).contains("in 0 write call(s)"),
        "{}",
        text(&noop)
    );
    assert_eq!(emulator.writes(), 0);

    // The rules perimeter does not own are exactly as they were.
    assert_eq!(
        (
            emulator.firewall("gke-prod-abc123-hc").1,
            emulator.firewall("team-db-allow-psql").1
        ),
        foreign_before
    );
    let rule = emulator.firewall("gke-workers-i-kubelet").1;
    assert_eq!(rule["sourceRanges"], json!(["172.16.0.0/28"]));
    assert_eq!(rule["description"], "perimeter:gke-workers kubelet");
    let _ = std::fs::remove_dir_all(dir);
}

/// drift reports the deleted rule as missing, the opened one as modified and the foreign
/// rule that overrides the policy as unexpected, each under its stable key.
fn each_change_is_drift_with_its_key(emulator: &Emulator, p: &str) {
    let drift = emulator.perimeter(&["drift", p, "--format", "json"]);
    assert_eq!(code(&drift), 2, "{}", text(&drift));
    let report: Value = serde_json::from_slice(&drift.stdout).expect("json");
    assert_eq!(
        report["counts"],
        json!({"missing": 1, "unexpected": 0, "modified": 1, "violation": 1, "posture": 0}),
        "{report:#}"
    );
    let items = report["items"].as_array().unwrap();
    let by_key = |key: &str| {
        items
            .iter()
            .find(|i| i["key"] == key)
            .unwrap_or_else(|| panic!("{key} in {report:#}"))
    };
    assert_eq!(
        by_key("gcp/acme-prod/prod-vpc/firewall/gke-workers-i-kubelet")["kind"],
        "missing"
    );
    let modified = by_key("gcp/acme-prod/prod-vpc/firewall/gke-workers-i-node-exporter");
    assert_eq!(modified["kind"], "modified");
    assert!(
        modified["detail"]
            .as_str()
            .unwrap()
            .contains("sourceRanges: 0.0.0.0/0 → 10.30.0.0/24"),
        "{modified}"
    );
    let foreign = items
        .iter()
        .find(|i| i["kind"] == "violation")
        .unwrap_or_else(|| panic!("a violation in {report:#}"));
    assert_eq!(foreign["resource"], "enforcement-path");
    assert_eq!(foreign["effect"], "opens");
    let key = foreign["key"].as_str().unwrap();
    assert!(
        key.starts_with("gcp/acme-prod/prod-vpc/violation/debug-ssh/") && key.ends_with("/opens"),
        "{foreign}"
    );
    assert!(
        foreign["detail"]
            .as_str()
            .unwrap()
            .contains("INGRESS allow tcp:22 from 0.0.0.0/0 on all instances priority 100: the policy says deny"),
        "{foreign}"
    );
}

#[test]
fn out_of_band_changes_are_drift_and_apply_repairs_the_owned_ones() {
    let emulator = Emulator::start();
    let dir = scratch("drift");
    let policy = policy(&dir);
    let p = policy.to_str().unwrap();
    assert_eq!(
        code(&emulator.perimeter(&["apply", p, "--auto-approve"])),
        0
    );

    // Someone opens node-exporter to the world, deletes the kubelet rule, and adds a rule of
    // their own that lets ssh from anywhere reach every instance at a better priority.
    let (status, _) = emulator.call(
        "PATCH",
        "/compute/v1/projects/acme-prod/global/firewalls/gke-workers-i-node-exporter",
        Some(json!({"sourceRanges": ["0.0.0.0/0"]})),
    );
    assert_eq!(status, 200);
    let (status, _) = emulator.call(
        "DELETE",
        "/compute/v1/projects/acme-prod/global/firewalls/gke-workers-i-kubelet",
        None,
    );
    assert_eq!(status, 200);
    emulator.insert(
        json!({"name": "debug-ssh", "network": "global/networks/prod-vpc", "priority": 100,
        "sourceRanges": ["0.0.0.0/0"], "allowed": [{"IPProtocol": "tcp", "ports": ["22"]}]}),
    );

    each_change_is_drift_with_its_key(&emulator, p);

    let repair = emulator.perimeter(&["apply", p, "--auto-approve"]);
    assert_eq!(code(&repair), 0, "{}", text(&repair));
    assert!(
        text(&repair).contains("1 added, 1 changed, 0 destroyed"),
        "{}",
        text(&repair)
    );
    assert_eq!(
        emulator.firewall("gke-workers-i-node-exporter").1["sourceRanges"],
        json!(["10.30.0.0/24"])
    );
    // perimeter does not own debug-ssh: it is still there, and still reported.
    assert_eq!(emulator.firewall("debug-ssh").0, 200);
    let after = emulator.perimeter(&["drift", p, "--format", "json"]);
    let report: Value = serde_json::from_slice(&after.stdout).expect("json");
    assert_eq!(
        report["counts"],
        json!({"missing": 0, "unexpected": 0, "modified": 0, "violation": 1, "posture": 0}),
        "{report:#}"
    );
    // Accepted in a baseline, it no longer fails the check.
    let key = report["items"][0]["key"].clone();
    let baseline = dir.join("baseline.json");
    std::fs::write(&baseline, json!({"accept": [key]}).to_string()).unwrap();
    let accepted = emulator.perimeter(&["drift", p, "--baseline", baseline.to_str().unwrap()]);
    assert_eq!(code(&accepted), 0, "{}", text(&accepted));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_stale_saved_plan_writes_nothing() {
    let emulator = Emulator::start();
    let dir = scratch("stale");
    let policy = policy(&dir);
    let p = policy.to_str().unwrap();
    assert_eq!(
        code(&emulator.perimeter(&["apply", p, "--auto-approve"])),
        0
    );
    // The policy changes (node-exporter from a new monitoring range) and is planned...
    let text_before = std::fs::read_to_string(&policy).unwrap();
    std::fs::write(
        &policy,
        text_before.replace("monitoring: [10.30.0.0/24]", "monitoring: [10.31.0.0/24]"),
    )
    .unwrap();
    let plan_file = dir.join("plan.json");
    let plan = emulator.perimeter(&["plan", p, "--out", plan_file.to_str().unwrap()]);
    assert_eq!(code(&plan), 0, "{}", text(&plan));
    assert!(
        text(&plan).contains("~ firewall gke-workers-i-node-exporter (patch)"),
        "{}",
        text(&plan)
    );
    // ...then someone deletes an owned rule before the plan is applied.
    emulator.call(
        "DELETE",
        "/compute/v1/projects/acme-prod/global/firewalls/gke-workers-e-google-apis",
        None,
    );
    emulator.reset_calls();
    let apply = emulator.perimeter(&["apply", plan_file.to_str().unwrap()]);
    assert_eq!(code(&apply), 1, "{}", text(&apply));
    assert!(
        text(&apply).contains("saved plan is stale; nothing was written"),
        "{}",
        text(&apply)
    );
    assert_eq!(emulator.writes(), 0, "{}", emulator.calls());
    assert_eq!(
        emulator.firewall("gke-workers-i-node-exporter").1["sourceRanges"],
        json!(["10.30.0.0/24"])
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_rule_with_our_name_that_we_do_not_own_is_never_overwritten() {
    let emulator = Emulator::start();
    emulator.insert(json!({"name": "gke-workers-i-kubelet", "network": "global/networks/prod-vpc",
        "sourceRanges": ["0.0.0.0/0"], "allowed": [{"IPProtocol": "tcp", "ports": ["10250"]}], "description": "made by hand"}));
    emulator.reset_calls();
    let dir = scratch("impostor");
    let policy = policy(&dir);
    let plan = emulator.perimeter(&["plan", policy.to_str().unwrap()]);
    assert_eq!(code(&plan), 1, "{}", text(&plan));
    assert!(
        text(&plan).contains("perimeter does not own it and will not overwrite it"),
        "{}",
        text(&plan)
    );
    let apply = emulator.perimeter(&["apply", policy.to_str().unwrap(), "--auto-approve"]);
    assert_eq!(code(&apply), 1);
    assert_eq!(emulator.writes(), 0);
    assert_eq!(
        emulator.firewall("gke-workers-i-kubelet").1["description"],
        "made by hand"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn throttling_and_outages_are_retried_until_apply_converges() {
    let emulator = Emulator::start();
    let faults = json!([
        // Three inserts throttled (Retry-After 0 keeps the test fast; the header is honoured).
        {"method": "POST", "path_contains": "/global/firewalls", "times": 3, "status": 429, "retry_after_seconds": 0},
        // The 5th insert is done but its answer is lost: the retry carries the same request id
        // and gets the original operation, not a 409.
        {"method": "POST", "path_contains": "/global/firewalls", "skip": 4, "times": 1, "status": 503, "after_commit": true},
        // Two reads fail with 503 and every call is slowed down a little.
        {"method": "GET", "path_contains": "/global/firewalls", "times": 2, "status": 503},
        {"latency_ms": 5},
    ]);
    let (status, _) = emulator.call("POST", "/_emulator/faults", Some(faults));
    assert_eq!(status, 200);
    let dir = scratch("faults");
    let policy = policy(&dir);
    let p = policy.to_str().unwrap();
    let apply = emulator.perimeter(&["apply", p, "--auto-approve"]);
    assert_eq!(code(&apply), 0, "{}", text(&apply));
    let out = text(&apply);
    assert!(out.contains("9 added, 0 changed, 0 destroyed"), "{out}");
    assert!(out.contains("request(s) retried"), "{out}");
    let (_, pending) = emulator.call("GET", "/_emulator/faults", None);
    assert_eq!(
        pending["pending"], 1,
        "only the endless latency fault is left: {pending}"
    );
    let again = emulator.perimeter(&["plan", p, "--detailed-exitcode"]);
    assert_eq!(code(&again), 0, "{}", text(&again));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_write_that_keeps_failing_stops_apply_and_says_how_far_it_got() {
    let emulator = Emulator::start();
    let (status, _) = emulator.call(
        "POST",
        "/_emulator/faults",
        Some(json!({"method": "POST", "path_contains": "/global/firewalls", "skip": 2, "status": 503})),
    );
    assert_eq!(status, 200);
    let dir = scratch("outage");
    let policy = policy(&dir);
    let apply = emulator.perimeter(&["apply", policy.to_str().unwrap(), "--auto-approve"]);
    assert_eq!(code(&apply), 1, "{}", text(&apply));
    assert!(
        text(&apply).contains("apply stopped after"),
        "{}",
        text(&apply)
    );
    assert!(
        text(&apply).contains("run `perimeter plan` to see what is left"),
        "{}",
        text(&apply)
    );
    // The outage ends; planning and applying again converges.
    emulator.call("DELETE", "/_emulator/faults", None);
    let again = emulator.perimeter(&["apply", policy.to_str().unwrap(), "--auto-approve"]);
    assert_eq!(code(&again), 0, "{}", text(&again));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn quota_and_name_length_overflows_are_refused_at_plan_time() {
    let emulator = Emulator::start();
    let dir = scratch("limits");
    let policy = policy(&dir);
    let p = policy.to_str().unwrap();
    // The project holds 4 rules (the default network's); 9 more and the lease do not fit in 10.
    let (status, _) = emulator.call(
        "POST",
        "/_emulator/gcp/projects/acme-prod/quota",
        Some(json!({"FIREWALLS": 10})),
    );
    assert_eq!(status, 200);
    let plan = emulator.perimeter(&["plan", p]);
    assert_eq!(code(&plan), 1, "{}", text(&plan));
    assert!(
        text(&plan).contains("would need 14 firewall rules but its FIREWALLS quota is 10"),
        "{}",
        text(&plan)
    );
    let apply = emulator.perimeter(&["apply", p, "--auto-approve"]);
    assert_eq!(code(&apply), 1, "{}", text(&apply));
    assert_eq!(emulator.writes(), 0);
    assert_eq!(emulator.names().len(), 4);

    // A rule name that makes a firewall name longer than 63 characters never reaches the API.
    let long = std::fs::read_to_string(&policy)
        .unwrap()
        .replace(
            "name: gke-workers\n",
            "name: gke-workers-of-the-payments-platform\n",
        )
        .replace(
            "- name: node-exporter",
            "- name: node-exporter-from-monitoring",
        );
    std::fs::write(&policy, long).unwrap();
    emulator.reset_calls();
    let plan = emulator.perimeter(&["plan", p]);
    assert_eq!(code(&plan), 1, "{}", text(&plan));
    assert!(
        text(&plan).contains("gcp::name-too-long"),
        "{}",
        text(&plan)
    );
    assert_eq!(emulator.calls()["total"], 0);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn observe_reads_every_page_of_a_busy_network() {
    let emulator = Emulator::start();
    let (status, _) = emulator.call(
        "POST",
        "/_emulator/gcp/projects/acme-prod/quota",
        Some(json!({"FIREWALLS": 2000})),
    );
    assert_eq!(status, 200);
    // 520 rules of other teams sort before perimeter's: the owned rules are on page 2.
    for i in 0..520 {
        emulator.insert(
            json!({"name": format!("aaa-team-{i:03}"), "network": "global/networks/prod-vpc",
            "targetTags": [format!("team-{i}")], "sourceRanges": ["10.200.0.0/24"],
            "allowed": [{"IPProtocol": "tcp", "ports": ["443"]}]}),
        );
    }
    let dir = scratch("pages");
    let policy = policy(&dir);
    let p = policy.to_str().unwrap();
    assert_eq!(
        code(&emulator.perimeter(&["apply", p, "--auto-approve"])),
        0
    );
    emulator.reset_calls();
    let plan = emulator.perimeter(&["plan", p, "--detailed-exitcode"]);
    assert_eq!(code(&plan), 0, "{}", text(&plan));
    // Two pages of the network, one of the policy's rules in the project (orphans), one read
    // of the firewall policies.
    assert!(text(&plan).contains("API calls: 6"), "{}", text(&plan));
    assert_eq!(emulator.calls()["by_route"]["GET firewalls.list"], 3);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_edited_plan_file_cannot_delete_a_foreign_rule() {
    let emulator = Emulator::start();
    emulator.insert(gke_rule());
    let dir = scratch("edited");
    let policy = policy(&dir);
    let plan_file = saved_plan(&emulator, &policy, &dir);
    let saved = std::fs::read_to_string(&plan_file).unwrap();
    let mut doc: Value = serde_json::from_str(&saved).unwrap();
    doc["gcp"][0]["changes"]
        .as_array_mut()
        .unwrap()
        .push(json!({"action": "delete", "method": "delete", "name": "gke-prod-abc123-hc", "before": null, "after": null, "step": 1}));
    std::fs::write(&plan_file, doc.to_string()).unwrap();
    emulator.reset_calls();
    let apply = emulator.perimeter(&["apply", plan_file.to_str().unwrap()]);
    assert_eq!(code(&apply), 1, "{}", text(&apply));
    assert!(
        text(&apply).contains("gcp[0].changes[9]: the plan file has"),
        "{}",
        text(&apply)
    );
    assert_eq!(emulator.writes(), 0);
    assert_eq!(emulator.firewall("gke-prod-abc123-hc").0, 200);

    // A widened range, in the change and in the desired rules alike.
    let mut doc: Value = serde_json::from_str(&saved).unwrap();
    let first = doc["gcp"][0]["changes"][0]["name"].clone();
    doc["gcp"][0]["changes"][0]["after"]["sourceRanges"] = json!(["0.0.0.0/0"]);
    for f in doc["gcp"][0]["desired"]["firewalls"]
        .as_array_mut()
        .unwrap()
    {
        if f["name"] == first {
            f["sourceRanges"] = json!(["0.0.0.0/0"]);
        }
    }
    std::fs::write(&plan_file, doc.to_string()).unwrap();
    let apply = emulator.perimeter(&["apply", plan_file.to_str().unwrap()]);
    assert_eq!(code(&apply), 1, "{}", text(&apply));
    assert!(
        text(&apply)
            .contains("gcp[0].changes[0].after.sourceRanges: the plan file has [\"0.0.0.0/0\"]"),
        "{}",
        text(&apply)
    );
    assert_eq!(emulator.writes(), 0);

    // The plan as it was made applies.
    std::fs::write(&plan_file, &saved).unwrap();
    let apply = emulator.perimeter(&["apply", plan_file.to_str().unwrap()]);
    assert_eq!(code(&apply), 0, "{}", text(&apply));
    assert_eq!(emulator.firewall("gke-prod-abc123-hc").0, 200);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_saved_plan_survives_rules_of_others_that_change_the_quota_and_the_overlaps() {
    let emulator = Emulator::start();
    let dir = scratch("others");
    let policy = policy(&dir);
    let plan_file = saved_plan(&emulator, &policy, &dir);
    // After the plan, someone adds a rule that lets ssh in from anywhere: the project's quota
    // usage changes and the rule overrides the policy (an overlap). Neither is a write of the
    // plan, and neither makes it stale.
    emulator.insert(
        json!({"name": "debug-ssh", "network": "global/networks/prod-vpc", "priority": 100,
        "sourceRanges": ["0.0.0.0/0"], "allowed": [{"IPProtocol": "tcp", "ports": ["22"]}]}),
    );
    let apply = emulator.perimeter(&["apply", plan_file.to_str().unwrap()]);
    assert_eq!(code(&apply), 0, "{}", text(&apply));
    assert!(
        text(&apply).contains("a fresh plan equals it"),
        "{}",
        text(&apply)
    );
    let again = emulator.perimeter(&["plan", policy.to_str().unwrap()]);
    assert!(
        text(&again).contains("! firewall rule debug-ssh (not managed by perimeter)"),
        "the violation is still reported: {}",
        text(&again)
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A lease rule as another apply leaves it (core::lease, providers/gcp/src/lease.rs).
fn lease_rule(expires: u64) -> Value {
    json!({"name": "gke-workers-lease", "network": "global/networks/prod-vpc", "priority": 65535,
           "sourceRanges": ["192.0.2.1/32"], "targetTags": ["perimeter-lease"], "disabled": true,
           "denied": [{"IPProtocol": "all"}],
           "description": format!("perimeter-lease owner=ci job 41;expires={expires};plan=0123456789ab")})
}

#[test]
fn a_held_lease_stops_apply_before_any_write_and_an_expired_one_is_taken_over() {
    let emulator = Emulator::start();
    emulator.insert(lease_rule(4_102_444_800)); // 2100-01-01
    let dir = scratch("lease");
    let policy = policy(&dir);
    let p = policy.to_str().unwrap();
    let before = emulator.names();
    let apply = emulator.perimeter(&["apply", p, "--auto-approve"]);
    assert_eq!(code(&apply), 1, "{}", text(&apply));
    assert!(
        text(&apply)
            .contains("is being applied: lease held by ci job 41 until 2100-01-01T00:00:00Z"),
        "{}",
        text(&apply)
    );
    assert_eq!(emulator.names(), before, "nothing was written");

    // The holder was killed long ago: its lease has expired and is taken over.
    emulator.call(
        "DELETE",
        "/compute/v1/projects/acme-prod/global/firewalls/gke-workers-lease",
        None,
    );
    emulator.insert(lease_rule(1_000));
    let apply = emulator.perimeter(&["apply", p, "--auto-approve"]);
    assert_eq!(code(&apply), 0, "{}", text(&apply));
    assert_eq!(
        emulator.firewall("gke-workers-lease").0,
        404,
        "released after apply"
    );
    let again = emulator.perimeter(&["plan", p, "--detailed-exitcode"]);
    assert_eq!(code(&again), 0, "{}", text(&again));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn two_applies_at_once_one_writes_the_other_is_refused() {
    let emulator = Emulator::start();
    // Slow writes, so the two applies overlap.
    let (status, _) = emulator.call(
        "POST",
        "/_emulator/faults",
        Some(json!({"method": "POST", "path_contains": "/global/firewalls", "latency_ms": 300})),
    );
    assert_eq!(status, 200);
    let dir = scratch("two-applies");
    let policy = policy(&dir);
    let p = policy.to_str().unwrap();
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| emulator.perimeter(&["apply", p, "--auto-approve"]));
        let b = s.spawn(|| emulator.perimeter(&["apply", p, "--auto-approve"]));
        (a.join().unwrap(), b.join().unwrap())
    });
    let mut codes = [code(&a), code(&b)];
    codes.sort();
    let both = format!("{}\n---\n{}", text(&a), text(&b));
    assert_eq!(codes, [0, 1], "{both}");
    assert!(
        both.contains("is being applied: lease held by")
            || both.contains("changed after the plan was checked")
            || both.contains("saved plan is stale"),
        "{both}"
    );
    emulator.call("DELETE", "/_emulator/faults", None);
    let again = emulator.perimeter(&["plan", p, "--detailed-exitcode"]);
    assert_eq!(code(&again), 0, "{}", text(&again));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_rule_of_the_policy_in_a_network_no_target_declares_is_removed() {
    let emulator = Emulator::start();
    let (status, _) = emulator.call(
        "POST",
        "/compute/v1/projects/acme-prod/global/networks",
        Some(json!({"name": "old-vpc", "autoCreateSubnetworks": false})),
    );
    assert_eq!(status, 200);
    // What an earlier version of the policy, with a target on old-vpc, left behind.
    emulator.insert(
        json!({"name": "gke-workers-i-legacy", "network": "global/networks/old-vpc",
        "priority": 1000, "sourceRanges": ["0.0.0.0/0"], "targetTags": ["gke-workers"],
        "allowed": [{"IPProtocol": "tcp", "ports": ["22"]}],
        "description": "perimeter:gke-workers legacy"}),
    );
    let dir = scratch("orphans");
    let policy = policy(&dir);
    let p = policy.to_str().unwrap();
    // Before apply, drift reports it as a rule to remove.
    let drift = emulator.perimeter(&["drift", p, "--format", "json"]);
    assert_eq!(code(&drift), 2, "{}", text(&drift));
    let report: Value = serde_json::from_slice(&drift.stdout).expect("json");
    assert!(
        report["items"].as_array().unwrap().iter().any(|i| i["key"]
            == "gcp/acme-prod/old-vpc/firewall/gke-workers-i-legacy"
            && i["kind"] == "unexpected"),
        "{report:#}"
    );
    let plan = emulator.perimeter(&["plan", p]);
    assert_eq!(code(&plan), 0, "{}", text(&plan));
    let out = text(&plan);
    assert!(
        out.contains("gcp project acme-prod network old-vpc (no target of the policy declares it any more: perimeter's rules there are removed)")
            && out.contains("- firewall gke-workers-i-legacy: INGRESS allow tcp:22 from 0.0.0.0/0 on tags gke-workers priority 1000 (network no longer declared)"),
        "{out}"
    );
    let apply = emulator.perimeter(&["apply", p, "--auto-approve"]);
    assert_eq!(code(&apply), 0, "{}", text(&apply));
    assert_eq!(emulator.firewall("gke-workers-i-legacy").0, 404, "removed");
    let drift = emulator.perimeter(&["drift", p]);
    assert_eq!(code(&drift), 0, "{}", text(&drift));
    let _ = std::fs::remove_dir_all(dir);
}
