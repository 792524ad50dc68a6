//! What a mission step leaves in its sandbox's work tree, taken whole: committed to the sandbox
//! branch after a success, kept as a salvage commit after a failure, and wiped before a retry.
//!
//! These are the only places quire builds a commit from a work tree: a step is a program that
//! changes files, and what it changed is exactly what the work tree holds. Ignored files (the
//! vault's `.gitignore`: `.env`, `_site/`, …) are never taken.

use std::path::{Path, PathBuf};

use git2::{Repository, ResetType, Status, StatusOptions, StatusShow};

use super::journal::{Journal, Since};
use super::{Context as _, GitError, Oid, Repo};

/// A sandbox work tree held open while quire carries its run: its repository and index stay
/// loaded between steps, and a journal of file events (inotify, on Linux) says which paths a
/// step touched, so that committing its work looks at those paths, not at every file.
pub struct WorkTree {
    path: PathBuf,
    repo: Repository,
    journal: Journal,
}

impl WorkTree {
    /// Opens the work tree at `path` and starts watching it. What happened before now is
    /// unknown, so the first commit from it scans every file.
    pub fn open(path: &Path) -> Result<Self, GitError> {
        let mut tree = Self::open_blind(path)?;
        tree.journal = Journal::start(path, &|dir| skipped(&tree.repo, path, dir));
        Ok(tree)
    }

    /// Opens the work tree at `path` that quire has just checked out, and starts watching it. It
    /// holds what its index says (nobody else knew of it yet), so even the first commit from it
    /// looks only at what changed since.
    pub fn open_checked_out(path: &Path) -> Result<Self, GitError> {
        let mut tree = Self::open(path)?;
        tree.journal.trust();
        Ok(tree)
    }

