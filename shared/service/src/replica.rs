//! Reads from a streaming replica, and how a caller still reads their own writes there.
//!
//! With a replica ([`Bank::with_read_replica`]; the api's `DATABASE_READ_URL`) the lists run on it:
//! statements, transfer histories and notifications, the reads that return many rows and that no
//! write depends on. Everything else stays on the primary: money movements and the checks they make,
//! sessions, and single resources (an account, a transfer) that a client reads before it writes. The
//! ownership check in front of a list is such a read and stays on the primary too.
//!
//! Replication is asynchronous: the replica may not yet hold a transfer its caller made a moment ago.
//! So that callers read their own writes, every write the service layer commits for a caller (a
//! transfer, a deposit) then records the primary's WAL position for that caller, in this process.
//! A list for a caller with such a record first asks the replica how far it has replayed
//! (`pg_last_wal_replay_lsn()`); while it is behind, the read polls every [`POLL`], and after
//! [`ReplicaOptions::max_wait`] it runs on the primary instead. A replica seen past the position
//! drops the record; the furthest replay position seen is kept, so one caller's check spares the
//! others theirs. Callers without a record read from the replica at once: what others wrote (a
//! deposit, an incoming transfer, a notification) shows there once replayed, as it would a moment
//! later on the primary.
//!
//! The records live in this process and, when the process is given a [`SharedWrites`] (the api
//! keeps them in Redis), there too, where every api process finds them: a caller whose next request
//! goes to another process is known there. A list then waits for the later of the two records; if
//! the shared one cannot be read, the list runs on the primary. Without a
//! [`SharedWrites`], a caller whose next request goes to another process reads from the replica at
//! once (`docs/operations.md`, Reads from a replica).
//!
//! A replica that cannot be reached, or does not answer a check within `max_wait`, sends that read,
//! and every read after it, to the primary, until a probe in the background (every [`PROBE_EVERY`])
//! finds it answering again; a statement the replica
//! cancels (a recovery conflict, SQLSTATE 40001) runs again on the primary. Its pool should give up on
//! a connection soon ([`ACQUIRE_TIMEOUT`]): the reads already sent to a replica that went away wait
//! that long before they go to the primary.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use streambank_store::wal;

use crate::{Bank, Caller, Error, Result};

/// How often a read waiting for the replica asks it again.
pub const POLL: Duration = Duration::from_millis(1);

/// How often a replica that could not be reached is tried again, in the background, while the
/// primary serves every list.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);

/// The least time a replay check is given to answer, however little of `max_wait` is left, before
/// the replica counts as unreachable.
const MIN_CHECK: Duration = Duration::from_millis(10);

/// How long a read waits for a connection of the replica's pool (a new one, to a replica that went
/// away, or a free one, when all are busy) before it goes to the primary: the `acquire_timeout` for
/// the replica's pool.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(1);

/// A WAL position that could not be read after a write: that caller's lists go to the primary until
/// their next write records one.
const UNKNOWN: u64 = u64::MAX;

/// The fewest records kept before the ones the replica has replayed are dropped.
const PRUNE_MIN: usize = 1024;

/// What a [`SharedWrites`] call returns; its error is only logged (and the read goes to the primary).
pub type SharedResult<'a, T> =
    Pin<Box<dyn Future<Output = std::result::Result<T, anyhow::Error>> + Send + 'a>>;

/// Where the api processes of one installation share their callers' last writes, so that a caller
/// whose next request goes to another process still reads their own writes there.
pub trait SharedWrites: Send + Sync + std::fmt::Debug {
    /// Records that each of `users` wrote at WAL `position`, unless a later position is recorded
    /// for them already.
    fn record<'a>(&'a self, users: &'a [i64], position: u64) -> SharedResult<'a, ()>;

    /// The last position recorded for `user`, if any is still kept.
    fn last(&self, user: i64) -> SharedResult<'_, Option<u64>>;
}

/// How reads use the replica.
#[derive(Debug, Clone, Copy)]
pub struct ReplicaOptions {
    /// The longest a read waits for the replica to replay its caller's last write before it runs on
    /// the primary instead.
    pub max_wait: Duration,
}

impl Default for ReplicaOptions {
    fn default() -> Self {
        Self {
            max_wait: Duration::from_millis(50),
        }
    }
}

