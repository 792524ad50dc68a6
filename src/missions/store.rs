//! Where missions stand: `.quire/state.db` (SQLite), one row per mission and one per run (the
//! pipeline of one sandbox: the mission's own, or one per item).
//!
//! This is a cache of what Git and the run records say, kept for speed and for what is in flight:
//! every accepted brief is also kept in Git (`refs/quire/missions/<id>`), so a deleted `.quire/`
//! loses no mission.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::MissionError;

/// The state file in `.quire/`.
pub const STATE_FILE: &str = "state.db";

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS missions (
    id TEXT PRIMARY KEY,
    digest TEXT NOT NULL,
    title TEXT NOT NULL,
    state TEXT NOT NULL,
    brief TEXT NOT NULL,
    created TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    mission TEXT NOT NULL,
    item TEXT NOT NULL DEFAULT '',
    sandbox TEXT NOT NULL,
    state TEXT NOT NULL,
    step INTEGER NOT NULL DEFAULT 0,
    round INTEGER NOT NULL DEFAULT 1,
    attempt INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (mission, item)
);
"#;

/// Where a mission (or one of its runs) stands (SPEC §9.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MissionState {
    /// Accepted; its first step has not started.
    Queued,
    /// Its steps bring their own commands and wait for a `start` decision.
    AwaitingStart,
    /// A step is running, or about to.
    Running,
    /// A round ended; a decision is requested.
    AwaitingDecision,
    /// A failure no rule covers: a decision (`retry`, `abort`) is requested.
    Escalated,
    /// Approved and promoted to main.
    Promoted,
    /// Rejected: the sandbox is discarded, its tip archived.
    Rejected,
    /// Ended by an operator.
    Aborted,
    /// Promoted, and every task of the mission is done.
    Completed,
}

impl MissionState {
    /// Every state, in the order a mission may pass through them.
    pub const ALL: [MissionState; 9] = [
        MissionState::Queued,
        MissionState::AwaitingStart,
        MissionState::Running,
        MissionState::AwaitingDecision,
        MissionState::Escalated,
        MissionState::Promoted,
        MissionState::Rejected,
        MissionState::Aborted,
        MissionState::Completed,
    ];

    /// The name written to the state file, the mission note and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            MissionState::Queued => "queued",
            MissionState::AwaitingStart => "awaiting_start",
            MissionState::Running => "running",
            MissionState::AwaitingDecision => "awaiting_decision",
            MissionState::Escalated => "escalated",
            MissionState::Promoted => "promoted",
            MissionState::Rejected => "rejected",
            MissionState::Aborted => "aborted",
            MissionState::Completed => "completed",
        }
    }

    /// Reads a name back.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Whether nothing more happens to it by itself.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            MissionState::Promoted
                | MissionState::Rejected
                | MissionState::Aborted
                | MissionState::Completed
        )
    }
}

impl std::fmt::Display for MissionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A mission as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MissionRow {
    /// Its id.
    pub id: String,
    /// The digest of its brief ([`Brief::digest`](super::Brief::digest)).
    pub digest: String,
    /// Its title.
    pub title: String,
    /// Where it stands.
    pub state: MissionState,
    /// The brief, as JSON.
    #[serde(skip)]
    pub brief: String,
    /// When it was accepted (RFC 3339).
    pub created: String,
    /// When it last changed (RFC 3339).
    pub updated: String,
}

/// One pipeline run: the mission's sandbox, or one item's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunRow {
    /// The mission.
    pub mission: String,
    /// The item (`None` for a mission without items).
    pub item: Option<String>,
    /// Its sandbox id (`<mission>` or `<mission>.<item>`).
    pub sandbox: String,
    /// Where it stands.
    pub state: MissionState,
    /// The index of the step it is at.
    pub step: usize,
    /// Its round (1, then one more per revision).
    pub round: u32,
    /// The attempt of the current step.
    pub attempt: u32,
}

/// The state file, open.
pub struct Store {
    conn: Connection,
}

fn sql(context: &str) -> impl FnOnce(rusqlite::Error) -> MissionError + '_ {
    move |source| MissionError::State {
        context: context.to_owned(),
        source,
    }
}

