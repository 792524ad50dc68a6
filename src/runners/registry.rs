//! Who may take steps: runner tokens and the runners seen, in `.quire/runners.db`.
//!
//! A runner token is made by `quire runner token new NAME` and shown once; only its SHA-256 is
//! kept. It is not the API token: it lets a runner lease steps, send their logs and results, and
//! nothing else, and the API token is never accepted in its place. `quire runner token revoke
//! NAME` ends it at once: the runner's next request is refused, and so its lease runs out and its
//! step goes to another.
//!
//! Tokens are credentials, not state quire can rebuild from Git: a deleted `.quire/` loses them,
//! and each runner then needs a new one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

/// The registry's file in `.quire/`.
pub const FILE: &str = "runners.db";

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS tokens (
    name TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    created TEXT NOT NULL,
    revoked TEXT
);
CREATE TABLE IF NOT EXISTS seen (
    name TEXT PRIMARY KEY,
    labels TEXT NOT NULL DEFAULT '[]',
    slots INTEGER NOT NULL DEFAULT 1,
    host TEXT NOT NULL DEFAULT '',
    version TEXT NOT NULL DEFAULT '',
    first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL
);
"#;

/// The registry failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// SQLite refused.
    #[error("{context}: {source}")]
    State {
        /// What quire was doing.
        context: String,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
    /// The folder could not be made.
    #[error("could not create {}: {source}", path.display())]
    Io {
        /// The folder.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A runner name that cannot be one.
    #[error("{0:?} cannot name a runner: use 1 to 64 letters, digits, `-`, `_` or `.`")]
    BadName(String),
    /// A name that already has a live token.
    #[error("runner `{0}` already has a token; revoke it first (`quire runner token revoke {0}`)")]
    Exists(String),
    /// No token of that name.
    #[error("no runner `{0}` has a token")]
    Unknown(String),
}

fn sql(context: &str) -> impl FnOnce(rusqlite::Error) -> RegistryError + '_ {
    move |source| RegistryError::State {
        context: context.to_owned(),
        source,
    }
}

/// A runner, as `GET /api/runners` and the control plane list it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Runner {
    /// Its name (the token's).
    pub name: String,
    /// What it can run (`linux`, `gpu`).
    pub labels: Vec<String>,
    /// How many steps it runs at once.
    pub slots: u32,
    /// The machine it says it runs on.
    pub host: String,
    /// Its quire version.
    pub version: String,
    /// When it first asked for work (RFC 3339).
    pub first_seen: String,
    /// When it last did anything (RFC 3339).
    pub last_seen: String,
    /// Whether its token is revoked.
    pub revoked: bool,
}

/// `.quire/runners.db`, open.
pub struct Registry {
    conn: Connection,
}

