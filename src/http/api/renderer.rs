//! `/api/renderer/*`: render jobs and the themes available.

// The route modules share the API's imports and helpers.
use super::*;

/// `POST /api/renderer/render`: `{ "theme"?, "ref"? }` → 202 and the job.
pub(super) async fn render(
    State(api): State<Api>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
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

pub(super) async fn job(State(api): State<Api>, Path(id): Path<String>) -> Response {
    match api.daemon.job(&id) {
        Some(job) => axum::Json(job).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no render job `{id}`"),
        ),
    }
}

pub(super) async fn themes(State(api): State<Api>) -> Response {
    blocking(
        move || match crate::workflow::queries::themes(api.daemon.vault()) {
            Ok(v) => axum::Json(v).into_response(),
            Err(e) => internal(e),
        },
    )
    .await
}
