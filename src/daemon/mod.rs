//! `quire daemon`: the watched pipeline.
//!
//! ```text
//!   notify ──hint──▶ ┌──────────── one worker thread ─────────────┐
//!   periodic scan ──▶│ intake (ready bundles, arrival order)        │
//!   HTTP submit ────▶│   → apply (the library `quire apply` uses)   │──▶ events: 07_LOGS, subscribers
//!                    │   → run record (06_RUNS/)                    │
//!                    │   → index → render every configured theme    │
//!                    └──────────────────────────────────────────────┘
//! ```
//!
//! Watcher events are only hints: no work happens on notify's thread, and every pass reads the
//! directory listing afresh, so a missed or coalesced event costs at most one scan interval. One
//! worker does everything that writes, in order, so bundles are applied in arrival order and a
//! render always sees the commits before it. What a crash leaves behind is recovered by the same
//! code as `quire apply` (bundles in `processing/`) and the render's atomic swap (sites).
//!
//! The HTTP layer ([`crate::http`]) holds a [`Handle`]: it submits bundles, waits for their
//! receipts, reads health, and subscribes to events.

mod inbox;
pub mod intake;
mod jobs;
mod metrics;
mod mirror;
mod missions;
mod watch;

use inbox::{Inbox, Input, Next, Post};
pub use jobs::RenderJob;
pub use metrics::{BUCKETS, Health, Histogram, Metrics, RemoteHealth};
use watch::{Dirty, Hint, Watches};

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::{broadcast, oneshot};

use crate::contributions::{Status, now_rfc3339};
use crate::events::{Event, EventSink, JsonlLog, kind};
use crate::index::journal::{Claim, Journal};
use crate::vault::{Queue, Vault};
use crate::workflow::{self, ApplyObserver, Filed};

/// How often the worker scans `pending/` and the notes without being told to.
pub const SCAN_EVERY: Duration = Duration::from_secs(2);
/// How soon it looks again while a half-written bundle is being waited for.
const RECHECK: Duration = Duration::from_millis(100);
/// How often the event journal drops what it no longer keeps.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// The most often a pass runs for quire's own records of mission steps alone
/// (`06_RUNS/missions/`): one is appended as each step ends, and with many runners a pass for
/// each would spend a core re-rendering the site for them. They wait for the next pass, or this
/// long since the last one; anything else still starts a pass at once.
const RECORDS_EVERY: Duration = Duration::from_secs(1);
/// How long a pass may keep applying newly arrived bundles before it renders.
const DRAIN_FOR: Duration = Duration::from_secs(5);
/// How long a pass may keep accepting mission briefs before it renders: their notes then appear
/// as the burst goes on, and the next pass takes the bundles dropped meanwhile.
const BRIEFS_FOR: Duration = Duration::from_millis(750);

/// After a failure of quire itself or the machine (disk full, Git refusing), how long before
/// trying again; doubled after each failure in a row, up to [`BACKOFF_MAX`].
const BACKOFF: Duration = Duration::from_secs(1);
/// The longest pause between retries.
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// How many bundles must be waiting at once to count as a burst, whose memory is handed back as
/// soon as the queue is empty (see [`when_idle`]).
const BURST_PASS: usize = 32;

/// What the worker calls when it goes idle after work (see [`when_idle`]).
static IDLE_HOOK: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

/// Has the worker call `hook` once it goes idle after a pass that did work (no hint for a whole
/// [`SCAN_EVERY`]), and at the end of a pass that applied a burst and left the queue empty. The
/// binary uses it to hand memory its allocator holds back to the system, which a library cannot do
/// for it. Only the first hook set counts.
pub fn when_idle(hook: fn()) {
    let _ = IDLE_HOOK.set(hook);
}

/// What the worker owes once work ends.
#[derive(Debug, Default)]
struct Owed {
    /// A pass did work since the worker was last at rest (see [`at_rest`]).
    worked: bool,
    /// The most bundles waiting at once since memory was last handed back after a burst.
    backlog: usize,
}

