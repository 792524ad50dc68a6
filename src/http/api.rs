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

/// How long `POST /api/contributions` waits for the receipt before answering 202 (queued).
const RECEIPT_WAIT: Duration = Duration::from_secs(30);

#[derive(Clone)]
struct Api {
    daemon: Handle,
    token: Option<Arc<str>>,
    max_body: usize,
}

/// The router for the daemon's API over `daemon`.
pub fn router(daemon: Handle) -> Router {
    let token = daemon.vault().token().map(Arc::from);
    let max_body = daemon.vault().config().contributions.max_bundle_bytes as usize;
    let api = Api {
        daemon,
        token,
        max_body,
    };
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/contributions", post(submit))
        .route("/api/contributions/{id}", get(receipt))
        .route("/api/tasks", get(tasks))
        .route("/api/agenda", get(agenda))
        .route("/calendar.ics", get(calendar))
        .route("/api/events", get(events).post(post_event))
        .route("/api/renderer/render", post(render))
        .route("/api/renderer/jobs/{id}", get(job))
        .route("/api/renderer/themes", get(themes))
        .route("/api/renderer/missions", get(missions))
        .route("/site/{theme}", get(site_root))
        .route("/site/{theme}/", get(site_index))
        .route("/site/{theme}/{*path}", get(site_file))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body.saturating_add(1)))
        .layer(middleware::from_fn_with_state(api.clone(), authorize))
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

async fn healthz(State(api): State<Api>) -> Response {
    let health = api.daemon.health();
    let status = if health.status == "ok" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(health)).into_response()
}

async fn metrics(State(api): State<Api>) -> Response {
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

/// The HTTP status of a receipt.
fn receipt_response(receipt: &Receipt) -> Response {
    let status = match receipt.status {
        Status::Applied | Status::Duplicate => StatusCode::OK,
        Status::Rejected => StatusCode::UNPROCESSABLE_ENTITY,
    };
    (status, axum::Json(receipt)).into_response()
}

async fn submit(
    State(api): State<Api>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match read_body(body, api.max_body, "a bundle") {
        Ok(b) => b,
        Err((status, code, message)) => return error(status, code, message),
    };
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&body) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not JSON: {e}"),
        );
    }
    let id = crate::contributions::peek_id(&body);
    // The key defaults to the bundle id: resending a bundle answers what it answered first.
    let key = idempotency_key(&headers).or_else(|| id.clone());
    let hash = sha256_hex(&body);
    if let Some(key) = &key {
        match api.daemon.claim_key("contributions", key, &hash) {
            Some(Claim::New) | None => {}
            Some(other) => return replay_claim(other, false),
        }
    }
    let response = submit_claimed(&api, id, body).await;
    if let Some(key) = &key {
        finish_claim(&api, "contributions", key, response).await
    } else {
        response
    }
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

