//! perimeter-aws: the policy as AWS security groups, network ACLs and instance metadata
//! options.
//!
//! Same shape as every provider crate: `model` (native objects), `compile` (pure, from the
//! neutral intent), `evaluate` (an independent model of the cloud's packet decisions, used to
//! prove the compiler right), `render` (console-like text and API JSON), `state` and `plan`
//! (observed state and the pure diff against it), `backend` (the only code that calls EC2).

mod apply;
mod backend;
mod cloud;
mod compile;
mod convert;
mod drift;
mod effective;
pub mod evaluate;
mod lease;
pub mod model;
mod nacl;
mod nacl_plan;
mod observe_path;
mod paginate;
mod plan;
pub mod render;
mod render_plan;
mod retire;
mod state;
pub mod transition;

pub use cloud::{Aws, AwsBackends};
pub use compile::{AwsCompiled, Limits, compile, compile_with_limits};
// The plan and observation types, for the transition property tests (tests/transitions.rs)
// that replay plans with the evaluators.
pub use plan::{AwsDesired, AwsTargetPlan};
pub use state::{
    ObservedAws, ObservedInterface, ObservedNetworkAcl, ObservedOtherGroup, ObservedSecurityGroup,
    ObservedSgRule, ObservedSubnetAcl, SubnetAssociation,
};
