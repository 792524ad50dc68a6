//! Which dropped bundles are ready to claim, and in what order.
//!
//! The directory listing is the truth; watcher events only say "look again". A bundle renamed into
//! `pending/` is complete at once, but one written in place may be read half-written. A bundle is a
//! single JSON document, and no proper prefix of a JSON document is itself a complete document,
//! so a file that parses is complete: it is claimed at once. One that does not parse is claimed
//! (and refused as `invalid_json`) only when it has not changed for [`SETTLE`], so a slow writer
//! is waited for and a truly broken file is still reported.
//!
//! Mission briefs go in a lane of their own, behind everything else: accepting one commits its
//! note and creates its sandbox, so a burst of a few hundred takes seconds, and a bundle or an
//! answer to a decision dropped meanwhile must not wait for all of them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use crate::contributions::queue;
use crate::vault::{Queue, Vault};

/// How long an unparsable bundle must stay unchanged before it is taken as it is.
pub const SETTLE: Duration = Duration::from_secs(2);

/// The files ready to claim, each lane in arrival order (mtime, then name).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Ready {
    /// Bundles, answers to decisions, and whatever else is to be refused: taken first.
    pub first: Vec<PathBuf>,
    /// Mission briefs.
    pub briefs: Vec<PathBuf>,
}

impl Ready {
    /// Whether nothing is ready.
    pub fn is_empty(&self) -> bool {
        self.first.is_empty() && self.briefs.is_empty()
    }

    /// How many files are ready.
    pub fn len(&self) -> usize {
        self.first.len() + self.briefs.len()
    }
}

/// Remembers unparsable files, and what the complete ones are, between looks.
#[derive(Debug, Default)]
pub struct Intake {
    /// Per file: its size and mtime at the last look, and since when they have been so.
    unsettled: HashMap<PathBuf, (u64, SystemTime, Instant)>,
    /// Per complete file: its size and mtime when read, and whether it is a mission brief. While a
    /// burst of briefs is taken a few at a time, each look would otherwise read all the rest again.
    known: HashMap<PathBuf, (u64, SystemTime, bool)>,
}

impl Intake {
    /// The files in `pending/` ready to claim.
    pub fn ready(&mut self, vault: &Vault) -> std::io::Result<Ready> {
        let limit = vault.config().contributions.max_bundle_bytes;
        let mut ready = Ready::default();
        let mut still = HashMap::new();
        let mut known = HashMap::new();
        for path in queue::list(vault, Queue::Pending)? {
            let Ok(meta) = path.symlink_metadata() else {
                continue; // taken meanwhile
            };
            let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            // Links and oversized files are refused without reading them, by the apply itself.
            if meta.file_type().is_symlink() || meta.len() > limit {
                ready.first.push(path);
                continue;
            }
            let brief = match self.known.get(&path) {
                Some(&(len, m, brief)) if len == meta.len() && m == mtime => Some(brief),
                _ => peek(&path),
            };
            if let Some(brief) = brief {
                known.insert(path.clone(), (meta.len(), mtime, brief));
                if brief {
                    ready.briefs.push(path);
                } else {
                    ready.first.push(path);
                }
                continue;
            }
            let now = Instant::now();
            let since = match self.unsettled.get(&path) {
                Some((len, m, since)) if *len == meta.len() && *m == mtime => *since,
                _ => now,
            };
            if now.duration_since(since) >= SETTLE {
                ready.first.push(path);
            } else {
                still.insert(path, (meta.len(), mtime, since));
            }
        }
        self.unsettled = still;
        self.known = known;
        Ok(ready)
    }

    /// Whether some file is being waited for (so the caller looks again soon).
    pub fn waiting(&self) -> bool {
        !self.unsettled.is_empty()
    }
}

/// Whether the file at `path` is a mission brief; `None` while it is not a whole JSON document
/// (being written, or broken).
fn peek(path: &std::path::Path) -> Option<bool> {
    let bytes = std::fs::read(path).ok()?;
    match crate::contributions::peek_contract(&bytes) {
        Ok(c) => Some(c.as_deref() == Some(crate::missions::brief::CONTRACT)),
        // Whole JSON of another shape (an array, a `contract` that is not a string): complete,
        // and refused by the apply, which says why.
        Err(e) if e.classify() == serde_json::error::Category::Data => Some(false),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_bundles_are_ready_and_half_written_ones_wait() {
        let (_dir, vault) = crate::workflow::temp_vault();
        let pending = vault.queue_dir(Queue::Pending);
        std::fs::write(pending.join("a.json"), br#"{"id":"a"}"#).unwrap();
        std::fs::write(pending.join("b.json"), br#"{"id":"b", "chan"#).unwrap();
        std::fs::write(pending.join(".c.json"), br#"{}"#).unwrap();
        std::fs::write(pending.join("d.json.part"), br#"{}"#).unwrap();
        let mut intake = Intake::default();
        let ready = intake.ready(&vault).unwrap();
        assert_eq!(ready.first, vec![pending.join("a.json")]);
        assert!(ready.briefs.is_empty());
        assert!(intake.waiting());
        // Finished: ready at once.
        std::fs::write(pending.join("b.json"), br#"{"id":"b"}"#).unwrap();
        let ready = intake.ready(&vault).unwrap();
        assert!(ready.first.contains(&pending.join("b.json")));
        assert!(!intake.waiting());
    }

    #[test]
    fn briefs_wait_behind_bundles_and_answers_dropped_after_them() {
        let (_dir, vault) = crate::workflow::temp_vault();
        let pending = vault.queue_dir(Queue::Pending);
        let at = |secs: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs);
        let drop = |name: &str, text: &str, secs| {
            let path = pending.join(name);
            std::fs::write(&path, text).unwrap();
            std::fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(at(secs))
                .unwrap();
            path
        };
        let b1 = drop("b1.json", r#"{"contract":"quire.mission/1","id":"b1"}"#, 1);
        let b2 = drop("b2.json", r#"{"id":"b2","contract":"quire.mission/1"}"#, 2);
        let c = drop(
            "c.json",
            r#"{"contract":"quire.contribution/1","id":"c"}"#,
            3,
        );
        let d = drop(
            "d.json",
            r#"{"contract":"quire.decision/1","decision":"x"}"#,
            4,
        );
        let odd = drop("odd.json", r#"[1, 2]"#, 5);
        let other = drop("other.json", r#"{"contract":7}"#, 6);
        let mut intake = Intake::default();
        let ready = intake.ready(&vault).unwrap();
        assert_eq!(ready.first, vec![c, d, odd, other]);
        assert_eq!(ready.briefs, vec![b1.clone(), b2.clone()]);
        assert!(!intake.waiting());
        // A brief rewritten in place as a bundle is read again, not taken from memory.
        let b1 = drop(
            "b1.json",
            r#"{"contract":"quire.contribution/1","id":"b1x"}"#,
            1,
        );
        let ready = intake.ready(&vault).unwrap();
        assert!(ready.first.contains(&b1));
        assert_eq!(ready.briefs, vec![b2]);
    }
}
