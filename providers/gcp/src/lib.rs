//! perimeter-gcp: the policy as GCP VPC firewall rules.
//!
//! Same shape as every provider crate: `model`, `compile`, `evaluate`, `render`.

pub mod compile;
pub mod evaluate;
pub mod model;
pub mod render;

pub use compile::{GcpCompiled, compile};
