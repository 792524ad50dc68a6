//! What the index stores for one note, computed from its text alone (so notes are prepared in
//! parallel, and only the writing is serial).
//!
//! A task is stored as columns (what queries filter and sort on) and `rest`, a small JSON array of
//! the other fields; [`TaskView`] is made back from the two.

use chrono::Datelike as _;

use super::TaskView;
use crate::markdown::{NoteHeading, NoteLink, ParsedNote, parse_note};

/// The folder holding one folder per mission.
pub const MISSIONS_DIR: &str = "01_MISSIONS";

/// The tag prefix that puts a task in a mission (`#mission/<id>`).
pub const MISSION_TAG: &str = "mission/";

/// One note, ready to write.
#[derive(Debug, Clone)]
pub(crate) struct NoteRecord {
    pub(crate) path: String,
    pub(crate) size: i64,
    pub(crate) mtime_ns: i64,
    pub(crate) hash: Vec<u8>,
    pub(crate) title: String,
    pub(crate) frontmatter: String,
    pub(crate) mission: Option<String>,
    /// JSON array of tags.
    pub(crate) tags: String,
    /// JSON array of aliases.
    pub(crate) aliases: String,
    /// JSON array of `[level, line, text]`.
    pub(crate) headings: String,
    /// JSON array of `[line, kind, target, subpath]`.
    pub(crate) links: String,
    pub(crate) tasks: Vec<TaskRecord>,
    pub(crate) problems: Vec<NoteProblem>,
}

/// One task, ready to write.
#[derive(Debug, Clone)]
pub(crate) struct TaskRecord {
    pub(crate) line: usize,
    pub(crate) status: String,
    pub(crate) closed: bool,
    pub(crate) dates: [Option<String>; 6],
    pub(crate) priority: Option<u8>,
    pub(crate) mission: Option<String>,
    pub(crate) tags: String,
    pub(crate) text: String,
    /// The `rest` column: the fields no query filters on ([`rest_json`]).
    pub(crate) rest: String,
    /// The task as parsed: handed to a reader in the same process that comes right after the
    /// update, instead of being read back.
    pub(crate) view: std::sync::Arc<TaskView>,
}

/// Something wrong in a note that `quire check` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NoteProblem {
    pub(crate) line: Option<usize>,
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

/// What the renderer needs to know of a note, besides its text.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogNote {
    /// Vault path.
    pub path: String,
    /// Front matter `title`, else the first heading, else the file name.
    pub title: String,
    /// The front matter.
    pub front_matter: serde_json::Map<String, serde_json::Value>,
    /// Tags without `#` (front matter and inline).
    pub tags: Vec<String>,
    /// Aliases.
    pub aliases: Vec<String>,
    /// Headings: level, 1-based line, text.
    pub headings: Vec<(u8, usize, String)>,
    /// The note's mission.
    pub mission: Option<String>,
    /// SHA-256 of the note's bytes.
    pub hash: Vec<u8>,
}

/// A note's catalog entry and tasks, from its bytes (for content that is not in the index).
pub fn describe_note(path: &str, bytes: &[u8]) -> (CatalogNote, Vec<TaskView>) {
    use sha2::Digest as _;
    let hash = sha2::Sha256::digest(bytes).to_vec();
    let mut record = note_record(path, bytes, bytes.len() as i64, 0, hash);
    let tasks = std::mem::take(&mut record.tasks)
        .into_iter()
        .map(|t| std::sync::Arc::unwrap_or_clone(t.view))
        .collect();
    (catalog_from_record(record), tasks)
}

fn catalog_from_record(r: NoteRecord) -> CatalogNote {
    CatalogNote {
        front_matter: serde_json::from_str(&r.frontmatter).unwrap_or_default(),
        tags: serde_json::from_str(&r.tags).unwrap_or_default(),
        aliases: serde_json::from_str(&r.aliases).unwrap_or_default(),
        headings: serde_json::from_str(&r.headings).unwrap_or_default(),
        path: r.path,
        title: r.title,
        mission: r.mission,
        hash: r.hash,
    }
}

