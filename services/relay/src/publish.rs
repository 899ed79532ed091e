//! Publishing: claim a batch of one partition's rows, send them to their streams with one pipelined
//! round trip (then, when asked, `WAIT` for replicas), and commit the claim.

use std::time::Duration;

use anyhow::Context as _;
use redis::aio::ConnectionLike;
use sqlx::PgPool;
use streambank_events::{EventType, Stream, StreamEntry, stream_key};
use streambank_store::relay::{self, Partition};

use crate::RelayMetrics;

/// Where and how one partition's rows are published.
#[derive(Debug, Clone)]
pub struct Lane {
    pub partition: Partition,
    /// The partition's key prefix (`streambank_config::partition_prefix`).
    pub prefix: String,
    /// Rows per claim (and per pipelined `XADD` batch).
    pub batch_size: i64,
    /// Approximate cap on each stream's length (`XADD MAXLEN ~`).
    pub max_stream_len: u64,
    /// Replicas that must hold a batch's entries before its rows count as published (`WAIT`); 0 for
    /// none.
    pub min_replicas: u32,
    /// How long `WAIT` waits for them.
    pub wait_timeout: Duration,
}

impl Lane {
    /// The whole outbox as one partition under `prefix`, without `WAIT`.
    pub fn whole(prefix: &str, batch_size: i64, max_stream_len: u64) -> Self {
        Self {
            partition: Partition::WHOLE,
            prefix: prefix.to_owned(),
            batch_size,
            max_stream_len,
            min_replicas: 0,
            wait_timeout: Duration::ZERO,
        }
    }
}

/// Claims up to `batch_size` unpublished rows, publishes them with one pipelined round trip to Redis, and
/// marks them published. Returns how many rows it published (0: nothing was waiting).
pub async fn publish_batch(
    pool: &PgPool,
    redis: &mut (impl ConnectionLike + Send),
    prefix: &str,
    batch_size: i64,
    max_stream_len: u64,
) -> anyhow::Result<usize> {
    let lane = Lane::whole(prefix, batch_size, max_stream_len);
    let batch = Batch::claim(pool, &lane).await?;
    let published = batch.rows.len();
    batch.publish(redis, &lane, None).await?;
    Ok(published)
}

/// [`drain_lane`] over the whole outbox under `prefix`, without `WAIT`.
pub async fn drain(
    pool: &PgPool,
    redis: &mut (impl ConnectionLike + Send),
    prefix: &str,
    batch_size: i64,
    max_stream_len: u64,
    metrics: Option<&RelayMetrics>,
    stop: impl Fn() -> bool,
) -> anyhow::Result<usize> {
    let lane = Lane::whole(prefix, batch_size, max_stream_len);
    drain_lane(pool, redis, &lane, metrics, stop).await
}

/// Publishes batches of `lane` until one comes back short of `batch_size` or `stop` says so; returns
/// how many rows were published. The claim of each next batch runs while the current one is on its way
/// to Redis (`SKIP LOCKED` keeps the two apart), so Postgres and Redis work at the same time instead of
/// taking turns. A batch is sent only after the one before it was, so streams get events in
/// commit-time order.
#[tracing::instrument(name = "Drain the outbox", skip_all, fields(partition = lane.partition.index))]
pub async fn drain_lane(
    pool: &PgPool,
    redis: &mut (impl ConnectionLike + Send),
    lane: &Lane,
    metrics: Option<&RelayMetrics>,
    stop: impl Fn() -> bool,
) -> anyhow::Result<usize> {
    let mut total = 0;
    let mut next = Batch::claim(pool, lane).await?;
    loop {
        let batch = next;
        let full = batch.rows.len() as i64 >= lane.batch_size;
        let size = batch.rows.len();
        if !full || stop() {
            batch.publish(redis, lane, metrics).await?;
            return Ok(total + size);
        }
        // On failure the claimed next batch is dropped, which rolls it back: its rows stay unpublished.
        let (published, claimed) = tokio::join!(
            batch.publish(redis, lane, metrics),
            Batch::claim(pool, lane)
        );
        published?;
        total += size;
        next = claimed?;
    }
}

/// Rows claimed (and marked published) in a transaction that is still open.
struct Batch {
    tx: sqlx::Transaction<'static, sqlx::Postgres>,
    rows: Vec<relay::OutboxRow>,
}

