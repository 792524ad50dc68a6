//! `quire runner`: takes mission steps from a daemon and runs them on this machine, with Git as
//! the transport (the contract is `docs/contracts/runner.md`).
//!
//! Each of the runner's slots is a thread that asks the daemon for a step (a long poll), and for
//! one step:
//!
//! 1. fetches the sandbox branch from the vault's remote into the slot's own repository (an
//!    incremental fetch: the slot's repository is kept between steps) and checks out the step's
//!    start commit;
//! 2. runs the step exactly as the daemon would (SPEC §9.2: its environment, its own process
//!    group, its timeout, its log on disk as it is written), while one thread renews the lease
//!    every third of it, handing messages for `$QUIRE_INBOX` to the step, and another sends the
//!    log to the daemon as it grows;
//! 3. commits what the step changed (or, for a failed step, what it left) and pushes that commit
//!    to `refs/quire/runs/<key>` on the remote, then reports how the step ended.
//!
//! The daemon decides what lands: a report under a lease that is no longer current is refused,
//! and what was pushed is kept as salvage. A runner that cannot renew its lease for most of its
//! length ends its step itself, since by then the daemon may have given the step to another.

pub mod client;
pub mod registry;

use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::json;

use crate::git::remote::{Remote, Update};
use crate::git::{Oid, WorkTree};
use crate::missions::runner::{self, Cancel, Ended, Launch};
use crate::workflow::mission_remote::{Beat, Job, Outcome};
use client::Client;

/// How `quire runner` was asked to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The daemon, `http://host:port`.
    pub daemon: String,
    /// The runner token (`quire runner token new NAME` on the daemon's machine).
    pub token: String,
    /// What this machine offers (`linux`, `gpu`).
    pub labels: Vec<String>,
    /// Steps at once.
    pub slots: u32,
    /// Where slots keep their repositories, logs and files.
    pub workdir: PathBuf,
    /// The Git remote to fetch from and push to, when this machine reaches it by another address
    /// than the daemon's `[git] remote`.
    pub remote: Option<String>,
}

