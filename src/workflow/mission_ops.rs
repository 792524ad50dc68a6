//! What an operator does to missions, and what quire does by itself between steps (SPEC §9.3–9.6):
//! aborting and retrying, handing a running step a message, listing the steps in flight, finding
//! a step's log, and the sweep — the safety net that expires unanswered decisions, finishes
//! answers a crash left unapplied, and sees promoted missions whose tasks are all done.
//!
//! The CLI and the HTTP routes are thin shells over these functions.

use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::PathBuf;

use serde_json::json;

use super::WorkflowError;
use super::missions::{DecideRefusal, decide, decision_expiry};
use crate::contributions::{ErrorCode, Rejection, now_rfc3339};
use crate::events::{Event, EventSink, kind};
use crate::git::Repo;
use crate::missions::{self, AttemptRow, Brief, DecisionRow, MissionState, RunRow, Store, runner};
use crate::vault::Vault;

/// The contract of a dropped decision file.
pub const DECISION_CONTRACT: &str = "quire.decision/1";

/// A dropped decision file: `{"contract": "quire.decision/1", "id", "decision", "commit"?,
/// "reason"?, "by"?}`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionFile {
    #[allow(dead_code)]
    contract: String,
    id: String,
    decision: String,
    commit: Option<String>,
    reason: Option<String>,
    by: Option<String>,
}

/// Records the answer in a dropped decision file (called by intake, with the writer lock held);
/// its effect is applied by [`settle_answers`] once the lock is let go. Returns the decision id
/// and whether the same answer was given before; refusals are coded as a receipt's are. A file
/// cannot answer a `start` decision: starting a brief's own commands takes a token holder.
pub(crate) fn record_dropped_decision(
    vault: &Vault,
    bytes: &[u8],
    file: &str,
) -> Result<Result<(String, bool), Rejection>, WorkflowError> {
    let f: DecisionFile = match serde_json::from_slice(bytes) {
        Ok(f) => f,
        Err(e) => {
            return Ok(Err(Rejection::new(
                ErrorCode::InvalidDecision,
                format!(
                    "a decision file is {{\"contract\": \"{DECISION_CONTRACT}\", \"id\", \"decision\", \"commit\"?, \"reason\"?, \"by\"?}}: {e}"
                ),
            )));
        }
    };
    let store = Store::open(&vault.state_dir())?;
    let Some((d, given)) = store.decision(&f.id)? else {
        return Ok(Err(Rejection::new(
            ErrorCode::NotFound,
            format!("no decision `{}`; `quire inbox` lists the open ones", f.id),
        )));
    };
    let allowed: &[&str] = match d.kind.as_str() {
        "start" => &[],
        "round" => &["approve", "reject"],
        _ => &["retry", "abort"],
    };
    if !allowed.contains(&f.decision.as_str()) {
        let why = if d.kind == "start" {
            "a start decision is answered by a token holder (`quire decide` or the API), never by a dropped file".to_owned()
        } else {
            format!(
                "decision `{}` ({}) takes {}",
                f.id,
                d.kind,
                allowed.join(" or ")
            )
        };
        return Ok(Err(Rejection::new(ErrorCode::InvalidDecision, why)));
    }
    if let Some(g) = given {
        if g.answer == f.decision {
            return Ok(Ok((f.id, true)));
        }
        return Ok(Err(Rejection::new(
            ErrorCode::Decided,
            format!("decision `{}` was already answered `{}`", f.id, g.answer),
        )));
    }
    if let Some(seen) = &f.commit
        && d.kind == "round"
    {
        let repo = Repo::open(vault.root())?;
        let sandbox = missions::sandbox_id(&d.mission, d.item.as_deref());
        let tip = repo
            .branch_tip(&super::sandbox::branch_of(&sandbox))?
            .map(|t| t.to_string())
            .unwrap_or_default();
        if seen.len() < 7 || !tip.starts_with(seen.as_str()) {
            return Ok(Err(Rejection::new(
                ErrorCode::Stale,
                format!(
                    "the sandbox `{sandbox}` is at {tip} now, not {seen}; look again and decide on what it holds"
                ),
            )));
        }
    }
    let by = f.by.unwrap_or_else(|| format!("file {file}"));
    store.answer(&f.id, &f.decision, f.reason.as_deref(), &by, &now_rfc3339())?;
    Ok(Ok((f.id, false)))
}

