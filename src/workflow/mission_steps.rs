//! Carrying missions through their steps (SPEC §9.2–9.3): each run (a mission's sandbox, or one
//! item's) takes a lease, runs its next step's attempt, and on the attempt's end commits what the
//! step changed, moves on, retries, goes back a round, escalates, or asks for a decision — then
//! writes it all under the same lease, so a holder that lost the run moves nothing.
//!
//! Runs go in parallel, up to `[missions] parallel`; the steps of one run never overlap, and no two
//! attempts of one step ever run at once (the lease).
//!
//! A run whose last attempt is still recorded as running when its lease is taken was left by a
//! quire that died: the attempt's process is waited for if it still runs (adopted), its exit
//! status read from the file it left, and it is finished as if quire had seen it end; with no
//! status, it was lost.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::WorkflowError;
use super::missions::decision_expiry;
use crate::contributions::now_rfc3339;
use crate::events::{Event, EventSink, kind};
use crate::git::{GitError, Oid, Repo, WorkTree, message_with_trailers};
use crate::missions::runner::{self, Cancel, Ended, Launch};
use crate::missions::{
    Approval, AttemptRow, Brief, Command, DecisionRow, Effects, MissionError, MissionState, RunRow,
    Store, When,
};
use crate::vault::Vault;

/// How long a lease holds without a heartbeat.
const LEASE: Duration = Duration::from_secs(30);

/// How often a running attempt renews its lease.
const HEARTBEAT: Duration = Duration::from_secs(10);

/// How often a waiting attempt looks whether quire is stopping.
const STOP_POLL: Duration = Duration::from_millis(100);

/// How much of a failed attempt's log `log:` heal rules look at.
const LOG_TAIL: u64 = 64 * 1024;

/// The trailers of a step's commit (SPEC §9.2).
pub const TRAILER_STEP: &str = "Mission-Step";
/// See [`TRAILER_STEP`].
pub const TRAILER_ATTEMPT: &str = "Mission-Attempt";

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    /// The mission.
    pub mission: String,
    /// The item, if any.
    pub item: Option<String>,
    /// The step.
    pub step: String,
    /// The round.
    pub round: u32,
    /// The attempt.
    pub attempt: u32,
    /// Its failure class (`None`: it succeeded).
    pub class: Option<String>,
    /// The commit it made.
    pub commit: Option<String>,
    /// Where its run stands after it.
    pub then: MissionState,
}

