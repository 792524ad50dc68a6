//! `quire serve`: one theme's site on loopback, re-rendered when a note (or the theme) changes,
//! with open pages reloading themselves.
//!
//! ```text
//!   notify ──hint──▶ debounce (a quiet spell) ──▶ render (incremental) ──changed──▶ broadcast
//!                                                                                    │
//!   browser ◀── page + /__quire/live.js ◀── axum ◀── /__quire/events (SSE) ◀────────┘
//! ```
//!
//! Watcher events are only hints that something may have changed; the render finds out what did,
//! and an unchanged site sends no reload. The site on disk stays exactly what `quire render`
//! writes: the reload script is added to HTML pages as they are served, never written.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::stream::Stream;
use tokio::sync::broadcast;

use crate::render::{self, Content, Quiet, RenderError, SITE_DIR};
use crate::vault::Vault;

/// How long the vault must stay quiet before a render: an editor's save is several events.
const QUIET: Duration = Duration::from_millis(120);

/// What to serve.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The theme.
    pub theme: String,
    /// The port on 127.0.0.1 (0: any free one).
    pub port: u16,
}

/// `quire serve` could not start or keep going.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Rendering failed before the server started.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// The network or the watcher failed.
    #[error("{context}: {source}")]
    Io {
        /// What quire was doing.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

#[derive(Clone)]
struct Shared {
    site: PathBuf,
    reloads: broadcast::Sender<u64>,
}

/// Renders the theme, then serves it on loopback until interrupted, re-rendering on change.
/// `ready` is told the address once the server listens.
pub fn serve(
    vault: &Vault,
    options: &ServeOptions,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), ServeError> {
    let out = vault.root().join(SITE_DIR);
    render_once(vault, &options.theme, &out)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| ServeError::Io {
            context: "could not start the server".into(),
            source,
        })?;
    let (reloads, _) = broadcast::channel(16);
    let shared = Shared {
        site: out.join(&options.theme),
        reloads: reloads.clone(),
    };

    // The watcher only wakes the renderer thread; no work happens on notify's thread.
    let (hints, wake) = mpsc::channel::<()>();
    let root = vault.root().to_path_buf();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let relevant = match &event {
            // Reading a file is no change; the render's own reads would wake it forever.
            Ok(e) if matches!(e.kind, notify::EventKind::Access(_)) => false,
            Ok(e) => e.paths.iter().any(|p| is_content(&root, p)),
            // An overflow or error: the vault may have changed in any way.
            Err(_) => true,
        };
        if relevant {
            let _ = hints.send(());
        }
    })
    .map_err(|e| ServeError::Io {
        context: "could not watch the vault".into(),
        source: std::io::Error::other(e),
    })?;
    notify::Watcher::watch(&mut watcher, vault.root(), notify::RecursiveMode::Recursive).map_err(
        |e| ServeError::Io {
            context: "could not watch the vault".into(),
            source: std::io::Error::other(e),
        },
    )?;

    let renderer = {
        let vault = vault.clone();
        let theme = options.theme.clone();
        std::thread::spawn(move || {
            let mut build = 0u64;
            while wake.recv().is_ok() {
                // Wait for a quiet spell, swallowing the burst.
                while wake.recv_timeout(QUIET).is_ok() {}
                match render_once(&vault, &theme, &out) {
                    Ok(true) => {
                        build += 1;
                        let _ = reloads.send(build);
                    }
                    Ok(false) => {}
                    Err(e) => eprintln!("quire: {e}"),
                }
            }
        })
    };

    let app = Router::new()
        .route("/__quire/live.js", get(live_script))
        .route("/__quire/events", get(events))
        .fallback(get(page))
        .with_state(shared);
    let limits = super::Limits::of(&vault.config().daemon);
    let hosts = vault.config().daemon.hosts.clone();
    let result = runtime.block_on(async move {
        let listener =
            tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], options.port)))
                .await
                .map_err(|source| ServeError::Io {
                    context: format!("could not listen on 127.0.0.1:{}", options.port),
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| ServeError::Io {
            context: "could not read the address".into(),
            source,
        })?;
        ready(addr);
        // Served pages are the user's notes: no other web page may read them either.
        let guard = super::guard::Guard::new(addr, &hosts);
        let app = app.layer(axum::middleware::from_fn_with_state(
            guard,
            super::guard::guard,
        ));
        super::listen::serve(listener, app, limits, signals())
            .await
            .map_err(|source| ServeError::Io {
                context: "the server failed".into(),
                source,
            })
    });
    drop(watcher);
    let _ = renderer.join();
    result
}

