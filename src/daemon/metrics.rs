//! What the daemon says of itself: `/healthz` and the counters and latencies of `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

/// `/healthz`: whether the pipeline works, and why not.
#[derive(Debug, Clone, Serialize)]
pub struct Health {
    /// `ok` or `degraded`.
    pub status: &'static str,
    /// What is wrong, one line each (empty when ok).
    pub reasons: Vec<String>,
    /// quire's version.
    pub version: &'static str,
    /// When the daemon started (RFC 3339).
    pub started: String,
    /// When the last pipeline pass that did something finished.
    pub last_run: Option<String>,
    /// Bundles waiting in `pending/` at the last look.
    pub queue_depth: u64,
    /// How `[git] remote` stands, when one is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<RemoteHealth>,
}

/// `/healthz`'s `remote`: whether the Git remote has what the vault has.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RemoteHealth {
    /// The remote.
    pub url: String,
    /// Whether, at the last look, the remote had every mirrored ref as the vault has it.
    pub in_step: bool,
    /// Since when it has not been (RFC 3339); `None` while in step.
    pub lagging_since: Option<String>,
    /// When a round last brought it in step.
    pub last_in_step: Option<String>,
    /// Why the last round failed (the remote unreachable, or refusing).
    pub error: Option<String>,
    /// Refs the remote has at commits the vault never had: left alone until a person reconciles
    /// them.
    pub diverged: Vec<String>,
    /// Refs the remote refused in the last round, with its reason.
    pub refused: Vec<String>,
}

/// Counters and latencies for `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Bundles applied.
    pub applied: AtomicU64,
    /// Bundles found to be duplicates.
    pub duplicate: AtomicU64,
    /// Bundles refused.
    pub rejected: AtomicU64,
    /// Bundles in `pending/` at the last look.
    pub queue_depth: AtomicU64,
    /// Per bundle, from claim to receipt.
    pub apply_seconds: Histogram,
    /// Index updates.
    pub index_seconds: Histogram,
    /// Renders (all themes of one pass).
    pub render_seconds: Histogram,
    /// Server-Sent Events clients connected now.
    pub sse_clients: AtomicU64,
}

/// A latency histogram with fixed buckets (seconds), in the Prometheus manner.
#[derive(Debug)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    /// Sum in microseconds.
    sum_us: AtomicU64,
}

/// The upper bounds of the buckets, in seconds.
pub const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if s <= *bound {
                self.counts[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// (cumulative count per bucket, total count, sum in seconds).
    pub fn snapshot(&self) -> (Vec<u64>, u64, f64) {
        (
            self.counts
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect(),
            self.count.load(Ordering::Relaxed),
            self.sum_us.load(Ordering::Relaxed) as f64 / 1e6,
        )
    }
}
