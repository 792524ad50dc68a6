//! Publishing a build: made beside the live site and swapped in, writing only what changed.
//!
//! ```text
//!   _site/paper/                 the live site (served, deployed)
//!   _site/.paper.next/           the build before it, reused as the staging area of the next one
//!   _site/.paper.lock            held while a render of this theme runs
//!   <site>/.quire-build.json     the build's manifest: every file with its key
//! ```
//!
//! A file's key is a hash of everything its bytes depend on (see `pages`). To publish, the staging
//! folder — two builds old — is brought to the new build file by file: a file whose key it already
//! has is left alone; one the live site has is hard-linked from there (files are never modified in
//! place, only replaced, so sharing them is safe); the rest are written. Then the two folders are
//! exchanged with one `renameat2(RENAME_EXCHANGE)`, so a reader sees the old site or the new one,
//! never a mix, and a crash at any point leaves the live site whole. When every key matches the live
//! manifest nothing at all is written.
//!
//! The staging folder's manifest is removed before it is touched and written back last: a staging
//! folder without one (after a crash) is rebuilt from scratch.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest as _, Sha256};

use super::RenderError;
use super::catalog::Texts;

/// The manifest's file name, inside each build.
pub(crate) const MANIFEST: &str = ".quire-build.json";

/// The search index of a site, at its root.
pub(crate) const SEARCH_INDEX: &str = "search.json";

/// The notes' memos of a build, beside its manifest.
pub(crate) const NOTES: &str = ".quire-notes.json";

/// What a build's manifest format is; a manifest of another format is not used.
const FORMAT: u32 = 2;

/// The live manifests this process published or read last, by live folder, with the identity of
/// the manifest file each matches. A long-running process (the daemon) renders after every change;
/// reading ten thousand notes' memos back each time would cost it about 20 ms a render.
fn kept_manifests() -> &'static Mutex<std::collections::HashMap<PathBuf, (Ids, Manifest)>> {
    static KEPT: OnceLock<Mutex<std::collections::HashMap<PathBuf, (Ids, Manifest)>>> =
        OnceLock::new();
    KEPT.get_or_init(Default::default)
}

/// The identities of a build's manifest files (see [`SiteDir::manifest_ids`]).
type Ids = [FileId; 3];

/// The keys of the build in each staging folder this process made the staging folder by a swap,
/// by staging folder, with the identity of its manifest file and the stamp. After a swap the
/// staging folder holds the build that was live, whose manifest the render had in memory; reading
/// it back from disk at the next render costs several milliseconds on a large site.
#[allow(clippy::type_complexity)]
fn kept_stages() -> &'static Mutex<std::collections::HashMap<PathBuf, (FileId, String, Files)>> {
    static KEPT: OnceLock<Mutex<std::collections::HashMap<PathBuf, (FileId, String, Files)>>> =
        OnceLock::new();
    KEPT.get_or_init(Default::default)
}

/// A build's files with their keys.
type Files = BTreeMap<String, String>;

/// Drops every kept manifest (see [`kept_manifests`] and [`kept_stages`]).
pub(crate) fn release_kept() {
    if let Ok(mut k) = kept_manifests().lock() {
        *k = std::collections::HashMap::new();
    }
    if let Ok(mut k) = kept_stages().lock() {
        *k = std::collections::HashMap::new();
    }
}

/// What tells one written file from another at the same path: the manifest is replaced, never
/// changed in place, so a rewrite gives it a new inode or at least a new modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: i64,
    mtime_nsec: i64,
}

#[cfg(unix)]
fn file_id(path: &Path) -> Option<FileId> {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::symlink_metadata(path).ok()?;
    Some(FileId {
        dev: m.dev(),
        ino: m.ino(),
        len: m.len(),
        mtime: m.mtime(),
        mtime_nsec: m.mtime_nsec(),
    })
}

/// Elsewhere the manifest is always read back.
#[cfg(not(unix))]
fn file_id(_: &Path) -> Option<FileId> {
    None
}

/// One file of a build.
pub(crate) struct OutFile {
    /// Where, relative to the site root.
    pub(crate) path: String,
    /// A hash of everything its bytes depend on.
    pub(crate) key: String,
    pub(crate) body: Body,
}

