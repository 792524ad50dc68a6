//! The step runner: one attempt of one step, as a process group quire owns.
//!
//! - The step is `sh -c RUN` in the sandbox's work tree, started as the leader of a new process
//!   group, so that ending it ends everything it started (grandchildren included).
//! - stdout and stderr are the log file itself, opened for appending and handed to the child: the
//!   child writes its lines straight to the file, not through quire's memory, so nothing is lost
//!   when quire dies mid-step.
//! - A small shell wrapper writes the step's exit status to a file beside the log when the step
//!   ends, whether or not quire is still there to see it. A quire that restarts after a crash finds
//!   a step that finished meanwhile by that file, and one still running by its process group.
//! - On timeout or cancel: SIGTERM to the group, then SIGKILL once the grace has passed. After a
//!   step exits, whatever it left running in its group is ended the same way.
//!
//! The environment is quire's, less every `QUIRE_*` variable quire itself was given (the API token
//! among them), plus what the caller sets.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub use crate::process::{end_group, group_alive, process_alive};

/// The wrapper around a step: runs it, then writes its status (atomically, by rename) to
/// `$QUIRE_EXIT_FILE`. The step's own text comes in `$QUIRE_RUN`, so it is never quoted into a
/// script; both variables are taken out of the environment before the step sees it.
///
/// With `$QUIRE_ORPHAN_GRACE` set (a step whose quire does not adopt it after a crash), SIGTERM
/// to the wrapper ends the whole group: SIGTERM, then SIGKILL as soon as the step has gone, or
/// once that many seconds have passed.
/// The kernel sends that SIGTERM when quire dies. The step then runs in the background, so that
/// the wrapper can take the signal while it waits.
const WRAPPER: &str = r#"r=$QUIRE_RUN; f=$QUIRE_EXIT_FILE; g=$QUIRE_ORPHAN_GRACE
unset QUIRE_RUN QUIRE_EXIT_FILE QUIRE_ORPHAN_GRACE
if [ -n "$g" ]; then
  trap 'trap "" TERM; kill -TERM 0; (sleep "$g"; kill -KILL 0) & wait $c; kill -KILL 0' TERM
  sh -c "$r" & c=$!; wait $c; s=$?
else
  sh -c "$r"; s=$?
fi
printf '%s\n' "$s" > "$f.tmp" && mv -f "$f.tmp" "$f"
exit "$s""#;

/// How often a wait looks at its cancel flag (the step's exit itself is seen at once).
const CANCEL_POLL: Duration = Duration::from_millis(25);

/// The step runner failed (as opposed to the step failing, which is an [`Ended`]).
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The log file could not be opened.
    #[error("could not open the step's log {}: {source}", path.display())]
    Log {
        /// The log file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The process could not be started.
    #[error("could not start the step in {}: {source}", dir.display())]
    Spawn {
        /// The work tree it was to run in.
        dir: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// What to run, where, and for how long.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The shell text of the step.
    pub command: String,
    /// The folder it runs in (the sandbox's work tree).
    pub dir: PathBuf,
    /// Variables set for the step, on top of quire's own environment.
    pub env: Vec<(String, String)>,
    /// Where its stdout and stderr go (appended).
    pub log: PathBuf,
    /// Where its exit status is written when it ends.
    pub exit_file: PathBuf,
    /// How long it may run.
    pub timeout: Duration,
    /// Between SIGTERM and SIGKILL.
    pub grace: Duration,
    /// Whether the step ends (with its group, after `grace`) when the process that started it
    /// dies. A daemon's own steps outlive it, to be adopted when it restarts; a runner's are not
    /// adopted (their lease runs out and they run again elsewhere), so nothing may keep them.
    pub ends_with_parent: bool,
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// It exited with this status.
    Exited(i32),
    /// A signal ended it (not one quire sent).
    Signaled(i32),
    /// It ran past its timeout and was ended.
    TimedOut,
    /// It was ended on request (an abort, or quire stopping).
    Cancelled,
}

impl Ended {
    /// Whether the step succeeded.
    pub fn success(self) -> bool {
        self == Ended::Exited(0)
    }

    /// The failure class of SPEC §9.3 (`exit:N`, `signal:NAME`, `timeout`); `None` for success and
    /// for a cancel, which is no failure of the step.
    pub fn class(self) -> Option<String> {
        match self {
            Ended::Exited(0) | Ended::Cancelled => None,
            Ended::Exited(n) => Some(format!("exit:{n}")),
            Ended::Signaled(n) => Some(format!(
                "signal:{}",
                signal_name(n).map_or_else(|| n.to_string(), str::to_owned)
            )),
            Ended::TimedOut => Some("timeout".into()),
        }
    }

    /// How an exit status file reads back (`sh` reports a step a signal ended as 128 + N).
    pub fn from_status_text(text: &str) -> Option<Self> {
        let n: i32 = text.trim().parse().ok()?;
        Some(match n {
            129..=192 if signal_name(n - 128).is_some() => Ended::Signaled(n - 128),
            n => Ended::Exited(n),
        })
    }
}

/// A step that is running.
pub struct Running {
    pid: u32,
    started: Instant,
    launch: Launch,
    exited: mpsc::Receiver<io::Result<ExitStatus>>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running").field("pid", &self.pid).finish()
    }
}

