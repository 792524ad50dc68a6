//! Workflows: the library functions behind each command, wiring the job modules together.
//!
//! The job modules (`contributions`, `git`, `index`, `render`) do not call each other;
//! a workflow does. The CLI, the git hooks and the daemon call the same workflow functions, so a bundle
//! dropped into `pending/`, applied with `quire apply` or posted over HTTP travels the same code.

pub mod apply;
pub mod check;
pub mod demo;
pub mod hooks;
mod init;
mod landing;
pub mod mission_ops;
pub mod mission_rebuild;
pub mod mission_remote;
pub mod mission_steps;
pub mod missions;
pub mod pipeline;
pub mod queries;
pub mod render;
mod runs;
pub mod sandbox;

use std::path::PathBuf;

pub use apply::{ApplyObserver, ApplyReport, Filed, apply, resume};
pub use check::{CheckReport, Problem, check};
pub use demo::{DemoReport, demo};
pub use init::{InitReport, REQUIRED_IGNORES, init};
pub use render::{RenderOutcome, RenderRequest, Themes};

use crate::contributions::queue::{self, RetryError};
use crate::events::{Event, EventSink, kind};
use crate::git::GitError;
use crate::vault::{Vault, VaultError};

/// A workflow could not do its work (as opposed to refusing a bundle, which is a result).
#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    /// The vault could not be opened.
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// Git failed.
    #[error(transparent)]
    Git(#[from] GitError),
    /// The file system failed.
    #[error("{context}: {source}")]
    Io {
        /// What quire was doing.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// What was asked for cannot be done as asked; the message says why and what to do.
    #[error("{0}")]
    Input(String),
    /// `quire init` on a folder holding other things.
    #[error("{} is not empty and is not a quire vault (no quire.toml); choose an empty or new folder, or add a quire.toml there to make the existing notes a vault", .0.display())]
    NotEmpty(PathBuf),
    /// `quire retry` could not find or move the bundle.
    #[error(transparent)]
    Retry(#[from] RetryError),
    /// The task index failed.
    #[error(transparent)]
    Index(#[from] crate::index::IndexError),
    /// Rendering failed.
    #[error(transparent)]
    Render(#[from] crate::render::RenderError),
    /// Missions' state or a step runner failed.
    #[error(transparent)]
    Mission(#[from] crate::missions::MissionError),
    /// The runners' registry failed.
    #[error(transparent)]
    Runners(#[from] crate::runners::registry::RegistryError),
    /// Another program held Git's lock on a work tree's index for longer than quire waits
    /// (`[git] lock_wait_secs`), or quire was asked to stop while it waited.
    #[error(
        "{} has been held by another program since {since} (waited {waited_secs} s); quire changes nothing in that work tree while it is there, and the bundles wait in contributions/processing/. If no Git command is running, delete the file",
        lock.display()
    )]
    GitLocked {
        /// The lock file.
        lock: PathBuf,
        /// When it was taken (RFC 3339).
        since: String,
        /// How long quire waited.
        waited_secs: u64,
    },
}

impl WorkflowError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

/// Moves the rejected bundle `key` (its id, or its file name in `rejected/` without `.json`) back to
/// `pending/`. Returns its new path.
pub fn retry(
    vault: &Vault,
    key: &str,
    events: &mut dyn EventSink,
) -> Result<PathBuf, WorkflowError> {
    let _lock = landing::lock(vault, || {})?;
    let path = queue::retry(vault, key)?;
    events.emit(Event::new(
        kind::CONTRIBUTION_RETRIED,
        key,
        serde_json::json!({ "pending": path.file_name().map(|n| n.to_string_lossy().into_owned()) }),
        Some(key.to_owned()),
    ));
    Ok(path)
}

/// A fresh vault from the built-in template, in a folder removed when the guard is dropped, for
/// unit tests.
#[cfg(test)]
pub(crate) fn temp_vault() -> (tempfile::TempDir, crate::vault::Vault) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("v");
    init(&root).unwrap();
    let vault = crate::vault::Vault::open(&root).unwrap();
    vault.ensure_work_dirs().unwrap();
    (dir, vault)
}