/// Where a file's bytes come from.
pub(crate) enum Body {
    /// Made now.
    Bytes(Vec<u8>),
    /// Rendered now and already put into the staging folder.
    Staged,
    /// Unchanged since the live build: its file there.
    Kept,
    /// An attachment of the content, by vault path.
    Attachment(String),
}

/// What the site knows of a published note beyond its own page: what it contributes to the
/// site-wide files, and what its page shows of other notes. Kept so that an unchanged note need
/// not be rendered again, and so that a render after an edit that changes only a note's own page
/// can skip reading every other note (see `incremental`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct NoteMemo {
    /// Attachments it shows or links to (those that may be published).
    #[serde(rename = "a", default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) attachments: Vec<String>,
    /// Its links that lead nowhere.
    #[serde(rename = "b", default, skip_serializing_if = "is_zero")]
    pub(crate) broken: usize,
    /// Notes it transcludes, at any depth.
    #[serde(rename = "e", default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) embeds: Vec<String>,
    /// Its title (pages linking back to it show it; so does the feed).
    #[serde(rename = "t", default)]
    pub(crate) title: String,
    /// Its date, when it has one.
    #[serde(rename = "d", default, skip_serializing_if = "Option::is_none")]
    pub(crate) date: Option<String>,
    /// Whether it goes into the feed (dated, and not a run record).
    #[serde(rename = "f", default, skip_serializing_if = "is_false")]
    pub(crate) feed: bool,
    /// A digest of everything other pages show of the note: title, tags, aliases, front matter,
    /// mission, tasks, and where its links lead.
    #[serde(rename = "c", default)]
    pub(crate) face: String,
    /// The notes linking to it, as positions among the build's notes (in path order).
    #[serde(rename = "l", default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) backlinks: Vec<u32>,
    /// Its mission (id, title), when it belongs to one.
    #[serde(rename = "m", default, skip_serializing_if = "Option::is_none")]
    pub(crate) mission: Option<(String, String)>,
    /// Whether a folder's listing shares its page.
    #[serde(rename = "k", default, skip_serializing_if = "is_false")]
    pub(crate) children: bool,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A build's manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Manifest {
    format: u32,
    /// The quire version, theme and settings the build was made with; keys from another stamp mean
    /// nothing.
    pub(crate) stamp: String,
    /// Every file, with its key.
    pub(crate) files: BTreeMap<String, String>,
    /// Every published note's memo, by vault path: kept in its own file, `NOTES`, which a
    /// staging folder's reader does not need to parse.
    /// Shared, so that a build keeps an unchanged note's memo without copying it.
    #[serde(skip)]
    pub(crate) notes: BTreeMap<String, Arc<NoteMemo>>,
    /// The SHA-256 of the notes file written with this manifest, so a pair torn by a crash is
    /// never used.
    #[serde(default)]
    notes_sha: String,
    /// The build's search index entries, one per note in `notes` order (its `search.json`, read
    /// back): a note that is not rendered again keeps its entry.
    #[serde(skip)]
    pub(crate) entries: Vec<Arc<RawValue>>,
    /// What the build was made from (equal for equal content).
    #[serde(default)]
    pub(crate) source: String,
    /// What the build holds, for reporting on a render that finds nothing to do.
    #[serde(default)]
    pub(crate) summary: Summary,
    /// The index the build was made from, when it was made from the work tree.
    #[serde(default)]
    pub(crate) index: Option<crate::index::IndexState>,
}

/// What a build holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Summary {
    pub(crate) pages: usize,
    pub(crate) attachments: usize,
    pub(crate) broken_links: usize,
    pub(crate) published: usize,
    /// Notes not published, with why.
    pub(crate) unpublished: BTreeMap<String, String>,
}

impl Manifest {
    pub(crate) fn new(stamp: String) -> Self {
        Self {
            format: FORMAT,
            stamp,
            files: BTreeMap::new(),
            notes: BTreeMap::new(),
            notes_sha: String::new(),
            entries: Vec::new(),
            source: String::new(),
            summary: Summary::default(),
            index: None,
        }
    }

    /// The manifest of the build in `dir`, without the notes' memos, if it was made with `stamp`.
    fn read(dir: &Path, stamp: &str) -> Option<Self> {
        Self::read_any(dir).filter(|m| m.stamp == stamp)
    }

