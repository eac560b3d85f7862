//! `perimeter apply PLANFILE` or `perimeter apply POLICY --auto-approve`.
//!
//! A saved plan is executed exactly, or not at all. Apply trusts nothing in the plan file: it
//! reads the policy file the plan names (or `--policy`), checks that it still hashes to the
//! plan's `policy_sha256`, compiles it, observes every target again and makes a fresh plan.
//! Only when the fresh plan equals the saved one — every target, fingerprint, desired rule,
//! id and write — does it write, and then it writes the fresh plan. Afterwards it reads
//! everything back and checks that a new plan would be empty.

use std::path::Path;

use anyhow::{Context, bail};
use perimeter_core::plan::{JsonDifference, PLAN_FORMAT_VERSION, json_differences};

use super::plan::{Backends, Mode};
use crate::args::Cloud;
use crate::plan_doc::{PlanDocument, plan_key};
use crate::{exit, output};

/// What the file given to apply is.
enum Input {
    Plan(Box<PlanDocument>),
    Policy,
}

/// Tells a saved plan from a policy. Anything that starts like JSON is judged as a plan, so a
/// truncated or broken plan file says so instead of being read as a policy.
fn classify(path: &Path, text: &str) -> anyhow::Result<Input> {
    let looks_like_json = matches!(text.trim_start().as_bytes().first(), Some(b'{' | b'['));
    let value: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) if looks_like_json => bail!(
            "{} is not a valid perimeter plan: broken JSON at line {}, column {} ({}); was it truncated? Make the plan again with `perimeter plan POLICY --out {0}`",
            path.display(),
            e.line(),
            e.column(),
            e
        ),
        Err(_) => return Ok(Input::Policy),
    };
    let Some(object) = value.as_object() else {
        bail!(
            "{} is not a perimeter plan: a plan is a JSON object (docs/plan-format.md)",
            path.display()
        );
    };
    if object.contains_key("apiVersion") {
        return Ok(Input::Policy);
    }
    match object
        .get("format_version")
        .and_then(serde_json::Value::as_u64)
    {
        // Older plans (1: AWS only; 2: AWS and GCP) read as plans without the newer clouds.
        Some(v) if (1..=u64::from(PLAN_FORMAT_VERSION)).contains(&v) => {}
        Some(v) => bail!(
            "{} is a plan of format version {v}; this perimeter reads versions 1 to {PLAN_FORMAT_VERSION}: make the plan again",
            path.display()
        ),
        None => bail!(
            "{} is not a perimeter plan: it has no `format_version` (docs/plan-format.md)",
            path.display()
        ),
    }
    let doc = serde_json::from_value(value)
        .with_context(|| format!("{} is not a valid perimeter plan", path.display()))?;
    Ok(Input::Plan(Box::new(doc)))
}

pub(crate) fn run(path: &Path, auto_approve: bool, policy: Option<&Path>) -> anyhow::Result<u8> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let rt = super::plan::runtime()?;
    let mut backends = Backends::default();
    match classify(path, &text)? {
        Input::Plan(saved) => {
            let Some(fresh) = rt.block_on(check_saved_plan(&saved, policy, &mut backends))? else {
                return Ok(exit::ERROR);
            };
            rt.block_on(execute(&fresh, &mut backends))
        }
        Input::Policy => {
            if !auto_approve {
                bail!(
                    "{} is a policy, not a saved plan: run `perimeter plan {0} --out plan.json`, review it, then `perimeter apply plan.json`; or pass --auto-approve to plan and apply in one step",
                    path.display()
                );
            }
            if policy.is_some() {
                bail!("--policy goes with a saved plan, not with a policy file");
            }
            let source = super::read_policy(path)?;
            let Some(intent) = super::load_or_report(&source) else {
                return Ok(exit::ERROR);
            };
            let Some(desired) = super::plan::desired(&intent, &source, |_| true) else {
                return Ok(exit::ERROR);
            };
            if desired.is_empty() {
                return Err(super::plan::nothing_to_do(&intent, None));
            }
            let plans = rt.block_on(super::plan::make_plan(
                &mut backends,
                &intent.name,
                &desired,
                Mode::Write,
            ))?;
            let doc = PlanDocument::new(&intent.name, &source.name, &source.text, plans);
            output::diag(&super::plan::text(&doc, output::stderr_color()));
            rt.block_on(execute(&doc, &mut backends))
        }
    }
}