async fn submit_claimed(api: &Api, id: Option<String>, body: Bytes) -> Response {
    let daemon = api.daemon.clone();
    // Drop the bundle into pending/ under a fresh name, as any other producer would.
    let dropped = tokio::task::spawn_blocking(move || -> std::io::Result<(String, _)> {
        let pending = daemon.vault().queue_dir(Queue::Pending);
        std::fs::create_dir_all(&pending)?;
        let stem = id.unwrap_or_else(|| "api".to_owned());
        let path = fsutil::free_name(&pending, &stem, ".json");
        let name = queue::file_stem(&path);
        let rx = daemon.expect(&name);
        // Written under a hidden name, then renamed: the intake never sees half of it.
        let tmp = pending.join(format!(".{name}.tmp"));
        if let Err(e) = fsutil::atomic_write(&tmp, &body, false)
            .and_then(|()| fsutil::rename_no_clobber(&tmp, &path))
        {
            daemon.forget(&name);
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        daemon.wake();
        Ok((name, rx))
    })
    .await;
    let (name, rx) = match dropped {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return internal(e),
        Err(e) => return internal(e),
    };
    match tokio::time::timeout(RECEIPT_WAIT, rx).await {
        Ok(Ok(filed)) => receipt_response(&filed.receipt),
        _ => {
            api.daemon.forget(&name);
            (
                StatusCode::ACCEPTED,
                axum::Json(json!({ "status": "queued", "file": format!("{name}.json") })),
            )
                .into_response()
        }
    }
}

async fn receipt(State(api): State<Api>, Path(id): Path<String>) -> Response {
    blocking(move || {
        let vault = api.daemon.vault();
        match queue::find_receipt(vault, &id) {
            Ok(Some(r)) => receipt_response(&r),
            Ok(None) => {
                let waiting = [Queue::Pending, Queue::Processing]
                    .iter()
                    .any(|q| vault.queue_dir(*q).join(format!("{id}.json")).exists());
                if waiting && crate::contributions::is_valid_id(&id) {
                    (
                        StatusCode::ACCEPTED,
                        axum::Json(json!({ "id": id, "status": "queued" })),
                    )
                        .into_response()
                } else {
                    error(
                        StatusCode::NOT_FOUND,
                        "not_found",
                        format!("no bundle `{id}` has been received"),
                    )
                }
            }
            Err(e) => internal(e),
        }
    })
    .await
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

async fn tasks(State(api): State<Api>, Query(q): Query<HashMap<String, String>>) -> Response {
    let filter = match task_filter(&q) {
        Ok(f) => f,
        Err(m) => return bad_query(m),
    };
    blocking(move || {
        let result = Index::open(api.daemon.vault()).and_then(|index| {
            let mut out = String::from("{\"tasks\":[");
            let mut first = true;
            index.each_task(&filter, |t| {
                if !std::mem::take(&mut first) {
                    out.push(',');
                }
                out.push_str(&t.json().map_err(std::io::Error::other)?);
                Ok(())
            })?;
            out.push_str("]}");
            Ok(out)
        });
        match result {
            Ok(body) => json_text(body),
            Err(e) => internal(e),
        }
    })
    .await
}

fn task_filter(q: &HashMap<String, String>) -> Result<TaskFilter, String> {
    let status: StatusFilter = match q.get("status") {
        Some(s) => s.parse()?,
        None => StatusFilter::default(),
    };
    Ok(TaskFilter {
        status,
        due_before: date_param(q, "due_before")?,
        due_after: date_param(q, "due_after")?,
        tag: q.get("tag").cloned(),
        mission: q.get("mission").cloned(),
        path: q.get("path").cloned(),
    })
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

async fn agenda(State(api): State<Api>, Query(q): Query<HashMap<String, String>>) -> Response {
    let today = match date_param(&q, "today") {
        Ok(d) => d.unwrap_or_else(|| chrono::Local::now().date_naive()),
        Err(m) => return bad_query(m),
    };
    let days = match q.get("days").map(|d| d.parse::<u32>()) {
        None => 7,
        Some(Ok(d)) if d <= 3660 => d,
        Some(_) => return bad_query("`days` must be a whole number up to 3660".into()),
    };
    blocking(move || {
        match Index::open(api.daemon.vault()).and_then(|i| i.agenda_json(today, days)) {
            Ok(a) => {
                let list = |v: &[String]| format!("[{}]", v.join(","));
                json_text(format!(
                    "{{\"today\":\"{today}\",\"days\":{days},\"overdue\":{},\"today_tasks\":{},\"upcoming\":{}}}",
                    list(&a.overdue),
                    list(&a.today),
                    list(&a.upcoming)
                ))
            }
            Err(e) => internal(e),
        }
    })
    .await
}

async fn calendar(State(api): State<Api>, Query(q): Query<HashMap<String, String>>) -> Response {
    let kind: CalendarKind = match q.get("kind").map(|k| k.parse()) {
        None => CalendarKind::default(),
        Some(Ok(k)) => k,
        Some(Err(e)) => return bad_query(e),
    };
    blocking(move || {
        let vault = api.daemon.vault();
        match Index::open(vault).and_then(|i| i.calendar(kind, &vault.config().site.title)) {
            Ok(ics) => (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/calendar; charset=utf-8"),
                )],
                ics,
            )
                .into_response(),
            Err(e) => internal(e),
        }
    })
    .await
}

/// How many kept events one replay step reads.
const REPLAY_CHUNK: usize = 500;

/// Counts a connected SSE client while it lives.
struct ClientGauge(Handle);

impl Drop for ClientGauge {
    fn drop(&mut self) {
        self.0.metrics().sse_clients.fetch_sub(1, Ordering::Relaxed);
    }
}

fn sse_event(seq: i64, event: &crate::events::Event) -> SseEvent {
    SseEvent::default()
        .id(seq.to_string())
        .event(event.kind.clone())
        .data(serde_json::to_string(event).unwrap_or_default())
}

/// `GET /api/events`: Server-Sent Events. Everything after `Last-Event-ID` (header, or the
/// `last_event_id` query parameter) is replayed from the journal first; an id the journal does
/// not know (pruned, or from before a reset) gets a `reset` event, then everything kept.
async fn events(
    State(api): State<Api>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| q.get("last_event_id").cloned());
    // Subscribe before reading the journal, so nothing falls between replay and live.
    let live = api.daemon.subscribe();
    let daemon = api.daemon.clone();
    daemon.metrics().sse_clients.fetch_add(1, Ordering::Relaxed);
    let gauge = ClientGauge(daemon.clone());
    let (oldest, newest) = {
        let d = daemon.clone();
        tokio::task::spawn_blocking(move || d.journal_range())
            .await
            .unwrap_or((1, 0))
    };
    let mut first: Vec<SseEvent> = vec![
        SseEvent::default()
            .retry(Duration::from_secs(3))
            .comment("quire events"),
    ];
    let from = match last.as_deref().map(str::parse::<i64>) {
        None => newest, // a new client: live events only
        Some(Ok(n)) if n >= oldest - 1 && n <= newest => n,
        Some(_) => {
            first.push(
                SseEvent::default()
                    .event("reset")
                    .data(json!({ "reason": "the last event id is unknown or no longer kept; reload your state", "oldest": oldest, "newest": newest }).to_string()),
            );
            oldest - 1
        }
    };
    struct State_ {
        daemon: Handle,
        stopping: tokio::sync::watch::Receiver<bool>,
        live: broadcast::Receiver<(i64, crate::events::Event)>,
        sent: i64,
        pending: std::collections::VecDeque<SseEvent>,
        replaying: bool,
        _gauge: ClientGauge,
    }
    let stopping = daemon.stopping();
    let state = State_ {
        daemon,
        stopping,
        live,
        sent: from,
        pending: first.into(),
        replaying: true,
        _gauge: gauge,
    };
    let stream = futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(e) = st.pending.pop_front() {
                return Some((Ok::<_, std::convert::Infallible>(e), st));
            }
            if st.replaying {
                let d = st.daemon.clone();
                let after = st.sent;
                let chunk = tokio::task::spawn_blocking(move || d.replay(after, REPLAY_CHUNK))
                    .await
                    .unwrap_or_default();
                if chunk.len() < REPLAY_CHUNK {
                    st.replaying = false;
                }
                for (seq, e) in chunk {
                    st.sent = seq;
                    st.pending.push_back(sse_event(seq, &e));
                }
                continue;
            }
            if *st.stopping.borrow() {
                return None;
            }
            let received = tokio::select! {
                r = st.live.recv() => r,
                // The daemon is stopping: end the stream, so the server can shut down.
                _ = st.stopping.changed() => return None,
            };
            match received {
                Ok((seq, e)) if seq > st.sent => {
                    st.sent = seq;
                    return Some((Ok(sse_event(seq, &e)), st));
                }
                Ok(_) => {}
                // Fell behind the live channel: catch up from the journal.
                Err(broadcast::error::RecvError::Lagged(_)) => st.replaying = true,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(stream)
        .keep_alive(
            KeepAlive::new()
                .interval(Duration::from_secs(15))
                .text("heartbeat"),
        )
        .into_response()
}

/// `POST /api/events`: appends an external event `{ "type", "subject"?, "data"?,
/// "correlation_id"? }`. With `Idempotency-Key`, a repeat answers `"deduped": true`.
async fn post_event(
    State(api): State<Api>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match read_body(body, api.max_body, "an event") {
        Ok(b) => b,
        Err((status, code, message)) => return error(status, code, message),
    };
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Posted {
        #[serde(rename = "type")]
        kind: String,
        #[serde(default)]
        subject: String,
        #[serde(default)]
        data: serde_json::Value,
        #[serde(default)]
        correlation_id: Option<String>,
    }
    let posted: Posted = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("expected {{\"type\", \"subject\", \"data\", \"correlation_id\"}}: {e}"),
            );
        }
    };
    let valid_type = !posted.kind.is_empty()
        && posted.kind.len() <= 100
        && posted
            .kind
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !valid_type {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_event",
            "`type` must be letters, digits, `.`, `_` or `-` (such as `agent.step_done`)",
        );
    }
    let key = idempotency_key(&headers);
    let hash = sha256_hex(&body);
    let daemon = api.daemon.clone();
    let scope_key = key.clone();
    let stored = tokio::task::spawn_blocking(move || {
        if let Some(k) = &scope_key {
            match daemon.claim_key("events", k, &hash) {
                Some(Claim::New) | None => {}
                Some(other) => return Err(other),
            }
        }
        let event = crate::events::Event::new(
            &posted.kind,
            posted.subject,
            posted.data,
            posted.correlation_id,
        );
        let seq = daemon.emit(event.clone());
        let body = json!({ "seq": seq, "event": event, "deduped": false }).to_string();
        if let Some(k) = &scope_key {
            daemon.finish_key("events", k, 201, &body);
        }
        Ok(body)
    })
    .await;
    match stored {
        Ok(Ok(body)) => {
            let mut r = json_text(body);
            *r.status_mut() = StatusCode::CREATED;
            r
        }
        Ok(Err(claim)) => replay_claim(claim, true),
        Err(e) => internal(e),
    }
}

