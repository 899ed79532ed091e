//! `bankctl outbox ...` and `bankctl dlq ...`: repairing the event pipeline.

use anyhow::Context as _;
use sqlx::postgres::PgConnectOptions;
use streambank_store::dead_letters;

/// Marks retained outbox rows created since `since` for publishing again (the relay does the rest).
pub async fn republish(options: &PgConnectOptions, since: &str) -> anyhow::Result<String> {
    let since = chrono::DateTime::parse_from_rfc3339(since)
        .with_context(|| {
            format!("--since must be an RFC 3339 time such as 2026-11-25T10:00:00Z, got {since:?}")
        })?
        .with_timezone(&chrono::Utc);
    let pool = crate::connect(options).await?;
    let marked = streambank_store::relay::republish_since(&pool, since).await?;
    Ok(format!(
        "{marked} event(s) since {since} marked for publishing again; the relay publishes them now"
    ))
}

async fn redis(url: &str) -> anyhow::Result<streambank_bus::BusConnection> {
    let bus = streambank_bus::Bus::open(url).context("REDIS_URL is not a Redis URL")?;
    bus.connect()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach Redis at {url} ({e}); is it running?"))
}

/// One line per dead letter not yet replayed, from Postgres (the record; Redis may have lost its copy).
pub async fn dlq_list(options: &PgConnectOptions) -> anyhow::Result<String> {
    let pool = crate::connect(options).await?;
    let letters = dead_letters::waiting(&pool).await?;
    if letters.is_empty() {
        return Ok("no dead letters".to_owned());
    }
    let lines: Vec<String> = letters
        .iter()
        .map(|d| {
            let field = |name: &str| d.fields.get(name).and_then(|v| v.as_str()).unwrap_or("?");
            format!(
                "{}  {} {}  group={} from={} entry={} attempts={} first={} last={}  error: {}",
                d.id,
                field("event_type"),
                d.event_id.map_or_else(|| "-".to_owned(), |e| e.to_string()),
                d.consumer_group,
                d.stream,
                d.stream_entry_id,
                d.attempts,
                d.first_failed_at.format("%Y-%m-%dT%H:%M:%SZ"),
                d.last_failed_at.format("%Y-%m-%dT%H:%M:%SZ"),
                d.error
            )
        })
        .collect();
    Ok(lines.join("\n"))
}

/// Puts a dead letter's entry back on its stream (as a new entry) and marks it replayed. Groups that
/// already handled the event skip it (they deduplicate by event id).
pub async fn dlq_replay(
    options: &PgConnectOptions,
    redis_url: &str,
    id: &str,
) -> anyhow::Result<String> {
    let id: i64 = id.parse().ok().filter(|id| *id > 0).with_context(|| {
        format!("a dead letter id is a number as `dlq list` shows it, got {id:?}")
    })?;
    let pool = crate::connect(options).await?;
    let letter = dead_letters::get(&pool, id)
        .await?
        .with_context(|| format!("no dead letter {id}"))?;
    if letter.replayed_at.is_some() {
        anyhow::bail!("dead letter {id} was already replayed");
    }
    let fields = letter
        .fields
        .as_object()
        .with_context(|| format!("dead letter {id} holds no entry fields"))?;
    let mut conn = redis(redis_url).await?;
    let mut cmd = redis::cmd("XADD");
    cmd.arg(&letter.stream).arg("*");
    for (field, value) in fields {
        cmd.arg(field).arg(value.as_str().unwrap_or_default());
    }
    let new_id: String = cmd.query_async(&mut conn).await?;
    dead_letters::mark_replayed(&pool, id).await?;
    Ok(format!(
        "replayed dead letter {id} onto {} as {new_id}",
        letter.stream
    ))
}
