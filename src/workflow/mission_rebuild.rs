//! Missions survive the loss of `.quire/` (SPEC §9.5): their state is rebuilt from what Git and
//! the vault keep — the brief at `refs/quire/missions/<id>`, the mission note on main (whose
//! `status` says how an ended mission ended), the sandbox branches, and the run record
//! `06_RUNS/missions/<id>.md`, which lists every attempt with its outcome.
//!
//! What was in flight is rebuilt on the safe side: a run whose last attempt succeeded goes on with
//! the next step (or waits for its round's decision); one whose last attempt failed waits for a
//! person (an escalation), since whether a retry was due is not known; a run with no attempt starts
//! again (or waits for its `start`). Finished steps are never run again: their commits are on the
//! sandbox branch and their lines in the run record.

use super::WorkflowError;
use crate::contributions::now_rfc3339;
use crate::git::Repo;
use crate::missions::{
    self, AttemptRow, Brief, DecisionRow, MissionRow, MissionState, RunRow, Store,
};
use crate::vault::Vault;

/// One attempt as the run record has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Recorded {
    pub started: String,
    pub item: Option<String>,
    pub step: String,
    pub round: u32,
    pub attempt: u32,
    /// `None`: it succeeded.
    pub class: Option<String>,
    /// The start of its commit's id, when it made one.
    pub commit: Option<String>,
    pub log: String,
}

/// Reads one line of a run record (`- <started> [item `<i>`, ]step `<s>` round <r> attempt <a>:
/// <outcome> in <ms> ms; log <path>`); `None` for any other line.
pub(crate) fn parse_line(line: &str) -> Option<Recorded> {
    let rest = line.strip_prefix("- ")?;
    let (started, rest) = rest.split_once(' ')?;
    let (item, rest) = match rest.strip_prefix("item `") {
        Some(r) => {
            let (i, r) = r.split_once("`, ")?;
            (Some(i.to_owned()), r)
        }
        None => (None, rest),
    };
    let rest = rest.strip_prefix("step `")?;
    let (step, rest) = rest.split_once("` round ")?;
    let (round, rest) = rest.split_once(" attempt ")?;
    let (attempt, rest) = rest.split_once(": ")?;
    let (head, log) = rest.rsplit_once("; log ")?;
    let (outcome, _ms) = head.rsplit_once(" in ")?;
    let (class, commit) = if let Some(c) = outcome.strip_prefix("succeeded, commit ") {
        (None, Some(c.to_owned()))
    } else if outcome == "succeeded, nothing changed" {
        (None, None)
    } else {
        let class = outcome.strip_prefix("failed (")?.strip_suffix(')')?;
        (Some(class.to_owned()), None)
    };
    Some(Recorded {
        started: started.to_owned(),
        item,
        step: step.to_owned(),
        round: round.parse().ok()?,
        attempt: attempt.parse().ok()?,
        class,
        commit,
        log: log.to_owned(),
    })
}

/// Rebuilds every mission Git keeps that `.quire/missions.db` does not know (none, usually: one
/// listing of refs and one query). Returns the ids rebuilt. Takes the writer lock when there is
/// something to rebuild, so it never races an acceptance in progress — and when another writer
/// holds it, rebuilds nothing this time: that writer may be accepting the very brief that looks
/// unknown (its ref is written before its state), and waiting for it would hold up whoever
/// called (the daemon's supervisor, for a whole burst of briefs).
pub fn rebuild(vault: &Vault) -> Result<Vec<String>, WorkflowError> {
    let repo = Repo::open(vault.root())?;
    let prefix = "refs/quire/missions/";
    let kept = repo.refs_under(prefix)?;
    if kept.is_empty() {
        return Ok(Vec::new());
    }
    let mut store = Store::open(&vault.state_dir())?;
    let unknown = |store: &Store| -> Result<Vec<String>, WorkflowError> {
        let mut ids = Vec::new();
        for (name, _) in &kept {
            let id = name.strip_prefix(prefix).unwrap_or(name);
            if store.mission(id)?.is_none() {
                ids.push(id.to_owned());
            }
        }
        Ok(ids)
    };
    if unknown(&store)?.is_empty() {
        return Ok(Vec::new());
    }
    let Some(_lock) = crate::contributions::queue::ApplyLock::try_acquire(vault)
        .map_err(|e| WorkflowError::io("could not take the vault's writer lock in .quire/", e))?
    else {
        return Ok(Vec::new());
    };
    let mut rebuilt = Vec::new();
    for id in unknown(&store)? {
        if rebuild_one(vault, &repo, &mut store, &id)? {
            rebuilt.push(id);
        }
    }
    Ok(rebuilt)
}

