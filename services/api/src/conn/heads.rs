//! Where a connection's HTTP/2 request heads begin and end, read off the bytes the client sends.
//!
//! hyper bounds the time an HTTP/1.1 request head may take (`header_read_timeout`) but not an HTTP/2
//! one: a client could send the connection preface and nothing more, or half a `HEADERS` frame,
//! and keep a connection for the idle timeout, or for ever by trickling bytes or pinging. hyper
//! does not say when a head starts arriving, so [`HeadWatch`] follows the frame layout (RFC 9113
//! §4.1: a 9-byte header giving the payload's length, type and flags) without decoding anything,
//! and tells [`super::Guarded`] since when a head has been awaited:
//!
//! - from the moment the connection opens until its first request head is whole (the preface,
//!   `SETTINGS`, `PING` and `WINDOW_UPDATE` frames do not count);
//! - afterwards, from the first byte of a `HEADERS` frame until its header block ends (the frame,
//!   or the last `CONTINUATION` after it, carries `END_HEADERS`, and its payload has arrived).
//!
//! A connection that turns out to speak HTTP/1.1 is left to hyper's own timeout. Trailers are
//! `HEADERS` frames too and are bounded the same way.

use tokio::time::Instant;

/// The client connection preface (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER_LEN: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_HEADERS: u8 = 0x4;

#[derive(Debug)]
enum Protocol {
    /// This many bytes of the preface have arrived, and nothing else.
    Undecided(usize),
    Http1,
    Http2,
}

/// Follows an HTTP/2 client's frames far enough to know whether a request head is on its way.
#[derive(Debug)]
pub(super) struct HeadWatch {
    protocol: Protocol,
    /// The current frame's header, as much of it as has arrived.
    header: [u8; FRAME_HEADER_LEN],
    header_len: usize,
    /// Bytes of the current frame's payload still to come.
    payload_left: usize,
    /// Whether the current frame ends a header block.
    ends_head: bool,
    /// Since when a request head has been awaited (see the module's doc); `None` when none is.
    awaited_since: Option<Instant>,
}

impl HeadWatch {
    /// A watch over a connection opened at `opened`, whose first head is awaited from then.
    pub(super) fn new(opened: Instant) -> Self {
        Self {
            protocol: Protocol::Undecided(0),
            header: [0; FRAME_HEADER_LEN],
            header_len: 0,
            payload_left: 0,
            ends_head: false,
            awaited_since: Some(opened),
        }
    }

    /// Since when a request head has been awaited and not completed, if one has.
    pub(super) fn awaited_since(&self) -> Option<Instant> {
        self.awaited_since
    }

    /// Takes the next bytes the client sent, which arrived at `now`.
    pub(super) fn observe(&mut self, mut data: &[u8], now: Instant) {
        while !data.is_empty() {
            match self.protocol {
                Protocol::Http1 => return,
                Protocol::Undecided(matched) => {
                    let expected = &PREFACE[matched..];
                    let n = expected.len().min(data.len());
                    if data[..n] != expected[..n] {
                        // HTTP/1.1 (or garbage, which hyper refuses): hyper's timeout applies.
                        self.protocol = Protocol::Http1;
                        self.awaited_since = None;
                        return;
                    }
                    data = &data[n..];
                    self.protocol = if matched + n == PREFACE.len() {
                        Protocol::Http2
                    } else {
                        Protocol::Undecided(matched + n)
                    };
                }
                Protocol::Http2 if self.payload_left > 0 => {
                    let n = self.payload_left.min(data.len());
                    self.payload_left -= n;
                    data = &data[n..];
                    if self.payload_left == 0 {
                        self.frame_done();
                    }
                }
                Protocol::Http2 => {
                    let n = (FRAME_HEADER_LEN - self.header_len).min(data.len());
                    self.header[self.header_len..self.header_len + n].copy_from_slice(&data[..n]);
                    self.header_len += n;
                    data = &data[n..];
                    if self.header_len == FRAME_HEADER_LEN {
                        self.header_len = 0;
                        self.frame_started(now);
                    }
                }
            }
        }
    }

    fn frame_started(&mut self, now: Instant) {
        let [l0, l1, l2, kind, flags, ..] = self.header;
        self.payload_left = usize::from(l0) << 16 | usize::from(l1) << 8 | usize::from(l2);
        if kind == HEADERS && self.awaited_since.is_none() {
            self.awaited_since = Some(now);
        }
        self.ends_head = matches!(kind, HEADERS | CONTINUATION) && flags & END_HEADERS != 0;
        if self.payload_left == 0 {
            self.frame_done();
        }
    }

    fn frame_done(&mut self) {
        if self.ends_head {
            self.ends_head = false;
            self.awaited_since = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut bytes = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        bytes.extend_from_slice(&[0, 0, 0, 1]);
        bytes.extend_from_slice(payload);
        bytes
    }

    #[test]
    fn follows_heads_across_reads_of_any_size() {
        let opened = Instant::now();
        let later = opened + std::time::Duration::from_secs(5);
        let settings = frame(0x4, 0, &[0; 6]);
        let ping = frame(0x6, 0, &[0; 8]);
        let head_start = frame(HEADERS, 0, &[0x82; 20]);
        let head_end = frame(CONTINUATION, END_HEADERS, &[0x84; 3]);
        let data = frame(0x0, 0x1, &[b'x'; 40]);
        let whole_head = frame(HEADERS, END_HEADERS, &[0x82; 7]);

        for chunk in [1, 2, 7, 9, 10, 1000] {
            let mut watch = HeadWatch::new(opened);
            let mut feed = |bytes: &[u8], at| {
                for part in bytes.chunks(chunk) {
                    watch.observe(part, at);
                }
                watch.awaited_since
            };
            // The preface, settings and pings leave the first head awaited since the opening.
            assert_eq!(feed(PREFACE, later), Some(opened), "chunk {chunk}");
            assert_eq!(feed(&settings, later), Some(opened));
            assert_eq!(feed(&ping, later), Some(opened));
            assert_eq!(feed(&head_start, later), Some(opened));
            assert_eq!(feed(&head_end[..5], later), Some(opened));
            assert_eq!(feed(&head_end[5..], later), None);
            assert_eq!(feed(&data, later), None);
            assert_eq!(feed(&ping, later), None);
            // A later head is awaited from its first frame's header on.
            assert_eq!(feed(&whole_head[..9], later), Some(later));
            assert_eq!(feed(&whole_head[9..], later), None);
        }
    }

    #[test]
    fn http1_is_left_alone() {
        let opened = Instant::now();
        let mut watch = HeadWatch::new(opened);
        watch.observe(b"P", opened);
        assert_eq!(watch.awaited_since(), Some(opened));
        watch.observe(b"OST / HTTP/1.1\r\n", opened);
        assert_eq!(watch.awaited_since(), None);
        watch.observe(&frame(HEADERS, 0, b"x"), opened);
        assert_eq!(watch.awaited_since(), None);
    }
}