    /// The same, whatever its stamp (to copy a build, not to reuse its keys).
    fn read_any(dir: &Path) -> Option<Self> {
        let bytes = std::fs::read(dir.join(MANIFEST)).ok()?;
        let m: Manifest = serde_json::from_slice(&bytes).ok()?;
        (m.format == FORMAT).then_some(m)
    }

    /// The same with the notes' memos.
    fn read_full(dir: &Path, stamp: &str) -> Option<Self> {
        let mut m = Self::read(dir, stamp)?;
        let bytes = std::fs::read(dir.join(NOTES)).ok()?;
        if hex(&Sha256::digest(&bytes)) != m.notes_sha {
            return None;
        }
        m.notes = serde_json::from_slice(&bytes).ok()?;
        let search = std::fs::read(dir.join(SEARCH_INDEX)).ok()?;
        let entries: Vec<Box<RawValue>> = serde_json::from_slice(&search).ok()?;
        m.entries = entries.into_iter().map(Arc::from).collect();
        (m.entries.len() == m.notes.len()).then_some(m)
    }

    /// Writes the manifest into `dir`: the notes' memos first, then the manifest, which names
    /// them by hash and so makes the pair valid.
    fn write(&mut self, dir: &Path, atomic: bool) -> Result<(), RenderError> {
        let encode = |e: serde_json::Error| RenderError::Io {
            context: "could not write the build manifest".into(),
            source: io::Error::other(e),
        };
        let notes = notes_json(&self.notes).map_err(encode)?;
        self.notes_sha = hex(&Sha256::digest(&notes));
        let manifest = serde_json::to_vec(&self).map_err(encode)?;
        let write = |name: &str, bytes: &[u8]| {
            let path = dir.join(name);
            let done = if atomic {
                crate::vault::fsutil::atomic_write(&path, bytes, false)
            } else {
                std::fs::write(&path, bytes)
            };
            done.map_err(RenderError::io(format!(
                "could not write {}",
                path.display()
            )))
        };
        write(NOTES, &notes)?;
        write(MANIFEST, &manifest)
    }
}

/// The notes' memos as one JSON object, the bytes `serde_json::to_vec` gives, made in parallel:
/// it is written after every change, and on a large site takes several milliseconds.
fn notes_json(notes: &BTreeMap<String, Arc<NoteMemo>>) -> Result<Vec<u8>, serde_json::Error> {
    let items: Vec<(&String, &Arc<NoteMemo>)> = notes.iter().collect();
    let parts = items
        .par_chunks(2048)
        .map(|chunk| {
            let mut out = Vec::with_capacity(chunk.len() * 256);
            for (i, (path, memo)) in chunk.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut out, path)?;
                out.push(b':');
                serde_json::to_writer(&mut out, memo)?;
            }
            Ok(out)
        })
        .collect::<Result<Vec<Vec<u8>>, serde_json::Error>>()?;
    let mut json = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum::<usize>() + 2);
    json.push(b'{');
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            json.push(b',');
        }
        json.extend_from_slice(part);
    }
    json.push(b'}');
    Ok(json)
}

/// Why publishing stopped.
pub(crate) enum PublishError {
    /// A file the live manifest lists is missing from the live site (removed by hand): the build
    /// must be made again without reusing the live one.
    Stale,
    /// Anything else.
    Failed(RenderError),
}

impl From<RenderError> for PublishError {
    fn from(e: RenderError) -> Self {
        PublishError::Failed(e)
    }
}

impl From<crate::index::IndexError> for PublishError {
    fn from(e: crate::index::IndexError) -> Self {
        PublishError::Failed(e.into())
    }
}

/// What publishing did.
pub(crate) struct Outcome {
    pub(crate) written: usize,
    pub(crate) removed: usize,
    pub(crate) files: usize,
    pub(crate) changed: bool,
}

/// A theme's site folder and its companions.
pub(crate) struct SiteDir {
    live: PathBuf,
    stage: PathBuf,
    aside: PathBuf,
    lock: PathBuf,
}

