//! Emails: what the outbox calls for, against what the SMTP sink received.
//!
//! Expected, from the outbox: one verification email per `user.registered` of a customer (the banker is
//! created verified and gets none); one email to the owner per `account.opened` and `money.deposited`;
//! one to each party per `transfer.completed`. Received emails are matched by their
//! `X-StreamBank-Event-Id` header and recipient. A repeat of (event, recipient) with the same
//! `Message-ID` is one a receiver can drop (the window the worker documents: a crash between the SMTP
//! server's answer and the record); a repeat with another `Message-ID` is a true duplicate.
//!
//! Without the header (workers older than issue 19), emails cannot be tied to events: the check falls
//! back to counts per recipient, which show duplicates and losses only where they do not cancel out, and
//! reports the headers as missing.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::smtp::Mail;

#[derive(Debug, Default, Clone)]
pub struct EmailCheck {
    pub expected: usize,
    pub received: usize,
    /// Received emails without an `X-StreamBank-Event-Id` header.
    pub without_header: usize,
    /// Copies beyond the first of an (event, recipient) with a `Message-ID` not seen before for it.
    pub duplicates: usize,
    /// Copies beyond the first with a `Message-ID` already seen (droppable by a receiver).
    pub repeats_same_message_id: usize,
    pub missing: usize,
    /// Received for no expected (event, recipient).
    pub unexpected: usize,
    /// Received with an `X-StreamBank-Kind` other than the event's.
    pub wrong_kind: usize,
    /// Per kind: (expected, received).
    pub by_kind: BTreeMap<String, (usize, usize)>,
    /// Customers whose verification emails number other than one: (email, count).
    pub verification_not_once: Vec<(String, usize)>,
    /// Some examples for the report.
    pub examples: Vec<String>,
}

impl EmailCheck {
    pub fn headers_missing(&self) -> bool {
        self.without_header > 0
    }
}

fn kind_of(event_type: &str) -> &str {
    match event_type {
        "user.registered" => "verification",
        other => other,
    }
}

