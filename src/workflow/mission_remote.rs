//! Steps on other machines: offered to runners (`quire runner`), leased, heard from, and
//! finished here (SPEC §9.2 run elsewhere; the runner's contract is `docs/contracts/runner.md`).
//!
//! - A step for runners is **offered**: the offer holds its run, so no carrier takes it, until a
//!   runner whose labels cover the step's `runs_on` **leases** it. The lease moves the run's
//!   fencing number on. Every later word from that runner (heartbeat, log, result) names that
//!   number and is refused once the run has moved on: the lease expired and the step went to
//!   another runner, or an operator aborted or retried.
//! - A **result** is the commit the runner pushed to `refs/quire/runs/<key>` on the remote. The
//!   sandbox branch is moved to it only if the lease is still current and the branch is still at
//!   the step's start commit; it is then finished exactly as a step run here. A result that comes
//!   too late is refused, and what it pushed is kept under `refs/quire/salvage/`.
//! - A runner that goes silent past its lease is **lost** (SPEC §9.3). The carrier that takes the
//!   run back finds the attempt still recorded as running, with no process here to adopt, and
//!   retries it (an `external` step escalates) — on whichever runner asks next.
//!
//! The daemon's log file stays the one place logs are read: runners send theirs in pieces, each
//! at the offset it belongs, so a piece sent twice is written once.

use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::WorkflowError;
use super::mission_ops::Agent;
use super::mission_steps::{self, Given, StepReport, now_ms};
use super::missions::DecideRefusal;
use crate::contributions::now_rfc3339;
use crate::events::{Event, EventSink, kind};
use crate::git::remote::{RUNS_PREFIX, Remote, Update};
use crate::git::{Oid, Repo};
use crate::missions::runner::Ended;
use crate::missions::store::runner_holder;
use crate::missions::{AttemptRow, Brief, OfferRow, RunRow, Step, Store};
use crate::vault::Vault;

/// The longest a runner's lease request waits for a step (a long poll).
pub const LONGEST_POLL: Duration = Duration::from_secs(25);

/// Whether `step` goes to runners: it asks for labels, or the daemon runs no steps itself.
pub fn for_runners(vault: &Vault, step: &Step) -> bool {
    !step.runs_on.is_empty() || !vault.config().missions.local
}

/// What a runner is sent for one step: everything it needs to run it as SPEC §9.2 says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// The attempt's idempotency key, `<sandbox>/<step>/<round>/<attempt>`
    /// (`$QUIRE_IDEMPOTENCY_KEY`).
    pub key: String,
    /// The mission.
    pub mission: String,
    /// The item, if any.
    pub item: Option<String>,
    /// The sandbox (`<mission>` or `<mission>.<item>`).
    pub sandbox: String,
    /// The step.
    pub step: String,
    /// The round.
    pub round: u32,
    /// The attempt.
    pub attempt: u32,
    /// The lease's fencing number: named in every later request about this step.
    pub fence: i64,
    /// The shell text to run (`sh -c`).
    pub command: String,
    /// Environment variables for the step; the runner adds those that name its own files
    /// (`QUIRE_VAULT`, `QUIRE_SANDBOX`, `QUIRE_REVISION_FILE`, `QUIRE_INBOX`).
    pub env: Vec<(String, String)>,
    /// How long the step may run, in milliseconds.
    pub timeout_ms: u64,
    /// Between SIGTERM and SIGKILL, in milliseconds.
    pub grace_ms: u64,
    /// The sandbox branch on the remote (`mission/<sandbox>`).
    pub branch: String,
    /// The commit the step starts from.
    pub start_commit: String,
    /// Where the runner pushes its commit on the remote.
    pub result_ref: String,
    /// The message of that commit (with SPEC §9.2's trailers).
    pub message: String,
    /// How long the lease holds without a heartbeat, in milliseconds.
    pub lease_ms: u64,
}

/// How a runner's attempt ended, as it reports it (`POST /api/runners/complete`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// The mission.
    pub mission: String,
    /// The item, if any.
    #[serde(default)]
    pub item: Option<String>,
    /// The lease's fencing number.
    pub fence: i64,
    /// `exited` (with `exit`), `signaled` (with `signal`), `timed_out`, `cancelled`, or
    /// `not_started` (the runner could not get the sandbox; nothing ran).
    pub ended: String,
    /// The exit status, for `exited`.
    #[serde(default)]
    pub exit: Option<i32>,
    /// The signal, for `signaled`.
    #[serde(default)]
    pub signal: Option<i32>,
    /// The commit pushed to the job's `result_ref`: the step's work, or what a failed attempt
    /// left. `None` when it left nothing.
    #[serde(default)]
    pub commit: Option<String>,
    /// What the step wrote to `$QUIRE_REVISION_FILE`, if anything.
    #[serde(default)]
    pub revision: Option<serde_json::Value>,
    /// Why it did not start, for `not_started`.
    #[serde(default)]
    pub why: Option<String>,
}

