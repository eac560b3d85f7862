//! AWS: plans replayed write by write with the evaluator.

use crate::*;
use perimeter_aws::evaluate::{AwsWorld, decide};
use perimeter_aws::model::{NaclEntry, NetworkAcl, SecurityGroup, SgRule};
use perimeter_aws::{
    AwsDesired, AwsTargetPlan, ObservedAws, ObservedNetworkAcl, ObservedSecurityGroup,
    ObservedSgRule, SubnetAssociation,
};

#[derive(Clone)]
struct State {
    rules: Vec<SgRule>,
    entries: Vec<NaclEntry>,
    associated: bool,
}

/// Decides packets in a state (builds the model objects once, not per packet).
fn decider(s: &State) -> impl Fn(&Packet) -> Verdict + '_ {
    let group = SecurityGroup {
        group_name: String::new(),
        vpc_id: String::new(),
        description: String::new(),
        rules: s.rules.clone(),
    };
    let acl = NetworkAcl {
        vpc_id: String::new(),
        subnets: vec![],
        entries: s.entries.clone(),
    };
    move |p| {
        decide(
            &AwsWorld {
                security_group: &group,
                other_groups: &[],
                node_groups: &[],
                network_acl: s.associated.then_some(&acl),
                metadata_options: None,
            },
            p,
        )
    }
}

/// The states apply passes through, in its order (apply.rs): authorize ingress, egress;
/// revoke ingress, egress; the NACL entries in the plan's order; the association.
fn states(old: &State, plan: &AwsTargetPlan) -> Vec<(String, State)> {
    let mut out = Vec::new();
    let mut s = old.clone();
    let sg = &plan.security_group.changes;
    for (action, verb) in [(Action::Create, "authorize"), (Action::Delete, "revoke")] {
        for d in Direction::BOTH {
            let rules: Vec<&SgRule> = sg
                .iter()
                .filter(|c| c.action == action)
                .filter_map(|c| {
                    if action == Action::Create {
                        c.after.as_ref()
                    } else {
                        c.before.as_ref()
                    }
                })
                .filter(|r| r.direction == d)
                .collect();
            if rules.is_empty() {
                continue;
            }
            if action == Action::Create {
                s.rules.extend(rules.iter().map(|r| (*r).clone()));
            } else {
                s.rules.retain(|r| !rules.contains(&r));
            }
            out.push((format!("{verb} {}", d.as_str()), s.clone()));
        }
    }
    if let Some(n) = &plan.network_acl {
        for c in &n.changes {
            match c.action {
                Action::Create => s.entries.push(c.after.clone().expect("entry")),
                Action::Delete => {
                    let e = c.before.as_ref().expect("entry");
                    s.entries
                        .retain(|x| (x.egress, x.rule_number) != (e.egress, e.rule_number));
                }
                Action::Update => panic!("NACL entries are never replaced in place"),
            }
            let mut seen = std::collections::BTreeSet::new();
            assert!(
                s.entries
                    .iter()
                    .all(|e| seen.insert((e.egress, e.rule_number))),
                "two entries share a number"
            );
            out.push((format!("nacl {:?}", c.action), s.clone()));
        }
        if !n.associate.is_empty() {
            s.associated = true;
            out.push(("associate".into(), s.clone()));
        }
    }
    out
}

pub(super) fn case(a: &Intent, b: &Intent, rng: &mut Rng, tally: &mut Tally) {
    // Group quotas are not the question here (deny rules subtracted from `internet` need
    // many group rules); the NACL quota is, since apply must stay under it at every step.
    let limits = perimeter_aws::Limits {
        sg_rules: usize::MAX,
        ..perimeter_aws::Limits::AWS_DEFAULT
    };
    let (Ok(ca), Ok(cb)) = (
        perimeter_aws::compile_with_limits(a, &a.targets.aws[0], limits),
        perimeter_aws::compile_with_limits(b, &b.targets.aws[0], limits),
    ) else {
        if std::env::var("PERIMETER_TRANSITION_VERBOSE").is_ok() {
            for x in [a, b] {
                if let Err(e) = perimeter_aws::compile_with_limits(x, &x.targets.aws[0], limits) {
                    eprintln!(
                        "AWSSKIP {:?}",
                        e.0.iter().map(|d| &d.code).collect::<Vec<_>>()
                    );
                }
            }
        }
        tally.skipped += 1;
        return;
    };
    let (da, db) = (
        AwsDesired::from_compiled(&ca, a.private),
        AwsDesired::from_compiled(&cb, b.private),
    );
    let subnet = "subnet-0123456789abcdef0".to_string();
    let observed = ObservedAws {
        security_group: Some(ObservedSecurityGroup {
            group_id: "sg-1".into(),
            rules: da
                .security_group
                .rules
                .iter()
                .enumerate()
                .map(|(i, r)| ObservedSgRule {
                    rule_id: format!("sgr-{i}"),
                    rule: r.clone(),
                })
                .collect(),
        }),
        network_acl: da.network_acl.as_ref().map(|n| ObservedNetworkAcl {
            network_acl_id: "acl-1".into(),
            entries: n.entries.clone(),
            subnets: vec![subnet.clone()],
        }),
        subnet_associations: vec![SubnetAssociation {
            subnet_id: subnet,
            association_id: "aclassoc-1".into(),
            network_acl_id: if da.network_acl.is_some() {
                "acl-1"
            } else {
                "acl-default"
            }
            .into(),
        }],
        ..ObservedAws::default()
    };
    let plan = match <perimeter_aws::Aws as Cloud>::plan(&db, Vec::new(), &observed, "gen") {
        Ok(p) => p,
        Err(e) if e.to_string().starts_with("no safe order") => {
            if std::env::var("PERIMETER_TRANSITION_VERBOSE").is_ok() {
                eprintln!("REFUSED {e}");
            }
            tally.refused += 1;
            return;
        }
        Err(e) => panic!("plan failed: {e}"),
    };
    let managed = db.network_acl.is_some();
    let old = State {
        rules: da.security_group.rules.clone(),
        entries: da
            .network_acl
            .as_ref()
            .map(|n| n.entries.clone())
            .unwrap_or_default(),
        associated: managed,
    };
    let new = State {
        rules: db.security_group.rules.clone(),
        entries: db
            .network_acl
            .as_ref()
            .map(|n| n.entries.clone())
            .unwrap_or_default(),
        associated: managed,
    };
    let probes = probes(rng, [a, b], &[]);
    let context = || {
        format!(
            "sg {:#?}\nnacl {:#?}",
            plan.security_group.changes, plan.network_acl
        )
    };
    let passed = states(&old, &plan);
    let (in_old, in_new) = (decider(&old), decider(&new));
    for (what, s) in &passed {
        assert_safe(
            &format!("aws {what}"),
            &probes,
            &in_old,
            &in_new,
            &decider(s),
            &context,
        );
        tally.states += 1;
    }
    tally.writes += passed.len();
    let end = passed.last().map_or(&old, |(_, s)| s);
    let in_end = decider(end);
    for p in &probes {
        assert_eq!(
            in_end(p),
            in_new(p),
            "aws end state differs on {p:?}\n{}",
            context()
        );
    }
    tally.checked += 1;
}
