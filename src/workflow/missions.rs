//! Accepting a mission brief (SPEC §9.1): the brief kept in Git, its note committed to main, its
//! sandboxes made, and its state recorded — each part done once, so that a brief resumed after a
//! crash (or dropped again once `.quire/` was lost) finishes what is missing and repeats nothing.
//!
//! Called with the vault's writer lock held, from the same run that applies bundles: a brief
//! dropped into `pending/`, posted, or given to `quire mission start` travels like a bundle and is
//! filed with a receipt like one.

use serde_json::json;

use super::WorkflowError;
use crate::contributions::{ErrorCode, Rejection, now_rfc3339};
use crate::events::{Event, EventSink, kind};
use crate::git::{Oid, Repo, message_with_trailers};
use crate::missions::{self, Brief, MissionRow, MissionState, RunRow, Store};
use crate::vault::{ChangeSet, FileContent, Vault, VaultPath};

/// The trailer naming the mission on the commits made for it (SPEC §9.2).
pub const TRAILER_MISSION_ID: &str = "Mission-Id";

/// What accepting a brief came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Accepted {
    /// Accepted now (or its acceptance finished after an interruption).
    New {
        /// The mission id.
        id: String,
        /// The commit on main that added its note.
        commit: String,
        /// The note's vault path.
        note: String,
        /// Its sandboxes.
        sandboxes: Vec<String>,
        /// Where it stands.
        state: MissionState,
    },
    /// A dropped decision file's answer was recorded (its effect follows once the writer lock is
    /// let go).
    Answered {
        /// The decision id.
        id: String,
    },
    /// The same brief (or answer) was accepted before; nothing changed.
    Duplicate {
        /// The mission id.
        id: String,
        /// The commit that added its note.
        commit: String,
    },
}