impl Outcome {
    fn ended(&self) -> Result<Option<Ended>, String> {
        Ok(Some(match self.ended.as_str() {
            "exited" => Ended::Exited(self.exit.ok_or("`exited` needs `exit`")?),
            "signaled" => Ended::Signaled(self.signal.ok_or("`signaled` needs `signal`")?),
            "timed_out" => Ended::TimedOut,
            "cancelled" => return Ok(None),
            other => {
                return Err(format!(
                    "`ended` is {other:?}; give exited, signaled, timed_out, cancelled or not_started"
                ));
            }
        }))
    }
}

fn refuse<T>(
    code: &str,
    message: impl Into<String>,
) -> Result<Result<T, DecideRefusal>, WorkflowError> {
    Ok(Err(DecideRefusal::new(code, message)))
}

fn fenced<T>(mission: &str) -> Result<Result<T, DecideRefusal>, WorkflowError> {
    refuse(
        "fenced",
        format!(
            "this lease on mission `{mission}` is no longer current: the step was given to another runner, or an operator took it back; stop the step"
        ),
    )
}

/// Offers `run`'s current step (under lease `fence`) to runners.
pub(super) fn offer(
    vault: &Vault,
    store: &Store,
    run: &RunRow,
    fence: i64,
    step: &Step,
    command: String,
    events: &mut dyn EventSink,
) -> Result<(), WorkflowError> {
    let f = mission_steps::files(vault, run, &step.name);
    let own = [
        "QUIRE_VAULT",
        "QUIRE_SANDBOX",
        "QUIRE_REVISION_FILE",
        "QUIRE_INBOX",
    ];
    let env = mission_steps::environment(vault, run, &step.name, std::path::Path::new(""), &f)
        .into_iter()
        .filter(|(k, _)| !own.contains(&k.as_str()))
        .collect();
    let key = format!(
        "{}/{}/{}/{}",
        run.sandbox, step.name, run.round, run.attempt
    );
    let job = Job {
        result_ref: format!("{RUNS_PREFIX}{key}"),
        key,
        mission: run.mission.clone(),
        item: run.item.clone(),
        sandbox: run.sandbox.clone(),
        step: step.name.clone(),
        round: run.round,
        attempt: run.attempt,
        fence: 0,
        command,
        env,
        timeout_ms: step.timeout.as_millis() as u64,
        grace_ms: vault.config().missions.grace.duration().as_millis() as u64,
        branch: super::sandbox::branch_of(&run.sandbox),
        start_commit: run.start_commit.clone(),
        message: mission_steps::step_message(run, &step.name),
        lease_ms: vault.config().runners.lease.duration().as_millis() as u64,
    };
    let row = OfferRow {
        mission: run.mission.clone(),
        item: run.item.clone(),
        fence,
        step: step.name.clone(),
        round: run.round,
        attempt: run.attempt,
        labels: step.runs_on.clone(),
        job: serde_json::to_string(&job).map_err(|e| WorkflowError::Input(e.to_string()))?,
        offered: now_rfc3339(),
    };
    if store.offer(run, fence, &row)? {
        events.emit(Event::new(
            kind::MISSION_STEP_OFFERED,
            &run.mission,
            json!({ "mission": run.mission, "item": run.item, "step": step.name, "round": run.round, "attempt": run.attempt, "labels": step.runs_on }),
            Some(run.mission.clone()),
        ));
    }
    Ok(())
}

