//! The task index: every note of the vault in SQLite (`.quire/state.db`), for task queries, the
//! agenda, the calendar, missions, backlinks and health checks. The only module that imports
//! `rusqlite`.
//!
//! The index is derived data. It is brought up to date incrementally before every query
//! ([`Index::open_fresh`]), so answers are never stale; it can be deleted at any time and is rebuilt
//! on the next run; a file it cannot use is set aside and rebuilt, never a crash.

mod calendar;
pub mod journal;
mod query;
mod record;
mod resolve;
mod schema;
mod update;

use std::path::PathBuf;

use rusqlite::Connection;
use serde::{Deserialize, Serialize};

pub use calendar::CalendarKind;
pub use query::{
    Agenda, AgendaSection, BrokenLink, MissionSummary, NoteLinkResolved, NoteProblemRow,
    StatusFilter, TaskFilter, TaskRow,
};
pub use record::{CatalogNote, MISSION_TAG, MISSIONS_DIR, describe_note};
pub use resolve::Resolver;
pub use schema::DB_FILE;

use crate::vault::Vault;

/// The index could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// SQLite failed.
    #[error("the index database failed: {0}; `quire index --full` rebuilds it")]
    Sqlite(#[from] rusqlite::Error),
    /// The file system failed.
    #[error("{context}: {source}")]
    Io {
        /// What quire was doing.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Even a fresh database could not be opened.
    #[error("could not create the index at {}: {reason}", path.display())]
    Unusable {
        /// The database file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A query was given something it cannot use.
    #[error("{0}")]
    BadQuery(String),
}

/// What an update did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UpdateReport {
    /// Notes in the vault.
    pub notes: usize,
    /// Notes read and parsed (new or changed content).
    pub parsed: usize,
    /// Notes whose stat data changed but whose content did not.
    pub touched: usize,
    /// Notes gone from the vault, removed from the index.
    pub removed: usize,
    /// Other files (attachments) in the vault.
    pub attachments: usize,
    /// How long the update took.
    pub duration_ms: f64,
}

/// A task, as `quire tasks --json` prints it: exactly these keys, null where absent (SPEC §5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskView {
    /// The note's vault path.
    pub path: String,
    /// 1-based line.
    pub line: usize,
    /// `open`, `done`, `in_progress`, `cancelled`, or the status character.
    pub status: String,
    /// The description (tags kept; dates, priority, recurrence, ids and dependencies removed).
    pub text: String,
    /// Due date (ISO 8601).
    pub due: Option<String>,
    /// Scheduled date.
    pub scheduled: Option<String>,
    /// Start date.
    pub start: Option<String>,
    /// Created date.
    pub created: Option<String>,
    /// Done date.
    pub done: Option<String>,
    /// Cancelled date.
    pub cancelled: Option<String>,
    /// `highest` … `lowest`.
    pub priority: Option<String>,
    /// The recurrence rule as written (`every week`).
    pub recurrence: Option<String>,
    /// The task's id (🆔 / `id::`).
    pub id: Option<String>,
    /// Ids of the tasks it depends on.
    pub depends_on: Vec<String>,
    /// Its tags, without `#`.
    pub tags: Vec<String>,
    /// The mission it belongs to.
    pub mission: Option<String>,
    /// The nearest heading above it.
    pub heading: Option<String>,
    /// Its block id (`^id`).
    pub block_id: Option<String>,
}

/// Whether the file at vault path `path` is content, as the index walks the work tree: not hidden
/// at any depth (`.env`, `.obsidian/`), not under quire's own folders or the logs.
pub fn is_content_path(path: &str) -> bool {
    let first = path.split('/').next().unwrap_or("");
    !path.split('/').any(|s| s.is_empty() || s.starts_with('.'))
        && !crate::vault::RESERVED_ROOTS.contains(&first)
        && !update::SKIPPED_ROOTS.contains(&first)
}

/// Where an index stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexState {
    /// The index file's own id (a rebuilt index has another).
    pub id: String,
    /// How many updates changed something.
    pub generation: u64,
    /// The last generation that added or removed a note or an attachment, or changed aliases.
    pub structure: u64,
}

