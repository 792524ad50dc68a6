//! Turning a bundle into the files it writes: every change applied, in order, to a snapshot of the
//! target branch, all in memory.
//!
//! Nothing here touches the disk or Git. The result is a [`ChangeSet`] the `git` module commits in one
//! go; a refusal anywhere means nothing is written anywhere.

use crate::vault::{ChangeSet, Config, FileContent, NodeKind, Protected, Snapshot, VaultPath};

use super::bundle::{Bundle, Change, Edit};
use super::error::{ErrorCode, Rejection};
use super::{data, text};

/// Applies every change of `bundle` to `snapshot`.
///
/// `moved` says the target is no longer at the bundle's `base`: then a change that does not apply is a
/// `conflict` (the author's view is out of date), not the underlying error.
pub fn plan(bundle: &Bundle, snapshot: &dyn Snapshot, moved: bool) -> Result<ChangeSet, Rejection> {
    let mut work = Overlay {
        base: snapshot,
        changes: ChangeSet::new(),
    };
    for (index, change) in bundle.changes.iter().enumerate() {
        work.apply(change).map_err(|e| {
            let e = e.in_change(index);
            let e = Rejection {
                path: e.path.or_else(|| Some(change.path().to_string())),
                ..e
            };
            if moved && matches!(
                e.code,
                ErrorCode::NotFound | ErrorCode::Exists | ErrorCode::TestFailed | ErrorCode::PatchFailed
            ) {
                Rejection {
                    code: ErrorCode::Conflict,
                    message: format!(
                        "the target changed since `base` and this change no longer applies ({}: {}); rebase the bundle on the current tip",
                        e.code, e.message
                    ),
                    ..e
                }
            } else {
                e
            }
        })?;
    }
    // A file created and removed again within the bundle, or rewritten to the bytes it had, is no
    // change at all: leave it out of the commit and the receipt.
    let mut changes = work.changes;
    let mut failure = None;
    changes.retain(|path, content| match snapshot.read(path) {
        Ok(before) => before.as_ref() != content,
        Err(e) => {
            failure.get_or_insert_with(|| Rejection::new(ErrorCode::PatchFailed, e.to_string()));
            true
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    keeps_the_allow_list(bundle, snapshot, &changes)?;
    Ok(changes)
}

/// A bundle the operator lets change quire.toml must leave it a valid configuration and must not
/// touch `[contributions] allow`: the list of what bundles may write is never theirs to widen.
fn keeps_the_allow_list(
    bundle: &Bundle,
    snapshot: &dyn Snapshot,
    changes: &ChangeSet,
) -> Result<(), Rejection> {
    let Some((path, after)) = changes
        .iter()
        .find(|(p, _)| p.protection() == Some(Protected::Config))
    else {
        return Ok(());
    };
    let index = bundle.change_at(path).unwrap_or(0);
    let config = |bytes: Option<&[u8]>| -> Result<Config, String> {
        match bytes {
            None => Ok(Config::default()),
            Some(b) => Config::parse(&String::from_utf8_lossy(b)),
        }
    };
    let before = snapshot
        .read(path)
        .map_err(|e| Rejection::new(ErrorCode::PatchFailed, e.to_string()))?;
    let before = config(before.as_ref().map(|c| c.bytes.as_slice()))
        .map(|c| c.contributions.allow)
        .unwrap_or_default();
    let after = match config(after.map(|c| c.bytes.as_slice())) {
        Ok(c) => c.contributions.allow,
        Err(e) => {
            return Err(Rejection::at(
                ErrorCode::PatchFailed,
                index,
                path.as_str(),
                format!("the result is not a valid quire.toml ({e}); fix the change"),
            ));
        }
    };
    if after != before {
        return Err(Rejection::at(
            ErrorCode::ProtectedPath,
            index,
            path.as_str(),
            "the change alters `[contributions] allow`, the list of files bundles may change; only the vault's operator edits that list",
        ));
    }
    Ok(())
}

/// The snapshot with the changes made so far laid over it.
struct Overlay<'s> {
    base: &'s dyn Snapshot,
    changes: ChangeSet,
}

impl Overlay<'_> {
    fn apply(&mut self, change: &Change) -> Result<(), Rejection> {
        match change {
            Change::Create { path, content } => {
                self.check_writable(path)?;
                if self.read(path)?.is_some() {
                    return Err(here(
                        ErrorCode::Exists,
                        path,
                        "already exists; use a `patch` change to edit it, or `delete` it first",
                    ));
                }
                self.changes
                    .write(path.clone(), FileContent::new(content.clone()));
            }
            Change::Delete { path } => {
                self.existing(path)?;
                self.changes.delete(path.clone());
            }
            Change::Move { from, to } => {
                let content = self.existing(from)?;
                self.check_writable(to)?;
                if self.read(to)?.is_some() {
                    return Err(here(
                        ErrorCode::Exists,
                        to,
                        "is already there; the move would replace it",
                    ));
                }
                self.changes.delete(from.clone());
                self.changes.write(to.clone(), content);
            }
            Change::Patch { path, edit } => {
                let old = self.existing(path)?;
                let bytes = match edit {
                    Edit::Data(ops) => data::patch_file(path, &old.bytes, ops)?,
                    Edit::FrontMatter(ops) => text::patch_front_matter(path, &old.bytes, ops)?,
                    Edit::Body(ops) => text::patch_body(path, &old.bytes, ops)?,
                };
                self.changes.write(
                    path.clone(),
                    FileContent {
                        bytes,
                        executable: old.executable,
                    },
                );
            }
        }
        Ok(())
    }

    /// The file at `path` as the changes so far leave it.
    fn read(&self, path: &VaultPath) -> Result<Option<FileContent>, Rejection> {
        match self.changes.get(path) {
            Some(content) => Ok(content.cloned()),
            None => {
                self.check_kind(path, false)?;
                self.base
                    .read(path)
                    .map_err(|e| io_rejection(path, &e.to_string()))
            }
        }
    }

    /// The file at `path`, which must exist.
    fn existing(&self, path: &VaultPath) -> Result<FileContent, Rejection> {
        self.check_ancestors(path)?;
        self.read(path)?.ok_or_else(|| {
            here(
                ErrorCode::NotFound,
                path,
                "does not exist on the target branch",
            )
        })
    }

    /// Refuses a path whose leaf is a link, a folder or a submodule.
    fn check_kind(&self, path: &VaultPath, for_write: bool) -> Result<(), Rejection> {
        match self.base_kind(path.as_str())? {
            Some(NodeKind::Symlink) => Err(here(
                ErrorCode::UnsafePath,
                path,
                "is a symbolic link; quire never writes through links",
            )),
            Some(NodeKind::Dir) if for_write => Err(here(
                ErrorCode::Exists,
                path,
                "is a folder; a file cannot replace it",
            )),
            Some(NodeKind::Dir) => Err(here(ErrorCode::NotFound, path, "is a folder, not a file")),
            Some(NodeKind::Other) => Err(here(ErrorCode::UnsafePath, path, "is a submodule")),
            _ => Ok(()),
        }
    }

    /// Refuses a path that passes through a link, or through a file where a folder is needed.
    fn check_ancestors(&self, path: &VaultPath) -> Result<(), Rejection> {
        for ancestor in path.ancestors() {
            if let Some(written) = VaultPath::new(ancestor)
                .ok()
                .and_then(|a| self.changes.get(&a))
            {
                if written.is_some() {
                    return Err(here(
                        ErrorCode::Exists,
                        path,
                        &format!("cannot be used: `{ancestor}` is a file"),
                    ));
                }
                continue; // deleted earlier in this bundle: free to become a folder
            }
            match self.base_kind(ancestor)? {
                Some(NodeKind::Symlink) => {
                    return Err(here(
                        ErrorCode::UnsafePath,
                        path,
                        &format!(
                            "passes through the symbolic link `{ancestor}`; quire never writes through links"
                        ),
                    ));
                }
                Some(NodeKind::File { .. }) => {
                    return Err(here(
                        ErrorCode::Exists,
                        path,
                        &format!("cannot be used: `{ancestor}` is a file"),
                    ));
                }
                Some(NodeKind::Other) => {
                    return Err(here(
                        ErrorCode::UnsafePath,
                        path,
                        &format!("passes through the submodule `{ancestor}`"),
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn check_writable(&self, path: &VaultPath) -> Result<(), Rejection> {
        self.check_ancestors(path)?;
        if self.changes.get(path).is_none() {
            self.check_kind(path, true)?;
        }
        Ok(())
    }

    fn base_kind(&self, path: &str) -> Result<Option<NodeKind>, Rejection> {
        self.base
            .kind(path)
            .map_err(|e| Rejection::new(ErrorCode::PatchFailed, e.to_string()))
    }
}

fn here(code: ErrorCode, path: &VaultPath, what: &str) -> Rejection {
    Rejection {
        code,
        message: format!("`{path}` {what}"),
        change: None,
        path: Some(path.to_string()),
    }
}

fn io_rejection(path: &VaultPath, message: &str) -> Rejection {
    Rejection {
        code: ErrorCode::PatchFailed,
        message: message.to_owned(),
        change: None,
        path: Some(path.to_string()),
    }
}