/// Applies every answer recorded but not yet applied (a dropped decision file's, or one a crash
/// interrupted): each is resolved again with the same answer, which is idempotent.
pub fn settle_answers(vault: &Vault, events: &mut dyn EventSink) -> Result<(), WorkflowError> {
    let store = Store::open(&vault.state_dir())?;
    for (id, answer, reason, by) in store.unapplied_answers()? {
        if let Err(r) = decide(vault, &id, &answer, reason.as_deref(), None, &by, events)? {
            tracing::warn!(decision = %id, "an answer recorded earlier could not take effect ({}): {}", r.code, r.message);
        }
    }
    Ok(())
}

/// Who quire is, when it answers or acts by itself.
pub const QUIRE: &str = "quire";

/// The refusal for a mission id nobody knows.
fn no_mission<T>(id: &str) -> Result<Result<T, DecideRefusal>, WorkflowError> {
    refuse(
        "not_found",
        format!("no mission `{id}`; `quire mission list` shows them"),
    )
}

fn refuse<T>(
    code: &str,
    message: impl Into<String>,
) -> Result<Result<T, DecideRefusal>, WorkflowError> {
    Ok(Err(DecideRefusal::new(code, message)))
}

/// Ends mission `id`: every run that has not ended is aborted (a step in flight is ended with its
/// process group, and its holder can move the run no further), and its open decisions are closed.
/// The sandboxes stay, for a person to look at (`quire sandbox rollback` discards one). Aborting
/// an aborted mission again changes nothing; an ended one is refused (`final`).
pub fn abort(
    vault: &Vault,
    id: &str,
    by: &str,
    reason: Option<&str>,
    events: &mut dyn EventSink,
) -> Result<Result<MissionState, DecideRefusal>, WorkflowError> {
    let store = Store::open(&vault.state_dir())?;
    let Some(mission) = store.mission(id)? else {
        return no_mission(id);
    };
    match mission.state {
        MissionState::Aborted => return Ok(Ok(MissionState::Aborted)),
        s if s.is_final() => {
            return refuse(
                "final",
                format!("mission `{id}` has already ended ({s}); there is nothing to abort"),
            );
        }
        _ => {}
    }
    let grace = vault.config().missions.grace.duration();
    let running = store.running_attempts()?;
    for mut run in store.runs(id)? {
        if run.state.is_final() {
            continue;
        }
        run.state = MissionState::Aborted;
        // Taken from its holder first, so that the step ended below moves nothing.
        store.take_over(&run)?;
        for a in running
            .iter()
            .filter(|a| a.mission == id && a.item == run.item)
        {
            if a.pid > 0 {
                runner::end_group(a.pid, grace);
            }
        }
    }
    let now = now_rfc3339();
    for d in store
        .open_decisions()?
        .into_iter()
        .filter(|d| d.mission == id)
    {
        if store.answer(&d.id, "abort", reason, by, &now)? {
            store.applied(&d.id)?;
        }
    }
    super::mission_steps::set_mission_state(&store, id)?;
    events.emit(Event::new(
        kind::MISSION_ABORTED,
        id,
        json!({ "mission": id, "item": null, "decision": null, "by": by, "reason": reason }),
        Some(id.to_owned()),
    ));
    let _ = super::missions::show_state(vault, id, MissionState::Aborted);
    Ok(Ok(MissionState::Aborted))
}