    /// Opens the work tree at `path` without watching it: every commit scans every file (for a
    /// single snapshot, where a watch would only cost).
    pub fn open_blind(path: &Path) -> Result<Self, GitError> {
        super::repo::libgit2_options();
        let repo = Repository::open(path)
            .ctx(|| format!("could not open the work tree {}", path.display()))?;
        Ok(Self {
            path: path.to_owned(),
            repo,
            journal: Journal::blind(),
        })
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Brings the index in line with the work tree (new, changed and deleted files; ignored ones
    /// left out) and returns its tree, and whether that differs from `base`'s.
    fn stage(&mut self, base: Oid) -> Result<(Oid, bool), GitError> {
        let mut index = self
            .repo
            .index()
            .ctx(|| "could not read the work tree's index".into())?;
        // A step may have run Git itself; the index on disk is the truth.
        index
            .read(false)
            .ctx(|| "could not read the work tree's index".into())?;
        let (repo, root) = (&self.repo, self.path.as_path());
        let since = self.journal.take(&|dir| skipped(repo, root, dir));
        let staged = match since {
            Since::Everything => stage_scanned(repo, &mut index),
            Since::Paths(paths) => stage_paths(repo, root, &mut index, &paths),
        };
        let staged = match staged {
            Ok(s) => s,
            Err(e) => {
                // What the journal named is no longer on record: scan everything next time.
                self.journal.forget();
                return Err(e);
            }
        };
        let tree = index
            .write_tree()
            .ctx(|| "could not write the work tree's tree".into())?;
        if staged {
            index
                .write()
                .ctx(|| "could not write the work tree's index".into())?;
        }
        let base_tree = self
            .repo
            .find_commit(base)
            .map(|c| c.tree_id())
            .ctx(|| format!("could not read commit {base}"))?;
        Ok((tree, tree != base_tree))
    }
}

/// Whether folder `dir` (relative to the work tree at `root`) is never looked into: ignored, or
/// another repository.
fn skipped(repo: &Repository, root: &Path, dir: &Path) -> bool {
    repo.is_path_ignored(dir).unwrap_or(false) || root.join(dir).join(".git").exists()
}

/// Stages what one status scan reports as changed: a step touches a few files of thousands, and
/// staging everything (`add_all` then `update_all`) walked the work tree twice. Whether anything
/// was staged.
fn stage_scanned(wt: &Repository, index: &mut git2::Index) -> Result<bool, GitError> {
    let mut opts = StatusOptions::new();
    opts.show(StatusShow::Workdir)
        .include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_ignored(false)
        .exclude_submodules(true);
    let statuses = wt
        .statuses(Some(&mut opts))
        .ctx(|| "could not read the work tree's status".into())?;
    let mut staged = false;
    for entry in statuses.iter() {
        // Another repository inside the work tree is reported as its folder: not quire's to take
        // (staging it would fail the whole commit).
        if entry.path_bytes().ends_with(b"/") {
            continue;
        }
        let path = path_of(entry.path_bytes());
        let status = entry.status();
        if status.contains(Status::WT_DELETED) {
            index
                .remove_path(&path)
                .ctx(|| format!("could not unstage {}", path.display()))?;
        } else if status.intersects(
            Status::WT_NEW | Status::WT_MODIFIED | Status::WT_TYPECHANGE | Status::WT_RENAMED,
        ) {
            index
                .add_path(&path)
                .ctx(|| format!("could not stage {}", path.display()))?;
        } else {
            continue;
        }
        staged = true;
    }
    Ok(staged)
}

/// Stages exactly `paths` (files the journal saw change; a path that is now a folder brings all
/// of it): a file that exists is added unless it is ignored and untracked, one that is gone is
/// removed. Whether anything was staged.
fn stage_paths(
    wt: &Repository,
    root: &Path,
    index: &mut git2::Index,
    paths: &std::collections::BTreeSet<PathBuf>,
) -> Result<bool, GitError> {
    let mut staged = false;
    let mut todo: Vec<PathBuf> = paths.iter().cloned().collect();
    while let Some(path) = todo.pop() {
        let full = root.join(&path);
        let meta = match std::fs::symlink_metadata(&full) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(GitError::Io {
                    context: format!("could not read {}", full.display()),
                    source: e,
                });
            }
        };
        // Gone, or a file that became a folder: the file leaves the index.
        if meta.as_ref().is_none_or(|m| m.is_dir()) && index.get_path(&path, 0).is_some() {
            index
                .remove_path(&path)
                .ctx(|| format!("could not unstage {}", path.display()))?;
            staged = true;
        }
        match meta {
            None => {}
            Some(m) if m.is_dir() => {
                // What the folder holds comes in.
                if skipped(wt, root, &path) {
                    continue;
                }
                let listing = std::fs::read_dir(&full)
                    .ctx(|| format!("could not list {}", full.display()))?;
                for entry in listing {
                    let entry = entry.ctx(|| format!("could not list {}", full.display()))?;
                    if entry.file_name() != ".git" {
                        todo.push(path.join(entry.file_name()));
                    }
                }
            }
            Some(_) => {
                let tracked = index.get_path(&path, 0).is_some();
                if !tracked && wt.is_path_ignored(&path).unwrap_or(false) {
                    continue;
                }
                index
                    .add_path(&path)
                    .ctx(|| format!("could not stage {}", path.display()))?;
                staged = true;
            }
        }
    }
    Ok(staged)
}

impl Repo {
    /// A commit of what the work tree holds, on top of `parent`, that no branch points at (a
    /// salvage commit the caller keeps under a ref of its own, or the next commit of
    /// [`Self::commit_all_in`]). `None` when it holds nothing `parent` does not: no empty commits.
    pub fn snapshot_workdir(
        &self,
        tree: &mut WorkTree,
        parent: Oid,
        message: &str,
    ) -> Result<Option<Oid>, GitError> {
        let (id, changed) = tree.stage(parent)?;
        if !changed {
            return Ok(None);
        }
        let wt = &tree.repo;
        let id = wt.find_tree(id).ctx(|| "could not read the tree".into())?;
        let parent = wt
            .find_commit(parent)
            .ctx(|| format!("could not read commit {parent}"))?;
        let who = self.committer();
        wt.commit(None, &who, &who, message, &id, &[&parent])
            .map(Some)
            .ctx(|| format!("could not commit the work tree {}", tree.path.display()))
    }

