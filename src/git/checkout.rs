//! A sandbox's work tree written by quire itself, on every core, when nothing would convert a file
//! on its way out (see [`Repo::filters_change_nothing`](super::Repo)).
//!
//! libgit2 checks a tree out one file at a time. Creating 10,000 files is kernel work (inode
//! allocation, directory updates) that two threads do in about half the time, and the brief-to-
//! first-step latency of a mission is mostly this checkout. libgit2 still sets the worktree up (its
//! `.git` file, `HEAD`, Git's record under `.git/worktrees/`); quire writes the files and then the
//! index, with each file's own stat data, so Git sees a clean tree. The index is written last: a
//! work tree without one was never finished (see [`Repo::worktree_is_complete`](super::Repo)).

use std::path::Path;

use git2::{IndexEntry, IndexTime, Oid, Repository};

use super::workdir::path_of;
use super::{Context as _, GitError};

/// libgit2's `GIT_CHECKOUT_DRY_RUN` (1.9), which libgit2-sys does not name: decide, write nothing.
const CHECKOUT_DRY_RUN: u32 = 1 << 24;
/// `GIT_CHECKOUT_DONT_UPDATE_INDEX`.
const CHECKOUT_DONT_UPDATE_INDEX: u32 = 1 << 8;

/// The nice value of checkout threads.
const CHECKOUT_NICE: i32 = 10;

/// One blob (or link, or submodule) of the tree, where it goes.
struct Item {
    path: Vec<u8>,
    id: Oid,
    mode: u32,
}

/// Adds worktree `name` at `path` with `reference` checked out, writing its files in parallel.
pub(super) fn add_worktree_parallel(
    repo: &Repository,
    name: &str,
    path: &Path,
    reference: &git2::Reference<'_>,
) -> Result<(), GitError> {
    let tree = reference
        .peel_to_tree()
        .ctx(|| format!("could not read the tree of {}", reference_name(reference)))?;
    let mut items = Vec::new();
    list(repo, &tree, &mut Vec::new(), &mut items).ctx(|| "could not list the tree".into())?;
    // The index's order: paths as bytes.
    items.sort_unstable_by(|a, b| a.path.cmp(&b.path));

    add_bare_worktree(repo, name, path, reference)
        .ctx(|| format!("could not add a worktree at {}", path.display()))?;

    let mut dirs: Vec<&[u8]> = items
        .iter()
        .filter_map(|i| {
            i.path
                .iter()
                .rposition(|&b| b == b'/')
                .map(|k| &i.path[..k])
        })
        .collect();
    dirs.sort_unstable();
    dirs.dedup();
    for d in dirs {
        let full = path.join(path_of(d));
        std::fs::create_dir_all(&full).ctx(|| format!("could not create {}", full.display()))?;
    }

    let entries = write_all(repo.path(), path, &items)?;

    let wt = Repository::open(path)
        .ctx(|| format!("could not open the work tree {}", path.display()))?;
    let mut index = wt
        .index()
        .ctx(|| "could not read the work tree's index".into())?;
    index
        .clear()
        .ctx(|| "could not clear the work tree's index".into())?;
    for e in &entries {
        index
            .add(e)
            .ctx(|| format!("could not index {}", String::from_utf8_lossy(&e.path)))?;
    }
    index
        .write()
        .ctx(|| "could not write the work tree's index".into())
}

