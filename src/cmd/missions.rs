//! `quire mission start|list|status|logs|retry|abort`, `quire inbox` and `quire decide`.

use super::output::{self, outln};
use std::process::ExitCode;

use quire::contributions::Status;
use quire::events::{Event, EventSink, JsonlLog};
use quire::vault::Vault;
use quire::workflow::{self, mission_ops, mission_rebuild, mission_steps, missions};

use crate::cli::MissionAction;

pub(crate) fn run(vault: &Vault, action: MissionAction, json: bool) -> anyhow::Result<ExitCode> {
    // Missions Git keeps that `.quire/` lost are known again before anything is read.
    mission_rebuild::rebuild(vault)?;
    match action {
        MissionAction::Start { file } => start(vault, &file, json),
        MissionAction::List => list(vault, json),
        MissionAction::Status { id } => status(vault, &id, json),
        MissionAction::Logs { id, step, follow } => logs(vault, &id, step.as_deref(), follow),
        MissionAction::Retry { id, from } => acted(vault, &id, json, |sink| {
            mission_ops::retry(vault, &id, from.as_deref(), &decider(vault), sink)
        }),
        MissionAction::Abort { id, reason } => acted(vault, &id, json, |sink| {
            mission_ops::abort(vault, &id, &decider(vault), reason.as_deref(), sink)
        }),
    }
}

