//! perimeter-aws: the policy as AWS security groups, network ACLs and instance metadata
//! options.
//!
//! Same shape as every provider crate: `model` (native objects), `compile` (pure, from the
//! neutral intent), `evaluate` (an independent model of the cloud's packet decisions, used to
//! prove the compiler right), `render` (console-like text and API JSON).

pub mod compile;
pub mod evaluate;
pub mod model;
pub mod nacl;
pub mod render;

pub use compile::{AwsCompiled, Limits, compile, compile_with_limits};
