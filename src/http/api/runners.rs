//! `/api/runners/…`: where runners on other machines lease steps, renew their leases, send logs
//! and report results (the contract: `docs/contracts/runner.md`), and `GET /api/runners`.
//!
//! Every route but the listing needs a runner token (`quire runner token new NAME`), never the API
//! token: a runner can take steps and say how they went, and nothing else.

// The route modules share the API's imports and helpers.
use super::*;
use crate::runners::registry::Registry;
use crate::workflow::mission_remote::{self, Appended, Outcome};
use missions::{DaemonSink, json_body, refused};

/// The runner a request's token names, or the 401 to answer.
fn runner_of(api: &Api, headers: &HeaderMap) -> Result<String, Box<Response>> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let refused = || {
        error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send `Authorization: Bearer <runner token>`; `quire runner token new NAME` makes one",
        )
    };
    if given.is_empty() {
        return Err(Box::new(refused()));
    }
    match Registry::open(&api.daemon.vault().state_dir()).and_then(|r| r.check(given)) {
        Ok(Some(name)) => Ok(name),
        Ok(None) => Err(Box::new(refused())),
        Err(e) => Err(Box::new(internal(e))),
    }
}

#[derive(serde::Deserialize)]
struct Hello {
    #[serde(default)]
    labels: Vec<String>,
    #[serde(default)]
    slots: u32,
    #[serde(default)]
    host: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    wait_ms: u64,
}

fn hello(body: Result<Bytes, BytesRejection>) -> Result<Hello, Box<Response>> {
    let hello: Hello = match body {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| {
            Box::new(error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("the body is not a runner's hello: {e}"),
            ))
        })?,
        Err(e) => {
            return Err(Box::new(error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                e.body_text(),
            )));
        }
    };
    if let Some(bad) = hello
        .labels
        .iter()
        .find(|l| !crate::missions::valid_label(l))
    {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "bad_label",
            format!("{bad:?} is no label: use 1 to 64 letters, digits, `-`, `_` or `.`"),
        )));
    }
    Ok(hello)
}

fn record(api: &Api, name: &str, h: &Hello) {
    let seen = Registry::open(&api.daemon.vault().state_dir())
        .and_then(|r| r.seen(name, &h.labels, h.slots, &h.host, &h.version));
    if let Err(e) = seen {
        tracing::warn!("could not record runner `{name}`: {e}");
    }
}

/// `POST /api/runners/register`: the runner's name, the lease length and the remote.
pub(super) async fn register(
    State(api): State<Api>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let name = match runner_of(&api, &headers) {
        Ok(n) => n,
        Err(r) => return *r,
    };
    let h = match hello(body) {
        Ok(h) => h,
        Err(r) => return *r,
    };
    blocking(move || {
        record(&api, &name, &h);
        api.daemon.emit(crate::events::Event::new(
            crate::events::kind::RUNNER_REGISTERED,
            &name,
            json!({ "name": name, "labels": h.labels, "slots": h.slots, "host": h.host, "version": h.version }),
            None,
        ));
        let config = api.daemon.vault().config();
        axum::Json(json!({
            "name": name,
            "lease_ms": config.runners.lease.duration().as_millis() as u64,
            "beat_ms": mission_remote::beat_every(config.runners.lease.duration()).as_millis() as u64,
            "remote": config.git.remote,
        }))
        .into_response()
    })
    .await
}

/// `POST /api/runners/lease`: a step for this runner (200 with the job), or 204 after waiting
/// up to `wait_ms` (at most 25 s) with none.
pub(super) async fn lease(
    State(api): State<Api>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let name = match runner_of(&api, &headers) {
        Ok(n) => n,
        Err(r) => return *r,
    };
    let h = match hello(body) {
        Ok(h) => h,
        Err(r) => return *r,
    };
    let wait = Duration::from_millis(h.wait_ms).min(mission_remote::LONGEST_POLL);
    let deadline = tokio::time::Instant::now() + wait;
    // Subscribed before the first look, so an offer made meanwhile is not missed.
    let mut events = api.daemon.subscribe();
    let mut stopping = api.daemon.stopping();
    let h = Arc::new(h);
    loop {
        let found = {
            let (api, name, h) = (api.clone(), name.clone(), h.clone());
            tokio::task::spawn_blocking(move || {
                record(&api, &name, &h);
                let mut sink = DaemonSink(api.daemon.clone());
                mission_remote::lease(api.daemon.vault(), &name, &h.labels, &mut sink)
            })
            .await
        };
        match found {
            Ok(Ok(Some(job))) => return axum::Json(job).into_response(),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => return internal(e),
            Err(e) => return internal(e),
        }
        // Wait for an offer (or for anything that may free one), the deadline, or a stop.
        let woken = loop {
            tokio::select! {
                e = events.recv() => match e {
                    Ok((_, ev)) if ev.kind == crate::events::kind::MISSION_STEP_OFFERED => break true,
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => break true,
                    Err(broadcast::error::RecvError::Closed) => break false,
                },
                _ = tokio::time::sleep_until(deadline) => break false,
                _ = stopping.changed() => break false,
            }
        };
        if !woken {
            return StatusCode::NO_CONTENT.into_response();
        }
    }
}

