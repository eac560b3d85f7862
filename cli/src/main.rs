//! The `perimeter` binary: argument parsing, dispatch, exit codes. The only place that uses
//! `anyhow` and the only place that ends the process.

mod args;
mod clouds;
mod commands;
mod exit;
mod output;
mod plan_doc;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = match args::Cli::try_parse() {
        Ok(cli) => cli,
        // A usage error exits 1, never 2: 2 means "changes present" to a pipeline, and a
        // mistyped flag must not read as drift. --help and --version exit 0.
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::ERROR
            } else {
                exit::OK
            });
        }
    };
    let result = match cli.command {
        args::Command::Validate { policy, format } => commands::validate::run(&policy, format),
        args::Command::Compile {
            policy,
            cloud,
            format,
        } => commands::compile::run(&policy, cloud.as_deref(), format),
        args::Command::Plan {
            policy,
            out,
            format,
            detailed_exitcode,
            fail_on,
            cloud,
            destroy,
        } => commands::plan::run(
            &policy,
            out.as_deref(),
            format,
            detailed_exitcode.then(|| args::FailOn::classes(&fail_on)),
            cloud.as_deref(),
            destroy,
        ),
        args::Command::Apply {
            plan,
            auto_approve,
            policy,
        } => commands::apply::run(&plan, auto_approve, policy.as_deref(), false),
        args::Command::Destroy {
            policy,
            auto_approve,
        } => commands::apply::run(&policy, auto_approve, None, true),
        args::Command::Drift {
            policy,
            format,
            baseline,
            fail_on,
            cloud,
        } => commands::drift::run(
            &policy,
            format,
            baseline.as_deref(),
            &args::FailOn::classes(&fail_on),
            cloud.as_deref(),
        ),
        args::Command::Presets => Ok(commands::presets::run()),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            match err.downcast_ref::<commands::InputError>() {
                // Already `FILE: error[CODE]: …` with a hint.
                Some(input) => output::diag(&format!("{input}\n")),
                None => output::diag(&format!("error: {err:#}\n")),
            }
            ExitCode::from(exit::ERROR)
        }
    }
}