/// Builds the record of the note at vault path `path` from its bytes.
pub(crate) fn note_record(
    path: &str,
    bytes: &[u8],
    size: i64,
    mtime_ns: i64,
    hash: Vec<u8>,
) -> NoteRecord {
    let mut problems = Vec::new();
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => std::borrow::Cow::Borrowed(t),
        Err(e) => {
            problems.push(NoteProblem {
                line: None,
                code: "not_utf8",
                message: format!(
                    "the note is not UTF-8 (invalid byte at offset {}); read as far as possible",
                    e.valid_up_to()
                ),
            });
            String::from_utf8_lossy(bytes)
        }
    };
    let stem = path.rsplit('/').next().unwrap_or(path);
    let stem = stem.strip_suffix(".md").unwrap_or(stem);
    let note = parse_note(stem, &text);
    if let Some(e) = &note.front_matter_error {
        problems.push(NoteProblem {
            line: Some(e.line),
            code: "bad_front_matter",
            message: format!("{e}; the body is indexed without it"),
        });
    }
    let note_mission = note_mission(path, &note);
    let task_problems = |t: &crate::markdown::NoteTask| {
        let mut problems = Vec::new();
        for (field, raw) in t.fields.invalid_dates() {
            problems.push(NoteProblem {
                line: Some(t.line),
                code: "invalid_date",
                message: format!("the task's {field} date `{raw}` is not a real date (YYYY-MM-DD)"),
            });
        }
        for (field, text) in t.fields.stranded_fields() {
            problems.push(NoteProblem {
                    line: Some(t.line),
                    code: "unparsed_field",
                    message: format!(
                        "`{text}` is read as text, not as the task's {field} date: write the date as YYYY-MM-DD and put fields at the end of the line"
                    ),
                });
        }
        problems
    };
    // A note with very many tasks is as much work as a vault: its records are made on all cores
    // (in order: problems are listed by line), each straight into its place.
    let make = |t: &crate::markdown::NoteTask| {
        (
            task_record(path, t, note_mission.as_deref()),
            task_problems(t),
        )
    };
    let (tasks, found): (Vec<TaskRecord>, Vec<Vec<NoteProblem>>) =
        if note.tasks.len() >= crate::markdown::note::MANY_TASKS {
            use rayon::prelude::*;
            note.tasks.par_iter().with_min_len(1024).map(make).unzip()
        } else {
            note.tasks.iter().map(make).unzip()
        };
    problems.extend(found.into_iter().flatten());
    NoteRecord {
        path: path.to_owned(),
        size,
        mtime_ns,
        hash,
        title: note.title.clone(),
        frontmatter: serde_json::Value::Object(note.front_matter.clone()).to_string(),
        mission: note_mission,
        tags: json_array(&note.tags),
        aliases: json_array(&note.aliases),
        headings: headings_json(&note.headings),
        links: links_json(&note.links),
        tasks,
        problems,
    }
}