/// `POST /api/runners/heartbeat` `{ "mission", "item"?, "fence", "inbox_offset"? }`.
pub(super) async fn heartbeat(
    State(api): State<Api>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    #[derive(serde::Deserialize)]
    struct Asked {
        mission: String,
        #[serde(default)]
        item: Option<String>,
        fence: i64,
        #[serde(default)]
        inbox_offset: u64,
    }
    let name = match runner_of(&api, &headers) {
        Ok(n) => n,
        Err(r) => return *r,
    };
    let asked: Asked = match json_body(
        body,
        "a heartbeat",
        "{\"mission\", \"item\"?, \"fence\", \"inbox_offset\"?}",
    ) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    blocking(move || {
        if let Ok(r) = Registry::open(&api.daemon.vault().state_dir()) {
            let _ = r.touch(&name);
        }
        match mission_remote::heartbeat(
            api.daemon.vault(),
            &name,
            &asked.mission,
            asked.item.as_deref(),
            asked.fence,
            asked.inbox_offset,
        ) {
            Ok(Ok(beat)) => axum::Json(beat).into_response(),
            Ok(Err(r)) => refused(r),
            Err(e) => internal(e),
        }
    })
    .await
}

/// `POST /api/runners/log?mission&item&fence&offset`, the bytes in the body.
pub(super) async fn log(
    State(api): State<Api>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let name = match runner_of(&api, &headers) {
        Ok(n) => n,
        Err(r) => return *r,
    };
    let bytes = match read_body(body, api.max_body, "a piece of log") {
        Ok(b) => b,
        Err((status, code, message)) => return error(status, code, message),
    };
    let (Some(mission), Some(fence), Some(offset)) = (
        q.get("mission").cloned(),
        q.get("fence").and_then(|f| f.parse::<i64>().ok()),
        q.get("offset").and_then(|f| f.parse::<u64>().ok()),
    ) else {
        return bad_query(
            "give `mission`, `fence` and `offset` (and `item` for an item's run)".into(),
        );
    };
    let item = q.get("item").filter(|i| !i.is_empty()).cloned();
    blocking(move || {
        match mission_remote::append_log(
            api.daemon.vault(),
            &name,
            &mission,
            item.as_deref(),
            fence,
            offset,
            &bytes,
        ) {
            Ok(Ok(Appended::Written(length))) => axum::Json(json!({ "length": length })).into_response(),
            Ok(Ok(Appended::Gap(length))) => (
                StatusCode::CONFLICT,
                axum::Json(json!({
                    "error": { "code": "log_gap", "message": format!("the log has {length} bytes; send from offset {length}") },
                    "length": length,
                })),
            )
                .into_response(),
            Ok(Err(r)) => refused(r),
            Err(e) => internal(e),
        }
    })
    .await
}

/// `POST /api/runners/complete`: how a step ended ([`Outcome`]).
pub(super) async fn complete(
    State(api): State<Api>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let name = match runner_of(&api, &headers) {
        Ok(n) => n,
        Err(r) => return *r,
    };
    let outcome: Outcome = match json_body(body, "a step's outcome", "see docs/contracts/runner.md")
    {
        Ok(a) => a,
        Err(r) => return *r,
    };
    blocking(move || {
        let vault = api.daemon.vault();
        let Some(url) = vault.config().git.remote.clone() else {
            return error(
                StatusCode::CONFLICT,
                "no_remote",
                "the vault has no `[git] remote`, so no runner's result can be fetched",
            );
        };
        let remote = crate::git::remote::Remote::new(vault.root(), &url);
        let mut sink = DaemonSink(api.daemon.clone());
        let done = mission_remote::complete(vault, &name, &remote, &outcome, &mut sink);
        api.daemon.wake_missions();
        match done {
            Ok(Ok(report)) => axum::Json(json!({
                "mission": report.mission,
                "step": report.step,
                "attempt": report.attempt,
                "class": report.class,
                "commit": report.commit,
                "state": report.then,
            }))
            .into_response(),
            Ok(Err(r)) => refused(r),
            Err(e) => internal(e),
        }
    })
    .await
}

/// `GET /api/runners`: every runner with a token, what each runs now, and the steps waiting for
/// one.
pub(super) async fn list(State(api): State<Api>) -> Response {
    blocking(move || {
        let vault = api.daemon.vault();
        match crate::workflow::mission_ops::agents(vault)
            .and_then(|a| mission_remote::runners(vault, &a))
        {
            Ok(r) => axum::Json(r).into_response(),
            Err(e) => internal(e),
        }
    })
    .await
}