/// The daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The vault's folders could not be made, or the worker not started.
    #[error("{context}: {source}")]
    Io {
        /// What quire was doing.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

struct Inner {
    vault: Vault,
    /// The worker's inbox.
    post: Post,
    /// Events with their journal sequence numbers, to live subscribers.
    events: broadcast::Sender<(i64, Event)>,
    /// Where events are kept for replay, and idempotency keys.
    journal: Mutex<Option<Journal>>,
    /// Render jobs asked for over the API.
    jobs: Mutex<HashMap<String, RenderJob>>,
    waiters: Mutex<HashMap<String, oneshot::Sender<Filed>>>,
    health: Mutex<Health>,
    /// Tells long-lived requests (event streams) that the daemon is stopping.
    stopping: tokio::sync::watch::Sender<bool>,
    metrics: Metrics,
    /// What the last render read of the index, so the next one reads only what changed.
    warm: Arc<Mutex<crate::render::WarmCatalog>>,
    /// Wakes the missions supervisor.
    missions: mpsc::Sender<()>,
    /// Tells the missions supervisor (and the steps it carries) to stop.
    missions_stop: crate::missions::Cancel,
    /// Wakes the thread that keeps `[git] remote` in step, when there is one.
    mirror: Option<mpsc::Sender<()>>,
}

/// What the HTTP layer (or a test) holds to talk to a running daemon.
#[derive(Clone)]
pub struct Handle {
    inner: Arc<Inner>,
}

impl Handle {
    /// The vault the daemon works on.
    pub fn vault(&self) -> &Vault {
        &self.inner.vault
    }

    /// Tells the worker that `pending/` has something new.
    pub fn wake(&self) {
        self.inner.post.hint(Hint::Bundles);
    }

    /// Tells the remote mirror that refs may have moved.
    fn wake_mirror(&self) {
        if let Some(m) = &self.inner.mirror {
            let _ = m.send(());
        }
    }

    fn set_remote(&self, remote: RemoteHealth) {
        if let Ok(mut h) = self.inner.health.lock() {
            h.remote = Some(remote);
        }
    }

    /// Tells the missions supervisor to look again (a brief filed, a decision answered, an
    /// operator's retry).
    pub fn wake_missions(&self) {
        let _ = self.inner.missions.send(());
    }

    /// Events as they happen, with their sequence numbers.
    pub fn subscribe(&self) -> broadcast::Receiver<(i64, Event)> {
        self.inner.events.subscribe()
    }

    /// Records an event from outside the pipeline (the API's `POST /api/events`); its sequence
    /// number, or `None` when the journal is unavailable.
    pub fn emit(&self, event: Event) -> Option<i64> {
        let mut log = JsonlLog::new(self.inner.vault.logs_dir());
        publish(&self.inner, &mut log, event)
    }

    /// Kept events after `seq`, oldest first (at most `limit`).
    pub fn replay(&self, seq: i64, limit: usize) -> Vec<(i64, Event)> {
        self.with_journal(|j| j.since(seq, limit))
            .unwrap_or_default()
    }

    /// The oldest kept and the newest sequence numbers: (`oldest`, `newest`); (1, 0) when none.
    pub fn journal_range(&self) -> (i64, i64) {
        let range = self.with_journal(|j| Ok((j.range()?, j.last_seq()?)));
        match range {
            Some((Some((oldest, _)), last)) => (oldest, last),
            Some((None, last)) => (last + 1, last),
            None => (1, 0),
        }
    }

    /// Claims an idempotency key (see [`Claim`]); `None` when the journal is unavailable.
    pub fn claim_key(&self, scope: &str, key: &str, hash: &str) -> Option<Claim> {
        self.with_journal(|j| j.claim(scope, key, hash))
    }

    /// Stores the response to a claimed key.
    pub fn finish_key(&self, scope: &str, key: &str, status: u16, body: &str) {
        let _ = self.with_journal(|j| j.finish(scope, key, status, body));
    }

    /// Releases a claimed key whose request did not complete.
    pub fn release_key(&self, scope: &str, key: &str) {
        let _ = self.with_journal(|j| j.release(scope, key));
    }

    fn with_journal<T>(
        &self,
        f: impl FnOnce(&Journal) -> Result<T, crate::index::IndexError>,
    ) -> Option<T> {
        let guard = self.inner.journal.lock().ok()?;
        match guard.as_ref().map(f) {
            Some(Ok(v)) => Some(v),
            Some(Err(e)) => {
                tracing::warn!("the event journal failed: {e}");
                None
            }
            None => None,
        }
    }

    /// A receiver for the outcome of the bundle that will be dropped as `pending/<name>.json`.
    /// Register before dropping the file, so the outcome cannot be missed.
    pub fn expect(&self, name: &str) -> oneshot::Receiver<Filed> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut w) = self.inner.waiters.lock() {
            w.insert(name.to_owned(), tx);
        }
        rx
    }

    /// Stops waiting for `name` (the submitter gave up).
    pub fn forget(&self, name: &str) {
        if let Ok(mut w) = self.inner.waiters.lock() {
            w.remove(name);
        }
    }

    /// Health now.
    pub fn health(&self) -> Health {
        let mut h = self
            .inner
            .health
            .lock()
            .map(|h| h.clone())
            .unwrap_or_else(|p| p.into_inner().clone());
        h.queue_depth = self.inner.metrics.queue_depth.load(Ordering::Relaxed);
        h
    }

    /// Counters and latencies.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Asks the worker to stop after the bundle in hand.
    pub fn stop(&self) {
        self.inner.post.stop();
        self.inner.missions_stop.cancel();
        self.wake_missions();
        self.wake_mirror();
        self.inner.stopping.send_replace(true);
    }

    /// Completes when the daemon starts stopping (for streams that would otherwise never end).
    pub fn stopping(&self) -> tokio::sync::watch::Receiver<bool> {
        self.inner.stopping.subscribe()
    }
}

