//! Events (`quire.event/1`): plain data describing what happened, written as JSON Lines to
//! `07_LOGS/quire-YYYY-MM-DD.jsonl` and, from the daemon, streamed to clients.
//!
//! Producers take a `&mut dyn EventSink` and never know where events go.

use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The contract name of events.
pub const EVENT_CONTRACT: &str = "quire.event/1";

/// The event types quire emits, one constant each: producers name them from here, and a test holds
/// this list and the table in `docs/contracts/events.md` to each other.
pub mod kind {
    /// A bundle was read from the drop folder (or resumed from `processing/`).
    pub const CONTRIBUTION_RECEIVED: &str = "contribution.received";
    /// A bundle was committed.
    pub const CONTRIBUTION_APPLIED: &str = "contribution.applied";
    /// A bundle had been applied before; nothing changed.
    pub const CONTRIBUTION_DUPLICATE: &str = "contribution.duplicate";
    /// A bundle was refused, with a receipt saying why.
    pub const CONTRIBUTION_REJECTED: &str = "contribution.rejected";
    /// `quire retry` put a refused bundle back in the drop folder.
    pub const CONTRIBUTION_RETRIED: &str = "contribution.retried";
    /// The task index changed after something was committed.
    pub const INDEX_UPDATED: &str = "index.updated";
    /// A mission's sandbox branch (and worktree) was made.
    pub const SANDBOX_CREATED: &str = "sandbox.created";
    /// A sandbox was promoted onto its target.
    pub const SANDBOX_PROMOTED: &str = "sandbox.promoted";
    /// A promotion was reverted.
    pub const SANDBOX_ROLLED_BACK: &str = "sandbox.rolled_back";
    /// A sandbox was archived and removed.
    pub const SANDBOX_DISCARDED: &str = "sandbox.discarded";
    /// A promotion was refused (conflict, dirty worktree, failed verify).
    pub const SANDBOX_REFUSED: &str = "sandbox.refused";
    /// The daemon wrote a run record for a pass that handled bundles.
    pub const RUN_RECORDED: &str = "run.recorded";
    /// A site was rendered (a daemon pass, or a render job).
    pub const RENDER_COMPLETED: &str = "render.completed";
    /// A render job started.
    pub const RENDER_STARTED: &str = "render.started";
    /// A render failed.
    pub const RENDER_FAILED: &str = "render.failed";
    /// A daemon pass ended, after the index and the sites.
    pub const PIPELINE_COMPLETED: &str = "pipeline.completed";
    /// A daemon pass failed for a reason of quire or the machine; it is tried again.
    pub const PIPELINE_FAILED: &str = "pipeline.failed";
    /// Another program holds a work tree's Git index lock; quire waits for it.
    pub const GIT_LOCK_WAITING: &str = "git.lock_waiting";
    /// That lock went away.
    pub const GIT_LOCK_RELEASED: &str = "git.lock_released";

    /// A mission brief was accepted: its note is on main and its sandboxes exist.
    pub const MISSION_CREATED: &str = "mission.created";
    /// A step's attempt started.
    pub const MISSION_STEP_STARTED: &str = "mission.step.started";
    /// A step's attempt exited 0; what it changed is committed to the sandbox.
    pub const MISSION_STEP_SUCCEEDED: &str = "mission.step.succeeded";
    /// A step's attempt failed (its class says how).
    pub const MISSION_STEP_FAILED: &str = "mission.step.failed";
    /// A failed step will run again after a pause.
    pub const MISSION_STEP_RETRYING: &str = "mission.step.retrying";
    /// A step's attempt ran past its timeout and was ended.
    pub const MISSION_STEP_TIMED_OUT: &str = "mission.step.timed_out";
    /// A step's attempt was cut short by quire stopping or dying.
    pub const MISSION_STEP_INTERRUPTED: &str = "mission.step.interrupted";
    /// A step asked to go back to an earlier step in a new round.
    pub const MISSION_REVISION_REQUESTED: &str = "mission.revision.requested";
    /// A retry a heal rule called for succeeded.
    pub const HEAL_COMPLETED: &str = "heal.completed";
    /// No rule covers a failure, or its retries are used up.
    pub const HEAL_ESCALATED: &str = "heal.escalated";
    /// A mission waits for a person's `retry` or `abort`.
    pub const MISSION_ESCALATED: &str = "mission.escalated";
    /// A decision is asked of a person.
    pub const DECISION_REQUESTED: &str = "decision.requested";

