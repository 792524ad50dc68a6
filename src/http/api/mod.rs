//! The daemon's HTTP API (SPEC §7) on loopback: contributions, tasks, agenda, calendar, missions,
//! themes, the sites, health and metrics.
//!
//! Every mutating request needs `Authorization: Bearer <QUIRE_TOKEN>` (from the vault's `.env`),
//! compared in constant time. Errors are `{"error": {"code", "message"}}`; what went wrong inside
//! is logged, never sent.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio::sync::broadcast;

use crate::contributions::{Receipt, Status, queue, sha256_hex};
use crate::daemon::{BUCKETS, Handle};
use crate::index::journal::Claim;
use crate::index::{CalendarKind, Index, StatusFilter, TaskFilter};
use crate::vault::{Queue, fsutil};

mod analytics;
mod contributions;
mod events;
mod health;
mod missions;
mod renderer;
mod runners;
mod sites;
mod tasks;

#[derive(Clone)]
pub(crate) struct Api {
    pub(crate) daemon: Handle,
    token: Option<Arc<str>>,
    max_body: usize,
}

/// The router for the daemon's API over `daemon`, listening on `bound`: it answers only requests
/// for that address (or a name in `[daemon] hosts`) from no other web page (SPEC §11).
pub fn router(daemon: Handle, bound: SocketAddr) -> Router {
    let guard = super::guard::Guard::new(bound, &daemon.vault().config().daemon.hosts);
    let token = daemon.vault().token().map(Arc::from);
    let max_body = daemon.vault().config().contributions.max_bundle_bytes as usize;
    let api = Api {
        daemon,
        token,
        max_body,
    };
    Router::new()
        .route("/", get(super::control::overview))
        .route("/control/missions/{id}", get(super::control::mission))
        .route(
            "/control/fragment/mission/{id}",
            get(super::control::mission_part),
        )
        .route("/control/fragment/{part}", get(super::control::part))
        .route("/control/{file}", get(super::control::asset))
        .route("/healthz", get(health::healthz))
        .route("/metrics", get(health::metrics))
        .route("/api/contributions", post(contributions::submit))
        .route("/api/contributions/{id}", get(contributions::receipt))
        .route("/api/tasks", get(tasks::tasks))
        .route("/api/agenda", get(tasks::agenda))
        .route("/calendar.ics", get(tasks::calendar))
        .route("/api/events", get(events::events).post(events::post_event))
        .route("/api/renderer/render", post(renderer::render))
        .route("/api/renderer/jobs/{id}", get(renderer::job))
        .route("/api/renderer/themes", get(renderer::themes))
        .route("/api/renderer/missions", get(tasks::missions))
        .route("/api/missions", get(missions::list).post(missions::submit))
        .route("/api/missions/{id}", get(missions::status))
        .route("/api/missions/{id}/logs/{step}", get(missions::logs))
        .route("/api/missions/{id}/retry", post(missions::retry))
        .route("/api/missions/{id}/abort", post(missions::abort))
        .route("/api/missions/{id}/inject", post(missions::inject))
        .route("/api/agents", get(missions::agents))
        .route("/api/runners", get(runners::list))
        .route("/api/runners/register", post(runners::register))
        .route("/api/runners/lease", post(runners::lease))
        .route("/api/runners/heartbeat", post(runners::heartbeat))
        .route("/api/runners/log", post(runners::log))
        .route("/api/runners/complete", post(runners::complete))
        .route("/api/analytics/logs", get(analytics::logs))
        .route("/api/analytics/stats", get(analytics::stats))
        .route("/api/analytics/trends", get(analytics::trends))
        .route("/api/decisions", get(missions::decisions))
        .route("/api/decisions/{id}/resolve", post(missions::resolve))
        .route("/site/{theme}", get(sites::site_root))
        .route("/site/{theme}/", get(sites::site_index))
        .route("/site/{theme}/{*path}", get(sites::site_file))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body.saturating_add(1)))
        .layer(middleware::from_fn_with_state(api.clone(), authorize))
        .layer(middleware::from_fn_with_state(guard, super::guard::guard))
        .with_state(api)
}

/// A JSON error response.
pub(crate) fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(json!({ "error": { "code": code, "message": message.into() } })),
    )
        .into_response()
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not_found", "no such route")
}

/// Equal in time whatever the first difference: a token is not guessed byte by byte.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn authorize(State(api): State<Api>, request: Request, next: Next) -> Response {
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        return next.run(request).await;
    }
    // Runners authenticate with their own tokens, in their routes; the API token is not one.
    if request.uri().path().starts_with("/api/runners/") {
        return next.run(request).await;
    }
    let Some(token) = &api.token else {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the vault has no QUIRE_TOKEN in .env, so no request may change anything; run `quire init` to make one",
        );
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !same_secret(given.as_bytes(), token.as_bytes()) {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send `Authorization: Bearer <QUIRE_TOKEN>` (the token is in the vault's .env)",
        );
    }
    next.run(request).await
}

