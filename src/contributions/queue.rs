//! The drop folders: `pending/` → `processing/` → `processed/` or `rejected/`.
//!
//! A bundle moves between them only by `rename`, which is atomic, so at every instant it is in
//! exactly one folder and never half-copied; quire never deletes one. A receipt is written *before*
//! its bundle is moved next to it, so a bundle in `processed/` or `rejected/` always has its receipt; a
//! crash between the two leaves the bundle in `processing/`, where the next run resumes it (the
//! receipt it left is overwritten).
//!
//! Only one quire process works the queue at a time: [`ApplyLock`] is an advisory lock on
//! `.quire/apply.lock`, which the kernel drops when its holder dies, even by `kill -9`.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::bundle::too_large_bytes;
use super::error::{ErrorCode, Rejection};
use super::receipt::{Receipt, Status};
use crate::vault::{Queue, Vault, fsutil};

/// Suffix of receipt files.
pub const RECEIPT_SUFFIX: &str = ".receipt.json";

/// Whether a file name in `pending/` is a bundle to process. Writers may use names starting with `.`
/// or ending `.tmp`/`.part` while they write, then rename; those, and receipts, are skipped.
pub fn is_bundle_name(name: &str) -> bool {
    name.ends_with(".json")
        && !name.starts_with('.')
        && !name.ends_with(RECEIPT_SUFFIX)
        && name.len() > ".json".len()
}

/// Exclusive right to work the queue and commit bundles, for as long as it is held.
#[derive(Debug)]
pub struct ApplyLock {
    _file: File,
}

impl ApplyLock {
    /// Takes the lock, waiting for another quire process to finish if it holds it. `on_wait` is called
    /// once before waiting, so the caller can say why it is waiting.
    pub fn acquire(vault: &Vault, on_wait: impl FnOnce()) -> io::Result<Self> {
        let file = Self::file(vault)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                on_wait();
                file.lock()?;
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
        Ok(Self { _file: file })
    }

    /// Takes the lock if nobody holds it; `None` when another writer does.
    pub fn try_acquire(vault: &Vault) -> io::Result<Option<Self>> {
        let file = Self::file(vault)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Self { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }

    fn file(vault: &Vault) -> io::Result<File> {
        std::fs::create_dir_all(vault.state_dir())?;
        File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(vault.state_dir().join("apply.lock"))
    }
}

/// Bundles waiting in `folder`, oldest first (by modification time, then name).
pub fn list(vault: &Vault, folder: Queue) -> io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in fsutil::read_dir_or_empty(&vault.queue_dir(folder))? {
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            tracing::warn!(file = ?entry.path(), "skipping a bundle whose name is not UTF-8; rename it");
            continue;
        };
        if !is_bundle_name(name) {
            continue;
        }
        let meta = entry.path().symlink_metadata()?;
        if meta.is_dir() {
            continue;
        }
        let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        found.push((modified, entry.path()));
    }
    found.sort();
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

