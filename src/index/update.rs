//! Bringing the index up to date with the work tree.
//!
//! 1. Walk the vault (skipping `.git/`, quire's own folders and hidden folders) and stat every file.
//! 2. A note whose (mtime, size) match the index is not read. A changed one is read and hashed; if
//!    its hash matches, only its stat data is updated; otherwise it is parsed.
//! 3. Reading, hashing and parsing run in parallel (rayon), a chunk of notes at a time so memory stays
//!    bounded whatever the vault's size, on a thread of their own so that the next chunk is parsed
//!    while the single writer stores this one, inside one `BEGIN IMMEDIATE` transaction: readers
//!    see the old index or the new one, never half.
//! 4. Notes gone from disk (deleted or renamed) are removed; attachments are listed for links.
//!
//! When nothing changed, no transaction is opened at all: a query pays for the walk and nothing else.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rayon::prelude::*;
use rusqlite::{Connection, OptionalExtension as _, Transaction, params};
use sha2::Digest as _;

use std::sync::Arc;

use super::record::{NoteRecord, TaskRecord, note_record};
use super::{IndexError, TaskView, UpdateReport, Written};
use crate::vault::RESERVED_ROOTS;

/// The sort key of a task without a due date: after every `YYYY-MM-DD`.
pub(super) const UNDATED: &str = "~";

/// Notes read and parsed together before they are written.
const CHUNK: usize = 512;

/// Top-level folders that are not part of the vault's content.
pub(super) const SKIPPED_ROOTS: &[&str] = &["07_LOGS", "node_modules"];

struct Seen {
    path: String,
    size: i64,
    mtime_ns: i64,
}

struct Known {
    id: i64,
    size: i64,
    mtime_ns: i64,
}

enum Prepared {
    /// Same bytes as indexed: only the stat data moved.
    Touched { id: i64, size: i64, mtime_ns: i64 },
    /// New or changed content.
    Note {
        id: Option<i64>,
        record: Box<NoteRecord>,
    },
    /// Gone between the walk and the read.
    Vanished { id: Option<i64> },
}

pub(super) fn update(
    conn: &mut Connection,
    root: &Path,
    full: bool,
) -> Result<(UpdateReport, Option<Written>), IndexError> {
    if full {
        return super::schema::without_journal(conn, |conn| update_inner(conn, root, true, None));
    }
    update_inner(conn, root, false, None)
}

/// Brings the index up to date with the files at `paths` alone (vault paths), for a caller that
/// knows every file that may have changed since the index last was. `None` when that cannot be
/// told from the paths (one is a folder, or was one: the caller walks the vault instead).
pub(super) fn update_paths(
    conn: &mut Connection,
    root: &Path,
    paths: &[String],
) -> Result<Option<(UpdateReport, Option<Written>)>, IndexError> {
    for path in paths {
        let full = root.join(path);
        match full.symlink_metadata() {
            Ok(meta) if meta.is_dir() => return Ok(None),
            Ok(_) => {}
            // Gone: a folder that held indexed files needs the walk.
            Err(_) => {
                let below = format!("{path}/");
                let mut stmt = conn.prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM notes WHERE substr(path, 1, length(?1)) = ?1)
                         OR EXISTS (SELECT 1 FROM files WHERE substr(path, 1, length(?1)) = ?1)",
                )?;
                if stmt.query_row([&below], |r| r.get::<_, bool>(0))? {
                    return Ok(None);
                }
            }
        }
    }
    let (mut report, written) = update_inner(conn, root, false, Some(paths))?;
    // What the whole index holds, as a walk reports it.
    (report.notes, report.attachments) = conn.query_row(
        "SELECT (SELECT COUNT(*) FROM notes), (SELECT COUNT(*) FROM files)",
        [],
        |r| Ok((r.get::<_, i64>(0)? as usize, r.get::<_, i64>(1)? as usize)),
    )?;
    Ok(Some((report, written)))
}

