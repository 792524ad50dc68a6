//! Analytics over what was applied (SPEC §10): every filed bundle and every mission step attempt,
//! listed with filters (`logs`), counted and timed (`stats`), and as series per hour or day
//! (`trends`).
//!
//! ```text
//!   apply ──filed──▶ record ──▶ .quire/analytics.db   bundles (one row per receipt)
//!                                                      rollup  (grain, start, status, code, author) → n
//!                                                      durations (grain, start, status, bucket) → n
//!   receipts on disk ──catch_up──┘ (what a crash or a lost .quire/ left unrecorded)
//!   .quire/missions.db ── attempts, decisions (read as they are)
//! ```
//!
//! Counts and percentiles are read from rollups per hour and per day, never by walking every
//! bundle: a question reads the days it covers whole and the hours of the day it starts in, so
//! its cost follows the days asked about (tens of rows each), not the bundles. Durations are kept in logarithmic
//! buckets 5 % wide: a percentile is exact to within about 2.5 %, as with Prometheus histograms.
//! A bundle's row and its rollups are written in one transaction, keyed by its receipt's file, so
//! nothing is counted twice; the receipts on disk stay the truth, and [`Analytics::catch_up`]
//! records whatever they hold that the database lacks (after a crash, or a deleted `.quire/`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde::Serialize;
use serde_json::{Value, json};

use crate::contributions::Receipt;
use crate::contributions::queue::RECEIPT_SUFFIX;
use crate::vault::{Queue, Vault};

/// The database's file name, in `.quire/`.
pub const ANALYTICS_FILE: &str = "analytics.db";

/// Each duration bucket is this much wider than the one below it.
const BUCKET_RATIO: f64 = 1.05;

/// A day's grain, in hours.
const DAY: i64 = 24;

/// Most log entries one page may ask for.
pub const MAX_PAGE: usize = 500;

/// Analytics could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum AnalyticsError {
    /// The database failed.
    #[error("analytics database {}: {source}", path.display())]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// A receipt folder could not be read.
    #[error("could not read {}: {source}", path.display())]
    Io {
        /// The folder or file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A query parameter cannot be used; the message says which and how.
    #[error("{0}")]
    BadQuery(String),
}

