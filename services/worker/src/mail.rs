//! Sending email over SMTP (lettre). Development servers (maildev, MailHog) speak plain SMTP without
//! authentication, which is what `smtp://host:port` means here.
//!
//! Every email names the event it was sent for: a `Message-ID` derived from (event, recipient), the same
//! however often it is sent, and the headers `X-StreamBank-Event-Id` and `X-StreamBank-Kind`. The one
//! repeat exactly-once sending cannot rule out (a crash between the SMTP server's answer and the record
//! of it, `docs/events.md`) therefore carries the same `Message-ID` as the first copy, so a receiver, or a
//! test, can see it for what it is and drop it.

use anyhow::Context as _;
use lettre::message::MultiPart;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

/// The header naming the event an email was sent for.
pub const EVENT_ID_HEADER: &str = "X-StreamBank-Event-Id";
/// The header naming what kind of email it is (`verification`, or the event type it notifies of).
pub const KIND_HEADER: &str = "X-StreamBank-Kind";

/// How long the SMTP exchange of one email may take.
pub const SMTP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: lettre::message::Mailbox,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("from", &self.from.to_string())
            .finish()
    }
}

/// One email about one event, to one recipient.
#[derive(Debug, Clone, Copy)]
pub struct Email<'a> {
    pub event_id: Uuid,
    pub kind: &'a str,
    pub to: &'a str,
    pub subject: &'a str,
    pub body: &'a str,
}

impl Mailer {
    /// `smtp_url` is `smtp://host:port`; `from` is a mailbox such as `StreamBank <no-reply@example.com>`.
    pub fn new(smtp_url: &str, from: &str) -> anyhow::Result<Self> {
        let rest = smtp_url
            .strip_prefix("smtp://")
            .context("SMTP_URL must look like smtp://host:port")?;
        let (host, port) = match rest.trim_end_matches('/').rsplit_once(':') {
            Some((host, port)) => (host, port.parse().context("SMTP_URL has a bad port")?),
            None => (rest.trim_end_matches('/'), 25),
        };
        let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(port)
            .timeout(Some(SMTP_TIMEOUT))
            .build();
        Ok(Self {
            transport,
            from: from.parse().context("MAIL_FROM is not a mailbox")?,
        })
    }

    /// The `Message-ID` of the email about `event_id` to `recipient`: the same every time it is sent.
    pub fn message_id(&self, event_id: Uuid, recipient: &str) -> String {
        let digest = Sha256::digest(recipient.to_ascii_lowercase().as_bytes());
        let tag: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        format!("<{}.{tag}@{}>", event_id.simple(), self.from.email.domain())
    }

    /// Sends an email as plain text with an HTML alternative (the same words, its links clickable);
    /// returns once the SMTP server has accepted it. An address that is not
    /// one is a [`lettre::address::AddressError`], which the worker treats as permanent.
    #[tracing::instrument(name = "Send an email", skip_all, fields(to = %email.to, kind = email.kind, event_id = %email.event_id))]
    pub async fn send(&self, email: Email<'_>) -> anyhow::Result<()> {
        let to: lettre::message::Mailbox = email.to.parse()?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(email.subject)
            .message_id(Some(self.message_id(email.event_id, email.to)))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str(EVENT_ID_HEADER),
                email.event_id.to_string(),
            ))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str(KIND_HEADER),
                email.kind.to_owned(),
            ))
            .multipart(MultiPart::alternative_plain_html(
                email.body.to_owned(),
                html(email.body),
            ))?;
        self.transport
            .send(message)
            .await
            .context("the SMTP server did not accept the email")?;
        Ok(())
    }
}

/// The HTML form of a plain-text body: every character escaped, paragraphs kept, and each `http://` or
/// `https://` word made a link.
pub fn html(text: &str) -> String {
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let paragraphs: Vec<String> = text
        .trim_end()
        .split("\n\n")
        .map(|paragraph| {
            let lines: Vec<String> = paragraph
                .lines()
                .map(|line| {
                    line.split(' ')
                        .map(|word| {
                            if word.starts_with("http://") || word.starts_with("https://") {
                                let url = escape(word);
                                format!("<a href=\"{url}\">{url}</a>")
                            } else {
                                escape(word)
                            }
                        })
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect();
            format!("<p>{}</p>", lines.join("<br>\n"))
        })
        .collect();
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"></head><body>\n{}\n</body></html>\n",
        paragraphs.join("\n")
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn html_escapes_and_links() {
        let html = super::html(
            "Hello <Ann & Bob>,\n\nopen http://localhost:8080/v1/users/verify-email?id=1&code=ab\nnow.\n",
        );
        assert!(
            html.contains("<p>Hello &lt;Ann &amp; Bob&gt;,</p>"),
            "{html}"
        );
        assert!(
            html.contains(
                "<a href=\"http://localhost:8080/v1/users/verify-email?id=1&amp;code=ab\">"
            ),
            "{html}"
        );
        assert!(html.contains("<br>\nnow.</p>"), "{html}");
    }
}
