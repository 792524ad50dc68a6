//! Contributions: JSON patch bundles (contract `quire.contribution/1`, SPEC §4) from the drop
//! folders to the files they change.
//!
//! The flow, each stage a module:
//!
//! ```text
//! queue::list / claim ─▶ bundle::Bundle::parse ─▶ plan::plan(snapshot) ─▶ ChangeSet ─▶ (git commits it)
//!        │                      │ Rejection              │ Rejection                      │
//!        └──────────────▶ receipt + queue::file_away ◀───┴────────────────────────────────┘
//! ```
//!
//! This module never touches Git: it reads the target branch through the [`Snapshot`] trait and hands
//! back a [`ChangeSet`]; `crate::workflow::apply` wires it to `crate::git`.
//!
//! [`Snapshot`]: crate::vault::Snapshot
//! [`ChangeSet`]: crate::vault::ChangeSet

mod bundle;
#[cfg(test)]
pub(crate) use bundle::tests as bundle_tests;
mod data;
mod error;
mod plan;
pub mod queue;
mod receipt;
pub mod record;
pub mod schema;
mod text;

pub use bundle::{
    Author, BodyOp, Bundle, CONTRACT, Change, Edit, MAX_ID_LEN, Target, contract_of, is_valid_id,
    peek_contract, peek_id, too_large_bytes,
};
pub use error::{ErrorCode, Rejection};
pub use plan::plan;
pub use receipt::{Receipt, ReceiptError, Status, now_rfc3339, rfc3339};

/// Commit trailer naming the bundle id.
pub const TRAILER_ID: &str = "Contribution-Id";
/// Commit trailer holding the SHA-256 of the bundle's bytes.
pub const TRAILER_SHA: &str = "Contribution-Sha256";

/// SHA-256 of `bytes`, as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    crate::hex(&sha2::Sha256::digest(bytes))
}
