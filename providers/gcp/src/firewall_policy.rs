//! Firewall policies on the nodes' path, as `networks.getEffectiveFirewalls` answers them:
//! hierarchical ones (organization, then folders, top down), the network's global network
//! firewall policy, and (`regionNetworkFirewallPolicies.getEffectiveFirewalls`) the regional
//! ones of the nodes' regions. perimeter never writes them; it reads them to check what the nodes
//! experience (evaluate::path_decider).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::ProtocolPorts;

/// Where a policy sits in GCP's order.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyKind {
    /// Organization or folder: evaluated before the VPC rules.
    Hierarchy,
    /// Global network firewall policy: after the VPC rules (the default
    /// `AFTER_CLASSIC_FIREWALL`), or before them (`BEFORE_CLASSIC_FIREWALL`).
    Network,
    /// Regional network firewall policy of the nodes' region: right after the global one.
    NetworkRegional,
}

impl PolicyKind {
    /// Rank in GCP's order among policies on the same side of the VPC rules.
    pub(crate) fn rank(self) -> u8 {
        match self {
            Self::Hierarchy => 0,
            Self::Network => 1,
            Self::NetworkRegional => 2,
        }
    }
}

/// One rule of a firewall policy.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct PolicyRule {
    /// Lower first; unique in a policy.
    pub priority: i64,
    /// `allow`, `deny` or `goto_next` (anything else is treated as `goto_next`).
    pub action: String,
    /// `INGRESS` or `EGRESS`.
    pub direction: String,
    /// Kept but not enforced.
    pub disabled: bool,
    /// Ingress sources.
    pub src_ip_ranges: Vec<String>,
    /// Egress destinations.
    pub dest_ip_ranges: Vec<String>,
    /// Protocols and ports (`ipProtocol`, `ports`).
    pub layer4: Vec<ProtocolPorts>,
    /// Instances by service account (empty: every instance).
    pub target_service_accounts: Vec<String>,
    /// Instances by secure tag (empty: every instance).
    pub target_secure_tags: Vec<String>,
    /// Ingress sources by secure tag.
    pub src_secure_tags: Vec<String>,
}

/// One policy.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct FirewallPolicy {
    /// The API's name (a number for hierarchical policies).
    pub name: String,
    /// What people call it (`shortName`, else `displayName`, else the name).
    pub label: String,
    /// Hierarchical or network.
    pub kind: PolicyKind,
    /// Its rules, by priority.
    pub rules: Vec<PolicyRule>,
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn tags(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .filter_map(|t| t.get("name").and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn rule(v: &Value) -> PolicyRule {
    let m = v.get("match").cloned().unwrap_or(Value::Null);
    let layer4 = m
        .get("layer4Configs")
        .and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .map(|c| ProtocolPorts {
                    ip_protocol: c
                        .get("ipProtocol")
                        .and_then(Value::as_str)
                        .unwrap_or("all")
                        .to_ascii_lowercase(),
                    ports: strings(c, "ports"),
                })
                .collect()
        })
        .unwrap_or_default();
    PolicyRule {
        priority: v
            .get("priority")
            .and_then(Value::as_i64)
            .unwrap_or(i64::MAX),
        action: v
            .get("action")
            .and_then(Value::as_str)
            .unwrap_or("goto_next")
            .to_string(),
        direction: v
            .get("direction")
            .and_then(Value::as_str)
            .unwrap_or("INGRESS")
            .to_string(),
        disabled: v.get("disabled").and_then(Value::as_bool).unwrap_or(false),
        src_ip_ranges: strings(&m, "srcIpRanges"),
        dest_ip_ranges: strings(&m, "destIpRanges"),
        layer4,
        target_service_accounts: strings(v, "targetServiceAccounts"),
        target_secure_tags: tags(v, "targetSecureTags"),
        src_secure_tags: tags(&m, "srcSecureTags"),
    }
}

/// The policies of a `getEffectiveFirewalls` answer, in the answer's order (hierarchical ones
/// top down). Policies of other kinds (Google's system policies) are skipped: the API reports
/// them for information and they cannot be read rule by rule.
pub(crate) fn from_effective(answer: &Value) -> Vec<FirewallPolicy> {
    answer
        .get("firewallPolicys")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let kind = match p.get("type").and_then(Value::as_str)? {
                "HIERARCHY" => PolicyKind::Hierarchy,
                "NETWORK" => PolicyKind::Network,
                "NETWORK_REGIONAL" => PolicyKind::NetworkRegional,
                _ => return None,
            };
            let text = |k: &str| p.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
            let name = text("name").unwrap_or_default().to_string();
            let mut rules: Vec<PolicyRule> = p
                .get("rules")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(rule)
                .collect();
            rules.sort_by_key(|r| r.priority);
            Some(FirewallPolicy {
                label: text("shortName")
                    .or(text("displayName"))
                    .unwrap_or(&name)
                    .to_string(),
                name,
                kind,
                rules,
            })
        })
        .collect()
}
