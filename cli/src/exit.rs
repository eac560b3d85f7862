//! Documented exit codes (docs/cli.md). Scripts written for Terraform keep working: 0 success,
//! 1 error, 2 "changes present" (plan --detailed-exitcode, drift).

/// Success; for `validate`, the policy is valid.
pub(crate) const OK: u8 = 0;
/// Any error: invalid policy, unreadable file, a limit a cloud cannot hold, a usage error.
pub(crate) const ERROR: u8 = 1;
/// `plan --detailed-exitcode` and `drift`: success, and there are changes (Terraform's 2).
pub(crate) const CHANGES: u8 = 2;
