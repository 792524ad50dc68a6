//! Analytics over what was applied (SPEC §10): `/api/analytics/logs`, `/stats` and `/trends`,
//! answering what `quire stats` answers.

// The route modules share the API's imports and helpers.
use super::*;

use crate::analytics::{Analytics, AnalyticsError, Every, LogFilter, parse_time};

fn answer(result: Result<serde_json::Value, AnalyticsError>) -> Response {
    match result {
        Ok(v) => axum::Json(v).into_response(),
        Err(AnalyticsError::BadQuery(m)) => bad_query(m),
        Err(e) => internal(e),
    }
}

pub(super) async fn logs(
    State(api): State<Api>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let filter = match LogFilter::from_query(&q) {
        Ok(f) => f,
        Err(e) => return bad_query(e.to_string()),
    };
    blocking(move || answer(Analytics::open(api.daemon.vault()).and_then(|a| a.logs(&filter))))
        .await
}

pub(super) async fn stats(
    State(api): State<Api>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let since = match q.get("since").map(|s| parse_time(s)).transpose() {
        Ok(s) => s,
        Err(e) => return bad_query(e.to_string()),
    };
    blocking(move || answer(Analytics::open(api.daemon.vault()).and_then(|a| a.stats(since)))).await
}

pub(super) async fn trends(
    State(api): State<Api>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let parsed = (|| {
        let every: Every = q
            .get("every")
            .map(|e| e.parse())
            .transpose()?
            .unwrap_or(Every::Day);
        let since = q.get("since").map(|s| parse_time(s)).transpose()?;
        Ok::<_, AnalyticsError>((every, since))
    })();
    let (every, since) = match parsed {
        Ok(p) => p,
        Err(e) => return bad_query(e.to_string()),
    };
    blocking(move || {
        answer(
            Analytics::open(api.daemon.vault())
                .and_then(|a| a.trends(every, since, chrono::Utc::now())),
        )
    })
    .await
}