/// Runs blocking work (files, SQLite) off the async workers; a panic becomes a 500.
async fn blocking<F>(f: F) -> Response
where
    F: FnOnce() -> Response + Send + 'static,
{
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|_| {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the request failed inside quire; the daemon's log says why",
        )
    })
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!("request failed: {e}");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "the request failed inside quire; the daemon's log says why",
    )
}

/// A request body within `limit` bytes, or the status, code and message of the error to answer.
fn read_body(
    body: Result<Bytes, BytesRejection>,
    limit: usize,
    what: &str,
) -> Result<Bytes, (StatusCode, &'static str, String)> {
    match body {
        Ok(b) if b.len() <= limit => Ok(b),
        Ok(_) => Err(too_large(limit, what)),
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(too_large(limit, what)),
        Err(e) => Err((StatusCode::BAD_REQUEST, "bad_request", e.body_text())),
    }
}

fn too_large(limit: usize, what: &str) -> (StatusCode, &'static str, String) {
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!("{what} may be at most {limit} bytes"),
    )
}

/// The `Idempotency-Key` header, when it is a sensible one.
fn idempotency_key(headers: &HeaderMap) -> Option<String> {
    headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 200)
        .map(str::to_owned)
}

/// The answer for a key seen before: the stored response, 422 for another body, 409 in flight.
fn replay_claim(claim: Claim, mark_deduped: bool) -> Response {
    match claim {
        Claim::Done(status, body) => {
            let body = if mark_deduped {
                match serde_json::from_str::<serde_json::Value>(&body) {
                    Ok(mut v) => {
                        v["deduped"] = json!(true);
                        v.to_string()
                    }
                    Err(_) => body,
                }
            } else {
                body
            };
            let mut r = json_text(body);
            *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            r.headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            r
        }
        Claim::Mismatch => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_mismatch",
            "this Idempotency-Key was used with another request body; use a new key",
        ),
        Claim::InFlight | Claim::New => error(
            StatusCode::CONFLICT,
            "in_flight",
            "a request with this Idempotency-Key is being handled; ask again when it is done",
        ),
    }
}

/// Stores a final response under its key (a 202 or a failure releases the key instead).
async fn finish_claim(api: &Api, scope: &str, key: &str, response: Response) -> Response {
    let status = response.status();
    if status == StatusCode::ACCEPTED || status.is_server_error() {
        api.daemon.release_key(scope, key);
        return response;
    }
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        api.daemon.release_key(scope, key);
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the response was lost",
        );
    };
    api.daemon.finish_key(
        scope,
        key,
        status.as_u16(),
        &String::from_utf8_lossy(&bytes),
    );
    Response::from_parts(parts, axum::body::Body::from(bytes))
}

fn bad_query(message: String) -> Response {
    error(StatusCode::BAD_REQUEST, "bad_query", message)
}

/// A date query parameter; the error is the message for a 400.
fn date_param(q: &HashMap<String, String>, key: &str) -> Result<Option<chrono::NaiveDate>, String> {
    q.get(key)
        .map(|s| {
            chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map_err(|_| format!("`{key}` must be a date, YYYY-MM-DD"))
        })
        .transpose()
}

fn json_text(body: String) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// `quire daemon`: starts the pipeline on `vault` and serves the API on `addr` until SIGTERM or
/// Ctrl-C; then the pipeline finishes the bundle in hand and stops. `ready` gets the bound address.
pub fn run_daemon(
    vault: &crate::vault::Vault,
    addr: SocketAddr,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), super::ServeError> {
    let io = |context: String| move |source| super::ServeError::Io { context, source };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(io("could not start the server".into()))?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(addr))
        .map_err(io(format!("could not listen on {addr}")))?;
    let bound = listener
        .local_addr()
        .map_err(io("could not read the address".into()))?;
    let daemon = crate::daemon::Daemon::start(vault).map_err(|e| super::ServeError::Io {
        context: "could not start the pipeline".into(),
        source: std::io::Error::other(e),
    })?;
    ready(bound);
    let limits = super::Limits::of(&vault.config().daemon);
    let served = runtime.block_on(async {
        super::listen::serve(listener, router(daemon.handle(), bound), limits, {
            let handle = daemon.handle();
            async move {
                super::serve::signals().await;
                // Event streams end now; the pipeline finishes the bundle in hand.
                handle.stop();
            }
        })
        .await
    });
    // The pipeline finishes the bundle in hand, then stops.
    daemon.shutdown();
    runtime.shutdown_timeout(Duration::from_secs(1));
    served.map_err(io("the server failed".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
        assert!(!same_secret(b"", b"a"));
    }
}