/// The notes (stat'ed) and other files among `paths`, as the walk would find them: regular files,
/// not hidden, outside quire's own and skipped folders, with no symbolic link on the way.
fn stat_paths(root: &Path, paths: &[String]) -> (Vec<Seen>, Vec<String>) {
    let mut notes = Vec::new();
    let mut files = Vec::new();
    for path in paths.iter().filter(|p| super::is_content_path(p)) {
        let parts: Vec<&str> = path.split('/').collect();
        let mut dir = root.to_path_buf();
        let through_folders = parts[..parts.len() - 1].iter().all(|p| {
            dir.push(p);
            dir.symlink_metadata().is_ok_and(|m| m.is_dir())
        });
        let Ok(meta) = root.join(path).symlink_metadata() else {
            continue;
        };
        if !through_folders || !meta.is_file() {
            continue;
        }
        if crate::markdown::is_note_path(path) {
            notes.push(Seen {
                path: path.clone(),
                size: meta.len() as i64,
                mtime_ns: mtime_ns(meta.modified().ok()),
            });
        } else {
            files.push(path.clone());
        }
    }
    (notes, files)
}

fn update_inner(
    conn: &mut Connection,
    root: &Path,
    full: bool,
    only: Option<&[String]>,
) -> Result<(UpdateReport, Option<Written>), IndexError> {
    let started = Instant::now();
    let (notes, files) = match only {
        Some(paths) => stat_paths(root, paths),
        None => walk(root)?,
    };
    let walked = started.elapsed();
    let mut plan = Plan::make(conn, &notes, &files, full, only)?;
    tracing::debug!(
        walk_ms = walked.as_secs_f64() * 1e3,
        plan_ms = (started.elapsed() - walked).as_secs_f64() * 1e3,
        "scanned the vault"
    );
    let mut report = UpdateReport {
        notes: notes.len(),
        ..UpdateReport::default()
    };
    if !full && plan.is_empty() {
        report.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        return Ok((report, None));
    }
    // Another process (the daemon beside a `quire tasks`) may be writing the same changes: take
    // the writers' lock, then plan again against what is stored now.
    let _writer = writer_lock(root)?;
    if !full {
        plan = Plan::make(conn, &notes, &files, full, only)?;
        if plan.is_empty() {
            report.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
            return Ok((report, None));
        }
    }
    let Plan {
        known,
        deleted,
        candidates,
        files_added,
        files_removed,
    } = plan;

    // Stored hashes, only for the notes about to be read.
    let (old_hashes, old_aliases): (HashMap<i64, Vec<u8>>, HashMap<i64, String>) = {
        let mut stmt = conn.prepare_cached("SELECT hash, aliases FROM notes WHERE id = ?1")?;
        let mut hashes = HashMap::new();
        let mut aliases = HashMap::new();
        for seen in &candidates {
            if let Some(k) = known.get(&seen.path) {
                let (h, a) = stmt.query_row([k.id], |r| {
                    Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, String>(1)?))
                })?;
                hashes.insert(k.id, h);
                aliases.insert(k.id, a);
            }
        }
        (hashes, aliases)
    };
    let generation: i64 = conn
        .query_row(
            "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'generation'",
            [],
            |r| r.get(0),
        )
        .unwrap_or(0)
        + 1;
    // Whether what links can resolve to changed: a note or attachment came or went, or aliases
    // changed.
    let mut structural =
        full || !deleted.is_empty() || !files_added.is_empty() || !files_removed.is_empty();

    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    if full {
        tx.execute_batch(
            "DELETE FROM notes; DELETE FROM files; DELETE FROM tasks; DELETE FROM problems;",
        )?;
    }
    for id in &deleted {
        delete_children(&tx, *id)?;
        tx.execute("DELETE FROM notes WHERE id = ?1", [id])?;
    }
    report.removed = deleted.len();

    // Parse the next chunk while this one is written: a parser thread hands chunks to the writer
    // through a channel one chunk deep.
    let known_of = |seen: &Seen| {
        known
            .get(&seen.path)
            .map(|k| (k.id, old_hashes.get(&k.id).map_or(&[][..], Vec::as_slice)))
    };
    // Every written note's tasks, put in place once all are known (see `put_tasks`); and as
    // parsed, by note, for a reader that comes next (see `Written`).
    let mut staged: Vec<Staged> = Vec::new();
    let mut views: HashMap<String, Vec<Arc<TaskView>>> = HashMap::new();
    let written: Result<(), IndexError> = std::thread::scope(|scope| {
        let (send, receive) = std::sync::mpsc::sync_channel::<Vec<Prepared>>(1);
        let (candidates, known_of) = (&candidates, &known_of);
        scope.spawn(move || {
            for chunk in candidates.chunks(CHUNK) {
                let prepared: Vec<Prepared> = chunk
                    .par_iter()
                    .map(|seen| prepare(root, seen, known_of(seen)))
                    .collect();
                if send.send(prepared).is_err() {
                    return; // the writer stopped on an error
                }
            }
        });
        for prepared in receive {
            for p in prepared {
                match p {
                    Prepared::Touched { id, size, mtime_ns } => {
                        tx.prepare_cached(
                            "UPDATE notes SET size = ?1, mtime_ns = ?2 WHERE id = ?3",
                        )?
                        .execute(params![size, mtime_ns, id])?;
                        report.touched += 1;
                    }
                    Prepared::Note { id, record } => {
                        structural |=
                            id.is_none_or(|id| old_aliases.get(&id) != Some(&record.aliases));
                        views.insert(
                            record.path.clone(),
                            record.tasks.iter().map(|t| t.view.clone()).collect(),
                        );
                        write_note(&tx, id, *record, generation, &mut staged)?;
                        report.parsed += 1;
                        crate::fault::point("index_write");
                    }
                    Prepared::Vanished { id } => {
                        if let Some(id) = id {
                            structural = true;
                            delete_children(&tx, id)?;
                            tx.execute("DELETE FROM notes WHERE id = ?1", [id])?;
                            report.removed += 1;
                        }
                    }
                }
            }
        }
        Ok(())
    });
    written?;
    let parsed_at = started.elapsed();
    put_tasks(&tx, staged)?;
    tracing::debug!(
        parse_and_write_ms = parsed_at.as_secs_f64() * 1e3,
        put_tasks_ms = (started.elapsed() - parsed_at).as_secs_f64() * 1e3,
        "wrote the notes"
    );
    for f in &files_removed {
        tx.execute("DELETE FROM files WHERE path = ?1", [f])?;
    }
    for f in &files_added {
        tx.execute("INSERT OR IGNORE INTO files (path) VALUES (?1)", [f])?;
    }
    report.attachments = files.len();
    tx.execute(
        "UPDATE meta SET value = ?1 WHERE key = 'generation'",
        [generation.to_string()],
    )?;
    if structural {
        tx.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'structure'",
            [generation.to_string()],
        )?;
    }
    let notes_now: i64 = tx.query_row("SELECT count(*) FROM notes", [], |r| r.get(0))?;
    let id: String = tx.query_row("SELECT value FROM meta WHERE key = 'id'", [], |r| r.get(0))?;
    let before_commit = started.elapsed();
    tx.commit()?;
    tracing::debug!(
        commit_ms = (started.elapsed() - before_commit).as_secs_f64() * 1e3,
        "committed"
    );
    report.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    let written = Written {
        id,
        generation: generation as u64,
        complete: usize::try_from(notes_now).is_ok_and(|n| n == views.len()),
        tasks: views,
    };
    Ok((report, Some(written)))
}

