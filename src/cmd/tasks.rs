//! `quire index`, `tasks`, `agenda`, `calendar`, `missions`: every query brings the index up to date
//! first, so its answer reflects the notes as they are on disk.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use chrono::NaiveDate;
use quire::index::{CalendarKind, Index, TaskFilter, TaskView};
use quire::vault::{Vault, fsutil};

use super::output;

pub(crate) fn index(vault: &Vault, full: bool, json: bool) -> anyhow::Result<ExitCode> {
    let mut index = Index::open(vault)?;
    let report = index.update(full)?;
    let (notes, tasks) = index.counts()?;
    if json {
        output::json(&serde_json::json!({ "update": report, "notes": notes, "tasks": tasks }))?;
    } else {
        println!(
            "Indexed {notes} notes and {tasks} tasks in {:.0} ms ({} parsed, {} unchanged{}, {} removed).",
            report.duration_ms,
            report.parsed,
            report.notes - report.parsed - report.touched,
            if report.touched > 0 {
                format!(", {} touched", report.touched)
            } else {
                String::new()
            },
            report.removed,
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn tasks(vault: &Vault, filter: &TaskFilter, json: bool) -> anyhow::Result<ExitCode> {
    let (index, _) = Index::open_fresh(vault)?;
    let found = index.tasks_json(filter)?;
    if json {
        print_json_lists(&[("tasks", &found)])?;
        return Ok(ExitCode::SUCCESS);
    }
    let views = views(&found)?;
    if views.is_empty() {
        println!("No tasks match.");
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![header()];
    rows.extend(views.iter().map(row));
    output::table(&rows);
    println!(
        "{} task{}",
        views.len(),
        if views.len() == 1 { "" } else { "s" }
    );
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn agenda(
    vault: &Vault,
    days: u32,
    today: Option<NaiveDate>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let today = today.unwrap_or_else(|| chrono::Local::now().date_naive());
    let (index, _) = Index::open_fresh(vault)?;
    let agenda = index.agenda_json(today, days)?;
    if json {
        print_json_lists(&[
            ("overdue", &agenda.overdue),
            ("today", &agenda.today),
            ("upcoming", &agenda.upcoming),
        ])?;
        return Ok(ExitCode::SUCCESS);
    }
    let sections = [
        ("Overdue".to_owned(), &agenda.overdue),
        (format!("Today, {today}"), &agenda.today),
        (
            format!(
                "Upcoming, next {days} day{}",
                if days == 1 { "" } else { "s" }
            ),
            &agenda.upcoming,
        ),
    ];
    let mut rows = vec![header()];
    for (title, list) in sections {
        rows.push(vec![String::new()]);
        rows.push(vec![format!("{title} ({})", list.len())]);
        rows.extend(views(list)?.iter().map(row));
    }
    output::table(&rows);
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn calendar(
    vault: &Vault,
    out: Option<&Path>,
    kind: CalendarKind,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let (index, _) = Index::open_fresh(vault)?;
    let ics = index.calendar(kind, &vault.config().site.title)?;
    let entries = ics.matches("\r\nUID:").count();
    match out {
        Some(path) => {
            fsutil::atomic_write(path, ics.as_bytes(), false)
                .with_context(|| format!("could not write {}", path.display()))?;
            if json {
                output::json(&serde_json::json!({ "out": path, "entries": entries }))?;
            } else {
                println!(
                    "Wrote {entries} dated task{} to {}.",
                    if entries == 1 { "" } else { "s" },
                    path.display()
                );
            }
        }
        None => std::io::stdout().lock().write_all(ics.as_bytes())?,
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn missions(
    vault: &Vault,
    today: Option<NaiveDate>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let today = today.unwrap_or_else(|| chrono::Local::now().date_naive());
    let (index, _) = Index::open_fresh(vault)?;
    let missions = index.missions(today)?;
    if json {
        output::json(&serde_json::json!({ "missions": missions }))?;
        return Ok(ExitCode::SUCCESS);
    }
    if missions.is_empty() {
        println!("No missions: add 01_MISSIONS/<id>/mission.md, or tag tasks #mission/<id>.");
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![
        [
            "MISSION",
            "STATUS",
            "DUE",
            "OPEN",
            "DONE",
            "CANCELLED",
            "OVERDUE",
            "NEXT 7 DAYS",
            "TITLE",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for m in &missions {
        rows.push(vec![
            m.id.clone(),
            m.status.clone().unwrap_or_default(),
            m.due.clone().unwrap_or_default(),
            m.open.to_string(),
            m.done.to_string(),
            m.cancelled.to_string(),
            m.overdue.to_string(),
            m.due_next_7_days.to_string(),
            m.title.clone(),
        ]);
    }
    output::table(&rows);
    Ok(ExitCode::SUCCESS)
}

/// `{"name": [ … ], …}` from already-serialized task objects, without re-serializing them.
fn print_json_lists(lists: &[(&str, &Vec<String>)]) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    out.write_all(b"{")?;
    for (i, (name, items)) in lists.iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        write!(out, "\"{name}\":[")?;
        for (j, item) in items.iter().enumerate() {
            if j > 0 {
                out.write_all(b",")?;
            }
            out.write_all(item.as_bytes())?;
        }
        out.write_all(b"]")?;
    }
    out.write_all(b"}\n")?;
    out.flush()?;
    Ok(())
}

fn views(json: &[String]) -> anyhow::Result<Vec<TaskView>> {
    Ok(json
        .iter()
        .map(|j| serde_json::from_str(j))
        .collect::<Result<_, _>>()?)
}

fn header() -> Vec<String> {
    ["DUE", "PRIORITY", "STATUS", "TASK", "WHERE"]
        .map(String::from)
        .to_vec()
}

fn row(t: &TaskView) -> Vec<String> {
    vec![
        t.due
            .clone()
            .or_else(|| t.scheduled.as_ref().map(|s| format!("({s})")))
            .unwrap_or_default(),
        t.priority.clone().unwrap_or_default(),
        t.status.clone(),
        t.text.clone(),
        format!("{}:{}", t.path, t.line),
    ]
}
