//! `perimeter drift POLICY`: a read-only plan, classified for monitoring.
//!
//! Every difference is `missing` (the policy wants it, the cloud lacks it), `unexpected` (the
//! cloud has it, the policy does not) or `modified` (both have it, with different contents).
//! Exit 0 in sync, 2 drift, 1 error, so a cron job can alert on the code alone; `--format
//! prometheus` writes a node-exporter textfile-collector file; `--baseline` accepts known
//! drift by key.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, bail};
use perimeter_aws::plan::AwsTargetPlan;
use perimeter_aws::render_plan::rule_line;
use perimeter_azure::plan::{AzureTargetPlan, PlanError as AzurePlanError};
use perimeter_core::plan::{Action, Finding};
use perimeter_core::target::{AzureTarget, GcpTarget};
use perimeter_gcp::plan::{GcpTargetPlan, PlanError};
use serde::Serialize;

use crate::args::{Cloud, DriftFormat};
use crate::{exit, output};

/// Version of the drift JSON document (docs/drift-format.md).
pub(crate) const DRIFT_FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum DriftKind {
    Missing,
    Unexpected,
    Modified,
}

impl DriftKind {
    fn of(a: Action) -> Self {
        match a {
            Action::Create => DriftKind::Missing,
            Action::Delete => DriftKind::Unexpected,
            Action::Update => DriftKind::Modified,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            DriftKind::Missing => "missing",
            DriftKind::Unexpected => "unexpected",
            DriftKind::Modified => "modified",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct DriftItem {
    kind: DriftKind,
    cloud: &'static str,
    /// `region/vpc/group` (AWS), `project/network` (GCP).
    target: String,
    /// `security-group`, `security-group-rule`, `network-acl`, `network-acl-entry`,
    /// `subnet-association`, `instance-metadata`, `instance-attachment` (AWS);
    /// `firewall-rule`, `foreign-firewall-rule` (GCP).
    resource: &'static str,
    /// Stable identity, for baselines.
    key: String,
    /// One line for people.
    detail: String,
}

#[derive(Debug, Serialize)]
struct DriftReport<'a> {
    format_version: u32,
    policy: &'a str,
    in_sync: bool,
    counts: Counts,
    accepted: usize,
    items: Vec<DriftItem>,
    findings: Vec<&'a Finding>,
    api_calls: u64,
}

#[derive(Debug, Default, Serialize)]
struct Counts {
    missing: usize,
    unexpected: usize,
    modified: usize,
}

fn items(p: &AwsTargetPlan) -> Vec<DriftItem> {
    let t = &p.target;
    let target = format!("{}/{}/{}", t.region, t.vpc, t.security_group);
    let item = |kind, resource, key: String, detail: String| DriftItem {
        kind,
        cloud: "aws",
        target: target.clone(),
        resource,
        key: format!("aws/{target}/{key}"),
        detail,
    };
    let mut out = Vec::new();
    let sg = &p.security_group;
    if sg.group_id.is_none() {
        out.push(item(
            DriftKind::Missing,
            "security-group",
            "security-group".into(),
            format!("security group {} does not exist", sg.group_name),
        ));
    } else {
        for c in &sg.changes {
            let r = c
                .after
                .as_ref()
                .or(c.before.as_ref())
                .expect("a change has a side");
            let key = format!(
                "rule/{}/{}/{}/{}/{}",
                r.direction.as_str(),
                r.ip_protocol,
                r.from_port,
                r.to_port,
                crate::commands::drift::peer_key(&r.peer)
            );
            out.push(item(
                DriftKind::of(c.action),
                "security-group-rule",
                key,
                rule_line(r),
            ));
        }
    }
    if let Some(n) = &p.network_acl {
        if n.network_acl_id.is_none() {
            out.push(item(
                DriftKind::Missing,
                "network-acl",
                "network-acl".into(),
                "the owned network ACL does not exist".into(),
            ));
        } else {
            for c in &n.changes {
                let e = c
                    .after
                    .as_ref()
                    .or(c.before.as_ref())
                    .expect("a change has a side");
                let dir = if e.egress { "outbound" } else { "inbound" };
                out.push(item(
                    DriftKind::of(c.action),
                    "network-acl-entry",
                    format!("nacl/{dir}/{}", e.rule_number),
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
                format!("subnet/{}", a.subnet_id),
                format!(
                    "subnet {} is associated with {}, not the owned network ACL",
                    a.subnet_id, a.network_acl_id
                ),
            ));
        }
    }
    for a in &p.attach {
        out.push(item(
            DriftKind::Missing,
            "instance-attachment",
            format!("instance/{}/attachment", a.instance_id),
            format!(
                "{} does not carry security group {}",
                a.instance_id, p.security_group.group_name
            ),
        ));
    }
    for m in &p.metadata {
        out.push(item(
            DriftKind::Modified,
            "instance-metadata",
            format!("instance/{}/metadata", m.instance_id),
            format!(
                "{}: HttpEndpoint {}, HttpTokens {}, hop limit {} (policy: {}, {}, {})",
                m.instance_id,
                m.before.http_endpoint,
                m.before.http_tokens.as_deref().unwrap_or("-"),
                m.before
                    .http_put_response_hop_limit
                    .map_or("-".into(), |h| h.to_string()),
                m.after.http_endpoint,
                m.after.http_tokens.as_deref().unwrap_or("-"),
                m.after
                    .http_put_response_hop_limit
                    .map_or("-".into(), |h| h.to_string()),
            ),
        ));
    }
    out
}

fn gcp_items(p: &GcpTargetPlan) -> Vec<DriftItem> {
    let t = &p.target;
    let target = format!("{}/{}", t.project, t.network);
    let item = |kind, resource, key: String, detail: String| DriftItem {
        kind,
        cloud: "gcp",
        target: target.clone(),
        resource,
        key: format!("gcp/{target}/{key}"),
        detail,
    };
    let mut out = Vec::new();
    for c in &p.changes {
        let detail = match (&c.before, &c.after) {
            (Some(before), Some(after)) => format!(
                "{}: {}",
                c.name,
                perimeter_gcp::render_plan::field_changes(before, after).join("; ")
            ),
            (_, Some(f)) | (Some(f), None) => {
                format!("{}: {}", c.name, perimeter_gcp::render_plan::rule_line(f))
            }
            (None, None) => c.name.clone(),
        };
        out.push(item(
            DriftKind::of(c.action),
            "firewall-rule",
            format!("firewall/{}", c.name),
            detail,
        ));
    }
    // Rules perimeter does not own are drift only where they override the policy.
    for o in &p.overlaps {
        out.push(item(
            DriftKind::Unexpected,
            "foreign-firewall-rule",
            format!("foreign/{}", o.name),
            perimeter_gcp::render_plan::overlap_line(o),
        ));
    }
    out
}

/// A GCP target that could not be planned is drift too: its network is missing, or a rule
/// the policy wants is held by someone else.
fn gcp_problem_item(t: &GcpTarget, e: &PlanError) -> DriftItem {
    let target = format!("{}/{}", t.project, t.network);
    let (kind, resource, key) = match e {
        PlanError::NetworkMissing { .. } => (DriftKind::Missing, "network", "network".to_string()),
        PlanError::NotOwned { name, .. } => (
            DriftKind::Unexpected,
            "foreign-firewall-rule",
            format!("firewall/{name}"),
        ),
        _ => (DriftKind::Modified, "network", "plan".to_string()),
    };
    DriftItem {
        kind,
        cloud: "gcp",
        key: format!("gcp/{target}/{key}"),
        target,
        resource,
        detail: e.to_string(),
    }
}

fn azure_items(p: &AzureTargetPlan) -> Vec<DriftItem> {
    let t = &p.target;
    let target = format!("{}/{}/{}", t.subscription, t.resource_group, t.nsg);
    let item = |kind, resource, key: String, detail: String| DriftItem {
        kind,
        cloud: "azure",
        target: target.clone(),
        resource,
        key: format!("azure/{target}/{key}"),
        detail,
    };
    let mut out = Vec::new();
    if p.create_nsg {
        out.push(item(
            DriftKind::Missing,
            "network-security-group",
            "nsg".into(),
            format!("network security group {} does not exist", t.nsg),
        ));
        return out;
    }
    for c in &p.changes {
        let Some(rule) = c.after.as_ref().or(c.before.as_ref()) else {
            continue;
        };
        let detail = match (&c.before, &c.after) {
            (Some(b), Some(a)) => format!(
                "{}: {}",
                rule.name,
                perimeter_azure::render_plan::field_changes(b, a).join("; ")
            ),
            _ => format!(
                "{}: {}",
                rule.name,
                perimeter_azure::render_plan::rule_line(rule)
            ),
        };
        out.push(item(
            DriftKind::of(c.action),
            "security-rule",
            format!("rule/{}", rule.name),
            detail,
        ));
    }
    out
}

fn azure_problem_item(t: &AzureTarget, e: &AzurePlanError) -> DriftItem {
    let target = format!("{}/{}/{}", t.subscription, t.resource_group, t.nsg);
    let (kind, resource, key) = match e {
        AzurePlanError::SharedNsgMissing { .. } | AzurePlanError::NoLocation { .. } => (
            DriftKind::Missing,
            "network-security-group",
            "nsg".to_string(),
        ),
        AzurePlanError::AsgMissing { asg, .. } => (
            DriftKind::Missing,
            "application-security-group",
            format!("asg/{asg}"),
        ),
        AzurePlanError::NameTaken { name, .. } => (
            DriftKind::Unexpected,
            "security-rule",
            format!("rule/{name}"),
        ),
        AzurePlanError::PriorityTaken {
            priority,
            direction,
            ..
        } => (
            DriftKind::Unexpected,
            "security-rule",
            format!("priority/{direction}/{priority}"),
        ),
        _ => (
            DriftKind::Modified,
            "network-security-group",
            "nsg".to_string(),
        ),
    };
    DriftItem {
        kind,
        cloud: "azure",
        key: format!("azure/{target}/{key}"),
        target,
        resource,
        detail: e.to_string(),
    }
}

/// A stable text form of a rule peer, for keys.
pub(crate) fn peer_key(p: &perimeter_aws::model::SgPeer) -> String {
    use perimeter_aws::model::SgPeer;
    match p {
        SgPeer::CidrIpv4(c) | SgPeer::CidrIpv6(c) => c.to_string(),
        SgPeer::OwnGroup => "self".into(),
        SgPeer::ReferencedGroup(g) => g.clone(),
        SgPeer::PrefixList(l) => l.clone(),
    }
}

fn baseline_keys(path: &Path) -> anyhow::Result<BTreeSet<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read baseline {}", path.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("baseline {} is not JSON", path.display()))?;
    let mut keys = BTreeSet::new();
    if let Some(items) = v.get("items").and_then(|i| i.as_array()) {
        keys.extend(
            items
                .iter()
                .filter_map(|i| i.get("key").and_then(|k| k.as_str()).map(str::to_string)),
        );
    } else if let Some(accept) = v.get("accept").and_then(|a| a.as_array()) {
        keys.extend(accept.iter().filter_map(|k| k.as_str().map(str::to_string)));
    } else {
        bail!(
            "baseline {} has neither `items` (a saved drift report) nor `accept` (a list of keys)",
            path.display()
        );
    }
    Ok(keys)
}

fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub(crate) fn run(
    path: &Path,
    format: DriftFormat,
    baseline: Option<&Path>,
    only: Option<Cloud>,
) -> anyhow::Result<u8> {
    let source = super::read_policy(path)?;
    let Some(intent) = super::load_or_report(&source) else {
        return Ok(exit::ERROR);
    };
    let Some(desired) = super::plan::desired(&intent, &source, |c| only.is_none_or(|o| o == c))
    else {
        return Ok(exit::ERROR);
    };
    if desired.is_empty() {
        return Err(super::plan::nothing_to_do(&intent, only));
    }
    let accepted_keys = match baseline {
        Some(b) => baseline_keys(b)?,
        None => BTreeSet::new(),
    };
    let mut backends = super::plan::Backends::default();
    let plans = super::plan::runtime()?.block_on(super::plan::make_plan(
        &mut backends,
        &intent.name,
        &desired,
        super::plan::Mode::ReadOnly,
    ))?;
    let calls = plans.api_calls;
    let all: Vec<DriftItem> = plans
        .aws
        .iter()
        .flat_map(items)
        .chain(plans.gcp.iter().flat_map(gcp_items))
        .chain(
            plans
                .gcp_problems
                .iter()
                .map(|(t, e)| gcp_problem_item(t, e)),
        )
        .chain(plans.azure.iter().flat_map(azure_items))
        .chain(
            plans
                .azure_problems
                .iter()
                .map(|(t, e)| azure_problem_item(t, e)),
        )
        .collect();
    let (accepted, items): (Vec<DriftItem>, Vec<DriftItem>) = all
        .into_iter()
        .partition(|i| accepted_keys.contains(&i.key));
    let mut counts = Counts::default();
    for i in &items {
        match i.kind {
            DriftKind::Missing => counts.missing += 1,
            DriftKind::Unexpected => counts.unexpected += 1,
            DriftKind::Modified => counts.modified += 1,
        }
    }
    let report = DriftReport {
        format_version: DRIFT_FORMAT_VERSION,
        policy: &intent.name,
        in_sync: items.is_empty(),
        counts,
        accepted: accepted.len(),
        items,
        findings: plans
            .aws
            .iter()
            .flat_map(|p| &p.findings)
            .chain(plans.gcp.iter().flat_map(|p| &p.findings))
            .chain(plans.azure.iter().flat_map(|p| &p.findings))
            .collect(),
        api_calls: calls,
    };
    match format {
        DriftFormat::Json => output::data(&format!("{}\n", serde_json::to_string_pretty(&report)?)),
        DriftFormat::Text => {
            let mut out = String::new();
            for i in &report.items {
                let _ = writeln!(
                    out,
                    "{:<10} {} {}: {}",
                    i.kind.as_str(),
                    i.target,
                    i.resource,
                    i.detail
                );
            }
            for f in &report.findings {
                let _ = writeln!(out, "finding    {} {}: {}", f.code, f.resource, f.message);
            }
            let c = &report.counts;
            let _ = writeln!(
                out,
                "{}: {} missing, {} unexpected, {} modified ({} accepted by the baseline). API calls: {}",
                if report.in_sync { "In sync" } else { "Drift" },
                c.missing,
                c.unexpected,
                c.modified,
                report.accepted,
                report.api_calls
            );
            output::data(&out);
        }
        DriftFormat::Prometheus => {
            let p = label(&intent.name);
            let mut out = String::new();
            out.push_str("# HELP perimeter_drift_items Differences between the cloud and the policy, by kind.\n# TYPE perimeter_drift_items gauge\n");
            for (kind, n) in [
                ("missing", report.counts.missing),
                ("unexpected", report.counts.unexpected),
                ("modified", report.counts.modified),
            ] {
                let _ = writeln!(
                    out,
                    "perimeter_drift_items{{policy=\"{p}\",kind=\"{kind}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "# HELP perimeter_in_sync 1 when the cloud matches the policy (after the baseline).\n# TYPE perimeter_in_sync gauge\nperimeter_in_sync{{policy=\"{p}\"}} {}",
                u8::from(report.in_sync)
            );
            let _ = writeln!(
                out,
                "# HELP perimeter_drift_accepted_items Differences accepted by the baseline.\n# TYPE perimeter_drift_accepted_items gauge\nperimeter_drift_accepted_items{{policy=\"{p}\"}} {}",
                report.accepted
            );
            let _ = writeln!(
                out,
                "# HELP perimeter_findings Posture findings (public IPs, internet routes, unattached groups).\n# TYPE perimeter_findings gauge\nperimeter_findings{{policy=\"{p}\"}} {}",
                report.findings.len()
            );
            let _ = writeln!(
                out,
                "# HELP perimeter_drift_api_calls API requests the check made.\n# TYPE perimeter_drift_api_calls gauge\nperimeter_drift_api_calls{{policy=\"{p}\"}} {}",
                report.api_calls
            );
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let _ = writeln!(
                out,
                "# HELP perimeter_drift_last_run_timestamp_seconds When the check ran.\n# TYPE perimeter_drift_last_run_timestamp_seconds gauge\nperimeter_drift_last_run_timestamp_seconds{{policy=\"{p}\"}} {now}"
            );
            output::data(&out);
        }
    }
    Ok(if report.in_sync {
        exit::OK
    } else {
        exit::CHANGES
    })
}
