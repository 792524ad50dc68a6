//! Questions the index answers: tasks by filter, the agenda, missions with their counts, problems
//! found while indexing, broken links.

use chrono::NaiveDate;
use rusqlite::types::Value as SqlValue;
use serde::Serialize;

use super::record::{StoredLink, StoredTask, priority_name};
use super::{Index, IndexError, TaskView};
use crate::markdown::LinkKind;

/// Which tasks by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StatusFilter {
    /// Not done and not cancelled (open, in progress, or any other status character).
    #[default]
    Open,
    /// Done.
    Done,
    /// Cancelled.
    Cancelled,
    /// In progress.
    InProgress,
    /// Every task.
    All,
}

impl std::str::FromStr for StatusFilter {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "open" => StatusFilter::Open,
            "done" => StatusFilter::Done,
            "cancelled" => StatusFilter::Cancelled,
            "in_progress" => StatusFilter::InProgress,
            "all" => StatusFilter::All,
            other => {
                return Err(format!(
                    "`{other}` is not a status; use open, done, cancelled, in_progress or all"
                ));
            }
        })
    }
}

/// The filters of `quire tasks` (all optional; together they narrow).
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    /// By status (default: open).
    pub status: StatusFilter,
    /// Due strictly before this date.
    pub due_before: Option<NaiveDate>,
    /// Due strictly after this date.
    pub due_after: Option<NaiveDate>,
    /// Carrying this tag or one nested under it (`work` matches `#work` and `#work/ops`), any case.
    pub tag: Option<String>,
    /// In this mission.
    pub mission: Option<String>,
    /// In notes whose path matches this glob (`02_PROJECTS/**`), or lie under this folder.
    pub path: Option<String>,
}

/// The agenda: open tasks by the date they are due (else scheduled).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Agenda {
    /// Before today.
    pub overdue: Vec<String>,
    /// Today.
    pub today: Vec<String>,
    /// After today, within the window.
    pub upcoming: Vec<String>,
}

/// Which part of the agenda a task is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgendaSection {
    /// Before today.
    Overdue,
    /// Today.
    Today,
    /// After today, within the window.
    Upcoming,
}

/// One task as stored, borrowed from the database row: what tables and JSON output need.
#[derive(Debug, Clone, Copy)]
pub struct TaskRow<'r> {
    /// The note.
    pub path: &'r str,
    /// 1-based line.
    pub line: i64,
    /// `open`, `done`, …
    pub status: &'r str,
    /// The description.
    pub text: &'r str,
    /// Due date.
    pub due: Option<&'r str>,
    /// Scheduled date.
    pub scheduled: Option<&'r str>,
    /// 1 (lowest) to 5 (highest).
    pub priority: Option<i64>,
    /// Start, created, done and cancelled dates.
    others: [Option<&'r str>; 4],
    mission: Option<&'r str>,
    /// The `rest` column.
    rest: &'r str,
}

/// The columns [`TaskRow::from_row`] reads, in order.
const ROW_COLUMNS: &str = "path, line, status, text, due, scheduled, priority, start, created, done, cancelled, mission, rest";

/// How many columns [`ROW_COLUMNS`] names.
pub(super) const ROW_COLUMN_COUNT: usize = {
    let bytes = ROW_COLUMNS.as_bytes();
    let (mut i, mut commas) = (0, 0);
    while i < bytes.len() {
        if bytes[i] == b',' {
            commas += 1;
        }
        i += 1;
    }
    commas + 1
};

