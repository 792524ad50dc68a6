//! Which dropped bundles are ready to claim.
//!
//! The directory listing is the truth; watcher events only say "look again". A bundle renamed into
//! `pending/` is complete at once, but one written in place may be read half-written. A bundle is a
//! single JSON document, and no proper prefix of a JSON document is itself a complete document,
//! so a file that parses is complete: it is claimed at once. One that does not parse is claimed
//! (and refused as `invalid_json`) only when it has not changed for [`SETTLE`], so a slow writer
//! is waited for and a truly broken file is still reported.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use crate::contributions::queue;
use crate::vault::{Queue, Vault};

/// How long an unparsable bundle must stay unchanged before it is taken as it is.
pub const SETTLE: Duration = Duration::from_secs(2);

/// Remembers unparsable files between looks.
#[derive(Debug, Default)]
pub struct Intake {
    /// Per file: its size and mtime at the last look, and since when they have been so.
    unsettled: HashMap<PathBuf, (u64, SystemTime, Instant)>,
}

impl Intake {
    /// The bundles in `pending/` ready to claim, in arrival order (mtime, then name).
    pub fn ready(&mut self, vault: &Vault) -> std::io::Result<Vec<PathBuf>> {
        let limit = vault.config().contributions.max_bundle_bytes;
        let mut ready = Vec::new();
        let mut still = HashMap::new();
        for path in queue::list(vault, Queue::Pending)? {
            let Ok(meta) = path.symlink_metadata() else {
                continue; // taken meanwhile
            };
            let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            // Links and oversized files are refused without reading them, by the apply itself.
            if meta.file_type().is_symlink() || meta.len() > limit || parses(&path) {
                ready.push(path);
                continue;
            }
            let now = Instant::now();
            let since = match self.unsettled.get(&path) {
                Some((len, m, since)) if *len == meta.len() && *m == mtime => *since,
                _ => now,
            };
            if now.duration_since(since) >= SETTLE {
                ready.push(path);
            } else {
                still.insert(path, (meta.len(), mtime, since));
            }
        }
        self.unsettled = still;
        Ok(ready)
    }

    /// Whether some file is being waited for (so the caller looks again soon).
    pub fn waiting(&self) -> bool {
        !self.unsettled.is_empty()
    }
}

fn parses(path: &std::path::Path) -> bool {
    std::fs::read(path)
        .ok()
        .is_some_and(|bytes| serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_ok())
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
        assert_eq!(ready, vec![pending.join("a.json")]);
        assert!(intake.waiting());
        // Finished: ready at once.
        std::fs::write(pending.join("b.json"), br#"{"id":"b"}"#).unwrap();
        let ready = intake.ready(&vault).unwrap();
        assert!(ready.contains(&pending.join("b.json")));
        assert!(!intake.waiting());
    }
}