/// Prints why a saved plan is refused. Nothing has been written when this is called.
fn refuse(headline: &str, reasons: &[String]) {
    let mut msg = format!("error: {headline}; nothing was written\n");
    for r in reasons {
        msg.push_str(&format!("  - {r}\n"));
    }
    msg.push_str("Run `perimeter plan` again, review the new plan, and apply that.\n");
    output::diag(&msg);
}

/// The checks a saved plan must pass before anything is written. Returns the fresh plan to
/// execute, or `None` after printing why the saved one is refused.
async fn check_saved_plan(
    saved: &PlanDocument,
    policy: Option<&Path>,
    backends: &mut Backends,
) -> anyhow::Result<Option<PlanDocument>> {
    // 1. The signature, when pipelines sign their plans.
    if let Some(reason) = signature_problem(saved)? {
        refuse("the saved plan's signature does not verify", &[reason]);
        return Ok(None);
    }
    // 2. The policy the plan was made from, unchanged.
    let policy_path = policy.unwrap_or(Path::new(&saved.policy_file));
    let source = match std::fs::read_to_string(policy_path) {
        Ok(text) => perimeter_core::SourceFile::new(policy_path.display().to_string(), text),
        Err(e) => {
            refuse(
                "the policy the plan was made from cannot be read",
                &[format!(
                    "{}: {e}; pass the policy file with --policy FILE",
                    policy_path.display()
                )],
            );
            return Ok(None);
        }
    };
    let sha = perimeter_core::plan::sha256_hex(source.text.as_bytes());
    if sha != saved.policy_sha256 {
        refuse(
            "the policy changed since the plan was made",
            &[format!(
                "{} has SHA-256 {sha}; the plan was made from a file with SHA-256 {}",
                policy_path.display(),
                saved.policy_sha256
            )],
        );
        return Ok(None);
    }
    let Some(intent) = super::load_or_report(&source) else {
        return Ok(None);
    };
    if intent.name != saved.policy {
        refuse(
            "the plan is not a plan of this policy",
            &[format!(
                "the plan says policy `{}`, {} is policy `{}`",
                saved.policy,
                policy_path.display(),
                intent.name
            )],
        );
        return Ok(None);
    }
    // 3. A fresh plan of the same clouds against the cloud as it is now. A plan made with
    //    --cloud has only that cloud's section; a cloud the policy has no target for is empty
    //    on both sides.
    let planned = |c: Cloud| match c {
        Cloud::Aws => !saved.aws.is_empty(),
        Cloud::Gcp => !saved.gcp.is_empty(),
        Cloud::Azure => !saved.azure.is_empty(),
    };
    let Some(desired) = super::plan::desired(&intent, &source, planned) else {
        return Ok(None);
    };
    if desired.is_empty() {
        refuse("the saved plan has no target", &[]);
        return Ok(None);
    }
    let plans = super::plan::make_plan(backends, &intent.name, &desired, Mode::Write).await?;
    let fresh = PlanDocument::new(&intent.name, &saved.policy_file, &source.text, plans);
    // 4. Equal, field by field. Only what says how and when the plan was made may differ.
    let comparable = |doc: &PlanDocument| -> anyhow::Result<serde_json::Value> {
        let mut v = serde_json::to_value(doc)?;
        if let Some(o) = v.as_object_mut() {
            for incidental in [
                "format_version",
                "perimeter_version",
                "policy_file",
                "api_calls",
                "signature",
            ] {
                o.remove(incidental);
            }
        }
        Ok(v)
    };
    const SHOWN: usize = 12;
    let (found, total) = json_differences(&comparable(saved)?, &comparable(&fresh)?, SHOWN);
    if total == 0 {
        return Ok(Some(fresh));
    }
    let stale = found.iter().any(|d| d.path.contains("fingerprint"));
    let mut reasons: Vec<String> = found.iter().map(difference_line).collect();
    if total > found.len() {
        reasons.push(format!("… and {} more difference(s)", total - found.len()));
    }
    refuse(
        if stale {
            "saved plan is stale"
        } else {
            "the saved plan differs from a fresh plan of the same policy against the cloud as it is now"
        },
        &reasons,
    );
    Ok(None)
}

