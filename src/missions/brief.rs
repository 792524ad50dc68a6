//! The mission contract `quire.mission/1` (SPEC §9.1): bytes in, a validated [`Brief`] out.
//!
//! Like a bundle, a brief is read into typed structs rather than checked against the schema
//! (`schemas/mission.schema.json`, for authors and `quire check`): duplicate keys and unknown fields
//! are refused, and what a pattern cannot say (spans of time, heal rules, step names unique) is
//! checked here. What needs the vault — that `from` names something and that every `uses` is in the
//! operator's catalog — is [`Brief::check_in`].

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::contributions::{ErrorCode, Rejection, is_valid_id, sha256_hex};
use crate::vault::{MissionsConfig, Span};

/// The contract name this version reads.
pub const CONTRACT: &str = "quire.mission/1";

/// A step's timeout when the brief gives none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Revisions a mission may ask for before it escalates, when the brief does not say.
pub const DEFAULT_MAX_REVISIONS: u32 = 3;

/// Most steps in one pipeline.
pub const MAX_STEPS: usize = 100;

/// Most items in one brief.
pub const MAX_ITEMS: usize = 1_000;

/// Longest step name: it is part of every log file's name.
pub const MAX_STEP_NAME: usize = 64;

/// A validated brief.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Brief {
    /// The mission id: its branch is `mission/<id>`.
    pub id: String,
    /// For people (the id when the brief gives none).
    pub title: String,
    /// What the mission is for.
    pub objectives: String,
    /// Free-form constraints; `deadline` (YYYY-MM-DD) becomes the mission note's `due`.
    pub constraints: Map<String, Value>,
    /// The mission's tasks, as written into its note.
    pub tasks: Vec<String>,
    /// What the sandbox starts from: a branch, tag or commit (default `main`).
    pub from: String,
    /// The steps, in order.
    pub pipeline: Vec<Step>,
    /// The campaign case: one sandbox and one pipeline run per item.
    pub items: Option<Vec<String>>,
    /// Whether the end of a round waits for a person.
    pub approval: Approval,
    /// Revisions allowed before the mission escalates.
    pub max_revisions: u32,
}

/// Whether a round's end waits for a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Approval {
    /// A decision is requested and waits for an answer.
    Required,
    /// The round is approved (and promoted) by quire itself.
    Auto,
}

/// What a step may touch, which says whether an interrupted attempt may simply run again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effects {
    /// Nothing outside itself.
    None,
    /// Only the sandbox's work tree (the default): reset and run again.
    Worktree,
    /// The world (a deployment, a message sent): never run again without a decision.
    External,
}

/// One step of a pipeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    /// Its name, unique in the pipeline.
    pub name: String,
    /// What it runs.
    pub command: Command,
    /// How long an attempt may run before it is ended.
    #[serde(serialize_with = "as_span")]
    pub timeout: Duration,
    /// What it may touch.
    pub effects: Effects,
    /// Retries for a failure of any class.
    pub retries: u32,
    /// Retries for failures of given classes.
    pub heal: Vec<HealRule>,
    /// Labels a runner must have to take this step (`"runs_on": ["gpu"]`); empty: any runner,
    /// or the daemon itself when `[missions] local` is on.
    pub runs_on: Vec<String>,
}

/// What a step runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Command {
    /// A command of the operator's catalog, by name: runs without asking.
    Uses(String),
    /// A shell command from the brief: runs only once a token holder said `start` (unless the
    /// operator trusts briefs).
    Run(String),
}

/// Retries for the failures a `when` matches.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealRule {
    /// Which failures.
    pub when: When,
    /// How many retries.
    pub retries: u32,
    /// The first retry's pause (the vault's `[missions] backoff` when `None`).
    #[serde(serialize_with = "as_opt_span")]
    pub backoff: Option<Duration>,
}

/// A class of failure a heal rule matches (SPEC §9.3).
#[derive(Debug, Clone)]
pub enum When {
    /// Exited with this status.
    Exit(i32),
    /// Ended by this signal (`TERM`, `KILL`, … without `SIG`).
    Signal(String),
    /// Ran past its timeout.
    Timeout,
    /// quire or the machine died under it.
    Lost,
    /// This text is in the last 64 KiB of its log.
    LogText(String),
    /// This pattern matches the last 64 KiB of its log.
    LogRegex(regex::Regex),
}

