//! End to end against the ARM network-security-group part of `local-cloud` on 127.0.0.1:
//! an NSG perimeter owns (one PUT with If-Match) and an AKS-style NSG it shares (its own rules
//! only, one by one, foreign rules untouched), out-of-band changes, drift, stale plans,
//! throttling, and limits refused at plan time. One emulator process per test.

mod common;

use std::path::Path;

use common::azure::{Emulator, SUB, aks_rule, nsg_path, policy, rule_names, scratch};
use common::{code, text};
use serde_json::{Value, json};

#[test]
fn an_owned_nsg_is_created_in_one_put_and_converges() {
    let emulator = Emulator::start();
    let dir = scratch("owned");
    let p = policy(&dir, false);
    let p = p.to_str().unwrap();
    let plan_file = dir.join("plan.json");
    let plan = emulator.perimeter(&[
        "plan",
        p,
        "--out",
        plan_file.to_str().unwrap(),
        "--detailed-exitcode",
    ]);
    assert_eq!(code(&plan), 2, "{}", text(&plan));
    let out = text(&plan);
    assert!(
        out.contains("+ network security group aks-workers"),
        "{out}"
    );
    assert!(
        out.contains("write: one PUT creating the NSG in westeurope"),
        "{out}"
    );
    assert!(
        out.contains(
            "+ subnet aks-vnet/aks-nodes: associate NSG aks-workers (declared in subnets)"
        ),
        "{out}"
    );
    assert!(
        out.contains("API calls: 5"),
        "one GET for the NSG, one for the ASG, one NIC list, one GET of the nodes' subnet, one NSG list of the resource group (NSGs of the policy no target declares):\n{out}"
    );
    emulator.reset_calls();
    let apply = emulator.perimeter(&["apply", plan_file.to_str().unwrap()]);
    assert_eq!(code(&apply), 0, "{}", text(&apply));
    assert!(
        text(&apply).contains("in 2 write call(s); 0 change(s) left"),
        "{}",
        text(&apply)
    );
    assert_eq!(
        emulator.count(&["PUT networkSecurityGroups.createOrUpdate"]),
        1
    );
    let (_, nsg) = emulator.nsg();
    assert_eq!(nsg["tags"]["perimeter:policy"], "aks-workers");
    assert_eq!(rule_names(&nsg).len(), 12);
    assert_eq!(emulator.subnet_nsg().as_deref(), Some("aks-workers"));
    let again = emulator.perimeter(&["plan", p, "--detailed-exitcode"]);
    assert_eq!(code(&again), 0, "{}", text(&again));
    emulator.reset_calls();
    let noop = emulator.perimeter(&["apply", p, "--auto-approve"]);
    assert_eq!(code(&noop), 0, "{}", text(&noop));
    assert_eq!(emulator.writes(), 0);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_shared_aks_nsg_gets_only_perimeters_rules_and_keeps_the_others() {
    let emulator = Emulator::start();
    emulator.aks_nsg(0);
    let aks_before: Vec<Value> = [
        "k8s-azure-lb_allow_IPv4_443",
        "k8s-azure-lb_allow_IPv4_80",
        "aks-allow-outbound",
    ]
    .iter()
    .map(|n| emulator.rule(n).1)
    .collect();
    let dir = scratch("shared");
    let p = policy(&dir, true);
    let p = p.to_str().unwrap();
    let plan = emulator.perimeter(&["plan", p, "--detailed-exitcode"]);
    assert_eq!(code(&plan), 2, "{}", text(&plan));
    assert!(
        text(&plan).contains("(shared: 3 rule(s) of others left alone)"),
        "{}",
        text(&plan)
    );
    assert!(
        text(&plan).contains("write: 12 rule write(s), in order"),
        "{}",
        text(&plan)
    );
    emulator.reset_calls();
    let apply = emulator.perimeter(&["apply", p, "--auto-approve"]);
    assert_eq!(code(&apply), 0, "{}", text(&apply));
    assert_eq!(
        emulator.count(&["PUT networkSecurityGroups.createOrUpdate"]),
        0,
        "never the whole NSG"
    );
    assert_eq!(emulator.count(&["PUT securityRules.createOrUpdate"]), 12);
    let aks_after: Vec<Value> = [
        "k8s-azure-lb_allow_IPv4_443",
        "k8s-azure-lb_allow_IPv4_80",
        "aks-allow-outbound",
    ]
    .iter()
    .map(|n| emulator.rule(n).1)
    .collect();
    assert_eq!(aks_after, aks_before, "AKS's rules are untouched");
    assert_eq!(rule_names(&emulator.nsg().1).len(), 15);
    // Nothing left to write, but AKS's load-balancer rule at priority 500 lets the internet
    // reach the nodes on 443 before the policy's deny: a violation (the AKS case).
    let again = emulator.perimeter(&["plan", p, "--detailed-exitcode"]);
    assert_eq!(code(&again), 2, "{}", text(&again));
    assert!(
        // (ARM names are case-insensitive; perimeter compares and shows them lower-cased.)
        text(&again).contains("! security rule k8s-azure-lb_allow_ipv4_443 of NSG aks-workers on subnet aks-vnet/aks-nodes (not managed by perimeter; for network interface aks-node-0, aks-node-1) Inbound Allow Tcp 443 from Internet"),
        "{}",
        text(&again)
    );
    assert!(
        text(&again).contains("the policy says deny"),
        "{}",
        text(&again)
    );
    let changes = emulator.perimeter(&["plan", p, "--detailed-exitcode", "--fail-on", "changes"]);
    assert_eq!(code(&changes), 0, "{}", text(&changes));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn out_of_band_changes_are_drift_and_apply_repairs_them() {
    let emulator = Emulator::start();
    emulator.aks_nsg(0);
    let dir = scratch("drift");
    let p = policy(&dir, true);
    let p = p.to_str().unwrap();
    assert_eq!(
        code(&emulator.perimeter(&["apply", p, "--auto-approve"])),
        0
    );
    // Someone opens ssh to the internet in perimeter's rule and deletes the kubelet rule.
    let (_, mut ssh) = emulator.rule("aks-workers-in-ssh-tcp");
    ssh["properties"]["sourceAddressPrefix"] = json!("Internet");
    emulator.put_rule("aks-workers-in-ssh-tcp", ssh["properties"].clone());
    let (status, _) = emulator.arm(
        "DELETE",
        &format!(
            "{}/securityRules/aks-workers-in-kubelet-tcp?api-version=2024-05-01",
            nsg_path()
        ),
        None,
    );
    assert_eq!(status, 202);

    let drift = emulator.perimeter(&["drift", p, "--format", "json"]);
    assert_eq!(code(&drift), 2, "{}", text(&drift));
    let report: Value = serde_json::from_slice(&drift.stdout).expect("json");
    assert_eq!(
        report["counts"],
        json!({"missing": 1, "unexpected": 0, "modified": 1, "violation": 2, "posture": 0}),
        "{report:#}"
    );
    let keys: Vec<&str> = report["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["key"].as_str())
        .collect();
    assert!(
        keys.contains(
            &format!("azure/{SUB}/rg-aks-prod/aks-workers/rule/aks-workers-in-ssh-tcp").as_str()
        ),
        "{keys:?}"
    );

    let repair = emulator.perimeter(&["apply", p, "--auto-approve"]);
    assert_eq!(code(&repair), 0, "{}", text(&repair));
    assert!(
        text(&repair).contains("1 added, 1 changed, 0 destroyed"),
        "{}",
        text(&repair)
    );
    assert_eq!(
        emulator.rule("aks-workers-in-ssh-tcp").1["properties"]["sourceAddressPrefix"],
        "10.240.20.0/27"
    );
    // What is left is AKS's rules, which perimeter reports and never changes.
    assert_eq!(code(&emulator.perimeter(&["drift", p])), 2);
    assert_eq!(
        code(&emulator.perimeter(&["drift", p, "--fail-on", "changes"])),
        0
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_stale_saved_plan_writes_nothing() {
    let emulator = Emulator::start();
    let dir = scratch("stale");
    let p = policy(&dir, false);
    let p = p.to_str().unwrap();
    assert_eq!(
        code(&emulator.perimeter(&["apply", p, "--auto-approve"])),
        0
    );
    let before = std::fs::read_to_string(p).unwrap();
    std::fs::write(
        p,
        before.replace(
            "monitoring: [10.240.10.0/24]",
            "monitoring: [10.240.11.0/24]",
        ),
    )
    .unwrap();
    let plan_file = dir.join("plan.json");
    let plan = emulator.perimeter(&[
        "plan",
        p,
        "--out",
        plan_file.to_str().unwrap(),
        "--detailed-exitcode",
    ]);
    assert_eq!(code(&plan), 2, "{}", text(&plan));
    // Someone adds a rule to the NSG perimeter owns before the plan is applied.
    emulator.put_rule(
        "hand-made",
        aks_rule("hand-made", 3000, "Inbound")["properties"].clone(),
    );
    emulator.reset_calls();
    let apply = emulator.perimeter(&["apply", plan_file.to_str().unwrap()]);
    assert_eq!(code(&apply), 1, "{}", text(&apply));
    assert!(
        text(&apply).contains("saved plan is stale; nothing was written"),
        "{}",
        text(&apply)
    );
    assert_eq!(emulator.writes(), 0);
    assert_eq!(emulator.rule("hand-made").0, 200);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn throttling_and_outages_are_retried_until_apply_converges() {
    let emulator = Emulator::start();
    emulator.aks_nsg(0);
    let faults = json!([
        {"method": "PUT", "path_contains": "/securityRules/", "times": 3, "status": 429, "retry_after_seconds": 0},
        {"method": "PUT", "path_contains": "/securityRules/", "skip": 5, "times": 1, "status": 503, "after_commit": true},
        {"method": "GET", "path_contains": "/operations/", "times": 2, "status": 500},
    ]);
    let (status, _) = emulator.call("POST", "/_emulator/faults", Some(faults));
    assert_eq!(status, 200);
    let (status, _) = emulator.call(
        "POST",
        "/_emulator/azure/operations",
        Some(json!({"polls_until_done": 2})),
    );
    assert_eq!(status, 200);
    let dir = scratch("faults");
    let p = policy(&dir, true);
    let p = p.to_str().unwrap();
    let apply = emulator.perimeter(&["apply", p, "--auto-approve"]);
    assert_eq!(code(&apply), 0, "{}", text(&apply));
    assert!(
        text(&apply).contains("request(s) retried"),
        "{}",
        text(&apply)
    );
    let (_, pending) = emulator.call("GET", "/_emulator/faults", None);
    assert_eq!(pending["pending"], 0, "{pending}");
    assert_eq!(
        code(&emulator.perimeter(&["plan", p, "--detailed-exitcode", "--fail-on", "changes"])),
        0
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn taken_priorities_and_rule_overflow_are_refused_at_plan_time() {
    let emulator = Emulator::start();
    emulator.aks_nsg(0);
    // Someone else sits on the priority of perimeter's first inbound rule.
    emulator.put_rule(
        "someone-else",
        aks_rule("someone-else", 110, "Inbound")["properties"].clone(),
    );
    let dir = scratch("limits");
    let p = policy(&dir, true);
    let p = p.to_str().unwrap();
    emulator.reset_calls();
    let plan = emulator.perimeter(&["plan", p]);
    assert_eq!(code(&plan), 1, "{}", text(&plan));
    assert!(
        text(&plan)
            .contains("priority 110 Inbound in NSG `aks-workers` is taken by rule `someone-else`"),
        "{}",
        text(&plan)
    );
    let apply = emulator.perimeter(&["apply", p, "--auto-approve"]);
    assert_eq!(code(&apply), 1);
    assert_eq!(emulator.writes(), 0);

    // 995 rules of others leave no room for perimeter's 12.
    let crowded = Emulator::start();
    crowded.aks_nsg(992);
    crowded.reset_calls();
    let plan = crowded.perimeter(&["plan", p]);
    assert_eq!(code(&plan), 1, "{}", text(&plan));
    assert!(
        text(&plan).contains("would hold 1007 rules; Azure allows 1000 per NSG"),
        "{}",
        text(&plan)
    );
    assert_eq!(crowded.writes(), 0);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_service_principal_gets_its_token_from_the_authority_host() {
    let emulator = Emulator::start();
    let dir = scratch("principal");
    let p = policy(&dir, false);
    // No static token: the client-secret flow asks the (emulated) Entra ID token endpoint.
    let plan = emulator.0.perimeter(
        &["plan", p.to_str().unwrap()],
        &[
            ("PERIMETER_AZURE_ENDPOINT", emulator.url()),
            ("AZURE_AUTHORITY_HOST", emulator.url()),
            (
                "AZURE_TENANT_ID",
                "00000000-0000-0000-0000-0000000000aa".to_string(),
            ),
            ("AZURE_CLIENT_ID", "perimeter-ci".to_string()),
            ("AZURE_CLIENT_SECRET", "s3cret".to_string()),
        ],
    );
    assert_eq!(code(&plan), 0, "{}", text(&plan));
    assert!(
        text(&plan).contains("API calls: 6"),
        "one token, then five reads (cached token):\n{}",
        text(&plan)
    );
    assert_eq!(emulator.count(&["POST entra.token"]), 1);
    let _ = std::fs::remove_dir_all(dir);
}

/// Sets `value` at every object key `key` under `v` (a plan's rule field, wherever it is).
fn set_everywhere(v: &mut Value, key: &str, value: &Value) -> usize {
    match v {
        Value::Object(o) => {
            let mut n = 0;
            for (k, child) in o.iter_mut() {
                if k == key && child.is_string() {
                    *child = value.clone();
                    n += 1;
                } else {
                    n += set_everywhere(child, key, value);
                }
            }
            n
        }
        Value::Array(a) => a.iter_mut().map(|c| set_everywhere(c, key, value)).sum(),
        _ => 0,
    }
}

/// An NSG of another team in the same resource group, without perimeter's tag; its path.
fn team_nsg(emulator: &Emulator) -> String {
    let team = format!(
        "/subscriptions/{SUB}/resourceGroups/rg-aks-prod/providers/Microsoft.Network/networkSecurityGroups/team-nsg?api-version=2024-05-01"
    );
    let (status, body) = emulator.arm(
        "PUT",
        &team,
        Some(json!({"location": "westeurope", "properties": {"securityRules": [aks_rule("team-https", 200, "Inbound")]}})),
    );
    assert!(status == 200 || status == 201, "{body}");
    team
}

/// Edits of an unsigned plan: aimed at an NSG perimeter does not own, or every source widened.
fn unsigned_edits_are_refused(emulator: &Emulator, saved: &Value, edited: &Path) {
    let write = |doc: &Value| std::fs::write(edited, doc.to_string()).unwrap();
    // 1. Aimed at an NSG perimeter does not own.
    let mut doc = saved.clone();
    assert!(set_everywhere(&mut doc["azure"][0], "nsg", &json!("team-nsg")) >= 2);
    doc.as_object_mut().unwrap().remove("signature");
    write(&doc);
    emulator.reset_calls();
    let apply = emulator.perimeter(&["apply", edited.to_str().unwrap()]);
    assert_eq!(code(&apply), 1, "{}", text(&apply));
    assert!(
        text(&apply).contains("azure[0].target.nsg: the plan file has \"team-nsg\""),
        "{}",
        text(&apply)
    );
    // 2. Every source widened to any address.
    let mut doc = saved.clone();
    assert!(set_everywhere(&mut doc["azure"][0], "sourceAddressPrefix", &json!("*")) > 0);
    doc.as_object_mut().unwrap().remove("signature");
    write(&doc);
    let apply = emulator.perimeter(&["apply", edited.to_str().unwrap()]);
    assert_eq!(code(&apply), 1, "{}", text(&apply));
    assert!(
        text(&apply).contains("differs from a fresh plan"),
        "{}",
        text(&apply)
    );
}

#[test]
fn an_edited_or_unsigned_plan_file_writes_nothing() {
    let emulator = Emulator::start();
    let team = team_nsg(&emulator);
    let team_before = emulator.arm("GET", &team, None).1;
    let dir = scratch("edited");
    let p = policy(&dir, false);
    let p = p.to_str().unwrap();
    let plan_file = dir.join("plan.json");
    let key = ("PERIMETER_PLAN_KEY", "k3y-for-this-test-only".to_string());
    let with_key = |args: &[&str]| {
        emulator.0.perimeter(
            args,
            &[
                ("PERIMETER_AZURE_ENDPOINT", emulator.url()),
                ("PERIMETER_AZURE_TOKEN", "test-token".to_string()),
                key.clone(),
            ],
        )
    };
    let plan = with_key(&["plan", p, "--out", plan_file.to_str().unwrap()]);
    assert_eq!(code(&plan), 0, "{}", text(&plan));
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&plan_file).unwrap()).unwrap();
    assert!(
        saved["signature"]
            .as_str()
            .is_some_and(|s| s.starts_with("hmac-sha256:")),
        "{saved:#}"
    );
    assert!(!text(&plan).contains("k3y-for-this-test-only"));

    let edited = dir.join("edited.json");
    let write = |doc: &Value| std::fs::write(&edited, doc.to_string()).unwrap();
    unsigned_edits_are_refused(&emulator, &saved, &edited);
    // 3. Signed, then edited: the signature catches it before anything is read.
    let mut doc = saved.clone();
    doc["summary"]["add"] = json!(0);
    write(&doc);
    let apply = with_key(&["apply", edited.to_str().unwrap()]);
    assert_eq!(code(&apply), 1, "{}", text(&apply));
    assert!(
        text(&apply).contains("signature does not verify"),
        "{}",
        text(&apply)
    );
    // 4. The key is set but the plan is unsigned.
    let mut doc = saved.clone();
    doc.as_object_mut().unwrap().remove("signature");
    write(&doc);
    let apply = with_key(&["apply", edited.to_str().unwrap()]);
    assert_eq!(code(&apply), 1, "{}", text(&apply));
    assert!(
        text(&apply).contains("carries no signature"),
        "{}",
        text(&apply)
    );
    assert_eq!(emulator.writes(), 0, "a refused apply wrote something");
    assert_eq!(emulator.nsg().0, 404, "the owned NSG was not created");
    assert_eq!(emulator.arm("GET", &team, None).1, team_before);

    // The signed plan as it was made, re-indented by a tool, applies with the key.
    std::fs::write(&edited, serde_json::to_string_pretty(&saved).unwrap()).unwrap();
    let apply = with_key(&["apply", edited.to_str().unwrap()]);
    assert_eq!(code(&apply), 0, "{}", text(&apply));
    assert!(!text(&apply).contains("k3y-for-this-test-only"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_error_that_echoes_the_request_headers_prints_no_credential() {
    let emulator = Emulator::start();
    // A token shaped like an Entra ID token, and a server that puts the request's headers in
    // its error message.
    let token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwczovL21hbmFnZW1lbnQifQ.c2lnbmF0dXJlLXNlY3JldA";
    let (status, _) = emulator.call(
        "POST",
        "/_emulator/faults",
        Some(json!({"method": "GET", "status": 400, "echo_headers": true})),
    );
    assert_eq!(status, 200);
    let dir = scratch("echo");
    let p = policy(&dir, false);
    let plan = emulator.0.perimeter(
        &["plan", p.to_str().unwrap()],
        &[
            ("PERIMETER_AZURE_ENDPOINT", emulator.url()),
            ("PERIMETER_AZURE_TOKEN", token.to_string()),
        ],
    );
    assert_eq!(code(&plan), 1, "{}", text(&plan));
    let out = text(&plan);
    assert!(
        out.contains("request headers"),
        "the echo reached perimeter: {out}"
    );
    assert!(!out.contains("c2lnbmF0dXJl"), "{out}");
    assert!(!out.contains("eyJ0eXAi"), "{out}");
    assert!(out.contains("[redacted]"), "{out}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_conditional_put_whose_answer_was_lost_is_done_when_the_nsg_is_as_planned() {
    let emulator = Emulator::start();
    // The PUT creating the NSG takes effect but its answer is lost; the retry (with
    // If-None-Match: *) is refused 412 because the first attempt created it.
    let faults = json!([{"method": "PUT", "path_contains": "/networkSecurityGroups/", "times": 1, "status": 503, "after_commit": true}]);
    let (status, _) = emulator.call("POST", "/_emulator/faults", Some(faults));
    assert_eq!(status, 200);
    let dir = scratch("lost-put");
    let p = policy(&dir, false);
    let p = p.to_str().unwrap();
    let apply = emulator.perimeter(&["apply", p, "--auto-approve"]);
    assert_eq!(code(&apply), 0, "{}", text(&apply));
    assert!(
        text(&apply).contains("already as planned"),
        "{}",
        text(&apply)
    );
    assert_eq!(
        emulator.count(&["PUT networkSecurityGroups.createOrUpdate"]),
        2
    );
    let again = emulator.perimeter(&["plan", p, "--detailed-exitcode"]);
    assert_eq!(code(&again), 0, "{}", text(&again));
    let _ = std::fs::remove_dir_all(dir);
}
