//! Executing an AWS plan: the writes, in the plan's order. The stale check and the read-back
//! around it are the caller's (cli `apply`), which owns the whole multi-target run.

use aws_sdk_ec2::types::{
    HttpTokensState, IcmpTypeCode, InstanceMetadataEndpointState, PortRange, ResourceType,
    RuleAction, SecurityGroupRuleUpdate, Tag, TagSpecification,
};
use perimeter_core::Direction;

use perimeter_core::lifecycle::ApplyStopped;

use crate::backend::{AwsBackend, AwsError, api_err};
use crate::convert::{tags, to_ip_permissions, to_rule_request};
use crate::lease::{lease_tag, new_lease};
use crate::model::{NaclEntry, SgRule};
use crate::nacl_plan::content;
use crate::plan::{AwsTargetPlan, SgChange, SgRuleKey};
use crate::state::{ObservedAws, PREVIOUS_NACL_TAG};
use perimeter_core::lease::Lease;
use std::collections::BTreeMap;

impl AwsBackend {
    /// Executes one target's plan. The caller has checked the plan is not stale. On failure,
    /// says how many writes took effect before it.
    pub(crate) async fn apply(
        &self,
        plan: &AwsTargetPlan,
        progress: &mut dyn FnMut(String),
    ) -> Result<usize, ApplyStopped<AwsError>> {
        let mut writes = 0usize;
        let lease = new_lease(plan);
        let mut leased: Option<String> = None;
        let result = self
            .apply_counting(plan, progress, &mut writes, &lease, &mut leased)
            .await;
        if let Some(group_id) = leased {
            self.release_lease(&group_id, &lease).await;
        }
        match result {
            Ok(()) => Ok(writes),
            Err(error) => Err(ApplyStopped {
                written: writes,
                error,
            }),
        }
    }

