//! Receipts: what happened to a bundle, filed next to it (SPEC §4).

use serde::{Deserialize, Serialize};

use super::error::Rejection;

/// What happened to a bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Committed.
    Applied,
    /// Its id was applied before; nothing was committed.
    Duplicate,
    /// Refused; nothing was changed.
    Rejected,
}

impl Status {
    /// The status as written in receipts.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Applied => "applied",
            Status::Duplicate => "duplicate",
            Status::Rejected => "rejected",
        }
    }
}

/// The `error` object of a rejected receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptError {
    /// The error code (`unsafe_path`, `conflict`, …).
    pub code: String,
    /// What is wrong and what to do.
    pub message: String,
    /// Index of the change at fault, if one is.
    pub change: Option<usize>,
    /// The vault path at fault, if one is.
    pub path: Option<String>,
}

impl From<&Rejection> for ReceiptError {
    fn from(r: &Rejection) -> Self {
        Self {
            code: r.code.as_str().to_owned(),
            message: r.message.clone(),
            change: r.change,
            path: r.path.clone(),
        }
    }
}

/// A receipt, as written to `processed/<id>.receipt.json` or `rejected/<name>.receipt.json`.
///
/// Applied and duplicate receipts carry `branch`, `commit`, `files` and `applied_at`; rejected ones
/// carry `error` instead. The field set is the contract in `docs/contracts/contributions.md`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Receipt {
    /// The bundle's id (null when the bundle was too broken to have one).
    pub id: Option<String>,
    /// What happened.
    pub status: Status,
    /// The branch committed to (applied), or holding the earlier commit (duplicate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// The commit made (applied), or the one that applied this id before (duplicate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Vault paths the commit changed (empty for a duplicate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<String>>,
    /// Why it was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ReceiptError>,
    /// When quire picked the bundle up (RFC 3339, UTC).
    pub received_at: String,
    /// When the commit was made (for a duplicate: the earlier commit's time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_at: Option<String>,
    /// Milliseconds from pick-up to receipt.
    pub duration_ms: f64,
    /// What went wrong after the commit was made, which the commit does not undo: a file the work
    /// tree could not take, with what the file system said.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// The current time as RFC 3339 UTC with milliseconds (`2026-11-21T05:24:00.123Z`).
pub fn now_rfc3339() -> String {
    rfc3339(chrono::Utc::now())
}

/// A time as RFC 3339 UTC with milliseconds.
pub fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
