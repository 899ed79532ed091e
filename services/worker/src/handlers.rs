//! What each consumer group does with an event. Every handler may see an event more than once; each
//! effect happens once:
//!
//! - database effects commit in one transaction with the `processed_events` row of (group, event);
//! - each email is recorded per (event, recipient) once the SMTP server accepted it, and not sent again.
//!
//! One window remains: a crash after the SMTP server accepted an email and before its record commits
//! sends that email again on redelivery. Closing it would need the mail server to take part in our
//! transaction, which SMTP cannot do. (For verification emails the repeat carries a fresh link, and the
//! first link stops working, since only the newest secret's hash is kept.)

use anyhow::Context as _;
use streambank_events::payload::{
    AccountOpened, MoneyDeposited, TransferCompleted, UserRegistered,
};
use streambank_events::{EventType, StreamEntry};
use streambank_service::Bank;
use streambank_store::consumers::{self, NotificationRows};
use tracing::Instrument as _;
use uuid::Uuid;

use crate::consumer::Delivery;
use crate::mail::Mailer;

/// The consumer groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Group {
    EmailVerification,
    /// Notification rows (what `GET /v1/notifications` lists).
    Notifications,
    /// The emails that go with them, in a group of their own so that mail never delays the rows.
    NotificationEmails,
}

impl Group {
    pub const ALL: [Group; 3] = [
        Group::EmailVerification,
        Group::Notifications,
        Group::NotificationEmails,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Group::EmailVerification => "email-verification",
            Group::Notifications => "notifications",
            Group::NotificationEmails => "notification-emails",
        }
    }

    pub fn streams(self) -> &'static [streambank_events::Stream] {
        use streambank_events::Stream;
        match self {
            Group::EmailVerification => &[Stream::Users],
            Group::Notifications | Group::NotificationEmails => {
                &[Stream::Accounts, Stream::Transfers]
            }
        }
    }
}

/// What handlers need.
#[derive(Debug, Clone)]
pub struct Handlers {
    pub bank: Bank,
    pub mailer: Mailer,
    pub public_base_url: String,
}

fn money(minor: i64, currency: &str) -> String {
    format!("{}.{:02} {currency}", minor / 100, (minor % 100).abs())
}