/// Where a list ran, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReadRoute {
    /// On the replica: the caller had made no write it might not have replayed.
    Replica,
    /// On the replica, which had replayed the caller's last write at the first look.
    ReplicaReplayed,
    /// On the replica, after waiting for it to replay the caller's last write.
    ReplicaWaited,
    /// On the primary: the replica was still behind the caller's last write after `max_wait` (or
    /// that write's position is unknown).
    PrimaryBehind,
    /// On the primary: the replica could not be reached or did not answer the check within
    /// `max_wait` (or has not answered a probe since), or cancelled the statement.
    PrimaryFailed,
}

impl ReadRoute {
    pub const ALL: [ReadRoute; 5] = [
        ReadRoute::Replica,
        ReadRoute::ReplicaReplayed,
        ReadRoute::ReplicaWaited,
        ReadRoute::PrimaryBehind,
        ReadRoute::PrimaryFailed,
    ];

    /// The server the read ran on: `replica` or `primary`.
    pub fn server(self) -> &'static str {
        match self {
            Self::Replica | Self::ReplicaReplayed | Self::ReplicaWaited => "replica",
            Self::PrimaryBehind | Self::PrimaryFailed => "primary",
        }
    }

    /// What the caller's last write made of the read: `none` (nothing to wait for), `replayed`,
    /// `waited`, `behind`, or `failed` (the replica did).
    pub fn check(self) -> &'static str {
        match self {
            Self::Replica => "none",
            Self::ReplicaReplayed => "replayed",
            Self::ReplicaWaited => "waited",
            Self::PrimaryBehind => "behind",
            Self::PrimaryFailed => "failed",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Counters of the reads a replica could take (all zero without one).
#[derive(Debug, Default)]
pub(crate) struct ReadCounters {
    routed: [AtomicU64; 5],
    checks: AtomicU64,
    waited_micros: AtomicU64,
}

impl ReadCounters {
    fn count(&self, route: ReadRoute, checked: Option<Duration>) {
        self.routed[route.index()].fetch_add(1, Ordering::Relaxed);
        if let Some(waited) = checked {
            self.checks.fetch_add(1, Ordering::Relaxed);
            let micros = u64::try_from(waited.as_micros()).unwrap_or(u64::MAX);
            self.waited_micros.fetch_add(micros, Ordering::Relaxed);
        }
    }

    pub(crate) fn routed(&self, route: ReadRoute) -> u64 {
        self.routed[route.index()].load(Ordering::Relaxed)
    }

    /// How many reads asked the replica how far it had replayed, and the time they spent on it, the
    /// waiting included.
    pub(crate) fn checks(&self) -> (u64, Duration) {
        (
            self.checks.load(Ordering::Relaxed),
            Duration::from_micros(self.waited_micros.load(Ordering::Relaxed)),
        )
    }
}

/// The replica and what this process knows of its callers' writes.
#[derive(Debug)]
pub(crate) struct ReadReplica {
    pool: PgPool,
    options: ReplicaOptions,
    /// Per user, the primary's WAL position after their last write, until the replica is seen past it.
    written: Mutex<Written>,
    /// The furthest the replica has been seen to replay.
    replayed: AtomicU64,
    /// Set when the replica could not be reached, until a probe reaches it again.
    down: Arc<AtomicBool>,
    /// The records every api process shares, if this one is given them.
    shared: OnceLock<Arc<dyn SharedWrites>>,
}

#[derive(Debug, Default)]
struct Written {
    by_user: HashMap<i64, u64>,
    /// Past this many records, those the replica has replayed are dropped.
    prune_at: usize,
}

impl ReadReplica {
    pub(crate) fn new(pool: PgPool, options: ReplicaOptions) -> Self {
        Self {
            pool,
            options,
            written: Mutex::new(Written {
                by_user: HashMap::new(),
                prune_at: PRUNE_MIN,
            }),
            replayed: AtomicU64::new(0),
            down: Arc::default(),
            shared: OnceLock::new(),
        }
    }

    fn written(&self) -> std::sync::MutexGuard<'_, Written> {
        self.written
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records that `users` have each just committed a write on `primary`, as the position the
    /// primary's WAL has reached now. Called after the commit and before the callers are answered.
    #[tracing::instrument(name = "Record the WAL position of a write", skip_all, fields(users = users.len()))]
    pub(crate) async fn wrote(&self, primary: &PgPool, users: &[i64]) {
        if users.is_empty() {
            return;
        }
        let position = match crate::retry::read(|| wal::written(primary)).await {
            Ok(position) => position,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the WAL position of a write; its callers' lists go to the primary");
                UNKNOWN
            }
        };
        let crowded = {
            let written = self.written();
            written.by_user.len() >= written.prune_at
        };
        if crowded {
            self.prune().await;
        }
        {
            let mut written = self.written();
            for &user in users {
                let entry = written.by_user.entry(user).or_insert(position);
                *entry = later(*entry, position);
            }
        }
        if let Some(shared) = self.shared.get()
            && let Err(e) = shared.record(users, position).await
        {
            tracing::warn!(error = %format!("{e:#}"), "could not share the WAL position of a write; \
                its callers' next lists in other api processes may miss it");
        }
    }

    /// Drops the records the replica has replayed, after asking it how far that is.
    async fn prune(&self) {
        if let Ok(replayed) = wal::replayed(&self.pool).await {
            self.replayed.fetch_max(replayed, Ordering::Relaxed);
        }
        let replayed = self.replayed.load(Ordering::Relaxed);
        let mut written = self.written();
        written.by_user.retain(|_, position| *position > replayed);
        written.prune_at = PRUNE_MIN.max(written.by_user.len() * 2);
    }

    /// The caller's last write that the replica may not hold yet: the later of this process's record
    /// and the shared one (unknown when the shared one cannot be read).
    async fn pending(&self, user_id: i64) -> Option<u64> {
        let replayed = self.replayed.load(Ordering::Relaxed);
        let local = {
            let mut written = self.written();
            match written.by_user.get(&user_id) {
                Some(&position) if position <= replayed => {
                    written.by_user.remove(&user_id);
                    None
                }
                found => found.copied(),
            }
        };
        let Some(shared) = self.shared.get() else {
            return local;
        };
        let elsewhere = match shared.last(user_id).await {
            Ok(position) => position.filter(|&p| p > replayed),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "could not read the shared WAL position of \
                    a caller's last write; their list goes to the primary");
                Some(UNKNOWN)
            }
        };
        // An unknown position is the largest, so it wins.
        local.max(elsewhere)
    }

    fn is_down(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }

    /// Sends every list to the primary until the replica answers again, which a task probes for.
    fn went_down(&self, why: &dyn std::fmt::Display) {
        if self.down.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::warn!(error = %why, "the read replica cannot be reached; lists go to the primary until it answers");
        let (pool, down) = (self.pool.clone(), Arc::clone(&self.down));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(PROBE_EVERY).await;
                if let Ok(Ok(_)) = tokio::time::timeout(PROBE_EVERY, wal::replayed(&pool)).await {
                    down.store(false, Ordering::Release);
                    tracing::info!("the read replica answers again; lists go to it");
                    return;
                }
            }
        });
    }

    /// Where `user_id`'s list runs, and how long deciding took when it asked the replica.
    #[tracing::instrument(name = "Choose where a list reads", skip(self))]
    async fn route(&self, user_id: i64) -> (ReadRoute, Option<Duration>) {
        if self.is_down() {
            return (ReadRoute::PrimaryFailed, None);
        }
        let Some(position) = self.pending(user_id).await else {
            return (ReadRoute::Replica, None);
        };
        if position == UNKNOWN {
            return (ReadRoute::PrimaryBehind, None);
        }
        let started = Instant::now();
        let mut waited = false;
        loop {
            let remaining = self.options.max_wait.saturating_sub(started.elapsed());
            let check = tokio::time::timeout(remaining.max(MIN_CHECK), wal::replayed(&self.pool));
            let replayed = match check.await {
                Ok(Ok(replayed)) => replayed,
                Ok(Err(e)) => {
                    if streambank_store::is_connection_error(&e) {
                        self.went_down(&e);
                    }
                    return (ReadRoute::PrimaryFailed, Some(started.elapsed()));
                }
                // No answer in time: unreachable, or too slow to be worth asking until a probe
                // finds it answering again.
                Err(_) => {
                    self.went_down(&"no answer to the replay check within DATABASE_READ_MAX_WAIT");
                    return (ReadRoute::PrimaryFailed, Some(started.elapsed()));
                }
            };
            self.replayed.fetch_max(replayed, Ordering::Relaxed);
            if replayed >= position {
                let mut written = self.written();
                if written
                    .by_user
                    .get(&user_id)
                    .is_some_and(|p| *p <= replayed)
                {
                    written.by_user.remove(&user_id);
                }
                let route = if waited {
                    ReadRoute::ReplicaWaited
                } else {
                    ReadRoute::ReplicaReplayed
                };
                return (route, Some(started.elapsed()));
            }
            if started.elapsed() + POLL > self.options.max_wait {
                tracing::debug!(
                    behind_bytes = position - replayed,
                    "the replica is still behind the caller's last write; reading from the primary"
                );
                return (ReadRoute::PrimaryBehind, Some(started.elapsed()));
            }
            waited = true;
            tokio::time::sleep(POLL).await;
        }
    }
}

