//! Run records: what the daemon's passes did, as a Markdown note per day in `06_RUNS/`
//! (`<YYYY-MM-DD>-pipeline.md`), one line per pass that handled bundles. Git-ignored: the commits
//! are the record of what changed; these say what the daemon did and when.
//!
//! One note per day rather than one per pass: a new note changes what links can resolve to and
//! what every folder lists, which makes the next render a whole one. A line appended to the
//! day's note leaves its front matter, tasks and links as they were, so only its own page is
//! rendered again.

use std::io::Write as _;
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::contributions::Status;
use crate::markdown::yaml;
use crate::vault::{RUNS_DIR, Vault};
use crate::workflow::Filed;

/// How many bundles a pass's line names before it says "and N more".
const NAMED: usize = 10;

/// Appends one pass to the day's record (creating it); returns its vault path.
pub(crate) fn record(
    vault: &Vault,
    started: &str,
    took: Duration,
    filed: &[Filed],
    problems: &[String],
) -> std::io::Result<String> {
    let count = |s: Status| filed.iter().filter(|f| f.receipt.status == s).count();
    let (applied, duplicate, rejected) = (
        count(Status::Applied),
        count(Status::Duplicate),
        count(Status::Rejected),
    );
    let day = started.get(..10).unwrap_or("unknown").to_owned();
    let dir = vault.root().join(RUNS_DIR);
    std::fs::create_dir_all(&dir)?;
    let name = format!("{day}-pipeline.md");
    let path = dir.join(&name);

    let mut line = format!(
        "- {} — {applied} applied, {duplicate} duplicate, {rejected} rejected in {} ms",
        started.get(11..23).unwrap_or(started),
        took.as_millis()
    );
    let named: Vec<String> = filed
        .iter()
        .take(NAMED)
        .map(|f| {
            let id = f.receipt.id.as_deref().unwrap_or(&f.dropped_as);
            match (&f.receipt.error, &f.receipt.commit) {
                (Some(e), _) => format!("`{id}` refused ({})", e.code),
                (None, Some(c)) if f.receipt.status == Status::Applied => {
                    format!("`{id}` {}", c.get(..10).unwrap_or(c))
                }
                _ => format!("`{id}` duplicate"),
            }
        })
        .collect();
    if !named.is_empty() {
        line.push_str(": ");
        line.push_str(&named.join(", "));
        if filed.len() > NAMED {
            line.push_str(&format!(" and {} more", filed.len() - NAMED));
        }
    }
    for p in problems {
        line.push_str(&format!("; problem: {p}"));
    }
    line.push('\n');

    let mut file = std::fs::File::options()
        .create(true)
        .append(true)
        .open(&path)?;
    if file.metadata()?.len() == 0 {
        let mut front = Map::new();
        front.insert("kind".into(), json!("pipeline"));
        front.insert("status".into(), json!("ok"));
        front.insert("started".into(), json!(started));
        front.insert("date".into(), json!(day));
        front.insert(
            "summary".into(),
            json!("the daemon's passes of the day, one line each"),
        );
        let yaml = yaml::to_string(&Value::Object(front)).map_err(std::io::Error::other)?;
        line = format!(
            "---\n{yaml}---\n\n# Pipeline runs {day}\n\nEach line is one pass of the daemon over dropped bundles (UTC).\n\n{line}"
        );
    }
    // One write per pass: a crash leaves at worst a missing line, never a torn front matter.
    file.write_all(line.as_bytes())?;
    Ok(format!("{RUNS_DIR}/{name}"))
}