/// `POST /api/renderer/render`: `{ "theme"?, "ref"? }` → 202 and the job.
async fn render(State(api): State<Api>, body: Result<Bytes, BytesRejection>) -> Response {
    #[derive(serde::Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    struct Asked {
        theme: Option<String>,
        #[serde(rename = "ref")]
        git_ref: Option<String>,
    }
    let body = match read_body(body, api.max_body, "a render request") {
        Ok(b) => b,
        Err((status, code, message)) => return error(status, code, message),
    };
    let asked: Asked = if body.iter().all(u8::is_ascii_whitespace) {
        Asked::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(a) => a,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_json",
                    format!("expected {{\"theme\"?, \"ref\"?}}: {e}"),
                );
            }
        }
    };
    let daemon = api.daemon.clone();
    blocking(move || {
        if let Some(theme) = &asked.theme {
            let known = crate::render::available_themes(daemon.vault())
                .map(|l| l.iter().any(|t| &t.name == theme))
                .unwrap_or(false);
            if !known {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "unknown_theme",
                    format!("there is no theme `{theme}`; GET /api/renderer/themes lists them"),
                );
            }
        }
        let job = daemon.start_render(asked.theme, asked.git_ref);
        (
            StatusCode::ACCEPTED,
            axum::Json(json!({ "job": job.id, "state": job.state })),
        )
            .into_response()
    })
    .await
}

