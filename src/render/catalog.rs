//! What a render works from: every note (metadata and text), task, attachment and link of the
//! content being rendered, and which of it is published.
//!
//! Two sources give the same [`Catalog`]: the work tree, through the task index (brought up to date
//! first, so nothing is parsed twice), and a commit, straight from Git objects (`render --ref`), parsed
//! here with the same functions the index uses.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use globset::{Glob, GlobSet, GlobSetBuilder};
use rayon::prelude::*;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::RenderError;
use super::pages::Folder;
use super::url::{self, SitePath};
use crate::git::Oid;
use crate::index::{CatalogNote, Index, Resolver, TaskView, describe_note, is_content_path};
use crate::markdown::LinkKind;
use crate::vault::{Config, Vault};

/// Top-level site paths quire's own pages use; notes and folders whose URL would take one of them
/// are not published (and said so).
pub(crate) const RESERVED_PAGES: &[&str] =
    &["tags", "tasks", "agenda", "calendar", "missions", "static"];

/// Whether a site path lies under one of quire's own top-level pages.
pub(crate) fn reserved(page: &SitePath) -> bool {
    let first = page.as_str().split('/').next().unwrap_or("");
    RESERVED_PAGES.contains(&first)
}

/// Where note texts and attachments come from.
pub(crate) enum Texts {
    /// Files under the vault root.
    WorkTree(PathBuf),
    /// Blobs of a commit, by vault path.
    Blobs(HashMap<String, (Oid, Vec<u8>)>),
}

impl Texts {
    /// The text of the note at `path` (invalid UTF-8 replaced).
    pub(crate) fn text(&self, path: &str) -> Option<String> {
        let bytes = match self {
            Texts::WorkTree(root) => std::fs::read(root.join(path)).ok()?,
            Texts::Blobs(map) => map.get(path)?.1.clone(),
        };
        Some(
            String::from_utf8(bytes)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        )
    }

    /// What identifies the content of the attachment at `path` without reading it: its blob id, or
    /// its size and modification time in the work tree. `None` when it is missing or is not a
    /// regular file (a symlink is never followed out of the vault).
    pub(crate) fn attachment_key(&self, path: &str) -> Option<String> {
        match self {
            Texts::WorkTree(root) => work_tree_file_key(root, path),
            Texts::Blobs(map) => map.get(path).map(|(id, _)| format!("blob:{id}")),
        }
    }

    /// The path of an attachment in the work tree, to copy from (work tree only).
    pub(crate) fn file_path(&self, path: &str) -> Option<PathBuf> {
        match self {
            Texts::WorkTree(root) => Some(root.join(path)),
            Texts::Blobs(_) => None,
        }
    }

    /// An attachment's bytes.
    pub(crate) fn bytes(&self, path: &str) -> Option<Vec<u8>> {
        match self {
            Texts::WorkTree(root) => {
                let full = root.join(path);
                // Never read through a symlink: the vault's own file, or nothing.
                if !std::fs::symlink_metadata(&full).ok()?.file_type().is_file() {
                    return None;
                }
                std::fs::read(full).ok()
            }
            Texts::Blobs(map) => map.get(path).map(|(_, b)| b.clone()),
        }
    }
}

/// The key of an attachment in the work tree: its size and modification time (`None` when it is
/// missing or not a regular file).
pub(crate) fn work_tree_file_key(root: &std::path::Path, path: &str) -> Option<String> {
    let meta = std::fs::symlink_metadata(root.join(path)).ok()?;
    if !meta.file_type().is_file() {
        return None;
    }
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    Some(format!("file:{}:{mtime}", meta.len()))
}

/// A published note, with where it is published.
#[derive(Debug, Clone)]
pub(crate) struct Published {
    /// Shared with the daemon's warm copy, so a render does not copy every note.
    pub(crate) note: Arc<CatalogNote>,
    pub(crate) page: SitePath,
    /// `YYYY-MM-DD` from front matter `updated`, `modified`, `date` or `created`, if any.
    pub(crate) date: Option<String>,
}

/// A link as the index stores it, and where it resolves to now.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct LinkFact {
    pub(crate) kind: LinkKind,
    pub(crate) target: String,
    pub(crate) resolved: Option<String>,
}

impl From<crate::index::NoteLinkResolved> for LinkFact {
    fn from(l: crate::index::NoteLinkResolved) -> Self {
        Self {
            kind: l.kind,
            target: l.target,
            resolved: l.resolved,
        }
    }
}

/// Every note's links (vault path, links in order), as read.
type Links = Vec<(String, Arc<Vec<LinkFact>>)>;

/// A map by vault path. A render looks notes up by path tens of thousands of times, and SipHash
/// (std's) was a visible part of that; foldhash is several times faster on short keys and still
/// randomly seeded per map. The keys are the vault's own note paths, one per note.
pub(crate) type PathMap<V> = HashMap<String, V, foldhash::fast::RandomState>;

