//! Where missions stand: `.quire/missions.db` (SQLite), one row per mission and one per run (the
//! pipeline of one sandbox: the mission's own, or one per item), every attempt and decision.
//!
//! SPEC §9.5 calls this `.quire/missions.db`; that file is the task index, which quire deletes and
//! rebuilds whenever it is old, newer or damaged. Missions keep their own file so that no index
//! rebuild can take a mission's state with it.
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
pub const STATE_FILE: &str = "missions.db";

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
    -- The lease: the fencing number of the attempt that holds the run, and until when.
    fence INTEGER NOT NULL DEFAULT 0,
    lease_until INTEGER NOT NULL DEFAULT 0,
    -- Who holds it: `<host>/<pid>` of the quire process.
    holder TEXT NOT NULL DEFAULT '',
    -- Not before (a retry's backoff), in Unix milliseconds.
    next_at INTEGER NOT NULL DEFAULT 0,
    -- The sandbox commit the current step started from.
    start_commit TEXT NOT NULL DEFAULT '',
    -- Why this round began, for QUIRE_REVISION_REASON.
    reason TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (mission, item)
);
CREATE TABLE IF NOT EXISTS attempts (
    mission TEXT NOT NULL,
    item TEXT NOT NULL DEFAULT '',
    step TEXT NOT NULL,
    round INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    fence INTEGER NOT NULL,
    state TEXT NOT NULL,
    pid INTEGER NOT NULL DEFAULT 0,
    started TEXT NOT NULL,
    ended TEXT,
    exit INTEGER,
    class TEXT,
    healed_by TEXT,
    start_commit TEXT NOT NULL,
    commit_id TEXT,
    log TEXT NOT NULL,
    PRIMARY KEY (mission, item, step, round, attempt)
);
CREATE TABLE IF NOT EXISTS decisions (
    id TEXT PRIMARY KEY,
    mission TEXT NOT NULL,
    item TEXT NOT NULL DEFAULT '',
    kind TEXT NOT NULL,
    commit_id TEXT NOT NULL DEFAULT '',
    requested TEXT NOT NULL,
    expires TEXT NOT NULL,
    answer TEXT,
    reason TEXT,
    decided_by TEXT,
    decided_at TEXT,
    -- Whether the answer's effect (a promotion, a discard, a run moved) is done.
    applied INTEGER NOT NULL DEFAULT 0
);
-- Steps waiting for a runner on another machine. The run is held by the offer (holder
-- `offered`) under fencing number `fence`; a runner's lease takes the next one.
CREATE TABLE IF NOT EXISTS offers (
    mission TEXT NOT NULL,
    item TEXT NOT NULL DEFAULT '',
    fence INTEGER NOT NULL,
    step TEXT NOT NULL,
    round INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    labels TEXT NOT NULL DEFAULT '[]',
    job TEXT NOT NULL,
    offered TEXT NOT NULL,
    PRIMARY KEY (mission, item)
);
"#;

/// The holder of a run whose step waits for a runner.
pub const OFFERED: &str = "offered";

/// The holder of a run whose step a runner has leased: `runner:<name>`.
pub fn runner_holder(name: &str) -> String {
    format!("runner:{name}")
}

/// How long an offer holds its run: until a runner takes it, or an operator takes the run back.
const OFFER_HOLDS: i64 = i64::MAX / 4;

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
    /// The fencing number of the last lease taken on the run.
    pub fence: i64,
    /// Until when that lease holds (Unix milliseconds).
    pub lease_until: i64,
    /// Who holds it (`<host>/<pid>`), empty when nobody does.
    pub holder: String,
    /// Not before (a retry's backoff), Unix milliseconds.
    pub next_at: i64,
    /// The sandbox commit the current step started from (empty before the first attempt).
    pub start_commit: String,
    /// Why the current round began (a revision's reason), empty for the first.
    pub reason: String,
}

