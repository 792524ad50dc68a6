//! The mission note, `01_MISSIONS/<id>/mission.md`: what a person reads of a mission on main.
//! Front matter `id`, `title`, `status`, `due` (from `constraints.deadline`) and `approval`; the
//! body has the objectives, the constraints, the mission's tasks and its pipeline as task lists.

use serde_json::{Map, Value, json};

use super::{Brief, Command, MissionState};
use crate::markdown::yaml;

/// The vault path of mission `id`'s note.
pub fn path(id: &str) -> String {
    format!("{}/{id}/mission.md", crate::index::MISSIONS_DIR)
}

/// The note for a newly accepted brief.
pub fn text(brief: &Brief, state: MissionState) -> String {
    let mut front = Map::new();
    front.insert("id".into(), json!(brief.id));
    front.insert("title".into(), json!(brief.title));
    front.insert("status".into(), json!(state.as_str()));
    if let Some(due) = brief.constraints.get("deadline") {
        front.insert("due".into(), due.clone());
    }
    front.insert("approval".into(), json!(brief.approval));
    // Only strings and plain values: the brief is already validated, so this cannot fail; if it
    // ever did, the note still says what the mission is.
    let yaml = yaml::to_string(&Value::Object(front)).unwrap_or_default();
    let mut body = format!("---\n{yaml}---\n\n# {}\n", one_line(&brief.title));
    if !brief.objectives.trim().is_empty() {
        body.push_str(&format!(
            "\n## Objectives\n\n{}\n",
            brief.objectives.trim_end()
        ));
    }
    if !brief.constraints.is_empty() {
        body.push_str("\n## Constraints\n\n");
        for (k, v) in &brief.constraints {
            let shown = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            body.push_str(&format!("- {k}: {}\n", one_line(&shown)));
        }
    }
    if !brief.tasks.is_empty() {
        body.push_str("\n## Tasks\n\n");
        for t in &brief.tasks {
            body.push_str(&format!("- [ ] {}\n", one_line(t)));
        }
    }
    body.push_str("\n## Pipeline\n\n");
    for s in &brief.pipeline {
        let what = match &s.command {
            Command::Uses(name) => format!("uses `{name}`"),
            Command::Run(run) => format!("runs `{}`", one_line(run).replace('`', "'")),
        };
        // Pipeline steps are listed, not tracked: `[-]`-free plain items, so the mission's own
        // task counts stay those of its tasks.
        body.push_str(&format!("- {} — {what}\n", s.name));
    }
    if let Some(items) = &brief.items {
        body.push_str("\n## Items\n\n");
        for i in items {
            body.push_str(&format!("- {i}\n"));
        }
    }
    body
}

/// Whether every task of a mission note is done (a note with none has nothing left to do). Only
/// task list items count: the pipeline and items are plain list items.
pub fn tasks_done(text: &str) -> bool {
    !text.lines().any(|l| {
        let t = l.trim_start();
        let rest = t
            .strip_prefix("- ")
            .or_else(|| t.strip_prefix("* "))
            .or_else(|| t.strip_prefix("+ "));
        rest.and_then(|r| r.strip_prefix('['))
            .and_then(|r| r.chars().next().zip(r.get(1..)))
            .is_some_and(|(c, r)| r.starts_with(']') && matches!(c, ' ' | '/'))
    })
}

/// The note with `status` in its front matter set to `state`; `None` when it says so already or
/// has no `status` line to change (a person rewrote it: quire leaves it alone).
pub fn with_status(text: &str, state: MissionState) -> Option<String> {
    let body = text.strip_prefix("---\n")?;
    let end = body.find("\n---")?;
    let front = &body[..end];
    let mut out = String::with_capacity(text.len() + 16);
    out.push_str("---\n");
    let mut changed = false;
    let mut seen = false;
    for line in front.split_inclusive('\n') {
        if !seen && let Some(old) = line.strip_prefix("status:") {
            seen = true;
            if old.trim().trim_matches(['"', '\'']) != state.as_str() {
                changed = true;
                out.push_str(&format!("status: {}", state.as_str()));
                if line.ends_with('\n') {
                    out.push('\n');
                }
                continue;
            }
        }
        out.push_str(line);
    }
    out.push_str(&body[end..]);
    changed.then_some(out)
}

/// Text kept to one line (a brief's strings are free text).
fn one_line(s: &str) -> String {
    s.split(['\r', '\n']).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_line_changes_alone_and_tasks_done_counts_only_task_items() {
        let text = "---\nid: m\nstatus: queued\napproval: required\n---\n\n# M\n\n## Tasks\n\n- [x] one\n- [ ] two\n\n## Pipeline\n\n- plan — uses `plan`\n";
        let promoted = with_status(text, MissionState::Promoted).unwrap();
        assert_eq!(promoted, text.replace("status: queued", "status: promoted"));
        assert_eq!(with_status(&promoted, MissionState::Promoted), None);
        assert_eq!(with_status("no front matter", MissionState::Promoted), None);
        assert!(!tasks_done(text));
        assert!(tasks_done(&text.replace("- [ ] two", "- [x] two")));
        assert!(tasks_done(&text.replace("- [ ] two", "- [-] two")));
        assert!(!tasks_done(&text.replace("- [ ] two", "  * [/] two")));
        assert!(tasks_done("# nothing to do\n\n- plain item\n"));
    }

    #[test]
    fn the_note_says_what_the_mission_is_and_counts_only_its_tasks() {
        let brief = Brief::parse(
            br#"{"contract":"quire.mission/1","id":"m-1","title":"Moon","objectives":"Land.\nSafely.",
                "constraints":{"deadline":"2026-12-15","crew":["A","B"]},"tasks":["Build","Fly"],
                "pipeline":[{"step":"plan","uses":"plan"},{"step":"go","run":"echo `go`"}]}"#,
        )
        .unwrap();
        let text = text(&brief, MissionState::Queued);
        let note = crate::markdown::parse_note("mission", &text);
        assert_eq!(note.front_matter["status"], "queued");
        assert_eq!(note.front_matter["due"], "2026-12-15");
        assert_eq!(note.front_matter["approval"], "required");
        assert_eq!(note.title, "Moon");
        let tasks: Vec<&str> = note
            .tasks
            .iter()
            .map(|t| t.fields.description.as_str())
            .collect();
        assert_eq!(tasks, ["Build", "Fly"]);
        assert!(text.contains("- plan — uses `plan`\n"), "{text}");
        assert!(text.contains("- go — runs `echo 'go'`\n"), "{text}");
        assert!(text.contains("- crew: [\"A\",\"B\"]\n"), "{text}");
        assert!(text.contains("Land.\nSafely.\n"), "{text}");
    }
}
