//! `quire demo`: a vault with sample notes, missions and tasks, and a queue of sample bundles that
//! shows every outcome (applied, duplicate, rejected), applied through the real pipeline.
//!
//! The sample notes arrive as a bundle too, so the tour exercises the same path a contribution takes.
//! Dates in the samples are written relative to today (`{{date:+3}}`), so agenda and calendar views
//! always have something overdue, due today and upcoming.

use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use serde_json::json;

use super::{ApplyObserver, ApplyReport, InitReport, WorkflowError, apply, init};
use crate::contributions::CONTRACT;
use crate::events::EventSink;
use crate::vault::{CONFIG_FILE, Queue, Vault, fsutil};

/// The id of the bundle that brings the sample notes.
pub const SEED_ID: &str = "demo-seed-notes";

/// What `demo` did.
#[derive(Debug, Clone)]
pub struct DemoReport {
    /// The vault's root.
    pub root: PathBuf,
    /// `Some` when the vault was created by this run (`None`: an earlier demo vault was reused).
    pub init: Option<InitReport>,
    /// The sample bundles' outcomes, the seed first.
    pub apply: ApplyReport,
    /// The sites rendered from the result, one per built-in theme.
    pub sites: Vec<crate::render::RenderReport>,
    /// The demo mission's promotion from its sandbox into main.
    pub promotion: super::sandbox::Outcome,
    /// The missions that ran their steps by themselves: the first approved, the second waiting.
    pub missions: Vec<DemoMission>,
}

/// A demo mission that ran its pipeline.
#[derive(Debug, Clone)]
pub struct DemoMission {
    /// Its id.
    pub id: String,
    /// The steps it ran.
    pub steps: usize,
    /// Its round's decision.
    pub decision: String,
    /// Where it stands.
    pub state: crate::missions::MissionState,
    /// The promotion commit, for the one approved.
    pub promoted: Option<String>,
}

/// The operator's catalog the demo missions use: steps that visibly write in their sandbox.
const DEMO_CATALOG: &str = r#"
# The demo's mission steps: commands briefs may name ("uses") without asking.
[missions.commands]
outline = "mkdir -p 03_NOTES/missions && printf '# %s: outline\\n\\n- Why it matters\\n- Three points\\n- What to do next\\n' \"$QUIRE_MISSION\" > \"03_NOTES/missions/$QUIRE_MISSION.md\" && echo \"outlined $QUIRE_MISSION\""
draft = "printf '\\nA first draft, written by the mission step `%s` (attempt %s).\\n' \"$QUIRE_STEP\" \"$QUIRE_ATTEMPT\" >> \"03_NOTES/missions/$QUIRE_MISSION.md\" && echo drafted"
review = "grep -q 'first draft' \"03_NOTES/missions/$QUIRE_MISSION.md\" && echo 'review passed'"
"#;

/// The demo's mission briefs: the first is approved by the demo, the second left for the user.
const DEMO_MISSIONS: [(&str, &str); 2] = [
    ("newsletter-001", "December newsletter"),
    ("garden-plan-002", "Plan the spring garden"),
];

/// The demo mission that works in a sandbox and is promoted.
pub const DEMO_SANDBOX: &str = "mobile-app-001";

/// The themes the demo renders: the reading theme and the dashboard.
pub const DEMO_THEMES: [&str; 2] = ["paper", "desk"];