impl RunRow {
    /// A new run of `mission` (for `item`), in `state`.
    pub fn new(mission: &str, item: Option<&str>, state: MissionState) -> Self {
        Self {
            mission: mission.to_owned(),
            item: item.map(str::to_owned),
            sandbox: super::sandbox_id(mission, item),
            state,
            step: 0,
            round: 1,
            attempt: 1,
            fence: 0,
            lease_until: 0,
            holder: String::new(),
            next_at: 0,
            start_commit: String::new(),
            reason: String::new(),
        }
    }
}

/// One attempt of one step, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttemptRow {
    /// The mission.
    pub mission: String,
    /// The item, if any.
    pub item: Option<String>,
    /// The step's name.
    pub step: String,
    /// The round.
    pub round: u32,
    /// The attempt.
    pub attempt: u32,
    /// The lease's fencing number.
    pub fence: i64,
    /// `running`, `succeeded`, `failed`, `lost`.
    pub state: String,
    /// The step's process group (0 before it started).
    pub pid: u32,
    /// When it started (RFC 3339).
    pub started: String,
    /// When it ended.
    pub ended: Option<String>,
    /// Its exit status, when it exited.
    pub exit: Option<i32>,
    /// Its failure class.
    pub class: Option<String>,
    /// The `when` of the heal rule its failure matched, if one did.
    pub healed_by: Option<String>,
    /// The sandbox commit it started from.
    pub start_commit: String,
    /// The commit it made (none when it changed nothing).
    pub commit: Option<String>,
    /// Its log, a vault path.
    pub log: String,
    /// The runner it ran on (empty: this machine, in the daemon).
    pub runner: String,
}

/// A step waiting for a runner with the labels it asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OfferRow {
    /// The mission.
    pub mission: String,
    /// The item, if any.
    pub item: Option<String>,
    /// The fencing number it was offered under.
    pub fence: i64,
    /// The step.
    pub step: String,
    /// The round.
    pub round: u32,
    /// The attempt.
    pub attempt: u32,
    /// Labels a runner must have to take it.
    pub labels: Vec<String>,
    /// What a runner is sent (JSON, see `workflow::mission_remote::Job`).
    pub job: String,
    /// When it was offered (RFC 3339).
    pub offered: String,
}

/// A decision requested of a person (SPEC §9.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DecisionRow {
    /// Its id.
    pub id: String,
    /// The mission.
    pub mission: String,
    /// The item, if any.
    pub item: Option<String>,
    /// `start`, `round` or `escalation`.
    pub kind: String,
    /// The sandbox commit it is about.
    pub commit: String,
    /// When it was requested (RFC 3339).
    pub requested: String,
    /// When it expires (RFC 3339).
    pub expires: String,
    /// The answer, once given.
    pub answer: Option<String>,
    /// Why, as the person said (for a requested escalation: why it was requested).
    pub reason: Option<String>,
}

/// An answered decision, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answered {
    /// The answer.
    pub answer: String,
    /// Whether its effect is done.
    pub applied: bool,
}

