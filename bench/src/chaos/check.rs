//! The checker: every property of issue 19, each a [`Check`] that passes or names what broke it, with
//! the headline [`Totals`] that the report (`super::report`) sums up.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

use streambank_events::dead_letter_key;

use super::clients::{Record, Samples};
use super::emails::{self, EmailCheck};
use super::quiesce::PipelineState;
use super::setup::World;
use super::smtp::Mail;

/// One property and whether it held.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

fn check(name: &'static str, ok: bool, detail: String) -> Check {
    Check { name, ok, detail }
}

/// " (e.g. …)" after a count, with its first case; nothing if there is none.
fn for_example(first: Option<String>) -> String {
    first.map(|e| format!(" (e.g. {e})")).unwrap_or_default()
}

/// What the checker reads besides the database.
#[derive(Debug)]
pub struct Evidence<'a> {
    pub world: &'a World,
    pub record: &'a Record,
    pub samples: &'a Samples,
    pub mails: Vec<Mail>,
    pub pipeline: PipelineState,
    pub quiesced: bool,
    pub quiesce_took: Duration,
    pub crashes: Vec<String>,
    /// Every (event, group) seen in the dead-letter stream during the run, with its error.
    pub dead_lettered: std::collections::BTreeMap<(String, String), String>,
}

/// Headline numbers for the summary line.
#[derive(Debug, Default)]
pub struct Totals {
    pub acked: usize,
    pub transfers: i64,
    pub lost: usize,
    pub duplicated: usize,
    pub unsent: usize,
    pub five_xx: u64,
    pub emails: EmailCheck,
    pub dead_letters: u64,
}

