//! Bounds on the connections a listener holds, the same on REST, the gateway and gRPC.
//!
//! Without them a client could hold a connection open for ever by sending half a request head, or
//! nothing; twenty thousand such connections took the process to its open-file limit, after which no
//! listener could accept anyone (issue 22). Three bounds, configured per process and applied to each
//! listener:
//!
//! - **a cap on open connections** (`MAX_CONNECTIONS`, per listener): a connection beyond it is
//!   accepted and closed at once, so that it neither waits in the kernel's backlog nor takes a file
//!   past the cap; the connections already open go on being served;
//! - **an idle timeout** (`IDLE_TIMEOUT`): a connection on which no byte has moved either way for that
//!   long is closed, HTTP/1.1 or HTTP/2 alike (it is enforced on the socket, below the protocol; a
//!   request in progress always moves bytes within `REQUEST_TIMEOUT`, which is shorter); one that has
//!   not sent its first byte within `HEADER_READ_TIMEOUT` is closed then, on every listener, so a
//!   silent connection holds a place for seconds, not for the idle timeout;
//! - **a header-read timeout** (`HEADER_READ_TIMEOUT`, HTTP/1.1 on REST and the gateway): a request
//!   head must arrive whole within it, counted from when the server starts waiting for it, so a
//!   client that trickles a byte at a time is closed too. (hyper starts this clock when it waits for
//!   the next request on a kept-alive connection as well.) gRPC speaks HTTP/2 only; there the idle
//!   timeout and the cap bound a connection that never completes a request.
//!
//! [`serve_http`] serves an axum router this way; the gRPC server takes [`Guarded`] connections from
//! [`LimitedListener::incoming`].

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::time::{Instant, Sleep};
use tower::ServiceExt as _;

/// The bounds every listener applies (`HEADER_READ_TIMEOUT`, `IDLE_TIMEOUT`, `MAX_CONNECTIONS`).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    /// Open connections per listener.
    pub max_connections: usize,
}

/// A listener that holds at most `max_connections` connections, each [`Guarded`].
#[derive(Debug)]
pub struct LimitedListener {
    listener: TcpListener,
    permits: Arc<Semaphore>,
    limits: ConnectionLimits,
    name: &'static str,
    /// When a refused connection was last logged (one line a second at most, however many come).
    last_refusal_logged: Option<Instant>,
}

impl LimitedListener {
    pub fn new(listener: TcpListener, limits: ConnectionLimits, name: &'static str) -> Self {
        Self {
            listener,
            permits: Arc::new(Semaphore::new(limits.max_connections)),
            limits,
            name,
            last_refusal_logged: None,
        }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The next connection within the cap; those beyond it are closed as they come.
    pub async fn accept(&mut self) -> (Guarded<TcpStream>, SocketAddr) {
        loop {
            let (stream, addr) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of files, or a connection reset before it was accepted: wait a little
                    // rather than spin (as axum's own accept loop does).
                    tracing::warn!(listener = self.name, error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else {
                drop(stream);
                let now = Instant::now();
                if self
                    .last_refusal_logged
                    .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1))
                {
                    self.last_refusal_logged = Some(now);
                    tracing::warn!(
                        listener = self.name,
                        max_connections = self.limits.max_connections,
                        "connection closed at once: the listener holds as many as it may"
                    );
                }
                continue;
            };
            let _ = stream.set_nodelay(true);
            return (Guarded::new(stream, permit, self.limits), addr);
        }
    }

    /// The accepted connections as a stream (what tonic's server takes), until the stream is dropped.
    pub fn incoming(
        mut self,
    ) -> tokio_stream::wrappers::ReceiverStream<io::Result<Guarded<TcpStream>>> {
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    (io, _) = self.accept() => {
                        if tx.send(Ok(io)).await.is_err() {
                            break;
                        }
                    }
                    () = tx.closed() => break,
                }
            }
        });
        tokio_stream::wrappers::ReceiverStream::new(rx)
    }
}

/// A connection that holds one of its listener's permits until it closes, and fails its next read
/// once no byte has moved either way for the idle timeout.
#[derive(Debug)]
pub struct Guarded<T> {
    inner: T,
    idle_timeout: Duration,
    /// How long the client has to send its first byte.
    first_byte_timeout: Duration,
    /// Whether the client has sent anything yet.
    heard_from: bool,
    last_activity: Instant,
    /// Fires at `last_activity + idle_timeout` or earlier; moved on lazily, when it fires, so that a
    /// busy connection does not touch the timer on every read.
    idle: Pin<Box<Sleep>>,
    _permit: OwnedSemaphorePermit,
}

impl<T> Guarded<T> {
    fn new(inner: T, permit: OwnedSemaphorePermit, limits: ConnectionLimits) -> Self {
        let now = Instant::now();
        let first_byte_timeout = limits.header_read_timeout.min(limits.idle_timeout);
        Self {
            inner,
            idle_timeout: limits.idle_timeout,
            first_byte_timeout,
            heard_from: false,
            last_activity: now,
            idle: Box::pin(tokio::time::sleep_until(now + first_byte_timeout)),
            _permit: permit,
        }
    }

    /// Whether the connection has been idle too long; otherwise arms the timer for when it would be.
    fn idle_expired(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            if self.idle.as_mut().poll(cx).is_pending() {
                return false;
            }
            let timeout = if self.heard_from {
                self.idle_timeout
            } else {
                self.first_byte_timeout
            };
            let deadline = self.last_activity + timeout;
            if deadline <= Instant::now() {
                return true;
            }
            self.idle.as_mut().reset(deadline);
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.last_activity = Instant::now();
                    this.heard_from = true;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if this.idle_expired(cx) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "connection idle for longer than IDLE_TIMEOUT",
            ))),
            other => other,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            this.last_activity = Instant::now();
        }
        written
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            this.last_activity = Instant::now();
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for Guarded<TcpStream> {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// Serves `router` on `listener` (HTTP/1.1 and HTTP/2) within `limits`, with the client's address as
/// `ConnectInfo<SocketAddr>`, until `shutdown` completes; then stops accepting, lets each connection
/// finish its in-flight requests, and returns when all have closed.
pub async fn serve_http(
    mut listener: LimitedListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(listener.limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());

    // Each connection task holds a receiver of `stop`; `run` returns when all have dropped theirs.
    let (stop, stopped) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (io, addr) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let service = router.clone().map_request(
            move |mut request: axum::http::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ConnectInfo(addr));
                request
            },
        );
        let builder = builder.clone();
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            let connection = builder.serve_connection_with_upgrades(
                TokioIo::new(io),
                TowerToHyperService::new(service),
            );
            tokio::pin!(connection);
            let mut stopping = false;
            loop {
                tokio::select! {
                    result = connection.as_mut() => {
                        if let Err(e) = result {
                            tracing::debug!(error = %e, "connection closed");
                        }
                        break;
                    }
                    _ = stopped.changed(), if !stopping => {
                        stopping = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
        });
    }
    drop(listener);
    drop(stopped);
    let _ = stop.send(true);
    stop.closed().await;
    Ok(())
}
