//! The daemon's journal (`.quire/journal.db`): events with increasing sequence numbers, for
//! Server-Sent Events replay after `Last-Event-ID`, and the API's idempotency keys.
//!
//! A separate file from the task index: the index is derived and may be rebuilt at any time,
//! while the journal is what clients were told. Losing it (deleting `.quire/`) is survivable: a
//! client whose `Last-Event-ID` is unknown gets a `reset` event and reloads its state.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use super::IndexError;
use crate::events::Event;

/// The file name, in `.quire/`.
pub const JOURNAL_FILE: &str = "journal.db";
/// Events kept for replay.
pub const KEEP_EVENTS: i64 = 100_000;
/// How long idempotency keys are kept (the contract promises at least 24 hours).
pub const KEEP_KEYS: Duration = Duration::from_secs(48 * 3600);

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    body TEXT NOT NULL              -- the event as JSON
);
CREATE TABLE IF NOT EXISTS idempotency (
    scope TEXT NOT NULL,            -- the route
    key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    state TEXT NOT NULL,            -- in_flight or done
    status INTEGER,
    response TEXT,
    created INTEGER NOT NULL,       -- unix seconds
    PRIMARY KEY (scope, key)
) WITHOUT ROWID;
"#;

/// What an idempotency key says about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// First time: go ahead, then [`Journal::finish`].
    New,
    /// Done before with the same request: answer this (HTTP status, body).
    Done(u16, String),
    /// Same key, another request body.
    Mismatch,
    /// The same request is being handled right now.
    InFlight,
}

/// An open journal.
pub struct Journal {
    conn: Connection,
}

impl Journal {
    /// Opens (creating) the journal in `state_dir`. A file that is not a usable journal is moved
    /// aside and a fresh one made.
    pub fn open(state_dir: &Path) -> Result<Self, IndexError> {
        std::fs::create_dir_all(state_dir).map_err(|source| IndexError::Io {
            context: format!("could not create {}", state_dir.display()),
            source,
        })?;
        let path = state_dir.join(JOURNAL_FILE);
        match Self::open_at(&path) {
            Ok(j) => Ok(j),
            Err(e) => {
                tracing::warn!("{}: {e}; starting a fresh journal", path.display());
                let aside = state_dir.join(format!(
                    "{JOURNAL_FILE}.unusable-{}",
                    chrono::Utc::now().timestamp()
                ));
                let _ = std::fs::rename(&path, aside);
                for ext in ["-wal", "-shm"] {
                    let _ = std::fs::remove_file(state_dir.join(format!("{JOURNAL_FILE}{ext}")));
                }
                Self::open_at(&path)
            }
        }
    }

