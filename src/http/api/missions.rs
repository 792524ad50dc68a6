//! Missions over HTTP (SPEC §9.6): briefs in, missions and decisions out, operator actions, steps
//! in flight ("agents") and their logs. Each route calls the library function the CLI calls.

// The route modules share the API's imports and helpers.
use super::*;

use crate::workflow::WorkflowError;
use crate::workflow::missions::DecideRefusal;
use crate::workflow::{mission_ops, missions as flow};

/// How often a followed log looks for more.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// Who acts through the API, as decisions and events name them.
const BY_API: &str = "api";

pub(super) fn refused(r: DecideRefusal) -> Response {
    error(
        StatusCode::from_u16(r.status()).unwrap_or(StatusCode::CONFLICT),
        &r.code,
        r.message,
    )
}

/// A JSON body of type `T`, or the 400 to answer.
pub(super) fn json_body<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    what: &str,
    shape: &str,
) -> Result<T, Box<Response>> {
    let body = read_body(body, 1024 * 1024, what).map_err(|(s, c, m)| Box::new(error(s, c, m)))?;
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        &body
    };
    serde_json::from_slice(body).map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("expected {shape}: {e}"),
        ))
    })
}

/// `POST /api/missions`: a brief, accepted as if dropped into `pending/` (the same intake, the
/// same receipt). The key defaults to the brief's id.
pub(super) async fn submit(
    State(api): State<Api>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match read_body(body, api.max_body, "a brief") {
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
    if crate::contributions::contract_of(&body).as_deref() != Some(crate::missions::brief::CONTRACT)
    {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_brief",
            format!(
                "a brief says \"contract\": \"{}\"; bundles go to POST /api/contributions",
                crate::missions::brief::CONTRACT
            ),
        );
    }
    let id = crate::contributions::peek_id(&body);
    let key = idempotency_key(&headers).or_else(|| id.clone());
    let hash = sha256_hex(&body);
    if let Some(key) = &key {
        match api.daemon.claim_key("missions", key, &hash) {
            Some(Claim::New) | None => {}
            Some(other) => return replay_claim(other, false),
        }
    }
    let response = super::contributions::submit_claimed(&api, id, body).await;
    if let Some(key) = &key {
        finish_claim(&api, "missions", key, response).await
    } else {
        response
    }
}

/// `GET /api/missions`: every mission, oldest first.
pub(super) async fn list(State(api): State<Api>) -> Response {
    blocking(move || match flow::list(api.daemon.vault()) {
        Ok(v) => axum::Json(json!({ "missions": v })).into_response(),
        Err(e) => internal(e),
    })
    .await
}

/// `GET /api/missions/{id}`: one mission with its attempts and open decisions.
pub(super) async fn status(State(api): State<Api>, Path(id): Path<String>) -> Response {
    blocking(move || match flow::status(api.daemon.vault(), &id) {
        Ok(Some(s)) => axum::Json(s).into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no mission `{id}`; GET /api/missions lists them"),
        ),
        Err(e) => internal(e),
    })
    .await
}

/// `GET /api/missions/{id}/logs/{step}` (`?follow=1` streams until the attempt ends).
pub(super) async fn logs(
    State(api): State<Api>,
    Path((id, step)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let follow = q.get("follow").is_some_and(|v| v == "1" || v == "true");
    let found = {
        let api = api.clone();
        let (id, step) = (id.clone(), step.clone());
        tokio::task::spawn_blocking(move || {
            mission_ops::log_of(api.daemon.vault(), &id, Some(&step))
        })
        .await
    };
    let (attempt, path) = match found {
        Ok(Ok(Ok(Some(found)))) => found,
        Ok(Ok(Ok(None))) => {
            return error(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("mission `{id}` has no attempt of step `{step}` yet"),
            );
        }
        Ok(Ok(Err(r))) => return refused(r),
        Ok(Err(e)) => return internal(e),
        Err(e) => return internal(e),
    };
    let text = [(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    )];
    if !follow {
        let mut all = Vec::new();
        loop {
            let more = read_from(&path, all.len() as u64).await;
            if more.is_empty() {
                break;
            }
            all.extend(more);
        }
        return (text, all).into_response();
    }
    struct Follow {
        api: Api,
        path: std::path::PathBuf,
        offset: u64,
        attempt: crate::missions::AttemptRow,
        stopping: tokio::sync::watch::Receiver<bool>,
        done: bool,
    }
    let state = Follow {
        stopping: api.daemon.stopping(),
        api,
        path,
        offset: 0,
        attempt,
        done: false,
    };
    let stream = futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if st.done {
                return None;
            }
            let more = read_from(&st.path, st.offset).await;
            if !more.is_empty() {
                st.offset += more.len() as u64;
                return Some((Ok::<_, std::io::Error>(Bytes::from(more)), st));
            }
            // Nothing new: done once the attempt is no longer running (what it wrote before it
            // ended has been read above), or the daemon stops.
            let running = {
                let api = st.api.clone();
                let a = st.attempt.clone();
                tokio::task::spawn_blocking(move || {
                    mission_ops::still_running(api.daemon.vault(), &a).unwrap_or(false)
                })
                .await
                .unwrap_or(false)
            };
            if !running {
                let last = read_from(&st.path, st.offset).await;
                st.done = true;
                if last.is_empty() {
                    return None;
                }
                st.offset += last.len() as u64;
                return Some((Ok(Bytes::from(last)), st));
            }
            tokio::select! {
                _ = tokio::time::sleep(FOLLOW_POLL) => {}
                _ = st.stopping.changed() => { st.done = true; }
            }
        }
    });
    (text, axum::body::Body::from_stream(stream)).into_response()
}

