//! GCP native desired state: the Compute Engine `Firewall` resource.

use perimeter_core::plan::Keyed;
use serde::{Deserialize, Serialize};

/// One entry of `allowed` or `denied`.
#[derive(Clone, PartialEq, Eq, Hash, Debug, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ProtocolPorts {
    /// `IPProtocol`: `tcp`, `udp`, `icmp`, `58` (ICMPv6), `all`, or a protocol number.
    #[serde(rename = "IPProtocol")]
    pub ip_protocol: String,
    /// Ports or ranges (`"22"`, `"8000-8080"`); empty means every port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
}

/// A VPC firewall rule, in the field names of the Compute v1 REST API.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Firewall {
    /// RFC 1035 name, unique per project, at most 63 characters.
    pub name: String,
    /// perimeter's ownership marker and the policy rule it came from.
    pub description: String,
    /// Network URL or name.
    pub network: String,
    /// 0 (highest) to 65535.
    pub priority: u16,
    /// `INGRESS` or `EGRESS`.
    pub direction: String,
    /// Ingress sources.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_ranges: Vec<String>,
    /// Ingress sources by network tag.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_tags: Vec<String>,
    /// Egress destinations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destination_ranges: Vec<String>,
    /// Instances the rule applies to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_tags: Vec<String>,
    /// What an allow rule allows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed: Vec<ProtocolPorts>,
    /// What a deny rule denies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub denied: Vec<ProtocolPorts>,
    /// True keeps the rule but does not enforce it.
    #[serde(default)]
    pub disabled: bool,
    /// Ingress sources by service account. perimeter never writes them; an observed rule
    /// may carry them, and then they are a difference like any other.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_service_accounts: Vec<String>,
    /// Instances the rule applies to, by service account (never written by perimeter).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_service_accounts: Vec<String>,
}

impl Keyed for Firewall {
    type Key<'a> = &'a str;
    fn key(&self) -> Self::Key<'_> {
        &self.name
    }
}