/// Renders the theme; whether the site changed.
fn render_once(vault: &Vault, theme: &str, out: &Path) -> Result<bool, RenderError> {
    // The configuration may have changed too.
    let vault = Vault::open(vault.root()).map_err(|e| RenderError::Config(e.to_string()))?;
    let content = Content::work_tree(&vault)?;
    let reports = render::render(&content, &[theme.to_owned()], out, &Quiet)?;
    Ok(reports.iter().any(|r| r.changed))
}

/// Whether a changed path can change the site: the vault's content and themes, and quire.toml;
/// not quire's own folders, Git's, the rendered sites, or hidden and temporary files.
fn is_content(root: &Path, path: &Path) -> bool {
    path.strip_prefix(root)
        .ok()
        .and_then(Path::to_str)
        .is_some_and(|rel| !rel.is_empty() && crate::index::is_content_path(rel))
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn signals() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

async fn page(State(shared): State<Shared>, request: Request) -> Response {
    let rel = request.uri().path().trim_start_matches('/').to_owned();
    let headers = request.headers().clone();
    let site = shared.site.clone();
    // File reads are blocking; keep them off the async workers.
    tokio::task::spawn_blocking(move || super::site::respond(&site, &rel, &headers, &inject_reload))
        .await
        .unwrap_or_else(|_| {
            (
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal error\n",
            )
                .into_response()
        })
}

/// Adds the live-reload script to an HTML page as it is served.
fn inject_reload(html: Vec<u8>) -> Vec<u8> {
    const TAG: &[u8] = b"<script src=\"/__quire/live.js\" defer></script>\n";
    let at = html
        .windows(7)
        .rposition(|w| w.eq_ignore_ascii_case(b"</body>"))
        .unwrap_or(html.len());
    let mut out = Vec::with_capacity(html.len() + TAG.len());
    out.extend_from_slice(&html[..at]);
    out.extend_from_slice(TAG);
    out.extend_from_slice(&html[at..]);
    out
}

async fn live_script() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/javascript; charset=utf-8"),
        )],
        "// quire serve: reload when the site is rebuilt.\n\
         (function () {\n\
           var source;\n\
           function connect() {\n\
             source = new EventSource(\"/__quire/events\");\n\
             source.addEventListener(\"reload\", function () { window.location.reload(); });\n\
           }\n\
           // A page kept in the back/forward cache would hold its stream, and a browser opens\n\
           // at most six connections to a host: let it go while hidden.\n\
           window.addEventListener(\"pagehide\", function () { source.close(); });\n\
           window.addEventListener(\"pageshow\", function (e) { if (e.persisted) connect(); });\n\
           connect();\n\
         })();\n",
    )
}

async fn events(
    State(shared): State<Shared>,
) -> Sse<impl Stream<Item = Result<Event, std::convert::Infallible>>> {
    let rx = shared.reloads.subscribe();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let data = match rx.recv().await {
            Ok(build) => build.to_string(),
            // Missed some: one reload covers them all.
            Err(broadcast::error::RecvError::Lagged(_)) => "lagged".to_owned(),
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok(Event::default().event("reload").data(data)), rx))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reload_script_goes_before_the_body_ends() {
        let page = inject_reload(b"<html><body><p>x</p></body></html>".to_vec());
        assert_eq!(
            String::from_utf8(page).unwrap(),
            "<html><body><p>x</p><script src=\"/__quire/live.js\" defer></script>\n</body></html>"
        );
    }

    #[test]
    fn only_content_changes_wake_the_renderer() {
        let root = Path::new("/v");
        assert!(is_content(root, Path::new("/v/notes/a.md")));
        assert!(is_content(
            root,
            Path::new("/v/themes/mine/templates/note.html")
        ));
        assert!(is_content(root, Path::new("/v/quire.toml")));
        for ignored in [
            "/v/_site/paper/index.html",
            "/v/.quire/state.db",
            "/v/.git/index",
            "/v/notes/.a.md.swp",
            "/v/07_LOGS/x.jsonl",
            "/elsewhere",
        ] {
            assert!(!is_content(root, Path::new(ignored)), "{ignored}");
        }
    }
}