impl From<rusqlite::Error> for AnalyticsError {
    fn from(source: rusqlite::Error) -> Self {
        Self::Sqlite {
            path: Path::new(crate::vault::STATE_DIR).join(ANALYTICS_FILE),
            source,
        }
    }
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS bundles (
    file TEXT PRIMARY KEY,            -- the receipt's place: processed/<name> or rejected/<name>
    id TEXT,
    status TEXT NOT NULL,
    code TEXT NOT NULL DEFAULT '',    -- the refusal code of a rejected bundle
    author TEXT NOT NULL DEFAULT '',  -- "Name <email>" as the bundle says
    received TEXT NOT NULL,           -- RFC 3339 UTC with milliseconds: sorts as time
    ms REAL NOT NULL,
    branch TEXT NOT NULL DEFAULT '',
    commit_id TEXT NOT NULL DEFAULT '',
    paths TEXT NOT NULL DEFAULT ''    -- changed paths (or the path at fault), one per line
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS bundles_received ON bundles(received);
CREATE TABLE IF NOT EXISTS rollup (
    grain INTEGER NOT NULL,           -- 1: an hour, 24: a UTC day
    start INTEGER NOT NULL,           -- the period's first hour, in hours since the Unix epoch
    status TEXT NOT NULL,
    code TEXT NOT NULL,
    author TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (grain, start, status, code, author)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS durations (
    grain INTEGER NOT NULL,
    start INTEGER NOT NULL,
    status TEXT NOT NULL,
    bucket INTEGER NOT NULL,          -- round(log_1.05(ms))
    n INTEGER NOT NULL,
    PRIMARY KEY (grain, start, status, bucket)
) WITHOUT ROWID;
"#;

/// One filed bundle, as analytics keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct BundleFact {
    /// Where its receipt is, relative to `contributions/`: `processed/<name>` or `rejected/<name>`.
    pub file: String,
    /// The receipt.
    pub receipt: Receipt,
    /// `Name <email>` from the bundle, when it names one.
    pub author: Option<String>,
}

impl BundleFact {
    /// The fact for a bundle filed at `bundle` (its path in `processed/` or `rejected/`).
    pub fn new(bundle: &Path, receipt: Receipt, author: Option<String>) -> Self {
        let folder = bundle
            .parent()
            .and_then(Path::file_name)
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = crate::contributions::queue::file_stem(bundle);
        Self {
            file: format!("{folder}/{name}"),
            receipt,
            author,
        }
    }
}

/// `Name <email>` of a bundle's `author`, read leniently from its JSON (also from a bundle that
/// was refused for other reasons), so live recording and a rebuild from files agree.
pub fn peek_author(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Author {
        name: String,
        email: String,
    }
    #[derive(serde::Deserialize)]
    struct Peek {
        author: Author,
    }
    let p: Peek = serde_json::from_slice(bytes).ok()?;
    let (name, email) = (p.author.name.trim(), p.author.email.trim());
    if name.is_empty() && email.is_empty() {
        return None;
    }
    Some(format!("{name} <{email}>").chars().take(300).collect())
}

/// A `WHERE` clause built up with numbered parameters.
struct Where {
    sql: String,
    args: Vec<String>,
}

impl Where {
    fn new(select: &str) -> Self {
        Self {
            sql: select.to_owned(),
            args: Vec::new(),
        }
    }

    /// Adds a parameter; returns its number.
    fn arg(&mut self, v: &str) -> usize {
        self.args.push(v.to_owned());
        self.args.len()
    }
}

/// `s` with LIKE's wildcards escaped by `\`.
fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// The analytics database of one vault.
pub struct Analytics {
    conn: Connection,
    /// The missions' state file, read for attempts and decisions when it exists.
    missions: PathBuf,
}

fn hour_of(rfc3339: &str) -> i64 {
    DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| t.timestamp().div_euclid(3600))
        .unwrap_or(0)
}

fn bucket_of(ms: f64) -> i64 {
    (ms.max(0.001).ln() / BUCKET_RATIO.ln()).round() as i64
}

fn bucket_ms(bucket: i64) -> f64 {
    (BUCKET_RATIO.powi(bucket as i32) * 10.0).round() / 10.0
}

/// The value below which `q` of the counts fall, from `(bucket, n)` sorted by bucket.
fn quantile(buckets: &[(i64, i64)], q: f64) -> Option<f64> {
    let total: i64 = buckets.iter().map(|(_, n)| n).sum();
    if total == 0 {
        return None;
    }
    let rank = ((q * total as f64).ceil() as i64).max(1);
    let mut seen = 0;
    for (b, n) in buckets {
        seen += n;
        if seen >= rank {
            return Some(bucket_ms(*b));
        }
    }
    buckets.last().map(|(b, _)| bucket_ms(*b))
}

/// An exact quantile of `values` (sorted in place).
fn exact_quantile(values: &mut [f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    Some((values[rank - 1] * 10.0).round() / 10.0)
}

fn rate(part: i64, whole: i64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        (part as f64 / whole as f64 * 10_000.0).round() / 10_000.0
    }
}

/// A time bound from a query: a date (`2026-12-01`, its start in UTC) or an RFC 3339 time.
pub fn parse_time(s: &str) -> Result<DateTime<Utc>, AnalyticsError> {
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            AnalyticsError::BadQuery(format!(
                "`{s}` is not a date (YYYY-MM-DD) or a time (RFC 3339, such as 2026-12-01T09:00:00Z)"
            ))
        })
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// What to list ([`Analytics::logs`]); every filter is optional.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    /// `bundle` or `attempt`; both when `None`.
    pub kind: Option<String>,
    /// A bundle's status (`applied`, `rejected`, `duplicate`) or an attempt's state (`succeeded`,
    /// `failed`, …).
    pub status: Option<String>,
    /// A refusal code, or an attempt's failure class.
    pub code: Option<String>,
    /// The author, by name, email or `Name <email>` (bundles only).
    pub author: Option<String>,
    /// A vault path or folder a bundle changed (bundles only).
    pub path: Option<String>,
    /// A mission: its attempts, and the bundles sent to its sandbox branch.
    pub mission: Option<String>,
    /// From this time on.
    pub since: Option<DateTime<Utc>>,
    /// Before this time.
    pub until: Option<DateTime<Utc>>,
    /// Entries to skip (newest first).
    pub offset: usize,
    /// Entries to give (at most [`MAX_PAGE`]).
    pub limit: usize,
}