impl PartialEq for When {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

impl std::fmt::Display for When {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            When::Exit(n) => write!(f, "exit:{n}"),
            When::Signal(s) => write!(f, "signal:{s}"),
            When::Timeout => f.write_str("timeout"),
            When::Lost => f.write_str("lost"),
            When::LogText(t) => write!(f, "log:{t}"),
            When::LogRegex(r) => write!(f, "log:/{}/", r.as_str()),
        }
    }
}

impl Serialize for When {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl When {
    /// Reads a `when`; the error says what is accepted.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "`when` is `{}`; write `exit:N`, `signal:NAME`, `timeout`, `lost`, `log:TEXT` or `log:/REGEX/`",
                text.escape_debug()
            )
        };
        match text.split_once(':') {
            None if text == "timeout" => Ok(When::Timeout),
            None if text == "lost" => Ok(When::Lost),
            Some(("exit", n)) => n
                .parse::<u8>()
                .map(|n| When::Exit(i32::from(n)))
                .map_err(|_| bad()),
            Some(("signal", name)) => {
                let name = name.strip_prefix("SIG").unwrap_or(name);
                if super::runner::signal_number(name).is_some() {
                    Ok(When::Signal(name.to_owned()))
                } else {
                    Err(format!(
                        "`when` is `{}`; `{name}` is not a signal this system knows (try TERM, KILL, INT, HUP, SEGV)",
                        text.escape_debug()
                    ))
                }
            }
            Some(("log", pattern))
                if pattern.len() > 2 && pattern.starts_with('/') && pattern.ends_with('/') =>
            {
                regex::RegexBuilder::new(&pattern[1..pattern.len() - 1])
                    .size_limit(1 << 20)
                    .build()
                    .map(When::LogRegex)
                    .map_err(|e| {
                        format!(
                            "`when` is `{}`: the pattern is not valid: {e}",
                            text.escape_debug()
                        )
                    })
            }
            Some(("log", t)) if !t.is_empty() => Ok(When::LogText(t.to_owned())),
            _ => Err(bad()),
        }
    }
}

fn as_span<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    Span(*d).serialize(s)
}

fn as_opt_span<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    d.map(Span).serialize(s)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBrief {
    contract: String,
    id: String,
    title: Option<String>,
    #[serde(default)]
    objectives: String,
    #[serde(default)]
    constraints: Map<String, Value>,
    #[serde(default)]
    tasks: Vec<String>,
    from: Option<String>,
    pipeline: Vec<RawStep>,
    items: Option<Vec<String>>,
    approval: Option<Approval>,
    max_revisions: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    step: String,
    uses: Option<String>,
    run: Option<String>,
    timeout: Option<String>,
    effects: Option<Effects>,
    #[serde(default)]
    retries: u32,
    #[serde(default)]
    heal: Vec<RawHeal>,
    #[serde(default)]
    runs_on: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeal {
    when: String,
    #[serde(default = "one")]
    retries: u32,
    backoff: Option<String>,
}

fn one() -> u32 {
    1
}

fn refuse(code: ErrorCode, message: impl Into<String>) -> Rejection {
    Rejection::new(code, message)
}

fn invalid(message: impl Into<String>) -> Rejection {
    refuse(ErrorCode::InvalidBrief, message)
}

/// Whether `name` may name a step: it becomes part of log file names (`<step>.<round>.<attempt>.log`).
fn is_step_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_STEP_NAME
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
}

/// Whether `id` can be carried by a branch `mission/<id>` and a folder of the same name.
fn is_branch_safe(id: &str) -> bool {
    is_valid_id(id)
        && !id.contains("..")
        && !id.ends_with('.')
        && !id.ends_with(".lock")
        && crate::git::Repo::is_valid_branch_name(&format!("mission/{id}"))
}

