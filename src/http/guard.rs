//! Keeping other web pages out of a server on the user's machine (SPEC §11).
//!
//! A server on loopback is reachable from every page the user's browser opens. Two attacks matter:
//!
//! * **DNS rebinding**: a page on `evil.example` re-points its own name at 127.0.0.1, and its
//!   scripts then read the daemon as if it were their own origin. Those requests carry
//!   `Host: evil.example`, so only requests whose `Host` names this server are answered: an IP
//!   literal or `localhost` on the port it listens on, or a name the operator configured
//!   (`[daemon] hosts`, for a reverse proxy). A name nobody configured is refused.
//! * **Cross-site requests** (CSRF, and `fetch`/`<script>` from a foreign page): browsers say who
//!   is asking in `Origin` and `Sec-Fetch-Site`. A request from another origin is refused unless it
//!   is the user following a link (a `GET` navigation reads nothing into the foreign page). The
//!   token is only ever read from `Authorization`, which a foreign page cannot make a browser send,
//!   and no CORS headers are ever sent, so the browser keeps foreign scripts from responses.
//!
//! Every response also says `nosniff`, may not be framed and is not embeddable cross-origin.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Which `Host` (and `Origin`) values name this server.
#[derive(Debug, Clone)]
pub(crate) struct Guard {
    port: u16,
    /// Configured names, lowercased; `Some(port)` when the entry named one.
    names: Arc<[(String, Option<u16>)]>,
}

impl Guard {
    /// A guard for a server bound to `bound`, also answering to `hosts` (`name` or `name:port`).
    pub(crate) fn new(bound: SocketAddr, hosts: &[String]) -> Self {
        let names = hosts
            .iter()
            .filter_map(|h| {
                let (name, port) = split_host(h.trim())?;
                Some((name, port))
            })
            .collect::<Vec<_>>();
        Self {
            port: bound.port(),
            names: names.into(),
        }
    }

    /// Whether `authority` (`host[:port]`, as in `Host`) names this server; `default_port` is the
    /// port a missing one means (80 for `http`, 443 for `https`).
    fn allows(&self, authority: &str, default_port: u16) -> bool {
        let Some((name, port)) = split_host(authority) else {
            return false;
        };
        let port_or_default = port.unwrap_or(default_port);
        // An IP literal cannot be re-pointed by anyone's DNS, and `localhost` never leaves the
        // machine in today's browsers.
        if (name.parse::<IpAddr>().is_ok() || name == "localhost") && port_or_default == self.port {
            return true;
        }
        self.names.iter().any(|(allowed, allowed_port)| {
            *allowed == name && allowed_port.is_none_or(|p| Some(p) == port || p == port_or_default)
        })
    }

    /// Why `method` with `headers` may not be answered, or `None` when it may.
    fn refusal(&self, method: &Method, headers: &HeaderMap) -> Option<Response> {
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
        match host {
            Some(h) if self.allows(h, 80) => {}
            Some(h) => {
                return Some(refuse(
                    "host_not_allowed",
                    format!(
                        "this server does not answer to the name `{}`; use its address (127.0.0.1:{}), or add the name to `[daemon] hosts` in quire.toml if a proxy forwards it",
                        h.chars().take(100).collect::<String>(),
                        self.port
                    ),
                ));
            }
            None => {
                return Some(refuse(
                    "host_not_allowed",
                    "a request must say which server it is for (the `Host` header)".into(),
                ));
            }
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let ok = origin
                .to_str()
                .ok()
                .and_then(|o| {
                    let (scheme, rest) = o.split_once("://")?;
                    let default_port = match scheme.to_ascii_lowercase().as_str() {
                        "http" => 80,
                        "https" => 443,
                        _ => return None,
                    };
                    Some(self.allows(rest, default_port))
                })
                .unwrap_or(false);
            if !ok {
                return Some(refuse(
                    "origin_not_allowed",
                    "requests from other web pages are not answered; use the control plane this daemon serves, or a program that sends no `Origin`".into(),
                ));
            }
        }
        let site = headers
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if matches!(site, "cross-site" | "same-site") {
            let navigation = headers
                .get("sec-fetch-mode")
                .is_some_and(|m| m.as_bytes() == b"navigate")
                && matches!(*method, Method::GET | Method::HEAD);
            if !navigation {
                return Some(refuse(
                    "origin_not_allowed",
                    "requests from other web pages are not answered; open the control plane this daemon serves instead".into(),
                ));
            }
        }
        None
    }
}

