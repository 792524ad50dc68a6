//! `GET /api/events` (the live stream, with replay from the journal) and `POST /api/events`.

// The route modules share the API's imports and helpers.
use super::*;

/// How many kept events one replay step reads.
const REPLAY_CHUNK: usize = 500;

/// Counts a connected SSE client while it lives.
struct ClientGauge(Handle);

impl Drop for ClientGauge {
    fn drop(&mut self) {
        self.0.metrics().sse_clients.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One event for the stream. Named by its type (`event:`), unless the client asked for unnamed
/// ones (`?unnamed=1`): a browser's `EventSource` delivers unnamed events to one handler, so a
/// page can see every type, including those posted by others, without knowing them in advance.
fn sse_event(seq: i64, event: &crate::events::Event, named: bool) -> SseEvent {
    let e = SseEvent::default().id(seq.to_string());
    let e = if named {
        e.event(event.kind.clone())
    } else {
        e
    };
    e.data(serde_json::to_string(event).unwrap_or_default())
}

/// `GET /api/events`: Server-Sent Events. Everything after `Last-Event-ID` (header, or the
/// `last_event_id` query parameter) is replayed from the journal first; an id the journal does
/// not know (pruned, or from before a reset) gets a `reset` event, then everything kept.
pub(super) async fn events(
    State(api): State<Api>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| q.get("last_event_id").cloned());
    let named = !q.get("unnamed").is_some_and(|v| v == "1" || v == "true");
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
        named: bool,
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
        named,
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
                    st.pending.push_back(sse_event(seq, &e, st.named));
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
                    return Some((Ok(sse_event(seq, &e, st.named)), st));
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
pub(super) async fn post_event(
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