/// Rebuilds mission `id` from Git and its run record, if its acceptance was finished (its note is
/// on main); false otherwise (the brief dropped again finishes accepting it). Call with the writer
/// lock held.
pub(crate) fn rebuild_one(
    vault: &Vault,
    repo: &Repo,
    store: &mut Store,
    id: &str,
) -> Result<bool, WorkflowError> {
    let Some(blob) = repo.ref_target(&missions::brief_ref(id)) else {
        return Ok(false);
    };
    let bytes = repo.blob(blob)?;
    let Ok(brief) = Brief::parse(&bytes) else {
        tracing::warn!(mission = %id, "the brief kept in Git no longer reads; not rebuilt");
        return Ok(false);
    };
    let main = vault.config().git.main.clone();
    let Some(note) = repo
        .branch_tip(&main)?
        .and_then(|tip| repo.blob_at(tip, &missions::note::path(id)))
    else {
        return Ok(false);
    };
    let said = note_status(&String::from_utf8_lossy(&note));
    let recorded: Vec<Recorded> = std::fs::read_to_string(
        vault
            .root()
            .join(crate::vault::RUNS_DIR)
            .join("missions")
            .join(format!("{id}.md")),
    )
    .map(|text| text.lines().filter_map(parse_line).collect())
    .unwrap_or_default();
    let untrusted = brief.runs_its_own_commands() && !vault.config().missions.trust_briefs;
    let now = now_rfc3339();
    let expires = super::missions::decision_expiry(vault);
    let items: Vec<Option<String>> = match &brief.items {
        None => vec![None],
        Some(items) => items.iter().cloned().map(Some).collect(),
    };
    let mut runs = Vec::new();
    let mut decisions = Vec::new();
    let mut attempts = Vec::new();
    for item in items {
        let mut run = RunRow::new(id, item.as_deref(), MissionState::Queued);
        let tip = repo.branch_tip(&super::sandbox::branch_of(&run.sandbox))?;
        let mine: Vec<&Recorded> = recorded.iter().filter(|r| r.item == item).collect();
        for r in &mine {
            attempts.push(AttemptRow {
                mission: id.to_owned(),
                item: item.clone(),
                step: r.step.clone(),
                round: r.round,
                attempt: r.attempt,
                fence: 0,
                state: if r.class.is_none() {
                    "succeeded"
                } else {
                    "failed"
                }
                .into(),
                pid: 0,
                started: r.started.clone(),
                ended: None,
                exit: None,
                class: r.class.clone(),
                healed_by: None,
                start_commit: String::new(),
                commit: r.commit.clone(),
                log: r.log.clone(),
                runner: String::new(),
            });
        }
        let tip_text = tip.map(|t| t.to_string()).unwrap_or_default();
        match (said, tip, mine.last()) {
            (Some(s), _, _) if s.is_final() => run.state = s,
            (_, None, _) => {
                // Its branch is gone: discarded (kept under refs/quire/archive/).
                run.state = MissionState::Rejected;
            }
            (_, Some(_), None) if untrusted => run.state = MissionState::AwaitingStart,
            (_, Some(_), None) => run.state = MissionState::Queued,
            (_, Some(_), Some(last)) => {
                let index = brief.step(&last.step).map_or(0, |(i, _)| i);
                run.round = last.round;
                run.start_commit = tip_text.clone();
                if last.class.is_none() {
                    run.step = index + 1;
                    run.attempt = 1;
                    if run.step >= brief.pipeline.len() {
                        run.state = MissionState::AwaitingDecision;
                        decisions.push(DecisionRow {
                            id: format!("{}.r{}", run.sandbox, run.round),
                            mission: id.to_owned(),
                            item: item.clone(),
                            kind: "round".into(),
                            commit: tip_text.clone(),
                            requested: now.clone(),
                            expires: expires.clone(),
                            answer: None,
                            reason: None,
                        });
                    } else {
                        run.state = MissionState::Running;
                        run.start_commit.clear();
                    }
                } else {
                    run.step = index;
                    run.attempt = last.attempt;
                    run.state = MissionState::Escalated;
                    decisions.push(DecisionRow {
                        id: format!(
                            "{}.{}.r{}a{}",
                            run.sandbox, last.step, run.round, run.attempt
                        ),
                        mission: id.to_owned(),
                        item: item.clone(),
                        kind: "escalation".into(),
                        commit: tip_text.clone(),
                        requested: now.clone(),
                        expires: expires.clone(),
                        answer: None,
                        reason: Some(format!(
                            "rebuilt after .quire/ was lost: the last attempt of step `{}` failed ({}), and whether it was to be retried is not known",
                            last.step,
                            last.class.as_deref().unwrap_or("")
                        )),
                    });
                }
            }
        }
        runs.push(run);
    }
    if untrusted && runs.iter().any(|r| r.state == MissionState::AwaitingStart) {
        decisions.push(DecisionRow {
            id: format!("{id}.start"),
            mission: id.to_owned(),
            item: None,
            kind: "start".into(),
            commit: String::new(),
            requested: now.clone(),
            expires: expires.clone(),
            answer: None,
            reason: Some("the brief's steps run their own commands".into()),
        });
    }
    let created = repo
        .ref_created(&missions::brief_ref(id))
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| now.clone());
    store.insert(
        &MissionRow {
            id: id.to_owned(),
            digest: brief.digest(),
            title: brief.title.clone(),
            state: MissionState::Queued,
            brief: String::from_utf8_lossy(&bytes).into_owned(),
            created,
            updated: now,
        },
        &runs,
    )?;
    for a in &attempts {
        store.put_attempt(a)?;
    }
    for d in &decisions {
        store.request_decision(d)?;
    }
    super::mission_steps::set_mission_state(store, id)?;
    tracing::warn!(mission = %id, runs = runs.len(), attempts = attempts.len(), "rebuilt a mission's state from Git and its run record");
    Ok(true)
}

