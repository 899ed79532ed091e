//! The pending entries: retrying this process's failed entries, taking over the entries of dead
//! consumers, and dead-lettering what cannot succeed.
//!
//! Two workers must never work on one entry at once, and neither may take an entry back from the other
//! while it is fresh:
//!
//! - This process retries only entries that are still its own at the moment it claims them: a short
//!   script checks the owner and claims in one step (`XPENDING ... consumer` then `XCLAIM`, atomic in
//!   Redis), so a stale `XPENDING` snapshot cannot take back an entry another consumer has since taken.
//! - It takes over entries only from consumers that are dead: idle (no read, no claim) for
//!   `claim_min_idle`. A live consumer reads at least once a second, also while it waits out an outage.
//!   `XCLAIM` with that same minimum idle time then refuses any entry another worker touched meanwhile.
//!
//! The email handlers claim each delivery in Postgres as well ([`crate::handlers`]), so even a consumer
//! wrongly taken for dead (stalled longer than `claim_min_idle`) cannot make an email go out twice.

use std::collections::HashMap;
use std::time::Duration;

use redis::streams::{
    StreamClaimReply, StreamInfoConsumersReply, StreamPendingCountReply, StreamPendingReply,
};
use streambank_bus::BusConnection;
use streambank_events::{StreamEntry, dead_letter_key, stream_key};
use streambank_store::dead_letters::{self, NewDeadLetter};

use crate::consumer::{FailureRecord, Held, PROBE_COUNT, Worker, fields, lock};
use crate::failure::Failure;
use crate::group::Group;

/// Pending entries examined per stream and sweep (this process's own, or one dead consumer's).
const SWEEP_PAGE: usize = 512;

/// Claims the given entries for a consumer, but only those that consumer still owns: one atomic step.
/// KEYS[1] stream; ARGV[1] group; ARGV[2] consumer; ARGV[3..] entry ids.
const CLAIM_OWN: &str = r"
local mine = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2])
  if #p == 1 then mine[#mine + 1] = ARGV[i] end
end
if #mine == 0 then return {} end
return redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, unpack(mine))
";

/// The entries a claim returned, each with its delivery count: the count `XPENDING` showed before the
/// claim, plus the claim's own delivery.
fn held(key: &str, claimed: StreamClaimReply, delivered: &HashMap<String, u64>) -> Vec<Held> {
    claimed
        .ids
        .into_iter()
        .map(|id| Held {
            deliveries: delivered.get(&id.id).copied().unwrap_or(1) + 1,
            key: key.to_owned(),
            id,
        })
        .collect()
}

impl Worker {
    /// Examines the group's pending entries on every key it reads: retries this process's failed
    /// entries that are due (those that failed for an outage only once the group's dependencies
    /// answer again; while they do not, a few as a probe), and takes over the entries of dead
    /// consumers. Returns how many entries it handled. Call it only while this process handles none
    /// of the group's entries: an entry in the middle of its handling is this process's own and
    /// pending, and would be handled twice at once.
    pub async fn sweep_once(
        &self,
        conn: &mut BusConnection,
        group: Group,
    ) -> anyhow::Result<usize> {
        self.sweep_keys(conn, group, &self.keys(group)).await
    }

    /// [`Worker::sweep_once`] on `keys` only: a lane sweeps the keys it reads, between its reads,
    /// so that no entry it sweeps is being handled by it (and no other lane reads those keys).
    pub(crate) async fn sweep_keys(
        &self,
        conn: &mut BusConnection,
        group: Group,
        keys: &[String],
    ) -> anyhow::Result<usize> {
        let mut handled = 0;
        for key in keys {
            let summary: StreamPendingReply = redis::cmd("XPENDING")
                .arg(key)
                .arg(group.name())
                .query_async(conn)
                .await?;
            self.count_pending(group, key, summary.count() as u64);
            if summary.count() == 0 {
                continue;
            }
            handled += self.retry_own(conn, group, key).await?;
            if self.outage(group).is_none() {
                handled += self.take_over(conn, group, key).await?;
            }
        }
        Ok(handled)
    }

    /// Keeps `entries` as the group's pending count on `key`, and sets the gauge of the key's stream
    /// to the count over every partition (each lane sweeps its own).
    fn count_pending(&self, group: Group, key: &str, entries: u64) {
        let mut counts = lock(&self.pending_counts);
        counts.insert((group, key.to_owned()), entries);
        for stream in group.streams() {
            let total: u64 = self
                .config
                .streams
                .partition_prefixes()
                .iter()
                .filter_map(|prefix| counts.get(&(group, stream_key(prefix, *stream))))
                .sum();
            self.metrics.pending(group.name(), stream.name(), total);
        }
    }

