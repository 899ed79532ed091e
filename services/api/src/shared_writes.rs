//! The callers' last writes, shared by every api process through Redis, so that a caller whose next
//! request goes to another process still reads their own writes from the replica
//! ([`streambank_service::replica`]).
//!
//! One key per caller, `streambank:read-after:<user id>`, holds the primary's WAL position after the
//! caller's last write, as 16 hexadecimal digits (so that comparing strings compares positions). A
//! script keeps the later of the stored and the new position, so that two writes of one caller
//! answered by two processes cannot leave the earlier one. A key lives [`KEPT_FOR`] after its last
//! write: the time a replica may lag before its callers in other processes can miss their own writes
//! (a replica that far behind is an incident, `docs/operations.md`). Each user's key is its own
//! command, so that on a Redis Cluster none crosses slots.

use std::future::Future;
use std::time::Duration;

use anyhow::Context as _;
use streambank_bus::{Bus, BusConnection};
use streambank_service::SharedWrites;
use streambank_service::replica::SharedResult;
use tokio::sync::Mutex;

/// How long a caller's position is kept after their last write.
pub const KEPT_FOR: Duration = Duration::from_secs(60);

/// The longest a record or a lookup may take before it counts as failed (the lookup's list then
/// runs on the primary).
const TIMEOUT: Duration = Duration::from_millis(250);

/// Keeps the later of the stored position and `ARGV[1]`, and the key for `ARGV[2]` milliseconds.
const KEEP_LATER: &str = r"
local stored = redis.call('GET', KEYS[1])
if not stored or stored < ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
else
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 1
";

/// [`SharedWrites`] in the Redis (lone or cluster) that `REDIS_URL` names.
#[derive(Debug)]
pub struct RedisWrites {
    bus: Bus,
    /// A connection made at first use and again after one fails.
    conn: Mutex<Option<BusConnection>>,
    keep_later: redis::Script,
}

impl RedisWrites {
    pub fn new(bus: Bus) -> Self {
        Self {
            bus,
            conn: Mutex::new(None),
            keep_later: redis::Script::new(KEEP_LATER),
        }
    }

    fn key(user: i64) -> String {
        format!("streambank:read-after:{user}")
    }

    async fn connection(&self) -> anyhow::Result<BusConnection> {
        let mut conn = self.conn.lock().await;
        if let Some(conn) = conn.as_ref() {
            return Ok(conn.clone());
        }
        let fresh = self.bus.connect().await.context("connecting to Redis")?;
        *conn = Some(fresh.clone());
        Ok(fresh)
    }

    /// Runs `call` on the shared connection within [`TIMEOUT`]; on failure the connection is
    /// dropped, and the next call makes a new one.
    async fn within<T, F, Fut>(&self, call: F) -> anyhow::Result<T>
    where
        F: FnOnce(BusConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let outcome = tokio::time::timeout(TIMEOUT, async {
            let conn = self.connection().await?;
            call(conn).await.context("Redis")
        })
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("Redis did not answer within {TIMEOUT:?}")));
        if outcome.is_err() {
            *self.conn.lock().await = None;
        }
        outcome
    }
}

impl SharedWrites for RedisWrites {
    fn record<'a>(&'a self, users: &'a [i64], position: u64) -> SharedResult<'a, ()> {
        Box::pin(async move {
            let position = format!("{position:016x}");
            let kept_ms = KEPT_FOR.as_millis().to_string();
            self.within(|conn| async move {
                let calls = users.iter().map(|&user| {
                    let mut conn = conn.clone();
                    let mut invocation = self.keep_later.key(Self::key(user));
                    invocation.arg(&position).arg(&kept_ms);
                    async move { invocation.invoke_async::<i64>(&mut conn).await }
                });
                for outcome in futures_util::future::join_all(calls).await {
                    outcome?;
                }
                Ok(())
            })
            .await
        })
    }

    fn last(&self, user: i64) -> SharedResult<'_, Option<u64>> {
        Box::pin(async move {
            let stored: Option<String> = self
                .within(|mut conn| async move {
                    redis::cmd("GET")
                        .arg(Self::key(user))
                        .query_async(&mut conn)
                        .await
                })
                .await?;
            stored
                .map(|hex| {
                    u64::from_str_radix(&hex, 16)
                        .with_context(|| format!("{} holds {hex:?}", Self::key(user)))
                })
                .transpose()
        })
    }
}