impl Store {
    /// Opens (creating) the state file in `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Self, MissionError> {
        std::fs::create_dir_all(state_dir).map_err(|source| MissionError::Io {
            context: format!("could not create {}", state_dir.display()),
            source,
        })?;
        let path = state_dir.join(STATE_FILE);
        let open = || -> rusqlite::Result<Connection> {
            let conn = Connection::open(&path)?;
            conn.busy_timeout(Duration::from_secs(10))?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            conn.execute_batch(SCHEMA)?;
            Ok(conn)
        };
        let conn = open().map_err(sql("could not open .quire/state.db"))?;
        Ok(Self { conn })
    }

    /// The mission `id`, if it was accepted.
    pub fn mission(&self, id: &str) -> Result<Option<MissionRow>, MissionError> {
        self.conn
            .prepare_cached(
                "SELECT id, digest, title, state, brief, created, updated FROM missions WHERE id = ?1",
            )
            .and_then(|mut s| s.query_row([id], mission_row).optional())
            .map_err(sql("could not read .quire/state.db"))
    }

    /// Every mission, oldest first.
    pub fn missions(&self) -> Result<Vec<MissionRow>, MissionError> {
        let read = || -> rusqlite::Result<Vec<MissionRow>> {
            let mut s = self.conn.prepare_cached(
                "SELECT id, digest, title, state, brief, created, updated FROM missions ORDER BY created, id",
            )?;
            s.query_map([], mission_row)?.collect()
        };
        read().map_err(sql("could not read .quire/state.db"))
    }

    /// The runs of mission `id`, in item order.
    pub fn runs(&self, id: &str) -> Result<Vec<RunRow>, MissionError> {
        let read = || -> rusqlite::Result<Vec<RunRow>> {
            let mut s = self.conn.prepare_cached(
                "SELECT mission, item, sandbox, state, step, round, attempt FROM runs WHERE mission = ?1 ORDER BY rowid",
            )?;
            s.query_map([id], |r| {
                let item: String = r.get(1)?;
                Ok(RunRow {
                    mission: r.get(0)?,
                    item: (!item.is_empty()).then_some(item),
                    sandbox: r.get(2)?,
                    state: state_of(r, 3)?,
                    step: r.get::<_, i64>(4)? as usize,
                    round: r.get(5)?,
                    attempt: r.get(6)?,
                })
            })?
            .collect()
        };
        read().map_err(sql("could not read .quire/state.db"))
    }

    /// Records an accepted mission and its runs, together.
    pub fn insert(&mut self, mission: &MissionRow, runs: &[RunRow]) -> Result<(), MissionError> {
        let write = |conn: &mut Connection| -> rusqlite::Result<()> {
            let tx = conn.transaction()?;
            tx.execute(
                "INSERT INTO missions (id, digest, title, state, brief, created, updated) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    mission.id,
                    mission.digest,
                    mission.title,
                    mission.state.as_str(),
                    mission.brief,
                    mission.created,
                    mission.updated
                ],
            )?;
            for run in runs {
                tx.execute(
                    "INSERT INTO runs (mission, item, sandbox, state, step, round, attempt) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![
                        run.mission,
                        run.item.as_deref().unwrap_or(""),
                        run.sandbox,
                        run.state.as_str(),
                        run.step as i64,
                        run.round,
                        run.attempt
                    ],
                )?;
            }
            tx.commit()
        };
        write(&mut self.conn).map_err(sql("could not write .quire/state.db"))
    }
}

fn state_of(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<MissionState> {
    let name: String = r.get(i)?;
    MissionState::parse(&name).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            format!("`{name}` is not a mission state").into(),
        )
    })
}

fn mission_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MissionRow> {
    Ok(MissionRow {
        id: r.get(0)?,
        digest: r.get(1)?,
        title: r.get(2)?,
        state: state_of(r, 3)?,
        brief: r.get(4)?,
        created: r.get(5)?,
        updated: r.get(6)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mission_and_its_runs_are_kept_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        assert!(store.mission("m").unwrap().is_none());
        let m = MissionRow {
            id: "m".into(),
            digest: "d".into(),
            title: "Moon".into(),
            state: MissionState::Queued,
            brief: "{}".into(),
            created: "2026-12-02T00:00:00Z".into(),
            updated: "2026-12-02T00:00:00Z".into(),
        };
        let run = |item: Option<&str>| RunRow {
            mission: "m".into(),
            item: item.map(str::to_owned),
            sandbox: item.map_or("m".into(), |i| format!("m.{i}")),
            state: MissionState::Queued,
            step: 0,
            round: 1,
            attempt: 1,
        };
        store.insert(&m, &[run(Some("b")), run(Some("a"))]).unwrap();
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.mission("m").unwrap(), Some(m.clone()));
        assert_eq!(store.missions().unwrap(), [m]);
        let runs = store.runs("m").unwrap();
        assert_eq!(
            runs.iter().map(|r| r.sandbox.as_str()).collect::<Vec<_>>(),
            ["m.b", "m.a"]
        );
        for s in MissionState::ALL {
            assert_eq!(MissionState::parse(s.as_str()), Some(s));
        }
    }
}
