//! perimeter-gcp: the policy as GCP VPC firewall rules.
//!
//! Same shape as every provider crate: `model`, `compile`, `evaluate`, `render`; and for the
//! lifecycle `state` (ownership), `plan` (pure), `backend` + `apply` (google-cloud-compute-v1),
//! `convert`, `render_plan`.

mod apply;
mod backend;
mod cloud;
mod compile;
mod convert;
mod drift;
mod effective;
pub mod evaluate;
pub mod firewall_policy;
mod lease;
pub mod model;
mod plan;
pub mod render;
mod render_plan;
mod state;
pub mod transition;

pub use cloud::Gcp;
pub use compile::{GcpCompiled, compile};
// The plan and observation types, for the transition property tests (tests/transitions.rs)
// that replay plans with the evaluators.
pub use plan::{FirewallChange, GcpDesired, GcpTargetPlan, WriteMethod};
pub use state::ObservedGcp;
