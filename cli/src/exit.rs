//! Documented exit codes (docs/cli.md). Scripts written for Terraform keep working: 0 success,
//! 1 error, 2 "changes present" (plan --detailed-exitcode, drift).

/// Success; for `validate`, the policy is valid.
pub(crate) const OK: u8 = 0;
/// Any error: invalid policy, unreadable file, a limit a cloud cannot hold.
pub(crate) const ERROR: u8 = 1;
/// Usage error reported by the argument parser (clap's own code).
#[allow(dead_code)]
pub(crate) const USAGE: u8 = 2;
