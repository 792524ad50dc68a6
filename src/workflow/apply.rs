//! `quire apply`: work the contribution queue — resume `processing/`, claim from `pending/`, and for
//! each bundle parse, plan, check the work tree and write its commit; then, for each batch of
//! bundles, move the branch once, sync the work tree, and file a receipt per bundle.
//!
//! # Batches
//!
//! Each bundle gets its own commit, chained on the previous one, but the branch moves once per
//! batch (up to 128 bundles), and large runs write a batch's objects as one pack. Until
//! the branch moves, the work tree still holds the branch's old tip, so the work-tree check of every
//! bundle compares against that, and receipts and outcome events wait for the move.
//!
//! # Crash safety
//!
//! The Git history is the record of what was applied; every other state is derived from it or is a
//! file moved by atomic rename. Walking through the instants a `kill -9` can land:
//!
//! | crash after…                 | on restart                                                              |
//! |------------------------------|-------------------------------------------------------------------------|
//! | claim (rename to processing) | the bundle is resumed from `processing/` and applied                     |
//! | commits written, before the branch moves | the objects are unreferenced; the batch's bundles are resumed and applied once |
//! | branch moved                 | each id is found in the trailers with the same hash: not applied again; the work tree is synced from each commit's own diff, in order, and the receipt says `applied` |
//! | receipt written              | as above; the receipt is rewritten and the bundle filed                  |
//! | bundle filed                 | nothing left to do                                                       |
//!
//! A bundle is only ever renamed, never deleted, so none is lost; and because the id check reads
//! the trailers of the branch history, none is applied twice.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::json;

use super::WorkflowError;
use super::mission_ops::DECISION_CONTRACT;
use crate::contributions::queue;
use crate::contributions::record::{Applied, AppliedRecord};
use crate::contributions::{
    Bundle, ErrorCode, Receipt, ReceiptError, Rejection, Status, TRAILER_ID, TRAILER_SHA, Target,
    contract_of, now_rfc3339, peek_id, plan, rfc3339, sha256_hex,
};
use crate::events::{Event, EventSink, kind};
use crate::fault;
use crate::git::worktree::Dirty;
use crate::git::{Checkout, FileChange};
use crate::git::{GitError, Oid, Repo, Signature, message_with_trailers};
use crate::vault::{Queue, Vault, VaultPath, fsutil};

/// How many times a batch is re-planned when another writer moves its branch underneath it (with
/// a growing pause before each).
const MAX_SWAP_ATTEMPTS: usize = 8;

/// Bundles decided before their commits are published together (one branch move, one pack of
/// objects) and filed. Bounds the memory a batch holds and how long its first receipt waits.
const BATCH_MAX: usize = 128;

/// A batch is also published once its bundles add up to this many bytes: each is held parsed (to be
/// planned again if its branch moves) and its objects may be held in memory until then.
const BATCH_BYTES: usize = 64 << 20;

/// Runs of at least this many bundles hold new objects in memory and write one pack per batch.
/// Smaller runs (the daemon's usual single drop) write loose objects, as Git does, rather than leave
/// a pack file per bundle.
const PACK_FROM: usize = 32;

/// One bundle's outcome: where it was filed and its receipt.
#[derive(Debug, Clone)]
pub struct Filed {
    /// The bundle's path now (in `processed/` or `rejected/`).
    pub bundle: PathBuf,
    /// Its receipt.
    pub receipt: Receipt,
    /// The file name it was dropped under in `pending/` (or found under in `processing/`), without
    /// `.json`: how a submitter that wrote the file recognises its outcome.
    pub dropped_as: String,
    /// `Name <email>` of the bundle's author, when it names one (for analytics).
    pub author: Option<String>,
}

/// What an apply run did.
#[derive(Debug, Clone, Default)]
pub struct ApplyReport {
    /// Every bundle handled, in order.
    pub filed: Vec<Filed>,
}

impl ApplyReport {
    /// Whether every bundle was applied or was a duplicate (nothing rejected).
    pub fn all_accepted(&self) -> bool {
        self.filed
            .iter()
            .all(|f| f.receipt.status != Status::Rejected)
    }

    /// How many bundles ended with `status`.
    pub fn count(&self, status: Status) -> usize {
        self.filed
            .iter()
            .filter(|f| f.receipt.status == status)
            .count()
    }
}

/// Hooks for the caller: what to say while waiting, and progress.
pub trait ApplyObserver {
    /// Another quire holds the queue; this run waits for it.
    fn waiting_for_lock(&mut self) {}
    /// `total` bundles are about to be handled.
    fn start(&mut self, _total: usize) {}
    /// One more bundle was handled.
    fn filed(&mut self, _filed: &Filed) {}
    /// Asked before each bundle from `pending/`: `true` stops the run there, leaving the rest
    /// queued (the daemon's graceful shutdown finishes only the bundle in hand).
    fn stop_requested(&mut self) -> bool {
        false
    }
    /// Asked before each file from `pending/` after the first: `true` leaves the rest queued for
    /// a later run, which the caller starts when it has done something more urgent (the daemon
    /// takes a burst of mission briefs a short turn at a time, so that bundles dropped meanwhile
    /// go between turns). Unlike [`ApplyObserver::stop_requested`], waits in hand go on.
    fn enough_for_now(&mut self) -> bool {
        false
    }
    /// Another program holds Git's lock on the index of a work tree quire is about to change
    /// (`lock`, taken at `since`); quire waits for it to go, up to `[git] lock_wait_secs`.
    fn waiting_for_git(&mut self, _lock: &Path, _since: &str) {}
    /// The lock quire waited for went.
    fn git_lock_released(&mut self, _lock: &Path) {}
}

/// An observer that does nothing.
impl ApplyObserver for () {}

/// Applies the bundles in `files` (copied into `pending/` first unless they are already there), or,
/// when `files` is empty, every bundle in `pending/`. Bundles left in `processing/` by an
/// interrupted run are always resumed first.
///
/// Refused bundles are not errors here: they are filed in `rejected/` with a receipt and reported.
/// An error means quire itself could not work (the repository or the disk failed); the bundle in
/// hand then stays in `processing/` for the next run.
pub fn apply(
    vault: &Vault,
    files: &[PathBuf],
    events: &mut dyn EventSink,
    observer: &mut dyn ApplyObserver,
) -> Result<ApplyReport, WorkflowError> {
    work_dirs(vault)?;
    let explicit = stage_files(vault, files)?;
    work(vault, explicit, events, observer)
}

/// Finishes what an interrupted or failed run left: bundles in `processing/`, index updates not
/// yet written to Git's index. Claims nothing new from `pending/`. The daemon calls it while it
/// retries after a failure of the machine (a full disk), so the work goes through as soon as the
/// cause is gone, without waiting for another bundle to arrive.
pub fn resume(
    vault: &Vault,
    events: &mut dyn EventSink,
    observer: &mut dyn ApplyObserver,
) -> Result<ApplyReport, WorkflowError> {
    work_dirs(vault)?;
    work(vault, Some(Vec::new()), events, observer)
}

/// The queue's folders and quire's own, which a fresh clone lacks.
fn work_dirs(vault: &Vault) -> Result<(), WorkflowError> {
    vault
        .ensure_work_dirs()
        .map_err(|e| WorkflowError::io("could not create the vault's work folders", e))
}

