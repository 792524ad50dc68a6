//! `quire runner` and `quire runner token new|revoke`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use quire::missions::Cancel;
use quire::runners::registry::Registry;
use quire::vault::Vault;

use crate::cli::TokenAction;

/// Runs the runner until SIGTERM or Ctrl-C; a step in flight then is ended and reported.
pub(crate) fn run(
    daemon: Option<String>,
    token: Option<String>,
    labels: Vec<String>,
    slots: u32,
    workdir: PathBuf,
    remote: Option<String>,
) -> anyhow::Result<ExitCode> {
    let daemon = daemon.context("give the daemon's address: --daemon http://HOST:PORT")?;
    if !daemon.starts_with("http://") {
        anyhow::bail!(
            "--daemon {daemon}: give an http:// address (reach a remote daemon over an SSH tunnel or a private network)"
        );
    }
    let token = token.context(
        "give the runner token: --token, or QUIRE_RUNNER_TOKEN (`quire runner token new NAME` on the daemon's machine prints one)",
    )?;
    if let Some(bad) = labels.iter().find(|l| !quire::missions::valid_label(l)) {
        anyhow::bail!("--labels: {bad:?} is no label; use letters, digits, `-`, `_` or `.`");
    }
    let stop = Cancel::default();
    {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("quire-signals".into())
            .spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                rt.block_on(quire::http::signals());
                stop.cancel();
            })
            .context("could not watch for signals")?;
    }
    let options = quire::runners::Options {
        daemon,
        token,
        labels,
        slots: slots.max(1),
        workdir: std::path::absolute(&workdir).unwrap_or(workdir),
        remote,
    };
    quire::runners::run(&options, &stop)?;
    Ok(ExitCode::SUCCESS)
}

/// `quire runner token new NAME` prints the token alone on stdout (or `{"name", "token"}` with
/// `--json`); `revoke` ends one.
pub(crate) fn token(vault: &Vault, action: TokenAction, json: bool) -> anyhow::Result<ExitCode> {
    let registry = Registry::open(&vault.state_dir())?;
    match action {
        TokenAction::New { name } => {
            let token = registry.new_token(&name)?;
            if json {
                println!("{}", serde_json::json!({ "name": name, "token": token }));
            } else {
                println!("{token}");
            }
        }
        TokenAction::Revoke { name } => {
            registry.revoke(&name)?;
            if json {
                println!("{}", serde_json::json!({ "name": name, "revoked": true }));
            } else {
                eprintln!("runner `{name}`: token revoked");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
