//! Who is at the other end of a gRPC call: a TCP client, or this process's own gateway.
//!
//! The gateway calls the gRPC server over TCP, usually this process's own over loopback
//! (`GATEWAY_UPSTREAM` unset, or `http://127.0.0.1:9090` as compose and the manifests set it). By its
//! socket address it is then a peer at 127.0.0.1 like any other local process, and every gateway caller
//! would share that one address's login and registration limit (and be recorded as 127.0.0.1 on its
//! session) unless an operator listed 127.0.0.1 in `TRUSTED_PROXIES`, which would also believe
//! `X-Forwarded-For` from anything else on the machine. Instead the gateway's connections register
//! themselves here while they are open ([`GatewayConnections::channel`]), each by both its ends, and
//! [`PeerLayer`] marks a call that arrives on one of them as [`Peer::Gateway`]: a trusted proxy by
//! construction, whose caller is the last hop of the `x-forwarded-for` it appends. The kernel keeps
//! each (local address, remote address) pair unique among open connections, and a pair leaves the set
//! before its socket closes, so no other connection can be taken for the gateway's. When the upstream
//! is another process, its connections never reach this server and the set changes nothing.

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

/// Both ends of a TCP connection, as `(client, server)`, with IPv4-mapped IPv6 addresses as IPv4, so
/// that the two sides of one connection name it alike.
type Ends = (SocketAddr, SocketAddr);

fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// The gateway's open connections to its upstream, by both their ends.
#[derive(Debug, Clone, Default)]
pub struct GatewayConnections(Arc<Mutex<HashSet<Ends>>>);

impl GatewayConnections {
    fn set(&self) -> std::sync::MutexGuard<'_, HashSet<Ends>> {
        // The set is left consistent by every critical section (one insert or remove).
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the connection from `client` to `server` is one of the gateway's.
    pub fn contains(&self, client: SocketAddr, server: SocketAddr) -> bool {
        self.set().contains(&(canonical(client), canonical(server)))
    }

    /// A lazily connecting channel to `upstream` (an `http://host:port` URL) over TCP, whose
    /// connections are registered while they are open. Like any channel, it connects on its first call
    /// (resolving the host then) and again after a connection ends.
    pub fn channel(&self, upstream: &str) -> anyhow::Result<Channel> {
        let endpoint = Endpoint::from_shared(upstream.to_owned())?;
        let uri = endpoint.uri();
        let host = uri
            .host()
            .ok_or_else(|| anyhow::anyhow!("{upstream} names no host"))?;
        let authority = format!("{host}:{}", uri.port_u16().unwrap_or(80));
        let connections = self.clone();
        let connector = tower::service_fn(move |_: axum::http::Uri| {
            let (connections, authority) = (connections.clone(), authority.clone());
            async move {
                let stream = TcpStream::connect(authority.as_str()).await?;
                stream.set_nodelay(true)?;
                let ends = (
                    canonical(stream.local_addr()?),
                    canonical(stream.peer_addr()?),
                );
                connections.set().insert(ends);
                Ok::<_, io::Error>(TokioIo::new(Registered {
                    stream,
                    ends,
                    connections,
                }))
            }
        });
        Ok(endpoint.connect_with_connector_lazy(connector))
    }
}

/// One of the gateway's connections: registered from connect until drop.
#[derive(Debug)]
struct Registered {
    stream: TcpStream,
    ends: Ends,
    connections: GatewayConnections,
}

impl Drop for Registered {
    fn drop(&mut self) {
        // Runs before `stream` is dropped (and its port released).
        self.connections.set().remove(&self.ends);
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
        let info = request.extensions().get::<TcpConnectInfo>();
        let (remote, local) = (
            info.and_then(TcpConnectInfo::remote_addr),
            info.and_then(TcpConnectInfo::local_addr),
        );
        let peer = match (remote, local) {
            (Some(remote), Some(local)) if self.gateway.contains(remote, local) => {
                Peer::Gateway(remote)
            }
            (remote, _) => Peer::Tcp(remote),
        };
        request.extensions_mut().insert(peer);
        self.inner.call(request)
    }
}