/// [`apply`] once the named files are in `pending/` (`None`: all of it).
fn work(
    vault: &Vault,
    explicit: Option<Vec<PathBuf>>,
    events: &mut dyn EventSink,
    observer: &mut dyn ApplyObserver,
) -> Result<ApplyReport, WorkflowError> {
    let _lock = super::landing::lock(vault, || observer.waiting_for_lock())?;
    sweep_temp_files(vault);
    let mut run = Run::open(vault, events, observer)?;

    let resumed = queue::list(vault, Queue::Processing)
        .map_err(|e| WorkflowError::io("could not list contributions/processing/", e))?;
    let fresh = match explicit {
        Some(paths) => paths,
        None => queue::list(vault, Queue::Pending)
            .map_err(|e| WorkflowError::io("could not list contributions/pending/", e))?,
    };
    let total = resumed.len() + fresh.len();
    if total >= PACK_FROM {
        run.repo.hold_objects_in_memory()?;
    }
    observer.start(total);
    let mut report = ApplyReport::default();
    for path in resumed {
        tracing::info!(bundle = %path.display(), "resuming a bundle an interrupted run left in processing/");
        let dropped_as = queue::file_stem(&path);
        if let Some(brief) = run.handle(&path, true, dropped_as, events)? {
            run.land_into(events, observer, &mut report)?;
            let filed = run.accept_brief(brief, events)?;
            observer.filed(&filed);
            report.filed.push(filed);
        }
        if run.batch_is_full() {
            run.land_into(events, observer, &mut report)?;
        }
    }
    for (n, path) in fresh.into_iter().enumerate() {
        if observer.stop_requested() || (n > 0 && observer.enough_for_now()) {
            break;
        }
        let Some(claimed) = queue::claim(vault, &path)
            .map_err(|e| WorkflowError::io(format!("could not claim {}", path.display()), e))?
        else {
            continue;
        };
        fault::point("after_claim");
        if let Some(brief) = run.handle(&claimed, false, queue::file_stem(&path), events)? {
            // Briefs are taken in arrival order: the bundles before it land first.
            run.land_into(events, observer, &mut report)?;
            let filed = run.accept_brief(brief, events)?;
            observer.filed(&filed);
            report.filed.push(filed);
        }
        if run.batch_is_full() {
            run.land_into(events, observer, &mut report)?;
        }
    }
    run.land_into(events, observer, &mut report)?;
    run.flush(events, observer)?;
    if let Err(e) = run.record.compact_if_worthwhile() {
        tracing::warn!("could not compact the applied-ids record: {e}");
    }
    let decisions = run.decisions_filed;
    drop(run);
    drop(_lock);
    // After the receipts: what a crash here leaves unrecorded, the next catch-up finds on disk.
    let facts: Vec<_> = report
        .filed
        .iter()
        .map(|f| crate::analytics::BundleFact::new(&f.bundle, f.receipt.clone(), f.author.clone()))
        .collect();
    crate::analytics::record_quietly(vault, &facts);
    // Answers from dropped decision files were recorded under the lock; their effect (a promotion
    // takes the lock itself) follows now.
    if decisions {
        super::mission_ops::settle_answers(vault, events)?;
    }
    Ok(report)
}

