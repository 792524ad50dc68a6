//! `POST /api/contributions` and `GET /api/contributions/{id}`: bundles in over HTTP, receipts out.

// The route modules share the API's imports and helpers.
use super::*;

/// How long `POST /api/contributions` waits for the receipt before answering 202 (queued).
const RECEIPT_WAIT: Duration = Duration::from_secs(30);

/// The HTTP status of a receipt.
fn receipt_response(receipt: &Receipt) -> Response {
    let status = match receipt.status {
        Status::Applied | Status::Duplicate => StatusCode::OK,
        Status::Rejected => StatusCode::UNPROCESSABLE_ENTITY,
    };
    (status, axum::Json(receipt)).into_response()
}

pub(super) async fn submit(
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

pub(super) async fn submit_claimed(api: &Api, id: Option<String>, body: Bytes) -> Response {
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

pub(super) async fn receipt(State(api): State<Api>, Path(id): Path<String>) -> Response {
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
