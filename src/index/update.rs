//! Bringing the index up to date with the work tree.
//!
//! 1. Walk the vault (skipping `.git/`, quire's own folders and hidden folders) and stat every file.
//! 2. A note whose (mtime, size) match the index is not read. A changed one is read and hashed; if
//!    its hash matches, only its stat data is updated; otherwise it is parsed.
//! 3. Reading, hashing and parsing run in parallel (rayon), a chunk of notes at a time so memory stays
//!    bounded whatever the vault's size; the single writer stores each chunk inside one
//!    `BEGIN IMMEDIATE` transaction, so readers see the old index or the new one, never half.
//! 4. Notes gone from disk (deleted or renamed) are removed; attachments are listed for links.
//!
//! When nothing changed, no transaction is opened at all: a query pays for the walk and nothing else.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rayon::prelude::*;
use rusqlite::{Connection, Transaction, params};
use sha2::Digest as _;

use super::record::{NoteRecord, note_record};
use super::{IndexError, UpdateReport};
use crate::vault::RESERVED_ROOTS;

/// Notes read and parsed together before they are written.
const CHUNK: usize = 512;

/// Top-level folders that are not part of the vault's content.
const SKIPPED_ROOTS: &[&str] = &["07_LOGS", "node_modules"];

struct Seen {
    path: String,
    size: i64,
    mtime_ns: i64,
}

struct Known {
    id: i64,
    size: i64,
    mtime_ns: i64,
    hash: Vec<u8>,
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
) -> Result<UpdateReport, IndexError> {
    let started = Instant::now();
    let (notes, files) = walk(root)?;
    let known = if full {
        HashMap::new()
    } else {
        known_notes(conn)?
    };
    let known_files: HashSet<String> = {
        let mut stmt = conn.prepare("SELECT path FROM files")?;
        stmt.query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?
    };

    let mut report = UpdateReport {
        notes: notes.len(),
        ..UpdateReport::default()
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
    let files_removed: Vec<&String> = known_files
        .iter()
        .filter(|f| !files_now.contains(f.as_str()))
        .collect();

    if !full
        && candidates.is_empty()
        && deleted.is_empty()
        && files_added.is_empty()
        && files_removed.is_empty()
    {
        report.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        return Ok(report);
    }

    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    if full {
        tx.execute_batch(
            "DELETE FROM notes; DELETE FROM files; DELETE FROM note_tags; DELETE FROM aliases;
             DELETE FROM headings; DELETE FROM tasks; DELETE FROM links; DELETE FROM problems;",
        )?;
    }
    for id in &deleted {
        delete_children(&tx, *id)?;
        tx.execute("DELETE FROM notes WHERE id = ?1", [id])?;
    }
    report.removed = deleted.len();

    for chunk in candidates.chunks(CHUNK) {
        let prepared: Vec<Prepared> = chunk
            .par_iter()
            .map(|seen| prepare(root, seen, known.get(&seen.path)))
            .collect();
        for p in prepared {
            match p {
                Prepared::Touched { id, size, mtime_ns } => {
                    tx.execute(
                        "UPDATE notes SET size = ?1, mtime_ns = ?2 WHERE id = ?3",
                        params![size, mtime_ns, id],
                    )?;
                    report.touched += 1;
                }
                Prepared::Note { id, record } => {
                    write_note(&tx, id, &record)?;
                    report.parsed += 1;
                }
                Prepared::Vanished { id } => {
                    if let Some(id) = id {
                        delete_children(&tx, id)?;
                        tx.execute("DELETE FROM notes WHERE id = ?1", [id])?;
                        report.removed += 1;
                    }
                }
            }
        }
    }
    for f in &files_removed {
        tx.execute("DELETE FROM files WHERE path = ?1", [f])?;
    }
    for f in &files_added {
        tx.execute("INSERT OR IGNORE INTO files (path) VALUES (?1)", [f])?;
    }
    report.attachments = files.len();
    tx.commit()?;
    report.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    Ok(report)
}

/// Every Markdown note and every other file under `root`, as vault paths with stat data.
fn walk(root: &Path) -> Result<(Vec<Seen>, Vec<String>), IndexError> {
    let mut notes = Vec::new();
    let mut files = Vec::new();
    let walker = walkdir::WalkDir::new(root)
        .follow_links(false)
        .into_iter()
        .filter_entry(|e| {
            if e.depth() == 0 {
                return true;
            }
            let name = e.file_name().to_string_lossy();
            // Hidden folders (.git, .obsidian, .trash) and files (.env) are not content.
            if name.starts_with('.') {
                return false;
            }
            e.depth() != 1
                || !e.file_type().is_dir()
                || !(RESERVED_ROOTS.contains(&name.as_ref())
                    || SKIPPED_ROOTS.contains(&name.as_ref()))
        });
    for entry in walker {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!("skipping part of the vault that could not be read: {e}");
                continue;
            }
        };
        if !entry.file_type().is_file() {
            continue;
        }
        let Ok(rel) = entry.path().strip_prefix(root) else {
            continue;
        };
        let Some(rel) = rel.to_str().map(|s| s.replace('\\', "/")) else {
            tracing::warn!(file = %entry.path().display(), "skipping a file whose name is not UTF-8");
            continue;
        };
        if rel.ends_with(".md") || rel.ends_with(".markdown") {
            let meta = match entry.metadata() {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(file = %rel, "skipping a note that could not be read: {e}");
                    continue;
                }
            };
            notes.push(Seen {
                path: rel,
                size: meta.len() as i64,
                mtime_ns: mtime_ns(meta.modified().ok()),
            });
        } else if !rel
            .rsplit('/')
            .next()
            .is_some_and(|n| n.starts_with(crate::vault::fsutil::TEMP_PREFIX))
        {
            files.push(rel);
        }
    }
    Ok((notes, files))
}