impl LogFilter {
    /// The filter a query string asks for (`kind`, `status`, `code`, `author`, `path`, `mission`,
    /// `since`, `until`, `offset`, `limit`; default limit 50).
    pub fn from_query(q: &HashMap<String, String>) -> Result<Self, AnalyticsError> {
        let text = |k: &str| {
            q.get(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let number = |k: &str, default: usize| -> Result<usize, AnalyticsError> {
            match q.get(k) {
                None => Ok(default),
                Some(v) => v.parse().map_err(|_| {
                    AnalyticsError::BadQuery(format!("`{k}` must be a whole number, not `{v}`"))
                }),
            }
        };
        let time = |k: &str| text(k).map(|v| parse_time(&v)).transpose();
        Ok(Self {
            kind: text("kind"),
            status: text("status"),
            code: text("code"),
            author: text("author"),
            path: text("path"),
            mission: text("mission"),
            since: time("since")?,
            until: time("until")?,
            offset: number("offset", 0)?,
            limit: number("limit", 50)?,
        })
    }
}

/// The unit of a trend series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Every {
    /// One point per hour.
    Hour,
    /// One point per UTC day.
    Day,
}

impl std::str::FromStr for Every {
    type Err = AnalyticsError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "hour" => Ok(Self::Hour),
            "day" => Ok(Self::Day),
            _ => Err(AnalyticsError::BadQuery(format!(
                "`every` is `hour` or `day`, not `{s}`"
            ))),
        }
    }
}

impl Analytics {
    /// Opens (creating when missing) the vault's analytics database.
    pub fn open(vault: &Vault) -> Result<Self, AnalyticsError> {
        let dir = vault.state_dir();
        std::fs::create_dir_all(&dir).map_err(|source| AnalyticsError::Io {
            path: dir.clone(),
            source,
        })?;
        let path = dir.join(ANALYTICS_FILE);
        let missions = dir.join(crate::missions::store::STATE_FILE);
        let conn = Connection::open(&path)?;
        let setup = || -> rusqlite::Result<()> {
            conn.busy_timeout(Duration::from_secs(10))?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            // A lost tail after a power cut is found again from the receipts by `catch_up`.
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            conn.execute_batch(SCHEMA)
        };
        setup()?;
        Ok(Self { conn, missions })
    }

