//! perimeter-azure: the policy as Azure network security group rules.
//!
//! Same shape as every provider crate: `model`, `compile`, `evaluate`, `render`.

mod backend;
mod client;
mod cloud;
mod compile;
mod credential;
mod drift;
pub mod evaluate;
pub mod model;
mod plan;
pub mod render;
mod render_plan;
mod state;

pub use cloud::Azure;
pub use compile::{AzureCompiled, asg_id, compile};
