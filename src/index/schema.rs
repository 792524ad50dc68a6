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
    // 1: notes (with their tags, aliases, headings and links as JSON: read in bulk, never queried
    // one by one), attachments, tasks (one row each, for queries), problems. Child tables are
    // clustered by note id, so a note's rows are one range: appended when written, removed in one
    // sweep when the note changes.
    r#"
    CREATE TABLE notes (
        -- Small columns first: a row larger than a page spills its tail into overflow pages, and the
        -- freshness check reads path, size and mtime of every note on every query.
        id INTEGER PRIMARY KEY,
        path TEXT NOT NULL UNIQUE,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        hash BLOB NOT NULL,
        mission TEXT,                   -- the note's mission (front matter, else folder)
        title TEXT NOT NULL,
        aliases TEXT NOT NULL,          -- JSON array
        tags TEXT NOT NULL,             -- JSON array of tags, without `#`
        frontmatter TEXT NOT NULL,      -- JSON object
        headings TEXT NOT NULL,         -- JSON array of [level, line, text]
        links TEXT NOT NULL             -- JSON array of [line, kind, target, subpath]
    );
    -- The freshness check on every query reads only these: from this index, not the wide rows.
    CREATE INDEX notes_stat ON notes(path, size, mtime_ns);
    CREATE TABLE files (path TEXT PRIMARY KEY) WITHOUT ROWID;   -- attachments: every other file
    CREATE TABLE tasks (
        -- Clustered in the order `quire tasks` prints (open first, by due date with undated last,
        -- then path and line), so a listing is one range scan streamed out without a sort.
        closed INTEGER NOT NULL,        -- 1 when done or cancelled
        due_key TEXT NOT NULL,          -- due, or '~' (after every date) when there is none
        path TEXT NOT NULL,
        line INTEGER NOT NULL,
        note_id INTEGER NOT NULL,
        status TEXT NOT NULL,           -- open, done, in_progress, cancelled, or the character
        due TEXT, scheduled TEXT, start TEXT, created TEXT, done TEXT, cancelled TEXT,
        agenda TEXT,                    -- due, else scheduled: the date the agenda files it under
        priority INTEGER,               -- 1 lowest … 5 highest
        mission TEXT,
        tags TEXT NOT NULL,             -- ` tag1 tag2 ` lowercased, for filtering
        text TEXT NOT NULL,             -- the description, for tables
        json TEXT NOT NULL,             -- the task exactly as `quire tasks --json` prints it
        PRIMARY KEY (closed, due_key, path, line)
    ) WITHOUT ROWID;
    CREATE INDEX tasks_note ON tasks(note_id);
    CREATE INDEX tasks_scheduled ON tasks(closed, scheduled) WHERE due IS NULL AND scheduled IS NOT NULL;
    CREATE TABLE problems (
        note_id INTEGER NOT NULL, seq INTEGER NOT NULL,
        line INTEGER, code TEXT NOT NULL, message TEXT NOT NULL,
        PRIMARY KEY (note_id, seq)
    ) WITHOUT ROWID;
    "#,
    // 2: which index this is (a fresh file gets a new id) and how many times its content changed,
    // so a reader can tell "nothing changed since I last looked" without reading anything else.
    r#"
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
    INSERT INTO meta (key, value) VALUES ('id', lower(hex(randomblob(16)))), ('generation', '0');
    "#,
    // 3: the generation each note last changed in, and the last generation that added or removed a
    // note or an attachment or changed a note's aliases (what links may resolve to): a reader can
    // then ask what changed since it last looked, and whether link resolution can have changed.
    r#"
    ALTER TABLE notes ADD COLUMN gen INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX notes_gen ON notes(gen);
    -- What the link resolver reads, without walking the notes' long rows.
    CREATE INDEX notes_names ON notes(path, aliases);
    INSERT INTO meta (key, value) VALUES ('structure', '0');
    "#,
    // 4: a task row no longer carries its whole JSON object (two thirds of its bytes, written and
    // read for every task): the object is made from the columns, and `rest` holds the fields no
    // query filters on. Every note is read again by the next update to fill the new table.
    r#"
    DROP TABLE tasks;
    CREATE TABLE tasks (
        closed INTEGER NOT NULL,
        due_key TEXT NOT NULL,
        path TEXT NOT NULL,
        line INTEGER NOT NULL,
        note_id INTEGER NOT NULL,
        status TEXT NOT NULL,
        due TEXT, scheduled TEXT, start TEXT, created TEXT, done TEXT, cancelled TEXT,
        agenda TEXT,
        priority INTEGER,
        mission TEXT,
        tags TEXT NOT NULL,
        text TEXT NOT NULL,
        rest TEXT NOT NULL,             -- JSON [recurrence, id, depends_on, tags as written, heading, block_id]
        PRIMARY KEY (closed, due_key, path, line)
    ) WITHOUT ROWID;
    CREATE INDEX tasks_note ON tasks(note_id);
    CREATE INDEX tasks_scheduled ON tasks(closed, scheduled) WHERE due IS NULL AND scheduled IS NOT NULL;
    UPDATE notes SET size = -1, hash = x'';
    "#,
];

/// SQLite's page cache, in KiB: for queries and small updates, and for a full rebuild (a vault's
/// tasks can outgrow the first, and pages spilled to the file mid-transaction are written twice).
const CACHE_KIB: i64 = 32_000;
const REBUILD_CACHE_KIB: i64 = 262_144;

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
    conn.execute_batch(&format!(
        "PRAGMA synchronous = NORMAL; PRAGMA temp_store = MEMORY; PRAGMA cache_size = -{CACHE_KIB};"
    ))
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

/// Runs `rebuild` with the database to itself and without a journal, when it can: a full rebuild
/// rewrites every page, and in WAL mode each would be written twice (to the log, then back). If
/// another connection has the file open, leaving WAL is refused and `rebuild` runs normally.
///
/// Without a journal a crash mid-rebuild can leave the file inconsistent, so the schema version is
/// cleared for the duration: a file left so is found unusable at the next open and rebuilt, which
/// is right for derived data.
pub(super) fn without_journal<T>(
    conn: &mut Connection,
    rebuild: impl FnOnce(&mut Connection) -> Result<T, IndexError>,
) -> Result<T, IndexError> {
    // Refused ("database is locked", or WAL kept) while another connection has the file open.
    let left_wal = conn
        .query_row("PRAGMA journal_mode = DELETE", [], |r| {
            r.get::<_, String>(0)
        })
        .is_ok_and(|mode| mode.eq_ignore_ascii_case("delete"));
    if !left_wal {
        return rebuild(conn);
    }
    let version = current_version();
    conn.execute_batch(&format!(
        "PRAGMA user_version = -1; PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA cache_size = -{REBUILD_CACHE_KIB};"
    ))?;
    let result = rebuild(conn);
    conn.execute_batch(&format!(
        "PRAGMA cache_size = -{CACHE_KIB}; PRAGMA synchronous = NORMAL; PRAGMA journal_mode = WAL; PRAGMA user_version = {version};"
    ))?;
    result
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
