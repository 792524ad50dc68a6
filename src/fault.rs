//! Named crash and failure points, so tests can kill quire at an exact instant, or make one step
//! fail as a full disk or a refusing file system would, and prove nothing is lost.
//!
//! With `QUIRE_CRASH_AT=NAME` (or `NAME:N`, the N-th time) in the environment, the process aborts —
//! no destructors, no flushing, as with `kill -9` — when it reaches [`point`]`("NAME")`.
//!
//! With `QUIRE_FAIL_AT=NAME:N`, [`fail`]`("NAME")` returns an I/O error the N-th time it is
//! reached; with `NAME:*`, every time, and then, if `QUIRE_FAIL_WHILE=FILE` is set, only while that
//! file exists (a test "frees the disk" by removing it). The error is the OS error number
//! `QUIRE_FAIL_ERRNO` (default 5, `EIO`; 28 is `ENOSPC`). Several points may be armed at once,
//! separated by commas.
//!
//! Without the variables a point costs one atomic load. The points are listed in
//! `docs/runbook.md`.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The environment variable naming the crash point.
pub const CRASH_ENV: &str = "QUIRE_CRASH_AT";

struct Armed {
    name: String,
    nth: usize,
    seen: AtomicUsize,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let spec = std::env::var(CRASH_ENV).ok()?;
            let (name, nth) = match spec.rsplit_once(':') {
                Some((n, k)) => (n.to_owned(), k.parse().ok()?),
                None => (spec, 1),
            };
            Some(Armed {
                name,
                nth,
                seen: AtomicUsize::new(0),
            })
        })
        .as_ref()
}

/// Aborts the process here if the environment asks for a crash at `name`.
pub fn point(name: &str) {
    if let Some(a) = armed()
        && a.name == name
        && a.seen.fetch_add(1, Ordering::SeqCst) + 1 == a.nth
    {
        eprintln!("quire: crashing at `{name}` ({CRASH_ENV})");
        std::process::abort();
    }
}

/// The environment variable naming the failure points.
pub const FAIL_ENV: &str = "QUIRE_FAIL_AT";
/// The environment variable naming a file whose presence keeps `NAME:*` failures on.
pub const FAIL_WHILE_ENV: &str = "QUIRE_FAIL_WHILE";
/// The environment variable holding the OS error number a failure point returns.
pub const FAIL_ERRNO_ENV: &str = "QUIRE_FAIL_ERRNO";

struct Failing {
    points: Vec<(String, Option<usize>, AtomicUsize)>,
    while_file: Option<PathBuf>,
    errno: i32,
}

fn failing() -> Option<&'static Failing> {
    static FAILING: OnceLock<Option<Failing>> = OnceLock::new();
    FAILING
        .get_or_init(|| {
            let spec = std::env::var(FAIL_ENV).ok()?;
            let points = spec
                .split(',')
                .filter_map(|one| {
                    let (name, nth) = one.trim().rsplit_once(':').unwrap_or((one.trim(), "1"));
                    let nth = match nth {
                        "*" => None,
                        n => Some(n.parse().ok()?),
                    };
                    Some((name.to_owned(), nth, AtomicUsize::new(0)))
                })
                .collect();
            Some(Failing {
                points,
                while_file: std::env::var_os(FAIL_WHILE_ENV).map(PathBuf::from),
                errno: std::env::var(FAIL_ERRNO_ENV)
                    .ok()
                    .and_then(|e| e.parse().ok())
                    .unwrap_or(5),
            })
        })
        .as_ref()
}

/// Returns an injected I/O error here if the environment asks for a failure at `name`.
pub fn fail(name: &str) -> std::io::Result<()> {
    let Some(f) = failing() else {
        return Ok(());
    };
    for (point, nth, seen) in &f.points {
        if point != name {
            continue;
        }
        let hit = match nth {
            Some(n) => seen.fetch_add(1, Ordering::SeqCst) + 1 == *n,
            None => f.while_file.as_ref().is_none_or(|p| p.exists()),
        };
        if hit {
            tracing::debug!("failing at `{name}` ({FAIL_ENV})");
            return Err(std::io::Error::from_raw_os_error(f.errno));
        }
    }
    Ok(())
}
