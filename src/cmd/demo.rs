use super::output::outln;
use std::path::Path;
use std::process::ExitCode;

use quire::events::JsonlLog;
use quire::vault::Vault;
use quire::workflow;

use super::apply::{Progress, print_report};

pub(crate) fn run(dir: &Path, json: bool, daemon: bool) -> anyhow::Result<ExitCode> {
    let today = chrono::Local::now().date_naive();
    let logs = dir.join(quire::vault::LOGS_DIR);
    let mut log = JsonlLog::new(logs);
    let mut progress = Progress::default();
    let report = workflow::demo(dir, today, &mut log, &mut progress)?;
    progress.finish();
    let vault = Vault::open(&report.root)?;
    if !json {
        match &report.init {
            Some(_) => outln!("Created the demo vault in {}", report.root.display()),
            None => outln!(
                "Reusing the demo vault in {} (ids applied before come back as duplicates)",
                report.root.display()
            ),
        }
        outln!();
    }
    print_report(&vault, &report.apply, json)?;
    if !json {
        outln!();
        match &report.promotion {
            workflow::sandbox::Outcome::Done(d) => outln!(
                "Mission `{}` worked in its sandbox (branch mission/{}) and was promoted into main: commit {}, record {}",
                d.id,
                d.id,
                super::output::short(&d.commit),
                d.record
            ),
            workflow::sandbox::Outcome::Refused(r) => outln!("Sandbox: {}", r.message),
        }
        let root = report.root.display();
        for m in &report.missions {
            match &m.promoted {
                Some(commit) => outln!(
                    "Mission `{}` ran its {} steps in its sandbox by itself; its decision was approved (`quire decide {} approve`) and promoted: commit {}",
                    m.id,
                    m.steps,
                    m.decision,
                    super::output::short(commit)
                ),
                None if m.state == quire::missions::MissionState::AwaitingDecision => outln!(
                    "Mission `{}` ran its {} steps and waits for you: `quire --vault {root} mission logs {} outline`, then `quire --vault {root} decide {} approve` (or reject)",
                    m.id,
                    m.steps,
                    m.id,
                    m.decision
                ),
                None => outln!(
                    "Mission `{}` is {} (from an earlier run of the demo)",
                    m.id,
                    m.state
                ),
            }
        }
        outln!();
        outln!("Look around:");
        outln!(
            "  git -C {root} log --stat              one commit per applied bundle, with Contribution-Id trailers"
        );
        outln!("  ls {root}/contributions/processed     applied bundles and their receipts");
        outln!(
            "  quire --vault {root} sandbox list     the mission's sandbox; `sandbox diff`, `promote`, `rollback`"
        );
        outln!(
            "  quire --vault {root} mission list     the missions, their steps and decisions; `quire inbox`"
        );
        outln!(
            "  cat {root}/contributions/rejected/*.receipt.json   why the refused ones were refused"
        );
        for site in &report.sites {
            outln!(
                "  {}/index.html   the {} site ({} pages)",
                site.dir.display(),
                site.theme,
                site.pages
            );
        }
        if !daemon {
            outln!(
                "  quire --vault {root} daemon            the pipeline, the API and the sites on http://127.0.0.1:7878/"
            );
        }
    }
    if daemon {
        // The configured address, or any free port when something else holds it.
        let configured: std::net::SocketAddr = vault
            .config()
            .daemon
            .listen
            .parse()
            .unwrap_or_else(|_| std::net::SocketAddr::from(([127, 0, 0, 1], 7878)));
        let addr = match std::net::TcpListener::bind(configured) {
            Ok(l) => l.local_addr().unwrap_or(configured),
            Err(_) => std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        if !json {
            outln!();
            outln!(
                "Starting the daemon: drop bundles into {}/contributions/pending/ or edit a note, and watch the sites follow.",
                report.root.display()
            );
        }
        return super::render::daemon(&vault, Some(addr));
    }
    // The tour shows refusals on purpose; they are not a failure of the demo.
    Ok(ExitCode::SUCCESS)
}