/// The position to keep for a caller who had written at `old` and has written again at `new`: the
/// larger (positions only grow), but an unknown one as soon as the newest is, and a known one as soon as
/// the newest is known.
fn later(old: u64, new: u64) -> u64 {
    match (old, new) {
        (_, UNKNOWN) => UNKNOWN,
        (UNKNOWN, known) => known,
        (old, new) => old.max(new),
    }
}

impl Bank {
    /// Sends lists to `replica`, a streaming replica (hot standby) of this bank's primary, as the
    /// module documentation says. Call it before the bank is used.
    pub fn with_read_replica(mut self, replica: PgPool, options: ReplicaOptions) -> Self {
        self.replica = Some(Arc::new(ReadReplica::new(replica, options)));
        // The transfer batcher records its callers' writes: start it afresh, knowing the replica.
        self.batcher = Arc::default();
        self
    }

    /// Shares this process's records of its callers' writes through `shared`, and consults it for
    /// callers this process has no record of. Call it after [`Bank::with_read_replica`].
    pub fn with_shared_writes(self, shared: Arc<dyn SharedWrites>) -> Self {
        if let Some(replica) = &self.replica {
            // Set once: a bank given its replica afresh has none yet.
            let _ = replica.shared.set(shared);
        }
        self
    }

    /// Whether lists go to a replica.
    pub fn has_read_replica(&self) -> bool {
        self.replica.is_some()
    }

