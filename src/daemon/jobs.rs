//! Render jobs: renders asked for over the API, each on a thread of its own, with their state
//! kept for `GET /api/renderer/jobs/{id}`.

use std::time::Instant;

use serde::Serialize;
use serde_json::json;

use super::{Handle, publish};
use crate::contributions::now_rfc3339;
use crate::events::{Event, JsonlLog, kind};
use crate::vault::Vault;
use crate::workflow;

/// A render asked for over the API (`POST /api/renderer/render`).
#[derive(Debug, Clone, Serialize)]
pub struct RenderJob {
    /// The job id.
    pub id: String,
    /// `queued`, `running`, `done` or `failed`.
    pub state: &'static str,
    /// The theme asked for (`None`: the default one).
    pub theme: Option<String>,
    /// The Git ref asked for (`None`: the work tree).
    #[serde(rename = "ref")]
    pub git_ref: Option<String>,
    /// When it was asked for.
    pub submitted: String,
    /// When it ended.
    pub finished: Option<String>,
    /// Per theme: where it went and what was written.
    pub themes: Vec<serde_json::Value>,
    /// Why it failed.
    pub error: Option<String>,
}

impl Handle {
    /// Starts a render job (a theme, or the default ones, of the work tree or of a Git ref) on
    /// its own thread; returns its id at once.
    pub fn start_render(&self, theme: Option<String>, git_ref: Option<String>) -> RenderJob {
        let id = crate::events::new_id(chrono::Utc::now());
        let job = RenderJob {
            id: id.clone(),
            state: "queued",
            theme: theme.clone(),
            git_ref: git_ref.clone(),
            submitted: now_rfc3339(),
            finished: None,
            themes: Vec::new(),
            error: None,
        };
        if let Ok(mut jobs) = self.inner.jobs.lock() {
            // Old finished jobs go first: the map stays small.
            if jobs.len() > 1000
                && let Some(oldest) = jobs
                    .values()
                    .filter(|j| j.finished.is_some())
                    .min_by(|a, b| a.submitted.cmp(&b.submitted))
                    .map(|j| j.id.clone())
            {
                jobs.remove(&oldest);
            }
            jobs.insert(id.clone(), job.clone());
        }
        let handle = self.clone();
        let spawned = std::thread::Builder::new()
            .name("quire-render-job".into())
            .spawn(move || handle.run_render_job(&id, theme, git_ref));
        if spawned.is_err() {
            self.update_job(&job.id, |j| {
                j.state = "failed";
                j.error = Some("could not start a thread for the render".into());
                j.finished = Some(now_rfc3339());
            });
        }
        job
    }

    /// A render job's state.
    pub fn job(&self, id: &str) -> Option<RenderJob> {
        self.inner.jobs.lock().ok()?.get(id).cloned()
    }

    fn update_job(&self, id: &str, f: impl FnOnce(&mut RenderJob)) {
        if let Ok(mut jobs) = self.inner.jobs.lock()
            && let Some(j) = jobs.get_mut(id)
        {
            f(j);
        }
    }

    fn run_render_job(&self, id: &str, theme: Option<String>, git_ref: Option<String>) {
        self.update_job(id, |j| j.state = "running");
        let mut log = JsonlLog::new(self.inner.vault.logs_dir());
        publish(
            &self.inner,
            &mut log,
            Event::new(
                kind::RENDER_STARTED,
                id,
                json!({ "theme": theme, "ref": git_ref }),
                Some(id.to_owned()),
            ),
        );
        let vault = match Vault::open(self.inner.vault.root()) {
            Ok(v) => v,
            Err(e) => return self.fail_job(id, &mut log, &e.to_string()),
        };
        // A commit renders beside the live sites, never over them.
        let out = git_ref.as_ref().map(|r| {
            let safe: String = r
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            vault
                .root()
                .join(crate::render::SITE_DIR)
                .join("_refs")
                .join(safe.trim_start_matches('.'))
        });
        let request = workflow::RenderRequest {
            themes: theme.map_or(workflow::Themes::Default, workflow::Themes::One),
            out,
            git_ref,
        };
        let t = Instant::now();
        match workflow::render::render(&vault, &request, &crate::render::Quiet) {
            Ok(outcome) => {
                self.inner.metrics.render_seconds.observe(t.elapsed());
                let themes: Vec<serde_json::Value> = outcome
                    .themes
                    .iter()
                    .map(|r| json!({ "theme": r.theme, "dir": r.dir, "pages": r.pages, "written": r.written, "removed": r.removed, "changed": r.changed }))
                    .collect();
                publish(
                    &self.inner,
                    &mut log,
                    Event::new(
                        kind::RENDER_COMPLETED,
                        id,
                        json!({ "job": id, "themes": themes }),
                        Some(id.to_owned()),
                    ),
                );
                self.update_job(id, |j| {
                    j.state = "done";
                    j.themes = themes;
                    j.finished = Some(now_rfc3339());
                });
            }
            Err(e) => self.fail_job(id, &mut log, &e.to_string()),
        }
    }

    fn fail_job(&self, id: &str, log: &mut JsonlLog, error: &str) {
        publish(
            &self.inner,
            log,
            Event::new(
                kind::RENDER_FAILED,
                id,
                json!({ "job": id, "error": error }),
                Some(id.to_owned()),
            ),
        );
        self.update_job(id, |j| {
            j.state = "failed";
            j.error = Some(error.to_owned());
            j.finished = Some(now_rfc3339());
        });
    }
}
