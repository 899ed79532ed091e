//! What the bank does about its own events, for the processes that consume them (the worker): who is
//! told what, who gets which email and what it says, and the records that make each effect happen once.
//!
//! The worker owns the machinery (reading streams, retries, SMTP); the rules are here, beside the
//! operations that raise the events.

use std::collections::HashSet;

use streambank_events::EventType;
use streambank_events::payload::{AccountOpened, MoneyDeposited, TransferCompleted};
use streambank_store::consumers::{self, DeliveryClaim, NotificationRows};
use uuid::Uuid;

use crate::{Bank, Error, Result};

/// How notifications and emails show an amount: `12.34 USD`.
pub fn format_money(minor_units: i64, currency: &str) -> String {
    let sign = if minor_units < 0 { "-" } else { "" };
    let abs = minor_units.unsigned_abs();
    format!("{sign}{}.{:02} {currency}", abs / 100, abs % 100)
}

/// What the bank tells the parties of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub event_id: Uuid,
    /// When the event happened: RFC 3339 in UTC with a fixed number of digits, as the relay writes it,
    /// so it sorts as text.
    pub occurred_at: String,
    /// The notification's kind: the event type (`transfer.completed`).
    pub kind: &'static str,
    /// Each recipient's user id and the text for them, in the order they are told.
    pub recipients: Vec<(i64, String)>,
}

/// An email ready for the mail server: the text part (the mailer derives the HTML part).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailDraft {
    pub to: String,
    pub subject: &'static str,
    pub body: String,
}

/// Who an email goes to, as the bank knows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    pub email: String,
    pub full_name: String,
    pub verified: bool,
}

/// What claiming an email delivery found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmailClaim {
    /// Ours to send until the lease ends; then [`Bank::mark_email_sent`] or [`Bank::release_email`].
    Mine,
    /// The mail server already accepted this email: nothing to do.
    Sent,
    /// Another worker holds a fresh claim (it is sending now, or died less than a lease ago).
    HeldBy(String),
}

