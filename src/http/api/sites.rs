//! `/site/{theme}/…`: the rendered sites, served as files.

// The route modules share the API's imports and helpers.
use super::*;

pub(super) async fn site_root(Path(theme): Path<String>) -> Response {
    (
        StatusCode::MOVED_PERMANENTLY,
        [(header::LOCATION, format!("{theme}/"))],
    )
        .into_response()
}

pub(super) async fn site_index(
    State(api): State<Api>,
    Path(theme): Path<String>,
    headers: HeaderMap,
) -> Response {
    serve_site(api, theme, String::new(), headers).await
}

pub(super) async fn site_file(
    State(api): State<Api>,
    Path((theme, path)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    serve_site(api, theme, path, headers).await
}

pub(super) async fn serve_site(
    api: Api,
    theme: String,
    rel: String,
    headers: HeaderMap,
) -> Response {
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
    blocking(move || crate::http::site::respond(&root, &rel, &headers, &|b| b)).await
}