/// Claims a pending bundle by renaming it into `processing/`. `None` when it is gone (another
/// process, or its writer, took it first).
pub fn claim(vault: &Vault, pending: &Path) -> io::Result<Option<PathBuf>> {
    let dir = vault.queue_dir(Queue::Processing);
    std::fs::create_dir_all(&dir)?;
    let name = pending
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bundle name is not UTF-8"))?;
    let dest = fsutil::free_name(&dir, name.trim_end_matches(".json"), ".json");
    match fsutil::rename_no_clobber(pending, &dest) {
        Ok(()) => Ok(Some(dest)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads a claimed bundle, refusing links and files over `limit` bytes before reading them.
pub fn read_bundle(path: &Path, limit: u64) -> io::Result<Result<Vec<u8>, Rejection>> {
    crate::fault::fail("read_bundle")?;
    let meta = path.symlink_metadata()?;
    if meta.file_type().is_symlink() {
        return Ok(Err(Rejection::new(
            ErrorCode::InvalidBundle,
            "the bundle is a symbolic link; drop the file itself",
        )));
    }
    if meta.len() > limit {
        return Ok(Err(too_large_bytes(meta.len(), limit)));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    File::open(path)?.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Ok(Err(too_large_bytes(bytes.len() as u64, limit)));
    }
    Ok(Ok(bytes))
}

/// Files a claimed bundle under `processed/` (named by its id) or `rejected/` (named as it was
/// dropped), receipt first. Returns where the bundle now is.
pub fn file_away(vault: &Vault, claimed: &Path, receipt: &Receipt) -> io::Result<PathBuf> {
    let (folder, stem) = match (receipt.status, &receipt.id) {
        (Status::Applied | Status::Duplicate, Some(id)) => (Queue::Processed, id.clone()),
        _ => (Queue::Rejected, file_stem(claimed)),
    };
    let dir = vault.queue_dir(folder);
    std::fs::create_dir_all(&dir)?;
    let dest = fsutil::free_name(&dir, &stem, ".json");
    let name = dest
        .file_name()
        .and_then(|n| n.to_str())
        .map(|n| n.trim_end_matches(".json").to_owned())
        .unwrap_or(stem);
    let mut text = serde_json::to_vec_pretty(receipt).map_err(io::Error::other)?;
    text.push(b'\n');
    fsutil::atomic_write(&dir.join(format!("{name}{RECEIPT_SUFFIX}")), &text, false)?;
    fsutil::rename_no_clobber(claimed, &dest)?;
    Ok(dest)
}

/// The name a bundle was dropped under, without `.json`.
pub fn file_stem(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().trim_end_matches(".json").to_owned())
        .unwrap_or_default()
}

/// The receipt for bundle `id`: the applied one if any, else the newest rejection of that id.
pub fn find_receipt(vault: &Vault, id: &str) -> io::Result<Option<Receipt>> {
    if !super::bundle::is_valid_id(id) {
        return Ok(None);
    }
    let applied = vault
        .queue_dir(Queue::Processed)
        .join(format!("{id}{RECEIPT_SUFFIX}"));
    if let Some(r) = read_receipt(&applied)? {
        return Ok(Some(r));
    }
    let mut newest: Option<(SystemTime, Receipt)> = None;
    for (path, receipt) in rejected_receipts(vault)? {
        if receipt.id.as_deref() == Some(id) || file_stem_of_receipt(&path) == id {
            let t = path
                .metadata()?
                .modified()
                .unwrap_or(SystemTime::UNIX_EPOCH);
            if newest.as_ref().is_none_or(|(n, _)| t >= *n) {
                newest = Some((t, receipt));
            }
        }
    }
    Ok(newest.map(|(_, r)| r))
}

/// Every receipt in `rejected/`, with its path.
pub fn rejected_receipts(vault: &Vault) -> io::Result<Vec<(PathBuf, Receipt)>> {
    let mut out = Vec::new();
    for entry in fsutil::read_dir_or_empty(&vault.queue_dir(Queue::Rejected))? {
        let path = entry.path();
        if path.to_string_lossy().ends_with(RECEIPT_SUFFIX)
            && let Some(r) = read_receipt(&path)?
        {
            out.push((path, r));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn file_stem_of_receipt(path: &Path) -> String {
    path.file_name()
        .map(|n| {
            n.to_string_lossy()
                .trim_end_matches(RECEIPT_SUFFIX)
                .to_owned()
        })
        .unwrap_or_default()
}

fn read_receipt(path: &Path) -> io::Result<Option<Receipt>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Why `quire retry` could not put a bundle back.
#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    /// No rejected bundle has that id or name.
    #[error(
        "no rejected bundle has the id or name `{0}`; `ls contributions/rejected/` shows what was refused"
    )]
    NotFound(String),
    /// Several do.
    #[error("{} rejected bundles have the id `{id}`: {}; retry one by its name", names.len(), names.join(", "))]
    Ambiguous {
        /// The id asked for.
        id: String,
        /// The names of the rejected bundles holding it.
        names: Vec<String>,
    },
    /// The file system refused.
    #[error("could not move the bundle back: {0}")]
    Io(#[from] io::Error),
}

/// Moves the rejected bundle named `key` (its file name without `.json`, or its id) back into
/// `pending/`, and drops its stale receipt. Returns the new path in `pending/`.
pub fn retry(vault: &Vault, key: &str) -> Result<PathBuf, RetryError> {
    let dir = vault.queue_dir(Queue::Rejected);
    let by_name = dir.join(format!("{key}.json"));
    let stem = if !key.contains(['/', '\\']) && by_name.is_file() {
        key.to_owned()
    } else {
        let names: Vec<String> = rejected_receipts(vault)?
            .into_iter()
            .filter(|(_, r)| r.id.as_deref() == Some(key))
            .map(|(p, _)| file_stem_of_receipt(&p))
            .filter(|stem| dir.join(format!("{stem}.json")).is_file())
            .collect();
        match names.as_slice() {
            [] => return Err(RetryError::NotFound(key.to_owned())),
            [one] => one.clone(),
            _ => {
                return Err(RetryError::Ambiguous {
                    id: key.to_owned(),
                    names,
                });
            }
        }
    };
    let pending = vault.queue_dir(Queue::Pending);
    std::fs::create_dir_all(&pending)?;
    // Keep the name the writer chose (minus any `~N` quire added), so the next receipt is found
    // under the same name.
    let base = stem
        .rsplit_once('~')
        .filter(|(_, n)| n.parse::<u64>().is_ok())
        .map_or(stem.as_str(), |(b, _)| b);
    let dest = fsutil::free_name(&pending, base, ".json");
    fsutil::rename_no_clobber(&dir.join(format!("{stem}.json")), &dest)?;
    // The bundle is safe in pending/; its old receipt would only mislead now. The event log keeps
    // the history of the rejection.
    match std::fs::remove_file(dir.join(format!("{stem}{RECEIPT_SUFFIX}"))) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    Ok(dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_names() {
        for ok in ["a.json", "b-1.json", "x.y.json"] {
            assert!(is_bundle_name(ok), "{ok}");
        }
        for skip in [
            ".a.json",
            "a.json.tmp",
            "a.json.part",
            "a.tmp",
            "a.receipt.json",
            ".json",
            "a.txt",
        ] {
            assert!(!is_bundle_name(skip), "{skip}");
        }
    }
}