impl Bank {
    /// Who is told what about an event; `None` for events nobody is notified of. A payload that does
    /// not parse is an error whose cause is the `serde_json` error.
    pub async fn notice(
        &self,
        event_id: Uuid,
        occurred_at: &str,
        event_type: EventType,
        payload: &str,
    ) -> anyhow::Result<Option<Notice>> {
        let (kind, recipients) = match event_type {
            EventType::AccountOpened => {
                let e: AccountOpened = serde_json::from_str(payload)?;
                let text = format!("Your {} account {} is open.", e.currency, e.account_id);
                ("account.opened", vec![(e.owner_id, text)])
            }
            EventType::MoneyDeposited => {
                let e: MoneyDeposited = serde_json::from_str(payload)?;
                let owner = self.owner_of(e.account_id).await?;
                let text = format!(
                    "{} was deposited into your account {}.",
                    format_money(e.amount, &e.currency),
                    e.account_id
                );
                ("money.deposited", vec![(owner, text)])
            }
            EventType::TransferCompleted => {
                let e: TransferCompleted = serde_json::from_str(payload)?;
                let amount = format_money(e.amount, &e.currency);
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
        };
        Ok(Some(Notice {
            event_id,
            occurred_at: occurred_at.to_owned(),
            kind,
            recipients,
        }))
    }

    /// Writes the notification rows of `notices` and records their events as processed by
    /// `consumer`, in one statement: each event gets all its rows or none, exactly once, however often
    /// it is delivered. Copies of one event count once; a recipient named twice by one event (a
    /// transfer between two accounts of one owner) gets the first text. Rows are written in the order
    /// the events happened, so that a listing newest first shows them in that order.
    pub async fn write_notifications(&self, consumer: &str, notices: &[&Notice]) -> Result<()> {
        let mut notices = notices.to_vec();
        notices.sort_by(|a, b| a.occurred_at.cmp(&b.occurred_at));
        let mut events = Vec::with_capacity(notices.len());
        let mut rows = NotificationRows::default();
        let mut seen = HashSet::new();
        for notice in notices {
            if !seen.insert(notice.event_id) {
                continue;
            }
            events.push(notice.event_id);
            let mut told = HashSet::new();
            for (user_id, text) in &notice.recipients {
                if told.insert(*user_id) {
                    rows.push(*user_id, notice.event_id, notice.kind, text);
                }
            }
        }
        consumers::write_notifications(&self.pool, consumer, &events, &rows)
            .await
            .map_err(Error::db)?;
        Ok(())
    }

    /// The notification email for one recipient of a notice; `None` when the user is gone.
    pub async fn notification_email(&self, user_id: i64, text: &str) -> Result<Option<EmailDraft>> {
        Ok(self.contact(user_id).await?.map(|contact| EmailDraft {
            body: format!("Hello {},\n\n{text}\n\nStreamBank\n", contact.full_name),
            to: contact.email,
            subject: "StreamBank notification",
        }))
    }

    /// Whether a user is to get a verification email: `None` when the user is gone or already
    /// verified.
    pub async fn verification_recipient(&self, user_id: i64) -> Result<Option<Contact>> {
        Ok(self.contact(user_id).await?.filter(|c| !c.verified))
    }

    /// The verification email for the `user.registered` event `event_id`: a fresh secret and its link
    /// under `public_base_url`. `None` when the verification was used meanwhile.
    pub async fn verification_email(
        &self,
        event_id: Uuid,
        user_id: i64,
        contact: &Contact,
        public_base_url: &str,
    ) -> Result<Option<EmailDraft>> {
        let Some(verification) = self
            .create_email_verification(user_id, &contact.email, event_id)
            .await?
        else {
            return Ok(None);
        };
        let link = format!(
            "{}/v1/users/verify-email?id={}&code={}",
            public_base_url.trim_end_matches('/'),
            verification.id,
            verification.code
        );
        Ok(Some(EmailDraft {
            to: contact.email.clone(),
            subject: "Confirm your email address",
            body: format!(
                "Hello {},\n\nplease confirm your email address for StreamBank by opening this link \
                 within 24 hours:\n\n{link}\n\nIf you did not sign up, ignore this email.\n",
                contact.full_name
            ),
        }))
    }

    /// Whether `consumer` has already applied the event.
    pub async fn is_processed(&self, consumer: &str, event_id: Uuid) -> Result<bool> {
        consumers::is_processed(&self.pool, consumer, event_id)
            .await
            .map_err(Error::db)
    }

    /// Records that `consumer` applied the event; `false` when it was recorded already.
    pub async fn record_processed(&self, consumer: &str, event_id: Uuid) -> Result<bool> {
        consumers::record_processed(&self.pool, consumer, event_id)
            .await
            .map_err(Error::db)
    }

    /// Claims the email for (event, recipient) for `claimer` for `lease`, in one statement, so that no
    /// two workers ever talk to the mail server about the same email at once.
    pub async fn claim_email(
        &self,
        event_id: Uuid,
        recipient: &str,
        kind: &str,
        claimer: &str,
        lease: std::time::Duration,
    ) -> Result<EmailClaim> {
        let claim = consumers::claim_delivery(
            &self.pool,
            event_id,
            recipient,
            kind,
            claimer,
            lease.as_secs_f64(),
        )
        .await
        .map_err(Error::db)?;
        Ok(match claim {
            DeliveryClaim::Claimed { .. } => EmailClaim::Mine,
            DeliveryClaim::Sent => EmailClaim::Sent,
            DeliveryClaim::HeldBy { claimer } => EmailClaim::HeldBy(claimer),
        })
    }

    /// Marks a claimed email sent; `false` when `claimer` no longer held the claim.
    pub async fn mark_email_sent(
        &self,
        event_id: Uuid,
        recipient: &str,
        claimer: &str,
    ) -> Result<bool> {
        consumers::mark_sent(&self.pool, event_id, recipient, claimer)
            .await
            .map_err(Error::db)
    }

    /// Gives a claimed email back (nothing was sent), so that a retry may claim it at once.
    pub async fn release_email(
        &self,
        event_id: Uuid,
        recipient: &str,
        claimer: &str,
    ) -> Result<()> {
        consumers::release_delivery(&self.pool, event_id, recipient, claimer)
            .await
            .map(drop)
            .map_err(Error::db)
    }

    async fn contact(&self, user_id: i64) -> Result<Option<Contact>> {
        let contact = crate::retry::read(|| consumers::contact(&self.pool, user_id)).await?;
        Ok(contact.map(|c| Contact {
            email: c.email,
            full_name: c.full_name,
            verified: c.verified,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_shown_in_major_units() {
        assert_eq!(format_money(1234, "USD"), "12.34 USD");
        assert_eq!(format_money(5, "EUR"), "0.05 EUR");
        assert_eq!(format_money(-250, "CAD"), "-2.50 CAD");
        assert_eq!(format_money(i64::MIN, "USD"), "-92233720368547758.08 USD");
    }
}