impl Registry {
    /// Opens (creating) the registry in `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Self, RegistryError> {
        std::fs::create_dir_all(state_dir).map_err(|source| RegistryError::Io {
            path: state_dir.to_owned(),
            source,
        })?;
        let open = || -> rusqlite::Result<Connection> {
            let conn = Connection::open(state_dir.join(FILE))?;
            conn.busy_timeout(Duration::from_secs(10))?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            conn.execute_batch(SCHEMA)?;
            Ok(conn)
        };
        Ok(Self {
            conn: open().map_err(sql("could not open .quire/runners.db"))?,
        })
    }

    /// Makes a token for runner `name` and returns it; it is not kept, only its hash.
    pub fn new_token(&self, name: &str) -> Result<String, RegistryError> {
        if !crate::missions::valid_label(name) {
            return Err(RegistryError::BadName(name.to_owned()));
        }
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| RegistryError::Io {
            path: PathBuf::from("getrandom"),
            source: std::io::Error::other(e.to_string()),
        })?;
        let token = format!("quire-runner-{}", crate::hex(&bytes));
        let live: Option<String> = self
            .conn
            .query_row(
                "SELECT name FROM tokens WHERE name = ?1 AND revoked IS NULL",
                [name],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql("could not read .quire/runners.db"))?;
        if live.is_some() {
            return Err(RegistryError::Exists(name.to_owned()));
        }
        self.conn
            .execute(
                "INSERT OR REPLACE INTO tokens (name, hash, created, revoked) VALUES (?1, ?2, ?3, NULL)",
                params![name, hash(&token), crate::contributions::now_rfc3339()],
            )
            .map_err(sql("could not write .quire/runners.db"))?;
        Ok(token)
    }

    /// Ends runner `name`'s token.
    pub fn revoke(&self, name: &str) -> Result<(), RegistryError> {
        let n = self
            .conn
            .execute(
                "UPDATE tokens SET revoked = ?1 WHERE name = ?2 AND revoked IS NULL",
                params![crate::contributions::now_rfc3339(), name],
            )
            .map_err(sql("could not write .quire/runners.db"))?;
        if n == 0 {
            return Err(RegistryError::Unknown(name.to_owned()));
        }
        Ok(())
    }

    /// The runner a token names, if it is live.
    pub fn check(&self, token: &str) -> Result<Option<String>, RegistryError> {
        if !token.starts_with("quire-runner-") {
            return Ok(None);
        }
        self.conn
            .prepare_cached("SELECT name FROM tokens WHERE hash = ?1 AND revoked IS NULL")
            .and_then(|mut s| s.query_row([hash(token)], |r| r.get(0)).optional())
            .map_err(sql("could not read .quire/runners.db"))
    }

    /// Records that runner `name` asked for work, with what it says of itself.
    pub fn seen(
        &self,
        name: &str,
        labels: &[String],
        slots: u32,
        host: &str,
        version: &str,
    ) -> Result<(), RegistryError> {
        let now = crate::contributions::now_rfc3339();
        self.conn
            .prepare_cached(
                "INSERT INTO seen (name, labels, slots, host, version, first_seen, last_seen) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6) \
                 ON CONFLICT(name) DO UPDATE SET labels = ?2, slots = ?3, host = ?4, version = ?5, last_seen = ?6",
            )
            .and_then(|mut s| {
                s.execute(params![
                    name,
                    serde_json::to_string(labels).unwrap_or_else(|_| "[]".into()),
                    slots,
                    host,
                    version,
                    now
                ])
            })
            .map(|_| ())
            .map_err(sql("could not write .quire/runners.db"))
    }

    /// Marks runner `name` as seen now (a heartbeat).
    pub fn touch(&self, name: &str) -> Result<(), RegistryError> {
        self.conn
            .prepare_cached("UPDATE seen SET last_seen = ?1 WHERE name = ?2")
            .and_then(|mut s| s.execute(params![crate::contributions::now_rfc3339(), name]))
            .map(|_| ())
            .map_err(sql("could not write .quire/runners.db"))
    }

    /// Every runner seen or given a token, by name.
    pub fn runners(&self) -> Result<Vec<Runner>, RegistryError> {
        let read = || -> rusqlite::Result<Vec<Runner>> {
            let mut s = self.conn.prepare(
                "SELECT t.name, COALESCE(s.labels, '[]'), COALESCE(s.slots, 0), COALESCE(s.host, ''), COALESCE(s.version, ''), \
                 COALESCE(s.first_seen, ''), COALESCE(s.last_seen, ''), t.revoked IS NOT NULL \
                 FROM tokens t LEFT JOIN seen s ON s.name = t.name ORDER BY t.name",
            )?;
            s.query_map([], |r| {
                let labels: String = r.get(1)?;
                Ok(Runner {
                    name: r.get(0)?,
                    labels: serde_json::from_str(&labels).unwrap_or_default(),
                    slots: r.get(2)?,
                    host: r.get(3)?,
                    version: r.get(4)?,
                    first_seen: r.get(5)?,
                    last_seen: r.get(6)?,
                    revoked: r.get(7)?,
                })
            })?
            .collect()
        };
        read().map_err(sql("could not read .quire/runners.db"))
    }
}

fn hash(token: &str) -> String {
    crate::contributions::sha256_hex(token.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_its_runner_until_revoked_and_is_kept_only_as_a_hash() {
        let dir = tempfile::tempdir().unwrap();
        let r = Registry::open(dir.path()).unwrap();
        let t = r.new_token("box-1").unwrap();
        assert_eq!(r.check(&t).unwrap().as_deref(), Some("box-1"));
        assert_eq!(r.check("quire-runner-00").unwrap(), None);
        assert_eq!(r.check("some-api-token").unwrap(), None);
        assert!(matches!(
            r.new_token("box-1"),
            Err(RegistryError::Exists(_))
        ));
        assert!(matches!(
            r.new_token("no spaces"),
            Err(RegistryError::BadName(_))
        ));
        for f in std::fs::read_dir(dir.path()).unwrap() {
            let bytes = std::fs::read(f.unwrap().path()).unwrap();
            assert!(
                !bytes.windows(t.len()).any(|w| w == t.as_bytes()),
                "the token itself is stored"
            );
        }
        r.revoke("box-1").unwrap();
        assert_eq!(r.check(&t).unwrap(), None);
        assert!(matches!(r.revoke("box-1"), Err(RegistryError::Unknown(_))));
        // A new token after a revocation works; the old one stays dead.
        let t2 = r.new_token("box-1").unwrap();
        assert_eq!(r.check(&t2).unwrap().as_deref(), Some("box-1"));
        assert_eq!(r.check(&t).unwrap(), None);
        r.seen("box-1", &["gpu".into()], 2, "h", "0.1").unwrap();
        let all = r.runners().unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!((all[0].slots, all[0].revoked), (2, false));
    }
}