/// Writes an event to the log and the journal and hands it to subscribers.
fn publish(inner: &Inner, log: &mut JsonlLog, event: Event) -> Option<i64> {
    log.emit(event.clone());
    let seq = inner
        .journal
        .lock()
        .ok()
        .and_then(|j| j.as_ref().map(|j| j.append(&event)))
        .and_then(|r| {
            r.map_err(|e| tracing::warn!("could not journal an event: {e}"))
                .ok()
        });
    if let Some(seq) = seq {
        let _ = inner.events.send((seq, event));
    }
    // Whatever happened may have moved a ref the remote mirrors.
    if let Some(m) = &inner.mirror {
        let _ = m.send(());
    }
    seq
}

/// The file a running daemon holds locked (`.quire/daemon.lock`), so that the CLI knows to leave
/// carrying missions to it.
fn lock_path(vault: &Vault) -> std::path::PathBuf {
    vault.state_dir().join("daemon.lock")
}

/// Whether a daemon runs on `vault` (in this process or another).
pub fn running(vault: &Vault) -> bool {
    let Ok(file) = std::fs::File::options()
        .read(true)
        .write(true)
        .open(lock_path(vault))
    else {
        return false;
    };
    matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock))
}

/// A running daemon: its worker and watcher.
pub struct Daemon {
    handle: Handle,
    /// Held locked while the daemon runs (see [`running`]).
    _running: Option<std::fs::File>,
    worker: Option<std::thread::JoinHandle<()>>,
    supervisor: Option<std::thread::JoinHandle<()>>,
    mirror: Option<std::thread::JoinHandle<()>>,
}