    /// A decision was answered.
    pub const DECISION_RESOLVED: &str = "decision.resolved";
    /// An approved round was promoted to main.
    pub const MISSION_PROMOTED: &str = "mission.promoted";
    /// A mission (or one item's run) was rejected; its sandbox is archived.
    pub const MISSION_REJECTED: &str = "mission.rejected";
    /// An operator ended a mission.
    pub const MISSION_ABORTED: &str = "mission.aborted";
    /// A decision went unanswered past `[missions] decision_ttl`.
    pub const DECISION_EXPIRED: &str = "decision.expired";
    /// A promoted mission has every one of its tasks done.
    pub const MISSION_COMPLETED: &str = "mission.completed";
    /// A message was handed to a running step through `$QUIRE_INBOX`.
    pub const MISSION_STEP_INJECTED: &str = "mission.step.injected";
    /// A step waits for a runner with the labels it asks for.
    pub const MISSION_STEP_OFFERED: &str = "mission.step.offered";
    /// A runner that had lost its step's lease reported a result: refused, and what it pushed is
    /// kept under `refs/quire/salvage/`.
    pub const MISSION_STEP_FENCED: &str = "mission.step.fenced";
    /// A runner registered (it started, or came back): its name, labels and slots.
    pub const RUNNER_REGISTERED: &str = "runner.registered";
    /// Every type above.
    pub const ALL: &[&str] = &[
        CONTRIBUTION_RECEIVED,
        CONTRIBUTION_APPLIED,
        CONTRIBUTION_DUPLICATE,
        CONTRIBUTION_REJECTED,
        CONTRIBUTION_RETRIED,
        INDEX_UPDATED,
        SANDBOX_CREATED,
        SANDBOX_PROMOTED,
        SANDBOX_ROLLED_BACK,
        SANDBOX_DISCARDED,
        SANDBOX_REFUSED,
        RUN_RECORDED,
        RENDER_COMPLETED,
        RENDER_STARTED,
        RENDER_FAILED,
        PIPELINE_COMPLETED,
        PIPELINE_FAILED,
        GIT_LOCK_WAITING,
        GIT_LOCK_RELEASED,
        MISSION_CREATED,
        MISSION_STEP_STARTED,
        MISSION_STEP_SUCCEEDED,
        MISSION_STEP_FAILED,
        MISSION_STEP_RETRYING,
        MISSION_STEP_TIMED_OUT,
        MISSION_STEP_INTERRUPTED,
        MISSION_REVISION_REQUESTED,
        HEAL_COMPLETED,
        HEAL_ESCALATED,
        MISSION_ESCALATED,
        DECISION_REQUESTED,
        DECISION_RESOLVED,
        MISSION_PROMOTED,
        MISSION_REJECTED,
        MISSION_ABORTED,
        DECISION_EXPIRED,
        MISSION_COMPLETED,
        MISSION_STEP_INJECTED,
        MISSION_STEP_OFFERED,
        MISSION_STEP_FENCED,
        RUNNER_REGISTERED,
    ];
}

/// One event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unique, and ordered by time within one process.
    pub id: String,
    /// What happened (`contribution.applied`, `render.completed`, …).
    #[serde(rename = "type")]
    pub kind: String,
    /// When (RFC 3339 UTC, milliseconds).
    pub at: String,
    /// What it happened to (a bundle id, a theme, a sandbox).
    pub subject: String,
    /// Details, by type.
    pub data: Value,
    /// Ties together the events of one piece of work (a bundle's id, a job id).
    pub correlation_id: Option<String>,
}

impl Event {
    /// A new event happening now.
    pub fn new(
        kind: &str,
        subject: impl Into<String>,
        data: Value,
        correlation_id: Option<String>,
    ) -> Self {
        let now = chrono::Utc::now();
        Self {
            id: new_id(now),
            kind: kind.to_owned(),
            at: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            subject: subject.into(),
            data,
            correlation_id,
        }
    }
}