/// The `status` a mission note's front matter gives.
fn note_status(text: &str) -> Option<MissionState> {
    let front = text.strip_prefix("---\n")?;
    let front = &front[..front.find("\n---")?];
    front
        .lines()
        .find_map(|l| l.strip_prefix("status:"))
        .and_then(|s| MissionState::parse(s.trim().trim_matches(['"', '\''])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_record_lines_read_back() {
        let ok = parse_line("- 2026-12-03T01:00:00.000Z item `x`, step `plan` round 2 attempt 1: succeeded, commit 305cac1773 in 3 ms; log 07_LOGS/missions/m.x/plan.2.1.log").unwrap();
        assert_eq!(
            (
                ok.item.as_deref(),
                ok.step.as_str(),
                ok.round,
                ok.attempt,
                ok.class,
                ok.commit.as_deref()
            ),
            (Some("x"), "plan", 2, 1, None, Some("305cac1773"))
        );
        let failed = parse_line("- 2026-12-03T01:00:00.000Z step `check` round 1 attempt 3: failed (log:/rate limit in/) in 12 ms; log 07_LOGS/missions/m/check.1.3.log").unwrap();
        assert_eq!(failed.class.as_deref(), Some("log:/rate limit in/"));
        assert_eq!(failed.item, None);
        let nothing =
            parse_line("- t step `a` round 1 attempt 1: succeeded, nothing changed in 0 ms; log l")
                .unwrap();
        assert_eq!((nothing.class, nothing.commit), (None, None));
        assert_eq!(parse_line("# Runs of mission m"), None);
        assert_eq!(parse_line("- a list item"), None);
    }

    #[test]
    fn the_note_says_its_status() {
        assert_eq!(
            note_status("---\nid: m\nstatus: promoted\n---\n# M\n"),
            Some(MissionState::Promoted)
        );
        assert_eq!(note_status("# no front matter\nstatus: promoted\n"), None);
    }
}