/// Everything a render needs.
pub(crate) struct Catalog {
    /// Published notes, by vault path.
    pub(crate) notes: Vec<Published>,
    /// Where each published note is in `notes`.
    positions: PathMap<usize>,
    /// Notes not published, with why (excluded, draft, URL taken).
    pub(crate) unpublished: BTreeMap<String, String>,
    /// Content hashes of every note, so a page knows when a note it embeds changed.
    pub(crate) hashes: PathMap<Vec<u8>>,
    /// Tasks of published notes, by path and line (shared like the notes). Always in path order:
    /// [`Self::tasks_of`] and the patch rely on it.
    pub(crate) tasks: Vec<Arc<TaskView>>,
    /// Every attachment of the content.
    pub(crate) attachments: BTreeSet<String>,
    /// Backlinks: target vault path → the published notes linking to it (positions in `notes`),
    /// in path order.
    pub(crate) backlinks: PathMap<Vec<u32>>,
    /// For each published note with links: a digest of where each of them leads now (kind,
    /// target, resolution, whether that note is published) — what its HTML depends on besides its
    /// own text.
    pub(crate) link_digests: PathMap<[u8; 32]>,
    /// For each published note that transcludes published notes: those notes.
    pub(crate) embeds: PathMap<Vec<String>>,
    /// The face ([`super::pages::face`]) of each published note, in the order of `notes`.
    faces: Vec<String>,
    pub(crate) resolver: Arc<Resolver>,
    pub(crate) texts: Texts,
    excluded: Arc<GlobSet>,
    /// The `publish.exclude` globs `excluded` was made from.
    exclude: Vec<String>,
    /// The folders of the published notes, made on first use (a patched catalog keeps them: the
    /// same notes are published where they were).
    folders: OnceLock<BTreeMap<String, Folder>>,
    /// Listing pages' keys at the last build of each stamp, for the next build from this catalog.
    pub(crate) page_memos: std::sync::Mutex<HashMap<String, super::pages::PageMemos>>,
    /// How many listing pages' keys came from there (for tests and logs).
    pub(crate) page_memo_hits: std::sync::atomic::AtomicUsize,
    /// How many notes' page keys came from there.
    pub(crate) note_key_hits: std::sync::atomic::AtomicUsize,
}

impl Catalog {
    /// The work tree's content, through its index (as it is: the caller brought it up to date).
    /// Read through `index` when given (a handle that has just updated the index).
    pub(crate) fn from_work_tree(
        vault: &Vault,
        config: &Config,
        index: Option<Index>,
    ) -> Result<Arc<Self>, RenderError> {
        // A copy kept by nobody: read whole, then handed over.
        Self::from_warm_through(vault, config, &mut WarmCatalog::default(), index)
    }

    /// The work tree's content, as [`Self::from_work_tree`] reads it, but from `warm`: what it
    /// holds from an earlier read is brought up to date with only the notes the index changed
    /// since, instead of reading every note, task and link again.
    ///
    /// When no note or attachment came or went and no aliases changed, the catalog the last call
    /// made (if nobody holds it any more) is brought up to date note by note instead of being made
    /// again: what one note contributes to it does not depend on the other notes then.
    pub(crate) fn from_warm(
        vault: &Vault,
        config: &Config,
        warm: &mut WarmCatalog,
    ) -> Result<Arc<Self>, RenderError> {
        Self::from_warm_through(vault, config, warm, None)
    }

    /// [`Self::from_warm`], through `index` when given (a handle that has just updated it).
    pub(crate) fn from_warm_through(
        vault: &Vault,
        config: &Config,
        warm: &mut WarmCatalog,
        index: Option<Index>,
    ) -> Result<Arc<Self>, RenderError> {
        let index = match index {
            Some(index) => index,
            None => Index::open(vault)?,
        };
        Self::through(vault, config, warm, &index)
    }

    /// [`Self::from_warm`], through an open index.
    fn through(
        vault: &Vault,
        config: &Config,
        warm: &mut WarmCatalog,
        index: &Index,
    ) -> Result<Arc<Self>, RenderError> {
        // Taken first: whatever fails below, a catalog that missed a catch-up is never patched.
        let last = warm.last.take();
        let caught = warm.catch_up(index)?;
        let mut last = last.and_then(Arc::into_inner);
        if let Some(changed) = caught
            && let Some(mut catalog) = last.take_if(|c| c.exclude == config.publish.exclude)
        {
            if catalog.patch(warm, &changed) {
                warm.patched += 1;
                tracing::debug!(notes = changed.len(), "patched the last catalog");
                let catalog = Arc::new(catalog);
                warm.last = Some(catalog.clone());
                return Ok(catalog);
            }
            last = Some(catalog);
        }
        let resolver = match &warm.resolver {
            Some(r) => r.clone(),
            None => Arc::new(index.resolver()?),
        };
        // Shared, not copied: the render's catalog and the warm copy hold the same notes.
        let notes = warm.notes.values().cloned().collect();
        let tasks = warm.tasks.values().flatten().cloned().collect();
        let links = warm
            .links
            .iter()
            .filter(|(_, facts)| !facts.is_empty())
            .map(|(p, facts)| (p.clone(), facts.clone()))
            .collect();
        let catalog = Self::assemble(
            config,
            notes,
            tasks,
            warm.attachments.clone(),
            resolver,
            links,
            Texts::WorkTree(vault.root().to_path_buf()),
            &mut warm.derived,
            last.as_ref(),
        )?;
        // What the last catalog's builds keyed pages from holds for this one too: the memos
        // name the objects a page shows, which the two catalogs share where they are the same.
        if let Some(last) = last
            && let Ok(memos) = last.page_memos.into_inner()
            && let Ok(mut m) = catalog.page_memos.lock()
        {
            *m = memos;
        }
        let catalog = Arc::new(catalog);
        warm.last = Some(catalog.clone());
        Ok(catalog)
    }

