//! `quire index`, `tasks`, `agenda`, `calendar`, `missions`: every query brings the index up to date
//! first, so its answer reflects the notes as they are on disk.

use super::output::outln;

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use chrono::NaiveDate;
use quire::index::{AgendaSection, CalendarKind, Index, TaskFilter, TaskRow};
use quire::vault::{Vault, fsutil};

use super::output;

pub(crate) fn index(vault: &Vault, full: bool, json: bool) -> anyhow::Result<ExitCode> {
    let mut index = Index::open(vault)?;
    let report = index.update(full)?;
    let (notes, tasks) = index.counts()?;
    if json {
        output::json(&serde_json::json!({ "update": report, "notes": notes, "tasks": tasks }))?;
    } else {
        outln!(
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
    if json {
        // Streamed from the database to stdout: no list of 10,000 strings in between.
        let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
        out.write_all(b"{\"tasks\":[")?;
        let mut first = true;
        index.each_task(filter, |t| {
            if !std::mem::take(&mut first) {
                out.write_all(b",")?;
            }
            out.write_all(t.json().map_err(std::io::Error::other)?.as_bytes())
        })?;
        out.write_all(b"]}\n")?;
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![header()];
    index.each_task(filter, |t| {
        rows.push(row(t));
        Ok(())
    })?;
    let n = rows.len() - 1;
    if n == 0 {
        outln!("No tasks match.");
        return Ok(ExitCode::SUCCESS);
    }
    rows.push(vec![format!("{n} task{}", if n == 1 { "" } else { "s" })]);
    output::table(&rows);
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
    if json {
        let mut out = std::io::stdout().lock();
        out.write_all(quire::workflow::queries::agenda(&index, today, days)?.as_bytes())?;
        out.write_all(b"\n")?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut sections: [Vec<Vec<String>>; 3] = Default::default();
    index.each_agenda_task(today, days, |section, t| {
        let i = match section {
            AgendaSection::Overdue => 0,
            AgendaSection::Today => 1,
            AgendaSection::Upcoming => 2,
        };
        sections[i].push(row(t));
        Ok(())
    })?;
    let titles = [
        "Overdue".to_owned(),
        format!("Today, {today}"),
        format!(
            "Upcoming, next {days} day{}",
            if days == 1 { "" } else { "s" }
        ),
    ];
    let mut rows = vec![header()];
    for (title, list) in titles.into_iter().zip(sections) {
        rows.push(vec![String::new()]);
        rows.push(vec![format!("{title} ({})", list.len())]);
        rows.extend(list);
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
                outln!(
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
    if json {
        output::json(&quire::workflow::queries::missions(vault, &index, today)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let missions = index.missions(today)?;
    if missions.is_empty() {
        outln!("No missions: add 01_MISSIONS/<id>/mission.md, or tag tasks #mission/<id>.");
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

fn header() -> Vec<String> {
    ["DUE", "PRIORITY", "STATUS", "TASK", "WHERE"]
        .map(String::from)
        .to_vec()
}

fn row(t: &TaskRow<'_>) -> Vec<String> {
    vec![
        t.due
            .map(str::to_owned)
            .or_else(|| t.scheduled.map(|s| format!("({s})")))
            .unwrap_or_default(),
        t.priority_name().unwrap_or_default().to_owned(),
        t.status.to_owned(),
        t.text.to_owned(),
        format!("{}:{}", t.path, t.line),
    ]
}
