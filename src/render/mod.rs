//! Themed static sites (SPEC §6): the vault, or any commit of it, rendered through a theme pack
//! into `_site/<theme>/`.
//!
//! ```text
//!   Content ── work tree (through the task index) or a commit (from Git objects)
//!      │         notes, tasks, links, attachments, what is published
//!      ▼
//!   pages ──── one page spec per note, folder, tag, task view, mission; site-wide files
//!      │         each with a key: a hash of everything its bytes depend on
//!      ▼
//!   publish ── pages whose key is unchanged are not rendered again; the build is made beside
//!                the live site and swapped in, so readers never see half of one
//! ```
//!
//! * [`theme`] loads and checks packs (built in, embedded in the binary, or the vault's own).
//! * `markdown` turns one note into HTML the way Obsidian shows it; `highlight` colours code.
//! * [`url`] is the URL rule: `dir/My Note.md` → `dir/my-note/`, every URL in a page relative.
//!
//! Rendering is deterministic: the same content and theme give the same bytes (no clock, every
//! list sorted), which is also what makes the keys, and so incremental rendering, work.

mod catalog;
mod escape;
mod highlight;
mod incremental;
mod markdown;
mod pages;
mod publish;
mod reads;
mod task_item;
pub mod theme;
pub mod url;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub use catalog::WarmCatalog;

/// Pieces of Markdown that quire's readers treat specially, for the fuzz targets of the note
/// reader and the renderer.
#[cfg(test)]
pub(crate) const MARKDOWN_PIECES: &[&str] = &[
    "\n",
    "\n\n",
    "\r\n",
    "\r",
    "# ",
    "## ",
    "### ",
    "- ",
    "- [ ] ",
    "- [x] ",
    "* [/] ",
    "1. [-] ",
    "  ",
    "    ",
    "\t",
    "> ",
    "> [!note] ",
    "> [!tip]- ",
    "```",
    "```rust\n",
    "~~~",
    "`",
    "[[",
    "]]",
    "|",
    "\\|",
    "\\",
    "![[",
    "#",
    "^",
    "^[",
    "^blk",
    "[",
    "]",
    "(",
    ")",
    "](",
    "![",
    "==",
    "=",
    "%%",
    "<!--",
    "-->",
    "<div>",
    "</div>",
    "<script>",
    "*",
    "_",
    "**",
    "~~",
    "$",
    "$$",
    "---\n",
    "tags: [a]\n",
    ":: ",
    "[due:: 2026-12-01]",
    "📅 2026-12-01",
    "#tag/sub",
    "http://x.y/",
    "javascript:alert(1)",
    "(javascript:alert(1))",
    "[x](",
    "(data:text/html,x)",
    "<JaVaScRiPt:x>",
    "Note",
    "pic.png",
    "|100",
    "|100x80",
    "a",
    " ",
];
pub use theme::{Origin, Theme, ThemeError, ThemeInfo};

use crate::git::{GitError, Repo};
use crate::index::IndexError;
use crate::vault::{CONFIG_FILE, Config, Vault};
use catalog::Catalog;

/// The folder under the vault root that holds the rendered sites.
pub const SITE_DIR: &str = "_site";