/// Accepts the brief in `bytes`. A refusal is `Ok(Err(rejection))`; `Err` is a failure of quire
/// itself (the brief stays where it is, to be tried again). A `resumed` brief (one a crash left
/// in `processing/`) is finished and reported accepted, never a duplicate of itself.
pub fn accept(
    vault: &Vault,
    repo: &Repo,
    bytes: &[u8],
    resumed: bool,
    events: &mut dyn EventSink,
) -> Result<Result<Accepted, Rejection>, WorkflowError> {
    let brief = match Brief::parse(bytes) {
        Ok(b) => b,
        Err(r) => return Ok(Err(r)),
    };
    let digest = brief.digest();
    let mut store = Store::open(&vault.state_dir())?;
    let kept = kept_brief(repo, &brief.id)?;
    let mut known = store.mission(&brief.id)?;
    // Known to Git but not to `.quire/` (deleted since): its state is rebuilt from Git and its run
    // record before anything else, so that no finished step runs again.
    if !resumed
        && kept.is_some()
        && known.is_none()
        && super::mission_rebuild::rebuild_one(vault, repo, &mut store, &brief.id)?
    {
        known = store.mission(&brief.id)?;
    }
    match (&kept, &known) {
        (Some(k), _) if k.digest() != digest => return Ok(Err(exists(&brief.id))),
        (_, Some(m)) if m.digest != digest => return Ok(Err(exists(&brief.id))),
        _ => {}
    }
    let main = vault.config().git.main.clone();
    let note_path = missions::note::path(&brief.id);
    // Accepted before and whole: the same brief again.
    if !resumed
        && kept.is_some()
        && known.is_some()
        && let Some(commit) = note_commit(repo, &main, &note_path)?
    {
        return Ok(Ok(Accepted::Duplicate {
            id: brief.id,
            commit: commit.to_string(),
        }));
    }
    if kept.is_none() {
        // First sight of this id: everything it needs must be free, and runnable.
        if let Err(r) = brief.check_in(&vault.config().missions, repo) {
            return Ok(Err(r));
        }
        for sandbox in sandbox_ids(&brief) {
            if repo
                .branch_tip(&super::sandbox::branch_of(&sandbox))?
                .is_some()
                || vault.root().join("sandbox").join(&sandbox).exists()
            {
                return Ok(Err(Rejection::new(
                    ErrorCode::Exists,
                    format!(
                        "a sandbox `{sandbox}` already exists (`quire sandbox list` shows it); give the brief another id"
                    ),
                )));
            }
        }
        if note_commit(repo, &main, &note_path)?.is_some() {
            return Ok(Err(Rejection::at(
                ErrorCode::Exists,
                0,
                note_path,
                "a mission note is already on main at this path; give the brief another id",
            )));
        }
        // The marker that the brief is accepted, first: whatever follows is finished by the next
        // run if this one dies.
        let blob = repo.store_blob(bytes)?;
        repo.set_ref(
            &missions::brief_ref(&brief.id),
            blob,
            &format!("quire: mission {} accepted", brief.id),
        )?;
        crate::fault::point("after_brief_ref");
    }
    let state = if brief.runs_its_own_commands() && !vault.config().missions.trust_briefs {
        MissionState::AwaitingStart
    } else {
        MissionState::Queued
    };
    let commit = match note_commit(repo, &main, &note_path)? {
        Some(c) => c,
        None => commit_note(vault, repo, &main, &brief, state)?,
    };
    crate::fault::point("after_mission_note");
    let mut sandboxes = Vec::new();
    for sandbox in sandbox_ids(&brief) {
        if repo
            .branch_tip(&super::sandbox::branch_of(&sandbox))?
            .is_none()
        {
            // The branch only: its work tree is checked out when its first step is about to run
            // (by the daemon's carrier, off the intake's path), so a burst of briefs does not
            // hold the bundles behind it for a checkout each.
            super::sandbox::create_in(vault, repo, &sandbox, Some(&brief.from), false, events)?;
        }
        sandboxes.push(sandbox);
    }
    let new = known.is_none();
    if new {
        let now = now_rfc3339();
        let runs: Vec<RunRow> = match &brief.items {
            None => vec![RunRow::new(&brief.id, None, state)],
            Some(items) => items
                .iter()
                .map(|i| RunRow::new(&brief.id, Some(i), state))
                .collect(),
        };
        store.insert(
            &MissionRow {
                id: brief.id.clone(),
                digest,
                title: brief.title.clone(),
                state,
                brief: String::from_utf8_lossy(bytes).into_owned(),
                created: now.clone(),
                updated: now,
            },
            &runs,
        )?;
    }
    // A brief that brings its own commands waits for a token holder's `start`.
    if new && state == MissionState::AwaitingStart {
        let expires = decision_expiry(vault);
        let decision = missions::DecisionRow {
            id: format!("{}.start", brief.id),
            mission: brief.id.clone(),
            item: None,
            kind: "start".into(),
            commit: commit.to_string(),
            requested: now_rfc3339(),
            expires,
            answer: None,
            reason: Some("the brief's steps run their own commands".into()),
        };
        store.request_decision(&decision)?;
        events.emit(Event::new(
            kind::DECISION_REQUESTED,
            &brief.id,
            json!({ "id": decision.id, "mission": brief.id, "item": null, "kind": "start", "commit": decision.commit, "expires": decision.expires }),
            Some(brief.id.clone()),
        ));
    }
    // Said once, when the state first records it (a resumed acceptance said it before dying).
    if new {
        events.emit(Event::new(
        kind::MISSION_CREATED,
        &brief.id,
        json!({ "id": brief.id, "title": brief.title, "state": state, "commit": commit.to_string(), "sandboxes": sandboxes, "steps": brief.pipeline.len() }),
        Some(brief.id.clone()),
    ));
    }
    Ok(Ok(Accepted::New {
        id: brief.id,
        commit: commit.to_string(),
        note: note_path,
        sandboxes,
        state,
    }))
}

/// The sandboxes a brief runs in: its own, or one per item.
fn sandbox_ids(brief: &Brief) -> Vec<String> {
    match &brief.items {
        None => vec![brief.id.clone()],
        Some(items) => items
            .iter()
            .map(|i| missions::sandbox_id(&brief.id, Some(i)))
            .collect(),
    }
}

fn exists(id: &str) -> Rejection {
    Rejection::new(
        ErrorCode::Exists,
        format!(
            "a different brief was already accepted as mission `{id}`; give this one another id (`quire mission status {id}` shows the first)"
        ),
    )
}

/// When a decision requested now expires (`[missions] decision_ttl` from now), RFC 3339.
pub(crate) fn decision_expiry(vault: &Vault) -> String {
    let ttl = vault.config().missions.decision_ttl.duration();
    (chrono::Utc::now() + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::days(7)))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The brief kept in Git for `id`, if one was accepted.