    /// Commits what the work tree `tree` holds onto `branch` (checked out there), if the
    /// branch is still at `expected`: [`GitError::Moved`] otherwise. `None` when the work tree
    /// holds nothing `expected` does not: no empty commits.
    pub fn commit_all_in(
        &self,
        tree: &mut WorkTree,
        branch: &str,
        expected: Oid,
        message: &str,
    ) -> Result<Option<Oid>, GitError> {
        let Some(id) = self.snapshot_workdir(tree, expected, message)? else {
            return Ok(None);
        };
        self.swap_branch(
            branch,
            Some(expected),
            id,
            message.lines().next().unwrap_or(""),
        )?;
        Ok(Some(id))
    }

    /// Moves `branch`, checked out in the work tree at `workdir` and clean there at `from`, to
    /// `to`, writing only the files the two commits differ in. Refused (and nothing changed) when
    /// the index is not at `from`, or when a checkout could convert files (attributes, line
    /// endings); then [`Self::reset_workdir`] is the way. A failure part way leaves the work tree
    /// for `reset_workdir` to put right.
    #[cfg(unix)]
    pub fn switch_clean(
        &self,
        workdir: &Path,
        branch: &str,
        from: Oid,
        to: Oid,
    ) -> Result<(), GitError> {
        if !self.filters_change_nothing(to) {
            return Err(GitError::Io {
                context: format!("a checkout in {} could convert files", workdir.display()),
                source: std::io::Error::other("filters"),
            });
        }
        super::checkout::switch_clean(self.raw(), workdir, from, to)?;
        self.swap_branch(branch, Some(from), to, "quire: switched")
    }

    /// Puts the work tree at `workdir`, its index and the branch it has checked out back at `to`,
    /// and removes files Git does not track there (ignored files stay).
    pub fn reset_workdir(&self, workdir: &Path, to: Oid) -> Result<(), GitError> {
        let wt = Repository::open(workdir)
            .ctx(|| format!("could not open the work tree {}", workdir.display()))?;
        let target = wt
            .find_object(to, None)
            .ctx(|| format!("could not read commit {to}"))?;
        wt.reset(&target, ResetType::Hard, None)
            .ctx(|| format!("could not reset {} to {to}", workdir.display()))?;
        let mut opts = StatusOptions::new();
        opts.include_untracked(true)
            .recurse_untracked_dirs(true)
            .include_ignored(false);
        let statuses = wt
            .statuses(Some(&mut opts))
            .ctx(|| "could not read the work tree's status".into())?;
        for entry in statuses.iter() {
            if entry.status().contains(Status::WT_NEW)
                && let Ok(path) = entry.path()
            {
                let full = workdir.join(path);
                std::fs::remove_file(&full).map_err(|source| GitError::Io {
                    context: format!("could not remove {}", full.display()),
                    source,
                })?;
                super::worktree::remove_empty_parents(&full, workdir);
            }
        }
        Ok(())
    }
}

/// A path Git reports, as bytes, as a path (on Unix any bytes are a path).
#[cfg(unix)]
pub(super) fn path_of(bytes: &[u8]) -> std::path::PathBuf {
    use std::os::unix::ffi::OsStrExt as _;
    std::ffi::OsStr::from_bytes(bytes).into()
}