pub(super) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Carries every open run (or only mission `only`'s) as far as it goes by itself: until each
/// waits for a decision, has ended, or (unless `wait_backoff`) waits out a retry's pause. Runs go
/// in parallel, up to `[missions] parallel`. Events are emitted as they happen.
pub fn drive(
    vault: &Vault,
    only: Option<&str>,
    wait_backoff: bool,
    events: &mut dyn EventSink,
) -> Result<Vec<StepReport>, WorkflowError> {
    super::mission_rebuild::rebuild(vault)?;
    let store = Store::open(&vault.state_dir())?;
    let runs: Vec<RunRow> = store
        .open_runs()?
        .into_iter()
        .filter(|r| only.is_none_or(|m| r.mission == m))
        .collect();
    drop(store);
    let parallel = vault.config().missions.parallel().max(1);
    let stop = Cancel::default();
    let (tx, rx) = mpsc::channel::<Result<Result<Event, StepReport>, WorkflowError>>();
    let mut reports = Vec::new();
    let mut failure = None;
    let queue = std::sync::Mutex::new(runs.into_iter());
    std::thread::scope(|scope| {
        for _ in 0..parallel {
            let tx = tx.clone();
            let queue = &queue;
            let stop = &stop;
            scope.spawn(move || {
                loop {
                    let next = queue.lock().ok().and_then(|mut q| q.next());
                    let Some(run) = next else { break };
                    let mut sink = ChannelSink(tx.clone());
                    let mut report = |r: StepReport| {
                        let _ = tx.send(Ok(Err(r)));
                    };
                    if let Err(e) = carry(vault, &run, wait_backoff, stop, &mut sink, &mut report) {
                        let _ = tx.send(Err(e));
                    }
                }
            });
        }
        drop(tx);
        for message in rx {
            match message {
                Ok(Ok(event)) => events.emit(event),
                Ok(Err(report)) => reports.push(report),
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
    });
    match failure {
        Some(e) => Err(e),
        None => Ok(reports),
    }
}

/// Events from a worker thread to the caller's sink.
struct ChannelSink(mpsc::Sender<Result<Result<Event, StepReport>, WorkflowError>>);

impl EventSink for ChannelSink {
    fn emit(&mut self, event: Event) {
        let _ = self.0.send(Ok(Ok(event)));
    }
}

/// The runs ready to be carried now (not waiting out a retry's pause, and held by no live
/// holder), and the earliest time, in Unix milliseconds, one that is not ready may become so.
pub fn ready(vault: &Vault) -> Result<(Vec<RunRow>, Option<i64>), WorkflowError> {
    let store = Store::open(&vault.state_dir())?;
    let now = now_ms();
    let mut ready = Vec::new();
    let mut next: Option<i64> = None;
    for r in store.open_runs()? {
        let held = r.lease_until > now && !holder_is_gone(&r.holder);
        let not_before = if held { r.lease_until } else { r.next_at };
        if not_before > now {
            next = Some(next.map_or(not_before, |n| n.min(not_before)));
        } else {
            ready.push(r);
        }
    }
    Ok((ready, next))
}

/// Carries one run as far as it goes by itself, without waiting out a retry's pause (the daemon's
/// supervisor comes back for it then). When `stop` is set, a running attempt is ended with its
/// process group and counts as interrupted (`lost`), as if quire had died under it.
pub fn carry_run(
    vault: &Vault,
    run: &RunRow,
    stop: &Cancel,
    events: &mut dyn EventSink,
) -> Result<Vec<StepReport>, WorkflowError> {
    let mut reports = Vec::new();
    carry(vault, run, false, stop, events, &mut |r| reports.push(r))?;
    Ok(reports)
}

/// Carries one run step by step until it stops by itself.
fn carry(
    vault: &Vault,
    run: &RunRow,
    wait_backoff: bool,
    stop: &Cancel,
    events: &mut dyn EventSink,
    reports: &mut dyn FnMut(StepReport),
) -> Result<(), WorkflowError> {
    let store = Store::open(&vault.state_dir())?;
    // Held across the run's steps: its index stays loaded and its journal of file events spares
    // each commit a scan of every file.
    let mut tree = None;
    loop {
        if stop.is_cancelled() {
            return Ok(());
        }
        let Some(run) = store.run(&run.mission, run.item.as_deref())? else {
            return Ok(());
        };
        if !matches!(run.state, MissionState::Queued | MissionState::Running) {
            return Ok(());
        }
        let wait = run.next_at - now_ms();
        if wait > 0 {
            if !wait_backoff {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(wait as u64));
            continue;
        }
        let dead =
            (!run.holder.is_empty() && run.holder != holder() && holder_is_gone(&run.holder))
                .then_some(run.holder.as_str());
        let Some(fence) = store.claim(&run, now_ms(), LEASE.as_millis() as i64, &holder(), dead)?
        else {
            // Another holder has it (or had it until moments ago): not ours to move.
            return Ok(());
        };
        let Some(report) = step(vault, &store, run, fence, &mut tree, stop, events)? else {
            // Offered to runners: the offer holds the run until one takes it.
            return Ok(());
        };
        let done = !matches!(report.then, MissionState::Queued | MissionState::Running);
        reports(report);
        if done {
            return Ok(());
        }
    }
}

/// This process, as a lease holder: `<host>/<pid>`.
fn holder() -> String {
    static HOLDER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOLDER
        .get_or_init(|| format!("{}/{}", host(), std::process::id()))
        .clone()
}

fn host() -> String {
    #[cfg(unix)]
    {
        rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned()
    }
    #[cfg(not(unix))]
    {
        "localhost".to_owned()
    }
}

/// Whether the lease holder `holder` was a process of this machine that is gone (a quire killed
/// mid-step): its lease is then taken at once rather than after it expires. A holder on another
/// machine, or one whose process id now names a live process, is waited out.
fn holder_is_gone(holder: &str) -> bool {
    let Some((h, pid)) = holder.rsplit_once('/') else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    h == host() && !runner::process_alive(pid)
}

/// Where an attempt's files are.
pub(super) struct Files {
    /// The log, relative to the vault.
    pub(super) log_rel: String,
    pub(super) log: PathBuf,
    exit: PathBuf,
    pub(super) revision: PathBuf,
    pub(super) inbox: PathBuf,
}

pub(super) fn files(vault: &Vault, run: &RunRow, step: &str) -> Files {
    let name = format!("{step}.{}.{}", run.round, run.attempt);
    let log_rel = format!(
        "{}/missions/{}/{name}.log",
        crate::vault::LOGS_DIR,
        run.sandbox
    );
    let own = vault.state_dir().join("missions").join(&run.sandbox);
    Files {
        log: vault.root().join(&log_rel),
        log_rel,
        exit: own.join(format!("{name}.exit")),
        revision: own.join("revision.json"),
        inbox: own.join("inbox.jsonl"),
    }
}

/// One attempt of `run`'s current step, under lease `fence`: started (or, when a dead quire left it
/// running, adopted), waited for, and finished. `None`: the step is for a runner, and was offered.
fn step(
    vault: &Vault,
    store: &Store,
    mut run: RunRow,
    fence: i64,
    tree: &mut Option<WorkTree>,
    stop: &Cancel,
    events: &mut dyn EventSink,
) -> Result<Option<StepReport>, WorkflowError> {
    let mission = store
        .mission(&run.mission)?
        .ok_or_else(|| WorkflowError::Input(format!("mission `{}` has no record", run.mission)))?;
    let brief = Brief::parse(mission.brief.as_bytes()).map_err(|r| {
        WorkflowError::Input(format!(
            "mission `{}`: its stored brief no longer reads: {r}",
            run.mission
        ))
    })?;
    let repo = Repo::open(vault.root())?;
    let branch = super::sandbox::branch_of(&run.sandbox);
    let workdir = vault.root().join("sandbox").join(&run.sandbox);
    let Some(step) = brief.pipeline.get(run.step).cloned() else {
        // Past the last step: the round is over.
        return request_round_decision(vault, store, &repo, run, fence, &brief, events).map(Some);
    };
    let tip = repo.branch_tip(&branch)?;
    let f = files(vault, &run, &step.name);
    let key = AttemptKey::of(&run, &step.name);
    // A dead quire's attempt, or a runner's whose lease ran out: adopted or finished as lost,
    // never started again alongside (no two attempts ever overlap).
    let previous = store
        .attempts(&run.mission)?
        .into_iter()
        .find(|a| key.matches(a) && a.state == "running");
    let remote = match &previous {
        Some(a) => !a.runner.is_empty(),
        None => super::mission_remote::for_runners(vault, &step),
    };
    if remote {
        // A runner works from the branch on the remote: no work tree is checked out here.
        let Some(tip) = tip else {
            let why = format!("the sandbox `{}` (branch `{branch}`) is gone", run.sandbox);
            return escalate(vault, store, run, fence, &step.name, None, &why, events).map(Some);
        };
        return remote_step(
            vault, store, &repo, run, fence, &brief, &step, &f, tip, previous, events,
        );
    }
    let mut fresh = false;
    // Also when the folder is there: a checkout cut short is made again.
    if tip.is_some() {
        match super::sandbox::ensure_worktree(vault, &repo, &run.sandbox) {
            Ok(now) => fresh = now,
            Err(e) => {
                let why = format!(
                    "the work tree sandbox/{}/ could not be checked out: {e}",
                    run.sandbox
                );
                return escalate(vault, store, run, fence, &step.name, None, &why, events)
                    .map(Some);
            }
        }
    }
    let (Some(tip), true) = (tip, workdir.is_dir()) else {
        let why = format!(
            "the sandbox `{}` (branch `{branch}` and its work tree sandbox/{}/) is gone",
            run.sandbox, run.sandbox
        );
        return escalate(vault, store, run, fence, &step.name, None, &why, events).map(Some);
    };
    // Open (and watched) before the step runs, so that the journal sees all it does.
    let tree = match tree.take() {
        Some(t) if t.path() == workdir => tree.insert(t),
        _ if fresh => tree.insert(WorkTree::open_checked_out(&workdir)?),
        _ => tree.insert(WorkTree::open(&workdir)?),
    };
    let started = Instant::now();
    let (ended, mut attempt_row) = match previous {
        Some(a) => {
            let left = step.timeout.saturating_sub(
                chrono::DateTime::parse_from_rfc3339(&a.started)
                    .map(|t| {
                        (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
                            .to_std()
                            .unwrap_or_default()
                    })
                    .unwrap_or_default(),
            );
            let grace = vault.config().missions.grace.duration();
            let ended = runner::adopt(a.pid, &f.exit, left, grace);
            tracing::info!(mission = %run.mission, step = %step.name, ?ended, "finished an attempt a previous quire left running");
            run.start_commit = a.start_commit.clone();
            (ended, a)
        }
        None => {
            begin(store, &mut run, fence, tip)?;
            let command = match command_of(vault, &step) {
                Ok(c) => c,
                Err(why) => {
                    return escalate(vault, store, run, fence, &step.name, None, &why, events)
                        .map(Some);
                }
            };
            let _ = std::fs::remove_file(&f.revision);
            if let Some(dir) = f.revision.parent() {
                std::fs::create_dir_all(dir).map_err(|e| {
                    WorkflowError::io(format!("could not create {}", dir.display()), e)
                })?;
            }
            let mut row = AttemptRow {
                mission: run.mission.clone(),
                item: run.item.clone(),
                step: step.name.clone(),
                round: run.round,
                attempt: run.attempt,
                fence,
                state: "running".into(),
                pid: 0,
                started: now_rfc3339(),
                ended: None,
                exit: None,
                class: None,
                healed_by: None,
                start_commit: run.start_commit.clone(),
                commit: None,
                log: f.log_rel.clone(),
                runner: String::new(),
            };
            store.put_attempt(&row)?;
            let env = environment(vault, &run, &step.name, &workdir, &f);
            let running = runner::spawn(Launch {
                command,
                dir: workdir.clone(),
                env,
                log: f.log.clone(),
                exit_file: f.exit.clone(),
                timeout: step.timeout,
                grace: vault.config().missions.grace.duration(),
                // Adopted by the daemon that restarts after a crash.
                ends_with_parent: false,
            })
            .map_err(MissionError::from)?;
            row.pid = running.pid();
            store.put_attempt(&row)?;
            crate::fault::point("after_step_spawn");
            events.emit(Event::new(
                kind::MISSION_STEP_STARTED,
                &run.mission,
                json!({ "mission": run.mission, "item": run.item, "step": step.name, "round": run.round, "attempt": run.attempt, "pid": row.pid, "log": f.log_rel }),
                Some(run.mission.clone()),
            ));
            let ended = wait_holding(store, &run, fence, stop, running)?;
            (Some(ended), row)
        }
    };
    let took_ms = started.elapsed().as_secs_f64() * 1000.0;
    finish(
        vault,
        store,
        &repo,
        run,
        fence,
        &brief,
        &step,
        &f,
        ended,
        Given::Here(tree),
        &mut attempt_row,
        took_ms,
        events,
    )
    .map(Some)
}

/// Sets `run` going from `tip`: its start commit (kept by a retry, which starts where the first
/// attempt did) and, for its first step, the mission's `running` state (SPEC §9.5).
fn begin(store: &Store, run: &mut RunRow, fence: i64, tip: Oid) -> Result<(), WorkflowError> {
    if run.attempt == 1 || run.start_commit.is_empty() {
        run.start_commit = tip.to_string();
    }
    if run.state == MissionState::Queued && store.mark_running(run, fence)? {
        run.state = MissionState::Running;
        set_mission_state(store, &run.mission)?;
    }
    Ok(())
}

/// The shell text `step` runs; `Err` says why there is none.
fn command_of(vault: &Vault, step: &crate::missions::Step) -> Result<String, String> {
    match &step.command {
        Command::Run(r) => Ok(r.clone()),
        Command::Uses(name) => vault
            .config()
            .missions
            .commands
            .get(name)
            .cloned()
            .ok_or_else(|| {
                format!(
                    "step `{}` uses `{name}`, which `[missions.commands]` no longer has",
                    step.name
                )
            }),
    }
}

/// A step for runners: offered (`None`), or, when a runner held it and its lease ran out, the
/// attempt finished as lost and the run moved on as SPEC §9.3 says.
#[allow(clippy::too_many_arguments)]
fn remote_step(
    vault: &Vault,
    store: &Store,
    repo: &Repo,
    mut run: RunRow,
    fence: i64,
    brief: &Brief,
    step: &crate::missions::Step,
    f: &Files,
    tip: Oid,
    previous: Option<AttemptRow>,
    events: &mut dyn EventSink,
) -> Result<Option<StepReport>, WorkflowError> {
    if let Some(mut lost) = previous {
        tracing::warn!(mission = %run.mission, step = %step.name, runner = %lost.runner, "a runner's lease ran out; its attempt is lost");
        run.start_commit = lost.start_commit.clone();
        let took_ms = ms_since(&lost.started);
        return finish(
            vault,
            store,
            repo,
            run,
            fence,
            brief,
            step,
            f,
            None,
            Given::Runner(None),
            &mut lost,
            took_ms,
            events,
        )
        .map(Some);
    }
    begin(store, &mut run, fence, tip)?;
    let command = match command_of(vault, step) {
        Ok(c) => c,
        Err(why) => {
            return escalate(vault, store, run, fence, &step.name, None, &why, events).map(Some);
        }
    };
    if vault.config().git.remote.is_none() {
        let why = format!(
            "step `{}` is for a runner (it asks for labels {:?}, or `[missions] local` is off), but `[git] remote` is not set: runners fetch sandboxes from it",
            step.name, step.runs_on
        );
        return escalate(vault, store, run, fence, &step.name, None, &why, events).map(Some);
    }
    super::mission_remote::offer(vault, store, &run, fence, step, command, events)?;
    Ok(None)
}

/// Milliseconds from an attempt's recorded start (RFC 3339) until now; 0 if it does not read.
pub(super) fn ms_since(started: &str) -> f64 {
    chrono::DateTime::parse_from_rfc3339(started)
        .map(|t| (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_milliseconds() as f64)
        .unwrap_or(0.0)
}

/// Identifies one attempt.
struct AttemptKey {
    item: Option<String>,
    step: String,
    round: u32,
    attempt: u32,
}

impl AttemptKey {
    fn of(run: &RunRow, step: &str) -> Self {
        Self {
            item: run.item.clone(),
            step: step.to_owned(),
            round: run.round,
            attempt: run.attempt,
        }
    }

    fn matches(&self, a: &AttemptRow) -> bool {
        a.item == self.item
            && a.step == self.step
            && a.round == self.round
            && a.attempt == self.attempt
    }
}

/// The step's environment (SPEC §9.2).
pub(super) fn environment(
    vault: &Vault,
    run: &RunRow,
    step: &str,
    workdir: &Path,
    f: &Files,
) -> Vec<(String, String)> {
    let mut env = vec![
        ("QUIRE_MISSION".into(), run.mission.clone()),
        ("QUIRE_STEP".into(), step.to_owned()),
        ("QUIRE_ATTEMPT".into(), run.attempt.to_string()),
        ("QUIRE_ROUND".into(), run.round.to_string()),
        (
            "QUIRE_IDEMPOTENCY_KEY".into(),
            format!("{}/{step}/{}/{}", run.sandbox, run.round, run.attempt),
        ),
        ("QUIRE_VAULT".into(), vault.root().display().to_string()),
        ("QUIRE_SANDBOX".into(), workdir.display().to_string()),
        (
            "QUIRE_REVISION_FILE".into(),
            f.revision.display().to_string(),
        ),
        ("QUIRE_INBOX".into(), f.inbox.display().to_string()),
        ("QUIRE_ITEM".into(), run.item.clone().unwrap_or_default()),
    ];
    if !run.reason.is_empty() {
        env.push(("QUIRE_REVISION_REASON".into(), run.reason.clone()));
    }
    env
}

/// Waits for a running attempt, renewing the lease as it goes; a lease lost to another holder
/// ends the attempt (no two attempts of a step run at once).
fn wait_holding(
    store: &Store,
    run: &RunRow,
    fence: i64,
    stop: &Cancel,
    running: runner::Running,
) -> Result<Ended, WorkflowError> {
    let cancel = Cancel::default();
    std::thread::scope(|scope| {
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let beat = {
            let cancel = cancel.clone();
            let run = run.clone();
            let path = store.path().to_owned();
            scope.spawn(move || {
                let Ok(store) = Store::open_file(&path) else {
                    return;
                };
                let mut beat = Instant::now();
                while let Err(mpsc::RecvTimeoutError::Timeout) = done_rx.recv_timeout(STOP_POLL) {
                    if stop.is_cancelled() {
                        cancel.cancel();
                        return;
                    }
                    if beat.elapsed() < HEARTBEAT {
                        continue;
                    }
                    beat = Instant::now();
                    let until = now_ms() + LEASE.as_millis() as i64;
                    if !store.heartbeat(&run, fence, until).unwrap_or(true) {
                        tracing::warn!(mission = %run.mission, "the lease on a running step was lost; ending the step");
                        cancel.cancel();
                        return;
                    }
                }
            })
        };
        let ended = running.wait(&cancel);
        drop(done_tx);
        let _ = beat.join();
        Ok(ended)
    })
}

/// Finishes an attempt that ended (`None`: it was lost), and moves the run on.
#[allow(clippy::too_many_arguments)]
pub(super) fn finish(
    vault: &Vault,
    store: &Store,
    repo: &Repo,
    mut run: RunRow,
    fence: i64,
    brief: &Brief,
    step: &crate::missions::Step,
    f: &Files,
    ended: Option<Ended>,
    mut given: Given<'_>,
    row: &mut AttemptRow,
    took_ms: f64,
    events: &mut dyn EventSink,
) -> Result<StepReport, WorkflowError> {
    let branch = super::sandbox::branch_of(&run.sandbox);
    row.ended = Some(now_rfc3339());
    if !store.holds(&run, fence)? {
        // Taken from this holder while the attempt ran (an operator's abort or retry, or a lease
        // that expired): the attempt is recorded, and the run is not moved.
        row.state = "interrupted".into();
        row.class = Some("lost".into());
        store.put_attempt(row)?;
        record_attempt(vault, &run, row, took_ms);
        let then = store
            .run(&run.mission, run.item.as_deref())?
            .map_or(run.state, |r| r.state);
        return Ok(StepReport {
            mission: run.mission.clone(),
            item: run.item.clone(),
            step: step.name.clone(),
            round: run.round,
            attempt: run.attempt,
            class: Some("lost".into()),
            commit: None,
            then,
        });
    }
    row.exit = match ended {
        Some(Ended::Exited(n)) => Some(n),
        _ => None,
    };
    let start: Oid = Oid::from_str(&run.start_commit).map_err(|e| {
        WorkflowError::Input(format!("bad start commit in .quire/missions.db: {e}"))
    })?;
    if ended.is_some_and(Ended::success) {
        // What the step changed (beyond any commits it made itself) is committed to the sandbox.
        let tip = repo.branch_tip(&branch)?.unwrap_or(start);
        let committed = match &mut given {
            Given::Here(tree) => {
                repo.commit_all_in(tree, &branch, tip, &step_message(&run, &step.name))
            }
            Given::Runner(None) => Ok(None),
            // A runner's commit lands only on the commit its step started from.
            Given::Runner(Some(_)) if tip != start => Err(GitError::Moved(branch.clone())),
            Given::Runner(Some(c)) => {
                let c = *c;
                repo.swap_branch(&branch, Some(start), c, "quire: a runner's step")
                    .and_then(|()| {
                        // A work tree here (a local step ran in it) must show the runner's
                        // work, or the next local step would commit its stale files back.
                        let dir = vault
                            .root()
                            .join(super::sandbox::worktree_rel(&run.sandbox));
                        match dir.is_dir() {
                            true => repo.reset_workdir(&dir, c),
                            false => Ok(()),
                        }
                    })
                    .map(|()| Some(c))
            }
        };
        let commit = match committed {
            Ok(c) => c,
            Err(GitError::Moved(_)) => {
                return escalate(
                    vault,
                    store,
                    run,
                    fence,
                    &step.name,
                    Some(row),
                    "the sandbox branch moved while the step's work was committed",
                    events,
                );
            }
            Err(e) => return Err(e.into()),
        };
        crate::fault::point("after_step_commit");
        row.state = "succeeded".into();
        row.commit = commit.map(|c| c.to_string());
        store.put_attempt(row)?;
        if run.attempt > 1
            && let Some(rule) = last_heal_rule(store, &run, &step.name)?
        {
            events.emit(Event::new(
                kind::HEAL_COMPLETED,
                &run.mission,
                json!({ "mission": run.mission, "item": run.item, "step": step.name, "attempt": run.attempt, "rule": rule }),
                Some(run.mission.clone()),
            ));
        }
        events.emit(Event::new(
            kind::MISSION_STEP_SUCCEEDED,
            &run.mission,
            json!({ "mission": run.mission, "item": run.item, "step": step.name, "round": run.round, "attempt": run.attempt, "commit": row.commit, "duration_ms": took_ms }),
            Some(run.mission.clone()),
        ));
        record_attempt(vault, &run, row, took_ms);
        let report_base = (row.commit.clone(), None);
        // A revision asked for by the step: back to an earlier step, in a new round.
        if let Some((to, reason)) = read_revision(&f.revision) {
            let _ = std::fs::remove_file(&f.revision);
            let Some((index, _)) = brief.step(&to) else {
                let why = format!(
                    "step `{}` asked for a revision to `{to}`, which is no step of this pipeline",
                    step.name
                );
                return escalate(vault, store, run, fence, &step.name, None, &why, events);
            };
            if run.round > brief.max_revisions {
                let why = format!(
                    "step `{}` asked for a revision after {} revisions (`max_revisions` is {})",
                    step.name,
                    run.round - 1,
                    brief.max_revisions
                );
                return escalate(vault, store, run, fence, &step.name, None, &why, events);
            }
            run.round += 1;
            run.step = index;
            run.attempt = 1;
            run.reason = reason.clone();
            run.start_commit.clear();
            run.state = MissionState::Running;
            events.emit(Event::new(
                kind::MISSION_REVISION_REQUESTED,
                &run.mission,
                json!({ "mission": run.mission, "item": run.item, "from": step.name, "to": to, "round": run.round, "reason": reason }),
                Some(run.mission.clone()),
            ));
        } else {
            run.step += 1;
            run.attempt = 1;
            run.start_commit.clear();
            run.state = MissionState::Running;
        }
        if run.step >= brief.pipeline.len() {
            // The round is over: the decision is requested under the same lease.
            return request_round_decision(vault, store, repo, run, fence, brief, events);
        }
        return moved(store, run, fence, &step.name, row, report_base);
    }

    // The attempt failed (or was lost, or cut short).
    let class = match ended {
        None => "lost".to_owned(),
        Some(Ended::Cancelled) => "lost".to_owned(),
        Some(e) => e.class().unwrap_or_else(|| "lost".into()),
    };
    row.state = if class == "lost" { "lost" } else { "failed" }.into();
    row.class = Some(class.clone());
    if ended == Some(Ended::TimedOut) {
        events.emit(Event::new(
            kind::MISSION_STEP_TIMED_OUT,
            &run.mission,
            json!({ "mission": run.mission, "item": run.item, "step": step.name, "round": run.round, "attempt": run.attempt, "timeout_ms": step.timeout.as_millis() as u64 }),
            Some(run.mission.clone()),
        ));
    }
    if class == "lost" {
        events.emit(Event::new(
            kind::MISSION_STEP_INTERRUPTED,
            &run.mission,
            json!({ "mission": run.mission, "item": run.item, "step": step.name, "round": run.round, "attempt": run.attempt }),
            Some(run.mission.clone()),
        ));
    }
    events.emit(Event::new(
        kind::MISSION_STEP_FAILED,
        &run.mission,
        json!({ "mission": run.mission, "item": run.item, "step": step.name, "round": run.round, "attempt": run.attempt, "class": class, "exit": row.exit, "duration_ms": took_ms }),
        Some(run.mission.clone()),
    ));
    // What the failed attempt left is kept before anything is reset.
    let salvage = salvage(repo, &run, &step.name, given.tree(), start)?;
    let tail = log_tail(&f.log);
    let rule = step.heal.iter().find(|r| matches(&r.when, &class, &tail));
    let allowed = match rule {
        Some(r) => r.retries,
        None if step.retries > 0 => step.retries,
        None if (class == "lost" || class == "timeout") && step.effects != Effects::External => 1,
        None => 0,
    };
    row.healed_by = rule.map(|r| r.when.to_string());
    store.put_attempt(row)?;
    record_attempt(vault, &run, row, took_ms);
    // An interrupted step that acts on the world is never run again without a person.
    let external_lost = class == "lost" && step.effects == Effects::External;
    if run.attempt > allowed || external_lost {
        let why = if external_lost {
            format!(
                "step `{}` acts on the world (`effects: external`) and was interrupted; it is not run again without a decision",
                step.name
            )
        } else if rule.is_some() || allowed > 0 {
            format!(
                "step `{}` failed ({class}) and its {allowed} retr{} are used up",
                step.name,
                if allowed == 1 { "y" } else { "ies" }
            )
        } else {
            format!(
                "step `{}` failed ({class}) and no rule covers it",
                step.name
            )
        };
        events.emit(Event::new(
            kind::HEAL_ESCALATED,
            &run.mission,
            json!({ "mission": run.mission, "item": run.item, "step": step.name, "attempt": run.attempt, "class": class, "why": why }),
            Some(run.mission.clone()),
        ));
        return escalate(vault, store, run, fence, &step.name, None, &why, events);
    }
    if let Given::Here(tree) = &given {
        repo.reset_workdir(tree.path(), start)?;
    }
    let pause = backoff(vault, rule.and_then(|r| r.backoff), run.attempt);
    run.attempt += 1;
    run.next_at = now_ms() + pause.as_millis() as i64;
    run.state = MissionState::Running;
    events.emit(Event::new(
        kind::MISSION_STEP_RETRYING,
        &run.mission,
        json!({ "mission": run.mission, "item": run.item, "step": step.name, "round": run.round, "attempt": run.attempt, "after_ms": pause.as_millis() as u64, "rule": row.healed_by, "salvage": salvage }),
        Some(run.mission.clone()),
    ));
    moved(store, run, fence, &step.name, row, (None, Some(class)))
}

/// Where an attempt's work is.
pub(super) enum Given<'t> {
    /// In the sandbox's work tree here: committed to the sandbox branch on success, kept as
    /// salvage on failure.
    Here(&'t mut WorkTree),
    /// Committed by a runner on another machine (`None`: it changed nothing, or it failed and
    /// what it left is already salvaged), and fetched. No work tree here is needed.
    Runner(Option<Oid>),
}

impl Given<'_> {
    fn tree(&mut self) -> Option<&mut WorkTree> {
        match self {
            Given::Here(tree) => Some(tree),
            Given::Runner(_) => None,
        }
    }
}

/// The message of a step's commit, with its trailers (SPEC §9.2).
pub(super) fn step_message(run: &RunRow, step: &str) -> String {
    message_with_trailers(
        &format!(
            "Mission {}: step {step} (round {}, attempt {})",
            run.sandbox, run.round, run.attempt
        ),
        &[
            (super::missions::TRAILER_MISSION_ID, &run.mission),
            (TRAILER_STEP, step),
            (
                TRAILER_ATTEMPT,
                &format!("{step}/{}/{}", run.round, run.attempt),
            ),
        ],
    )
}

/// Writes the moved run under the lease and reports the attempt.
fn moved(
    store: &Store,
    run: RunRow,
    fence: i64,
    step: &str,
    row: &AttemptRow,
    (commit, class): (Option<String>, Option<String>),
) -> Result<StepReport, WorkflowError> {
    if !store.advance(&run, fence)? {
        tracing::warn!(mission = %run.mission, step, "the lease was lost before the step's end was written; another holder carries the run");
    }
    set_mission_state(store, &run.mission)?;
    Ok(StepReport {
        mission: run.mission.clone(),
        item: run.item.clone(),
        step: step.to_owned(),
        round: row.round,
        attempt: row.attempt,
        class,
        commit,
        then: run.state,
    })
}

/// The round is over: a decision on the sandbox's tip is requested.
fn request_round_decision(
    vault: &Vault,
    store: &Store,
    repo: &Repo,
    mut run: RunRow,
    fence: i64,
    brief: &Brief,
    events: &mut dyn EventSink,
) -> Result<StepReport, WorkflowError> {
    let branch = super::sandbox::branch_of(&run.sandbox);
    let tip = repo
        .branch_tip(&branch)?
        .map(|t| t.to_string())
        .unwrap_or_default();
    // A round decision asked again (after an expired one was retried) gets a new id.
    let id = if run.attempt > 1 {
        format!("{}.r{}.{}", run.sandbox, run.round, run.attempt)
    } else {
        format!("{}.r{}", run.sandbox, run.round)
    };
    let requested = now_rfc3339();
    let expires = decision_expiry(vault);
    let main = vault.config().git.main.clone();
    let files = match (repo.branch_tip(&main)?, Oid::from_str(&tip)) {
        (Some(m), Ok(t)) => repo
            .merge_base(m, t)?
            .map(|base| repo.diff_commits(base, t).map(|(d, _)| d.len()))
            .transpose()?
            .unwrap_or(0),
        _ => 0,
    };
    store.request_decision(&DecisionRow {
        id: id.clone(),
        mission: run.mission.clone(),
        item: run.item.clone(),
        kind: "round".into(),
        commit: tip.clone(),
        requested,
        expires: expires.clone(),
        answer: None,
        reason: None,
    })?;
    run.state = MissionState::AwaitingDecision;
    if !store.advance(&run, fence)? {
        tracing::warn!(mission = %run.mission, "the lease was lost before the decision was recorded");
    }
    set_mission_state(store, &run.mission)?;
    events.emit(Event::new(
        kind::DECISION_REQUESTED,
        &run.mission,
        json!({ "id": id, "mission": run.mission, "item": run.item, "kind": "round", "commit": tip, "expires": expires, "files": files, "approval": brief.approval }),
        Some(run.mission.clone()),
    ));
    let mut then = MissionState::AwaitingDecision;
    if brief.approval == Approval::Auto {
        match super::missions::decide(
            vault,
            &id,
            "approve",
            Some("approval: auto"),
            None,
            "quire",
            events,
        )? {
            Ok(d) => then = d.state,
            Err(r) => {
                tracing::warn!(mission = %run.mission, decision = %id, "could not approve by itself ({}): {}; the decision waits for a person", r.code, r.message);
            }
        }
    }
    Ok(StepReport {
        mission: run.mission.clone(),
        item: run.item.clone(),
        step: brief
            .pipeline
            .last()
            .map(|s| s.name.clone())
            .unwrap_or_default(),
        round: run.round,
        attempt: run.attempt,
        class: None,
        commit: Some(tip),
        then,
    })
}

/// The run waits for a person: an escalation decision (`retry`, `abort`) is requested.
#[allow(clippy::too_many_arguments)]
pub(super) fn escalate(
    vault: &Vault,
    store: &Store,
    mut run: RunRow,
    fence: i64,
    step: &str,
    row: Option<&mut AttemptRow>,
    why: &str,
    events: &mut dyn EventSink,
) -> Result<StepReport, WorkflowError> {
    if let Some(row) = row {
        row.state = "failed".into();
        row.class.get_or_insert_with(|| "escalated".into());
        store.put_attempt(row)?;
    }
    let id = format!("{}.{step}.r{}a{}", run.sandbox, run.round, run.attempt);
    let expires = decision_expiry(vault);
    store.request_decision(&DecisionRow {
        id: id.clone(),
        mission: run.mission.clone(),
        item: run.item.clone(),
        kind: "escalation".into(),
        commit: run.start_commit.clone(),
        requested: now_rfc3339(),
        expires: expires.clone(),
        answer: None,
        reason: Some(why.to_owned()),
    })?;
    run.state = MissionState::Escalated;
    if !store.advance(&run, fence)? {
        tracing::warn!(mission = %run.mission, "the lease was lost before the escalation was recorded");
    }
    set_mission_state(store, &run.mission)?;
    tracing::warn!(mission = %run.mission, step, "escalated: {why}");
    events.emit(Event::new(
        kind::DECISION_REQUESTED,
        &run.mission,
        json!({ "id": id, "mission": run.mission, "item": run.item, "kind": "escalation", "commit": run.start_commit, "expires": expires }),
        Some(run.mission.clone()),
    ));
    events.emit(Event::new(
        kind::MISSION_ESCALATED,
        &run.mission,
        json!({ "mission": run.mission, "item": run.item, "decision": id, "why": why }),
        Some(run.mission.clone()),
    ));
    Ok(StepReport {
        mission: run.mission.clone(),
        item: run.item.clone(),
        step: step.to_owned(),
        round: run.round,
        attempt: run.attempt,
        class: Some("escalated".into()),
        commit: None,
        then: MissionState::Escalated,
    })
}

/// The mission's own state, from its runs': escalated if one is, running while one runs, waiting
/// for a decision once every run has come to one (or ended).
pub(crate) fn set_mission_state(store: &Store, mission: &str) -> Result<(), WorkflowError> {
    let runs = store.runs(mission)?;
    let any = |s: MissionState| runs.iter().any(|r| r.state == s);
    let state = if any(MissionState::Escalated) {
        MissionState::Escalated
    } else if any(MissionState::Running) {
        MissionState::Running
    } else if any(MissionState::Queued) {
        MissionState::Queued
    } else if any(MissionState::AwaitingStart) {
        MissionState::AwaitingStart
    } else if any(MissionState::AwaitingDecision) {
        MissionState::AwaitingDecision
    } else if any(MissionState::Completed) && !any(MissionState::Promoted) {
        MissionState::Completed
    } else if any(MissionState::Promoted) {
        // Of a campaign, some items may have been rejected: the mission stands by what landed.
        MissionState::Promoted
    } else if any(MissionState::Aborted) {
        MissionState::Aborted
    } else {
        runs.first().map_or(MissionState::Queued, |r| r.state)
    };
    store
        .set_mission_state(mission, state, &now_rfc3339())
        .map_err(WorkflowError::from)
}

/// Keeps what a failed attempt left in the work tree (and any commits it made) under
/// `refs/quire/salvage/<sandbox>/<step>.<round>.<attempt>`; returns the ref, or `None` when it
/// left nothing.
fn salvage(
    repo: &Repo,
    run: &RunRow,
    step: &str,
    tree: Option<&mut WorkTree>,
    start: Oid,
) -> Result<Option<String>, WorkflowError> {
    let branch = super::sandbox::branch_of(&run.sandbox);
    let tip = repo.branch_tip(&branch)?.unwrap_or(start);
    let snapshot = if let Some(tree) = tree.filter(|t| t.path().is_dir()) {
        repo.snapshot_workdir(
            tree,
            tip,
            &format!(
                "Salvage of {} step {step} (round {}, attempt {})",
                run.sandbox, run.round, run.attempt
            ),
        )?
    } else {
        None
    };
    let kept = snapshot.or((tip != start).then_some(tip));
    let Some(kept) = kept else {
        return Ok(None);
    };
    let name = format!(
        "refs/quire/salvage/{}/{step}.{}.{}",
        run.sandbox, run.round, run.attempt
    );
    repo.set_ref(&name, kept, "quire: salvage of a failed attempt")?;
    Ok(Some(name))
}

/// The pause before retry `attempt + 1`: the rule's own, else `[missions] backoff`, doubling each
/// time, capped at `[missions] backoff_max`, with up to a fifth taken off at random so that many
/// runs failing together do not retry together.
fn backoff(vault: &Vault, own: Option<Duration>, attempt: u32) -> Duration {
    let m = &vault.config().missions;
    let base = own.unwrap_or(m.backoff.duration());
    let pause = base
        .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
        .min(m.backoff_max.duration().max(base));
    let mut bytes = [0u8; 2];
    let _ = getrandom::fill(&mut bytes);
    let fifth = pause / 5;
    pause - fifth.mul_f64(f64::from(u16::from_le_bytes(bytes)) / f64::from(u16::MAX))
}

/// The `when` of the heal rule the failed attempt before this one matched, if one did.
fn last_heal_rule(
    store: &Store,
    run: &RunRow,
    step: &str,
) -> Result<Option<String>, WorkflowError> {
    Ok(store
        .attempts(&run.mission)?
        .into_iter()
        .rev()
        .find(|a| {
            a.item == run.item
                && a.step == step
                && a.round == run.round
                && a.attempt + 1 == run.attempt
        })
        .and_then(|a| a.healed_by))
}

/// Whether a heal rule's `when` covers a failure of `class` whose log ends with `tail`.
fn matches(when: &When, class: &str, tail: &str) -> bool {
    match when {
        When::LogText(t) => tail.contains(t.as_str()),
        When::LogRegex(r) => r.is_match(tail),
        other => other.to_string() == class,
    }
}

/// The last [`LOG_TAIL`] bytes of a log.
fn log_tail(path: &Path) -> String {
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = std::io::Seek::seek(
        &mut f,
        std::io::SeekFrom::Start(len.saturating_sub(LOG_TAIL)),
    );
    let mut bytes = Vec::new();
    let _ = f.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A revision the step asked for: `{ "to": STEP, "reason": TEXT }` in `$QUIRE_REVISION_FILE`.
fn read_revision(path: &Path) -> Option<(String, String)> {
    let bytes = std::fs::read(path).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let to = v.get("to")?.as_str()?.to_owned();
    let reason = v
        .get("reason")
        .and_then(|r| r.as_str())
        .unwrap_or("")
        .to_owned();
    Some((to, reason))
}

/// Appends the attempt to the mission's run record, `06_RUNS/missions/<id>.md` (one per mission).
/// A record that cannot be written is said, not fatal: the state file has it too.
fn record_attempt(vault: &Vault, run: &RunRow, a: &AttemptRow, took_ms: f64) {
    use std::io::Write as _;
    let dir = vault.root().join(crate::vault::RUNS_DIR).join("missions");
    let path = dir.join(format!("{}.md", run.mission));
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(&dir)?;
        let fresh = !path.exists();
        let mut f = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&path)?;
        if fresh {
            writeln!(
                f,
                "---\nmission: {}\n---\n\n# Runs of mission {}\n",
                run.mission, run.mission
            )?;
        }
        let outcome = match (&a.class, &a.commit) {
            (None, Some(c)) => format!("succeeded, commit {}", c.get(..10).unwrap_or(c)),
            (None, None) => "succeeded, nothing changed".to_owned(),
            (Some(class), _) => format!("failed ({class})"),
        };
        writeln!(
            f,
            "- {} {}step `{}` round {} attempt {}: {outcome} in {:.0} ms; log {}",
            a.started,
            run.item
                .as_deref()
                .map(|i| format!("item `{i}`, "))
                .unwrap_or_default(),
            a.step,
            a.round,
            a.attempt,
            took_ms,
            a.log
        )
    };
    if let Err(e) = write() {
        tracing::warn!("could not append to {}: {e}", path.display());
    }
}
