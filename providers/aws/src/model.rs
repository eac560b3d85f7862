//! AWS native desired state: the objects EC2 stores, one struct per API object.
//!
//! Security group rules are kept one per peer, as `DescribeSecurityGroupRules` returns them
//! (and as AWS counts them against the 60-rule quota); [`SecurityGroup::ip_permissions`]
//! groups them into the `IpPermissions` shape that `AuthorizeSecurityGroupIngress` takes.

use std::collections::BTreeMap;

use perimeter_core::plan::Keyed;
use perimeter_core::{Cidr, Direction};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The other end of a security group rule.
#[derive(Clone, PartialEq, Eq, Hash, Debug, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SgPeer {
    /// `CidrIpv4`.
    CidrIpv4(Cidr),
    /// `CidrIpv6`.
    CidrIpv6(Cidr),
    /// A reference to the owned group itself: the protected nodes.
    OwnGroup,
    /// A reference to another security group (only ever observed, never desired).
    ReferencedGroup(String),
    /// A managed prefix list (only ever observed, never desired).
    PrefixList(String),
}

/// One security group rule (one peer).
#[derive(Clone, PartialEq, Eq, Hash, Debug, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SgRule {
    /// Ingress or egress (`IsEgress`).
    pub direction: Direction,
    /// `IpProtocol`: `tcp`, `udp`, `icmp`, `icmpv6`, `-1` (all) or a protocol number.
    pub ip_protocol: String,
    /// `FromPort` (ICMP type; -1 for all).
    pub from_port: i32,
    /// `ToPort` (ICMP code; -1 for all).
    pub to_port: i32,
    /// Source (ingress) or destination (egress).
    pub peer: SgPeer,
    /// `Description`; perimeter writes the policy and rule names here.
    pub description: String,
}

impl Keyed for SgRule {
    /// Everything but the description: a description change is an in-place update.
    type Key<'a> = (Direction, &'a str, i32, i32, &'a SgPeer);
    fn key(&self) -> Self::Key<'_> {
        (
            self.direction,
            &self.ip_protocol,
            self.from_port,
            self.to_port,
            &self.peer,
        )
    }
}

/// The security group perimeter owns in one VPC.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct SecurityGroup {
    /// `GroupName`.
    pub group_name: String,
    /// `VpcId`.
    pub vpc_id: String,
    /// Group `Description` (fixed at creation).
    pub description: String,
    /// All rules, sorted.
    pub rules: Vec<SgRule>,
}

/// What a compiled document calls the owned group's id before it exists.
pub const OWN_GROUP_ID: &str = "${self}";

impl SecurityGroup {
    /// Rules of one direction.
    pub fn rules(&self, direction: Direction) -> impl Iterator<Item = &SgRule> {
        self.rules.iter().filter(move |r| r.direction == direction)
    }

    /// The EC2 `IpPermissions` (ingress) or `IpPermissionsEgress` list for one direction.
    pub fn ip_permissions(&self, direction: Direction) -> Vec<Value> {
        ip_permissions(self.rules(direction), OWN_GROUP_ID)
    }
}

/// Groups rules into EC2 `IpPermission` objects (one per protocol and port range), naming the
/// owned group by `own_group_id`.
pub fn ip_permissions<'a>(
    rules: impl Iterator<Item = &'a SgRule>,
    own_group_id: &str,
) -> Vec<Value> {
    group_by_protocol_and_ports(rules)
        .into_iter()
        .map(|((proto, from, to), rules)| {
            let mut perm = serde_json::Map::new();
            perm.insert("IpProtocol".into(), json!(proto));
            if has_ports(&proto) {
                perm.insert("FromPort".into(), json!(from));
                perm.insert("ToPort".into(), json!(to));
            }
            let (mut v4, mut v6, mut groups, mut lists) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for r in rules {
                let d = &r.description;
                match &r.peer {
                    SgPeer::CidrIpv4(c) => {
                        v4.push(json!({"CidrIp": c.to_string(), "Description": d}))
                    }
                    SgPeer::CidrIpv6(c) => {
                        v6.push(json!({"CidrIpv6": c.to_string(), "Description": d}))
                    }
                    SgPeer::OwnGroup => {
                        groups.push(json!({"GroupId": own_group_id, "Description": d}))
                    }
                    SgPeer::ReferencedGroup(id) => {
                        groups.push(json!({"GroupId": id, "Description": d}))
                    }
                    SgPeer::PrefixList(id) => {
                        lists.push(json!({"PrefixListId": id, "Description": d}))
                    }
                }
            }
            perm.insert("IpRanges".into(), json!(v4));
            perm.insert("Ipv6Ranges".into(), json!(v6));
            perm.insert("UserIdGroupPairs".into(), json!(groups));
            if !lists.is_empty() {
                perm.insert("PrefixListIds".into(), json!(lists));
            }
            Value::Object(perm)
        })
        .collect()
}

