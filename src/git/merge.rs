//! Branches, merges and reverts: what sandboxes and promotion need from Git, without a work tree.
//!
//! Every operation here reads commits and writes objects; the only things that move are refs, each
//! with a compare-and-swap, so a failure leaves every branch and work tree as it was.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use git2::{BranchType, Delta, DiffFormat, ErrorCode, Oid, Signature, WorktreeAddOptions};

use super::repo::Repo;
use super::worktree::FileChange;
use super::{Context, GitError};
use crate::vault::ChangeSet;

/// Where a three-way merge of trees could not decide: the blob of each side (`None` where the path
/// is absent on that side).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Conflict {
    /// The conflicting path.
    pub path: String,
    /// Its blob in the merge base.
    #[serde(serialize_with = "oid_opt")]
    pub base: Option<Oid>,
    /// Its blob on the branch merged into ("ours": main).
    #[serde(serialize_with = "oid_opt")]
    pub ours: Option<Oid>,
    /// Its blob on the branch merged ("theirs": the sandbox).
    #[serde(serialize_with = "oid_opt")]
    pub theirs: Option<Oid>,
}

fn oid_opt<S: serde::Serializer>(id: &Option<Oid>, s: S) -> Result<S::Ok, S::Error> {
    match id {
        Some(id) => s.serialize_str(&id.to_string()),
        None => s.serialize_none(),
    }
}

/// The result of merging or reverting trees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Merged {
    /// Every path merged; the resulting tree.
    Clean(Oid),
    /// These paths conflict; nothing was decided for them.
    Conflicts(Vec<Conflict>),
}

/// One file of a diff between two commits.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DiffEntry {
    /// `added`, `modified`, `deleted`, `renamed` or `typechange`.
    pub status: &'static str,
    /// The path (the new one for a rename).
    pub path: String,
    /// The old path of a rename.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

impl Repo {
    /// The best common ancestor of two commits, if they have one.
    pub fn merge_base(&self, a: Oid, b: Oid) -> Result<Option<Oid>, GitError> {
        match self.raw().merge_base(a, b) {
            Ok(id) => Ok(Some(id)),
            Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
            Err(e) => Err(GitError::Git {
                context: format!("could not find the merge base of {a} and {b}"),
                source: e,
            }),
        }
    }

    /// How many commits `a` has that `b` lacks, and the other way round.
    pub fn ahead_behind(&self, a: Oid, b: Oid) -> Result<(usize, usize), GitError> {
        self.raw()
            .graph_ahead_behind(a, b)
            .ctx(|| format!("could not compare {a} with {b}"))
    }

    /// Merges the trees of commits `ours` and `theirs` from the tree of `base` (an empty tree when
    /// `None`), writing the merged tree's objects when it is clean. Nothing else changes.
    pub fn merge_commits(
        &self,
        base: Option<Oid>,
        ours: Oid,
        theirs: Oid,
    ) -> Result<Merged, GitError> {
        let repo = self.raw();
        let tree_of = |id: Oid| {
            repo.find_commit(id)
                .and_then(|c| c.tree())
                .ctx(|| format!("could not read the tree of commit {id}"))
        };
        let base_tree = match base {
            Some(b) => tree_of(b)?,
            None => {
                let id = repo
                    .treebuilder(None)
                    .and_then(|b| b.write())
                    .ctx(|| "could not write an empty tree".into())?;
                repo.find_tree(id)
                    .ctx(|| "could not read an empty tree".into())?
            }
        };
        let index = repo
            .merge_trees(&base_tree, &tree_of(ours)?, &tree_of(theirs)?, None)
            .ctx(|| format!("could not merge {theirs} into {ours}"))?;
        self.settle(index)
    }

    /// The tree of `onto` with commit `commit` undone (for a merge commit, relative to its first
    /// parent), as `git revert -m 1` computes it.
    pub fn revert_onto(&self, commit: Oid, onto: Oid) -> Result<Merged, GitError> {
        let repo = self.raw();
        let c = repo
            .find_commit(commit)
            .ctx(|| format!("could not read commit {commit}"))?;
        let o = repo
            .find_commit(onto)
            .ctx(|| format!("could not read commit {onto}"))?;
        let mainline = if c.parent_count() > 1 { 1 } else { 0 };
        let index = repo
            .revert_commit(&c, &o, mainline, None)
            .ctx(|| format!("could not revert {commit} on top of {onto}"))?;
        self.settle(index)
    }