fn kept_brief(repo: &Repo, id: &str) -> Result<Option<Brief>, WorkflowError> {
    let Some(blob) = repo.ref_target(&missions::brief_ref(id)) else {
        return Ok(None);
    };
    let bytes = repo.blob(blob)?;
    Ok(Brief::parse(&bytes).ok())
}

/// The commit on main that added the note at `path`, if main has it (the tip when the note is
/// there without a commit of quire's naming it: a person's history is not searched).
fn note_commit(repo: &Repo, main: &str, path: &str) -> Result<Option<Oid>, WorkflowError> {
    let Some(tip) = repo.branch_tip(main)? else {
        return Ok(None);
    };
    Ok(repo.blob_at(tip, path).map(|_| tip))
}

/// Commits the mission note onto main (through the landing path: compare-and-swap of the branch,
/// main's work tree brought along, a person's edits there left alone).
fn commit_note(
    vault: &Vault,
    repo: &Repo,
    main: &str,
    brief: &Brief,
    state: MissionState,
) -> Result<Oid, WorkflowError> {
    let text = missions::note::text(brief, state);
    let message = message_with_trailers(
        &format!("Add mission {}: {}", brief.id, brief.title),
        &[(TRAILER_MISSION_ID, &brief.id)],
    );
    land_note(
        vault,
        repo,
        main,
        &brief.id,
        &message,
        ("accepted", "after_mission_commit"),
        |_| Some(text.clone()),
    )?
    .ok_or_else(|| WorkflowError::Input(format!("the branch `{main}` does not exist")))
}

/// Lands `text_of(main's tip)` as mission `id`'s note on main, computed again each time main
/// moved meanwhile; `None` when `text_of` has nothing to write (or main has no commit).
/// `(what, crash_point)` name the reflog entry and the failure point of the landing.
fn land_note(
    vault: &Vault,
    repo: &Repo,
    main: &str,
    id: &str,
    message: &str,
    (what, crash_point): (&str, &'static str),
    text_of: impl Fn(Oid) -> Option<String>,
) -> Result<Option<Oid>, WorkflowError> {
    let path = missions::note::path(id);
    let vp = VaultPath::new(&path).map_err(|e| WorkflowError::Input(e.to_string()))?;
    let author = repo.committer();
    let reflog = format!("quire: mission {id} {what}");
    for _ in 0..16 {
        let Some(before) = repo.branch_tip(main)? else {
            return Ok(None);
        };
        let Some(text) = text_of(before) else {
            return Ok(None);
        };
        let mut extra = ChangeSet::new();
        extra.write(vp.clone(), FileContent::new(text.into_bytes()));
        let tree = repo.tree_of(before)?;
        let landed = super::landing::land(
            vault,
            repo,
            main,
            before,
            super::landing::Landing {
                tree,
                extra: &extra,
                parents: &[before],
                author: &author,
                message,
                reflog: &reflog,
                crash_point,
            },
        )?;
        if let Some((commit, _, _)) = landed {
            return Ok(Some(commit));
        }
    }
    Err(WorkflowError::Input(format!(
        "the branch `{main}` kept moving while mission {id}'s note was written; try again"
    )))
}

/// Shows `state` in mission `id`'s note on main (its front matter's `status`), as one commit with
/// the `Mission-Id` trailer; nothing when the note says so already, is gone, or has no status line
/// a person left in place. The rest of the note (ticked tasks, a person's words) is kept.
pub(crate) fn show_state(
    vault: &Vault,
    id: &str,
    state: MissionState,
) -> Result<Option<Oid>, WorkflowError> {
    let repo = Repo::open(vault.root())?;
    let main = vault.config().git.main.clone();
    let path = missions::note::path(id);
    let _lock = super::landing::writer(vault, &repo)?;
    let message = message_with_trailers(
        &format!("Mission {id}: {state}"),
        &[(TRAILER_MISSION_ID, id)],
    );
    land_note(
        vault,
        &repo,
        &main,
        id,
        &message,
        (state.as_str(), "after_mission_state"),
        |tip| {
            let blob = repo.blob_at(tip, &path)?;
            missions::note::with_status(&String::from_utf8_lossy(&blob), state)
        },
    )
}

/// A mission as `quire mission list` and `GET /api/missions` show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MissionView {
    /// Its id.
    pub id: String,
    /// Its title.
    pub title: String,
    /// Where it stands.
    pub state: MissionState,
    /// The step each run is at (its name; `null` once past the last), per sandbox.
    pub runs: Vec<RunView>,
    /// Attempts made, over all runs.
    pub attempts: usize,
    /// Decisions waiting for an answer.
    pub open_decisions: Vec<String>,
    /// When it was accepted.
    pub created: String,
    /// When it last changed.
    pub updated: String,
}