impl Daemon {
    /// Starts the pipeline on `vault`: a first full pass (bundles left by a crash, the index, the
    /// sites), then watching.
    pub fn start(vault: &Vault) -> Result<Self, DaemonError> {
        vault.ensure_work_dirs().map_err(|source| DaemonError::Io {
            context: "could not create the vault's work folders".into(),
            source,
        })?;
        let running = std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(lock_path(vault))
            .ok()
            .filter(|f| match f.try_lock() {
                Ok(()) => true,
                Err(_) => {
                    tracing::warn!("another daemon already runs on this vault; missions are carried by whichever holds each one's lease");
                    false
                }
            });
        let (post, inbox) = inbox::inbox();
        let (events, _) = broadcast::channel(4096);
        let (missions_wake, missions_woken) = mpsc::channel();
        let remote_url = vault.config().git.remote.clone();
        let (mirror_wake, mirror_woken) = mpsc::channel();
        let journal = match Journal::open(&vault.state_dir()) {
            Ok(j) => {
                // Keys a killed daemon left in flight would answer 409 forever.
                let _ = j.release_all_in_flight();
                let _ = j.prune();
                Some(j)
            }
            Err(e) => {
                tracing::error!(
                    "the event journal cannot be opened: {e}; events are logged but not replayed"
                );
                None
            }
        };
        let inner = Arc::new(Inner {
            vault: vault.clone(),
            post: post.clone(),
            events,
            journal: Mutex::new(journal),
            jobs: Mutex::new(HashMap::new()),
            waiters: Mutex::new(HashMap::new()),
            health: Mutex::new(Health {
                status: "ok",
                reasons: Vec::new(),
                version: env!("CARGO_PKG_VERSION"),
                started: now_rfc3339(),
                last_run: None,
                queue_depth: 0,
                remote: None,
            }),
            stopping: tokio::sync::watch::channel(false).0,
            metrics: Metrics::default(),
            warm: Arc::default(),
            missions: missions_wake.clone(),
            missions_stop: crate::missions::Cancel::default(),
            mirror: remote_url.is_some().then_some(mirror_wake),
        });
        let handle = Handle { inner };
        // QUIRE_DAEMON_POLL=1 skips file events, for file systems that do not send them (network
        // mounts); the scans alone then find every change.
        let watcher = if std::env::var_os("QUIRE_DAEMON_POLL").is_some_and(|v| v == "1") {
            None
        } else {
            Watches::start(vault.root(), post)
        };
        if watcher.is_none() {
            tracing::warn!("file events are unavailable; scanning every 2 s instead");
        }
        let worker = {
            let handle = handle.clone();
            std::thread::Builder::new()
                .name("quire-pipeline".into())
                .spawn(move || pipeline(&handle, &inbox, watcher))
                .map_err(|source| DaemonError::Io {
                    context: "could not start the pipeline".into(),
                    source,
                })?
        };
        let supervisor = {
            let handle = handle.clone();
            let stop = handle.inner.missions_stop.clone();
            std::thread::Builder::new()
                .name("quire-missions".into())
                .spawn(move || missions::supervise(handle, missions_woken, missions_wake, stop))
                .map_err(|source| DaemonError::Io {
                    context: "could not start the missions supervisor".into(),
                    source,
                })?
        };
        let mirror = match remote_url {
            Some(url) => {
                let handle = handle.clone();
                let stop = handle.inner.missions_stop.clone();
                Some(
                    std::thread::Builder::new()
                        .name("quire-mirror".into())
                        .spawn(move || mirror::mirror(handle, url, mirror_woken, stop))
                        .map_err(|source| DaemonError::Io {
                            context: "could not start the remote mirror".into(),
                            source,
                        })?,
                )
            }
            None => None,
        };
        // Receipts that a crash (or a deleted `.quire/`) left out of analytics are recorded in the
        // background; the pipeline records new ones meanwhile, each once.
        {
            let vault = vault.clone();
            let spawned = std::thread::Builder::new()
                .name("quire-analytics".into())
                .spawn(move || {
                    let caught = crate::analytics::Analytics::open(&vault)
                        .and_then(|mut a| a.catch_up(&vault));
                    if let Err(e) = caught {
                        tracing::warn!("analytics could not catch up with the receipts: {e}");
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!("analytics could not catch up with the receipts: {e}");
            }
        }
        Ok(Self {
            handle,
            _running: running,
            worker: Some(worker),
            supervisor: Some(supervisor),
            mirror,
        })
    }

    /// The handle for the HTTP layer.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Stops after the bundle in hand and waits for the worker.
    pub fn shutdown(mut self) {
        self.join();
    }

    fn join(&mut self) {
        self.handle.stop();
        for t in [
            self.worker.take(),
            self.supervisor.take(),
            self.mirror.take(),
        ]
        .into_iter()
        .flatten()
        {
            let _ = t.join();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.join();
    }
}

impl Handle {
    fn set_health(&self, reasons: Vec<String>) {
        if let Ok(mut h) = self.inner.health.lock() {
            h.status = if reasons.is_empty() { "ok" } else { "degraded" };
            h.reasons = reasons;
        }
    }
}

/// The worker: one pass per wake-up (or per scan interval), until asked to stop.
fn pipeline(handle: &Handle, inbox: &Inbox, mut watches: Option<Watches>) {
    // Without file events, every scan also looks at the notes (an index walk, and a render that
    // finds nothing to do when nothing changed).
    let polling = watches.is_none();
    let vault = &handle.inner.vault;
    let mut log = JsonlLog::new(vault.logs_dir());
    let mut intake = intake::Intake::default();
    let mut pruned = Instant::now();
    // At start: bundles left by a crash, and the index and sites brought up to date.
    let mut dirty = Dirty::everything();
    // How many passes in a row failed (each retry waits twice as long as the one before).
    let mut failing: u32 = 0;
    let mut owed = Owed::default();
    // Held open, unused, from the end of the first pass on: while one connection is open SQLite
    // keeps the index's `-wal` and `-shm` files, which it otherwise creates and deletes with
    // every connection a pass opens (three or four), each creation a search for a free inode that
    // ext4 makes slow among recently deleted ones. Not before: a first build of the whole index
    // runs without a journal only when no other connection has the file open.
    let mut held = None;
    let mut last_pass = Instant::now();
    loop {
        let wait = if failing > 0 {
            (BACKOFF * 2u32.saturating_pow(failing - 1)).min(BACKOFF_MAX)
        } else if intake.waiting() {
            RECHECK
        } else {
            SCAN_EVERY
        };
        // Whether something other than the vault's notes woke us (bundles, a stop): it is not
        // held back for records.
        let mut pressing = false;
        match inbox.next(wait) {
            Next::Input(input) => pressing = take(&mut dirty, input),
            Next::Idle => {
                if std::mem::take(&mut owed.worked) && at_rest(handle) {
                    dirty.all = true;
                }
                dirty.all |= polling || watches.as_ref().is_some_and(|w| w.incomplete);
            }
            Next::Stop | Next::Closed => break,
        }
        // A long-running daemon keeps the journal to its limits, not only at start.
        if pruned.elapsed() >= PRUNE_EVERY {
            pruned = Instant::now();
            let _ = handle.with_journal(|j| j.prune());
        }
        // Coalesce the burst that woke us.
        while let Some(input) = inbox.try_next() {
            pressing |= take(&mut dirty, input);
        }
        if !pressing && dirty.only_records() && !intake.waiting() && failing == 0 {
            settle_records(inbox, &mut dirty, last_pass + RECORDS_EVERY);
        }
        if inbox.stopping() {
            break;
        }
        let ok = pass(
            handle,
            &mut log,
            &mut intake,
            &mut dirty,
            inbox,
            &mut watches,
            &mut owed,
            failing > 0,
        );
        failing = if ok { 0 } else { failing.saturating_add(1) };
        last_pass = Instant::now();
        if held.is_none() {
            held = crate::index::Index::open(vault)
                .inspect_err(|e| tracing::debug!("could not hold the index open: {e}"))
                .ok();
        }
    }
    tracing::info!("the pipeline stopped");
}

/// Waits until `until` for more to look at while all there is are mission records; returns as
/// soon as anything else arrives (a bundle, a note, a rescan, a stop).
fn settle_records(inbox: &Inbox, dirty: &mut Dirty, until: Instant) {
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        match inbox.next(left) {
            Next::Input(input) => {
                if take(dirty, input) || !dirty.only_records() {
                    return;
                }
            }
            Next::Idle | Next::Stop | Next::Closed => return,
        }
    }
}

/// Notes an input for the next pass; true when it is about bundles or a stop, which a pass takes
/// up at once.
fn take(dirty: &mut Dirty, input: Input) -> bool {
    match input {
        Input::Hint(h) => dirty.note(h),
        Input::Urgent => true,
    }
}

/// What the worker does when it goes idle after work. Passes update the index for the paths they
/// know changed; once at rest, the vault is walked, so that a change the watcher did not report is
/// found within a scan interval of the work ending (returns true then: the caller runs a pass).
/// Then the live manifests kept for the next render go (tens of MB on a large vault; after a pause,
/// reading one back is a small part of a pass), freed memory goes back to the system, and the
/// catalog the next render patches is made again into the memory that is left, then what making it
/// freed goes back too.
fn at_rest(handle: &Handle) -> bool {
    let missed =
        match crate::index::Index::open(&handle.inner.vault).and_then(|mut i| i.update(false)) {
            Ok(u) => u.parsed > 0 || u.removed > 0,
            Err(e) => {
                tracing::warn!("the index could not be brought up to date at rest: {e}");
                false
            }
        };
    if missed {
        tracing::info!("the index walk at rest found changes no event reported");
        return true;
    }
    let hook = IDLE_HOOK.get();
    crate::render::release_kept_manifests();
    if let Ok(mut warm) = handle.inner.warm.lock() {
        let vault = Vault::open(handle.inner.vault.root());
        // Dropped before the memory goes back, so that the new one does not land among its pieces.
        warm.release();
        if let Some(hook) = hook {
            hook();
        }
        if let Ok(vault) = vault
            && let Err(e) = warm.remake(&vault)
        {
            tracing::debug!("could not prepare the next render's catalog: {e}");
        }
    }
    if let Some(hook) = hook {
        hook();
    }
    false
}

/// One pass: apply what is ready, record it, index, render. Returns false when quire itself failed
/// (the daemon is then degraded and tries again after a growing pause). After such a failure
/// (`retrying`), or while bundles wait in `processing/`, the pass first finishes that work, even
/// when nothing new arrived. Notes in `owed` what it did.
#[allow(clippy::too_many_arguments)]
fn pass(
    handle: &Handle,
    log: &mut JsonlLog,
    intake: &mut intake::Intake,
    dirty: &mut Dirty,
    inbox: &Inbox,
    watches: &mut Option<Watches>,
    owed: &mut Owed,
    retrying: bool,
) -> bool {
    let vault = &handle.inner.vault;
    let metrics = &handle.inner.metrics;
    let mut sink = Fanout {
        log,
        inner: &handle.inner,
    };
    let mut problems = Vec::new();
    let ready = match intake.ready(vault) {
        Ok(r) => r,
        Err(e) => {
            problems.push(format!("could not list contributions/pending/: {e}"));
            intake::Ready::default()
        }
    };
    let in_hand = count_queue(vault, Queue::Processing);
    metrics
        .queue_depth
        .store(ready.len() as u64 + in_hand, Ordering::Relaxed);
    owed.backlog = owed.backlog.max(ready.len());
    let started = now_rfc3339();
    let clock = Instant::now();
    let mut filed = Vec::new();
    // What a failed pass left (a bundle in processing/, index updates Git's index still owes) is
    // finished as soon as the cause is gone, not when the next bundle happens to arrive.
    if ready.is_empty() && (retrying || in_hand > 0) {
        let mut observer = Observer {
            handle,
            filed: &mut filed,
            yield_to: None,
        };
        if let Err(e) = workflow::resume(vault, &mut sink, &mut observer) {
            apply_failed(&mut sink, &mut problems, &e);
        }
    }
    let mut ready = ready;
    // Under a burst of bundles, keep applying what arrives and render once at the end (or after
    // DRAIN_FOR), rather than render the whole site again between every few bundles. Bundles
    // come before briefs; a pass that applied bundles ends when none are left, and briefs are
    // taken a turn at a time for BRIEFS_FOR, so a bundle never waits behind a burst of briefs.
    let mut took_bundles = false;
    let mut failed = false;
    loop {
        let (files, briefs) = if !ready.first.is_empty() {
            took_bundles = true;
            (std::mem::take(&mut ready.first), false)
        } else if !ready.briefs.is_empty() && !took_bundles && clock.elapsed() < BRIEFS_FOR {
            (std::mem::take(&mut ready.briefs), true)
        } else {
            break;
        };
        let mut observer = Observer {
            handle,
            filed: &mut filed,
            yield_to: briefs.then_some(&mut *intake),
        };
        if let Err(e) = workflow::apply(vault, &files, &mut sink, &mut observer) {
            // The bundle in hand stays in processing/ and is resumed on the next pass.
            apply_failed(&mut sink, &mut problems, &e);
            failed = true;
            break;
        }
        ready = intake.ready(vault).unwrap_or_default();
        owed.backlog = owed.backlog.max(ready.len());
        if inbox.stopping() || clock.elapsed() >= DRAIN_FOR {
            break;
        }
    }
    // What is left gets a pass of its own as soon as this one is reported.
    let left = !failed && !ready.is_empty() && !inbox.stopping();
    let applying = clock.elapsed();
    let mut waiting = ready.len() as u64;
    if !filed.is_empty() || !problems.is_empty() {
        waiting = count_queue(vault, Queue::Pending);
        metrics.queue_depth.store(
            waiting + count_queue(vault, Queue::Processing),
            Ordering::Relaxed,
        );
    }
    let applied = filed
        .iter()
        .filter(|f| f.receipt.status == Status::Applied)
        .count();
    let recorded = workflow::pipeline::record(
        vault,
        &started,
        clock.elapsed(),
        &filed,
        &problems,
        &mut sink,
    )
    .unwrap_or_else(|e| {
        problems.push(format!("could not write the run record: {e}"));
        None
    });
    // What the watcher reported so far (mostly this pass's own work-tree updates) is covered by
    // the index update and render below, which read the vault after it: only new bundles need
    // another pass. Hints that come later still wake the next one.
    let mut more = false;
    while let Some(input) = inbox.try_next() {
        more |= matches!(&input, Input::Hint(h) if dirty.note(h.clone()));
    }
    if more || left {
        handle.inner.post.hint(Hint::Bundles);
    }
    if applied > 0 || !filed.is_empty() || dirty.any() {
        owed.worked = true;
        // One index update per pass, for the commits and for a person's edits alike; the render
        // below then finds the index current. Without a reason to walk the vault, it looks at the
        // paths the watcher reported, the files the applied bundles changed and the run record.
        let taken = std::mem::take(dirty);
        let mut look = workflow::pipeline::Look::applied(&filed);
        look.all = taken.all;
        look.paths.extend(taken.paths);
        look.paths.extend(recorded);
        // A top-level folder made since the last look (by a bundle or a person) is watched before
        // the index walks it.
        if let Some(w) = watches {
            w.refresh();
        }
        let t = Instant::now();
        // The render goes through the handle that updated the index: it hands over the notes it
        // wrote as it parsed them.
        let updater = match workflow::pipeline::index(vault, look, &mut sink) {
            Ok((index, _)) => {
                metrics.index_seconds.observe(t.elapsed());
                Some(index)
            }
            Err(e) => {
                // What it was to look at is not lost: the next pass walks the vault.
                dirty.all = true;
                problems.push(format!("the index could not be updated: {e}"));
                None
            }
        };
        let indexed = clock.elapsed();
        let t = Instant::now();
        let mut behind = Vec::new();
        match workflow::pipeline::render(vault, updater, handle.inner.warm.clone(), &mut sink) {
            Ok(reports) => {
                metrics.render_seconds.observe(t.elapsed());
                // A build that wrote most of its site (the first, after a theme change, or after
                // the navigation changed) leaves the folder the next one is made in far behind:
                // it is caught up once this pass is reported.
                behind.extend(
                    reports
                        .iter()
                        .filter(|r| r.written * 2 > r.files)
                        .map(|r| r.theme.clone()),
                );
            }
            Err(e) => problems.push(format!("render failed: {e}")),
        }
        // The pass that empties the queue after a burst hands back what the burst used (libgit2's
        // held objects, SQLite's page caches, the render's working memory) before it reports the
        // burst done, rather than a scan interval later. It costs milliseconds, once a burst.
        if owed.backlog >= BURST_PASS && waiting == 0 {
            owed.backlog = 0;
            let t = Instant::now();
            match IDLE_HOOK.get() {
                Some(hook) => hook(),
                None => crate::trim_c_heap(),
            }
            tracing::debug!(took = ?t.elapsed(), "handed back the memory of a burst");
        }
        tracing::debug!(
            filed = filed.len(),
            left = ready.len(),
            apply_ms = applying.as_millis() as u64,
            indexed_ms = indexed.as_millis() as u64,
            total_ms = clock.elapsed().as_millis() as u64,
            "pass done"
        );
        // The end of the work a drop started: what latency is measured to.
        let ids: Vec<&str> = filed
            .iter()
            .filter_map(|f| f.receipt.id.as_deref())
            .collect();
        sink.emit(Event::new(
            kind::PIPELINE_COMPLETED,
            "pipeline",
            json!({ "bundles": ids, "applied": applied, "duration_ms": clock.elapsed().as_secs_f64() * 1000.0, "problems": problems.len() }),
            None,
        ));
        // Off the latency of the bundles just reported: the next build then writes only what it
        // changes, instead of first linking every unchanged file into its folder.
        let out = vault.root().join(crate::render::SITE_DIR);
        for theme in behind {
            match crate::render::mirror_live_site(&out, &theme) {
                Ok(n) => tracing::debug!(%theme, files = n, "mirrored the live site"),
                Err(e) => tracing::warn!(%theme, "could not mirror the live site: {e}"),
            }
        }
    }
    let ok = problems.is_empty();
    if (!filed.is_empty() || !ok)
        && let Ok(mut h) = handle.inner.health.lock()
    {
        h.last_run = Some(now_rfc3339());
    }
    // Said where the operator looks, once per try (the tries space out to a minute apart).
    for p in &problems {
        tracing::error!("{p}; trying again shortly");
    }
    handle.set_health(problems);
    ok
}

/// Notes a failure of quire or the machine while applying: a problem for `/healthz`, an event.
fn apply_failed(sink: &mut dyn EventSink, problems: &mut Vec<String>, e: &workflow::WorkflowError) {
    problems.push(format!("applying bundles failed: {e}"));
    sink.emit(Event::new(
        kind::PIPELINE_FAILED,
        "apply",
        json!({ "error": e.to_string() }),
        None,
    ));
}

fn count_queue(vault: &Vault, folder: Queue) -> u64 {
    crate::contributions::queue::list(vault, folder)
        .map(|l| l.len() as u64)
        .unwrap_or(0)
}

/// Events to the log, the journal and subscribers.
struct Fanout<'a> {
    log: &'a mut JsonlLog,
    inner: &'a Inner,
}

impl EventSink for Fanout<'_> {
    fn emit(&mut self, event: Event) {
        publish(self.inner, self.log, event);
    }
}