pub async fn run(
    pool: &sqlx::PgPool,
    redis: &mut streambank_bus::BusConnection,
    prefix: &str,
    ev: &Evidence<'_>,
) -> anyhow::Result<(Vec<Check>, Totals)> {
    let mut checks = Vec::new();
    let mut totals = Totals::default();

    // Money.
    let (sum, min, mismatched): (i64, i64, i64) = sqlx::query_as(
        "SELECT coalesce(sum(balance), 0)::bigint, coalesce(min(balance), 0)::bigint, \
         (SELECT count(*) FROM accounts a WHERE a.balance <> \
            (SELECT coalesce(sum(amount), 0) FROM entries e WHERE e.account_id = a.id)) \
         FROM accounts",
    )
    .fetch_one(pool)
    .await?;
    checks.push(check(
        "money conserved",
        sum == ev.world.deposited,
        format!("sum of balances {sum}, deposits {}", ev.world.deposited),
    ));
    let sampled = ev
        .samples
        .violations
        .lock()
        .map(|v| v.clone())
        .unwrap_or_default();
    checks.push(check(
        "never negative (end state and samples)",
        min >= 0 && sampled.is_empty(),
        format!(
            "minimum balance {min}; {} samples taken ({} failed), {} flagged{}",
            ev.samples.taken.load(Ordering::Relaxed),
            ev.samples.failed.load(Ordering::Relaxed),
            sampled.len(),
            sampled
                .first()
                .map(|s| format!(": {s}"))
                .unwrap_or_default()
        ),
    ));
    checks.push(check(
        "balances equal the sums of their entries",
        mismatched == 0,
        format!("{mismatched} account(s) differ"),
    ));

    // Transfers.
    let rows: Vec<(i64, Option<i64>, Option<String>)> = sqlx::query_as(
        "SELECT t.id, k.user_id, k.key FROM transfers t LEFT JOIN idempotency_keys k \
         ON k.response_body IS NOT NULL AND (k.response_body #>> '{transfer,id}')::bigint = t.id",
    )
    .fetch_all(pool)
    .await?;
    let sent: HashSet<(i64, String)> = Record::take(&ev.record.keys).into_iter().collect();
    let mut keys_of: HashMap<i64, Vec<(i64, String)>> = HashMap::new();
    for (id, user, key) in rows {
        let entry = keys_of.entry(id).or_default();
        if let (Some(user), Some(key)) = (user, key) {
            entry.push((user, key));
        }
    }
    totals.transfers = keys_of.len() as i64;
    let unsent: Vec<i64> = keys_of
        .iter()
        .filter(|(_, keys)| keys.len() != 1 || !sent.contains(&keys[0]))
        .map(|(id, _)| *id)
        .collect();
    totals.unsent = unsent.len();
    let acked = Record::take(&ev.record.acked);
    totals.acked = acked.len();
    let mut ids_seen = HashSet::new();
    let mut lost = Vec::new();
    for ack in &acked {
        if !ids_seen.insert(ack.transfer_id) {
            totals.duplicated += 1;
        }
        match keys_of.get(&ack.transfer_id) {
            Some(keys) if keys.contains(&(ack.user_id, ack.key.clone())) => {}
            _ => lost.push(format!("{} -> {}", ack.key, ack.transfer_id)),
        }
    }
    totals.lost = lost.len();
    checks.push(check(
        "every acknowledged transfer present exactly once",
        lost.is_empty() && totals.duplicated == 0,
        format!(
            "{} acknowledged, {} lost{}, {} acknowledged twice",
            acked.len(),
            lost.len(),
            for_example(lost.first().cloned()),
            totals.duplicated
        ),
    ));
    checks.push(check(
        "no transfer that no client sent",
        unsent.is_empty(),
        format!(
            "{} transfer rows; {} without exactly one key a client used{}",
            keys_of.len(),
            unsent.len(),
            for_example(unsent.first().map(|id| format!("transfer {id}")))
        ),
    ));
    let refused = Record::take(&ev.record.refused);
    let indeterminate = Record::take(&ev.record.indeterminate);
    checks.push(check(
        "every transfer answered (no refusal, no client gave up)",
        refused.is_empty() && indeterminate.is_empty(),
        format!(
            "{} refused{}, {} given up after retries",
            refused.len(),
            for_example(refused.first().map(|(k, w)| format!("{k}: {w}"))),
            indeterminate.len()
        ),
    ));
    let (outbox_transfers, distinct): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT payload->>'transfer_id') FROM outbox \
         WHERE event_type = 'transfer.completed'",
    )
    .fetch_one(pool)
    .await?;
    checks.push(check(
        "one outbox event per transfer",
        outbox_transfers == totals.transfers && distinct == totals.transfers,
        format!("{outbox_transfers} transfer.completed events ({distinct} distinct transfers), {} transfers", totals.transfers),
    ));
    totals.five_xx = ev.record.five_xx.load(Ordering::Relaxed);
    checks.push(check(
        "no 5xx answered to clients",
        totals.five_xx == 0,
        format!(
            "{} 5xx of {} attempts{}",
            totals.five_xx,
            ev.record.attempts.load(Ordering::Relaxed),
            ev.record
                .five_xx_samples
                .lock()
                .ok()
                .and_then(|s| s.first().cloned())
                .map(|s| format!(" (first: {s})"))
                .unwrap_or_default()
        ),
    ));

    // Notification rows.
    let per_type: Vec<(String, i64, i64, i64)> = sqlx::query_as(
        "WITH n AS (SELECT event_id, count(*) AS c FROM notifications GROUP BY event_id) \
         SELECT o.event_type, count(*), count(*) FILTER (WHERE coalesce(n.c, 0) <> \
            CASE o.event_type WHEN 'transfer.completed' THEN 2 WHEN 'account.opened' THEN 1 \
                              WHEN 'money.deposited' THEN 1 ELSE 0 END), \
            coalesce(sum(n.c), 0)::bigint \
         FROM outbox o LEFT JOIN n ON n.event_id = o.id GROUP BY o.event_type ORDER BY 1",
    )
    .fetch_all(pool)
    .await?;
    let (orphans,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM notifications n WHERE NOT EXISTS \
         (SELECT 1 FROM outbox o WHERE o.id = n.event_id)",
    )
    .fetch_one(pool)
    .await?;
    let wrong: i64 = per_type.iter().map(|r| r.2).sum();
    checks.push(check(
        "notification rows: 2 per transfer, 1 per opening and deposit",
        wrong == 0 && orphans == 0,
        format!(
            "{}; {wrong} event(s) with a wrong count, {orphans} row(s) of no event",
            per_type
                .iter()
                .map(|(t, events, _, rows)| format!("{t}: {events} events, {rows} rows"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    ));

    // Emails.
    let expected: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT DISTINCT o.id::text, o.event_type, lower(u.email) FROM outbox o \
         CROSS JOIN LATERAL (VALUES \
           (CASE o.event_type \
              WHEN 'account.opened' THEN (o.payload->>'owner_id')::bigint \
              WHEN 'transfer.completed' THEN (o.payload->>'from_owner_id')::bigint \
              WHEN 'user.registered' THEN (o.payload->>'user_id')::bigint \
              WHEN 'money.deposited' THEN \
                (SELECT owner_id FROM accounts WHERE id = (o.payload->>'account_id')::bigint) END), \
           (CASE WHEN o.event_type = 'transfer.completed' \
              THEN (o.payload->>'to_owner_id')::bigint END)) AS r(user_id) \
         JOIN users u ON u.id = r.user_id \
         WHERE o.event_type <> 'user.registered' OR u.role = 'customer'",
    )
    .fetch_all(pool)
    .await?;
    let customers: Vec<String> = ev.world.customers.iter().map(|c| c.email.clone()).collect();
    let e = emails::check(&expected, &ev.mails, &customers);
    checks.push(check(
        "emails carry X-StreamBank-Event-Id",
        !e.headers_missing(),
        if e.headers_missing() {
            format!(
                "headers missing on {} of {} emails: per-event checks fall back to counts per recipient",
                e.without_header, e.received
            )
        } else {
            "every email has one".into()
        },
    ));
    checks.push(check(
        "emails exactly once per (event, recipient)",
        e.duplicates == 0 && e.missing == 0 && e.unexpected == 0 && e.wrong_kind == 0,
        format!(
            "{} expected, {} received: {} duplicate(s){}, {} missing, {} unexpected, {} of the wrong kind; \
             {} repeat(s) with the same Message-ID (droppable)",
            e.expected,
            e.received,
            e.duplicates,
            if e.headers_missing() { " (at least, per recipient)" } else { "" },
            e.missing,
            e.unexpected,
            e.wrong_kind,
            e.repeats_same_message_id
        ),
    ));
    checks.push(check(
        "exactly 1 verification email per customer",
        e.verification_not_once.is_empty(),
        format!(
            "{} customer(s) with another count{}",
            e.verification_not_once.len(),
            for_example(
                e.verification_not_once
                    .first()
                    .map(|(m, n)| format!("{m}: {n}"))
            )
        ),
    ));
    // Rows still being sent (a `state` column, where the workers claim deliveries) are not delivered.
    let (recorded, sending): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE coalesce(to_jsonb(d)->>'state', 'sent') = 'sent'), \
                count(*) FILTER (WHERE to_jsonb(d)->>'state' = 'sending') FROM email_deliveries d",
    )
    .fetch_one(pool)
    .await?;
    totals.emails = e;

    // The pipeline.
    checks.push(check(
        "came to rest in time",
        ev.quiesced,
        format!(
            "{:.1} s: {}",
            ev.quiesce_took.as_secs_f64(),
            ev.pipeline.describe()
        ),
    ));
    checks.push(check(
        "outbox fully published",
        ev.pipeline.unpublished == 0,
        format!("{} unpublished", ev.pipeline.unpublished),
    ));
    checks.push(check(
        "nothing pending in any consumer group",
        ev.pipeline
            .groups
            .iter()
            .all(|g| g.pending == Some(0) && !g.behind),
        ev.pipeline.describe(),
    ));
    let dlq_key = dead_letter_key(prefix);
    let dlq: Vec<redis::streams::StreamId> = redis::cmd("XRANGE")
        .arg(&dlq_key)
        .arg("-")
        .arg("+")
        .query_async::<redis::streams::StreamRangeReply>(redis)
        .await
        .map(|r| r.ids)
        .unwrap_or_default();
    let mut why: HashMap<String, usize> = HashMap::new();
    for entry in &dlq {
        let get = |f: &str| entry.get::<String>(f).unwrap_or_else(|| "?".into());
        let error: String = get("dlq_error").chars().take(100).collect();
        *why.entry(format!(
            "{} {} {error}",
            get("dlq_group"),
            get("event_type")
        ))
        .or_default() += 1;
    }
    let tables: Vec<(String,)> = sqlx::query_as(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = 'public' AND (table_name LIKE '%dead%' OR table_name LIKE '%dlq%')",
    )
    .fetch_all(pool)
    .await?;
    let mut pg_dead = 0i64;
    for (table,) in &tables {
        // Read through to_jsonb so that the check works whatever the table's columns are.
        let rows: Vec<(String, String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT coalesce(to_jsonb(d)->>'consumer_group', to_jsonb(d)->>'group', '?'), \
                    left(coalesce(to_jsonb(d)->>'error', '?'), 120), count(*) \
             FROM \"{table}\" d GROUP BY 1, 2"
        )))
        .fetch_all(pool)
        .await?;
        for (group, error, n) in rows {
            pg_dead += n;
            *why.entry(format!("{table}: {group} {error}")).or_default() += usize::try_from(n)?;
        }
    }
    totals.dead_letters = dlq.len() as u64 + u64::try_from(pg_dead).unwrap_or(0);
    checks.push(check(
        "dead letters: none",
        totals.dead_letters == 0,
        format!(
            "{} in {dlq_key}{}; Postgres tables {:?}: {pg_dead} row(s); \
             (a Redis that lost its data also lost its dead letters)",
            dlq.len(),
            if why.is_empty() {
                String::new()
            } else {
                format!(" ({why:?})")
            },
            tables.iter().map(|t| t.0.as_str()).collect::<Vec<_>>()
        ),
    ));
    let mut by_group: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for (_, group) in ev.dead_lettered.keys() {
        *by_group.entry(group.as_str()).or_default() += 1;
    }
    checks.push(check(
        "no event dead-lettered during the run",
        ev.dead_lettered.is_empty(),
        format!(
            "{} (event, group) pair(s) seen in the dead-letter stream: {by_group:?}{}",
            ev.dead_lettered.len(),
            for_example(ev.dead_lettered.iter().next().map(|((e, g), why)| format!(
                "{g} {e}: {}",
                why.chars().take(160).collect::<String>()
            )))
        ),
    ));
    checks.push(check(
        "no process died on its own",
        ev.crashes.is_empty(),
        if ev.crashes.is_empty() {
            "none".into()
        } else {
            ev.crashes.join("; ")
        },
    ));
    checks.push(check(
        "email_deliveries matches the emails expected",
        usize::try_from(recorded).unwrap_or(0) == totals.emails.expected && sending == 0,
        format!(
            "{recorded} sent, {sending} still sending, {} expected",
            totals.emails.expected
        ),
    ));
    Ok((checks, totals))
}
