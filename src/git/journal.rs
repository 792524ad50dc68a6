//! Which paths of a sandbox work tree changed, learned from the kernel's file events, so that a
//! step's commit looks at a few paths instead of every file of a large vault.
//!
//! A status scan costs one `lstat` per tracked file: on a 10,000-note vault that is most of a
//! step's overhead, for steps that change three files. Git meets the same cost with its
//! file-system monitor; this is the same idea, scoped to one work tree for as long as quire
//! carries its run. On Linux, every folder of the work tree gets an inotify watch. Events are read
//! only after the step's process group has ended, and the kernel queues an event within the
//! system call that caused it, so every change the step made by writing, creating, renaming or
//! deleting is in the queue by then.
//!
//! Whenever the journal cannot vouch for what it saw, it says so and the caller scans everything:
//! at the start (nothing is known of changes made before the watch), after the kernel's queue
//! overflowed, after a folder was removed or renamed (its watches would name the wrong paths), and
//! when the kernel refuses more watches. Changes made only through a memory map raise no event;
//! the scan at the start of every carry picks them up.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// What is known of the work tree's changes since the journal was last asked.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Since {
    /// Nothing reliable: look at every file.
    Everything,
    /// Exactly these paths (relative to the work tree; files, or folders that appeared with
    /// everything in them) may differ from the index; no other path does.
    Paths(BTreeSet<PathBuf>),
}

/// The changes to one work tree, as far as the kernel reports them.
pub(crate) struct Journal {
    #[cfg(target_os = "linux")]
    watch: Option<linux::Watch>,
    /// Whether the journal has been asked before: until then, what happened before the watch
    /// began is unknown.
    known: bool,
}

impl Journal {
    /// Starts watching the work tree at `root`. `skip` says which folders (relative paths) are
    /// never looked into: ignored ones, nested repositories. Never fails: a journal without a
    /// watch answers [`Since::Everything`].
    pub(crate) fn start(root: &Path, skip: &dyn Fn(&Path) -> bool) -> Self {
        #[cfg(target_os = "linux")]
        {
            let watch = linux::Watch::start(root, skip)
                .map_err(|e| {
                    tracing::debug!(
                        "no file events for {}: {e}; every step's commit scans the whole work tree",
                        root.display()
                    )
                })
                .ok();
            Self {
                watch,
                known: false,
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = (root, skip);
            Self { known: false }
        }
    }

    /// A journal that never knows: every answer is [`Since::Everything`].
    pub(crate) fn blind() -> Self {
        Self {
            #[cfg(target_os = "linux")]
            watch: None,
            known: false,
        }
    }

    /// What changed since the last call, and from now on a fresh account. After
    /// [`Since::Everything`] the caller must bring the index in line with the whole work tree.
    pub(crate) fn take(&mut self, skip: &dyn Fn(&Path) -> bool) -> Since {
        #[cfg(target_os = "linux")]
        if let Some(w) = &mut self.watch {
            match w.take(skip) {
                Ok(Some(paths)) if self.known => return Since::Paths(paths),
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!("file events stopped: {e}; scanning the whole work tree");
                    self.watch = None;
                }
            }
            self.known = true;
            return Since::Everything;
        }
        let _ = skip;
        Since::Everything
    }

    /// Takes the work tree as it is now to match its index (just checked out): the next answer
    /// names only what changed since the watch began.
    pub(crate) fn trust(&mut self) {
        self.known = true;
    }

