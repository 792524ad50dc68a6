//! Which bundle ids were applied, and by which commit.
//!
//! The truth is Git: every applied bundle is a commit carrying `Contribution-Id` and
//! `Contribution-Sha256` trailers. This record is a cache of those trailers in
//! `.quire/contributions.jsonl`, so a run does not walk the whole history to check one id. It also
//! remembers, per branch, the tip it has read up to; the caller feeds it the trailers of commits
//! made since. Delete `.quire/` and the record is rebuilt from the history on the next run.
//!
//! The file is append-only JSON Lines, so a crash mid-write costs at most a torn last line, which is
//! skipped on load (and re-learnt from Git, since the branch tip line after it is lost too).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::vault::fsutil;

/// Name of the record file in `.quire/`.
pub const RECORD_FILE: &str = "contributions.jsonl";

/// One applied bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// The bundle id.
    pub id: String,
    /// SHA-256 of the bundle's bytes, hex.
    pub sha256: String,
    /// The commit that applied it.
    pub commit: String,
    /// The branch it was committed to (`refs/heads/…` short name).
    pub branch: String,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Line {
    Applied(Applied),
    Tip { branch: String, commit: String },
}

/// The cache of applied ids.
#[derive(Debug)]
pub struct AppliedRecord {
    path: PathBuf,
    ids: HashMap<String, Applied>,
    tips: HashMap<String, String>,
    lines: usize,
    out: Option<File>,
}

impl AppliedRecord {
    /// Loads the record from `state_dir` (empty if absent).
    pub fn load(state_dir: &Path) -> io::Result<Self> {
        let path = state_dir.join(RECORD_FILE);
        let mut record = Self {
            path,
            ids: HashMap::new(),
            tips: HashMap::new(),
            lines: 0,
            out: None,
        };
        let file = match File::open(&record.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(record),
            Err(e) => return Err(e),
        };
        for line in BufReader::new(file).split(b'\n') {
            let line = line?;
            record.lines += 1;
            match serde_json::from_slice::<Line>(&line) {
                Ok(Line::Applied(a)) => {
                    record.ids.entry(a.id.clone()).or_insert(a);
                }
                Ok(Line::Tip { branch, commit }) => {
                    record.tips.insert(branch, commit);
                }
                Err(_) if line.iter().all(u8::is_ascii_whitespace) => {}
                Err(e) => {
                    tracing::warn!(file = %record.path.display(), "skipping an unreadable line of the applied-ids record: {e}")
                }
            }
        }
        Ok(record)
    }

    /// The application of `id`, if it was applied.
    pub fn get(&self, id: &str) -> Option<&Applied> {
        self.ids.get(id)
    }

    /// How many ids are recorded.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether no id is recorded.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The tip of `branch` the record is up to date with.
    pub fn tip(&self, branch: &str) -> Option<&str> {
        self.tips.get(branch).map(String::as_str)
    }

    /// Records an application (the first one of an id wins).
    pub fn add(&mut self, applied: Applied) -> io::Result<()> {
        if self.ids.contains_key(&applied.id) {
            return Ok(());
        }
        self.append(&Line::Applied(applied.clone()))?;
        self.ids.insert(applied.id.clone(), applied);
        Ok(())
    }

    /// Records that everything up to `commit` on `branch` has been read.
    pub fn set_tip(&mut self, branch: &str, commit: &str) -> io::Result<()> {
        if self.tip(branch) == Some(commit) {
            return Ok(());
        }
        self.append(&Line::Tip {
            branch: branch.to_owned(),
            commit: commit.to_owned(),
        })?;
        self.tips.insert(branch.to_owned(), commit.to_owned());
        Ok(())
    }

    /// Rewrites the file without superseded tip lines, when they are most of it.
    pub fn compact_if_worthwhile(&mut self) -> io::Result<()> {
        let needed = self.ids.len() + self.tips.len();
        let superseded = self.lines.saturating_sub(needed);
        if superseded <= 1024 || superseded <= needed / 2 {
            return Ok(());
        }
        let mut text = Vec::new();
        let mut applied: Vec<&Applied> = self.ids.values().collect();
        applied.sort_by(|a, b| a.id.cmp(&b.id));
        for a in applied {
            serde_json::to_writer(&mut text, &Line::Applied(a.clone()))
                .map_err(io::Error::other)?;
            text.push(b'\n');
        }
        for (branch, commit) in &self.tips {
            let line = Line::Tip {
                branch: branch.clone(),
                commit: commit.clone(),
            };
            serde_json::to_writer(&mut text, &line).map_err(io::Error::other)?;
            text.push(b'\n');
        }
        self.out = None;
        fsutil::atomic_write(&self.path, &text, false)?;
        self.lines = needed;
        Ok(())
    }

    fn append(&mut self, line: &Line) -> io::Result<()> {
        if self.out.is_none() {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let file = File::options().create(true).append(true).open(&self.path)?;
            // A torn line from a crash would swallow the next line; start clean.
            if file.metadata()?.len() > 0 && !ends_with_newline(&self.path)? {
                (&file).write_all(b"\n")?;
            }
            self.out = Some(file);
        }
        let mut text = serde_json::to_vec(line).map_err(io::Error::other)?;
        text.push(b'\n');
        if let Some(out) = self.out.as_mut() {
            out.write_all(&text)?;
        }
        self.lines += 1;
        Ok(())
    }
}

fn ends_with_newline(path: &Path) -> io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = File::open(path)?;
    f.seek(SeekFrom::End(-1))?;
    let mut last = [0u8];
    f.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(id: &str) -> Applied {
        Applied {
            id: id.into(),
            sha256: "00".into(),
            commit: "c".into(),
            branch: "main".into(),
        }
    }

    #[test]
    fn survives_reload_and_torn_lines() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = AppliedRecord::load(dir.path()).unwrap();
        r.add(applied("a")).unwrap();
        r.set_tip("main", "c1").unwrap();
        drop(r);
        // A crash mid-append leaves half a line.
        let mut f = File::options()
            .append(true)
            .open(dir.path().join(RECORD_FILE))
            .unwrap();
        f.write_all(br#"{"applied":{"id":"b","sha"#).unwrap();
        drop(f);
        let mut r = AppliedRecord::load(dir.path()).unwrap();
        assert!(r.get("a").is_some());
        assert!(r.get("b").is_none());
        assert_eq!(r.tip("main"), Some("c1"));
        r.add(applied("c")).unwrap();
        drop(r);
        let r = AppliedRecord::load(dir.path()).unwrap();
        assert!(r.get("c").is_some(), "a line after a torn one is read");
    }

    #[test]
    fn compaction_keeps_everything_needed() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = AppliedRecord::load(dir.path()).unwrap();
        for i in 0..2000 {
            r.add(applied(&format!("id{i}"))).unwrap();
            r.set_tip("main", &format!("c{i}")).unwrap();
        }
        r.compact_if_worthwhile().unwrap();
        let r = AppliedRecord::load(dir.path()).unwrap();
        assert_eq!(r.len(), 2000);
        assert_eq!(r.tip("main"), Some("c1999"));
        assert_eq!(r.lines, 2001);
    }
}