/// The runner could not work.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The daemon refused the token.
    #[error(
        "the daemon refused this runner's token ({0}); make one with `quire runner token new NAME` on the daemon's machine"
    )]
    Refused(String),
    /// The daemon has no remote to share sandboxes through, and none was given.
    #[error(
        "the daemon has no `[git] remote`, and no --remote was given: runners fetch sandboxes from the vault's Git remote"
    )]
    NoRemote,
    /// The work folder could not be made.
    #[error("could not use the work folder {}: {source}", path.display())]
    Workdir {
        /// The folder.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Deserialize)]
struct Registered {
    name: String,
    lease_ms: u64,
    remote: Option<String>,
}

/// How long a lease request waits at the daemon for a step.
const LONG_POLL: Duration = Duration::from_secs(20);

/// How often the log is sent while a step runs.
const LOG_EVERY: Duration = Duration::from_millis(200);

/// The most of a log sent in one request.
const LOG_PIECE: usize = 1024 * 1024;

/// Between SIGTERM and SIGKILL for a step a killed runner left behind.
const ORPHAN_GRACE: Duration = Duration::from_secs(5);

/// The branch a slot's repository has checked out: each step's start commit, then its work.
const RUN_BRANCH: &str = "quire-run";

/// How long a slot waits for the remote to have a step's start commit (the daemon pushes it as
/// it offers the step), while holding the lease.
const FETCH_FOR: Duration = Duration::from_secs(60);

/// How long a slot tries to push a step's result to a remote that is away, while the lease holds.
const PUSH_FOR: Duration = Duration::from_secs(600);

/// How long a result is offered to a daemon that does not answer (one being restarted).
const REPORT_FOR: Duration = Duration::from_secs(600);

/// Runs until `stop` is set: registers, then serves steps on `options.slots` threads. A step in
/// flight when `stop` is set is ended with its process group and reported as interrupted.
pub fn run(options: &Options, stop: &Cancel) -> Result<(), RunnerError> {
    std::fs::create_dir_all(&options.workdir).map_err(|source| RunnerError::Workdir {
        path: options.workdir.clone(),
        source,
    })?;
    let client = Client::new(&options.daemon, &options.token);
    let me = whoami(options);
    // The daemon may not be up yet: keep asking.
    let mut pause = Duration::from_millis(200);
    let registered: Registered = loop {
        if stop.is_cancelled() {
            return Ok(());
        }
        match client.post("/api/runners/register", &me, Duration::from_secs(10)) {
            Ok(a) if a.status == 200 => match a.json() {
                Some(r) => break r,
                None => {
                    tracing::warn!("the daemon's answer to register did not read: {}", a.text())
                }
            },
            Ok(a) if a.status == 401 => return Err(RunnerError::Refused(a.code())),
            Ok(a) => tracing::warn!(
                status = a.status,
                "the daemon refused to register this runner: {}",
                a.text()
            ),
            Err(e) => tracing::warn!("{e}; trying again"),
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_secs(10));
    };
    let url = options
        .remote
        .clone()
        .or(registered.remote)
        .ok_or(RunnerError::NoRemote)?;
    tracing::info!(name = %registered.name, slots = options.slots, remote = %url, "runner registered");
    let refused: Arc<Mutex<Option<String>>> = Arc::default();
    std::thread::scope(|scope| {
        for slot in 0..options.slots.max(1) {
            let slot = Slot {
                dir: options.workdir.join(format!("slot-{slot}")),
                client: client.clone(),
                remote_url: url.clone(),
                me: &me,
                lease: Duration::from_millis(registered.lease_ms.max(300)),
                prefetch: Mutex::default(),
            };
            let refused = refused.clone();
            scope.spawn(move || {
                if let Err(code) = slot.serve(stop) {
                    if let Ok(mut r) = refused.lock() {
                        r.get_or_insert(code);
                    }
                    stop.cancel();
                }
            });
        }
    });
    match refused.lock().ok().and_then(|mut r| r.take()) {
        Some(code) => Err(RunnerError::Refused(code)),
        None => Ok(()),
    }
}

/// What the runner says of itself with every lease request.
fn whoami(options: &Options) -> serde_json::Value {
    json!({
        "labels": options.labels,
        "slots": options.slots,
        "host": rustix::system::uname().nodename().to_string_lossy(),
        "version": env!("CARGO_PKG_VERSION"),
        "wait_ms": LONG_POLL.as_millis() as u64,
    })
}

/// One slot: a repository, and one step at a time.
struct Slot<'a> {
    dir: PathBuf,
    client: Client,
    remote_url: String,
    me: &'a serde_json::Value,
    lease: Duration,
    /// The fetch of the remote's main line started while the last step ran (see
    /// [`Slot::prefetch`]), finished before the next step looks at the repository.
    prefetch: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Slot<'_> {
    /// Takes steps until `stop`; `Err(code)` when the daemon refuses the token.
    fn serve(&self, stop: &Cancel) -> Result<(), String> {
        self.end_orphan();
        let served = self.take_steps(stop);
        // Nothing the runner starts outlives it.
        self.join_prefetch();
        served
    }

    fn take_steps(&self, stop: &Cancel) -> Result<(), String> {
        let mut pause = Duration::from_millis(200);
        while !stop.is_cancelled() {
            let answer = self.client.post(
                "/api/runners/lease",
                self.me,
                LONG_POLL + Duration::from_secs(15),
            );
            match answer {
                Ok(a) if a.status == 200 => match a.json::<Job>() {
                    Some(job) => {
                        pause = Duration::from_millis(200);
                        self.take(&job, stop);
                    }
                    None => tracing::warn!("a job from the daemon did not read: {}", a.text()),
                },
                Ok(a) if a.status == 204 => {}
                Ok(a) if a.status == 401 => return Err(a.code()),
                Ok(a) => {
                    tracing::warn!(
                        status = a.status,
                        "the daemon refused a lease request: {}",
                        a.text()
                    );
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(10));
                }
                Err(e) => {
                    tracing::warn!("{e}; trying again");
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(10));
                }
            }
        }
        Ok(())
    }

    /// One step, from fetch to report. The lease is renewed from the start: fetching the
    /// sandbox may wait for the daemon to push it.
    fn take(&self, job: &Job, stop: &Cancel) {
        tracing::info!(key = %job.key, "step leased");
        let files = self.dir.join("files");
        let _ = std::fs::create_dir_all(&files);
        let inbox = files.join("inbox.jsonl");
        let _ = std::fs::File::create(&inbox);
        // `lost`: the lease is gone (or the runner stops); `done`: the step is over.
        let (lost, done) = (Cancel::default(), Cancel::default());
        std::thread::scope(|scope| {
            scope.spawn(|| self.keep_lease(job, &inbox, &lost, &done, stop));
            let outcome = self.attempt(job, &files, &inbox, &lost);
            // Still beating while the result is reported: a daemon that cannot take it yet (its
            // remote away, or itself restarting) keeps the lease instead of running it again.
            let reported = Instant::now();
            self.report(&outcome);
            done.cancel();
            tracing::debug!(key = %job.key, report_ms = reported.elapsed().as_millis() as u64, "step reported");
        });
    }

    fn attempt(&self, job: &Job, files: &Path, inbox: &Path, lost: &Cancel) -> Outcome {
        let fetching = Instant::now();
        let checked_out = self.check_out(job, lost);
        tracing::debug!(key = %job.key, fetch_ms = fetching.elapsed().as_millis() as u64, "sandbox checked out");
        match checked_out {
            Ok(tree) => self.run_step(job, tree, files, inbox, lost),
            Err(why) => {
                tracing::warn!(key = %job.key, "could not check the sandbox out: {why}");
                Outcome {
                    mission: job.mission.clone(),
                    item: job.item.clone(),
                    fence: job.fence,
                    ended: "not_started".into(),
                    exit: None,
                    signal: None,
                    commit: None,
                    revision: None,
                    why: Some(why),
                }
            }
        }
    }

    /// The slot's repository at the step's start commit, fetched from the remote.
    fn check_out(&self, job: &Job, lost: &Cancel) -> Result<PathBuf, String> {
        // What the last prefetch brought counts only once it is whole.
        self.join_prefetch();
        let work = self.work_dir();
        std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
        let repo = crate::git::init_repository(&work, RUN_BRANCH).map_err(|e| e.to_string())?;
        let start = Oid::from_str(&job.start_commit).map_err(|e| e.to_string())?;
        let remote = Remote::new(&work, &self.remote_url);
        let tracking = format!("+refs/heads/{b}:refs/remotes/quire/{b}", b = job.branch);
        // The daemon pushes the sandbox as it offers the step; a fetch may come first, by about
        // as long as a push takes, so the first tries come soon after each other.
        let mut pause = Duration::from_millis(20);
        let deadline = Instant::now() + FETCH_FOR;
        while !repo.has_object(start) {
            if lost.is_cancelled() {
                return Err("the lease ended before the sandbox could be fetched".into());
            }
            if let Err(e) = remote.fetch(&[&tracking]) {
                tracing::debug!("fetch: {e}");
            }
            if repo.has_object(start) {
                break;
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} has no commit {start} on {} yet",
                    self.remote_url, job.branch
                ));
            }
            std::thread::sleep(pause);
            pause = pause.mul_f32(1.5).min(Duration::from_secs(1));
        }
        let resetting = Instant::now();
        // Clean where the last step left it (its work committed, nothing else run since): only
        // the files that differ are written. Otherwise, or if that fails, every file is checked.
        let clean_at = std::fs::read_to_string(self.clean_marker())
            .ok()
            .and_then(|s| Oid::from_str(s.trim()).ok());
        let _ = std::fs::remove_file(self.clean_marker());
        let head = repo.branch_tip(RUN_BRANCH).ok().flatten();
        let switched = match (head, clean_at) {
            (Some(h), Some(c)) if h == c => repo
                .switch_clean(&work, RUN_BRANCH, h, start)
                .map_err(
                    |e| tracing::debug!(key = %job.key, "a full reset instead of a switch: {e}"),
                )
                .is_ok(),
            _ => false,
        };
        if !switched {
            repo.reset_workdir(&work, start)
                .map_err(|e| e.to_string())?;
        }
        tracing::debug!(key = %job.key, reset_ms = resetting.elapsed().as_millis() as u64, switched, "work tree at the start commit");
        Ok(work)
    }

    fn run_step(
        &self,
        job: &Job,
        work: PathBuf,
        files: &Path,
        inbox: &Path,
        lost: &Cancel,
    ) -> Outcome {
        let log = files.join("step.log");
        let exit_file = files.join("step.exit");
        let revision = files.join("revision.json");
        for f in [&log, &revision] {
            let _ = std::fs::remove_file(f);
        }
        let mut env = job.env.clone();
        let place = |p: &Path| p.display().to_string();
        env.extend([
            ("QUIRE_VAULT".to_owned(), place(&work)),
            ("QUIRE_SANDBOX".to_owned(), place(&work)),
            ("QUIRE_REVISION_FILE".to_owned(), place(&revision)),
            ("QUIRE_INBOX".to_owned(), place(inbox)),
        ]);
        let mut outcome = Outcome {
            mission: job.mission.clone(),
            item: job.item.clone(),
            fence: job.fence,
            ended: "cancelled".into(),
            exit: None,
            signal: None,
            commit: None,
            revision: None,
            why: None,
        };
        // Watched from before the step runs, so that committing its work looks only at what it
        // touched.
        let watching = Instant::now();
        let opened = WorkTree::open_checked_out(&work);
        tracing::debug!(key = %job.key, watch_ms = watching.elapsed().as_millis() as u64, "work tree watched");
        let mut tree = match opened {
            Ok(t) => t,
            Err(e) => {
                outcome.ended = "not_started".into();
                outcome.why = Some(e.to_string());
                return outcome;
            }
        };
        let running = match runner::spawn(Launch {
            command: job.command.clone(),
            dir: work.clone(),
            env,
            log: log.clone(),
            exit_file,
            timeout: Duration::from_millis(job.timeout_ms),
            grace: Duration::from_millis(job.grace_ms),
            // A runner that dies takes its steps with it: their lease runs out, and they run
            // again elsewhere.
            ends_with_parent: true,
        }) {
            Ok(r) => r,
            Err(e) => {
                outcome.ended = "not_started".into();
                outcome.why = Some(e.to_string());
                return outcome;
            }
        };
        let done = Cancel::default();
        // Noted on disk while it runs: a runner killed now leaves the step's group behind, and
        // the next runner in this folder ends it before taking anything.
        let _ = std::fs::write(self.step_note(), running.pid().to_string());
        self.prefetch(&work);
        let ended = std::thread::scope(|scope| {
            let shipped = scope.spawn(|| self.ship_log(job, &log, &done));
            let ended = running.wait(lost);
            done.cancel();
            let _ = shipped.join();
            ended
        });
        let _ = std::fs::remove_file(self.step_note());
        match ended {
            Ended::Exited(n) => {
                outcome.ended = "exited".into();
                outcome.exit = Some(n);
            }
            Ended::Signaled(n) => {
                outcome.ended = "signaled".into();
                outcome.signal = Some(n);
            }
            Ended::TimedOut => outcome.ended = "timed_out".into(),
            Ended::Cancelled => outcome.ended = "cancelled".into(),
        }
        outcome.revision = std::fs::read(&revision)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        // What the step changed (or left), committed and pushed for the daemon to take or keep.
        let pushing = Instant::now();
        match self.push_result(job, &work, &mut tree, lost) {
            Ok(commit) => {
                let push_ms = pushing.elapsed().as_millis() as u64;
                tracing::info!(key = %job.key, ended = %outcome.ended, ?commit, push_ms, "step ended");
                outcome.commit = commit.map(|c| c.to_string());
            }
            Err(why) => {
                tracing::warn!(key = %job.key, "could not push the step's result: {why}");
                // Its work cannot reach the daemon: it counts as lost, and runs again.
                outcome.ended = "cancelled".into();
                outcome.exit = None;
                outcome.commit = None;
            }
        }
        outcome
    }

    /// Renews the lease every third of it, handing new inbox messages to the step. Ends the step
    /// when the daemon says the lease is gone, or when it could not be renewed for most of its
    /// length (the daemon may have given the step to another runner by then).
    fn keep_lease(&self, job: &Job, inbox: &Path, cancel: &Cancel, done: &Cancel, stop: &Cancel) {
        let every = crate::workflow::mission_remote::beat_every(self.lease);
        let give_up = self.lease - self.lease / 6;
        let mut last_ok = Instant::now();
        let mut offset = 0u64;
        let mut next = Instant::now() + every;
        while !done.is_cancelled() {
            if stop.is_cancelled() {
                cancel.cancel();
                return;
            }
            if Instant::now() < next {
                // Woken when the step ends, so that its report is not held up.
                done.nap(Duration::from_millis(25));
                continue;
            }
            next = Instant::now() + every;
            let answer = self.client.post(
                "/api/runners/heartbeat",
                &json!({ "mission": job.mission, "item": job.item, "fence": job.fence, "inbox_offset": offset }),
                every.max(Duration::from_secs(1)),
            );
            match answer {
                Ok(a) if a.status == 200 => {
                    last_ok = Instant::now();
                    if let Some(beat) = a.json::<Beat>() {
                        if !beat.inbox.is_empty() {
                            let _ = std::fs::OpenOptions::new()
                                .append(true)
                                .open(inbox)
                                .and_then(|mut f| f.write_all(beat.inbox.as_bytes()));
                        }
                        offset = beat.inbox_offset;
                    }
                }
                Ok(a) if matches!(a.status, 401 | 404 | 409) => {
                    tracing::warn!(key = %job.key, "the daemon ended this lease ({}); ending the step", a.code());
                    cancel.cancel();
                    return;
                }
                Ok(a) => tracing::warn!(status = a.status, "a heartbeat was refused: {}", a.text()),
                Err(e) => tracing::warn!("{e}"),
            }
            if last_ok.elapsed() > give_up {
                tracing::warn!(key = %job.key, "the lease could not be renewed; ending the step");
                cancel.cancel();
                return;
            }
        }
    }

    /// Sends the log as it grows, each piece at its offset, until `done`, then what is left.
    fn ship_log(&self, job: &Job, log: &Path, done: &Cancel) {
        let mut sent = 0u64;
        let mut buf = Vec::new();
        loop {
            let last = done.is_cancelled();
            loop {
                buf.clear();
                let read = std::fs::File::open(log).and_then(|mut f| {
                    f.seek(SeekFrom::Start(sent))?;
                    f.take(LOG_PIECE as u64).read_to_end(&mut buf)
                });
                if read.unwrap_or(0) == 0 {
                    break;
                }
                let path = format!(
                    "/api/runners/log?mission={}&item={}&fence={}&offset={sent}",
                    enc(&job.mission),
                    enc(job.item.as_deref().unwrap_or("")),
                    job.fence
                );
                match self.client.post_bytes(
                    &path,
                    &buf,
                    "application/octet-stream",
                    Duration::from_secs(30),
                ) {
                    Ok(a) if a.status == 200 => sent += buf.len() as u64,
                    Ok(a) => {
                        // The daemon has another length (a gap), or refuses the lease: it says
                        // where it stands, or the log stops here.
                        let at = serde_json::from_slice::<serde_json::Value>(&a.body)
                            .ok()
                            .and_then(|v| v["length"].as_u64());
                        match at {
                            Some(n) if n != sent => sent = n,
                            _ => return,
                        }
                    }
                    Err(_) => break,
                }
            }
            if last {
                return;
            }
            // Woken early when the step ends, so its result is not held for a nap.
            done.nap(LOG_EVERY);
        }
    }

    /// Fetches the remote's main line (its `HEAD`) while a step runs, off the path of the next
    /// one: a mission's first step starts from a commit on main, which is then already here and
    /// needs no fetch. Best effort: whatever it misses, the next step fetches.
    fn prefetch(&self, work: &Path) {
        let remote = Remote::new(work, &self.remote_url);
        let started = std::thread::Builder::new()
            .name("quire-prefetch".into())
            .spawn(move || {
                let t = Instant::now();
                match remote.fetch(&["+HEAD:refs/remotes/quire/HEAD"]) {
                    Ok(()) => tracing::debug!(
                        prefetch_ms = t.elapsed().as_millis() as u64,
                        "prefetched the remote's main line"
                    ),
                    Err(e) => tracing::debug!("prefetch: {e}"),
                }
            });
        if let (Ok(handle), Ok(mut slot)) = (started, self.prefetch.lock()) {
            *slot = Some(handle);
        }
    }

    /// Waits for the prefetch in flight, if any.
    fn join_prefetch(&self) {
        if let Some(fetching) = self.prefetch.lock().ok().and_then(|mut p| p.take()) {
            let _ = fetching.join();
        }
    }

    /// The slot's repository and work tree.
    fn work_dir(&self) -> PathBuf {
        self.dir.join("work")
    }

    /// Where the slot notes the process group of the step it runs.
    fn step_note(&self) -> PathBuf {
        self.dir.join("step.pid")
    }

    /// Ends the step a killed runner left running in this slot (its lease is long gone, and the
    /// daemon gives the step to a runner again). Only a group whose leader still works in this
    /// slot's folder is ended, so a process id used again since is left alone.
    fn end_orphan(&self) {
        let Some(pgid) = std::fs::read_to_string(self.step_note())
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
        else {
            return;
        };
        let work = self.work_dir();
        let ours = match std::fs::read_link(format!("/proc/{pgid}/cwd")) {
            Ok(cwd) => cwd == work || std::fs::canonicalize(&work).is_ok_and(|w| w == cwd),
            // No /proc to ask: the group is trusted, as the daemon trusts its own.
            Err(_) => !Path::new("/proc/self").exists(),
        };
        if pgid > 0 && ours && runner::group_alive(pgid) {
            tracing::warn!(pgid, slot = %self.dir.display(), "ending the step a killed runner left running");
            runner::end_group(pgid, ORPHAN_GRACE);
        }
        let _ = std::fs::remove_file(self.step_note());
    }

    /// Where the slot notes the commit its work tree is clean at; gone while a step runs.
    fn clean_marker(&self) -> PathBuf {
        self.dir.join("clean-at")
    }

    /// Notes that the work tree, its index and [`RUN_BRANCH`] are all at `commit`.
    fn mark_clean(&self, commit: Oid) {
        let _ = std::fs::write(self.clean_marker(), commit.to_string());
    }

    /// Commits what is in the work tree onto the start commit and pushes it to the job's ref.
    /// A remote that is away is tried again for as long as the lease holds (up to [`PUSH_FOR`]):
    /// the step's work is not run again for an outage.
    fn push_result(
        &self,
        job: &Job,
        work: &Path,
        tree: &mut WorkTree,
        lost: &Cancel,
    ) -> Result<Option<Oid>, String> {
        let repo = crate::git::Repo::open(work).map_err(|e| e.to_string())?;
        let start = Oid::from_str(&job.start_commit).map_err(|e| e.to_string())?;
        let Some(commit) = repo
            .commit_all_in(tree, RUN_BRANCH, start, &job.message)
            .map_err(|e| e.to_string())?
        else {
            self.mark_clean(start);
            return Ok(None);
        };
        self.mark_clean(commit);
        let remote = Remote::new(work, &self.remote_url);
        let mut pause = Duration::from_millis(200);
        let deadline = Instant::now() + PUSH_FOR;
        let mut said = false;
        loop {
            let pushed = remote.push(&[Update {
                name: job.result_ref.clone(),
                from: None,
                to: Some(commit),
            }]);
            let why = match pushed {
                Ok(r) if r.iter().all(|(_, ok)| ok.is_ok()) => return Ok(Some(commit)),
                Ok(r) => format!("{r:?}"),
                Err(e) => e.to_string(),
            };
            // Once the lease is gone the daemon takes no result; a pushed one would be salvage.
            if lost.is_cancelled() || Instant::now() >= deadline {
                return Err(why);
            }
            if !said {
                tracing::warn!(key = %job.key, "could not push the step's result yet ({why}); trying again while the lease holds");
                said = true;
            }
            lost.nap(pause);
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }

    /// Reports how the step ended, to a daemon that may be restarting: asked again until it
    /// answers, for up to [`REPORT_FOR`].
    fn report(&self, outcome: &Outcome) {
        let deadline = Instant::now() + REPORT_FOR;
        let mut pause = Duration::from_millis(200);
        loop {
            match self
                .client
                .post("/api/runners/complete", outcome, Duration::from_secs(120))
            {
                Ok(a) if a.status == 200 => return,
                Ok(a) if a.status < 500 => {
                    tracing::warn!(
                        status = a.status,
                        "the daemon refused the step's result: {}",
                        a.text()
                    );
                    return;
                }
                Ok(a) => tracing::warn!(status = a.status, "{}", a.text()),
                Err(e) => tracing::warn!("{e}; reporting again shortly"),
            }
            if Instant::now() >= deadline {
                tracing::error!(mission = %outcome.mission, "gave up reporting a step's result; the daemon's lease runs out and the step runs again");
                return;
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_secs(10));
        }
    }
}

/// Percent-encodes a query value.
fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}