/// Something another thread can set to end a running step.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// Asks the step to end.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether it was asked.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Sleeps for `d`, or less once asked (checked every 10 ms). Whether it was asked.
    pub fn nap(&self, d: Duration) -> bool {
        let until = std::time::Instant::now() + d;
        loop {
            if self.is_cancelled() {
                return true;
            }
            let left = until.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            std::thread::sleep(left.min(Duration::from_millis(10)));
        }
    }
}

/// Starts a step. It is running when this returns; its process id is also its process group id.
pub fn spawn(launch: Launch) -> Result<Running, RunnerError> {
    let log_err = |source| RunnerError::Log {
        path: launch.log.clone(),
        source,
    };
    if let Some(parent) = launch.log.parent() {
        std::fs::create_dir_all(parent).map_err(log_err)?;
    }
    let out = File::options()
        .create(true)
        .append(true)
        .open(&launch.log)
        .map_err(log_err)?;
    let err = out.try_clone().map_err(log_err)?;
    let _ = std::fs::remove_file(&launch.exit_file);
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(WRAPPER)
        .current_dir(&launch.dir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("QUIRE_") {
            command.env_remove(&key);
        }
    }
    command
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .env("QUIRE_RUN", &launch.command)
        .env("QUIRE_EXIT_FILE", &launch.exit_file);
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    if launch.ends_with_parent {
        command.env(
            "QUIRE_ORPHAN_GRACE",
            launch.grace.as_secs_f64().max(0.1).to_string(),
        );
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            let parent = rustix::process::getpid();
            // SAFETY: only async-signal-safe system calls run between fork and exec.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
                    rustix::process::set_parent_process_death_signal(Some(
                        rustix::process::Signal::TERM,
                    ))?;
                    // Gone already, before the signal was asked for: nobody would send it.
                    if rustix::process::getppid() != Some(parent) {
                        return Err(io::Error::other("the process starting the step is gone"));
                    }
                    Ok(())
                });
            }
        }
    }
    let child = command.spawn().map_err(|source| RunnerError::Spawn {
        dir: launch.dir.clone(),
        source,
    })?;
    Ok(watch(child, launch))
}

/// Hands the child to a thread that waits for it, so that a wait sees its exit the moment it
/// happens while still able to give up at a deadline.
fn watch(mut child: Child, launch: Launch) -> Running {
    let pid = child.id();
    let (tx, rx) = mpsc::sync_channel(1);
    let spawned = std::thread::Builder::new()
        .name(format!("quire-step-{pid}"))
        .spawn(move || {
            let _ = tx.send(child.wait());
        });
    let exited = match spawned {
        Ok(_) => rx,
        // No thread to spare: the caller learns of it as a failed wait, and the group is ended.
        Err(e) => {
            let (tx, rx) = mpsc::sync_channel(1);
            let _ = tx.send(Err(e));
            rx
        }
    };
    Running {
        pid,
        started: Instant::now(),
        launch,
        exited,
    }
}