/// Gives runner `name`, which has `labels`, the oldest offered step it can take; `None` when
/// there is none.
pub fn lease(
    vault: &Vault,
    name: &str,
    labels: &[String],
    events: &mut dyn EventSink,
) -> Result<Option<Job>, WorkflowError> {
    let store = Store::open(&vault.state_dir())?;
    let lease = vault.config().runners.lease.duration();
    for offer in store.offers()? {
        if !offer.labels.iter().all(|l| labels.contains(l)) {
            continue;
        }
        let Ok(mut job) = serde_json::from_str::<Job>(&offer.job) else {
            continue;
        };
        let Some(fence) = store.take_offer(&offer, name, now_ms() + lease.as_millis() as i64)?
        else {
            continue;
        };
        job.fence = fence;
        job.lease_ms = lease.as_millis() as u64;
        let run = store
            .run(&offer.mission, offer.item.as_deref())?
            .ok_or_else(|| {
                WorkflowError::Input(format!("mission `{}` lost its run", offer.mission))
            })?;
        let f = mission_steps::files(vault, &run, &job.step);
        if let Some(dir) = f.log.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| WorkflowError::io(format!("could not create {}", dir.display()), e))?;
        }
        store.put_attempt(&AttemptRow {
            mission: run.mission.clone(),
            item: run.item.clone(),
            step: job.step.clone(),
            round: job.round,
            attempt: job.attempt,
            fence,
            state: "running".into(),
            pid: 0,
            started: now_rfc3339(),
            ended: None,
            exit: None,
            class: None,
            healed_by: None,
            start_commit: job.start_commit.clone(),
            commit: None,
            log: f.log_rel.clone(),
            runner: name.to_owned(),
        })?;
        events.emit(Event::new(
            kind::MISSION_STEP_STARTED,
            &run.mission,
            json!({ "mission": run.mission, "item": run.item, "step": job.step, "round": job.round, "attempt": job.attempt, "runner": name, "log": f.log_rel }),
            Some(run.mission.clone()),
        ));
        return Ok(Some(job));
    }
    Ok(None)
}

/// What a heartbeat answers: the messages for the step's `$QUIRE_INBOX` after the runner's
/// `inbox_offset`, and the offset after them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Beat {
    /// New inbox text (JSON lines), empty when none.
    pub inbox: String,
    /// The inbox's length, to send next time.
    pub inbox_offset: u64,
}

/// Extends runner `name`'s lease on mission `mission` (item `item`) under `fence`.
pub fn heartbeat(
    vault: &Vault,
    name: &str,
    mission: &str,
    item: Option<&str>,
    fence: i64,
    inbox_offset: u64,
) -> Result<Result<Beat, DecideRefusal>, WorkflowError> {
    let store = Store::open(&vault.state_dir())?;
    let Some(run) = store.run(mission, item)? else {
        return refuse("not_found", format!("no run of mission `{mission}`"));
    };
    if run.holder != runner_holder(name) {
        return fenced(mission);
    }
    let until = now_ms() + vault.config().runners.lease.duration().as_millis() as i64;
    if !store.heartbeat(&run, fence, until)? {
        return fenced(mission);
    }
    let inbox = vault
        .state_dir()
        .join("missions")
        .join(&run.sandbox)
        .join("inbox.jsonl");
    let mut text = Vec::new();
    if let Ok(mut f) = std::fs::File::open(&inbox) {
        let _ = f.seek(SeekFrom::Start(inbox_offset));
        let _ = f.read_to_end(&mut text);
    }
    // Whole lines only: a message being written is sent next time.
    let whole = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    text.truncate(whole);
    Ok(Ok(Beat {
        inbox_offset: inbox_offset + text.len() as u64,
        inbox: String::from_utf8_lossy(&text).into_owned(),
    }))
}

/// What became of a piece of log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Written (or already there); the log's length now.
    Written(u64),
    /// The piece starts past the log's end; the runner sends again from this length.
    Gap(u64),
}

/// Writes `bytes` of the step's log at `offset`. What the log already has is not written again;
/// a piece past its end is not written, and the length to send from is returned.
pub fn append_log(
    vault: &Vault,
    name: &str,
    mission: &str,
    item: Option<&str>,
    fence: i64,
    offset: u64,
    bytes: &[u8],
) -> Result<Result<Appended, DecideRefusal>, WorkflowError> {
    let store = Store::open(&vault.state_dir())?;
    let Some(run) = store.run(mission, item)? else {
        return refuse("not_found", format!("no run of mission `{mission}`"));
    };
    let Some(a) = store
        .attempts(mission)?
        .into_iter()
        .rev()
        .find(|a| a.item.as_deref() == item && a.fence == fence && a.runner == name)
    else {
        return fenced(mission);
    };
    if !store.holds(&run, fence)? {
        return fenced(mission);
    }
    let path = vault.root().join(&a.log);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| WorkflowError::io(format!("could not open {}", path.display()), e))?;
    let len = f
        .metadata()
        .map_err(|e| WorkflowError::io(format!("could not read {}", path.display()), e))?
        .len();
    if offset > len {
        return Ok(Ok(Appended::Gap(len)));
    }
    let skip = (len - offset).min(bytes.len() as u64) as usize;
    if skip < bytes.len() {
        f.write_all(&bytes[skip..])
            .map_err(|e| WorkflowError::io(format!("could not write {}", path.display()), e))?;
    }
    Ok(Ok(Appended::Written(len.max(offset + bytes.len() as u64))))
}

