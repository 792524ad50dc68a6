//! Dated tasks as an iCalendar (RFC 5545) calendar, for calendar apps to import or subscribe to.
//!
//! Each task gets a UID that survives the edits people make — ticking it off, moving its date,
//! moving lines around the note — so a subscribed calendar updates the entry rather than adding a
//! second one: it is derived from the note's path and the task's 🆔 id, else its block id, else its
//! description (with a counter for identical descriptions in one note). DTSTAMP is the note's
//! modification time, so the same vault always gives the same file.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use icalendar::{Calendar, Component, Event, EventLike, EventStatus, Todo, TodoStatus};
use sha2::Digest as _;

use super::query::{ROW_COLUMN_COUNT, TaskRow, row_columns_of};
use super::{Index, IndexError, TaskView};

/// What each dated task becomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CalendarKind {
    /// An all-day VEVENT on its due date (else scheduled, else start date): what every calendar app
    /// shows.
    #[default]
    Event,
    /// A VTODO with its due and start dates and status: for apps with task lists.
    Todo,
}

impl std::str::FromStr for CalendarKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "event" | "events" | "vevent" => Ok(CalendarKind::Event),
            "todo" | "todos" | "vtodo" => Ok(CalendarKind::Todo),
            other => Err(format!(
                "`{other}` is not a calendar kind; use event or todo"
            )),
        }
    }
}

impl Index {
    /// The vault's dated tasks (open and closed) as an iCalendar document named `name`.
    pub fn calendar(&self, kind: CalendarKind, name: &str) -> Result<String, IndexError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {}, n.mtime_ns FROM tasks t JOIN notes n ON n.id = t.note_id
             WHERE t.due IS NOT NULL OR t.scheduled IS NOT NULL OR t.start IS NOT NULL
             ORDER BY t.path, t.line",
            row_columns_of("t")
        ))?;
        let mut rows = stmt.query([])?;
        let mut cal = Calendar::empty();
        cal.append_property(("VERSION", "2.0"));
        cal.append_property(("PRODID", "-//quire//quire task calendar//EN"));
        cal.append_property(("CALSCALE", "GREGORIAN"));
        cal.name(&text(name));
        let mut seen: HashMap<(String, String), usize> = HashMap::new();
        while let Some(row) = rows.next()? {
            let task = TaskRow::from_row(row)?.view()?;
            let mtime_ns: i64 = row.get(ROW_COLUMN_COUNT)?;
            let stamp = DateTime::<Utc>::from_timestamp(mtime_ns.div_euclid(1_000_000_000), 0)
                .unwrap_or_default();
            let key = task
                .id
                .clone()
                .or_else(|| task.block_id.clone().map(|b| format!("^{b}")))
                .unwrap_or_else(|| task.text.clone());
            let n = seen.entry((task.path.clone(), key.clone())).or_insert(0);
            *n += 1;
            let uid = uid(&task.path, &key, *n);
            match kind {
                CalendarKind::Event => {
                    cal.push(event(&task, &uid, stamp));
                }
                CalendarKind::Todo => {
                    cal.push(todo(&task, &uid, stamp));
                }
            }
        }
        Ok(cal.done().to_string())
    }
}

fn uid(path: &str, key: &str, n: usize) -> String {
    let digest = sha2::Sha256::digest(format!("{path}\n{key}\n{n}").as_bytes());
    let hex = crate::hex(&digest[..12]);
    format!("{hex}@quire")
}

fn date(s: &Option<String>) -> Option<NaiveDate> {
    s.as_deref()
        .and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
}

/// iCalendar priority: 1 is highest, 9 lowest, 5 medium.
fn priority(p: Option<&str>) -> Option<u32> {
    Some(match p? {
        "highest" => 1,
        "high" => 3,
        "medium" => 5,
        "low" => 7,
        "lowest" => 9,
        _ => return None,
    })
}

fn common<C: Component>(c: &mut C, task: &TaskView, uid: &str, stamp: DateTime<Utc>) {
    c.uid(uid);
    c.timestamp(stamp);
    c.summary(&text(&task.text));
    c.description(&text(&format!("{}:{}", task.path, task.line)));
    if let Some(p) = priority(task.priority.as_deref()) {
        c.priority(p);
    }
    if !task.tags.is_empty() {
        c.add_property("CATEGORIES", text(&task.tags.join(",")));
    }
}

/// A value fit for an iCalendar TEXT property (RFC 5545 §3.3.11, which admits no control
/// characters but tab). A line break (CR, LF or CRLF) becomes one `\n`, which the writer escapes;
/// any other control character is dropped. A bare CR written raw would end the property line, so
/// a note could otherwise add properties of its own (`SUMMARY:a\rSUMMARY:forged`).
fn text(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                chars.next_if_eq(&'\n');
                out.push('\n');
            }
            '\n' | '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

fn event(task: &TaskView, uid: &str, stamp: DateTime<Utc>) -> Event {
    let mut e = Event::new();
    common(&mut e, task, uid, stamp);
    if let Some(day) = date(&task.due)
        .or_else(|| date(&task.scheduled))
        .or_else(|| date(&task.start))
    {
        // An all-day event ends (exclusively) the next day, RFC 5545 §3.6.1.
        e.starts(day);
        e.ends(day.succ_opt().unwrap_or(day));
    }
    if task.status == "cancelled" {
        e.status(EventStatus::Cancelled);
    } else {
        e.status(EventStatus::Confirmed);
    }
    e.done()
}

fn todo(task: &TaskView, uid: &str, stamp: DateTime<Utc>) -> Todo {
    let mut t = Todo::new();
    common(&mut t, task, uid, stamp);
    if let Some(due) = date(&task.due) {
        t.due(due);
    }
    if let Some(start) = date(&task.start).or_else(|| date(&task.scheduled)) {
        t.starts(start);
    }
    match task.status.as_str() {
        "done" => {
            t.status(TodoStatus::Completed);
            if let Some(done) = date(&task.done) {
                t.completed(done.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
            }
        }
        "cancelled" => {
            t.status(TodoStatus::Cancelled);
        }
        "in_progress" => {
            t.status(TodoStatus::InProcess);
        }
        _ => {
            t.status(TodoStatus::NeedsAction);
        }
    }
    t.done()
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_never_reach_the_calendar_raw() {
        assert_eq!(super::text("a\rSUMMARY:x"), "a\nSUMMARY:x");
        assert_eq!(super::text("a\r\nb\nc"), "a\nb\nc");
        assert_eq!(super::text("v\u{b}t\u{1b}[31m\u{7f}\tz"), "vt[31m\tz");
        assert_eq!(super::text("plain, text; ok"), "plain, text; ok");
    }
}
