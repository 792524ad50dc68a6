//! Questions the index answers: tasks by filter, the agenda, missions with their counts, problems
//! found while indexing, broken links.

use chrono::NaiveDate;
use rusqlite::types::Value as SqlValue;
use serde::Serialize;

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

const ORDER: &str = "ORDER BY due IS NULL, due, path, line";

impl Index {
    /// Tasks matching `filter`, each as its JSON object, ordered by due date (undated last), path, line.
    pub fn tasks_json(&self, filter: &TaskFilter) -> Result<Vec<String>, IndexError> {
        let mut sql = String::from("SELECT json, path FROM tasks WHERE 1 = 1");
        let mut args: Vec<SqlValue> = Vec::new();
        match filter.status {
            StatusFilter::Open => sql.push_str(" AND closed = 0"),
            StatusFilter::Done => sql.push_str(" AND status = 'done'"),
            StatusFilter::Cancelled => sql.push_str(" AND status = 'cancelled'"),
            StatusFilter::InProgress => sql.push_str(" AND status = 'in_progress'"),
            StatusFilter::All => {}
        }
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
            sql.push_str(" AND mission = ?");
            args.push(SqlValue::Text(m.clone()));
        }
        sql.push(' ');
        sql.push_str(ORDER);
        let matcher = filter.path.as_deref().map(PathMatcher::new).transpose()?;
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(args), |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (json, path) = row?;
            if matcher.as_ref().is_none_or(|m| m.matches(&path)) {
                out.push(json);
            }
        }
        Ok(out)
    }

    /// Tasks matching `filter`, as values.
    pub fn tasks(&self, filter: &TaskFilter) -> Result<Vec<TaskView>, IndexError> {
        self.tasks_json(filter)?
            .iter()
            .map(|j| parse_view(j))
            .collect()
    }

    /// The agenda for `today` and the `days` after it: open tasks filed under their due date (else
    /// their scheduled date).
    pub fn agenda_json(&self, today: NaiveDate, days: u32) -> Result<Agenda, IndexError> {
        let today_s = today.format("%Y-%m-%d").to_string();
        let end = (today + chrono::Duration::days(i64::from(days)))
            .format("%Y-%m-%d")
            .to_string();
        let mut stmt = self.conn.prepare(
            "SELECT json, agenda FROM tasks WHERE closed = 0 AND agenda IS NOT NULL AND agenda <= ?1
             ORDER BY agenda, path, line",
        )?;
        let rows = stmt.query_map([&end], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut agenda = Agenda::default();
        for row in rows {
            let (json, date) = row?;
            match date.as_str().cmp(today_s.as_str()) {
                std::cmp::Ordering::Less => agenda.overdue.push(json),
                std::cmp::Ordering::Equal => agenda.today.push(json),
                std::cmp::Ordering::Greater => agenda.upcoming.push(json),
            }
        }
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

    /// Every link and embed that resolves to no note or file, by path and line.
    pub fn broken_links(&self) -> Result<Vec<BrokenLink>, IndexError> {
        let resolver = self.resolver()?;
        let mut stmt = self.conn.prepare(
            "SELECT n.path, l.line, l.kind, l.target, l.subpath FROM links l JOIN notes n ON n.id = l.note_id
             ORDER BY n.path, l.line, l.seq",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<String>>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (path, line, kind, target, subpath) = row?;
            let link_kind = match kind.as_str() {
                "embed" => LinkKind::Embed,
                "markdown" => LinkKind::Markdown,
                _ => LinkKind::Wiki,
            };
            if resolver.resolve(&path, link_kind, &target).is_none() {
                out.push(BrokenLink {
                    path,
                    line: line as usize,
                    kind,
                    target: format!("{target}{}", subpath.unwrap_or_default()),
                });
            }
        }
        Ok(out)
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

/// Reads a stored task object back.
pub(super) fn parse_view(json: &str) -> Result<TaskView, IndexError> {
    serde_json::from_str(json).map_err(|e| {
        IndexError::BadQuery(format!(
            "a stored task is unreadable ({e}); run `quire index --full`"
        ))
    })
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
