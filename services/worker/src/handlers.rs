//! What each consumer group does with an event. Every handler may see an event more than once; each
//! effect happens once:
//!
//! - database effects commit in one transaction with the `processed_events` row of (group, event);
//! - each email is claimed per (event, recipient) in Postgres before the worker talks to SMTP (a row in
//!   state `sending` with the claimer and a lease, taken in one statement), and marked `sent` once the
//!   SMTP server accepted it. No other worker can send it while the claim is fresh, nor after it is sent.
//!   Each attempt claims under a name of its own (the process's, and a fresh id), so that even two
//!   handlings of one event at once in one process could not both hold the claim.
//!
//! One window remains: a worker that dies (or stalls past its lease) after the SMTP server accepted an
//! email and before the mark commits leaves a claim that expires, and the email is sent again by whoever
//! takes it over. Closing it would need the mail server to take part in our transaction, which SMTP
//! cannot do. The repeat carries the same `Message-ID` and `X-StreamBank-Event-Id` ([`crate::mail`]), so
//! it can be recognised. (For verification emails the repeat carries a fresh link, and the first link
//! stops working, since only the newest secret's hash is kept.)

use streambank_events::payload::UserRegistered;
use streambank_events::{EventType, StreamEntry};
use streambank_service::Bank;
use streambank_service::effects::{EmailClaim, EmailDraft, Notice};
use tracing::Instrument as _;
use uuid::Uuid;

use crate::failure::{Contended, Poison};
use crate::group::Group;
use crate::handle::{Delivery, Handle, Outcome, handle_each};
use crate::mail::{Email, Mailer};

/// What handlers need.
#[derive(Debug, Clone)]
pub struct Handlers {
    pub bank: Bank,
    pub mailer: Mailer,
    pub public_base_url: String,
    /// Who this process is when it claims an email delivery (unique per process; each attempt adds an
    /// id of its own).
    pub claimer: String,
    /// How long a delivery claim holds: longer than an SMTP exchange may take (`WORKER_EMAIL_LEASE`).
    pub email_lease: std::time::Duration,
}

impl Handlers {
    /// Applies `entry` for `group`. `Ok` means done (including "nothing to do for this group");
    /// `Err` means try again later.
    pub async fn handle(&self, group: Group, entry: &StreamEntry) -> anyhow::Result<()> {
        match group {
            Group::EmailVerification => {
                let event_id: Uuid = entry
                    .event_id
                    .parse()
                    .map_err(|_| Poison(format!("event_id {:?} is not a UUID", entry.event_id)))?;
                // Other types, and types this version does not know, concern this group not.
                if EventType::parse(&entry.event_type) != Some(EventType::UserRegistered) {
                    return Ok(());
                }
                self.send_verification(event_id, serde_json::from_str(&entry.payload)?)
                    .await
            }
            Group::Notifications => match self.prepare_notification(entry).await? {
                Some(notice) => self.write_notifications(&[&notice]).await,
                None => Ok(()),
            },
            Group::NotificationEmails => match self.prepare_notification(entry).await? {
                Some(notice) => self.email_notifications(&notice).await,
                None => Ok(()),
            },
        }
    }

    /// The `notifications` group's way with the entries of one read: each event's notice is worked out
    /// in its own span, then the rows of all of them are written with their processed-event records in
    /// one statement (one round trip and one commit for the read, instead of a transaction per event).
    /// If that statement fails, every entry of the read is retried on its own.
    pub async fn notify_many(&self, deliveries: &[Delivery]) -> Vec<anyhow::Result<()>> {
        let prepared: Vec<anyhow::Result<Option<Notice>>> =
            futures_util::future::join_all(deliveries.iter().map(|d| {
                self.prepare_notification(&d.entry)
                    .instrument(d.span.clone())
            }))
            .await;
        let notices: Vec<&Notice> = prepared.iter().flatten().flatten().collect();
        let written = if notices.is_empty() {
            Ok(())
        } else {
            let span = tracing::info_span!("write notifications", events = notices.len());
            for d in deliveries {
                streambank_telemetry::add_link(&span, &d.span);
            }
            self.write_notifications(&notices).instrument(span).await
        };
        prepared
            .into_iter()
            .map(|p| match p {
                Err(e) => Err(e),
                Ok(None) => Ok(()),
                Ok(Some(_)) => match &written {
                    Ok(()) => Ok(()),
                    Err(e) => Err(anyhow::anyhow!("{e:#}")),
                },
            })
            .collect()
    }

