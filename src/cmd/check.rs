use super::output::outln;
use std::process::ExitCode;

use quire::vault::Vault;
use quire::workflow;

use super::output;

pub(crate) fn run(vault: &Vault, json: bool) -> anyhow::Result<ExitCode> {
    let report = workflow::check(vault)?;
    if json {
        output::json(&report)?;
    } else if report.is_clean() {
        outln!(
            "No problems found ({} pending bundle{} checked).",
            report.bundles_checked,
            if report.bundles_checked == 1 { "" } else { "s" }
        );
    } else {
        let rows: Vec<Vec<String>> = report
            .problems
            .iter()
            .map(|p| {
                let at = match p.line {
                    Some(l) => format!("{}:{l}", p.file),
                    None => p.file.clone(),
                };
                vec![at, p.code.clone(), p.message.clone()]
            })
            .collect();
        output::table(&rows);
        outln!(
            "{} problem{} found.",
            report.problems.len(),
            if report.problems.len() == 1 { "" } else { "s" }
        );
    }
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
