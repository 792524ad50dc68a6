//! Git's own lock files (`refs/heads/main.lock`, `index.lock`, …) after a crash.
//!
//! libgit2, like `git`, takes a `*.lock` file before it replaces a ref, a reflog or the index, and
//! renames it into place when done. A process killed in between leaves the lock behind, and every later
//! writer fails ("the index is locked") until someone deletes it by hand. A lock held by a live `git`
//! (a `git commit` waiting on its editor holds `index.lock` for minutes) looks exactly the same, so
//! quire may not just delete what it finds.
//!
//! So, immediately before each libgit2 call that takes locks, quire writes down which lock files that
//! call may take (`<git dir>/quire-locks.json`) and erases the note right after ([`noting_locks`]). A
//! note still there when the next quire starts — which holds the vault's apply lock, so the note's
//! writer is dead — names the lock files the dead process may have left, and a lock taken within
//! moments of the note is its leftover ([`Repo::clear_stale_locks`]). A lock file from any other
//! time belongs to someone else and is left alone; writers wait for it briefly and then report it by
//! name ([`retry_locked`]).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::{Context, GitError, Repo};

const NOTE: &str = "quire-locks.json";

/// How long quire waits for a lock another Git process holds before giving up.
const LOCK_WAIT: Duration = Duration::from_secs(3);

/// How long after its note a lock file can have been taken by the noted call.
const NOTE_WINDOW: Duration = Duration::from_secs(2);

/// Runs `op` (a libgit2 call that may take the lock files `locks`, all inside `gitdir`) with a note
/// of them on disk for its duration.
pub(crate) fn noting_locks<T>(
    gitdir: &Path,
    locks: &[PathBuf],
    op: impl FnOnce() -> Result<T, GitError>,
) -> Result<T, GitError> {
    let note = gitdir.join(NOTE);
    let text = serde_json::to_vec(locks).map_err(|e| GitError::Io {
        context: "could not record Git lock files".into(),
        source: std::io::Error::other(e),
    })?;
    std::fs::write(&note, text).ctx(|| format!("could not write {}", note.display()))?;
    let result = op();
    let _ = std::fs::remove_file(&note);
    result
}

/// Runs `op` until it stops failing with "locked", for up to [`LOCK_WAIT`]; `lock` names the file in
/// the final error.
pub(crate) fn retry_locked<T>(
    lock: &Path,
    mut op: impl FnMut() -> Result<T, git2::Error>,
) -> Result<T, git2::Error> {
    let started = std::time::Instant::now();
    loop {
        match op() {
            Err(e) if e.code() == git2::ErrorCode::Locked && started.elapsed() < LOCK_WAIT => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) if e.code() == git2::ErrorCode::Locked => {
                return Err(git2::Error::new(
                    e.code(),
                    e.class(),
                    format!(
                        "{} exists: another Git process is writing; if none is running, delete that file",
                        lock.display()
                    ),
                ));
            }
            other => return other,
        }
    }
}

/// Git directories whose lock notes quire clears: the common one and each linked worktree's.
fn gitdirs(repo: &git2::Repository) -> Vec<PathBuf> {
    let mut dirs = vec![repo.commondir().to_path_buf()];
    if let Ok(entries) = std::fs::read_dir(repo.commondir().join("worktrees")) {
        dirs.extend(entries.flatten().map(|e| e.path()));
    }
    dirs
}

impl Repo {
    /// Removes the Git lock files a crashed quire left behind (see the module docs). Call only while
    /// holding the vault's apply lock. Returns the files removed.
    pub fn clear_stale_locks(&self) -> Result<Vec<PathBuf>, GitError> {
        let common = self.raw().commondir().to_path_buf();
        let mut removed = Vec::new();
        for dir in gitdirs(self.raw()) {
            let note = dir.join(NOTE);
            let noted_at = match std::fs::metadata(&note) {
                Ok(m) => m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                Err(_) => continue,
            };
            let locks: Vec<PathBuf> = std::fs::read(&note)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            for lock in locks {
                // Only Git lock files inside this repository's Git directory, whatever the note says.
                if !lock.starts_with(&common)
                    || lock.extension().and_then(|e| e.to_str()) != Some("lock")
                {
                    continue;
                }
                let Ok(taken) = std::fs::metadata(&lock).and_then(|m| m.modified()) else {
                    continue;
                };
                let after_note = taken.duration_since(noted_at).unwrap_or_default();
                let before_note = noted_at.duration_since(taken).unwrap_or_default();
                if after_note <= NOTE_WINDOW && before_note <= Duration::from_secs(1) {
                    std::fs::remove_file(&lock)
                        .ctx(|| format!("could not remove the stale lock {}", lock.display()))?;
                    tracing::warn!(lock = %lock.display(), "removed a Git lock file left by a quire process that died");
                    removed.push(lock);
                }
            }
            let _ = std::fs::remove_file(&note);
        }
        Ok(removed)
    }
}