/// [`ROW_COLUMNS`], each of the table called `alias` in a join.
pub(super) fn row_columns_of(alias: &str) -> String {
    ROW_COLUMNS
        .split(", ")
        .map(|c| format!("{alias}.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl<'r> TaskRow<'r> {
    /// The row's first columns, [`ROW_COLUMNS`] in order.
    pub(super) fn from_row(row: &'r rusqlite::Row<'_>) -> Result<Self, IndexError> {
        let text = |i: usize| -> Result<&'r str, IndexError> {
            Ok(row.get_ref(i)?.as_str().map_err(rusqlite::Error::from)?)
        };
        let opt = |i: usize| -> Result<Option<&'r str>, IndexError> {
            Ok(row
                .get_ref(i)?
                .as_str_or_null()
                .map_err(rusqlite::Error::from)?)
        };
        Ok(Self {
            path: text(0)?,
            line: row.get(1)?,
            status: text(2)?,
            text: text(3)?,
            due: opt(4)?,
            scheduled: opt(5)?,
            priority: row.get(6)?,
            others: [opt(7)?, opt(8)?, opt(9)?, opt(10)?],
            mission: opt(11)?,
            rest: text(12)?,
        })
    }

    /// The date the agenda files the task under: its due date, else its scheduled date.
    pub fn agenda_date(&self) -> Option<&'r str> {
        self.due.or(self.scheduled)
    }

    /// The agenda's order: date, path, line.
    fn order_key(&self) -> (Option<&'r str>, &'r str, i64) {
        (self.agenda_date(), self.path, self.line)
    }

    /// The priority's name.
    pub fn priority_name(&self) -> Option<&'static str> {
        priority_name(self.priority?)
    }

    /// The task, as `quire tasks --json` prints it.
    pub fn view(&self) -> Result<TaskView, IndexError> {
        let [start, created, done, cancelled] = self.others;
        StoredTask {
            path: self.path,
            line: self.line,
            status: self.status,
            text: self.text,
            dates: [self.due, self.scheduled, start, created, done, cancelled],
            priority: self.priority,
            mission: self.mission,
            rest: self.rest,
        }
        .view()
        .map_err(unreadable)
    }

    /// The task object, as `quire tasks --json` prints it.
    pub fn json(&self) -> Result<String, IndexError> {
        // A view of strings and numbers always serializes.
        Ok(serde_json::to_string(&self.view()?).unwrap_or_default())
    }
}

/// A [`TaskRow`] that owns its text, for the few rows held while others stream.
struct OwnedRow {
    path: String,
    line: i64,
    status: String,
    text: String,
    due: Option<String>,
    scheduled: Option<String>,
    priority: Option<i64>,
    others: [Option<String>; 4],
    mission: Option<String>,
    rest: String,
}

impl From<TaskRow<'_>> for OwnedRow {
    fn from(t: TaskRow<'_>) -> Self {
        Self {
            path: t.path.to_owned(),
            line: t.line,
            status: t.status.to_owned(),
            text: t.text.to_owned(),
            due: t.due.map(str::to_owned),
            scheduled: t.scheduled.map(str::to_owned),
            priority: t.priority,
            others: t.others.map(|d| d.map(str::to_owned)),
            mission: t.mission.map(str::to_owned),
            rest: t.rest.to_owned(),
        }
    }
}

impl OwnedRow {
    fn as_row(&self) -> TaskRow<'_> {
        TaskRow {
            path: &self.path,
            line: self.line,
            status: &self.status,
            text: &self.text,
            due: self.due.as_deref(),
            scheduled: self.scheduled.as_deref(),
            priority: self.priority,
            others: [0, 1, 2, 3].map(|i| self.others[i].as_deref()),
            mission: self.mission.as_deref(),
            rest: &self.rest,
        }
    }
}

fn write_error(source: std::io::Error) -> IndexError {
    IndexError::Io {
        context: "could not write the tasks".into(),
        source,
    }
}

/// A mission with its task counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MissionSummary {
    /// The mission id.
    pub id: String,
    /// Its title (front matter `title`, else the mission note's title, else the id).
    pub title: String,
    /// Front matter `status`.
    pub status: Option<String>,
    /// Front matter `due`.
    pub due: Option<String>,
    /// The mission note (`01_MISSIONS/<id>/mission.md`), if there is one.
    pub path: Option<String>,
    /// Every task of the mission.
    pub total: u64,
    /// Not done and not cancelled.
    pub open: u64,
    /// Done.
    pub done: u64,
    /// Cancelled.
    pub cancelled: u64,
    /// Open and due before today.
    pub overdue: u64,
    /// Open and due today or in the next 7 days.
    pub due_next_7_days: u64,
}