/// Hands each outcome to whoever waits for it, counts it, and stops between bundles on request.
struct Observer<'a> {
    handle: &'a Handle,
    filed: &'a mut Vec<Filed>,
    /// While briefs are accepted: the intake, asked before each one whether a bundle or an answer
    /// has arrived, which then goes first (a look at `pending/`, a millisecond beside the tens a
    /// brief takes).
    yield_to: Option<&'a mut intake::Intake>,
}

impl ApplyObserver for Observer<'_> {
    fn filed(&mut self, filed: &Filed) {
        let m = &self.handle.inner.metrics;
        // From pick-up to receipt, batch included: the time between filings is zero for all but
        // the first bundle of a batch.
        m.apply_seconds
            .observe(Duration::from_secs_f64(filed.receipt.duration_ms / 1000.0));
        match filed.receipt.status {
            Status::Applied => &m.applied,
            Status::Duplicate => &m.duplicate,
            Status::Rejected => &m.rejected,
        }
        .fetch_add(1, Ordering::Relaxed);
        // A filed brief (or anything else) may have given the missions supervisor work.
        if filed.receipt.status == Status::Applied {
            self.handle.wake_missions();
        }
        if let Ok(mut w) = self.handle.inner.waiters.lock()
            && let Some(tx) = w.remove(&filed.dropped_as)
        {
            let _ = tx.send(filed.clone());
        }
        self.filed.push(filed.clone());
    }

    fn stop_requested(&mut self) -> bool {
        self.handle.inner.post.stopping()
    }

    fn enough_for_now(&mut self) -> bool {
        let vault = &self.handle.inner.vault;
        self.yield_to
            .as_mut()
            .is_some_and(|intake| intake.ready(vault).is_ok_and(|r| !r.first.is_empty()))
    }

    // Degraded from the first moment, not only once the wait has failed: `/healthz` says why
    // nothing is being applied.
    fn waiting_for_git(&mut self, lock: &Path, since: &str) {
        let mut reasons = self
            .handle
            .inner
            .health
            .lock()
            .map(|h| h.reasons.clone())
            .unwrap_or_default();
        reasons.push(format!(
            "waiting for {} (held by another program since {since}); nothing is applied to its work tree until it goes. If no Git command is running, delete it",
            lock.display()
        ));
        self.handle.set_health(reasons);
    }

    fn git_lock_released(&mut self, lock: &Path) {
        let shown = lock.display().to_string();
        let reasons = self
            .handle
            .inner
            .health
            .lock()
            .map(|h| h.reasons.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|r| !r.contains(&shown))
            .collect();
        self.handle.set_health(reasons);
    }
}

