//! `perimeter apply PLANFILE` or `perimeter apply POLICY --auto-approve`.
//!
//! Re-observes every target of every cloud first and refuses, writing nothing, if anything
//! changed since the plan was made. Then executes each target's plan (create, then add, then
//! change, then remove; AWS, then GCP), reads everything back and checks that a new plan
//! would be empty.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};
use perimeter_aws::backend::AwsBackend;
use perimeter_aws::plan::{AwsTargetPlan, Fingerprints};
use perimeter_azure::backend::AzureBackend;
use perimeter_azure::plan::{check_plan_applies, observed_fingerprint as azure_fingerprint};
use perimeter_core::plan::PLAN_FORMAT_VERSION;
use perimeter_gcp::backend::GcpBackend;
use perimeter_gcp::plan::{check_writes_are_owned, observed_fingerprint};

use crate::plan_doc::PlanDocument;
use crate::{exit, output};

fn load_plan(path: &Path, text: &str) -> anyhow::Result<Option<PlanDocument>> {
    let value: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(_) => return Ok(None),
    };
    let version = value
        .get("format_version")
        .and_then(serde_json::Value::as_u64);
    match version {
        // Older plans (1: AWS only; 2: AWS and GCP) read as plans without the newer clouds.
        Some(v) if (1..=u64::from(PLAN_FORMAT_VERSION)).contains(&v) => {}
        Some(v) => bail!(
            "{} is a plan of format version {v}; this perimeter reads version {PLAN_FORMAT_VERSION}: make the plan again",
            path.display()
        ),
        None => return Ok(None),
    }
    let doc = serde_json::from_value(value)
        .with_context(|| format!("{} is not a valid perimeter plan", path.display()))?;
    Ok(Some(doc))
}

pub(crate) fn run(path: &Path, auto_approve: bool) -> anyhow::Result<u8> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let rt = super::plan::runtime()?;
    let doc = match load_plan(path, &text)? {
        Some(doc) => doc,
        None => {
            if !auto_approve {
                bail!(
                    "{} is a policy, not a saved plan: run `perimeter plan {0} --out plan.json`, review it, then `perimeter apply plan.json`; or pass --auto-approve to plan and apply in one step",
                    path.display()
                );
            }
            let source = super::read_policy(path)?;
            let Some(intent) = super::load_or_report(&source) else {
                return Ok(exit::ERROR);
            };
            let Some(desired) = super::plan::desired(&intent, &source, None) else {
                return Ok(exit::ERROR);
            };
            if desired.is_empty() {
                return Err(super::plan::nothing_to_do(&intent, None));
            }
            let plans = rt.block_on(super::plan::make_plan(
                &intent.name,
                &desired,
                super::plan::Mode::Write,
            ))?;
            let doc = PlanDocument::new(&intent.name, &source.name, &source.text, plans);
            output::diag(&super::plan::text(&doc, output::stderr_color()));
            doc
        }
    };
    rt.block_on(apply(&doc))
}

