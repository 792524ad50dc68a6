//! Git's own lock files (`refs/heads/main.lock`, `index.lock`, …) after a crash.
//!
//! libgit2, like `git`, takes a `*.lock` file before it replaces a ref, a reflog or the index, and
//! renames it into place when done. A process killed in between leaves the lock behind, and every later
//! writer fails ("the index is locked") until someone deletes it by hand. A lock held by a live `git`
//! (a `git commit` waiting on its editor holds `index.lock` for minutes) looks exactly the same, so
//! quire may not just delete what it finds.
//!
//! So, immediately before each libgit2 call that takes locks, quire writes down which lock files that
//! call may take (`<git dir>/quire-locks.<pid>.<n>.json`, one note per call, so that threads of one
//! process never touch each other's) and erases the note right after ([`noting_locks`]). A note
//! whose process is gone names the lock files that process may have left, and a lock taken within
//! moments of the note is its leftover ([`Repo::clear_stale_locks`]). Notes of live processes (this
//! one's other threads among them) are left alone. A lock file from any other
//! time belongs to someone else and is left alone; writers wait for it briefly and then report it by
//! name ([`retry_locked`]).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::{Context, GitError, Repo};

/// The note of a quire from before notes were per call (its writer is dead by the time it is read).
const OLD_NOTE: &str = "quire-locks.json";

/// Tells one call's note from another's, within this process.
static NOTES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

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
    let n = NOTES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let note = gitdir.join(format!("quire-locks.{}.{n}.json", std::process::id()));
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
            for note in dead_notes(&dir) {
                removed.extend(clear_noted(&common, &note)?);
            }
        }
        Ok(removed)
    }
}

/// The lock notes in `dir` whose writers are gone.
fn dead_notes(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let name = name.to_str()?;
            if name == OLD_NOTE {
                return Some(e.path());
            }
            let pid: u32 = name
                .strip_prefix("quire-locks.")?
                .strip_suffix(".json")?
                .split('.')
                .next()?
                .parse()
                .ok()?;
            (!crate::process::process_alive(pid)).then(|| e.path())
        })
        .collect()
}

/// Removes the lock files a dead writer's note names that were taken within moments of it, then
/// the note.
fn clear_noted(common: &Path, note: &Path) -> Result<Vec<PathBuf>, GitError> {
    let mut removed = Vec::new();
    let noted_at = match std::fs::metadata(note) {
        Ok(m) => m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        Err(_) => return Ok(removed),
    };
    let locks: Vec<PathBuf> = std::fs::read(note)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    for lock in locks {
        // Only Git lock files inside this repository's Git directory, whatever the note says.
        if !lock.starts_with(common) || lock.extension().and_then(|e| e.to_str()) != Some("lock") {
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
    let _ = std::fs::remove_file(note);
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_notes_of_processes_that_are_gone_are_stale() {
        let dir = tempfile::tempdir().unwrap();
        let mut gone = std::process::Command::new("true").spawn().unwrap();
        let gone_pid = gone.id();
        gone.wait().unwrap();
        for name in [
            OLD_NOTE.to_owned(),
            format!("quire-locks.{}.7.json", std::process::id()),
            format!("quire-locks.{gone_pid}.0.json"),
            "other.json".to_owned(),
        ] {
            std::fs::write(dir.path().join(name), "[]").unwrap();
        }
        let mut stale: Vec<String> = dead_notes(dir.path())
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        stale.sort();
        let mut want = vec![
            OLD_NOTE.to_owned(),
            format!("quire-locks.{gone_pid}.0.json"),
        ];
        want.sort();
        assert_eq!(stale, want);
    }
}