/// A render could not be done. Nothing has been published when this is returned: the live site is
/// the previous build.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The theme is broken or missing.
    #[error(transparent)]
    Theme(#[from] ThemeError),
    /// The configuration cannot be used.
    #[error("{0}")]
    Config(String),
    /// The task index failed.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// Reading a commit failed.
    #[error(transparent)]
    Git(#[from] GitError),
    /// The revision names no commit.
    #[error("`{0}` names no commit in this repository; give a branch, tag or commit id")]
    NoSuchRevision(String),
    /// Writing the site failed.
    #[error("{context}: {source}")]
    Io {
        /// What quire was doing.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl RenderError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| RenderError::Io { context, source }
    }
}

/// What is rendered: a vault's content at one point (its work tree, or a commit), with the
/// configuration and vault-local themes of that point. The notes themselves are read only when a
/// render needs them: a site already built from this very content is left as it is without.
pub struct Content {
    config: Config,
    local_themes: theme::LocalThemes,
    source: String,
    /// Equal for equal content: the index's generation, or the commit's tree.
    source_id: String,
    origin: Mutex<Option<Origin_>>,
    catalog: OnceLock<std::sync::Arc<Catalog>>,
    /// The work tree's root, when the content is the work tree.
    root: Option<PathBuf>,
    /// The vault and where its index stood, when the content is the work tree.
    work_tree: Option<(Vault, crate::index::IndexState)>,
}

/// Where the notes come from, until they are read.
enum Origin_ {
    /// The work tree, through the index handle that just brought it up to date (it hands over
    /// the tasks it wrote instead of reading them back).
    WorkTree(Box<Vault>, Option<Box<crate::index::Index>>),
    /// The work tree, through a copy of the index kept between renders (and through the index
    /// handle that just updated it, when there is one).
    Warm(
        Box<Vault>,
        std::sync::Arc<Mutex<WarmCatalog>>,
        Option<Box<crate::index::Index>>,
    ),
    Commit(Vec<(String, crate::git::Oid, Vec<u8>)>),
}

impl Content {
    /// The vault's work tree, read through its task index (brought up to date now).
    pub fn work_tree(vault: &Vault) -> Result<Self, RenderError> {
        let (index, _) = crate::index::Index::open_fresh(vault)?;
        let content = Self::with_index(vault, &index)?;
        if let Ok(mut origin) = content.origin.lock() {
            *origin = Some(Origin_::WorkTree(
                Box::new(vault.clone()),
                Some(Box::new(index)),
            ));
        }
        Ok(content)
    }

    /// The work tree as the index already describes it, without walking the vault first: for a
    /// caller (the daemon) that has just brought the index up to date.
    pub fn work_tree_indexed(vault: &Vault) -> Result<Self, RenderError> {
        let index = crate::index::Index::open(vault)?;
        Self::with_index(vault, &index)
    }

    /// The same, read through `warm`, a copy of the index's content that a long-running process
    /// keeps between renders: only what changed since the last render is read from the index.
    pub fn work_tree_warm(
        vault: &Vault,
        warm: std::sync::Arc<Mutex<WarmCatalog>>,
    ) -> Result<Self, RenderError> {
        let index = crate::index::Index::open(vault)?;
        Self::work_tree_warm_through(vault, warm, index)
    }

    /// [`Self::work_tree_warm`], through `index`, the handle that has just updated the index: the
    /// notes it wrote are taken as it parsed them instead of being read back.
    pub fn work_tree_warm_through(
        vault: &Vault,
        warm: std::sync::Arc<Mutex<WarmCatalog>>,
        index: crate::index::Index,
    ) -> Result<Self, RenderError> {
        let content = Self::with_index(vault, &index)?;
        if let Ok(mut origin) = content.origin.lock() {
            *origin = Some(Origin_::Warm(
                Box::new(vault.clone()),
                warm,
                Some(Box::new(index)),
            ));
        }
        Ok(content)
    }

    fn with_index(vault: &Vault, index: &crate::index::Index) -> Result<Self, RenderError> {
        let state = index.state()?;
        let source_id = format!("index:{}:{}", state.id, state.generation);
        Ok(Self {
            config: vault.config().clone(),
            local_themes: theme::LocalThemes::from_dir(&vault.root().join("themes")),
            source: "the work tree".into(),
            source_id,
            origin: Mutex::new(Some(Origin_::WorkTree(Box::new(vault.clone()), None))),
            catalog: OnceLock::new(),
            root: Some(vault.root().to_path_buf()),
            work_tree: Some((vault.clone(), state)),
        })
    }

    /// The commit `rev` names in the repository at `repo_dir` (a work tree or a bare repository),
    /// read from Git objects only: the work tree, if any, is not touched. Its own `quire.toml` and
    /// `themes/` apply.
    pub fn commit(repo_dir: &Path, rev: &str) -> Result<Self, RenderError> {
        let repo = Repo::open(repo_dir)?;
        let commit = repo
            .resolve_commit(rev)
            .ok_or_else(|| RenderError::NoSuchRevision(rev.to_owned()))?;
        let files = repo.tree_files(commit, &|p| !p.split('/').any(|s| s.starts_with('.')))?;
        let mut config = Config::default();
        let mut theme_files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut content = Vec::with_capacity(files.len());
        let mut h = <sha2::Sha256 as sha2::Digest>::new();
        for (path, id, bytes) in files {
            sha2::Digest::update(&mut h, path.as_bytes());
            sha2::Digest::update(&mut h, id.as_bytes());
            if path == CONFIG_FILE {
                let text = String::from_utf8_lossy(&bytes);
                config = Config::parse(&text).map_err(|e| {
                    RenderError::Config(format!("{CONFIG_FILE} in commit {commit}: {e}"))
                })?;
            } else if let Some(rel) = path.strip_prefix("themes/") {
                theme_files.insert(rel.to_owned(), bytes);
            } else {
                content.push((path, id, bytes));
            }
        }
        let digest = crate::hex(&sha2::Digest::finalize(h)[..16]);
        let short = commit.to_string()[..12].to_owned();
        Ok(Self {
            local_themes: theme::LocalThemes::from_files(
                theme_files,
                &format!("themes (commit {short})"),
            ),
            config,
            source: format!("commit {short} (`{rev}`)"),
            source_id: format!("tree:{digest}"),
            origin: Mutex::new(Some(Origin_::Commit(content))),
            catalog: OnceLock::new(),
            root: None,
            work_tree: None,
        })
    }

    /// Whether every work-tree attachment the build `m` copied is as it was then (attachments of a
    /// commit are part of its tree, and so of `source_id`).
    fn attachments_unchanged(&self, m: &publish::Manifest) -> bool {
        let Some(root) = &self.root else { return true };
        m.files
            .iter()
            .filter(|(_, key)| key.starts_with("file:"))
            .all(|(path, key)| {
                catalog::work_tree_file_key(root, path).as_deref() == Some(key.as_str())
            })
    }

    /// The notes, tasks and links, read on first use.
    fn catalog(&self) -> Result<&Catalog, RenderError> {
        if let Some(c) = self.catalog.get() {
            return Ok(c);
        }
        let started = Instant::now();
        let origin = self.origin.lock().ok().and_then(|mut o| o.take());
        let catalog = match origin {
            Some(Origin_::WorkTree(vault, index)) => {
                Catalog::from_work_tree(&vault, &self.config, index.map(|i| *i))?
            }
            Some(Origin_::Warm(vault, warm, index)) => {
                let mut warm = warm.lock().map_err(|_| {
                    RenderError::Config("an earlier render failed midway; restart quire".into())
                })?;
                Catalog::from_warm_through(&vault, &self.config, &mut warm, index.map(|i| *i))?
            }
            Some(Origin_::Commit(files)) => Catalog::from_files(&self.config, files)?,
            None => return Err(RenderError::Config("the content could not be read".into())),
        };
        tracing::debug!(
            notes = catalog.notes.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "content read"
        );
        Ok(self.catalog.get_or_init(|| catalog))
    }

    /// The resolver of the warm copy this content is read through, if it still resolves links as
    /// the index at `state` does (saves reading every note's name again).
    fn warm_resolver(
        &self,
        state: &crate::index::IndexState,
    ) -> Option<std::sync::Arc<crate::index::Resolver>> {
        let origin = self.origin.lock().ok()?;
        match origin.as_ref()? {
            Origin_::Warm(_, warm, _) => warm.lock().ok()?.resolver_for(state),
            _ => None,
        }
    }

    /// The configuration in effect.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// What was read: "the work tree" or "commit … (`main`)".
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Every theme this content can be rendered with.
    pub fn themes(&self) -> Result<Vec<ThemeInfo>, ThemeError> {
        theme::available(&self.local_themes)
    }

    /// Loads and checks the theme `name` (the content's own `themes/<name>/` first).
    pub fn theme(&self, name: &str) -> Result<Theme, ThemeError> {
        theme::load(&self.local_themes, name)
    }
}

/// Lets go of the live manifests (and the staging folders' keys) this process keeps between
/// renders, so that the next render of each site reads them back once. A long-running process
/// that goes idle calls it to give their memory back.
pub fn release_kept_manifests() {
    publish::release_kept();
}

/// Brings the spare build folder of `theme` under `out_root` (`.<theme>.next`, where the next
/// build is made) up to the live site with hard links, so that the next render writes only what
/// changed instead of filling that folder. Worth it after a build that wrote most of the site, in
/// a process that renders again soon (the daemon); a render is correct without it. Returns how
/// many files were linked (0 when there is no live build).
pub fn mirror_live_site(out_root: &Path, theme: &str) -> Result<usize, RenderError> {
    publish::SiteDir::open(out_root, theme)?.mirror_live()
}

pub(crate) use escape::escape as escape_html;

/// The design tokens of theme `name` (the vault's own pack first) as CSS custom properties, light
/// and dark.
pub fn tokens_css(vault: &Vault, name: &str) -> Result<String, ThemeError> {
    theme::load(
        &theme::LocalThemes::from_dir(&vault.root().join("themes")),
        name,
    )
    .map(|t| t.tokens_css)
}

/// Every theme of a vault: built in and vault-local, by name.
pub fn available_themes(vault: &Vault) -> Result<Vec<ThemeInfo>, ThemeError> {
    theme::available(&theme::LocalThemes::from_dir(&vault.root().join("themes")))
}

/// Told how a render goes, for a progress bar.
pub trait Progress: Sync {
    /// `pages` pages of `theme` are about to be rendered.
    fn start(&self, _theme: &str, _pages: usize) {}
    /// `n` more are done.
    fn advance(&self, _n: usize) {}
    /// The theme is done.
    fn finish(&self) {}
}

/// A [`Progress`] that shows nothing.
pub struct Quiet;
impl Progress for Quiet {}

/// What rendering one theme did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RenderReport {
    /// The theme.
    pub theme: String,
    /// The site's folder.
    pub dir: PathBuf,
    /// Pages in the site (notes, folders, tags, views).
    pub pages: usize,
    /// Pages rendered this time (the rest were unchanged and kept).
    pub rendered: usize,
    /// Files written or replaced in the site.
    pub written: usize,
    /// Files removed from the site.
    pub removed: usize,
    /// Files in the site.
    pub files: usize,
    /// Attachments published.
    pub attachments: usize,
    /// Links in published notes that lead nowhere (shown marked in the pages; `quire check` lists
    /// them).
    pub broken_links: usize,
    /// Published notes.
    pub published: usize,
    /// Notes not published, with why, by vault path.
    #[serde(skip)]
    pub unpublished: BTreeMap<String, String>,
    /// Whether the live site changed (a new build was swapped in).
    pub changed: bool,
    /// Whether only the edited notes were read (an edit that changes nothing but their own pages;
    /// otherwise every note is read and each page decided by its key).
    pub quick: bool,
    /// How long it took.
    #[serde(serialize_with = "millis")]
    pub elapsed: Duration,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

/// Renders `content` with each of `themes` into `out_root/<theme>/`. Every theme is loaded and
/// checked before anything is written, so a broken theme fails the whole call with nothing changed.
pub fn render(
    content: &Content,
    themes: &[String],
    out_root: &Path,
    progress: &dyn Progress,
) -> Result<Vec<RenderReport>, RenderError> {
    let loaded: Vec<Theme> = themes
        .iter()
        .map(|t| content.theme(t))
        .collect::<Result<_, _>>()?;
    let mut reports = Vec::with_capacity(loaded.len());
    for theme in &loaded {
        reports.push(render_theme(content, theme, out_root, progress)?);
    }
    Ok(reports)
}

/// Renders `content` with one loaded theme into `out_root/<theme>/`.
pub fn render_theme(
    content: &Content,
    theme: &Theme,
    out_root: &Path,
    progress: &dyn Progress,
) -> Result<RenderReport, RenderError> {
    let started = Instant::now();
    let site = publish::SiteDir::open(out_root, theme.name())?;
    let _lock = site.lock()?;
    let stamp = stamp(theme, &content.config);
    let mut previous = site.live_manifest(&stamp);
    // The live build was made from this very content: nothing to read, nothing to write.
    if let Some(prev) = previous.take_if(|prev| {
        prev.source == content.source_id
            && site.live_dir().is_dir()
            && content.attachments_unchanged(prev)
    }) {
        let s = prev.summary.clone();
        let files = prev.files.len();
        site.keep(prev);
        return Ok(RenderReport {
            theme: theme.name().to_owned(),
            dir: site.live_dir().to_path_buf(),
            pages: s.pages,
            rendered: 0,
            written: 0,
            removed: 0,
            files,
            attachments: s.attachments,
            broken_links: s.broken_links,
            published: s.published,
            unpublished: s.unpublished,
            changed: false,
            quick: true,
            elapsed: started.elapsed(),
        });
    }
    // After an edit that changes only notes' own pages: those pages, without reading the vault.
    if let (Some(_), Some((vault, state))) = (&previous, &content.work_tree)
        && site.live_dir().is_dir()
    {
        match incremental::try_render(
            vault,
            state,
            &content.config,
            theme,
            &site,
            &stamp,
            &mut previous,
            &content.source_id,
            content.warm_resolver(state),
            started,
        ) {
            Ok(Some(report)) => {
                tracing::debug!(
                    theme = theme.name(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "re-rendered the edited notes"
                );
                return Ok(report);
            }
            Ok(None) => {}
            // Files gone from the live site: the full render below rebuilds everything.
            Err(publish::PublishError::Stale) => previous = None,
            Err(publish::PublishError::Failed(e)) => return Err(e),
        }
    }
    let catalog = content.catalog()?;
    let (built, outcome) = loop {
        let stage = site.stage(&stamp, previous.as_ref(), &catalog.texts);
        let result = pages::build(catalog, theme, &content.config, &stamp, &stage, progress)
            .and_then(|mut built| {
                built.manifest.source = content.source_id.clone();
                built.manifest.index = content.work_tree.as_ref().map(|(_, state)| state.clone());
                built.manifest.summary = publish::Summary {
                    pages: built.pages,
                    attachments: built.attachments,
                    broken_links: built.broken_links,
                    published: catalog.notes.len(),
                    unpublished: catalog.unpublished.clone(),
                };
                stage
                    .finish(&built.files, &mut built.manifest)
                    .map(|outcome| (built, outcome))
            });
        match result {
            Ok(done) => break done,
            // Someone removed files from the live site: build everything afresh, once.
            Err(publish::PublishError::Stale) if previous.is_some() => {
                tracing::warn!(
                    theme = theme.name(),
                    "the live site lacks files its manifest lists; rendering it all again"
                );
                previous = None;
            }
            Err(publish::PublishError::Stale) => {
                return Err(RenderError::Config(
                    "the site changed while it was being published; render again".into(),
                ));
            }
            Err(publish::PublishError::Failed(e)) => return Err(e),
        }
    };
    tracing::debug!(
        theme = theme.name(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "published"
    );
    let report = RenderReport {
        theme: theme.name().to_owned(),
        dir: site.live_dir().to_path_buf(),
        pages: built.pages,
        rendered: built.rendered,
        written: outcome.written,
        removed: outcome.removed,
        files: outcome.files,
        attachments: built.attachments,
        broken_links: built.broken_links,
        published: catalog.notes.len(),
        unpublished: catalog.unpublished.clone(),
        changed: outcome.changed,
        quick: false,
        elapsed: started.elapsed(),
    };
    site.keep(built.manifest);
    // The build that was live is now the staging folder's.
    if outcome.changed
        && let Some(prev) = previous.as_mut()
    {
        site.keep_staged(prev.stamp.clone(), std::mem::take(&mut prev.files));
    }
    drop_later((previous, built.files));
    Ok(report)
}

/// Frees `leftovers` on the worker pool. What a build leaves behind (the live build's manifest, the
/// file list, the last page memos, the staging folder's keys) holds a string or two per file:
/// freeing it takes several milliseconds on a large site, which the caller need not wait for.
pub(crate) fn drop_later<T: Send + 'static>(leftovers: T) {
    rayon::spawn(move || drop(leftovers));
}

/// Bumped whenever the same input renders differently (a fix in how notes become HTML), so that
/// sites built before are rebuilt rather than kept page by page; a security fix must reach pages
/// whose notes did not change. 2: links on callout title lines checked; Obsidian highlights,
/// inline footnotes, embed sizes.
const RENDER_EPOCH: u32 = 2;

/// What a build's keys are relative to: the quire version, the theme and the settings. A live build
/// with another stamp is not reused.
fn stamp(theme: &Theme, config: &Config) -> String {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    h.update(env!("CARGO_PKG_VERSION").as_bytes());
    h.update(RENDER_EPOCH.to_le_bytes());
    h.update([0]);
    h.update(theme.fingerprint.as_bytes());
    h.update([0]);
    h.update(serde_json::to_vec(&(&config.site, &config.publish)).unwrap_or_default());
    crate::hex(&h.finalize()[..16])
}

/// Sanitizes the HTML of a note that contains raw HTML: no scripts, styles, frames, forms or event
/// handlers, and only `http`, `https`, `mailto` and `tel` URLs (relative ones stay). The markup
/// quire itself writes for callouts, tasks, embeds and links is allowed through.
pub(crate) fn sanitize(html: &str) -> String {
    use std::sync::OnceLock;
    static CLEANER: OnceLock<ammonia::Builder<'static>> = OnceLock::new();
    CLEANER
        .get_or_init(|| {
            let mut b = ammonia::Builder::default();
            b.add_tags([
                "input",
                "details",
                "summary",
                "mark",
                "figure",
                "figcaption",
            ])
            .add_generic_attributes([
                "class",
                "id",
                "title",
                "data-task",
                "data-callout",
                "data-fold",
            ])
            .add_tag_attributes("input", ["type", "checked", "disabled"])
            .add_tag_attributes("code", ["class"])
            .url_schemes(["http", "https", "mailto", "tel"].into_iter().collect())
            .link_rel(Some("noopener noreferrer"));
            b
        })
        .clean(html)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::sanitize;

    /// The keys of month, due-month and tag pages come from the last build while the tasks and
    /// notes they list are the same objects; a page listing an edited note's task is keyed again.
    /// (`tests/it/render.rs` checks the pages themselves against a render from scratch.)
    #[test]
    fn listing_pages_are_keyed_again_only_when_what_they_list_changed() {
        use super::{Content, Quiet, WarmCatalog, render};
        use crate::index::Index;
        use std::sync::{Arc, Mutex, atomic::Ordering};

        let (dir, vault) = crate::workflow::temp_vault();
        let root = vault.root().to_path_buf();
        let out = dir.path().join("site");
        let warm = Arc::new(Mutex::new(WarmCatalog::default()));
        let write = |path: &str, text: &str| {
            std::fs::write(root.join(path), text).unwrap();
            Index::open(&vault).unwrap().update(false).unwrap();
        };
        let hits_after_render = || {
            let content = Content::work_tree_warm(&vault, warm.clone()).unwrap();
            render(&content, &["paper".into()], &out, &Quiet).unwrap();
            content
                .catalog()
                .unwrap()
                .page_memo_hits
                .load(Ordering::Relaxed)
        };
        write("a.md", "# A\n\n- [ ] one 📅 2026-03-02\n");
        write(
            "b.md",
            "---\ntags: [x, y/z]\n---\n# B\n\n- [ ] two 📅 2026-04-05\n",
        );
        write("c.md", "# C\n\nplain\n");
        std::fs::create_dir_all(root.join("d")).unwrap();
        write("d/e.md", "# E\n");
        assert_eq!(hits_after_render(), 0, "a first build has nothing to reuse");

        // A new title is a full build (the quick path is for edits the rest of the site cannot
        // see). Two months, two due months, three tags (x, y, y/z) and the folder `d` list what
        // they listed.
        write("c.md", "# C renamed\n\nplain\n");
        assert_eq!(hits_after_render(), 8);
        let note_hits = || {
            let content = Content::work_tree_warm(&vault, warm.clone()).unwrap();
            let catalog = content.catalog().unwrap();
            catalog.note_key_hits.load(Ordering::Relaxed)
        };
        assert!(note_hits() > 0, "the notes nobody edited keep their keys");

        // `a`'s task is on March's month and due-month pages: those two are keyed again.
        write("a.md", "# A\n\n- [ ] one, reworded 📅 2026-03-02\n");
        assert_eq!(hits_after_render(), 8 + 6);

        // `e` is listed on its folder's page: that one is keyed again.
        write("d/e.md", "# E renamed\n");
        assert_eq!(hits_after_render(), 8 + 6 + 7);

        // Released and made again at rest: a new catalog (counting from 0), the same memos.
        {
            let mut w = warm.lock().unwrap();
            w.release();
            w.remake(&vault).unwrap();
        }
        write("c.md", "# C renamed again\n\nplain\n");
        assert_eq!(hits_after_render(), 8);
    }

    #[test]
    fn sanitizer_removes_script_handlers_and_js_urls() {
        let dirty = r#"<p onclick="x()">hi</p><script>alert(1)</script><a href="javascript:alert(1)">j</a><img src="x" onerror="y()"><iframe src="https://e.org"></iframe><style>body{}</style>"#;
        let clean = sanitize(dirty);
        for bad in [
            "onclick",
            "<script",
            "alert",
            "javascript:",
            "onerror",
            "<iframe",
            "<style",
        ] {
            assert!(!clean.contains(bad), "{bad} survived: {clean}");
        }
        assert!(clean.contains("<p>hi</p>"), "{clean}");
    }

    #[test]
    fn sanitizer_keeps_quire_markup() {
        let ours = r#"<li class="task task-done" data-task="x"><input type="checkbox" disabled checked> done</li><div class="callout" data-callout="note" data-fold="open"><div class="callout-title">T</div></div><h2 id="a-b">x</h2><code class="language-rust"><span class="hl-kw">fn</span></code>"#;
        let clean = sanitize(ours);
        for good in [
            "data-task=\"x\"",
            "type=\"checkbox\"",
            "checked",
            "data-callout=\"note\"",
            "id=\"a-b\"",
            "class=\"hl-kw\"",
        ] {
            assert!(clean.contains(good), "{good} lost: {clean}");
        }
    }
}
