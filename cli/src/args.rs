//! Command-line definitions only (clap). Behaviour lives in `commands/`.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

const AFTER_HELP: &str = "\
Exit codes: 0 success, 1 error (a usage error too), 2 changes present (plan
--detailed-exitcode, drift).

Examples:
  perimeter validate policies/eks-workers.yaml
  perimeter compile policies/multi-cloud.yaml
  perimeter compile policies/gke-workers.yaml --cloud gcp --format json
  perimeter presets
  perimeter plan policies/eks-workers.yaml --out plan.json --detailed-exitcode
  perimeter apply plan.json

Docs: docs/policy-reference.md (policy language), docs/cli.md (commands, exit codes, JSON).";

/// Keep the network perimeter of Kubernetes nodes in AWS, GCP and Azure equal to one
/// provider-neutral policy file.
#[derive(Debug, Parser)]
#[command(name = "perimeter", version, about, after_help = AFTER_HELP, propagate_version = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Check a policy file and report every problem with file:line:column.
    ///
    /// Reads the policy, resolves every network and service name, and checks the rules that
    /// span several keys (unique rule names, `private: true`). Compiles nothing and needs no
    /// credentials. Exit 0 when valid, 1 when not.
    #[command(
        after_help = "Examples:\n  perimeter validate policies/eks-workers.yaml\n  perimeter validate policy.yaml --format json | jq '.diagnostics[].code'"
    )]
    Validate {
        /// The policy file (YAML, apiVersion perimeter/v1).
        policy: PathBuf,
        /// `text` for people, `json` for tools.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Show what a policy means on each cloud, offline.
    ///
    /// Compiles the policy to AWS security group rules, network ACL entries and instance
    /// metadata options, GCP VPC firewall rules, and Azure NSG rules, and lists every Note: the
    /// places where a cloud cannot say exactly what the policy says (codes: unenforceable,
    /// widened, narrowed, approximated, side-effect, info). A cloud with no target in the
    /// policy is compiled for a placeholder target named after the policy.
    ///
    /// Text output looks like each cloud's console; JSON output holds the bodies each cloud's
    /// API takes (EC2 IpPermissions / NetworkAclEntry / InstanceMetadataOptions, the GCP
    /// Firewall resource, ARM securityRule properties), under the API's own field names.
    #[command(
        after_help = "Examples:\n  perimeter compile policies/multi-cloud.yaml\n  perimeter compile policies/eks-workers.yaml --cloud aws\n  perimeter compile policies/aks-workers.yaml --cloud azure --format json"
    )]
    Compile {
        /// The policy file.
        policy: PathBuf,
        /// Compile for one cloud only (default: all of them).
        #[arg(long, value_parser = clouds())]
        cloud: Option<String>,
        /// `text` (console-like tables) or `json` (API bodies).
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Compare the clouds with the policy and show what apply would change.
    ///
    /// Observes every target (bulk reads: a handful of API calls per region or
    /// network, whatever the number of rules), diffs against the compiled policy, and prints
    /// the changes like Terraform: `+` create, `~` change in place, `-` destroy, then "Plan: N
    /// to add, N to change, N to destroy." Foreign rules that override the policy are shown
    /// with `!` and never changed. Credentials: the standard AWS chain; GCP Application
    /// Default Credentials. AWS_ENDPOINT_URL and PERIMETER_GCP_ENDPOINT (with
    /// PERIMETER_GCP_CREDENTIALS=anonymous) point perimeter at the local emulators
    /// (localstack/).
    #[command(
        after_help = "Exit codes: 0 success (with --detailed-exitcode: no changes), 1 error, 2 changes present (--detailed-exitcode only).

Examples:
  perimeter plan policies/eks-workers.yaml
  perimeter plan policy.yaml --out plan.json --detailed-exitcode
  perimeter plan policy.yaml --format markdown > comment.md
  perimeter plan policies/multi-cloud.yaml --cloud gcp"
    )]
    Plan {
        /// The policy file.
        policy: PathBuf,
        /// Save the plan (with a fingerprint of everything observed) for `perimeter apply`.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// `text`, `json` (docs/plan-format.md) or `markdown` (for pull-request comments).
        #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
        format: PlanFormat,
        /// Exit 2 when there are changes (or violations, posture findings: see --fail-on),
        /// 0 when there are none (1 is always an error).
        #[arg(long)]
        detailed_exitcode: bool,
        /// Which classes make --detailed-exitcode exit 2: `changes` (what apply would write),
        /// `violations` (objects perimeter does not own make the nodes' perimeter differ from
        /// the policy), `posture` (findings such as a public IP in a private perimeter).
        #[arg(long, value_enum, value_delimiter = ',', default_values_t = FailOn::ALL)]
        fail_on: Vec<FailOn>,
        /// Plan one cloud's targets only (default: every target the policy declares).
        #[arg(long, value_parser = clouds())]
        cloud: Option<String>,
        /// Plan the removal of everything the policy owns in its targets (apply the saved
        /// plan to carry it out), instead of the policy.
        #[arg(long)]
        destroy: bool,
    },
    /// Make the clouds match a saved plan (or a policy, with --auto-approve).
    ///
    /// A saved plan is executed exactly, or not at all: apply reads the policy file the plan
    /// was made from (or --policy), refuses unless it still has the plan's SHA-256, observes
    /// every target again and refuses, writing nothing, unless a fresh plan equals the saved
    /// one (every fingerprint, rule, id and write). With PERIMETER_PLAN_KEY set, the plan's
    /// signature must verify too. Writes in the plan's order: create the group or NACL, add
    /// rules, change rules in place, remove rules; throttling and 5xx answers are retried with
    /// backoff. Then reads everything back and fails unless a new plan would be empty.
    #[command(
        after_help = "Exit codes: 0 applied and converged, 1 error (stale plan, failed write, not converged).

