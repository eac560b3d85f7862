//! Reads of the nodes' enforcement path beyond the objects perimeter owns: every network
//! interface of the selected instances with all its security groups, the rules of those
//! groups, and the network ACL each node subnet is actually associated with — read by VPC,
//! never by association filter (which misses the default NACL on some EC2 implementations and
//! silently skips a subnet that does not exist).

use std::collections::{BTreeMap, BTreeSet};

use perimeter_core::Cidr;
use perimeter_core::target::AwsTarget;

use crate::backend::{AwsBackend, AwsError, FILTER_VALUES_MAX};
use crate::convert::{convert_nacl_entry, convert_rule, filter};
use crate::model::{NaclEntry, SgRule};
use crate::paginate::describe_all;
use crate::state::{
    OWNER_TAG, ObservedAws, ObservedInterface, ObservedNetworkAcl, ObservedOtherGroup,
    ObservedSubnetAcl, OrphanGroup, PREVIOUS_NACL_TAG, SubnetAssociation,
};

impl AwsBackend {
    /// Groups of the policy in this region that no target declares: one paginated call.
    pub(crate) async fn observe_orphans(
        &self,
        policy: &str,
        targets: &[AwsTarget],
        out: &mut [ObservedAws],
    ) -> Result<(), AwsError> {
        let client = self.client();
        let owned = describe_all!(
            client
                .describe_security_groups()
                .filters(filter(&format!("tag:{OWNER_TAG}"), [policy])),
            1000,
            security_groups,
            "DescribeSecurityGroups"
        )?;
        let declared = |vpc: &str, name: &str| {
            targets
                .iter()
                .any(|t| t.vpc == vpc && t.security_group == name)
        };
        let mut orphans: Vec<OrphanGroup> = owned
            .iter()
            .filter_map(|g| {
                let (vpc, name) = (g.vpc_id()?, g.group_name()?);
                (!declared(vpc, name)).then(|| OrphanGroup {
                    group_id: g.group_id().unwrap_or_default().to_string(),
                    group_name: name.to_string(),
                    vpc_id: vpc.to_string(),
                })
            })
            .collect();
        orphans.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        if let Some(first) = out.first_mut() {
            first.orphan_groups = orphans;
        }
        Ok(())
    }

    /// Every interface matching `filter_name` in `values`: one paginated call per 200 values.
    /// An interface attached to no instance has an empty `instance_id`.
    async fn interfaces_where(
        &self,
        filter_name: &str,
        values: &[String],
    ) -> Result<Vec<ObservedInterface>, AwsError> {
        let client = self.client();
        let mut out = Vec::new();
        for chunk in values.chunks(FILTER_VALUES_MAX) {
            let enis = describe_all!(
                client
                    .describe_network_interfaces()
                    .filters(filter(filter_name, chunk.iter().cloned())),
                1000,
                network_interfaces,
                "DescribeNetworkInterfaces"
            )?;
            out.extend(enis.iter().map(|e| {
                let mut groups: Vec<String> = e
                    .groups()
                    .iter()
                    .filter_map(|g| g.group_id().map(str::to_string))
                    .collect();
                groups.sort();
                groups.dedup();
                ObservedInterface {
                    interface_id: e.network_interface_id().unwrap_or_default().to_string(),
                    instance_id: e
                        .attachment()
                        .and_then(|a| a.instance_id())
                        .unwrap_or_default()
                        .to_string(),
                    subnet_id: e.subnet_id().unwrap_or_default().to_string(),
                    groups,
                }
            }));
        }
        Ok(out)
    }