/// Finishes runner `name`'s attempt as it reports it: its pushed commit is fetched from
/// `remote` and, if the lease is still current, the run is moved on exactly as for a step run
/// here. A late result is refused (`fenced`) and its commit kept under `refs/quire/salvage/`.
pub fn complete(
    vault: &Vault,
    name: &str,
    remote: &Remote,
    outcome: &Outcome,
    events: &mut dyn EventSink,
) -> Result<Result<StepReport, DecideRefusal>, WorkflowError> {
    let store = Store::open(&vault.state_dir())?;
    let mission = &outcome.mission;
    let Some(run) = store.run(mission, outcome.item.as_deref())? else {
        return refuse("not_found", format!("no run of mission `{mission}`"));
    };
    let Some(mut row) = store
        .attempts(mission)?
        .into_iter()
        .rev()
        .find(|a| a.item == outcome.item && a.fence == outcome.fence && a.runner == name)
    else {
        return refuse(
            "not_found",
            format!(
                "runner `{name}` holds no attempt of mission `{mission}` under fencing number {}",
                outcome.fence
            ),
        );
    };
    let repo = Repo::open(vault.root())?;
    let key = format!("{}/{}/{}/{}", run.sandbox, row.step, row.round, row.attempt);
    let result_ref = format!("{RUNS_PREFIX}{key}");
    // The runner's commit, brought here (and then dropped from the remote's runs).
    let commit = match &outcome.commit {
        None => None,
        Some(c) => {
            let Ok(c) = Oid::from_str(c) else {
                return refuse("invalid_result", format!("`commit` {c:?} is no commit id"));
            };
            // Only what the runner pushed to this attempt's own ref counts, so that no other
            // commit the vault happens to have can be passed off as this step's work.
            let fetched = remote.fetch(&[&format!("+{result_ref}:{result_ref}")]);
            if repo.ref_target(&result_ref) != Some(c) {
                // A remote that answers, without the ref, is a wrong report; one that does not
                // answer is away for a while, and the runner reports again later.
                return match fetched.or_else(|_| remote.list().map(drop)) {
                    Err(e) => refuse(
                        "remote_unreachable",
                        format!(
                            "could not fetch {result_ref} from the remote: {e}; report again later"
                        ),
                    ),
                    Ok(()) => refuse(
                        "invalid_result",
                        format!(
                            "{result_ref} on the remote is not at {c}; push the commit there first"
                        ),
                    ),
                };
            }
            Some(c)
        }
    };
    if row.state != "running"
        || !store.holds(&run, outcome.fence)?
        || run.holder != runner_holder(name)
    {
        // Too late: the step went to another runner or back to an operator.
        if let Some(c) = commit {
            let kept = format!(
                "refs/quire/salvage/{}/{}.{}.{}.late",
                run.sandbox, row.step, row.round, row.attempt
            );
            repo.set_ref(&kept, c, "quire: a late runner's result")?;
            events.emit(Event::new(
                kind::MISSION_STEP_FENCED,
                mission,
                json!({ "mission": mission, "item": outcome.item, "step": row.step, "attempt": row.attempt, "runner": name, "salvage": kept }),
                Some(mission.clone()),
            ));
        }
        drop_result(&repo, remote, &result_ref, commit);
        return fenced(mission);
    }
    let start = Oid::from_str(&row.start_commit).map_err(|e| {
        WorkflowError::Input(format!("bad start commit in .quire/missions.db: {e}"))
    })?;
    if outcome.ended == "not_started" {
        // Nothing ran: the same attempt is offered again.
        tracing::warn!(%mission, runner = name, "a runner could not start a step: {}", outcome.why.as_deref().unwrap_or("no reason given"));
        let mut back = run.clone();
        back.state = crate::missions::MissionState::Running;
        store.delete_attempt(&row)?;
        if !store.advance(&back, outcome.fence)? {
            return fenced(mission);
        }
        return Ok(Ok(StepReport {
            mission: mission.clone(),
            item: outcome.item.clone(),
            step: row.step.clone(),
            round: row.round,
            attempt: row.attempt,
            class: None,
            commit: None,
            then: back.state,
        }));
    }
    let ended = match outcome.ended() {
        Ok(e) => e,
        Err(why) => return refuse("invalid_result", why),
    };
    let success = ended.is_some_and(Ended::success);
    if let Some(c) = commit
        && (!success || !repo.contains(c, start))
    {
        if success {
            // Not work done on this sandbox: dropped, so that the attempt's ref is free again.
            drop_result(&repo, remote, &result_ref, Some(c));
            return refuse(
                "invalid_result",
                format!("commit {c} does not descend from the step's start commit {start}"),
            );
        }
        // What a failed attempt left, kept as a failed attempt here would be.
        let kept = format!(
            "refs/quire/salvage/{}/{}.{}.{}",
            run.sandbox, row.step, row.round, row.attempt
        );
        repo.set_ref(&kept, c, "quire: salvage of a failed attempt")?;
    }
    let mission_row = store
        .mission(mission)?
        .ok_or_else(|| WorkflowError::Input(format!("mission `{mission}` has no record")))?;
    let brief = Brief::parse(mission_row.brief.as_bytes()).map_err(|r| {
        WorkflowError::Input(format!(
            "mission `{mission}`: its stored brief no longer reads: {r}"
        ))
    })?;
    let Some((_, step)) = brief.step(&row.step) else {
        return refuse(
            "not_found",
            format!("mission `{mission}` has no step `{}`", row.step),
        );
    };
    let step = step.clone();
    let f = mission_steps::files(vault, &run, &step.name);
    if let Some(rev) = &outcome.revision {
        if let Some(dir) = f.revision.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        std::fs::write(&f.revision, rev.to_string()).map_err(|e| {
            WorkflowError::io(format!("could not write {}", f.revision.display()), e)
        })?;
    }
    let took_ms = mission_steps::ms_since(&row.started);
    let mut at = run.clone();
    at.start_commit = row.start_commit.clone();
    let report = mission_steps::finish(
        vault,
        &store,
        &repo,
        at,
        outcome.fence,
        &brief,
        &step,
        &f,
        ended,
        Given::Runner(if success { commit } else { None }),
        &mut row,
        took_ms,
        events,
    )?;
    drop_result(&repo, remote, &result_ref, commit);
    Ok(Ok(report))
}