/// Creates (or reuses) the demo vault at `dir`, drops the sample bundles and applies them.
pub fn demo(
    dir: &Path,
    today: NaiveDate,
    events: &mut dyn EventSink,
    observer: &mut dyn ApplyObserver,
) -> Result<DemoReport, WorkflowError> {
    let init_report = if dir.join(CONFIG_FILE).is_file() {
        None
    } else {
        Some(init(dir)?)
    };
    let vault = Vault::open(dir)?;
    vault
        .ensure_work_dirs()
        .map_err(|e| WorkflowError::io("could not create the vault's work folders", e))?;
    let pending = vault.queue_dir(Queue::Pending);
    show_both_themes(&vault)?;
    // Read again: the configuration names both themes now.
    let vault = Vault::open(vault.root())?;

    let seed = seed_bundle(today);
    let seed_path = fsutil::free_name(&pending, "01-seed-notes", ".json");
    let text = serde_json::to_vec_pretty(&seed).map_err(|e| {
        WorkflowError::io("could not write the seed bundle", std::io::Error::other(e))
    })?;
    fsutil::atomic_write(&seed_path, &text, false)
        .map_err(|e| WorkflowError::io("could not drop the seed bundle", e))?;
    let mut report = apply(&vault, &[seed_path], events, observer)?;

    let mut dropped = Vec::new();
    for (name, bytes) in crate::embedded::DEMO
        .iter()
        .filter(|(n, _)| n.starts_with("bundles/"))
    {
        let stem = name
            .trim_start_matches("bundles/")
            .trim_end_matches(".json");
        let text = expand_dates(&String::from_utf8_lossy(bytes), today);
        let dest = fsutil::free_name(&pending, stem, ".json");
        fsutil::atomic_write(&dest, text.as_bytes(), false)
            .map_err(|e| WorkflowError::io("could not drop a sample bundle", e))?;
        dropped.push(dest);
    }
    // Named explicitly so they apply in their numbered order.
    let rest = apply(&vault, &dropped, events, observer)?;
    report.filed.extend(rest.filed);

    // The mission then works in its own sandbox and is promoted into main as one merge commit;
    // its record is what the desk dashboard lists under recent runs.
    let repo = crate::git::Repo::open(vault.root())?;
    if repo
        .branch_tip(&super::sandbox::branch_of(DEMO_SANDBOX))?
        .is_none()
    {
        super::sandbox::create(&vault, DEMO_SANDBOX, None, true, events)?;
    }
    let mut work = Vec::new();
    for (name, bytes) in crate::embedded::DEMO
        .iter()
        .filter(|(n, _)| n.starts_with("sandbox/"))
    {
        let stem = name
            .trim_start_matches("sandbox/")
            .trim_end_matches(".json");
        let text = expand_dates(&String::from_utf8_lossy(bytes), today);
        let dest = fsutil::free_name(&pending, stem, ".json");
        fsutil::atomic_write(&dest, text.as_bytes(), false)
            .map_err(|e| WorkflowError::io("could not drop a sample bundle", e))?;
        work.push(dest);
    }
    let sandboxed = apply(&vault, &work, events, observer)?;
    report.filed.extend(sandboxed.filed);
    let promotion = super::sandbox::promote(&vault, DEMO_SANDBOX, events)?;
    let missions = run_missions(&vault, today, events, observer)?;
    let content = crate::render::Content::work_tree(&vault)?;
    let themes: Vec<String> = DEMO_THEMES.iter().map(|t| (*t).to_owned()).collect();
    let sites = crate::render::render(
        &content,
        &themes,
        &vault.root().join(crate::render::SITE_DIR),
        &crate::render::Quiet,
    )?;
    Ok(DemoReport {
        root: vault.root().to_path_buf(),
        init: init_report,
        apply: report,
        sites,
        promotion,
        missions,
    })
}

/// Gives the vault the demo's command catalog, then accepts the demo briefs, carries each through
/// its steps, and approves the first one's decision, as `quire decide` would.
fn run_missions(
    vault: &Vault,
    today: NaiveDate,
    events: &mut dyn EventSink,
    observer: &mut dyn ApplyObserver,
) -> Result<Vec<DemoMission>, WorkflowError> {
    if !vault.config().missions.commands.contains_key("outline") {
        let text = std::fs::read_to_string(vault.root().join(CONFIG_FILE))
            .map_err(|e| WorkflowError::io("could not read quire.toml", e))?;
        operator_commit(
            vault,
            format!("{}\n{DEMO_CATALOG}", text.trim_end()),
            "Demo: the commands mission steps may use",
        )?;
    }
    let vault = Vault::open(vault.root())?;
    let pending = vault.queue_dir(Queue::Pending);
    let mut out = Vec::new();
    for (n, (id, title)) in DEMO_MISSIONS.iter().enumerate() {
        let brief = json!({
            "contract": crate::missions::brief::CONTRACT,
            "id": id,
            "title": title,
            "objectives": "Show a mission carried by quire: each step writes in the sandbox, quire commits it, and a person decides.",
            "constraints": { "deadline": (today + chrono::Duration::days(14)).format("%Y-%m-%d").to_string() },
            "tasks": ["Read the outline", "Share it"],
            "pipeline": [
                { "step": "outline", "uses": "outline" },
                { "step": "draft", "uses": "draft" },
                { "step": "review", "uses": "review" }
            ],
        });
        let path = fsutil::free_name(&pending, &format!("{:02}-brief-{id}", 90 + n), ".json");
        let text = serde_json::to_vec_pretty(&brief).map_err(|e| {
            WorkflowError::io("could not write a demo brief", std::io::Error::other(e))
        })?;
        fsutil::atomic_write(&path, &text, false)
            .map_err(|e| WorkflowError::io("could not drop a demo brief", e))?;
        apply(&vault, &[path], events, observer)?;
        super::mission_steps::drive(&vault, Some(id), true, events)?;
        let decision = format!("{id}.r1");
        let mut promoted = None;
        if n == 0
            && let Ok(done) = super::missions::decide(
                &vault,
                &decision,
                "approve",
                Some("approved by the demo"),
                None,
                "quire demo",
                events,
            )?
        {
            promoted = done.commit;
        }
        let state = crate::missions::Store::open(&vault.state_dir())?
            .mission(id)?
            .map_or(crate::missions::MissionState::Queued, |m| m.state);
        out.push(DemoMission {
            id: (*id).to_owned(),
            steps: 3,
            decision,
            state,
            promoted,
        });
    }
    Ok(out)
}