/// Writes every item under `root` on threads of its own (not rayon's pool, which renders sites:
/// a checkout queued ahead of a render would hold the daemon's pipeline), each with its own handle
/// on the object database. The entries come back in the items' order.
fn write_all(git_dir: &Path, root: &Path, items: &[Item]) -> Result<Vec<IndexEntry>, GitError> {
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 4)
        .min(items.len().max(1));
    // Interleaved, so that each thread works across every folder.
    let results: Vec<Result<Vec<(usize, IndexEntry)>, GitError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|k| {
                scope.spawn(move || {
                    // Below everything else: a checkout uses the cores nobody else wants, and the
                    // daemon's pipeline (a bundle dropped meanwhile) goes first. On Linux a nice
                    // value is per thread.
                    #[cfg(target_os = "linux")]
                    let _ = rustix::process::setpriority_process(
                        Some(rustix::thread::gettid()),
                        CHECKOUT_NICE,
                    );
                    let repo = Repository::open(git_dir)
                        .ctx(|| format!("could not open {}", git_dir.display()))?;
                    (k..items.len())
                        .step_by(threads)
                        .map(|i| write_item(&repo, root, &items[i]).map(|e| (i, e)))
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(GitError::Io {
                        context: "a checkout thread failed".into(),
                        source: std::io::Error::other("panicked"),
                    })
                })
            })
            .collect()
    });
    let mut entries: Vec<(usize, IndexEntry)> = Vec::with_capacity(items.len());
    for r in results {
        entries.extend(r?);
    }
    entries.sort_unstable_by_key(|(i, _)| *i);
    Ok(entries.into_iter().map(|(_, e)| e).collect())
}

/// Moves the work tree at `root`, clean at commit `from` (its index that commit's tree, its files
/// the index's), to commit `to`: only the files that differ between the two trees are written or
/// removed, and only their index entries change. The caller moves the branch.
///
/// A runner's slot goes from one step's start commit to the next this way; its vault has
/// thousands of files and a step changes a few, so a reset that looks at every file (twice: the
/// reset, then the search for untracked files) is most of what a step costs.
pub(super) fn switch_clean(
    repo: &Repository,
    root: &Path,
    from: Oid,
    to: Oid,
) -> Result<(), GitError> {
    let tree_of = |c: Oid| {
        repo.find_commit(c)
            .and_then(|c| c.tree())
            .ctx(|| format!("could not read the tree of {c}"))
    };
    let (old, new) = (tree_of(from)?, tree_of(to)?);
    let mut index = repo.index().ctx(|| "could not read the index".into())?;
    // The file, not what this handle read before: a step may have run Git itself.
    index.read(true).ctx(|| "could not read the index".into())?;
    // The precondition, checked: an index that is not `from`'s tree is not clean at `from`.
    let staged = index
        .write_tree()
        .ctx(|| "could not read the index as a tree".into())?;
    if staged != old.id() {
        return Err(GitError::Io {
            context: format!("the index of {} is not at {from}", root.display()),
            source: std::io::Error::other("not clean"),
        });
    }
    let diff = repo
        .diff_tree_to_tree(Some(&old), Some(&new), None)
        .ctx(|| format!("could not compare {from} with {to}"))?;
    // Removals first: a file may take the place of a folder that goes.
    for delta in diff.deltas() {
        let was = delta.old_file();
        if let Some(path) = was.path_bytes().filter(|_| !was.id().is_zero()) {
            let full = root.join(path_of(path));
            match std::fs::symlink_metadata(&full) {
                Ok(m) if m.is_dir() => std::fs::remove_dir_all(&full),
                Ok(_) => std::fs::remove_file(&full),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e),
            }
            .ctx(|| format!("could not remove {}", full.display()))?;
            index
                .remove_path(&path_of(path))
                .ctx(|| format!("could not unstage {}", full.display()))?;
            super::worktree::remove_empty_parents(&full, root);
        }
    }
    for delta in diff.deltas() {
        let now = delta.new_file();
        if let Some(path) = now.path_bytes().filter(|_| !now.id().is_zero()) {
            let full = root.join(path_of(path));
            if let Some(parent) = full.parent() {
                std::fs::create_dir_all(parent)
                    .ctx(|| format!("could not create {}", parent.display()))?;
            }
            let entry = write_item(
                repo,
                root,
                &Item {
                    path: path.to_vec(),
                    id: now.id(),
                    mode: u32::from(now.mode()),
                },
            )?;
            index
                .add(&entry)
                .ctx(|| format!("could not stage {}", full.display()))?;
        }
    }
    index.write().ctx(|| "could not write the index".into())
}