/// Every Markdown note (with its stat data) and every other file under `root`, as vault paths.
///
/// walkdir finds the folders (skipping hidden and reserved ones); the files of each folder are then
/// listed and stat'ed in parallel, through the folder's own handle (`DirEntry::metadata` stats
/// relative to the open directory instead of resolving the whole path again for every file).
fn walk(root: &Path) -> Result<(Vec<Seen>, Vec<String>), IndexError> {
    let mut dirs = Vec::new();
    let walker = walkdir::WalkDir::new(root)
        .follow_links(false)
        .into_iter()
        .filter_entry(|e| {
            if e.depth() == 0 {
                return true;
            }
            if !e.file_type().is_dir() {
                return false;
            }
            let name = e.file_name().to_string_lossy();
            // Hidden folders (.git, .obsidian, .trash) are not content.
            !name.starts_with('.')
                && (e.depth() != 1
                    || !(RESERVED_ROOTS.contains(&name.as_ref())
                        || SKIPPED_ROOTS.contains(&name.as_ref())))
        });
    for entry in walker {
        match entry {
            Ok(e) => dirs.push(e.into_path()),
            Err(e) => tracing::warn!("skipping part of the vault that could not be read: {e}"),
        }
    }
    let per_dir: Vec<(Vec<Seen>, Vec<String>)> =
        dirs.par_iter().map(|dir| list_dir(root, dir)).collect();
    let mut notes = Vec::new();
    let mut files = Vec::new();
    for (n, f) in per_dir {
        notes.extend(n);
        files.extend(f);
    }
    Ok((notes, files))
}

