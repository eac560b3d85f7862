use perimeter_core::SourceFile;

use perimeter_core::Verdict;
use perimeter_core::violation::Effect;

use crate::model::ProtocolPorts;

use super::*;
use crate::state::FirewallQuota;
use crate::transition::GcpTransition;

const POLICY: &str = "apiVersion: perimeter/v1
kind: NodePerimeter
name: web
private: true
networks:
  admins: [10.50.0.0/24]
ingress:
  - {name: ssh, from: admins, services: [ssh]}
  - {name: kubelet, from: self, services: [kubelet]}
targets:
  gcp:
    - {project: proj-1, network: vpc, target_tags: [nodes], node_ranges: [10.10.0.0/20]}
";

fn desired() -> GcpDesired {
    let intent = perimeter_core::policy::load(&SourceFile::new("t.yaml", POLICY)).expect("policy");
    let compiled = crate::compile(&intent, &intent.targets.gcp[0]).expect("compiles");
    GcpDesired::from_compiled(&compiled)
}

fn observed(owned: Vec<Firewall>) -> ObservedGcp {
    ObservedGcp {
        network_exists: true,
        owned,
        ..ObservedGcp::default()
    }
}

fn foreign(
    name: &str,
    priority: u16,
    allow: bool,
    ranges: &[&str],
    port: &str,
    tags: &[&str],
) -> Firewall {
    let pp = vec![ProtocolPorts {
        ip_protocol: "tcp".into(),
        ports: vec![port.into()],
    }];
    Firewall {
        name: name.into(),
        description: String::new(),
        network: "vpc".into(),
        priority,
        direction: "INGRESS".into(),
        source_ranges: ranges.iter().map(|r| r.to_string()).collect(),
        source_tags: vec![],
        destination_ranges: vec![],
        target_tags: tags.iter().map(|t| t.to_string()).collect(),
        allowed: if allow { pp.clone() } else { vec![] },
        denied: if allow { vec![] } else { pp },
        disabled: false,
        source_service_accounts: vec![],
        target_service_accounts: vec![],
    }
}

#[test]
fn an_empty_network_gets_every_rule_inserted() {
    let d = desired();
    let p = plan(&d, vec![], &observed(vec![]), "web").unwrap();
    assert_eq!(p.changes.len(), d.firewalls.len());
    assert!(
        p.changes
            .iter()
            .all(|c| c.action == Action::Create && c.method == WriteMethod::Insert)
    );
    assert_eq!(p.summary().add, d.firewalls.len());
}

#[test]
fn a_converged_network_plans_nothing() {
    let d = desired();
    let p = plan(&d, vec![], &observed(d.firewalls.clone()), "web").unwrap();
    assert!(p.is_empty(), "{:?}", p.changes);
}

#[test]
fn changed_lists_are_patched_but_clearing_or_switching_is_a_put() {
    let d = desired();
    let ssh = d
        .firewalls
        .iter()
        .position(|f| f.name == "web-i-ssh")
        .expect("ssh rule");

    let mut moved = d.firewalls.clone();
    moved[ssh].source_ranges = vec!["10.99.0.0/24".into()];
    let p = plan(&d, vec![], &observed(moved), "web").unwrap();
    assert_eq!(p.changes.len(), 1);
    assert_eq!(
        (p.changes[0].action, p.changes[0].method),
        (Action::Update, WriteMethod::Patch)
    );

    let mut flipped = d.firewalls.clone();
    flipped[ssh].denied = std::mem::take(&mut flipped[ssh].allowed);
    let p = plan(&d, vec![], &observed(flipped), "web").unwrap();
    assert_eq!(p.changes[0].method, WriteMethod::Update);

    // The observed rule has source tags the desired one lacks: PATCH could not clear them.
    let mut tagged = d.firewalls.clone();
    tagged[ssh].source_tags = vec!["bastion".into()];
    let p = plan(&d, vec![], &observed(tagged), "web").unwrap();
    assert_eq!(p.changes[0].method, WriteMethod::Update);
}

