//! perimeter's firewall model ↔ the google-cloud-compute-v1 types.

use google_cloud_compute_v1::model as api;

use crate::model::{Firewall, ProtocolPorts};

/// The request body for a rule. The network becomes the project-relative form the API
/// accepts; the API stores it as a full URL.
pub(crate) fn to_api(fw: &Firewall, project: &str) -> api::Firewall {
    let mut out = api::Firewall::new();
    out.name = Some(fw.name.clone());
    out.description = Some(fw.description.clone());
    out.network = Some(format!(
        "projects/{project}/global/networks/{}",
        crate::state::network_name(&fw.network)
    ));
    out.priority = Some(i32::from(fw.priority));
    out.direction = Some(api::firewall::Direction::from(fw.direction.as_str()));
    out.source_ranges = fw.source_ranges.clone();
    out.source_tags = fw.source_tags.clone();
    out.destination_ranges = fw.destination_ranges.clone();
    out.target_tags = fw.target_tags.clone();
    out.allowed = fw
        .allowed
        .iter()
        .map(|p| {
            let mut a = api::firewall::Allowed::new();
            a.ip_protocol = Some(p.ip_protocol.clone());
            a.ports = p.ports.clone();
            a
        })
        .collect();
    out.denied = fw
        .denied
        .iter()
        .map(|p| {
            let mut d = api::firewall::Denied::new();
            d.ip_protocol = Some(p.ip_protocol.clone());
            d.ports = p.ports.clone();
            d
        })
        .collect();
    out.disabled = Some(fw.disabled);
    out.source_service_accounts = fw.source_service_accounts.clone();
    out.target_service_accounts = fw.target_service_accounts.clone();
    out
}

/// A rule as the API returned it, in perimeter's model.
pub(crate) fn from_api(fw: &api::Firewall) -> Firewall {
    let protocols = |list: Vec<(Option<String>, Vec<String>)>| -> Vec<ProtocolPorts> {
        list.into_iter()
            .map(|(protocol, ports)| ProtocolPorts {
                ip_protocol: protocol.unwrap_or_default(),
                ports,
            })
            .collect()
    };
    let direction = fw
        .direction
        .as_ref()
        .and_then(|d| d.name())
        .unwrap_or("INGRESS")
        .to_string();
    let mut source_ranges = fw.source_ranges.clone();
    // The API's default, made explicit: an ingress rule without any source matches every
    // IPv4 address.
    if direction == "INGRESS"
        && source_ranges.is_empty()
        && fw.source_tags.is_empty()
        && fw.source_service_accounts.is_empty()
    {
        source_ranges.push("0.0.0.0/0".into());
    }
    Firewall {
        name: fw.name.clone().unwrap_or_default(),
        description: fw.description.clone().unwrap_or_default(),
        network: fw.network.clone().unwrap_or_default(),
        priority: fw
            .priority
            .map_or(1000, |p| u16::try_from(p).unwrap_or(u16::MAX)),
        direction,
        source_ranges,
        source_tags: fw.source_tags.clone(),
        destination_ranges: fw.destination_ranges.clone(),
        target_tags: fw.target_tags.clone(),
        allowed: protocols(
            fw.allowed
                .iter()
                .map(|a| (a.ip_protocol.clone(), a.ports.clone()))
                .collect(),
        ),
        denied: protocols(
            fw.denied
                .iter()
                .map(|d| (d.ip_protocol.clone(), d.ports.clone()))
                .collect(),
        ),
        disabled: fw.disabled.unwrap_or(false),
        source_service_accounts: fw.source_service_accounts.clone(),
        target_service_accounts: fw.target_service_accounts.clone(),
    }
}
