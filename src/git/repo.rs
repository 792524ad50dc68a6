//! The repository: opening and creating it, reading trees, committing change sets, reading trailers.

use std::path::{Path, PathBuf};

use git2::{
    Binding, BranchType, ErrorCode, FileMode, ObjectType, Oid, Repository, Signature, Tree,
};

use super::locks::{noting_locks, retry_locked};
use super::worktree::{Checkout, FileChange};
use super::{Context, FALLBACK_EMAIL, FALLBACK_NAME, GitError};
use crate::vault::{ChangeSet, FileContent, NodeKind, Snapshot, SnapshotError, VaultPath};

/// The ref a repository's HEAD points at, if it points at one.
fn head_of(repo: &Repository) -> Option<String> {
    repo.find_reference("HEAD")
        .ok()
        .and_then(|h| h.symbolic_target().ok().flatten().map(str::to_owned))
}

/// A vault's Git repository.
pub struct Repo {
    repo: Repository,
    /// The in-memory object store new objects go to, once [`Repo::hold_objects_in_memory`] was
    /// called (owned by the repository's object database).
    held: Option<*mut libgit2_sys::git_odb_backend>,
}

unsafe extern "C" {
    /// libgit2 (1.9, vendored by libgit2-sys) adds to `pb` exactly the objects held in the memory
    /// store `backend`; libgit2-sys does not declare it.
    fn git_mempack_write_thin_pack(
        backend: *mut libgit2_sys::git_odb_backend,
        pb: *mut libgit2_sys::git_packbuilder,
    ) -> std::ffi::c_int;
}

/// The in-memory store's priority among the object database's backends: above the loose-object
/// (1) and pack (2) backends, so new objects are written to it.
const HELD_PRIORITY: i32 = 1000;

/// Sets libgit2's process-wide options, once. Above all, libgit2 is made to fsync what it writes
/// into the Git directory (objects, refs, reflogs, the index), so a commit quire has reported
/// survives a power cut: libgit2 leaves this off by default, and git2 does not wrap the option.
pub(super) fn libgit2_options() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        libgit2_sys::init();
        // libgit2 re-hashes every object it reads by default; Git itself leaves that to `fsck`, and
        // with the collision-detecting SHA-1 it costs more than the reads.
        git2::opts::strict_hash_verification(false);
        // By default libgit2 also looks up every object a new tree or commit names, reading each
        // packed blob's header through its delta chain: a tree of 10,000 files cost 120 ms of a
        // step's first commit. quire names only objects it has just written or read (and the crash
        // tests run `git fsck` after every crash point).
        git2::opts::strict_object_creation(false);
        // SAFETY: `git_libgit2_opts` with GIT_OPT_ENABLE_FSYNC_GITDIR takes exactly one int
        // argument; libgit2 is initialised just above.
        let rc = unsafe {
            libgit2_sys::git_libgit2_opts(
                libgit2_sys::GIT_OPT_ENABLE_FSYNC_GITDIR as std::ffi::c_int,
                1 as std::ffi::c_int,
            )
        };
        if rc != 0 {
            tracing::warn!("libgit2 refused to turn on fsync of the Git directory (code {rc})");
        }
    });
}

/// Creates the repository at `root` with `main` as its initial branch, or opens the one there.
pub fn init_repository(root: &Path, main: &str) -> Result<Repo, GitError> {
    libgit2_options();
    if root.join(".git").exists() {
        return Repo::open(root);
    }
    let mut opts = git2::RepositoryInitOptions::new();
    opts.initial_head(main).mkpath(false);
    let repo = Repository::init_opts(root, &opts)
        .ctx(|| format!("could not create a Git repository in {}", root.display()))?;
    Ok(Repo { repo, held: None })
}

impl Repo {
    /// Opens the repository whose work tree is `root`.
    pub fn open(root: &Path) -> Result<Self, GitError> {
        libgit2_options();
        let repo = Repository::open(root).ctx(|| {
            format!(
                "{} is not a Git repository; run `quire init` there",
                root.display()
            )
        })?;
        Ok(Self { repo, held: None })
    }

    pub(crate) fn raw(&self) -> &Repository {
        &self.repo
    }

