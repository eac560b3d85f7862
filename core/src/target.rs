//! Where a policy is enforced, per cloud. Targets carry the names a compiler needs (the group
//! to create, the tags that select nodes) and nothing that would make compile do I/O.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::addr::Cidr;
use crate::diag::Span;

/// All targets of a policy.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Targets {
    /// AWS accounts / regions / VPCs.
    pub aws: Vec<AwsTarget>,
    /// GCP projects / networks.
    pub gcp: Vec<GcpTarget>,
    /// Azure subscriptions / NSGs.
    pub azure: Vec<AzureTarget>,
}

/// One AWS VPC to protect.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AwsTarget {
    /// Account id, when the job must check it runs in the right account.
    pub account: Option<String>,
    /// Region, e.g. `us-east-1`.
    pub region: String,
    /// VPC id the owned security group lives in.
    pub vpc: String,
    /// Name of the security group perimeter owns.
    pub security_group: String,
    /// Tags selecting the worker instances (metadata options, attachment).
    pub instances: BTreeMap<String, String>,
    /// The owned network ACL, if the policy manages one.
    pub network_acl: Option<AwsNaclTarget>,
    /// Add the owned security group to selected instances that lack it (their other groups
    /// stay). Without it, such instances are reported as findings only.
    #[serde(default)]
    pub attach: bool,
    /// Where the target is declared.
    #[serde(skip)]
    pub span: Span,
}

/// The network ACL part of an AWS target.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AwsNaclTarget {
    /// Subnets to associate with the owned NACL.
    pub subnets: Vec<String>,
    /// The node subnets' CIDRs: what `self` means to a NACL, which cannot name instances.
    pub node_cidrs: Vec<Cidr>,
    /// Where `network_acl` is declared.
    #[serde(skip)]
    pub span: Span,
}

/// One GCP VPC network to protect.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GcpTarget {
    /// Project id.
    pub project: String,
    /// VPC network name.
    pub network: String,
    /// Network tags of the nodes: the rules' targets, and `self` as a source.
    pub target_tags: Vec<String>,
    /// Service accounts the nodes run as: rules of others that target or come from service
    /// accounts are checked against them (empty: such rules are assumed to concern the nodes).
    #[serde(default)]
    pub service_accounts: Vec<String>,
    /// Regions the nodes run in: each one's regional network firewall policies are read
    /// (`regionNetworkFirewallPolicies.getEffectiveFirewalls`) and evaluated after the global
    /// one. Sorted, without duplicates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<String>,
    /// Node address ranges: what `self` means in egress rules (GCP egress rules cannot
    /// select destinations by tag).
    pub node_ranges: Vec<Cidr>,
    /// Priority of the first rule of each direction.
    pub priority_base: u16,
    /// True for the stand-in used when the policy declares no GCP target: compile then notes,
    /// rather than refuses, what only a real target could say.
    #[serde(skip)]
    pub placeholder: bool,
    /// Where the target is declared.
    #[serde(skip)]
    pub span: Span,
}

/// One Azure network security group to manage.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AzureTarget {
    /// Subscription id.
    pub subscription: String,
    /// Resource group of the NSG.
    pub resource_group: String,
    /// NSG name.
    pub nsg: String,
    /// Region, e.g. `westeurope` (needed to create the NSG).
    pub location: Option<String>,
    /// Application security group holding the nodes' NICs: what `self` means.
    pub application_security_group: String,
    /// The NSG belongs to someone else (e.g. AKS): perimeter neither creates nor replaces
    /// it, and writes only the rules named with its prefix, one by one.
    #[serde(default)]
    pub shared: bool,
    /// Subnets the owned NSG is associated with: `vnet/subnet` in the target's resource
    /// group, or a full subnet resource id. Without any, an owned NSG enforces nothing until
    /// someone associates it.
    #[serde(default)]
    pub subnets: Vec<String>,
    /// The nodes' network interfaces, read for their enforcement path (the NSG of their
    /// subnet and their own, and their ASG membership).
    #[serde(default)]
    pub nics: Option<AzureNics>,
    /// Where the target is declared.
    #[serde(skip)]
    pub span: Span,
}

/// Which network interfaces are the nodes'.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AzureNics {
    /// Resource group of the NICs (AKS: the `MC_…` node resource group); the target's when
    /// absent.
    #[serde(default)]
    pub resource_group: Option<String>,
    /// Tags every node NIC carries.
    pub tags: BTreeMap<String, String>,
}

impl AwsTarget {
    /// A target for compiling a policy that declares no AWS target.
    pub fn placeholder(policy: &str) -> Self {
        Self {
            account: None,
            region: "us-east-1".into(),
            vpc: "vpc-placeholder".into(),
            security_group: policy.into(),
            instances: BTreeMap::new(),
            network_acl: None,
            attach: false,
            span: Span::default(),
        }
    }
}

impl GcpTarget {
    /// A target for compiling a policy that declares no GCP target.
    pub fn placeholder(policy: &str) -> Self {
        Self {
            project: "placeholder-project".into(),
            network: "default".into(),
            target_tags: vec![policy.into()],
            service_accounts: Vec::new(),
            regions: Vec::new(),
            node_ranges: Vec::new(),
            priority_base: 1000,
            placeholder: true,
            span: Span::default(),
        }
    }
}

impl AzureTarget {
    /// A target for compiling a policy that declares no Azure target.
    pub fn placeholder(policy: &str) -> Self {
        Self {
            subscription: "00000000-0000-0000-0000-000000000000".into(),
            resource_group: "placeholder".into(),
            nsg: policy.into(),
            location: None,
            application_security_group: format!("{policy}-nodes"),
            shared: false,
            subnets: Vec::new(),
            nics: None,
            span: Span::default(),
        }
    }
}

impl Targets {
    /// The declared AWS targets, or one placeholder named after the policy, so that a policy
    /// can always be compiled for every cloud.
    pub fn aws_or_placeholder(&self, policy: &str) -> Vec<AwsTarget> {
        or_placeholder(&self.aws, || AwsTarget::placeholder(policy))
    }

    /// The declared GCP targets, or one placeholder.
    pub fn gcp_or_placeholder(&self, policy: &str) -> Vec<GcpTarget> {
        or_placeholder(&self.gcp, || GcpTarget::placeholder(policy))
    }

    /// The declared Azure targets, or one placeholder.
    pub fn azure_or_placeholder(&self, policy: &str) -> Vec<AzureTarget> {
        or_placeholder(&self.azure, || AzureTarget::placeholder(policy))
    }
}

fn or_placeholder<T: Clone>(declared: &[T], placeholder: impl FnOnce() -> T) -> Vec<T> {
    if declared.is_empty() {
        vec![placeholder()]
    } else {
        declared.to_vec()
    }
}