/// The notes (stat'ed) and other files directly in `dir`.
fn list_dir(root: &Path, dir: &Path) -> (Vec<Seen>, Vec<String>) {
    let mut notes = Vec::new();
    let mut files = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), "skipping a folder that could not be read: {e}");
            return (notes, files);
        }
    };
    let Ok(prefix) = dir.strip_prefix(root) else {
        return (notes, files);
    };
    let prefix = prefix.to_string_lossy().replace('\\', "/");
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            tracing::warn!(file = %entry.path().display(), "skipping a file whose name is not UTF-8");
            continue;
        };
        // Hidden files (.env) are not content; quire's own temporary files are not either.
        if name.starts_with('.') || !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let rel = if prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{prefix}/{name}")
        };
        if crate::markdown::is_note_path(name) {
            match entry.metadata() {
                Ok(meta) => notes.push(Seen {
                    size: meta.len() as i64,
                    mtime_ns: mtime_ns(meta.modified().ok()),
                    path: rel,
                }),
                Err(e) => {
                    tracing::warn!(file = %rel, "skipping a note that could not be read: {e}")
                }
            }
        } else {
            files.push(rel);
        }
    }
    (notes, files)
}

fn mtime_ns(t: Option<SystemTime>) -> i64 {
    t.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos().min(i64::MAX as u128) as i64)
}

/// What an update will do, from a walk and what the index holds.
struct Plan<'w> {
    known: HashMap<String, Known>,
    deleted: Vec<i64>,
    candidates: Vec<&'w Seen>,
    files_added: Vec<&'w str>,
    files_removed: Vec<String>,
}

impl<'w> Plan<'w> {
    /// With `only`, the walk saw only those paths: what the index knows is compared for them
    /// alone (a note it knows elsewhere is not gone).
    fn make(
        conn: &Connection,
        notes: &'w [Seen],
        files: &'w [String],
        full: bool,
        only: Option<&[String]>,
    ) -> Result<Self, IndexError> {
        let known = if full {
            HashMap::new()
        } else {
            known_notes(conn, only)?
        };
        let known_files: HashSet<String> = match only {
            None => {
                let mut stmt = conn.prepare("SELECT path FROM files")?;
                stmt.query_map([], |r| r.get(0))?
                    .collect::<Result<_, _>>()?
            }
            Some(paths) => {
                let mut stmt = conn.prepare_cached("SELECT path FROM files WHERE path = ?1")?;
                let mut known = HashSet::new();
                for p in paths {
                    if let Some(path) = stmt.query_row([p], |r| r.get(0)).optional()? {
                        known.insert(path);
                    }
                }
                known
            }
        };
        let seen: HashSet<&str> = notes.iter().map(|n| n.path.as_str()).collect();
        let deleted: Vec<i64> = known
            .iter()
            .filter(|(path, _)| !seen.contains(path.as_str()))
            .map(|(_, k)| k.id)
            .collect();
        let candidates: Vec<&Seen> = notes
            .iter()
            .filter(|n| {
                known
                    .get(&n.path)
                    .is_none_or(|k| k.size != n.size || k.mtime_ns != n.mtime_ns)
            })
            .collect();
        let files_now: HashSet<&str> = files.iter().map(String::as_str).collect();
        let files_added: Vec<&str> = files_now
            .iter()
            .copied()
            .filter(|f| !known_files.contains(*f))
            .collect();
        let files_removed: Vec<String> = known_files
            .into_iter()
            .filter(|f| !files_now.contains(f.as_str()))
            .collect();
        Ok(Self {
            known,
            deleted,
            candidates,
            files_added,
            files_removed,
        })
    }