impl Running {
    /// The process id of the step's wrapper, which is also its process group's id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// When it started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Waits for the step to end: by itself, at its timeout, or when `cancel` is set. Whatever it
    /// leaves running in its group is ended before this returns.
    pub fn wait(self, cancel: &Cancel) -> Ended {
        let deadline = self.started + self.launch.timeout;
        let ended = loop {
            let now = Instant::now();
            if cancel.is_cancelled() {
                break None;
            }
            if now >= deadline {
                break Some(Ended::TimedOut);
            }
            match self.exited.recv_timeout((deadline - now).min(CANCEL_POLL)) {
                Ok(Ok(status)) => break Some(from_status(status)),
                // The wait itself failed: the step's fate is unknown, so it is ended.
                Ok(Err(e)) => {
                    tracing::warn!(pid = self.pid, "could not wait for a step: {e}");
                    break Some(Ended::Signaled(9));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break Some(Ended::Signaled(9)),
            }
        };
        let ended = ended.unwrap_or(Ended::Cancelled);
        if matches!(ended, Ended::TimedOut | Ended::Cancelled) {
            end_group(self.pid, self.launch.grace);
            // Reaped by the waiting thread; what it reports no longer matters.
            let _ = self
                .exited
                .recv_timeout(self.launch.grace + Duration::from_secs(1));
        } else if group_alive(self.pid) {
            // The step is done; what it started and left behind is not kept.
            end_group(self.pid, self.launch.grace);
        }
        ended
    }
}

fn from_status(status: ExitStatus) -> Ended {
    #[cfg(unix)]
    if let Some(sig) = std::os::unix::process::ExitStatusExt::signal(&status) {
        return Ended::Signaled(sig);
    }
    match status.code() {
        // The wrapper reports a step a signal ended as sh does, 128 + N.
        Some(n @ 129..=192) if signal_name(n - 128).is_some() => Ended::Signaled(n - 128),
        Some(n) => Ended::Exited(n),
        None => Ended::Signaled(9),
    }
}

/// Waits, for at most `patience`, for a step a previous quire started to end by itself (its group
/// gone), then reads its exit status file. `None`: it left no status (it was killed, or the
/// machine went down under it) — the attempt was lost.
pub fn adopt(pgid: u32, exit_file: &Path, patience: Duration, grace: Duration) -> Option<Ended> {
    let until = Instant::now() + patience;
    let mut pause = Duration::from_millis(5);
    while pgid > 0 && group_alive(pgid) {
        if Instant::now() >= until {
            end_group(pgid, grace);
            return Some(Ended::TimedOut);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(200));
    }
    std::fs::read_to_string(exit_file)
        .ok()
        .and_then(|t| Ended::from_status_text(&t))
}

/// Signal names as `when: "signal:NAME"` and failure classes write them (without `SIG`).
const SIGNALS: &[(i32, &str)] = &[
    (1, "HUP"),
    (2, "INT"),
    (3, "QUIT"),
    (4, "ILL"),
    (5, "TRAP"),
    (6, "ABRT"),
    (7, "BUS"),
    (8, "FPE"),
    (9, "KILL"),
    (10, "USR1"),
    (11, "SEGV"),
    (12, "USR2"),
    (13, "PIPE"),
    (14, "ALRM"),
    (15, "TERM"),
    (24, "XCPU"),
    (25, "XFSZ"),
];

/// The number of the signal named `name` (`TERM`, `KILL`, …).
pub fn signal_number(name: &str) -> Option<i32> {
    SIGNALS.iter().find(|(_, n)| *n == name).map(|(i, _)| *i)
}

/// The name of signal `n`.
pub fn signal_name(n: i32) -> Option<&'static str> {
    SIGNALS.iter().find(|(i, _)| *i == n).map(|(_, name)| *name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch(dir: &Path, command: &str, timeout: Duration) -> Launch {
        Launch {
            command: command.to_owned(),
            dir: dir.to_owned(),
            env: vec![("QUIRE_STEP".into(), "build".into())],
            log: dir.join("logs/build.1.1.log"),
            exit_file: dir.join("logs/build.1.1.exit"),
            timeout,
            grace: Duration::from_millis(300),
            ends_with_parent: false,
        }
    }

    fn alive(pid: i32) -> bool {
        let Some(pid_) = rustix::process::Pid::from_raw(pid) else {
            return false;
        };
        rustix::process::test_kill_process(pid_).is_ok()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.split_whitespace().nth(2) == Some("Z"))
    }

