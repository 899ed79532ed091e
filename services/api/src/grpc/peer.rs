//! Who is at the other end of a gRPC call: a TCP client, or this process's own gateway.
//!
//! When `GATEWAY_UPSTREAM` is unset the gateway calls this process's gRPC server over loopback, so by
//! its socket address it is a peer at 127.0.0.1 like any other local process, and every gateway
//! caller would share that one address's login and registration limit (and be recorded as 127.0.0.1 on
//! its session) unless an operator listed 127.0.0.1 in `TRUSTED_PROXIES`, which would also believe
//! `X-Forwarded-For` from anything else on the machine. Instead the gateway's connections register
//! their local addresses here while they are open ([`GatewayConnections::channel`]), and
//! [`PeerLayer`] marks a call that arrives on one of them as [`Peer::Gateway`]: a trusted proxy by
//! construction, whose caller is the last hop of the `x-forwarded-for` it appends. A TCP port is held
//! by one socket at a time, and an address leaves the set before its socket closes, so no other
//! connection can be taken for the gateway's.

use std::collections::HashSet;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use axum::http::{Extensions, HeaderMap, Request};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::transport::server::TcpConnectInfo;
use tonic::transport::{Channel, Endpoint};
use tower::{Layer, Service};

/// Who is calling (in every call's extensions, put there by [`PeerLayer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// A TCP client, at this address when the socket could tell.
    Tcp(Option<SocketAddr>),
    /// This process's gateway, on one of its own connections (from this address).
    Gateway(SocketAddr),
}

/// The caller's `user-agent`, as the client sent it. On the gateway's calls the gateway forwards its
/// client's header and its own gRPC client (tonic's channel) appends `tonic/<version>` to it, or sends
/// that alone when the client sent none; that addition is taken off again, so that a session opened
/// through the gateway records what REST would.
pub fn user_agent(extensions: &Extensions, headers: &HeaderMap) -> Option<String> {
    let sent = headers.get("user-agent")?.to_str().ok()?;
    if !matches!(extensions.get::<Peer>(), Some(Peer::Gateway(_))) {
        return Some(sent.to_owned());
    }
    let client = match sent.rsplit_once(' ') {
        Some((client, ours)) if ours.starts_with("tonic/") => client,
        None if sent.starts_with("tonic/") => return None,
        _ => sent,
    };
    Some(client.to_owned())
}

/// The local addresses of the gateway's open connections to this process's gRPC server.
#[derive(Debug, Clone, Default)]
pub struct GatewayConnections(Arc<Mutex<HashSet<SocketAddr>>>);

impl GatewayConnections {
    fn set(&self) -> std::sync::MutexGuard<'_, HashSet<SocketAddr>> {
        // The set is left consistent by every critical section (one insert or remove).
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `peer` is the far end of one of the gateway's open connections.
    pub fn contains(&self, peer: &SocketAddr) -> bool {
        self.set().contains(peer)
    }

    /// A lazily connecting channel to `addr` (this process's gRPC listener) over TCP, whose
    /// connections are registered while they are open. Like any channel, it connects on its first
    /// call and again after a connection ends.
    pub fn channel(&self, addr: SocketAddr) -> Channel {
        let connections = self.clone();
        let connector = tower::service_fn(move |_: axum::http::Uri| {
            let connections = connections.clone();
            async move {
                let stream = TcpStream::connect(addr).await?;
                stream.set_nodelay(true)?;
                let local = stream.local_addr()?;
                connections.set().insert(local);
                Ok::<_, io::Error>(TokioIo::new(Registered {
                    stream,
                    local,
                    connections,
                }))
            }
        });
        // The connector ignores the URI; the authority is what the server sees as `:authority`.
        Endpoint::from_shared(format!("http://{addr}"))
            .expect("a socket address makes a valid URI")
            .connect_with_connector_lazy(connector)
    }
}

/// One of the gateway's connections: registered from connect until drop.
#[derive(Debug)]
struct Registered {
    stream: TcpStream,
    local: SocketAddr,
    connections: GatewayConnections,
}

impl Drop for Registered {
    fn drop(&mut self) {
        // Runs before `stream` is dropped (and its port released).
        self.connections.set().remove(&self.local);
    }
}

impl AsyncRead for Registered {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Registered {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// Puts the call's [`Peer`] in its extensions.
#[derive(Debug, Clone)]
pub struct PeerLayer {
    gateway: GatewayConnections,
}

impl PeerLayer {
    pub fn new(gateway: GatewayConnections) -> Self {
        Self { gateway }
    }
}

impl<S> Layer<S> for PeerLayer {
    type Service = PeerService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PeerService {
            inner,
            gateway: self.gateway.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct PeerService<S> {
    inner: S,
    gateway: GatewayConnections,
}

impl<S, B> Service<Request<B>> for PeerService<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let remote = request
            .extensions()
            .get::<TcpConnectInfo>()
            .and_then(TcpConnectInfo::remote_addr);
        let peer = match remote {
            Some(addr) if self.gateway.contains(&addr) => Peer::Gateway(addr),
            remote => Peer::Tcp(remote),
        };
        request.extensions_mut().insert(peer);
        self.inner.call(request)
    }
}