    /// Records, when there is a replica, that `users` have just committed a write.
    pub(crate) async fn wrote(&self, users: &[i64]) {
        if let Some(replica) = &self.replica {
            replica.wrote(&self.pool, users).await;
        }
    }

    /// Runs a list for `caller`: on the replica when there is one, it is up, and it holds the caller's
    /// last write (waiting for it up to `max_wait`); on the primary otherwise, or when the replica
    /// fails the statement.
    pub(crate) async fn list_read<'a, T, F, Fut>(&'a self, caller: Caller, read: F) -> Result<T>
    where
        F: Fn(&'a PgPool) -> Fut,
        Fut: Future<Output = sqlx::Result<T>>,
    {
        let Some(replica) = &self.replica else {
            return crate::retry::read(|| read(&self.pool)).await;
        };
        let (mut route, checked) = replica.route(caller.user_id).await;
        if route.server() == "replica" {
            match read(&replica.pool).await {
                Err(e) if streambank_store::is_connection_error(&e) => {
                    replica.went_down(&e);
                    route = ReadRoute::PrimaryFailed;
                }
                // A recovery conflict: the replica cancelled the statement; the primary has none.
                Err(e) if streambank_store::is_retryable(&e) => {
                    tracing::warn!(error = %e, "the read replica cancelled a list; reading it from the primary");
                    route = ReadRoute::PrimaryFailed;
                }
                outcome => {
                    self.stats.reads.count(route, checked);
                    return outcome.map_err(Error::db);
                }
            }
        }
        self.stats.reads.count(route, checked);
        crate::retry::read(|| read(&self.pool)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_callers_position_only_grows_and_unknown_lasts_until_the_next_known_write() {
        assert_eq!(later(10, 20), 20);
        assert_eq!(
            later(20, 10),
            20,
            "an answer that arrives late does not go back"
        );
        assert_eq!(later(20, UNKNOWN), UNKNOWN);
        assert_eq!(later(UNKNOWN, 30), 30);
    }

    #[test]
    fn every_route_has_its_own_counter_and_labels() {
        let labels: std::collections::HashSet<_> = ReadRoute::ALL
            .iter()
            .map(|r| (r.server(), r.check()))
            .collect();
        assert_eq!(labels.len(), ReadRoute::ALL.len());
        for (i, route) in ReadRoute::ALL.iter().enumerate() {
            assert_eq!(route.index(), i);
        }
    }
}