    /// The notice of an entry for the notification groups: `None` for events nobody is notified of.
    async fn prepare_notification(&self, entry: &StreamEntry) -> anyhow::Result<Option<Notice>> {
        let event_id: Uuid = entry
            .event_id
            .parse()
            .map_err(|_| Poison(format!("event_id {:?} is not a UUID", entry.event_id)))?;
        let Some(event_type) = EventType::parse(&entry.event_type) else {
            return Ok(None);
        };
        self.bank
            .notice(event_id, &entry.occurred_at, event_type, &entry.payload)
            .await
    }

    async fn send_verification(&self, event_id: Uuid, e: UserRegistered) -> anyhow::Result<()> {
        let group = Group::EmailVerification.name();
        if self.bank.is_processed(group, event_id).await? {
            return Ok(());
        }
        // Nothing to send when the user is gone or already verified.
        if let Some(contact) = self.bank.verification_recipient(e.user_id).await? {
            match self.claim(event_id, &contact.email, "verification").await? {
                Claim::Sent => {}
                Claim::Mine(claimer) => {
                    let sent = match self
                        .bank
                        .verification_email(event_id, e.user_id, &contact, &self.public_base_url)
                        .await
                    {
                        // The verification was used meanwhile.
                        Ok(None) => Ok(false),
                        Ok(Some(draft)) => self.send(event_id, "verification", &draft).await,
                        Err(e) => Err(e.into()),
                    };
                    self.settle_delivery(event_id, &contact.email, &claimer, sent)
                        .await?;
                }
            }
        }
        self.bank.record_processed(group, event_id).await?;
        Ok(())
    }

    /// Hands a drafted email to the mail server; `Ok(true)` once it accepted it.
    async fn send(&self, event_id: Uuid, kind: &str, draft: &EmailDraft) -> anyhow::Result<bool> {
        self.mailer
            .send(Email {
                event_id,
                kind,
                to: &draft.to,
                subject: draft.subject,
                body: &draft.body,
            })
            .await?;
        Ok(true)
    }

    /// Claims the email for (event, recipient): [`Claim::Mine`] to send it now, [`Claim::Sent`] when it
    /// went out already; an error ([`Contended`]) while another worker holds it.
    async fn claim(&self, event_id: Uuid, recipient: &str, kind: &str) -> anyhow::Result<Claim> {
        let claimer = format!("{}/{}", self.claimer, Uuid::new_v4().simple());
        let claim = self
            .bank
            .claim_email(event_id, recipient, kind, &claimer, self.email_lease)
            .await?;
        match claim {
            EmailClaim::Mine => Ok(Claim::Mine(claimer)),
            EmailClaim::Sent => Ok(Claim::Sent),
            EmailClaim::HeldBy(claimer) => Err(Contended { claimer }.into()),
        }
    }