/// Makes both built-in themes the vault's sites, so the daemon keeps the dashboard current too. The
/// demo does it as the vault's operator, with a commit of its own: quire.toml is not a bundle's to
/// change.
fn show_both_themes(vault: &Vault) -> Result<(), WorkflowError> {
    if vault.config().site.themes.iter().any(|t| t == "desk") {
        return Ok(());
    }
    let text = std::fs::read_to_string(vault.root().join(CONFIG_FILE))
        .map_err(|e| WorkflowError::io("could not read quire.toml", e))?;
    // The template's line, edited in place so its comments stay; any other file is rewritten.
    let text = if text.contains("themes = [\"paper\"]") {
        text.replacen("themes = [\"paper\"]", "themes = [\"paper\", \"desk\"]", 1)
    } else {
        let mut doc: toml::Table =
            toml::from_str(&text).map_err(|e| WorkflowError::Input(format!("quire.toml: {e}")))?;
        let site = doc
            .entry("site")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let Some(site) = site.as_table_mut() {
            site.insert(
                "themes".into(),
                toml::Value::Array(DEMO_THEMES.iter().map(|t| (*t).into()).collect()),
            );
        }
        doc.to_string()
    };
    operator_commit(vault, text, "Demo: render the dashboard theme too")
}

/// Commits `text` as quire.toml onto main, as the vault's operator (no bundle may change it).
fn operator_commit(vault: &Vault, text: String, message: &str) -> Result<(), WorkflowError> {
    let path = crate::vault::VaultPath::new(CONFIG_FILE)
        .map_err(|e| WorkflowError::Input(e.to_string()))?;
    let mut changes = crate::vault::ChangeSet::new();
    changes.write(path, crate::vault::FileContent::new(text.into_bytes()));
    let main = vault.config().git.main.clone();
    let repo = crate::git::Repo::open(vault.root())?;
    let tip = repo.branch_tip(&main)?;
    let committer = repo.committer();
    let (commit, files) =
        repo.write_commit(&main, tip, &changes, &committer, &committer, message)?;
    repo.swap_branch(&main, tip, commit, &format!("quire demo: {message}"))?;
    if let Some(mut checkout) = repo.checkout_of(&main)? {
        checkout.sync(&repo, &files)?;
        checkout.flush(&repo)?;
    }
    Ok(())
}

/// The bundle creating every sample note.
fn seed_bundle(today: NaiveDate) -> serde_json::Value {
    let mut changes: Vec<serde_json::Value> = Vec::new();
    let notes: Vec<serde_json::Value> = crate::embedded::DEMO
        .iter()
        .filter_map(|(name, bytes)| {
            let path = name.strip_prefix("notes/")?;
            Some(json!({
                "op": "create",
                "path": path,
                "content": expand_dates(&String::from_utf8_lossy(bytes), today),
            }))
        })
        .collect();
    changes.extend(notes);
    json!({
        "contract": CONTRACT,
        "id": SEED_ID,
        "author": { "name": "quire demo", "email": "demo@quire.invalid" },
        "message": "Add the demo notes",
        "changes": changes,
    })
}

/// Replaces `{{date:+N}}` / `{{date:-N}}` with the date N days from `today` (ISO 8601).
pub fn expand_dates(text: &str, today: NaiveDate) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("{{date:") {
        out.push_str(&rest[..i]);
        let after = &rest[i + "{{date:".len()..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[i..]);
            return out;
        };
        match after[..end].trim().parse::<i64>() {
            Ok(days) => {
                let d = today + chrono::Duration::days(days);
                out.push_str(&d.format("%Y-%m-%d").to_string());
            }
            Err(_) => out.push_str(&rest[i..i + "{{date:".len() + end + 2]),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_expand_relative_to_today() {
        let today = NaiveDate::from_ymd_opt(2026, 11, 21).unwrap();
        assert_eq!(
            expand_dates("a {{date:+10}} b {{date:-21}} {{date:x}}", today),
            "a 2026-12-01 b 2026-10-31 {{date:x}}"
        );
    }

    #[test]
    fn seed_bundle_is_a_valid_bundle() {
        let today = NaiveDate::from_ymd_opt(2026, 11, 21).unwrap();
        let text = serde_json::to_vec(&seed_bundle(today)).unwrap();
        let b = crate::contributions::Bundle::parse(&text, &Default::default()).unwrap();
        assert!(b.changes.len() >= 5);
    }
}