    /// The identity quire commits as: Git's `user.name`/`user.email`, else `quire <quire@localhost>`,
    /// so a machine without a global Git identity still works.
    pub fn committer(&self) -> Signature<'static> {
        self.repo
            .signature()
            .or_else(|_| Signature::now(FALLBACK_NAME, FALLBACK_EMAIL))
            .unwrap_or_else(|_| {
                // Signature::now only fails on `<`/`>` in the name or e-mail; the fallback has none.
                Signature::new(FALLBACK_NAME, FALLBACK_EMAIL, &git2::Time::new(0, 0))
                    .expect("constant identity is valid")
            })
    }

    /// A signature for `name <email>` at the current time.
    pub fn signature(name: &str, email: &str) -> Result<Signature<'static>, GitError> {
        Signature::now(name, email)
            .ctx(|| format!("`{name} <{email}>` is not a valid Git identity"))
    }

    /// Whether HEAD has a commit.
    pub fn has_commits(&self) -> bool {
        self.repo.head().is_ok()
    }

    /// Commits every file of the work tree that `.gitignore` does not exclude, as the first commit.
    /// Does nothing (returns `None`) if the repository already has commits.
    pub fn commit_initial(&self, message: &str) -> Result<Option<Oid>, GitError> {
        if self.has_commits() {
            return Ok(None);
        }
        let mut index = self
            .repo
            .index()
            .ctx(|| "could not open Git's index".into())?;
        index
            .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
            .ctx(|| "could not add the vault's files to Git's index".into())?;
        index.write().ctx(|| "could not write Git's index".into())?;
        let tree_id = index
            .write_tree()
            .ctx(|| "could not write the first tree".into())?;
        let tree = self
            .repo
            .find_tree(tree_id)
            .ctx(|| "could not read the first tree".into())?;
        let sig = self.committer();
        let id = self
            .repo
            .commit(Some("HEAD"), &sig, &sig, message, &tree, &[])
            .ctx(|| "could not make the first commit".into())?;
        Ok(Some(id))
    }

    /// The commit `branch` (a short name) points at, or `None` if there is no such branch.
    pub fn branch_tip(&self, branch: &str) -> Result<Option<Oid>, GitError> {
        match self.repo.find_branch(branch, BranchType::Local) {
            Ok(b) => Ok(b.get().target()),
            Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
            Err(e) => Err(GitError::Git {
                context: format!("could not read branch `{branch}`"),
                source: e,
            }),
        }
    }

    /// Every local branch's short name and tip.
    pub fn local_branches(&self) -> Result<Vec<(String, Oid)>, GitError> {
        let mut out = Vec::new();
        for b in self
            .repo
            .branches(Some(BranchType::Local))
            .ctx(|| "could not list branches".into())?
        {
            let (b, _) = b.ctx(|| "could not list branches".into())?;
            if let (Ok(Some(name)), Some(tip)) = (b.name(), b.get().target()) {
                out.push((name.to_owned(), tip));
            }
        }
        Ok(out)
    }

    /// Resolves a commit-ish (full or abbreviated id) to a commit id, if it names one.
    pub fn resolve_commit(&self, spec: &str) -> Option<Oid> {
        self.repo
            .revparse_single(spec)
            .ok()
            .and_then(|o| o.peel_to_commit().ok())
            .map(|c| c.id())
    }

    /// The committer time of a commit, as RFC 3339 UTC.
    pub fn commit_time(&self, id: Oid) -> Option<chrono::DateTime<chrono::Utc>> {
        let c = self.repo.find_commit(id).ok()?;
        chrono::DateTime::from_timestamp(c.time().seconds(), 0)
    }

    /// A read-only view of the tree of `commit` (an empty tree when `None`).
    pub fn snapshot(&self, commit: Option<Oid>) -> Result<TreeSnapshot<'_>, GitError> {
        let tree = match commit {
            Some(id) => Some(
                self.repo
                    .find_commit(id)
                    .and_then(|c| c.tree())
                    .ctx(|| format!("could not read the tree of commit {id}"))?,
            ),
            None => None,
        };
        Ok(TreeSnapshot {
            repo: &self.repo,
            tree,
        })
    }

    /// Writes one commit whose tree is `parent`'s tree with `changes` applied, without moving any
    /// branch (the caller publishes it by moving one, compare-and-swap). Returns the commit and what it changed, path
    /// by path. `branch` only names the branch in error messages.
    ///
    /// Until a branch points at it the commit is unreferenced and harmless: a crash leaves nothing
    /// to undo.
    #[allow(clippy::too_many_arguments)]
    pub fn write_commit(
        &self,
        branch: &str,
        parent: Option<Oid>,
        changes: &ChangeSet,
        author: &Signature<'_>,
        committer: &Signature<'_>,
        message: &str,
    ) -> Result<(Oid, Vec<FileChange>), GitError> {
        let repo = &self.repo;
        let base = self.snapshot(parent)?;
        let empty;
        let base_tree = match &base.tree {
            Some(t) => t,
            None => {
                let id = repo
                    .treebuilder(None)
                    .and_then(|b| b.write())
                    .ctx(|| "could not write an empty tree".into())?;
                empty = repo
                    .find_tree(id)
                    .ctx(|| "could not read an empty tree".into())?;
                &empty
            }
        };
        let (tree, files) = self.build_tree(base_tree, changes, branch)?;
        let parent_commit = match parent {
            Some(id) => Some(
                repo.find_commit(id)
                    .ctx(|| format!("could not read commit {id}"))?,
            ),
            None => None,
        };
        let parents: Vec<&git2::Commit<'_>> = parent_commit.iter().collect();
        let id = repo
            .commit(None, author, committer, message, &tree, &parents)
            .ctx(|| format!("could not write the commit for branch `{branch}`"))?;
        Ok((id, files))
    }

    /// From now on, holds the objects this repository writes in memory instead of writing each as a
    /// loose file, until [`Repo::write_held_objects`] stores them all as one pack.
    ///
    /// A run that commits many bundles would otherwise create (and fsync) five or six files per
    /// commit; on ext4 creating files costs more than everything else a commit does. Objects held
    /// here are readable as usual.
    pub fn hold_objects_in_memory(&mut self) -> Result<(), GitError> {
        if self.held.is_some() {
            return Ok(());
        }
        let odb = self
            .repo
            .odb()
            .ctx(|| "could not open the object database".into())?;
        let pack = odb
            .add_new_mempack_backend(HELD_PRIORITY)
            .ctx(|| "could not add an in-memory object store".into())?;
        self.held = Some(pack.raw());
        Ok(())
    }

    /// Stores the objects held in memory as one pack file (written and fsynced by libgit2's
    /// indexer), then empties the memory. Does nothing unless [`Repo::hold_objects_in_memory`] was
    /// called. Call it before a branch is moved to a commit written since.
    pub fn write_held_objects(&self) -> Result<(), GitError> {
        let Some(raw) = self.held else {
            return Ok(());
        };
        // SAFETY: `raw` was returned by `add_new_mempack_backend` on this repository's object
        // database, which owns the backend and lives as long as `self.repo` (libgit2 caches the
        // odb in the repository). `Mempack` has no destructor, so this borrow frees nothing.
        let pack = unsafe { git2::Mempack::from_raw(raw) };
        let mut builder = self
            .repo
            .packbuilder()
            .ctx(|| "could not start packing the new objects".into())?;
        builder.set_threads(1);
        // Only the held objects, not everything they reach (which `Mempack::dump` would pack: the
        // whole tree of every commit).
        // SAFETY: both pointers are live: the backend as above, the pack builder owned by `builder`.
        let rc = unsafe { git_mempack_write_thin_pack(raw, builder.raw()) };
        if rc < 0 {
            return Err(super::with_a_reason(git2::Error::last_error(rc)))
                .ctx(|| "could not pack the new objects".into());
        }
        if builder.object_count() > 0 {
            let odb = self
                .repo
                .odb()
                .ctx(|| "could not open the object database".into())?;
            let mut writer = odb
                .packwriter()
                .ctx(|| "could not start writing a pack".into())?;
            // Streamed to the indexer as the builder makes it, not first into a buffer as large
            // as the pack.
            let mut failed = None;
            builder
                .foreach(
                    |chunk| match std::io::Write::write_all(&mut writer, chunk) {
                        Ok(()) => true,
                        Err(e) => {
                            failed = Some(e);
                            false
                        }
                    },
                )
                .map_err(|e| match failed.take() {
                    Some(source) => GitError::Io {
                        context: "could not write a pack of the new objects".into(),
                        source: crate::vault::fsutil::explain_write_error(source, self.repo.path()),
                    },
                    None => GitError::Git {
                        context: "could not pack the new objects".into(),
                        source: e,
                    },
                })?;
            writer
                .commit()
                .ctx(|| "could not store a pack of the new objects".into())?;
        }
        pack.reset()
            .ctx(|| "could not empty the in-memory object store".into())
    }

    /// Fails unless the object database holds `id`. Checked before a branch is moved to a commit
    /// quire wrote: on a full disk libgit2 has been seen to report a loose commit written that
    /// was not there, and a branch must never point at a missing object.
    pub fn ensure_stored(&self, id: Oid) -> Result<(), GitError> {
        let odb = self
            .repo
            .odb()
            .ctx(|| "could not open the object database".into())?;
        if odb.exists(id) {
            return Ok(());
        }
        Err(GitError::Io {
            context: format!("commit {id} was not stored"),
            source: std::io::Error::other(
                "the object database does not hold it after writing it (is the disk full?)",
            ),
        })
    }

    /// `base` with `changes` applied, written to the object database, and what changed path by
    /// path.
    pub(crate) fn build_tree<'r>(
        &'r self,
        base: &Tree<'r>,
        changes: &ChangeSet,
        branch: &str,
    ) -> Result<(Tree<'r>, Vec<FileChange>), GitError> {
        let repo = &self.repo;
        let mut builder = git2::build::TreeUpdateBuilder::new();
        let mut files = Vec::with_capacity(changes.len());
        for (path, content) in changes.iter() {
            let old = base
                .get_path(Path::new(path.as_str()))
                .ok()
                .filter(|e| e.kind() == Some(ObjectType::Blob))
                .map(|e| (e.id(), e.filemode() == i32::from(FileMode::BlobExecutable)));
            let new = match content {
                Some(c) => {
                    let id = repo
                        .blob(&c.bytes)
                        .ctx(|| format!("could not store `{path}`"))?;
                    let mode = if c.executable {
                        FileMode::BlobExecutable
                    } else {
                        FileMode::Blob
                    };
                    builder.upsert(path.as_str(), id, mode);
                    Some((id, c.executable))
                }
                // Removing what the tree does not hold would fail the whole build; it is a no-op.
                None if old.is_none() => continue,
                None => {
                    builder.remove(path.as_str());
                    None
                }
            };
            files.push(FileChange {
                path: path.clone(),
                old,
                new,
            });
        }
        if files.is_empty() {
            return Ok((base.clone(), files));
        }
        let tree_id = builder
            .create_updated(repo, base)
            .ctx(|| format!("could not build the new tree for branch `{branch}`"))?;
        let tree = repo
            .find_tree(tree_id)
            .ctx(|| "could not read the new tree".into())?;
        Ok((tree, files))
    }

    /// Moves local branch `branch` to `new` if it points at `expected` (creates it if `expected`
    /// is `None` and it does not exist): [`GitError::Moved`] otherwise. Waits briefly for a ref lock
    /// another Git program holds.
    pub(crate) fn swap_branch(
        &self,
        branch: &str,
        expected: Option<Oid>,
        new: Oid,
        reflog: &str,
    ) -> Result<(), GitError> {
        let repo = &self.repo;
        let refname = format!("refs/heads/{branch}");
        let common = repo.commondir();
        let mut locks = vec![
            common.join(format!("{refname}.lock")),
            common.join(format!("logs/{refname}.lock")),
            common.join("logs/HEAD.lock"),
        ];
        if let Ok(worktrees) = std::fs::read_dir(common.join("worktrees")) {
            locks.extend(worktrees.flatten().map(|w| w.path().join("logs/HEAD.lock")));
        }
        let swapped = noting_locks(common, &locks, || {
            Ok(retry_locked(&locks[0], || match expected {
                Some(old) => repo
                    .reference_matching(&refname, new, true, old, reflog)
                    .map(|_| ()),
                None => repo.reference(&refname, new, false, reflog).map(|_| ()),
            }))
        })?;
        match swapped {
            Ok(()) => Ok(()),
            Err(e) if matches!(e.code(), ErrorCode::Modified | ErrorCode::Exists) => {
                Err(GitError::Moved(branch.to_owned()))
            }
            Err(e) => Err(GitError::Git {
                context: format!("could not move branch `{branch}`"),
                source: e,
            }),
        }
    }

    /// Whether `commit` is `tip` or one of its ancestors.
    pub fn contains(&self, tip: Oid, commit: Oid) -> bool {
        tip == commit || self.repo.graph_descendant_of(tip, commit).unwrap_or(false)
    }

    /// What `commit` changed relative to its first parent, path by path (used to finish the work-tree
    /// update of a commit made before a crash).
    pub fn commit_changes_of(&self, commit: Oid) -> Result<Vec<FileChange>, GitError> {
        let c = self
            .repo
            .find_commit(commit)
            .ctx(|| format!("could not read commit {commit}"))?;
        let new_tree = c
            .tree()
            .ctx(|| format!("could not read the tree of {commit}"))?;
        let old_tree = match c.parent(0) {
            Ok(p) => Some(
                p.tree()
                    .ctx(|| format!("could not read the parent tree of {commit}"))?,
            ),
            Err(_) => None,
        };
        self.tree_diff(old_tree.as_ref(), &new_tree)
    }

    /// What changes, path by path, from `old` (an empty tree when `None`) to `new`, in path order.
    ///
    /// Subtrees with the same id on both sides are not entered. libgit2's tree-to-tree diff visits
    /// every file of both trees; on a vault of thousands of notes that was most of the cost of a
    /// commit that changes one (a mission note, a step's commit, a promotion).
    pub(crate) fn tree_diff(
        &self,
        old: Option<&Tree<'_>>,
        new: &Tree<'_>,
    ) -> Result<Vec<FileChange>, GitError> {
        let mut out = Vec::new();
        self.diff_level("", old, Some(new), &mut out)?;
        out.sort_by(|a, b| a.path.as_str().cmp(b.path.as_str()));
        Ok(out)
    }

    /// Adds to `out` what differs between `old` and `new` under `prefix` (either side absent: all
    /// of the other is added or removed). Entries whose names are not UTF-8, or not vault paths,
    /// are left out, as a vault cannot name them.
    fn diff_level(
        &self,
        prefix: &str,
        old: Option<&Tree<'_>>,
        new: Option<&Tree<'_>>,
        out: &mut Vec<FileChange>,
    ) -> Result<(), GitError> {
        // Only files that are a blob to Git (a plain or executable file) have a side; a symlink or
        // a submodule changed is still a change, with no side to write.
        fn side(e: &Entry) -> Option<(Oid, bool)> {
            if e.mode == i32::from(FileMode::Blob) {
                Some((e.id, false))
            } else if e.mode == i32::from(FileMode::BlobExecutable) {
                Some((e.id, true))
            } else {
                None
            }
        }
        struct Entry {
            id: Oid,
            mode: i32,
        }
        let mut names: std::collections::BTreeMap<String, (Option<Entry>, Option<Entry>)> =
            std::collections::BTreeMap::new();
        for (tree, is_new) in [(old, false), (new, true)] {
            for e in tree.into_iter().flat_map(|t| t.iter()) {
                let Ok(name) = std::str::from_utf8(e.name_bytes()) else {
                    continue;
                };
                let entry = Entry {
                    id: e.id(),
                    mode: e.filemode(),
                };
                let slot = names.entry(name.to_owned()).or_default();
                if is_new {
                    slot.1 = Some(entry);
                } else {
                    slot.0 = Some(entry);
                }
            }
        }
        let is_tree = |e: &Entry| e.mode == i32::from(FileMode::Tree);
        for (name, (o, n)) in names {
            let path = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            let subtree = |e: &Option<Entry>| -> Result<Option<Tree<'_>>, GitError> {
                match e {
                    Some(e) if is_tree(e) => self
                        .repo
                        .find_tree(e.id)
                        .map(Some)
                        .ctx(|| format!("could not read the tree of `{path}`")),
                    _ => Ok(None),
                }
            };
            let same = matches!((&o, &n), (Some(a), Some(b)) if a.id == b.id && a.mode == b.mode);
            if same {
                continue;
            }
            let (ot, nt) = (subtree(&o)?, subtree(&n)?);
            if ot.is_some() || nt.is_some() {
                self.diff_level(&path, ot.as_ref(), nt.as_ref(), out)?;
            }
            let o = o.filter(|e| !is_tree(e));
            let n = n.filter(|e| !is_tree(e));
            if o.is_none() && n.is_none() {
                continue;
            }
            let Ok(path) = VaultPath::new(&path) else {
                continue;
            };
            out.push(FileChange {
                path,
                old: o.as_ref().and_then(side),
                new: n.as_ref().and_then(side),
            });
        }
        Ok(())
    }

    /// For every commit reachable from one of `tips` but from none of `seen`, its id and the
    /// values of the trailers `keys` (`None` where a trailer is absent), newest first. Commits
    /// without any of the keys are skipped. One walk, however many tips: each commit is read once.
    pub fn trailers_since(
        &self,
        tips: &[Oid],
        seen: &[Oid],
        keys: &[&str],
    ) -> Result<Vec<Trailed>, GitError> {
        let mut walk = self
            .repo
            .revwalk()
            .ctx(|| "could not walk the history".into())?;
        for tip in tips {
            walk.push(*tip)
                .ctx(|| format!("could not walk the history from {tip}"))?;
        }
        for s in seen {
            // A tip that no longer exists (history rewritten and collected) hides nothing.
            let _ = walk.hide(*s);
        }
        let mut out = Vec::new();
        for id in walk {
            let id = id.ctx(|| "could not walk the history".into())?;
            let commit = self
                .repo
                .find_commit(id)
                .ctx(|| format!("could not read commit {id}"))?;
            let Ok(message) = commit.message_raw() else {
                continue;
            };
            if !keys.iter().any(|k| message.contains(k)) {
                continue;
            }
            let Ok(trailers) = git2::message_trailers_strs(message) else {
                continue;
            };
            let values: Vec<Option<String>> = keys
                .iter()
                .map(|k| {
                    trailers
                        .iter()
                        .find(|(tk, _)| tk == k)
                        .map(|(_, v)| v.trim().to_owned())
                })
                .collect();
            if values.iter().any(Option::is_some) {
                out.push(Trailed { commit: id, values });
            }
        }
        Ok(out)
    }

    /// The work tree that has `branch` checked out (the vault itself, or a linked worktree such as a
    /// sandbox), if any.
    pub fn checkout_of(&self, branch: &str) -> Result<Option<Checkout>, GitError> {
        let refname = format!("refs/heads/{branch}");
        let holds = |(head, _): &(Option<String>, Checkout)| head.as_deref() == Some(&*refname);
        if let Some(own) = self.own_checkout().filter(holds) {
            return Ok(Some(own.1));
        }
        // A worktree's HEAD file names its branch (`ref: refs/heads/…`): only that one is opened.
        let symbolic = format!("ref: {refname}");
        let named = |gitdir: &Path| {
            std::fs::read_to_string(gitdir.join("HEAD")).is_ok_and(|h| h.trim_end() == symbolic)
        };
        Ok(self
            .linked_checkouts(named)?
            .into_iter()
            .find(holds)
            .map(|(_, c)| c))
    }

    /// Every work tree of the repository (the vault itself first, then linked worktrees), with the
    /// ref its HEAD points at.
    pub fn checkouts(&self) -> Result<Vec<(Option<String>, Checkout)>, GitError> {
        let mut out: Vec<_> = self.own_checkout().into_iter().collect();
        out.extend(self.linked_checkouts(|_| true)?);
        Ok(out)
    }

    /// The repository's own work tree (none when bare), with the ref its HEAD points at.
    pub(super) fn own_checkout(&self) -> Option<(Option<String>, Checkout)> {
        let workdir = self.repo.workdir().filter(|_| !self.repo.is_bare())?;
        Some((
            head_of(&self.repo),
            Checkout::new(workdir.to_path_buf(), self.repo.path().to_path_buf(), None),
        ))
    }

    /// The linked worktrees whose Git directory `look` accepts, opened. `look` sees the folder
    /// before anything is opened: a vault with hundreds of mission sandboxes has as many
    /// worktrees, and opening each costs more than reading a file in its folder.
    pub(super) fn linked_checkouts(
        &self,
        look: impl Fn(&Path) -> bool,
    ) -> Result<Vec<(Option<String>, Checkout)>, GitError> {
        let mut out = Vec::new();
        let names = self
            .repo
            .worktrees()
            .ctx(|| "could not list worktrees".into())?;
        let admin = self.repo.commondir().join("worktrees");
        for name in names.iter().filter_map(|n| n.ok().flatten()) {
            if !look(&admin.join(name)) {
                continue;
            }
            let Ok(wt) = self.repo.find_worktree(name) else {
                continue;
            };
            if wt.validate().is_err() {
                continue;
            }
            let Ok(repo) = Repository::open_from_worktree(&wt) else {
                continue;
            };
            let head = head_of(&repo);
            let path: PathBuf = wt.path().to_path_buf();
            let gitdir = repo.path().to_path_buf();
            out.push((head, Checkout::new(path, gitdir, Some(repo))));
        }
        Ok(out)
    }

    /// The regular files of `commit`'s tree that `keep` accepts (by path), with their blob ids and
    /// bytes, in path order. Symlinks and submodules are left out, so nothing read from a commit
    /// points outside it.
    pub fn tree_files(
        &self,
        commit: Oid,
        keep: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<(String, Oid, Vec<u8>)>, GitError> {
        let tree = self
            .repo
            .find_commit(commit)
            .and_then(|c| c.tree())
            .ctx(|| format!("could not read the tree of commit {commit}"))?;
        let mut entries = Vec::new();
        tree.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
            let regular = matches!(
                entry.filemode(),
                0o100644 | 0o100755 // blob, executable blob
            );
            if let (true, Ok(name)) = (regular, entry.name()) {
                let path = format!("{dir}{name}");
                if keep(&path) {
                    entries.push((path, entry.id()));
                }
            }
            git2::TreeWalkResult::Ok
        })
        .ctx(|| format!("could not list the tree of commit {commit}"))?;
        entries.sort();
        entries
            .into_iter()
            .map(|(path, id)| Ok((path, id, self.blob(id)?)))
            .collect()
    }

    /// The blob `id`'s bytes.
    pub fn blob(&self, id: Oid) -> Result<Vec<u8>, GitError> {
        let blob = self
            .repo
            .find_blob(id)
            .ctx(|| format!("could not read blob {id}"))?;
        Ok(blob.content().to_vec())
    }
}

