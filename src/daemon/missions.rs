//! The daemon carries missions by itself (SPEC §9.2–9.5).
//!
//! One supervisor thread owns dispatch: every run that is ready (queued, past a retry's pause, not
//! held by a live lease) goes to a carrier thread of its own, up to `[missions] parallel`, and a
//! sandbox never has two. A carrier runs the run's steps one after another
//! ([`workflow::mission_steps::carry_run`]) until the run waits for a person or a pause, then ends
//! and wakes the supervisor. The supervisor also wakes when a brief is filed, a decision answered,
//! or an operator acts, and runs the sweep (expired decisions, unapplied answers, completion)
//! every [`SWEEP_EVERY`].
//!
//! Step commits go to the sandbox branches in their own work trees, never to main; what lands on
//! main (promotions, mission notes) takes the vault's writer lock like every other writer, so the
//! pipeline worker and the carriers never write main at once.
//!
//! When the daemon stops, steps in flight are ended with their process groups and count as
//! interrupted (`lost`): a `worktree` step runs again when the daemon is back, an `external` one
//! waits for a decision.

use std::collections::HashMap;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::Handle;
use crate::events::{Event, EventSink};
use crate::missions::Cancel;
use crate::workflow::{mission_ops, mission_steps};

/// How often the sweep runs without being asked.
pub(super) const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// How often the supervisor looks for ready runs without being woken (a brief accepted or a
/// decision answered by another process, which cannot wake it).
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// Events from missions, to the log, the journal and subscribers.
struct Sink(Handle);

impl EventSink for Sink {
    fn emit(&mut self, event: Event) {
        self.0.emit(event);
    }
}

/// The supervisor's thread: dispatches until `stop` is set, then waits for its carriers (which
/// end their steps).
pub(super) fn supervise(
    handle: Handle,
    wake: mpsc::Receiver<()>,
    waker: mpsc::Sender<()>,
    stop: Cancel,
) {
    let vault = handle.vault().clone();
    let mut carriers: HashMap<String, JoinHandle<()>> = HashMap::new();
    let mut swept: Option<Instant> = None;
    // Whether carriers ran since the supervisor last went idle.
    let mut worked = false;
    loop {
        if stop.is_cancelled() {
            break;
        }
        carriers.retain(|_, c| !c.is_finished());
        // Idle again after carrying: what the carriers' threads freed (SQLite's page caches and
        // libgit2's objects, in per-thread C heaps that are trimmed only from the top) goes back
        // to the system, as the pipeline worker does after a burst.
        if worked && carriers.is_empty() {
            worked = false;
            match super::IDLE_HOOK.get() {
                Some(hook) => hook(),
                None => crate::trim_c_heap(),
            }
        }
        let mut sink = Sink(handle.clone());
        if swept.is_none_or(|t| t.elapsed() >= SWEEP_EVERY) {
            swept = Some(Instant::now());
            if let Err(e) = mission_ops::sweep(&vault, &mut sink) {
                tracing::warn!("the missions sweep failed: {e}; trying again shortly");
            }
        } else if let Err(e) = mission_ops::settle_answers(&vault, &mut sink) {
            // Answers recorded by another process (a dropped decision file applied by
            // `quire apply`, or a crash) take effect at once, not at the next sweep.
            tracing::warn!("could not apply recorded answers: {e}");
        }
        let mut wait = LOOK_EVERY;
        if vault.config().missions.enabled {
            match mission_steps::ready(&vault) {
                Ok((runs, later)) => {
                    let parallel = vault.config().missions.parallel().max(1);
                    for run in runs {
                        if carriers.len() >= parallel {
                            break;
                        }
                        if carriers.contains_key(&run.sandbox) {
                            continue;
                        }
                        let carrier = {
                            let vault = vault.clone();
                            let handle = handle.clone();
                            let stop = stop.clone();
                            let waker = waker.clone();
                            let run = run.clone();
                            std::thread::Builder::new()
                                .name(format!("quire-mission-{}", run.sandbox))
                                .spawn(move || {
                                    let mut sink = Sink(handle);
                                    if let Err(e) =
                                        mission_steps::carry_run(&vault, &run, &stop, &mut sink)
                                    {
                                        tracing::error!(mission = %run.mission, sandbox = %run.sandbox, "carrying the mission failed: {e}; the supervisor tries again shortly");
                                    }
                                    // This thread's allocator heap is abandoned when it ends, with
                                    // what it freed still held; hand that back first.
                                    if let Some(hook) = super::IDLE_HOOK.get() {
                                        hook();
                                    }
                                    let _ = waker.send(());
                                })
                        };
                        match carrier {
                            Ok(c) => {
                                worked = true;
                                carriers.insert(run.sandbox.clone(), c);
                            }
                            Err(e) => {
                                tracing::warn!("no thread to carry a mission: {e}");
                                break;
                            }
                        }
                    }
                    if let Some(at) = later {
                        let ms = at - chrono::Utc::now().timestamp_millis();
                        wait = wait.min(Duration::from_millis(ms.clamp(10, i64::MAX) as u64));
                    }
                }
                Err(e) => tracing::warn!("could not read the missions to carry: {e}"),
            }
        }
        match wake.recv_timeout(wait) {
            Ok(()) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        // A burst of wake-ups is one look.
        while wake.try_recv().is_ok() {}
    }
    for (_, c) in carriers {
        let _ = c.join();
    }
    tracing::info!("the missions supervisor stopped");
}