    fn open_at(path: &Path) -> Result<Self, IndexError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self { conn })
    }

    /// Appends `event`; returns its sequence number (increasing, never reused).
    pub fn append(&self, event: &Event) -> Result<i64, IndexError> {
        let body = serde_json::to_string(event).map_err(|e| IndexError::BadQuery(e.to_string()))?;
        self.conn
            .prepare_cached("INSERT INTO events (body) VALUES (?1)")?
            .execute([body])?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Events after `seq`, oldest first, at most `limit`.
    pub fn since(&self, seq: i64, limit: usize) -> Result<Vec<(i64, Event)>, IndexError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT seq, body FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2")?;
        let rows = stmt.query_map(params![seq, limit as i64], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, body) = row?;
            if let Ok(event) = serde_json::from_str(&body) {
                out.push((seq, event));
            }
        }
        Ok(out)
    }

    /// The oldest and newest sequence numbers kept (`None` when empty).
    pub fn range(&self) -> Result<Option<(i64, i64)>, IndexError> {
        Ok(self
            .conn
            .query_row("SELECT MIN(seq), MAX(seq) FROM events", [], |r| {
                Ok(
                    match (r.get::<_, Option<i64>>(0)?, r.get::<_, Option<i64>>(1)?) {
                        (Some(a), Some(b)) => Some((a, b)),
                        _ => None,
                    },
                )
            })?)
    }

    /// The highest sequence number ever given (kept across pruning), 0 when none.
    pub fn last_seq(&self) -> Result<i64, IndexError> {
        Ok(self
            .conn
            .query_row(
                "SELECT seq FROM sqlite_sequence WHERE name = 'events'",
                [],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0))
    }

    /// Drops events beyond [`KEEP_EVENTS`] and keys older than [`KEEP_KEYS`].
    pub fn prune(&self) -> Result<(), IndexError> {
        self.conn.execute(
            "DELETE FROM events WHERE seq <= (SELECT MAX(seq) FROM events) - ?1",
            [KEEP_EVENTS],
        )?;
        let cutoff = chrono::Utc::now().timestamp() - KEEP_KEYS.as_secs() as i64;
        self.conn
            .execute("DELETE FROM idempotency WHERE created < ?1", [cutoff])?;
        Ok(())
    }

    /// Claims idempotency key `key` of `scope` for a request whose body hashes to `hash`.
    pub fn claim(&self, scope: &str, key: &str, hash: &str) -> Result<Claim, IndexError> {
        let tx = self.conn.unchecked_transaction()?;
        let found: Option<(String, String, Option<u16>, Option<String>)> = tx
            .query_row(
                "SELECT request_hash, state, status, response FROM idempotency WHERE scope = ?1 AND key = ?2",
                params![scope, key],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        let claim = match found {
            Some((h, _, _, _)) if h != hash => Claim::Mismatch,
            Some((_, state, Some(status), Some(body))) if state == "done" => {
                Claim::Done(status, body)
            }
            Some(_) => Claim::InFlight,
            None => {
                tx.execute(
                    "INSERT INTO idempotency (scope, key, request_hash, state, created) VALUES (?1, ?2, ?3, 'in_flight', ?4)",
                    params![scope, key, hash, chrono::Utc::now().timestamp()],
                )?;
                Claim::New
            }
        };
        tx.commit()?;
        Ok(claim)
    }

    /// Stores the response to a claimed key.
    pub fn finish(
        &self,
        scope: &str,
        key: &str,
        status: u16,
        response: &str,
    ) -> Result<(), IndexError> {
        self.conn.execute(
            "UPDATE idempotency SET state = 'done', status = ?3, response = ?4 WHERE scope = ?1 AND key = ?2",
            params![scope, key, status, response],
        )?;
        Ok(())
    }

    /// Forgets a claimed key whose request failed inside quire (so a retry can succeed).
    pub fn release(&self, scope: &str, key: &str) -> Result<(), IndexError> {
        self.conn.execute(
            "DELETE FROM idempotency WHERE scope = ?1 AND key = ?2 AND state = 'in_flight'",
            params![scope, key],
        )?;
        Ok(())
    }

    /// Forgets keys left in flight by a daemon that died (called at start-up).
    pub fn release_all_in_flight(&self) -> Result<(), IndexError> {
        self.conn
            .execute("DELETE FROM idempotency WHERE state = 'in_flight'", [])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_replay_in_order_and_keys_decide_once() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        let a = j
            .append(&Event::new("x.a", "s", serde_json::json!({}), None))
            .unwrap();
        let b = j
            .append(&Event::new("x.b", "s", serde_json::json!({}), None))
            .unwrap();
        assert!(b > a);
        let after_a = j.since(a, 10).unwrap();
        assert_eq!(after_a.len(), 1);
        assert_eq!(after_a[0].1.kind, "x.b");
        assert_eq!(j.range().unwrap(), Some((a, b)));
        assert_eq!(j.last_seq().unwrap(), b);

        assert_eq!(j.claim("r", "k", "h1").unwrap(), Claim::New);
        assert_eq!(j.claim("r", "k", "h1").unwrap(), Claim::InFlight);
        assert_eq!(j.claim("r", "k", "h2").unwrap(), Claim::Mismatch);
        j.finish("r", "k", 201, "{}").unwrap();
        assert_eq!(
            j.claim("r", "k", "h1").unwrap(),
            Claim::Done(201, "{}".into())
        );
        assert_eq!(
            j.claim("other", "k", "h2").unwrap(),
            Claim::New,
            "keys are per route"
        );
        j.release("other", "k").unwrap();
        assert_eq!(j.claim("other", "k", "h3").unwrap(), Claim::New);

        // Reopened: what clients were told is still there.
        drop(j);
        let j = Journal::open(dir.path()).unwrap();
        assert_eq!(j.since(0, 10).unwrap().len(), 2);

        // A file that is not a journal is set aside.
        drop(j);
        std::fs::write(dir.path().join(JOURNAL_FILE), b"not a database at all").unwrap();
        let j = Journal::open(dir.path()).unwrap();
        assert_eq!(j.since(0, 10).unwrap().len(), 0);
    }
}