#[test]
fn owned_rules_the_policy_no_longer_has_are_deleted_last() {
    let d = desired();
    let mut extra = d.firewalls.clone();
    let mut old = extra[0].clone();
    old.name = "web-i-old".into();
    extra.push(old);
    extra.remove(1);
    let p = plan(&d, vec![], &observed(extra), "web").unwrap();
    let actions: Vec<_> = p.changes.iter().map(|c| c.action).collect();
    assert_eq!(actions, vec![Action::Create, Action::Delete]);
    assert_eq!(p.changes[1].method, WriteMethod::Delete);
}

#[test]
fn a_rule_with_our_name_but_not_our_marker_is_refused() {
    let d = desired();
    let mut o = observed(vec![]);
    o.foreign = vec![foreign("web-i-ssh", 1000, true, &["0.0.0.0/0"], "22", &[])];
    let err = plan(&d, vec![], &o, "web").unwrap_err();
    assert!(
        matches!(err, PlanError::NotOwned { ref name, .. } if name == "web-i-ssh"),
        "{err}"
    );
    // A foreign rule with our prefix that the policy does not want is left alone (and still
    // checked against the policy like any other foreign rule).
    o.foreign = vec![foreign("web-i-debug", 10, true, &["0.0.0.0/0"], "22", &[])];
    let p = plan(&d, vec![], &o, "web").unwrap();
    assert_eq!(p.violations.len(), 1);
    assert!(p.violations[0].object.contains("web-i-debug"));
}

#[test]
fn the_fingerprint_ignores_foreign_rules_the_policy_does_not_collide_with() {
    let d = desired();
    let mut o = observed(d.firewalls.clone());
    let before = observed_fingerprint(&o, &d).unwrap();
    o.foreign = vec![foreign(
        "gke-hc",
        1000,
        true,
        &["35.191.0.0/16"],
        "10256",
        &[],
    )];
    assert_eq!(
        observed_fingerprint(&o, &d).unwrap(),
        before,
        "GKE's churn does not make plans stale"
    );
    o.owned[0].priority += 1;
    assert_ne!(observed_fingerprint(&o, &d).unwrap(), before);
}

#[test]
fn an_owned_rule_broadened_with_service_accounts_is_replaced() {
    let d = desired();
    let ssh = d
        .firewalls
        .iter()
        .position(|f| f.name == "web-i-ssh")
        .expect("ssh rule");
    let mut broadened = d.firewalls.clone();
    broadened[ssh].source_service_accounts = vec!["ci@p.iam.gserviceaccount.com".into()];
    let p = plan(&d, vec![], &observed(broadened), "web").unwrap();
    assert_eq!(p.changes.len(), 1);
    assert_eq!(
        p.changes[0].method,
        WriteMethod::Update,
        "a patch cannot clear the list"
    );
}

#[test]
fn quota_is_checked_per_project_at_the_peak() {
    let d = desired();
    let n = d.firewalls.len() as u64;
    let mut o = observed(vec![]);
    // The peak is usage + adds + the lease rule apply holds while it writes.
    o.quota = Some(FirewallQuota {
        limit: 10 + n,
        usage: 10,
    });
    let p = plan(&d, vec![], &o, "web").unwrap();
    let err = check_quotas(std::slice::from_ref(&p)).unwrap_err();
    assert!(
        matches!(err, PlanError::Quota { needed, limit, .. } if needed == 11 + n && limit == 10 + n),
        "{err}"
    );
    o.quota = Some(FirewallQuota {
        limit: 11 + n,
        usage: 10,
    });
    let p = plan(&d, vec![], &o, "web").unwrap();
    assert!(check_quotas(std::slice::from_ref(&p)).is_ok());
    // Two networks of one project share the quota: each fits, together they do not.
    let mut other = p.clone();
    other.target.network = "vpc-2".into();
    assert!(check_quotas(&[p, other]).is_err());
    // Nothing to add: a full project is not a reason to refuse.
    let mut full = observed(d.firewalls.clone());
    full.quota = Some(FirewallQuota { limit: 5, usage: 5 });
    let p = plan(&d, vec![], &full, "web").unwrap();
    assert!(check_quotas(&[p]).is_ok());
}

