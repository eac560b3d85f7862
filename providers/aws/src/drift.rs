//! Drift items of an AWS plan: each planned change, each violation on the nodes' enforcement
//! path and each finding, as a difference with a stable key.

use perimeter_core::drift::{DriftItem, DriftKind, posture_items, violation_items};

use crate::model::SgPeer;
use crate::plan::AwsTargetPlan;
use crate::render_plan::rule_line;

/// Every difference in one target, keyed `aws/region/vpc/group/…`.
pub(crate) fn items(p: &AwsTargetPlan) -> Vec<DriftItem> {
    let t = &p.target;
    let target = format!("{}/{}/{}", t.region, t.vpc, t.security_group);
    let item = |kind, resource, key: &str, detail: String| {
        DriftItem::new("aws", &target, kind, resource, key, detail)
    };
    let mut out = Vec::new();
    let sg = &p.security_group;
    if let Some(r) = &p.retire {
        // Drift sees a retirement only for a target the policy no longer declares.
        if let Some(g) = r
            .delete_security_group
            .as_ref()
            .filter(|_| p.desired.orphaned)
        {
            out.push(item(
                DriftKind::Unexpected,
                "security-group",
                "security-group",
                format!(
                    "security group {} ({g}) carries the policy's tag but no target declares it; it still decides the packets of {} interface(s)",
                    sg.group_name,
                    r.detach.len()
                ),
            ));
        }
        if let Some(acl) = r.delete_network_acl.as_ref().filter(|_| p.desired.orphaned) {
            out.push(item(
                DriftKind::Unexpected,
                "network-acl",
                "network-acl",
                format!(
                    "network ACL {acl} carries the policy's tag but no target declares it ({} subnet(s) on it)",
                    r.restore.len()
                ),
            ));
        }
        return out;
    }
    if sg.group_id.is_none() {
        out.push(item(
            DriftKind::Missing,
            "security-group",
            "security-group",
            format!("security group {} does not exist", sg.group_name),
        ));
    } else {
        for c in &sg.changes {
            let Some(r) = c.after.as_ref().or(c.before.as_ref()) else {
                continue;
            };
            let key = format!(
                "rule/{}/{}/{}/{}/{}",
                r.direction.as_str(),
                r.ip_protocol,
                r.from_port,
                r.to_port,
                peer_key(&r.peer)
            );
            out.push(item(
                DriftKind::of(c.action),
                "security-group-rule",
                &key,
                rule_line(r),
            ));
        }
    }
    if let Some(n) = &p.network_acl {
        if n.network_acl_id.is_none() {
            out.push(item(
                DriftKind::Missing,
                "network-acl",
                "network-acl",
                "the owned network ACL does not exist".into(),
            ));
        } else {
            for c in &n.changes {
                let Some(e) = c.after.as_ref().or(c.before.as_ref()) else {
                    continue;
                };
                let dir = if e.egress { "outbound" } else { "inbound" };
                out.push(item(
                    DriftKind::of(c.action),
                    "network-acl-entry",
                    &format!("nacl/{dir}/{}", e.rule_number),
                    format!(
                        "{dir} entry #{} ({} {} {})",
                        e.rule_number, e.protocol, e.cidr, e.rule_action
                    ),
                ));
            }
        }
        for a in &n.associate {
            out.push(item(
                DriftKind::Modified,
                "subnet-association",
                &format!("subnet/{}", a.subnet_id),
                format!(
                    "subnet {} is associated with {}, not the owned network ACL",
                    a.subnet_id, a.network_acl_id
                ),
            ));
        }
        for a in &n.release {
            out.push(item(
                DriftKind::Unexpected,
                "subnet-association",
                &format!("subnet/{}", a.subnet_id),
                format!(
                    "subnet {} is on the owned network ACL, but the policy does not name it",
                    a.subnet_id
                ),
            ));
        }
        if n.delete {
            out.push(item(
                DriftKind::Unexpected,
                "network-acl",
                "network-acl",
                "the owned network ACL is still there, but the target declares none".into(),
            ));
        }
    }
    for a in &p.attach {
        out.push(item(
            DriftKind::Missing,
            "instance-attachment",
            &format!("interface/{}/attachment", a.interface_id),
            format!(
                "{} ({}) does not carry security group {}",
                a.interface_id, a.instance_id, p.security_group.group_name
            ),
        ));
    }
    for m in &p.metadata {
        let hop = |h: Option<u8>| h.map_or("-".into(), |h| h.to_string());
        out.push(item(
            DriftKind::Modified,
            "instance-metadata",
            &format!("instance/{}/metadata", m.instance_id),
            format!(
                "{}: HttpEndpoint {}, HttpTokens {}, hop limit {} (policy: {}, {}, {})",
                m.instance_id,
                m.before.http_endpoint,
                m.before.http_tokens.as_deref().unwrap_or("-"),
                hop(m.before.http_put_response_hop_limit),
                m.after.http_endpoint,
                m.after.http_tokens.as_deref().unwrap_or("-"),
                hop(m.after.http_put_response_hop_limit),
            ),
        ));
    }
    out.extend(violation_items("aws", &target, &p.violations));
    out.extend(posture_items("aws", &target, &p.findings));
    out
}

/// A stable text form of a rule peer, for keys.
pub(crate) fn peer_key(p: &SgPeer) -> String {
    match p {
        SgPeer::CidrIpv4(c) | SgPeer::CidrIpv6(c) => c.to_string(),
        SgPeer::OwnGroup => "self".into(),
        SgPeer::ReferencedGroup(g) => g.clone(),
        SgPeer::PrefixList(l) => l.clone(),
    }
}
