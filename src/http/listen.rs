//! Accepting connections within limits, so that clients that hold connections open can neither
//! stall the server nor take the file descriptors the pipeline needs.
//!
//! `axum::serve` keeps every connection as long as its client does: a client that sends half a
//! request and waits keeps its socket forever, and enough of them exhaust the process's file
//! descriptors, after which the pipeline cannot open a bundle or a note ("Too many open files").
//! Here each connection gets:
//!
//! * a **header timeout** (hyper's `header_read_timeout`): the request line and headers must arrive
//!   within it, and between two requests on a kept-alive connection the clock runs again;
//! * an **idle timeout**: a connection on which nothing is read or written for that long is closed
//!   (event streams write a heartbeat every 15 s, so they stay);
//! * a place under a **cap** on open connections. A connection over the cap is closed at once,
//!   without being read, and the process's descriptor limit is raised to what the system allows,
//!   so what the cap leaves is the pipeline's.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// How a server treats its connections (`[daemon]` in quire.toml for the daemon).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most connections open at once; more are closed as they arrive.
    pub max_connections: usize,
    /// How long a client may take to send a request's line and headers, and to start its next
    /// request on a kept-alive connection.
    pub header_timeout: Duration,
    /// How long a connection may see no bytes either way before it is closed.
    pub idle_timeout: Duration,
}

impl Limits {
    /// The daemon's limits from its configuration.
    pub fn of(config: &crate::vault::DaemonConfig) -> Self {
        Self {
            max_connections: config.max_connections.max(1),
            header_timeout: Duration::from_secs(config.header_timeout_secs.max(1)),
            idle_timeout: Duration::from_secs(config.idle_timeout_secs.max(1)),
        }
    }
}

/// How long in-flight requests get to finish once the server is asked to stop.
const DRAIN: Duration = Duration::from_secs(5);

/// Serves `router` on `listener` within `limits` until `shutdown` completes, then lets requests in
/// flight finish (up to [`DRAIN`]).
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let cap = limits.max_connections.min(descriptor_budget());
    let open = Arc::new(Semaphore::new(cap));
    let refused = AtomicU64::new(0);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    tokio::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of descriptors (or a connection reset before it was accepted): pause,
                    // so a burst of failures does not spin, then go on.
                    tracing::warn!("could not accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            // Over the cap: closed unread. Said now and then, not for each one.
            let n = refused.fetch_add(1, Ordering::Relaxed);
            if n.is_power_of_two() {
                tracing::warn!(
                    "{} connection(s) closed on arrival: {cap} are open, the most allowed (`[daemon] max_connections`)",
                    n + 1
                );
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(Idle::new(stream, limits.idle_timeout));
        let service = TowerToHyperService::new(router.clone());
        let connection = graceful.watch(builder.serve_connection(io, service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("connection ended: {e}");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("connections still open after {DRAIN:?} were closed");
    }
    Ok(())
}

/// How many connections the process can hold open and still leave the pipeline the descriptors it
/// needs: the soft limit on open files, first raised as far as the hard limit allows, less a
/// reserve for the vault, Git, SQLite and the watcher.
fn descriptor_budget() -> usize {
    const RESERVE: u64 = 256;
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{Resource, getrlimit, setrlimit};
        let mut limit = getrlimit(Resource::Nofile);
        if let Some(hard) = limit.maximum
            && limit.current.is_some_and(|soft| soft < hard)
        {
            limit.current = Some(hard.min(1 << 20));
            let _ = setrlimit(Resource::Nofile, limit);
            limit = getrlimit(Resource::Nofile);
        }
        match limit.current {
            Some(soft) => {
                usize::try_from(soft.saturating_sub(RESERVE).max(16)).unwrap_or(usize::MAX)
            }
            None => usize::MAX,
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = RESERVE;
        usize::MAX
    }
}

/// A stream that fails with `TimedOut` once nothing has been read or written on it for `limit`.
struct Idle {
    inner: TcpStream,
    limit: Duration,
    last: Instant,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl Idle {
    fn new(inner: TcpStream, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            last: Instant::now(),
            timer: Box::pin(tokio::time::sleep(limit)),
        }
    }

    /// What a read or write on the socket comes to: a result is progress and restarts the idle
    /// clock; while the socket waits, the timer is armed for the deadline, which fails the
    /// connection with `TimedOut` once it passes.
    fn track<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.last = Instant::now();
            return polled;
        }
        let deadline = self.last + self.limit;
        self.timer
            .as_mut()
            .reset(tokio::time::Instant::from_std(deadline));
        if Instant::now() >= deadline || self.timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the connection was idle too long",
            )));
        }
        Poll::Pending
    }
}

impl AsyncRead for Idle {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.track(cx, polled)
    }
}

impl AsyncWrite for Idle {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.track(cx, polled)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.track(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
