//! Bounds on the connections a listener holds, the same on REST, the gateway and gRPC.
//!
//! Without them a client could hold a connection open for ever by sending half a request head, or
//! nothing, or by never reading its answers; twenty thousand such connections took the process to
//! its open-file limit, after which no listener could accept anyone (issue 22). The bounds,
//! configured per process and applied to each listener:
//!
//! - **a cap on open connections** (`MAX_CONNECTIONS`, per listener) and **one per client address**
//!   (`MAX_CONNECTIONS_PER_CLIENT`, per listener; the proxies in `TRUSTED_PROXIES` are exempt, as
//!   every client behind them shares their address): a connection beyond either is accepted and
//!   closed at once, so that it neither waits in the kernel's backlog nor takes a file past the
//!   cap; the connections already open go on being served;
//! - **an idle timeout** (`IDLE_TIMEOUT`): a connection on which no byte has moved either way for that
//!   long is closed, HTTP/1.1 or HTTP/2 alike (it is enforced on the socket, below the protocol; a
//!   request in progress always moves bytes within `REQUEST_TIMEOUT`, which is shorter); one that has
//!   not sent its first byte within `HEADER_READ_TIMEOUT` is closed then, on every listener, so a
//!   silent connection holds a place for seconds, not for the idle timeout;
//! - **a header-read timeout** (`HEADER_READ_TIMEOUT`): a request head must arrive whole within it,
//!   so a client that trickles a byte at a time is closed too. On HTTP/1.1 hyper enforces it,
//!   counted from when it starts waiting for a head (on a kept-alive connection as well). On HTTP/2
//!   (gRPC, and h2c on REST and the gateway) [`heads::HeadWatch`] follows the client's frames: the
//!   first request head must be whole within the timeout of the connection opening (a preface,
//!   settings or pings alone do not count), and every later head within it of its first frame;
//! - **a write timeout** (`WRITE_TIMEOUT`): a write that makes no progress for that long (the client
//!   stopped reading and the socket's buffers are full) closes the connection, so a slow reader
//!   holds neither a place nor the answers' memory for long.
//!
//! [`serve_http`] serves an axum router this way; the gRPC server takes [`Guarded`] connections from
//! [`LimitedListener::incoming`].

mod heads;

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
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

/// The bounds every listener applies (`HEADER_READ_TIMEOUT`, `IDLE_TIMEOUT`, `WRITE_TIMEOUT`,
/// `MAX_CONNECTIONS`, `MAX_CONNECTIONS_PER_CLIENT`).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    /// How long a write may make no progress.
    pub write_timeout: Duration,
    /// Open connections per listener.
    pub max_connections: usize,
    /// Open connections per listener from one client address (trusted proxies exempt).
    pub max_connections_per_client: usize,
}

/// How many connections each client address holds on one listener.
#[derive(Debug, Default)]
struct PerClient(Mutex<HashMap<IpAddr, usize>>);

/// One of a client address's places on a listener, given back when the connection closes.
#[derive(Debug)]
struct ClientSlot {
    clients: Arc<PerClient>,
    ip: IpAddr,
}

