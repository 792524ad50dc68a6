//! What a mission step leaves in its sandbox's work tree, taken whole: committed to the sandbox
//! branch after a success, kept as a salvage commit after a failure, and wiped before a retry.
//!
//! These are the only places quire builds a commit from a work tree: a step is a program that
//! changes files, and what it changed is exactly what the work tree holds. Ignored files (the
//! vault's `.gitignore`: `.env`, `_site/`, …) are never taken.

use std::path::Path;

use git2::{IndexAddOption, Repository, ResetType, Status, StatusOptions};

use super::{Context as _, GitError, Oid, Repo};

impl Repo {
    /// Writes everything the work tree at `workdir` holds (new, changed and deleted files; ignored
    /// ones left out) into its index and returns the tree, and whether it differs from `base`'s.
    fn stage_all(wt: &Repository, base: Oid) -> Result<(Oid, bool), GitError> {
        let mut index = wt
            .index()
            .ctx(|| "could not read the work tree's index".into())?;
        index
            .add_all(["*"], IndexAddOption::DEFAULT, None)
            .ctx(|| "could not add the work tree's files".into())?;
        index
            .update_all(["*"], None)
            .ctx(|| "could not note the work tree's deletions".into())?;
        let tree = index
            .write_tree()
            .ctx(|| "could not write the work tree's tree".into())?;
        index
            .write()
            .ctx(|| "could not write the work tree's index".into())?;
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
