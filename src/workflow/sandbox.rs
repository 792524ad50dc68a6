//! Sandboxes: a mission's own branch (`mission/<id>`) and worktree (`sandbox/<id>/`), promoted into
//! main as one merge commit, rolled back as one revert, or discarded into an archive ref.
//!
//! # Nothing is lost
//!
//! * Every change to main is a new commit moved in by compare-and-swap; history is never
//!   rewritten, so a promotion or a rollback is always one `git revert` away from undone.
//! * A conflict is never resolved by taking one side: the promotion is refused, every conflicting
//!   path is named with its three versions, and nothing moves.
//! * A person's uncommitted edit in main's work tree on a path the promotion or rollback would
//!   change refuses it; the work tree is then updated path by path, never over an edit.
//! * Discarding keeps the branch tip reachable under `refs/quire/archive/mission/<id>` (an older
//!   archive of the same id moves to `refs/quire/archive/previous/<id>/<time>`), and refuses while
//!   the worktree holds uncommitted edits.
//!
//! # State lives in Git
//!
//! Promotion and rollback commits carry trailers (`Quire-Mission`, `Quire-Action`,
//! `Quire-Source`, `Quire-Merge-Base`, `Quire-Reverts`, `Quire-Record`) and the record file itself
//! (`06_RUNS/promotions/`), so a sandbox's state is read back from main's history, never from a
//! cache that could disagree with it.

use std::collections::HashMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::WorkflowError;
use super::landing::{Landing, land, writer};
use crate::contributions::{TRAILER_ID, now_rfc3339};
use crate::events::{Event, EventSink, kind};
use crate::git::{Conflict, DiffEntry, GitError, Merged, Oid, Repo, message_with_trailers};
use crate::markdown::yaml;
use crate::vault::{ChangeSet, FileContent, RUNS_DIR, Vault, VaultPath};

/// Trailer naming the mission a promotion or rollback commit is about.
pub const TRAILER_MISSION: &str = "Quire-Mission";
/// Trailer saying what the commit did: `promotion` or `rollback`.
pub const TRAILER_ACTION: &str = "Quire-Action";
/// Trailer with the sandbox tip a promotion merged.
pub const TRAILER_SOURCE: &str = "Quire-Source";
/// Trailer with the merge base a promotion merged from.
pub const TRAILER_BASE: &str = "Quire-Merge-Base";
/// Trailer with the promotion commit a rollback reverts.
pub const TRAILER_REVERTS: &str = "Quire-Reverts";
/// Trailer with the vault path of the record the commit carries.
pub const TRAILER_RECORD: &str = "Quire-Record";
/// Where promotion and rollback records are committed.
pub const PROMOTIONS_DIR: &str = "06_RUNS/promotions";
/// Where discarded sandboxes' tips are kept.
pub const ARCHIVE_PREFIX: &str = "refs/quire/archive/mission/";
/// Where an older archive of the same id moves when a sandbox is discarded again.
pub const PREVIOUS_ARCHIVE_PREFIX: &str = "refs/quire/archive/previous/";

/// How many times a promotion or rollback is recomputed when main moves underneath it.
const MAX_ATTEMPTS: usize = 8;
/// How much of a verification command's output goes into the record.
const VERIFY_OUTPUT_BYTES: usize = 16 * 1024;

/// Where a sandbox stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SandboxState {
    /// Has work not yet promoted (or was never promoted).
    Active,
    /// Its tip is merged into main.
    Promoted,
    /// Its last promotion was rolled back; automation leaves it alone until someone promotes it.
    RolledBack,
    /// Its branch is gone; its tip is kept under the archive ref.
    Discarded,
}

/// A sandbox as `quire sandbox list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SandboxInfo {
    /// The mission id.
    pub id: String,
    /// Its branch (`mission/<id>`).
    pub branch: String,
    /// The branch tip (the archived tip when discarded).
    pub tip: String,
    /// Commits on the sandbox that main lacks.
    pub ahead: usize,
    /// Commits on main that the sandbox lacks.
    pub behind: usize,
    /// When the branch was created (from its reflog), RFC 3339.
    pub created: Option<String>,
    /// Where it stands.
    pub state: SandboxState,
    /// Its worktree, relative to the vault, when it has one.
    pub worktree: Option<String>,
    /// The last promotion commit on main, if any.
    pub last_promotion: Option<String>,
    /// The archive ref holding the tip, when discarded.
    pub archived: Option<String>,
}

/// What a promotion would bring: the files and the unified diff from the merge base.
#[derive(Debug, Clone, Serialize)]
pub struct SandboxDiff {
    /// The mission id.
    pub id: String,
    /// The commit the diff starts from (the merge base with main).
    pub base: String,
    /// The sandbox tip.
    pub tip: String,
    /// The files that differ.
    pub files: Vec<DiffEntry>,
    /// The diff in `git diff` format.
    pub patch: String,
}

/// The verification command's run, as recorded.
#[derive(Debug, Clone, Serialize)]
pub struct CheckRun {
    /// The command line.
    pub command: String,
    /// Whether it succeeded (exit 0 within the time limit).
    pub passed: bool,
    /// Its exit code (`None` when killed or timed out).
    pub exit_code: Option<i32>,
    /// How long it ran.
    pub duration_ms: u64,
    /// The end of its combined output.
    pub output: String,
}