impl Brief {
    /// Reads and validates a brief. The rejection names the field (and step) at fault and what
    /// to write instead.
    pub fn parse(bytes: &[u8]) -> Result<Self, Rejection> {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| refuse(ErrorCode::InvalidJson, "the brief is not UTF-8 text"))?;
        let raw: RawBrief = serde_json::from_str(text).map_err(|e| {
            if e.is_syntax() || e.is_eof() {
                refuse(
                    ErrorCode::InvalidJson,
                    format!("the brief is not valid JSON: {e}"),
                )
            } else {
                invalid(format!(
                    "the brief does not follow {CONTRACT}: {e}; see schemas/mission.schema.json"
                ))
            }
        })?;
        if raw.contract != CONTRACT {
            return Err(invalid(format!(
                "`contract` is `{}`; a mission brief says `{CONTRACT}`",
                raw.contract.escape_debug()
            )));
        }
        if !is_branch_safe(&raw.id) {
            return Err(refuse(
                ErrorCode::InvalidId,
                format!(
                    "`id` is `{}`; a mission id starts with a letter or digit, holds only letters, digits, `.`, `_` and `-` (no `..`, not ending in `.` or `.lock`), at most 128 characters",
                    raw.id.escape_debug()
                ),
            ));
        }
        if raw.pipeline.is_empty() {
            return Err(refuse(
                ErrorCode::EmptyPipeline,
                "`pipeline` has no steps; a mission runs at least one",
            ));
        }
        if raw.pipeline.len() > MAX_STEPS {
            return Err(invalid(format!(
                "`pipeline` has {} steps; at most {MAX_STEPS}",
                raw.pipeline.len()
            )));
        }
        let mut names = BTreeSet::new();
        let mut pipeline = Vec::with_capacity(raw.pipeline.len());
        for (i, s) in raw.pipeline.into_iter().enumerate() {
            pipeline.push(step(i, s, &mut names)?);
        }
        let items = match raw.items {
            Some(items) => Some(check_items(&raw.id, items)?),
            None => None,
        };
        if let Some(d) = raw.constraints.get("deadline")
            && d.as_str()
                .is_none_or(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").is_err())
        {
            return Err(invalid(format!(
                "`constraints.deadline` is {d}; write a date, YYYY-MM-DD"
            )));
        }
        if let Some(t) = raw
            .tasks
            .iter()
            .find(|t| t.contains('\n') || t.trim().is_empty())
        {
            return Err(invalid(format!(
                "the task `{}` is empty or spans lines; each task is one line",
                t.escape_debug()
            )));
        }
        let title = raw.title.unwrap_or_else(|| raw.id.clone());
        if title.contains('\n') {
            return Err(invalid("`title` spans lines; it is one line"));
        }
        Ok(Self {
            title,
            objectives: raw.objectives,
            constraints: raw.constraints,
            tasks: raw.tasks,
            from: raw.from.unwrap_or_else(|| "main".to_owned()),
            pipeline,
            items,
            approval: raw.approval.unwrap_or(Approval::Required),
            max_revisions: raw.max_revisions.unwrap_or(DEFAULT_MAX_REVISIONS),
            id: raw.id,
        })
    }

