use super::output::outln;
use std::process::ExitCode;

use quire::events::JsonlLog;
use quire::vault::Vault;
use quire::workflow;

use super::output;

pub(crate) fn run(vault: &Vault, id: &str, json: bool) -> anyhow::Result<ExitCode> {
    let mut log = JsonlLog::new(vault.logs_dir());
    let path = workflow::retry(vault, id, &mut log)?;
    let shown = path
        .strip_prefix(vault.root())
        .unwrap_or(&path)
        .display()
        .to_string();
    if json {
        output::json(&serde_json::json!({ "id": id, "pending": shown }))?;
    } else {
        outln!("Moved `{id}` back to {shown}; `quire apply` (or the daemon) will try it again.");
    }
    Ok(ExitCode::SUCCESS)
}