impl SiteDir {
    /// The folders of theme `name` under `root` (created if missing).
    pub(crate) fn open(root: &Path, name: &str) -> Result<Self, RenderError> {
        // Theme names come from folder names and quire.toml; one that is not a plain name would put
        // the site somewhere else.
        if name.is_empty()
            || name.starts_with('.')
            || !name
                .chars()
                .all(|c| c.is_alphanumeric() || "-_.".contains(c))
        {
            return Err(RenderError::Config(format!(
                "`{name}` cannot be a theme's folder name"
            )));
        }
        std::fs::create_dir_all(root).map_err(RenderError::io(format!(
            "could not create {}",
            root.display()
        )))?;
        let site = Self {
            live: root.join(name),
            stage: root.join(format!(".{name}.next")),
            aside: root.join(format!(".{name}.prev")),
            lock: root.join(format!(".{name}.lock")),
        };
        site.recover()?;
        Ok(site)
    }

    /// The live site's folder.
    pub(crate) fn live_dir(&self) -> &Path {
        &self.live
    }

    /// Holds the theme's render lock until dropped, so two renders never share a staging folder.
    pub(crate) fn lock(&self) -> Result<File, RenderError> {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock)
            .map_err(RenderError::io(format!(
                "could not open {}",
                self.lock.display()
            )))?;
        file.lock().map_err(RenderError::io(format!(
            "could not lock {}",
            self.lock.display()
        )))?;
        Ok(file)
    }

    /// The live build's manifest, if it was made with `stamp`: the copy this process kept when it
    /// published or last used it, if the manifest file is still the one it wrote, else read back.
    pub(crate) fn live_manifest(&self, stamp: &str) -> Option<Manifest> {
        let kept = kept_manifests()
            .lock()
            .ok()
            .and_then(|mut k| k.remove(&self.live));
        if let Some((ids, manifest)) = kept
            && self.manifest_ids() == Some(ids)
            && manifest.stamp == stamp
        {
            return Some(manifest);
        }
        Manifest::read_full(&self.live, stamp)
    }

    /// Keeps `manifest`, which must be the live build's as its files now say, for the next
    /// [`Self::live_manifest`] of this process.
    pub(crate) fn keep(&self, manifest: Manifest) {
        if let Some(ids) = self.manifest_ids()
            && let Ok(mut k) = kept_manifests().lock()
        {
            k.insert(self.live.clone(), (ids, manifest));
        }
    }

    /// Keeps the files of the build that was live before the last publish of this site swapped
    /// it into the staging folder (made with `stamp`), for the next [`Stage::prepare`].
    pub(crate) fn keep_staged(&self, stamp: String, files: Files) {
        if let Some(id) = file_id(&self.stage.join(MANIFEST))
            && let Ok(mut k) = kept_stages().lock()
        {
            k.insert(self.stage.clone(), (id, stamp, files));
        }
    }

    /// The identities of the live files a manifest is read from (itself, the notes' memos, the
    /// search index): a kept manifest stands for them only while all three are the files it
    /// was kept with.
    fn manifest_ids(&self) -> Option<[FileId; 3]> {
        let id = |name| file_id(&self.live.join(name));
        Some([id(MANIFEST)?, id(NOTES)?, id(SEARCH_INDEX)?])
    }

    /// A swap without `RENAME_EXCHANGE` that was cut off leaves the live site aside; put it back.
    fn recover(&self) -> Result<(), RenderError> {
        if !self.live.exists() && self.aside.is_dir() {
            std::fs::rename(&self.aside, &self.live).map_err(RenderError::io(format!(
                "could not restore {}",
                self.live.display()
            )))?;
        }
        Ok(())
    }

    /// Starts publishing a build made with `stamp`; `previous` is the live build's manifest.
    pub(crate) fn stage<'s>(
        &'s self,
        stamp: &'s str,
        previous: Option<&'s Manifest>,
        texts: &'s Texts,
    ) -> Stage<'s> {
        Stage {
            site: self,
            stamp,
            previous,
            texts,
            have: OnceLock::new(),
            dirs: Mutex::new(HashSet::new()),
            written: AtomicUsize::new(0),
        }
    }

    /// Makes the staging folder a copy of the live build, by hard links, so that the next build
    /// writes only what changes. A build made from scratch leaves the staging folder empty (or
    /// far behind), and the next one would then have to fill all of it; a long-running process
    /// does that now, between builds, instead. Returns how many files were linked.
    ///
    /// The staging folder's manifest is written last, so one cut off here is simply rebuilt by
    /// the next render.
    pub(crate) fn mirror_live(&self) -> Result<usize, RenderError> {
        let _lock = self.lock()?;
        let Some(live) = Manifest::read_any(&self.live) else {
            return Ok(0);
        };
        let stage = &self.stage;
        let fail =
            |what: &str, p: &Path| RenderError::io(format!("could not {what} {}", p.display()));
        // In place, file by file, where the staging folder says what it holds: most of a site
        // is one folder per page, and making those again costs more than the files themselves.
        let have = match Manifest::read_any(stage) {
            Some(m) => m.files,
            None => {
                if stage.symlink_metadata().is_ok() {
                    std::fs::remove_dir_all(stage).map_err(fail("clear", stage))?;
                }
                std::fs::create_dir(stage).map_err(fail("create", stage))?;
                BTreeMap::new()
            }
        };
        remove_if_exists(&stage.join(MANIFEST)).map_err(fail("update", stage))?;
        let linked = AtomicUsize::new(0);
        live.files.par_iter().try_for_each(|(path, key)| {
            if have.get(path) == Some(key) {
                return Ok(());
            }
            let (from, to) = (self.live.join(path), stage.join(path));
            remove_if_exists(&to).map_err(fail("replace", &to))?;
            if let Some(dir) = to.parent() {
                std::fs::create_dir_all(dir).map_err(fail("create", dir))?;
            }
            std::fs::hard_link(&from, &to)
                .or_else(|_| std::fs::copy(&from, &to).map(|_| ()))
                .map_err(fail("copy the live file to", &to))?;
            linked.fetch_add(1, Ordering::Relaxed);
            Ok::<_, RenderError>(())
        })?;
        remove_files(stage, have.keys().filter(|p| !live.files.contains_key(*p)))?;
        for name in [NOTES, MANIFEST] {
            let (from, to) = (self.live.join(name), stage.join(name));
            std::fs::copy(&from, &to).map_err(fail("copy the manifest to", &to))?;
        }
        Ok(linked.into_inner())
    }

    /// Exchanges the staging folder and the live site.
    fn swap(&self) -> Result<(), RenderError> {
        let fail =
            |what: &str| RenderError::io(format!("could not {what} {}", self.live.display()));
        if self.live.symlink_metadata().is_err() {
            return std::fs::rename(&self.stage, &self.live).map_err(fail("publish"));
        }
        #[cfg(target_os = "linux")]
        {
            use rustix::fs::{CWD, RenameFlags, renameat_with};
            match renameat_with(CWD, &self.stage, CWD, &self.live, RenameFlags::EXCHANGE) {
                Ok(()) => return Ok(()),
                // Kernels and file systems without RENAME_EXCHANGE fall through to three renames.
                Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {}
                Err(e) => {
                    return Err(RenderError::Io {
                        context: format!("could not publish {}", self.live.display()),
                        source: e.into(),
                    });
                }
            }
        }
        // Not atomic: between the first two renames the site is missing (never half-written); a
        // crash there is repaired by `recover` on the next render.
        std::fs::rename(&self.live, &self.aside).map_err(fail("move aside"))?;
        std::fs::rename(&self.stage, &self.live).map_err(fail("publish"))?;
        std::fs::rename(&self.aside, &self.stage).map_err(fail("keep the previous build of"))?;
        Ok(())
    }
}