    /// The content of a commit: every file of its tree (vault path, blob id, bytes).
    pub(crate) fn from_files(
        config: &Config,
        files: Vec<(String, Oid, Vec<u8>)>,
    ) -> Result<Arc<Self>, RenderError> {
        let files: HashMap<String, (Oid, Vec<u8>)> = files
            .into_iter()
            .filter(|(p, _, _)| is_content_path(p))
            .map(|(p, id, b)| (p, (id, b)))
            .collect();
        let mut note_paths: Vec<&String> = files.keys().filter(|p| is_note(p)).collect();
        note_paths.sort();
        type Described = (CatalogNote, Vec<TaskView>, Vec<(LinkKind, String, usize)>);
        let described: Vec<Described> = note_paths
            .par_iter()
            .map(|p| {
                let bytes = &files[*p].1;
                let (note, tasks) = describe_note(p, bytes);
                let text = String::from_utf8_lossy(bytes);
                let links = crate::markdown::parse_note("", &text)
                    .links
                    .into_iter()
                    .map(|l| (l.kind, l.target, l.line))
                    .collect();
                (note, tasks, links)
            })
            .collect();
        let attachments: BTreeSet<String> = files.keys().filter(|p| !is_note(p)).cloned().collect();
        let names: Vec<(String, Vec<String>)> = described
            .iter()
            .map(|(n, _, _)| (n.path.clone(), n.aliases.clone()))
            .collect();
        let resolver = Resolver::new(&names, &attachments.iter().cloned().collect::<Vec<_>>());
        let mut notes = Vec::new();
        let mut tasks = Vec::new();
        let mut links: Links = Vec::new();
        for (note, t, l) in described {
            let facts: Vec<LinkFact> = l
                .into_iter()
                .map(|(kind, target, _)| LinkFact {
                    resolved: resolver.resolve(&note.path, kind, &target),
                    kind,
                    target,
                })
                .collect();
            if !facts.is_empty() {
                links.push((note.path.clone(), Arc::new(facts)));
            }
            tasks.extend(t.into_iter().map(Arc::new));
            notes.push(Arc::new(note));
        }
        Self::assemble(
            config,
            notes,
            tasks,
            attachments,
            Arc::new(resolver),
            links,
            Texts::Blobs(files),
            &mut Derived::default(),
            None,
        )
        .map(Arc::new)
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        config: &Config,
        notes: Vec<Arc<CatalogNote>>,
        tasks: Vec<Arc<TaskView>>,
        attachments: BTreeSet<String>,
        resolver: Arc<Resolver>,
        links: Links,
        texts: Texts,
        derived: &mut Derived,
        last: Option<&Catalog>,
    ) -> Result<Self, RenderError> {
        let last = last.filter(|l| l.exclude == config.publish.exclude);
        let excluded = match last {
            Some(l) => l.excluded.clone(),
            None => Arc::new(exclusions(&config.publish.exclude)?),
        };
        let hashes: PathMap<Vec<u8>> = notes
            .iter()
            .map(|n| (n.path.clone(), n.hash.clone()))
            .collect();
        // Path order: where two notes would have the same page, the first keeps it.
        let mut notes = notes;
        notes.sort_by(|a, b| a.path.cmp(&b.path));
        let mut published: Vec<Published> = Vec::with_capacity(notes.len());
        let mut unpublished = BTreeMap::new();
        for note in notes {
            // A note the last catalog published is published again, where it was, when it is
            // the same object under the same exclusions: whether a note is withheld, its page and
            // its date depend on nothing else. (A catalog a failed patch left half-updated holds
            // only notes it placed this way.)
            let placed = last
                .and_then(|l| l.note(&note.path))
                .filter(|p| Arc::ptr_eq(&p.note, &note));
            if let Some(p) = placed {
                published.push(p.clone());
                continue;
            }
            if let Some(why) = withheld(&excluded, &note) {
                unpublished.insert(note.path.clone(), why);
                continue;
            }
            let page = url::note_page(&note.path);
            let first = page.as_str().split('/').next().unwrap_or("");
            if RESERVED_PAGES.contains(&first) {
                unpublished.insert(
                    note.path.clone(),
                    format!("its URL `{}` is the built-in `{first}/` page's; rename the note or its folder", page.as_str()),
                );
                continue;
            }
            if page == SitePath::root() {
                unpublished.insert(
                    note.path.clone(),
                    "its URL would be the site's front page".into(),
                );
                continue;
            }
            let date = note_date(&note.front_matter);
            published.push(Published { note, page, date });
        }
        let mut taken: HashMap<&str, usize, foldhash::fast::RandomState> =
            HashMap::with_capacity_and_hasher(published.len(), Default::default());
        let mut clashes = Vec::new();
        for (i, p) in published.iter().enumerate() {
            if let Some(&first) = taken.get(p.page.as_str()) {
                clashes.push((i, first));
            } else {
                taken.insert(p.page.as_str(), i);
            }
        }
        drop(taken);
        for &(i, first) in clashes.iter().rev() {
            let why = format!(
                "its URL `{}` is already `{}`'s; rename one of them",
                published[i].page.as_str(),
                published[first].note.path
            );
            unpublished.insert(published.remove(i).note.path.clone(), why);
        }
        let notes = published;
        let positions: PathMap<usize> = notes
            .iter()
            .enumerate()
            .map(|(i, p)| (p.note.path.clone(), i))
            .collect();
        // In path order, as the notes are (faces find a note's tasks by binary search).
        debug_assert!(tasks.is_sorted_by(|a, b| a.path <= b.path));
        let tasks: Vec<Arc<TaskView>> = tasks
            .into_iter()
            .filter(|t| positions.contains_key(t.path.as_str()))
            .collect();
        let is_published = |p: &str| positions.contains_key(p);

        // A digest depends on the links (a list that is replaced, never changed, while the
        // memo holds it) and on which notes are published: with the same unpublished notes and
        // the same list, the memo's digest stands. (A list that leads to a note that came or went
        // is a new list: the warm copy replaces every list whose links resolve anew.)
        let basis = {
            use std::hash::{Hash as _, Hasher as _};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            for path in unpublished.keys() {
                path.hash(&mut h);
            }
            h.finish()
        };
        if derived.basis != Some(basis) {
            derived.digests.clear();
        }
        let memo = &derived.digests;
        // The digests are the costly part (a hash per note), and independent per note.
        let links: Vec<(String, Arc<Vec<LinkFact>>, [u8; 32])> = links
            .into_par_iter()
            .filter(|(source, _)| positions.contains_key(source))
            .map(|(source, facts)| {
                let digest = match memo.get(&source) {
                    Some((known, digest)) if Arc::ptr_eq(known, &facts) => *digest,
                    _ => link_digest(
                        facts
                            .iter()
                            .map(|f| (f.kind, f.target.as_str(), f.resolved.as_deref())),
                        &is_published,
                    ),
                };
                (source, facts, digest)
            })
            .collect();
        derived.basis = Some(basis);
        derived.digests = links
            .iter()
            .map(|(source, facts, digest)| (source.clone(), (facts.clone(), *digest)))
            .collect();
        let mut backlinks: PathMap<Vec<u32>> =
            PathMap::with_capacity_and_hasher(notes.len(), Default::default());
        let mut link_digests: PathMap<[u8; 32]> =
            PathMap::with_capacity_and_hasher(links.len(), Default::default());
        let mut embeds: PathMap<Vec<String>> = PathMap::default();
        for (source, facts, digest) in links {
            let from = positions[&source];
            for f in facts.iter() {
                let Some(r) = &f.resolved else { continue };
                if f.kind == LinkKind::Embed && is_note(r) && is_published(r) {
                    embeds.entry(source.clone()).or_default().push(r.clone());
                }
                if *r != source && !f.target.is_empty() {
                    // Most targets are linked many times: the path is copied once, not per link.
                    match backlinks.get_mut(r.as_str()) {
                        Some(list) => list.push(from as u32),
                        None => {
                            backlinks.insert(r.clone(), vec![from as u32]);
                        }
                    }
                }
            }
            link_digests.insert(source, digest);
        }
        for list in backlinks.values_mut() {
            list.sort_unstable();
            list.dedup();
        }

        // Faces: a note's own data, its tasks (read with it, so a new note object whenever they
        // change) and its link digest.
        let faces: Vec<String> = notes
            .par_iter()
            .map(|p| {
                let path = p.note.path.as_str();
                let digest = link_digests.get(path);
                match derived.faces.get(path) {
                    Some((note, known, face))
                        if Arc::ptr_eq(note, &p.note) && known.as_ref() == digest =>
                    {
                        face.clone()
                    }
                    _ => {
                        let own: Vec<&TaskView> = tasks[tasks_range(&tasks, path)]
                            .iter()
                            .map(|t| &**t)
                            .collect();
                        super::pages::face(&p.note, &own, digest)
                    }
                }
            })
            .collect();
        derived.faces = notes
            .iter()
            .zip(&faces)
            .map(|(p, face)| {
                (
                    p.note.path.clone(),
                    (
                        p.note.clone(),
                        link_digests.get(&p.note.path).copied(),
                        face.clone(),
                    ),
                )
            })
            .collect();
        Ok(Self {
            notes,
            positions,
            unpublished,
            hashes,
            tasks,
            attachments,
            backlinks,
            link_digests,
            embeds,
            faces,
            resolver,
            texts,
            excluded,
            exclude: config.publish.exclude.clone(),
            folders: OnceLock::new(),
            page_memos: Default::default(),
            page_memo_hits: Default::default(),
            note_key_hits: Default::default(),
        })
    }