/// The state file, open.
pub struct Store {
    conn: Connection,
    path: std::path::PathBuf,
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
        Self::open_file(&state_dir.join(STATE_FILE))
    }

    /// Opens (creating) the state file at `path` (another connection to a store, for a thread).
    pub fn open_file(path: &Path) -> Result<Self, MissionError> {
        let open = || -> rusqlite::Result<Connection> {
            let conn = Connection::open(path)?;
            conn.busy_timeout(Duration::from_secs(10))?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            conn.execute_batch(SCHEMA)?;
            // Files from before runners: attempts learn where they ran.
            let has_runner: bool = conn
                .prepare("SELECT 1 FROM pragma_table_info('attempts') WHERE name = 'runner'")?
                .exists([])?;
            if !has_runner {
                conn.execute_batch(
                    "ALTER TABLE attempts ADD COLUMN runner TEXT NOT NULL DEFAULT ''",
                )?;
            }
            Ok(conn)
        };
        let conn = open().map_err(sql("could not open .quire/missions.db"))?;
        Ok(Self {
            conn,
            path: path.to_owned(),
        })
    }

    /// The state file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The mission `id`, if it was accepted.
    pub fn mission(&self, id: &str) -> Result<Option<MissionRow>, MissionError> {
        self.conn
            .prepare_cached(
                "SELECT id, digest, title, state, brief, created, updated FROM missions WHERE id = ?1",
            )
            .and_then(|mut s| s.query_row([id], mission_row).optional())
            .map_err(sql("could not read .quire/missions.db"))
    }

    /// Every mission, oldest first.
    pub fn missions(&self) -> Result<Vec<MissionRow>, MissionError> {
        let read = || -> rusqlite::Result<Vec<MissionRow>> {
            let mut s = self.conn.prepare_cached(
                "SELECT id, digest, title, state, brief, created, updated FROM missions ORDER BY created, id",
            )?;
            s.query_map([], mission_row)?.collect()
        };
        read().map_err(sql("could not read .quire/missions.db"))
    }

    /// The runs of mission `id`, in item order.
    pub fn runs(&self, id: &str) -> Result<Vec<RunRow>, MissionError> {
        let read = || -> rusqlite::Result<Vec<RunRow>> {
            let mut s = self.conn.prepare_cached(&format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE mission = ?1 ORDER BY rowid"
            ))?;
            s.query_map([id], run_row)?.collect()
        };
        read().map_err(sql("could not read .quire/missions.db"))
    }

    /// Every run of every mission, by mission (one query, for listings).
    pub fn all_runs(&self) -> Result<std::collections::HashMap<String, Vec<RunRow>>, MissionError> {
        let read = || -> rusqlite::Result<Vec<RunRow>> {
            let mut s = self
                .conn
                .prepare_cached(&format!("SELECT {RUN_COLUMNS} FROM runs ORDER BY rowid"))?;
            s.query_map([], run_row)?.collect()
        };
        let mut by = std::collections::HashMap::<String, Vec<RunRow>>::new();
        for r in read().map_err(sql("could not read .quire/missions.db"))? {
            by.entry(r.mission.clone()).or_default().push(r);
        }
        Ok(by)
    }

    /// How many attempts each mission has made (one query, for listings).
    pub fn attempt_counts(&self) -> Result<std::collections::HashMap<String, usize>, MissionError> {
        let read = || -> rusqlite::Result<Vec<(String, i64)>> {
            let mut s = self
                .conn
                .prepare_cached("SELECT mission, COUNT(*) FROM attempts GROUP BY mission")?;
            s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect()
        };
        Ok(read()
            .map_err(sql("could not read .quire/missions.db"))?
            .into_iter()
            .map(|(m, n)| (m, n as usize))
            .collect())
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
                    "INSERT INTO runs (mission, item, sandbox, state, step, round, attempt, fence, lease_until, next_at, start_commit, reason) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                    params![
                        run.mission,
                        run.item.as_deref().unwrap_or(""),
                        run.sandbox,
                        run.state.as_str(),
                        run.step as i64,
                        run.round,
                        run.attempt,
                        run.fence,
                        run.lease_until,
                        run.next_at,
                        run.start_commit,
                        run.reason
                    ],
                )?;
            }
            tx.commit()
        };
        write(&mut self.conn).map_err(sql("could not write .quire/missions.db"))
    }

    /// The run of `mission` for `item`.
    pub fn run(&self, mission: &str, item: Option<&str>) -> Result<Option<RunRow>, MissionError> {
        self.conn
            .prepare_cached(&format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE mission = ?1 AND item = ?2"
            ))
            .and_then(|mut s| {
                s.query_row(params![mission, item.unwrap_or("")], run_row)
                    .optional()
            })
            .map_err(sql("could not read .quire/missions.db"))
    }

    /// Every run that is not final, oldest first.
    pub fn open_runs(&self) -> Result<Vec<RunRow>, MissionError> {
        let read = || -> rusqlite::Result<Vec<RunRow>> {
            let mut s = self.conn.prepare_cached(&format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE state IN ('queued', 'running') ORDER BY rowid"
            ))?;
            s.query_map([], run_row)?.collect()
        };
        read().map_err(sql("could not read .quire/missions.db"))
    }

    /// Takes the lease on `run` for `lease` milliseconds from `now` for `holder`, if nobody took it
    /// since the run was read (its fencing number is still `run.fence`) and no other lease holds —
    /// or the one that holds is `dead`'s, a holder known to be gone. Returns the new fencing
    /// number: every later write for this attempt names it, and fails once another holder has
    /// taken the run.
    pub fn claim(
        &self,
        run: &RunRow,
        now: i64,
        lease: i64,
        holder: &str,
        dead: Option<&str>,
    ) -> Result<Option<i64>, MissionError> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE runs SET fence = fence + 1, lease_until = ?1, holder = ?2 WHERE mission = ?3 AND item = ?4 AND fence = ?5 AND (lease_until <= ?6 OR holder = ?7)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    now + lease,
                    holder,
                    run.mission,
                    run.item.as_deref().unwrap_or(""),
                    run.fence,
                    now,
                    dead
                ])
            })
            .map_err(sql("could not write .quire/missions.db"))?;
        Ok((n == 1).then_some(run.fence + 1))
    }

    /// Extends the lease of fencing number `fence`; false when it is no longer held.
    pub fn heartbeat(&self, run: &RunRow, fence: i64, until: i64) -> Result<bool, MissionError> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE runs SET lease_until = ?1 WHERE mission = ?2 AND item = ?3 AND fence = ?4",
            )
            .and_then(|mut s| {
                s.execute(params![
                    until,
                    run.mission,
                    run.item.as_deref().unwrap_or(""),
                    fence
                ])
            })
            .map_err(sql("could not write .quire/missions.db"))?;
        Ok(n == 1)
    }

    /// Writes `run` (its state, step, round, attempt, backoff, start commit, reason) and releases
    /// its lease, if fencing number `fence` still holds it; false when it does not (nothing is
    /// written: the holder lost the run and must not move it).
    pub fn advance(&self, run: &RunRow, fence: i64) -> Result<bool, MissionError> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE runs SET state = ?1, step = ?2, round = ?3, attempt = ?4, next_at = ?5, start_commit = ?6, reason = ?7, lease_until = 0, holder = '' WHERE mission = ?8 AND item = ?9 AND fence = ?10",
            )
            .and_then(|mut s| {
                s.execute(params![
                    run.state.as_str(),
                    run.step as i64,
                    run.round,
                    run.attempt,
                    run.next_at,
                    run.start_commit,
                    run.reason,
                    run.mission,
                    run.item.as_deref().unwrap_or(""),
                    fence
                ])
            })
            .map_err(sql("could not write .quire/missions.db"))?;
        Ok(n == 1)
    }

    /// Marks a queued run `running` as its first step starts, if fencing number `fence` still
    /// holds it (the lease is kept). Returns whether it did.
    pub fn mark_running(&self, run: &RunRow, fence: i64) -> Result<bool, MissionError> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE runs SET state = 'running' WHERE mission = ?1 AND item = ?2 AND fence = ?3 AND state = 'queued'",
            )
            .and_then(|mut s| {
                s.execute(params![run.mission, run.item.as_deref().unwrap_or(""), fence])
            })
            .map_err(sql("could not write .quire/missions.db"))?;
        Ok(n == 1)
    }

    /// Whether fencing number `fence` still holds `run` (nobody took it since).
    pub fn holds(&self, run: &RunRow, fence: i64) -> Result<bool, MissionError> {
        self.conn
            .prepare_cached("SELECT fence FROM runs WHERE mission = ?1 AND item = ?2")
            .and_then(|mut s| {
                s.query_row(
                    params![run.mission, run.item.as_deref().unwrap_or("")],
                    |r| r.get::<_, i64>(0),
                )
                .optional()
            })
            .map(|f| f == Some(fence))
            .map_err(sql("could not read .quire/missions.db"))
    }

    /// Writes `run` whoever holds it, and takes the run from its holder (the fencing number moves
    /// on, so a holder still carrying it writes nothing more): an operator's abort or retry.
    pub fn take_over(&self, run: &RunRow) -> Result<(), MissionError> {
        self.conn
            .prepare_cached(
                "UPDATE runs SET state = ?1, step = ?2, round = ?3, attempt = ?4, next_at = ?5, start_commit = ?6, reason = ?7, fence = fence + 1, lease_until = 0, holder = '' WHERE mission = ?8 AND item = ?9",
            )
            .and_then(|mut s| {
                s.execute(params![
                    run.state.as_str(),
                    run.step as i64,
                    run.round,
                    run.attempt,
                    run.next_at,
                    run.start_commit,
                    run.reason,
                    run.mission,
                    run.item.as_deref().unwrap_or("")
                ])
            })
            .map(|_| ())
            .map_err(sql("could not write .quire/missions.db"))
    }

    /// Sets a mission's own state.
    pub fn set_mission_state(
        &self,
        id: &str,
        state: MissionState,
        now: &str,
    ) -> Result<(), MissionError> {
        self.conn
            .prepare_cached("UPDATE missions SET state = ?1, updated = ?2 WHERE id = ?3")
            .and_then(|mut s| s.execute(params![state.as_str(), now, id]))
            .map(|_| ())
            .map_err(sql("could not write .quire/missions.db"))
    }

    /// Records an attempt (insert or replace).
    pub fn put_attempt(&self, a: &AttemptRow) -> Result<(), MissionError> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO attempts (mission, item, step, round, attempt, fence, state, pid, started, ended, exit, class, start_commit, commit_id, log, healed_by, runner) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    a.mission,
                    a.item.as_deref().unwrap_or(""),
                    a.step,
                    a.round,
                    a.attempt,
                    a.fence,
                    a.state,
                    a.pid,
                    a.started,
                    a.ended,
                    a.exit,
                    a.class,
                    a.start_commit,
                    a.commit,
                    a.log,
                    a.healed_by,
                    a.runner
                ])
            })
            .map(|_| ())
            .map_err(sql("could not write .quire/missions.db"))
    }

    /// Forgets an attempt that never started (a runner could not get its sandbox).
    pub fn delete_attempt(&self, a: &AttemptRow) -> Result<(), MissionError> {
        self.conn
            .prepare_cached(
                "DELETE FROM attempts WHERE mission = ?1 AND item = ?2 AND step = ?3 AND round = ?4 AND attempt = ?5",
            )
            .and_then(|mut s| {
                s.execute(params![
                    a.mission,
                    a.item.as_deref().unwrap_or(""),
                    a.step,
                    a.round,
                    a.attempt
                ])
            })
            .map(|_| ())
            .map_err(sql("could not write .quire/missions.db"))
    }

    /// Every attempt of `mission`, in the order they started.
    pub fn attempts(&self, mission: &str) -> Result<Vec<AttemptRow>, MissionError> {
        self.attempts_where("mission = ?1", mission)
    }

    /// Every attempt recorded as running, of every mission, in the order they started.
    pub fn running_attempts(&self) -> Result<Vec<AttemptRow>, MissionError> {
        self.attempts_where("state = ?1", "running")
    }

    fn attempts_where(&self, filter: &str, value: &str) -> Result<Vec<AttemptRow>, MissionError> {
        let read = || -> rusqlite::Result<Vec<AttemptRow>> {
            let mut s = self.conn.prepare_cached(&format!(
                "SELECT mission, item, step, round, attempt, fence, state, pid, started, ended, exit, class, start_commit, commit_id, log, healed_by, runner FROM attempts WHERE {filter} ORDER BY started, rowid",
            ))?;
            s.query_map([value], |r| {
                let item: String = r.get(1)?;
                Ok(AttemptRow {
                    mission: r.get(0)?,
                    item: (!item.is_empty()).then_some(item),
                    step: r.get(2)?,
                    round: r.get(3)?,
                    attempt: r.get(4)?,
                    fence: r.get(5)?,
                    state: r.get(6)?,
                    pid: r.get(7)?,
                    started: r.get(8)?,
                    ended: r.get(9)?,
                    exit: r.get(10)?,
                    class: r.get(11)?,
                    start_commit: r.get(12)?,
                    commit: r.get(13)?,
                    log: r.get(14)?,
                    healed_by: r.get(15)?,
                    runner: r.get(16)?,
                })
            })?
            .collect()
        };
        read().map_err(sql("could not read .quire/missions.db"))
    }

    /// Requests a decision (a second request with the same id changes nothing).
    pub fn request_decision(&self, d: &DecisionRow) -> Result<(), MissionError> {
        self.conn
            .prepare_cached(
                "INSERT OR IGNORE INTO decisions (id, mission, item, kind, commit_id, requested, expires, reason) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    d.id,
                    d.mission,
                    d.item.as_deref().unwrap_or(""),
                    d.kind,
                    d.commit,
                    d.requested,
                    d.expires,
                    d.reason
                ])
            })
            .map(|_| ())
            .map_err(sql("could not write .quire/missions.db"))
    }

    /// Decision `id`, with its answer if it has one.
    pub fn decision(
        &self,
        id: &str,
    ) -> Result<Option<(DecisionRow, Option<Answered>)>, MissionError> {
        self.conn
            .prepare_cached(
                "SELECT id, mission, item, kind, commit_id, requested, expires, answer, reason, applied FROM decisions WHERE id = ?1",
            )
            .and_then(|mut s| {
                s.query_row([id], |r| {
                    let item: String = r.get(2)?;
                    let answer: Option<String> = r.get(7)?;
                    let applied: bool = r.get(9)?;
                    Ok((
                        DecisionRow {
                            id: r.get(0)?,
                            mission: r.get(1)?,
                            item: (!item.is_empty()).then_some(item),
                            kind: r.get(3)?,
                            commit: r.get(4)?,
                            requested: r.get(5)?,
                            expires: r.get(6)?,
                            answer: answer.clone(),
                            reason: r.get(8)?,
                        },
                        answer.map(|answer| Answered { answer, applied }),
                    ))
                })
                .optional()
            })
            .map_err(sql("could not read .quire/missions.db"))
    }

    /// Records the answer to decision `id` (only if it has none yet; returns whether it was
    /// recorded now).
    pub fn answer(
        &self,
        id: &str,
        answer: &str,
        reason: Option<&str>,
        by: &str,
        at: &str,
    ) -> Result<bool, MissionError> {
        self.conn
            .prepare_cached(
                "UPDATE decisions SET answer = ?1, reason = COALESCE(?2, reason), decided_by = ?3, decided_at = ?4 WHERE id = ?5 AND answer IS NULL",
            )
            .and_then(|mut s| s.execute(params![answer, reason, by, at, id]))
            .map(|n| n == 1)
            .map_err(sql("could not write .quire/missions.db"))
    }

    /// Notes that decision `id`'s answer has taken effect.
    pub fn applied(&self, id: &str) -> Result<(), MissionError> {
        self.conn
            .prepare_cached("UPDATE decisions SET applied = 1 WHERE id = ?1")
            .and_then(|mut s| s.execute([id]))
            .map(|_| ())
            .map_err(sql("could not write .quire/missions.db"))
    }

    /// Offers `run`'s current step to runners, if fencing number `fence` still holds the run: the
    /// offer then holds it (no carrier takes it) until a runner leases the step or an operator
    /// takes the run back. Returns whether it did.
    pub fn offer(&self, run: &RunRow, fence: i64, offer: &OfferRow) -> Result<bool, MissionError> {
        let write = |conn: &Connection| -> rusqlite::Result<bool> {
            let tx = conn.unchecked_transaction()?;
            let n = tx.execute(
                "UPDATE runs SET holder = ?1, lease_until = ?2 WHERE mission = ?3 AND item = ?4 AND fence = ?5",
                params![OFFERED, OFFER_HOLDS, run.mission, run.item.as_deref().unwrap_or(""), fence],
            )?;
            if n == 1 {
                tx.execute(
                    "INSERT OR REPLACE INTO offers (mission, item, fence, step, round, attempt, labels, job, offered) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    params![
                        offer.mission,
                        offer.item.as_deref().unwrap_or(""),
                        fence,
                        offer.step,
                        offer.round,
                        offer.attempt,
                        serde_json::to_string(&offer.labels).unwrap_or_else(|_| "[]".into()),
                        offer.job,
                        offer.offered
                    ],
                )?;
            }
            tx.commit()?;
            Ok(n == 1)
        };
        write(&self.conn).map_err(sql("could not write .quire/missions.db"))
    }

    /// The steps waiting for a runner, oldest first. Offers whose run was taken back meanwhile (an
    /// operator's abort or retry) are dropped first.
    pub fn offers(&self) -> Result<Vec<OfferRow>, MissionError> {
        let read = || -> rusqlite::Result<Vec<OfferRow>> {
            self.conn.execute(
                "DELETE FROM offers WHERE NOT EXISTS (SELECT 1 FROM runs WHERE runs.mission = offers.mission AND runs.item = offers.item AND runs.fence = offers.fence AND runs.holder = ?1)",
                [OFFERED],
            )?;
            let mut s = self.conn.prepare_cached(
                "SELECT mission, item, fence, step, round, attempt, labels, job, offered FROM offers ORDER BY offered, rowid",
            )?;
            s.query_map([], |r| {
                let item: String = r.get(1)?;
                let labels: String = r.get(6)?;
                Ok(OfferRow {
                    mission: r.get(0)?,
                    item: (!item.is_empty()).then_some(item),
                    fence: r.get(2)?,
                    step: r.get(3)?,
                    round: r.get(4)?,
                    attempt: r.get(5)?,
                    labels: serde_json::from_str(&labels).unwrap_or_default(),
                    job: r.get(7)?,
                    offered: r.get(8)?,
                })
            })?
            .collect()
        };
        read().map_err(sql("could not read .quire/missions.db"))
    }

    /// Gives the offered step to runner `name` until `until` (Unix milliseconds): the run's
    /// fencing number moves on, and the new one is returned. `None` when the offer no longer holds
    /// the run (another runner took it, or an operator took the run back).
    pub fn take_offer(
        &self,
        offer: &OfferRow,
        name: &str,
        until: i64,
    ) -> Result<Option<i64>, MissionError> {
        let holder = runner_holder(name);
        let write = |conn: &Connection| -> rusqlite::Result<bool> {
            let tx = conn.unchecked_transaction()?;
            let item = offer.item.as_deref().unwrap_or("");
            let n = tx.execute(
                "UPDATE runs SET fence = fence + 1, holder = ?1, lease_until = ?2 WHERE mission = ?3 AND item = ?4 AND fence = ?5 AND holder = ?6",
                params![holder, until, offer.mission, item, offer.fence, OFFERED],
            )?;
            tx.execute(
                "DELETE FROM offers WHERE mission = ?1 AND item = ?2 AND fence = ?3",
                params![offer.mission, item, offer.fence],
            )?;
            tx.commit()?;
            Ok(n == 1)
        };
        let taken = write(&self.conn).map_err(sql("could not write .quire/missions.db"))?;
        Ok(taken.then_some(offer.fence + 1))
    }

    /// Sets a run's state (and, for a retry, its attempt), whoever holds it: a person's decision
    /// is not a lease holder, and only ever moves a run that is waiting for it.
    pub fn set_run(&self, run: &RunRow) -> Result<(), MissionError> {
        self.conn
            .prepare_cached(
                "UPDATE runs SET state = ?1, attempt = ?2, next_at = ?3, lease_until = 0, holder = '' WHERE mission = ?4 AND item = ?5",
            )
            .and_then(|mut s| {
                s.execute(params![
                    run.state.as_str(),
                    run.attempt,
                    run.next_at,
                    run.mission,
                    run.item.as_deref().unwrap_or("")
                ])
            })
            .map(|_| ())
            .map_err(sql("could not write .quire/missions.db"))
    }

    /// Answers recorded whose effect was not (yet) applied: `(id, answer, reason, by)`, oldest
    /// first.
    #[allow(clippy::type_complexity)]
    pub fn unapplied_answers(
        &self,
    ) -> Result<Vec<(String, String, Option<String>, String)>, MissionError> {
        let read = || -> rusqlite::Result<Vec<(String, String, Option<String>, String)>> {
            let mut s = self.conn.prepare_cached(
                "SELECT id, answer, reason, COALESCE(decided_by, '') FROM decisions WHERE answer IS NOT NULL AND applied = 0 ORDER BY decided_at, id",
            )?;
            s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                .collect()
        };
        read().map_err(sql("could not read .quire/missions.db"))
    }

    /// Decisions not yet answered, oldest first.
    pub fn open_decisions(&self) -> Result<Vec<DecisionRow>, MissionError> {
        let read = || -> rusqlite::Result<Vec<DecisionRow>> {
            let mut s = self.conn.prepare_cached(
                "SELECT id, mission, item, kind, commit_id, requested, expires, answer, reason FROM decisions WHERE answer IS NULL ORDER BY requested, id",
            )?;
            s.query_map([], |r| {
                let item: String = r.get(2)?;
                Ok(DecisionRow {
                    id: r.get(0)?,
                    mission: r.get(1)?,
                    item: (!item.is_empty()).then_some(item),
                    kind: r.get(3)?,
                    commit: r.get(4)?,
                    requested: r.get(5)?,
                    expires: r.get(6)?,
                    answer: r.get(7)?,
                    reason: r.get(8)?,
                })
            })?
            .collect()
        };
        read().map_err(sql("could not read .quire/missions.db"))
    }
}