fn refuse(code: &str, message: String) -> Response {
    (
        StatusCode::FORBIDDEN,
        axum::Json(json!({ "error": { "code": code, "message": message } })),
    )
        .into_response()
}

/// `host[:port]` lowercased without a trailing dot, or `None` when it is not one. IPv6 literals
/// keep their brackets off: `[::1]:7878` is `("::1", Some(7878))`.
fn split_host(authority: &str) -> Option<(String, Option<u16>)> {
    if authority.is_empty() || authority.contains(['/', '@', ' ', '?', '#']) {
        return None;
    }
    let (name, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?.parse().ok()?),
        };
        (inside.to_owned(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((n, p)) if !n.contains(':') => (n.to_owned(), Some(p.parse().ok()?)),
            Some(_) => return None,
            None => (authority.to_owned(), None),
        }
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    (!name.is_empty()).then_some((name, port))
}

/// Middleware: refuses what [`Guard`] refuses and adds the headers every response carries.
pub(crate) async fn guard(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    if let Some(refused) = guard.refusal(request.method(), request.headers()) {
        tracing::debug!(
            "refused {} {} from another origin or host",
            request.method(),
            request.uri().path()
        );
        return with_safety_headers(refused);
    }
    with_safety_headers(next.run(request).await)
}

fn with_safety_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(hosts: &[&str]) -> Guard {
        let hosts: Vec<String> = hosts.iter().map(|s| s.to_string()).collect();
        Guard::new("127.0.0.1:7878".parse().unwrap(), &hosts)
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn its_own_address_and_localhost_are_allowed_on_its_port_only() {
        let g = guard(&[]);
        for ok in [
            "127.0.0.1:7878",
            "localhost:7878",
            "LOCALHOST.:7878",
            "[::1]:7878",
        ] {
            assert!(g.allows(ok, 80), "{ok}");
        }
        for bad in [
            "127.0.0.1:7879",
            "127.0.0.1",
            "evil.example:7878",
            "evil.example",
            "localhost.evil.example:7878",
            "[::1]",
            "",
            "user@127.0.0.1:7878",
            "127.0.0.1:7878/x",
            "::1:7878",
        ] {
            assert!(!g.allows(bad, 80), "{bad}");
        }
    }

    #[test]
    fn configured_names_match_with_or_without_their_port() {
        let g = guard(&["quire.example.com", "box.lan:8080"]);
        assert!(g.allows("quire.example.com", 80));
        assert!(g.allows("Quire.Example.com:443", 80));
        assert!(g.allows("box.lan:8080", 80));
        assert!(!g.allows("box.lan:8081", 80));
        assert!(!g.allows("box.lan", 80));
        assert!(!g.allows("other.example.com", 80));
    }

    #[test]
    fn foreign_origins_and_cross_site_fetches_are_refused_navigations_are_not() {
        let g = guard(&[]);
        let host = ("host", "127.0.0.1:7878");
        assert!(g.refusal(&Method::GET, &headers(&[host])).is_none());
        assert!(
            g.refusal(
                &Method::POST,
                &headers(&[host, ("origin", "http://127.0.0.1:7878")])
            )
            .is_none()
        );
        for origin in [
            "http://evil.example",
            "null",
            "http://127.0.0.1:8000",
            "http://evil.example:7878",
            "file://",
        ] {
            assert!(
                g.refusal(&Method::GET, &headers(&[host, ("origin", origin)]))
                    .is_some(),
                "{origin}"
            );
        }
        let cross = ("sec-fetch-site", "cross-site");
        assert!(
            g.refusal(
                &Method::GET,
                &headers(&[host, cross, ("sec-fetch-mode", "no-cors")])
            )
            .is_some()
        );
        assert!(
            g.refusal(
                &Method::GET,
                &headers(&[host, cross, ("sec-fetch-mode", "navigate")])
            )
            .is_none()
        );
        assert!(
            g.refusal(
                &Method::POST,
                &headers(&[host, cross, ("sec-fetch-mode", "navigate")])
            )
            .is_some()
        );
        assert!(g.refusal(&Method::GET, &headers(&[])).is_some());
    }
}