/// One run of a mission.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunView {
    /// Its sandbox.
    pub sandbox: String,
    /// Its item, if any.
    pub item: Option<String>,
    /// Where it stands.
    pub state: MissionState,
    /// The step it is at.
    pub step: Option<String>,
    /// Steps done before it (its position in the pipeline, from 0).
    pub step_index: usize,
    /// Steps in the pipeline.
    pub steps: usize,
    /// Its round.
    pub round: u32,
    /// The attempt of its step.
    pub attempt: u32,
}

/// Every mission, oldest first.
pub fn list(vault: &Vault) -> Result<Vec<MissionView>, WorkflowError> {
    let store = Store::open(&vault.state_dir())?;
    let mut open = std::collections::HashMap::<String, Vec<String>>::new();
    for d in store.open_decisions()? {
        open.entry(d.mission).or_default().push(d.id);
    }
    // Four queries for the whole list, not three per mission.
    let mut runs = store.all_runs()?;
    let counts = store.attempt_counts()?;
    Ok(store
        .missions()?
        .into_iter()
        .map(|m| {
            let runs = runs.remove(&m.id).unwrap_or_default();
            let attempts = counts.get(&m.id).copied().unwrap_or(0);
            let ids = open.remove(&m.id).unwrap_or_default();
            view_of(ids, m, runs, attempts)
        })
        .collect())
}

/// One mission in full, as `quire mission status` and `GET /api/missions/{id}` show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MissionStatus {
    /// The mission.
    pub mission: MissionView,
    /// Every attempt of every run, in the order they started.
    pub attempts: Vec<missions::AttemptRow>,
    /// Its decisions waiting for an answer.
    pub decisions: Vec<missions::DecisionRow>,
}

/// Mission `id` with every attempt and open decision; `None` when there is no such mission.
pub fn status(vault: &Vault, id: &str) -> Result<Option<MissionStatus>, WorkflowError> {
    let store = Store::open(&vault.state_dir())?;
    let Some(m) = store.mission(id)? else {
        return Ok(None);
    };
    let open: Vec<missions::DecisionRow> = store
        .open_decisions()?
        .into_iter()
        .filter(|d| d.mission == id)
        .collect();
    let attempts = store.attempts(id)?;
    Ok(Some(MissionStatus {
        mission: view(&store, &open, m)?,
        attempts,
        decisions: open,
    }))
}

/// Decisions waiting for an answer, oldest first.
pub fn inbox(vault: &Vault) -> Result<Vec<missions::DecisionRow>, WorkflowError> {
    Store::open(&vault.state_dir())
        .and_then(|s| s.open_decisions())
        .map_err(WorkflowError::from)
}

fn view(
    store: &Store,
    open: &[missions::DecisionRow],
    m: MissionRow,
) -> Result<MissionView, WorkflowError> {
    let runs = store.runs(&m.id)?;
    let attempts = store.attempts(&m.id)?.len();
    let ids = open
        .iter()
        .filter(|d| d.mission == m.id)
        .map(|d| d.id.clone())
        .collect();
    Ok(view_of(ids, m, runs, attempts))
}

/// The names of a stored brief's steps, read without validating the rest (it was validated when
/// accepted): a listing of a thousand missions reads a thousand briefs.
fn step_names(brief: &str) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Named {
        step: String,
    }
    #[derive(serde::Deserialize)]
    struct Steps {
        #[serde(default)]
        pipeline: Vec<Named>,
    }
    serde_json::from_str::<Steps>(brief)
        .map(|s| s.pipeline.into_iter().map(|n| n.step).collect())
        .unwrap_or_default()
}

fn view_of(
    open_decisions: Vec<String>,
    m: MissionRow,
    runs: Vec<RunRow>,
    attempts: usize,
) -> MissionView {
    let names = step_names(&m.brief);
    let runs = runs
        .into_iter()
        .map(|r| RunView {
            step: names.get(r.step).cloned(),
            step_index: r.step,
            steps: names.len(),
            sandbox: r.sandbox,
            item: r.item,
            state: r.state,
            round: r.round,
            attempt: r.attempt,
        })
        .collect();
    MissionView {
        open_decisions,
        id: m.id,
        title: m.title,
        state: m.state,
        runs,
        attempts,
        created: m.created,
        updated: m.updated,
    }
}