#[test]
fn one_target_per_project() {
    let d = desired();
    let mut second = d.target.clone();
    second.network = "vpc-2".into();
    assert!(check_one_target_per_project([&d.target]).is_ok());
    let err = check_one_target_per_project([&d.target, &second]).unwrap_err();
    assert!(matches!(err, PlanError::SharedProject { .. }), "{err}");
}

#[test]
fn a_missing_network_is_refused() {
    let err = plan(&desired(), vec![], &ObservedGcp::default(), "web").unwrap_err();
    assert!(matches!(err, PlanError::NetworkMissing { .. }));
    // Retiring the policy from a network that is gone has nothing to do.
    let p = plan(&desired().retired(), vec![], &ObservedGcp::default(), "web").unwrap();
    assert!(p.is_empty());
}

#[test]
fn retiring_deletes_every_owned_rule_and_reports_nothing_against_an_empty_policy() {
    let d = desired();
    let mut o = observed(d.firewalls.clone());
    o.foreign = vec![foreign(
        "gke-open-ssh",
        100,
        true,
        &["0.0.0.0/0"],
        "22",
        &[],
    )];
    let p = plan(&d.retired(), vec![], &o, "web").unwrap();
    assert_eq!(p.changes.len(), d.firewalls.len());
    assert!(p.changes.iter().all(|c| c.action == Action::Delete));
    assert!(p.changes.iter().all(|c| !c.name.starts_with("gke-")));
    assert!(p.violations.is_empty());
}

#[test]
fn foreign_rules_that_change_a_decision_are_violations_with_their_exact_region() {
    let d = desired();
    let mut o = observed(d.firewalls.clone());
    o.foreign = vec![
        // Opens ssh to the world at a better priority than the policy's rules.
        foreign("gke-open-ssh", 100, true, &["0.0.0.0/0"], "22", &[]),
        // Same, but for instances with another tag: not our nodes.
        foreign("other-team", 100, true, &["0.0.0.0/0"], "22", &["db"]),
        // Allows what the policy allows anyway.
        foreign("agrees", 100, true, &["10.50.0.0/24"], "22", &["nodes"]),
        // Denies admin ssh before the policy's allow: a violation the other way.
        foreign("blocks-admins", 10, false, &["10.50.0.0/24"], "22", &[]),
    ];
    let p = plan(&d, vec![], &o, "web").unwrap();
    let lines: Vec<String> = p.violations.iter().map(|v| v.line()).collect();
    assert_eq!(p.violations.len(), 2, "{lines:#?}");
    let (blocks, opens) = (&p.violations[0], &p.violations[1]);
    assert!(blocks.object.contains("blocks-admins"), "{lines:#?}");
    assert_eq!(
        (blocks.effect, blocks.policy),
        (Effect::Blocks, Verdict::Allow)
    );
    assert_eq!(blocks.regions, ["ingress tcp 22 from 10.50.0.0/24"]);
    assert!(opens.object.contains("gke-open-ssh"));
    assert_eq!((opens.effect, opens.policy), (Effect::Opens, Verdict::Deny));
    // The admins' ssh is allowed either way: the region is the rest of the world.
    assert_eq!(
        opens.regions,
        ["ingress tcp 22 from 0.0.0.0/0 except 10.50.0.0/24"]
    );
    assert!(p.is_empty(), "foreign rules are never changed");
}