/// Rules grouped the way EC2's `IpPermission` groups them: by protocol and port range.
pub fn group_by_protocol_and_ports<'a>(
    rules: impl Iterator<Item = &'a SgRule>,
) -> BTreeMap<(String, i32, i32), Vec<&'a SgRule>> {
    let mut grouped: BTreeMap<(String, i32, i32), Vec<&SgRule>> = BTreeMap::new();
    for r in rules {
        grouped
            .entry((r.ip_protocol.clone(), r.from_port, r.to_port))
            .or_default()
            .push(r);
    }
    grouped
}

/// True for protocols whose `FromPort`/`ToPort` mean something to EC2.
pub fn has_ports(ip_protocol: &str) -> bool {
    matches!(
        ip_protocol,
        "tcp" | "udp" | "icmp" | "icmpv6" | "6" | "17" | "1" | "58"
    )
}

/// One network ACL entry.
#[derive(Clone, PartialEq, Eq, Hash, Debug, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NaclEntry {
    /// `Egress`.
    pub egress: bool,
    /// `RuleNumber` (1-32766): the entry's identity and its place in the evaluation order.
    pub rule_number: u16,
    /// `Protocol` as EC2 spells it: `-1` or a protocol number (`6`, `17`, `1`, `58`, ...).
    pub protocol: String,
    /// `RuleAction`: `allow` or `deny`.
    pub rule_action: String,
    /// `CidrBlock` or `Ipv6CidrBlock`.
    pub cidr: Cidr,
    /// `PortRange` for TCP and UDP.
    pub port_range: Option<(u16, u16)>,
    /// `IcmpTypeCode` (type, code; -1 for all) for ICMP and ICMPv6.
    pub icmp_type_code: Option<(i32, i32)>,
}

impl Keyed for NaclEntry {
    type Key<'a> = (bool, u16);
    fn key(&self) -> Self::Key<'_> {
        (self.egress, self.rule_number)
    }
}

impl NaclEntry {
    /// The EC2 `CreateNetworkAclEntry` / `NetworkAclEntry` shape.
    pub fn to_api(&self) -> Value {
        let mut m = serde_json::Map::new();
        m.insert("RuleNumber".into(), json!(self.rule_number));
        m.insert("Protocol".into(), json!(self.protocol));
        m.insert("RuleAction".into(), json!(self.rule_action));
        m.insert("Egress".into(), json!(self.egress));
        if self.cidr.is_ipv4() {
            m.insert("CidrBlock".into(), json!(self.cidr.to_string()));
        } else {
            m.insert("Ipv6CidrBlock".into(), json!(self.cidr.to_string()));
        }
        if let Some((from, to)) = self.port_range {
            m.insert("PortRange".into(), json!({"From": from, "To": to}));
        }
        if let Some((t, c)) = self.icmp_type_code {
            m.insert("IcmpTypeCode".into(), json!({"Type": t, "Code": c}));
        }
        Value::Object(m)
    }
}

/// The network ACL perimeter owns for the node subnets.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct NetworkAcl {
    /// `VpcId`.
    pub vpc_id: String,
    /// Subnets to associate.
    pub subnets: Vec<String>,
    /// Entries in rule-number order (the `*` default-deny entries are implicit).
    pub entries: Vec<NaclEntry>,
}

/// `InstanceMetadataOptions` perimeter sets on the selected instances. `None` fields are left
/// as they are.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct MetadataOptions {
    /// `HttpEndpoint`: `enabled` or `disabled`.
    pub http_endpoint: String,
    /// `HttpTokens`: `required` (IMDSv2 only) or `optional`.
    pub http_tokens: Option<String>,
    /// `HttpPutResponseHopLimit`: 1 keeps tokens from reaching pods behind a bridge.
    pub http_put_response_hop_limit: Option<u8>,
}

impl MetadataOptions {
    /// The EC2 `ModifyInstanceMetadataOptions` request fields.
    pub fn to_api(&self) -> Value {
        let mut m = serde_json::Map::new();
        m.insert("HttpEndpoint".into(), json!(self.http_endpoint));
        if let Some(t) = &self.http_tokens {
            m.insert("HttpTokens".into(), json!(t));
        }
        if let Some(h) = self.http_put_response_hop_limit {
            m.insert("HttpPutResponseHopLimit".into(), json!(h));
        }
        Value::Object(m)
    }
}
