//! Run records: one Markdown note in `06_RUNS/` per pipeline pass that handled bundles, with front
//! matter the dashboards read (`kind`, `status`, `started`, `summary`). They are git-ignored: the
//! commits are the record of what changed; these say what the daemon did and when.

use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::contributions::Status;
use crate::markdown::yaml;
use crate::vault::{RUNS_DIR, Vault, fsutil};
use crate::workflow::Filed;

/// Writes the record of one pass; returns its vault path.
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
    let stamp = chrono::Utc::now()
        .format("%Y%m%dT%H%M%S%.3fZ")
        .to_string()
        .replace('.', "");
    let dir = vault.root().join(RUNS_DIR);
    std::fs::create_dir_all(&dir)?;
    let file = fsutil::free_name(&dir, &format!("{stamp}-pipeline"), ".md");
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let status = if !problems.is_empty() {
        "failed"
    } else if rejected > 0 {
        "partial"
    } else {
        "ok"
    };
    let summary = format!("{applied} applied, {duplicate} duplicate, {rejected} rejected");
    let bundles: Vec<Value> = filed
        .iter()
        .map(|f| {
            json!({
                "id": f.receipt.id,
                "status": f.receipt.status,
                "commit": f.receipt.commit,
                "error": f.receipt.error.as_ref().map(|e| e.code.clone()),
            })
        })
        .collect();
    let mut front = Map::new();
    front.insert("kind".into(), json!("pipeline"));
    front.insert("status".into(), json!(status));
    front.insert("started".into(), json!(started));
    front.insert("duration_ms".into(), json!(took.as_millis() as u64));
    front.insert("summary".into(), json!(summary));
    front.insert("bundles".into(), json!(bundles));
    if !problems.is_empty() {
        front.insert("problems".into(), json!(problems));
    }
    let yaml = yaml::to_string(&Value::Object(front)).map_err(std::io::Error::other)?;
    let mut body = format!("---\n{yaml}---\n\n# Pipeline run {stamp}\n\n{summary}.\n\n");
    for f in filed {
        let id = f.receipt.id.as_deref().unwrap_or(&f.dropped_as);
        match (&f.receipt.commit, &f.receipt.error) {
            (_, Some(e)) => {
                body.push_str(&format!("- {id}: refused ({}): {}\n", e.code, e.message))
            }
            (Some(c), None) => body.push_str(&format!(
                "- {id}: {} {}\n",
                serde_json::to_value(f.receipt.status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                c.get(..10).unwrap_or(c)
            )),
            (None, None) => body.push_str(&format!("- {id}\n")),
        }
    }
    for p in problems {
        body.push_str(&format!("\nProblem: {p}\n"));
    }
    fsutil::atomic_write(&file, body.as_bytes(), false)?;
    Ok(format!("{RUNS_DIR}/{name}"))
}