#[test]
fn a_foreign_deny_around_a_policy_allow_is_found_far_from_its_corners() {
    // The case: `deny all from 10.0.0.0/8 @900` against an allow for 10.0.5.0/24:6443.
    // Probing the foreign rule's corner addresses on fixed ports never met the allow.
    let policy = POLICY
        .replace("10.50.0.0/24", "10.0.5.0/24")
        .replace("[ssh]", "[tcp/6443]");
    let intent =
        perimeter_core::policy::load(&SourceFile::new("t.yaml", policy.as_str())).expect("policy");
    let compiled = crate::compile(&intent, &intent.targets.gcp[0]).expect("compiles");
    let d = GcpDesired::from_compiled(&compiled);
    let mut o = observed(d.firewalls.clone());
    let mut deny_all = foreign("corp-deny", 900, false, &["10.0.0.0/8"], "0", &[]);
    deny_all.denied = vec![ProtocolPorts {
        ip_protocol: "all".into(),
        ports: vec![],
    }];
    o.foreign = vec![deny_all];
    let p = plan(&d, vec![], &o, "web").unwrap();
    let v: Vec<&Violation> = p.violations.iter().collect();
    assert_eq!(v.len(), 1, "{v:#?}");
    assert_eq!(v[0].effect, Effect::Blocks);
    assert!(
        v[0].regions
            .iter()
            .any(|r| r == "ingress tcp 6443 from 10.0.5.0/24"),
        "{:#?}",
        v[0].regions
    );
}

/// The repro of issue 11: B moves `ssh` from 1010 to 1000 and adds a deny at 1010. Inserting
/// the deny before patching ssh ties them at 1010 and the deny wins the tie.
fn ssh_moves_up_under_a_new_deny() -> (GcpDesired, ObservedGcp) {
    let mut d = desired();
    let owned = |mut f: Firewall| {
        f.description = "perimeter:web".into();
        f
    };
    let ssh = |priority| {
        owned(foreign(
            "web-i-ssh",
            priority,
            true,
            &["10.70.3.0/24"],
            "22",
            &["nodes"],
        ))
    };
    let deny = owned(foreign(
        "web-i-deny",
        1010,
        false,
        &["10.70.0.0/16"],
        "0-65535",
        &["nodes"],
    ));
    d.firewalls = vec![ssh(1000), deny];
    (d, observed(vec![ssh(1010)]))
}

#[test]
fn a_rule_moving_up_lands_before_the_deny_that_takes_its_place() {
    let (d, o) = ssh_moves_up_under_a_new_deny();
    let p = plan(&d, vec![], &o, "web").unwrap();
    let order: Vec<(&str, usize)> = p
        .changes
        .iter()
        .map(|c| (c.name.as_str(), c.step))
        .collect();
    assert_eq!(order, vec![("web-i-ssh", 1), ("web-i-deny", 2)]);
    assert_eq!(p.steps(), 2);
    assert!(
        crate::render_plan::text(&p, false).contains("every intermediate state checked: 2 steps")
    );
}

#[test]
fn the_old_insert_first_order_is_proven_unsafe() {
    let (d, o) = ssh_moves_up_under_a_new_deny();
    let p = plan(&d, vec![], &o, "web").unwrap();
    let world = GcpTransition {
        node_tags: &d.target.target_tags,
        node_service_accounts: &d.target.service_accounts,
        node_ranges: &d.target.node_ranges,
    };
    let old = o.owned.clone();
    let insert = p.changes.iter().find(|c| c.name == "web-i-deny").unwrap();
    let patch = p.changes.iter().find(|c| c.name == "web-i-ssh").unwrap();
    let err =
        perimeter_core::transition::check(&world, &old, &d.firewalls, &[vec![insert], vec![patch]])
            .unwrap_err();
    assert!(err.to_string().contains("step 1 (insert firewall web-i-deny at priority 1010) would deny ingress tcp 22 from 10.70.3.0"), "{err}");
    // Run at once, as the old phases did for patches, the two are refused too.
    let err = perimeter_core::transition::check(&world, &old, &d.firewalls, &[vec![patch, insert]])
        .unwrap_err();
    assert!(err.to_string().starts_with("step 1 "), "{err}");
}