    /// Checks what needs the vault: missions are on, every `uses` is in the operator's catalog,
    /// and `from` names a branch, tag or commit of `repo`.
    pub fn check_in(
        &self,
        config: &MissionsConfig,
        repo: &crate::git::Repo,
    ) -> Result<(), Rejection> {
        if !config.enabled {
            return Err(refuse(
                ErrorCode::MissionsDisabled,
                "missions are turned off in this vault (`[missions] enabled = false` in quire.toml); nothing of this brief runs",
            ));
        }
        for s in &self.pipeline {
            if let Command::Uses(name) = &s.command
                && !config.commands.contains_key(name)
            {
                let known: Vec<&str> = config.commands.keys().map(String::as_str).collect();
                return Err(refuse(
                    ErrorCode::UnknownCommand,
                    format!(
                        "step `{}` uses `{name}`, which the operator's catalog (`[missions.commands]` in quire.toml) does not have; it has: {}",
                        s.name,
                        if known.is_empty() {
                            "nothing".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ),
                ));
            }
        }
        if repo.resolve_commit(&self.from).is_none() {
            return Err(refuse(
                ErrorCode::UnknownRef,
                format!(
                    "`from` is `{}`, which names no branch, tag or commit of the vault",
                    self.from.escape_debug()
                ),
            ));
        }
        Ok(())
    }

    /// Whether some step runs a command the brief brought (`run`) rather than one of the
    /// operator's (`uses`): such a brief waits for a `start` decision unless briefs are trusted.
    pub fn runs_its_own_commands(&self) -> bool {
        self.pipeline
            .iter()
            .any(|s| matches!(s.command, Command::Run(_)))
    }

    /// A digest of what the brief says (not of its bytes: the same brief re-sent with other
    /// spacing or key order is the same brief).
    pub fn digest(&self) -> String {
        sha256_hex(&serde_json::to_vec(self).unwrap_or_default())
    }

    /// The step named `name`, with its index.
    pub fn step(&self, name: &str) -> Option<(usize, &Step)> {
        self.pipeline
            .iter()
            .enumerate()
            .find(|(_, s)| s.name == name)
    }
}

fn step(i: usize, s: RawStep, names: &mut BTreeSet<String>) -> Result<Step, Rejection> {
    let at = |m: String| invalid(format!("step {i} (`{}`): {m}", s.step.escape_debug()));
    if !is_step_name(&s.step) {
        return Err(at(format!(
            "a step name starts with a letter or digit and holds only letters, digits, `_` and `-`, at most {MAX_STEP_NAME} characters"
        )));
    }
    if !names.insert(s.step.clone()) {
        return Err(refuse(
            ErrorCode::DuplicateStep,
            format!(
                "two steps are named `{}`; step names are unique in a pipeline",
                s.step
            ),
        ));
    }
    let command = match (&s.uses, &s.run) {
        (Some(u), None) if !u.trim().is_empty() => Command::Uses(u.clone()),
        (None, Some(r)) if !r.trim().is_empty() => Command::Run(r.clone()),
        (Some(_), Some(_)) => return Err(at("give `uses` or `run`, not both".into())),
        _ => {
            return Err(at(
                "give `uses` (a command of the operator's catalog) or `run` (a shell command)"
                    .into(),
            ));
        }
    };
    if let Command::Run(r) = &command
        && r.contains('\0')
    {
        return Err(at("`run` contains a NUL character".into()));
    }
    let span = |field: &str, text: &str| {
        Span::parse(text).map(Span::duration).map_err(|e| {
            refuse(
                ErrorCode::InvalidTimeout,
                format!("step {i} (`{}`): `{field}`: {e}", s.step),
            )
        })
    };
    let timeout = match &s.timeout {
        Some(t) => span("timeout", t)?,
        None => DEFAULT_TIMEOUT,
    };
    if timeout.is_zero() {
        return Err(refuse(
            ErrorCode::InvalidTimeout,
            format!(
                "step {i} (`{}`): `timeout` is zero; give it time to run",
                s.step
            ),
        ));
    }
    let mut heal = Vec::with_capacity(s.heal.len());
    for h in &s.heal {
        heal.push(HealRule {
            when: When::parse(&h.when).map_err(at)?,
            retries: h.retries,
            backoff: h
                .backoff
                .as_deref()
                .map(|b| span("backoff", b))
                .transpose()?,
        });
    }
    for label in &s.runs_on {
        if !valid_label(label) {
            return Err(at(format!(
                "`runs_on` has {label:?}; a label is 1 to 64 letters, digits, `-`, `_` or `.`"
            )));
        }
    }
    let mut runs_on = s.runs_on.clone();
    runs_on.sort();
    runs_on.dedup();
    Ok(Step {
        command,
        timeout,
        effects: s.effects.unwrap_or(Effects::Worktree),
        retries: s.retries,
        heal,
        runs_on,
        name: s.step,
    })
}

/// Whether `label` may name a runner's capability (`linux`, `gpu`, `arm64`).
pub fn valid_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 64
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn check_items(id: &str, items: Vec<String>) -> Result<Vec<String>, Rejection> {
    if items.is_empty() || items.len() > MAX_ITEMS {
        return Err(invalid(format!(
            "`items` has {} entries; give between 1 and {MAX_ITEMS}, or leave it out",
            items.len()
        )));
    }
    let mut seen = BTreeSet::new();
    for item in &items {
        if !is_branch_safe(&format!("{id}.{item}")) || item.contains('.') {
            return Err(refuse(
                ErrorCode::InvalidId,
                format!(
                    "item `{}` cannot name a sandbox (`mission/{id}.<item>`): an item starts with a letter or digit and holds only letters, digits, `_` and `-`",
                    item.escape_debug()
                ),
            ));
        }
        if !seen.insert(item.as_str()) {
            return Err(invalid(format!("item `{item}` is listed twice")));
        }
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn brief(pipeline: Value) -> Value {
        json!({ "contract": CONTRACT, "id": "m-1", "title": "Moon", "pipeline": pipeline })
    }

    fn parse(v: &Value) -> Result<Brief, Rejection> {
        Brief::parse(&serde_json::to_vec(v).unwrap())
    }

    #[test]
    fn the_example_of_the_spec_reads_with_its_defaults() {
        let b = parse(&json!({
            "contract": "quire.mission/1",
            "id": "mobile-app-001",
            "title": "Mobile app",
            "objectives": "Build a cross-platform app with offline sync.",
            "constraints": { "deadline": "2026-12-15", "platforms": ["iOS", "Android"] },
            "tasks": ["Write the sync spec", "Pick a framework"],
            "from": "main",
            "pipeline": [
                { "step": "plan", "uses": "plan", "timeout": "10m" },
                { "step": "implement", "run": "vibe run --prompt-file plan.md", "effects": "external",
                  "heal": [ { "when": "exit:75", "retries": 3 }, { "when": "log:rate limit", "retries": 5, "backoff": "30s" } ] },
                { "step": "test", "run": "cargo test", "retries": 1 }
            ],
            "items": null,
            "approval": "required"
        }))
        .unwrap();
        assert_eq!(b.pipeline.len(), 3);
        assert_eq!(b.pipeline[0].timeout, Duration::from_secs(600));
        assert_eq!(b.pipeline[0].command, Command::Uses("plan".into()));
        assert_eq!(b.pipeline[1].effects, Effects::External);
        assert_eq!(b.pipeline[1].heal[0].when, When::Exit(75));
        assert_eq!(b.pipeline[1].heal[1].backoff, Some(Duration::from_secs(30)));
        assert_eq!(b.pipeline[2].timeout, DEFAULT_TIMEOUT);
        assert_eq!(b.pipeline[2].effects, Effects::Worktree);
        assert_eq!(b.pipeline[2].retries, 1);
        assert_eq!((b.approval, b.max_revisions), (Approval::Required, 3));
        assert!(b.runs_its_own_commands());
    }

    #[test]
    fn the_same_brief_written_differently_has_the_same_digest() {
        let a =
            br#"{"contract":"quire.mission/1","id":"m","pipeline":[{"step":"a","run":"true"}]}"#;
        let b = b"{ \"pipeline\": [ { \"run\": \"true\", \"step\": \"a\" } ],\n \"id\": \"m\", \"contract\": \"quire.mission/1\" }";
        let c =
            br#"{"contract":"quire.mission/1","id":"m","pipeline":[{"step":"a","run":"false"}]}"#;
        let d = |x: &[u8]| Brief::parse(x).unwrap().digest();
        assert_eq!(d(a), d(b));
        assert_ne!(d(a), d(c));
    }

    #[test]
    fn every_refusal_has_its_code_and_names_the_fault() {
        let ok_step = json!({ "step": "a", "run": "true" });
        let cases: Vec<(Value, ErrorCode, &str)> = vec![
            (
                json!({ "contract": CONTRACT, "id": "m", "pipeline": [] }),
                ErrorCode::EmptyPipeline,
                "no steps",
            ),
            (
                brief(json!([ok_step, ok_step])),
                ErrorCode::DuplicateStep,
                "`a`",
            ),
            (
                json!({ "contract": CONTRACT, "id": "a..b", "pipeline": [ok_step] }),
                ErrorCode::InvalidId,
                "a..b",
            ),
            (
                json!({ "contract": CONTRACT, "id": "x.lock", "pipeline": [ok_step] }),
                ErrorCode::InvalidId,
                "x.lock",
            ),
            (
                json!({ "contract": CONTRACT, "id": "-x", "pipeline": [ok_step] }),
                ErrorCode::InvalidId,
                "-x",
            ),
            (
                brief(json!([{ "step": "a", "run": "true", "timeout": "soon" }])),
                ErrorCode::InvalidTimeout,
                "soon",
            ),
            (
                brief(json!([{ "step": "a", "run": "true", "timeout": "0s" }])),
                ErrorCode::InvalidTimeout,
                "zero",
            ),
            (
                brief(
                    json!([{ "step": "a", "run": "x", "heal": [{ "when": "timeout", "backoff": "1 week" }] }]),
                ),
                ErrorCode::InvalidTimeout,
                "1 week",
            ),
            (
                brief(json!([{ "step": "a" }])),
                ErrorCode::InvalidBrief,
                "`uses`",
            ),
            (
                brief(json!([{ "step": "a", "run": "x", "uses": "y" }])),
                ErrorCode::InvalidBrief,
                "not both",
            ),
            (
                brief(json!([{ "step": "a.b", "run": "x" }])),
                ErrorCode::InvalidBrief,
                "a.b",
            ),
            (
                brief(json!([{ "step": "a", "run": "x", "retires": 2 }])),
                ErrorCode::InvalidBrief,
                "retires",
            ),
            (
                brief(json!([{ "step": "a", "run": "x", "effects": "some" }])),
                ErrorCode::InvalidBrief,
                "some",
            ),
            (
                brief(json!([{ "step": "a", "run": "x", "heal": [{ "when": "exit:300" }] }])),
                ErrorCode::InvalidBrief,
                "exit:300",
            ),
            (
                brief(json!([{ "step": "a", "run": "x", "heal": [{ "when": "signal:NOPE" }] }])),
                ErrorCode::InvalidBrief,
                "NOPE",
            ),
            (
                brief(json!([{ "step": "a", "run": "x", "heal": [{ "when": "log:/(/" }] }])),
                ErrorCode::InvalidBrief,
                "pattern",
            ),
            (
                brief(json!([{ "step": "a", "run": "x", "heal": [{ "when": "sometimes" }] }])),
                ErrorCode::InvalidBrief,
                "sometimes",
            ),
            (
                json!({ "contract": "quire.mission/2", "id": "m", "pipeline": [ok_step] }),
                ErrorCode::InvalidBrief,
                "quire.mission/2",
            ),
            (
                json!({ "contract": CONTRACT, "id": "m", "pipeline": [ok_step], "items": ["a.b"] }),
                ErrorCode::InvalidId,
                "a.b",
            ),
            (
                json!({ "contract": CONTRACT, "id": "m", "pipeline": [ok_step], "items": ["a", "a"] }),
                ErrorCode::InvalidBrief,
                "twice",
            ),
            (
                json!({ "contract": CONTRACT, "id": "m", "pipeline": [ok_step], "items": [] }),
                ErrorCode::InvalidBrief,
                "items",
            ),
            (
                json!({ "contract": CONTRACT, "id": "m", "pipeline": [ok_step], "constraints": { "deadline": "soon" } }),
                ErrorCode::InvalidBrief,
                "deadline",
            ),
            (
                json!({ "contract": CONTRACT, "id": "m", "pipeline": [ok_step], "tasks": ["a\nb"] }),
                ErrorCode::InvalidBrief,
                "one line",
            ),
        ];
        for (v, want, says) in cases {
            let r = parse(&v).unwrap_err();
            assert_eq!(r.code, want, "{v}: {r}");
            assert!(r.message.contains(says), "{v}: {r}");
        }
        assert_eq!(
            Brief::parse(b"{ nope").unwrap_err().code,
            ErrorCode::InvalidJson
        );
        assert_eq!(
            Brief::parse(b"\xff").unwrap_err().code,
            ErrorCode::InvalidJson
        );
        let dup = br#"{"contract":"quire.mission/1","id":"a","id":"b","pipeline":[{"step":"a","run":"x"}]}"#;
        assert_eq!(Brief::parse(dup).unwrap_err().code, ErrorCode::InvalidBrief);
        let b = parse(&brief(
            json!([{ "step": "a", "run": "x", "heal": [{ "when": "log:/rate (limit|cap)/" }] }]),
        ))
        .unwrap();
        assert_eq!(
            b.pipeline[0].heal[0].when.to_string(),
            "log:/rate (limit|cap)/"
        );
    }

    #[test]
    fn the_vault_refuses_what_it_cannot_run() {
        let (_dir, vault) = crate::workflow::temp_vault();
        let repo = crate::git::Repo::open(vault.root()).unwrap();
        let mut config = MissionsConfig::default();
        config.commands.insert("plan".into(), "true".into());
        let uses = |name: &str| parse(&brief(json!([{ "step": "a", "uses": name }]))).unwrap();
        assert!(uses("plan").check_in(&config, &repo).is_ok());
        assert!(!uses("plan").runs_its_own_commands());
        let r = uses("build").check_in(&config, &repo).unwrap_err();
        assert_eq!(r.code, ErrorCode::UnknownCommand);
        assert!(
            r.message.contains("build") && r.message.contains("plan"),
            "{r}"
        );
        let mut b = uses("plan");
        b.from = "nowhere".into();
        assert_eq!(
            b.check_in(&config, &repo).unwrap_err().code,
            ErrorCode::UnknownRef
        );
        config.enabled = false;
        assert_eq!(
            uses("plan").check_in(&config, &repo).unwrap_err().code,
            ErrorCode::MissionsDisabled
        );
    }
}