    fn settle(&self, mut index: git2::Index) -> Result<Merged, GitError> {
        if index.has_conflicts() {
            let mut out = Vec::new();
            for c in index
                .conflicts()
                .ctx(|| "could not list merge conflicts".into())?
            {
                let c = c.ctx(|| "could not read a merge conflict".into())?;
                let path = [&c.our, &c.their, &c.ancestor]
                    .into_iter()
                    .flatten()
                    .map(|e| String::from_utf8_lossy(&e.path).into_owned())
                    .next()
                    .unwrap_or_default();
                out.push(Conflict {
                    path,
                    base: c.ancestor.map(|e| e.id),
                    ours: c.our.map(|e| e.id),
                    theirs: c.their.map(|e| e.id),
                });
            }
            out.sort_by(|a, b| a.path.cmp(&b.path));
            return Ok(Merged::Conflicts(out));
        }
        let tree = index
            .write_tree_to(self.raw())
            .ctx(|| "could not write the merged tree".into())?;
        Ok(Merged::Clean(tree))
    }

    /// Commits `tree` with `extra` applied on top, with `parents`, and moves `branch` from
    /// `expected` to it (compare-and-swap: [`GitError::Moved`] when the branch is elsewhere).
    /// Returns the commit and what it changed relative to its first parent.
    #[allow(clippy::too_many_arguments)]
    pub fn commit_tree(
        &self,
        branch: &str,
        expected: Oid,
        tree: Oid,
        extra: &ChangeSet,
        parents: &[Oid],
        author: &Signature<'_>,
        message: &str,
        reflog: &str,
    ) -> Result<(Oid, Vec<FileChange>), GitError> {
        let repo = self.raw();
        let base = repo
            .find_tree(tree)
            .ctx(|| format!("could not read tree {tree}"))?;
        let (tree, _) = self.build_tree(&base, extra, branch)?;
        let parents: Vec<git2::Commit<'_>> = parents
            .iter()
            .map(|p| {
                repo.find_commit(*p)
                    .ctx(|| format!("could not read commit {p}"))
            })
            .collect::<Result<_, _>>()?;
        let parent_refs: Vec<&git2::Commit<'_>> = parents.iter().collect();
        let committer = self.committer();
        let id = repo
            .commit(None, author, &committer, message, &tree, &parent_refs)
            .ctx(|| format!("could not write the commit for branch `{branch}`"))?;
        self.swap_branch(branch, Some(expected), id, reflog)?;
        let files = self.commit_changes_of(id)?;
        Ok((id, files))
    }

    /// The tree of commit `commit`.
    pub fn tree_of(&self, commit: Oid) -> Result<Oid, GitError> {
        self.raw()
            .find_commit(commit)
            .map(|c| c.tree_id())
            .ctx(|| format!("could not read commit {commit}"))
    }

    /// Stores `bytes` as a blob (for what quire keeps under its own refs).
    pub fn store_blob(&self, bytes: &[u8]) -> Result<Oid, GitError> {
        self.raw()
            .blob(bytes)
            .ctx(|| "could not store a blob".into())
    }

    /// Creates branch `branch` at `at`; [`GitError::Moved`] if it already exists.
    pub fn create_branch(&self, branch: &str, at: Oid, reflog: &str) -> Result<(), GitError> {
        self.swap_branch(branch, None, at, reflog)
    }

    /// Points `refname` (a full ref name) at `target`, creating or moving it.
    pub fn set_ref(&self, refname: &str, target: Oid, reflog: &str) -> Result<(), GitError> {
        self.raw()
            .reference(refname, target, true, reflog)
            .map(|_| ())
            .ctx(|| format!("could not set `{refname}`"))
    }

    /// Deletes `refname` (a full ref name) if it exists.
    pub fn delete_ref(&self, refname: &str) -> Result<(), GitError> {
        match self.raw().find_reference(refname) {
            Ok(mut r) => r.delete().ctx(|| format!("could not delete `{refname}`")),
            Err(_) => Ok(()),
        }
    }

    /// The commit a full ref name points at, if the ref exists.
    pub fn ref_target(&self, refname: &str) -> Option<Oid> {
        self.raw()
            .find_reference(refname)
            .ok()
            .and_then(|r| r.resolve().ok())
            .and_then(|r| r.target())
    }

