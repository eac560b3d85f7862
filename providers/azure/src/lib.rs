//! perimeter-azure: the policy as Azure network security group rules.
//!
//! Same shape as every provider crate: `model`, `compile`, `evaluate`, `render`.

mod backend;
mod client;
mod cloud;
mod compile;
mod credential;
mod drift;
mod effective;
pub mod evaluate;
mod lease;
pub mod model;
mod observe_path;
mod path;
mod plan;
pub mod render;
mod render_plan;
mod state;
pub mod transition;

pub use cloud::Azure;
pub use compile::{AzureCompiled, asg_id, compile};
// The plan and observation types, for the transition property tests (tests/transitions.rs)
// that replay plans with the evaluators.
pub use path::SubnetWrite;
pub use plan::{AzureDesired, AzureTargetPlan, NsgWrite, RuleStep};
pub use state::{ObservedAzure, ObservedNic, ObservedNsg, ObservedSubnet, OtherNsg};