/// A commit and the values of the trailers asked for (in the order asked; `None` where absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trailed {
    /// The commit.
    pub commit: Oid,
    /// The trailer values.
    pub values: Vec<Option<String>>,
}

/// The files of one commit's tree, for planning a bundle against.
pub struct TreeSnapshot<'r> {
    repo: &'r Repository,
    tree: Option<Tree<'r>>,
}

impl TreeSnapshot<'_> {
    /// The blob id of the regular file at `path`, if one is there.
    pub fn blob_id(&self, path: &VaultPath) -> Option<Oid> {
        let entry = self
            .tree
            .as_ref()?
            .get_path(Path::new(path.as_str()))
            .ok()?;
        (entry.kind() == Some(ObjectType::Blob)).then(|| entry.id())
    }
}

impl Snapshot for TreeSnapshot<'_> {
    fn kind(&self, path: &str) -> Result<Option<NodeKind>, SnapshotError> {
        let Some(tree) = &self.tree else {
            return Ok(None);
        };
        match tree.get_path(Path::new(path)) {
            Ok(entry) => Ok(Some(match entry.filemode() {
                m if m == i32::from(FileMode::Tree) => NodeKind::Dir,
                m if m == i32::from(FileMode::Link) => NodeKind::Symlink,
                m if m == i32::from(FileMode::BlobExecutable) => {
                    NodeKind::File { executable: true }
                }
                m if m == i32::from(FileMode::Blob)
                    || m == i32::from(FileMode::BlobGroupWritable) =>
                {
                    NodeKind::File { executable: false }
                }
                _ => NodeKind::Other,
            })),
            Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
            Err(e) => Err(SnapshotError {
                path: path.to_owned(),
                message: e.message().to_owned(),
            }),
        }
    }

    fn read(&self, path: &VaultPath) -> Result<Option<FileContent>, SnapshotError> {
        let executable = match self.kind(path.as_str())? {
            Some(NodeKind::File { executable }) => executable,
            _ => return Ok(None),
        };
        let err = |e: git2::Error| SnapshotError {
            path: path.to_string(),
            message: e.message().to_owned(),
        };
        let Some(tree) = &self.tree else {
            return Ok(None);
        };
        let entry = tree.get_path(Path::new(path.as_str())).map_err(err)?;
        let blob = self.repo.find_blob(entry.id()).map_err(err)?;
        Ok(Some(FileContent {
            bytes: blob.content().to_vec(),
            executable,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_that_was_never_stored_is_caught_before_a_branch_points_at_it() {
        let dir = tempfile::tempdir().unwrap();
        let repo = init_repository(dir.path(), "main").unwrap();
        let missing = Oid::from_str("0123456789abcdef0123456789abcdef01234567").unwrap();
        let err = repo.ensure_stored(missing).unwrap_err().to_string();
        assert!(err.contains("0123456789abcdef"), "{err}");
        assert!(err.contains("disk full"), "{err}");
    }

    /// libgit2's own tree diff, as `tree_diff` once was: the reference it must agree with.
    fn libgit2_diff(repo: &Repo, old: &Tree<'_>, new: &Tree<'_>) -> Vec<FileChange> {
        let diff = repo
            .repo
            .diff_tree_to_tree(Some(old), Some(new), None)
            .unwrap();
        let side = |f: git2::DiffFile<'_>| {
            (!f.id().is_zero() && matches!(f.mode(), FileMode::Blob | FileMode::BlobExecutable))
                .then(|| (f.id(), f.mode() == FileMode::BlobExecutable))
        };
        diff.deltas()
            .map(|d| FileChange {
                path: VaultPath::new(
                    d.new_file()
                        .path()
                        .or_else(|| d.old_file().path())
                        .and_then(Path::to_str)
                        .unwrap(),
                )
                .unwrap(),
                old: side(d.old_file()),
                new: side(d.new_file()),
            })
            .collect()
    }

    #[test]
    fn the_pruned_tree_diff_agrees_with_libgit2() {
        let dir = tempfile::tempdir().unwrap();
        let repo = init_repository(dir.path(), "main").unwrap();
        let git = &repo.repo;
        let blob = |text: &str| git.blob(text.as_bytes()).unwrap();
        // Each tree from (path, mode, content) triples, through libgit2's own tree updater.
        let tree = |files: &[(&str, FileMode, &str)]| {
            let empty = git
                .find_tree(git.treebuilder(None).unwrap().write().unwrap())
                .unwrap();
            let mut b = git2::build::TreeUpdateBuilder::new();
            for (path, mode, text) in files {
                b.upsert(*path, blob(text), *mode);
            }
            git.find_tree(b.create_updated(git, &empty).unwrap())
                .unwrap()
        };
        use FileMode::{Blob, BlobExecutable as Exec, Link};
        let mut before: Vec<(&str, FileMode, &str)> = vec![
            ("a.md", Blob, "a"),
            ("a/x.md", Blob, "x"),
            ("b", Blob, "b is a file"),
            ("c/d/e.md", Blob, "deep"),
            ("c/d/f.md", Blob, "deep too"),
            ("c/g.md", Blob, "g"),
            ("gone/one.md", Blob, "1"),
            ("gone/two.md", Blob, "2"),
            ("link", Link, "a.md"),
            ("run.sh", Blob, "echo"),
            ("same/kept.md", Blob, "kept"),
            ("z0.md", Blob, "z0"),
        ];
        for i in 0..50 {
            before.push((
                Box::leak(format!("many/n{i:02}.md").into_boxed_str()),
                Blob,
                "n",
            ));
        }
        let after: Vec<(&str, FileMode, &str)> = vec![
            ("a.md", Blob, "a changed"),
            ("a/x.md", Blob, "x"),
            ("b/now-a-folder.md", Blob, "b is a folder"),
            ("c/d/e.md", Blob, "deep"),
            ("c/d/f.md", Blob, "deep, changed"),
            ("c/g", Blob, "g is now a file without .md"),
            ("link", Link, "b"),
            ("new/sub/n.md", Blob, "new"),
            ("run.sh", Exec, "echo"),
            ("same/kept.md", Blob, "kept"),
            ("z0.md/inner.md", Blob, "a file became a folder"),
        ];
        let mut after = after;
        after.extend(
            before
                .iter()
                .filter(|(p, ..)| p.starts_with("many/"))
                .cloned(),
        );
        let (t1, t2) = (tree(&before), tree(&after));
        for (old, new) in [(&t1, &t2), (&t2, &t1), (&t1, &t1)] {
            let ours = repo.tree_diff(Some(old), new).unwrap();
            let mut theirs = libgit2_diff(&repo, old, new);
            theirs.sort_by(|a, b| a.path.as_str().cmp(b.path.as_str()));
            assert_eq!(ours, theirs);
        }
        assert!(!repo.tree_diff(Some(&t1), &t2).unwrap().is_empty());
        let empty = tree(&[]);
        assert_eq!(
            repo.tree_diff(None, &t2).unwrap(),
            repo.tree_diff(Some(&empty), &t2).unwrap()
        );
    }
}
