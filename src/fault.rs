//! Named crash points, so tests can kill quire at an exact instant and prove nothing is lost.
//!
//! With `QUIRE_CRASH_AT=NAME` (or `NAME:N`, the N-th time) in the environment, the process aborts —
//! no destructors, no flushing, as with `kill -9` — when it reaches [`point`]`("NAME")`. Without the
//! variable a point costs one atomic load. The points are listed in `docs/runbook.md`.

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