/// A promotion or rollback that was made.
#[derive(Debug, Clone, Serialize)]
pub struct Done {
    /// The mission id.
    pub id: String,
    /// `promotion` or `rollback`.
    pub action: &'static str,
    /// The new commit on main.
    pub commit: String,
    /// Main before it.
    pub target_before: String,
    /// The record the commit carries (vault path).
    pub record: String,
    /// Files the commit changed on main.
    pub files: Vec<String>,
    /// Contribution ids the promotion brought into main.
    pub contributions: Vec<String>,
    /// Files of main's work tree left as a person had them (their edit came in while updating).
    pub kept: Vec<String>,
    /// The verification run, if one is configured.
    pub check: Option<CheckRun>,
}

/// Why a promotion or rollback was refused. Nothing changed.
#[derive(Debug, Clone, Serialize)]
pub struct Refusal {
    /// The mission id.
    pub id: String,
    /// `conflict`, `dirty_worktree`, `verify_failed`, `nothing_to_promote`, `not_promoted` or
    /// `no_worktree`.
    pub code: &'static str,
    /// What happened and what to do.
    pub message: String,
    /// Conflicting paths with their three versions.
    pub conflicts: Vec<Conflict>,
    /// Paths with uncommitted edits in the way.
    pub paths: Vec<String>,
    /// The verification run, when it failed.
    pub check: Option<CheckRun>,
    /// The run record written under `06_RUNS/` (not committed), when there is one.
    pub record: Option<String>,
}

/// The outcome of a promotion or rollback.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// It was made.
    Done(Done),
    /// It was refused; nothing changed.
    Refused(Refusal),
}

/// The branch of mission `id`.
pub fn branch_of(id: &str) -> String {
    format!("mission/{id}")
}

/// Checks a mission id: `[A-Za-z0-9][A-Za-z0-9._-]*`, and a branch name Git accepts.
pub fn check_id(id: &str) -> Result<(), WorkflowError> {
    let mut chars = id.chars();
    let shape = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && id.len() <= 128;
    if !shape {
        return Err(WorkflowError::Input(format!(
            "`{id}` is not a sandbox id: use letters, digits, `.`, `_` and `-`, starting with a letter or digit (at most 128)"
        )));
    }
    if !Repo::is_valid_branch_name(&branch_of(id)) || id.ends_with(".lock") || id.contains("..") {
        return Err(WorkflowError::Input(format!(
            "`{id}` is not a sandbox id Git accepts as a branch name (no `..`, no trailing `.` or `.lock`)"
        )));
    }
    Ok(())
}

pub(crate) fn worktree_rel(id: &str) -> String {
    format!("sandbox/{id}")
}

/// One promotion or rollback found in main's history.
#[derive(Debug, Clone)]
struct Action {
    commit: Oid,
    rollback: bool,
    source: Option<Oid>,
    base: Option<Oid>,
    reverts: Option<Oid>,
    record: Option<String>,
}

/// Promotions and rollbacks on main, by mission, newest first.
fn actions(repo: &Repo, main_tip: Oid) -> Result<HashMap<String, Vec<Action>>, WorkflowError> {
    let keys = [
        TRAILER_MISSION,
        TRAILER_ACTION,
        TRAILER_SOURCE,
        TRAILER_BASE,
        TRAILER_REVERTS,
        TRAILER_RECORD,
    ];
    let mut out: HashMap<String, Vec<Action>> = HashMap::new();
    for t in repo.trailers_since(&[main_tip], &[], &keys)? {
        let [Some(mission), Some(action), source, base, reverts, record] = t.values.as_slice()
        else {
            continue;
        };
        let oid = |v: &Option<String>| v.as_deref().and_then(|s| Oid::from_str(s).ok());
        out.entry(mission.clone()).or_default().push(Action {
            commit: t.commit,
            rollback: action == "rollback",
            source: oid(source),
            base: oid(base),
            reverts: oid(reverts),
            record: record.clone(),
        });
    }
    Ok(out)
}

fn main_branch(vault: &Vault) -> String {
    vault.config().git.main.clone()
}

fn main_tip(repo: &Repo, main: &str) -> Result<Oid, WorkflowError> {
    repo.branch_tip(main)?.ok_or_else(|| {
        WorkflowError::Input(format!(
            "the main branch `{main}` does not exist; check `[git] main` in quire.toml"
        ))
    })
}

fn sandbox_tip(repo: &Repo, id: &str) -> Result<Oid, WorkflowError> {
    repo.branch_tip(&branch_of(id))?.ok_or_else(|| {
        let archived = repo
            .ref_target(&format!("{ARCHIVE_PREFIX}{id}"))
            .map(|_| {
                format!(
                    "; it was discarded, and `quire sandbox create {id} --from {ARCHIVE_PREFIX}{id}` brings it back"
                )
            })
            .unwrap_or_default();
        WorkflowError::Input(format!(
            "there is no sandbox `{id}` (no branch `{}`){archived}",
            branch_of(id)
        ))
    })
}

/// Creates sandbox `id`: branch `mission/<id>` at `from` (default: main) and, unless `worktree` is
/// false, a linked worktree at `sandbox/<id>/`.
pub fn create(
    vault: &Vault,
    id: &str,
    from: Option<&str>,
    worktree: bool,
    events: &mut dyn EventSink,
) -> Result<SandboxInfo, WorkflowError> {
    let repo = Repo::open(vault.root())?;
    create_in(vault, &repo, id, from, worktree, events)?;
    info(vault, &repo, id)
}

