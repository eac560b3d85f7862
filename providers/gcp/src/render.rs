//! GCP output: a table like the console's firewall list, and the `Firewall` resources as JSON.

use std::fmt::Write as _;

use perimeter_core::table;
use serde_json::{Value, json};

use crate::compile::GcpCompiled;
use crate::model::{Firewall, ProtocolPorts};

fn protocols(list: &[ProtocolPorts]) -> String {
    list.iter()
        .map(|p| {
            if p.ports.is_empty() {
                p.ip_protocol.clone()
            } else {
                format!("{}:{}", p.ip_protocol, p.ports.join(","))
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn filters(fw: &Firewall) -> String {
    let mut parts = Vec::new();
    if !fw.source_ranges.is_empty() {
        parts.push(format!("IP ranges: {}", fw.source_ranges.join(", ")));
    }
    if !fw.source_tags.is_empty() {
        parts.push(format!("Tags: {}", fw.source_tags.join(", ")));
    }
    if !fw.destination_ranges.is_empty() {
        parts.push(format!("IP ranges: {}", fw.destination_ranges.join(", ")));
    }
    parts.join("; ")
}

/// Console-like text.
pub fn text(c: &GcpCompiled) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "GCP firewall rules in project {}, network {}",
        c.target.project, c.target.network
    );
    let rows: Vec<Vec<String>> = c
        .firewalls
        .iter()
        .map(|fw| {
            let (action, list) = if fw.denied.is_empty() {
                ("Allow", &fw.allowed)
            } else {
                ("Deny", &fw.denied)
            };
            vec![
                fw.name.clone(),
                if fw.direction == "INGRESS" {
                    "Ingress"
                } else {
                    "Egress"
                }
                .into(),
                format!("Tags: {}", fw.target_tags.join(", ")),
                filters(fw),
                protocols(list),
                action.into(),
                fw.priority.to_string(),
            ]
        })
        .collect();
    out.push_str(&table::render(
        &[
            "Name",
            "Type",
            "Targets",
            "Filters",
            "Protocols/ports",
            "Action",
            "Priority",
        ],
        &rows,
    ));
    out
}

/// The Firewall resources as the REST API takes them, plus notes.
pub fn json(c: &GcpCompiled) -> Value {
    json!({
        "target": {"project": c.target.project, "network": c.target.network},
        "firewalls": c.firewalls,
        "notes": c.notes,
    })
}