/// Prints a step's log; with `follow`, keeps printing until its attempt ends.
fn logs(vault: &Vault, id: &str, step: Option<&str>, follow: bool) -> anyhow::Result<ExitCode> {
    use std::io::{Read as _, Seek as _, Write as _};
    let (attempt, path) = match mission_ops::log_of(vault, id, step)? {
        Err(refusal) => {
            eprintln!("quire: {} ({})", refusal.message, refusal.code);
            return Ok(ExitCode::from(1));
        }
        Ok(None) => {
            eprintln!(
                "quire: mission `{id}` has no attempt{} yet",
                step.map(|s| format!(" of step `{s}`")).unwrap_or_default()
            );
            return Ok(ExitCode::from(1));
        }
        Ok(Some(found)) => found,
    };
    let mut offset = 0u64;
    let mut out = std::io::stdout().lock();
    loop {
        let mut more = Vec::new();
        if let Ok(mut f) = std::fs::File::open(&path) {
            f.seek(std::io::SeekFrom::Start(offset))?;
            f.read_to_end(&mut more)?;
        }
        if !more.is_empty() {
            offset += more.len() as u64;
            out.write_all(&more)?;
            out.flush()?;
            continue;
        }
        if !follow || !mission_ops::still_running(vault, &attempt)? {
            // What it wrote before it ended was read above; one last look for the very end.
            if let Ok(mut f) = std::fs::File::open(&path) {
                f.seek(std::io::SeekFrom::Start(offset))?;
                std::io::copy(&mut f, &mut out)?;
            }
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// Says why `refusal` was refused (on stdout as JSON with `--json`), and fails.
fn refused(refusal: &missions::DecideRefusal, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        output::json(&serde_json::json!({ "error": refusal }))?;
    } else {
        eprintln!("quire: {} ({})", refusal.message, refusal.code);
    }
    Ok(ExitCode::from(1))
}

/// Runs an operator action, carries what it set going (unless a daemon does), and says where the
/// mission stands.
fn acted(
    vault: &Vault,
    id: &str,
    json: bool,
    action: impl FnOnce(
        &mut dyn EventSink,
    ) -> Result<
        Result<quire::missions::MissionState, missions::DecideRefusal>,
        workflow::WorkflowError,
    >,
) -> anyhow::Result<ExitCode> {
    let mut progress = Progress {
        log: JsonlLog::new(vault.logs_dir()),
        quiet: json,
    };
    match action(&mut progress)? {
        Err(refusal) => refused(&refusal, json),
        Ok(_) => {
            carry_here(vault, id, &mut progress)?;
            status(vault, id, json)
        }
    }
}

/// Carries mission `id`'s steps in this process until they wait — unless a daemon runs on the
/// vault, which carries them itself (and is told to look).
fn carry_here(vault: &Vault, id: &str, progress: &mut Progress) -> anyhow::Result<()> {
    if quire::daemon::running(vault) {
        if !progress.quiet {
            eprintln!(
                "The daemon running on this vault carries mission {id}; `quire mission status {id}` shows where it is."
            );
        }
        return Ok(());
    }
    mission_steps::drive(vault, Some(id), true, progress)?;
    mission_ops::sweep(vault, progress)?;
    Ok(())
}

/// Events to the log, and each step's progress to stderr.
struct Progress {
    log: JsonlLog,
    quiet: bool,
}

impl EventSink for Progress {
    fn emit(&mut self, event: Event) {
        if !self.quiet {
            let d = &event.data;
            let at = |k: &str| d[k].as_str().unwrap_or("").to_owned();
            let item = d["item"]
                .as_str()
                .map(|i| format!(" [{i}]"))
                .unwrap_or_default();
            let line = match event.kind.as_str() {
                "mission.step.started" => Some(format!(
                    "▶ {}{item} step {} (round {}, attempt {})",
                    at("mission"),
                    at("step"),
                    d["round"],
                    d["attempt"]
                )),
                "mission.step.succeeded" => Some(format!(
                    "✓ {}{item} step {}: {} in {:.0} ms",
                    at("mission"),
                    at("step"),
                    d["commit"]
                        .as_str()
                        .map_or("nothing to commit".to_owned(), |c| format!(
                            "committed {}",
                            output::short(c)
                        )),
                    d["duration_ms"].as_f64().unwrap_or(0.0)
                )),
                "mission.step.failed" => Some(format!(
                    "✗ {}{item} step {} failed ({})",
                    at("mission"),
                    at("step"),
                    at("class")
                )),
                "mission.step.retrying" => Some(format!(
                    "↻ {}{item} step {}: attempt {} in {} ms",
                    at("mission"),
                    at("step"),
                    d["attempt"],
                    d["after_ms"]
                )),
                "mission.revision.requested" => Some(format!(
                    "↺ {}{item} back to step {} (round {}): {}",
                    at("mission"),
                    at("to"),
                    d["round"],
                    at("reason")
                )),
                "mission.escalated" => Some(format!(
                    "! {}{item} escalated: {} — decide with `quire decide {} retry|abort`",
                    at("mission"),
                    at("why"),
                    at("decision")
                )),
                "decision.requested" if d["kind"] == "round" => Some(format!(
                    "? {}{item} waits for a decision: `quire decide {} approve|reject`",
                    at("mission"),
                    at("id")
                )),
                _ => None,
            };
            if let Some(line) = line {
                eprintln!("{line}");
            }
        }
        self.log.emit(event);
    }
}

fn start(vault: &Vault, file: &std::path::Path, json: bool) -> anyhow::Result<ExitCode> {
    let mut progress = Progress {
        log: JsonlLog::new(vault.logs_dir()),
        quiet: json,
    };
    let report = workflow::apply(vault, &[file.to_owned()], &mut progress, &mut ())?;
    let Some(filed) = report.filed.last() else {
        anyhow::bail!("{} was not taken from the queue; try again", file.display());
    };
    let receipt = &filed.receipt;
    if receipt.status == Status::Rejected {
        if json {
            output::json(&serde_json::json!({ "receipt": receipt }))?;
        } else if let Some(e) = &receipt.error {
            eprintln!("quire: the brief was refused ({}): {}", e.code, e.message);
        }
        return Ok(ExitCode::from(1));
    }
    let id = receipt.id.clone().unwrap_or_default();
    if !json {
        outln!(
            "Mission {id} {}: note {} on main, sandbox mission/{id}.",
            if receipt.status == Status::Duplicate {
                "was accepted before"
            } else {
                "accepted"
            },
            output::short(receipt.commit.as_deref().unwrap_or(""))
        );
    }
    carry_here(vault, &id, &mut progress)?;
    status(vault, &id, json)
}

fn list(vault: &Vault, json: bool) -> anyhow::Result<ExitCode> {
    let list = missions::list(vault)?;
    if json {
        output::json(&serde_json::json!({ "missions": list }))?;
        return Ok(ExitCode::SUCCESS);
    }
    if list.is_empty() {
        outln!(
            "No missions: `quire mission start BRIEF.json`, or drop a brief into contributions/pending/."
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![
        ["MISSION", "STATE", "STEP", "ATTEMPTS", "DECISIONS", "TITLE"]
            .map(String::from)
            .to_vec(),
    ];
    for m in &list {
        let steps: Vec<String> = m
            .runs
            .iter()
            .map(|r| r.step.clone().unwrap_or_else(|| "—".into()))
            .collect();
        rows.push(vec![
            m.id.clone(),
            m.state.to_string(),
            steps.join(", "),
            m.attempts.to_string(),
            m.open_decisions.join(", "),
            m.title.clone(),
        ]);
    }
    output::table(&rows);
    Ok(ExitCode::SUCCESS)
}

fn status(vault: &Vault, id: &str, json: bool) -> anyhow::Result<ExitCode> {
    let Some(status) = missions::status(vault, id)? else {
        anyhow::bail!("no mission `{id}`; `quire mission list` shows them");
    };
    if json {
        output::json(&status)?;
        return Ok(ExitCode::SUCCESS);
    }
    let missions::MissionStatus {
        mission: m,
        attempts,
        decisions,
    } = status;
    outln!("Mission {} — {} ({})", m.id, m.title, m.state);
    let mut rows = vec![
        [
            "STEP", "ROUND", "ATTEMPT", "STATE", "CLASS", "COMMIT", "LOG",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for a in &attempts {
        rows.push(vec![
            match &a.item {
                Some(i) => format!("{} [{i}]", a.step),
                None => a.step.clone(),
            },
            a.round.to_string(),
            a.attempt.to_string(),
            a.state.clone(),
            a.class.clone().unwrap_or_default(),
            output::short(a.commit.as_deref().unwrap_or("")).to_owned(),
            a.log.clone(),
        ]);
    }
    if attempts.is_empty() {
        outln!("No step has run yet.");
    } else {
        output::table(&rows);
    }
    for d in &decisions {
        outln!(
            "Waiting for a decision: {} ({}{}) — `quire decide {} {}`",
            d.id,
            d.kind,
            d.reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default(),
            d.id,
            match d.kind.as_str() {
                "escalation" => "retry|abort",
                "start" => "start|reject",
                _ => "approve|reject",
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn inbox(vault: &Vault, json: bool) -> anyhow::Result<ExitCode> {
    mission_rebuild::rebuild(vault)?;
    let open = missions::inbox(vault)?;
    if json {
        output::json(&serde_json::json!({ "decisions": open }))?;
        return Ok(ExitCode::SUCCESS);
    }
    if open.is_empty() {
        outln!("No decisions are waiting.");
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![
        ["DECISION", "MISSION", "KIND", "COMMIT", "EXPIRES", "WHY"]
            .map(String::from)
            .to_vec(),
    ];
    for d in &open {
        rows.push(vec![
            d.id.clone(),
            d.mission.clone(),
            d.kind.clone(),
            output::short(&d.commit).to_owned(),
            d.expires.get(..16).unwrap_or(&d.expires).to_owned(),
            d.reason.clone().unwrap_or_default(),
        ]);
    }
    output::table(&rows);
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn decide(
    vault: &Vault,
    decision: &str,
    answer: &str,
    reason: Option<&str>,
    commit: Option<&str>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    mission_rebuild::rebuild(vault)?;
    let mut progress = Progress {
        log: JsonlLog::new(vault.logs_dir()),
        quiet: json,
    };
    let by = decider(vault);
    match missions::decide(vault, decision, answer, reason, commit, &by, &mut progress)? {
        Err(refusal) => refused(&refusal, json),
        Ok(decided) => {
            // A start or a retry sets steps going: they run here, as `mission start` runs them.
            if matches!(answer, "start" | "retry") {
                carry_here(vault, &decided.mission, &mut progress)?;
            }
            if json {
                output::json(&decided)?;
                return Ok(ExitCode::SUCCESS);
            }
            outln!(
                "Decision {} answered `{}`{}{}.",
                decided.id,
                decided.answer,
                if decided.again { " (as before)" } else { "" },
                decided
                    .commit
                    .as_deref()
                    .map(|c| format!(": promoted as {}", output::short(c)))
                    .unwrap_or_default()
            );
            status(vault, &decided.mission, false)
        }
    }
}

/// Who is deciding: the vault's Git identity (user.name and user.email), as a commit would carry.
fn decider(vault: &Vault) -> String {
    match quire::git::Repo::open(vault.root()) {
        Ok(repo) => {
            let who = repo.committer();
            format!(
                "{} <{}>",
                who.name().unwrap_or("quire"),
                who.email().unwrap_or("")
            )
        }
        Err(_) => std::env::var("USER").unwrap_or_else(|_| "cli".into()),
    }
}
