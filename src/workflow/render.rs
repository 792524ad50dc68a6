//! `quire render`: which content, which themes, where — then the render module does the work.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::render::{self, Content, Progress, RenderError, RenderReport, SITE_DIR};
use crate::vault::Vault;

/// Which themes to render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Themes {
    /// The first theme of `[site] themes`.
    Default,
    /// This one.
    One(String),
    /// Every theme of `[site] themes`.
    All,
}

/// What to render, and where.
#[derive(Debug, Clone)]
pub struct RenderRequest {
    /// The themes.
    pub themes: Themes,
    /// The folder the sites go into (default: the vault's `_site/`), one subfolder per theme.
    pub out: Option<PathBuf>,
    /// A branch, tag or commit to render from Git objects instead of the work tree.
    pub git_ref: Option<String>,
}

/// What a render did.
#[derive(Debug, Clone, Serialize)]
pub struct RenderOutcome {
    /// What was read ("the work tree", "commit … (`main`)").
    pub source: String,
    /// Published notes.
    pub published: usize,
    /// One report per theme.
    pub themes: Vec<RenderReport>,
    /// Notes not published, with why, by vault path.
    pub unpublished: BTreeMap<String, String>,
}

/// When a theme's site in the vault's `_site/` last changed, and from what (SPEC §7's "last
/// render"). Kept per theme in `.quire/renders/<theme>.json`, written after every render that
/// changed the site, by `quire render` and the daemon alike; a render that found nothing to do
/// leaves it alone. Losing `.quire/` loses only this until the next change.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct LastRender {
    /// When the render ended (RFC 3339, UTC).
    pub at: String,
    /// The commit the content was read at (`HEAD` for the work tree, which may hold more).
    pub commit: Option<String>,
    /// What was read ("the work tree", "commit … (`main`)").
    pub source: String,
    /// Pages in the site.
    pub pages: usize,
    /// How long the render took, in milliseconds.
    pub ms: u64,
}

fn renders_dir(vault: &Vault) -> PathBuf {
    vault.state_dir().join("renders")
}

/// Records the renders among `reports` that changed a site under the vault's own `_site/`
/// (`commit`: what the content was read at). Failing to record is logged, never an error: the
/// sites are what matter.
pub fn record_renders(
    vault: &Vault,
    reports: &[RenderReport],
    source: &str,
    commit: Option<String>,
) {
    let site_root = vault.root().join(SITE_DIR);
    let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    for r in reports.iter().filter(|r| r.changed) {
        if r.dir != site_root.join(&r.theme) || !plain_name(&r.theme) {
            continue;
        }
        let record = LastRender {
            at: at.clone(),
            commit: commit.clone(),
            source: source.to_owned(),
            pages: r.pages,
            ms: r.elapsed.as_millis() as u64,
        };
        let dir = renders_dir(vault);
        let written = std::fs::create_dir_all(&dir).and_then(|()| {
            let json = serde_json::to_vec(&record).map_err(std::io::Error::other)?;
            crate::vault::fsutil::atomic_write(&dir.join(format!("{}.json", r.theme)), &json, false)
        });
        if let Err(e) = written {
            tracing::warn!(theme = r.theme, "could not record the render: {e}");
        }
    }
}

/// A theme name that is one plain file name (theme names are folder names; anything else is not
/// used to name a file).
fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The last recorded render of `theme`'s site, if any.
pub fn last_render(vault: &Vault, theme: &str) -> Option<LastRender> {
    if !plain_name(theme) {
        return None;
    }
    let bytes = std::fs::read(renders_dir(vault).join(format!("{theme}.json"))).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The theme names a request means, given the vault's configuration.
pub fn theme_names(vault: &Vault, themes: &Themes) -> Vec<String> {
    let configured = &vault.config().site.themes;
    match themes {
        Themes::One(name) => vec![name.clone()],
        Themes::All if !configured.is_empty() => configured.clone(),
        Themes::Default if !configured.is_empty() => vec![configured[0].clone()],
        _ => vec!["paper".to_owned()],
    }
}

/// Renders the vault (its work tree, or a commit) as asked.
pub fn render(
    vault: &Vault,
    request: &RenderRequest,
    progress: &dyn Progress,
) -> Result<RenderOutcome, RenderError> {
    let content = match &request.git_ref {
        Some(rev) => Content::commit(vault.root(), rev)?,
        None => Content::work_tree(vault)?,
    };
    let names = match (&request.git_ref, &request.themes) {
        // A commit carries its own configuration; `[site] themes` comes from there.
        (Some(_), Themes::All | Themes::Default) => {
            let configured = &content.config().site.themes;
            match (&request.themes, configured.is_empty()) {
                (_, true) => vec!["paper".to_owned()],
                (Themes::All, false) => configured.clone(),
                _ => vec![configured[0].clone()],
            }
        }
        _ => theme_names(vault, &request.themes),
    };
    let out = request
        .out
        .clone()
        .unwrap_or_else(|| vault.root().join(SITE_DIR));
    let themes = render::render(&content, &names, &out, progress)?;
    let (published, unpublished) = themes
        .first()
        .map(|t| (t.published, t.unpublished.clone()))
        .unwrap_or_default();
    let source = content.source().to_owned();
    if request.out.is_none() {
        let commit = crate::git::Repo::open(vault.root())
            .ok()
            .and_then(|repo| repo.resolve_commit(request.git_ref.as_deref().unwrap_or("HEAD")))
            .map(|id| id.to_string());
        record_renders(vault, &themes, &source, commit);
    }
    // What was read (every note and task of the vault) is freed on the worker pool: a command
    // that ends now need not wait for it.
    render::drop_later(content);
    Ok(RenderOutcome {
        source,
        published,
        themes,
        unpublished,
    })
}