fn json_array(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

fn headings_json(headings: &[NoteHeading]) -> String {
    let rows: Vec<(u8, usize, &str)> = headings
        .iter()
        .map(|h| (h.level, h.line, h.text.as_str()))
        .collect();
    serde_json::to_string(&rows).unwrap_or_else(|_| "[]".into())
}

/// A stored link: `[line, kind, target, subpath]`.
pub(crate) type StoredLink = (usize, String, String, Option<String>);

fn links_json(links: &[NoteLink]) -> String {
    let rows: Vec<(usize, &str, &str, Option<&str>)> = links
        .iter()
        .map(|l| {
            (
                l.line,
                l.kind.name(),
                l.target.as_str(),
                l.subpath.as_deref(),
            )
        })
        .collect();
    serde_json::to_string(&rows).unwrap_or_else(|_| "[]".into())
}

/// The mission a note belongs to: front matter `mission`, else the `01_MISSIONS/<id>/` folder it is
/// in (for a mission's own `mission.md`, its front matter `id`).
fn note_mission(path: &str, note: &ParsedNote) -> Option<String> {
    let fm = |k: &str| {
        note.front_matter
            .get(k)
            .and_then(|v| v.as_str())
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    if let Some(m) = fm("mission") {
        return Some(m.to_owned());
    }
    let (id, rest) = path
        .strip_prefix(MISSIONS_DIR)?
        .strip_prefix('/')?
        .split_once('/')?;
    if rest == "mission.md"
        && let Some(own) = fm("id")
    {
        return Some(own.to_owned());
    }
    Some(id.to_owned())
}

fn task_record(
    path: &str,
    t: &crate::markdown::NoteTask,
    note_mission: Option<&str>,
) -> TaskRecord {
    let f = &t.fields;
    let iso = |d: &Option<crate::markdown::DateField>| {
        d.as_ref().and_then(|d| d.date).map(|d| {
            use std::fmt::Write as _;
            let mut s = String::with_capacity(10);
            let _ = write!(s, "{:04}-{:02}-{:02}", d.year(), d.month(), d.day());
            s
        })
    };
    let dates = [
        iso(&f.due),
        iso(&f.scheduled),
        iso(&f.start),
        iso(&f.created),
        iso(&f.done),
        iso(&f.cancelled),
    ];
    // Most specific first: the task's own `#mission/<id>`, then the note's mission.
    let mission = t
        .tags
        .iter()
        .find(|tag| {
            tag.len() > MISSION_TAG.len()
                && tag
                    .get(..MISSION_TAG.len())
                    .is_some_and(|p| p.eq_ignore_ascii_case(MISSION_TAG))
        })
        .map(|tag| tag[MISSION_TAG.len()..].to_owned())
        .or_else(|| note_mission.map(str::to_owned));
    let status = t.status.name();
    let view = TaskView {
        path: path.to_owned(),
        line: t.line,
        status: status.clone(),
        text: f.description.clone(),
        due: dates[0].clone(),
        scheduled: dates[1].clone(),
        start: dates[2].clone(),
        created: dates[3].clone(),
        done: dates[4].clone(),
        cancelled: dates[5].clone(),
        priority: f.priority.map(|p| p.name().to_owned()),
        recurrence: f.recurrence.clone(),
        id: f.id.clone(),
        depends_on: f.depends_on.clone(),
        tags: t.tags.clone(),
        mission: mission.clone(),
        heading: t.heading.clone(),
        block_id: f.block_id.clone(),
    };
    let rest = rest_json(&view);
    TaskRecord {
        line: t.line,
        closed: t.status.is_closed(),
        status,
        dates,
        priority: f.priority.map(|p| p as u8 + 1),
        mission,
        // Padded with spaces so `LIKE '% tag %'` and `LIKE '% tag/%'` match whole tags.
        tags: format!(
            " {} ",
            t.tags
                .iter()
                .map(|s| s.to_lowercase())
                .collect::<Vec<_>>()
                .join(" ")
        ),
        text: f.description.clone(),
        rest,
        view: std::sync::Arc::new(view),
    }
}

/// The fields of a task no query filters on, as stored in the `rest` column.
type Rest = (
    Option<String>,
    Option<String>,
    Vec<String>,
    Vec<String>,
    Option<String>,
    Option<String>,
);

/// The `rest` column of `view`: `[recurrence, id, depends_on, tags, heading, block_id]`.
pub(crate) fn rest_json(view: &TaskView) -> String {
    // Strings and lists of strings always serialize.
    serde_json::to_string(&(
        &view.recurrence,
        &view.id,
        &view.depends_on,
        &view.tags,
        &view.heading,
        &view.block_id,
    ))
    .unwrap_or_default()
}

/// The columns of a task row, borrowed, and the view made of them.
pub(crate) struct StoredTask<'r> {
    pub(crate) path: &'r str,
    pub(crate) line: i64,
    pub(crate) status: &'r str,
    pub(crate) text: &'r str,
    /// due, scheduled, start, created, done, cancelled.
    pub(crate) dates: [Option<&'r str>; 6],
    /// 1 (lowest) to 5 (highest).
    pub(crate) priority: Option<i64>,
    pub(crate) mission: Option<&'r str>,
    pub(crate) rest: &'r str,
}

/// A priority's name, from its stored rank.
pub(crate) fn priority_name(rank: i64) -> Option<&'static str> {
    Some(match rank {
        1 => "lowest",
        2 => "low",
        3 => "medium",
        4 => "high",
        5 => "highest",
        _ => return None,
    })
}

impl StoredTask<'_> {
    /// The task, as `quire tasks --json` prints it.
    pub(crate) fn view(&self) -> Result<TaskView, serde_json::Error> {
        let (recurrence, id, depends_on, tags, heading, block_id): Rest =
            serde_json::from_str(self.rest)?;
        let date = |i: usize| self.dates[i].map(str::to_owned);
        Ok(TaskView {
            path: self.path.to_owned(),
            line: usize::try_from(self.line).unwrap_or_default(),
            status: self.status.to_owned(),
            text: self.text.to_owned(),
            due: date(0),
            scheduled: date(1),
            start: date(2),
            created: date(3),
            done: date(4),
            cancelled: date(5),
            priority: self.priority.and_then(priority_name).map(str::to_owned),
            recurrence,
            id,
            depends_on,
            tags,
            mission: self.mission.map(str::to_owned),
            heading,
            block_id,
        })
    }
}