/// An open index.
pub struct Index {
    conn: Connection,
    root: PathBuf,
    /// What this handle's last update wrote.
    written: Option<Written>,
}

/// The tasks an update wrote, as parsed, by note path: while the index stays at the generation
/// the update made, they are what it holds for those notes, and a reader in the same process
/// takes them from here instead of reading them back (a render right after an update of a note
/// with 160,000 tasks spent a third of a second on that).
pub(crate) struct Written {
    /// The index file's id, and the generation the update made.
    id: String,
    generation: u64,
    /// Whether these are all the index's notes (a first update, a rebuild): then every task of
    /// the index is here.
    complete: bool,
    /// Each written note's tasks, by line.
    tasks: std::collections::HashMap<String, Vec<std::sync::Arc<TaskView>>>,
}

impl Index {
    /// Opens the vault's index (creating, migrating or rebuilding the file as needed) without updating
    /// it.
    pub fn open(vault: &Vault) -> Result<Self, IndexError> {
        Ok(Self {
            conn: schema::open(&vault.state_dir())?,
            root: vault.root().to_path_buf(),
            written: None,
        })
    }

    /// Opens the index and brings it up to date: what every query does first.
    pub fn open_fresh(vault: &Vault) -> Result<(Self, UpdateReport), IndexError> {
        let mut index = Self::open(vault)?;
        let report = index.update(false)?;
        Ok((index, report))
    }

    /// Brings the index up to date with the work tree; `full` re-reads every note.
    pub fn update(&mut self, full: bool) -> Result<UpdateReport, IndexError> {
        let (report, written) = update::update(&mut self.conn, &self.root, full)?;
        self.remember(written);
        Ok(report)
    }

    /// Keeps what an update wrote, unless it wrote nothing (what an earlier one wrote may still
    /// hold then: its generation says).
    fn remember(&mut self, written: Option<Written>) {
        if written.is_some() {
            self.written = written;
        }
    }

    /// What this handle's last update wrote, if the index still holds exactly that.
    fn written_now(&self) -> Result<Option<&Written>, IndexError> {
        let Some(w) = &self.written else {
            return Ok(None);
        };
        let state = self.state()?;
        Ok((state.id == w.id && state.generation == w.generation).then_some(w))
    }

    /// Brings the index up to date with the files at `paths` (vault paths) without walking the
    /// vault, for a caller that knows every file changed since the index was last brought up to
    /// date (the daemon: what it applied, and what the watcher reported). When a path is or was a
    /// folder, the vault is walked as [`Self::update`] does.
    pub fn update_paths(&mut self, paths: &[String]) -> Result<UpdateReport, IndexError> {
        match update::update_paths(&mut self.conn, &self.root, paths)? {
            Some((report, written)) => {
                self.remember(written);
                Ok(report)
            }
            None => self.update(false),
        }
    }

    /// Where the index stands: its id, its generation, and the last generation that changed what
    /// links can resolve to.
    pub fn state(&self) -> Result<IndexState, IndexError> {
        let mut stmt = self.conn.prepare("SELECT key, value FROM meta")?;
        let mut state = IndexState::default();
        for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
            let (k, v) = row?;
            match k.as_str() {
                "id" => state.id = v,
                "generation" => state.generation = v.parse().unwrap_or(0),
                "structure" => state.structure = v.parse().unwrap_or(0),
                _ => {}
            }
        }
        Ok(state)
    }

    /// What the index holds, as one string that changes whenever its content changes: the index
    /// file's own id and how many updates changed something. Equal strings mean equal content.
    pub fn generation(&self) -> Result<String, IndexError> {
        let mut stmt = self.conn.prepare(
            "SELECT key, value FROM meta WHERE key IN ('id', 'generation') ORDER BY key DESC",
        )?;
        let values: Vec<String> = stmt
            .query_map([], |r| r.get::<_, String>(1))?
            .collect::<Result<_, _>>()?;
        Ok(values.join(":"))
    }

    /// The link resolver over the index's notes and attachments.
    pub fn resolver(&self) -> Result<Resolver, IndexError> {
        Resolver::load(&self.conn)
    }
}
