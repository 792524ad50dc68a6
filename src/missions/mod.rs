//! Missions (SPEC §9): a brief becomes a sandbox and a pipeline of steps that run by themselves,
//! and ends at a person's decision that promotes or discards the work.
//!
//! - [`brief`]: the `quire.mission/1` contract, read and validated.
//! - [`runner`]: one attempt of one step, as a process group quire owns, its output written by the
//!   step itself to its log.
//! - [`schema`]: the contract as a JSON Schema, for `quire check` and brief authors.

pub mod brief;
pub mod runner;
pub mod schema;

pub use brief::{Approval, Brief, Command, Effects, HealRule, Step, When};
pub use runner::{Cancel, Ended, Launch, RunnerError, Running};
