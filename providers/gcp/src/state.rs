//! What the backend observed in one GCP network, and what perimeter owns there.
//!
//! A VPC network is shared: GKE writes its own rules into it, a `default` network comes with
//! `default-allow-*` rules, and other teams add theirs. perimeter owns a rule only when both
//! hold: its name starts with `{policy}-` and its description starts with
//! `perimeter:{policy} ` (the compiler writes both). Every other rule is foreign — also one
//! with the prefix but not the marker: perimeter never writes it, and refuses to plan when it
//! wants that rule's name.

use std::collections::BTreeSet;

use perimeter_core::Cidr;
use serde::{Deserialize, Serialize};

use crate::model::{Firewall, ProtocolPorts};

/// The description prefix that marks a rule as perimeter's.
pub(crate) fn ownership_marker(policy: &str) -> String {
    format!("perimeter:{policy} ")
}

/// The name prefix of the rules a policy owns.
pub(crate) fn name_prefix(policy: &str) -> String {
    format!("{policy}-")
}

/// True when perimeter (this policy) owns the rule.
pub(crate) fn is_owned(policy: &str, name: &str, description: &str) -> bool {
    name.starts_with(&name_prefix(policy)) && description.starts_with(&ownership_marker(policy))
}

/// The project's firewall-rule quota (`FIREWALLS`), counted over every network.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct FirewallQuota {
    /// Rules the project may have.
    pub limit: u64,
    /// Rules it has.
    pub usage: u64,
}

/// One network as observed.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct ObservedGcp {
    /// False when the network does not exist (nothing can be written then).
    pub network_exists: bool,
    /// Rules this policy owns, canonical (see [`canonical`]), by name.
    pub owned: Vec<Firewall>,
    /// Every other rule of the network, by name.
    pub foreign: Vec<Firewall>,
    /// The project's quota, when the API told it.
    pub quota: Option<FirewallQuota>,
    /// Networks of the project where rules of the policy remain that no target declares any
    /// more (on the project's first target): they are planned for removal.
    #[serde(default)]
    pub orphan_networks: Vec<String>,
    /// The firewall policies that apply to the network (`getEffectiveFirewalls`), hierarchical
    /// ones top down, then the network's.
    #[serde(default)]
    pub firewall_policies: Vec<crate::firewall_policy::FirewallPolicy>,
    /// Per region the target names (`regions`): the regional network firewall policies that
    /// apply to the network there, evaluated after the global one.
    #[serde(default)]
    pub regional_policies:
        std::collections::BTreeMap<String, Vec<crate::firewall_policy::FirewallPolicy>>,
    /// True when the network evaluates its network firewall policy before the VPC rules
    /// (`networkFirewallPolicyEnforcementOrder: BEFORE_CLASSIC_FIREWALL`).
    #[serde(default)]
    pub policies_first: bool,
}

/// The form in which desired and observed rules are compared: the network by name, ranges in
/// canonical CIDR form (the API may return `::/0` where `0::0/0` was sent), and every list
/// sorted and deduplicated (the API's order carries no meaning). Without this, every plan
/// would show changes that are not there, the "permadiff" Terraform users know.
pub(crate) fn canonical(fw: &Firewall) -> Firewall {
    let ranges = |list: &[String]| -> Vec<String> {
        let set: BTreeSet<String> = list
            .iter()
            .map(|r| {
                r.parse::<Cidr>()
                    .map_or_else(|_| r.clone(), |c| c.to_string())
            })
            .collect();
        set.into_iter().collect()
    };
    let names = |list: &[String]| -> Vec<String> {
        let set: BTreeSet<&String> = list.iter().collect();
        set.into_iter().cloned().collect()
    };
    let protocols = |list: &[ProtocolPorts]| -> Vec<ProtocolPorts> {
        let set: BTreeSet<ProtocolPorts> = list
            .iter()
            .map(|p| ProtocolPorts {
                ip_protocol: p.ip_protocol.to_ascii_lowercase(),
                ports: names(&p.ports),
            })
            .collect();
        set.into_iter().collect()
    };
    Firewall {
        name: fw.name.clone(),
        description: fw.description.clone(),
        network: network_name(&fw.network).to_string(),
        priority: fw.priority,
        direction: fw.direction.to_ascii_uppercase(),
        source_ranges: ranges(&fw.source_ranges),
        source_tags: names(&fw.source_tags),
        destination_ranges: ranges(&fw.destination_ranges),
        target_tags: names(&fw.target_tags),
        allowed: protocols(&fw.allowed),
        denied: protocols(&fw.denied),
        disabled: fw.disabled,
        source_service_accounts: names(&fw.source_service_accounts),
        target_service_accounts: names(&fw.target_service_accounts),
    }
}

/// `https://…/projects/p/global/networks/n`, `global/networks/n` or `n` → `n`.
pub(crate) fn network_name(network: &str) -> &str {
    network.rsplit('/').next().unwrap_or(network)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> Firewall {
        Firewall {
            name: "p-i-ssh".into(),
            description: "perimeter:p ssh".into(),
            network: "https://compute.example/compute/v1/projects/x/global/networks/vpc".into(),
            priority: 1000,
            direction: "INGRESS".into(),
            source_ranges: vec!["10.0.0.0/8".into(), "0::0/0".into(), "10.0.0.0/8".into()],
            source_tags: vec!["b".into(), "a".into()],
            destination_ranges: vec![],
            target_tags: vec!["nodes".into()],
            allowed: vec![
                ProtocolPorts {
                    ip_protocol: "udp".into(),
                    ports: vec!["53".into()],
                },
                ProtocolPorts {
                    ip_protocol: "TCP".into(),
                    ports: vec!["443".into(), "22".into()],
                },
            ],
            denied: vec![],
            disabled: false,
            source_service_accounts: Vec::new(),
            target_service_accounts: Vec::new(),
        }
    }

    #[test]
    fn canonical_form_ignores_order_spelling_and_network_form() {
        let c = canonical(&rule());
        assert_eq!(c.network, "vpc");
        assert_eq!(
            c.source_ranges,
            vec!["10.0.0.0/8".to_string(), "::/0".to_string()]
        );
        assert_eq!(c.source_tags, vec!["a".to_string(), "b".to_string()]);
        assert_eq!(c.allowed[0].ip_protocol, "tcp");
        assert_eq!(
            c.allowed[0].ports,
            vec!["22".to_string(), "443".to_string()]
        );
        let mut shuffled = rule();
        shuffled.source_ranges.reverse();
        shuffled.allowed.reverse();
        shuffled.network = "vpc".into();
        assert_eq!(canonical(&shuffled), c);
        assert_eq!(canonical(&c), c, "idempotent");
    }

    #[test]
    fn ownership_needs_prefix_and_marker() {
        assert!(is_owned("p", "p-i-ssh", "perimeter:p ssh"));
        assert!(!is_owned("p", "p-i-ssh", "hand-made"));
        assert!(!is_owned("p", "gke-p-i-ssh", "perimeter:p ssh"));
        // Another policy whose name extends this one's is not this one.
        assert!(!is_owned("p", "p-2-i-ssh", "perimeter:p-2 ssh"));
    }
}
