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