    /// Brings the catalog up to date with `warm` after the notes at `changed` were read again,
    /// when no note or attachment came or went and no aliases changed (so every other note's links
    /// lead where they led). Returns false, leaving the catalog half-updated, when a note's
    /// publication changed: the caller then assembles a new one.
    fn patch(&mut self, warm: &mut WarmCatalog, changed: &[String]) -> bool {
        for path in changed {
            let Some(note) = warm.notes.get(path) else {
                return false;
            };
            let position = self.positions.get(path).copied();
            match (withheld(&self.excluded, note), position) {
                (Some(why), None) => {
                    self.unpublished.insert(path.clone(), why);
                    self.hashes.insert(path.clone(), note.hash.clone());
                    continue;
                }
                (None, Some(_)) => {}
                _ => return false,
            }
            let Some(i) = position else { return false };
            let from = i as u32;
            self.hashes.insert(path.clone(), note.hash.clone());
            let date = note_date(&note.front_matter);
            let page = self.notes[i].page.clone();
            self.notes[i] = Published {
                note: note.clone(),
                page,
                date,
            };

            // Its tasks, where path order puts them.
            let own: &[Arc<TaskView>] = warm.tasks.get(path).map_or(&[], Vec::as_slice);
            let range = self.task_range(path);
            self.tasks.splice(range, own.iter().cloned());

            // Its links: what it links to, transcludes, and where that leads.
            for list in self.backlinks.values_mut() {
                list.retain(|&s| s != from);
            }
            self.backlinks.retain(|_, list| !list.is_empty());
            self.embeds.remove(path);
            self.link_digests.remove(path);
            warm.derived.digests.remove(path);
            let facts = warm.links.get(path).filter(|f| !f.is_empty()).cloned();
            let positions = &self.positions;
            let is_published = |p: &str| positions.contains_key(p);
            let mut digest = None;
            if let Some(facts) = facts {
                for f in facts.iter() {
                    let Some(r) = &f.resolved else { continue };
                    if f.kind == LinkKind::Embed && is_note(r) && is_published(r) {
                        self.embeds.entry(path.clone()).or_default().push(r.clone());
                    }
                    if r != path && !f.target.is_empty() {
                        let list = self.backlinks.entry(r.clone()).or_default();
                        if let Err(at) = list.binary_search(&from) {
                            list.insert(at, from);
                        }
                    }
                }
                let d = link_digest(
                    facts
                        .iter()
                        .map(|f| (f.kind, f.target.as_str(), f.resolved.as_deref())),
                    &is_published,
                );
                self.link_digests.insert(path.clone(), d);
                warm.derived.digests.insert(path.clone(), (facts, d));
                digest = Some(d);
            }
            let tasks: Vec<&TaskView> = own.iter().map(|t| &**t).collect();
            let face = super::pages::face(note, &tasks, digest.as_ref());
            warm.derived
                .faces
                .insert(path.clone(), (note.clone(), digest, face.clone()));
            self.faces[i] = face;
        }
        true
    }