    async fn apply_counting(
        &self,
        plan: &AwsTargetPlan,
        progress: &mut dyn FnMut(String),
        writes: &mut usize,
        lease: &Lease,
        leased: &mut Option<String>,
    ) -> Result<(), AwsError> {
        let c = self.client();
        let sg = &plan.security_group;
        if let Some(r) = &plan.retire {
            if let Some(id) = &sg.group_id {
                self.take_lease(plan, id, lease).await?;
                *leased = Some(id.clone());
            }
            return self.retire(r, progress, writes).await;
        }
        let group_id = match &sg.group_id {
            Some(id) => {
                self.take_lease(plan, id, lease).await?;
                *leased = Some(id.clone());
                id.clone()
            }
            None => {
                // Created with the lease on it: group names are unique per VPC, so a second
                // apply creating the same group fails here, before any other write.
                let mut spec = tags(ResourceType::SecurityGroup, &plan.policy, &sg.group_name);
                spec.tags
                    .get_or_insert_with(Vec::new)
                    .push(lease_tag(lease));
                let o = c
                    .create_security_group()
                    .group_name(&sg.group_name)
                    .description(&sg.description)
                    .vpc_id(&sg.vpc_id)
                    .tag_specifications(spec)
                    .send()
                    .await
                    .map_err(api_err("CreateSecurityGroup"))
                    .map_err(|e| match e.code() {
                        Some("InvalidGroup.Duplicate") => AwsError::Unexpected(format!(
                            "security group {} was created by someone else after the plan (another apply?); nothing was written. Run `perimeter plan` again",
                            sg.group_name
                        )),
                        _ => e,
                    })?;
                *writes += 1;
                let id = o.group_id().unwrap_or_default().to_string();
                *leased = Some(id.clone());
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
            let sent = match direction {
                Direction::Ingress => c
                    .authorize_security_group_ingress()
                    .group_id(&group_id)
                    .set_ip_permissions(Some(perms))
                    .send()
                    .await
                    .map(drop)
                    .map_err(api_err("AuthorizeSecurityGroupIngress")),
                Direction::Egress => c
                    .authorize_security_group_egress()
                    .group_id(&group_id)
                    .set_ip_permissions(Some(perms))
                    .send()
                    .await
                    .map(drop)
                    .map_err(api_err("AuthorizeSecurityGroupEgress")),
            };
            self.settle(plan, sent, Intended::Rules(&creates)).await?;
            *writes += 1;
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
            *writes += 1;
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
            let revoked: Vec<&SgRule> =
                deletes.iter().filter_map(|ch| ch.before.as_ref()).collect();
            let ids = (!ids.is_empty()).then_some(ids);
            let perms = (!by_content.is_empty()).then(|| to_ip_permissions(&by_content, &group_id));
            for (ids, perms) in [(ids, None), (None, perms)] {
                if ids.is_none() && perms.is_none() {
                    continue;
                }
                let sent = match direction {
                    Direction::Ingress => c
                        .revoke_security_group_ingress()
                        .group_id(&group_id)
                        .set_security_group_rule_ids(ids)
                        .set_ip_permissions(perms)
                        .send()
                        .await
                        .map(drop)
                        .map_err(api_err("RevokeSecurityGroupIngress")),
                    Direction::Egress => c
                        .revoke_security_group_egress()
                        .group_id(&group_id)
                        .set_security_group_rule_ids(ids)
                        .set_ip_permissions(perms)
                        .send()
                        .await
                        .map(drop)
                        .map_err(api_err("RevokeSecurityGroupEgress")),
                };
                self.settle(plan, sent, Intended::NoRules(&revoked)).await?;
                *writes += 1;
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
                        // The SDK resends the same token when it retries, so a create whose
                        // answer was lost returns the NACL it made instead of making another.
                        .client_token(client_token(plan))
                        .tag_specifications(previous_tags(plan, &nacl.record_previous))
                        .send()
                        .await
                        .map_err(api_err("CreateNetworkAcl"))?;
                    *writes += 1;
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
                        // Create and Replace take the same fields on different builders.
                        macro_rules! entry_fields {
                            ($builder:expr) => {{
                                let mut req = $builder
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
                                req
                            }};
                        }
                        if ch.action == Action::Create {
                            let sent = entry_fields!(c.create_network_acl_entry())
                                .send()
                                .await
                                .map(drop)
                                .map_err(api_err("CreateNetworkAclEntry"));
                            self.settle(plan, sent, Intended::Entry(e)).await?;
                        } else {
                            entry_fields!(c.replace_network_acl_entry())
                                .send()
                                .await
                                .map_err(api_err("ReplaceNetworkAclEntry"))?;
                        }
                        *writes += 1;
                    }
                    Action::Delete => {
                        let e = ch.before.as_ref().ok_or_else(|| {
                            AwsError::Unexpected("NACL delete without entry".into())
                        })?;
                        let sent = c
                            .delete_network_acl_entry()
                            .network_acl_id(&acl_id)
                            .rule_number(i32::from(e.rule_number))
                            .egress(e.egress)
                            .send()
                            .await
                            .map(drop)
                            .map_err(api_err("DeleteNetworkAclEntry"));
                        self.settle(plan, sent, Intended::NoEntry(e)).await?;
                        *writes += 1;
                    }
                }
            }
            if !nacl.changes.is_empty() {
                progress(format!(
                    "~ {} network ACL entr(ies) written in {acl_id}",
                    nacl.changes.len()
                ));
            }
            if nacl.network_acl_id.is_some() && !nacl.record_previous.is_empty() {
                // Before the moves, so that a kill after any of them still finds the record.
                let mut req = c.create_tags().resources(&acl_id);
                for (subnet, previous) in &nacl.record_previous {
                    req = req.tags(previous_tag(subnet, previous));
                }
                req.send().await.map_err(api_err("CreateTags"))?;
                *writes += 1;
                progress(format!(
                    "~ {acl_id} records the NACL of {} subnet(s) before the move",
                    nacl.record_previous.len()
                ));
            }
            for a in &nacl.associate {
                self.move_subnet(&a.association_id, &acl_id).await?;
                *writes += 1;
                progress(format!("~ subnet {} associated with {acl_id}", a.subnet_id));
            }
            for a in &nacl.release {
                self.move_subnet(&a.association_id, &a.network_acl_id)
                    .await?;
                *writes += 1;
                progress(format!(
                    "~ subnet {} released to {}",
                    a.subnet_id, a.network_acl_id
                ));
            }
            if nacl.delete {
                self.delete_acl(&acl_id).await?;
                *writes += 1;
                progress(format!(
                    "- network ACL {acl_id} deleted (no longer in the policy)"
                ));
            }
        }

        for a in &plan.attach {
            let mut groups: Vec<String> = a
                .groups
                .iter()
                .filter(|g| !a.release.contains(g))
                .cloned()
                .collect();
            if !groups.contains(&group_id) {
                groups.push(group_id.clone());
            }
            c.modify_network_interface_attribute()
                .network_interface_id(&a.interface_id)
                .set_groups(Some(groups))
                .send()
                .await
                .map_err(api_err("ModifyNetworkInterfaceAttribute"))?;
            *writes += 1;
            let swapped = if a.release.is_empty() {
                String::new()
            } else {
                format!(" in place of {}", a.release.join(", "))
            };
            progress(format!(
                "~ {} attached to {} ({}){swapped}",
                sg.group_name, a.interface_id, a.instance_id
            ));
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
            *writes += 1;
            progress(format!("~ metadata options of {} set", m.instance_id));
        }
        Ok(())
    }
}

