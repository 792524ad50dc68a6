//! A read-only view of the vault's files at one revision, and a set of changes to make to it.
//!
//! These two types are the seam between the job that decides what a contribution changes
//! (`contributions`, which never touches Git) and the job that records it (`git`, which never
//! interprets a bundle). `git` implements [`Snapshot`] over a commit's tree and turns a
//! [`ChangeSet`] into a commit.

use std::collections::BTreeMap;

use super::VaultPath;

/// What kind of entry a path names in a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// A regular file.
    File {
        /// Whether the executable bit is set.
        executable: bool,
    },
    /// A folder.
    Dir,
    /// A symbolic link (never followed, never written through).
    Symlink,
    /// Anything else (a submodule).
    Other,
}

/// A snapshot could not be read (a corrupt object, an I/O error).
#[derive(Debug, Clone, thiserror::Error)]
#[error("could not read `{path}` from the repository: {message}")]
pub struct SnapshotError {
    /// The path being read.
    pub path: String,
    /// What went wrong.
    pub message: String,
}

/// The vault's files at one revision.
pub trait Snapshot {
    /// What `path` names (a `/`-separated vault path), or `None` when nothing is there.
    fn kind(&self, path: &str) -> Result<Option<NodeKind>, SnapshotError>;

    /// The content of the regular file at `path`, or `None` when `path` is not a regular file.
    fn read(&self, path: &VaultPath) -> Result<Option<FileContent>, SnapshotError>;
}

/// A file's content and mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileContent {
    /// The bytes.
    pub bytes: Vec<u8>,
    /// Whether the executable bit is set.
    pub executable: bool,
}

impl FileContent {
    /// A non-executable file.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self {
            bytes,
            executable: false,
        }
    }
}

/// Files to write (`Some`) or delete (`None`), each at most once, in path order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeSet {
    entries: BTreeMap<VaultPath, Option<FileContent>>,
}

impl ChangeSet {
    /// An empty change set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes `content` at `path` (replacing any earlier change to it).
    pub fn write(&mut self, path: VaultPath, content: FileContent) {
        self.entries.insert(path, Some(content));
    }

    /// Deletes `path` (replacing any earlier change to it).
    pub fn delete(&mut self, path: VaultPath) {
        self.entries.insert(path, None);
    }

    /// The change recorded for `path`: `Some(Some(_))` written, `Some(None)` deleted, `None`
    /// untouched.
    pub fn get(&self, path: &VaultPath) -> Option<Option<&FileContent>> {
        self.entries.get(path).map(Option::as_ref)
    }

    /// Keeps only the changes for which `keep` returns true.
    pub fn retain(&mut self, mut keep: impl FnMut(&VaultPath, Option<&FileContent>) -> bool) {
        self.entries.retain(|p, c| keep(p, c.as_ref()));
    }

    /// Every change, in path order.
    pub fn iter(&self) -> impl Iterator<Item = (&VaultPath, Option<&FileContent>)> {
        self.entries.iter().map(|(p, c)| (p, c.as_ref()))
    }

    /// The paths touched, in order.
    pub fn paths(&self) -> impl Iterator<Item = &VaultPath> {
        self.entries.keys()
    }

    /// How many paths are touched.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is touched.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
