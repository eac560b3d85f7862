//! Command-line definitions only (clap). Behaviour lives in `commands/`.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

const AFTER_HELP: &str = "\
Exit codes: 0 success, 1 error (invalid policy, a cloud limit exceeded, unreadable file).

Examples:
  perimeter validate policies/eks-workers.yaml
  perimeter compile policies/multi-cloud.yaml
  perimeter compile policies/gke-workers.yaml --cloud gcp --format json
  perimeter presets

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
        /// Compile for one cloud only (default: all three).
        #[arg(long, value_enum)]
        cloud: Option<Cloud>,
        /// `text` (console-like tables) or `json` (API bodies).
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// List the built-in services and CNI presets with their ports.
    Presets,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Cloud {
    Aws,
    Gcp,
    Azure,
}