/// [`create`] through a repository the caller holds, without describing the result (which reads
/// main's history for the sandbox's past promotions: a mission accepting its brief needs none).
pub(crate) fn create_in(
    vault: &Vault,
    repo: &Repo,
    id: &str,
    from: Option<&str>,
    worktree: bool,
    events: &mut dyn EventSink,
) -> Result<(), WorkflowError> {
    check_id(id)?;
    let branch = branch_of(id);
    if repo.branch_tip(&branch)?.is_some() {
        return Err(WorkflowError::Input(format!(
            "sandbox `{id}` already exists (branch `{branch}`); `quire sandbox list` shows it"
        )));
    }
    let start = match from {
        Some(spec) => repo.resolve_commit(spec).ok_or_else(|| {
            WorkflowError::Input(format!(
                "`{spec}` names no commit; give a branch, tag, ref or commit id"
            ))
        })?,
        None => main_tip(repo, &main_branch(vault))?,
    };
    let dir = vault.root().join(worktree_rel(id));
    if worktree && dir.exists() {
        return Err(WorkflowError::Input(format!(
            "{} already exists; move it away or choose another id",
            dir.display()
        )));
    }
    match repo.create_branch(&branch, start, &format!("quire: sandbox create {id}")) {
        Ok(()) => {}
        Err(GitError::Moved(_)) => {
            return Err(WorkflowError::Input(format!(
                "sandbox `{id}` was just created by another process"
            )));
        }
        Err(e) => return Err(e.into()),
    }
    if worktree {
        repo.prune_stale_worktree(id);
        let added = std::fs::create_dir_all(vault.root().join("sandbox"))
            .map_err(|e| WorkflowError::io("could not create sandbox/", e))
            .and_then(|()| Ok(repo.add_worktree(id, &dir, &branch)?));
        if let Err(e) = added {
            // Leave nothing half made: the branch goes again (it holds nothing new).
            let _ = repo.delete_branch(&branch, start);
            return Err(e);
        }
    }
    events.emit(Event::new(
        kind::SANDBOX_CREATED,
        id,
        json!({ "branch": branch, "from": start.to_string(), "worktree": worktree.then(|| worktree_rel(id)) }),
        Some(id.to_owned()),
    ));
    Ok(())
}