/// Every blob, link and submodule under `tree`, with its path from the root (as bytes: a path
/// need not be UTF-8).
fn list(
    repo: &Repository,
    tree: &git2::Tree<'_>,
    prefix: &mut Vec<u8>,
    items: &mut Vec<Item>,
) -> Result<(), git2::Error> {
    for entry in tree.iter() {
        let at = prefix.len();
        prefix.extend_from_slice(entry.name_bytes());
        match entry.kind() {
            Some(git2::ObjectType::Tree) => {
                prefix.push(b'/');
                let sub = repo.find_tree(entry.id())?;
                list(repo, &sub, prefix, items)?;
            }
            Some(git2::ObjectType::Blob | git2::ObjectType::Commit) => items.push(Item {
                path: prefix.clone(),
                id: entry.id(),
                mode: entry.filemode() as u32,
            }),
            _ => {}
        }
        prefix.truncate(at);
    }
    Ok(())
}

fn reference_name(r: &git2::Reference<'_>) -> String {
    String::from_utf8_lossy(r.name_bytes()).into_owned()
}

/// Writes one item under `root` and returns its index entry, stat data included.
fn write_item(repo: &Repository, root: &Path, item: &Item) -> Result<IndexEntry, GitError> {
    use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
    let full = root.join(path_of(&item.path));
    crate::fault::point("during_checkout");
    let meta = match item.mode {
        // A submodule: an empty folder, as Git leaves one it has not cloned.
        0o160000 => {
            std::fs::create_dir_all(&full)
                .ctx(|| format!("could not create {}", full.display()))?;
            None
        }
        0o120000 => {
            let blob = repo
                .find_blob(item.id)
                .ctx(|| format!("could not read blob {}", item.id))?;
            std::os::unix::fs::symlink(path_of(blob.content()), &full)
                .ctx(|| format!("could not create {}", full.display()))?;
            Some(
                std::fs::symlink_metadata(&full)
                    .ctx(|| format!("could not read {}", full.display()))?,
            )
        }
        mode => {
            let blob = repo
                .find_blob(item.id)
                .ctx(|| format!("could not read blob {}", item.id))?;
            let mut file = std::fs::File::options()
                .write(true)
                .create_new(true)
                .mode(if mode == 0o100755 { 0o777 } else { 0o666 })
                .open(&full)
                .ctx(|| format!("could not create {}", full.display()))?;
            std::io::Write::write_all(&mut file, blob.content())
                .ctx(|| format!("could not write {}", full.display()))?;
            Some(
                file.metadata()
                    .ctx(|| format!("could not read {}", full.display()))?,
            )
        }
    };
    let (ctime, mtime, dev, ino, uid, gid, size) = match &meta {
        Some(m) => (
            IndexTime::new(m.ctime() as i32, m.ctime_nsec() as u32),
            IndexTime::new(m.mtime() as i32, m.mtime_nsec() as u32),
            m.dev() as u32,
            m.ino() as u32,
            m.uid(),
            m.gid(),
            m.size() as u32,
        ),
        None => (IndexTime::new(0, 0), IndexTime::new(0, 0), 0, 0, 0, 0, 0),
    };
    Ok(IndexEntry {
        ctime,
        mtime,
        dev,
        ino,
        mode: item.mode,
        uid,
        gid,
        file_size: size,
        id: item.id,
        // The low bits carry the path's length (capped), as the index format has it.
        flags: item.path.len().min(0xfff) as u16,
        flags_extended: 0,
        path: item.path.clone(),
    })
}

