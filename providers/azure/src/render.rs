//! Azure output: a table like the portal's NSG rule list, and ARM `securityRules` JSON.

use std::fmt::Write as _;

use perimeter_core::table;
use serde_json::{Value, json};

use crate::compile::AzureCompiled;
use crate::model::SecurityRuleProperties;

fn side(single: &Option<String>, many: &[String], asgs: &[crate::model::ResourceRef]) -> String {
    if let Some(s) = single {
        return if s == "*" { "Any".into() } else { s.clone() };
    }
    if !many.is_empty() {
        return many.join(", ");
    }
    asgs.iter()
        .map(|a| a.id.rsplit('/').next().unwrap_or(&a.id).to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn ports(p: &SecurityRuleProperties) -> String {
    match &p.destination_port_range {
        Some(r) if r == "*" => "Any".into(),
        Some(r) => r.clone(),
        None => p.destination_port_ranges.join(", "),
    }
}

/// Portal-like text.
pub fn text(c: &AzureCompiled) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Azure network security group {} (resource group {}, subscription {})",
        c.target.nsg, c.target.resource_group, c.target.subscription
    );
    for (dir, title) in [
        ("Inbound", "Inbound security rules"),
        ("Outbound", "Outbound security rules"),
    ] {
        let rows: Vec<Vec<String>> = c
            .rules
            .iter()
            .filter(|r| r.properties.direction == dir)
            .map(|r| {
                let p = &r.properties;
                vec![
                    p.priority.to_string(),
                    r.name.clone(),
                    ports(p),
                    if p.protocol == "*" {
                        "Any".into()
                    } else {
                        p.protocol.clone()
                    },
                    side(
                        &p.source_address_prefix,
                        &p.source_address_prefixes,
                        &p.source_application_security_groups,
                    ),
                    side(
                        &p.destination_address_prefix,
                        &p.destination_address_prefixes,
                        &p.destination_application_security_groups,
                    ),
                    p.access.clone(),
                ]
            })
            .collect();
        let _ = writeln!(out, "  {title}");
        for line in table::render(
            &[
                "Priority",
                "Name",
                "Port",
                "Protocol",
                "Source",
                "Destination",
                "Action",
            ],
            &rows,
        )
        .lines()
        {
            let _ = writeln!(out, "  {line}");
        }
    }
    out
}

/// ARM-shaped JSON: the `securityRules` array as a PUT of the NSG takes it, plus notes.
pub fn json(c: &AzureCompiled) -> Value {
    json!({
        "target": {
            "subscription": c.target.subscription,
            "resourceGroup": c.target.resource_group,
            "networkSecurityGroup": c.target.nsg,
            "location": c.target.location,
            "applicationSecurityGroup": crate::compile::asg_id(&c.target),
        },
        "securityRules": c.rules,
        "notes": c.notes,
    })
}