    /// The published notes linking to the note at `path` (positions in `notes`, in path order).
    pub(crate) fn backlinks_of(&self, path: &str) -> &[u32] {
        self.backlinks.get(path).map_or(&[], Vec::as_slice)
    }

    /// The folders of the published notes.
    pub(crate) fn folders(&self) -> &BTreeMap<String, Folder> {
        self.folders.get_or_init(|| {
            super::pages::folder_tree_of(self.notes.iter().map(|p| p.note.path.as_str()))
        })
    }

    /// Where the tasks of the note at `path` are (or would go) in `tasks`.
    pub(crate) fn task_range(&self, path: &str) -> std::ops::Range<usize> {
        tasks_range(&self.tasks, path)
    }

    /// The published note at `path`.
    pub(crate) fn note(&self, path: &str) -> Option<&Published> {
        self.positions.get(path).map(|&i| &self.notes[i])
    }

    /// The face of the published note at position `i` of `notes`.
    pub(crate) fn face_at(&self, i: usize) -> &str {
        self.faces.get(i).map_or("", String::as_str)
    }

    /// Whether the attachment at `path` may be copied into the site.
    pub(crate) fn attachment_allowed(&self, path: &str) -> bool {
        self.attachments.contains(path) && !self.excluded.is_match(path)
    }
}

/// The notes, tasks, links and attachments of a work tree as its index described them at one
/// generation, kept by a long-running process (the daemon) between renders. Reading all of it
/// from SQLite is most of a small render's time on a large vault; catching up is a few rows.
#[derive(Default)]
pub struct WarmCatalog {
    /// The index generation this reflects; `None` before the first read.
    state: Option<crate::index::IndexState>,
    notes: BTreeMap<String, Arc<CatalogNote>>,
    tasks: BTreeMap<String, Vec<Arc<TaskView>>>,
    links: BTreeMap<String, Arc<Vec<LinkFact>>>,
    attachments: BTreeSet<String>,
    derived: Derived,
    /// Resolves links among the notes and attachments of `state` (made again when they change).
    resolver: Option<Arc<Resolver>>,
    /// The catalog last made from this copy, to be patched by the next render.
    last: Option<Arc<Catalog>>,
    /// How many catalogs were patched rather than made afresh.
    patched: u64,
    /// The page-key memos of a released catalog, for the one made next.
    memos: Option<HashMap<String, super::pages::PageMemos>>,
}

/// What the last render derived from each note, for the next one to reuse where the note is the
/// same object: the warm copy replaces a note's `Arc` (and its tasks and links) whenever the index
/// re-read it, and holding the old ones here keeps their addresses from being reused.
#[derive(Default)]
pub(crate) struct Derived {
    /// A fingerprint of which notes were published when the digests were made.
    basis: Option<u64>,
    /// Link digests by note: the list they were made from, and the digest.
    digests: HashMap<String, (Arc<Vec<LinkFact>>, [u8; 32])>,
    /// Faces by note: the note and link digest they were made from, and the face.
    faces: HashMap<String, FaceMemo>,
}

/// A face, with the note and link digest it was made from.
type FaceMemo = (Arc<CatalogNote>, Option<[u8; 32]>, String);

impl WarmCatalog {
    /// Lets go of the catalog kept for the next render (its page-key memos are set aside), ahead
    /// of [`Self::remake`]. A long-running process going idle calls the two with its allocator's
    /// release of freed memory between them: the catalog of a busy period is spread over memory
    /// that every render in it left partly used, and made again at rest it fills a fraction of it.
    pub fn release(&mut self) {
        if let Some(last) = self.last.take().and_then(Arc::into_inner) {
            self.memos = last.page_memos.into_inner().ok();
        }
    }

