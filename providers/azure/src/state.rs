//! What the backend observed of one NSG, and what perimeter owns there.
//!
//! Two modes (the target's `shared:`):
//! * **owned NSG** (default): perimeter creates the NSG, tags it `perimeter:policy=<name>` and
//!   owns it whole; one PUT writes all its rules. An NSG with the name but without the tag is
//!   refused, never adopted.
//! * **shared NSG** (`shared: true`, e.g. the one AKS manages for its nodes): perimeter owns
//!   only the rules named `<policy>-…` whose description starts with `perimeter:<policy> `,
//!   and writes them one by one; every other rule stays exactly as it is.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{SecurityRule, SecurityRuleProperties};

/// The tag on an NSG perimeter owns.
pub(crate) const OWNER_TAG: &str = "perimeter:policy";

/// True when the rule is this policy's in a shared NSG.
pub(crate) fn is_owned_rule(policy: &str, rule: &SecurityRule) -> bool {
    rule.name.starts_with(&format!("{policy}-"))
        && rule
            .properties
            .description
            .starts_with(&format!("perimeter:{policy} "))
}

/// The NSG as observed.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct ObservedNsg {
    /// ARM's etag: a PUT with `If-Match` fails if the NSG changed since.
    pub etag: String,
    /// Its region.
    pub location: String,
    /// Its tags.
    pub tags: BTreeMap<String, String>,
    /// Every security rule, canonical, by name.
    pub rules: Vec<SecurityRule>,
}

/// One target as observed.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct ObservedAzure {
    /// The NSG, when it exists.
    pub nsg: Option<ObservedNsg>,
    /// Whether the target's application security group exists.
    pub asg_exists: bool,
}

fn sorted(list: &[String]) -> Vec<String> {
    let mut v = list.to_vec();
    v.sort();
    v.dedup();
    v
}

/// The form in which desired and observed rules are compared: ARM's canonical casing, a
/// single port or prefix in the singular field (ARM keeps whichever form was sent), lists
/// sorted, empty descriptions as empty strings.
pub(crate) fn canonical(rule: &SecurityRule) -> SecurityRule {
    let p = &rule.properties;
    let case = |value: &str, options: &[&str]| -> String {
        options
            .iter()
            .find(|o| o.eq_ignore_ascii_case(value))
            .map_or_else(|| value.to_string(), |o| o.to_string())
    };
    let single_or_list =
        |single: &Option<String>, list: &[String]| -> (Option<String>, Vec<String>) {
            let mut all: Vec<String> = single.iter().cloned().chain(list.iter().cloned()).collect();
            all = sorted(&all);
            if all.len() == 1 {
                (all.pop(), Vec::new())
            } else {
                (None, all)
            }
        };
    let (destination_port_range, destination_port_ranges) =
        single_or_list(&p.destination_port_range, &p.destination_port_ranges);
    let (source_address_prefix, source_address_prefixes) =
        single_or_list(&p.source_address_prefix, &p.source_address_prefixes);
    let (destination_address_prefix, destination_address_prefixes) = single_or_list(
        &p.destination_address_prefix,
        &p.destination_address_prefixes,
    );
    let mut source_asgs = p.source_application_security_groups.clone();
    source_asgs.sort();
    let mut destination_asgs = p.destination_application_security_groups.clone();
    destination_asgs.sort();
    // ARM names and ids are case-insensitive: `p-in-SSH` and `p-in-ssh` are one rule.
    let lower = |refs: Vec<crate::model::ResourceRef>| -> Vec<crate::model::ResourceRef> {
        refs.into_iter()
            .map(|r| crate::model::ResourceRef {
                id: r.id.to_ascii_lowercase(),
            })
            .collect()
    };
    let source_asgs = lower(source_asgs);
    let destination_asgs = lower(destination_asgs);
    SecurityRule {
        name: rule.name.to_ascii_lowercase(),
        properties: SecurityRuleProperties {
            description: p.description.clone(),
            protocol: case(&p.protocol, &["Tcp", "Udp", "Icmp", "Esp", "Ah", "*"]),
            source_port_range: p.source_port_range.clone(),
            destination_port_range,
            destination_port_ranges,
            source_address_prefix,
            source_address_prefixes,
            source_application_security_groups: source_asgs,
            destination_address_prefix,
            destination_address_prefixes,
            destination_application_security_groups: destination_asgs,
            access: case(&p.access, &["Allow", "Deny"]),
            priority: p.priority,
            direction: case(&p.direction, &["Inbound", "Outbound"]),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> SecurityRule {
        SecurityRule {
            name: "p-in-ssh".into(),
            properties: SecurityRuleProperties {
                description: "perimeter:p ssh".into(),
                protocol: "tcp".into(),
                source_port_range: "*".into(),
                destination_port_range: None,
                destination_port_ranges: vec!["22".into()],
                source_address_prefix: None,
                source_address_prefixes: vec!["10.1.0.0/16".into(), "10.0.0.0/16".into()],
                source_application_security_groups: vec![],
                destination_address_prefix: Some("*".into()),
                destination_address_prefixes: vec![],
                destination_application_security_groups: vec![],
                access: "allow".into(),
                priority: 110,
                direction: "inbound".into(),
            },
        }
    }

    #[test]
    fn canonical_form_is_arms_and_idempotent() {
        let c = canonical(&rule());
        assert_eq!(
            (
                c.properties.protocol.as_str(),
                c.properties.access.as_str(),
                c.properties.direction.as_str()
            ),
            ("Tcp", "Allow", "Inbound")
        );
        assert_eq!(c.properties.destination_port_range.as_deref(), Some("22"));
        assert!(c.properties.destination_port_ranges.is_empty());
        assert_eq!(
            c.properties.source_address_prefixes,
            vec!["10.0.0.0/16".to_string(), "10.1.0.0/16".to_string()]
        );
        assert_eq!(canonical(&c), c);
    }

    #[test]
    fn ownership_of_rules_needs_prefix_and_marker() {
        assert!(is_owned_rule("p", &rule()));
        let mut other = rule();
        other.properties.description = "aks".into();
        assert!(!is_owned_rule("p", &other));
        other = rule();
        other.name = "k8s-azure-lb_allow_IPv4_80".into();
        assert!(!is_owned_rule("p", &other));
    }
}