/// A problem the indexer found in a note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NoteProblemRow {
    /// The note.
    pub path: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// `bad_front_matter`, `invalid_date`, `not_utf8`.
    pub code: String,
    /// What is wrong.
    pub message: String,
}

/// A stored link and where it points.
#[derive(Debug, Clone)]
pub struct ResolvedLink<'a> {
    /// The linking note.
    pub source: &'a str,
    /// 1-based line.
    pub line: usize,
    /// Wikilink, embed or Markdown link.
    pub kind: LinkKind,
    /// The target as written (empty for the note itself).
    pub target: &'a str,
    /// `#Heading` or `#^block`, if any.
    pub subpath: Option<&'a str>,
    /// The note or file it resolves to; `None` when it is broken.
    pub resolved: Option<String>,
}

/// A stored link and where it resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteLinkResolved {
    /// 1-based line.
    pub line: usize,
    /// Wikilink, embed or Markdown link.
    pub kind: LinkKind,
    /// The target as written (empty for the note itself).
    pub target: String,
    /// `#Heading` or `#^block`, if any.
    pub subpath: Option<String>,
    /// The note or file it resolves to; `None` when it is broken.
    pub resolved: Option<String>,
}

/// A link that points nowhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrokenLink {
    /// The linking note.
    pub path: String,
    /// 1-based line.
    pub line: usize,
    /// `wikilink`, `embed` or `markdown`.
    pub kind: String,
    /// The target as written, with its subpath.
    pub target: String,
}

impl Index {
    /// Tasks matching `filter`, ordered by due date (undated last), path, line, handed to `emit` one
    /// by one straight from the database, without copies.
    pub fn each_task(
        &self,
        filter: &TaskFilter,
        mut emit: impl FnMut(&TaskRow<'_>) -> std::io::Result<()>,
    ) -> Result<usize, IndexError> {
        let mut sql = format!("SELECT {ROW_COLUMNS} FROM tasks WHERE ");
        let mut args: Vec<SqlValue> = Vec::new();
        // The table is clustered by (closed, due_key, path, line): the status filter picks the range
        // and the rows come out in order.
        sql.push_str(match filter.status {
            StatusFilter::Open => "closed = 0",
            StatusFilter::Done => "closed = 1 AND status = 'done'",
            StatusFilter::Cancelled => "closed = 1 AND status = 'cancelled'",
            StatusFilter::InProgress => "closed = 0 AND status = 'in_progress'",
            StatusFilter::All => "closed IN (0, 1)",
        });
        if let Some(d) = filter.due_before {
            sql.push_str(" AND due < ?");
            args.push(SqlValue::Text(d.format("%Y-%m-%d").to_string()));
        }
        if let Some(d) = filter.due_after {
            sql.push_str(" AND due > ?");
            args.push(SqlValue::Text(d.format("%Y-%m-%d").to_string()));
        }
        if let Some(tag) = &filter.tag {
            let tag = tag.trim().trim_start_matches('#').to_lowercase();
            sql.push_str(
                " AND (instr(tags, ' ' || ? || ' ') > 0 OR instr(tags, ' ' || ? || '/') > 0)",
            );
            args.push(SqlValue::Text(tag.clone()));
            args.push(SqlValue::Text(tag));
        }
        if let Some(m) = &filter.mission {
            sql.push_str(" AND +mission = ?");
            args.push(SqlValue::Text(m.clone()));
        }
        // Open and closed tasks interleave by date when both are asked for.
        sql.push_str(if filter.status == StatusFilter::All {
            " ORDER BY due_key, path, line"
        } else {
            " ORDER BY closed, due_key, path, line"
        });
        let matcher = filter.path.as_deref().map(PathMatcher::new).transpose()?;
        let mut stmt = self.conn.prepare(&sql)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(args))?;
        let mut count = 0;
        while let Some(row) = rows.next()? {
            let task = TaskRow::from_row(row)?;
            if matcher.as_ref().is_none_or(|m| m.matches(task.path)) {
                emit(&task).map_err(write_error)?;
                count += 1;
            }
        }
        Ok(count)
    }

