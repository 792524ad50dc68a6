//! The SQLite file: opening it, its schema, and what happens when it is old, new or broken.
//!
//! The schema version lives in `PRAGMA user_version`. Each entry of [`MIGRATIONS`] takes the file
//! from one version to the next, in one transaction. Everything in the index is derived from the
//! vault, so a file that cannot be used — written by a newer quire, not a database, corrupt — is moved
//! aside and a fresh one created; the next update fills it. Nothing here ever fails because of what
//! it finds on disk.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::IndexError;

/// The file name, in `.quire/`.
pub const DB_FILE: &str = "state.db";

/// Schema migrations; `MIGRATIONS[i]` moves version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: notes, attachments, tags, aliases, headings, tasks, links, problems. Child tables are
    // clustered by note id, so a note's rows are one range: appended when written, removed in one
    // sweep when the note changes.
    r#"
    CREATE TABLE notes (
        id INTEGER PRIMARY KEY,
        path TEXT NOT NULL UNIQUE,
        title TEXT NOT NULL,
        frontmatter TEXT NOT NULL,      -- JSON object
        mission TEXT,                   -- the note's mission (front matter, else folder)
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        hash BLOB NOT NULL
    );
    CREATE TABLE files (path TEXT PRIMARY KEY) WITHOUT ROWID;   -- attachments: every other file
    CREATE TABLE note_tags (
        note_id INTEGER NOT NULL, seq INTEGER NOT NULL, tag TEXT NOT NULL,
        PRIMARY KEY (note_id, seq)
    ) WITHOUT ROWID;
    CREATE TABLE aliases (
        note_id INTEGER NOT NULL, seq INTEGER NOT NULL, alias TEXT NOT NULL,
        PRIMARY KEY (note_id, seq)
    ) WITHOUT ROWID;
    CREATE TABLE headings (
        note_id INTEGER NOT NULL, seq INTEGER NOT NULL, line INTEGER NOT NULL, level INTEGER NOT NULL, text TEXT NOT NULL,
        PRIMARY KEY (note_id, seq)
    ) WITHOUT ROWID;
    CREATE TABLE tasks (
        note_id INTEGER NOT NULL,
        line INTEGER NOT NULL,
        path TEXT NOT NULL,
        status TEXT NOT NULL,           -- open, done, in_progress, cancelled, or the character
        closed INTEGER NOT NULL,        -- 1 when done or cancelled
        due TEXT, scheduled TEXT, start TEXT, created TEXT, done TEXT, cancelled TEXT,
        agenda TEXT,                    -- due, else scheduled: the date the agenda files it under
        priority INTEGER,               -- 1 lowest … 5 highest
        mission TEXT,
        tags TEXT NOT NULL,             -- ` tag1 tag2 ` lowercased, for filtering
        json TEXT NOT NULL,             -- the task exactly as `quire tasks --json` prints it
        PRIMARY KEY (note_id, line)
    ) WITHOUT ROWID;
    CREATE INDEX tasks_open ON tasks(closed, agenda);
    CREATE INDEX tasks_mission ON tasks(mission);
    CREATE TABLE links (
        note_id INTEGER NOT NULL, seq INTEGER NOT NULL,
        line INTEGER NOT NULL,
        kind TEXT NOT NULL,             -- wikilink, embed, markdown
        target TEXT NOT NULL,           -- as written
        subpath TEXT,                   -- #Heading or #^block
        PRIMARY KEY (note_id, seq)
    ) WITHOUT ROWID;
    CREATE TABLE problems (
        note_id INTEGER NOT NULL, seq INTEGER NOT NULL,
        line INTEGER, code TEXT NOT NULL, message TEXT NOT NULL,
        PRIMARY KEY (note_id, seq)
    ) WITHOUT ROWID;
    "#,
];

/// The schema version this quire writes.
pub(super) fn current_version() -> i64 {
    MIGRATIONS.len() as i64
}

/// Opens (creating, migrating or rebuilding as needed) the index database in `state_dir`.
pub(super) fn open(state_dir: &Path) -> Result<Connection, IndexError> {
    std::fs::create_dir_all(state_dir).map_err(|source| IndexError::Io {
        context: format!("could not create {}", state_dir.display()),
        source,
    })?;
    let path = state_dir.join(DB_FILE);
    match try_open(&path) {
        Ok(conn) => Ok(conn),
        Err(reason) => {
            let aside = set_aside(&path)?;
            tracing::warn!(db = %path.display(), aside = %aside.display(), "the index could not be used ({reason}); rebuilding it");
            try_open(&path).map_err(|reason| IndexError::Unusable {
                path: path.clone(),
                reason,
            })
        }
    }
}

/// Opens and migrates; any failure is a reason to rebuild.
fn try_open(path: &Path) -> Result<Connection, String> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| e.to_string())?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    // WAL: readers never block the writer, and a crash never leaves a torn page.
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(|e| e.to_string())?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(format!("journal mode is {mode}, not WAL"));
    }
    conn.execute_batch(
        "PRAGMA synchronous = NORMAL; PRAGMA temp_store = MEMORY; PRAGMA cache_size = -32000;",
    )
    .map_err(|e| e.to_string())?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| e.to_string())?;
    if version > current_version() {
        return Err(format!(
            "written by a newer quire (schema {version}, this one reads {})",
            current_version()
        ));
    }
    if version < 0 {
        return Err(format!("unknown schema version {version}"));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let next = i as i64 + 1;
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {sql}; PRAGMA user_version = {next}; COMMIT;"
        ))
        .map_err(|e| {
            let _ = conn.execute_batch("ROLLBACK");
            format!("migration to schema {next} failed: {e}")
        })?;
    }
    // A header that reads but a schema that does not match means someone else's file.
    conn.query_row("SELECT count(*) FROM notes", [], |r| r.get::<_, i64>(0))
        .map_err(|e| e.to_string())?;
    Ok(conn)
}

/// Moves a database that cannot be used (and its WAL files) out of the way, keeping it for a post
/// mortem. Returns where it went.
fn set_aside(path: &Path) -> Result<PathBuf, IndexError> {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S");
    let aside = (1u32..)
        .map(|n| path.with_file_name(format!("{DB_FILE}.unusable-{stamp}-{n}")))
        .find(|p| !p.exists())
        .unwrap_or_else(|| path.with_file_name(format!("{DB_FILE}.unusable")));
    for suffix in ["", "-wal", "-shm"] {
        let from = PathBuf::from(format!("{}{suffix}", path.display()));
        if from.exists() {
            let to = PathBuf::from(format!("{}{suffix}", aside.display()));
            std::fs::rename(&from, &to).map_err(|source| IndexError::Io {
                context: format!("could not move the unusable index {} aside", from.display()),
                source,
            })?;
        }
    }
    Ok(aside)
}
