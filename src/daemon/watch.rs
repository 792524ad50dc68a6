//! Watching the vault: what the worker is told of changes (file events, classified into hints) and
//! what it owes the index because of them.

use std::path::Path;

use crate::vault::Queue;

/// Why the worker should look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Hint {
    /// Something in `pending/`.
    Bundles,
    /// A note, a theme, the configuration, or a folder of them, at this vault path.
    Notes(String),
    /// One of the records quire keeps of mission steps (`06_RUNS/missions/`), at this vault path:
    /// taken in like a note, but not in a hurry (see `RECORDS_EVERY`).
    Records(String),
    /// The watcher lost track: look at everything.
    Rescan,
}

/// What of the vault's content the next pass brings the index up to date with.
#[derive(Debug, Default)]
pub(super) struct Dirty {
    /// Everything: the vault is walked.
    pub(super) all: bool,
    /// These vault paths: what the watcher reported (the pass adds what it applied).
    pub(super) paths: std::collections::BTreeSet<String>,
}

impl Dirty {
    pub(super) fn everything() -> Self {
        Self {
            all: true,
            ..Self::default()
        }
    }

    /// Takes a hint in; true when it was about bundles.
    pub(super) fn note(&mut self, hint: Hint) -> bool {
        match hint {
            Hint::Bundles => return true,
            Hint::Notes(path) | Hint::Records(path) => {
                self.paths.insert(path);
            }
            Hint::Rescan => self.all = true,
        }
        false
    }

    /// Whether all there is to look at is quire's own mission records.
    pub(super) fn only_records(&self) -> bool {
        !self.all && !self.paths.is_empty() && self.paths.iter().all(|p| is_mission_record(p))
    }

    pub(super) fn any(&self) -> bool {
        self.all || !self.paths.is_empty()
    }
}

/// What the watcher watches: the vault root itself (its own files, and folders coming and going),
/// `contributions/pending/`, and each content folder at the top, recursively. Never `_site/`,
/// `.git/`, `.quire/`, sandboxes or the logs: a recursive watch costs one inotify watch per folder,
/// and a render swaps in a whole new site tree every pass, which notify would walk and re-watch
/// folder by folder, on a core the pipeline needs, delaying every event behind it.
pub(super) struct Watches {
    watcher: Box<dyn notify::Watcher + Send>,
    root: std::path::PathBuf,
    /// Top-level content folders watched recursively, by name.
    dirs: std::collections::BTreeSet<String>,
    /// Whether some folder could not be watched (out of inotify watches): the periodic scans then
    /// look at the notes too.
    pub(super) incomplete: bool,
}

impl Watches {
    /// `None` when the platform gives no events (the periodic scan then does all the work).
    pub(super) fn start(root: &Path, post: super::inbox::Post) -> Option<Self> {
        let root_buf = root.to_path_buf();
        let pending = root.join(Queue::Pending.rel());
        let watched_pending = pending.clone();
        let handler = move |event: notify::Result<notify::Event>| {
            let hint = match &event {
                Ok(e) if e.need_rescan() => Some(Hint::Rescan),
                // Reading a file is no change; the pipeline's own reads would wake it forever.
                Ok(e) if matches!(e.kind, notify::EventKind::Access(_)) => None,
                Ok(e) => e
                    .paths
                    .iter()
                    .find_map(|p| classify(&root_buf, &pending, p)),
                Err(_) => Some(Hint::Rescan),
            };
            if hint.is_some() {
                tracing::trace!(?event, ?hint, "watcher");
            }
            if let Some(h) = hint {
                post.hint(h);
            }
        };
        let mut watcher = notify::recommended_watcher(handler).ok()?;
        notify::Watcher::watch(&mut watcher, root, notify::RecursiveMode::NonRecursive).ok()?;
        notify::Watcher::watch(
            &mut watcher,
            &watched_pending,
            notify::RecursiveMode::NonRecursive,
        )
        .ok()?;
        let mut watches = Self {
            watcher: Box::new(watcher),
            root: root.to_path_buf(),
            dirs: Default::default(),
            incomplete: false,
        };
        watches.refresh();
        Some(watches)
    }

    /// Watches the content folders at the top as they are now. Called before every look at the
    /// notes, so a folder made since is watched before the index walks it (what was written in it
    /// before then is found by that walk).
    pub(super) fn refresh(&mut self) {
        let now: std::collections::BTreeSet<String> = std::fs::read_dir(&self.root)
            .map(|list| {
                list.filter_map(Result::ok)
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|name| crate::index::is_content_path(name))
                    .collect()
            })
            .unwrap_or_default();
        for gone in self.dirs.difference(&now) {
            let _ = self.watcher.unwatch(&self.root.join(gone));
        }
        self.dirs.retain(|d| now.contains(d));
        self.incomplete = false;
        for new in now {
            if self.dirs.contains(&new) {
                continue;
            }
            match self
                .watcher
                .watch(&self.root.join(&new), notify::RecursiveMode::Recursive)
            {
                Ok(()) => {
                    self.dirs.insert(new);
                }
                // Gone again, or out of watches: the scans find its changes instead.
                Err(e) => {
                    tracing::warn!(folder = %new, "not watched ({e}); scanning for its changes every 2 s");
                    let _ = self.watcher.unwatch(&self.root.join(&new));
                    self.incomplete = true;
                }
            }
        }
    }
}

/// Whether vault path `rel` is one of quire's records of mission steps.
fn is_mission_record(rel: &str) -> bool {
    rel.starts_with("06_RUNS/missions/")
}

/// What a changed path means for the worker.
pub(super) fn classify(root: &Path, pending: &Path, path: &Path) -> Option<Hint> {
    if path.parent() == Some(pending) {
        return Some(Hint::Bundles);
    }
    let rel = path.strip_prefix(root).ok()?.to_str()?;
    // The daemon's own run records would otherwise wake it again.
    if rel.starts_with("06_RUNS/") && rel.matches('/').count() == 1 {
        return None;
    }
    if is_mission_record(rel) {
        return Some(Hint::Records(rel.to_owned()));
    }
    crate::index::is_content_path(rel).then(|| Hint::Notes(rel.to_owned()))
}