    #[test]
    fn a_step_writes_its_log_itself_and_leaves_its_status() {
        let dir = tempfile::tempdir().unwrap();
        let l = launch(
            dir.path(),
            "echo out; echo err >&2; echo \"$QUIRE_STEP:${QUIRE_RUN:-none}:${QUIRE_EXIT_FILE:-none}\"; pwd; exit 3",
            Duration::from_secs(10),
        );
        let ended = spawn(l.clone()).unwrap().wait(&Cancel::default());
        assert_eq!(ended, Ended::Exited(3));
        assert_eq!(ended.class().as_deref(), Some("exit:3"));
        let log = std::fs::read_to_string(&l.log).unwrap();
        let dir_shown = dir.path().canonicalize().unwrap();
        assert_eq!(
            log,
            format!("out\nerr\nbuild:none:none\n{}\n", dir_shown.display())
        );
        assert_eq!(
            Ended::from_status_text(&std::fs::read_to_string(&l.exit_file).unwrap()),
            Some(Ended::Exited(3))
        );
        // A second attempt appends to its own log, never truncates another's.
        let ok = spawn(Launch {
            command: "echo again".into(),
            ..l.clone()
        })
        .unwrap()
        .wait(&Cancel::default());
        assert!(ok.success() && ok.class().is_none());
        assert!(
            std::fs::read_to_string(&l.log)
                .unwrap()
                .ends_with("again\n")
        );
    }

