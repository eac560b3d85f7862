//! SDK shapes ⇄ perimeter's model: the only place EC2 types and model types meet.

use aws_sdk_ec2::types::{
    Filter, IpPermission, IpRange, Ipv6Range, PrefixListId, ResourceType, SecurityGroupRuleRequest,
    Tag, TagSpecification, UserIdGroupPair,
};
use perimeter_core::{Cidr, Direction};

use crate::backend::AwsError;
use crate::model::{NaclEntry, SgPeer, SgRule};
use crate::state::{OWNER_TAG, ObservedSgRule};

pub(crate) fn filter(name: &str, values: impl IntoIterator<Item = impl Into<String>>) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(values.into_iter().map(Into::into).collect()))
        .build()
}

pub(crate) fn normalize_protocol(p: &str) -> String {
    match p {
        "6" => "tcp".into(),
        "17" => "udp".into(),
        "1" => "icmp".into(),
        "58" => "icmpv6".into(),
        other => other.to_lowercase(),
    }
}

pub(crate) fn tags(kind: ResourceType, policy: &str, name: &str) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(kind)
        .tags(Tag::builder().key(OWNER_TAG).value(policy).build())
        .tags(Tag::builder().key("Name").value(name).build())
        .build()
}

/// Converts an observed SDK rule to the model; `own_group` turns self-references into
/// `OwnGroup`.
pub(crate) fn convert_rule(
    r: &aws_sdk_ec2::types::SecurityGroupRule,
    own_group: &str,
) -> Result<ObservedSgRule, AwsError> {
    let peer = if let Some(c) = r.cidr_ipv4() {
        SgPeer::CidrIpv4(Cidr::parse_lenient(c).map_err(|e| {
            AwsError::Unexpected(format!("rule {:?}: {e}", r.security_group_rule_id()))
        })?)
    } else if let Some(c) = r.cidr_ipv6() {
        SgPeer::CidrIpv6(Cidr::parse_lenient(c).map_err(|e| {
            AwsError::Unexpected(format!("rule {:?}: {e}", r.security_group_rule_id()))
        })?)
    } else if let Some(g) = r.referenced_group_info().and_then(|g| g.group_id()) {
        if g == own_group {
            SgPeer::OwnGroup
        } else {
            SgPeer::ReferencedGroup(g.to_string())
        }
    } else if let Some(p) = r.prefix_list_id() {
        SgPeer::PrefixList(p.to_string())
    } else {
        return Err(AwsError::Unexpected(format!(
            "security group rule {:?} has no peer",
            r.security_group_rule_id()
        )));
    };
    let proto = normalize_protocol(r.ip_protocol().unwrap_or("-1"));
    let ports = crate::model::has_ports(&proto);
    Ok(ObservedSgRule {
        rule_id: r.security_group_rule_id().unwrap_or_default().to_string(),
        rule: SgRule {
            direction: if r.is_egress() == Some(true) {
                Direction::Egress
            } else {
                Direction::Ingress
            },
            from_port: if ports {
                r.from_port().unwrap_or(-1)
            } else {
                -1
            },
            to_port: if ports { r.to_port().unwrap_or(-1) } else { -1 },
            ip_protocol: proto,
            peer,
            description: r.description().unwrap_or_default().to_string(),
        },
    })
}

pub(crate) fn convert_nacl_entry(e: &aws_sdk_ec2::types::NetworkAclEntry) -> Option<NaclEntry> {
    let cidr = e
        .cidr_block()
        .or(e.ipv6_cidr_block())
        .and_then(|c| Cidr::parse_lenient(c).ok())?;
    let protocol = e.protocol().unwrap_or("-1").to_string();
    let port_range = e
        .port_range()
        .and_then(|p| Some((u16::try_from(p.from()?).ok()?, u16::try_from(p.to()?).ok()?)))
        .filter(|_| matches!(protocol.as_str(), "6" | "17"));
    // moto does not return IcmpTypeCode; an ICMP entry without it means all types.
    let icmp_type_code = matches!(protocol.as_str(), "1" | "58").then(|| {
        e.icmp_type_code().map_or((-1, -1), |i| {
            (i.r#type().unwrap_or(-1), i.code().unwrap_or(-1))
        })
    });
    Some(NaclEntry {
        egress: e.egress().unwrap_or(false),
        rule_number: u16::try_from(e.rule_number()?).ok()?,
        protocol,
        rule_action: e
            .rule_action()
            .map_or("deny".into(), |a| a.as_str().to_string()),
        cidr,
        port_range,
        icmp_type_code,
    })
}

/// Builds `IpPermissions` for new rules. Ports are always explicit (-1 for protocols without
/// them): EC2 accepts that, and moto answers 500 otherwise.
pub(crate) fn to_ip_permissions(rules: &[&SgRule], group_id: &str) -> Vec<IpPermission> {
    crate::model::group_by_protocol_and_ports(rules.iter().copied())
        .into_iter()
        .map(|((proto, from, to), rules)| {
            let mut p = IpPermission::builder()
                .ip_protocol(proto)
                .from_port(from)
                .to_port(to);
            for r in rules {
                let d = r.description.clone();
                p = match &r.peer {
                    SgPeer::CidrIpv4(c) => p.ip_ranges(
                        IpRange::builder()
                            .cidr_ip(c.to_string())
                            .description(d)
                            .build(),
                    ),
                    SgPeer::CidrIpv6(c) => p.ipv6_ranges(
                        Ipv6Range::builder()
                            .cidr_ipv6(c.to_string())
                            .description(d)
                            .build(),
                    ),
                    SgPeer::OwnGroup => p.user_id_group_pairs(
                        UserIdGroupPair::builder()
                            .group_id(group_id)
                            .description(d)
                            .build(),
                    ),
                    SgPeer::ReferencedGroup(g) => p.user_id_group_pairs(
                        UserIdGroupPair::builder()
                            .group_id(g)
                            .description(d)
                            .build(),
                    ),
                    SgPeer::PrefixList(l) => p.prefix_list_ids(
                        PrefixListId::builder()
                            .prefix_list_id(l)
                            .description(d)
                            .build(),
                    ),
                };
            }
            p.build()
        })
        .collect()
}

pub(crate) fn to_rule_request(r: &SgRule, group_id: &str) -> SecurityGroupRuleRequest {
    let b = SecurityGroupRuleRequest::builder()
        .ip_protocol(&r.ip_protocol)
        .from_port(r.from_port)
        .to_port(r.to_port)
        .description(&r.description);
    match &r.peer {
        SgPeer::CidrIpv4(c) => b.cidr_ipv4(c.to_string()),
        SgPeer::CidrIpv6(c) => b.cidr_ipv6(c.to_string()),
        SgPeer::OwnGroup => b.referenced_group_id(group_id),
        SgPeer::ReferencedGroup(g) => b.referenced_group_id(g),
        SgPeer::PrefixList(l) => b.prefix_list_id(l),
    }
    .build()
}