    /// Makes the catalog the next render patches, from this copy alone, with the memos that
    /// [`Self::release`] set aside (they name objects this copy still holds).
    pub fn remake(&mut self, vault: &Vault) -> Result<(), RenderError> {
        self.last = None;
        let memos = self.memos.take();
        let catalog = Catalog::from_warm(vault, vault.config(), self)?;
        if let Some(memos) = memos
            && let Ok(mut m) = catalog.page_memos.lock()
        {
            *m = memos;
        }
        Ok(())
    }

    /// The resolver of this copy, if it resolves links as the index at `state` does: no note or
    /// attachment came or went, and no aliases changed, since the copy was brought up to date.
    pub(crate) fn resolver_for(&self, state: &crate::index::IndexState) -> Option<Arc<Resolver>> {
        let mine = self.state.as_ref()?;
        (mine.id == state.id && state.structure <= mine.generation)
            .then(|| self.resolver.clone())
            .flatten()
    }

    /// Brings the copy up to the index as it is now. Returns the notes read again, or `None` when
    /// everything was read, or notes or attachments came or went, or aliases changed.
    fn catch_up(&mut self, index: &Index) -> Result<Option<Vec<String>>, RenderError> {
        let now = index.state()?;
        let since = match &self.state {
            Some(s) if s.id == now.id && s.generation <= now.generation => s.generation,
            // A first read, or a rebuilt index: everything.
            _ => {
                let patched = self.patched;
                *self = Self {
                    patched,
                    ..Self::default()
                };
                self.read_all(index)?;
                self.state = Some(now);
                return Ok(None);
            }
        };
        if since == now.generation {
            return Ok(Some(Vec::new()));
        }
        // Notes or attachments came or went, or aliases changed: any link may lead elsewhere now.
        let structure = now.structure > since;
        // Until made again, no resolver: a failure below leaves none behind.
        let before = self.resolver.take();
        let resolver = match &before {
            Some(r) if !structure => r.clone(),
            _ => Arc::new(index.resolver()?),
        };
        if structure {
            let paths: std::collections::HashSet<String> =
                index.note_paths()?.into_iter().collect();
            self.notes.retain(|p, _| paths.contains(p));
            self.tasks.retain(|p, _| paths.contains(p));
            self.links.retain(|p, _| paths.contains(p));
            self.attachments = index.attachments()?.into_iter().collect();
        }
        let changed = index.changed_since(since)?;
        for path in &changed {
            let Some(note) = index.catalog_note(path)? else {
                self.notes.remove(path);
                self.tasks.remove(path);
                self.links.remove(path);
                continue;
            };
            self.notes.insert(path.clone(), Arc::new(note));
            let tasks = index.shared_tasks_of(path)?;
            self.tasks.insert(path.clone(), tasks);
            let facts = index
                .links_of(path, &resolver)?
                .into_iter()
                .map(LinkFact::from)
                .collect();
            self.links.insert(path.clone(), Arc::new(facts));
        }
        if structure {
            // Every list was resolved with `before`: only a link that looks up a name whose notes
            // or attachments changed can lead elsewhere now. Without `before` (a failed catch-up),
            // every link is looked at.
            let names = before.as_ref().map(|b| resolver.changed_names(b));
            self.links.par_iter_mut().for_each(|(source, facts)| {
                if let Some(names) = &names
                    && !facts
                        .iter()
                        .any(|f| Resolver::may_consult(&f.target, names))
                {
                    return;
                }
                let resolve = |f: &LinkFact| resolver.resolve(source, f.kind, &f.target);
                // Only a list that now leads elsewhere is new: what was derived from the others
                // (their digests, their notes' faces and page keys) stands. A render may still
                // share the old list, so it is replaced, not changed under it.
                if facts.iter().any(|f| resolve(f) != f.resolved) {
                    let now = facts
                        .iter()
                        .map(|f| LinkFact {
                            resolved: resolve(f),
                            ..f.clone()
                        })
                        .collect();
                    *facts = Arc::new(now);
                }
            });
        }
        tracing::debug!(
            changed = changed.len(),
            structure,
            "caught up with the index"
        );
        self.resolver = Some(resolver);
        self.state = Some(now);
        Ok((!structure).then_some(changed))
    }

    fn read_all(&mut self, index: &Index) -> Result<(), RenderError> {
        self.notes = index
            .catalog()?
            .into_iter()
            .map(|n| (n.path.clone(), Arc::new(n)))
            .collect();
        for t in index.all_tasks()? {
            // In path order: a note's tasks come together, and its path is copied once.
            match self.tasks.get_mut(t.path.as_str()) {
                Some(list) => list.push(t),
                None => {
                    self.tasks.insert(t.path.clone(), vec![t]);
                }
            }
        }
        self.attachments = index.attachments()?.into_iter().collect();
        // The resolver kept is the one these links were resolved with: a later catch-up looks
        // again only at links whose names changed since.
        let resolver = Arc::new(index.resolver()?);
        self.links = index
            .links_by_note(&resolver)?
            .into_iter()
            .map(|(source, list)| {
                (
                    source,
                    Arc::new(list.into_iter().map(LinkFact::from).collect()),
                )
            })
            .collect();
        self.resolver = Some(resolver);
        Ok(())
    }
}

/// Where the tasks of the note at `path` are in `tasks`, which is in path order.
fn tasks_range(tasks: &[Arc<TaskView>], path: &str) -> std::ops::Range<usize> {
    let start = tasks.partition_point(|t| t.path.as_str() < path);
    start..start + tasks[start..].partition_point(|t| t.path == path)
}

pub(crate) use crate::markdown::is_note_path as is_note;

