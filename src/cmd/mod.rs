//! One function per command. Each finds the vault, calls a `quire::workflow` function, prints the
//! result (text, or one JSON document with `--json`), and returns the exit code.

mod apply;
mod check;
mod demo;
mod init;
mod missions;
mod output;
mod render;
mod retry;
mod runner;
mod sandbox;
mod stats;
mod tasks;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use quire::vault::Vault;

use crate::cli::{Cli, Command};

pub(crate) fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let json = cli.json;
    match cli.command {
        Command::Init { dir } => init::run(&target_dir(dir, cli.vault)?, json),
        Command::Demo { dir, no_daemon } => {
            if !no_daemon {
                quire::daemon::when_idle(crate::release_freed_memory);
            }
            demo::run(&dir, json, !no_daemon)
        }
        Command::Apply { files } => apply::run(&open(cli.vault.as_deref())?, &files, json),
        Command::Retry { id } => retry::run(&open(cli.vault.as_deref())?, &id, json),
        Command::Check => check::run(&open(cli.vault.as_deref())?, json),
        Command::Index { full } => tasks::index(&open(cli.vault.as_deref())?, full, json),
        Command::Tasks {
            status,
            due_before,
            due_after,
            tag,
            mission,
            path,
        } => {
            let filter = quire::index::TaskFilter {
                status,
                due_before,
                due_after,
                tag,
                mission,
                path,
            };
            tasks::tasks(&open(cli.vault.as_deref())?, &filter, json)
        }
        Command::Agenda { days, today } => {
            tasks::agenda(&open(cli.vault.as_deref())?, days, today, json)
        }
        Command::Calendar { out, kind } => {
            tasks::calendar(&open(cli.vault.as_deref())?, out.as_deref(), kind, json)
        }
        Command::Stats { since } => stats::stats(&open(cli.vault.as_deref())?, since, json),
        Command::Missions { today } => tasks::missions(&open(cli.vault.as_deref())?, today, json),
        Command::Render {
            theme,
            all,
            out,
            git_ref,
        } => {
            let themes = match (theme, all) {
                (Some(t), _) => quire::workflow::Themes::One(t),
                (None, true) => quire::workflow::Themes::All,
                (None, false) => quire::workflow::Themes::Default,
            };
            let request = quire::workflow::RenderRequest {
                themes,
                out,
                git_ref,
            };
            render::render(&open(cli.vault.as_deref())?, &request, json)
        }
        Command::Mission { action } => missions::run(&open(cli.vault.as_deref())?, action, json),
        Command::Inbox => missions::inbox(&open(cli.vault.as_deref())?, json),
        Command::Decide {
            decision,
            answer,
            reason,
            commit,
        } => missions::decide(
            &open(cli.vault.as_deref())?,
            &decision,
            &answer,
            reason.as_deref(),
            commit.as_deref(),
            json,
        ),
        Command::Sandbox { action } => sandbox::run(&open(cli.vault.as_deref())?, action, json),
        Command::Hooks { action } => sandbox::install(cli.vault.as_deref(), action, json),
        Command::Hook {
            name,
            out,
            git_dir,
            args: _,
        } => sandbox::hook(cli.vault.as_deref(), &name, git_dir, out),
        Command::Daemon { listen } => {
            quire::daemon::when_idle(crate::release_freed_memory);
            render::daemon(&open(cli.vault.as_deref())?, listen)
        }
        Command::Themes => render::themes(&open(cli.vault.as_deref())?, json),
        Command::Runner {
            daemon,
            token,
            labels,
            slots,
            workdir,
            remote,
            action,
        } => match action {
            Some(crate::cli::RunnerAction::Token { action }) => {
                runner::token(&open(cli.vault.as_deref())?, action, json)
            }
            None => runner::run(daemon, token, labels, slots, workdir, remote),
        },
        Command::Serve { theme, port } => render::serve(&open(cli.vault.as_deref())?, theme, port),
    }
}

/// The vault every command but `init` and `demo` works on (SPEC §2).
fn open(explicit: Option<&Path>) -> anyhow::Result<Vault> {
    let cwd = std::env::current_dir().context("could not read the current folder")?;
    Ok(Vault::discover(explicit, &cwd)?)
}

/// `init`'s folder: the argument, else `--vault`, else the current folder.
fn target_dir(dir: Option<PathBuf>, vault: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    match dir.or(vault) {
        Some(d) => Ok(d),
        None => std::env::current_dir().context("could not read the current folder"),
    }
}