impl PerClient {
    /// A place for `ip`, unless it holds `max` already.
    fn take(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<ClientSlot> {
        let mut open = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let held = open.entry(ip).or_insert(0);
        if *held >= max {
            return None;
        }
        *held += 1;
        Some(ClientSlot {
            clients: Arc::clone(self),
            ip,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self
            .clients
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(held) = open.get_mut(&self.ip) {
            *held -= 1;
            if *held == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// A listener that holds at most `max_connections` connections, and at most
/// `max_connections_per_client` from one address, each [`Guarded`].
#[derive(Debug)]
pub struct LimitedListener {
    listener: TcpListener,
    permits: Arc<Semaphore>,
    clients: Arc<PerClient>,
    /// Addresses the per-client cap does not apply to (`TRUSTED_PROXIES`).
    exempt: Vec<IpAddr>,
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
            clients: Arc::default(),
            exempt: Vec::new(),
            limits,
            name,
            last_refusal_logged: None,
        }
    }

    /// Exempts `addresses` (the trusted proxies, behind which many clients share one address) from
    /// the per-client cap; the listener's cap still applies to them.
    #[must_use]
    pub fn exempting(mut self, addresses: &[IpAddr]) -> Self {
        self.exempt = addresses.iter().map(IpAddr::to_canonical).collect();
        self
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The next connection within the caps; those beyond them are closed as they come.
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
            let ip = addr.ip().to_canonical();
            let slot = if self.exempt.contains(&ip) {
                None
            } else {
                match self
                    .clients
                    .take(ip, self.limits.max_connections_per_client)
                {
                    Some(slot) => Some(slot),
                    None => {
                        drop(stream);
                        self.log_refusal("the client holds as many as it may");
                        continue;
                    }
                }
            };
            let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else {
                drop(stream);
                self.log_refusal("the listener holds as many as it may");
                continue;
            };
            let _ = stream.set_nodelay(true);
            return (Guarded::new(stream, permit, slot, self.limits), addr);
        }
    }

    /// Logs a refused connection, one line a second at most. (The client's address is not logged:
    /// a line a second would name one client of however many.)
    fn log_refusal(&mut self, reason: &'static str) {
        let now = Instant::now();
        if self
            .last_refusal_logged
            .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1))
        {
            self.last_refusal_logged = Some(now);
            tracing::warn!(
                listener = self.name,
                max_connections = self.limits.max_connections,
                max_connections_per_client = self.limits.max_connections_per_client,
                "connection closed at once: {reason}"
            );
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

/// A connection that holds one of its listener's permits (and its client's place) until it closes,
/// and fails once no byte has moved either way for the idle timeout, once a request head has taken
/// longer than the header-read timeout (HTTP/2; hyper times HTTP/1.1 heads), or once a write has
/// made no progress for the write timeout.
#[derive(Debug)]
pub struct Guarded<T> {
    inner: T,
    idle_timeout: Duration,
    /// How long the client has to send its first byte.
    first_byte_timeout: Duration,
    header_read_timeout: Duration,
    write_timeout: Duration,
    /// Whether the client has sent anything yet.
    heard_from: bool,
    last_activity: Instant,
    /// HTTP/2 request heads in progress.
    heads: heads::HeadWatch,
    /// Fires at the earliest of the read-side deadlines, or earlier; moved on lazily, when it fires,
    /// so that a busy connection does not touch the timer on every read.
    idle: Pin<Box<Sleep>>,
    /// Whether the last write was refused for want of room (the client is not reading).
    write_stalled: bool,
    /// Fires `write_timeout` after a write first stalled; made at the first stall.
    write_deadline: Option<Pin<Box<Sleep>>>,
    _permit: OwnedSemaphorePermit,
    _client: Option<ClientSlot>,
}

impl<T> Guarded<T> {
    fn new(
        inner: T,
        permit: OwnedSemaphorePermit,
        client: Option<ClientSlot>,
        limits: ConnectionLimits,
    ) -> Self {
        let now = Instant::now();
        let first_byte_timeout = limits.header_read_timeout.min(limits.idle_timeout);
        Self {
            inner,
            idle_timeout: limits.idle_timeout,
            first_byte_timeout,
            header_read_timeout: limits.header_read_timeout,
            write_timeout: limits.write_timeout,
            heard_from: false,
            last_activity: now,
            heads: heads::HeadWatch::new(now),
            idle: Box::pin(tokio::time::sleep_until(now + first_byte_timeout)),
            write_stalled: false,
            write_deadline: None,
            _permit: permit,
            _client: client,
        }
    }

    /// When an HTTP/2 request head in progress (or the first one) is due.
    fn head_deadline(&self) -> Option<Instant> {
        self.heads
            .awaited_since()
            .map(|since| since + self.header_read_timeout)
    }

    /// Why the connection has gone on too long without progress, if it has; otherwise arms the
    /// timer for when it would have.
    fn read_expired(&mut self, cx: &mut Context<'_>) -> Option<&'static str> {
        loop {
            if self.idle.as_mut().poll(cx).is_pending() {
                return None;
            }
            let timeout = if self.heard_from {
                self.idle_timeout
            } else {
                self.first_byte_timeout
            };
            let now = Instant::now();
            let idle_deadline = self.last_activity + timeout;
            if idle_deadline <= now {
                return Some(if self.heard_from {
                    "connection idle for longer than IDLE_TIMEOUT"
                } else {
                    "no byte within HEADER_READ_TIMEOUT"
                });
            }
            let deadline = match self.head_deadline() {
                Some(head) if head <= now => {
                    return Some("HTTP/2 request head not whole within HEADER_READ_TIMEOUT");
                }
                Some(head) => head.min(idle_deadline),
                None => idle_deadline,
            };
            self.idle.as_mut().reset(deadline);
        }
    }

    /// Notes a write's outcome: progress resets the write timeout; a write refused for want of room
    /// starts it, and fails once it has run out.
    fn after_write(
        &mut self,
        cx: &mut Context<'_>,
        written: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match written {
            Poll::Ready(Ok(n)) if n > 0 => {
                self.last_activity = Instant::now();
                self.write_stalled = false;
                Poll::Ready(Ok(n))
            }
            Poll::Pending => {
                let timer = self
                    .write_deadline
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(Duration::ZERO)));
                if !self.write_stalled {
                    self.write_stalled = true;
                    timer.as_mut().reset(Instant::now() + self.write_timeout);
                }
                if timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no write progress for WRITE_TIMEOUT",
                    )));
                }
                Poll::Pending
            }
            other => other,
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
                    let now = Instant::now();
                    this.last_activity = now;
                    this.heard_from = true;
                    let awaited = this.heads.awaited_since();
                    this.heads.observe(&buf.filled()[before..], now);
                    // A head that began with these bytes may be due before the timer fires.
                    if awaited.is_none()
                        && let Some(due) = this.head_deadline()
                        && due < this.idle.deadline()
                    {
                        this.idle.as_mut().reset(due);
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => match this.read_expired(cx) {
                Some(why) => Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, why))),
                None => Poll::Pending,
            },
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
        this.after_write(cx, written)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.after_write(cx, written)
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