/// What a log holds past `offset` (at most 1 MiB at a time).
async fn read_from(path: &std::path::Path, offset: u64) -> Vec<u8> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        use std::io::{Read as _, Seek as _};
        let Ok(mut f) = std::fs::File::open(&path) else {
            return Vec::new();
        };
        if f.seek(std::io::SeekFrom::Start(offset)).is_err() {
            return Vec::new();
        }
        let mut buf = Vec::new();
        let _ = f.take(1024 * 1024).read_to_end(&mut buf);
        buf
    })
    .await
    .unwrap_or_default()
}

/// `POST /api/missions/{id}/retry` `{ "from"? }`.
pub(super) async fn retry(
    State(api): State<Api>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Asked {
        from: Option<String>,
    }
    let asked: Asked = match json_body(body, "a retry", "{\"from\"?: STEP}") {
        Ok(a) => a,
        Err(r) => return *r,
    };
    acted(api, id, move |vault, id, sink| {
        mission_ops::retry(vault, id, asked.from.as_deref(), BY_API, sink)
    })
    .await
}

/// `POST /api/missions/{id}/abort` `{ "reason"? }`.
pub(super) async fn abort(
    State(api): State<Api>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Asked {
        reason: Option<String>,
    }
    let asked: Asked = match json_body(body, "an abort", "{\"reason\"?}") {
        Ok(a) => a,
        Err(r) => return *r,
    };
    acted(api, id, move |vault, id, sink| {
        mission_ops::abort(vault, id, BY_API, asked.reason.as_deref(), sink)
    })
    .await
}

/// What an operator action returns: where the mission stands, or why it was refused.
type Acted = Result<Result<crate::missions::MissionState, DecideRefusal>, WorkflowError>;

/// Runs an operator action and answers with where the mission stands.
async fn acted<F>(api: Api, id: String, action: F) -> Response
where
    F: FnOnce(&crate::vault::Vault, &str, &mut dyn crate::events::EventSink) -> Acted
        + Send
        + 'static,
{
    blocking(move || {
        let mut sink = DaemonSink(api.daemon.clone());
        let outcome = action(api.daemon.vault(), &id, &mut sink);
        api.daemon.wake_missions();
        match outcome {
            Ok(Ok(state)) => axum::Json(json!({ "mission": id, "state": state })).into_response(),
            Ok(Err(r)) => refused(r),
            Err(e) => internal(e),
        }
    })
    .await
}

/// Events from an API action, to the log, the journal and subscribers.
pub(super) struct DaemonSink(pub(super) Handle);

impl crate::events::EventSink for DaemonSink {
    fn emit(&mut self, event: crate::events::Event) {
        self.0.emit(event);
    }
}

/// `POST /api/missions/{id}/inject` `{ "message" }`: handed to the running step's `$QUIRE_INBOX`.
pub(super) async fn inject(
    State(api): State<Api>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Asked {
        message: String,
    }
    let asked: Asked = match json_body(body, "a message", "{\"message\": TEXT}") {
        Ok(a) => a,
        Err(r) => return *r,
    };
    blocking(move || {
        let mut sink = DaemonSink(api.daemon.clone());
        match mission_ops::inject(api.daemon.vault(), &id, &asked.message, BY_API, &mut sink) {
            Ok(Ok(reached)) => axum::Json(json!({
                "mission": id,
                "delivered": reached.iter().map(|a| json!({ "item": a.item, "step": a.step, "attempt": a.attempt })).collect::<Vec<_>>(),
            }))
            .into_response(),
            Ok(Err(r)) => refused(r),
            Err(e) => internal(e),
        }
    })
    .await
}

/// `GET /api/agents`: every step in flight.
pub(super) async fn agents(State(api): State<Api>) -> Response {
    blocking(move || match mission_ops::agents(api.daemon.vault()) {
        Ok(a) => axum::Json(json!({ "agents": a })).into_response(),
        Err(e) => internal(e),
    })
    .await
}

/// `GET /api/decisions`: the decisions waiting for an answer, oldest first.
pub(super) async fn decisions(State(api): State<Api>) -> Response {
    blocking(move || match flow::inbox(api.daemon.vault()) {
        Ok(d) => axum::Json(json!({ "decisions": d })).into_response(),
        Err(e) => internal(e),
    })
    .await
}

/// `POST /api/decisions/{id}/resolve` `{ "decision", "commit"?, "reason"? }`.
pub(super) async fn resolve(
    State(api): State<Api>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Asked {
        decision: String,
        commit: Option<String>,
        reason: Option<String>,
    }
    let asked: Asked = match json_body(
        body,
        "a decision",
        "{\"decision\": start|approve|reject|retry|abort, \"commit\"?, \"reason\"?}",
    ) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    blocking(move || {
        let mut sink = DaemonSink(api.daemon.clone());
        let outcome = flow::decide(
            api.daemon.vault(),
            &id,
            &asked.decision,
            asked.reason.as_deref(),
            asked.commit.as_deref(),
            BY_API,
            &mut sink,
        );
        api.daemon.wake_missions();
        match outcome {
            Ok(Ok(d)) => axum::Json(d).into_response(),
            Ok(Err(r)) => refused(r),
            Err(e) => internal(e),
        }
    })
    .await
}