    fn is_empty(&self) -> bool {
        self.candidates.is_empty()
            && self.deleted.is_empty()
            && self.files_added.is_empty()
            && self.files_removed.is_empty()
    }
}

/// The index's writers' lock (`.quire/index.lock`), held while an update writes. SQLite would
/// serialize the writes anyway, but two updaters that planned from the same old state would both
/// insert the same new note.
fn writer_lock(root: &Path) -> Result<std::fs::File, IndexError> {
    let dir = root.join(crate::vault::STATE_DIR);
    let open = || {
        std::fs::create_dir_all(&dir)?;
        let f = std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("index.lock"))?;
        f.lock()?;
        Ok::<_, std::io::Error>(f)
    };
    open().map_err(|e| IndexError::Io {
        context: format!("could not take {}", dir.join("index.lock").display()),
        source: e,
    })
}

/// The notes the index holds (of `only`, when given), with their stat data.
fn known_notes(
    conn: &Connection,
    only: Option<&[String]>,
) -> Result<HashMap<String, Known>, IndexError> {
    let row = |r: &rusqlite::Row<'_>| {
        Ok((
            r.get::<_, String>(0)?,
            Known {
                id: r.get(1)?,
                size: r.get(2)?,
                mtime_ns: r.get(3)?,
            },
        ))
    };
    let Some(paths) = only else {
        let mut stmt = conn.prepare("SELECT path, id, size, mtime_ns FROM notes")?;
        return Ok(stmt.query_map([], row)?.collect::<Result<_, _>>()?);
    };
    let mut stmt =
        conn.prepare_cached("SELECT path, id, size, mtime_ns FROM notes WHERE path = ?1")?;
    let mut known = HashMap::new();
    for p in paths {
        if let Some((path, k)) = stmt.query_row([p], row).optional()? {
            known.insert(path, k);
        }
    }
    Ok(known)
}

/// Reads, hashes and (when the content changed) parses one note. Runs on a rayon thread.
fn prepare(root: &Path, seen: &Seen, known: Option<(i64, &[u8])>) -> Prepared {
    let id = known.map(|(id, _)| id);
    let bytes = match std::fs::read(root.join(&seen.path)) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(file = %seen.path, "a note vanished or became unreadable while indexing: {e}");
            return Prepared::Vanished { id };
        }
    };
    let hash = sha2::Sha256::digest(&bytes).to_vec();
    if let Some((id, old)) = known
        && old == hash.as_slice()
    {
        return Prepared::Touched {
            id,
            size: seen.size,
            mtime_ns: seen.mtime_ns,
        };
    }
    Prepared::Note {
        id,
        record: Box::new(note_record(
            &seen.path,
            &bytes,
            seen.size,
            seen.mtime_ns,
            hash,
        )),
    }
}

/// A task row waiting to be written: its note's id and path, and the row.
struct Staged {
    note_id: i64,
    path: std::sync::Arc<str>,
    task: TaskRecord,
}

