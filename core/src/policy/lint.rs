//! Warnings about policies that load but probably do not say what was meant.

use crate::diag::Diagnostic;
use crate::effective::effective;
use crate::intent::{Direction, Intent, Rule, Verdict};

/// Rules per direction above which the shadowing check is skipped: it costs one effective-set
/// computation per rule.
pub const SHADOW_CHECK_MAX_RULES: usize = 300;

/// A rule is shadowed when every packet it matches is already decided by earlier rules. The
/// check is conservative: it may miss a shadowed rule that names `self`, never the reverse.
pub fn shadowed_rules(intent: &Intent) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for direction in Direction::BOTH {
        let rules = intent.rules(direction);
        if rules.len() > SHADOW_CHECK_MAX_RULES {
            continue;
        }
        for (i, rule) in rules.iter().enumerate().skip(1) {
            // Earlier rules become denies and this one an allow: whatever is still allowed is
            // what this rule decides.
            let mut probe: Vec<Rule> = rules[..i]
                .iter()
                .map(|r| Rule {
                    action: Verdict::Deny,
                    ..r.clone()
                })
                .collect();
            probe.push(Rule {
                action: Verdict::Allow,
                ..rule.clone()
            });
            let eff = effective(&probe, Verdict::Deny);
            let reachable = eff.cells.iter().any(|c| c.nodes || !c.addrs.is_empty());
            if !reachable {
                out.push(Diagnostic::warning(
                    "policy::shadowed-rule",
                    rule.span,
                    format!(
                        "{} rule `{}` never decides anything: earlier rules match every packet it matches",
                        direction.as_str(),
                        rule.name
                    ),
                )
                .label("shadowed by the rules above it")
                .help("remove it, or move it above the rules that cover it"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::policy::load_str;

    fn warnings(rules: &str) -> Vec<String> {
        let text =
            format!("apiVersion: perimeter/v1\nkind: NodePerimeter\nname: t\ningress:\n{rules}");
        load_str("t.yaml", &text)
            .unwrap()
            .warnings
            .iter()
            .map(|d| d.message.clone())
            .collect()
    }

    #[test]
    fn a_rule_inside_an_earlier_broader_rule_is_shadowed() {
        let w = warnings(
            "  - {name: vpc, from: 10.0.0.0/16, services: [any]}\n  - {name: ssh, from: 10.0.1.0/24, services: [ssh]}\n",
        );
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("`ssh`"));
    }

    #[test]
    fn partial_overlap_and_self_are_not_reported() {
        assert!(warnings("  - {name: a, from: 10.0.0.0/24, services: [ssh]}\n  - {name: b, from: 10.0.0.0/16, services: [ssh]}\n").is_empty());
        assert!(warnings("  - {name: a, from: 10.0.0.0/8, services: [any]}\n  - {name: b, from: self, services: [ssh]}\n").is_empty());
        // A deny that covers a later allow's packets shadows it too.
        let w = warnings(
            "  - {name: no, action: deny, from: internet, services: [tcp]}\n  - {name: web, from: 10.0.0.0/8, services: [https]}\n",
        );
        assert_eq!(w.len(), 1);
    }
}
