//! Missions (SPEC §9): a brief becomes a sandbox and a pipeline of steps that run by themselves,
//! and ends at a person's decision that promotes or discards the work.
//!
//! - [`brief`]: the `quire.mission/1` contract, read and validated.
//! - [`runner`]: one attempt of one step, as a process group quire owns, its output written by the
//!   step itself to its log.
//! - [`store`]: where missions stand, in `.quire/missions.db`.
//! - [`note`]: the mission note on main, `01_MISSIONS/<id>/mission.md`.
//! - [`schema`]: the contract as a JSON Schema, for `quire check` and brief authors.
//!
//! Accepting a brief (a commit on main, sandboxes, the state) is wiring between jobs, and lives in
//! `workflow::missions`.

pub mod brief;
pub mod note;
pub mod runner;
pub mod schema;
pub mod store;

pub use brief::{Approval, Brief, Command, Effects, HealRule, Step, When, valid_label};
pub use runner::{Cancel, Ended, Launch, RunnerError, Running};
pub use store::{AttemptRow, DecisionRow, MissionRow, MissionState, OfferRow, RunRow, Store};

/// The sandbox a run of `mission` works in: the mission's own, or `<mission>.<item>`.
pub fn sandbox_id(mission: &str, item: Option<&str>) -> String {
    item.map_or_else(|| mission.to_owned(), |i| format!("{mission}.{i}"))
}

/// The ref under which an accepted brief is kept in Git, so that no mission depends on `.quire/`.
pub fn brief_ref(id: &str) -> String {
    format!("refs/quire/missions/{id}")
}

/// Missions could not do their work (as opposed to refusing a brief, which is a result).
#[derive(Debug, thiserror::Error)]
pub enum MissionError {
    /// The state file failed.
    #[error("{context}: {source}")]
    State {
        /// What quire was doing.
        context: String,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
    /// The file system failed.
    #[error("{context}: {source}")]
    Io {
        /// What quire was doing.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A step could not be run.
    #[error(transparent)]
    Runner(#[from] RunnerError),
}
