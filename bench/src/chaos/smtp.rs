//! A tiny SMTP server that records every message it accepts: its recipients, the headers the checker
//! counts by (`X-StreamBank-Event-Id`, `X-StreamBank-Kind`, `Message-ID`, `Subject`) and, for the
//! verification emails, the body (which holds the link the set-up opens). It speaks what lettre uses:
//! EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT.
//!
//! [`SmtpSink::stop`] closes the listener and every open connection, as a crashed mail server would;
//! [`SmtpSink::start`] listens on the same port again.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// One accepted message.
#[derive(Debug, Clone)]
pub struct Mail {
    pub recipients: Vec<String>,
    pub subject: String,
    pub event_id: Option<String>,
    pub kind: Option<String>,
    pub message_id: Option<String>,
    /// The decoded body of verification emails only (the others are not needed).
    pub body: Option<String>,
    /// When it was accepted, since the sink was created.
    pub at: Duration,
}

impl Mail {
    pub fn is_verification(&self) -> bool {
        self.kind.as_deref() == Some("verification")
            || (self.kind.is_none() && self.subject == VERIFICATION_SUBJECT)
    }
}

/// The subject of the verification email (used when the kind header is missing).
pub const VERIFICATION_SUBJECT: &str = "Confirm your email address";

#[derive(Debug)]
pub struct SmtpSink {
    pub addr: SocketAddr,
    mails: Arc<Mutex<Vec<Mail>>>,
    created: Instant,
    server: Mutex<Option<JoinHandle<()>>>,
}

impl SmtpSink {
    /// A sink on a free loopback port, listening.
    pub async fn start_new() -> anyhow::Result<Arc<Self>> {
        let port = super::procs::free_port()?;
        let sink = Arc::new(Self {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            mails: Arc::default(),
            created: Instant::now(),
            server: Mutex::new(None),
        });
        sink.start()?;
        Ok(sink)
    }

    /// Listens (again) on the sink's port.
    pub fn start(&self) -> anyhow::Result<()> {
        let socket = TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        socket
            .bind(self.addr)
            .with_context(|| format!("SMTP sink: binding {}", self.addr))?;
        let listener = socket.listen(1024)?;
        let mails = Arc::clone(&self.mails);
        let created = self.created;
        let server = tokio::spawn(async move {
            // Dropping this set (when the server task is aborted) aborts every connection.
            let mut sessions = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        if let Ok((stream, _)) = accepted {
                            let mails = Arc::clone(&mails);
                            sessions.spawn(async move {
                                let _ = session(stream, mails, created).await;
                            });
                        }
                    }
                    Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
                }
            }
        });
        *self.lock_server() = Some(server);
        Ok(())
    }

    /// Goes down: no listener, every connection closed.
    pub async fn stop(&self) {
        let server = self.lock_server().take();
        if let Some(server) = server {
            server.abort();
            let _ = server.await;
        }
    }

    fn lock_server(&self) -> std::sync::MutexGuard<'_, Option<JoinHandle<()>>> {
        self.server
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every message accepted so far.
    pub fn mails(&self) -> Vec<Mail> {
        self.mails
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn count(&self) -> usize {
        self.mails
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }
}

async fn session(
    stream: TcpStream,
    mails: Arc<Mutex<Vec<Mail>>>,
    created: Instant,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    write.write_all(b"220 chaos-sink ESMTP\r\n").await?;
    let mut recipients = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        if read.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line).into_owned();
        let command = text.trim_end().to_ascii_uppercase();
        let verb = command.split_whitespace().next().unwrap_or("");
        let reply: &[u8] = match verb {
            "EHLO" => b"250-chaos-sink\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n",
            "HELO" => b"250 chaos-sink\r\n",
            "MAIL" => {
                recipients.clear();
                b"250 OK\r\n"
            }
            "RCPT" => {
                recipients.push(address(&text));
                b"250 OK\r\n"
            }
            "RSET" => {
                recipients.clear();
                b"250 OK\r\n"
            }
            "NOOP" => b"250 OK\r\n",
            "QUIT" => {
                write.write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            "DATA" => {
                write.write_all(b"354 end with .\r\n").await?;
                let mut data = Vec::new();
                loop {
                    line.clear();
                    if read.read_until(b'\n', &mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == b".\r\n" || line == b".\n" {
                        break;
                    }
                    // Dot-stuffing: a leading ".." stands for ".".
                    let start = usize::from(line.starts_with(b".."));
                    data.extend_from_slice(&line[start..]);
                }
                let mail = parse(
                    &String::from_utf8_lossy(&data),
                    std::mem::take(&mut recipients),
                    created.elapsed(),
                );
                mails
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(mail);
                b"250 OK queued\r\n"
            }
            _ => b"502 not implemented\r\n",
        };
        write.write_all(reply).await?;
    }
}

/// The address in `RCPT TO:<a@b>`, lowercased.
fn address(line: &str) -> String {
    let inner = match (line.find('<'), line.rfind('>')) {
        (Some(a), Some(b)) if a < b => &line[a + 1..b],
        _ => line.split(':').nth(1).unwrap_or("").trim(),
    };
    inner.trim().to_ascii_lowercase()
}

