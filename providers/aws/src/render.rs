//! AWS output: text shaped like the EC2 console's rule tables, and JSON in the EC2 API's own
//! field names (`IpPermissions`, `NetworkAclEntry`, `InstanceMetadataOptions`).

use std::fmt::Write as _;

use perimeter_core::{Direction, table};
use serde_json::{Value, json};

use crate::compile::AwsCompiled;
use crate::model::{OWN_GROUP_ID, SgPeer, SgRule, has_ports};

fn sg_type(r: &SgRule) -> &'static str {
    match r.ip_protocol.as_str() {
        "-1" => "All traffic",
        "tcp" => "Custom TCP",
        "udp" => "Custom UDP",
        "icmp" => "Custom ICMP - IPv4",
        "icmpv6" => "Custom ICMP - IPv6",
        _ => "Custom protocol",
    }
}

fn sg_ports(r: &SgRule) -> String {
    if !has_ports(&r.ip_protocol) {
        return "All".into();
    }
    if r.ip_protocol.starts_with("icmp") {
        return match (r.from_port, r.to_port) {
            (-1, _) => "All".into(),
            (t, -1) => format!("type {t}"),
            (t, c) => format!("type {t} code {c}"),
        };
    }
    if r.from_port == r.to_port {
        r.from_port.to_string()
    } else {
        format!("{}-{}", r.from_port, r.to_port)
    }
}

pub(crate) fn sg_peer(p: &SgPeer) -> String {
    match p {
        SgPeer::CidrIpv4(c) | SgPeer::CidrIpv6(c) => c.to_string(),
        SgPeer::OwnGroup => format!("{OWN_GROUP_ID} (this group)"),
        SgPeer::ReferencedGroup(id) => id.clone(),
        SgPeer::PrefixList(id) => id.clone(),
    }
}

/// Console-like text for one compiled target.
pub fn text(c: &AwsCompiled) -> String {
    let mut out = String::new();
    let sg = &c.security_group;
    let _ = writeln!(
        out,
        "AWS security group {} (vpc {}, {})",
        sg.group_name, sg.vpc_id, c.target.region
    );
    for direction in Direction::BOTH {
        let (title, peer) = match direction {
            Direction::Ingress => ("Inbound rules", "Source"),
            Direction::Egress => ("Outbound rules", "Destination"),
        };
        let rows: Vec<Vec<String>> = sg
            .rules(direction)
            .map(|r| {
                vec![
                    sg_type(r).into(),
                    if r.ip_protocol == "-1" {
                        "All".into()
                    } else {
                        r.ip_protocol.to_uppercase()
                    },
                    sg_ports(r),
                    sg_peer(&r.peer),
                    r.description.clone(),
                ]
            })
            .collect();
        let _ = writeln!(out, "  {title} ({})", rows.len());
        if rows.is_empty() {
            out.push_str("    (none)\n");
        } else {
            out.push_str(&indent(&table::render(
                &["Type", "Protocol", "Port range", peer, "Description"],
                &rows,
            )));
        }
    }
    if let Some(nacl) = &c.network_acl {
        let _ = writeln!(
            out,
            "\nAWS network ACL for subnets {} (vpc {})",
            nacl.subnets.join(", "),
            nacl.vpc_id
        );
        for (egress, title, peer) in [
            (false, "Inbound rules", "Source"),
            (true, "Outbound rules", "Destination"),
        ] {
            let mut rows: Vec<Vec<String>> = nacl
                .entries
                .iter()
                .filter(|e| e.egress == egress)
                .map(|e| {
                    let ports = match (e.port_range, e.icmp_type_code) {
                        (Some((a, b)), _) if a == b => a.to_string(),
                        (Some((a, b)), _) => format!("{a}-{b}"),
                        _ => "All".into(),
                    };
                    let proto = match e.protocol.as_str() {
                        "-1" => "All".to_string(),
                        "6" => "TCP (6)".into(),
                        "17" => "UDP (17)".into(),
                        "1" => "ICMP (1)".into(),
                        "58" => "ICMPv6 (58)".into(),
                        n => format!("protocol {n}"),
                    };
                    vec![
                        e.rule_number.to_string(),
                        proto,
                        ports,
                        e.cidr.to_string(),
                        e.rule_action.clone(),
                    ]
                })
                .collect();
            rows.push(vec![
                "*".into(),
                "All".into(),
                "All".into(),
                "0.0.0.0/0".into(),
                "deny".into(),
            ]);
            rows.push(vec![
                "*".into(),
                "All".into(),
                "All".into(),
                "::/0".into(),
                "deny".into(),
            ]);
            let _ = writeln!(out, "  {title}");
            out.push_str(&indent(&table::render(
                &["Rule #", "Protocol", "Port range", peer, "Allow/Deny"],
                &rows,
            )));
        }
    }
    if let Some(m) = &c.metadata_options {
        let selector: Vec<String> = c
            .target
            .instances
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = writeln!(
            out,
            "\nAWS instance metadata options (instances tagged {})",
            if selector.is_empty() {
                "<none selected>".to_string()
            } else {
                selector.join(", ")
            }
        );
        let _ = writeln!(out, "  HttpEndpoint: {}", m.http_endpoint);
        if let Some(t) = &m.http_tokens {
            let _ = writeln!(out, "  HttpTokens: {t}");
        }
        if let Some(h) = m.http_put_response_hop_limit {
            let _ = writeln!(out, "  HttpPutResponseHopLimit: {h}");
        }
    }
    out
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("  {l}\n")).collect()
}

/// API-shaped JSON for one compiled target.
pub fn json(c: &AwsCompiled) -> Value {
    let sg = &c.security_group;
    json!({
        "target": {
            "account": c.target.account,
            "region": c.target.region,
            "vpc": c.target.vpc,
        },
        "SecurityGroup": {
            "GroupName": sg.group_name,
            "VpcId": sg.vpc_id,
            "Description": sg.description,
            "IpPermissions": sg.ip_permissions(Direction::Ingress),
            "IpPermissionsEgress": sg.ip_permissions(Direction::Egress),
        },
        "NetworkAcl": c.network_acl.as_ref().map(|n| json!({
            "VpcId": n.vpc_id,
            "Subnets": n.subnets,
            "Entries": n.entries.iter().map(crate::model::NaclEntry::to_api).collect::<Vec<_>>(),
        })),
        "InstanceMetadataOptions": c.metadata_options.as_ref().map(crate::model::MetadataOptions::to_api),
        "notes": c.notes,
    })
}
