//! What perimeter observed in one AWS target: the input of planning, the output of `observe`.
//! Plain data, serializable, so that planning stays pure and testable without a cloud.

use std::collections::BTreeMap;

use perimeter_core::Cidr;
use serde::{Deserialize, Serialize};

use crate::model::{MetadataOptions, NaclEntry, SgRule};

/// Tag key that marks an object as perimeter's and names the policy that owns it.
pub(crate) const OWNER_TAG: &str = "perimeter:policy";

/// Prefix of the tags on the owned NACL that record, per subnet, the NACL the subnet was on
/// before perimeter moved it (`perimeter:previous-nacl:subnet-0abc` = `acl-0def`): release
/// and destroy move it back there. Only a NACL other than the VPC's default is recorded (the
/// default is where a subnet goes when nothing is recorded).
pub(crate) const PREVIOUS_NACL_TAG: &str = "perimeter:previous-nacl:";

/// Tags a NACL can carry (EC2's limit per resource), less `Name` and the ownership tag.
pub(crate) const PREVIOUS_NACL_TAGS_MAX: usize = 48;

/// A security group rule as observed, with its id.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, PartialOrd, Ord)]
pub struct ObservedSgRule {
    /// `sgr-...`.
    pub rule_id: String,
    /// The rule in perimeter's model (a reference to the owned group is `OwnGroup`).
    pub rule: SgRule,
}

/// The owned security group as observed.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ObservedSecurityGroup {
    /// `sg-...`.
    pub group_id: String,
    /// Its rules, sorted by rule id.
    pub rules: Vec<ObservedSgRule>,
}

/// The owned network ACL as observed.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ObservedNetworkAcl {
    /// `acl-...`.
    pub network_acl_id: String,
    /// Its entries except the `*` defaults, sorted by direction and number.
    pub entries: Vec<NaclEntry>,
    /// Subnets associated with it.
    pub subnets: Vec<String>,
}

/// A subnet's current NACL association (needed to move the subnet to the owned NACL).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct SubnetAssociation {
    /// `subnet-...`.
    pub subnet_id: String,
    /// `aclassoc-...`.
    pub association_id: String,
    /// The NACL it is associated with now.
    pub network_acl_id: String,
}

/// A worker instance the target selects.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ObservedInstance {
    /// `i-...`.
    pub instance_id: String,
    /// Its current metadata options (all three fields filled in).
    pub metadata: MetadataOptions,
    /// Public IPv4 address, if any.
    pub public_ip: Option<String>,
    /// Subnet.
    pub subnet_id: Option<String>,
    /// Security groups on its primary interface.
    pub security_groups: Vec<String>,
}

/// A network interface of a selected instance: where its packets are decided.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ObservedInterface {
    /// `eni-...`.
    pub interface_id: String,
    /// The instance it is attached to (empty for an interface attached to none).
    pub instance_id: String,
    /// Its subnet (whose NACL it passes).
    pub subnet_id: String,
    /// Every security group on it, sorted.
    pub groups: Vec<String>,
}

/// A security group on a node interface that the target does not own.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ObservedOtherGroup {
    /// `sg-...`.
    pub group_id: String,
    /// `GroupName`.
    pub group_name: String,
    /// Its rules (a reference to itself is `OwnGroup`), sorted.
    pub rules: Vec<SgRule>,
}

/// The network ACL a subnet is associated with, read by VPC (every subnet has exactly one).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ObservedSubnetAcl {
    /// `subnet-...`.
    pub subnet_id: String,
    /// `acl-...`.
    pub network_acl_id: String,
    /// True for the VPC's default NACL.
    pub is_default: bool,
    /// Its entries except the `*` defaults.
    pub entries: Vec<NaclEntry>,
}

/// A group that carries the policy's ownership tag but that no target declares.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct OrphanGroup {
    /// `sg-...`.
    pub group_id: String,
    /// `GroupName`.
    pub group_name: String,
    /// `VpcId`.
    pub vpc_id: String,
}

/// Everything observed for one target.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, Default)]
pub struct ObservedAws {
    /// The owned security group, if it exists.
    pub security_group: Option<ObservedSecurityGroup>,
    /// A security group with the target's group name that perimeter does not own.
    pub foreign_group: Option<String>,
    /// True when the VPC has an IPv6 CIDR (a new group then also gets a `::/0` egress rule).
    pub vpc_has_ipv6: bool,
    /// The owned NACL, if the target has one and it exists.
    pub network_acl: Option<ObservedNetworkAcl>,
    /// Current NACL associations of the target's NACL subnets.
    pub subnet_associations: Vec<SubnetAssociation>,
    /// Selected instances, sorted by id.
    pub instances: Vec<ObservedInstance>,
    /// Subnets whose route table sends 0.0.0.0/0 to an internet gateway.
    pub internet_routed_subnets: Vec<String>,
    /// Every network interface of the selected instances, by id.
    #[serde(default)]
    pub interfaces: Vec<ObservedInterface>,
    /// The groups on those interfaces other than the owned one, by id.
    #[serde(default)]
    pub other_groups: Vec<ObservedOtherGroup>,
    /// The NACL of every subnet the nodes are in or the target's NACL names, by subnet.
    #[serde(default)]
    pub subnet_acls: Vec<ObservedSubnetAcl>,
    /// The CIDRs of the subnets the nodes' interfaces are in: where node peers can be.
    #[serde(default)]
    pub node_subnet_cidrs: Vec<Cidr>,
    /// Every subnet associated with the owned NACL (for `destroy`, which moves them back).
    #[serde(default)]
    pub owned_acl_associations: Vec<SubnetAssociation>,
    /// The VPC's default NACL.
    #[serde(default)]
    pub default_network_acl: Option<String>,
    /// Groups of this policy (by ownership tag) in the target's region that no target declares
    /// (a target taken out of the policy): reported on the region's first target.
    #[serde(default)]
    pub orphan_groups: Vec<OrphanGroup>,
    /// Subnets the target's `network_acl` names that the VPC does not have.
    #[serde(default)]
    pub unknown_subnets: Vec<String>,
    /// Every interface that carries the owned group, selected or not, attached or not: what
    /// retiring the group takes it off (EC2 refuses to delete a group still on one).
    #[serde(default)]
    pub owned_group_interfaces: Vec<ObservedInterface>,
    /// Per subnet on the owned NACL: the NACL it goes back to when released, the one recorded
    /// when perimeter moved it ([`PREVIOUS_NACL_TAG`]) if that still exists in the VPC, else
    /// the VPC's default.
    #[serde(default)]
    pub network_acl_restore: BTreeMap<String, String>,
    /// Subnets whose previous NACL the owned NACL records (its tags), by subnet.
    #[serde(default)]
    pub recorded_previous: BTreeMap<String, String>,
}
