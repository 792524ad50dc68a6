//! What a mission step leaves in its sandbox's work tree, taken whole: committed to the sandbox
//! branch after a success, kept as a salvage commit after a failure, and wiped before a retry.
//!
//! These are the only places quire builds a commit from a work tree: a step is a program that
//! changes files, and what it changed is exactly what the work tree holds. Ignored files (the
//! vault's `.gitignore`: `.env`, `_site/`, …) are never taken.

use std::path::Path;

use git2::{Repository, ResetType, Status, StatusOptions, StatusShow};

use super::{Context as _, GitError, Oid, Repo};

impl Repo {
    /// Writes everything the work tree at `workdir` holds (new, changed and deleted files; ignored
    /// ones left out) into its index and returns the tree, and whether it differs from `base`'s.
    ///
    /// One status scan finds what changed, and only those paths are staged: a step touches a few
    /// files of thousands, and staging everything (`add_all` then `update_all`) walked the work tree
    /// twice. The index is written only when something was staged.
    fn stage_all(wt: &Repository, base: Oid) -> Result<(Oid, bool), GitError> {
        let mut index = wt
            .index()
            .ctx(|| "could not read the work tree's index".into())?;
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
        drop(statuses);
        let tree = index
            .write_tree()
            .ctx(|| "could not write the work tree's tree".into())?;
        if staged {
            index
                .write()
                .ctx(|| "could not write the work tree's index".into())?;
        }
        let base_tree = wt
            .find_commit(base)
            .map(|c| c.tree_id())
            .ctx(|| format!("could not read commit {base}"))?;
        Ok((tree, tree != base_tree))
    }

    /// A commit of what the work tree at `workdir` holds, on top of `parent`, that no branch points
    /// at (a salvage commit the caller keeps under a ref of its own, or the next commit of
    /// [`Self::commit_all_in`]). `None` when it holds nothing `parent` does not: no empty commits.
    pub fn snapshot_workdir(
        &self,
        workdir: &Path,
        parent: Oid,
        message: &str,
    ) -> Result<Option<Oid>, GitError> {
        let wt = Repository::open(workdir)
            .ctx(|| format!("could not open the work tree {}", workdir.display()))?;
        let (tree, changed) = Self::stage_all(&wt, parent)?;
        if !changed {
            return Ok(None);
        }
        let tree = wt
            .find_tree(tree)
            .ctx(|| "could not read the tree".into())?;
        let parent = wt
            .find_commit(parent)
            .ctx(|| format!("could not read commit {parent}"))?;
        let who = self.committer();
        wt.commit(None, &who, &who, message, &tree, &[&parent])
            .map(Some)
            .ctx(|| format!("could not commit the work tree {}", workdir.display()))
    }

    /// Commits what the work tree at `workdir` holds onto `branch` (checked out there), if the
    /// branch is still at `expected`: [`GitError::Moved`] otherwise. `None` when the work tree
    /// holds nothing `expected` does not: no empty commits.
    pub fn commit_all_in(
        &self,
        workdir: &Path,
        branch: &str,
        expected: Oid,
        message: &str,
    ) -> Result<Option<Oid>, GitError> {
        let Some(id) = self.snapshot_workdir(workdir, expected, message)? else {
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
                // Folders the file leaves empty go too, up to the work tree.
                let mut dir = full.parent();
                while let Some(d) = dir {
                    if d == workdir || std::fs::remove_dir(d).is_err() {
                        break;
                    }
                    dir = d.parent();
                }
            }
        }
        Ok(())
    }
}

/// A path Git reports, as bytes, as a path (on Unix any bytes are a path).
#[cfg(unix)]
fn path_of(bytes: &[u8]) -> std::path::PathBuf {
    use std::os::unix::ffi::OsStrExt as _;
    std::ffi::OsStr::from_bytes(bytes).into()
}

#[cfg(not(unix))]
fn path_of(bytes: &[u8]) -> std::path::PathBuf {
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

    #[test]
    fn what_the_work_tree_holds_is_committed_whole_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join(".gitignore"), ".env\n").unwrap();
        std::fs::write(root.join("keep.md"), "keep\n").unwrap();
        std::fs::write(root.join("change.md"), "one\n").unwrap();
        std::fs::write(root.join("gone.md"), "gone\n").unwrap();
        let repo = super::super::init_repository(root, "main").unwrap();
        let first = repo.commit_initial("first").unwrap().unwrap();

        // Nothing changed: no commit.
        assert_eq!(
            repo.commit_all_in(root, "main", first, "none").unwrap(),
            None
        );

        std::fs::write(root.join("change.md"), "two\n").unwrap();
        std::fs::remove_file(root.join("gone.md")).unwrap();
        std::fs::create_dir_all(root.join("new/deep")).unwrap();
        std::fs::write(root.join("new/deep/n.md"), "n\n").unwrap();
        std::fs::write(root.join(".env"), "SECRET=1\n").unwrap();
        let second = repo
            .commit_all_in(root, "main", first, "step")
            .unwrap()
            .unwrap();
        assert_eq!(
            files_of(&repo, second),
            [".gitignore", "change.md", "keep.md", "new/deep/n.md"]
        );
        assert_eq!(repo.blob_at(second, "change.md").unwrap(), b"two\n");
        assert_eq!(repo.branch_tip("main").unwrap(), Some(second));

        // What a step staged itself, without a change left in the work tree, is committed too.
        std::fs::write(root.join("keep.md"), "staged\n").unwrap();
        let mut index = repo.raw().index().unwrap();
        index.add_path(Path::new("keep.md")).unwrap();
        index.write().unwrap();
        let third = repo
            .commit_all_in(root, "main", second, "staged")
            .unwrap()
            .unwrap();
        assert_eq!(repo.blob_at(third, "keep.md").unwrap(), b"staged\n");

        // A branch that moved meanwhile is not written over.
        std::fs::write(root.join("keep.md"), "late\n").unwrap();
        assert!(matches!(
            repo.commit_all_in(root, "main", second, "late"),
            Err(GitError::Moved(_))
        ));
    }
}
