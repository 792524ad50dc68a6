//! Small file-system helpers with the crash behaviour quire relies on.
//!
//! Whole-file writes go to a temporary file in the same folder and are renamed over the target, so a
//! reader (or a restart after `kill -9`) sees the old file or the new one, never half of either.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Prefix of quire's temporary files, so watchers and scans can skip them.
pub const TEMP_PREFIX: &str = ".quire-tmp-";

/// Whether an I/O error is the machine's rather than one file's: the disk or quota is full, the
/// file system is read-only, memory or file descriptors ran out. Such an error holds the queue
/// until it goes away; any other error on a bundle's own file or paths is that bundle's, which is
/// refused so the queue moves on.
pub fn is_machine_error(e: &io::Error) -> bool {
    use io::ErrorKind as K;
    if matches!(
        e.kind(),
        K::StorageFull | K::QuotaExceeded | K::ReadOnlyFilesystem | K::OutOfMemory
    ) {
        return true;
    }
    // EMFILE and ENFILE (too many open files) have no kind of their own.
    #[cfg(unix)]
    if matches!(e.raw_os_error(), Some(23 | 24)) {
        return true;
    }
    false
}

/// Bytes free for an unprivileged writer on the file system holding `dir`, where the platform says.
pub fn space_left(dir: &Path) -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        let fs = rustix::fs::statvfs(dir).ok()?;
        Some(fs.f_bavail.saturating_mul(fs.f_frsize))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = dir;
        None
    }
}

/// `e`, or, when it says nothing of its cause (libgit2's "Write error") and the file system
/// holding `dir` is (nearly) full, an error that says so: "no space" is what the operator can act on.
pub fn explain_write_error(e: io::Error, dir: &Path) -> io::Error {
    const NEARLY_FULL: u64 = 1 << 20;
    if e.raw_os_error().is_none() && space_left(dir).is_some_and(|free| free < NEARLY_FULL) {
        return io::Error::new(
            io::ErrorKind::StorageFull,
            format!("{e}: no space left on the device holding {}", dir.display()),
        );
    }
    e
}

/// Writes `bytes` to `path` atomically, with the usual mode for a file (`0644`, or `0755` when
/// `executable`, both subject to the umask).
pub fn atomic_write(path: &Path, bytes: &[u8], executable: bool) -> io::Result<()> {
    atomic_write_mode(path, bytes, if executable { 0o755 } else { 0o644 })
}

/// Writes `bytes` to `path` atomically with the given Unix mode (ignored elsewhere).
pub fn atomic_write_mode(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = parent_of(path)?;
    let mut builder = tempfile::Builder::new();
    builder.prefix(TEMP_PREFIX);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(mode));
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut tmp = builder.tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Renames `from` to `to`, refusing to replace an existing `to`.
///
/// Callers hold the vault's apply lock, so the check-then-rename cannot race another quire.
pub fn rename_no_clobber(from: &Path, to: &Path) -> io::Result<()> {
    if to.symlink_metadata().is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} already exists", to.display()),
        ));
    }
    std::fs::rename(from, to)
}

/// `dir/stem.ext`, or `dir/stem~2.ext`, `dir/stem~3.ext`, … : the first name not taken, so filing a
/// second bundle of the same name never replaces the first. `~` cannot occur in a bundle id, so a
/// numbered name never collides with another bundle's own name.
pub fn free_name(dir: &Path, stem: &str, ext: &str) -> PathBuf {
    let path = |name: &str| dir.join(format!("{name}{ext}"));
    if path(stem).symlink_metadata().is_err() {
        return path(stem);
    }
    (2u64..)
        .map(|n| path(&format!("{stem}~{n}")))
        .find(|p| p.symlink_metadata().is_err())
        .unwrap_or_else(|| path(stem))
}

/// The entries of `dir`, or none when it does not exist.
pub fn read_dir_or_empty(dir: &Path) -> io::Result<Vec<std::fs::DirEntry>> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries.collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

fn parent_of(path: &Path) -> io::Result<&Path> {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} has no parent folder", path.display()),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.txt");
        atomic_write(&p, b"one", false).unwrap();
        atomic_write(&p, b"two", false).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode & 0o600, 0o600);
            atomic_write_mode(&p, b"s", 0o600).unwrap();
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    #[test]
    fn free_name_never_reuses_a_name() {
        let dir = tempfile::tempdir().unwrap();
        let first = free_name(dir.path(), "b", ".json");
        assert_eq!(first, dir.path().join("b.json"));
        std::fs::write(&first, "").unwrap();
        let second = free_name(dir.path(), "b", ".json");
        assert_eq!(second, dir.path().join("b~2.json"));
        std::fs::write(&second, "").unwrap();
        assert_eq!(
            free_name(dir.path(), "b", ".json"),
            dir.path().join("b~3.json")
        );
        assert!(rename_no_clobber(&second, &first).is_err());
    }

    #[test]
    fn only_the_machines_errors_hold_the_queue() {
        let held = [
            io::Error::from(io::ErrorKind::StorageFull),
            io::Error::from(io::ErrorKind::QuotaExceeded),
            io::Error::from(io::ErrorKind::ReadOnlyFilesystem),
            io::Error::from(io::ErrorKind::OutOfMemory),
            #[cfg(unix)]
            io::Error::from_raw_os_error(24),
        ];
        for e in held {
            assert!(is_machine_error(&e), "{e} holds the queue");
        }
        let one_bundles = [
            io::Error::from(io::ErrorKind::NotFound),
            io::Error::from(io::ErrorKind::PermissionDenied),
            io::Error::from(io::ErrorKind::InvalidFilename),
            io::Error::other("bad bytes"),
        ];
        for e in one_bundles {
            assert!(!is_machine_error(&e), "{e} is one bundle's");
        }
    }

    #[test]
    fn a_silent_write_error_is_blamed_on_the_disk_only_when_it_is_full() {
        let dir = tempfile::tempdir().unwrap();
        // A test machine's temporary folder has more than a mebibyte free.
        let e = explain_write_error(io::Error::other("Write error"), dir.path());
        assert_eq!(e.kind(), io::ErrorKind::Other);
        assert_eq!(e.to_string(), "Write error");
    }
}