async fn job(State(api): State<Api>, Path(id): Path<String>) -> Response {
    match api.daemon.job(&id) {
        Some(job) => axum::Json(job).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no render job `{id}`"),
        ),
    }
}

async fn themes(State(api): State<Api>) -> Response {
    blocking(
        move || match crate::render::available_themes(api.daemon.vault()) {
            Ok(list) => axum::Json(json!({ "themes": list })).into_response(),
            Err(e) => internal(e),
        },
    )
    .await
}

async fn missions(State(api): State<Api>, Query(q): Query<HashMap<String, String>>) -> Response {
    let today = match date_param(&q, "today") {
        Ok(d) => d.unwrap_or_else(|| chrono::Local::now().date_naive()),
        Err(m) => return bad_query(m),
    };
    blocking(move || {
        let vault = api.daemon.vault();
        let sandboxes = crate::workflow::sandbox::list(vault).unwrap_or_default();
        match Index::open(vault).and_then(|i| i.missions(today)) {
            Ok(list) => {
                let missions: Vec<serde_json::Value> = list
                    .into_iter()
                    .map(|m| {
                        let mut v = serde_json::to_value(&m).unwrap_or_default();
                        let sandbox = sandboxes
                            .iter()
                            .find(|s| Some(s.id.as_str()) == v["id"].as_str());
                        v["sandbox"] = serde_json::to_value(sandbox).unwrap_or_default();
                        v
                    })
                    .collect();
                axum::Json(json!({ "today": today.to_string(), "missions": missions }))
                    .into_response()
            }
            Err(e) => internal(e),
        }
    })
    .await
}

async fn site_root(Path(theme): Path<String>) -> Response {
    (
        StatusCode::MOVED_PERMANENTLY,
        [(header::LOCATION, format!("{theme}/"))],
    )
        .into_response()
}

async fn site_index(
    State(api): State<Api>,
    Path(theme): Path<String>,
    headers: HeaderMap,
) -> Response {
    serve_site(api, theme, String::new(), headers).await
}

async fn site_file(
    State(api): State<Api>,
    Path((theme, path)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    serve_site(api, theme, path, headers).await
}

async fn serve_site(api: Api, theme: String, rel: String, headers: HeaderMap) -> Response {
    // A theme is one plain folder name under _site/: nothing hidden, nothing that climbs.
    if theme.is_empty()
        || theme.starts_with('.')
        || !theme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return error(StatusCode::NOT_FOUND, "not_found", "no such site");
    }
    let root = api
        .daemon
        .vault()
        .root()
        .join(crate::render::SITE_DIR)
        .join(&theme);
    if !root.is_dir() {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no site `{theme}` has been rendered"),
        );
    }
    blocking(move || super::site::respond(&root, &rel, &headers, &|b| b)).await
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
        super::listen::serve(listener, router(daemon.handle()), limits, {
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