    /// Retries this process's failed entries on `key` whose time has come.
    async fn retry_own(
        &self,
        conn: &mut BusConnection,
        group: Group,
        key: &str,
    ) -> anyhow::Result<usize> {
        let pending: StreamPendingCountReply = redis::cmd("XPENDING")
            .arg(key)
            .arg(group.name())
            .arg("-")
            .arg("+")
            .arg(SWEEP_PAGE)
            .arg(&self.consumer)
            .query_async(conn)
            .await?;
        let probing = self.outage(group).is_some();
        let mut due: Vec<(String, u64)> = Vec::new();
        for p in pending.ids {
            let deliveries = p.times_delivered as u64;
            let kind = self.failure(&p.id).map(|f| f.kind);
            let is_due = if probing {
                due.len() < PROBE_COUNT
            } else {
                let backoff = match kind {
                    // Failed for an outage that has ended: at once (the outage was the backoff).
                    Some(Failure::Outage) => Duration::ZERO,
                    _ => self.backoff(&p.id, deliveries),
                };
                p.last_delivered_ms as u128 >= backoff.as_millis()
            };
            if is_due {
                due.push((p.id, deliveries));
            }
        }
        if due.is_empty() {
            return Ok(0);
        }
        let delivered: HashMap<String, u64> = due.iter().cloned().collect();
        let claim_own = redis::Script::new(CLAIM_OWN);
        let mut script = claim_own.prepare_invoke();
        script.key(key).arg(group.name()).arg(&self.consumer);
        for (id, _) in &due {
            script.arg(id);
        }
        let claimed: StreamClaimReply = script.invoke_async(conn).await?;
        self.metrics.retried(group.name(), claimed.ids.len());
        self.handle_held(conn, group, held(key, claimed, &delivered))
            .await
    }

    /// Takes over, and handles, the entries on `key` of consumers that are dead.
    async fn take_over(
        &self,
        conn: &mut BusConnection,
        group: Group,
        key: &str,
    ) -> anyhow::Result<usize> {
        let min_idle = self.config.claim_min_idle.as_millis() as usize;
        let consumers: StreamInfoConsumersReply = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(key)
            .arg(group.name())
            .query_async(conn)
            .await?;
        let mut handled = 0;
        for dead in consumers
            .consumers
            .iter()
            .filter(|c| c.name != self.consumer && c.pending > 0 && c.idle >= min_idle)
        {
            let pending: StreamPendingCountReply = redis::cmd("XPENDING")
                .arg(key)
                .arg(group.name())
                .arg("IDLE")
                .arg(min_idle)
                .arg("-")
                .arg("+")
                .arg(SWEEP_PAGE)
                .arg(&dead.name)
                .query_async(conn)
                .await?;
            if pending.ids.is_empty() {
                continue;
            }
            let delivered: HashMap<String, u64> = pending
                .ids
                .iter()
                .map(|p| (p.id.clone(), p.times_delivered as u64))
                .collect();
            // XCLAIM checks the idle time of each entry again, atomically: an entry that another
            // worker took over (or its owner touched) since the list above stays where it is.
            let claimed: StreamClaimReply = redis::cmd("XCLAIM")
                .arg(key)
                .arg(group.name())
                .arg(&self.consumer)
                .arg(min_idle)
                .arg(delivered.keys().collect::<Vec<_>>())
                .query_async(conn)
                .await?;
            if claimed.ids.is_empty() {
                continue;
            }
            tracing::info!(group = group.name(), from = %dead.name, entries = claimed.ids.len(), "took over the entries of a consumer that is gone");
            handled += self
                .handle_held(conn, group, held(key, claimed, &delivered))
                .await?;
        }
        Ok(handled)
    }

    /// Gives up on an entry: records it in Postgres (the dead-letter record, which survives Redis),
    /// copies it to the `{prefix}:dlq` stream for inspection, and acknowledges it. If Postgres cannot
    /// record it, the entry stays pending and is dead-lettered on a later try.
    pub(crate) async fn dead_letter(
        &self,
        conn: &mut BusConnection,
        group: Group,
        held: &Held,
        failure: &FailureRecord,
    ) -> anyhow::Result<()> {
        let entry = fields(&held.id);
        let event_id = StreamEntry::from_fields(entry.clone())
            .ok()
            .and_then(|e| e.event_id.parse().ok());
        let as_json = serde_json::to_value(&entry)?;
        let attempts = i32::try_from(held.deliveries).unwrap_or(i32::MAX);
        let recorded = dead_letters::record(
            &self.db,
            &NewDeadLetter {
                event_id,
                consumer_group: group.name(),
                stream: &held.key,
                stream_entry_id: &held.id.id,
                fields: &as_json,
                error: &failure.error,
                attempts,
                first_failed_at: failure.first_failed_at,
            },
        )
        .await;
        let dead_letter_id = match recorded {
            Ok(id) => id,
            Err(e) => {
                tracing::warn!(group = group.name(), entry = %held.id.id, error = %e, "cannot record the dead letter yet; the entry stays pending");
                return Ok(());
            }
        };
        let mut cmd = redis::cmd("XADD");
        cmd.arg(dead_letter_key(&self.config.streams.prefix))
            .arg("*");
        for (field, value) in &entry {
            cmd.arg(field).arg(value);
        }
        cmd.arg("dlq_stream")
            .arg(&held.key)
            .arg("dlq_entry_id")
            .arg(&held.id.id)
            .arg("dlq_group")
            .arg(group.name())
            .arg("dlq_deliveries")
            .arg(held.deliveries)
            .arg("dlq_error")
            .arg(&failure.error)
            .arg("dlq_record")
            .arg(dead_letter_id);
        let _: String = cmd.query_async(conn).await?;
        let _: i64 = redis::cmd("XACK")
            .arg(&held.key)
            .arg(group.name())
            .arg(&held.id.id)
            .query_async(conn)
            .await?;
        self.metrics.dead_lettered(group.name());
        tracing::error!(
            group = group.name(),
            entry = %held.id.id,
            dead_letter = dead_letter_id,
            deliveries = held.deliveries,
            failure = failure.kind.name(),
            error = %failure.error,
            "entry dead-lettered; `bankctl dlq list` shows it, `bankctl dlq replay` retries it"
        );
        Ok(())
    }
}
