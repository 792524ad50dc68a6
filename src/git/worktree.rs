//! Keeping a checked-out work tree (and Git's index) in step with commits quire made, without ever
//! overwriting a person's uncommitted edits.
//!
//! Three rules make this safe, fast and restartable:
//!
//! * **Before** a commit, [`Checkout::dirty`] refuses a bundle that touches a path whose file or
//!   index entry differs from the branch tip: the person's edit would otherwise be lost or
//!   entangled with the bundle's.
//! * **After** a commit, [`Checkout::sync`] moves each path from its old blob to its new one only if
//!   the file on disk still holds the old blob (or already holds the new one). Anything else is a
//!   person's edit made in the meantime and is left alone. Because the rule looks only at what is on
//!   disk, running it again after a crash (from the commit's own diff) finishes the job.
//! * Git's **index** is a 100-byte-per-file table that libgit2 rewrites and hashes whole on every
//!   write, which would cost more than the rest of a commit in a large vault. So index updates are
//!   kept in memory and written in batches ([`Checkout::flush`]). Each update is first appended to a
//!   journal (`<git dir>/quire-index-debt.jsonl`), so a crash before the flush loses nothing: the
//!   next quire replays the journal ([`Repo::settle_index_debt`]). An update is applied to an index
//!   entry only if the entry still holds the old blob (or already the new one); before every check and
//!   every write the index is re-read if another program wrote it, and the updates re-applied under
//!   that rule, so a person's `git add` in the meantime is never overwritten.

use std::fs::{File, Metadata};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use git2::{Index, IndexEntry, IndexTime, ObjectType, Oid, Repository};
use serde::{Deserialize, Serialize};

use super::locks::{noting_locks, retry_locked};
use super::{Context, GitError, Repo};
use crate::vault::{PathError, VaultPath, fsutil};

/// The index journal's file name, in the checkout's Git directory.
const DEBT_FILE: &str = "quire-index-debt.jsonl";

/// Index updates held in memory before the index is written.
const FLUSH_EVERY: usize = 256;

/// What one path did in a commit: its blob and executable bit before and after (`None`: absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChange {
    /// The path.
    pub path: VaultPath,
    /// Before.
    pub old: Option<(Oid, bool)>,
    /// After.
    pub new: Option<(Oid, bool)>,
}

/// One index entry to move from `old` to `new` (as written to the journal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Debt {
    path: String,
    old: Option<String>,
    new: Option<String>,
    #[serde(default)]
    exec: bool,
}

impl Debt {
    fn oid(s: &Option<String>) -> Option<Oid> {
        s.as_deref().and_then(|s| Oid::from_str(s).ok())
    }
}

/// A work tree with a branch checked out (the vault itself, or a linked worktree such as a sandbox),
/// with its Git index and the index updates not yet written.
pub struct Checkout {
    workdir: PathBuf,
    gitdir: PathBuf,
    linked: Option<Repository>,
    index: Option<Index>,
    pending: Vec<Debt>,
    journal: Option<File>,
}

/// Why a path counts as having uncommitted edits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dirty {
    /// The file differs from the branch tip.
    Modified,
    /// The file is gone from disk but not from the branch.
    Deleted,
    /// A file not in the branch is on disk where the bundle would create one.
    Untracked,
    /// Git's index holds a different version (staged changes).
    Staged,
    /// Git's index has an unresolved merge conflict.
    Conflicted,
    /// A folder, or a file where a folder is needed, is in the way.
    Blocked,
    /// The path passes through a symbolic link on disk.
    Symlink(String),
    /// The file system refused to read the path; what it said.
    Unreadable(String),
    /// The file system could not take the bundle's write there (a name longer than it holds, a
    /// folder it may not write in); why.
    Unwritable(String),
}

/// What [`Checkout::sync`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Files written or removed.
    pub updated: usize,
    /// Paths left as a person had them (their edit differs from both sides of the commit).
    pub kept: Vec<String>,
    /// Paths the file system refused to write or remove, with what it said. Their commit is made
    /// and Git's index follows it; `git checkout -- PATH` brings the file once the cause is gone.
    pub failed: Vec<(String, String)>,
}

enum OnDisk {
    Missing,
    File(Oid),
    Other,
}

impl Checkout {
    pub(crate) fn new(workdir: PathBuf, gitdir: PathBuf, linked: Option<Repository>) -> Self {
        Self {
            workdir,
            gitdir,
            linked,
            index: None,
            pending: Vec::new(),
            journal: None,
        }
    }

