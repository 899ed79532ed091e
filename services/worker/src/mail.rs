//! Sending email over SMTP (lettre). Development servers (maildev, MailHog) speak plain SMTP without
//! authentication, which is what `smtp://host:port` means here.

use anyhow::Context as _;
use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};

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
            .timeout(Some(std::time::Duration::from_secs(10)))
            .build();
        Ok(Self {
            transport,
            from: from.parse().context("MAIL_FROM is not a mailbox")?,
        })
    }

    /// Sends a plain-text email; returns once the SMTP server has accepted it.
    #[tracing::instrument(name = "Send an email", skip(self, body), fields(to = %to))]
    pub async fn send(&self, to: &str, subject: &str, body: String) -> anyhow::Result<()> {
        let message = Message::builder()
            .from(self.from.clone())
            .to(to
                .parse()
                .with_context(|| format!("{to:?} is not an email address"))?)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body)?;
        self.transport
            .send(message)
            .await
            .context("the SMTP server did not accept the email")?;
        Ok(())
    }
}