/// Runs mission `id` again. Without `from`, each escalated run's escalation is answered `retry`
/// (its step runs again from its start commit). With `from`, every run that is waiting (for a
/// decision, or escalated) or was aborted goes back to step `from` in a new round, from its
/// sandbox's tip; open decisions of those runs are closed. A running mission is refused
/// (`running`: abort it first), and so is one promoted or rejected (`final`).
pub fn retry(
    vault: &Vault,
    id: &str,
    from: Option<&str>,
    by: &str,
    events: &mut dyn EventSink,
) -> Result<Result<MissionState, DecideRefusal>, WorkflowError> {
    let store = Store::open(&vault.state_dir())?;
    let Some(mission) = store.mission(id)? else {
        return no_mission(id);
    };
    let open: Vec<DecisionRow> = store
        .open_decisions()?
        .into_iter()
        .filter(|d| d.mission == id)
        .collect();
    let Some(from) = from else {
        let escalations: Vec<&DecisionRow> =
            open.iter().filter(|d| d.kind == "escalation").collect();
        if escalations.is_empty() {
            return refuse(
                "not_escalated",
                format!(
                    "mission `{id}` is {} and waits for no retry; `--from STEP` runs it again from a step",
                    mission.state
                ),
            );
        }
        let mut state = mission.state;
        for d in escalations {
            match decide(
                vault,
                &d.id,
                "retry",
                Some("retried by an operator"),
                None,
                by,
                events,
            )? {
                Ok(done) => state = done.state,
                Err(r) => return Ok(Err(r)),
            }
        }
        return Ok(Ok(state));
    };
    let brief = Brief::parse(mission.brief.as_bytes()).map_err(|r| {
        WorkflowError::Input(format!(
            "mission `{id}`: its stored brief no longer reads: {r}"
        ))
    })?;
    let Some((index, _)) = brief.step(from) else {
        let steps: Vec<&str> = brief.pipeline.iter().map(|s| s.name.as_str()).collect();
        return refuse(
            "unknown_step",
            format!(
                "mission `{id}` has no step `{from}`; its steps are {}",
                steps.join(", ")
            ),
        );
    };
    let runs = store.runs(id)?;
    if let Some(r) = runs
        .iter()
        .find(|r| matches!(r.state, MissionState::Running | MissionState::Queued))
    {
        return refuse(
            "running",
            format!(
                "mission `{id}` is running (sandbox `{}`); abort it first, then retry from `{from}`",
                r.sandbox
            ),
        );
    }
    let movable = |r: &RunRow| {
        matches!(
            r.state,
            MissionState::AwaitingDecision | MissionState::Escalated | MissionState::Aborted
        )
    };
    if !runs.iter().any(movable) {
        return refuse(
            "final",
            format!(
                "mission `{id}` is {}; only a waiting, escalated or aborted mission runs again",
                mission.state
            ),
        );
    }
    let repo = Repo::open(vault.root())?;
    let now = now_rfc3339();
    let reason = format!("retried from `{from}` by {by}");
    for mut run in runs.into_iter().filter(movable) {
        let branch = super::sandbox::branch_of(&run.sandbox);
        let workdir = vault.root().join("sandbox").join(&run.sandbox);
        if let (Some(tip), true) = (repo.branch_tip(&branch)?, workdir.is_dir()) {
            repo.reset_workdir(&workdir, tip)?;
        }
        for d in open.iter().filter(|d| d.item == run.item) {
            if store.answer(&d.id, "retry", Some(&reason), by, &now)? {
                store.applied(&d.id)?;
            }
        }
        run.round += 1;
        run.step = index;
        run.attempt = 1;
        run.next_at = 0;
        run.start_commit.clear();
        run.reason = reason.clone();
        run.state = MissionState::Running;
        store.take_over(&run)?;
        events.emit(Event::new(
            kind::MISSION_REVISION_REQUESTED,
            id,
            json!({ "mission": id, "item": run.item, "from": null, "to": from, "round": run.round, "reason": reason }),
            Some(id.to_owned()),
        ));
    }
    super::mission_steps::set_mission_state(&store, id)?;
    if mission.state.is_final() {
        // The note said how it ended; it runs again.
        let _ = super::missions::show_state(vault, id, MissionState::Running);
    }
    Ok(Ok(store
        .mission(id)?
        .map_or(MissionState::Running, |m| m.state)))
}

/// A step in flight, as `GET /api/agents` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Agent {
    /// The mission.
    pub mission: String,
    /// The item, if any.
    pub item: Option<String>,
    /// The step.
    pub step: String,
    /// Its round.
    pub round: u32,
    /// Its attempt.
    pub attempt: u32,
    /// Where it runs: `local` (this machine, as process group `pid`), or `runner:<name>`.
    pub runs_on: String,
    /// Its process group.
    pub pid: u32,
    /// Whether that group still has a living process (false: quire died under it, and the next
    /// quire to take the run finishes it).
    pub alive: bool,
    /// When it started (RFC 3339).
    pub since: String,
    /// The last line it wrote, if any.
    pub last_line: Option<String>,
    /// Its log, relative to the vault.
    pub log: String,
}

/// Whether attempt `a` is alive: its process group here, or a runner whose lease on it holds.
fn in_flight(store: &Store, a: &AttemptRow) -> bool {
    if a.runner.is_empty() {
        return runner::group_alive(a.pid);
    }
    store
        .run(&a.mission, a.item.as_deref())
        .ok()
        .flatten()
        .is_some_and(|r| {
            r.fence == a.fence
                && r.holder == crate::missions::store::runner_holder(&a.runner)
                && r.lease_until > chrono::Utc::now().timestamp_millis()
        })
}

