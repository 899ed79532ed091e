//! Coming to rest: the state of the event pipeline (unpublished outbox rows; for each stream and each
//! consumer group, the entries pending and whether the group has read up to the stream's end) and the
//! bounded wait until it is idle.

use std::time::Duration;

use streambank_events::{Stream, stream_key};
use streambank_worker::Group;

use super::timeline::Timeline;

/// One consumer group on one stream.
#[derive(Debug, Clone)]
pub struct GroupState {
    pub stream: String,
    pub group: String,
    /// `None`: the group does not exist on a stream that does.
    pub pending: Option<u64>,
    /// The group has not been delivered every entry of the stream yet.
    pub behind: bool,
}

#[derive(Debug, Clone, Default)]
pub struct PipelineState {
    pub unpublished: i64,
    pub groups: Vec<GroupState>,
}

impl PipelineState {
    pub fn idle(&self) -> bool {
        self.unpublished == 0
            && self
                .groups
                .iter()
                .all(|g| g.pending == Some(0) && !g.behind)
    }

    pub fn describe(&self) -> String {
        let mut parts = vec![format!("{} unpublished", self.unpublished)];
        for g in &self.groups {
            let pending = g
                .pending
                .map_or_else(|| "missing".to_owned(), |p| p.to_string());
            parts.push(format!(
                "{}/{}: pending {pending}{}",
                g.stream,
                g.group,
                if g.behind { ", behind" } else { "" }
            ));
        }
        parts.join("; ")
    }
}

/// "1700000000000-3" as a comparable pair.
fn entry_id(raw: &str) -> (u64, u64) {
    let (ms, seq) = raw.split_once('-').unwrap_or((raw, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

fn field(map: &[(String, redis::Value)], name: &str) -> Option<redis::Value> {
    map.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

fn pairs(value: redis::Value) -> Vec<(String, redis::Value)> {
    let items: Vec<redis::Value> = match value {
        redis::Value::Array(items) => items,
        redis::Value::Map(map) => map.into_iter().flat_map(|(k, v)| [k, v]).collect(),
        _ => Vec::new(),
    };
    items
        .chunks(2)
        .filter_map(|kv| match kv {
            [k, v] => redis::from_redis_value::<String>(k.clone())
                .ok()
                .map(|k| (k, v.clone())),
            _ => None,
        })
        .collect()
}

/// Reads the pipeline's state now.
pub async fn pipeline_state(
    pool: &sqlx::PgPool,
    redis: &mut streambank_bus::BusConnection,
    prefix: &str,
    partitions: u16,
) -> anyhow::Result<PipelineState> {
    let (unpublished,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            .fetch_one(pool)
            .await?;
    let mut groups = Vec::new();
    for (stream, partition) in Stream::ALL
        .into_iter()
        .flat_map(|s| (0..partitions).map(move |p| (s, p)))
    {
        let key = stream_key(
            &streambank_config::partition_prefix(prefix, partitions, partition),
            stream,
        );
        let name = if partitions > 1 {
            format!("{}@p{partition}", stream.name())
        } else {
            stream.name().to_owned()
        };
        let info: redis::RedisResult<redis::Value> = redis::cmd("XINFO")
            .arg("STREAM")
            .arg(&key)
            .query_async(redis)
            .await;
        // No stream: nothing was ever published to it since Redis last lost its data.
        let Ok(info) = info else { continue };
        let info = pairs(info);
        let last = field(&info, "last-generated-id")
            .and_then(|v| redis::from_redis_value::<String>(v).ok())
            .unwrap_or_default();
        let length = field(&info, "length")
            .and_then(|v| redis::from_redis_value::<u64>(v).ok())
            .unwrap_or(0);
        let raw: Vec<redis::Value> = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&key)
            .query_async(redis)
            .await?;
        let found: Vec<Vec<(String, redis::Value)>> = raw.into_iter().map(pairs).collect();
        for group in Group::ALL.iter().filter(|g| g.streams().contains(&stream)) {
            let state = found.iter().find(|g| {
                field(g, "name").and_then(|v| redis::from_redis_value::<String>(v).ok())
                    == Some(group.name().to_owned())
            });
            let (pending, behind) = match state {
                None => (None, length > 0),
                Some(g) => {
                    let pending = field(g, "pending")
                        .and_then(|v| redis::from_redis_value::<u64>(v).ok())
                        .unwrap_or(u64::MAX);
                    let delivered = field(g, "last-delivered-id")
                        .and_then(|v| redis::from_redis_value::<String>(v).ok())
                        .unwrap_or_default();
                    (
                        Some(pending),
                        length > 0 && entry_id(&delivered) < entry_id(&last),
                    )
                }
            };
            groups.push(GroupState {
                stream: name.clone(),
                group: group.name().to_owned(),
                pending,
                behind,
            });
        }
    }
    Ok(PipelineState {
        unpublished,
        groups,
    })
}

/// Waits until the pipeline is idle twice in a row one second apart, or `limit` passes. Returns the
/// last state seen, whether it came to rest, and how long that took.
pub async fn wait_idle(
    pool: &sqlx::PgPool,
    redis_url: &str,
    prefix: &str,
    partitions: u16,
    limit: Duration,
    timeline: &Timeline,
) -> (PipelineState, bool, Duration) {
    let started = tokio::time::Instant::now();
    let mut idle_once = false;
    let mut last = PipelineState::default();
    let mut last_print = started;
    while started.elapsed() < limit {
        let state = async {
            let mut conn = streambank_bus::Bus::open(redis_url)?.connect().await?;
            pipeline_state(pool, &mut conn, prefix, partitions).await
        }
        .await;
        if let Ok(state) = state {
            if state.idle() {
                if idle_once {
                    return (state, true, started.elapsed());
                }
                idle_once = true;
            } else {
                idle_once = false;
            }
            if last_print.elapsed() >= Duration::from_secs(10) {
                timeline.log(format!("  quiesce: {}", state.describe()));
                last_print = tokio::time::Instant::now();
            }
            last = state;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    (last, false, started.elapsed())
}

/// Every event dead-lettered during the run, by (event id, group), with its error: read from the
/// dead-letter stream every second, because a Redis that loses its data (a fault of the campaign) loses
/// its dead letters too, and a republish then hides them.
pub type DeadLetters = std::sync::Mutex<std::collections::BTreeMap<(String, String), String>>;

/// Watches `{prefix}:dlq` until `stop` is set.
pub async fn watch_dead_letters(
    redis_url: String,
    prefix: String,
    seen: std::sync::Arc<DeadLetters>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    timeline: std::sync::Arc<Timeline>,
) {
    let key = streambank_events::dead_letter_key(&prefix);
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let entries = async {
            let mut conn = streambank_bus::Bus::open(&redis_url)?.connect().await?;
            redis::cmd("XRANGE")
                .arg(&key)
                .arg("-")
                .arg("+")
                .query_async::<redis::streams::StreamRangeReply>(&mut conn)
                .await
        }
        .await;
        let Ok(entries) = entries else { continue };
        let mut new = 0;
        let mut seen = seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for entry in entries.ids {
            let get = |f: &str| entry.get::<String>(f).unwrap_or_else(|| "?".into());
            let id = (get("event_id"), get("dlq_group"));
            if let std::collections::btree_map::Entry::Vacant(slot) = seen.entry(id) {
                new += 1;
                slot.insert(format!("{} {}", get("event_type"), get("dlq_error")));
            }
        }
        if new > 0 {
            timeline.log(format!(
                "  {new} event(s) newly dead-lettered ({} so far)",
                seen.len()
            ));
        }
    }
}