impl Batch {
    async fn claim(pool: &PgPool, lane: &Lane) -> anyhow::Result<Self> {
        let mut tx = pool.begin().await?;
        let rows = relay::claim_in(&mut tx, lane.partition, lane.batch_size).await?;
        Ok(Self { tx, rows })
    }

    /// Sends the rows to their streams in one pipelined round trip, then commits the claim. With
    /// `min_replicas`, the same round trip ends with `WAIT`: a batch fewer replicas acknowledged is
    /// not committed (its rows stay unpublished and go again; consumers drop the repeats), because a
    /// master that dies before replicating loses what it acknowledged.
    #[tracing::instrument(name = "Publish an outbox batch", skip_all, fields(rows = self.rows.len()))]
    async fn publish(
        self,
        redis: &mut (impl ConnectionLike + Send),
        lane: &Lane,
        metrics: Option<&RelayMetrics>,
    ) -> anyhow::Result<()> {
        let Self { tx, rows } = self;
        if rows.is_empty() {
            tx.commit().await?;
            return Ok(());
        }
        // One span per event, continuing the trace of the request that wrote it; the stream entry
        // carries this span's context on to the worker, so a trace reads request -> publish -> handling.
        let mut published = Vec::with_capacity(rows.len());
        for row in &rows {
            let span = tracing::info_span!("publish event", event_type = %row.event_type, event_id = %row.id);
            streambank_telemetry::continue_trace(
                &span,
                row.traceparent.as_deref().unwrap_or_default(),
            );
            let mut entry = entry(row);
            if let Some(traceparent) = streambank_telemetry::traceparent_of(&span) {
                entry.traceparent = traceparent;
            }
            // An event type this relay does not know (written by a newer version) still travels, on a
            // stream named after its aggregate, rather than blocking everything behind it.
            let stream = EventType::parse(&row.event_type)
                .map_or_else(|| fallback_stream(&row.aggregate_type), EventType::stream);
            published.push((span, stream, entry));
        }
        let mut pipe = redis::pipe();
        for (_, stream, entry) in &published {
            let cmd = pipe
                .cmd("XADD")
                .arg(stream_key(&lane.prefix, *stream))
                .arg("MAXLEN")
                .arg("~")
                .arg(lane.max_stream_len)
                .arg("*");
            for (field, value) in entry.to_fields() {
                cmd.arg(field).arg(value);
            }
        }
        if lane.min_replicas > 0 {
            pipe.cmd("WAIT")
                .arg(lane.min_replicas)
                .arg(lane.wait_timeout.as_millis() as u64);
        }
        let replies: Vec<redis::Value> = pipe
            .query_async(redis)
            .await
            .context("XADD pipeline failed")?;
        if lane.min_replicas > 0 {
            let acknowledged = match replies.last() {
                Some(redis::Value::Int(n)) => *n,
                _ => 0,
            };
            if acknowledged < i64::from(lane.min_replicas) {
                if let Some(m) = metrics {
                    m.unreplicated();
                }
                anyhow::bail!(
                    "{acknowledged} of the {} replicas asked for acknowledged the batch within {:?}; \
                     its rows stay unpublished and go again",
                    lane.min_replicas,
                    lane.wait_timeout
                );
            }
        }
        // The claim marked the rows published; committing makes that stand, now that Redis has them.
        tx.commit().await?;
        if let Some(m) = metrics {
            let now = chrono::Utc::now();
            m.batch(rows.len());
            for (row, (_, stream, _)) in rows.iter().zip(&published) {
                let lag = (now - row.created_at).num_microseconds().unwrap_or(0) as f64 / 1e6;
                m.published(stream.name(), lag);
            }
        }
        tracing::debug!(rows = rows.len(), "published");
        Ok(())
    }
}

/// The stream entry for an outbox row.
fn entry(row: &relay::OutboxRow) -> StreamEntry {
    StreamEntry {
        event_id: row.id.to_string(),
        event_type: row.event_type.clone(),
        aggregate_type: row.aggregate_type.clone(),
        aggregate_id: row.aggregate_id.clone(),
        occurred_at: row
            .created_at
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        traceparent: row.traceparent.clone().unwrap_or_default(),
        payload: row.payload.clone(),
    }
}

fn fallback_stream(aggregate_type: &str) -> Stream {
    match aggregate_type {
        "user" => Stream::Users,
        "account" => Stream::Accounts,
        _ => Stream::Transfers,
    }
}