/// Every step in flight.
pub fn agents(vault: &Vault) -> Result<Vec<Agent>, WorkflowError> {
    let store = Store::open(&vault.state_dir())?;
    Ok(store
        .running_attempts()?
        .into_iter()
        .map(|a| Agent {
            last_line: last_line(&vault.root().join(&a.log)),
            alive: in_flight(&store, &a),
            runs_on: if a.runner.is_empty() {
                "local".into()
            } else {
                crate::missions::store::runner_holder(&a.runner)
            },
            pid: a.pid,
            since: a.started,
            mission: a.mission,
            item: a.item,
            step: a.step,
            round: a.round,
            attempt: a.attempt,
            log: a.log,
        })
        .collect())
}

/// The last non-empty line of a log (from its last 4 KiB).
fn last_line(path: &std::path::Path) -> Option<String> {
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(4096))).ok()?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).ok()?;
    String::from_utf8_lossy(&buf)
        .lines()
        .rev()
        .map(str::trim_end)
        .find(|l| !l.is_empty())
        .map(str::to_owned)
}

/// Hands `message` to mission `id`'s running step (SPEC §9.6): one JSON line appended to the file
/// its `$QUIRE_INBOX` names. Refused when no step of the mission is running (`not_running`) or the
/// message is empty or too long (`invalid_message`). Returns the attempts it reached.
pub fn inject(
    vault: &Vault,
    id: &str,
    message: &str,
    by: &str,
    events: &mut dyn EventSink,
) -> Result<Result<Vec<AttemptRow>, DecideRefusal>, WorkflowError> {
    const MAX_MESSAGE: usize = 64 * 1024;
    if message.trim().is_empty() || message.len() > MAX_MESSAGE {
        return refuse(
            "invalid_message",
            format!("a message is 1 to {MAX_MESSAGE} bytes of text"),
        );
    }
    let store = Store::open(&vault.state_dir())?;
    if store.mission(id)?.is_none() {
        return no_mission(id);
    }
    let running: Vec<AttemptRow> = store
        .running_attempts()?
        .into_iter()
        .filter(|a| a.mission == id && in_flight(&store, a))
        .collect();
    if running.is_empty() {
        return refuse(
            "not_running",
            format!("no step of mission `{id}` is running to take a message"),
        );
    }
    let line = format!(
        "{}\n",
        json!({ "message": message, "by": by, "at": now_rfc3339() })
    );
    for a in &running {
        let path = inbox_file(vault, a);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| WorkflowError::io(format!("could not create {}", dir.display()), e))?;
        }
        // One write of one line with O_APPEND: a step reading the file never sees half a message.
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .map_err(|e| WorkflowError::io(format!("could not write {}", path.display()), e))?;
        events.emit(Event::new(
            kind::MISSION_STEP_INJECTED,
            id,
            json!({ "mission": id, "item": a.item, "step": a.step, "attempt": a.attempt, "by": by, "bytes": message.len() }),
            Some(id.to_owned()),
        ));
    }
    Ok(Ok(running))
}

/// The file a step's `$QUIRE_INBOX` names.
pub(crate) fn inbox_file(vault: &Vault, a: &AttemptRow) -> PathBuf {
    vault
        .state_dir()
        .join("missions")
        .join(missions::sandbox_id(&a.mission, a.item.as_deref()))
        .join("inbox.jsonl")
}

/// Whether attempt `a` is still recorded as running (what a followed log waits on).
pub fn still_running(vault: &Vault, a: &AttemptRow) -> Result<bool, WorkflowError> {
    let store = Store::open(&vault.state_dir())?;
    Ok(store.attempts(&a.mission)?.iter().any(|x| {
        x.item == a.item
            && x.step == a.step
            && x.round == a.round
            && x.attempt == a.attempt
            && x.state == "running"
    }))
}

/// The log of mission `id`'s step `step` (its latest attempt), or of its latest attempt of any
/// step; `None` when the mission has no such attempt (`Err` refusal when there is no mission).
pub fn log_of(
    vault: &Vault,
    id: &str,
    step: Option<&str>,
) -> Result<Result<Option<(AttemptRow, PathBuf)>, DecideRefusal>, WorkflowError> {
    let store = Store::open(&vault.state_dir())?;
    if store.mission(id)?.is_none() {
        return no_mission(id);
    }
    let latest = store
        .attempts(id)?
        .into_iter()
        .rev()
        .find(|a| step.is_none_or(|s| a.step == s));
    Ok(Ok(latest.map(|a| {
        let path = vault.root().join(&a.log);
        (a, path)
    })))
}