impl Handlers {
    /// Applies `entry` for `group`. `Ok` means done (including "nothing to do for this group");
    /// `Err` means try again later.
    pub async fn handle(&self, group: Group, entry: &StreamEntry) -> anyhow::Result<()> {
        match group {
            Group::EmailVerification => {
                let event_id: Uuid = entry.event_id.parse().context("event_id is not a UUID")?;
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
        let event_id: Uuid = entry.event_id.parse().context("event_id is not a UUID")?;
        let Some(event_type) = EventType::parse(&entry.event_type) else {
            return Ok(None);
        };
        Ok(self
            .notification(event_type, &entry.payload)
            .await?
            .map(|(kind, recipients)| Notice {
                event_id,
                occurred_at: entry.occurred_at.clone(),
                kind,
                recipients,
            }))
    }

    /// Who is told what about an event: `None` for events nobody is notified of.
    async fn notification(
        &self,
        event_type: EventType,
        payload: &str,
    ) -> anyhow::Result<Option<(&'static str, Vec<(i64, String)>)>> {
        Ok(Some(match event_type {
            EventType::AccountOpened => {
                let e: AccountOpened = serde_json::from_str(payload)?;
                (
                    "account.opened",
                    vec![(
                        e.owner_id,
                        format!("Your {} account {} is open.", e.currency, e.account_id),
                    )],
                )
            }
            EventType::MoneyDeposited => {
                let e: MoneyDeposited = serde_json::from_str(payload)?;
                let owner = self.bank.owner_of(e.account_id).await?;
                let text = format!(
                    "{} was deposited into your account {}.",
                    money(e.amount, &e.currency),
                    e.account_id
                );
                ("money.deposited", vec![(owner, text)])
            }
            EventType::TransferCompleted => {
                let e: TransferCompleted = serde_json::from_str(payload)?;
                let amount = money(e.amount, &e.currency);
                let sent = format!(
                    "You sent {amount} from account {} to account {}.",
                    e.from_account_id, e.to_account_id
                );
                let received = format!(
                    "You received {amount} in account {} from account {}.",
                    e.to_account_id, e.from_account_id
                );
                (
                    "transfer.completed",
                    vec![(e.from_owner_id, sent), (e.to_owner_id, received)],
                )
            }
            _ => return Ok(None),
        }))
    }

    async fn send_verification(&self, event_id: Uuid, e: UserRegistered) -> anyhow::Result<()> {
        let pool = self.bank.pool();
        let group = Group::EmailVerification.name();
        if consumers::is_processed(pool, group, event_id).await? {
            return Ok(());
        }
        let contact = consumers::contact(pool, e.user_id).await?;
        // Nothing to send when the user is gone, already verified, or was already emailed for this event.
        let recipient = match contact {
            Some(c)
                if !c.verified && !consumers::is_delivered(pool, event_id, &c.email).await? =>
            {
                Some(c)
            }
            _ => None,
        };
        if let Some(contact) = recipient {
            let verification = self
                .bank
                .create_email_verification(e.user_id, &contact.email, event_id)
                .await?;
            if let Some(verification) = verification {
                let link = format!(
                    "{}/v1/users/verify-email?id={}&code={}",
                    self.public_base_url.trim_end_matches('/'),
                    verification.id,
                    verification.code
                );
                let body = format!(
                    "Hello {},\n\nplease confirm your email address for StreamBank by opening this link \
                     within 24 hours:\n\n{link}\n\nIf you did not sign up, ignore this email.\n",
                    contact.full_name
                );
                self.mailer
                    .send(&contact.email, "Confirm your email address", body)
                    .await?;
                consumers::record_delivery(pool, event_id, &contact.email, "verification").await?;
            }
        }
        consumers::record_processed(pool, group, event_id).await?;
        Ok(())
    }

    /// One notification row per recipient of each notice, written with the processed-event records of
    /// the `notifications` group in one statement: all rows of an event, or none, exactly once. Copies of
    /// one event count once. Rows are written in the order the events happened, so that a listing newest
    /// first shows them in that order even when a read brings events of several streams.
    async fn write_notifications(&self, notices: &[&Notice]) -> anyhow::Result<()> {
        let mut notices = notices.to_vec();
        notices.sort_by(|a, b| a.occurred_at.cmp(&b.occurred_at));
        let mut events = Vec::with_capacity(notices.len());
        let mut rows = NotificationRows::default();
        let mut seen = std::collections::HashSet::new();
        for notice in notices {
            if !seen.insert(notice.event_id) {
                continue;
            }
            events.push(notice.event_id);
            let mut recipients = std::collections::HashSet::new();
            for (user_id, text) in &notice.recipients {
                if recipients.insert(*user_id) {
                    rows.push(*user_id, notice.event_id, notice.kind, text);
                }
            }
        }
        consumers::write_notifications(
            self.bank.pool(),
            Group::Notifications.name(),
            &events,
            &rows,
        )
        .await?;
        Ok(())
    }

    /// One email per recipient, each recorded once the SMTP server accepted it (group
    /// `notification-emails`, separate so that a slow mail server never delays the notification rows).
    async fn email_notifications(&self, notice: &Notice) -> anyhow::Result<()> {
        let pool = self.bank.pool();
        for (user_id, text) in &notice.recipients {
            let Some(contact) = consumers::contact(pool, *user_id).await? else {
                continue;
            };
            if consumers::is_delivered(pool, notice.event_id, &contact.email).await? {
                continue;
            }
            let body = format!("Hello {},\n\n{text}\n\nStreamBank\n", contact.full_name);
            self.mailer
                .send(&contact.email, "StreamBank notification", body)
                .await?;
            consumers::record_delivery(pool, notice.event_id, &contact.email, notice.kind).await?;
        }
        consumers::record_processed(pool, Group::NotificationEmails.name(), notice.event_id)
            .await?;
        Ok(())
    }
}

/// What the notification groups make of an event: who is told what.
#[derive(Debug, Clone)]
pub struct Notice {
    event_id: Uuid,
    /// RFC 3339 in UTC with a fixed number of digits, as the relay writes it: sorts as text.
    occurred_at: String,
    kind: &'static str,
    recipients: Vec<(i64, String)>,
}