const RUN_COLUMNS: &str = "mission, item, sandbox, state, step, round, attempt, fence, lease_until, next_at, start_commit, reason, holder";

fn run_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRow> {
    let item: String = r.get(1)?;
    Ok(RunRow {
        mission: r.get(0)?,
        item: (!item.is_empty()).then_some(item),
        sandbox: r.get(2)?,
        state: state_of(r, 3)?,
        step: r.get::<_, i64>(4)? as usize,
        round: r.get(5)?,
        attempt: r.get(6)?,
        fence: r.get(7)?,
        lease_until: r.get(8)?,
        next_at: r.get(9)?,
        start_commit: r.get(10)?,
        reason: r.get(11)?,
        holder: r.get(12)?,
    })
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
        let run = |item: Option<&str>| RunRow::new("m", item, MissionState::Queued);
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

    #[test]
    fn a_lease_is_taken_once_and_a_lost_one_moves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let m = MissionRow {
            id: "m".into(),
            digest: "d".into(),
            title: "M".into(),
            state: MissionState::Queued,
            brief: "{}".into(),
            created: "t".into(),
            updated: "t".into(),
        };
        store
            .insert(&m, &[RunRow::new("m", None, MissionState::Queued)])
            .unwrap();
        let run = store.run("m", None).unwrap().unwrap();
        let first = store.claim(&run, 1_000, 500, "h/1", None).unwrap().unwrap();
        // The same reading of the run cannot be claimed twice, nor a held lease taken.
        assert_eq!(store.claim(&run, 1_000, 500, "h/1", None).unwrap(), None);
        let now = store.run("m", None).unwrap().unwrap();
        assert_eq!(store.claim(&now, 1_200, 500, "h/2", None).unwrap(), None);
        assert!(store.heartbeat(&now, first, 2_000).unwrap());
        assert_eq!(
            store.claim(&now, 1_900, 500, "h/2", Some("h/3")).unwrap(),
            None
        );
        // Once it has expired another holder takes it, and the first can no longer write.
        let second = store.claim(&now, 2_001, 500, "h/2", None).unwrap().unwrap();
        assert!(second > first);
        let mut moved = now.clone();
        moved.step = 1;
        assert!(!store.advance(&moved, first).unwrap());
        assert!(!store.heartbeat(&now, first, 9_999).unwrap());
        assert_eq!(store.run("m", None).unwrap().unwrap().step, 0);
        assert!(store.advance(&moved, second).unwrap());
        let after = store.run("m", None).unwrap().unwrap();
        assert_eq!(
            (after.step, after.lease_until, after.holder.as_str()),
            (1, 0, "")
        );
        // A holder known to be dead gives its lease up at once, expired or not.
        let third = store
            .claim(&after, 3_000, 60_000, "h/4", None)
            .unwrap()
            .unwrap();
        let held = store.run("m", None).unwrap().unwrap();
        assert_eq!(held.holder, "h/4");
        assert_eq!(
            store.claim(&held, 3_001, 500, "h/5", Some("h/9")).unwrap(),
            None
        );
        assert!(
            store
                .claim(&held, 3_001, 500, "h/5", Some("h/4"))
                .unwrap()
                .unwrap()
                > third
        );
    }
}