    /// Tasks matching `filter`, each as its JSON object, in order.
    pub fn tasks_json(&self, filter: &TaskFilter) -> Result<Vec<String>, IndexError> {
        self.tasks(filter)?
            .iter()
            // A view of strings and numbers always serializes.
            .map(|t| Ok(serde_json::to_string(t).unwrap_or_default()))
            .collect()
    }

    /// Tasks matching `filter`, as values.
    pub fn tasks(&self, filter: &TaskFilter) -> Result<Vec<TaskView>, IndexError> {
        let mut out = Vec::new();
        let mut failed = None;
        self.each_task(filter, |t| {
            match t.view() {
                Ok(v) => out.push(v),
                Err(e) => failed = failed.take().or(Some(e)),
            }
            Ok(())
        })?;
        match failed {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// The agenda for `today` and the `days` after it: open tasks filed under their due date (else
    /// their scheduled date), each handed to `emit` with its section, in date order.
    ///
    /// Tasks with a due date come from the table's clustered order as they are; those filed under a
    /// scheduled date (no due date) are few, and merged in.
    pub fn each_agenda_task(
        &self,
        today: NaiveDate,
        days: u32,
        mut emit: impl FnMut(AgendaSection, &TaskRow<'_>) -> std::io::Result<()>,
    ) -> Result<(), IndexError> {
        let today_s = today.format("%Y-%m-%d").to_string();
        let end = (today + chrono::Duration::days(i64::from(days)))
            .format("%Y-%m-%d")
            .to_string();
        let mut due_stmt = self
            .conn
            .prepare(&format!("SELECT {ROW_COLUMNS} FROM tasks WHERE closed = 0 AND due_key <= ?1 ORDER BY closed, due_key, path, line"))?;
        let mut sched_stmt = self.conn.prepare(&format!(
            "SELECT {ROW_COLUMNS} FROM tasks WHERE closed = 0 AND due IS NULL AND scheduled IS NOT NULL AND scheduled <= ?1
             ORDER BY scheduled, path, line"
        ))?;
        // The few tasks filed under a scheduled date, in memory; the rest streamed in order.
        let mut scheduled = Vec::new();
        let mut rows = sched_stmt.query([&end])?;
        while let Some(row) = rows.next()? {
            scheduled.push(OwnedRow::from(TaskRow::from_row(row)?));
        }
        let mut scheduled = scheduled.iter().peekable();
        let section =
            |t: &TaskRow<'_>| match t.agenda_date().unwrap_or_default().cmp(today_s.as_str()) {
                std::cmp::Ordering::Less => AgendaSection::Overdue,
                std::cmp::Ordering::Equal => AgendaSection::Today,
                std::cmp::Ordering::Greater => AgendaSection::Upcoming,
            };
        let mut rows = due_stmt.query([&end])?;
        while let Some(row) = rows.next()? {
            let task = TaskRow::from_row(row)?;
            while let Some(s) = scheduled.next_if(|s| s.as_row().order_key() < task.order_key()) {
                let s = s.as_row();
                emit(section(&s), &s).map_err(write_error)?;
            }
            emit(section(&task), &task).map_err(write_error)?;
        }
        for s in scheduled {
            let s = s.as_row();
            emit(section(&s), &s).map_err(write_error)?;
        }
        Ok(())
    }

    /// The agenda as JSON objects by section.
    pub fn agenda_json(&self, today: NaiveDate, days: u32) -> Result<Agenda, IndexError> {
        let mut agenda = Agenda::default();
        self.each_agenda_task(today, days, |section, t| {
            let list = match section {
                AgendaSection::Overdue => &mut agenda.overdue,
                AgendaSection::Today => &mut agenda.today,
                AgendaSection::Upcoming => &mut agenda.upcoming,
            };
            list.push(t.json().map_err(std::io::Error::other)?);
            Ok(())
        })?;
        Ok(agenda)
    }

    /// Every mission — those with a mission note and those only tasks name — with task counts as of
    /// `today`, by id.
    pub fn missions(&self, today: NaiveDate) -> Result<Vec<MissionSummary>, IndexError> {
        let today_s = today.format("%Y-%m-%d").to_string();
        let week = (today + chrono::Duration::days(7))
            .format("%Y-%m-%d")
            .to_string();
        let mut by_id: std::collections::BTreeMap<String, MissionSummary> = Default::default();
        let mut stmt = self.conn.prepare(
            "SELECT mission, path, title, frontmatter FROM notes
             WHERE path LIKE ?1 AND mission IS NOT NULL ORDER BY path",
        )?;
        let pattern = format!("{}/%/mission.md", super::MISSIONS_DIR);
        let rows = stmt.query_map([pattern], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?;
        for row in rows {
            let (id, path, title, fm) = row?;
            let fm: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(&fm).unwrap_or_default();
            let text = |k: &str| match fm.get(k) {
                Some(serde_json::Value::String(s)) => Some(s.clone()),
                Some(serde_json::Value::Null) | None => None,
                Some(other) => Some(other.to_string()),
            };
            by_id.entry(id.clone()).or_insert(MissionSummary {
                title: text("title").unwrap_or(title),
                status: text("status"),
                due: text("due"),
                path: Some(path),
                ..empty_mission(&id)
            });
        }
        let mut stmt = self.conn.prepare(
            "SELECT mission, count(*),
                    total(closed = 0), total(status = 'done'), total(status = 'cancelled'),
                    total(closed = 0 AND due < ?1), total(closed = 0 AND due >= ?1 AND due <= ?2)
             FROM tasks WHERE mission IS NOT NULL GROUP BY mission",
        )?;
        let rows = stmt.query_map([&today_s, &week], |r| {
            Ok((
                r.get::<_, String>(0)?,
                // total() is never NULL (sum() is, over comparisons with NULL dates).
                [
                    r.get::<_, i64>(1)? as f64,
                    r.get::<_, f64>(2)?,
                    r.get::<_, f64>(3)?,
                    r.get::<_, f64>(4)?,
                    r.get::<_, f64>(5)?,
                    r.get::<_, f64>(6)?,
                ],
            ))
        })?;
        for row in rows {
            let (id, [total, open, done, cancelled, overdue, soon]) = row?;
            let m = by_id
                .entry(id.clone())
                .or_insert_with(|| empty_mission(&id));
            let n = |v: f64| v.max(0.0) as u64;
            m.total = n(total);
            m.open = n(open);
            m.done = n(done);
            m.cancelled = n(cancelled);
            m.overdue = n(overdue);
            m.due_next_7_days = n(soon);
        }
        Ok(by_id.into_values().collect())
    }

    /// Problems found while indexing (bad front matter, invalid dates), by path and line.
    pub fn problems(&self) -> Result<Vec<NoteProblemRow>, IndexError> {
        let mut stmt = self.conn.prepare(
            "SELECT n.path, p.line, p.code, p.message FROM problems p JOIN notes n ON n.id = p.note_id
             ORDER BY n.path, p.line",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(NoteProblemRow {
                path: r.get(0)?,
                line: r.get::<_, Option<i64>>(1)?.map(|l| l as usize),
                code: r.get(2)?,
                message: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every stored link of every note, with where it resolves to (`None`: broken), by source path
    /// and link order. The one place links are resolved, so every view of them agrees.
    pub fn each_link(&self, mut visit: impl FnMut(&ResolvedLink<'_>)) -> Result<(), IndexError> {
        for (source, links) in self.links_by_note(&self.resolver()?)? {
            for l in &links {
                visit(&ResolvedLink {
                    source: &source,
                    line: l.line,
                    kind: l.kind,
                    target: &l.target,
                    subpath: l.subpath.as_deref(),
                    resolved: l.resolved.clone(),
                });
            }
        }
        Ok(())
    }

    /// Every note's links in order, each with where `resolver` resolves it, by note path (notes
    /// without links are left out).
    pub fn links_by_note(
        &self,
        resolver: &super::Resolver,
    ) -> Result<Vec<(String, Vec<NoteLinkResolved>)>, IndexError> {
        use rayon::prelude::*;
        let mut stmt = self
            .conn
            .prepare("SELECT path, links FROM notes WHERE links != '[]' ORDER BY path")?;
        let rows: Vec<(String, String)> = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
            .collect::<Result<_, _>>()?;
        // Parsing and resolving are most of the work, and independent per note.
        rows.into_par_iter()
            .map(|(source, links)| {
                let resolved = resolve_stored(&source, &links, resolver)?;
                Ok((source, resolved))
            })
            .collect()
    }

    /// Every link and embed that resolves to no note or file, by path and line.
    pub fn broken_links(&self) -> Result<Vec<BrokenLink>, IndexError> {
        let mut out = Vec::new();
        self.each_link(|l| {
            if l.resolved.is_none() {
                out.push(BrokenLink {
                    path: l.source.to_owned(),
                    line: l.line,
                    kind: l.kind.name().to_owned(),
                    target: format!("{}{}", l.target, l.subpath.unwrap_or_default()),
                });
            }
        })?;
        Ok(out)
    }

    /// The notes linking to (or embedding) the note or file at `path`, with the line of each link,
    /// by source path and line. A note's links to its own headings are not backlinks.
    pub fn backlinks(&self, path: &str) -> Result<Vec<(String, usize)>, IndexError> {
        let mut out = Vec::new();
        self.each_link(|l| {
            if !l.target.is_empty() && l.resolved.as_deref() == Some(path) {
                out.push((l.source.to_owned(), l.line));
            }
        })?;
        Ok(out)
    }

    /// Every note's catalog entry, by path.
    pub fn catalog(&self) -> Result<Vec<super::CatalogNote>, IndexError> {
        use rayon::prelude::*;
        type Row = (
            String,
            String,
            String,
            String,
            String,
            String,
            Option<String>,
            Vec<u8>,
        );
        let mut stmt = self.conn.prepare(
            "SELECT path, title, frontmatter, tags, aliases, headings, mission, hash FROM notes ORDER BY path",
        )?;
        let rows: Vec<Row> = stmt
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                ))
            })?
            .collect::<Result<_, _>>()?;
        // The JSON columns are most of the work, and independent per note.
        Ok(rows
            .into_par_iter()
            .map(
                |(path, title, fm, tags, aliases, headings, mission, hash)| super::CatalogNote {
                    path,
                    title,
                    front_matter: serde_json::from_str(&fm).unwrap_or_default(),
                    tags: if tags == "[]" {
                        Vec::new()
                    } else {
                        serde_json::from_str(&tags).unwrap_or_default()
                    },
                    aliases: if aliases == "[]" {
                        Vec::new()
                    } else {
                        serde_json::from_str(&aliases).unwrap_or_default()
                    },
                    headings: serde_json::from_str(&headings).unwrap_or_default(),
                    mission,
                    hash,
                },
            )
            .collect())
    }

    /// Vault paths of the notes written by updates after `generation`.
    pub fn changed_since(&self, generation: u64) -> Result<Vec<String>, IndexError> {
        // Sorted here: with `ORDER BY path` SQLite would scan every note instead of the index.
        let mut stmt = self
            .conn
            .prepare("SELECT path FROM notes INDEXED BY notes_gen WHERE gen > ?1")?;
        let rows = stmt.query_map([generation as i64], |r| r.get::<_, String>(0))?;
        let mut paths: Vec<String> = rows.collect::<Result<_, _>>()?;
        paths.sort();
        Ok(paths)
    }

    /// The path of every note, unordered.
    pub fn note_paths(&self) -> Result<Vec<String>, IndexError> {
        let mut stmt = self.conn.prepare("SELECT path FROM notes")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The catalog entry of the note at `path`.
    pub fn catalog_note(&self, path: &str) -> Result<Option<super::CatalogNote>, IndexError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT path, title, frontmatter, tags, aliases, headings, mission, hash FROM notes WHERE path = ?1",
        )?;
        let mut rows = stmt.query([path])?;
        let Some(r) = rows.next()? else {
            return Ok(None);
        };
        let json = |i: usize| -> Result<String, rusqlite::Error> { r.get(i) };
        Ok(Some(super::CatalogNote {
            path: r.get(0)?,
            title: r.get(1)?,
            front_matter: serde_json::from_str(&json(2)?).unwrap_or_default(),
            tags: serde_json::from_str(&json(3)?).unwrap_or_default(),
            aliases: serde_json::from_str(&json(4)?).unwrap_or_default(),
            headings: serde_json::from_str(&json(5)?).unwrap_or_default(),
            mission: r.get(6)?,
            hash: r.get(7)?,
        }))
    }

    /// The tasks of the note at `path`, by line, shared with this handle's last update when it
    /// wrote them (and the index still holds what it wrote).
    pub fn shared_tasks_of(&self, path: &str) -> Result<Vec<std::sync::Arc<TaskView>>, IndexError> {
        if let Some(w) = self.written_now()?
            && let Some(tasks) = w.tasks.get(path)
        {
            return Ok(tasks.clone());
        }
        Ok(self
            .tasks_of(path)?
            .into_iter()
            .map(std::sync::Arc::new)
            .collect())
    }

    /// The tasks of the note at `path`, by line.
    pub fn tasks_of(&self, path: &str) -> Result<Vec<TaskView>, IndexError> {
        // By note id: the tasks table is clustered by due date, and indexed by note.
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {ROW_COLUMNS} FROM tasks WHERE note_id = (SELECT id FROM notes WHERE path = ?1) ORDER BY line"
        ))?;
        let mut rows = stmt.query([path])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(TaskRow::from_row(row)?.view()?);
        }
        Ok(out)
    }

    /// The links of the note at `path`, in order, each with where `resolver` resolves it.
    pub fn links_of(
        &self,
        path: &str,
        resolver: &super::Resolver,
    ) -> Result<Vec<NoteLinkResolved>, IndexError> {
        let links: String = match self
            .conn
            .prepare_cached("SELECT links FROM notes WHERE path = ?1")?
            .query_row([path], |r| r.get(0))
        {
            Ok(l) => l,
            Err(rusqlite::Error::QueryReturnedNoRows) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        resolve_stored(path, &links, resolver)
    }

    /// Every task, by path and line, each shared (what a render's catalog keeps).
    pub fn all_tasks(&self) -> Result<Vec<std::sync::Arc<TaskView>>, IndexError> {
        use rayon::prelude::*;
        use std::sync::Arc;
        if let Some(w) = self.written_now()?
            && w.complete
        {
            let mut paths: Vec<&String> = w.tasks.keys().collect();
            paths.sort_unstable();
            return Ok(paths
                .into_iter()
                .flat_map(|p| w.tasks[p].iter().cloned())
                .collect());
        }
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT {ROW_COLUMNS} FROM tasks"))?;
        let mut rows = stmt.query([])?;
        let mut stored = Vec::new();
        while let Some(row) = rows.next()? {
            stored.push(OwnedRow::from(TaskRow::from_row(row)?));
        }
        // Shared as they are made: a task is hundreds of bytes, and the sort below then moves
        // pointers, not tasks.
        let mut parsed: Vec<Result<Arc<TaskView>, IndexError>> = Vec::with_capacity(stored.len());
        stored
            .par_iter()
            .map(|r| r.as_row().view().map(Arc::new))
            .collect_into_vec(&mut parsed);
        let mut out = parsed.into_iter().collect::<Result<Vec<_>, _>>()?;
        out.par_sort_unstable_by(|a, b| (&a.path, a.line).cmp(&(&b.path, b.line)));
        Ok(out)
    }

    /// Whether the vault has an attachment (a file that is not a note) at `path`.
    pub fn has_attachment(&self, path: &str) -> Result<bool, IndexError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT 1 FROM files WHERE path = ?1")?;
        Ok(stmt.exists([path])?)
    }

    /// Every attachment (non-note file) of the vault, by path.
    pub fn attachments(&self) -> Result<Vec<String>, IndexError> {
        let mut stmt = self.conn.prepare("SELECT path FROM files ORDER BY path")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// How many notes and tasks the index holds.
    pub fn counts(&self) -> Result<(u64, u64), IndexError> {
        let notes: i64 = self
            .conn
            .query_row("SELECT count(*) FROM notes", [], |r| r.get(0))?;
        let tasks: i64 = self
            .conn
            .query_row("SELECT count(*) FROM tasks", [], |r| r.get(0))?;
        Ok((notes as u64, tasks as u64))
    }
}