/// A time-ordered unique id: milliseconds since the epoch and a per-process sequence number, in hex,
/// then random bits so ids from two processes do not collide. Events use it; so do render jobs.
pub(crate) fn new_id(now: chrono::DateTime<chrono::Utc>) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed) & 0xffff;
    let mut rand = [0u8; 4];
    let _ = getrandom::fill(&mut rand);
    format!(
        "{:012x}{:04x}{:08x}",
        now.timestamp_millis(),
        seq,
        u32::from_be_bytes(rand)
    )
}

/// Where events go.
pub trait EventSink {
    /// Records one event. Sinks do not fail the work that emits: a sink that cannot record logs why.
    fn emit(&mut self, event: Event);
}

/// Drops every event.
#[derive(Debug, Default)]
pub struct NoEvents;

impl EventSink for NoEvents {
    fn emit(&mut self, _event: Event) {}
}

impl EventSink for Vec<Event> {
    fn emit(&mut self, event: Event) {
        self.push(event);
    }
}

/// Appends events to `07_LOGS/quire-YYYY-MM-DD.jsonl` (one file per UTC day).
#[derive(Debug)]
pub struct JsonlLog {
    dir: PathBuf,
    open: Option<(String, File)>,
}

impl JsonlLog {
    /// A log writing into `dir` (created on first write).
    pub fn new(dir: PathBuf) -> Self {
        Self { dir, open: None }
    }

    fn write(&mut self, event: &Event) -> io::Result<()> {
        let day = event.at.get(..10).unwrap_or("unknown").to_owned();
        if self.open.as_ref().is_none_or(|(d, _)| *d != day) {
            std::fs::create_dir_all(&self.dir)?;
            let file = File::options()
                .create(true)
                .append(true)
                .open(self.dir.join(format!("quire-{day}.jsonl")))?;
            self.open = Some((day, file));
        }
        let mut line = serde_json::to_vec(event).map_err(io::Error::other)?;
        line.push(b'\n');
        match self.open.as_mut() {
            // One write per line: appends of a few KB are not interleaved with another process's.
            Some((_, f)) => f.write_all(&line),
            None => Ok(()),
        }
    }
}

impl EventSink for JsonlLog {
    fn emit(&mut self, event: Event) {
        if let Err(e) = self.write(&event) {
            tracing::warn!(dir = %self.dir.display(), "could not write to the event log: {e}");
        }
    }
}

#[cfg(test)]
mod tests {

    /// Every type quire emits is in the contract's table, and the table names no other.
    #[test]
    fn the_event_types_are_the_ones_the_contract_lists() {
        let doc = include_str!("../docs/contracts/events.md");
        let table = doc
            .split("## Types emitted today")
            .nth(1)
            .expect("the contract has the table");
        let listed: std::collections::BTreeSet<&str> = table
            .lines()
            .take_while(|l| !l.starts_with("## "))
            .filter_map(|l| l.strip_prefix("| `")?.split('`').next())
            .filter(|t| t.contains('.'))
            .collect();
        let emitted: std::collections::BTreeSet<&str> = super::kind::ALL.iter().copied().collect();
        assert_eq!(listed, emitted);
    }

    use super::*;

    #[test]
    fn ids_are_unique_and_ordered() {
        let a = Event::new("t", "s", Value::Null, None);
        let b = Event::new("t", "s", Value::Null, None);
        assert_ne!(a.id, b.id);
        assert!(a.id[..16] < b.id[..16]);
    }

    #[test]
    fn jsonl_log_appends_one_object_per_line() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = JsonlLog::new(dir.path().join("07_LOGS"));
        log.emit(Event::new(
            "contribution.applied",
            "b-1",
            serde_json::json!({"commit": "abc"}),
            Some("b-1".into()),
        ));
        log.emit(Event::new(
            "contribution.rejected",
            "b-2",
            Value::Null,
            None,
        ));
        let file = std::fs::read_dir(dir.path().join("07_LOGS"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let text = std::fs::read_to_string(file).unwrap();
        let events: Vec<Event> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].kind, "contribution.applied");
        assert!(text.contains("\"type\":\"contribution.applied\""));
    }
}