/// A digest of where a note's links lead: each link's kind and target, what it resolves to, and
/// whether that note is published — what the note's HTML depends on besides its own text.
pub(crate) fn link_digest<'l>(
    links: impl Iterator<Item = (LinkKind, &'l str, Option<&'l str>)>,
    is_published: &dyn Fn(&str) -> bool,
) -> [u8; 32] {
    let mut h = Sha256::new();
    for (kind, target, resolved) in links {
        h.update([kind as u8]);
        h.update(target.as_bytes());
        h.update([0]);
        if let Some(r) = resolved {
            h.update(r.as_bytes());
            h.update([u8::from(is_published(r))]);
        }
        h.update([0xfe]);
    }
    h.finalize().into()
}

pub(crate) fn exclusions(globs: &[String]) -> Result<GlobSet, RenderError> {
    let mut b = GlobSetBuilder::new();
    for g in globs {
        let glob = Glob::new(g).map_err(|e| {
            RenderError::Config(format!("`[publish] exclude` glob `{g}` is not valid: {e}"))
        })?;
        b.add(glob);
    }
    b.build()
        .map_err(|e| RenderError::Config(format!("`[publish] exclude` globs: {e}")))
}

/// Why a note is not published, if it is not: excluded by a glob, a draft, or `publish: false`.
pub(crate) fn withheld(excluded: &GlobSet, note: &CatalogNote) -> Option<String> {
    if excluded.is_match(&note.path) {
        return Some("matches `[publish] exclude` in quire.toml".into());
    }
    let flag = |k: &str| match note.front_matter.get(k) {
        Some(Value::Bool(b)) => Some(*b),
        Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" => Some(true),
            "false" | "no" => Some(false),
            _ => None,
        },
        _ => None,
    };
    if flag("draft") == Some(true) {
        return Some("`draft: true` in its front matter".into());
    }
    if flag("publish") == Some(false) {
        return Some("`publish: false` in its front matter".into());
    }
    None
}

/// The date a note is filed under: front matter `updated`, `modified`, `date` or `created`.
pub(crate) fn note_date(fm: &serde_json::Map<String, Value>) -> Option<String> {
    ["updated", "modified", "date", "created"]
        .iter()
        .find_map(|k| {
            let s = fm.get(*k)?.as_str()?;
            let day = s.get(..10)?;
            ymd(day).map(|_| day.to_owned())
        })
}

