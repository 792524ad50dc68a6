//! Processes quire starts and owns: each is the leader of its own process group, so that ending
//! it ends everything it started, and is ended with its group when its time is up.
//!
//! Mission steps ([`crate::missions::runner`]) and the `git` transports ([`crate::git::remote`])
//! are both started this way; what they share lives here.

use std::io::{self, Read as _};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Whether any process of group `pgid` is still alive. A zombie is not: once killed, a process
/// whose parent died waits for init to reap it, and an init that never reaps (a container's) would
/// otherwise keep every ended group alive forever.
pub fn group_alive(pgid: u32) -> bool {
    #[cfg(target_os = "linux")]
    {
        if pgid == 0 {
            return false;
        }
        match living_in_group(pgid) {
            Some(alive) => alive,
            None => signal_reaches_group(pgid),
        }
    }
    #[cfg(all(unix, not(target_os = "linux")))]
    {
        signal_reaches_group(pgid)
    }
    #[cfg(not(unix))]
    {
        let _ = pgid;
        false
    }
}

/// Whether process `pid` is alive (a zombie is not).
pub fn process_alive(pid: u32) -> bool {
    #[cfg(unix)]
    {
        let Some(p) = i32::try_from(pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        else {
            return false;
        };
        if matches!(
            rustix::process::test_kill_process(p),
            Err(rustix::io::Errno::SRCH)
        ) {
            return false;
        }
        #[cfg(target_os = "linux")]
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            && let Some((_, rest)) = stat.rsplit_once(')')
        {
            return !matches!(rest.split_whitespace().next(), Some("Z" | "X"));
        }
        true
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}

/// Whether signal 0 reaches a process of group `pgid` (zombies included).
#[cfg(unix)]
fn signal_reaches_group(pgid: u32) -> bool {
    let Some(pid) = i32::try_from(pgid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    // EPERM means it exists but is someone else's: alive all the same.
    !matches!(
        rustix::process::test_kill_process_group(pid),
        Err(rustix::io::Errno::SRCH)
    )
}

/// Whether `/proc` lists a process of group `pgid` that is not a zombie; `None` when `/proc`
/// cannot be read. Signal 0 answers first, so the common case (the group is gone) reads no files.
#[cfg(target_os = "linux")]
fn living_in_group(pgid: u32) -> Option<bool> {
    if !signal_reaches_group(pgid) {
        return Some(false);
    }
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid pgrp …`; the command name may hold spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let group = fields.nth(1).and_then(|g| g.parse::<u32>().ok());
        if group == Some(pgid) && !matches!(state, Some("Z" | "X")) {
            return Some(true);
        }
    }
    Some(false)
}

/// Ends process group `pgid`: SIGTERM, then SIGKILL if anything of it is left after `grace`.
/// Returns once the group is gone (or after the SIGKILL, which cannot be refused).
pub fn end_group(pgid: u32, grace: Duration) {
    #[cfg(unix)]
    {
        use rustix::process::{Pid, Signal, kill_process_group};
        let Some(pid) = i32::try_from(pgid).ok().and_then(Pid::from_raw) else {
            return;
        };
        if kill_process_group(pid, Signal::TERM).is_err() {
            return;
        }
        let until = Instant::now() + grace;
        let mut pause = Duration::from_millis(1);
        while Instant::now() < until {
            if !group_alive(pgid) {
                return;
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
        let _ = kill_process_group(pid, Signal::KILL);
    }
    #[cfg(not(unix))]
    let _ = (pgid, grace);
}

/// What a short-lived command printed, and how it ended.
#[derive(Debug)]
pub struct Captured {
    /// How it ended (`None`: it ran past its timeout and was ended with its group).
    pub status: Option<ExitStatus>,
    /// Its standard output.
    pub stdout: Vec<u8>,
    /// Its standard error.
    pub stderr: Vec<u8>,
}

impl Captured {
    /// Whether it exited with status 0.
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }
}

/// Runs `command` as the leader of a new process group, with no standard input, reading its output
/// as it comes (a full pipe would stall it). Past `timeout` the group is ended (SIGTERM, then
/// SIGKILL after `grace`) and `status` is `None`.
pub fn run(mut command: Command, timeout: Duration, grace: Duration) -> io::Result<Captured> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command.spawn()?;
    let pid = child.id();
    let drain = |pipe: Option<Box<dyn io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn io::Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn io::Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            end_group(pid, grace);
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    };
    // The leader is gone; whatever it left in its group is not kept (and would hold the pipes).
    if group_alive(pid) {
        end_group(pid, grace);
    }
    Ok(Captured {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_is_captured_and_one_past_its_time_is_ended_with_its_group() {
        let mut c = Command::new("sh");
        c.args(["-c", "echo out; echo err >&2; exit 3"]);
        let got = run(c, Duration::from_secs(10), Duration::from_secs(1)).unwrap();
        assert_eq!(got.status.and_then(|s| s.code()), Some(3));
        assert_eq!(got.stdout, b"out\n");
        assert_eq!(got.stderr, b"err\n");
        assert!(!got.success());

        let mut c = Command::new("sh");
        // A grandchild that would keep the pipe open: ended with the group.
        c.args(["-c", "sleep 30 & echo started; sleep 30"]);
        let got = run(c, Duration::from_millis(300), Duration::from_millis(200)).unwrap();
        assert!(got.status.is_none());
        assert_eq!(got.stdout, b"started\n");
    }
}
