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
use perimeter_core::SourceFile;
use perimeter_core::saved_plan::{ApplyInput, classify, compare, field, same_secret, signature};
use serde_json::{Map, Value};

use super::plan::{api_calls, compile, has_targets, make_plan, nothing_to_do, retire};
use crate::clouds::{Clouds, for_each_cloud};
use crate::plan_doc::{PlanDocument, plan_key, total_summary};
use crate::{exit, output};
use perimeter_core::session::Mode;

pub(crate) fn run(
    path: &Path,
    auto_approve: bool,
    policy: Option<&Path>,
    destroy: bool,
) -> anyhow::Result<u8> {
    // Judged leniently here: a policy that is not UTF-8 is reported, at its line and column,
    // by the loader below; a plan that is not is refused by the comparison.
    let bytes = super::read_input(path, "plan or policy file")?;
    let text = String::from_utf8_lossy(&bytes);
    let rt = super::plan::runtime()?;
    let input = classify(&text).with_context(|| path.display().to_string())?;
    let (mut clouds, name) = match input {
        ApplyInput::Plan(_) if destroy => {
            bail!(
                "{} is a saved plan: apply it with `perimeter apply {0}` (a plan made with `plan --destroy` destroys)",
                path.display()
            )
        }
        ApplyInput::Plan(saved) => match rt.block_on(check_saved_plan(&saved, policy))? {
            // The policy's name: check_saved_plan refused any other.
            Some(clouds) => (clouds, field(&saved, "policy").to_string()),
            None => return Ok(exit::ERROR),
        },
        ApplyInput::Policy => {
            if !auto_approve && destroy {
                bail!(
                    "destroy removes everything policy file {} owns: run `perimeter plan {0} --destroy --out plan.json`, review it, then `perimeter apply plan.json`; or pass --auto-approve to plan and destroy in one step",
                    path.display()
                );
            }
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
            let Some(mut clouds) = compile(&intent, &source, |_| true) else {
                return Ok(exit::ERROR);
            };
            if !has_targets(&clouds) {
                return Err(nothing_to_do(&intent, None));
            }
            if destroy {
                retire(&mut clouds);
            }
            let calls = rt.block_on(make_plan(&mut clouds, &intent.name, Mode::Write))?;
            let mut doc =
                PlanDocument::new(&intent.name, &source.name, &source.text, calls, &clouds);
            doc.destroy = destroy;
            output::diag(&super::plan::text(&doc, output::stderr_color()));
            (clouds, intent.name)
        }
    };
    rt.block_on(execute(&mut clouds, &name))
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

/// The policy a saved plan was made from, if it is unchanged; else prints why not.
fn policy_of_plan(saved: &Map<String, Value>, policy: Option<&Path>) -> Option<SourceFile> {
    let path = policy.unwrap_or(Path::new(field(saved, "policy_file")));
    let text = match super::read_text(path, "policy file") {
        Ok(text) => text,
        Err(e) => {
            refuse(
                "the policy the plan was made from cannot be read",
                &[format!("{e:#}; pass the policy file with --policy FILE")],
            );
            return None;
        }
    };
    let sha = perimeter_core::plan::sha256_hex(text.as_bytes());
    if sha != field(saved, "policy_sha256") {
        refuse(
            "the policy changed since the plan was made",
            &[format!(
                "{} has SHA-256 {sha}; the plan was made from a file with SHA-256 {}",
                path.display(),
                field(saved, "policy_sha256")
            )],
        );
        return None;
    }
    Some(SourceFile::new(path.display().to_string(), text))
}

/// The checks a saved plan must pass before anything is written (docs/plan-format.md, "What
/// apply checks"). Returns the clouds holding the fresh plan to execute, or `None` after
/// printing why the saved plan is refused.
async fn check_saved_plan(
    saved: &Map<String, Value>,
    policy: Option<&Path>,
) -> anyhow::Result<Option<Clouds>> {
    if let Some(reason) = signature_problem(saved) {
        refuse("the saved plan's signature does not verify", &[reason]);
        return Ok(None);
    }
    let Some(source) = policy_of_plan(saved, policy) else {
        return Ok(None);
    };
    let Some(intent) = super::load_or_report(&source) else {
        return Ok(None);
    };
    if intent.name != field(saved, "policy") {
        let why = format!(
            "the plan says policy `{}`, {} is policy `{}`",
            field(saved, "policy"),
            source.name,
            intent.name
        );
        refuse("the plan is not a plan of this policy", &[why]);
        return Ok(None);
    }
    // A fresh plan of the same clouds against the cloud as it is now. A plan made with
    // --cloud has only that cloud's section; a cloud without targets is empty on both sides.
    let planned = |cloud: &str| {
        saved
            .get(cloud)
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
    };
    let Some(mut clouds) = compile(&intent, &source, planned) else {
        return Ok(None);
    };
    if !has_targets(&clouds) {
        refuse("the saved plan has no target", &[]);
        return Ok(None);
    }
    // A plan made with --destroy is checked against a fresh destroy plan.
    let destroying = saved.get("destroy") == Some(&Value::Bool(true));
    if destroying {
        retire(&mut clouds);
    }
    let calls = match make_plan(&mut clouds, &intent.name, Mode::Write).await {
        Ok(calls) => calls,
        Err(e) => {
            refuse(
                "no fresh plan can be made to check it against",
                &[format!("{e:#}")],
            );
            return Ok(None);
        }
    };
    let (theirs, ours) = comparable(
        saved,
        &clouds,
        &intent.name,
        &source.text,
        calls,
        destroying,
    )?;
    match compare(&theirs, &ours) {
        None => {
            output::diag(&format!(
                "Applying the saved plan of policy `{}` ({}, SHA-256 {}): a fresh plan equals it.\n",
                intent.name,
                source.name,
                field(saved, "policy_sha256")
            ));
            Ok(Some(clouds))
        }
        Some(mismatch) => {
            refuse(
                if mismatch.stale {
                    "saved plan is stale"
                } else {
                    "the saved plan differs from a fresh plan of the same policy against the cloud as it is now"
                },
                &mismatch.reasons,
            );
            Ok(None)
        }
    }
}

/// The saved plan and the fresh one in one form: each cloud's section read as its plans and
/// written back (an older format's defaults filled in), without what decides no write.
fn comparable(
    saved: &Map<String, Value>,
    clouds: &Clouds,
    policy: &str,
    policy_text: &str,
    calls: u64,
    destroying: bool,
) -> anyhow::Result<(Map<String, Value>, Map<String, Value>)> {
    let mut doc = PlanDocument::new(policy, "", policy_text, calls, clouds);
    doc.destroy = destroying;
    let Value::Object(mut ours) = serde_json::to_value(&doc)? else {
        bail!("a plan document is a JSON object");
    };
    let mut theirs = saved.clone();
    for_each_cloud!(ref clouds, |s| {
        let saved_section = s.comparable_section(saved.get(s.name()));
        theirs.insert(s.name().into(), saved_section.context("the saved plan")?);
        let fresh_section = s.comparable_section(ours.get(s.name()))?;
        ours.insert(s.name().into(), fresh_section);
    });
    Ok((theirs, ours))
}

/// `None` when the signature is fine (or not asked for); else why not.
fn signature_problem(saved: &Map<String, Value>) -> Option<String> {
    let given = saved.get("signature").and_then(Value::as_str);
    let Some(key) = plan_key() else {
        if given.is_some() {
            output::diag(
                "warning: the plan is signed but PERIMETER_PLAN_KEY is not set, so its signature was not checked\n",
            );
        }
        return None;
    };
    let Some(given) = given else {
        return Some(
            "PERIMETER_PLAN_KEY is set but the plan carries no signature (make it with the same key set)".into(),
        );
    };
    let expected = signature(Value::Object(saved.clone()), &key);
    (!same_secret(&expected, given)).then(|| {
        "the plan was changed after it was signed, or signed with another PERIMETER_PLAN_KEY".into()
    })
}

/// Executes the plans of every cloud, which have passed every check, then verifies
/// convergence: a new plan, against what the plans were made for, must be empty.
async fn execute(clouds: &mut Clouds, policy: &str) -> anyhow::Result<u8> {
    let check_calls = api_calls(clouds);
    let planned = total_summary(clouds);
    let mut writes = 0usize;
    let mut progress = |line: String| output::diag(&format!("{line}\n"));
    for_each_cloud!(clouds, |s| {
        match s.apply(&mut progress).await {
            Ok(n) => writes += n,
            Err((n, e)) => {
                output::diag(&format!(
                    "error: apply stopped after {} write(s): {e:#}\nThe changes made so far are in place; run `perimeter plan` to see what is left, then apply again.\n",
                    writes + n
                ));
                return Ok(exit::ERROR);
            }
        }
    });
    let write_calls = api_calls(clouds) - check_calls;
    for_each_cloud!(clouds, |s| {
        s.replan_planned();
    });
    make_plan(clouds, policy, Mode::Write)
        .await
        .context("re-reading the clouds after apply")?;
    let mut retries = 0;
    for_each_cloud!(ref clouds, |s| {
        retries += s.retries();
    });
    let again = total_summary(clouds);
    let left = again.add + again.change + again.destroy;
    let total_calls = api_calls(clouds);
    output::diag(&format!(
        "Apply complete: {} added, {} changed, {} destroyed in {writes} write call(s); {left} change(s) left.\nAPI calls: {total_calls} ({check_calls} to check the plan, {write_calls} to write, {} to verify){}.\n",
        planned.add,
        planned.change,
        planned.destroy,
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
