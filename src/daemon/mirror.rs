//! The daemon keeps `[git] remote` in step with the vault ([`crate::git::remote`]).
//!
//! One thread does it, woken by every event the daemon publishes (a bundle applied, a step's
//! commit, a promotion), a burst of wake-ups being one round. A round that fails (the remote
//! unreachable) is tried again after a pause that doubles up to a minute; meanwhile the vault
//! goes on working locally and `/healthz` says since when the remote lags. Every half minute the
//! remote is looked at anyway, for changes made outside the daemon.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use super::Handle;
use super::metrics::RemoteHealth;
use crate::contributions::now_rfc3339;
use crate::git::Repo;
use crate::git::remote::{self, Remote};
use crate::missions::Cancel;

/// How long a burst of changes is let settle before a round.
const SETTLE: Duration = Duration::from_millis(50);

/// A look at the remote with nothing asked for.
const LOOK_EVERY: Duration = Duration::from_secs(30);

/// The first pause after a failed round, doubled after each further one.
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// The longest pause between failed rounds.
const LONGEST_RETRY: Duration = Duration::from_secs(60);

/// The mirror's thread: rounds until `stop` is set, then one last round.
pub(super) fn mirror(handle: Handle, url: String, wake: mpsc::Receiver<()>, stop: Cancel) {
    let vault = handle.vault().clone();
    let remote = Remote::new(vault.root(), &url);
    let main = vault.config().git.main.clone();
    let mut state = RemoteHealth {
        url: url.clone(),
        ..RemoteHealth::default()
    };
    let mut retry = FIRST_RETRY;
    loop {
        let ok = round(&vault, &remote, &main, &mut state);
        handle.set_remote(state.clone());
        if stop.is_cancelled() {
            break;
        }
        let wait = if ok {
            retry = FIRST_RETRY;
            LOOK_EVERY
        } else {
            let w = retry;
            retry = (retry * 2).min(LONGEST_RETRY);
            w
        };
        match wake.recv_timeout(wait) {
            Ok(()) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        std::thread::sleep(SETTLE);
        while wake.try_recv().is_ok() {}
    }
    tracing::info!("the remote mirror stopped");
}

/// One round; whether it brought the remote in step.
fn round(
    vault: &crate::vault::Vault,
    remote: &Remote,
    main: &str,
    state: &mut RemoteHealth,
) -> bool {
    let done = Repo::open(vault.root())
        .map_err(remote::RemoteError::from)
        .and_then(|repo| remote::sync(&repo, remote, main));
    let now = now_rfc3339();
    match done {
        Ok(s) => {
            if !s.pushed.is_empty() {
                tracing::debug!(refs = s.pushed.len(), "pushed to the remote");
            }
            for (name, why) in &s.refused {
                tracing::warn!(%name, "the remote refused a ref: {why}; trying again");
            }
            if !s.diverged.is_empty() && s.diverged != state.diverged {
                tracing::warn!(refs = ?s.diverged, "the remote has commits this vault never had on these refs; they are left alone until someone reconciles them");
            }
            state.error = None;
            state.diverged = s.diverged.clone();
            state.refused = s
                .refused
                .iter()
                .map(|(n, why)| format!("{n}: {why}"))
                .collect();
            state.in_step = s.in_step();
        }
        Err(e) => {
            if state.error.is_none() {
                tracing::warn!("{e}; the vault goes on locally and the remote catches up later");
            }
            state.error = Some(e.to_string());
            state.in_step = false;
        }
    }
    if state.in_step {
        state.lagging_since = None;
        state.last_in_step = Some(now);
    } else if state.lagging_since.is_none() {
        state.lagging_since = Some(now);
    }
    state.in_step
}