/// `git_worktree_add` that sets the worktree up and writes no file (git2 does not expose the
/// checkout options of a worktree, so the call is made through libgit2-sys).
fn add_bare_worktree(
    repo: &Repository,
    name: &str,
    path: &Path,
    reference: &git2::Reference<'_>,
) -> Result<(), git2::Error> {
    use git2::Binding as _;
    use std::os::unix::ffi::OsStrExt as _;
    let name = std::ffi::CString::new(name)
        .map_err(|_| git2::Error::from_str("a worktree name holds a NUL byte"))?;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| git2::Error::from_str("a worktree path holds a NUL byte"))?;
    let mut opts = std::mem::MaybeUninit::<libgit2_sys::git_worktree_add_options>::uninit();
    // SAFETY: `git_worktree_add_options_init` fills the whole struct for this version (libgit2
    // is initialised: `repo` exists); on failure it is not read.
    let rc = unsafe {
        libgit2_sys::git_worktree_add_options_init(
            opts.as_mut_ptr(),
            libgit2_sys::GIT_WORKTREE_ADD_OPTIONS_VERSION,
        )
    };
    if rc < 0 {
        return Err(git2::Error::last_error(rc));
    }
    // SAFETY: initialised just above.
    let mut opts = unsafe { opts.assume_init() };
    opts.reference = reference.raw();
    opts.checkout_options.checkout_strategy = CHECKOUT_DRY_RUN | CHECKOUT_DONT_UPDATE_INDEX;
    let mut out = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call: `repo` and `reference` are borrowed live
    // objects, the strings are NUL-terminated and outlive it, `opts` is a complete options struct.
    let rc = unsafe {
        libgit2_sys::git_worktree_add(&mut out, repo.raw(), name.as_ptr(), path.as_ptr(), &opts)
    };
    if rc < 0 {
        return Err(git2::Error::last_error(rc));
    }
    // SAFETY: `out` is the worktree the successful call allocated, freed once here.
    unsafe { libgit2_sys::git_worktree_free(out) };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt as _;
    use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};

    #[test]
    fn a_parallel_checkout_is_what_git_would_write_and_git_sees_it_clean() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        std::fs::create_dir_all(root.join("notes/deep")).unwrap();
        std::fs::write(root.join("a.md"), "a\n").unwrap();
        std::fs::write(root.join("notes/b.md"), "b\n").unwrap();
        std::fs::write(root.join("notes/deep/c.md"), "c\n").unwrap();
        std::fs::write(root.join("run.sh"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(root.join("run.sh"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        std::os::unix::fs::symlink("notes/b.md", root.join("link.md")).unwrap();
        let odd = std::ffi::OsStr::from_bytes(b"caf\xe9.md");
        std::fs::write(root.join(odd), "latin-1 name\n").unwrap();
        let repo = super::super::init_repository(&root, "main").unwrap();
        let first = repo.commit_initial("first").unwrap().unwrap();
        repo.create_branch("wt", first, "test").unwrap();
        let raw = repo.raw();
        let reference = raw
            .find_branch("wt", git2::BranchType::Local)
            .unwrap()
            .into_reference();
        let wt_path = dir.path().join("wt");
        add_worktree_parallel(raw, "wt", &wt_path, &reference).unwrap();
        assert!(repo.worktree_is_complete("wt"));

        assert_eq!(
            std::fs::read(wt_path.join("notes/deep/c.md")).unwrap(),
            b"c\n"
        );
        assert_eq!(std::fs::read(wt_path.join(odd)).unwrap(), b"latin-1 name\n");
        let mode = std::fs::metadata(wt_path.join("run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111 & !umask(), "the executable bit is kept");
        assert_eq!(
            std::fs::read_link(wt_path.join("link.md")).unwrap(),
            Path::new("notes/b.md")
        );
        let wt = Repository::open(&wt_path).unwrap();
        assert_eq!(wt.head().unwrap().shorthand().ok(), Some("wt"));
        assert_eq!(wt.index().unwrap().len(), 6);
        let mut opts = git2::StatusOptions::new();
        opts.include_untracked(true);
        assert!(wt.statuses(Some(&mut opts)).unwrap().is_empty());
        // Git itself, comparing stat data only (no re-reading of files): nothing differs.
        let out = std::process::Command::new("git")
            .args(["diff-files", "--quiet"])
            .current_dir(&wt_path)
            .output();
        if let Ok(out) = out {
            assert!(
                out.status.success(),
                "git sees stat data that does not match"
            );
        }
    }

    #[test]
    fn a_clean_work_tree_switches_to_another_commit_by_writing_only_what_differs() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        let write = |p: &str, text: &str| {
            let full = root.join(p);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(full, text).unwrap();
        };
        write("same.md", "same\n");
        write("changed.md", "before\n");
        write("gone/only.md", "only\n");
        write("kept/left.md", "left\n");
        let repo = super::super::init_repository(&root, "main").unwrap();
        let from = repo.commit_initial("first").unwrap().unwrap();
        let untouched = std::fs::metadata(root.join("same.md")).unwrap();
        // The next commit, made by git: a change, a removal that empties a folder, new files
        // (one in a new folder, one executable), and a file that becomes a folder.
        write("changed.md", "after\n");
        std::fs::remove_dir_all(root.join("gone")).unwrap();
        write("new/deep/n.md", "new\n");
        write("run.sh", "#!/bin/sh\n");
        std::fs::set_permissions(root.join("run.sh"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        std::fs::remove_file(root.join("kept/left.md")).unwrap();
        std::fs::remove_dir(root.join("kept")).unwrap();
        write("kept", "now a file\n");
        let git = |args: &[&str]| crate::git::git_cli(&root, args);
        git(&["add", "-A"]);
        git(&["commit", "-qm", "second"]);
        let to = Oid::from_str(git(&["rev-parse", "HEAD"]).trim()).unwrap();
        // Back at the first commit, clean.
        git(&["reset", "-q", "--hard", &from.to_string()]);
        assert!(root.join("gone/only.md").is_file());

        repo.switch_clean(&root, "main", from, to).unwrap();
        assert_eq!(repo.branch_tip("main").unwrap(), Some(to));
        assert_eq!(
            std::fs::read_to_string(root.join("changed.md")).unwrap(),
            "after\n"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("kept")).unwrap(),
            "now a file\n"
        );
        assert!(!root.join("gone").exists(), "an emptied folder goes");
        assert_eq!(
            std::fs::read_to_string(root.join("new/deep/n.md")).unwrap(),
            "new\n"
        );
        let mode = std::fs::metadata(root.join("run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111 & !umask());
        // A file both commits share was not written again.
        let same = std::fs::metadata(root.join("same.md")).unwrap();
        assert_eq!(
            (same.ino(), same.mtime_nsec()),
            (untouched.ino(), untouched.mtime_nsec())
        );
        // Git sees the tree clean, from stat data alone, and nothing untracked.
        assert_eq!(git(&["status", "--porcelain", "--untracked-files=all"]), "");
        git(&["diff-files", "--quiet"]);

        // Not clean where it is said to be: refused, and nothing moves.
        write("changed.md", "edited\n");
        git(&["add", "changed.md"]);
        assert!(repo.switch_clean(&root, "main", to, from).is_err());
        assert_eq!(repo.branch_tip("main").unwrap(), Some(to));
        assert_eq!(
            std::fs::read_to_string(root.join("changed.md")).unwrap(),
            "edited\n"
        );

        // Clean again, but where a checkout could convert files (attributes): refused too,
        // for the full reset to do it.
        git(&["reset", "-q", "--hard", &to.to_string()]);
        std::fs::write(root.join(".git/info/attributes"), "* text=auto\n").unwrap();
        assert!(repo.switch_clean(&root, "main", to, from).is_err());
        assert_eq!(repo.branch_tip("main").unwrap(), Some(to));
        assert_eq!(
            std::fs::read_to_string(root.join("changed.md")).unwrap(),
            "after\n"
        );
    }

    fn umask() -> u32 {
        // The umask cannot be read without setting it; a file created with 0o777 shows it.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("probe");
        std::fs::File::options()
            .write(true)
            .create_new(true)
            .mode(0o777)
            .open(&p)
            .unwrap();
        !std::fs::metadata(&p).unwrap().permissions().mode() & 0o777
    }
}