    /// Every interface attached to the selected instances: one paginated call per 200
    /// instances.
    pub(crate) async fn observe_interfaces(&self, out: &mut [ObservedAws]) -> Result<(), AwsError> {
        let ids: Vec<String> = out
            .iter()
            .flat_map(|o| o.instances.iter().map(|i| i.instance_id.clone()))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut by_instance: BTreeMap<String, Vec<ObservedInterface>> = BTreeMap::new();
        for i in self
            .interfaces_where("attachment.instance-id", &ids)
            .await?
        {
            if !i.instance_id.is_empty() {
                by_instance
                    .entry(i.instance_id.clone())
                    .or_default()
                    .push(i);
            }
        }
        for obs in out.iter_mut() {
            let mut interfaces: Vec<ObservedInterface> = obs
                .instances
                .iter()
                .flat_map(|i| by_instance.get(&i.instance_id).cloned().unwrap_or_default())
                .collect();
            interfaces.sort_by(|a, b| a.interface_id.cmp(&b.interface_id));
            interfaces.dedup();
            obs.interfaces = interfaces;
        }
        Ok(())
    }

    /// Every interface carrying an owned group, whichever instance it is on or none: one
    /// paginated call per 200 groups. Retiring a group takes it off all of them.
    pub(crate) async fn observe_owned_group_interfaces(
        &self,
        out: &mut [ObservedAws],
    ) -> Result<(), AwsError> {
        let owned: Vec<String> = out
            .iter()
            .filter_map(|o| o.security_group.as_ref().map(|g| g.group_id.clone()))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let carrying = self.interfaces_where("group-id", &owned).await?;
        for obs in out.iter_mut() {
            if let Some(g) = &obs.security_group {
                let mut interfaces: Vec<ObservedInterface> = carrying
                    .iter()
                    .filter(|i| i.groups.contains(&g.group_id))
                    .cloned()
                    .collect();
                interfaces.sort_by(|a, b| {
                    (&a.instance_id, &a.interface_id).cmp(&(&b.instance_id, &b.interface_id))
                });
                interfaces.dedup();
                obs.owned_group_interfaces = interfaces;
            }
        }
        Ok(())
    }

    /// The CIDRs of the subnets the nodes' interfaces are in: one call per 200 subnets.
    pub(crate) async fn observe_node_subnets(
        &self,
        out: &mut [ObservedAws],
    ) -> Result<(), AwsError> {
        let client = self.client();
        let ids: Vec<String> = out
            .iter()
            .flat_map(|o| o.interfaces.iter().map(|i| i.subnet_id.clone()))
            .filter(|s| !s.is_empty())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut cidrs: BTreeMap<String, Vec<Cidr>> = BTreeMap::new();
        for chunk in ids.chunks(FILTER_VALUES_MAX) {
            let found = describe_all!(
                client
                    .describe_subnets()
                    .filters(filter("subnet-id", chunk.iter().cloned())),
                1000,
                subnets,
                "DescribeSubnets"
            )?;
            for s in found {
                let mut here: Vec<Cidr> = s
                    .cidr_block()
                    .and_then(|c| c.parse().ok())
                    .into_iter()
                    .collect();
                here.extend(
                    s.ipv6_cidr_block_association_set()
                        .iter()
                        .filter_map(|a| a.ipv6_cidr_block().and_then(|c| c.parse::<Cidr>().ok())),
                );
                cidrs.insert(s.subnet_id().unwrap_or_default().to_string(), here);
            }
        }
        for obs in out.iter_mut() {
            let mut all: Vec<Cidr> = obs
                .interfaces
                .iter()
                .flat_map(|i| cidrs.get(&i.subnet_id).cloned().unwrap_or_default())
                .collect();
            all.sort();
            all.dedup();
            obs.node_subnet_cidrs = all;
        }
        Ok(())
    }