    /// After the SMTP exchange of a claimed delivery: marks it sent (`Ok(true)`), or releases the claim
    /// so that a retry may claim it again (nothing was sent, or the exchange failed). The mark is
    /// retried for a while if Postgres is unreachable: until it commits, the claim's lease is all that
    /// stops another worker from sending the email again.
    async fn settle_delivery(
        &self,
        event_id: Uuid,
        recipient: &str,
        claimer: &str,
        sent: anyhow::Result<bool>,
    ) -> anyhow::Result<()> {
        let bank = &self.bank;
        match sent {
            Ok(true) => {
                let deadline = tokio::time::Instant::now() + self.email_lease / 2;
                let mut wait = std::time::Duration::from_millis(50);
                loop {
                    match bank.mark_email_sent(event_id, recipient, claimer).await {
                        Ok(true) => return Ok(()),
                        Ok(false) => {
                            tracing::warn!(%event_id, "an email's claim expired before it was marked sent; whoever took it over may send it again (same Message-ID)");
                            return Ok(());
                        }
                        Err(e) if tokio::time::Instant::now() + wait < deadline => {
                            tracing::warn!(%event_id, error = %e, "cannot mark an email sent yet; retrying");
                            tokio::time::sleep(wait).await;
                            wait = (wait * 2).min(std::time::Duration::from_secs(2));
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            Ok(false) => {
                bank.release_email(event_id, recipient, claimer).await?;
                Ok(())
            }
            Err(error) => {
                if let Err(e) = bank.release_email(event_id, recipient, claimer).await {
                    // The lease runs out instead.
                    tracing::warn!(%event_id, error = %e, "cannot release an email's claim");
                }
                Err(error)
            }
        }
    }

    /// The notification rows of `notices`, with the `notifications` group's processed-event records,
    /// in one statement (see [`Bank::write_notifications`]).
    async fn write_notifications(&self, notices: &[&Notice]) -> anyhow::Result<()> {
        self.bank
            .write_notifications(Group::Notifications.name(), notices)
            .await?;
        Ok(())
    }

    /// One email per recipient, each claimed before it is sent and marked once the SMTP server
    /// accepted it (group `notification-emails`, separate so that a slow mail server never delays the
    /// notification rows). Every recipient is tried; the event is done once every email is.
    async fn email_notifications(&self, notice: &Notice) -> anyhow::Result<()> {
        let group = Group::NotificationEmails.name();
        // A copy of an event whose emails all went out (a republish after Redis lost its data): one
        // lookup instead of a claim per recipient.
        if self.bank.is_processed(group, notice.event_id).await? {
            return Ok(());
        }
        // The recipients' emails go out side by side: each has its own claim, and one slow exchange
        // should not hold up the other party's.
        // One email per (event, recipient): a transfer between two accounts of one owner names the
        // owner twice, and the first text wins, as it did when the emails went one after the other.
        let mut seen = std::collections::HashSet::new();
        let outcomes = futures_util::future::join_all(
            notice
                .recipients
                .iter()
                .filter(|(user_id, _)| seen.insert(*user_id))
                .map(|(user_id, text)| self.email_one(notice, *user_id, text)),
        )
        .await;
        let first_error = outcomes.into_iter().find_map(Result::err);
        if let Some(e) = first_error {
            return Err(e);
        }
        self.bank.record_processed(group, notice.event_id).await?;
        Ok(())
    }
}

impl Handlers {
    /// The notification email of `notice` to one recipient: claimed, sent, marked.
    async fn email_one(&self, notice: &Notice, user_id: i64, text: &str) -> anyhow::Result<()> {
        let Some(draft) = self.bank.notification_email(user_id, text).await? else {
            return Ok(());
        };
        let Claim::Mine(claimer) = self.claim(notice.event_id, &draft.to, notice.kind).await?
        else {
            return Ok(());
        };
        let sent = self.send(notice.event_id, notice.kind, &draft).await;
        self.settle_delivery(notice.event_id, &draft.to, &claimer, sent)
            .await
    }
}

/// What claiming an email found.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Claim {
    /// Ours to send, under this claimer name.
    Mine(String),
    /// Already sent.
    Sent,
}

impl Handle for Handlers {
    fn handle<'a>(
        &'a self,
        group: Group,
        entry: &'a StreamEntry,
    ) -> Outcome<'a, anyhow::Result<()>> {
        Box::pin(Handlers::handle(self, group, entry))
    }

    fn handle_many<'a>(
        &'a self,
        group: Group,
        deliveries: &'a [Delivery],
    ) -> Outcome<'a, Vec<anyhow::Result<()>>> {
        Box::pin(async move {
            if group == Group::Notifications {
                self.notify_many(deliveries).await
            } else {
                handle_each(self, group, deliveries).await
            }
        })
    }
}
