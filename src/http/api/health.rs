//! `/healthz` and `/metrics`: how the daemon is, for people and for Prometheus.

// The route modules share the API's imports and helpers.
use super::*;

pub(super) async fn healthz(State(api): State<Api>) -> Response {
    let health = api.daemon.health();
    let status = if health.status == "ok" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(health)).into_response()
}

pub(super) async fn metrics(State(api): State<Api>) -> Response {
    let m = api.daemon.metrics();
    let mut out = String::new();
    out.push_str("# HELP quire_bundles_total Bundles handled, by outcome.\n# TYPE quire_bundles_total counter\n");
    for (status, c) in [
        ("applied", &m.applied),
        ("duplicate", &m.duplicate),
        ("rejected", &m.rejected),
    ] {
        out.push_str(&format!(
            "quire_bundles_total{{status=\"{status}\"}} {}\n",
            c.load(Ordering::Relaxed)
        ));
    }
    out.push_str(&format!(
        "# HELP quire_queue_depth Bundles waiting in contributions/pending/.\n# TYPE quire_queue_depth gauge\nquire_queue_depth {}\n",
        m.queue_depth.load(Ordering::Relaxed)
    ));
    out.push_str(&format!(
        "# HELP quire_sse_clients Event stream clients connected.\n# TYPE quire_sse_clients gauge\nquire_sse_clients {}\n",
        m.sse_clients.load(Ordering::Relaxed)
    ));
    for (name, help, h) in [
        (
            "quire_apply_seconds",
            "Time per bundle, claim to receipt.",
            &m.apply_seconds,
        ),
        (
            "quire_index_seconds",
            "Time per index update.",
            &m.index_seconds,
        ),
        (
            "quire_render_seconds",
            "Time per render of the configured themes.",
            &m.render_seconds,
        ),
    ] {
        let (buckets, count, sum) = h.snapshot();
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} histogram\n"));
        for (bound, c) in BUCKETS.iter().zip(&buckets) {
            out.push_str(&format!("{name}_bucket{{le=\"{bound}\"}} {c}\n"));
        }
        out.push_str(&format!(
            "{name}_bucket{{le=\"+Inf\"}} {count}\n{name}_sum {sum}\n{name}_count {count}\n"
        ));
    }
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        out,
    )
        .into_response()
}