#[cfg(test)]
mod tests {
    use super::watch::classify;
    use super::*;

    #[test]
    fn the_idle_hook_runs_after_a_burst_and_after_work_and_not_again_while_nothing_happens() {
        // One test, since the hook is set once per process.
        static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        fn count() {
            CALLS.fetch_add(1, Ordering::SeqCst);
        }
        when_idle(count);
        let (_dir, vault) = crate::workflow::temp_vault();
        // A burst waiting at start: the first pass applies it and empties the queue.
        let pending = vault.queue_dir(Queue::Pending);
        for i in 0..BURST_PASS {
            let bundle = json!({
                "contract": "quire.contribution/1", "id": format!("b{i}"), "message": "burst",
                "author": { "name": "Agent", "email": "agent@example.org" },
                "changes": [{ "op": "create", "path": format!("burst/{i}.md"), "content": "# b\n" }],
            });
            std::fs::write(
                pending.join(format!("b{i:02}.json")),
                serde_json::to_vec(&bundle).unwrap(),
            )
            .unwrap();
        }
        let daemon = Daemon::start(&vault).unwrap();
        let handle = daemon.handle();
        let deadline = Instant::now() + Duration::from_secs(60);
        let completed = |handle: &Handle| {
            handle.replay(0, 1000).iter().any(|(_, e)| {
                e.kind == "pipeline.completed" && e.data["applied"] == json!(BURST_PASS)
            })
        };
        while !completed(&handle) {
            assert!(Instant::now() < deadline, "the burst was never applied");
            std::thread::sleep(Duration::from_millis(10));
        }
        // Handed back before the burst was reported done, not a scan interval later.
        assert_eq!(
            CALLS.load(Ordering::SeqCst),
            1,
            "not handed back after the burst"
        );
        // Then the rest after that work: twice (before and after the next render's catalog is made
        // again); then two more scan intervals of nothing: idle, but no work to hand memory back
        // after.
        while CALLS.load(Ordering::SeqCst) < 3 {
            assert!(
                Instant::now() < deadline,
                "the idle hook never ran after the first pass"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(SCAN_EVERY * 2 + Duration::from_millis(500));
        assert_eq!(CALLS.load(Ordering::SeqCst), 3);
        daemon.shutdown();
    }

    #[test]
    fn only_mission_records_may_wait_and_anything_else_goes_at_once() {
        let mut dirty = Dirty::default();
        assert!(!dirty.only_records(), "nothing to look at is not records");
        assert!(!take(
            &mut dirty,
            Input::Hint(Hint::Records("06_RUNS/missions/m.md".into()))
        ));
        assert!(dirty.only_records());
        assert!(
            take(&mut dirty, Input::Hint(Hint::Bundles)),
            "bundles press"
        );
        assert!(take(&mut dirty, Input::Urgent), "a stop presses");
        assert!(!take(
            &mut dirty,
            Input::Hint(Hint::Notes("03_NOTES/a.md".into()))
        ));
        assert!(!dirty.only_records(), "a note does not wait for records");
        let mut rescan = Dirty::default();
        take(
            &mut rescan,
            Input::Hint(Hint::Records("06_RUNS/missions/m.md".into())),
        );
        take(&mut rescan, Input::Hint(Hint::Rescan));
        assert!(!rescan.only_records());
        // What a pass takes leaves nothing behind.
        let _ = std::mem::take(&mut dirty);
        assert!(!dirty.only_records() && !dirty.any());
    }

    #[test]
    fn paths_are_classified_for_the_worker() {
        let root = Path::new("/v");
        let pending = Path::new("/v/contributions/pending");
        assert_eq!(
            classify(root, pending, Path::new("/v/contributions/pending/a.json")),
            Some(Hint::Bundles)
        );
        assert_eq!(
            classify(root, pending, Path::new("/v/03_NOTES/a.md")),
            Some(Hint::Notes("03_NOTES/a.md".into()))
        );
        assert_eq!(
            classify(root, pending, Path::new("/v/06_RUNS/promotions/p.md")),
            Some(Hint::Notes("06_RUNS/promotions/p.md".into()))
        );
        assert_eq!(
            classify(root, pending, Path::new("/v/06_RUNS/missions/m-1.md")),
            Some(Hint::Records("06_RUNS/missions/m-1.md".into()))
        );
        for quiet in [
            "/v/06_RUNS/20261121-pipeline.md",
            "/v/contributions/processed/a.json",
            "/v/_site/paper/index.html",
            "/v/.git/index",
            "/v/.quire/state.db",
            "/v/07_LOGS/quire-2026-11-21.jsonl",
        ] {
            assert_eq!(classify(root, pending, Path::new(quiet)), None, "{quiet}");
        }
    }

    #[test]
    fn histograms_are_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_millis(300));
        let (buckets, count, sum) = h.snapshot();
        assert_eq!(count, 2);
        assert_eq!(buckets[0], 0);
        assert_eq!(buckets[2], 1, "≤ 5 ms");
        assert_eq!(*buckets.last().unwrap(), 2);
        assert!((sum - 0.303).abs() < 1e-6);
    }
}
