//! `bankctl outbox ...` and `bankctl dlq ...`: repairing the event pipeline.

use std::collections::BTreeMap;

use anyhow::Context as _;
use redis::streams::StreamRangeReply;
use sqlx::postgres::PgConnectOptions;
use streambank_events::dead_letter_key;

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

async fn redis(url: &str) -> anyhow::Result<redis::aio::MultiplexedConnection> {
    let client = redis::Client::open(url).context("REDIS_URL is not a Redis URL")?;
    client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach Redis at {url} ({e}); is it running?"))
}

fn strings(entry: &redis::streams::StreamId) -> BTreeMap<String, String> {
    entry
        .map
        .iter()
        .filter_map(|(k, v)| {
            redis::from_redis_value::<String>(v.clone())
                .ok()
                .map(|v| (k.clone(), v))
        })
        .collect()
}

/// One line per dead-lettered entry.
pub async fn dlq_list(redis_url: &str, prefix: &str) -> anyhow::Result<String> {
    let mut conn = redis(redis_url).await?;
    let key = dead_letter_key(prefix);
    let reply: StreamRangeReply = redis::cmd("XRANGE")
        .arg(&key)
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await?;
    if reply.ids.is_empty() {
        return Ok(format!("{key} is empty"));
    }
    let lines: Vec<String> = reply
        .ids
        .iter()
        .map(|entry| {
            let f = strings(entry);
            let get = |name: &str| f.get(name).map_or("?", String::as_str);
            format!(
                "{}  {} {}  group={} from={} deliveries={}  error: {}",
                entry.id,
                get("event_type"),
                get("event_id"),
                get("dlq_group"),
                get("dlq_stream"),
                get("dlq_deliveries"),
                get("dlq_error")
            )
        })
        .collect();
    Ok(lines.join("\n"))
}

/// Puts a dead-lettered entry back on its stream (as a new entry) and removes it from the dead letters.
/// Groups that already handled the event skip it (they deduplicate by event id).
pub async fn dlq_replay(redis_url: &str, prefix: &str, id: &str) -> anyhow::Result<String> {
    let mut conn = redis(redis_url).await?;
    let key = dead_letter_key(prefix);
    let reply: StreamRangeReply = redis::cmd("XRANGE")
        .arg(&key)
        .arg(id)
        .arg(id)
        .query_async(&mut conn)
        .await?;
    let entry = reply
        .ids
        .first()
        .with_context(|| format!("no entry {id} in {key}"))?;
    let fields = strings(entry);
    let stream = fields
        .get("dlq_stream")
        .with_context(|| format!("entry {id} does not say which stream it came from"))?;
    let mut cmd = redis::cmd("XADD");
    cmd.arg(stream).arg("*");
    for (field, value) in fields.iter().filter(|(k, _)| !k.starts_with("dlq_")) {
        cmd.arg(field).arg(value);
    }
    let new_id: String = cmd.query_async(&mut conn).await?;
    let _: i64 = redis::cmd("XDEL")
        .arg(&key)
        .arg(id)
        .query_async(&mut conn)
        .await?;
    Ok(format!("replayed {id} onto {stream} as {new_id}"))
}