/// Headers (unfolded) and, for verification emails, the decoded body.
fn parse(data: &str, recipients: Vec<String>, at: Duration) -> Mail {
    let (headers, body) = entity(data);
    let get = |name: &str| header(&headers, name);
    let mut mail = Mail {
        recipients,
        subject: get("subject").unwrap_or_default(),
        event_id: get("x-streambank-event-id").map(|v| v.to_ascii_lowercase()),
        kind: get("x-streambank-kind"),
        message_id: get("message-id"),
        body: None,
        at,
    };
    if mail.is_verification() {
        mail.body = Some(text(&headers, body));
    }
    mail
}

type Headers = Vec<(String, String)>;

/// A MIME entity's headers (names lowercased, folded values unfolded) and its raw body.
fn entity(data: &str) -> (Headers, &str) {
    let (head, body) = data
        .split_once("\r\n\r\n")
        .or_else(|| data.split_once("\n\n"))
        .unwrap_or((data, ""));
    let mut headers: Headers = Vec::new();
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = headers.last_mut() {
                if !value.is_empty() {
                    value.push(' ');
                }
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    (headers, body)
}

fn header(headers: &Headers, name: &str) -> Option<String> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
}

/// The readable text of an entity: its `text/plain` part if it is multipart (else every part's text),
/// decoded from quoted-printable or base64.
fn text(headers: &Headers, body: &str) -> String {
    let content_type = header(headers, "content-type").unwrap_or_default();
    if content_type.to_ascii_lowercase().starts_with("multipart/")
        && let Some(boundary) = content_type
            .split(';')
            .find_map(|p| p.trim().strip_prefix("boundary="))
    {
        let delimiter = format!("--{}", boundary.trim_matches('"'));
        let parts: Vec<(Headers, &str)> = body
            .split(delimiter.as_str())
            .skip(1)
            .filter(|p| !p.starts_with("--"))
            .map(|p| entity(p.trim_start_matches(['\r', '\n'])))
            .collect();
        let plain = parts.iter().find(|(h, _)| {
            header(h, "content-type")
                .is_none_or(|t| t.to_ascii_lowercase().starts_with("text/plain"))
        });
        return match plain {
            Some((h, b)) => text(h, b),
            None => parts.iter().map(|(h, b)| text(h, b)).collect(),
        };
    }
    match header(headers, "content-transfer-encoding")
        .map(|e| e.to_ascii_lowercase())
        .as_deref()
    {
        Some("quoted-printable") => quoted_printable(body),
        Some("base64") => base64(body),
        _ => body.to_owned(),
    }
}

/// Decodes base64 (whitespace ignored).
fn base64(text: &str) -> String {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for sextet in text.bytes().filter_map(value) {
        acc = (acc << 6) | u32::from(sextet);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Decodes quoted-printable text (soft line breaks and `=XX` escapes).
fn quoted_printable(text: &str) -> String {
    let joined = text.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && let Some(hex) = joined.get(i + 1..i + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Headers are found whatever their case, folded values are unfolded, quoted-printable is decoded.
    #[test]
    fn parses_headers_and_quoted_printable() {
        let data = "Subject: Confirm your email address\r\nX-StreamBank-Event-Id: ABC\r\n\
                    x-streambank-kind: verification\r\nMessage-ID:\r\n <m@x>\r\n\
                    Content-Transfer-Encoding: quoted-printable\r\n\r\nhttp://h/v?id=3D1&code=\r\n=3Dx\r\n";
        let mail = parse(data, vec!["a@b".into()], Duration::ZERO);
        assert_eq!(mail.event_id.as_deref(), Some("abc"));
        assert_eq!(mail.message_id.as_deref(), Some("<m@x>"));
        assert!(mail.is_verification());
        assert_eq!(mail.body.as_deref(), Some("http://h/v?id=1&code=x\r\n"));
        assert_eq!(address("RCPT TO:<Ann@Example.com>\r\n"), "ann@example.com");
    }

    /// A multipart/alternative email (as lettre sends plain text with an HTML alternative): the plain
    /// part, decoded.
    #[test]
    fn reads_the_plain_part_of_a_multipart_email() {
        let data = "Subject: Confirm your email address\r\n\
                    Content-Type: multipart/alternative;\r\n boundary=\"XyZ\"\r\n\r\n\
                    --XyZ\r\nContent-Type: text/plain; charset=utf-8\r\n\
                    Content-Transfer-Encoding: base64\r\n\r\naHR0cDovL2gvdj9pZD0x\r\n\
                    --XyZ\r\nContent-Type: text/html\r\n\r\n<a href=x>x</a>\r\n--XyZ--\r\n";
        let mail = parse(data, vec!["a@b".into()], Duration::ZERO);
        assert_eq!(mail.body.as_deref(), Some("http://h/v?id=1"));
    }
}