/// Writes the staged task rows into `tasks` in its clustering order, sorted here: appended in
/// order, a large batch (a full index, a note with 160,000 tasks) builds the tree sequentially
/// instead of splitting pages all over it, and no temporary table or SQL sort holds a second copy.
fn put_tasks(tx: &Transaction<'_>, mut staged: Vec<Staged>) -> Result<(), IndexError> {
    fn key(s: &Staged) -> (bool, &str, &str, usize) {
        let due = s.task.dates[0].as_deref().unwrap_or(UNDATED);
        (s.task.closed, due, &s.path, s.task.line)
    }
    staged.par_sort_unstable_by(|a, b| key(a).cmp(&key(b)));
    // Bound one by one (`raw_bind_parameter`), without the slice of trait objects `execute`
    // takes; the sort key's due (`UNDATED` when none) and the agenda date are derived in SQL.
    // Each task is written once: a note's old rows went first, so nothing is replaced.
    let mut stmt = tx.prepare_cached(
        "INSERT INTO tasks (closed, due_key, path, line, note_id, status, due, scheduled, start, created, done,
                            cancelled, agenda, priority, mission, tags, text, rest)
         VALUES (?1, coalesce(?6, '~'), ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, coalesce(?6, ?7), ?12, ?13, ?14, ?15, ?16)",
    )?;
    for s in &staged {
        let t = &s.task;
        let [due, scheduled, start, created, done, cancelled] = &t.dates;
        stmt.raw_bind_parameter(1, t.closed)?;
        stmt.raw_bind_parameter(2, &*s.path)?;
        stmt.raw_bind_parameter(3, t.line as i64)?;
        stmt.raw_bind_parameter(4, s.note_id)?;
        stmt.raw_bind_parameter(5, &t.status)?;
        for (i, date) in [due, scheduled, start, created, done, cancelled]
            .into_iter()
            .enumerate()
        {
            stmt.raw_bind_parameter(6 + i, date)?;
        }
        stmt.raw_bind_parameter(12, t.priority)?;
        stmt.raw_bind_parameter(13, &t.mission)?;
        stmt.raw_bind_parameter(14, &t.tags)?;
        stmt.raw_bind_parameter(15, &t.text)?;
        stmt.raw_bind_parameter(16, &t.rest)?;
        stmt.raw_execute()?;
    }
    drop(stmt);
    // Freed on another thread: dropping 160,000 rows' strings is not the writer's work.
    rayon::spawn(move || drop(staged));
    Ok(())
}

fn delete_children(tx: &Transaction<'_>, id: i64) -> Result<(), IndexError> {
    tx.prepare_cached("DELETE FROM tasks WHERE note_id = ?1")?
        .execute([id])?;
    tx.prepare_cached("DELETE FROM problems WHERE note_id = ?1")?
        .execute([id])?;
    Ok(())
}