fn empty_mission(id: &str) -> MissionSummary {
    MissionSummary {
        id: id.to_owned(),
        title: id.to_owned(),
        status: None,
        due: None,
        path: None,
        total: 0,
        open: 0,
        done: 0,
        cancelled: 0,
        overdue: 0,
        due_next_7_days: 0,
    }
}

fn link_kind(stored: &str) -> LinkKind {
    match stored {
        "embed" => LinkKind::Embed,
        "markdown" => LinkKind::Markdown,
        _ => LinkKind::Wiki,
    }
}

/// A stored task that cannot be read back.
pub(super) fn unreadable(e: serde_json::Error) -> IndexError {
    IndexError::BadQuery(format!(
        "a stored task is unreadable ({e}); run `quire index --full`"
    ))
}

/// `--path`: a glob (`*` within a folder, `**` across folders), or a plain folder meaning everything
/// under it.
struct PathMatcher {
    glob: Option<globset::GlobMatcher>,
    prefix: String,
}

impl PathMatcher {
    fn new(pattern: &str) -> Result<Self, IndexError> {
        let pattern = pattern.trim().trim_start_matches("./");
        if pattern.contains(['*', '?', '[', '{']) {
            let glob = globset::GlobBuilder::new(pattern)
                .literal_separator(true)
                .build()
                .map_err(|e| {
                    IndexError::BadQuery(format!("`--path {pattern}` is not a valid glob: {e}"))
                })?;
            Ok(Self {
                glob: Some(glob.compile_matcher()),
                prefix: String::new(),
            })
        } else {
            Ok(Self {
                glob: None,
                prefix: pattern.trim_end_matches('/').to_owned(),
            })
        }
    }

    fn matches(&self, path: &str) -> bool {
        match &self.glob {
            Some(g) => g.is_match(path),
            None => {
                path == self.prefix
                    || path
                        .strip_prefix(&self.prefix)
                        .is_some_and(|r| r.starts_with('/'))
            }
        }
    }
}

/// The links stored for note `source` (its `links` column), each resolved by `resolver`.
fn resolve_stored(
    source: &str,
    links: &str,
    resolver: &super::Resolver,
) -> Result<Vec<NoteLinkResolved>, IndexError> {
    let links: Vec<StoredLink> = serde_json::from_str(links).map_err(|e| {
        IndexError::BadQuery(format!(
            "stored links of {source} are unreadable ({e}); run `quire index --full`"
        ))
    })?;
    Ok(links
        .into_iter()
        .map(|(line, kind, target, subpath)| {
            let kind = link_kind(&kind);
            NoteLinkResolved {
                line,
                kind,
                resolved: resolver.resolve(source, kind, &target),
                target,
                subpath,
            }
        })
        .collect())
}
