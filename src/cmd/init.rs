use super::output::outln;
use std::path::Path;
use std::process::ExitCode;

use quire::workflow;

use super::output;

pub(crate) fn run(dir: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let report = workflow::init(dir)?;
    if json {
        output::json(&serde_json::json!({
            "root": report.root,
            "created": report.created,
            "written": report.written,
            "commit": report.commit,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    let root = report.root.display();
    if report.created {
        outln!("Created a quire vault in {root}");
    } else {
        outln!("{root} is already a quire vault; filled in what was missing");
    }
    for f in &report.written {
        outln!("  wrote {f}");
    }
    if let Some(c) = &report.commit {
        outln!("  first commit {}", output::short(c));
    }
    outln!("The API token is in {root}/.env (never committed).");
    outln!("Drop bundles into {root}/contributions/pending/ and run `quire apply`.");
    Ok(ExitCode::SUCCESS)
}