/// What a write was meant to leave in the cloud, for deciding whether an error that says "it
/// is already so" means the write took effect.
enum Intended<'a> {
    /// These group rules exist.
    Rules(&'a [&'a SgRule]),
    /// None of these group rules exists.
    NoRules(&'a [&'a SgRule]),
    /// This NACL entry exists with this number.
    Entry(&'a NaclEntry),
    /// No NACL entry of this direction has this number.
    NoEntry(&'a NaclEntry),
}

impl Intended<'_> {
    /// The codes EC2 answers when the effect is already there: after the SDK retried a request
    /// whose first answer was lost, or when someone made the same change.
    fn codes(&self) -> &'static [&'static str] {
        match self {
            Intended::Rules(_) => &["InvalidPermission.Duplicate"],
            Intended::NoRules(_) => &[
                "InvalidPermission.NotFound",
                "InvalidSecurityGroupRuleId.NotFound",
            ],
            Intended::Entry(_) => &["NetworkAclEntryAlreadyExists"],
            Intended::NoEntry(_) => &["InvalidNetworkAclEntry.NotFound"],
        }
    }

    fn holds(&self, o: &ObservedAws) -> bool {
        let keys: Vec<SgRuleKey> = o
            .security_group
            .iter()
            .flat_map(|g| &g.rules)
            .map(|r| SgRuleKey::of(&r.rule))
            .collect();
        let entries = o.network_acl.iter().flat_map(|n| &n.entries);
        match self {
            Intended::Rules(rules) => rules.iter().all(|r| keys.contains(&SgRuleKey::of(r))),
            Intended::NoRules(rules) => !rules.iter().any(|r| keys.contains(&SgRuleKey::of(r))),
            Intended::Entry(e) => entries.into_iter().any(|x| {
                x.egress == e.egress && x.rule_number == e.rule_number && content(x) == content(e)
            }),
            Intended::NoEntry(e) => !entries
                .into_iter()
                .any(|x| x.egress == e.egress && x.rule_number == e.rule_number),
        }
    }
}

impl AwsBackend {
    /// A write's result, settled: an "already so" error counts as done when a fresh read shows
    /// exactly the intended effect (one more read); every other error stays an error.
    async fn settle(
        &self,
        plan: &AwsTargetPlan,
        sent: Result<(), AwsError>,
        intended: Intended<'_>,
    ) -> Result<(), AwsError> {
        let Err(error) = sent else {
            return Ok(());
        };
        if !error.code().is_some_and(|c| intended.codes().contains(&c)) {
            return Err(error);
        }
        let observed = self
            .observe(&plan.policy, std::slice::from_ref(&plan.target))
            .await?;
        if observed.first().is_some_and(|o| intended.holds(o)) {
            Ok(())
        } else {
            Err(error)
        }
    }
}

/// An idempotency token for this apply's creates: the same for every retry of one request
/// (the SDK resends its input), different for the next apply of the same plan. At most 64
/// ASCII characters, as EC2 requires.
fn client_token(plan: &AwsTargetPlan) -> String {
    let nonce = format!(
        "{:?}{}{}",
        std::time::SystemTime::now(),
        std::process::id(),
        plan.fingerprints.network_acl
    );
    let digest = perimeter_core::plan::sha256_hex(nonce.as_bytes());
    format!("perimeter-{}", &digest[..32])
}

/// The tag that records a subnet's NACL before perimeter moved it.
fn previous_tag(subnet: &str, previous: &str) -> Tag {
    Tag::builder()
        .key(format!("{PREVIOUS_NACL_TAG}{subnet}"))
        .value(previous)
        .build()
}

/// A new NACL's tags, with the previous NACL of every subnet it is about to take.
fn previous_tags(plan: &AwsTargetPlan, record: &BTreeMap<String, String>) -> TagSpecification {
    let spec = tags(
        ResourceType::NetworkAcl,
        &plan.policy,
        &plan.security_group.group_name,
    );
    TagSpecification::builder()
        .resource_type(ResourceType::NetworkAcl)
        .set_tags(Some(
            spec.tags()
                .iter()
                .cloned()
                .chain(record.iter().map(|(s, p)| previous_tag(s, p)))
                .collect(),
        ))
        .build()
}

impl AwsBackend {
    /// Moves a subnet, by its current association, to `acl`.
    pub(crate) async fn move_subnet(
        &self,
        association_id: &str,
        acl: &str,
    ) -> Result<(), AwsError> {
        self.client()
            .replace_network_acl_association()
            .association_id(association_id)
            .network_acl_id(acl)
            .send()
            .await
            .map(drop)
            .map_err(api_err("ReplaceNetworkAclAssociation"))
    }

    /// Deletes a network ACL no subnet is associated with any more.
    pub(crate) async fn delete_acl(&self, acl: &str) -> Result<(), AwsError> {
        self.client()
            .delete_network_acl()
            .network_acl_id(acl)
            .send()
            .await
            .map(drop)
            .map_err(api_err("DeleteNetworkAcl"))
    }
}