/// Waits while another program holds the Git lock file `lock`, with growing pauses, up to
/// `[git] lock_wait_secs`; says so to the observer and as events (`git.lock_waiting`,
/// `git.lock_released`). Stops waiting, with [`WorkflowError::GitLocked`], when the time is up or
/// the observer asks to stop: what waits stays in `processing/` for the next run.
fn wait_for_git(
    vault: &Vault,
    lock: &Path,
    events: &mut dyn EventSink,
    observer: &mut dyn ApplyObserver,
) -> Result<(), WorkflowError> {
    let Ok(meta) = std::fs::symlink_metadata(lock) else {
        return Ok(());
    };
    let since = meta
        .modified()
        .map(|t| rfc3339(t.into()))
        .unwrap_or_default();
    let shown = lock
        .strip_prefix(vault.root())
        .unwrap_or(lock)
        .display()
        .to_string();
    tracing::warn!(lock = %lock.display(), %since, "another program holds Git's index; waiting for it");
    observer.waiting_for_git(lock, &since);
    events.emit(Event::new(
        kind::GIT_LOCK_WAITING,
        &shown,
        json!({ "lock": shown, "since": since }),
        None,
    ));
    let patience = std::time::Duration::from_secs(vault.config().git.lock_wait_secs);
    let started = Instant::now();
    let mut pause = std::time::Duration::from_millis(10);
    loop {
        if std::fs::symlink_metadata(lock).is_err() {
            let waited_ms = started.elapsed().as_millis() as u64;
            tracing::info!(lock = %lock.display(), waited_ms, "Git's index lock went");
            observer.git_lock_released(lock);
            events.emit(Event::new(
                kind::GIT_LOCK_RELEASED,
                &shown,
                json!({ "lock": shown, "waited_ms": waited_ms }),
                None,
            ));
            return Ok(());
        }
        if started.elapsed() >= patience || observer.stop_requested() {
            return Err(WorkflowError::GitLocked {
                lock: lock.to_owned(),
                since,
                waited_secs: started.elapsed().as_secs(),
            });
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(std::time::Duration::from_millis(250));
    }
}

/// Removes temporary files a killed run left in `processed/` and `rejected/` (only the lock holder
/// writes there, so under the lock every one is stale).
fn sweep_temp_files(vault: &Vault) {
    for folder in [Queue::Processed, Queue::Rejected] {
        let Ok(entries) = fsutil::read_dir_or_empty(&vault.queue_dir(folder)) else {
            continue;
        };
        for entry in entries {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(fsutil::TEMP_PREFIX)
            {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// Copies bundles named on the command line into `pending/` (those already there stay put), so they
/// travel the same path as dropped ones. `None` when no files were named.
fn stage_files(vault: &Vault, files: &[PathBuf]) -> Result<Option<Vec<PathBuf>>, WorkflowError> {
    if files.is_empty() {
        return Ok(None);
    }
    let pending = vault.queue_dir(Queue::Pending);
    let mut out = Vec::with_capacity(files.len());
    for file in files {
        let abs = std::fs::canonicalize(file).map_err(|e| {
            WorkflowError::Input(format!("{}: {e}; name a bundle file", file.display()))
        })?;
        if !abs.is_file() {
            return Err(WorkflowError::Input(format!(
                "{} is not a file; name a bundle file",
                file.display()
            )));
        }
        if abs.parent() == Some(pending.as_path())
            && abs
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(queue::is_bundle_name)
        {
            out.push(abs);
            continue;
        }
        let bytes = std::fs::read(&abs)
            .map_err(|e| WorkflowError::io(format!("could not read {}", file.display()), e))?;
        let stem = queue::file_stem(&abs);
        let stem = if stem.is_empty() || stem.starts_with('.') {
            "bundle".to_owned()
        } else {
            stem
        };
        let dest = fsutil::free_name(&pending, &stem, ".json");
        fsutil::atomic_write(&dest, &bytes, false).map_err(|e| {
            WorkflowError::io(
                format!("could not copy {} into pending/", file.display()),
                e,
            )
        })?;
        out.push(dest);
    }
    Ok(Some(out))
}

/// State held across the bundles of one run.
struct Run<'v> {
    vault: &'v Vault,
    repo: Repo,
    record: AppliedRecord,
    /// The work tree of each branch committed to in this run (`None`: not checked out), kept so Git's
    /// index is loaded once and written in batches.
    checkouts: HashMap<String, Option<Checkout>>,
    /// Who quire commits as (read from Git's configuration once per run).
    committer: Signature<'static>,
    /// Bundles decided but not yet filed, in arrival order.
    batch: Vec<Decided>,
    /// Per branch, the commits of the batch, chained on the branch's tip but not yet published.
    chains: BTreeMap<String, Chain>,
    /// The ids committed in the batch, so a second bundle with the same id is a duplicate.
    batched: HashMap<String, Applied>,
    /// The size of the batch's bundle files.
    batch_bytes: usize,
    /// Whether a decision file was filed in this run.
    decisions_filed: bool,
}

/// The batch's commits on one branch: the branch's tip when the first was made (what its work tree
/// still holds), and the newest.
#[derive(Debug, Clone, Copy)]
struct Chain {
    base: Oid,
    tip: Oid,
}

/// A bundle decided in this run, waiting for its batch to be published and filed.
struct Decided {
    claimed: PathBuf,
    name: String,
    dropped_as: String,
    id: Option<String>,
    resumed: bool,
    received_at: String,
    started: Instant,
    author: Option<String>,
    /// The parsed bundle and its SHA-256, kept so it can be planned again if its branch moves
    /// before the batch is published.
    parsed: Option<(Bundle, String)>,
    outcome: Result<Outcome, Rejection>,
}

/// The work tree that has `branch` checked out, looked up once per run.
fn checkout_for<'c>(
    checkouts: &'c mut HashMap<String, Option<Checkout>>,
    repo: &Repo,
    branch: &str,
) -> Result<Option<&'c mut Checkout>, WorkflowError> {
    if !checkouts.contains_key(branch) {
        checkouts.insert(branch.to_owned(), repo.checkout_of(branch)?);
    }
    Ok(checkouts.get_mut(branch).and_then(Option::as_mut))
}

fn record_failed(e: std::io::Error) -> WorkflowError {
    WorkflowError::io("could not update .quire/contributions.jsonl", e)
}

/// A claimed mission brief, waiting for the batch before it to land.
struct Brief {
    /// A decision file (`quire.decision/1`) rather than a mission brief.
    decision: bool,
    claimed: PathBuf,
    /// Found in `processing/`: a crash interrupted it, so it is finished, never a duplicate.
    resumed: bool,
    name: String,
    dropped_as: String,
    received_at: String,
    started: Instant,
    bytes: Vec<u8>,
}

/// How a bundle ended, before it is written up as a receipt.
enum Outcome {
    Applied {
        branch: String,
        commit: Oid,
        files: Vec<String>,
        /// What the commit changed, for the work tree, when it was made in this batch (`None`: a
        /// commit published before a crash, whose work tree was synced when it was recovered).
        sync: Option<Vec<FileChange>>,
        /// What went wrong after the commit was published (a file the work tree could not take).
        warnings: Vec<String>,
    },
    Duplicate(Applied),
}

impl<'v> Run<'v> {
    fn open(
        vault: &'v Vault,
        events: &mut dyn EventSink,
        observer: &mut dyn ApplyObserver,
    ) -> Result<Self, WorkflowError> {
        let repo = Repo::open(vault.root())?;
        super::landing::recover(vault, &repo, |checkout| {
            wait_for_git(vault, &checkout.index_lock(), events, observer)
        })?;
        let record = AppliedRecord::load(&vault.state_dir())
            .map_err(|e| WorkflowError::io("could not read .quire/contributions.jsonl", e))?;
        let committer = repo.committer();
        let mut run = Self {
            vault,
            repo,
            record,
            checkouts: HashMap::new(),
            committer,
            batch: Vec::new(),
            chains: BTreeMap::new(),
            batched: HashMap::new(),
            batch_bytes: 0,
            decisions_filed: false,
        };
        run.catch_up()?;
        Ok(run)
    }

    /// Writes Git's index for every work tree this run changed, once no other program holds it.
    fn flush(
        &mut self,
        events: &mut dyn EventSink,
        observer: &mut dyn ApplyObserver,
    ) -> Result<(), WorkflowError> {
        for checkout in self.checkouts.values_mut().flatten() {
            if checkout.has_unwritten_updates() {
                wait_for_git(self.vault, &checkout.index_lock(), events, observer)?;
            }
            checkout.flush(&self.repo)?;
        }
        Ok(())
    }

    /// Reads the trailers of commits made since the record was last brought up to date, on every
    /// local branch (so an id applied to a sandbox is known too).
    ///
    /// Main is read first, from its last read tip. The other branches that moved are then read in
    /// one walk that stops at main's tip and at their own last read tips: all of those has been
    /// read. A burst of mission briefs makes hundreds of new branches, each starting on main;
    /// walked one by one, each walk went down main's history again.
    fn catch_up(&mut self) -> Result<(), WorkflowError> {
        let main = self.vault.config().git.main.clone();
        let keys = [TRAILER_ID, TRAILER_SHA];
        let last_read = |record: &AppliedRecord, branch: &str| {
            record.tip(branch).and_then(|t| Oid::from_str(t).ok())
        };
        let mut moved = Vec::new();
        let mut main_tip = None;
        for (branch, tip) in self.repo.local_branches()? {
            let since = last_read(&self.record, &branch);
            if branch == main {
                main_tip = Some(tip);
                if since != Some(tip) {
                    let found = self.repo.trailers_since(&[tip], since.as_slice(), &keys)?;
                    let found = found.into_iter().map(|t| (t, main.clone())).collect();
                    self.note_applied(found)?;
                    self.set_read(&main, tip)?;
                }
            } else if since != Some(tip) {
                moved.push((branch, tip, since));
            }
        }
        if moved.is_empty() {
            return Ok(());
        }
        let tips: Vec<Oid> = moved.iter().map(|(_, tip, _)| *tip).collect();
        let seen: Vec<Oid> = moved
            .iter()
            .filter_map(|(_, _, since)| *since)
            .chain(main_tip)
            .collect();
        let found = self.repo.trailers_since(&tips, &seen, &keys)?;
        // A commit found is credited to the first branch (by name) that holds it, as before the
        // walks were one; such commits are rare (a bundle applied to a sandbox).
        let found = found
            .into_iter()
            .filter_map(|t| {
                let holder = moved
                    .iter()
                    .find(|(_, tip, _)| self.repo.contains(*tip, t.commit))?;
                Some((t, holder.0.clone()))
            })
            .collect();
        self.note_applied(found)?;
        for (branch, tip, _) in &moved {
            self.set_read(branch, *tip)?;
        }
        Ok(())
    }

    /// Records the applications the commits `found` (newest first, each with its branch) name.
    fn note_applied(
        &mut self,
        found: Vec<(crate::git::Trailed, String)>,
    ) -> Result<(), WorkflowError> {
        // Oldest first, so the first application of an id wins.
        for (trailed, branch) in found.into_iter().rev() {
            let commit = trailed.commit;
            if let [Some(id), sha] = trailed.values.as_slice() {
                self.record
                    .add(Applied {
                        id: id.clone(),
                        sha256: sha.clone().unwrap_or_default(),
                        commit: commit.to_string(),
                        branch,
                    })
                    .map_err(record_failed)?;
            }
        }
        Ok(())
    }

    /// Records that `branch` has been read up to `tip`.
    fn set_read(&mut self, branch: &str, tip: Oid) -> Result<(), WorkflowError> {
        self.record
            .set_tip(branch, &tip.to_string())
            .map_err(record_failed)
    }

    /// Reads, parses and decides one claimed bundle; its commit (if any) joins the batch.
    /// Reads a claimed file and, when it is a bundle, decides it into the batch. A mission brief
    /// is handed back instead, to be accepted once the batch before it has landed.
    fn handle(
        &mut self,
        claimed: &Path,
        resumed: bool,
        dropped_as: String,
        events: &mut dyn EventSink,
    ) -> Result<Option<Brief>, WorkflowError> {
        let started = Instant::now();
        let received_at = now_rfc3339();
        let name = queue::file_stem(claimed);
        let span = tracing::info_span!("bundle", file = %name);
        let _guard = span.enter();
        events.emit(Event::new(
            kind::CONTRIBUTION_RECEIVED,
            &name,
            json!({ "file": name, "resumed": resumed }),
            Some(name.clone()),
        ));

        let limit = self.vault.config().contributions.max_bundle_bytes;
        let read = match queue::read_bundle(claimed, limit) {
            Ok(read) => read,
            Err(e) if fsutil::is_machine_error(&e) => {
                return Err(WorkflowError::io(
                    format!("could not read {}", claimed.display()),
                    e,
                ));
            }
            // The bundle's own file: refused, so the queue moves on.
            Err(e) => Err(Rejection::new(
                ErrorCode::IoError,
                format!("the bundle file could not be read: {e}; drop it again"),
            )),
        };
        let mut id = None;
        let mut parsed = None;
        let mut author = None;
        let outcome = match read {
            Err(rejection) => Err(rejection),
            Ok(bytes) => {
                self.batch_bytes += bytes.len();
                author = crate::analytics::peek_author(&bytes);
                let sha = sha256_hex(&bytes);
                let limits = &self.vault.config().contributions;
                match contained(|| Bundle::parse(&bytes, limits)) {
                    Err(_)
                        if matches!(
                            contract_of(&bytes).as_deref(),
                            Some(crate::missions::brief::CONTRACT | DECISION_CONTRACT)
                        ) =>
                    {
                        return Ok(Some(Brief {
                            decision: contract_of(&bytes).as_deref() == Some(DECISION_CONTRACT),
                            claimed: claimed.to_owned(),
                            resumed,
                            name,
                            dropped_as,
                            received_at,
                            started,
                            bytes,
                        }));
                    }
                    Err(rejection) => {
                        id = peek_id(&bytes);
                        Err(rejection)
                    }
                    Ok(bundle) => {
                        id = Some(bundle.id.clone());
                        tracing::debug!(id = %bundle.id, changes = bundle.changes.len(), "parsed");
                        let outcome = self.settle(&bundle, &sha, resumed)?;
                        parsed = Some((bundle, sha));
                        outcome
                    }
                }
            }
        };
        self.batch.push(Decided {
            claimed: claimed.to_owned(),
            name,
            dropped_as,
            id,
            resumed,
            received_at,
            started,
            author,
            parsed,
            outcome,
        });
        Ok(None)
    }

    /// Accepts a mission brief ([`super::missions::accept`]) and files it with its receipt, as a
    /// bundle would be.
    fn accept_brief(
        &mut self,
        b: Brief,
        events: &mut dyn EventSink,
    ) -> Result<Filed, WorkflowError> {
        let accepted = if b.decision {
            self.decisions_filed = true;
            super::mission_ops::record_dropped_decision(self.vault, &b.bytes, &b.name)?.map(
                |(id, again)| {
                    if again {
                        super::missions::Accepted::Duplicate {
                            id,
                            commit: String::new(),
                        }
                    } else {
                        super::missions::Accepted::Answered { id }
                    }
                },
            )
        } else {
            // A repository handle of its own: the run's may hold new objects in memory until its
            // batch lands (a burst), and a brief's commits and refs must never point at objects
            // only that memory has (the bundles before it have landed, their objects written).
            let repo = crate::git::Repo::open(self.vault.root())?;
            super::missions::accept(self.vault, &repo, &b.bytes, b.resumed, events)?
        };
        let duration_ms = (b.started.elapsed().as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0;
        let main = self.vault.config().git.main.clone();
        let (receipt, event) = match accepted {
            Ok(super::missions::Accepted::Answered { id }) => (
                Receipt {
                    id: Some(id),
                    status: Status::Applied,
                    branch: None,
                    commit: None,
                    files: Some(Vec::new()),
                    error: None,
                    received_at: b.received_at,
                    applied_at: Some(now_rfc3339()),
                    duration_ms,
                    warnings: Vec::new(),
                },
                None,
            ),
            Ok(super::missions::Accepted::New {
                id, commit, note, ..
            }) => (
                Receipt {
                    id: Some(id),
                    status: Status::Applied,
                    branch: Some(main),
                    commit: Some(commit),
                    files: Some(vec![note]),
                    error: None,
                    received_at: b.received_at,
                    applied_at: Some(now_rfc3339()),
                    duration_ms,
                    warnings: Vec::new(),
                },
                None,
            ),
            Ok(super::missions::Accepted::Duplicate { id, commit }) => (
                Receipt {
                    id: Some(id),
                    status: Status::Duplicate,
                    branch: Some(main),
                    commit: Some(commit),
                    files: Some(Vec::new()),
                    error: None,
                    received_at: b.received_at,
                    applied_at: None,
                    duration_ms,
                    warnings: Vec::new(),
                },
                None,
            ),
            Err(rejection) => {
                tracing::info!(code = %rejection.code, "brief refused: {}", rejection.message);
                let correlation = peek_id(&b.bytes).unwrap_or_else(|| b.name.clone());
                (
                    Receipt {
                        id: peek_id(&b.bytes),
                        status: Status::Rejected,
                        branch: None,
                        commit: None,
                        files: None,
                        error: Some(ReceiptError::from(&rejection)),
                        received_at: b.received_at,
                        applied_at: None,
                        duration_ms,
                        warnings: Vec::new(),
                    },
                    Some(Event::new(
                        kind::CONTRIBUTION_REJECTED,
                        &correlation,
                        json!({ "error": ReceiptError::from(&rejection), "file": b.name }),
                        Some(correlation.clone()),
                    )),
                )
            }
        };
        fault::point("before_receipt");
        let filed = queue::file_away(self.vault, &b.claimed, &receipt)
            .map_err(|e| WorkflowError::io(format!("could not file {}", b.claimed.display()), e))?;
        fault::point("after_file");
        if let Some(event) = event {
            events.emit(event);
        }
        Ok(Filed {
            bundle: filed,
            receipt,
            dropped_as: b.dropped_as,
            author: crate::analytics::peek_author(&b.bytes),
        })
    }

    /// Whether the batch is as large as it may grow.
    fn batch_is_full(&self) -> bool {
        self.batch.len() >= BATCH_MAX || self.batch_bytes >= BATCH_BYTES
    }

    /// Publishes the batch ([`Run::land`]) and hands each filed bundle to the observer and report.
    fn land_into(
        &mut self,
        events: &mut dyn EventSink,
        observer: &mut dyn ApplyObserver,
        report: &mut ApplyReport,
    ) -> Result<(), WorkflowError> {
        for filed in self.land(events, observer)? {
            observer.filed(&filed);
            report.filed.push(filed);
        }
        Ok(())
    }

    /// Publishes the batch: stores its objects, moves each branch to the end of its chain (once per
    /// batch, not once per bundle), records the ids, syncs the work trees, and files every bundle
    /// with its receipt, in arrival order.
    fn land(
        &mut self,
        events: &mut dyn EventSink,
        observer: &mut dyn ApplyObserver,
    ) -> Result<Vec<Filed>, WorkflowError> {
        let branches: Vec<String> = self.chains.keys().cloned().collect();
        for branch in branches {
            // While a person's Git command holds the work tree's index (`git commit` waiting on
            // its editor), moving the branch would leave their index behind it, and their commit
            // would then record the bundle's files as deleted. So wait for it; their commit lands
            // first and the batch is planned again on top of it.
            if let Some(checkout) = checkout_for(&mut self.checkouts, &self.repo, &branch)? {
                let lock = checkout.index_lock();
                wait_for_git(self.vault, &lock, events, observer)?;
            }
            let mut attempts = 0;
            while let Some(chain) = self.chains.get(&branch).copied() {
                self.repo.write_held_objects()?;
                self.repo.ensure_stored(chain.tip)?;
                let reflog = self.reflog_message(&branch);
                match self
                    .repo
                    .swap_branch(&branch, Some(chain.base), chain.tip, &reflog)
                {
                    Ok(()) => break,
                    Err(GitError::Moved(_)) if attempts < MAX_SWAP_ATTEMPTS => {
                        // Backing off lets a burst of another writer's commits (a script, a
                        // sync job) pass instead of losing every race to it: 5 ms, doubling,
                        // about 1.3 s over all attempts.
                        std::thread::sleep(std::time::Duration::from_millis(5 << attempts));
                        attempts += 1;
                        self.replan(&branch)?;
                    }
                    Err(GitError::Moved(_)) => {
                        return Err(WorkflowError::Input(format!(
                            "branch `{branch}` kept moving while a batch of bundles was committed to it; another program is committing to it constantly"
                        )));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        if !self.chains.is_empty() {
            fault::point("after_commit");
        }
        let batch = std::mem::take(&mut self.batch);
        self.batched.clear();
        self.batch_bytes = 0;
        for d in &batch {
            if let (
                Some(id),
                Ok(Outcome::Applied {
                    branch,
                    commit,
                    sync: Some(_),
                    ..
                }),
            ) = (&d.id, &d.outcome)
            {
                self.record
                    .add(Applied {
                        id: id.clone(),
                        sha256: d
                            .parsed
                            .as_ref()
                            .map(|(_, sha)| sha.clone())
                            .unwrap_or_default(),
                        commit: commit.to_string(),
                        branch: branch.clone(),
                    })
                    .map_err(|e| {
                        WorkflowError::io("could not update .quire/contributions.jsonl", e)
                    })?;
            }
        }
        for (branch, chain) in std::mem::take(&mut self.chains) {
            if self.record.tip(&branch) == Some(chain.base.to_string().as_str()) {
                self.record
                    .set_tip(&branch, &chain.tip.to_string())
                    .map_err(|e| {
                        WorkflowError::io("could not update .quire/contributions.jsonl", e)
                    })?;
            }
        }
        let mut batch = batch;
        for d in &mut batch {
            if let Ok(Outcome::Applied {
                branch,
                sync: Some(files),
                warnings,
                ..
            }) = &mut d.outcome
                && let Some(checkout) = checkout_for(&mut self.checkouts, &self.repo, branch)?
            {
                let report = checkout.sync(&self.repo, files)?;
                fault::point("after_sync");
                if !report.kept.is_empty() {
                    tracing::warn!(bundle = %d.name, paths = ?report.kept, "kept uncommitted edits made while the bundle was applied");
                }
                warnings.extend(unwritten(&report));
            }
        }
        batch.into_iter().map(|d| self.file(d, events)).collect()
    }

    /// The reflog line for moving `branch` to the end of its chain.
    fn reflog_message(&self, branch: &str) -> String {
        let ids: Vec<&str> = self
            .batch
            .iter()
            .filter_map(|d| match (&d.outcome, &d.id) {
                (
                    Ok(Outcome::Applied {
                        branch: b,
                        sync: Some(_),
                        ..
                    }),
                    Some(id),
                ) if b == branch => Some(id.as_str()),
                _ => None,
            })
            .collect();
        match ids.as_slice() {
            [one] => format!("quire: apply contribution {one}"),
            _ => format!("quire: apply {} contributions", ids.len()),
        }
    }

    /// Plans again, on the branch's new tip, every bundle whose commit was chained on `branch`:
    /// another program moved the branch before the batch was published. The old chain's objects
    /// stay unreferenced.
    fn replan(&mut self, branch: &str) -> Result<(), WorkflowError> {
        tracing::debug!(%branch, "the branch moved before the batch was published; planning its bundles again on the new tip");
        self.chains.remove(branch);
        self.batched.retain(|_, a| a.branch != branch);
        let mut batch = std::mem::take(&mut self.batch);
        for d in &mut batch {
            let chained_here = match &d.outcome {
                Ok(Outcome::Applied {
                    branch: b,
                    sync: Some(_),
                    ..
                }) => b == branch,
                // A duplicate of a bundle chained on this branch in this batch.
                Ok(Outcome::Duplicate(prev)) => {
                    prev.branch == branch && self.record.get(&prev.id).is_none()
                }
                _ => false,
            };
            if chained_here && let Some((bundle, sha)) = &d.parsed {
                d.outcome = self.settle(bundle, sha, d.resumed)?;
            }
        }
        self.batch = batch;
        Ok(())
    }

    /// Writes a decided bundle's receipt, files it, and reports it.
    fn file(&mut self, d: Decided, events: &mut dyn EventSink) -> Result<Filed, WorkflowError> {
        let span = tracing::info_span!("bundle", file = %d.name);
        let _guard = span.enter();
        let Decided {
            claimed,
            name,
            dropped_as,
            id,
            received_at,
            started,
            author,
            outcome,
            ..
        } = d;
        let duration_ms = (started.elapsed().as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0;
        let correlation = id.clone().unwrap_or_else(|| name.clone());
        let (receipt, event) = match outcome {
            Ok(Outcome::Applied {
                branch,
                commit,
                files,
                warnings,
                ..
            }) => {
                tracing::info!(id = ?id, %commit, "applied");
                (
                    Receipt {
                        id: id.clone(),
                        status: Status::Applied,
                        branch: Some(branch.clone()),
                        commit: Some(commit.to_string()),
                        files: Some(files.clone()),
                        error: None,
                        received_at,
                        applied_at: Some(now_rfc3339()),
                        duration_ms,
                        warnings: warnings.clone(),
                    },
                    Event::new(
                        kind::CONTRIBUTION_APPLIED,
                        &correlation,
                        json!({ "branch": branch, "commit": commit.to_string(), "files": files, "duration_ms": duration_ms, "warnings": warnings }),
                        Some(correlation.clone()),
                    ),
                )
            }
            Ok(Outcome::Duplicate(prev)) => {
                let applied_at = Oid::from_str(&prev.commit)
                    .ok()
                    .and_then(|c| self.repo.commit_time(c))
                    .map(rfc3339);
                (
                    Receipt {
                        id: id.clone(),
                        status: Status::Duplicate,
                        branch: Some(prev.branch.clone()),
                        commit: Some(prev.commit.clone()),
                        files: Some(Vec::new()),
                        error: None,
                        received_at,
                        applied_at,
                        duration_ms,
                        warnings: Vec::new(),
                    },
                    Event::new(
                        kind::CONTRIBUTION_DUPLICATE,
                        &correlation,
                        json!({ "branch": prev.branch, "commit": prev.commit }),
                        Some(correlation.clone()),
                    ),
                )
            }
            Err(rejection) => {
                tracing::info!(code = %rejection.code, "rejected: {}", rejection.message);
                (
                    Receipt {
                        id: id.clone(),
                        status: Status::Rejected,
                        branch: None,
                        commit: None,
                        files: None,
                        error: Some(ReceiptError::from(&rejection)),
                        received_at,
                        applied_at: None,
                        duration_ms,
                        warnings: Vec::new(),
                    },
                    Event::new(
                        kind::CONTRIBUTION_REJECTED,
                        &correlation,
                        json!({ "error": ReceiptError::from(&rejection), "file": name }),
                        Some(correlation.clone()),
                    ),
                )
            }
        };
        fault::point("before_receipt");
        let bundle = queue::file_away(self.vault, &claimed, &receipt)
            .map_err(|e| WorkflowError::io(format!("could not file {}", claimed.display()), e))?;
        fault::point("after_file");
        events.emit(event);
        Ok(Filed {
            bundle,
            receipt,
            dropped_as,
            author,
        })
    }

    /// Decides a parsed bundle: duplicate, recovered from a crash, or committed into the batch.
    /// `Err` is a failure of quire itself; a refusal is `Ok(Err(rejection))`.
    fn settle(
        &mut self,
        bundle: &Bundle,
        sha: &str,
        resumed: bool,
    ) -> Result<Result<Outcome, Rejection>, WorkflowError> {
        if let Some(prev) = self.record.get(&bundle.id).cloned() {
            if resumed && prev.sha256 == sha {
                return self.recover(prev).map(Ok);
            }
            return Ok(same_bundle_again(&bundle.id, sha, prev));
        }
        if let Some(prev) = self.batched.get(&bundle.id) {
            return Ok(same_bundle_again(&bundle.id, sha, prev.clone()));
        }
        self.commit(bundle, sha)
    }

    /// Finishes a bundle whose commit was published before a crash: syncs the work tree from the
    /// commit's own diff (if the branch still contains it) and reports it applied. Bundles of one
    /// batch are resumed in order, so each diff finds the work tree where the previous one left it.
    fn recover(&mut self, prev: Applied) -> Result<Outcome, WorkflowError> {
        let commit = Oid::from_str(&prev.commit).map_err(|e| {
            WorkflowError::Input(format!("bad commit id in .quire/contributions.jsonl: {e}"))
        })?;
        let changes = self.repo.commit_changes_of(commit)?;
        let tip = self.repo.branch_tip(&prev.branch)?;
        let mut warnings = Vec::new();
        if tip.is_some_and(|t| self.repo.contains(t, commit)) {
            if let Some(checkout) = checkout_for(&mut self.checkouts, &self.repo, &prev.branch)? {
                let report = checkout.sync(&self.repo, &changes)?;
                tracing::info!(id = %prev.id, updated = report.updated, "finished the work-tree update of a commit made before a crash");
                warnings = unwritten(&report);
            }
        } else {
            tracing::warn!(id = %prev.id, "branch `{}` no longer contains the recovered commit; left its work tree as it is", prev.branch);
        }
        Ok(Outcome::Applied {
            branch: prev.branch,
            commit,
            files: changes.iter().map(|c| c.path.to_string()).collect(),
            sync: None,
            warnings,
        })
    }

    /// Plans a bundle on the end of its branch's chain, checks the work tree, and writes its commit
    /// into the batch (published by [`Run::land`]).
    fn commit(
        &mut self,
        bundle: &Bundle,
        sha: &str,
    ) -> Result<Result<Outcome, Rejection>, WorkflowError> {
        let branch = match &bundle.target {
            Target::Main => self.vault.config().git.main.clone(),
            Target::Sandbox(id) => format!("mission/{id}"),
        };
        let author = match Repo::signature(&bundle.author.name, &bundle.author.email) {
            Ok(sig) => sig,
            Err(e) => return Ok(Err(Rejection::new(ErrorCode::InvalidBundle, e.to_string()))),
        };
        let message = message_with_trailers(
            &bundle.message,
            &[(TRAILER_ID, &bundle.id), (TRAILER_SHA, sha)],
        );
        // `published` is what the branch points at (and its work tree holds); `tip` is the end of
        // this batch's chain on it.
        let (published, tip) = match self.chains.get(&branch) {
            Some(chain) => (chain.base, chain.tip),
            None => match self.repo.branch_tip(&branch)? {
                Some(t) => (t, t),
                None => {
                    return Ok(Err(Rejection::new(
                        ErrorCode::UnknownTarget,
                        match &bundle.target {
                            Target::Main => format!(
                                "the main branch `{branch}` does not exist; check `[git] main` in quire.toml"
                            ),
                            Target::Sandbox(id) => format!(
                                "sandbox `{id}` does not exist (no branch `{branch}`); create it with `quire sandbox create {id}`"
                            ),
                        },
                    )));
                }
            },
        };
        let moved = bundle
            .base
            .as_deref()
            .is_some_and(|b| self.repo.resolve_commit(b) != Some(tip));
        let snapshot = self.repo.snapshot(Some(tip))?;
        let changes = match contained(|| plan(bundle, &snapshot, moved)) {
            Ok(c) => c,
            Err(r) => return Ok(Err(r)),
        };
        if let Some(checkout) = checkout_for(&mut self.checkouts, &self.repo, &branch)? {
            // The work tree is synced when the batch is published, so it still holds `published`.
            let on_disk = if published == tip {
                None
            } else {
                Some(self.repo.snapshot(Some(published))?)
            };
            let expected = on_disk.as_ref().unwrap_or(&snapshot);
            let paths: Vec<(&VaultPath, Option<Oid>)> =
                changes.paths().map(|p| (p, expected.blob_id(p))).collect();
            let dirty = checkout.dirty(&self.repo, &paths)?;
            if !dirty.is_empty() {
                return Ok(Err(dirty_rejection(bundle, &dirty)));
            }
        }
        drop(snapshot);
        fault::point("before_commit");
        let (commit, files) = self.repo.write_commit(
            &branch,
            Some(tip),
            &changes,
            &author,
            &self.committer,
            &message,
        )?;
        fault::point("after_write");
        self.chains.insert(
            branch.clone(),
            Chain {
                base: published,
                tip: commit,
            },
        );
        self.batched.insert(
            bundle.id.clone(),
            Applied {
                id: bundle.id.clone(),
                sha256: sha.to_owned(),
                commit: commit.to_string(),
                branch: branch.clone(),
            },
        );
        tracing::debug!(id = %bundle.id, %commit, "committed; published with its batch");
        Ok(Ok(Outcome::Applied {
            branch,
            commit,
            files: changes.paths().map(VaultPath::to_string).collect(),
            sync: Some(files),
            warnings: Vec::new(),
        }))
    }
}

/// A bundle whose id was applied before: a duplicate when it is the same bundle (the same bytes,
/// or an old commit that did not record them), refused when the id is being reused for new content,
/// which would otherwise be dropped without a word.
fn same_bundle_again(id: &str, sha: &str, prev: Applied) -> Result<Outcome, Rejection> {
    if prev.sha256.is_empty() || prev.sha256 == sha {
        return Ok(Outcome::Duplicate(prev));
    }
    Err(Rejection::new(
        ErrorCode::IdReused,
        format!(
            "the id `{id}` was applied before, by commit {} on `{}`, from a bundle with other content; give this bundle an id of its own (an id names one change, once)",
            prev.commit, prev.branch
        ),
    ))
}

/// Runs one bundle's parse or plan so that a fault it triggers in quire (a panic) refuses that
/// bundle instead of stopping the queue: every later bundle still applies.
fn contained<T>(work: impl FnOnce() -> Result<T, Rejection>) -> Result<T, Rejection> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        tracing::error!("quire failed on a bundle: {what}");
        Err(Rejection::new(
            ErrorCode::InvalidBundle,
            format!("quire failed on this bundle ({what}); this is a bug in quire, please report it with the bundle"),
        ))
    })
}

/// The receipt's warnings for the files a work tree could not take.
fn unwritten(report: &crate::git::SyncReport) -> Vec<String> {
    report
        .failed
        .iter()
        .map(|(path, why)| {
            format!(
                "`{path}` is committed but could not be written into the work tree ({why}); once the cause is fixed, `git checkout -- '{path}'` brings it"
            )
        })
        .collect()
}

fn dirty_rejection(bundle: &Bundle, dirty: &[(VaultPath, Dirty)]) -> Rejection {
    if let Some((path, why)) = dirty.iter().find_map(|(p, d)| match d {
        Dirty::Unreadable(why) => Some((p, format!("could not be read in the work tree: {why}"))),
        Dirty::Unwritable(why) => Some((p, format!("cannot be written in the work tree: {why}"))),
        _ => None,
    }) {
        return Rejection {
            code: ErrorCode::IoError,
            message: format!("`{path}` {why}"),
            change: bundle.change_at(path),
            path: Some(path.to_string()),
        };
    }
    if let Some((path, Dirty::Symlink(link))) =
        dirty.iter().find(|(_, d)| matches!(d, Dirty::Symlink(_)))
    {
        return Rejection {
            code: ErrorCode::UnsafePath,
            message: format!(
                "`{path}` passes through the symbolic link `{link}` in the work tree; quire never writes through links"
            ),
            change: bundle.change_at(path),
            path: Some(path.to_string()),
        };
    }
    let list: Vec<String> = dirty
        .iter()
        .map(|(p, d)| {
            let why = match d {
                Dirty::Modified => "modified",
                Dirty::Deleted => "deleted",
                Dirty::Untracked => "untracked file in the way",
                Dirty::Staged => "staged changes",
                Dirty::Conflicted => "unresolved merge conflict",
                Dirty::Blocked => "a folder or file is in the way",
                Dirty::Symlink(_) => "symbolic link",
                Dirty::Unreadable(_) => "unreadable",
                Dirty::Unwritable(_) => "cannot be written",
            };
            format!("{p} ({why})")
        })
        .collect();
    let first = &dirty[0].0;
    Rejection {
        code: ErrorCode::DirtyWorktree,
        message: format!(
            "the work tree has uncommitted changes to {}; commit or stash them, then run `quire retry {}`",
            list.join(", "),
            bundle.id
        ),
        change: bundle.change_at(first),
        path: Some(first.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::NoEvents;
    use crate::workflow::temp_vault;

    fn claimed(vault: &Vault, name: &str, id: &str, changes: serde_json::Value) -> PathBuf {
        let path = vault
            .queue_dir(Queue::Processing)
            .join(format!("{name}.json"));
        let bundle = json!({
            "contract": "quire.contribution/1", "id": id, "message": id, "changes": changes,
            "author": { "name": "Agent", "email": "agent@example.org" },
        });
        std::fs::write(&path, serde_json::to_vec(&bundle).unwrap()).unwrap();
        path
    }

    /// A fresh vault in a temporary folder (kept alive by the returned guard).
    /// Runs `git` in the vault as a person would.
    fn git(vault: &Vault, args: &[&str]) -> String {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(vault.root())
            .args(["-c", "user.name=P", "-c", "user.email=p@example.org"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    /// What a refused bundle must leave as it was: the branch, Git's index and every file of the
    /// work tree outside quire's own folders.
    fn fingerprint(vault: &Vault) -> Vec<(String, String)> {
        let root = vault.root();
        let mut out = vec![
            ("HEAD".to_owned(), git(vault, &["rev-parse", "HEAD"])),
            (
                "index".to_owned(),
                sha256_hex(&std::fs::read(root.join(".git/index")).unwrap_or_default()),
            ),
        ];
        for entry in walkdir::WalkDir::new(root)
            .into_iter()
            .filter_entry(|e| {
                let rel = e.path().strip_prefix(root).unwrap_or(e.path());
                let top = rel
                    .components()
                    .next()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned());
                !matches!(
                    top.as_deref(),
                    Some(".git" | ".quire" | "contributions" | "07_LOGS" | "06_RUNS")
                )
            })
            .flatten()
            .filter(|e| e.file_type().is_file())
        {
            let rel = entry
                .path()
                .strip_prefix(root)
                .unwrap()
                .display()
                .to_string();
            out.push((rel, sha256_hex(&std::fs::read(entry.path()).unwrap())));
        }
        out.sort();
        out
    }

    proptest::proptest! {
        #![proptest_config(crate::fuzz::config(60))]

        /// Through the real pipeline (a Git repository, a work tree, the drop folders): a bundle
        /// that is refused changes nothing at all; one that applies moves the branch by exactly one
        /// commit and leaves the work tree matching it.
        #[test]
        fn fuzz_a_refused_bundle_changes_nothing(
            bundles in proptest::collection::vec(
                crate::contributions::bundle_tests::arbitrary_bundle(), 1..4)
        ) {
            let (_dir, vault) = temp_vault();
            let seed = serde_json::to_vec(&json!({
                "contract": "quire.contribution/1", "id": "seed", "message": "seed",
                "author": { "name": "Fuzz", "email": "fuzz@example.org" },
                "changes": [
                    { "op": "create", "path": "03_NOTES/a.md", "content": "---\ntags: [x]\n---\n# A\n\n## Tasks\n- [ ] one\n<!-- quire:begin s -->\nold\n<!-- quire:end s -->\n" },
                    { "op": "create", "path": "data.json", "content": "{\"k\": [1, 2], \"a\": {}}\n" },
                    { "op": "create", "path": "x.yaml", "content": "k: [1, 2]\na: {}\n" },
                    { "op": "create", "path": "c.toml", "content": "k = [1, 2]\n[a]\n" },
                ],
            })).unwrap();
            let pending = vault.queue_dir(Queue::Pending);
            std::fs::write(pending.join("seed.json"), seed).unwrap();
            let report = apply(&vault, &[], &mut NoEvents, &mut ()).unwrap();
            proptest::prop_assert_eq!(report.count(Status::Applied), 1);
            for bytes in bundles {
                let before = fingerprint(&vault);
                let head = git(&vault, &["rev-parse", "HEAD"]);
                std::fs::write(pending.join("b.json"), &bytes).unwrap();
                let report = apply(&vault, &[], &mut NoEvents, &mut ()).unwrap();
                proptest::prop_assert_eq!(report.filed.len(), 1);
                let receipt = &report.filed[0].receipt;
                match receipt.status {
                    Status::Rejected | Status::Duplicate => {
                        proptest::prop_assert_eq!(fingerprint(&vault), before, "{:?}", receipt);
                    }
                    Status::Applied => {
                        proptest::prop_assert_eq!(git(&vault, &["rev-parse", "HEAD~1"]), head);
                        proptest::prop_assert_eq!(git(&vault, &["status", "--porcelain"]), "");
                    }
                }
                proptest::prop_assert!(vault.queue_dir(Queue::Processing).read_dir().unwrap().next().is_none());
            }
        }
    }

    #[test]
    fn a_batch_is_planned_again_when_its_branch_moves_before_it_is_published() {
        let (_dir, vault) = temp_vault();
        let root = vault.root().to_owned();
        let one = claimed(
            &vault,
            "1",
            "one",
            json!([{ "op": "create", "path": "one.md", "content": "one\n" }]),
        );
        let two = claimed(
            &vault,
            "2",
            "two",
            json!([{ "op": "create", "path": "theirs.md", "content": "mine\n" }]),
        );
        let mut run = Run::open(&vault, &mut NoEvents, &mut ()).unwrap();
        run.handle(&one, false, "1".into(), &mut NoEvents).unwrap();
        run.handle(&two, false, "2".into(), &mut NoEvents).unwrap();
        // Before the batch is published, a person commits the file the second bundle creates.
        std::fs::write(root.join("theirs.md"), "theirs\n").unwrap();
        git(&vault, &["add", "theirs.md"]);
        git(&vault, &["commit", "-q", "-m", "theirs"]);
        let theirs = run.repo.branch_tip("main").unwrap().unwrap();

        let filed = run.land(&mut NoEvents, &mut ()).unwrap();
        run.flush(&mut NoEvents, &mut ()).unwrap();
        // Planned again on their commit: the first still applies, the second now collides.
        assert_eq!(filed[0].receipt.status, Status::Applied);
        assert_eq!(filed[1].receipt.status, Status::Rejected, "{:?}", filed[1]);
        let tip = run.repo.branch_tip("main").unwrap().unwrap();
        assert_eq!(filed[0].receipt.commit, Some(tip.to_string()));
        assert!(run.repo.contains(tip, theirs));
        assert_eq!(
            std::fs::read_to_string(root.join("one.md")).unwrap(),
            "one\n"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("theirs.md")).unwrap(),
            "theirs\n"
        );
        assert_eq!(git(&vault, &["status", "--porcelain"]), "");
    }

    #[test]
    fn an_edit_made_while_a_batch_is_open_refuses_the_later_bundles_that_touch_it() {
        let (_dir, vault) = temp_vault();
        let root = vault.root().to_owned();
        std::fs::write(root.join("a.md"), "# A\n").unwrap();
        git(&vault, &["add", "a.md"]);
        git(&vault, &["commit", "-q", "-m", "a"]);
        let append =
            |text: &str| json!([{ "op": "patch", "path": "a.md", "body": [{ "append": text }] }]);
        let one = claimed(&vault, "1", "one", append("one\n"));
        let two = claimed(&vault, "2", "two", append("two\n"));
        let mut run = Run::open(&vault, &mut NoEvents, &mut ()).unwrap();
        run.handle(&one, false, "1".into(), &mut NoEvents).unwrap();
        // The first bundle's commit is chained but not published; the file still holds `# A`.
        // A person edits it now.
        std::fs::write(root.join("a.md"), "# A, mine\n").unwrap();
        run.handle(&two, false, "2".into(), &mut NoEvents).unwrap();

        let filed = run.land(&mut NoEvents, &mut ()).unwrap();
        run.flush(&mut NoEvents, &mut ()).unwrap();
        assert_eq!(filed[0].receipt.status, Status::Applied);
        assert_eq!(filed[1].receipt.status, Status::Rejected);
        let error = filed[1].receipt.error.as_ref().unwrap();
        assert_eq!(error.code, "dirty_worktree", "{error:?}");
        assert_eq!(error.path.as_deref(), Some("a.md"));
        // The first bundle's commit is in Git; the person's edit stays on disk.
        assert_eq!(
            std::fs::read_to_string(root.join("a.md")).unwrap(),
            "# A, mine\n"
        );
        assert_eq!(git(&vault, &["show", "main:a.md"]), "# A\none\n");
    }

    #[test]
    fn a_panic_on_a_bundle_refuses_that_bundle_as_a_bug_in_quire() {
        let refused = contained::<()>(|| panic!("boom at change 3")).unwrap_err();
        assert_eq!(refused.code, ErrorCode::InvalidBundle);
        assert!(
            refused.message.contains("boom at change 3"),
            "{}",
            refused.message
        );
        assert!(
            refused.message.contains("bug in quire"),
            "{}",
            refused.message
        );
        assert_eq!(contained(|| Ok(7)).unwrap(), 7);
    }

    /// An observer whose owner is shutting down.
    struct Stopping(usize);
    impl ApplyObserver for Stopping {
        fn stop_requested(&mut self) -> bool {
            true
        }
        fn waiting_for_git(&mut self, _lock: &Path, _since: &str) {
            self.0 += 1;
        }
    }

    #[test]
    fn a_stop_ends_the_wait_for_a_foreign_git_lock_without_touching_it() {
        let (_dir, vault) = temp_vault();
        let lock = vault.root().join(".git/index.lock");
        std::fs::write(&lock, "").unwrap();
        let mut observer = Stopping(0);
        let err = wait_for_git(&vault, &lock, &mut NoEvents, &mut observer).unwrap_err();
        assert!(matches!(err, WorkflowError::GitLocked { .. }), "{err}");
        assert!(err.to_string().contains("index.lock"), "{err}");
        assert_eq!(observer.0, 1, "the wait is reported once");
        assert!(lock.exists(), "another program's lock is never removed");
        std::fs::remove_file(&lock).unwrap();
        wait_for_git(&vault, &lock, &mut NoEvents, &mut observer).unwrap();
        assert_eq!(observer.0, 1, "no lock, no wait");
    }
}