/// Why a decision could not be resolved as asked (SPEC §9.4); the HTTP status it maps to is
/// [`DecideRefusal::status`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DecideRefusal {
    /// `not_found`, `invalid_answer`, `decided`, `stale`, or a promotion's or discard's own code;
    /// for operator actions also `final`, `running`, `not_escalated`, `unknown_step`,
    /// `not_running`, `invalid_message`.
    pub code: String,
    /// What happened and what to do.
    pub message: String,
}

impl DecideRefusal {
    pub(crate) fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
        }
    }

    /// The HTTP status for this refusal.
    pub fn status(&self) -> u16 {
        match self.code.as_str() {
            "not_found" => 404,
            "invalid_answer" | "unknown_step" | "invalid_message" => 400,
            "remote_unreachable" => 503,
            _ => 409,
        }
    }
}

/// A resolved decision.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Decided {
    /// The decision.
    pub id: String,
    /// The mission.
    pub mission: String,
    /// The answer.
    pub answer: String,
    /// Whether it had been given before (resolving is idempotent).
    pub again: bool,
    /// The promotion commit, for an approval.
    pub commit: Option<String>,
    /// Where the mission stands now.
    pub state: MissionState,
}

/// Resolves decision `id` with `answer` (SPEC §9.4): `start`/`reject` for a start decision,
/// `approve`/`reject` for a round's end, `retry`/`abort` for an escalation. `commit`, when given,
/// is the sandbox commit the person saw: a sandbox that moved since is `stale`. The same answer
/// again changes nothing; another answer to a resolved decision is `decided`.
///
/// The answer is recorded before its effect and marked applied after, so a crash in between is
/// finished by resolving again with the same answer, never applied twice.
pub fn decide(
    vault: &Vault,
    id: &str,
    answer: &str,
    reason: Option<&str>,
    commit: Option<&str>,
    by: &str,
    events: &mut dyn EventSink,
) -> Result<Result<Decided, DecideRefusal>, WorkflowError> {
    // One answer at a time in this process: the daemon's pipeline (a dropped decision file), its
    // supervisor (the sweep) and the API may resolve the same decision at once, and the second
    // must find the first applied rather than apply it again.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let store = Store::open(&vault.state_dir())?;
    let Some((d, given)) = store.decision(id)? else {
        return Ok(Err(DecideRefusal::new(
            "not_found",
            format!("no decision `{id}`; `quire inbox` lists the open ones"),
        )));
    };
    let allowed: &[&str] = match d.kind.as_str() {
        "start" => &["start", "reject"],
        "round" => &["approve", "reject"],
        _ => &["retry", "abort"],
    };
    if !allowed.contains(&answer) {
        return Ok(Err(DecideRefusal::new(
            "invalid_answer",
            format!(
                "decision `{id}` ({}) takes {}",
                d.kind,
                allowed.join(" or ")
            ),
        )));
    }
    let again = match &given {
        Some(g) if g.answer != answer => {
            return Ok(Err(DecideRefusal::new(
                "decided",
                format!("decision `{id}` was already answered `{}`", g.answer),
            )));
        }
        Some(g) if g.applied => {
            let state = store
                .mission(&d.mission)?
                .map_or(MissionState::Queued, |m| m.state);
            // A crash after the answer took effect may have left the note behind (or main's
            // work tree mid-update): showing the end again finishes both, and changes nothing
            // when they are done.
            if state.is_final()
                && let Err(e) = show_state(vault, &d.mission, state)
            {
                tracing::warn!(mission = %d.mission, "could not show `{state}` in the mission note: {e}");
            }
            return Ok(Ok(Decided {
                id: id.to_owned(),
                mission: d.mission,
                answer: answer.to_owned(),
                again: true,
                commit: None,
                state,
            }));
        }
        Some(_) => true,
        None => false,
    };
    let repo = Repo::open(vault.root())?;
    let sandbox = missions::sandbox_id(&d.mission, d.item.as_deref());
    if !again
        && let Some(seen) = commit
        && d.kind == "round"
    {
        let tip = repo
            .branch_tip(&super::sandbox::branch_of(&sandbox))?
            .map(|t| t.to_string())
            .unwrap_or_default();
        if !tip.starts_with(seen) || seen.len() < 7 {
            return Ok(Err(DecideRefusal::new(
                "stale",
                format!(
                    "the sandbox `{sandbox}` is at {tip} now, not {seen}; look again and decide on what it holds"
                ),
            )));
        }
    }
    if !again {
        store.answer(id, answer, reason, by, &now_rfc3339())?;
    }
    crate::fault::point("after_decision_recorded");
    let mut run = store.run(&d.mission, d.item.as_deref())?.ok_or_else(|| {
        WorkflowError::Input(format!("mission `{}` has no run for `{id}`", d.mission))
    })?;
    let mut promoted = None;
    match answer {
        "start" => {
            for mut r in store.runs(&d.mission)? {
                if r.state == MissionState::AwaitingStart {
                    r.state = MissionState::Queued;
                    store.set_run(&r)?;
                }
            }
            run.state = MissionState::Queued;
        }
        "approve" => {
            let decision_trailers = [
                ("Decision-Id", id),
                ("Decided-By", by),
                ("Decision-Reason", reason.unwrap_or("")),
            ];
            match super::sandbox::promote_with(vault, &sandbox, &decision_trailers, events)? {
                super::sandbox::Outcome::Done(done) => promoted = Some(done.commit.clone()),
                super::sandbox::Outcome::Refused(r) if r.code == "nothing_to_promote" => {}
                super::sandbox::Outcome::Refused(r) => {
                    return Ok(Err(DecideRefusal::new(
                        r.code,
                        format!(
                            "{}; the decision stands, answer it again once that is fixed",
                            r.message
                        ),
                    )));
                }
            }
            run.state = MissionState::Promoted;
        }
        "reject" => {
            if repo
                .branch_tip(&super::sandbox::branch_of(&sandbox))?
                .is_some()
                && let Err(r) = super::sandbox::discard(vault, &sandbox, events)?
            {
                return Ok(Err(DecideRefusal::new(r.code, r.message)));
            }
            for mut r in store.runs(&d.mission)? {
                if d.kind == "start" || r.item == d.item {
                    r.state = MissionState::Rejected;
                    store.set_run(&r)?;
                }
            }
            run.state = MissionState::Rejected;
        }
        "retry" => {
            // From the step's start, as an automatic retry would (what the failure left is
            // already kept under refs/quire/salvage/).
            let workdir = vault.root().join("sandbox").join(&sandbox);
            if let Ok(start) = Oid::from_str(&run.start_commit)
                && workdir.is_dir()
            {
                repo.reset_workdir(&workdir, start)?;
            }
            run.attempt += 1;
            run.next_at = 0;
            run.state = MissionState::Running;
        }
        _ => run.state = MissionState::Aborted,
    }
    if answer != "start" && answer != "reject" {
        store.set_run(&run)?;
    }
    super::mission_steps::set_mission_state(&store, &d.mission)?;
    store.applied(id)?;
    let state = store.mission(&d.mission)?.map_or(run.state, |m| m.state);
    events.emit(Event::new(
        kind::DECISION_RESOLVED,
        &d.mission,
        json!({ "id": id, "mission": d.mission, "item": d.item, "answer": answer, "reason": reason, "by": by, "commit": promoted }),
        Some(d.mission.clone()),
    ));
    let outcome = match answer {
        "approve" => Some(kind::MISSION_PROMOTED),
        "reject" => Some(kind::MISSION_REJECTED),
        "abort" => Some(kind::MISSION_ABORTED),
        _ => None,
    };
    if let Some(k) = outcome {
        events.emit(Event::new(
            k,
            &d.mission,
            json!({ "mission": d.mission, "item": d.item, "decision": id, "commit": promoted, "by": by }),
            Some(d.mission.clone()),
        ));
    }
    // mission.md on main shows how it ended (SPEC §9.4); a failure here loses nothing of the
    // decision, which has taken effect: the note is only behind.
    if state.is_final()
        && let Err(e) = show_state(vault, &d.mission, state)
    {
        tracing::warn!(mission = %d.mission, "could not show `{state}` in the mission note: {e}");
    }
    Ok(Ok(Decided {
        id: id.to_owned(),
        mission: d.mission,
        answer: answer.to_owned(),
        again,
        commit: promoted,
        state,
    }))
}
