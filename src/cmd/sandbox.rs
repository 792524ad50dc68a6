//! `quire sandbox …`, `quire hooks install` and `quire hook …`.

use super::output::{out, outln};

use std::path::PathBuf;
use std::process::ExitCode;

use quire::events::JsonlLog;
use quire::vault::Vault;
use quire::workflow::hooks;
use quire::workflow::sandbox::{self, Outcome, Refusal};

use super::output;
use crate::cli::{HooksAction, SandboxAction};

pub(crate) fn run(vault: &Vault, action: SandboxAction, json: bool) -> anyhow::Result<ExitCode> {
    let mut log = JsonlLog::new(vault.logs_dir());
    match action {
        SandboxAction::Create {
            id,
            from,
            no_worktree,
        } => {
            let info = sandbox::create(vault, &id, from.as_deref(), !no_worktree, &mut log)?;
            if json {
                output::json(&info)?;
            } else {
                outln!(
                    "Sandbox `{}`: branch {} at {}{}",
                    info.id,
                    info.branch,
                    output::short(&info.tip),
                    info.worktree
                        .as_deref()
                        .map(|w| format!(", worktree {w}/"))
                        .unwrap_or_default()
                );
                outln!(
                    "Bundles with \"target\": \"sandbox:{}\" commit to it; `quire sandbox promote {}` merges it into main.",
                    info.id,
                    info.id
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        SandboxAction::List => {
            let list = sandbox::list(vault)?;
            if json {
                output::json(&list)?;
            } else if list.is_empty() {
                outln!("No sandboxes. `quire sandbox create ID` makes one.");
            } else {
                let mut rows = vec![vec![
                    "ID".into(),
                    "STATE".into(),
                    "TIP".into(),
                    "AHEAD".into(),
                    "BEHIND".into(),
                    "CREATED".into(),
                    "WORKTREE".into(),
                ]];
                for s in &list {
                    rows.push(vec![
                        s.id.clone(),
                        serde_json::to_value(s.state)?
                            .as_str()
                            .unwrap_or("")
                            .to_owned(),
                        output::short(&s.tip).to_owned(),
                        s.ahead.to_string(),
                        s.behind.to_string(),
                        s.created
                            .as_deref()
                            .and_then(|c| c.get(..16))
                            .unwrap_or("")
                            .replace('T', " "),
                        s.worktree
                            .clone()
                            .or_else(|| s.archived.clone())
                            .unwrap_or_else(|| "-".into()),
                    ]);
                }
                output::table(&rows);
            }
            Ok(ExitCode::SUCCESS)
        }
        SandboxAction::Diff { id } => {
            let d = sandbox::diff(vault, &id)?;
            if json {
                output::json(&d)?;
            } else {
                outln!(
                    "Sandbox `{}` against its merge base {} ({} file{}):",
                    d.id,
                    output::short(&d.base),
                    d.files.len(),
                    if d.files.len() == 1 { "" } else { "s" }
                );
                for f in &d.files {
                    match &f.from {
                        Some(from) => outln!("  {:<9} {from} -> {}", f.status, f.path),
                        None => outln!("  {:<9} {}", f.status, f.path),
                    }
                }
                if !d.patch.is_empty() {
                    outln!();
                    out!("{}", d.patch);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        SandboxAction::Promote { id } => outcome(sandbox::promote(vault, &id, &mut log)?, json),
        SandboxAction::Rollback { id } => outcome(sandbox::rollback(vault, &id, &mut log)?, json),
        SandboxAction::Discard { id } => match sandbox::discard(vault, &id, &mut log)? {
            Ok(d) => {
                if json {
                    output::json(&serde_json::json!({ "status": "done", "discarded": d }))?;
                } else {
                    outln!(
                        "Discarded sandbox `{}`{}; its tip {} is kept as {} (`quire sandbox create {} --from {}` brings it back).",
                        d.id,
                        if d.worktree_removed {
                            " and its worktree"
                        } else {
                            ""
                        },
                        output::short(&d.tip),
                        d.archive,
                        d.id,
                        d.archive
                    );
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(r) => refusal(&r, json),
        },
    }
}

fn outcome(outcome: Outcome, json: bool) -> anyhow::Result<ExitCode> {
    match outcome {
        Outcome::Done(d) => {
            if json {
                output::json(&Outcome::Done(d))?;
            } else {
                let what = if d.action == "promotion" {
                    "Promoted"
                } else {
                    "Rolled back"
                };
                outln!(
                    "{what} `{}`: commit {} on main ({} file{}), record {}",
                    d.id,
                    output::short(&d.commit),
                    d.files.len(),
                    if d.files.len() == 1 { "" } else { "s" },
                    d.record
                );
                if let Some(check) = &d.check {
                    outln!(
                        "Check `{}` passed in {} ms.",
                        check.command,
                        check.duration_ms
                    );
                }
                if !d.kept.is_empty() {
                    outln!(
                        "Left as you had them in the work tree (edited meanwhile): {}",
                        d.kept.join(", ")
                    );
                }
                if d.action == "promotion" {
                    outln!("To undo it: quire sandbox rollback {}", d.id);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Outcome::Refused(r) => refusal(&r, json),
    }
}

fn refusal(r: &Refusal, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        output::json(&serde_json::json!({ "status": "refused", "refusal": r }))?;
    } else {
        eprintln!("quire: refused ({}): {}", r.code, r.message);
        for c in &r.conflicts {
            let v = |o: &Option<quire::git::Oid>| {
                o.map_or("absent".to_owned(), |o| o.to_string()[..10].to_owned())
            };
            eprintln!(
                "  conflict {}: base {}, main {}, other {}",
                c.path,
                v(&c.base),
                v(&c.ours),
                v(&c.theirs)
            );
        }
        if let Some(record) = &r.record {
            eprintln!("  the three versions of each file are listed in {record}");
        }
    }
    Ok(ExitCode::from(1))
}

pub(crate) fn install(
    vault: Option<&std::path::Path>,
    action: HooksAction,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let quire = std::env::current_exe()?;
    let HooksAction::Install { git_dir, out } = action;
    let installed = match (git_dir, out) {
        (Some(git_dir), Some(out)) => hooks::install_bare(&git_dir, &out, &quire)?,
        _ => hooks::install_vault(&super::open(vault)?, &quire)?,
    };
    if json {
        output::json(&installed)?;
    } else {
        for (from, to) in &installed.moved {
            outln!(
                "Kept your hook {} (now {}; it still runs)",
                from.display(),
                to.display()
            );
        }
        for h in &installed.written {
            outln!("Installed {}", installed.dir.join(h).display());
        }
        for h in &installed.unchanged {
            outln!("Already installed: {}", installed.dir.join(h).display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `quire hook NAME`: always exits 0, so a hook never fails the git command that ran it.
pub(crate) fn hook(
    vault: Option<&std::path::Path>,
    name: &str,
    git_dir: Option<PathBuf>,
    out: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let run = match name {
        "post-receive" => {
            let git_dir = git_dir
                .or_else(|| std::env::var_os("GIT_DIR").map(PathBuf::from))
                .unwrap_or_else(|| PathBuf::from("."));
            let Some(out) = out else {
                eprintln!(
                    "quire hook post-receive: --out DIR is required; reinstall with `quire hooks install --git-dir BARE --out DIR`"
                );
                return Ok(ExitCode::SUCCESS);
            };
            hooks::post_receive(&git_dir, &out, &mut std::io::stdin().lock())
        }
        _ => match super::open(vault) {
            Ok(v) => hooks::post_commit(&v),
            Err(e) => {
                eprintln!("quire hook {name}: {e:#}");
                return Ok(ExitCode::SUCCESS);
            }
        },
    };
    for line in &run.did {
        eprintln!("quire: {line}");
    }
    for line in &run.problems {
        eprintln!("quire: {name} hook: {line} (the git command itself succeeded)");
    }
    Ok(ExitCode::SUCCESS)
}