/// `expected` is (event id, event type, recipient email) from the outbox; `customers` every customer's
/// email.
pub fn check(
    expected: &[(String, String, String)],
    mails: &[Mail],
    customers: &[String],
) -> EmailCheck {
    let mut c = EmailCheck {
        expected: expected.len(),
        ..EmailCheck::default()
    };
    let want: HashMap<(&str, &str), &str> = expected
        .iter()
        .map(|(e, t, r)| ((e.as_str(), r.as_str()), kind_of(t)))
        .collect();
    for (_, t, _) in expected {
        c.by_kind.entry(kind_of(t).to_owned()).or_default().0 += 1;
    }
    // (event, recipient) -> Message-IDs received, in order.
    let mut got: HashMap<(String, String), Vec<Option<String>>> = HashMap::new();
    // When each copy arrived (seconds since the sink started), for the report's examples.
    let mut times: HashMap<(String, String), Vec<f64>> = HashMap::new();
    let mut per_recipient: HashMap<&str, usize> = HashMap::new();
    let mut verifications: HashMap<&str, usize> = HashMap::new();
    for mail in mails {
        for rcpt in &mail.recipients {
            c.received += 1;
            *per_recipient.entry(rcpt).or_default() += 1;
            if mail.is_verification() {
                *verifications.entry(rcpt).or_default() += 1;
            }
            let Some(event) = &mail.event_id else {
                c.without_header += 1;
                continue;
            };
            match want.get(&(event.as_str(), rcpt.as_str())) {
                None => {
                    c.unexpected += 1;
                    if c.examples.len() < 10 {
                        c.examples.push(format!(
                            "unexpected: event {event} to {rcpt} ({:?})",
                            mail.kind
                        ));
                    }
                }
                Some(kind) => {
                    c.by_kind.entry((*kind).to_owned()).or_default().1 += 1;
                    if mail.kind.as_deref() != Some(*kind) {
                        c.wrong_kind += 1;
                    }
                }
            }
            times
                .entry((event.clone(), rcpt.clone()))
                .or_default()
                .push(mail.at.as_secs_f64());
            got.entry((event.clone(), rcpt.clone()))
                .or_default()
                .push(mail.message_id.clone());
        }
    }
    for ((event, rcpt), ids) in &got {
        let distinct = ids.iter().flatten().collect::<HashSet<_>>().len()
            + ids.iter().filter(|i| i.is_none()).count();
        let dup = distinct.saturating_sub(1);
        let repeats = ids.len() - distinct;
        c.duplicates += dup;
        c.repeats_same_message_id += repeats;
        if (dup > 0 || repeats > 0) && c.examples.len() < 10 {
            let at: Vec<String> = times
                .get(&(event.clone(), rcpt.clone()))
                .map(|t| t.iter().map(|t| format!("{t:.1}s")).collect())
                .unwrap_or_default();
            c.examples.push(format!(
                "{}: event {event} to {rcpt}: {} copies at {at:?}, Message-IDs {ids:?}",
                if dup > 0 {
                    "duplicate"
                } else {
                    "repeat (same Message-ID)"
                },
                ids.len()
            ));
        }
    }
    if c.without_header == c.received {
        // Degraded: counts per recipient.
        let mut want_per: HashMap<&str, usize> = HashMap::new();
        for (_, _, r) in expected {
            *want_per.entry(r.as_str()).or_default() += 1;
        }
        let everyone: HashSet<&str> = want_per
            .keys()
            .chain(per_recipient.keys())
            .copied()
            .collect();
        for r in everyone {
            let (w, g) = (
                want_per.get(r).copied().unwrap_or(0),
                per_recipient.get(r).copied().unwrap_or(0),
            );
            c.duplicates += g.saturating_sub(w);
            c.missing += w.saturating_sub(g);
        }
    } else {
        for (e, r) in want.keys() {
            if !got.contains_key(&((*e).to_owned(), (*r).to_owned())) {
                c.missing += 1;
                if c.examples.len() < 10 {
                    c.examples.push(format!("missing: event {e} to {r}"));
                }
            }
        }
    }
    for email in customers {
        let n = verifications.get(email.as_str()).copied().unwrap_or(0);
        if n != 1 {
            c.verification_not_once.push((email.clone(), n));
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn mail(event: Option<&str>, to: &str, kind: &str, message_id: &str) -> Mail {
        Mail {
            recipients: vec![to.into()],
            subject: String::new(),
            event_id: event.map(str::to_owned),
            kind: Some(kind.into()),
            message_id: Some(message_id.into()),
            body: None,
            at: Duration::ZERO,
        }
    }

    fn expected() -> Vec<(String, String, String)> {
        [("e1", "a@x"), ("e1", "b@x"), ("e2", "a@x")]
            .iter()
            .map(|(e, r)| ((*e).into(), "transfer.completed".into(), (*r).into()))
            .collect()
    }

    /// A repeat with the same Message-ID is droppable, one with another is a duplicate; a pair never
    /// received is missing.
    #[test]
    fn counts_by_event_and_recipient() {
        let k = "transfer.completed";
        let mails = [
            mail(Some("e1"), "a@x", k, "<1>"),
            mail(Some("e1"), "a@x", k, "<1>"),
            mail(Some("e1"), "b@x", k, "<2>"),
            mail(Some("e1"), "b@x", k, "<3>"),
        ];
        let c = check(&expected(), &mails, &[]);
        assert_eq!(
            (
                c.duplicates,
                c.repeats_same_message_id,
                c.missing,
                c.unexpected
            ),
            (1, 1, 1, 0)
        );
        assert!(!c.headers_missing());
    }

    /// Without the header, counts per recipient still show what does not cancel out.
    #[test]
    fn falls_back_to_counts_per_recipient() {
        let k = "transfer.completed";
        let mails = [
            mail(None, "a@x", k, "<1>"),
            mail(None, "b@x", k, "<2>"),
            mail(None, "b@x", k, "<3>"),
        ];
        let c = check(&expected(), &mails, &[]);
        assert!(c.headers_missing());
        assert_eq!((c.duplicates, c.missing), (1, 1));
    }
}