/// A runner's result, once taken (or kept as salvage), is dropped here and from the remote.
fn drop_result(repo: &Repo, remote: &Remote, result_ref: &str, commit: Option<Oid>) {
    let _ = repo.delete_ref(result_ref);
    if let Some(c) = commit {
        let _ = remote.push(&[Update {
            name: result_ref.to_owned(),
            from: Some(c),
            to: None,
        }]);
    }
}

/// A runner as `GET /api/runners` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct Waiting {
    /// The mission.
    pub mission: String,
    /// The item, if any.
    pub item: Option<String>,
    /// The step.
    pub step: String,
    /// The labels it asks for.
    pub labels: Vec<String>,
    /// Since when it waits (RFC 3339).
    pub since: String,
}

/// The steps waiting for a runner, oldest first.
pub fn waiting(vault: &Vault) -> Result<Vec<Waiting>, WorkflowError> {
    let store = Store::open(&vault.state_dir())?;
    Ok(store
        .offers()?
        .into_iter()
        .map(|o| Waiting {
            mission: o.mission,
            item: o.item,
            step: o.step,
            labels: o.labels,
            since: o.offered,
        })
        .collect())
}

/// A runner with the steps it runs now.
#[derive(Debug, Clone, Serialize)]
pub struct RunnerView {
    /// The runner as it last said of itself.
    #[serde(flatten)]
    pub runner: crate::runners::registry::Runner,
    /// Its steps in flight.
    pub running: Vec<Agent>,
}

/// Every runner with a token, what each runs, and the steps waiting for one: what
/// `GET /api/runners` answers and mission control shows.
#[derive(Debug, Clone, Serialize)]
pub struct Runners {
    /// The runners, by name.
    pub runners: Vec<RunnerView>,
    /// Steps no runner has taken yet, oldest first.
    pub waiting: Vec<Waiting>,
}

/// The runners and the steps waiting for them, given the steps in flight
/// ([`mission_ops::agents`](super::mission_ops::agents)).
pub fn runners(vault: &Vault, agents: &[Agent]) -> Result<Runners, WorkflowError> {
    let known = crate::runners::registry::Registry::open(&vault.state_dir())?.runners()?;
    let runners = known
        .into_iter()
        .map(|runner| {
            let on = runner_holder(&runner.name);
            let running = agents.iter().filter(|a| a.runs_on == on).cloned().collect();
            RunnerView { runner, running }
        })
        .collect();
    Ok(Runners {
        runners,
        waiting: waiting(vault)?,
    })
}

/// How often a runner beats, for a lease of `lease`.
pub fn beat_every(lease: Duration) -> Duration {
    lease / 3
}
