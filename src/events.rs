//! Events (`quire.event/1`): plain data describing what happened, written as JSON Lines to
//! `07_LOGS/quire-YYYY-MM-DD.jsonl` and, from the daemon, streamed to clients.
//!
//! Producers take a `&mut dyn EventSink` and never know where events go.

use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The contract name of events.
pub const EVENT_CONTRACT: &str = "quire.event/1";

/// One event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unique, and ordered by time within one process.
    pub id: String,
    /// What happened (`contribution.applied`, `render.completed`, …).
    #[serde(rename = "type")]
    pub kind: String,
    /// When (RFC 3339 UTC, milliseconds).
    pub at: String,
    /// What it happened to (a bundle id, a theme, a sandbox).
    pub subject: String,
    /// Details, by type.
    pub data: Value,
    /// Ties together the events of one piece of work (a bundle's id, a job id).
    pub correlation_id: Option<String>,
}

impl Event {
    /// A new event happening now.
    pub fn new(
        kind: &str,
        subject: impl Into<String>,
        data: Value,
        correlation_id: Option<String>,
    ) -> Self {
        let now = chrono::Utc::now();
        Self {
            id: new_id(now),
            kind: kind.to_owned(),
            at: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            subject: subject.into(),
            data,
            correlation_id,
        }
    }
}

/// A time-ordered unique id: milliseconds since the epoch and a per-process sequence number, in hex,
/// then random bits so ids from two processes do not collide. Events use it; so do render jobs.
pub(crate) fn new_id(now: chrono::DateTime<chrono::Utc>) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed) & 0xffff;
    let mut rand = [0u8; 4];
    let _ = getrandom::fill(&mut rand);
    format!(
        "{:012x}{:04x}{:08x}",
        now.timestamp_millis(),
        seq,
        u32::from_be_bytes(rand)
    )
}

/// Where events go.
pub trait EventSink {
    /// Records one event. Sinks do not fail the work that emits: a sink that cannot record logs why.
    fn emit(&mut self, event: Event);
}

/// Drops every event.
#[derive(Debug, Default)]
pub struct NoEvents;

impl EventSink for NoEvents {
    fn emit(&mut self, _event: Event) {}
}

impl EventSink for Vec<Event> {
    fn emit(&mut self, event: Event) {
        self.push(event);
    }
}

/// Appends events to `07_LOGS/quire-YYYY-MM-DD.jsonl` (one file per UTC day).
#[derive(Debug)]
pub struct JsonlLog {
    dir: PathBuf,
    open: Option<(String, File)>,
}

impl JsonlLog {
    /// A log writing into `dir` (created on first write).
    pub fn new(dir: PathBuf) -> Self {
        Self { dir, open: None }
    }

    fn write(&mut self, event: &Event) -> io::Result<()> {
        let day = event.at.get(..10).unwrap_or("unknown").to_owned();
        if self.open.as_ref().is_none_or(|(d, _)| *d != day) {
            std::fs::create_dir_all(&self.dir)?;
            let file = File::options()
                .create(true)
                .append(true)
                .open(self.dir.join(format!("quire-{day}.jsonl")))?;
            self.open = Some((day, file));
        }
        let mut line = serde_json::to_vec(event).map_err(io::Error::other)?;
        line.push(b'\n');
        match self.open.as_mut() {
            // One write per line: appends of a few KB are not interleaved with another process's.
            Some((_, f)) => f.write_all(&line),
            None => Ok(()),
        }
    }
}

impl EventSink for JsonlLog {
    fn emit(&mut self, event: Event) {
        if let Err(e) = self.write(&event) {
            tracing::warn!(dir = %self.dir.display(), "could not write to the event log: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_ordered() {
        let a = Event::new("t", "s", Value::Null, None);
        let b = Event::new("t", "s", Value::Null, None);
        assert_ne!(a.id, b.id);
        assert!(a.id[..16] < b.id[..16]);
    }

    #[test]
    fn jsonl_log_appends_one_object_per_line() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = JsonlLog::new(dir.path().join("07_LOGS"));
        log.emit(Event::new(
            "contribution.applied",
            "b-1",
            serde_json::json!({"commit": "abc"}),
            Some("b-1".into()),
        ));
        log.emit(Event::new(
            "contribution.rejected",
            "b-2",
            Value::Null,
            None,
        ));
        let file = std::fs::read_dir(dir.path().join("07_LOGS"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let text = std::fs::read_to_string(file).unwrap();
        let events: Vec<Event> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].kind, "contribution.applied");
        assert!(text.contains("\"type\":\"contribution.applied\""));
    }
}