    /// Names and rules of every group on a node interface that the target does not own: one
    /// `DescribeSecurityGroups` and one paginated `DescribeSecurityGroupRules` per 200 groups.
    pub(crate) async fn observe_other_groups(
        &self,
        out: &mut [ObservedAws],
    ) -> Result<(), AwsError> {
        let client = self.client();
        let owned: BTreeSet<&str> = out
            .iter()
            .filter_map(|o| o.security_group.as_ref().map(|g| g.group_id.as_str()))
            .collect();
        let ids: Vec<String> = out
            .iter()
            .flat_map(|o| o.interfaces.iter().flat_map(|i| i.groups.iter()))
            .filter(|g| !owned.contains(g.as_str()))
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut groups: BTreeMap<String, ObservedOtherGroup> = BTreeMap::new();
        for chunk in ids.chunks(FILTER_VALUES_MAX) {
            let found = describe_all!(
                client
                    .describe_security_groups()
                    .filters(filter("group-id", chunk.iter().cloned())),
                1000,
                security_groups,
                "DescribeSecurityGroups"
            )?;
            for g in found {
                let id = g.group_id().unwrap_or_default().to_string();
                groups.insert(
                    id.clone(),
                    ObservedOtherGroup {
                        group_id: id,
                        group_name: g.group_name().unwrap_or_default().to_string(),
                        rules: Vec::new(),
                    },
                );
            }
            let rules = describe_all!(
                client
                    .describe_security_group_rules()
                    .filters(filter("group-id", chunk.iter().cloned())),
                1000,
                security_group_rules,
                "DescribeSecurityGroupRules"
            )?;
            for r in rules {
                let gid = r.group_id().unwrap_or_default().to_string();
                let rule: SgRule = convert_rule(&r, &gid)?.rule;
                if let Some(g) = groups.get_mut(&gid) {
                    g.rules.push(rule);
                }
            }
        }
        for g in groups.values_mut() {
            g.rules.sort();
            g.rules.dedup();
        }
        for obs in out.iter_mut() {
            let wanted: BTreeSet<&String> = obs
                .interfaces
                .iter()
                .flat_map(|i| i.groups.iter())
                .collect();
            obs.other_groups = wanted
                .into_iter()
                .filter_map(|id| groups.get(id).cloned())
                .collect();
        }
        Ok(())
    }

