use super::output::outln;
use std::path::PathBuf;
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressStyle};
use quire::contributions::Status;
use quire::events::JsonlLog;
use quire::vault::Vault;
use quire::workflow::{self, ApplyObserver, ApplyReport, Filed};

use super::output;

pub(crate) fn run(vault: &Vault, files: &[PathBuf], json: bool) -> anyhow::Result<ExitCode> {
    let mut log = JsonlLog::new(vault.logs_dir());
    let mut progress = Progress::default();
    let report = workflow::apply(vault, files, &mut log, &mut progress)?;
    progress.finish();
    if report.count(Status::Applied) > 0 {
        workflow::pipeline::index_after_commits(
            vault,
            workflow::pipeline::Look::everything(),
            &mut log,
        );
    }
    print_report(vault, &report, json)?;
    Ok(if report.all_accepted() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Prints an apply report (shared with `demo`).
pub(crate) fn print_report(vault: &Vault, report: &ApplyReport, json: bool) -> anyhow::Result<()> {
    if json {
        let bundles: Vec<_> = report
            .filed
            .iter()
            .map(
                |f| serde_json::json!({ "file": relative(vault, &f.bundle), "receipt": f.receipt }),
            )
            .collect();
        return output::json(&serde_json::json!({
            "bundles": bundles,
            "applied": report.count(Status::Applied),
            "duplicate": report.count(Status::Duplicate),
            "rejected": report.count(Status::Rejected),
        }));
    }
    if report.filed.is_empty() {
        outln!("Nothing to apply: contributions/pending/ is empty.");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = report.filed.iter().map(|f| row(vault, f)).collect();
    output::table(&rows);
    outln!(
        "{} bundle{}: {} applied, {} duplicate, {} rejected",
        report.filed.len(),
        if report.filed.len() == 1 { "" } else { "s" },
        report.count(Status::Applied),
        report.count(Status::Duplicate),
        report.count(Status::Rejected)
    );
    if report.count(Status::Rejected) > 0 {
        outln!(
            "Receipts in contributions/rejected/ say why; fix a bundle and `quire retry ID` to try it again."
        );
    }
    for f in &report.filed {
        for w in &f.receipt.warnings {
            eprintln!(
                "quire: warning: {}: {w}",
                f.receipt.id.as_deref().unwrap_or("bundle")
            );
        }
    }
    Ok(())
}

fn row(vault: &Vault, f: &Filed) -> Vec<String> {
    let r = &f.receipt;
    let id = r.id.clone().unwrap_or_else(|| relative(vault, &f.bundle));
    match r.status {
        Status::Applied => vec![
            "applied".into(),
            id,
            output::short(r.commit.as_deref().unwrap_or("")).into(),
            format!(
                "{} file{}",
                r.files.as_ref().map_or(0, Vec::len),
                if r.files.as_ref().map_or(0, Vec::len) == 1 {
                    ""
                } else {
                    "s"
                }
            ),
        ],
        Status::Duplicate => vec![
            "duplicate".into(),
            id,
            output::short(r.commit.as_deref().unwrap_or("")).into(),
            "already applied; nothing committed".into(),
        ],
        Status::Rejected => {
            let e = r.error.as_ref();
            let code = e.map_or("", |e| e.code.as_str());
            let at = e
                .and_then(|e| e.change)
                .map(|c| format!("change {c}: "))
                .unwrap_or_default();
            vec![
                "rejected".into(),
                id,
                code.into(),
                format!("{at}{}", e.map_or("", |e| e.message.as_str())),
            ]
        }
    }
}

fn relative(vault: &Vault, path: &std::path::Path) -> String {
    path.strip_prefix(vault.root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// A progress bar on stderr for long runs (indicatif hides it when stderr is not a terminal).
#[derive(Default)]
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl ApplyObserver for Progress {
    fn waiting_for_lock(&mut self) {
        eprintln!(
            "quire: another quire is applying bundles in this vault; waiting for it to finish…"
        );
    }
    fn waiting_for_git(&mut self, lock: &std::path::Path, since: &str) {
        eprintln!(
            "quire: {} has been held by another program since {since} (a `git commit` waiting on its editor?); waiting for it before changing the work tree…",
            lock.display()
        );
    }
    fn start(&mut self, total: usize) {
        // Small runs finish well under a second; a bar would only flicker.
        if total >= 50 {
            let bar = ProgressBar::new(total as u64);
            if let Ok(style) =
                ProgressStyle::with_template("{bar:40} {pos}/{len} bundles  {per_sec}  eta {eta}")
            {
                bar.set_style(style);
            }
            self.bar = Some(bar);
        }
    }
    fn filed(&mut self, _filed: &Filed) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
    }
}