/// Writes one note and its rows, replacing what the index held for it.
fn write_note(
    tx: &Transaction<'_>,
    id: Option<i64>,
    r: NoteRecord,
    generation: i64,
    staged: &mut Vec<Staged>,
) -> Result<(), IndexError> {
    let id = match id {
        Some(id) => {
            delete_children(tx, id)?;
            tx.prepare_cached(
                "UPDATE notes SET title = ?1, frontmatter = ?2, mission = ?3, tags = ?4, aliases = ?5, headings = ?6,
                                  links = ?7, size = ?8, mtime_ns = ?9, hash = ?10, gen = ?12 WHERE id = ?11",
            )?
            .execute(params![
                r.title, r.frontmatter, r.mission, r.tags, r.aliases, r.headings, r.links, r.size, r.mtime_ns, r.hash, id, generation
            ])?;
            id
        }
        None => {
            tx.prepare_cached(
                "INSERT INTO notes (path, title, frontmatter, mission, tags, aliases, headings, links, size, mtime_ns, hash, gen)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )?
            .execute(params![
                r.path, r.title, r.frontmatter, r.mission, r.tags, r.aliases, r.headings, r.links, r.size, r.mtime_ns, r.hash, generation
            ])?;
            tx.last_insert_rowid()
        }
    };
    let path: std::sync::Arc<str> = r.path.as_str().into();
    let mut stmt = tx.prepare_cached(
        "INSERT INTO problems (note_id, seq, line, code, message) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for (i, p) in r.problems.iter().enumerate() {
        stmt.execute(params![
            id,
            i as i64,
            p.line.map(|l| l as i64),
            p.code,
            p.message
        ])?;
    }
    staged.extend(r.tasks.into_iter().map(|task| Staged {
        note_id: id,
        path: path.clone(),
        task,
    }));
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::index::Index;
    use crate::vault::Vault;

    /// What the index holds, to compare.
    fn snapshot(index: &Index) -> String {
        let conn = &index.conn;
        let rows = |sql: &str| -> Vec<String> {
            let mut stmt = conn.prepare(sql).unwrap();
            let mut rows = stmt.query([]).unwrap();
            let mut out = Vec::new();
            while let Some(r) = rows.next().unwrap() {
                let cols = r.as_ref().column_count();
                let row: Vec<String> = (0..cols)
                    .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                    .collect();
                out.push(row.join(" "));
            }
            out
        };
        [
            rows("SELECT path, hash, size, mtime_ns, title FROM notes ORDER BY path"),
            rows("SELECT path FROM files ORDER BY path"),
            rows("SELECT n.path, t.line, t.text FROM tasks t JOIN notes n ON n.id = t.note_id ORDER BY 1, 2"),
        ]
        .map(|r| r.join("\n"))
        .join("\n--\n")
    }

    /// After a targeted update, a walk of the whole vault finds nothing left to do, and the index
    /// holds what it held after the targeted update.
    fn targeted(vault: &Vault, paths: &[&str]) -> crate::index::IndexState {
        let mut index = Index::open(vault).unwrap();
        let paths: Vec<String> = paths.iter().map(|p| (*p).to_owned()).collect();
        index.update_paths(&paths).unwrap();
        let after = snapshot(&index);
        let state = index.state().unwrap();
        let walk = index.update(false).unwrap();
        assert_eq!(
            (walk.parsed, walk.touched, walk.removed),
            (0, 0, 0),
            "a walk after updating {paths:?} still found work"
        );
        assert_eq!(snapshot(&index), after, "after updating {paths:?}");
        state
    }

    #[test]
    fn a_targeted_update_leaves_the_index_as_a_walk_would() {
        let (_dir, vault) = crate::workflow::temp_vault();
        let root = vault.root().to_path_buf();
        let write = |p: &str, text: &str| {
            let full = root.join(p);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(full, text).unwrap();
        };
        write("n/a.md", "# A\n\n- [ ] one\n");
        write("n/b.md", "# B\n");
        Index::open(&vault).unwrap().update(false).unwrap();
        let start = Index::open(&vault).unwrap().state().unwrap();

        write("n/a.md", "# A edited\n\n- [ ] one\n- [ ] two\n");
        let s = targeted(&vault, &["n/a.md"]);
        assert!(s.generation > start.generation && s.structure == start.structure);

        write("n/c.md", "# C\n\n[[a]]\n");
        write("n/pic.png", "png");
        let s = targeted(&vault, &["n/c.md", "n/pic.png"]);
        assert!(s.structure > start.structure, "a note and a file came");

        std::fs::remove_file(root.join("n/b.md")).unwrap();
        std::fs::remove_file(root.join("n/pic.png")).unwrap();
        targeted(&vault, &["n/b.md", "n/pic.png"]);

        // Paths the walk does not index are not indexed either.
        write(".hidden/x.md", "# X\n");
        write("n/.draft.md", "# D\n");
        write("07_LOGS/log.md", "# L\n");
        targeted(
            &vault,
            &[
                ".hidden/x.md",
                "n/.draft.md",
                "07_LOGS/log.md",
                "n/missing.md",
            ],
        );

        // A new folder, and a removed one that held notes: the vault is walked.
        write("m/d.md", "# D\n");
        targeted(&vault, &["m"]);
        std::fs::remove_dir_all(root.join("m")).unwrap();
        targeted(&vault, &["m"]);
        assert!(
            Index::open(&vault)
                .unwrap()
                .catalog_note("m/d.md")
                .unwrap()
                .is_none()
        );
    }

    /// What a handle's update wrote is what a fresh handle reads back, and it is used only while
    /// the index holds exactly that: another writer's update sends the handle to the file.
    #[test]
    fn the_tasks_an_update_wrote_are_what_the_index_reads_back_while_they_hold() {
        let (_dir, vault) = crate::workflow::temp_vault();
        let root = vault.root().to_path_buf();
        let write = |p: &str, text: &str| std::fs::write(root.join(p), text).unwrap();
        std::fs::create_dir_all(root.join("n")).unwrap();
        write("n/a.md", "# A\n\n- [ ] one 📅 2026-05-01\n- [x] two #t\n");
        write("n/b.md", "# B\n\n- [ ] three ⏫\n");
        let read_back = || Index::open(&vault).unwrap().all_tasks().unwrap();
        let as_values = |tasks: Vec<std::sync::Arc<crate::index::TaskView>>| {
            tasks.into_iter().map(|t| (*t).clone()).collect::<Vec<_>>()
        };

        let mut first = Index::open(&vault).unwrap();
        first.update(false).unwrap();
        let kept = first.written_now().unwrap().expect("kept");
        assert!(kept.complete, "a first update writes every note");
        assert_eq!(
            as_values(first.all_tasks().unwrap()),
            as_values(read_back())
        );
        let all = first.all_tasks().unwrap();
        let one = all.iter().find(|t| t.path == "n/a.md").unwrap();
        assert!(std::sync::Arc::ptr_eq(
            one,
            &first.shared_tasks_of("n/a.md").unwrap()[0]
        ));

        // One note changed by this handle: only that note is kept, and reading all goes to the
        // file; the note's own tasks come from what was kept.
        write("n/a.md", "# A\n\n- [ ] one, edited\n");
        first.update(false).unwrap();
        let kept = first.written_now().unwrap().expect("kept");
        assert!(!kept.complete);
        assert_eq!(
            as_values(first.all_tasks().unwrap()),
            as_values(read_back())
        );
        assert_eq!(
            first.shared_tasks_of("n/a.md").unwrap()[0].text,
            "one, edited"
        );

        // Another handle moves the index on: what the first kept no longer holds.
        write("n/a.md", "# A\n\n- [ ] one, again\n");
        Index::open(&vault).unwrap().update(false).unwrap();
        assert!(first.written_now().unwrap().is_none());
        assert_eq!(
            first.shared_tasks_of("n/a.md").unwrap()[0].text,
            "one, again"
        );
        assert_eq!(
            as_values(first.all_tasks().unwrap()),
            as_values(read_back())
        );
    }

    /// A task row the index cannot read back is an error that names the fix, not a panic or a
    /// task silently dropped.
    #[test]
    fn a_damaged_task_row_is_an_error_naming_the_rebuild() {
        let (_dir, vault) = crate::workflow::temp_vault();
        std::fs::create_dir_all(vault.root().join("n")).unwrap();
        std::fs::write(vault.root().join("n/a.md"), "- [ ] one\n").unwrap();
        Index::open(&vault).unwrap().update(false).unwrap();
        let index = Index::open(&vault).unwrap();
        index
            .conn
            .execute("UPDATE tasks SET rest = 'not json'", [])
            .unwrap();
        let filter = crate::index::TaskFilter::default();
        for e in [
            index.all_tasks().map(|_| ()).unwrap_err(),
            index.tasks(&filter).map(|_| ()).unwrap_err(),
            index.tasks_of("n/a.md").map(|_| ()).unwrap_err(),
        ] {
            assert!(e.to_string().contains("quire index --full"), "{e}");
        }
    }
}
