//! The AWS backend: the only code that talks to EC2 (aws-sdk-ec2).
//!
//! Reads are bulk: one `DescribeSecurityGroups` for every target's group name, one paginated
//! `DescribeSecurityGroupRules` per 200 owned groups, one `DescribeVpcs`, instances and route
//! tables by filter, and the rest of the nodes' enforcement path (observe_path.rs). Writes follow a plan exactly: create the group or NACL if the plan
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
use perimeter_core::Direction;
use perimeter_core::target::AwsTarget;

use crate::convert::{convert_rule, filter, normalize_protocol};
use crate::model::{MetadataOptions, SgPeer};
use crate::paginate::{PageError, describe_all, paginate};
use crate::state::{
    OWNER_TAG, ObservedAws, ObservedInstance, ObservedSecurityGroup, ObservedSgRule,
};

/// Most values EC2 accepts in one filter.
pub(crate) const FILTER_VALUES_MAX: usize = 200;

/// Attempts per request, counting the first: throttling (`RequestLimitExceeded`) and 5xx
/// answers are retried with exponential backoff and full jitter by the SDK's standard mode.
pub(crate) const MAX_ATTEMPTS: u32 = 6;

/// An EC2 call that failed, with the operation and the service's error code.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    /// The request failed (after retries).
    #[error("{operation} failed{}: {code}: {message}", status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
    Api {
        /// EC2 operation.
        operation: &'static str,
        /// HTTP status of the answer, when there was one.
        status: Option<u16>,
        /// Error code (`InvalidPermission.Duplicate`, `RequestLimitExceeded`, ...), or `-`.
        code: String,
        /// The service's message (at most [`MESSAGE_EXCERPT`] characters), or the error's
        /// context when there is none; never a debug dump of the response.
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
    /// A failure in one region.
    #[error("{region}: {error}")]
    InRegion {
        /// The region.
        region: String,
        /// What failed there (in the message, not as a source: said once).
        error: Box<AwsError>,
    },
}

/// Longest service message kept in an error.
pub(crate) const MESSAGE_EXCERPT: usize = 300;

pub(crate) fn api_err<E>(
    operation: &'static str,
) -> impl Fn(aws_sdk_ec2::error::SdkError<E>) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    move |e| {
        let message = e
            .message()
            .map_or_else(|| DisplayErrorContext(&e).to_string(), str::to_string);
        AwsError::Api {
            operation,
            status: e.raw_response().map(|r| r.status().as_u16()),
            code: e.code().unwrap_or("-").to_string(),
            message: message.chars().take(MESSAGE_EXCERPT).collect(),
        }
    }
}

impl AwsError {
    /// The EC2 error code, for an API error.
    pub(crate) fn code(&self) -> Option<&str> {
        match self {
            AwsError::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

pub(crate) fn page_err(operation: &'static str) -> impl Fn(PageError<AwsError>) -> AwsError {
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
pub(crate) struct AwsBackend {
    client: Client,
    calls: CallCounter,
}

impl AwsBackend {
    /// Connects with the standard credential chain (environment, profile, SSO, web identity,
    /// ECS/EC2 roles). `AWS_ENDPOINT_URL` points it at an emulator.
    pub(crate) async fn connect(region: &str) -> Self {
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
    pub(crate) fn api_calls(&self) -> u64 {
        self.calls.0.load(Ordering::Relaxed)
    }

    /// The SDK client (for tests that change the cloud out of band).
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// Observes every target (all in this backend's region) with shared bulk reads.
    pub(crate) async fn observe(
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
        let groups = describe_all!(
            client
                .describe_security_groups()
                .filters(filter("group-name", names.iter().copied()))
                .filters(filter("vpc-id", vpcs.iter().copied())),
            1000,
            security_groups,
            "DescribeSecurityGroups"
        )?;
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
            let rules = describe_all!(
                client
                    .describe_security_group_rules()
                    .filters(filter("group-id", chunk.iter().cloned())),
                1000,
                security_group_rules,
                "DescribeSecurityGroupRules"
            )?;
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

        self.observe_instances(targets, &mut out).await?;
        self.observe_interfaces(&mut out).await?;
        self.observe_owned_group_interfaces(&mut out).await?;
        self.observe_node_subnets(&mut out).await?;
        self.observe_other_groups(&mut out).await?;
        self.observe_nacls(policy, targets, &mut out).await?;
        self.observe_orphans(policy, targets, &mut out).await?;
        Ok(out)
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
        // Route tables by VPC, one paginated call: a subnet without an explicit association
        // uses its VPC's main table, which an `association.subnet-id` filter never returns.
        let vpcs: Vec<String> = targets
            .iter()
            .zip(out.iter())
            .filter(|(_, o)| !o.instances.is_empty())
            .map(|(t, _)| t.vpc.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let vpcs = &vpcs;
        let tables = describe_all!(
            client
                .describe_route_tables()
                .filters(filter("vpc-id", vpcs.iter().cloned())),
            100,
            route_tables,
            "DescribeRouteTables"
        )?;
        let to_igw = |rt: &aws_sdk_ec2::types::RouteTable| {
            rt.routes().iter().any(|r| {
                r.destination_cidr_block() == Some("0.0.0.0/0")
                    && r.gateway_id().is_some_and(|g| g.starts_with("igw-"))
            })
        };
        let mut explicit: BTreeMap<&str, bool> = BTreeMap::new();
        let mut main: BTreeMap<&str, bool> = BTreeMap::new();
        for rt in &tables {
            for a in rt.associations() {
                if let Some(subnet) = a.subnet_id() {
                    explicit.insert(subnet, to_igw(rt));
                }
                if a.main() == Some(true)
                    && let Some(vpc) = rt.vpc_id()
                {
                    main.insert(vpc, to_igw(rt));
                }
            }
        }
        let mut internet: BTreeSet<String> = BTreeSet::new();
        for (t, obs) in targets.iter().zip(out.iter()) {
            for subnet in obs.instances.iter().filter_map(|i| i.subnet_id.as_deref()) {
                let routed = explicit
                    .get(subnet)
                    .or(main.get(t.vpc.as_str()))
                    .copied()
                    .unwrap_or(false);
                if routed {
                    internet.insert(subnet.to_string());
                }
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
}