    /// Forgets what was taken: the next answer is [`Since::Everything`] (for when staging what
    /// the journal named failed half-way).
    pub(crate) fn forget(&mut self) {
        self.known = false;
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::collections::{BTreeSet, HashMap};
    use std::ffi::OsStr;
    use std::mem::MaybeUninit;
    use std::os::unix::ffi::OsStrExt as _;
    use std::path::{Path, PathBuf};

    use rustix::fd::OwnedFd;
    use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
    use rustix::io::Errno;

    /// Events that say a path's content, mode or existence may have changed. Opening and reading
    /// are left out: they change nothing.
    fn mask() -> WatchFlags {
        WatchFlags::CREATE
            | WatchFlags::MODIFY
            | WatchFlags::CLOSE_WRITE
            | WatchFlags::ATTRIB
            | WatchFlags::DELETE
            | WatchFlags::MOVED_FROM
            | WatchFlags::MOVED_TO
            | WatchFlags::DELETE_SELF
            | WatchFlags::MOVE_SELF
            | WatchFlags::ONLYDIR
            | WatchFlags::DONT_FOLLOW
            | WatchFlags::EXCL_UNLINK
    }

    pub(super) struct Watch {
        root: PathBuf,
        fd: OwnedFd,
        /// Watch descriptor → the folder it watches, relative to the root ("" for the root).
        dirs: HashMap<i32, PathBuf>,
        dirty: BTreeSet<PathBuf>,
        /// The account cannot be trusted (overflow, a folder moved or removed): start over.
        broken: bool,
    }

    impl Watch {
        pub(super) fn start(root: &Path, skip: &dyn Fn(&Path) -> bool) -> Result<Self, Errno> {
            let fd = inotify::init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC)?;
            let mut w = Self {
                root: root.to_owned(),
                fd,
                dirs: HashMap::new(),
                dirty: BTreeSet::new(),
                broken: false,
            };
            w.watch_tree(PathBuf::new(), skip, false)?;
            Ok(w)
        }

        /// Watches folder `rel` and every folder below it (a watch before each listing, so nothing
        /// created meanwhile is missed). With `collect`, every file found is marked changed: the
        /// folder is new, so all of it is.
        fn watch_tree(
            &mut self,
            rel: PathBuf,
            skip: &dyn Fn(&Path) -> bool,
            collect: bool,
        ) -> Result<(), Errno> {
            let mut todo = vec![rel];
            while let Some(rel) = todo.pop() {
                let full = self.root.join(&rel);
                let wd = match inotify::add_watch(&self.fd, &full, mask()) {
                    Ok(wd) => wd,
                    // Gone already, or not a folder any more: whatever it held is reported by
                    // the events of its parent.
                    Err(Errno::NOENT | Errno::NOTDIR) => continue,
                    Err(e) => return Err(e),
                };
                self.dirs.insert(wd, rel.clone());
                let Ok(listing) = std::fs::read_dir(&full) else {
                    continue;
                };
                for entry in listing.flatten() {
                    let name = entry.file_name();
                    if name == ".git" {
                        continue;
                    }
                    let path = rel.join(&name);
                    let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
                    if is_dir {
                        if !skip(&path) {
                            todo.push(path);
                        }
                    } else if collect {
                        self.dirty.insert(path);
                    }
                }
            }
            Ok(())
        }

        /// Reads every queued event. `Ok(Some(paths))`: the changed paths; `Ok(None)`: the
        /// account was broken and the watch has been set up again from scratch.
        pub(super) fn take(
            &mut self,
            skip: &dyn Fn(&Path) -> bool,
        ) -> Result<Option<BTreeSet<PathBuf>>, Errno> {
            self.drain(skip)?;
            if self.broken {
                let root = std::mem::take(&mut self.root);
                *self = Self::start(&root, skip)?;
                return Ok(None);
            }
            Ok(Some(std::mem::take(&mut self.dirty)))
        }

        fn drain(&mut self, skip: &dyn Fn(&Path) -> bool) -> Result<(), Errno> {
            // Aligned for the kernel's event structs, and large enough for several.
            let mut buf = [MaybeUninit::<u8>::uninit(); 16 * 1024];
            let mut new_dirs = Vec::new();
            {
                let mut reader = inotify::Reader::new(&self.fd, &mut buf);
                loop {
                    let event = match reader.next() {
                        Ok(e) => e,
                        Err(Errno::WOULDBLOCK) => break,
                        Err(Errno::INTR) => continue,
                        Err(e) => return Err(e),
                    };
                    let flags = event.events();
                    if flags.contains(ReadFlags::QUEUE_OVERFLOW) {
                        self.broken = true;
                        continue;
                    }
                    if flags.contains(ReadFlags::IGNORED) {
                        self.dirs.remove(&event.wd());
                        continue;
                    }
                    if flags.intersects(ReadFlags::DELETE_SELF | ReadFlags::MOVE_SELF) {
                        self.broken = true;
                        continue;
                    }
                    let (Some(dir), Some(name)) = (self.dirs.get(&event.wd()), event.file_name())
                    else {
                        continue;
                    };
                    let name = OsStr::from_bytes(name.to_bytes());
                    if name == ".git" {
                        continue;
                    }
                    let path = dir.join(name);
                    if flags.contains(ReadFlags::ISDIR) {
                        if flags.intersects(ReadFlags::DELETE | ReadFlags::MOVED_FROM) {
                            // Its watches (and those below) now name the wrong paths, and what
                            // the index holds under it must go: start over.
                            self.broken = true;
                        } else if flags.intersects(ReadFlags::CREATE | ReadFlags::MOVED_TO) {
                            new_dirs.push(path);
                        }
                        continue;
                    }
                    self.dirty.insert(path);
                }
            }
            for dir in new_dirs {
                if skip(&dir) {
                    continue;
                }
                self.watch_tree(dir, skip, true)?;
            }
            Ok(())
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::fs;

    fn paths(s: Since) -> Vec<String> {
        match s {
            Since::Everything => vec!["*".into()],
            Since::Paths(p) => p.iter().map(|p| p.display().to_string()).collect(),
        }
    }

    fn never(_: &Path) -> bool {
        false
    }

    #[test]
    fn it_names_the_files_a_step_touched_and_every_file_of_a_new_folder() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("notes/deep")).unwrap();
        fs::write(root.join("notes/a.md"), "a").unwrap();
        fs::write(root.join("notes/deep/b.md"), "b").unwrap();
        fs::write(root.join("gone.md"), "x").unwrap();
        let mut j = Journal::start(root, &never);
        assert_eq!(paths(j.take(&never)), ["*"], "nothing is known at first");

        fs::write(root.join("notes/a.md"), "a2").unwrap();
        fs::write(root.join("notes/deep/new.md"), "n").unwrap();
        fs::remove_file(root.join("gone.md")).unwrap();
        fs::create_dir_all(root.join("drafts/x")).unwrap();
        fs::write(root.join("drafts/x/c.md"), "c").unwrap();
        fs::create_dir(root.join("skipped")).unwrap();
        fs::write(root.join("skipped/s.md"), "s").unwrap();
        let skip = |p: &Path| p == Path::new("skipped");
        assert_eq!(
            paths(j.take(&skip)),
            [
                "drafts/x/c.md",
                "gone.md",
                "notes/a.md",
                "notes/deep/new.md"
            ]
        );
        assert_eq!(paths(j.take(&skip)), Vec::<String>::new(), "taken once");
        // A file in the new folder, written after it was first seen, is seen too.
        fs::write(root.join("drafts/x/d.md"), "d").unwrap();
        // chmod is a change (the executable bit is tracked).
        let p = root.join("notes/deep/b.md");
        let mut perm = fs::metadata(&p).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
        fs::set_permissions(&p, perm).unwrap();
        assert_eq!(paths(j.take(&skip)), ["drafts/x/d.md", "notes/deep/b.md"]);
    }

    #[test]
    fn a_folder_removed_or_renamed_or_a_forgotten_account_means_everything() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("a/b")).unwrap();
        fs::write(root.join("a/b/x.md"), "x").unwrap();
        let mut j = Journal::start(root, &never);
        j.take(&never);
        fs::rename(root.join("a/b"), root.join("a/c")).unwrap();
        assert_eq!(paths(j.take(&never)), ["*"]);
        // Watched again from scratch: the renamed folder's files are named by their new path.
        fs::write(root.join("a/c/x.md"), "y").unwrap();
        assert_eq!(paths(j.take(&never)), ["a/c/x.md"]);
        fs::remove_dir_all(root.join("a/c")).unwrap();
        assert_eq!(paths(j.take(&never)), ["*"]);
        fs::write(root.join("top.md"), "t").unwrap();
        j.forget();
        assert_eq!(paths(j.take(&never)), ["*"]);
        assert_eq!(paths(Journal::blind().take(&never)), ["*"]);
        // A tree just checked out is trusted from the start.
        let mut j = Journal::start(root, &never);
        j.trust();
        fs::write(root.join("top.md"), "u").unwrap();
        assert_eq!(paths(j.take(&never)), ["top.md"]);
    }
}
