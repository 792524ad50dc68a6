//! Why a dropped file was refused: the error codes of SPEC §4 (bundles) and §9 (mission briefs
//! and decisions), as data.

use std::fmt;

use serde::Serialize;

/// The machine-readable reason a bundle was refused (the receipt's `error.code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not UTF-8, or not JSON.
    InvalidJson,
    /// JSON, but not a `quire.contribution/1` bundle (the schema says what is allowed).
    InvalidBundle,
    /// A path leaves the vault, names a reserved place, or passes through a symlink.
    UnsafePath,
    /// A change needs a file that is not there.
    NotFound,
    /// A change would create a file that is already there.
    Exists,
    /// A JSON Patch `test` operation did not hold.
    TestFailed,
    /// A patch or text operation could not be applied.
    PatchFailed,
    /// The target moved since the bundle's `base` and a change no longer applies.
    Conflict,
    /// The work tree has uncommitted edits to a path the bundle touches.
    DirtyWorktree,
    /// The bundle exceeds a size limit.
    TooLarge,
    /// The target branch does not exist.
    UnknownTarget,
    /// A change touches a file that belongs to the vault's operator (quire.toml, hidden files,
    /// `themes/`, quire's records) and `[contributions] allow` does not open it.
    ProtectedPath,
    /// The file system refused an operation on the bundle's own file or paths; the message is the
    /// operating system's.
    IoError,
    /// The id was applied before, from a bundle with other content.
    IdReused,
    /// JSON, but not a `quire.mission/1` brief (the schema says what is allowed).
    InvalidBrief,
    /// A brief's id is not one a Git branch can carry (`mission/<id>`).
    InvalidId,
    /// Two steps of a brief have the same name.
    DuplicateStep,
    /// A brief has no steps.
    EmptyPipeline,
    /// A timeout or backoff that is not a span of time (`30s`, `10m`).
    InvalidTimeout,
    /// A brief's `from` names no branch, tag or commit of the vault.
    UnknownRef,
    /// A step `uses` a command the operator's catalog (`[missions.commands]`) does not have.
    UnknownCommand,
    /// Missions are turned off in this vault (`[missions] enabled = false`).
    MissionsDisabled,
    /// JSON, but not a `quire.decision/1` file, or an answer the decision does not take from a file.
    InvalidDecision,
    /// The decision was already answered otherwise.
    Decided,
    /// The sandbox moved since the commit the answer was about.
    Stale,
}

impl ErrorCode {
    /// The code as written in receipts.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidBundle => "invalid_bundle",
            ErrorCode::UnsafePath => "unsafe_path",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Exists => "exists",
            ErrorCode::TestFailed => "test_failed",
            ErrorCode::PatchFailed => "patch_failed",
            ErrorCode::Conflict => "conflict",
            ErrorCode::DirtyWorktree => "dirty_worktree",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::UnknownTarget => "unknown_target",
            ErrorCode::ProtectedPath => "protected_path",
            ErrorCode::IoError => "io_error",
            ErrorCode::IdReused => "id_reused",
            ErrorCode::InvalidBrief => "invalid_brief",
            ErrorCode::InvalidId => "invalid_id",
            ErrorCode::DuplicateStep => "duplicate_step",
            ErrorCode::EmptyPipeline => "empty_pipeline",
            ErrorCode::InvalidTimeout => "invalid_timeout",
            ErrorCode::UnknownRef => "unknown_ref",
            ErrorCode::UnknownCommand => "unknown_command",
            ErrorCode::MissionsDisabled => "missions_disabled",
            ErrorCode::InvalidDecision => "invalid_decision",
            ErrorCode::Decided => "decided",
            ErrorCode::Stale => "stale",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal: the code, a message saying what is wrong and what to do, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
pub struct Rejection {
    /// The reason, as a code.
    pub code: ErrorCode,
    /// What is wrong, for a person.
    pub message: String,
    /// Index of the change at fault in `changes`, when one is.
    pub change: Option<usize>,
    /// The vault path at fault, when one is.
    pub path: Option<String>,
}

impl Rejection {
    /// A refusal of the bundle as a whole.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            change: None,
            path: None,
        }
    }

    /// A refusal of one change, naming its index and path.
    pub fn at(
        code: ErrorCode,
        change: usize,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            code,
            message: message.into(),
            change: Some(change),
            path: Some(path.into()),
        }
    }

    /// Names the change at fault, keeping any path already named.
    pub fn in_change(mut self, change: usize) -> Self {
        self.change = Some(change);
        self
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.code)?;
        if let Some(i) = self.change {
            write!(f, "change {i}")?;
            if let Some(p) = &self.path {
                write!(f, " (`{p}`)")?;
            }
            f.write_str(": ")?;
        } else if let Some(p) = &self.path {
            write!(f, "`{p}`: ")?;
        }
        f.write_str(&self.message)
    }
}
