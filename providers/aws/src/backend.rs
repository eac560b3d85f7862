//! The AWS backend: the only code that talks to EC2 (aws-sdk-ec2).
//!
//! Reads are bulk: one `DescribeSecurityGroups` for every target's group name, one paginated
//! `DescribeSecurityGroupRules` per 200 owned groups, one `DescribeVpcs`, NACLs, instances and
//! route tables by filter. Writes follow a plan exactly: create the group or NACL if the plan
//! says so, then add, then change, then remove; and after writing, read again rather than
//! trust write responses (which moto, among others, leaves incomplete).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_ec2::Client;
use aws_sdk_ec2::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_ec2::config::retry::RetryConfig;
use aws_sdk_ec2::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_ec2::error::{BoxError, DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_ec2::types::{
    Filter, HttpTokensState, IcmpTypeCode, InstanceMetadataEndpointState, IpPermission, IpRange,
    Ipv6Range, PortRange, PrefixListId, ResourceType, RuleAction, SecurityGroupRuleRequest,
    SecurityGroupRuleUpdate, Tag, TagSpecification, UserIdGroupPair,
};
use perimeter_core::target::AwsTarget;
use perimeter_core::{Cidr, Direction};

use crate::model::{MetadataOptions, NaclEntry, SgPeer, SgRule};
use crate::paginate::{PageError, paginate};
use crate::plan::{AwsTargetPlan, SgChange};
use crate::state::{
    OWNER_TAG, ObservedAws, ObservedInstance, ObservedNetworkAcl, ObservedSecurityGroup,
    ObservedSgRule, SubnetAssociation,
};

/// Most values EC2 accepts in one filter.
const FILTER_VALUES_MAX: usize = 200;

/// Attempts per request, counting the first: throttling (`RequestLimitExceeded`) and 5xx
/// answers are retried with exponential backoff and full jitter by the SDK's standard mode.
pub const MAX_ATTEMPTS: u32 = 6;

/// An EC2 call that failed, with the operation and the service's error code.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    /// The request failed (after retries).
    #[error("{operation} failed: {code}: {message}")]
    Api {
        /// EC2 operation.
        operation: &'static str,
        /// Error code (`InvalidPermission.Duplicate`, `RequestLimitExceeded`, ...), or `-`.
        code: String,
        /// The error with its context.
        message: String,
    },
    /// Pagination did not end.
    #[error("{operation}: pagination did not terminate after {pages} pages")]
    Runaway {
        /// EC2 operation.
        operation: &'static str,
        /// Pages fetched.
        pages: usize,
    },
    /// Something observed cannot be modelled (e.g. a rule with neither CIDR nor group).
    #[error("{0}")]
    Unexpected(String),
}

fn api_err<E, R>(operation: &'static str) -> impl Fn(aws_sdk_ec2::error::SdkError<E, R>) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    move |e| AwsError::Api {
        operation,
        code: e.code().unwrap_or("-").to_string(),
        message: e
            .message()
            .map_or_else(|| DisplayErrorContext(&e).to_string(), str::to_string),
    }
}

fn page_err(operation: &'static str) -> impl Fn(PageError<AwsError>) -> AwsError {
    move |e| match e {
        PageError::Fetch(e) => e,
        PageError::Runaway { pages } => AwsError::Runaway { operation, pages },
    }
}

/// Counts requests sent (each retry counts): the real cost against EC2's rate limits.
#[derive(Debug, Clone, Default)]
struct CallCounter(Arc<AtomicU64>);

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "perimeter::CallCounter"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// A connection to EC2 in one region.
#[derive(Debug, Clone)]
pub struct AwsBackend {
    client: Client,
    calls: CallCounter,
}

fn filter(name: &str, values: impl IntoIterator<Item = impl Into<String>>) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(values.into_iter().map(Into::into).collect()))
        .build()
}

fn normalize_protocol(p: &str) -> String {
    match p {
        "6" => "tcp".into(),
        "17" => "udp".into(),
        "1" => "icmp".into(),
        "58" => "icmpv6".into(),
        other => other.to_lowercase(),
    }
}