async fn apply(doc: &PlanDocument) -> anyhow::Result<u8> {
    let mut by_region: BTreeMap<&str, Vec<&AwsTargetPlan>> = BTreeMap::new();
    for p in &doc.aws {
        by_region
            .entry(p.target.region.as_str())
            .or_default()
            .push(p);
    }
    let mut backends = BTreeMap::new();
    // 1. Stale check for every target of every cloud before the first write anywhere.
    let mut stale = Vec::new();
    for (region, plans) in &by_region {
        let backend = AwsBackend::connect(region).await;
        let targets: Vec<_> = plans.iter().map(|p| p.target.clone()).collect();
        let observed = backend
            .observe(&doc.policy, &targets)
            .await
            .with_context(|| format!("observing AWS {region}"))?;
        for (p, obs) in plans.iter().zip(&observed) {
            let now = Fingerprints::of(obs);
            let what = format!(
                "aws {} {} ({})",
                p.target.region, p.target.vpc, p.target.security_group
            );
            if now.security_group != p.fingerprints.security_group {
                stale.push(format!(
                    "{what}: the security group changed since the plan was made"
                ));
            }
            if now.network_acl != p.fingerprints.network_acl {
                stale.push(format!("{what}: the network ACL or its subnet associations changed since the plan was made"));
            }
            if now.instances != p.fingerprints.instances {
                stale.push(format!("{what}: the selected instances, their metadata options or their security groups changed since the plan was made"));
            }
        }
        backends.insert(*region, backend);
    }
    let gcp = if doc.gcp.is_empty() {
        None
    } else {
        Some(super::plan::gcp_backend().await?)
    };
    if let Some(backend) = &gcp {
        let targets: Vec<_> = doc.gcp.iter().map(|p| p.target.clone()).collect();
        let observed = backend
            .observe(&doc.policy, &targets)
            .await
            .context("observing GCP")?;
        for (p, obs) in doc.gcp.iter().zip(&observed) {
            if observed_fingerprint(obs, &p.desired) != p.fingerprint {
                stale.push(format!(
                    "gcp project {} network {}: the firewall rules perimeter owns changed since the plan was made",
                    p.target.project, p.target.network
                ));
            } else if let Err(e) = check_writes_are_owned(p, obs) {
                stale.push(format!(
                    "gcp project {} network {}: {e}",
                    p.target.project, p.target.network
                ));
            }
        }
    }
    let azure = if doc.azure.is_empty() {
        None
    } else {
        Some(super::plan::azure_backend()?)
    };
    if let Some(backend) = &azure {
        let targets: Vec<_> = doc.azure.iter().map(|p| p.target.clone()).collect();
        let observed = backend.observe(&targets).await.context("observing Azure")?;
        for (p, obs) in doc.azure.iter().zip(&observed) {
            if azure_fingerprint(obs, &p.target, &doc.policy) != p.fingerprint {
                stale.push(format!(
                    "azure {}/{} NSG {}: the rules perimeter manages (or the NSG it owns) changed since the plan was made",
                    p.target.subscription, p.target.resource_group, p.target.nsg
                ));
            } else if let Err(why) = check_plan_applies(p, obs) {
                stale.push(format!(
                    "azure {}/{} NSG {}: {why}",
                    p.target.subscription, p.target.resource_group, p.target.nsg
                ));
            }
        }
    }
    if !stale.is_empty() {
        let mut msg = String::from("error: saved plan is stale; nothing was written\n");
        for s in &stale {
            msg.push_str(&format!("  - {s}\n"));
        }
        msg.push_str("Run `perimeter plan` again, review the new plan, and apply that.\n");
        output::diag(&msg);
        return Ok(exit::ERROR);
    }
    let calls = |backends: &BTreeMap<&str, AwsBackend>, gcp: &Option<GcpBackend>| -> u64 {
        backends.values().map(AwsBackend::api_calls).sum::<u64>()
            + gcp.as_ref().map_or(0, GcpBackend::api_calls)
            + azure.as_ref().map_or(0, AzureBackend::api_calls)
    };
    let observe_calls = calls(&backends, &gcp);

    // 2. Execute: AWS, then GCP.
    let mut writes = 0usize;
    let stopped = |writes: usize, e: &dyn std::fmt::Display| {
        output::diag(&format!(
            "error: apply stopped after {writes} write(s): {e}\nThe changes made so far are in place; run `perimeter plan` to see what is left, then apply again.\n"
        ));
    };
    for (region, plans) in &by_region {
        let backend = &backends[region];
        for p in plans {
            if p.is_empty() {
                continue;
            }
            let mut progress = |line: String| output::diag(&format!("{line}\n"));
            match backend.apply(p, &mut progress).await {
                Ok(n) => writes += n,
                Err(e) => {
                    stopped(writes, &e);
                    return Ok(exit::ERROR);
                }
            }
        }
    }
    if let Some(backend) = &gcp {
        for p in doc.gcp.iter().filter(|p| !p.is_empty()) {
            output::diag(&format!(
                "gcp project {} network {}:\n",
                p.target.project, p.target.network
            ));
            let mut progress = |line: String| output::diag(&format!("{line}\n"));
            match backend.apply(p, &mut progress).await {
                Ok(n) => writes += n,
                Err(e) => {
                    stopped(writes + e.written, &e.error);
                    return Ok(exit::ERROR);
                }
            }
        }
    }
    if let Some(backend) = &azure {
        for p in doc.azure.iter().filter(|p| !p.is_empty()) {
            output::diag(&format!(
                "azure {}/{} NSG {}:\n",
                p.target.subscription, p.target.resource_group, p.target.nsg
            ));
            let mut progress = |line: String| output::diag(&format!("{line}\n"));
            match backend.apply(p, &mut progress).await {
                Ok(n) => writes += n,
                Err(e) => {
                    stopped(writes + e.written, &e.error);
                    return Ok(exit::ERROR);
                }
            }
        }
    }
    let write_calls = calls(&backends, &gcp) - observe_calls;

    // 3. Read back and check convergence.
    let mut left = 0usize;
    for (region, plans) in &by_region {
        let backend = &backends[region];
        let targets: Vec<_> = plans.iter().map(|p| p.target.clone()).collect();
        let observed = backend
            .observe(&doc.policy, &targets)
            .await
            .with_context(|| format!("re-reading AWS {region}"))?;
        for (p, obs) in plans.iter().zip(&observed) {
            let again = perimeter_aws::plan::plan(&p.desired, Vec::new(), obs, &doc.policy)?;
            let s = again.summary();
            left += s.add + s.change + s.destroy;
        }
    }
    if let Some(backend) = &gcp {
        let targets: Vec<_> = doc.gcp.iter().map(|p| p.target.clone()).collect();
        let observed = backend
            .observe(&doc.policy, &targets)
            .await
            .context("re-reading GCP")?;
        for (p, obs) in doc.gcp.iter().zip(&observed) {
            let again = perimeter_gcp::plan::plan(&p.desired, Vec::new(), obs, &doc.policy)?;
            let s = again.summary();
            left += s.add + s.change + s.destroy;
        }
    }
    if let Some(backend) = &azure {
        let targets: Vec<_> = doc.azure.iter().map(|p| p.target.clone()).collect();
        let observed = backend
            .observe(&targets)
            .await
            .context("re-reading Azure")?;
        for (p, obs) in doc.azure.iter().zip(&observed) {
            let again = perimeter_azure::plan::plan(&p.desired, Vec::new(), obs, &doc.policy)?;
            let s = again.summary();
            left += s.add + s.change + s.destroy;
        }
    }
    let total_calls = calls(&backends, &gcp);
    let retries = gcp.as_ref().map_or(0, GcpBackend::retries)
        + azure.as_ref().map_or(0, AzureBackend::retries);
    let s = doc.summary;
    output::diag(&format!(
        "Apply complete: {} added, {} changed, {} destroyed in {writes} write call(s); {left} change(s) left.\nAPI calls: {total_calls} ({observe_calls} to check the plan, {write_calls} to write, {} to verify){}.\n",
        s.add,
        s.change,
        s.destroy,
        total_calls - observe_calls - write_calls,
        if retries > 0 {
            format!("; {retries} request(s) retried")
        } else {
            String::new()
        }
    ));
    if left > 0 {
        output::diag(
            "error: the cloud does not match the policy after apply; run `perimeter plan` to see the difference\n",
        );
        return Ok(exit::ERROR);
    }
    Ok(exit::OK)
}