/// The safety net (SPEC §9.5), run by the daemon every few seconds and after the CLI carries
/// missions: decisions past their expiry escalate (never approve), answers recorded but not yet
/// applied (a crash in between, or a dropped decision file) are applied, and promoted missions whose
/// note on main has every task done are completed. Expired leases and runs with nothing in flight
/// are found by [`super::mission_steps::ready`].
pub fn sweep(vault: &Vault, events: &mut dyn EventSink) -> Result<(), WorkflowError> {
    super::mission_rebuild::rebuild(vault)?;
    let store = Store::open(&vault.state_dir())?;
    let now = chrono::Utc::now();
    for d in store.open_decisions()? {
        let expired = chrono::DateTime::parse_from_rfc3339(&d.expires)
            .is_ok_and(|t| t.with_timezone(&chrono::Utc) <= now);
        if expired {
            expire(vault, &store, &d, events)?;
        }
    }
    settle_answers(vault, events)?;
    complete(vault, &store, events)?;
    Ok(())
}

/// Decision `d` went unanswered: it is closed as `expired`, and an escalation is asked instead
/// (or, for an escalation, asked again), so a person still decides.
fn expire(
    vault: &Vault,
    store: &Store,
    d: &DecisionRow,
    events: &mut dyn EventSink,
) -> Result<(), WorkflowError> {
    let why = format!(
        "decision `{}` ({}) went unanswered until {}",
        d.id, d.kind, d.expires
    );
    if !store.answer(&d.id, "expired", Some(&why), QUIRE, &now_rfc3339())? {
        return Ok(());
    }
    store.applied(&d.id)?;
    let next = DecisionRow {
        id: format!("{}.x", d.id),
        mission: d.mission.clone(),
        item: d.item.clone(),
        // An unstarted brief stays unstarted: what is asked again is whether to start it.
        kind: if d.kind == "start" {
            "start".into()
        } else {
            "escalation".into()
        },
        commit: d.commit.clone(),
        requested: now_rfc3339(),
        expires: decision_expiry(vault),
        answer: None,
        reason: Some(why.clone()),
    };
    store.request_decision(&next)?;
    if let Some(mut run) = store.run(&d.mission, d.item.as_deref())?
        && d.kind != "start"
        && !run.state.is_final()
    {
        run.state = MissionState::Escalated;
        store.set_run(&run)?;
    }
    super::mission_steps::set_mission_state(store, &d.mission)?;
    events.emit(Event::new(
        kind::DECISION_EXPIRED,
        &d.mission,
        json!({ "id": d.id, "mission": d.mission, "item": d.item, "kind": d.kind, "escalation": next.id }),
        Some(d.mission.clone()),
    ));
    events.emit(Event::new(
        kind::DECISION_REQUESTED,
        &d.mission,
        json!({ "id": next.id, "mission": d.mission, "item": d.item, "kind": next.kind, "commit": next.commit, "expires": next.expires }),
        Some(d.mission.clone()),
    ));
    events.emit(Event::new(
        kind::MISSION_ESCALATED,
        &d.mission,
        json!({ "mission": d.mission, "item": d.item, "decision": next.id, "why": why }),
        Some(d.mission.clone()),
    ));
    Ok(())
}

/// Promoted missions whose note on main has every task done become `completed`.
fn complete(vault: &Vault, store: &Store, events: &mut dyn EventSink) -> Result<(), WorkflowError> {
    let promoted: Vec<_> = store
        .missions()?
        .into_iter()
        .filter(|m| m.state == MissionState::Promoted)
        .collect();
    if promoted.is_empty() {
        return Ok(());
    }
    let repo = Repo::open(vault.root())?;
    let Some(main) = repo.branch_tip(&vault.config().git.main)? else {
        return Ok(());
    };
    for m in promoted {
        let Some(note) = repo.blob_at(main, &missions::note::path(&m.id)) else {
            continue;
        };
        if !missions::note::tasks_done(&String::from_utf8_lossy(&note)) {
            continue;
        }
        for mut run in store.runs(&m.id)? {
            if run.state == MissionState::Promoted {
                run.state = MissionState::Completed;
                store.set_run(&run)?;
            }
        }
        super::mission_steps::set_mission_state(store, &m.id)?;
        events.emit(Event::new(
            kind::MISSION_COMPLETED,
            &m.id,
            json!({ "mission": m.id }),
            Some(m.id.clone()),
        ));
        let _ = super::missions::show_state(vault, &m.id, MissionState::Completed);
    }
    Ok(())
}