/// The date `YYYY-MM-DD` (also as `chrono`'s `%Y-%m-%d` reads it, in its other spellings). The
/// fixed form, the one the index keeps, is read without a format parser: a build reads the date
/// of every dated task and note.
pub(crate) fn ymd(s: &str) -> Option<chrono::NaiveDate> {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| {
        b[r].iter().try_fold(0u32, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    if b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && let (Some(y), Some(m), Some(d)) = (digits(0..4), digits(5..7), digits(8..10))
    {
        return chrono::NaiveDate::from_ymd_opt(y as i32, m, d);
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use super::*;

    impl Catalog {
        /// Everything the catalog holds, in a stable order, to compare two of them.
        fn snapshot(&self) -> String {
            let mut out = String::new();
            for (p, face) in self.notes.iter().zip(&self.faces) {
                let _ = writeln!(out, "note {:?} {:?} {:?} {face}", p.note, p.page, p.date);
            }
            fn sorted<T: std::fmt::Debug>(items: impl Iterator<Item = T>) -> String {
                let mut lines: Vec<String> = items.map(|x| format!("{x:?}")).collect();
                lines.sort();
                lines.join("\n")
            }
            let _ = writeln!(out, "unpublished {:?}", self.unpublished);
            let _ = writeln!(out, "positions {}", sorted(self.positions.iter()));
            let _ = writeln!(out, "hashes {}", sorted(self.hashes.iter()));
            let _ = writeln!(out, "tasks {:?}", self.tasks);
            let _ = writeln!(out, "attachments {:?}", self.attachments);
            let _ = writeln!(out, "backlinks {}", sorted(self.backlinks.iter()));
            let _ = writeln!(out, "digests {}", sorted(self.link_digests.iter()));
            let _ = writeln!(out, "embeds {}", sorted(self.embeds.iter()));
            out
        }
    }

    fn write(vault: &Vault, path: &str, text: &str) {
        let full = vault.root().join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, text).unwrap();
        Index::open(vault).unwrap().update(false).unwrap();
    }

    /// The warm copy's catalog (patched where it can be) must equal one made from scratch.
    fn same_as_fresh(vault: &Vault, warm: &mut WarmCatalog) {
        let config = vault.config().clone();
        let warmed = Catalog::from_warm(vault, &config, warm).unwrap();
        let fresh = Catalog::from_work_tree(vault, &config, None).unwrap();
        assert_eq!(warmed.snapshot(), fresh.snapshot());
    }

    #[test]
    fn of_two_notes_with_one_page_the_first_in_path_order_keeps_it() {
        let (_dir, vault) = crate::workflow::temp_vault();
        write(&vault, "n/my-note.md", "# Lower\n");
        write(&vault, "n/x.md", "# X\n\n[[my-note]]\n");
        let mut warm = WarmCatalog::default();
        same_as_fresh(&vault, &mut warm);
        // Made while the last catalog published `n/my-note.md` there: it sorts after the new one.
        write(&vault, "n/My Note.md", "# Spaced\n");
        same_as_fresh(&vault, &mut warm);
        let catalog = Catalog::from_warm(&vault, &vault.config().clone(), &mut warm).unwrap();
        assert_eq!(
            catalog.unpublished.get("n/my-note.md").map(String::as_str),
            Some("its URL `n/my-note/` is already `n/My Note.md`'s; rename one of them")
        );
        assert_eq!(
            catalog.note("n/My Note.md").unwrap().page.as_str(),
            "n/my-note/"
        );
        assert!(catalog.note("n/x.md").is_some());
    }

    #[test]
    fn dates_are_read_as_chrono_reads_them() {
        for s in [
            "2026-05-01",
            "2024-02-29",
            "2026-02-29",
            "2026-13-01",
            "2026-00-10",
            "0000-01-01",
            "2026-5-1",
            "2026-05-1x",
            "+026-05-01",
            "2026/05/01",
            "",
            "2026-05-01T10:00",
        ] {
            assert_eq!(
                ymd(s),
                chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok(),
                "{s}"
            );
        }
    }

    #[test]
    fn a_patched_catalog_equals_one_made_afresh_and_a_publication_change_makes_one_afresh() {
        let (_dir, vault) = crate::workflow::temp_vault();
        write(
            &vault,
            "n/a.md",
            "# A\n\nSee [[b]] and ![[c]].\n\n- [ ] one 📅 2026-05-01\n",
        );
        write(
            &vault,
            "n/b.md",
            "---\nmission: m1\ntags: [x]\n---\n# B\n\n[[a]]\n",
        );
        write(&vault, "n/c.md", "# C\n\nText.\n\n- [ ] c task\n");
        write(&vault, "n/d.md", "---\ndraft: true\n---\n# D\n\n[[a]]\n");
        // After `a` in path order: a backlink list that `a` joins again stays in order.
        write(&vault, "n/f.md", "# F\n\n[[c]]\n");
        let mut warm = WarmCatalog::default();
        same_as_fresh(&vault, &mut warm);
        assert_eq!(warm.patched, 0, "the first catalog is read whole");

        // Edits that leave every note where it was and published as it was: patched.
        let edits = [
            (
                "n/a.md",
                "# A\n\nSee [[c]] only, no embed.\n\n- [ ] one 📅 2026-05-01\n- [x] two\n",
            ),
            (
                "n/b.md",
                "---\nmission: m2\ntags: [y, z]\nextra: 1\n---\n# B renamed\n\n[[a]] ![[c]]\n",
            ),
            ("n/c.md", "# C\n\nOther text, and no task.\n"),
            (
                "n/d.md",
                "---\ndraft: true\n---\n# D, still a draft\n\n[[b]]\n",
            ),
            ("n/a.md", "# A\n\nNo links at all.\n"),
        ];
        for (n, (path, text)) in edits.into_iter().enumerate() {
            write(&vault, path, text);
            same_as_fresh(&vault, &mut warm);
            assert_eq!(warm.patched, n as u64 + 1, "after editing {path}");
        }

        // A note turned into a draft, and a note that came: made afresh, and still equal.
        write(&vault, "n/b.md", "---\ndraft: true\n---\n# B\n\n[[a]]\n");
        same_as_fresh(&vault, &mut warm);
        write(&vault, "n/e.md", "# E\n\n[[a]] ![[c]]\n- [ ] e\n");
        same_as_fresh(&vault, &mut warm);
        assert_eq!(warm.patched, 5);

        // And patched again from the catalog made afresh.
        write(&vault, "n/c.md", "# C again\n\n- [ ] back\n");
        same_as_fresh(&vault, &mut warm);
        assert_eq!(warm.patched, 6);

        // A catalog still held elsewhere is not patched under its holder.
        let held = Catalog::from_warm(&vault, &vault.config().clone(), &mut warm).unwrap();
        assert_eq!(
            warm.patched, 7,
            "nothing new: the last catalog is used as it is"
        );
        write(&vault, "n/c.md", "# C held\n");
        same_as_fresh(&vault, &mut warm);
        assert_eq!(warm.patched, 7, "made afresh, since the last one is held");
        assert!(held.snapshot().contains("C again"));
        drop(held);

        // Names that come and go, each made afresh from links re-resolved only where a name
        // changed: a created note mends a broken link, an attachment another, an alias is gained,
        // a note of the same name nearer to the linking note wins, a deleted note breaks a link.
        write(
            &vault,
            "n/a.md",
            "# A\n\n[[g]] [[Zed]] [[h.png]] [x](../m/g.md)\n",
        );
        same_as_fresh(&vault, &mut warm);
        let steps: [(&str, Option<&str>); 5] = [
            ("m/g.md", Some("# G\n")),
            ("n/h.png", Some("png")),
            ("n/f.md", Some("---\naliases: [Zed]\n---\n# F\n")),
            ("n/g.md", Some("# G, nearer to a\n")),
            ("m/g.md", None),
        ];
        for (path, text) in steps {
            match text {
                Some(text) => write(&vault, path, text),
                None => {
                    std::fs::remove_file(vault.root().join(path)).unwrap();
                    Index::open(&vault).unwrap().update(false).unwrap();
                }
            }
            same_as_fresh(&vault, &mut warm);
        }
        // `n/a.md` (position 0) now reaches `f` by its alias, the nearer `g`, and the picture.
        let snapshot = Catalog::from_warm(&vault, &vault.config().clone(), &mut warm)
            .unwrap()
            .snapshot();
        for target in ["n/f.md", "n/g.md", "n/h.png"] {
            assert!(
                snapshot.contains(&format!("(\"{target}\", [0])")),
                "{target}: {snapshot}"
            );
        }
    }
}
