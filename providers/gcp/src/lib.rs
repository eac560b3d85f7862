//! perimeter-gcp: the policy as GCP VPC firewall rules.
//!
//! Same shape as every provider crate: `model`, `compile`, `evaluate`, `render`; and for the
//! lifecycle `state` (ownership), `plan` (pure), `backend` + `apply` (google-cloud-compute-v1),
//! `convert`, `render_plan`.

pub mod apply;
pub mod backend;
mod cloud;
pub mod compile;
pub mod convert;
mod drift;
pub mod evaluate;
pub mod model;
pub mod plan;
pub mod render;
pub mod render_plan;
pub mod state;

pub use cloud::Gcp;
pub use compile::{GcpCompiled, compile};