/// A build being published. The staging folder is prepared on the first write, so a render that
/// changes nothing touches nothing.
pub(crate) struct Stage<'s> {
    site: &'s SiteDir,
    stamp: &'s str,
    previous: Option<&'s Manifest>,
    texts: &'s Texts,
    /// The keys the staging folder holds (empty when it was made afresh); `None` if preparing it
    /// failed.
    have: OnceLock<Option<BTreeMap<String, String>>>,
    /// Folders already made in the staging folder.
    dirs: Mutex<HashSet<String>>,
    written: AtomicUsize,
}

impl Stage<'_> {
    /// The live build's key for a file, if it has that file.
    pub(crate) fn live_key(&self, path: &str) -> Option<&str> {
        self.previous
            .and_then(|m| m.files.get(path))
            .map(String::as_str)
    }

    /// The live build's memo and search index entry of each note at `paths`, which must be in
    /// path order (as the manifest's are): one walk over both, not a search per note.
    pub(crate) fn live_notes<'p>(
        &self,
        paths: impl Iterator<Item = &'p str>,
    ) -> Vec<Option<(&Arc<NoteMemo>, &Arc<RawValue>)>> {
        let Some(m) = self.previous else {
            return paths.map(|_| None).collect();
        };
        let mut live = m.notes.iter().zip(&m.entries).peekable();
        paths
            .map(|path| {
                while live.next_if(|((p, _), _)| p.as_str() < path).is_some() {}
                live.peek()
                    .filter(|((p, _), _)| p.as_str() == path)
                    .map(|((_, memo), entry)| (*memo, *entry))
            })
            .collect()
    }

    /// How many notes the live build published.
    pub(crate) fn live_note_count(&self) -> Option<usize> {
        self.previous.map(|m| m.notes.len())
    }

    fn prepared(&self) -> Result<&BTreeMap<String, String>, RenderError> {
        let have = self.have.get_or_init(|| match self.prepare() {
            Ok(have) => Some(have),
            Err(e) => {
                tracing::error!("{e}");
                None
            }
        });
        have.as_ref().ok_or_else(|| RenderError::Io {
            context: format!("could not prepare {}", self.site.stage.display()),
            source: io::Error::other("see the error logged before"),
        })
    }

    /// Makes the staging folder usable: its manifest's keys if it has a usable one (removed now,
    /// written back last), else an empty folder.
    fn prepare(&self) -> Result<BTreeMap<String, String>, RenderError> {
        let stage = &self.site.stage;
        let kept = kept_stages()
            .lock()
            .ok()
            .and_then(|mut k| k.remove(stage))
            .filter(|(id, stamp, _)| {
                stamp == self.stamp && file_id(&stage.join(MANIFEST)) == Some(*id)
            })
            .map(|(_, _, files)| files);
        if let Some(files) = kept.or_else(|| Manifest::read(stage, self.stamp).map(|m| m.files)) {
            remove_if_exists(&stage.join(MANIFEST)).map_err(RenderError::io(format!(
                "could not update {}",
                stage.display()
            )))?;
            return Ok(files);
        }
        if stage.symlink_metadata().is_ok() {
            std::fs::remove_dir_all(stage).map_err(RenderError::io(format!(
                "could not clear {}",
                stage.display()
            )))?;
        }
        std::fs::create_dir(stage).map_err(RenderError::io(format!(
            "could not create {}",
            stage.display()
        )))?;
        Ok(BTreeMap::new())
    }

    /// Puts a file into the staging folder unless it already holds it with this key. The file is
    /// replaced, never modified in place (it may be a hard link shared with the live site).
    pub(crate) fn put(&self, path: &str, key: &str, body: &Body) -> Result<(), PublishError> {
        let have = self.prepared()?;
        if matches!(body, Body::Staged) || have.get(path).map(String::as_str) == Some(key) {
            return Ok(());
        }
        if let Some((dir, _)) = path.rsplit_once('/') {
            self.make_dir(dir)?;
        }
        let target = self.site.stage.join(path);
        let fail = |what: &str| RenderError::io(format!("could not {what} {}", target.display()));
        if !have.is_empty() {
            remove_if_exists(&target).map_err(fail("replace"))?;
        }
        match body {
            Body::Bytes(bytes) => std::fs::write(&target, bytes).map_err(fail("write"))?,
            Body::Staged => {}
            Body::Kept => {
                let from = self.site.live.join(path);
                if from.symlink_metadata().is_err() {
                    return Err(PublishError::Stale);
                }
                std::fs::hard_link(&from, &target)
                    .or_else(|_| std::fs::copy(&from, &target).map(|_| ()))
                    .map_err(fail("copy the unchanged file to"))?;
            }
            Body::Attachment(vault_path) => match self.texts.file_path(vault_path) {
                // Copied, never linked: an edit to the vault's file must not change the live site.
                Some(src) => {
                    if src.symlink_metadata().is_ok_and(|m| m.is_file()) {
                        std::fs::copy(&src, &target).map_err(fail("copy an attachment to"))?;
                    }
                }
                None => {
                    if let Some(bytes) = self.texts.bytes(vault_path) {
                        std::fs::write(&target, bytes).map_err(fail("write"))?;
                    }
                }
            },
        }
        self.written.fetch_add(1, Ordering::Relaxed);
        crate::fault::point("render_file");
        Ok(())
    }

    fn make_dir(&self, dir: &str) -> Result<(), RenderError> {
        if self.dirs.lock().map(|d| d.contains(dir)).unwrap_or(false) {
            return Ok(());
        }
        let full = self.site.stage.join(dir);
        // A file may stand where a folder is now wanted (a page turned into a folder's page) —
        // not in a staging folder made afresh.
        let fresh = self
            .have
            .get()
            .is_some_and(|h| h.as_ref().is_some_and(BTreeMap::is_empty));
        let mut probe = Some(full.as_path()).filter(|_| !fresh);
        while let Some(p) = probe.filter(|p| *p != self.site.stage) {
            if p.symlink_metadata().is_ok_and(|m| !m.is_dir()) {
                remove_if_exists(p).map_err(RenderError::io(format!(
                    "could not replace {}",
                    p.display()
                )))?;
            }
            probe = p.parent();
        }
        std::fs::create_dir_all(&full).map_err(RenderError::io(format!(
            "could not create {}",
            full.display()
        )))?;
        if let Ok(mut d) = self.dirs.lock() {
            d.insert(dir.to_owned());
        }
        Ok(())
    }

    /// Completes the build: `files` is every file of it with its key and where its bytes come
    /// from (files already put are skipped by key). When nothing differs from the live build,
    /// nothing is written at all.
    pub(crate) fn finish(
        mut self,
        files: &[OutFile],
        manifest: &mut Manifest,
    ) -> Result<Outcome, PublishError> {
        let count = files.len();
        if self.have.get().is_none()
            && let Some(prev) = self.previous
            && prev.files.len() == count
            && files
                .iter()
                .all(|f| prev.files.get(&f.path) == Some(&f.key))
            && prev.notes == manifest.notes
            && self.site.live.is_dir()
        {
            // The memos are the live ones, and so is the notes file the manifest names.
            manifest.notes_sha = prev.notes_sha.clone();
            // Same site from content the manifest does not know yet (a touched file, a rebuilt
            // index): record it, so the next render can tell at once that nothing changed.
            if prev.source != manifest.source
                || prev.summary != manifest.summary
                || prev.index != manifest.index
            {
                // Only the manifest is rewritten, in place, atomically.
                let json = serde_json::to_vec(&*manifest).map_err(|e| RenderError::Io {
                    context: "could not write the build manifest".into(),
                    source: io::Error::other(e),
                })?;
                crate::vault::fsutil::atomic_write(&self.site.live.join(MANIFEST), &json, false)
                    .map_err(RenderError::io(format!(
                        "could not update {}",
                        self.site.live.join(MANIFEST).display()
                    )))?;
            }
            return Ok(Outcome {
                written: 0,
                removed: 0,
                files: count,
                changed: false,
            });
        }
        let have = self.prepared()?;
        files
            .par_iter()
            .try_for_each(|f| self.put(&f.path, &f.key, &f.body))?;

        let wanted: HashSet<&str> = files.iter().map(|f| f.path.as_str()).collect();
        let stage = &self.site.stage;
        let removed = remove_files(stage, have.keys().filter(|p| !wanted.contains(p.as_str())))?;
        manifest.write(stage, false)?;
        crate::fault::point("render_swap");
        self.site.swap()?;
        super::drop_later(self.have.take());
        Ok(Outcome {
            written: self.written.load(Ordering::Relaxed),
            removed,
            files: count,
            changed: true,
        })
    }
}

