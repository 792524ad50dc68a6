//! The pipeline's stages as library functions, in the order a change travels:
//! [`apply`](super::apply()) → [`index`] → [`render`] → [`record`]. `quire apply`, `quire render`,
//! sandbox promotion and the daemon's passes call these same functions, so a bundle goes the same
//! way whether a person or the daemon carries it; only the daemon runs all four in a row.
//!
//! Each stage reports what it did as an event (`index.updated`, `render.completed` /
//! `render.failed`, `run.recorded`) and returns it; none of them decides what happens next.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use super::{Filed, Themes, WorkflowError};
use crate::contributions::Status;
use crate::events::{Event, EventSink, kind};
use crate::index::{Index, IndexError, UpdateReport};
use crate::render::{Content, Quiet, RenderReport, SITE_DIR, WarmCatalog};
use crate::vault::Vault;

/// What the index stage looks at: the whole vault, or only the paths known to have changed.
#[derive(Debug, Default, Clone)]
pub struct Look {
    /// Walk the whole vault (a change was missed, or nothing more precise is known).
    pub all: bool,
    /// Vault paths that changed.
    pub paths: BTreeSet<String>,
}

impl Look {
    /// Walk the whole vault.
    pub fn everything() -> Self {
        Self {
            all: true,
            paths: BTreeSet::new(),
        }
    }

    /// The files the applied bundles of `filed` changed.
    pub fn applied(filed: &[Filed]) -> Self {
        let mut look = Self::default();
        for f in filed.iter().filter(|f| f.receipt.status == Status::Applied) {
            look.paths.extend(f.receipt.files.iter().flatten().cloned());
        }
        look
    }
}

/// The index stage: brings the task index up to date with what `look` names, and hands back the
/// index it updated (a render through it reuses the notes it parsed). Emits `index.updated` when
/// anything was read or removed.
pub fn index(
    vault: &Vault,
    look: Look,
    events: &mut dyn EventSink,
) -> Result<(Index, UpdateReport), IndexError> {
    let mut index = Index::open(vault)?;
    let report = if look.all {
        index.update(false)?
    } else {
        index.update_paths(&look.paths.into_iter().collect::<Vec<_>>())?
    };
    if report.parsed > 0 || report.removed > 0 {
        events.emit(Event::new(
            kind::INDEX_UPDATED,
            "index",
            json!({ "parsed": report.parsed, "removed": report.removed, "notes": report.notes, "duration_ms": report.duration_ms }),
            None,
        ));
    }
    Ok((index, report))
}

/// The index stage after commits a person asked for (`quire apply`, a promotion): the commits
/// stand whatever happens here, so a failure is said, not returned.
pub fn index_after_commits(vault: &Vault, look: Look, events: &mut dyn EventSink) {
    if let Err(e) = index(vault, look, events) {
        tracing::warn!("the commits are made, but the task index could not be updated: {e}");
    }
}

/// The render stage for a live vault: every configured theme into `_site/`, the configuration read
/// afresh (it may have changed). `index` is one the index stage just updated, read as it is;
/// without it the index is opened and brought up to date first. `warm` keeps what one render read
/// of the index for the next (the daemon holds one across passes). Emits `render.completed` per
/// theme whose site changed, or `render.failed`.
pub fn render(
    vault: &Vault,
    index: Option<Index>,
    warm: Arc<Mutex<WarmCatalog>>,
    events: &mut dyn EventSink,
) -> Result<Vec<RenderReport>, WorkflowError> {
    let rendered = (|| {
        let vault = Vault::open(vault.root())?;
        let content = match index {
            Some(index) => Content::work_tree_warm_through(&vault, warm, index)?,
            None => Content::work_tree_warm(&vault, warm)?,
        };
        let themes = super::render::theme_names(&vault, &Themes::All);
        let out = vault.root().join(SITE_DIR);
        let reports = crate::render::render(&content, &themes, &out, &Quiet)?;
        if reports.iter().any(|r| r.changed) {
            let commit = crate::git::Repo::open(vault.root())
                .ok()
                .and_then(|repo| repo.resolve_commit("HEAD"))
                .map(|id| id.to_string());
            super::render::record_renders(&vault, &reports, content.source(), commit);
        }
        Ok::<_, WorkflowError>(reports)
    })();
    match &rendered {
        Ok(reports) => {
            for r in reports.iter().filter(|r| r.changed) {
                events.emit(Event::new(
                    kind::RENDER_COMPLETED,
                    &r.theme,
                    json!({ "theme": r.theme, "pages": r.pages, "written": r.written, "removed": r.removed, "duration_ms": r.elapsed.as_secs_f64() * 1000.0 }),
                    None,
                ));
            }
        }
        Err(e) => events.emit(Event::new(
            kind::RENDER_FAILED,
            "render",
            json!({ "error": e.to_string() }),
            None,
        )),
    }
    rendered
}

/// The record stage: one line for a pass that handled bundles, appended to the day's run record in
/// `06_RUNS/`; returns its vault path and emits `run.recorded`. Nothing is written for a pass that
/// filed nothing.
pub fn record(
    vault: &Vault,
    started: &str,
    took: Duration,
    filed: &[Filed],
    problems: &[String],
    events: &mut dyn EventSink,
) -> std::io::Result<Option<String>> {
    if filed.is_empty() {
        return Ok(None);
    }
    let path = super::runs::record(vault, started, took, filed, problems)?;
    let applied = filed
        .iter()
        .filter(|f| f.receipt.status == Status::Applied)
        .count();
    events.emit(Event::new(
        kind::RUN_RECORDED,
        &path,
        json!({ "path": path, "bundles": filed.len(), "applied": applied }),
        None,
    ));
    Ok(Some(path))
}