Examples:
  perimeter plan policy.yaml --out plan.json && perimeter apply plan.json
  perimeter apply plan.json --policy checkout/policy.yaml
  perimeter apply policy.yaml --auto-approve"
    )]
    Apply {
        /// A plan saved by `perimeter plan --out`, or a policy file with --auto-approve.
        plan: PathBuf,
        /// Accept a policy file: plan and apply in one step without review.
        #[arg(long)]
        auto_approve: bool,
        /// The policy the saved plan was made from, when it is no longer at the path the plan
        /// records (another checkout or job). Must have the plan's `policy_sha256`.
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
    },
    /// Report how the clouds differ from the policy, read-only, for cron jobs and alerts.
    ///
    /// Each difference is `missing` (the policy wants it, the cloud lacks it), `unexpected`
    /// (the cloud has it, the policy does not) or `modified`. Writes nothing.
    #[command(
        after_help = "Exit codes: 0 in sync, 2 drift, 1 error.\n\nExamples:\n  perimeter drift policy.yaml\n  perimeter drift policy.yaml --format json > baseline.json      # accept today's drift\n  perimeter drift policy.yaml --baseline baseline.json\n  perimeter drift policy.yaml --format prometheus > /var/lib/node-exporter/perimeter.prom"
    )]
    Drift {
        /// The policy file.
        policy: PathBuf,
        /// `text`, `json` (docs/drift-format.md) or `prometheus` (node-exporter textfile).
        #[arg(long, value_enum, default_value_t = DriftFormat::Text)]
        format: DriftFormat,
        /// Accept known drift: a saved `--format json` report, or `{"accept": [KEY, ...]}`.
        #[arg(long, value_name = "FILE")]
        baseline: Option<PathBuf>,
        /// Which classes make drift exit 2: `changes` (missing, unexpected, modified),
        /// `violations` (objects perimeter does not own make the nodes' perimeter differ from
        /// the policy), `posture` (findings such as a public IP in a private perimeter).
        #[arg(long, value_enum, value_delimiter = ',', default_values_t = FailOn::ALL)]
        fail_on: Vec<FailOn>,
        /// Check one cloud's targets only (default: every target the policy declares).
        #[arg(long, value_parser = clouds())]
        cloud: Option<String>,
    },
    /// Remove everything the policy owns in its targets: AWS groups (taken off the nodes'
    /// interfaces first) and NACLs (their subnets moved back to the VPC's default NACL), GCP
    /// firewall rules, Azure NSGs (shared NSGs keep the rules of others).
    ///
    /// Safe like apply: `perimeter plan POLICY --destroy --out plan.json` makes a plan that
    /// `perimeter apply plan.json` executes exactly or not at all; `destroy --auto-approve`
    /// plans and destroys in one step. Objects perimeter does not own are never touched.
    #[command(
        after_help = "Exit codes: 0 destroyed (nothing of the policy left), 1 error.\n\nExamples:\n  perimeter plan policy.yaml --destroy --out destroy.json && perimeter apply destroy.json\n  perimeter destroy policy.yaml --auto-approve"
    )]
    Destroy {
        /// The policy file.
        policy: PathBuf,
        /// Plan and destroy in one step without review.
        #[arg(long)]
        auto_approve: bool,
    },
    /// List the built-in services and CNI presets with their ports.
    Presets,
}

/// `--fail-on`'s classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum FailOn {
    Changes,
    Violations,
    Posture,
}

impl FailOn {
    const ALL: [FailOn; 3] = [FailOn::Changes, FailOn::Violations, FailOn::Posture];

    /// The classes as the core names them.
    pub(crate) fn classes(list: &[FailOn]) -> Vec<perimeter_core::drift::FailClass> {
        use perimeter_core::drift::FailClass;
        list.iter()
            .map(|f| match f {
                FailOn::Changes => FailClass::Changes,
                FailOn::Violations => FailClass::Violations,
                FailOn::Posture => FailClass::Posture,
            })
            .collect()
    }
}

impl std::fmt::Display for FailOn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FailOn::Changes => "changes",
            FailOn::Violations => "violations",
            FailOn::Posture => "posture",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum DriftFormat {
    Text,
    Json,
    Prometheus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum PlanFormat {
    Text,
    Json,
    Markdown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    Text,
    Json,
}

/// `--cloud` takes the name of a cloud in the registry.
fn clouds() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(crate::clouds::NAMES)
}
