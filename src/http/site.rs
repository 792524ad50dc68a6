//! Serving a rendered site from its folder: the right content types, `index.html` for folders,
//! the site's own `404.html`, an `ETag` for revalidation — and nothing outside the site: no `..`
//! (however encoded), no dotfiles (`.env`, the build manifest), no path through a symlink.

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// What a request for `rel` (the URL path below the site's root, still percent-encoded) finds.
pub enum Found {
    /// A file of the site.
    File {
        /// Where it is.
        path: PathBuf,
        /// Its bytes.
        bytes: Vec<u8>,
    },
    /// A folder asked for without its trailing `/`: redirect there, so relative links work.
    Redirect(String),
    /// Nothing (or something that may not be served).
    NotFound,
}

/// Looks `rel` up under the site folder `root`.
pub fn find(root: &Path, rel: &str) -> Found {
    let Some(segments) = safe_segments(rel) else {
        return Found::NotFound;
    };
    let Ok(root) = root.canonicalize() else {
        return Found::NotFound;
    };
    let mut path = root.clone();
    for s in &segments {
        path.push(s);
    }
    let Ok(meta) = std::fs::symlink_metadata(&path) else {
        return Found::NotFound;
    };
    let path = if meta.is_dir() {
        if !rel.is_empty() && !rel.ends_with('/') {
            let last = rel.rsplit('/').next().unwrap_or(rel);
            return Found::Redirect(format!("{last}/"));
        }
        path.join("index.html")
    } else if meta.file_type().is_symlink() {
        return Found::NotFound;
    } else {
        path
    };
    // Whatever the path went through, it must still be inside the site.
    match path.canonicalize() {
        Ok(real) if real.starts_with(&root) && real.is_file() => match std::fs::read(&real) {
            Ok(bytes) => Found::File { path: real, bytes },
            Err(_) => Found::NotFound,
        },
        _ => Found::NotFound,
    }
}

/// The decoded segments of a URL path, or `None` when any may not be served: empty after
/// decoding into `..`, `.`, a hidden name, a backslash, a NUL or a non-UTF-8 byte.
fn safe_segments(rel: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for raw in rel.split('/') {
        if raw.is_empty() {
            continue;
        }
        let s = percent_encoding::percent_decode_str(raw)
            .decode_utf8()
            .ok()?;
        if s.starts_with('.') || s.contains(['/', '\\', '\0']) {
            return None;
        }
        out.push(s.into_owned());
    }
    Some(out)
}

/// The content type for a file name.
pub fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "xml" => "application/xml; charset=utf-8",
        "txt" | "md" => "text/plain; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "ico" => "image/x-icon",
        "pdf" => "application/pdf",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "mp4" => "video/mp4",
        "mp3" => "audio/mpeg",
        _ => "application/octet-stream",
    }
}

/// A weak validator from the bytes: equal bytes, equal tag.
fn etag(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(bytes);
    let hex = crate::hex(&digest[..12]);
    format!("\"{hex}\"")
}

/// Answers a request for `rel` under the site `root`; `decorate` may rewrite an HTML page (the
/// live-reload script of `quire serve`).
pub fn respond(
    root: &Path,
    rel: &str,
    headers: &HeaderMap,
    decorate: &dyn Fn(Vec<u8>) -> Vec<u8>,
) -> Response {
    match find(root, rel) {
        Found::Redirect(to) => {
            (StatusCode::MOVED_PERMANENTLY, [(header::LOCATION, to)]).into_response()
        }
        Found::File { path, bytes } => {
            let ctype = content_type(&path);
            let bytes = if ctype.starts_with("text/html") {
                decorate(bytes)
            } else {
                bytes
            };
            let tag = etag(&bytes);
            if headers
                .get(header::IF_NONE_MATCH)
                .and_then(|v| v.to_str().ok())
                == Some(tag.as_str())
            {
                return (StatusCode::NOT_MODIFIED, [(header::ETAG, tag)]).into_response();
            }
            file_response(StatusCode::OK, ctype, Some(tag), bytes)
        }
        Found::NotFound => {
            let page = root.join("404.html");
            match std::fs::read(&page) {
                Ok(bytes) => file_response(
                    StatusCode::NOT_FOUND,
                    "text/html; charset=utf-8",
                    None,
                    decorate(bytes),
                ),
                Err(_) => (StatusCode::NOT_FOUND, "not found\n").into_response(),
            }
        }
    }
}

fn file_response(
    status: StatusCode,
    ctype: &'static str,
    tag: Option<String>,
    bytes: Vec<u8>,
) -> Response {
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Some(tag) = tag.and_then(|t| HeaderValue::from_str(&t).ok()) {
        h.insert(header::ETAG, tag);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_outside_the_site_or_hidden_is_served() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("site");
        std::fs::create_dir_all(root.join("a")).unwrap();
        std::fs::write(root.join("a/index.html"), "page").unwrap();
        std::fs::write(root.join(".quire-build.json"), "{}").unwrap();
        std::fs::write(tmp.path().join("secret"), "s").unwrap();
        std::os::unix::fs::symlink(tmp.path().join("secret"), root.join("link")).unwrap();
        std::os::unix::fs::symlink(tmp.path(), root.join("up")).unwrap();
        assert!(matches!(find(&root, "a/"), Found::File { .. }));
        assert!(matches!(find(&root, "a"), Found::Redirect(ref to) if to == "a/"));
        for bad in [
            "../secret",
            "a/../../secret",
            "%2e%2e/secret",
            "a/%2e%2e%2f%2e%2e%2fsecret",
            ".quire-build.json",
            "%2equire-build.json",
            "link",
            "up/secret",
            "a%5c..%5c..%5csecret",
            "a%00",
        ] {
            assert!(
                matches!(find(&root, bad), Found::NotFound),
                "{bad} was served"
            );
        }
    }
}
