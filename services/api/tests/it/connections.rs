//! The bounds every listener puts on its connections (issue 22, `conn`), over raw sockets: HTTP/2
//! heads within the header-read timeout, slow readers closed after the write timeout, and a cap per
//! client address.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::common::TestApp;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

/// The client connection preface of HTTP/2.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const WINDOW_UPDATE: u8 = 0x8;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// One HTTP/2 frame.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("a small frame");
    let mut bytes = len.to_be_bytes()[1..].to_vec();
    bytes.extend_from_slice(&[kind, flags]);
    bytes.extend_from_slice(&stream.to_be_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

/// A `GET path` request head as an HPACK block: literals only, no Huffman coding.
fn get_head(path: &str) -> Vec<u8> {
    // :method GET and :scheme http are static-table entries 2 and 6 (indexed: 0x80 | index).
    let mut block = vec![0x82, 0x86];
    // :path (4) and :authority (1) as literals without indexing, with the static table's name.
    for (index, value) in [(4u8, path), (1u8, "x")] {
        block.push(index);
        block.push(u8::try_from(value.len()).expect("a short value"));
        block.extend_from_slice(value.as_bytes());
    }
    block
}

/// The preface and a `SETTINGS` frame whose initial window is as large as HTTP/2 allows, and a
/// connection window as large, so that the server is never held back by flow control, only by TCP.
fn h2_opening() -> Vec<u8> {
    let mut bytes = PREFACE.to_vec();
    // SETTINGS_INITIAL_WINDOW_SIZE (0x4) = 2^31 - 1.
    bytes.extend(frame(SETTINGS, 0, 0, &[0, 4, 0x7f, 0xff, 0xff, 0xff]));
    bytes.extend(frame(WINDOW_UPDATE, 0, 0, &0x7fff_0000u32.to_be_bytes()));
    bytes
}

/// How long until the server closes `stream` (end of file or reset), reading and dropping whatever
/// it sends meanwhile, waiting at most `within`.
async fn closed_after(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let left = within.checked_sub(started.elapsed())?;
        match tokio::time::timeout(left, stream.read(&mut chunk)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// The three listeners' addresses.
fn listeners(app: &TestApp) -> [(&'static str, SocketAddr); 3] {
    let addr = |base: &str| {
        base.trim_start_matches("http://")
            .parse()
            .expect("an address")
    };
    [
        ("REST", addr(&app.rest_base)),
        ("gateway", addr(&app.gateway_base)),
        ("gRPC", app.grpc_addr),
    ]
}

/// On HTTP/2 (gRPC, and h2c on REST and the gateway) a client that sends the preface and nothing,
/// or keeps pinging, or sends half a `HEADERS` frame, is closed once the header-read timeout has
/// passed, well before the idle timeout; one that sent a whole request stays open, and is closed
/// when a later head stalls.
#[tokio::test]
async fn http2_heads_must_be_whole_within_the_header_read_timeout() {
    let app = TestApp::spawn_with(&[("HEADER_READ_TIMEOUT", "1s"), ("IDLE_TIMEOUT", "30s")]).await;
    let header_read = Duration::from_secs(1);
    let mut waits = Vec::new();
    for (name, addr) in listeners(&app) {
        for case in ["the preface only", "pings", "half a HEADERS frame"] {
            waits.push(tokio::spawn(async move {
                let mut stream = TcpStream::connect(addr).await.expect("connect");
                stream.write_all(&h2_opening()).await.expect("write");
                match case {
                    "pings" => {
                        let pinger = async {
                            loop {
                                tokio::time::sleep(Duration::from_millis(200)).await;
                                if stream.write_all(&frame(PING, 0, 0, &[7; 8])).await.is_err() {
                                    break;
                                }
                            }
                        };
                        let started = Instant::now();
                        let _ = tokio::time::timeout(Duration::from_secs(5), pinger).await;
                        let closed = closed_after(&mut stream, Duration::from_secs(1)).await;
                        return (name, case, closed.map(|_| started.elapsed()));
                    }
                    "half a HEADERS frame" => {
                        let head = frame(HEADERS, END_STREAM | END_HEADERS, 1, &get_head("/x"));
                        stream.write_all(&head[..12]).await.expect("write");
                    }
                    _ => {}
                }
                (
                    name,
                    case,
                    closed_after(&mut stream, Duration::from_secs(5)).await,
                )
            }));
        }
    }
    for wait in waits {
        let (name, case, closed) = wait.await.expect("task");
        let closed = closed.unwrap_or_else(|| panic!("{name}, {case}: still open after 5 s"));
        assert!(
            closed >= header_read.mul_f32(0.9) && closed < header_read * 3,
            "{name}, {case}: closed after {closed:?}"
        );
    }

    // A whole request first: the connection is not timed out while it idles between requests, but
    // a second head that stalls halfway closes it.
    for (name, addr) in listeners(&app) {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(&h2_opening()).await.expect("write");
        let head = frame(HEADERS, END_STREAM | END_HEADERS, 1, &get_head("/healthz"));
        stream.write_all(&head).await.expect("write");
        assert_eq!(
            closed_after(&mut stream, header_read * 2).await,
            None,
            "{name}: closed after a whole request"
        );
        let head = frame(HEADERS, END_STREAM | END_HEADERS, 3, &get_head("/healthz"));
        stream.write_all(&head[..12]).await.expect("write");
        let closed = closed_after(&mut stream, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("{name}: open 5 s after half a second head"));
        assert!(
            closed >= header_read.mul_f32(0.9),
            "{name}: closed after {closed:?}"
        );
    }
}

/// A client connection with a small receive buffer, so that what it does not read fills up fast.
async fn small_window_connect(addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    socket.connect(addr).await.expect("connect")
}

/// Reads what `stream` still delivers until the server closes it; how many bytes that was, or `None`
/// if it is still open after `within`.
async fn bytes_until_closed(stream: &mut TcpStream, within: Duration) -> Option<usize> {
    let started = Instant::now();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut total = 0;
    loop {
        let left = within.checked_sub(started.elapsed())?;
        match tokio::time::timeout(left, stream.read(&mut chunk)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(total),
            Ok(Ok(n)) => total += n,
        }
    }
}

/// A client that asks for many large answers and does not read them is closed once the server's
/// writes have made no progress for `WRITE_TIMEOUT`: over HTTP/1.1 (pipelined requests) and over
/// HTTP/2, on REST and the gateway, whose OpenAPI documents are the largest answers they have.
/// (gRPC connections pass through the same code: `conn::Guarded`.)
#[tokio::test]
async fn clients_that_do_not_read_are_closed_after_the_write_timeout() {
    let app = TestApp::spawn_with(&[
        ("WRITE_TIMEOUT", "1s"),
        ("IDLE_TIMEOUT", "30s"),
        ("HEADER_READ_TIMEOUT", "10s"),
    ])
    .await;
    for (name, addr) in listeners(&app).into_iter().take(2) {
        let document = app
            .client
            .get(format!("http://{addr}/openapi.json"))
            .send()
            .await
            .expect("the document")
            .bytes()
            .await
            .expect("its body")
            .len();
        // HTTP/2 on REST only: the gateway's document is too small for 200 of them (the most one
        // connection may ask at once) to outgrow the sockets' buffers for sure.
        let protocols: &[&str] = if name == "REST" {
            &["HTTP/1.1", "HTTP/2"]
        } else {
            &["HTTP/1.1"]
        };
        for &protocol in protocols {
            // HTTP/2: as many streams as the server allows at once (hyper's default, 200).
            let requests = if protocol == "HTTP/1.1" {
                (16 << 20) / document
            } else {
                199
            };
            let mut stream = small_window_connect(addr).await;
            let mut asked = Vec::new();
            if protocol == "HTTP/1.1" {
                for _ in 0..requests {
                    asked.extend_from_slice(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n");
                }
            } else {
                asked.extend(h2_opening());
                for i in 0..u32::try_from(requests).expect("a few") {
                    asked.extend(frame(
                        HEADERS,
                        END_STREAM | END_HEADERS,
                        2 * i + 1,
                        &get_head("/openapi.json"),
                    ));
                }
            }
            stream.write_all(&asked).await.expect("write the requests");
            // Not reading, for longer than the write timeout.
            tokio::time::sleep(Duration::from_secs(4)).await;
            let started = Instant::now();
            let got = bytes_until_closed(&mut stream, Duration::from_secs(10))
                .await
                .unwrap_or_else(|| panic!("{name}, {protocol}: still open"));
            let expected = requests * document;
            assert!(
                got < expected * 3 / 4,
                "{name}, {protocol}: {got} of {expected} bytes delivered"
            );
            assert!(
                started.elapsed() < Duration::from_secs(3),
                "{name}, {protocol}: closed {:?} after the client began reading",
                started.elapsed()
            );
        }
    }
}

/// A connection from `source` (a loopback address of its own) to `addr`.
async fn connect_from(source: IpAddr, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(source, 0))
        .expect("bind a loopback address");
    socket.connect(addr).await.expect("connect")
}

/// Whether `stream` is served: an HTTP/1.1 request is answered, or (gRPC) an HTTP/2 preface and a
/// whole head get a `SETTINGS` frame back and the connection stays open.
async fn served(stream: &mut TcpStream, grpc: bool) -> bool {
    let request = if grpc {
        let mut bytes = h2_opening();
        bytes.extend(frame(HEADERS, END_STREAM | END_HEADERS, 1, &get_head("/x")));
        bytes
    } else {
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()
    };
    if stream.write_all(&request).await.is_err() {
        return false;
    }
    let mut chunk = [0u8; 64];
    matches!(
        tokio::time::timeout(Duration::from_secs(2), stream.read(&mut chunk)).await,
        Ok(Ok(n)) if n > 0
    )
}

/// One client address holds at most `MAX_CONNECTIONS_PER_CLIENT` connections on each listener: its
/// next is closed at once while its others, and other clients, go on being served; a trusted
/// proxy, behind which many clients share an address, is not capped.
#[tokio::test]
async fn one_client_address_cannot_take_every_place() {
    let app = TestApp::spawn_with(&[
        ("MAX_CONNECTIONS", "16"),
        ("MAX_CONNECTIONS_PER_CLIENT", "3"),
        ("TRUSTED_PROXIES", "127.0.0.3"),
    ])
    .await;
    let (greedy, other, proxy): (IpAddr, IpAddr, IpAddr) = (
        [127, 0, 0, 2].into(),
        [127, 0, 0, 1].into(),
        [127, 0, 0, 3].into(),
    );
    for (name, addr) in listeners(&app) {
        let grpc = name == "gRPC";
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(connect_from(greedy, addr).await);
        }
        let mut refused = connect_from(greedy, addr).await;
        assert!(
            !served(&mut refused, grpc).await,
            "{name}: a fourth connection from one address was served"
        );
        for stream in &mut held {
            assert!(served(stream, grpc).await, "{name}: a held connection");
        }
        let mut others = Vec::new();
        for i in 0..3 {
            let mut stream = connect_from(other, addr).await;
            assert!(
                served(&mut stream, grpc).await,
                "{name}: another client's {i}th"
            );
            others.push(stream);
        }
        let mut proxied = Vec::new();
        for _ in 0..5 {
            let mut stream = connect_from(proxy, addr).await;
            assert!(served(&mut stream, grpc).await, "{name}: the trusted proxy");
            proxied.push(stream);
        }
        // A closed connection gives its client's place back.
        drop(held.pop());
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut again = connect_from(greedy, addr).await;
        assert!(served(&mut again, grpc).await, "{name}: a freed place");
    }
}
