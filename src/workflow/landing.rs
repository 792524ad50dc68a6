//! Landing work on a branch, and recovering from a quire that died while doing it: the one place
//! that takes the vault's writer lock, clears Git locks a dead quire left, writes the index
//! updates it owed, and finishes a promotion or rollback it interrupted after main moved. Applying
//! bundles, promoting, rolling back and discarding sandboxes all go through here.

use serde::Serialize;

use super::WorkflowError;
use crate::contributions::queue::ApplyLock;
use crate::git::{Checkout, GitError, Oid, Repo};
use crate::vault::{ChangeSet, Vault};

/// Written before quire moves main for a promotion or rollback and removed once main's work tree
/// has followed, so a crash in between is finished by the next quire that takes the writer lock.
const PENDING_SYNC: &str = "main-sync.json";

#[derive(Serialize, serde::Deserialize)]
struct PendingSync {
    branch: String,
    before: String,
}

fn mark_pending(vault: &Vault, branch: &str, before: Oid) -> Result<(), WorkflowError> {
    let path = vault.state_dir().join(PENDING_SYNC);
    let bytes = serde_json::to_vec(&PendingSync {
        branch: branch.to_owned(),
        before: before.to_string(),
    })
    .map_err(|e| {
        WorkflowError::io(
            "could not write .quire/main-sync.json",
            std::io::Error::other(e),
        )
    })?;
    crate::vault::fsutil::atomic_write(&path, &bytes, false)
        .map_err(|e| WorkflowError::io("could not write .quire/main-sync.json", e))
}

fn clear_pending(vault: &Vault) {
    let _ = std::fs::remove_file(vault.state_dir().join(PENDING_SYNC));
}

/// Finishes the work-tree update of a promotion or rollback that a crash interrupted after main
/// moved. Call with the writer lock held. Paths a person changed meanwhile are left as they are.
fn finish_interrupted(vault: &Vault, repo: &Repo) -> Result<(), WorkflowError> {
    let path = vault.state_dir().join(PENDING_SYNC);
    let Ok(bytes) = std::fs::read(&path) else {
        return Ok(());
    };
    let Ok(pending) = serde_json::from_slice::<PendingSync>(&bytes) else {
        clear_pending(vault);
        return Ok(());
    };
    if let (Some(tip), Ok(before)) = (
        repo.branch_tip(&pending.branch)?,
        Oid::from_str(&pending.before),
    ) && tip != before
        && let Some(commit) = repo.child_on_first_parent_line(tip, before, 10_000)
    {
        let files = repo.commit_changes_of(commit)?;
        let kept = sync_main(repo, &pending.branch, &files)?;
        tracing::info!(%commit, kept = kept.len(), "finished updating the work tree after an interrupted promotion or rollback");
    }
    clear_pending(vault);
    Ok(())
}

/// A commit to put on main.
pub(crate) struct Landing<'a> {
    pub(crate) tree: Oid,
    pub(crate) extra: &'a ChangeSet,
    pub(crate) parents: &'a [Oid],
    pub(crate) author: &'a crate::git::Signature<'a>,
    pub(crate) message: &'a str,
    pub(crate) reflog: &'a str,
    pub(crate) crash_point: &'static str,
}

/// Commits `landing` onto `main` if main is still at `before`, then brings main's work tree along.
/// `None` when main moved meanwhile (nothing changed; the caller computes again). Returns the
/// commit, what it changed, and the paths left as a person had them.
#[allow(clippy::type_complexity)]
pub(crate) fn land(
    vault: &Vault,
    repo: &Repo,
    main: &str,
    before: Oid,
    landing: Landing<'_>,
) -> Result<Option<(Oid, Vec<crate::git::FileChange>, Vec<String>)>, WorkflowError> {
    mark_pending(vault, main, before)?;
    let committed = repo.commit_tree(
        main,
        before,
        landing.tree,
        landing.extra,
        landing.parents,
        landing.author,
        landing.message,
        landing.reflog,
    );
    let (commit, files) = match committed {
        Ok(done) => done,
        Err(GitError::Moved(_)) => {
            clear_pending(vault);
            return Ok(None);
        }
        Err(e) => {
            clear_pending(vault);
            return Err(e.into());
        }
    };
    crate::fault::point(landing.crash_point);
    let kept = sync_main(repo, main, &files)?;
    clear_pending(vault);
    Ok(Some((commit, files, kept)))
}

/// Takes the vault's writer lock, waiting for another quire to let it go, and finishes whatever
/// a crashed quire left half done (see [`recover`]). Promotion, rollback and discarding a sandbox
/// wait for a Git lock on main's index no longer than it takes to see it is stale.
pub(crate) fn writer(vault: &Vault, repo: &Repo) -> Result<ApplyLock, WorkflowError> {
    let lock = lock(vault, || {
        tracing::info!("waiting for another quire process to finish writing to the vault");
    })?;
    recover(vault, repo, |_| Ok(()))?;
    Ok(lock)
}

/// The vault's writer lock alone (`on_wait` is called once if another quire holds it).
pub(crate) fn lock(vault: &Vault, on_wait: impl FnOnce()) -> Result<ApplyLock, WorkflowError> {
    ApplyLock::acquire(vault, on_wait)
        .map_err(|e| WorkflowError::io("could not take the vault's writer lock in .quire/", e))
}

/// What every writer does first, holding the writer lock: any quire that noted Git locks or
/// journaled index updates is dead, so its Git lock files go, the index updates it owed are
/// written (`before` is called with each work tree first, to wait for a lock another program
/// holds), and a promotion or rollback it interrupted after main moved is finished.
pub(crate) fn recover(
    vault: &Vault,
    repo: &Repo,
    before: impl FnMut(&Checkout) -> Result<(), WorkflowError>,
) -> Result<(), WorkflowError> {
    repo.clear_stale_locks()?;
    repo.settle_index_debt_with(before)?;
    finish_interrupted(vault, repo)
}

/// Brings main's work tree along after a commit; returns the paths left as a person had them.
fn sync_main(
    repo: &Repo,
    main: &str,
    files: &[crate::git::FileChange],
) -> Result<Vec<String>, WorkflowError> {
    let Some(mut checkout) = repo.checkout_of(main)? else {
        return Ok(Vec::new());
    };
    let report = checkout.sync(repo, files)?;
    checkout.flush(repo)?;
    Ok(report.kept)
}
