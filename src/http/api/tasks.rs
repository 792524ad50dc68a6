//! The task index over HTTP: `/api/tasks`, `/api/agenda`, `/calendar.ics` and
//! `/api/renderer/missions`, answering what `quire tasks`, `agenda`, `calendar` and `missions` answer.

// The route modules share the API's imports and helpers.
use super::*;

pub(super) async fn tasks(
    State(api): State<Api>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
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

pub(super) async fn agenda(
    State(api): State<Api>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
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
        match Index::open(api.daemon.vault())
            .and_then(|i| crate::workflow::queries::agenda(&i, today, days))
        {
            Ok(body) => json_text(body),
            Err(e) => internal(e),
        }
    })
    .await
}

pub(super) async fn calendar(
    State(api): State<Api>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
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

pub(super) async fn missions(
    State(api): State<Api>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let today = match date_param(&q, "today") {
        Ok(d) => d.unwrap_or_else(|| chrono::Local::now().date_naive()),
        Err(m) => return bad_query(m),
    };
    blocking(move || {
        let vault = api.daemon.vault();
        let answer = Index::open(vault)
            .map_err(crate::workflow::WorkflowError::from)
            .and_then(|index| crate::workflow::queries::missions(vault, &index, today));
        match answer {
            Ok(v) => axum::Json(v).into_response(),
            Err(e) => internal(e),
        }
    })
    .await
}
