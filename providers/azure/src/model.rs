//! Azure native desired state: NSG security rules in ARM's field names.

use perimeter_core::plan::Keyed;
use serde::{Deserialize, Serialize};

/// An ARM resource reference (`{"id": "..."}`).
#[derive(Clone, PartialEq, Eq, Hash, Debug, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ResourceRef {
    /// Full resource id.
    pub id: String,
}

/// The `properties` of a `Microsoft.Network/networkSecurityGroups/securityRules` resource.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityRuleProperties {
    /// perimeter's marker and the policy rule it came from.
    pub description: String,
    /// `Tcp`, `Udp`, `Icmp`, `Esp`, `Ah` or `*`.
    pub protocol: String,
    /// Always `*`: perimeter filters on destination ports only.
    pub source_port_range: String,
    /// A single range or `*`, when `destinationPortRanges` is empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_port_range: Option<String>,
    /// Several ports or ranges.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destination_port_ranges: Vec<String>,
    /// A single prefix, `*` or a service tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_address_prefix: Option<String>,
    /// Several prefixes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_address_prefixes: Vec<String>,
    /// Source application security groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_application_security_groups: Vec<ResourceRef>,
    /// A single prefix, `*` or a service tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_address_prefix: Option<String>,
    /// Several prefixes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destination_address_prefixes: Vec<String>,
    /// Destination application security groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destination_application_security_groups: Vec<ResourceRef>,
    /// `Allow` or `Deny`.
    pub access: String,
    /// 100-4096, unique per direction.
    pub priority: u16,
    /// `Inbound` or `Outbound`.
    pub direction: String,
}

/// One security rule.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct SecurityRule {
    /// Rule name (at most 80 characters).
    pub name: String,
    /// ARM properties.
    pub properties: SecurityRuleProperties,
}

impl Keyed for SecurityRule {
    type Key<'a> = &'a str;
    fn key(&self) -> Self::Key<'_> {
        &self.name
    }
}