    /// Records filed bundles (each once: a fact already recorded is skipped). Returns how many
    /// were new.
    pub fn record(&mut self, facts: &[BundleFact]) -> Result<usize, AnalyticsError> {
        let tx = self.conn.transaction()?;
        let mut added = 0;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO bundles (file, id, status, code, author, received, ms, branch, commit_id, paths)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )
                ?;
            let mut rollup = tx.prepare_cached(
                "INSERT INTO rollup (grain, start, status, code, author, n) VALUES (?1, ?2, ?3, ?4, ?5, 1)
                     ON CONFLICT (grain, start, status, code, author) DO UPDATE SET n = n + 1",
            )?;
            let mut duration = tx.prepare_cached(
                "INSERT INTO durations (grain, start, status, bucket, n) VALUES (?1, ?2, ?3, ?4, 1)
                     ON CONFLICT (grain, start, status, bucket) DO UPDATE SET n = n + 1",
            )?;
            for f in facts {
                let r = &f.receipt;
                let status = r.status.as_str();
                let code = r.error.as_ref().map(|e| e.code.as_str()).unwrap_or("");
                let author = f.author.as_deref().unwrap_or("");
                let paths = match (&r.files, &r.error) {
                    (Some(files), _) => files.join("\n"),
                    (None, Some(e)) => e.path.clone().unwrap_or_default(),
                    (None, None) => String::new(),
                };
                let changed = insert.execute(params![
                    f.file,
                    r.id,
                    status,
                    code,
                    author,
                    r.received_at,
                    r.duration_ms,
                    r.branch.as_deref().unwrap_or(""),
                    r.commit.as_deref().unwrap_or(""),
                    paths,
                ])?;
                if changed == 0 {
                    continue;
                }
                let hour = hour_of(&r.received_at);
                let bucket = bucket_of(r.duration_ms);
                for (grain, start) in [(1, hour), (DAY, hour.div_euclid(DAY) * DAY)] {
                    rollup.execute(params![grain, start, status, code, author])?;
                    duration.execute(params![grain, start, status, bucket])?;
                }
                added += 1;
            }
        }
        tx.commit()?;
        Ok(added)
    }

    /// Records every receipt in `processed/` and `rejected/` the database does not have yet: what
    /// a crash between filing and recording left out, or everything after `.quire/` was deleted.
    /// Lists the two folders and reads only the receipts that are new. Returns how many were.
    pub fn catch_up(&mut self, vault: &Vault) -> Result<usize, AnalyticsError> {
        let known: HashSet<String> = {
            let mut stmt = self.conn.prepare("SELECT file FROM bundles")?;
            stmt.query_map([], |r| r.get::<_, String>(0))
                .and_then(|rows| rows.collect())?
        };
        let mut facts = Vec::new();
        let mut added = 0;
        for (queue, folder) in [
            (Queue::Processed, "processed"),
            (Queue::Rejected, "rejected"),
        ] {
            let dir = vault.queue_dir(queue);
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(AnalyticsError::Io { path: dir, source }),
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(RECEIPT_SUFFIX)) else {
                    continue;
                };
                let file = format!("{folder}/{stem}");
                if known.contains(&file) {
                    continue;
                }
                let Ok(bytes) = std::fs::read(entry.path()) else {
                    continue;
                };
                // A receipt that is not one (a stray file) is not counted.
                let Ok(receipt) = serde_json::from_slice::<Receipt>(&bytes) else {
                    tracing::debug!(file, "not a receipt; left out of analytics");
                    continue;
                };
                let author = std::fs::read(dir.join(format!("{stem}.json")))
                    .ok()
                    .and_then(|b| peek_author(&b));
                facts.push(BundleFact {
                    file,
                    receipt,
                    author,
                });
                if facts.len() >= 5_000 {
                    added += self.record(&std::mem::take(&mut facts))?;
                }
            }
        }
        added += self.record(&facts)?;
        if added > 0 {
            tracing::info!(added, "analytics: recorded receipts found on disk");
        }
        Ok(added)
    }

    /// The missions' state file, attached read-only as `m`, when there is one.
    fn attach_missions(&self) -> Result<bool, AnalyticsError> {
        let attached: bool = self
            .conn
            .query_row(
                "SELECT count(*) FROM pragma_database_list WHERE name = 'm'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)?;
        if attached {
            return Ok(true);
        }
        if !self.missions.is_file() {
            return Ok(false);
        }
        // Opened through a second handle first, so a missing or foreign file is never created or
        // changed by the attach.
        let usable = Connection::open_with_flags(
            &self.missions,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .and_then(|c| {
            c.query_row(
                "SELECT count(*) FROM sqlite_master WHERE name IN ('attempts', 'decisions', 'missions')",
                [],
                |r| r.get::<_, i64>(0),
            )
        })
        .map(|n| n == 3)
        .unwrap_or(false);
        if !usable {
            return Ok(false);
        }
        self.conn
            .execute("ATTACH DATABASE ?1 AS m", [self.missions.to_string_lossy()])?;
        Ok(true)
    }

    /// Bundles and attempts, newest first, filtered and paged:
    /// `{"items": [...], "offset", "limit", "next_offset"}` (`next_offset` is `null` on the last
    /// page).
    pub fn logs(&self, f: &LogFilter) -> Result<Value, AnalyticsError> {
        let limit = f.limit.clamp(1, MAX_PAGE);
        let want = f.offset + limit + 1;
        let kind = f.kind.as_deref();
        if let Some(k) = kind
            && !matches!(k, "bundle" | "attempt")
        {
            return Err(AnalyticsError::BadQuery(format!(
                "`kind` is `bundle` or `attempt`, not `{k}`"
            )));
        }
        let since = f.since.map(stamp);
        let until = f.until.map(stamp);
        let mut items: Vec<(String, Value)> = Vec::new();

        if kind != Some("attempt") {
            let mut w = Where::new(
                "SELECT id, status, code, author, received, ms, branch, commit_id, paths, file FROM bundles WHERE 1",
            );
            if let Some(s) = &f.status {
                let i = w.arg(s);
                w.sql.push_str(&format!(" AND status = ?{i}"));
            }
            if let Some(c) = &f.code {
                let i = w.arg(c);
                w.sql.push_str(&format!(" AND code = ?{i}"));
            }
            if let Some(a) = &f.author {
                // The whole `Name <email>`, or the name or the email alone.
                let e = like_escape(a);
                let (i, j, k) = (
                    w.arg(a),
                    w.arg(&format!("{e} <%")),
                    w.arg(&format!("% <{e}>")),
                );
                w.sql.push_str(&format!(
                    " AND (author = ?{i} OR author LIKE ?{j} ESCAPE '\\' OR author LIKE ?{k} ESCAPE '\\')"
                ));
            }
            if let Some(p) = &f.path {
                // The path itself, or anything under it as a folder.
                let e = like_escape(p.trim_end_matches('/'));
                let (i, j) = (w.arg(&format!("%\n{e}\n%")), w.arg(&format!("%\n{e}/%")));
                w.sql.push_str(&format!(
                    " AND (char(10) || paths || char(10) LIKE ?{i} ESCAPE '\\' OR char(10) || paths LIKE ?{j} ESCAPE '\\')"
                ));
            }
            if let Some(m) = &f.mission {
                let i = w.arg(&format!("mission/{m}"));
                w.sql.push_str(&format!(" AND branch = ?{i}"));
            }
            if let Some(s) = &since {
                let i = w.arg(s);
                w.sql.push_str(&format!(" AND received >= ?{i}"));
            }
            if let Some(u) = &until {
                let i = w.arg(u);
                w.sql.push_str(&format!(" AND received < ?{i}"));
            }
            w.sql
                .push_str(&format!(" ORDER BY received DESC, file DESC LIMIT {want}"));
            let mut stmt = self.conn.prepare(&w.sql)?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(w.args.iter()), |r| {
                    let received: String = r.get(4)?;
                    let paths: String = r.get(8)?;
                    let code: String = r.get(2)?;
                    let author: String = r.get(3)?;
                    let branch: String = r.get(6)?;
                    let commit: String = r.get(7)?;
                    Ok((
                        received.clone(),
                        json!({
                            "kind": "bundle",
                            "at": received,
                            "id": r.get::<_, Option<String>>(0)?,
                            "status": r.get::<_, String>(1)?,
                            "code": (!code.is_empty()).then_some(code),
                            "author": (!author.is_empty()).then_some(author),
                            "ms": r.get::<_, f64>(5)?,
                            "branch": (!branch.is_empty()).then_some(branch),
                            "commit": (!commit.is_empty()).then_some(commit),
                            "paths": paths.lines().collect::<Vec<_>>(),
                            "receipt": r.get::<_, String>(9)?,
                        }),
                    ))
                })
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())?;
            items.extend(rows);
        }

        if kind != Some("bundle")
            && f.author.is_none()
            && f.path.is_none()
            && self.attach_missions()?
        {
            let mut w = Where::new(
                "SELECT mission, item, step, round, attempt, state, started, ended, exit, class, commit_id, log,
                        (julianday(ended) - julianday(started)) * 86400000.0
                 FROM m.attempts WHERE 1",
            );
            if let Some(s) = &f.status {
                let i = w.arg(s);
                w.sql.push_str(&format!(" AND state = ?{i}"));
            }
            if let Some(c) = &f.code {
                let i = w.arg(c);
                w.sql.push_str(&format!(" AND class = ?{i}"));
            }
            if let Some(m) = &f.mission {
                let i = w.arg(m);
                w.sql.push_str(&format!(" AND mission = ?{i}"));
            }
            if let Some(s) = &since {
                let i = w.arg(s);
                w.sql.push_str(&format!(" AND started >= ?{i}"));
            }
            if let Some(u) = &until {
                let i = w.arg(u);
                w.sql.push_str(&format!(" AND started < ?{i}"));
            }
            w.sql
                .push_str(&format!(" ORDER BY started DESC LIMIT {want}"));
            let mut stmt = self.conn.prepare(&w.sql)?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(w.args.iter()), |r| {
                    let started: String = r.get(6)?;
                    let item: String = r.get(1)?;
                    Ok((
                        started.clone(),
                        json!({
                            "kind": "attempt",
                            "at": started,
                            "mission": r.get::<_, String>(0)?,
                            "item": (!item.is_empty()).then_some(item),
                            "step": r.get::<_, String>(2)?,
                            "round": r.get::<_, i64>(3)?,
                            "attempt": r.get::<_, i64>(4)?,
                            "status": r.get::<_, String>(5)?,
                            "ended": r.get::<_, Option<String>>(7)?,
                            "exit": r.get::<_, Option<i64>>(8)?,
                            "code": r.get::<_, Option<String>>(9)?,
                            "commit": r.get::<_, Option<String>>(10)?,
                            "log": r.get::<_, String>(11)?,
                            "ms": r.get::<_, Option<f64>>(12)?.map(|ms| (ms * 10.0).round() / 10.0),
                        }),
                    ))
                })
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())?;
            items.extend(rows);
        }

        // Newest first across both kinds; equal times keep bundles before attempts.
        items.sort_by(|a, b| b.0.cmp(&a.0));
        let more = items.len() > f.offset + limit;
        let page: Vec<Value> = items
            .into_iter()
            .skip(f.offset)
            .take(limit)
            .map(|(_, v)| v)
            .collect();
        Ok(json!({
            "items": page,
            "offset": f.offset,
            "limit": limit,
            "next_offset": more.then_some(f.offset + limit),
        }))
    }

    /// Counts, rates and durations since `since` (everything when `None`; a time inside an hour
    /// counts that whole hour, as the finest rollups are hourly).
    pub fn stats(&self, since: Option<DateTime<Utc>>) -> Result<Value, AnalyticsError> {
        // Whole days from the daily rollups; the hours before the first whole day from the hourly.
        let (from_hour, first_day) = match since {
            None => (i64::MIN, i64::MIN),
            Some(t) => {
                let h = t.timestamp().div_euclid(3600);
                (h, (h + DAY - 1).div_euclid(DAY) * DAY)
            }
        };
        let spans = [(DAY, first_day, i64::MAX), (1, from_hour, first_day)];
        let mut by_status: BTreeMap<String, i64> = BTreeMap::new();
        let mut by_code: BTreeMap<String, i64> = BTreeMap::new();
        let mut by_author: HashMap<String, (i64, i64)> = HashMap::new();
        let mut buckets: BTreeMap<i64, i64> = BTreeMap::new();
        for (grain, from, to) in spans {
            if from >= to {
                continue;
            }
            // Summed here rather than with GROUP BY, which would sort every row first.
            let mut stmt = self.conn.prepare_cached(
                "SELECT status, code, author, n FROM rollup WHERE grain = ?1 AND start >= ?2 AND start < ?3",
            )?;
            let mut rows = stmt.query([grain, from, to])?;
            while let Some(r) = rows.next()? {
                let text = |i| -> rusqlite::Result<&str> {
                    r.get_ref(i)?.as_str().map_err(|e| {
                        rusqlite::Error::FromSqlConversionFailure(
                            i,
                            rusqlite::types::Type::Text,
                            e.into(),
                        )
                    })
                };
                let (status, code, author) = (text(0)?, text(1)?, text(2)?);
                let n: i64 = r.get(3)?;
                match by_status.get_mut(status) {
                    Some(c) => *c += n,
                    None => {
                        by_status.insert(status.to_owned(), n);
                    }
                }
                if !code.is_empty() {
                    *by_code.entry(code.to_owned()).or_default() += n;
                }
                let who = if author.is_empty() { "(none)" } else { author };
                let slot = match by_author.get_mut(who) {
                    Some(slot) => slot,
                    None => by_author.entry(who.to_owned()).or_default(),
                };
                match status {
                    "applied" => slot.0 += n,
                    "rejected" => slot.1 += n,
                    _ => {}
                }
            }
            let mut stmt = self.conn.prepare_cached(
                "SELECT bucket, n FROM durations
                 WHERE grain = ?1 AND start >= ?2 AND start < ?3 AND status = 'applied'",
            )?;
            let mut rows = stmt.query([grain, from, to])?;
            while let Some(r) = rows.next()? {
                *buckets.entry(r.get(0)?).or_default() += r.get::<_, i64>(1)?;
            }
        }
        let applied_ms: Vec<(i64, i64)> = buckets.into_iter().collect();
        let total: i64 = by_status.values().sum();
        let rejected = by_status.get("rejected").copied().unwrap_or(0);
        let mut authors: Vec<(String, (i64, i64))> = by_author.into_iter().collect();
        authors.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.0.cmp(&b.0)));
        let authors: Vec<Value> = authors
            .into_iter()
            .take(50)
            .map(|(a, (applied, rejected))| json!({ "author": a, "applied": applied, "rejected": rejected }))
            .collect();
        let steps = self.step_stats(since)?;
        Ok(json!({
            "since": since.map(stamp),
            "bundles": {
                "total": total,
                "by_status": {
                    "applied": by_status.get("applied").copied().unwrap_or(0),
                    "duplicate": by_status.get("duplicate").copied().unwrap_or(0),
                    "rejected": rejected,
                },
                "rejection_rate": rate(rejected, total),
                "by_code": by_code,
                "by_author": authors,
                "apply_ms": {
                    "p50": quantile(&applied_ms, 0.50),
                    "p95": quantile(&applied_ms, 0.95),
                },
            },
            "steps": steps,
        }))
    }

    /// Attempts, their durations and rates, and escalations, from the missions' state.
    fn step_stats(&self, since: Option<DateTime<Utc>>) -> Result<Value, AnalyticsError> {
        let empty = json!({
            "attempts": 0, "by_state": {}, "step_ms": { "p50": null, "p95": null },
            "retry_rate": 0.0, "missions": 0, "escalated_missions": 0, "escalation_rate": 0.0,
        });
        if !self.attach_missions()? {
            return Ok(empty);
        }
        let since = since.map(stamp).unwrap_or_default();
        let mut by_state: BTreeMap<String, i64> = BTreeMap::new();
        let mut durations = Vec::new();
        let (mut attempts, mut retries) = (0i64, 0i64);
        {
            let mut stmt = self.conn.prepare_cached(
                "SELECT state, attempt, (julianday(ended) - julianday(started)) * 86400000.0
                     FROM m.attempts WHERE started >= ?1",
            )?;
            let mut rows = stmt.query([&since])?;
            while let Some(r) = rows.next()? {
                let state: String = r.get(0)?;
                let attempt: i64 = r.get(1)?;
                let ms: Option<f64> = r.get(2)?;
                attempts += 1;
                if attempt > 1 {
                    retries += 1;
                }
                if let Some(ms) = ms
                    && state != "running"
                {
                    durations.push(ms.max(0.0));
                }
                *by_state.entry(state).or_default() += 1;
            }
        }
        let missions: i64 = self.conn.query_row(
            "SELECT count(*) FROM m.missions WHERE created >= ?1",
            [&since],
            |r| r.get(0),
        )?;
        let escalated: i64 = self
            .conn
            .query_row(
                "SELECT count(DISTINCT d.mission) FROM m.decisions d JOIN m.missions s ON s.id = d.mission
                 WHERE d.kind = 'escalation' AND s.created >= ?1",
                [&since],
                |r| r.get(0),
            )
            ?;
        Ok(json!({
            "attempts": attempts,
            "by_state": by_state,
            "step_ms": {
                "p50": exact_quantile(&mut durations.clone(), 0.50),
                "p95": exact_quantile(&mut durations, 0.95),
            },
            "retry_rate": rate(retries, attempts),
            "missions": missions,
            "escalated_missions": escalated,
            "escalation_rate": rate(escalated, missions),
        }))
    }

    /// Series per hour or day since `since` (default: the last 7 days for days, 48 hours for
    /// hours): bundles by status, and step attempts with their failures. Empty periods are
    /// included, so a chart's x axis is even.
    pub fn trends(
        &self,
        every: Every,
        since: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Value, AnalyticsError> {
        let width: i64 = match every {
            Every::Hour => 1,
            Every::Day => 24,
        };
        let since = since.unwrap_or_else(|| match every {
            Every::Hour => now - chrono::Duration::hours(47),
            Every::Day => now - chrono::Duration::days(6),
        });
        let first = since.timestamp().div_euclid(3600).div_euclid(width) * width;
        let last = now.timestamp().div_euclid(3600).div_euclid(width) * width;
        if last < first {
            return Err(AnalyticsError::BadQuery("`since` is in the future".into()));
        }
        let points = ((last - first) / width + 1) as usize;
        if points > 24 * 400 {
            return Err(AnalyticsError::BadQuery(format!(
                "{points} points asked for; ask for at most {} (a later `since`, or `every=day`)",
                24 * 400
            )));
        }
        let mut series: Vec<BTreeMap<&str, i64>> = vec![BTreeMap::new(); points];
        {
            let mut stmt = self.conn.prepare_cached(
                "SELECT start, status, n FROM rollup WHERE grain = ?2 AND start >= ?1",
            )?;
            let mut rows = stmt.query([first, width])?;
            while let Some(r) = rows.next()? {
                let p: i64 = r.get(0)?;
                let status: String = r.get(1)?;
                let n: i64 = r.get(2)?;
                let Some(slot) = usize::try_from((p - first) / width)
                    .ok()
                    .and_then(|i| series.get_mut(i))
                else {
                    continue;
                };
                let key = match status.as_str() {
                    "applied" => "applied",
                    "rejected" => "rejected",
                    _ => "duplicate",
                };
                *slot.entry(key).or_default() += n;
            }
        }
        if self.attach_missions()? {
            let mut stmt = self
                .conn
                .prepare_cached("SELECT started, state FROM m.attempts WHERE started >= ?1")?;
            let from = stamp(DateTime::from_timestamp(first * 3600, 0).unwrap_or(since));
            let mut rows = stmt.query([from])?;
            while let Some(r) = rows.next()? {
                let started: String = r.get(0)?;
                let state: String = r.get(1)?;
                let p = hour_of(&started).div_euclid(width) * width;
                let Some(slot) = usize::try_from((p - first) / width)
                    .ok()
                    .and_then(|i| series.get_mut(i))
                else {
                    continue;
                };
                *slot.entry("attempts").or_default() += 1;
                if matches!(state.as_str(), "failed" | "lost" | "interrupted") {
                    *slot.entry("failed_attempts").or_default() += 1;
                }
            }
        }
        let points: Vec<Value> = series
            .into_iter()
            .enumerate()
            .map(|(i, m)| {
                let at = DateTime::from_timestamp((first + i as i64 * width) * 3600, 0)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
                let get = |k| m.get(k).copied().unwrap_or(0);
                json!({
                    "at": at,
                    "applied": get("applied"),
                    "rejected": get("rejected"),
                    "duplicate": get("duplicate"),
                    "attempts": get("attempts"),
                    "failed_attempts": get("failed_attempts"),
                })
            })
            .collect();
        Ok(json!({ "every": every, "since": stamp(since), "series": points }))
    }

    /// Bundles recorded (for health and tests).
    pub fn bundle_count(&self) -> Result<i64, AnalyticsError> {
        Ok(self
            .conn
            .query_row("SELECT count(*) FROM bundles", [], |r| r.get(0))
            .optional()?
            .unwrap_or(0))
    }
}

