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
    let base = api.daemon.vault().config().site.base_url.clone();
    let mount = format!("/site/{theme}/");
    blocking(move || {
        crate::http::site::respond(&root, &rel, &headers, &|b| mounted_404(b, &base, &mount))
    })
    .await
}

/// The site's 404 page links from `[site] base_url` (it is served at any depth), which the
/// daemon's `/site/<theme>/` is not: its links are pointed under the mount, so the page keeps its
/// style and its links work. Other pages link relatively and are served as written.
fn mounted_404(bytes: Vec<u8>, base: &str, mount: &str) -> Vec<u8> {
    if !base.starts_with('/') || base == mount {
        return bytes;
    }
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => return e.into_bytes(),
    };
    if !text.contains("class=\"page-404\"") {
        return text.into_bytes();
    }
    let mut out = text;
    for attr in ["href", "src", "data-root", "data-search-index"] {
        out = out.replace(&format!("{attr}=\"{base}"), &format!("{attr}=\"{mount}"));
    }
    out.into_bytes()
}
