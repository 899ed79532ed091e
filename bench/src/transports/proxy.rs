//! The bytes each call puts on the wire, counted by a TCP proxy in the process on one warm connection:
//! HTTP/1.1 headers, HTTP/2 frames and HPACK as they really are, not estimates.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use super::load::{Conn, Customer, grpc_channel};
use super::{Op, Transport};
use crate::ledger::random_other;

/// Calls on a fresh connection before the byte counters are read, so connection set-up (TCP, the
/// HTTP/2 preface and SETTINGS, the first HPACK entries) is not charged to the measured calls.
pub const WIRE_WARM_UP_CALLS: u64 = 10;

/// Bytes per call on a warm connection, each direction.
#[derive(Debug, Clone, Copy)]
pub struct Wire {
    pub request: f64,
    pub response: f64,
    pub connections: u64,
}

/// Bytes per call of every pair of `ops` and `transports` (the service layer has no wire): `calls`
/// sequential calls each as `customer`, on one warm connection to the listener in `addrs`.
pub async fn count(
    addrs: &BTreeMap<Transport, SocketAddr>,
    ops: &[Op],
    transports: &[Transport],
    customer: &Customer,
    accounts: i64,
    calls: u64,
) -> anyhow::Result<BTreeMap<(Op, Transport), Wire>> {
    let mut wire = BTreeMap::new();
    for &op in ops {
        for &transport in transports
            .iter()
            .filter(|&&t| t != Transport::Service && op.on(t))
        {
            let w = wire_bytes(transport, addrs[&transport], op, customer, accounts, calls)
                .await
                .with_context(|| format!("counting bytes of {} {}", transport.name(), op.rpc()))?;
            wire.insert((op, transport), w);
        }
    }
    Ok(wire)
}

/// Bytes per call of `op` on one warm connection to `target`, through a counting proxy.
async fn wire_bytes(
    transport: Transport,
    target: SocketAddr,
    op: Op,
    customer: &Customer,
    accounts: i64,
    calls: u64,
) -> anyhow::Result<Wire> {
    let proxy = CountingProxy::start(target).await?;
    let mut conn = match transport {
        Transport::Grpc => Conn::grpc(&grpc_channel(proxy.addr).await?),
        Transport::Rest | Transport::Gateway => {
            Conn::http(proxy.addr, &Arc::new(AtomicU64::new(0)))?
        }
        Transport::Service => anyhow::bail!("the service layer has no wire"),
    };
    for _ in 0..WIRE_WARM_UP_CALLS {
        conn.call(op, customer, random_other(customer.account, accounts))
            .await?;
    }
    // Let anything still in flight (a WINDOW_UPDATE, a SETTINGS ack) arrive before reading.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (request0, response0) = proxy.counts();
    for _ in 0..calls {
        conn.call(op, customer, random_other(customer.account, accounts))
            .await?;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (request1, response1) = proxy.counts();
    let connections = proxy.connections.load(Ordering::Relaxed);
    drop(conn);
    proxy.stop();
    let per_call = |bytes: u64| bytes as f64 / calls.max(1) as f64;
    Ok(Wire {
        request: per_call(request1 - request0),
        response: per_call(response1 - response0),
        connections,
    })
}

/// A TCP proxy on loopback that forwards every connection to `target` and counts the bytes it copies:
/// client to server (`request`) and server to client (`response`), over all its connections.
#[derive(Debug)]
struct CountingProxy {
    addr: SocketAddr,
    request: Arc<AtomicU64>,
    response: Arc<AtomicU64>,
    connections: Arc<AtomicU64>,
    accept: tokio::task::JoinHandle<()>,
}

impl CountingProxy {
    async fn start(target: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the counting proxy")?;
        let addr = listener.local_addr()?;
        let request = Arc::new(AtomicU64::new(0));
        let response = Arc::new(AtomicU64::new(0));
        let connections = Arc::new(AtomicU64::new(0));
        let (req, resp, conns) = (
            Arc::clone(&request),
            Arc::clone(&response),
            Arc::clone(&connections),
        );
        let accept = tokio::spawn(async move {
            // Dropping the set (when the accept task is aborted) ends every proxied connection.
            let mut proxied = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                conns.fetch_add(1, Ordering::Relaxed);
                let (req, resp) = (Arc::clone(&req), Arc::clone(&resp));
                proxied.spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let mut client = Counted {
                        inner: client,
                        read: req,
                    };
                    let mut server = Counted {
                        inner: server,
                        read: resp,
                    };
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
            }
        });
        Ok(Self {
            addr,
            request,
            response,
            connections,
            accept,
        })
    }

    fn counts(&self) -> (u64, u64) {
        (
            self.request.load(Ordering::Relaxed),
            self.response.load(Ordering::Relaxed),
        )
    }

    fn stop(self) {
        self.accept.abort();
    }
}

/// A stream that adds every byte read from it to `read` (so each direction is counted once, where the
/// proxy reads it).
#[derive(Debug)]
struct Counted {
    inner: TcpStream,
    read: Arc<AtomicU64>,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        self.read.fetch_add(read as u64, Ordering::Relaxed);
        polled
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