#[cfg(not(unix))]
pub(super) fn path_of(bytes: &[u8]) -> std::path::PathBuf {
    String::from_utf8_lossy(bytes).into_owned().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files_of(repo: &Repo, commit: Oid) -> Vec<String> {
        let c = repo.raw().find_commit(commit).unwrap();
        let mut out = Vec::new();
        c.tree()
            .unwrap()
            .walk(git2::TreeWalkMode::PreOrder, |dir, e| {
                if e.kind() == Some(git2::ObjectType::Blob) {
                    out.push(format!("{dir}{}", e.name().unwrap()));
                }
                git2::TreeWalkResult::Ok
            })
            .unwrap();
        out.sort();
        out
    }

    /// The same history, through a work tree opened by `open` (watched or not).
    fn commits_whole(open: fn(&Path) -> Result<WorkTree, GitError>) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join(".gitignore"), ".env\nbuild/\n").unwrap();
        std::fs::write(root.join("keep.md"), "keep\n").unwrap();
        std::fs::write(root.join("change.md"), "one\n").unwrap();
        std::fs::write(root.join("gone.md"), "gone\n").unwrap();
        std::fs::write(root.join("becomes-a-folder"), "file\n").unwrap();
        let repo = super::super::init_repository(root, "main").unwrap();
        let first = repo.commit_initial("first").unwrap().unwrap();
        let mut tree = open(root).unwrap();

        // Nothing changed: no commit.
        assert_eq!(
            repo.commit_all_in(&mut tree, "main", first, "none")
                .unwrap(),
            None
        );

        std::fs::write(root.join("change.md"), "two\n").unwrap();
        std::fs::remove_file(root.join("gone.md")).unwrap();
        std::fs::create_dir_all(root.join("new/deep")).unwrap();
        std::fs::write(root.join("new/deep/n.md"), "n\n").unwrap();
        std::fs::write(root.join("new/.env"), "SECRET=2\n").unwrap();
        std::fs::write(root.join(".env"), "SECRET=1\n").unwrap();
        std::fs::create_dir_all(root.join("build/out")).unwrap();
        std::fs::write(root.join("build/out/big.bin"), "ignored\n").unwrap();
        std::fs::create_dir_all(root.join("vendor/lib")).unwrap();
        std::fs::write(root.join("vendor/lib/.git"), "gitdir: elsewhere\n").unwrap();
        std::fs::write(root.join("vendor/lib/code.rs"), "another repository\n").unwrap();
        let second = repo
            .commit_all_in(&mut tree, "main", first, "step")
            .unwrap()
            .unwrap();
        assert_eq!(
            files_of(&repo, second),
            [
                ".gitignore",
                "becomes-a-folder",
                "change.md",
                "keep.md",
                "new/deep/n.md"
            ]
        );
        assert_eq!(repo.blob_at(second, "change.md").unwrap(), b"two\n");
        assert_eq!(repo.branch_tip("main").unwrap(), Some(second));

        // What a step staged itself, without a change left in the work tree, is committed too;
        // and a file that became a folder is replaced by what the folder holds.
        std::fs::write(root.join("keep.md"), "staged\n").unwrap();
        let raw = Repository::open(root).unwrap();
        let mut index = raw.index().unwrap();
        index.add_path(Path::new("keep.md")).unwrap();
        index.write().unwrap();
        std::fs::remove_file(root.join("becomes-a-folder")).unwrap();
        std::fs::create_dir(root.join("becomes-a-folder")).unwrap();
        std::fs::write(root.join("becomes-a-folder/inside.md"), "i\n").unwrap();
        let third = repo
            .commit_all_in(&mut tree, "main", second, "staged")
            .unwrap()
            .unwrap();
        assert_eq!(repo.blob_at(third, "keep.md").unwrap(), b"staged\n");
        assert_eq!(
            files_of(&repo, third),
            [
                ".gitignore",
                "becomes-a-folder/inside.md",
                "change.md",
                "keep.md",
                "new/deep/n.md"
            ]
        );

        // A folder removed: everything it held goes.
        std::fs::remove_dir_all(root.join("new")).unwrap();
        let fourth = repo
            .commit_all_in(&mut tree, "main", third, "removed")
            .unwrap()
            .unwrap();
        assert!(!files_of(&repo, fourth).contains(&"new/deep/n.md".to_owned()));

        // A branch that moved meanwhile is not written over.
        std::fs::write(root.join("keep.md"), "late\n").unwrap();
        assert!(matches!(
            repo.commit_all_in(&mut tree, "main", third, "late"),
            Err(GitError::Moved(_))
        ));
    }

    #[test]
    fn what_the_work_tree_holds_is_committed_whole_and_nothing_else() {
        commits_whole(WorkTree::open_blind);
    }

    #[test]
    fn a_watched_work_tree_commits_the_same_as_a_scanned_one() {
        commits_whole(WorkTree::open);
    }
}