    #[test]
    fn a_step_that_ends_with_its_parent_goes_with_its_group_when_the_parent_dies() {
        let dir = tempfile::tempdir().unwrap();
        // A grandchild that ignores SIGTERM, in the step's group.
        let l = Launch {
            ends_with_parent: true,
            ..launch(
                dir.path(),
                "sh -c 'trap \"\" TERM; echo $$ > grandchild.pid; while :; do sleep 0.05; done' & wait",
                Duration::from_secs(60),
            )
        };
        // The parent is the thread that started it: it ends without waiting, as a runner killed
        // mid-step would.
        let pid_file = dir.path().join("grandchild.pid");
        let grandchild = || -> i32 {
            std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0)
        };
        let started = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let running = spawn(l).unwrap();
                    let t = Instant::now();
                    while grandchild() == 0 && t.elapsed() < Duration::from_secs(10) {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    let pid = running.pid() as i32;
                    std::mem::forget(running);
                    pid
                })
                .join()
                .unwrap()
        });
        let grandchild = grandchild();
        let gone = Instant::now();
        while (alive(grandchild) || alive(started)) && gone.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(grandchild > 0, "the step never started its grandchild");
        assert!(
            !alive(grandchild),
            "the grandchild outlived the step's parent"
        );
        assert!(!alive(started), "the wrapper outlived the step's parent");
        // A step left to be adopted (the default) is not ended with its parent.
        let kept = launch(dir.path(), "sleep 30", Duration::from_secs(60));
        let pid = std::thread::spawn(move || {
            let running = spawn(kept).unwrap();
            let pid = running.pid();
            std::mem::forget(running);
            pid
        })
        .join()
        .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            alive(pid as i32),
            "a step to be adopted went with its parent"
        );
        end_group(pid, Duration::from_millis(100));
    }

    #[test]
    fn a_timeout_ends_the_whole_group_term_first_then_kill() {
        let dir = tempfile::tempdir().unwrap();
        // A grandchild that ignores SIGTERM, and a step that records its pid then waits.
        let l = launch(
            dir.path(),
            "sh -c 'trap \"\" TERM; echo $$ > grandchild.pid; while :; do sleep 0.05; done' & wait",
            Duration::from_millis(400),
        );
        let t = Instant::now();
        let running = spawn(l.clone()).unwrap();
        let pgid = running.pid();
        let ended = running.wait(&Cancel::default());
        assert_eq!(ended, Ended::TimedOut);
        assert_eq!(ended.class().as_deref(), Some("timeout"));
        // Timeout, then the grace before the SIGKILL: not much more.
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        let grandchild: i32 = std::fs::read_to_string(dir.path().join("grandchild.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let gone = Instant::now();
        while alive(grandchild) && gone.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!alive(grandchild), "the grandchild outlived its step");
        // Killed members leave the group as the kernel finishes them, not all at the same instant.
        while group_alive(pgid) && gone.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!group_alive(pgid));
        // No status: the wrapper itself was ended.
        assert!(!l.exit_file.exists());
    }

    #[test]
    fn a_cancel_ends_the_step_and_what_a_finished_step_left_is_ended() {
        let dir = tempfile::tempdir().unwrap();
        let cancel = Cancel::default();
        let l = launch(dir.path(), "sleep 30", Duration::from_secs(60));
        let running = spawn(l).unwrap();
        let c = cancel.clone();
        let t = Instant::now();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            c.cancel();
        });
        assert_eq!(running.wait(&cancel), Ended::Cancelled);
        assert!(t.elapsed() < Duration::from_secs(5));

        // A step that exits at once, leaving a sleeper behind in its group.
        let l = launch(
            dir.path(),
            "(sleep 30; echo late) & echo $! > left.pid; exit 0",
            Duration::from_secs(60),
        );
        let running = spawn(l.clone()).unwrap();
        let pgid = running.pid();
        assert_eq!(running.wait(&Cancel::default()), Ended::Exited(0));
        assert!(
            !group_alive(pgid),
            "a process the step left behind is still there"
        );
        assert!(!std::fs::read_to_string(&l.log).unwrap().contains("late"));
    }

    #[test]
    fn signals_are_classed_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let l = launch(dir.path(), "kill -SEGV $$", Duration::from_secs(10));
        let ended = spawn(l.clone()).unwrap().wait(&Cancel::default());
        assert_eq!(ended, Ended::Signaled(11));
        assert_eq!(ended.class().as_deref(), Some("signal:SEGV"));
        assert_eq!(
            Ended::from_status_text(&std::fs::read_to_string(&l.exit_file).unwrap()),
            Some(Ended::Signaled(11))
        );
        assert_eq!(signal_number("TERM"), Some(15));
        assert_eq!(signal_name(9), Some("KILL"));
    }

    #[test]
    fn a_step_outliving_its_quire_is_adopted_by_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let l = launch(dir.path(), "sleep 0.3; exit 4", Duration::from_secs(10));
        let running = spawn(l.clone()).unwrap();
        let pgid = running.pid();
        // As if quire died: nobody waits for it here (its thread will reap it, as init would).
        std::mem::forget(running);
        let ended = adopt(pgid, &l.exit_file, Duration::from_secs(10), l.grace);
        assert_eq!(ended, Some(Ended::Exited(4)));
        // A group that is gone and left no status was lost.
        assert_eq!(
            adopt(0, &dir.path().join("none.exit"), Duration::ZERO, l.grace),
            None
        );
    }
}