/// Checks out sandbox `id`'s branch into its work tree `sandbox/<id>/` if it has none (a mission's
/// sandbox gets its work tree when its first step is about to run, or again if it was deleted).
/// Whether it checked one out now.
pub(crate) fn ensure_worktree(vault: &Vault, repo: &Repo, id: &str) -> Result<bool, WorkflowError> {
    // One at a time in this process: libgit2 adding two worktrees at once races on
    // `.git/worktrees/` (one fails with "directory exists", or sees the other's branch as
    // already checked out). The daemon's carriers are threads of one process.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let dir = vault.root().join(worktree_rel(id));
    // The usual case, without waiting for another run's checkout.
    if dir.is_dir() && repo.worktree_is_complete(id) {
        return Ok(false);
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    if dir.is_dir() {
        if repo.worktree_is_complete(id) {
            return Ok(false);
        }
        // A checkout cut short (quire died during it): its files are a part of the tree, and a
        // step's commit from it would delete the rest. It is made again.
        tracing::warn!(
            "the work tree {} was never finished; checking it out again",
            dir.display()
        );
        std::fs::remove_dir_all(&dir)
            .map_err(|e| WorkflowError::io(format!("could not remove {}", dir.display()), e))?;
    }
    repo.prune_stale_worktree(id);
    std::fs::create_dir_all(vault.root().join("sandbox"))
        .map_err(|e| WorkflowError::io("could not create sandbox/", e))?;
    repo.add_worktree(id, &dir, &branch_of(id))?;
    Ok(true)
}

/// Every sandbox: the `mission/*` branches, and discarded ones kept in the archive.
pub fn list(vault: &Vault) -> Result<Vec<SandboxInfo>, WorkflowError> {
    let repo = Repo::open(vault.root())?;
    let mut ids: Vec<String> = repo
        .local_branches()?
        .into_iter()
        .filter_map(|(name, _)| name.strip_prefix("mission/").map(str::to_owned))
        .collect();
    for (name, _) in repo.refs_under(ARCHIVE_PREFIX)? {
        if let Some(id) = name.strip_prefix(ARCHIVE_PREFIX)
            && !ids.iter().any(|i| i == id)
        {
            ids.push(id.to_owned());
        }
    }
    ids.sort();
    let main = main_branch(vault);
    let tip = main_tip(&repo, &main)?;
    let history = actions(&repo, tip)?;
    ids.iter()
        .map(|id| describe(vault, &repo, id, tip, history.get(id)))
        .collect()
}

fn info(vault: &Vault, repo: &Repo, id: &str) -> Result<SandboxInfo, WorkflowError> {
    let tip = main_tip(repo, &main_branch(vault))?;
    let history = actions(repo, tip)?;
    describe(vault, repo, id, tip, history.get(id))
}

fn describe(
    vault: &Vault,
    repo: &Repo,
    id: &str,
    main: Oid,
    history: Option<&Vec<Action>>,
) -> Result<SandboxInfo, WorkflowError> {
    let branch = branch_of(id);
    let archive = format!("{ARCHIVE_PREFIX}{id}");
    let (tip, archived) = match repo.branch_tip(&branch)? {
        Some(t) => (t, None),
        None => match repo.ref_target(&archive) {
            Some(t) => (t, Some(archive)),
            None => {
                return Err(WorkflowError::Input(format!("there is no sandbox `{id}`")));
            }
        },
    };
    let (ahead, behind) = repo.ahead_behind(tip, main)?;
    let last = history.and_then(|h| h.first());
    let state = if archived.is_some() {
        SandboxState::Discarded
    } else if last.is_some_and(|a| a.rollback) {
        SandboxState::RolledBack
    } else if last.is_some_and(|a| a.source == Some(tip)) || (last.is_some() && ahead == 0) {
        SandboxState::Promoted
    } else {
        SandboxState::Active
    };
    let worktree = repo
        .checkout_of(&branch)?
        .map(|c| {
            c.workdir()
                .strip_prefix(vault.root())
                .map(|p| p.to_string_lossy().trim_end_matches('/').to_owned())
                .unwrap_or_else(|_| c.workdir().display().to_string())
        })
        .filter(|_| archived.is_none());
    Ok(SandboxInfo {
        id: id.to_owned(),
        created: repo
            .ref_created(&format!("refs/heads/{branch}"))
            .map(crate::contributions::rfc3339),
        branch,
        tip: tip.to_string(),
        ahead,
        behind,
        state,
        worktree,
        last_promotion: history
            .and_then(|h| h.iter().find(|a| !a.rollback))
            .map(|a| a.commit.to_string()),
        archived,
    })
}

/// The commit a promotion of `tip` merges from: the merge base with main, except after a rollback,
/// when it is the base of the rolled-back promotion (so the reverted work comes back too).
fn promotion_base(
    repo: &Repo,
    main: Oid,
    tip: Oid,
    history: Option<&Vec<Action>>,
) -> Result<Option<Oid>, WorkflowError> {
    if let Some(last) = history.and_then(|h| h.first())
        && last.rollback
        && let Some(promotion) =
            history.and_then(|h| h.iter().find(|a| Some(a.commit) == last.reverts))
        && let Some(base) = promotion.base
    {
        return Ok(Some(base));
    }
    Ok(repo.merge_base(main, tip)?)
}

/// What promoting sandbox `id` would bring into main, from the merge base.
pub fn diff(vault: &Vault, id: &str) -> Result<SandboxDiff, WorkflowError> {
    check_id(id)?;
    let repo = Repo::open(vault.root())?;
    let tip = sandbox_tip(&repo, id)?;
    let main = main_tip(&repo, &main_branch(vault))?;
    let history = actions(&repo, main)?;
    let base = promotion_base(&repo, main, tip, history.get(id))?.ok_or_else(|| {
        WorkflowError::Input(format!(
            "sandbox `{id}` shares no history with main; there is nothing to compare"
        ))
    })?;
    let (files, patch) = repo.diff_commits(base, tip)?;
    Ok(SandboxDiff {
        id: id.to_owned(),
        base: base.to_string(),
        tip: tip.to_string(),
        files,
        patch,
    })
}

fn stamp() -> String {
    chrono::Utc::now()
        .format("%Y%m%dT%H%M%S%.3fZ")
        .to_string()
        .replace('.', "")
}

/// A record path under `PROMOTIONS_DIR` not yet taken in `commit`'s tree.
fn record_path(repo: &Repo, commit: Oid, kind: &str, id: &str) -> String {
    let stamp = stamp();
    let mut path = format!("{PROMOTIONS_DIR}/{stamp}-{kind}-{id}.md");
    let mut n = 2;
    while repo.blob_at(commit, &path).is_some() {
        path = format!("{PROMOTIONS_DIR}/{stamp}-{kind}-{id}-{n}.md");
        n += 1;
    }
    path
}

/// A record's id: its file name without `.md`.
fn record_id(path: &str) -> String {
    path.rsplit('/')
        .next()
        .unwrap_or(path)
        .trim_end_matches(".md")
        .to_owned()
}

fn refused(id: &str, code: &'static str, message: String) -> Refusal {
    Refusal {
        id: id.to_owned(),
        code,
        message,
        conflicts: Vec::new(),
        paths: Vec::new(),
        check: None,
        record: None,
    }
}

/// Promotes sandbox `id` into main: one merge commit (parents: main, the sandbox tip) carrying the
/// promotion record, after the configured verification passed in the sandbox's worktree.
pub fn promote(
    vault: &Vault,
    id: &str,
    events: &mut dyn EventSink,
) -> Result<Outcome, WorkflowError> {
    promote_with(vault, id, &[], events)
}

/// [`promote`], with more trailers on the promotion commit (a mission's decision: `Decision-Id`,
/// `Decided-By`, `Decision-Reason`).
pub fn promote_with(
    vault: &Vault,
    id: &str,
    extra_trailers: &[(&str, &str)],
    events: &mut dyn EventSink,
) -> Result<Outcome, WorkflowError> {
    check_id(id)?;
    let repo = Repo::open(vault.root())?;
    let _lock = writer(vault, &repo)?;
    let main = main_branch(vault);
    let tip = sandbox_tip(&repo, id)?;

    // Cheap refusals first: nothing to bring, or a conflict, before running any check.
    let mut check = None;
    let mut verified = false;
    for _ in 0..MAX_ATTEMPTS {
        let before = main_tip(&repo, &main)?;
        let history = actions(&repo, before)?;
        let hist = history.get(id);
        let rolled_back = hist.and_then(|h| h.first()).is_some_and(|a| a.rollback);
        let base = promotion_base(&repo, before, tip, hist)?;
        if base == Some(tip) && !rolled_back {
            return Ok(Outcome::Refused(refused(
                id,
                "nothing_to_promote",
                format!(
                    "sandbox `{id}` has nothing main lacks (its tip {} is already in `{main}`)",
                    short(tip)
                ),
            )));
        }
        let tree = match repo.merge_commits(base, before, tip)? {
            Merged::Clean(tree) => tree,
            Merged::Conflicts(conflicts) => {
                let r = conflict_refusal(vault, id, "promotion", conflicts, before, tip, base);
                emit_refusal(events, &r);
                return Ok(Outcome::Refused(r));
            }
        };
        if !verified {
            if let Some(command) = vault.config().sandbox.verify.clone() {
                match verify(vault, &repo, id, &command)? {
                    Ok(run) => check = Some(run),
                    Err(r) => {
                        emit_refusal(events, &r);
                        return Ok(Outcome::Refused(r));
                    }
                }
            }
            verified = true;
        }

        let changes = repo.changes_to_tree(before, tree)?;
        if let Some(r) = dirty_refusal(&repo, &main, id, &changes)? {
            emit_refusal(events, &r);
            return Ok(Outcome::Refused(r));
        }

        let contributions: Vec<String> = repo
            .trailers_since(&[tip], base.as_slice(), &[TRAILER_ID])?
            .into_iter()
            .rev()
            .filter_map(|t| t.values.into_iter().next().flatten())
            .collect();
        let who = repo.committer();
        let by = signer(&who);
        let at = now_rfc3339();
        let record_path = record_path(&repo, before, "promotion", id);
        let strategy = if base == Some(before) {
            "merge (main had not moved)"
        } else {
            "three-way merge"
        };
        let mut front = Map::new();
        front.insert("id".into(), json!(record_id(&record_path)));
        front.insert("kind".into(), json!("promotion"));
        front.insert("mission".into(), json!(id));
        front.insert("branch".into(), json!(branch_of(id)));
        front.insert("target".into(), json!(main));
        front.insert("source".into(), json!(tip.to_string()));
        front.insert("target_before".into(), json!(before.to_string()));
        front.insert(
            "target_after".into(),
            json!("the commit that adds this record"),
        );
        front.insert("merge_base".into(), json!(base.map(|b| b.to_string())));
        front.insert("strategy".into(), json!(strategy));
        front.insert("contributions".into(), json!(contributions));
        front.insert("by".into(), json!(by));
        front.insert("at".into(), json!(at));
        front.insert("checks".into(), json!(check.iter().collect::<Vec<_>>()));
        // What the dashboards list under recent runs.
        front.insert("status".into(), json!("promoted"));
        front.insert("started".into(), json!(at));
        front.insert(
            "summary".into(),
            json!(format!(
                "{} into {main}: {} file{}, {} contribution{}",
                branch_of(id),
                changes.len(),
                if changes.len() == 1 { "" } else { "s" },
                contributions.len(),
                if contributions.len() == 1 { "" } else { "s" }
            )),
        );
        let mut body = format!(
            "# Promotion of mission {id} into {main}\n\n{} file{} from `{}` ({}), merged onto `{main}` at {} by {strategy}.\n\n",
            changes.len(),
            if changes.len() == 1 { "" } else { "s" },
            branch_of(id),
            short(tip),
            short(before),
        );
        for c in &changes {
            body.push_str(&format!("- `{}`\n", c.path));
        }
        if let Some(run) = &check {
            body.push_str(&format!(
                "\n## Check\n\n`{}` {} in {} ms.\n\n```text\n{}\n```\n",
                run.command,
                if run.passed { "passed" } else { "failed" },
                run.duration_ms,
                run.output.trim_end()
            ));
        }
        let record = record_text(&front, &body)?;
        let mut extra = ChangeSet::new();
        extra.write(
            vault_path(&record_path)?,
            FileContent::new(record.into_bytes()),
        );

        let subject = format!("Promote mission {id} into {main}");
        let message = message_with_trailers(
            &format!(
                "{subject}\n\nMerges {} ({}) with {} contribution{}.",
                branch_of(id),
                short(tip),
                contributions.len(),
                if contributions.len() == 1 { "" } else { "s" }
            ),
            &[
                &[
                    (TRAILER_MISSION, id),
                    (TRAILER_ACTION, "promotion"),
                    (TRAILER_SOURCE, &tip.to_string()),
                    (
                        TRAILER_BASE,
                        &base.map(|b| b.to_string()).unwrap_or_default(),
                    ),
                    (TRAILER_RECORD, &record_path),
                ][..],
                extra_trailers,
            ]
            .concat(),
        );
        let landed = land(
            vault,
            &repo,
            &main,
            before,
            Landing {
                tree,
                extra: &extra,
                parents: &[before, tip],
                author: &who,
                message: &message,
                reflog: &format!("quire: promote {id}"),
                crash_point: "after_promote_commit",
            },
        )?;
        match landed {
            Some((commit, files, kept)) => {
                let done = Done {
                    id: id.to_owned(),
                    action: "promotion",
                    commit: commit.to_string(),
                    target_before: before.to_string(),
                    record: record_path,
                    files: files.iter().map(|f| f.path.to_string()).collect(),
                    contributions,
                    kept,
                    check,
                };
                events.emit(Event::new(
                    kind::SANDBOX_PROMOTED,
                    id,
                    json!({ "commit": done.commit, "target_before": done.target_before, "source": tip.to_string(), "record": done.record, "files": done.files.len() }),
                    Some(id.to_owned()),
                ));
                super::pipeline::index_after_commits(
                    vault,
                    super::pipeline::Look::everything(),
                    events,
                );
                return Ok(Outcome::Done(done));
            }
            None => {
                tracing::debug!("main moved during the promotion; merging again on its new tip");
                continue;
            }
        }
    }
    Err(WorkflowError::Input(format!(
        "`{main}` kept moving while sandbox `{id}` was promoted; try again when it is quieter"
    )))
}

/// Rolls back the last promotion of sandbox `id`: one new commit on main reverting it (the
/// promotion's record stays, beside the rollback's), after which the sandbox is held as
/// `rolled_back` until it is promoted again.
pub fn rollback(
    vault: &Vault,
    id: &str,
    events: &mut dyn EventSink,
) -> Result<Outcome, WorkflowError> {
    check_id(id)?;
    let repo = Repo::open(vault.root())?;
    let _lock = writer(vault, &repo)?;
    let main = main_branch(vault);

    for _ in 0..MAX_ATTEMPTS {
        let before = main_tip(&repo, &main)?;
        let history = actions(&repo, before)?;
        let Some(last) = history.get(id).and_then(|h| h.first()).cloned() else {
            return Ok(Outcome::Refused(refused(
                id,
                "not_promoted",
                format!(
                    "sandbox `{id}` has never been promoted into `{main}`; there is nothing to roll back"
                ),
            )));
        };
        if last.rollback {
            return Ok(Outcome::Refused(refused(
                id,
                "not_promoted",
                format!(
                    "the last promotion of `{id}` is already rolled back ({}); promote it again with `quire sandbox promote {id}`",
                    short(last.commit)
                ),
            )));
        }
        let promotion = last.commit;
        let tree = match repo.revert_onto(promotion, before)? {
            Merged::Clean(tree) => tree,
            Merged::Conflicts(conflicts) => {
                let r = conflict_refusal(
                    vault,
                    id,
                    "rollback",
                    conflicts,
                    before,
                    promotion,
                    Some(promotion),
                );
                emit_refusal(events, &r);
                return Ok(Outcome::Refused(r));
            }
        };

        let mut extra = ChangeSet::new();
        // The revert would take the promotion's record away with the rest of it; a record is
        // history, so it stays.
        if let Some(record) = &last.record
            && let Some(bytes) = repo.blob_at(promotion, record)
        {
            extra.write(vault_path(record)?, FileContent::new(bytes));
        }
        let at = now_rfc3339();
        let who = repo.committer();
        let by = signer(&who);
        let record_path = record_path(&repo, before, "rollback", id);
        let mut front = Map::new();
        front.insert("id".into(), json!(record_id(&record_path)));
        front.insert("kind".into(), json!("rollback"));
        front.insert("mission".into(), json!(id));
        front.insert("target".into(), json!(main));
        front.insert("reverts".into(), json!(promotion.to_string()));
        front.insert("target_before".into(), json!(before.to_string()));
        front.insert(
            "target_after".into(),
            json!("the commit that adds this record"),
        );
        front.insert("promotion_record".into(), json!(last.record));
        front.insert("by".into(), json!(by));
        front.insert("at".into(), json!(at));
        front.insert("status".into(), json!("rolled_back"));
        front.insert("started".into(), json!(at));
        front.insert(
            "summary".into(),
            json!(format!("reverted the promotion {}", short(promotion))),
        );
        let body = format!(
            "# Rollback of mission {id} from {main}\n\nReverts the promotion {} on top of {}. The sandbox is held: nothing promotes it again until someone runs `quire sandbox promote {id}`.\n",
            short(promotion),
            short(before)
        );
        extra.write(
            vault_path(&record_path)?,
            FileContent::new(record_text(&front, &body)?.into_bytes()),
        );
        let preview = repo.changes_to_tree(before, tree)?;
        if let Some(r) = dirty_refusal(&repo, &main, id, &preview)? {
            emit_refusal(events, &r);
            return Ok(Outcome::Refused(r));
        }
        let message = message_with_trailers(
            &format!("Roll back mission {id} from {main}\n\nReverts the promotion {promotion}."),
            &[
                (TRAILER_MISSION, id),
                (TRAILER_ACTION, "rollback"),
                (TRAILER_REVERTS, &promotion.to_string()),
                (TRAILER_RECORD, &record_path),
            ],
        );
        let landed = land(
            vault,
            &repo,
            &main,
            before,
            Landing {
                tree,
                extra: &extra,
                parents: &[before],
                author: &who,
                message: &message,
                reflog: &format!("quire: roll back {id}"),
                crash_point: "after_rollback_commit",
            },
        )?;
        match landed {
            Some((commit, files, kept)) => {
                let done = Done {
                    id: id.to_owned(),
                    action: "rollback",
                    commit: commit.to_string(),
                    target_before: before.to_string(),
                    record: record_path,
                    files: files.iter().map(|f| f.path.to_string()).collect(),
                    contributions: Vec::new(),
                    kept,
                    check: None,
                };
                events.emit(Event::new(
                    kind::SANDBOX_ROLLED_BACK,
                    id,
                    json!({ "commit": done.commit, "reverts": promotion.to_string(), "record": done.record }),
                    Some(id.to_owned()),
                ));
                super::pipeline::index_after_commits(
                    vault,
                    super::pipeline::Look::everything(),
                    events,
                );
                return Ok(Outcome::Done(done));
            }
            None => continue,
        }
    }
    Err(WorkflowError::Input(format!(
        "`{main}` kept moving while sandbox `{id}` was rolled back; try again when it is quieter"
    )))
}

/// What a discard did.
#[derive(Debug, Clone, Serialize)]
pub struct Discarded {
    /// The mission id.
    pub id: String,
    /// The archive ref now holding the tip.
    pub archive: String,
    /// The tip kept there.
    pub tip: String,
    /// Where an older archive of the same id moved, if there was one.
    pub previous: Option<String>,
    /// Whether a worktree was removed.
    pub worktree_removed: bool,
}

/// Discards sandbox `id`: its tip goes to `refs/quire/archive/mission/<id>`, then its worktree and
/// branch are removed. Refused (`Err(Refusal)`) while the worktree has uncommitted edits.
pub fn discard(
    vault: &Vault,
    id: &str,
    events: &mut dyn EventSink,
) -> Result<Result<Discarded, Refusal>, WorkflowError> {
    check_id(id)?;
    let repo = Repo::open(vault.root())?;
    let _lock = writer(vault, &repo)?;
    let branch = branch_of(id);
    let tip = sandbox_tip(&repo, id)?;
    let checkout = repo.checkout_of(&branch)?;
    if let Some(c) = &checkout {
        let dirty = repo.uncommitted(c.workdir())?;
        if !dirty.is_empty() {
            let mut r = refused(
                id,
                "dirty_worktree",
                format!(
                    "{} has uncommitted changes to {}; commit them to the sandbox (they are archived with it) or move them away, then discard",
                    c.workdir().display(),
                    dirty.join(", ")
                ),
            );
            r.paths = dirty;
            return Ok(Err(r));
        }
    }
    let archive = format!("{ARCHIVE_PREFIX}{id}");
    let mut previous = None;
    if let Some(old) = repo.ref_target(&archive)
        && old != tip
    {
        let name = format!(
            "{PREVIOUS_ARCHIVE_PREFIX}{id}/{}",
            chrono::Utc::now().timestamp()
        );
        repo.set_ref(&name, old, &format!("quire: older archive of {id}"))?;
        previous = Some(name);
    }
    // The tip is safe in the archive before anything is removed.
    repo.set_ref(&archive, tip, &format!("quire: sandbox discard {id}"))?;
    let mut worktree_removed = false;
    if checkout.is_some()
        && let Some(name) = repo.worktree_name_of(&branch)
    {
        drop(checkout);
        repo.remove_worktree(&name)?;
        worktree_removed = true;
    }
    match repo.delete_branch(&branch, tip) {
        Ok(()) => {}
        Err(GitError::Moved(_)) => {
            return Err(WorkflowError::Input(format!(
                "branch `{branch}` moved while it was discarded; its new tip is still there, and the old one is in {archive}"
            )));
        }
        Err(e) => return Err(e.into()),
    }
    events.emit(Event::new(
        kind::SANDBOX_DISCARDED,
        id,
        json!({ "archive": archive, "tip": tip.to_string() }),
        Some(id.to_owned()),
    ));
    Ok(Ok(Discarded {
        id: id.to_owned(),
        archive,
        tip: tip.to_string(),
        previous,
        worktree_removed,
    }))
}

fn signer(who: &crate::git::Signature<'_>) -> String {
    format!(
        "{} <{}>",
        who.name().unwrap_or("quire"),
        who.email().unwrap_or("")
    )
}

fn short(id: Oid) -> String {
    id.to_string()[..10].to_owned()
}

fn vault_path(p: &str) -> Result<VaultPath, WorkflowError> {
    VaultPath::new(p).map_err(|e| WorkflowError::Input(format!("bad record path `{p}`: {e}")))
}

fn record_text(front: &Map<String, Value>, body: &str) -> Result<String, WorkflowError> {
    let yaml = yaml::to_string(&Value::Object(front.clone()))
        .map_err(|e| WorkflowError::Input(format!("could not write a record: {e}")))?;
    Ok(format!("---\n{}---\n\n{body}", yaml))
}

/// Paths a change to main would touch that hold uncommitted edits in main's work tree.
fn dirty_refusal(
    repo: &Repo,
    main: &str,
    id: &str,
    changes: &[crate::git::FileChange],
) -> Result<Option<Refusal>, WorkflowError> {
    let Some(mut checkout) = repo.checkout_of(main)? else {
        return Ok(None);
    };
    let paths: Vec<(&VaultPath, Option<Oid>)> = changes
        .iter()
        .map(|c| (&c.path, c.old.map(|(id, _)| id)))
        .collect();
    let dirty = checkout.dirty(repo, &paths)?;
    if dirty.is_empty() {
        return Ok(None);
    }
    let list: Vec<String> = dirty.iter().map(|(p, _)| p.to_string()).collect();
    let mut r = refused(
        id,
        "dirty_worktree",
        format!(
            "main's work tree has uncommitted changes to {}, which this would change; commit or stash them, then try again",
            list.join(", ")
        ),
    );
    r.paths = list;
    Ok(Some(r))
}

fn conflict_refusal(
    vault: &Vault,
    id: &str,
    action: &str,
    conflicts: Vec<Conflict>,
    main: Oid,
    other: Oid,
    base: Option<Oid>,
) -> Refusal {
    let versions = |c: &Conflict| {
        let v = |o: Option<Oid>| o.map_or("(absent)".to_owned(), |o| format!("`git show {o}`"));
        format!(
            "- `{}`: base {}, main {}, {} {}",
            c.path,
            v(c.base),
            v(c.ours),
            if action == "promotion" {
                "sandbox"
            } else {
                "promotion"
            },
            v(c.theirs)
        )
    };
    let lines: Vec<String> = conflicts.iter().map(versions).collect();
    let mut paths: Vec<String> = conflicts.iter().take(10).map(|c| c.path.clone()).collect();
    if conflicts.len() > 10 {
        paths.push(format!("and {} more", conflicts.len() - 10));
    }
    let message = format!(
        "the {action} of `{id}` conflicts with `{}` ({}) on {}; nothing was changed. Resolve it in the sandbox (merge main into `{}` there) and promote again; `quire sandbox diff {id}` shows what the sandbox changes",
        vault.config().git.main,
        short(main),
        paths.join(", "),
        branch_of(id),
    );
    let mut front = Map::new();
    front.insert("kind".into(), json!(format!("{action}-refused")));
    front.insert("mission".into(), json!(id));
    front.insert("target_before".into(), json!(main.to_string()));
    front.insert("other".into(), json!(other.to_string()));
    front.insert("merge_base".into(), json!(base.map(|b| b.to_string())));
    front.insert("conflicts".into(), json!(conflicts));
    front.insert("at".into(), json!(now_rfc3339()));
    let body = format!(
        "# Refused: {action} of mission {id}\n\n{message}.\n\nThe three versions of each conflicting file:\n\n{}\n",
        lines.join("\n")
    );
    let rel = format!("{RUNS_DIR}/{}-{action}-{id}-refused.md", stamp());
    let record = record_text(&front, &body).ok().and_then(|text| {
        let path = vault.root().join(&rel);
        std::fs::create_dir_all(path.parent()?).ok()?;
        crate::vault::fsutil::atomic_write(&path, text.as_bytes(), false)
            .ok()
            .map(|()| rel.clone())
    });
    Refusal {
        id: id.to_owned(),
        code: "conflict",
        message,
        paths: Vec::new(),
        conflicts,
        check: None,
        record,
    }
}

fn emit_refusal(events: &mut dyn EventSink, r: &Refusal) {
    events.emit(Event::new(
        kind::SANDBOX_REFUSED,
        &r.id,
        json!({ "code": r.code, "message": r.message, "paths": r.paths, "conflicts": r.conflicts.len() }),
        Some(r.id.clone()),
    ));
}

/// Runs the verification command in the sandbox's worktree. `Err(Refusal)` when it fails, when
/// there is no worktree to run it in, or when the worktree has uncommitted edits (the check would
/// not see what is promoted).
fn verify(
    vault: &Vault,
    repo: &Repo,
    id: &str,
    command: &str,
) -> Result<Result<CheckRun, Refusal>, WorkflowError> {
    let Some(checkout) = repo.checkout_of(&branch_of(id))? else {
        return Ok(Err(refused(
            id,
            "no_worktree",
            format!(
                "quire.toml asks for `{command}` to pass before a promotion, and sandbox `{id}` has no worktree to run it in; create the sandbox with a worktree"
            ),
        )));
    };
    let dir: PathBuf = checkout.workdir().to_path_buf();
    let dirty = repo.uncommitted(&dir)?;
    if !dirty.is_empty() {
        let mut r = refused(
            id,
            "dirty_worktree",
            format!(
                "{} has uncommitted changes to {}; the check would not see what is promoted. Commit them to the sandbox or undo them",
                dir.display(),
                dirty.join(", ")
            ),
        );
        r.paths = dirty;
        return Ok(Err(r));
    }
    let run = run_check(&dir, vault, id, command)?;
    if run.passed {
        Ok(Ok(run))
    } else {
        let mut r = refused(
            id,
            "verify_failed",
            format!(
                "`{command}` did not pass in {} (exit {}); the promotion is refused. Its output:\n{}",
                dir.display(),
                run.exit_code
                    .map_or("none: killed or timed out".to_owned(), |c| c.to_string()),
                run.output.trim_end()
            ),
        );
        r.check = Some(run);
        Ok(Err(r))
    }
}

fn run_check(
    dir: &Path,
    vault: &Vault,
    id: &str,
    command: &str,
) -> Result<CheckRun, WorkflowError> {
    let started = Instant::now();
    let limit = Duration::from_secs(vault.config().sandbox.verify_timeout_secs);
    // Output goes to a file rather than a pipe, so a chatty command can never fill a pipe and
    // stall while quire waits for it to exit.
    let log = vault.state_dir().join(format!("verify-{id}.log"));
    // Each check starts a fresh log; the runner appends.
    let _ = std::fs::remove_file(&log);
    // Its own process group, ended whole at the time limit, output written by the command itself.
    let ended = crate::missions::runner::spawn(crate::missions::Launch {
        command: command.to_owned(),
        dir: dir.to_owned(),
        env: vec![
            ("QUIRE_VAULT".into(), dir.display().to_string()),
            ("QUIRE_SANDBOX".into(), id.to_owned()),
        ],
        log: log.clone(),
        exit_file: vault.state_dir().join(format!("verify-{id}.exit")),
        timeout: limit,
        grace: vault.config().missions.grace.duration(),
        // Its answer is for the promotion that waits on it, and nobody else.
        ends_with_parent: true,
    })
    .map_err(|e| {
        WorkflowError::io(
            format!("could not run `{command}`"),
            std::io::Error::other(e),
        )
    })?
    .wait(&crate::missions::Cancel::default());
    let _ = std::fs::remove_file(vault.state_dir().join(format!("verify-{id}.exit")));
    let mut text = Vec::new();
    if let Ok(mut f) = std::fs::File::open(&log) {
        let _ = f.read_to_end(&mut text);
    }
    let start = text.len().saturating_sub(VERIFY_OUTPUT_BYTES);
    let mut output = String::from_utf8_lossy(&text[start..]).into_owned();
    if ended == crate::missions::Ended::TimedOut {
        output.push_str(&format!(
            "\n(stopped after {} s: `[sandbox] verify_timeout_secs`)\n",
            limit.as_secs()
        ));
    }
    let exit_code = match ended {
        crate::missions::Ended::Exited(n) => Some(n),
        _ => None,
    };
    Ok(CheckRun {
        command: command.to_owned(),
        passed: exit_code == Some(0),
        exit_code,
        duration_ms: started.elapsed().as_millis() as u64,
        output,
    })
}
