//! perimeter-azure: the policy as Azure network security group rules.
//!
//! Same shape as every provider crate: `model`, `compile`, `evaluate`, `render`.

pub mod backend;
pub mod client;
mod cloud;
pub mod compile;
pub mod credential;
mod drift;
pub mod evaluate;
pub mod model;
pub mod plan;
pub mod render;
pub mod render_plan;
pub mod state;

pub use cloud::Azure;
pub use compile::{AzureCompiled, compile};