fn difference_line(d: &JsonDifference) -> String {
    fn show(v: Option<&serde_json::Value>) -> String {
        let Some(v) = v else {
            return "nothing".into();
        };
        let s = v.to_string();
        if s.chars().count() > 96 {
            format!("{}…", s.chars().take(96).collect::<String>())
        } else {
            s
        }
    }
    if d.path.contains("fingerprint") {
        format!(
            "{}: the cloud changed since the plan was made (an object the plan depends on was changed by someone else)",
            d.path
        )
    } else {
        format!(
            "{}: the plan file has {}, a fresh plan has {}",
            d.path,
            show(d.left.as_ref()),
            show(d.right.as_ref())
        )
    }
}

/// `None` when the signature is fine (or not asked for); else why not.
fn signature_problem(saved: &PlanDocument) -> anyhow::Result<Option<String>> {
    let Some(key) = plan_key() else {
        if saved.signature.is_some() {
            output::diag(
                "warning: the plan is signed but PERIMETER_PLAN_KEY is not set, so its signature was not checked\n",
            );
        }
        return Ok(None);
    };
    let Some(signature) = &saved.signature else {
        return Ok(Some(
            "PERIMETER_PLAN_KEY is set but the plan carries no signature (make it with the same key set)".into(),
        ));
    };
    let expected = saved.signature_under(&key)?;
    // Constant-time: the comparison must not tell an attacker how much of a guess was right.
    let same = expected.len() == signature.len()
        && expected
            .bytes()
            .zip(signature.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    Ok((!same).then(|| {
        "the plan was changed after it was signed, or signed with another PERIMETER_PLAN_KEY".into()
    }))
}

/// Executes a plan that has passed every check, then verifies convergence.
async fn execute(doc: &PlanDocument, backends: &mut Backends) -> anyhow::Result<u8> {
    let check_calls = backends.api_calls();
    let mut writes = 0usize;
    let stopped = |writes: usize, e: &dyn std::fmt::Display| {
        output::diag(&format!(
            "error: apply stopped after {writes} write(s): {e}\nThe changes made so far are in place; run `perimeter plan` to see what is left, then apply again.\n"
        ));
    };
    let mut progress = |line: String| output::diag(&format!("{line}\n"));
    for p in doc.aws.iter().filter(|p| !p.is_empty()) {
        match backends
            .aws(&p.target.region)
            .await
            .apply(p, &mut progress)
            .await
        {
            Ok(n) => writes += n,
            Err(e) => {
                stopped(writes, &e);
                return Ok(exit::ERROR);
            }
        }
    }
    for p in doc.gcp.iter().filter(|p| !p.is_empty()) {
        output::diag(&format!(
            "gcp project {} network {}:\n",
            p.target.project, p.target.network
        ));
        match backends.gcp().await?.apply(p, &mut progress).await {
            Ok(n) => writes += n,
            Err(e) => {
                stopped(writes + e.written, &e.error);
                return Ok(exit::ERROR);
            }
        }
    }
    for p in doc.azure.iter().filter(|p| !p.is_empty()) {
        output::diag(&format!(
            "azure {}/{} NSG {}:\n",
            p.target.subscription, p.target.resource_group, p.target.nsg
        ));
        match backends.azure()?.apply(p, &mut progress).await {
            Ok(n) => writes += n,
            Err(e) => {
                stopped(writes + e.written, &e.error);
                return Ok(exit::ERROR);
            }
        }
    }
    let write_calls = backends.api_calls() - check_calls;

    // Read back and check convergence, with the desired state the fresh plan compiled.
    let mut left = 0usize;
    let mut desired = super::plan::Desired::default();
    desired.aws = doc
        .aws
        .iter()
        .map(|p| (p.desired.clone(), Vec::new()))
        .collect();
    desired.gcp = doc
        .gcp
        .iter()
        .map(|p| (p.desired.clone(), Vec::new()))
        .collect();
    desired.azure = doc
        .azure
        .iter()
        .map(|p| (p.desired.clone(), Vec::new()))
        .collect();
    let again = super::plan::make_plan(backends, &doc.policy, &desired, Mode::Write)
        .await
        .context("re-reading the clouds after apply")?;
    let s = PlanDocument::new(&doc.policy, "", "", again).summary;
    left += s.add + s.change + s.destroy;
    let total_calls = backends.api_calls();
    let retries = backends.retries();
    let s = doc.summary;
    output::diag(&format!(
        "Apply complete: {} added, {} changed, {} destroyed in {writes} write call(s); {left} change(s) left.\nAPI calls: {total_calls} ({check_calls} to check the plan, {write_calls} to write, {} to verify){}.\n",
        s.add,
        s.change,
        s.destroy,
        total_calls - check_calls - write_calls,
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