    /// The work tree's root folder.
    pub fn workdir(&self) -> &Path {
        &self.workdir
    }

    /// The index, loaded once, re-read if another program wrote it since, with quire's unwritten
    /// updates re-applied.
    fn index(&mut self, main: &Repo) -> Result<&mut Index, GitError> {
        if self.index.is_none() {
            let repo = self.linked.as_ref().unwrap_or(main.raw());
            self.index = Some(repo.index().ctx(|| "could not open Git's index".into())?);
        }
        let Some(index) = self.index.as_mut() else {
            unreachable!("loaded just above")
        };
        index
            .read(false)
            .ctx(|| "could not read Git's index".into())?;
        for debt in &self.pending {
            apply_debt(index, &self.workdir, debt)?;
        }
        Ok(index)
    }

    /// Paths among `paths` with uncommitted edits relative to the branch tip (each path's blob at the
    /// tip, `None` when absent there).
    pub fn dirty(
        &mut self,
        main: &Repo,
        paths: &[(&VaultPath, Option<Oid>)],
    ) -> Result<Vec<(VaultPath, Dirty)>, GitError> {
        let workdir = self.workdir.clone();
        let index = self.index(main)?;
        let mut out = Vec::new();
        for (path, tip) in paths {
            let abs = match path.resolve_under(&workdir) {
                Ok(p) => p,
                Err(PathError::Symlink { link, .. }) => {
                    out.push(((*path).clone(), Dirty::Symlink(link)));
                    continue;
                }
                Err(PathError::NotADirectory { .. }) => {
                    out.push(((*path).clone(), Dirty::Blocked));
                    continue;
                }
                Err(e) => {
                    out.push(((*path).clone(), Dirty::Unreadable(e.to_string())));
                    continue;
                }
            };
            // A conflict first: it says more than the conflict markers on disk do.
            let p = Path::new(path.as_str());
            if (1..=3).any(|stage| index.get_path(p, stage).is_some()) {
                out.push(((*path).clone(), Dirty::Conflicted));
                continue;
            }
            let read = crate::fault::fail("worktree_check").and_then(|()| on_disk(&abs));
            let disk =
                match path_trouble(read, || format!("could not read `{path}` in the work tree"))? {
                    Ok(d) => d,
                    Err(why) => {
                        out.push(((*path).clone(), Dirty::Unreadable(why)));
                        continue;
                    }
                };
            let disk_state = match (tip, disk) {
                (Some(t), OnDisk::File(d)) if *t == d => None,
                (Some(_), OnDisk::File(_)) => Some(Dirty::Modified),
                (Some(_), OnDisk::Missing) => Some(Dirty::Deleted),
                (None, OnDisk::Missing) => None,
                (None, OnDisk::File(_)) => Some(Dirty::Untracked),
                (_, OnDisk::Other) => Some(Dirty::Blocked),
            };
            if let Some(d) = disk_state {
                out.push(((*path).clone(), d));
                continue;
            }
            if index.get_path(p, 0).map(|e| e.id) != *tip {
                out.push(((*path).clone(), Dirty::Staged));
                continue;
            }
            match cannot_write(&workdir, &abs) {
                Ok(None) => {}
                Ok(Some(why)) => out.push(((*path).clone(), Dirty::Unwritable(why))),
                Err(e) => {
                    return Err(GitError::Io {
                        context: format!("could not check that `{path}` can be written"),
                        source: e,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Brings the work tree from each change's old blob to its new one, leaving alone any path a
    /// person has changed in the meantime, and records the matching index updates (written by
    /// [`flush`](Self::flush), or replayed after a crash).
    pub fn sync(&mut self, main: &Repo, changes: &[FileChange]) -> Result<SyncReport, GitError> {
        let mut report = SyncReport::default();
        let mut debts = Vec::with_capacity(changes.len());
        for change in changes {
            let path = &change.path;
            let abs = match path.resolve_under(&self.workdir) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(%path, "left the work tree as it is: {e}");
                    report.kept.push(path.to_string());
                    continue;
                }
            };
            // Git's index follows the commit whatever the file on disk does next: a file left as
            // a person had it shows as their change, as it would after `git pull`.
            debts.push(Debt {
                path: path.to_string(),
                old: change.old.map(|(id, _)| id.to_string()),
                new: change.new.map(|(id, _)| id.to_string()),
                exec: change.new.is_some_and(|(_, x)| x),
            });
            let disk = match path_trouble(on_disk(&abs), || {
                format!("could not read `{path}` in the work tree")
            })? {
                Ok(d) => d,
                // Like a person's edit: the file stays as it is; the commit has the new version.
                Err(why) => {
                    tracing::warn!(%path, "left the work tree as it is: {why}");
                    report.failed.push((path.to_string(), why));
                    continue;
                }
            };
            let holds = |side: Option<(Oid, bool)>| match (side, &disk) {
                (None, OnDisk::Missing) => true,
                (Some((id, _)), OnDisk::File(d)) => *d == id,
                _ => false,
            };
            if holds(change.new) {
                // Already there (a resumed run, or the same content).
            } else if holds(change.old) {
                let written = match change.new {
                    Some((id, exec)) => {
                        let bytes = main.blob(id)?;
                        write_file(&abs, &bytes, exec)
                    }
                    None => crate::fault::fail("worktree_write")
                        .and_then(|()| std::fs::remove_file(&abs))
                        .map(|()| remove_empty_parents(&abs, &self.workdir)),
                };
                match path_trouble(written, || {
                    format!("could not update `{path}` in the work tree")
                })? {
                    Ok(()) => report.updated += 1,
                    // The path's own trouble (a name this file system cannot hold, a folder it
                    // may not write in): the commit stands, Git's index follows it below, and
                    // the receipt names the file, so one path never holds the queue.
                    Err(why) => {
                        tracing::warn!(%path, "could not update the work tree: {why}");
                        report.failed.push((path.to_string(), why));
                    }
                }
            } else {
                tracing::warn!(%path, "kept a person's uncommitted edit; the commit's version is in Git");
                report.kept.push(path.to_string());
            }
        }
        self.owe(main, debts)?;
        Ok(report)
    }

    /// Journals index updates, then applies them in memory; writes the index when enough are held.
    fn owe(&mut self, main: &Repo, debts: Vec<Debt>) -> Result<(), GitError> {
        if debts.is_empty() {
            return Ok(());
        }
        let journal_path = self.gitdir.join(DEBT_FILE);
        if self.journal.is_none() {
            let file = File::options()
                .create(true)
                .append(true)
                .open(&journal_path)
                .ctx(|| format!("could not open {}", journal_path.display()))?;
            self.journal = Some(file);
        }
        let mut text = Vec::new();
        for d in &debts {
            serde_json::to_writer(&mut text, d).map_err(|e| GitError::Io {
                context: "could not journal an index update".into(),
                source: std::io::Error::other(e),
            })?;
            text.push(b'\n');
        }
        if let Some(journal) = self.journal.as_mut() {
            journal
                .write_all(&text)
                .ctx(|| format!("could not write {}", journal_path.display()))?;
        }
        self.pending.extend(debts);
        // Applies the new updates (and re-applies older ones if the index was written by others).
        self.index(main)?;
        if self.pending.len() >= FLUSH_EVERY {
            self.flush(main)?;
        }
        Ok(())
    }

    /// Writes the index with every update held, then clears the journal.
    pub fn flush(&mut self, main: &Repo) -> Result<(), GitError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let lock = self.gitdir.join("index.lock");
        let gitdir = self.gitdir.clone();
        let index = self.index(main)?;
        noting_locks(&gitdir, std::slice::from_ref(&lock), || {
            retry_locked(&lock, || index.write()).ctx(|| "could not write Git's index".into())
        })?;
        self.pending.clear();
        self.journal = None;
        let journal = self.gitdir.join(DEBT_FILE);
        match std::fs::remove_file(&journal) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(GitError::Io {
                context: format!("could not remove {}", journal.display()),
                source: e,
            }),
        }
    }

    /// Loads the journal a crashed quire left in this checkout's Git directory.
    fn load_debt(&mut self) -> Result<bool, GitError> {
        let path = self.gitdir.join(DEBT_FILE);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => {
                return Err(GitError::Io {
                    context: format!("could not read {}", path.display()),
                    source: e,
                });
            }
        };
        for line in BufReader::new(file).split(b'\n') {
            let line = line.ctx(|| format!("could not read {}", path.display()))?;
            // A torn last line is an update whose bundle was not filed yet; its resumed run redoes it.
            if let Ok(debt) = serde_json::from_slice::<Debt>(&line) {
                self.pending.push(debt);
            }
        }
        Ok(true)
    }

    pub(crate) fn gitdir(&self) -> &Path {
        &self.gitdir
    }

    /// Git's lock on this work tree's index. quire takes it only inside [`flush`](Self::flush), so
    /// at any other moment a lock file there belongs to another program: a person's `git commit`
    /// waiting on its editor, or a Git process that died.
    pub fn index_lock(&self) -> PathBuf {
        self.gitdir.join("index.lock")
    }

    /// Whether index updates are held for this work tree but not yet written.
    pub fn has_unwritten_updates(&self) -> bool {
        !self.pending.is_empty()
    }
}

/// Moves one index entry from `old` to `new` if it still holds `old` (or nothing, when `old` is
/// absent); an entry holding anything else is a person's staged change and stays.
fn apply_debt(index: &mut Index, workdir: &Path, debt: &Debt) -> Result<(), GitError> {
    let p = Path::new(&debt.path);
    let (old, new) = (Debt::oid(&debt.old), Debt::oid(&debt.new));
    let staged = index.get_path(p, 0).map(|e| e.id);
    if new.is_some() && staged == new {
        return Ok(());
    }
    if staged != old {
        return Ok(()); // a person's staged change
    }
    match new {
        None => {
            if staged.is_some() {
                index
                    .remove_path(p)
                    .ctx(|| format!("could not remove `{}` from Git's index", debt.path))?;
            }
        }
        Some(id) => {
            // With the file's stat data `git status` trusts the entry without re-reading the file;
            // when the file on disk is not this blob (a person's edit), zero stat data makes Git look.
            let abs = workdir.join(p);
            let meta = std::fs::symlink_metadata(&abs)
                .ok()
                .filter(|m| m.is_file())
                .filter(|_| matches!(on_disk(&abs), Ok(OnDisk::File(d)) if d == id));
            index
                .add(&index_entry(&debt.path, id, debt.exec, meta.as_ref()))
                .ctx(|| format!("could not update `{}` in Git's index", debt.path))?;
        }
    }
    Ok(())
}

fn index_entry(path: &str, id: Oid, exec: bool, meta: Option<&Metadata>) -> IndexEntry {
    let mut entry = IndexEntry {
        ctime: IndexTime::new(0, 0),
        mtime: IndexTime::new(0, 0),
        dev: 0,
        ino: 0,
        mode: if exec { 0o100755 } else { 0o100644 },
        uid: 0,
        gid: 0,
        file_size: 0,
        id,
        flags: 0,
        flags_extended: 0,
        path: path.as_bytes().to_vec(),
    };
    #[cfg(unix)]
    if let Some(m) = meta {
        use std::os::unix::fs::MetadataExt;
        // The index stores 32-bit stat fields; Git truncates the same way.
        entry.ctime = IndexTime::new(m.ctime() as i32, m.ctime_nsec() as u32);
        entry.mtime = IndexTime::new(m.mtime() as i32, m.mtime_nsec() as u32);
        entry.dev = m.dev() as u32;
        entry.ino = m.ino() as u32;
        entry.uid = m.uid();
        entry.gid = m.gid();
        entry.file_size = m.size() as u32;
    }
    #[cfg(not(unix))]
    let _ = meta;
    entry
}

fn on_disk(abs: &Path) -> std::io::Result<OnDisk> {
    match std::fs::symlink_metadata(abs) {
        Ok(m) if m.is_file() => {
            let bytes = std::fs::read(abs)?;
            Oid::hash_object(ObjectType::Blob, &bytes)
                .map(OnDisk::File)
                .map_err(|e| std::io::Error::other(e.message().to_owned()))
        }
        Ok(_) => Ok(OnDisk::Other),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(OnDisk::Missing),
        Err(e) => Err(e),
    }
}

/// Sorts an I/O failure on one path: the machine's (a full disk) is an error that holds the
/// queue; any other is that path's own trouble, returned as what the file system said.
fn path_trouble<T>(
    result: std::io::Result<T>,
    context: impl FnOnce() -> String,
) -> Result<Result<T, String>, GitError> {
    match result {
        Ok(v) => Ok(Ok(v)),
        Err(e) if fsutil::is_machine_error(&e) => Err(GitError::Io {
            context: context(),
            source: e,
        }),
        Err(e) => Ok(Err(e.to_string())),
    }
}

/// Writes a committed file into the work tree, making its folders.
fn write_file(abs: &Path, bytes: &[u8], exec: bool) -> std::io::Result<()> {
    crate::fault::fail("worktree_write")?;
    if let Some(parent) = abs.parent() {
        std::fs::create_dir_all(parent)?;
    }
    fsutil::atomic_write(abs, bytes, exec)
}

/// Why the file system would refuse to write (or remove) `abs`, checked before the commit is made
/// so that a bundle it cannot hold is refused rather than committed: a name longer than the file
/// system takes, or a folder that may not be written in. `None` when nothing stands in the way. An
/// error is the machine's (a read-only file system), not the path's.
fn cannot_write(workdir: &Path, abs: &Path) -> std::io::Result<Option<String>> {
    let mut existing = abs.parent();
    while let Some(dir) = existing {
        if dir == workdir || std::fs::symlink_metadata(dir).is_ok() {
            break;
        }
        existing = dir.parent();
    }
    let Some(dir) = existing else {
        return Ok(None);
    };
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::{Access, access, statvfs};
        let to_make = abs.strip_prefix(dir).unwrap_or(abs);
        if let Ok(fs) = statvfs(dir) {
            let limit = usize::try_from(fs.f_namemax).unwrap_or(usize::MAX);
            if let Some(long) = to_make
                .components()
                .map(|c| c.as_os_str())
                .find(|name| name.len() > limit)
            {
                return Ok(Some(format!(
                    "the name `{}` is {} bytes; this file system holds names of at most {limit}",
                    long.to_string_lossy(),
                    long.len()
                )));
            }
        }
        if let Err(e) = access(dir, Access::WRITE_OK) {
            let e = std::io::Error::from(e);
            if fsutil::is_machine_error(&e) {
                return Err(e);
            }
            return Ok(Some(format!(
                "cannot write in `{}`: {e}",
                dir.strip_prefix(workdir).unwrap_or(dir).display()
            )));
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = dir;
    Ok(None)
}

/// Removes folders left empty by a deletion, up to (not including) the work tree's root, as Git does.
pub(super) fn remove_empty_parents(file: &Path, root: &Path) {
    let mut dir = file.parent();
    while let Some(d) = dir {
        if d == root || !d.starts_with(root) || std::fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}

impl Repo {
    /// Writes the index updates a crashed quire journaled but never wrote, in every checkout. Call
    /// only while holding the vault's apply lock.
    pub fn settle_index_debt(&self) -> Result<usize, GitError> {
        self.settle_index_debt_with(|_| Ok(()))
    }

    /// [`settle_index_debt`](Self::settle_index_debt), calling `before` with each checkout that
    /// has a journal, before its index is written (the caller waits there for a lock another
    /// program holds on it).
    pub fn settle_index_debt_with<E: From<GitError>>(
        &self,
        mut before: impl FnMut(&Checkout) -> Result<(), E>,
    ) -> Result<usize, E> {
        let mut settled = 0;
        let indebted = |gitdir: &Path| gitdir.join(DEBT_FILE).exists();
        let own = self.own_checkout().filter(|(_, c)| indebted(c.gitdir()));
        let linked = self.linked_checkouts(indebted)?;
        for (_, mut checkout) in own.into_iter().chain(linked) {
            if checkout.load_debt()? {
                before(&checkout)?;
                settled += checkout.pending.len();
                tracing::info!(gitdir = %checkout.gitdir().display(), updates = checkout.pending.len(), "writing index updates a crashed run left");
                checkout.flush(self)?;
            }
        }
        Ok(settled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_the_file_system_cannot_hold_is_found_before_the_commit() {
        let dir = tempfile::tempdir().unwrap();
        let long = "a".repeat(300);
        let abs = dir.path().join("notes").join(format!("{long}.md"));
        let why = cannot_write(dir.path(), &abs).unwrap();
        #[cfg(target_os = "linux")]
        {
            let why = why.expect("a 303-byte name is refused");
            assert!(why.contains("303 bytes"), "{why}");
        }
        #[cfg(not(target_os = "linux"))]
        let _ = why;
        let fine = dir.path().join("notes").join("short.md");
        assert_eq!(cannot_write(dir.path(), &fine).unwrap(), None);
    }
}
