//! Keeping a checked-out work tree (and Git's index) in step with commits quire made, without ever
//! overwriting a person's uncommitted edits.
//!
//! Two rules make this safe and restartable:
//!
//! * **Before** a commit, [`Checkout::dirty`] refuses a bundle that touches a path whose file or
//!   index entry differs from the branch tip: the person's edit would otherwise be lost or
//!   entangled with the bundle's.
//! * **After** a commit, [`Checkout::sync`] moves each path from its old blob to its new one only if
//!   the file on disk still holds the old blob (or already holds the new one). Anything else is a
//!   person's edit made in the meantime and is left alone. Because the rule looks only at what is on
//!   disk, running it again after a crash (from the commit's own diff) finishes the job without
//!   harming anything.

use std::fs::Metadata;
use std::path::{Path, PathBuf};

use git2::{IndexEntry, IndexTime, ObjectType, Oid, Repository};

use super::locks::{noting_locks, retry_locked};
use super::{Context, GitError, Repo};
use crate::vault::{PathError, VaultPath, fsutil};

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

/// A work tree with a branch checked out: the vault itself or a linked worktree (a sandbox).
pub struct Checkout {
    workdir: PathBuf,
    linked: Option<Repository>,
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
}

/// What [`Checkout::sync`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Files written or removed.
    pub updated: usize,
    /// Paths left as a person had them (their edit differs from both sides of the commit).
    pub kept: Vec<String>,
}

enum OnDisk {
    Missing,
    File(Oid),
    Other,
}

impl Checkout {
    pub(crate) fn new(workdir: PathBuf, linked: Option<Repository>) -> Self {
        Self { workdir, linked }
    }

    /// The work tree's root folder.
    pub fn workdir(&self) -> &Path {
        &self.workdir
    }

    fn repo<'a>(&'a self, main: &'a Repo) -> &'a Repository {
        self.linked.as_ref().unwrap_or(main.raw())
    }

    /// Paths among `paths` with uncommitted edits relative to `tip` (each path's blob at the branch
    /// tip, `None` when absent there).
    pub fn dirty(
        &self,
        main: &Repo,
        paths: &[(&VaultPath, Option<Oid>)],
    ) -> Result<Vec<(VaultPath, Dirty)>, GitError> {
        let repo = self.repo(main);
        let mut index = repo.index().ctx(|| "could not open Git's index".into())?;
        index
            .read(false)
            .ctx(|| "could not read Git's index".into())?;
        let mut out = Vec::new();
        for (path, tip) in paths {
            let abs = match path.resolve_under(&self.workdir) {
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
                    return Err(GitError::Io {
                        context: format!("could not inspect `{path}` in the work tree"),
                        source: std::io::Error::other(e.to_string()),
                    });
                }
            };
            let disk = on_disk(&abs).ctx(|| format!("could not read `{path}` in the work tree"))?;
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
            let p = Path::new(path.as_str());
            if (1..=3).any(|stage| index.get_path(p, stage).is_some()) {
                out.push(((*path).clone(), Dirty::Conflicted));
                continue;
            }
            let staged = index.get_path(p, 0).map(|e| e.id);
            if staged != *tip {
                out.push(((*path).clone(), Dirty::Staged));
            }
        }
        Ok(out)
    }

    /// Brings the work tree and Git's index from each change's old blob to its new one, leaving
    /// alone any path a person has changed in the meantime (see the module docs).
    pub fn sync(&self, main: &Repo, changes: &[FileChange]) -> Result<SyncReport, GitError> {
        let repo = self.repo(main);
        let mut index = repo.index().ctx(|| "could not open Git's index".into())?;
        index
            .read(false)
            .ctx(|| "could not read Git's index".into())?;
        let mut report = SyncReport::default();
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
            let disk = on_disk(&abs).ctx(|| format!("could not read `{path}` in the work tree"))?;
            let holds = |side: Option<(Oid, bool)>| match (side, &disk) {
                (None, OnDisk::Missing) => true,
                (Some((id, _)), OnDisk::File(d)) => *d == id,
                _ => false,
            };
            let p = Path::new(path.as_str());
            let staged = index.get_path(p, 0).map(|e| e.id);
            let index_ours =
                staged == change.old.map(|(id, _)| id) || staged == change.new.map(|(id, _)| id);
            if holds(change.new) {
                // Already there (a resumed run, or the same content).
            } else if holds(change.old) {
                match change.new {
                    Some((id, exec)) => {
                        let bytes = main.blob(id)?;
                        if let Some(parent) = abs.parent() {
                            std::fs::create_dir_all(parent)
                                .ctx(|| format!("could not create the folder for `{path}`"))?;
                        }
                        fsutil::atomic_write(&abs, &bytes, exec)
                            .ctx(|| format!("could not write `{path}`"))?;
                    }
                    None => {
                        std::fs::remove_file(&abs).ctx(|| format!("could not remove `{path}`"))?;
                        remove_empty_parents(&abs, &self.workdir);
                    }
                }
                report.updated += 1;
            } else {
                tracing::warn!(%path, "kept a person's uncommitted edit; the commit's version is in Git");
                report.kept.push(path.to_string());
                if index_ours {
                    set_index(&mut index, path, change.new, None)?;
                }
                continue;
            }
            if index_ours || staged.is_none() {
                let meta = std::fs::symlink_metadata(&abs).ok();
                set_index(&mut index, path, change.new, meta.as_ref())?;
            }
        }
        let gitdir = repo.path().to_path_buf();
        let lock = gitdir.join("index.lock");
        noting_locks(&gitdir, std::slice::from_ref(&lock), || {
            retry_locked(&lock, || index.write()).ctx(|| "could not write Git's index".into())
        })?;
        Ok(report)
    }
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

fn set_index(
    index: &mut git2::Index,
    path: &VaultPath,
    new: Option<(Oid, bool)>,
    meta: Option<&Metadata>,
) -> Result<(), GitError> {
    let p = Path::new(path.as_str());
    match new {
        None => {
            if index.get_path(p, 0).is_some() {
                index
                    .remove_path(p)
                    .ctx(|| format!("could not remove `{path}` from Git's index"))?;
            }
        }
        Some((id, exec)) => {
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
                path: path.as_str().as_bytes().to_vec(),
            };
            // With the file's stat data, `git status` trusts the entry without re-reading the file;
            // without it (a person's edit is on disk), Git sees the mismatch and looks.
            #[cfg(unix)]
            if let Some(m) = meta.filter(|m| m.is_file()) {
                use std::os::unix::fs::MetadataExt;
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
            index
                .add(&entry)
                .ctx(|| format!("could not update `{path}` in Git's index"))?;
        }
    }
    Ok(())
}

/// Removes folders left empty by a deletion, up to (not including) the work tree's root, as Git does.
fn remove_empty_parents(file: &Path, root: &Path) {
    let mut dir = file.parent();
    while let Some(d) = dir {
        if d == root || !d.starts_with(root) || std::fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}
