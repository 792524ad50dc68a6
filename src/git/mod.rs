//! Git, through libgit2: the only module that imports `git2`.
//!
//! quire runs `git` only to talk to a remote ([`remote`]: libgit2 is built here without network
//! transports), and never uses a work tree to build a commit. A commit is made from the
//! branch tip's tree plus a [`ChangeSet`](crate::vault::ChangeSet), in memory ([`Repo::write_commit`]),
//! and the branch is moved with a compare-and-swap, once for a whole batch of chained commits
//! whose objects may be held in memory and stored as one pack ([`Repo::hold_objects_in_memory`]);
//! only then is the work tree that has the branch
//! checked out brought along, path by path, never overwriting what a person changed
//! ([`worktree`]). Everything Git stores is the audit trail: the trailers of quire's commits are read
//! back with [`Repo::trailers_since`].

#[cfg(unix)]
mod checkout;
mod journal;
mod locks;
mod merge;
pub mod remote;
mod repo;
mod workdir;
pub mod worktree;

/// Git's object id and signature, re-exported so no module but this one imports `git2`.
pub use git2::{Oid, Signature};
pub use merge::{Conflict, DiffEntry, Merged};
pub use repo::{Repo, Trailed, TreeSnapshot, init_repository};
pub use workdir::WorkTree;
pub use worktree::{Checkout, FileChange, SyncReport};

/// A Git operation failed.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// libgit2 refused.
    #[error("{context}: {source}")]
    Git {
        /// What quire was doing.
        context: String,
        /// What libgit2 said.
        #[source]
        source: git2::Error,
    },
    /// The file system refused.
    #[error("{context}: {source}")]
    Io {
        /// What quire was doing.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The branch moved between reading its tip and updating it (another writer committed).
    #[error("branch `{0}` moved while quire was committing to it")]
    Moved(String),
}

pub(crate) trait Context<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, GitError>;
}

impl<T> Context<T> for Result<T, git2::Error> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, GitError> {
        self.map_err(|source| GitError::Git {
            context: context(),
            source: with_a_reason(source),
        })
    }
}

/// libgit2 sometimes fails without recording why (its message is then "no error"), as when a
/// write fails on a full disk; say what can be said instead of repeating "no error".
pub(crate) fn with_a_reason(e: git2::Error) -> git2::Error {
    if !e.message().is_empty() && e.message() != "no error" {
        return e;
    }
    let os = std::io::Error::last_os_error();
    let why = match os.raw_os_error() {
        Some(code) if code != 0 => {
            format!("libgit2 gave no reason; the last system error was: {os}")
        }
        _ => "libgit2 gave no reason (a full disk is the usual cause)".to_owned(),
    };
    git2::Error::new(e.code(), e.class(), why)
}

impl<T> Context<T> for Result<T, std::io::Error> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, GitError> {
        self.map_err(|source| GitError::Io {
            context: context(),
            source,
        })
    }
}

/// The name quire commits under when Git has no identity configured.
pub const FALLBACK_NAME: &str = "quire";
/// The e-mail quire commits under when Git has no identity configured.
pub const FALLBACK_EMAIL: &str = "quire@localhost";

/// A commit id as hex.
pub type CommitId = String;

/// Appends `trailers` to `message` as a Git trailer block (joining an existing block, such as a
/// `Signed-off-by:` line, rather than starting a second one).
pub fn message_with_trailers(message: &str, trailers: &[(&str, &str)]) -> String {
    let body = message.trim_end();
    let last_paragraph = body.rsplit("\n\n").next().unwrap_or("");
    let has_block = body.contains("\n\n")
        && !last_paragraph.is_empty()
        && last_paragraph.lines().all(|l| {
            l.split_once(": ").is_some_and(|(k, _)| {
                !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
        });
    let mut out = String::with_capacity(body.len() + 160);
    out.push_str(body);
    out.push_str(if has_block { "\n" } else { "\n\n" });
    for (k, v) in trailers {
        out.push_str(k);
        out.push_str(": ");
        out.push_str(v);
        out.push('\n');
    }
    out
}

/// Runs the `git` command line in `dir` (as a fixed author), for tests that check quire's
/// repositories against Git itself; its trimmed stdout.
#[cfg(test)]
pub(crate) fn git_cli(dir: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.org")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.org")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailers_join_an_existing_block() {
        let t = [("Contribution-Id", "a")];
        assert_eq!(
            message_with_trailers("Subject", &t),
            "Subject\n\nContribution-Id: a\n"
        );
        assert_eq!(
            message_with_trailers("Subject\n\nBody text.\n\nSigned-off-by: X <x@y>\n", &t),
            "Subject\n\nBody text.\n\nSigned-off-by: X <x@y>\nContribution-Id: a\n"
        );
        assert_eq!(
            message_with_trailers("Note: subject line", &t),
            "Note: subject line\n\nContribution-Id: a\n"
        );
    }

    #[test]
    fn a_libgit2_error_without_a_reason_gets_one() {
        let silent = git2::Error::new(
            git2::ErrorCode::GenericError,
            git2::ErrorClass::Os,
            "no error",
        );
        let told = with_a_reason(silent).message().to_owned();
        assert_ne!(told, "no error");
        assert!(told.contains("libgit2 gave no reason"), "{told}");
        let said = git2::Error::from_str("reference is locked");
        assert_eq!(with_a_reason(said).message(), "reference is locked");
    }
}