    /// Every NACL of the targets' VPCs (one paginated call): the owned one, the association
    /// of every subnet the target names, and the NACL of every subnet a node is in.
    pub(crate) async fn observe_nacls(
        &self,
        policy: &str,
        targets: &[AwsTarget],
        out: &mut [ObservedAws],
    ) -> Result<(), AwsError> {
        let client = self.client();
        let vpcs: Vec<String> = targets
            .iter()
            .map(|t| t.vpc.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if vpcs.is_empty() {
            return Ok(());
        }
        let vpcs = &vpcs;
        let acls = describe_all!(
            client
                .describe_network_acls()
                .filters(filter("vpc-id", vpcs.iter().cloned())),
            // EC2 takes at most 100 here (5 to 1,000 for the other Describe calls).
            100,
            network_acls,
            "DescribeNetworkAcls"
        )?;
        let entries = |a: &aws_sdk_ec2::types::NetworkAcl| -> Vec<NaclEntry> {
            let mut e: Vec<NaclEntry> = a
                .entries()
                .iter()
                .filter(|e| e.rule_number().is_some_and(|n| (1..=32766).contains(&n)))
                .filter_map(convert_nacl_entry)
                .collect();
            e.sort_by_key(|e| (e.egress, e.rule_number));
            e
        };
        for (t, obs) in targets.iter().zip(out.iter_mut()) {
            let in_vpc: Vec<&aws_sdk_ec2::types::NetworkAcl> = acls
                .iter()
                .filter(|a| a.vpc_id() == Some(t.vpc.as_str()))
                .collect();
            obs.default_network_acl = in_vpc
                .iter()
                .find(|a| a.is_default() == Some(true))
                .and_then(|a| a.network_acl_id().map(str::to_string));
            // subnet → (association, the NACL).
            let mut by_subnet: BTreeMap<&str, (&str, &aws_sdk_ec2::types::NetworkAcl)> =
                BTreeMap::new();
            for a in &in_vpc {
                for s in a.associations() {
                    if let Some(subnet) = s.subnet_id() {
                        let assoc = s.network_acl_association_id().unwrap_or_default();
                        by_subnet.insert(subnet, (assoc, a));
                    }
                }
            }
            // The owned NACL, also when the target no longer declares one (it is then
            // planned for removal).
            {
                let name = t.security_group.as_str();
                let owned = in_vpc.iter().find(|a| {
                    let tag = |k: &str, v: &str| {
                        a.tags()
                            .iter()
                            .any(|tag| tag.key() == Some(k) && tag.value() == Some(v))
                    };
                    tag(OWNER_TAG, policy) && tag("Name", name)
                });
                if let Some(a) = owned {
                    let mut assoc: Vec<SubnetAssociation> = a
                        .associations()
                        .iter()
                        .filter_map(|s| {
                            Some(SubnetAssociation {
                                subnet_id: s.subnet_id()?.to_string(),
                                association_id: s.network_acl_association_id()?.to_string(),
                                network_acl_id: a.network_acl_id()?.to_string(),
                            })
                        })
                        .collect();
                    assoc.sort_by(|x, y| x.subnet_id.cmp(&y.subnet_id));
                    obs.recorded_previous = a
                        .tags()
                        .iter()
                        .filter_map(|tag| {
                            let subnet = tag.key()?.strip_prefix(PREVIOUS_NACL_TAG)?;
                            Some((subnet.to_string(), tag.value()?.to_string()))
                        })
                        .collect();
                    // Back where perimeter found it, if that NACL is still there; else to
                    // the default (where every subnet of a VPC starts).
                    let owned_id = a.network_acl_id().unwrap_or_default();
                    obs.network_acl_restore = assoc
                        .iter()
                        .filter_map(|s| {
                            let previous = obs
                                .recorded_previous
                                .get(&s.subnet_id)
                                .filter(|p| p.as_str() != owned_id)
                                .filter(|p| {
                                    in_vpc
                                        .iter()
                                        .any(|x| x.network_acl_id() == Some(p.as_str()))
                                });
                            let to = previous.or(obs.default_network_acl.as_ref())?;
                            Some((s.subnet_id.clone(), to.clone()))
                        })
                        .collect();
                    obs.owned_acl_associations = assoc;
                    obs.network_acl = Some(ObservedNetworkAcl {
                        network_acl_id: a.network_acl_id().unwrap_or_default().to_string(),
                        entries: entries(a),
                        subnets: a
                            .associations()
                            .iter()
                            .filter_map(|s| s.subnet_id().map(str::to_string))
                            .collect(),
                    });
                }
            }
            if let Some(n) = &t.network_acl {
                let mut assoc = Vec::new();
                let mut unknown = Vec::new();
                for subnet in &n.subnets {
                    match by_subnet.get(subnet.as_str()) {
                        Some((association, acl)) => assoc.push(SubnetAssociation {
                            subnet_id: subnet.clone(),
                            association_id: association.to_string(),
                            network_acl_id: acl.network_acl_id().unwrap_or_default().to_string(),
                        }),
                        None => unknown.push(subnet.clone()),
                    }
                }
                assoc.sort_by(|a, b| a.subnet_id.cmp(&b.subnet_id));
                assoc.dedup();
                obs.subnet_associations = assoc;
                obs.unknown_subnets = unknown;
            }
            let mut subnets: BTreeSet<String> =
                obs.interfaces.iter().map(|i| i.subnet_id.clone()).collect();
            if let Some(n) = &t.network_acl {
                subnets.extend(n.subnets.iter().cloned());
            }
            obs.subnet_acls = subnets
                .into_iter()
                .filter_map(|s| {
                    let (_, a) = by_subnet.get(s.as_str())?;
                    Some(ObservedSubnetAcl {
                        subnet_id: s,
                        network_acl_id: a.network_acl_id().unwrap_or_default().to_string(),
                        is_default: a.is_default().unwrap_or(false),
                        entries: entries(a),
                    })
                })
                .collect();
        }
        Ok(())
    }
}