impl AwsBackend {
    /// Connects with the standard credential chain (environment, profile, SSO, web identity,
    /// ECS/EC2 roles). `AWS_ENDPOINT_URL` points it at an emulator.
    pub async fn connect(region: &str) -> Self {
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(region.to_string()))
            .load()
            .await;
        let calls = CallCounter::default();
        let conf = aws_sdk_ec2::config::Builder::from(&sdk)
            .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
            .interceptor(calls.clone())
            .build();
        Self {
            client: Client::from_conf(conf),
            calls,
        }
    }

    /// Requests sent so far, retries included.
    pub fn api_calls(&self) -> u64 {
        self.calls.0.load(Ordering::Relaxed)
    }

    /// The SDK client (for tests that change the cloud out of band).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Observes every target (all in this backend's region) with shared bulk reads.
    pub async fn observe(
        &self,
        policy: &str,
        targets: &[AwsTarget],
    ) -> Result<Vec<ObservedAws>, AwsError> {
        let mut out: Vec<ObservedAws> = targets.iter().map(|_| ObservedAws::default()).collect();
        if targets.is_empty() {
            return Ok(out);
        }
        let vpcs: BTreeSet<&str> = targets.iter().map(|t| t.vpc.as_str()).collect();
        let names: BTreeSet<&str> = targets.iter().map(|t| t.security_group.as_str()).collect();

        // Security groups by name, owned or not, in the targets' VPCs: one paginated call.
        let client = &self.client;
        let (names, vpcs) = (&names, &vpcs);
        let groups = paginate(|token| async move {
            let o = client
                .describe_security_groups()
                .filters(filter("group-name", names.iter().copied()))
                .filters(filter("vpc-id", vpcs.iter().copied()))
                .max_results(1000)
                .set_next_token(token)
                .send()
                .await
                .map_err(api_err("DescribeSecurityGroups"))?;
            Ok((
                o.security_groups().to_vec(),
                o.next_token().map(str::to_string),
            ))
        })
        .await
        .map_err(page_err("DescribeSecurityGroups"))?;
        let mut owned_ids: Vec<String> = Vec::new();
        for (t, obs) in targets.iter().zip(out.iter_mut()) {
            for g in &groups {
                if g.vpc_id() != Some(t.vpc.as_str())
                    || g.group_name() != Some(t.security_group.as_str())
                {
                    continue;
                }
                let id = g.group_id().unwrap_or_default().to_string();
                let owned = g
                    .tags()
                    .iter()
                    .any(|tag| tag.key() == Some(OWNER_TAG) && tag.value() == Some(policy));
                if owned {
                    owned_ids.push(id.clone());
                    obs.security_group = Some(ObservedSecurityGroup {
                        group_id: id,
                        rules: Vec::new(),
                    });
                } else {
                    obs.foreign_group = Some(id);
                }
            }
        }

        // Rules of every owned group: one paginated call per 200 groups.
        let mut rules_by_group: BTreeMap<String, Vec<ObservedSgRule>> = BTreeMap::new();
        for chunk in owned_ids.chunks(FILTER_VALUES_MAX) {
            let rules = paginate(move |token| async move {
                let o = client
                    .describe_security_group_rules()
                    .filters(filter("group-id", chunk.iter().cloned()))
                    .max_results(1000)
                    .set_next_token(token)
                    .send()
                    .await
                    .map_err(api_err("DescribeSecurityGroupRules"))?;
                Ok((
                    o.security_group_rules().to_vec(),
                    o.next_token().map(str::to_string),
                ))
            })
            .await
            .map_err(page_err("DescribeSecurityGroupRules"))?;
            for r in rules {
                let group_id = r.group_id().unwrap_or_default().to_string();
                let rule = convert_rule(&r, &group_id)?;
                rules_by_group.entry(group_id).or_default().push(rule);
            }
        }
        // Group-pair descriptions: DescribeSecurityGroupRules drops them on some EC2
        // implementations (moto), DescribeSecurityGroups keeps them; take them from there.
        let mut pair_descriptions: BTreeMap<(String, Direction, String, i32, i32, String), String> =
            BTreeMap::new();
        for g in &groups {
            let gid = g.group_id().unwrap_or_default().to_string();
            for (direction, perms) in [
                (Direction::Ingress, g.ip_permissions()),
                (Direction::Egress, g.ip_permissions_egress()),
            ] {
                for p in perms {
                    let proto = normalize_protocol(p.ip_protocol().unwrap_or("-1"));
                    let ports = crate::model::has_ports(&proto);
                    let from = if ports {
                        p.from_port().unwrap_or(-1)
                    } else {
                        -1
                    };
                    let to = if ports { p.to_port().unwrap_or(-1) } else { -1 };
                    for pair in p.user_id_group_pairs() {
                        if let (Some(other), Some(d)) = (pair.group_id(), pair.description()) {
                            pair_descriptions.insert(
                                (
                                    gid.clone(),
                                    direction,
                                    proto.clone(),
                                    from,
                                    to,
                                    other.to_string(),
                                ),
                                d.to_string(),
                            );
                        }
                    }
                }
            }
        }
        for (gid, rules) in &mut rules_by_group {
            for r in rules.iter_mut().filter(|r| r.rule.description.is_empty()) {
                let other = match &r.rule.peer {
                    SgPeer::OwnGroup => gid.clone(),
                    SgPeer::ReferencedGroup(g) => g.clone(),
                    _ => continue,
                };
                let key = (
                    gid.clone(),
                    r.rule.direction,
                    r.rule.ip_protocol.clone(),
                    r.rule.from_port,
                    r.rule.to_port,
                    other,
                );
                if let Some(d) = pair_descriptions.get(&key) {
                    r.rule.description = d.clone();
                }
            }
        }
        for obs in &mut out {
            if let Some(g) = &mut obs.security_group {
                let mut rules = rules_by_group.remove(&g.group_id).unwrap_or_default();
                rules.sort();
                g.rules = rules;
            }
        }

        // IPv6 on the VPCs (a new group then also gets a ::/0 default egress rule).
        let v = client
            .describe_vpcs()
            .set_vpc_ids(Some(vpcs.iter().map(|s| s.to_string()).collect()))
            .send()
            .await
            .map_err(api_err("DescribeVpcs"))?;
        let v6_vpcs: BTreeSet<String> = v
            .vpcs()
            .iter()
            .filter(|vpc| !vpc.ipv6_cidr_block_association_set().is_empty())
            .filter_map(|vpc| vpc.vpc_id().map(str::to_string))
            .collect();
        for (t, obs) in targets.iter().zip(out.iter_mut()) {
            obs.vpc_has_ipv6 = v6_vpcs.contains(&t.vpc);
        }

        self.observe_nacls(policy, targets, &mut out).await?;
        self.observe_instances(targets, &mut out).await?;
        Ok(out)
    }

    async fn observe_nacls(
        &self,
        policy: &str,
        targets: &[AwsTarget],
        out: &mut [ObservedAws],
    ) -> Result<(), AwsError> {
        let with_nacl: Vec<(usize, &AwsTarget)> = targets
            .iter()
            .enumerate()
            .filter(|(_, t)| t.network_acl.is_some())
            .collect();
        if with_nacl.is_empty() {
            return Ok(());
        }
        let vpcs: BTreeSet<&str> = with_nacl.iter().map(|(_, t)| t.vpc.as_str()).collect();
        let owned = self
            .client
            .describe_network_acls()
            .filters(filter(&format!("tag:{OWNER_TAG}"), [policy]))
            .filters(filter("vpc-id", vpcs.iter().copied()))
            .send()
            .await
            .map_err(api_err("DescribeNetworkAcls"))?;
        let subnets: BTreeSet<String> = with_nacl
            .iter()
            .flat_map(|(_, t)| {
                t.network_acl
                    .as_ref()
                    .map(|n| n.subnets.clone())
                    .unwrap_or_default()
            })
            .collect();
        let by_subnet = self
            .client
            .describe_network_acls()
            .filters(filter("association.subnet-id", subnets.iter().cloned()))
            .send()
            .await
            .map_err(api_err("DescribeNetworkAcls"))?;
        for (i, t) in with_nacl {
            let name = t.security_group.as_str();
            let acl = owned.network_acls().iter().find(|a| {
                a.vpc_id() == Some(t.vpc.as_str())
                    && a.tags()
                        .iter()
                        .any(|tag| tag.key() == Some("Name") && tag.value() == Some(name))
            });
            if let Some(a) = acl {
                let mut entries: Vec<NaclEntry> = a
                    .entries()
                    .iter()
                    .filter(|e| e.rule_number().is_some_and(|n| (1..=32766).contains(&n)))
                    .filter_map(convert_nacl_entry)
                    .collect();
                entries.sort_by_key(|e| (e.egress, e.rule_number));
                out[i].network_acl = Some(ObservedNetworkAcl {
                    network_acl_id: a.network_acl_id().unwrap_or_default().to_string(),
                    entries,
                    subnets: a
                        .associations()
                        .iter()
                        .filter_map(|s| s.subnet_id().map(str::to_string))
                        .collect(),
                });
            }
            let wanted = t
                .network_acl
                .as_ref()
                .map(|n| n.subnets.clone())
                .unwrap_or_default();
            let mut assoc: Vec<SubnetAssociation> = by_subnet
                .network_acls()
                .iter()
                .flat_map(|a| a.associations())
                .filter(|s| {
                    s.subnet_id()
                        .is_some_and(|id| wanted.iter().any(|w| w == id))
                })
                .map(|s| SubnetAssociation {
                    subnet_id: s.subnet_id().unwrap_or_default().to_string(),
                    association_id: s
                        .network_acl_association_id()
                        .unwrap_or_default()
                        .to_string(),
                    network_acl_id: s.network_acl_id().unwrap_or_default().to_string(),
                })
                .collect();
            assoc.sort_by(|a, b| a.subnet_id.cmp(&b.subnet_id));
            out[i].subnet_associations = assoc;
        }
        Ok(())
    }

    async fn observe_instances(
        &self,
        targets: &[AwsTarget],
        out: &mut [ObservedAws],
    ) -> Result<(), AwsError> {
        let client = &self.client;
        let mut all_subnets = BTreeSet::new();
        for (t, obs) in targets.iter().zip(out.iter_mut()) {
            if t.instances.is_empty() {
                continue;
            }
            let tags = &t.instances;
            let vpc = t.vpc.as_str();
            let reservations = paginate(move |token| async move {
                let mut req = client
                    .describe_instances()
                    .filters(filter("vpc-id", [vpc]))
                    .filters(filter(
                        "instance-state-name",
                        ["pending", "running", "stopping", "stopped"],
                    ));
                for (k, v) in tags {
                    req = req.filters(filter(&format!("tag:{k}"), [v.as_str()]));
                }
                let o = req
                    .max_results(1000)
                    .set_next_token(token)
                    .send()
                    .await
                    .map_err(api_err("DescribeInstances"))?;
                Ok((
                    o.reservations().to_vec(),
                    o.next_token().map(str::to_string),
                ))
            })
            .await
            .map_err(page_err("DescribeInstances"))?;
            let mut instances: Vec<ObservedInstance> = reservations
                .iter()
                .flat_map(|r| r.instances())
                .map(|i| {
                    let m = i.metadata_options();
                    ObservedInstance {
                        instance_id: i.instance_id().unwrap_or_default().to_string(),
                        metadata: MetadataOptions {
                            http_endpoint: m
                                .and_then(|m| m.http_endpoint())
                                .map_or("enabled".into(), |e| e.as_str().to_string()),
                            http_tokens: Some(
                                m.and_then(|m| m.http_tokens())
                                    .map_or("optional".into(), |t| t.as_str().to_string()),
                            ),
                            http_put_response_hop_limit: Some(
                                m.and_then(|m| m.http_put_response_hop_limit())
                                    .map_or(1, |h| h.clamp(1, 64) as u8),
                            ),
                        },
                        public_ip: i.public_ip_address().map(str::to_string),
                        subnet_id: i.subnet_id().map(str::to_string),
                        security_groups: i
                            .security_groups()
                            .iter()
                            .filter_map(|g| g.group_id().map(str::to_string))
                            .collect(),
                    }
                })
                .collect();
            instances.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
            all_subnets.extend(instances.iter().filter_map(|i| i.subnet_id.clone()));
            obs.instances = instances;
        }
        if all_subnets.is_empty() {
            return Ok(());
        }
        let routes = client
            .describe_route_tables()
            .filters(filter("association.subnet-id", all_subnets.iter().cloned()))
            .send()
            .await
            .map_err(api_err("DescribeRouteTables"))?;
        let mut internet: BTreeSet<String> = BTreeSet::new();
        for rt in routes.route_tables() {
            let to_igw = rt.routes().iter().any(|r| {
                r.destination_cidr_block() == Some("0.0.0.0/0")
                    && r.gateway_id().is_some_and(|g| g.starts_with("igw-"))
            });
            if to_igw {
                internet.extend(
                    rt.associations()
                        .iter()
                        .filter_map(|a| a.subnet_id().map(str::to_string)),
                );
            }
        }
        for obs in out.iter_mut() {
            let mut s: Vec<String> = obs
                .instances
                .iter()
                .filter_map(|i| i.subnet_id.clone())
                .filter(|s| internet.contains(s))
                .collect();
            s.sort();
            s.dedup();
            obs.internet_routed_subnets = s;
        }
        Ok(())
    }

    /// Executes one target's plan. The caller has checked the plan is not stale.
    pub async fn apply(
        &self,
        plan: &AwsTargetPlan,
        progress: &mut dyn FnMut(String),
    ) -> Result<usize, AwsError> {
        let mut writes = 0usize;
        let c = &self.client;
        let sg = &plan.security_group;
        let group_id = match &sg.group_id {
            Some(id) => id.clone(),
            None => {
                let o = c
                    .create_security_group()
                    .group_name(&sg.group_name)
                    .description(&sg.description)
                    .vpc_id(&sg.vpc_id)
                    .tag_specifications(tags(
                        ResourceType::SecurityGroup,
                        &plan.policy,
                        &sg.group_name,
                    ))
                    .send()
                    .await
                    .map_err(api_err("CreateSecurityGroup"))?;
                writes += 1;
                let id = o.group_id().unwrap_or_default().to_string();
                progress(format!("+ created security group {} ({id})", sg.group_name));
                id
            }
        };
        use perimeter_core::plan::Action;
        for direction in Direction::BOTH {
            let creates: Vec<&SgRule> = sg
                .changes
                .iter()
                .filter(|ch| ch.action == Action::Create)
                .filter_map(|ch| ch.after.as_ref())
                .filter(|r| r.direction == direction)
                .collect();
            if creates.is_empty() {
                continue;
            }
            let perms = to_ip_permissions(&creates, &group_id);
            match direction {
                Direction::Ingress => {
                    c.authorize_security_group_ingress()
                        .group_id(&group_id)
                        .set_ip_permissions(Some(perms))
                        .send()
                        .await
                        .map_err(api_err("AuthorizeSecurityGroupIngress"))?;
                }
                Direction::Egress => {
                    c.authorize_security_group_egress()
                        .group_id(&group_id)
                        .set_ip_permissions(Some(perms))
                        .send()
                        .await
                        .map_err(api_err("AuthorizeSecurityGroupEgress"))?;
                }
            }
            writes += 1;
            progress(format!(
                "+ {} {} rule(s) added to {}",
                creates.len(),
                direction.as_str(),
                sg.group_name
            ));
        }
        let updates: Vec<SecurityGroupRuleUpdate> = sg
            .changes
            .iter()
            .filter(|ch| ch.action == Action::Update)
            .filter_map(|ch| {
                Some(
                    SecurityGroupRuleUpdate::builder()
                        .security_group_rule_id(ch.rule_id.clone()?)
                        .security_group_rule(to_rule_request(ch.after.as_ref()?, &group_id))
                        .build(),
                )
            })
            .collect();
        if !updates.is_empty() {
            let n = updates.len();
            c.modify_security_group_rules()
                .group_id(&group_id)
                .set_security_group_rules(Some(updates))
                .send()
                .await
                .map_err(api_err("ModifySecurityGroupRules"))?;
            writes += 1;
            progress(format!(
                "~ {n} rule(s) modified in place in {}",
                sg.group_name
            ));
        }
        for direction in Direction::BOTH {
            let deletes: Vec<&SgChange> = sg
                .changes
                .iter()
                .filter(|ch| ch.action == Action::Delete)
                .filter(|ch| ch.before.as_ref().is_some_and(|b| b.direction == direction))
                .collect();
            if deletes.is_empty() {
                continue;
            }
            let ids: Vec<String> = deletes.iter().filter_map(|ch| ch.rule_id.clone()).collect();
            // Rules without an id are the default rules of a group created just now: revoke
            // them by content, which needs no extra read.
            let by_content: Vec<&SgRule> = deletes
                .iter()
                .filter(|ch| ch.rule_id.is_none())
                .filter_map(|ch| ch.before.as_ref())
                .collect();
            let ids = (!ids.is_empty()).then_some(ids);
            let perms = (!by_content.is_empty()).then(|| to_ip_permissions(&by_content, &group_id));
            for (ids, perms) in [(ids, None), (None, perms)] {
                if ids.is_none() && perms.is_none() {
                    continue;
                }
                match direction {
                    Direction::Ingress => {
                        c.revoke_security_group_ingress()
                            .group_id(&group_id)
                            .set_security_group_rule_ids(ids)
                            .set_ip_permissions(perms)
                            .send()
                            .await
                            .map_err(api_err("RevokeSecurityGroupIngress"))?;
                    }
                    Direction::Egress => {
                        c.revoke_security_group_egress()
                            .group_id(&group_id)
                            .set_security_group_rule_ids(ids)
                            .set_ip_permissions(perms)
                            .send()
                            .await
                            .map_err(api_err("RevokeSecurityGroupEgress"))?;
                    }
                }
                writes += 1;
            }
            progress(format!(
                "- {} {} rule(s) removed from {}",
                deletes.len(),
                direction.as_str(),
                sg.group_name
            ));
        }

        if let Some(nacl) = &plan.network_acl {
            let acl_id = match &nacl.network_acl_id {
                Some(id) => id.clone(),
                None => {
                    let o = c
                        .create_network_acl()
                        .vpc_id(&nacl.vpc_id)
                        .tag_specifications(tags(
                            ResourceType::NetworkAcl,
                            &plan.policy,
                            &sg.group_name,
                        ))
                        .send()
                        .await
                        .map_err(api_err("CreateNetworkAcl"))?;
                    writes += 1;
                    let id = o
                        .network_acl()
                        .and_then(|a| a.network_acl_id())
                        .unwrap_or_default()
                        .to_string();
                    progress(format!("+ created network ACL {id}"));
                    id
                }
            };
            for ch in &nacl.changes {
                match ch.action {
                    Action::Create | Action::Update => {
                        let e = ch.after.as_ref().ok_or_else(|| {
                            AwsError::Unexpected("NACL change without entry".into())
                        })?;
                        if ch.action == Action::Create {
                            let mut req = c
                                .create_network_acl_entry()
                                .network_acl_id(&acl_id)
                                .rule_number(i32::from(e.rule_number))
                                .protocol(&e.protocol)
                                .rule_action(RuleAction::from(e.rule_action.as_str()))
                                .egress(e.egress);
                            req = if e.cidr.is_ipv4() {
                                req.cidr_block(e.cidr.to_string())
                            } else {
                                req.ipv6_cidr_block(e.cidr.to_string())
                            };
                            if let Some((from, to)) = e.port_range {
                                req = req.port_range(
                                    PortRange::builder()
                                        .from(i32::from(from))
                                        .to(i32::from(to))
                                        .build(),
                                );
                            }
                            if let Some((t, code)) = e.icmp_type_code {
                                req = req.icmp_type_code(
                                    IcmpTypeCode::builder().r#type(t).code(code).build(),
                                );
                            }
                            req.send().await.map_err(api_err("CreateNetworkAclEntry"))?;
                        } else {
                            let mut req = c
                                .replace_network_acl_entry()
                                .network_acl_id(&acl_id)
                                .rule_number(i32::from(e.rule_number))
                                .protocol(&e.protocol)
                                .rule_action(RuleAction::from(e.rule_action.as_str()))
                                .egress(e.egress);
                            req = if e.cidr.is_ipv4() {
                                req.cidr_block(e.cidr.to_string())
                            } else {
                                req.ipv6_cidr_block(e.cidr.to_string())
                            };
                            if let Some((from, to)) = e.port_range {
                                req = req.port_range(
                                    PortRange::builder()
                                        .from(i32::from(from))
                                        .to(i32::from(to))
                                        .build(),
                                );
                            }
                            if let Some((t, code)) = e.icmp_type_code {
                                req = req.icmp_type_code(
                                    IcmpTypeCode::builder().r#type(t).code(code).build(),
                                );
                            }
                            req.send()
                                .await
                                .map_err(api_err("ReplaceNetworkAclEntry"))?;
                        }
                        writes += 1;
                    }
                    Action::Delete => {
                        let e = ch.before.as_ref().ok_or_else(|| {
                            AwsError::Unexpected("NACL delete without entry".into())
                        })?;
                        c.delete_network_acl_entry()
                            .network_acl_id(&acl_id)
                            .rule_number(i32::from(e.rule_number))
                            .egress(e.egress)
                            .send()
                            .await
                            .map_err(api_err("DeleteNetworkAclEntry"))?;
                        writes += 1;
                    }
                }
            }
            if !nacl.changes.is_empty() {
                progress(format!(
                    "~ {} network ACL entr(ies) written in {acl_id}",
                    nacl.changes.len()
                ));
            }
            for a in &nacl.associate {
                c.replace_network_acl_association()
                    .association_id(&a.association_id)
                    .network_acl_id(&acl_id)
                    .send()
                    .await
                    .map_err(api_err("ReplaceNetworkAclAssociation"))?;
                writes += 1;
                progress(format!("~ subnet {} associated with {acl_id}", a.subnet_id));
            }
        }

        for a in &plan.attach {
            let mut groups = a.groups.clone();
            if !groups.contains(&group_id) {
                groups.push(group_id.clone());
            }
            c.modify_instance_attribute()
                .instance_id(&a.instance_id)
                .set_groups(Some(groups))
                .send()
                .await
                .map_err(api_err("ModifyInstanceAttribute"))?;
            writes += 1;
            progress(format!("~ {} attached to {}", sg.group_name, a.instance_id));
        }
        for m in &plan.metadata {
            let mut req = c
                .modify_instance_metadata_options()
                .instance_id(&m.instance_id)
                .http_endpoint(InstanceMetadataEndpointState::from(
                    m.after.http_endpoint.as_str(),
                ));
            if let Some(t) = &m.after.http_tokens {
                req = req.http_tokens(HttpTokensState::from(t.as_str()));
            }
            if let Some(h) = m.after.http_put_response_hop_limit {
                req = req.http_put_response_hop_limit(i32::from(h));
            }
            req.send()
                .await
                .map_err(api_err("ModifyInstanceMetadataOptions"))?;
            writes += 1;
            progress(format!("~ metadata options of {} set", m.instance_id));
        }
        Ok(writes)
    }
}

fn tags(kind: ResourceType, policy: &str, name: &str) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(kind)
        .tags(Tag::builder().key(OWNER_TAG).value(policy).build())
        .tags(Tag::builder().key("Name").value(name).build())
        .build()
}

/// Converts an observed SDK rule to the model; `own_group` turns self-references into
/// `OwnGroup`.
fn convert_rule(
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

fn convert_nacl_entry(e: &aws_sdk_ec2::types::NetworkAclEntry) -> Option<NaclEntry> {
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
fn to_ip_permissions(rules: &[&SgRule], group_id: &str) -> Vec<IpPermission> {
    let mut grouped: BTreeMap<(String, i32, i32), Vec<&SgRule>> = BTreeMap::new();
    for r in rules {
        grouped
            .entry((r.ip_protocol.clone(), r.from_port, r.to_port))
            .or_default()
            .push(r);
    }
    grouped
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

fn to_rule_request(r: &SgRule, group_id: &str) -> SecurityGroupRuleRequest {
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