use crate::hex;

/// Removes the files at `paths` under `dir`, then the folders that left empty (deepest first; a
/// folder that still holds something stays). Returns how many files were named.
fn remove_files<'p>(
    dir: &Path,
    paths: impl Iterator<Item = &'p String>,
) -> Result<usize, RenderError> {
    let mut removed = 0;
    let mut emptied: BTreeSet<PathBuf> = BTreeSet::new();
    for path in paths {
        let full = dir.join(path);
        remove_if_exists(&full).map_err(RenderError::io(format!(
            "could not remove {}",
            full.display()
        )))?;
        removed += 1;
        emptied.extend(
            full.ancestors()
                .skip(1)
                .take_while(|d| *d != dir)
                .map(Path::to_path_buf),
        );
    }
    for d in emptied.iter().rev() {
        let _ = std::fs::remove_dir(d);
    }
    Ok(removed)
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_json_is_serde_json_s_own() {
        let memo = |i: usize| NoteMemo {
            title: format!("Note \"{i}\" ü"),
            date: i.is_multiple_of(2).then(|| "2026-05-01".to_owned()),
            backlinks: vec![i as u32],
            attachments: vec![format!("a/{i}.png")],
            ..NoteMemo::default()
        };
        for n in [0, 1, 2047, 2048, 2049, 5000] {
            let notes: BTreeMap<String, Arc<NoteMemo>> = (0..n)
                .map(|i| (format!("dir/n{i:05}.md"), Arc::new(memo(i))))
                .collect();
            assert_eq!(
                notes_json(&notes).unwrap(),
                serde_json::to_vec(&notes).unwrap(),
                "{n} notes"
            );
        }
    }

    #[test]
    fn kept_manifests_are_used_until_their_files_are_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let site = SiteDir::open(dir.path(), "paper").unwrap();
        std::fs::create_dir_all(site.live_dir()).unwrap();
        std::fs::write(site.live_dir().join(SEARCH_INDEX), "[]").unwrap();
        let mut on_disk = Manifest::new("stamp".into());
        on_disk.source = "on disk".into();
        on_disk.write(site.live_dir(), true).unwrap();
        assert_eq!(site.live_manifest("stamp").unwrap().source, "on disk");

        let mut kept = site.live_manifest("stamp").unwrap();
        kept.source = "kept".into();
        site.keep(kept.clone());
        assert_eq!(site.live_manifest("stamp").unwrap().source, "kept");
        // Taken by that read: the next one reads the file again.
        assert_eq!(site.live_manifest("stamp").unwrap().source, "on disk");

        // Another stamp's build is not used, kept or not.
        site.keep(kept.clone());
        assert!(site.live_manifest("other").is_none());

        // A file the manifest is read with was removed by hand: read back (and found unusable,
        // so the next render builds the site again).
        site.keep(kept.clone());
        std::fs::remove_file(site.live_dir().join(SEARCH_INDEX)).unwrap();
        assert!(site.live_manifest("stamp").is_none());
        std::fs::write(site.live_dir().join(SEARCH_INDEX), "[]").unwrap();

        // Released (an idle daemon): read back.
        site.keep(kept.clone());
        release_kept();
        assert_eq!(site.live_manifest("stamp").unwrap().source, "on disk");

        // Another writer replaced the manifest: the kept copy is stale.
        site.keep(kept);
        on_disk.source = "rewritten".into();
        on_disk.write(site.live_dir(), true).unwrap();
        assert_eq!(site.live_manifest("stamp").unwrap().source, "rewritten");

        // The same for the staging folder's keys (in this test too: `release_kept` is global).
        let texts = Texts::WorkTree(dir.path().to_path_buf());
        let prepared = |stamp: &str| site.stage(stamp, None, &texts).prepare().unwrap();
        let files = |key: &str| Files::from([("index.html".to_owned(), key.to_owned())]);
        let mut staged = Manifest::new("stamp".into());
        staged.files = files("on disk");
        let stage_dir = dir.path().join(".paper.next");
        std::fs::create_dir_all(&stage_dir).unwrap();
        staged.write(&stage_dir, false).unwrap();
        site.keep_staged("stamp".into(), files("kept"));
        assert_eq!(prepared("stamp"), files("kept"));
        // Preparing took the manifest out of the folder: with nothing kept, it starts empty.
        assert!(prepared("stamp").is_empty());

        // Another stamp's keys are not used; a staging manifest written since is read instead.
        staged.write(&stage_dir, false).unwrap();
        site.keep_staged("other".into(), files("kept"));
        assert_eq!(prepared("stamp"), files("on disk"));
        staged.write(&stage_dir, false).unwrap();
        site.keep_staged("stamp".into(), files("kept"));
        staged.files = files("rewritten");
        std::thread::sleep(std::time::Duration::from_millis(10));
        staged.write(&stage_dir, false).unwrap();
        assert_eq!(prepared("stamp"), files("rewritten"));
    }
}