/// Records `facts` in the vault's analytics; failing is logged, never an error: the receipts are
/// written, and the next catch-up records what this missed.
pub fn record_quietly(vault: &Vault, facts: &[BundleFact]) {
    if facts.is_empty() {
        return;
    }
    if let Err(e) = Analytics::open(vault).and_then(|mut a| a.record(facts)) {
        tracing::warn!(
            "could not record {} bundle(s) in analytics: {e}",
            facts.len()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_from_buckets_are_within_the_bucket_width() {
        let values: Vec<f64> = (1..=1000).map(|i| i as f64 * 0.37).collect();
        let mut buckets: BTreeMap<i64, i64> = BTreeMap::new();
        for v in &values {
            *buckets.entry(bucket_of(*v)).or_default() += 1;
        }
        let buckets: Vec<(i64, i64)> = buckets.into_iter().collect();
        for q in [0.5, 0.95, 0.99] {
            let exact = exact_quantile(&mut values.clone(), q).unwrap();
            let approx = quantile(&buckets, q).unwrap();
            assert!(
                (approx - exact).abs() / exact < 0.03,
                "q{q}: {approx} against {exact}"
            );
        }
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn authors_are_peeked_from_bundles_good_and_bad() {
        assert_eq!(
            peek_author(
                br#"{"id":"x","author":{"name":"Vibe","email":"v@example.org"},"changes":7}"#
            ),
            Some("Vibe <v@example.org>".into())
        );
        assert_eq!(peek_author(br#"{"author":{"name":"","email":""}}"#), None);
        assert_eq!(peek_author(b"not json"), None);
        assert_eq!(peek_author(br#"{"author":"me"}"#), None);
    }

    #[test]
    fn times_are_dates_or_rfc3339_and_anything_else_is_named() {
        assert_eq!(
            stamp(parse_time("2026-12-01").unwrap()),
            "2026-12-01T00:00:00.000Z"
        );
        assert_eq!(
            stamp(parse_time("2026-12-01T10:30:00+01:00").unwrap()),
            "2026-12-01T09:30:00.000Z"
        );
        let e = parse_time("yesterday").unwrap_err().to_string();
        assert!(e.contains("`yesterday`"), "{e}");
    }
}
