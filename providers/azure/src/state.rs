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
    /// Ids of the subnets it is associated with (ARM lists them on the NSG).
    #[serde(default)]
    pub subnets: Vec<String>,
    /// Ids of the network interfaces it is associated with.
    #[serde(default)]
    pub nics: Vec<String>,
}

/// A subnet as observed: its NSG, and what a PUT that changes only the NSG sends back.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ObservedSubnet {
    /// Resource id, as ARM spells it.
    pub id: String,
    /// Its etag: the association write is conditional on it.
    pub etag: String,
    /// Id of the NSG associated with it.
    pub nsg: Option<String>,
    /// Its `properties` as read (address prefixes, route table, delegations…): ARM's PUT
    /// replaces the subnet, so everything else is sent back unchanged.
    pub properties: serde_json::Value,
}

/// A node's network interface as observed.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ObservedNic {
    /// Resource id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Id of the NSG on the NIC.
    pub nsg: Option<String>,
    /// Id of the subnet of its primary IP configuration.
    pub subnet: Option<String>,
    /// Its private addresses.
    pub addrs: Vec<std::net::IpAddr>,
    /// Application security groups of its IP configurations.
    pub asgs: Vec<String>,
}

/// An NSG on the nodes' path that is not the target's.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct OtherNsg {
    /// Resource id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Its rules, canonical.
    pub rules: Vec<SecurityRule>,
    /// Its tags (an NSG of the same policy carries perimeter's ownership tag).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// One target as observed.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct ObservedAzure {
    /// The NSG, when it exists.
    pub nsg: Option<ObservedNsg>,
    /// Whether the target's application security group exists.
    pub asg_exists: bool,
    /// The subnets perimeter needs to know, by lower-case id (declared, on the nodes' path,
    /// or carrying the NSG); `None`: it does not exist.
    #[serde(default)]
    pub subnets: BTreeMap<String, Option<ObservedSubnet>>,
    /// The nodes' NICs (the target's `nics`); `None` when the target declares none.
    #[serde(default)]
    pub nics: Option<Vec<ObservedNic>>,
    /// The other NSGs on the nodes' path, by lower-case id.
    #[serde(default)]
    pub other_nsgs: BTreeMap<String, OtherNsg>,
    /// NSGs of the resource group tagged as the policy's that no target declares any more (on
    /// the resource group's first target): they are planned for removal.
    #[serde(default)]
    pub orphan_nsgs: Vec<String>,
}

/// The resource id of a declared subnet: `vnet/subnet` lives in the target's resource group.
pub(crate) fn subnet_id(t: &perimeter_core::target::AzureTarget, declared: &str) -> String {
    if declared.starts_with('/') {
        return declared.to_string();
    }
    let (vnet, subnet) = declared.split_once('/').unwrap_or((declared, ""));
    format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Network/virtualNetworks/{vnet}/subnets/{subnet}",
        t.subscription, t.resource_group
    )
}

/// The last path segments people name a subnet by: `vnet/subnet`.
pub(crate) fn subnet_label(id: &str) -> String {
    let parts: Vec<&str> = id.rsplit('/').collect();
    match parts.as_slice() {
        [subnet, _, vnet, ..] => format!("{vnet}/{subnet}"),
        _ => id.to_string(),
    }
}

/// The last segment of a resource id.
pub(crate) fn resource_name(id: &str) -> &str {
    id.rsplit('/').next().unwrap_or(id)
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