    /// Full names of the refs under `prefix` (such as `refs/quire/archive/`), with their targets.
    pub fn refs_under(&self, prefix: &str) -> Result<Vec<(String, Oid)>, GitError> {
        let glob = format!("{prefix}*");
        let mut out = Vec::new();
        for r in self
            .raw()
            .references_glob(&glob)
            .ctx(|| format!("could not list `{glob}`"))?
        {
            let r = r.ctx(|| format!("could not list `{glob}`"))?;
            if let (Ok(name), Some(target)) = (r.name(), r.target()) {
                out.push((name.to_owned(), target));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Deletes local branch `branch` if it still points at `expected`.
    pub fn delete_branch(&self, branch: &str, expected: Oid) -> Result<(), GitError> {
        let refname = format!("refs/heads/{branch}");
        let mut r = self
            .raw()
            .find_reference(&refname)
            .ctx(|| format!("could not read branch `{branch}`"))?;
        if r.target() != Some(expected) {
            return Err(GitError::Moved(branch.to_owned()));
        }
        r.delete()
            .ctx(|| format!("could not delete branch `{branch}`"))
    }

    /// When `refname` was created, from the oldest entry of its reflog.
    pub fn ref_created(&self, refname: &str) -> Option<chrono::DateTime<chrono::Utc>> {
        let log = self.raw().reflog(refname).ok()?;
        let oldest = log.iter().next_back()?;
        chrono::DateTime::from_timestamp(oldest.committer().when().seconds(), 0)
    }

    /// Adds a linked worktree named `name` at `path` with local branch `branch` checked out.
    pub fn add_worktree(&self, name: &str, path: &Path, branch: &str) -> Result<(), GitError> {
        let repo = self.raw();
        let reference = repo
            .find_branch(branch, BranchType::Local)
            .ctx(|| format!("could not read branch `{branch}`"))?
            .into_reference();
        #[cfg(unix)]
        if let Some(tip) = reference.target()
            && self.filters_change_nothing(tip)
        {
            let made = super::checkout::add_worktree_parallel(repo, name, path, &reference);
            if made.is_err() {
                // Nothing half-made stays: Git's record and the folder go.
                let _ = self.remove_worktree(name);
                let _ = std::fs::remove_dir_all(path);
            }
            return made;
        }
        let mut opts = WorktreeAddOptions::new();
        opts.reference(Some(&reference));
        repo.worktree(name, path, Some(&opts))
            .map(|_| ())
            .ctx(|| format!("could not add a worktree at {}", path.display()))
    }

    /// Whether checking out `commit` would write every blob as it is stored: no `.gitattributes`
    /// in its tree, none in `$GIT_DIR/info/`, no `core.attributesFile`, and no configured line
    /// ending conversion on checkout. Then the checkout can skip looking up attributes for each
    /// file, which libgit2 does by resolving the file's folder on disk (a `realpath` per file: a
    /// quarter of a 10,000-file checkout).
    pub(super) fn filters_change_nothing(&self, commit: Oid) -> bool {
        let repo = self.raw();
        if repo.path().join("info/attributes").exists() {
            return false;
        }
        let Ok(config) = repo.config() else {
            return false;
        };
        if config.get_path("core.attributesFile").is_ok()
            || config.get_bool("core.autocrlf").unwrap_or(false)
            || config
                .get_string("core.autocrlf")
                .is_ok_and(|v| !v.eq_ignore_ascii_case("false") && !v.eq_ignore_ascii_case("input"))
            || config
                .get_string("core.eol")
                .is_ok_and(|v| v.eq_ignore_ascii_case("crlf"))
        {
            return false;
        }
        let Ok(tree) = repo.find_commit(commit).and_then(|c| c.tree()) else {
            return false;
        };
        let mut attributes = false;
        let walked = tree.walk(git2::TreeWalkMode::PreOrder, |_, entry| {
            if entry.name_bytes() == b".gitattributes" {
                attributes = true;
                return git2::TreeWalkResult::Abort;
            }
            git2::TreeWalkResult::Ok
        });
        // An aborted walk is an error too: only a whole walk that found none says there are none.
        walked.is_ok() && !attributes
    }

    /// Whether linked worktree `name` was finished: its index is written last, after every file.
    pub fn worktree_is_complete(&self, name: &str) -> bool {
        self.raw()
            .path()
            .join("worktrees")
            .join(name)
            .join("index")
            .is_file()
    }

    /// Removes linked worktree `name`: its folder and Git's record of it.
    pub fn remove_worktree(&self, name: &str) -> Result<(), GitError> {
        let wt = self
            .raw()
            .find_worktree(name)
            .ctx(|| format!("could not find worktree `{name}`"))?;
        let mut opts = git2::WorktreePruneOptions::new();
        opts.valid(true).locked(false).working_tree(true);
        wt.prune(Some(&mut opts))
            .ctx(|| format!("could not remove worktree `{name}`"))
    }

    /// Paths with uncommitted changes (modified, staged, untracked, deleted) in the work tree at
    /// `workdir`, a linked worktree of this repository.
    pub fn uncommitted(&self, workdir: &Path) -> Result<Vec<String>, GitError> {
        let repo = git2::Repository::open(workdir)
            .ctx(|| format!("could not open the worktree at {}", workdir.display()))?;
        let mut opts = git2::StatusOptions::new();
        opts.include_untracked(true)
            .recurse_untracked_dirs(true)
            .include_ignored(false);
        let statuses = repo
            .statuses(Some(&mut opts))
            .ctx(|| format!("could not read the status of {}", workdir.display()))?;
        let mut out: Vec<String> = statuses
            .iter()
            .filter(|s| s.status() != git2::Status::CURRENT)
            .filter_map(|s| s.path().ok().map(str::to_owned))
            .collect();
        out.sort();
        Ok(out)
    }

    /// The files that differ between commits `from` and `to`, and the unified diff (`git diff`
    /// format, with renames detected).
    pub fn diff_commits(&self, from: Oid, to: Oid) -> Result<(Vec<DiffEntry>, String), GitError> {
        let repo = self.raw();
        let tree_of = |id: Oid| {
            repo.find_commit(id)
                .and_then(|c| c.tree())
                .ctx(|| format!("could not read the tree of commit {id}"))
        };
        let (a, b) = (tree_of(from)?, tree_of(to)?);
        let mut diff = repo
            .diff_tree_to_tree(Some(&a), Some(&b), None)
            .ctx(|| format!("could not diff {from} and {to}"))?;
        diff.find_similar(None)
            .ctx(|| "could not detect renames".into())?;
        let mut files = Vec::new();
        for d in diff.deltas() {
            let path = |f: git2::DiffFile<'_>| {
                f.path()
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default()
            };
            let status = match d.status() {
                Delta::Added => "added",
                Delta::Deleted => "deleted",
                Delta::Renamed => "renamed",
                Delta::Typechange => "typechange",
                _ => "modified",
            };
            let new = path(d.new_file());
            let old = path(d.old_file());
            files.push(DiffEntry {
                status,
                from: (status == "renamed").then_some(old.clone()),
                path: if status == "deleted" { old } else { new },
            });
        }
        let mut patch = String::new();
        diff.print(DiffFormat::Patch, |_, _, line| {
            let text = String::from_utf8_lossy(line.content());
            match line.origin() {
                o @ ('+' | '-' | ' ') => {
                    patch.push(o);
                    patch.push_str(&text);
                }
                _ => patch.push_str(&text),
            }
            true
        })
        .ctx(|| "could not print the diff".into())?;
        Ok((files, patch))
    }

    /// What changes, path by path, from the tree of commit `from` to tree `to`.
    pub fn changes_to_tree(&self, from: Oid, to: Oid) -> Result<Vec<FileChange>, GitError> {
        let repo = self.raw();
        let old = repo
            .find_commit(from)
            .and_then(|c| c.tree())
            .ctx(|| format!("could not read the tree of commit {from}"))?;
        let new = repo
            .find_tree(to)
            .ctx(|| format!("could not read tree {to}"))?;
        self.tree_diff(Some(&old), &new)
    }

    /// Whether `name` is a branch name Git accepts (`refs/heads/<name>` is a valid ref name).
    pub fn is_valid_branch_name(name: &str) -> bool {
        git2::Reference::is_valid_name(&format!("refs/heads/{name}"))
    }

    /// The name of the linked worktree that has local branch `branch` checked out, if any.
    pub fn worktree_name_of(&self, branch: &str) -> Option<String> {
        let refname = format!("refs/heads/{branch}");
        let names = self.raw().worktrees().ok()?;
        names
            .iter()
            .filter_map(|n| n.ok().flatten())
            .find_map(|name| {
                let wt = self.raw().find_worktree(name).ok()?;
                let repo = git2::Repository::open_from_worktree(&wt).ok()?;
                let head = repo.find_reference("HEAD").ok()?;
                (head.symbolic_target().ok().flatten() == Some(refname.as_str()))
                    .then(|| name.to_owned())
            })
    }

    /// Forgets linked worktree `name` if its folder is gone (as `git worktree prune` does), so the
    /// name can be used again. Returns whether it was pruned.
    pub fn prune_stale_worktree(&self, name: &str) -> bool {
        let Ok(wt) = self.raw().find_worktree(name) else {
            return false;
        };
        if wt.validate().is_ok() {
            return false;
        }
        wt.prune(None).is_ok()
    }

    /// The blob at `path` in the tree of `commit`.
    pub fn blob_at(&self, commit: Oid, path: &str) -> Option<Vec<u8>> {
        let c = self.raw().find_commit(commit).ok()?;
        let entry = c.tree().ok()?.get_path(Path::new(path)).ok()?;
        let blob = self.raw().find_blob(entry.id()).ok()?;
        Some(blob.content().to_vec())
    }

    /// The folder Git runs this repository's hooks from: `core.hooksPath` when set (relative to the
    /// work tree, or to the repository itself when bare), else `hooks/` in the Git directory.
    pub fn hooks_dir(&self) -> PathBuf {
        let repo = self.raw();
        let configured = repo
            .config()
            .ok()
            .and_then(|c| c.get_path("core.hooksPath").ok());
        match configured {
            Some(p) if p.is_absolute() => p,
            Some(p) => repo.workdir().unwrap_or_else(|| repo.path()).join(p),
            None => repo.commondir().join("hooks"),
        }
    }

    /// The short name of the branch HEAD points at, if it points at one.
    pub fn head_branch(&self) -> Option<String> {
        let head = self.raw().find_reference("HEAD").ok()?;
        head.symbolic_target()
            .ok()
            .flatten()?
            .strip_prefix("refs/heads/")
            .map(str::to_owned)
    }

    /// The repository's Git directory (`.git/`, or the repository itself when bare).
    pub fn git_dir(&self) -> &Path {
        self.raw().path()
    }

    /// The first commit on `tip`'s first-parent line (looking at most `limit` commits back) whose
    /// first parent is `parent`.
    pub fn child_on_first_parent_line(&self, tip: Oid, parent: Oid, limit: usize) -> Option<Oid> {
        let mut at = self.raw().find_commit(tip).ok()?;
        for _ in 0..limit {
            let first = at.parent_id(0).ok()?;
            if first == parent {
                return Some(at.id());
            }
            at = self.raw().find_commit(first).ok()?;
        }
        None
    }

    /// The commit's summary line and author, for reports.
    pub fn commit_summary(&self, id: Oid) -> Option<(String, String)> {
        let c = self.raw().find_commit(id).ok()?;
        let summary = c.summary().ok().flatten().unwrap_or("").to_owned();
        let author = c.author();
        let mut who = String::new();
        let _ = write!(
            who,
            "{} <{}>",
            author.name().unwrap_or("?"),
            author.email().unwrap_or("?")
        );
        Some((summary, who))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A repository with one commit of `files`, and the clean status of a worktree of it.
    fn worktree_of(files: &[(&str, &str)], config: &[(&str, &str)]) -> (tempfile::TempDir, Repo) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        std::fs::create_dir_all(&root).unwrap();
        for (path, text) in files {
            std::fs::write(root.join(path), text).unwrap();
        }
        let repo = super::super::init_repository(&root, "main").unwrap();
        let first = repo.commit_initial("first").unwrap().unwrap();
        let mut c = repo.raw().config().unwrap();
        for (k, v) in config {
            c.set_str(k, v).unwrap();
        }
        repo.create_branch("wt", first, "test").unwrap();
        repo.add_worktree("wt", &dir.path().join("wt"), "wt")
            .unwrap();
        (dir, repo)
    }

    #[test]
    fn a_worktree_holds_what_a_checkout_with_filters_would_write() {
        // No attributes, no conversion: the fast path, the blobs as stored.
        let (dir, repo) = worktree_of(&[("a.md", "one\ntwo\n")], &[]);
        assert!(repo.filters_change_nothing(repo.branch_tip("wt").unwrap().unwrap()));
        assert_eq!(
            std::fs::read(dir.path().join("wt/a.md")).unwrap(),
            b"one\ntwo\n"
        );
        let wt = git2::Repository::open(dir.path().join("wt")).unwrap();
        assert!(wt.statuses(None).unwrap().is_empty());

        // Line endings converted on checkout: libgit2's own checkout, filters on.
        let (dir, repo) = worktree_of(&[("a.md", "one\ntwo\n")], &[("core.autocrlf", "true")]);
        assert!(!repo.filters_change_nothing(repo.branch_tip("wt").unwrap().unwrap()));
        assert_eq!(
            std::fs::read(dir.path().join("wt/a.md")).unwrap(),
            b"one\r\ntwo\r\n"
        );

        // A .gitattributes anywhere in the tree also keeps the filters.
        let (_dir, repo) = worktree_of(
            &[("a.md", "x\n"), (".gitattributes", "*.md text eol=crlf\n")],
            &[],
        );
        assert!(!repo.filters_change_nothing(repo.branch_tip("wt").unwrap().unwrap()));
    }
}
