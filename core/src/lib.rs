//! perimeter-core: the neutral half of perimeter.
//!
//! ```text
//! policy.yaml ──policy::load──▶ Intent ──(provider crates: compile)──▶ native rules + Notes
//!                                                         │
//!                       observed native rules ──plan::diff┴──▶ Vec<Change>
//! ```
//!
//! Everything here is pure and synchronous: no cloud SDK, no async runtime, no clock, no
//! filesystem. The provider crates build on it; the binary sits on top of both.

#![warn(missing_docs)]

pub mod addr;
pub mod diag;
pub mod drift;
pub mod effective;
pub mod intent;
pub mod interval;
pub mod lease;
pub mod lifecycle;
pub mod note;
pub mod plan;
pub mod policy;
pub mod redact;
pub mod retry;
pub mod saved_plan;
pub mod session;
pub mod table;
pub mod target;
pub mod transition;
pub mod violation;
pub mod yaml;

pub use addr::{AddrSet, Cidr};
pub use diag::{Diagnostic, Diagnostics, SourceFile, Span};
pub use intent::{Direction, Intent, Packet, PacketProtocol, Peer, Peers, Rule, Service, Verdict};
pub use note::{Note, NoteCode, NoteScope};