#[test]
fn rules_that_target_service_accounts_are_checked_against_the_nodes_accounts() {
    let with_accounts = POLICY.replace(
        "node_ranges: [10.10.0.0/20]}",
        "node_ranges: [10.10.0.0/20], service_accounts: [nodes@proj-1.iam.gserviceaccount.com]}",
    );
    let load = |text: &str| {
        let intent =
            perimeter_core::policy::load(&SourceFile::new("t.yaml", text)).expect("policy");
        GcpDesired::from_compiled(
            &crate::compile(&intent, &intent.targets.gcp[0]).expect("compiles"),
        )
    };
    let for_account = |account: &str| {
        let mut f = foreign("open-ssh", 100, true, &["0.0.0.0/0"], "22", &[]);
        f.target_service_accounts = vec![account.into()];
        f
    };
    let declared = load(&with_accounts);
    let mut o = observed(declared.firewalls.clone());
    o.foreign = vec![for_account("batch@proj-1.iam.gserviceaccount.com")];
    let p = plan(&declared, vec![], &o, "web").unwrap();
    assert!(
        p.violations.is_empty(),
        "another account's rule: {:#?}",
        p.violations
    );
    o.foreign = vec![for_account("nodes@proj-1.iam.gserviceaccount.com")];
    let p = plan(&declared, vec![], &o, "web").unwrap();
    assert_eq!(p.violations.len(), 1);
    assert!(p.findings.is_empty());
    // Not declared: assumed to apply, and said so.
    let undeclared = desired();
    let mut o = observed(undeclared.firewalls.clone());
    o.foreign = vec![for_account("batch@proj-1.iam.gserviceaccount.com")];
    let p = plan(&undeclared, vec![], &o, "web").unwrap();
    assert_eq!(p.violations.len(), 1);
    assert_eq!(p.findings[0].code, "assumed-service-account");
}

#[test]
fn a_regional_policy_comes_after_the_global_one_and_only_in_its_region() {
    use crate::firewall_policy::{FirewallPolicy, PolicyKind, PolicyRule};
    let policy = |name: &str, kind, action: &str| FirewallPolicy {
        name: name.into(),
        label: name.into(),
        kind,
        rules: vec![PolicyRule {
            priority: if kind == PolicyKind::Network { 10 } else { 1 },
            action: action.into(),
            direction: "INGRESS".into(),
            disabled: false,
            src_ip_ranges: vec!["0.0.0.0/0".into()],
            dest_ip_ranges: vec![],
            layer4: vec![ProtocolPorts {
                ip_protocol: "tcp".into(),
                ports: vec!["22".into()],
            }],
            target_service_accounts: vec![],
            target_secure_tags: vec![],
            src_secure_tags: vec![],
        }],
    };
    let d = desired();
    let mut o = observed(d.firewalls.clone());
    // The global policy denies ssh from anywhere before the region's allow is reached.
    o.firewall_policies = vec![policy("global-deny", PolicyKind::Network, "deny")];
    o.regional_policies = [(
        "us-central1".to_string(),
        vec![policy("central-open", PolicyKind::NetworkRegional, "allow")],
    )]
    .into();
    let p = plan(&d, vec![], &o, "web").unwrap();
    assert!(p.violations.is_empty(), "{:#?}", p.violations);
    // Without the global deny the region's allow decides what the VPC rules leave open.
    o.firewall_policies.clear();
    o.regional_policies
        .insert("europe-west1".to_string(), Vec::new());
    let p = plan(&d, vec![], &o, "web").unwrap();
    assert_eq!(p.violations.len(), 1, "{:#?}", p.violations);
    assert!(
        p.violations[0]
            .object
            .contains("regional network firewall policy central-open"),
        "{:#?}",
        p.violations
    );
}