fn mtime_ns(t: Option<SystemTime>) -> i64 {
    t.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos().min(i64::MAX as u128) as i64)
}

fn known_notes(conn: &Connection) -> Result<HashMap<String, Known>, IndexError> {
    let mut stmt = conn.prepare("SELECT path, id, size, mtime_ns, hash FROM notes")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            Known {
                id: r.get(1)?,
                size: r.get(2)?,
                mtime_ns: r.get(3)?,
                hash: r.get(4)?,
            },
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Reads, hashes and (when the content changed) parses one note. Runs on a rayon thread.
fn prepare(root: &Path, seen: &Seen, known: Option<&Known>) -> Prepared {
    let id = known.map(|k| k.id);
    let bytes = match std::fs::read(root.join(&seen.path)) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(file = %seen.path, "a note vanished or became unreadable while indexing: {e}");
            return Prepared::Vanished { id };
        }
    };
    let hash = sha2::Sha256::digest(&bytes).to_vec();
    if let Some(k) = known
        && k.hash == hash
    {
        return Prepared::Touched {
            id: k.id,
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

fn delete_children(tx: &Transaction<'_>, id: i64) -> Result<(), IndexError> {
    for table in [
        "note_tags",
        "aliases",
        "headings",
        "tasks",
        "links",
        "problems",
    ] {
        tx.execute(&format!("DELETE FROM {table} WHERE note_id = ?1"), [id])?;
    }
    Ok(())
}

/// Writes one note and its rows, replacing what the index held for it.
fn write_note(tx: &Transaction<'_>, id: Option<i64>, r: &NoteRecord) -> Result<(), IndexError> {
    let id = match id {
        Some(id) => {
            delete_children(tx, id)?;
            tx.prepare_cached(
                "UPDATE notes SET title = ?1, frontmatter = ?2, mission = ?3, size = ?4, mtime_ns = ?5, hash = ?6 WHERE id = ?7",
            )?
            .execute(params![r.title, r.frontmatter, r.mission, r.size, r.mtime_ns, r.hash, id])?;
            id
        }
        None => {
            tx.prepare_cached(
                "INSERT INTO notes (path, title, frontmatter, mission, size, mtime_ns, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![r.path, r.title, r.frontmatter, r.mission, r.size, r.mtime_ns, r.hash])?;
            tx.last_insert_rowid()
        }
    };
    {
        let mut stmt =
            tx.prepare_cached("INSERT INTO note_tags (note_id, seq, tag) VALUES (?1, ?2, ?3)")?;
        for (i, tag) in r.tags.iter().enumerate() {
            stmt.execute(params![id, i as i64, tag])?;
        }
    }
    {
        let mut stmt =
            tx.prepare_cached("INSERT INTO aliases (note_id, seq, alias) VALUES (?1, ?2, ?3)")?;
        for (i, alias) in r.aliases.iter().enumerate() {
            stmt.execute(params![id, i as i64, alias])?;
        }
    }
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO headings (note_id, seq, line, level, text) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for (i, h) in r.headings.iter().enumerate() {
            stmt.execute(params![id, i as i64, h.line as i64, h.level, h.text])?;
        }
    }
    {
        let mut stmt = tx.prepare_cached(
            "INSERT OR REPLACE INTO tasks (note_id, line, path, status, closed, due, scheduled, start, created, done, cancelled,
                                agenda, priority, mission, tags, json)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
        )?;
        for t in &r.tasks {
            let [due, scheduled, start, created, done, cancelled] = &t.dates;
            stmt.execute(params![
                id,
                t.line as i64,
                r.path,
                t.status,
                t.closed,
                due,
                scheduled,
                start,
                created,
                done,
                cancelled,
                t.agenda,
                t.priority,
                t.mission,
                t.tags,
                t.json
            ])?;
        }
    }
    {
        let mut stmt =
            tx.prepare_cached("INSERT INTO links (note_id, seq, line, kind, target, subpath) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?;
        for (i, l) in r.links.iter().enumerate() {
            stmt.execute(params![
                id,
                i as i64,
                l.line as i64,
                l.kind.name(),
                l.target,
                l.subpath
            ])?;
        }
    }
    {
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
    }
    Ok(())
}
