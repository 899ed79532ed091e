//! Group commit for transfers: the transfers that arrive while others are being written go to Postgres
//! together, as one statement in one transaction.
//!
//! Why: every transaction's commit waits for its WAL flush, and on a small machine the flush, not the
//! work, bounds how many transfers commit per second. A batch of n transfers costs one round trip and one
//! flush, and Postgres writes a whole batch with a few statements (`transfer_batch` writes it in waves,
//! one statement each). Nothing waits on a timer to fill a batch: an executor takes whatever is queued
//! when it becomes free (at least one transfer), and yields while more keeps arriving ([`gather`]), so an
//! idle bank answers a lone transfer as fast as before, and a busy one answers more of them per flush.
//!
//! Each transfer in a batch still succeeds or fails on its own (`transfer_batch` in `migrations/` checks
//! each one under the batch's locks). Transient failures (serialization, deadlock) retry the whole batch
//! a bounded number of times and are counted; any other failure of a batch runs its transfers one by one,
//! so one bad transfer cannot fail the others.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng as _;
use sqlx::PgPool;
use streambank_store::EventMeta;
use streambank_store::ledger::{self, NewTransfer};
use tokio::sync::{Mutex, mpsc, oneshot};
use tracing::Instrument as _;

use crate::money::{MAX_ATTEMPTS, rejection};
use crate::replica::ReadReplica;
use crate::stats::Stats;
use crate::{Error, Result, TransferResult};

/// How transfers are batched.
#[derive(Debug, Clone, Copy)]
pub struct BatchOptions {
    /// Batches in flight at once (each holds one pooled connection while it runs).
    pub executors: usize,
    /// The most transfers in one batch.
    pub max_batch: usize,
}

impl Default for BatchOptions {
    /// One executor: on the two-core machine of `docs/benchmarks.md` one batch at a time, gathering
    /// every waiting transfer, beat two batches in flight at 8 and at 32 callers (with two, the batches
    /// halve and compete for the same cores and WAL flushes). The cost is that a batch waiting
    /// on a row lock (held by an idempotent transfer or a deposit, each one short transaction) holds up
    /// the transfers queued behind it. Bigger machines may want more.
    fn default() -> Self {
        Self {
            executors: 1,
            max_batch: 64,
        }
    }
}

struct Job {
    new: NewTransfer<'static>,
    event: EventMeta,
    reply: oneshot::Sender<Result<TransferResult>>,
}

/// The queue in front of the executors.
#[derive(Debug)]
pub(crate) struct Batcher {
    queue: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("event", &self.event.id)
            .finish()
    }
}

impl Batcher {
    /// Starts `options.executors` executors on the current runtime. With a read replica, each batch
    /// records its callers' writes there before it answers them.
    pub(crate) fn start(
        pool: PgPool,
        replica: Option<Arc<ReadReplica>>,
        stats: Arc<Stats>,
        options: BatchOptions,
    ) -> Self {
        let (queue, jobs) = mpsc::channel::<Job>(options.max_batch.max(1) * 64);
        let jobs = Arc::new(Mutex::new(jobs));
        for _ in 0..options.executors.max(1) {
            tokio::spawn(execute(
                pool.clone(),
                replica.clone(),
                Arc::clone(&stats),
                Arc::clone(&jobs),
                options.max_batch.max(1),
            ));
        }
        Self { queue }
    }

    /// Queues one transfer and waits for its outcome.
    pub(crate) async fn submit(
        &self,
        new: NewTransfer<'static>,
        event: EventMeta,
    ) -> Result<TransferResult> {
        let (reply, outcome) = oneshot::channel();
        self.queue
            .send(Job { new, event, reply })
            .await
            .map_err(|_| Error::Internal(anyhow::anyhow!("the transfer executors have stopped")))?;
        outcome.await.map_err(|_| {
            Error::Internal(anyhow::anyhow!("a transfer executor stopped mid-batch"))
        })?
    }
}

/// One executor: takes the queued transfers (up to `max_batch`, at least one) and writes them as a batch,
/// until the queue closes.
async fn execute(
    pool: PgPool,
    replica: Option<Arc<ReadReplica>>,
    stats: Arc<Stats>,
    jobs: Arc<Mutex<mpsc::Receiver<Job>>>,
    max_batch: usize,
) {
    loop {
        let batch = {
            let mut jobs = jobs.lock().await;
            let Some(first) = jobs.recv().await else {
                return;
            };
            let mut batch = vec![first];
            gather(&mut jobs, &mut batch, max_batch).await;
            batch
        };
        let span = tracing::info_span!("Write a transfer batch", transfers = batch.len());
        run(&pool, replica.as_deref(), &stats, batch)
            .instrument(span)
            .await;
    }
}

/// How many times an executor lets other tasks run while it gathers a batch (see [`gather`]).
const MAX_GATHER_YIELDS: usize = 16;

/// Adds what is queued to `batch`, up to `max_batch`. While more keeps arriving it yields, so that the
/// callers the previous batch just answered, already woken, can queue their next transfers and join
/// this batch instead of waiting for the next one: with 8 callers that made batches of 8 instead of
/// 2 to 4. It stops at the first turn in which nothing new arrived (or after `MAX_GATHER_YIELDS`), and
/// never waits on a timer, so a lone transfer is held up by one scheduler turn at most.
async fn gather(jobs: &mut mpsc::Receiver<Job>, batch: &mut Vec<Job>, max_batch: usize) {
    let mut yielded = 0;
    loop {
        let before = batch.len();
        while batch.len() < max_batch {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let nothing_new = yielded > 0 && batch.len() == before;
        if batch.len() >= max_batch || nothing_new || yielded >= MAX_GATHER_YIELDS {
            return;
        }
        yielded += 1;
        tokio::task::yield_now().await;
    }
}

async fn run(pool: &PgPool, replica: Option<&ReadReplica>, stats: &Stats, jobs: Vec<Job>) {
    stats.count_transfer_batch(jobs.len());
    let batch: Vec<(NewTransfer<'static>, EventMeta)> =
        jobs.iter().map(|j| (j.new, j.event.clone())).collect();
    let mut attempt = 1;
    let failure = loop {
        // A batch of one is the single-transfer statement: the same effect, without the function call.
        let written = if let [(new, event)] = batch.as_slice() {
            ledger::transfer(pool, *new, event).await.map(|o| vec![o])
        } else {
            ledger::transfer_batch(pool, &batch).await
        };
        match written {
            Ok(outcomes) => {
                let outcomes = jobs
                    .iter()
                    .zip(outcomes)
                    .map(|(job, outcome)| {
                        outcome
                            .map(TransferResult::from)
                            .map_err(|r| rejection(&job.new, r))
                    })
                    .collect();
                return answer(pool, replica, jobs, outcomes).await;
            }
            // A dropped connection: the batch's transaction rolled back, unless the connection died
            // in its commit. Running it again is safe either way: the batch's outbox rows keep their
            // event ids, so a batch that did commit fails on `outbox_pkey` instead of moving money
            // twice (and its callers get an error, not a second transfer).
            Err(e)
                if (streambank_store::is_retryable(&e)
                    || streambank_store::is_connection_error(&e))
                    && attempt < MAX_ATTEMPTS =>
            {
                stats.count_transfer_retry();
                tracing::warn!(attempt, error = %e, "transfer batch hit a transient failure; retrying");
                let backoff = rand::rng().random_range(1..=(5u64 << attempt));
                tokio::time::sleep(Duration::from_millis(backoff)).await;
                attempt += 1;
            }
            Err(e) => break e,
        }
    };
    if streambank_store::is_retryable(&failure) || streambank_store::is_connection_error(&failure) {
        tracing::error!(attempt, error = %failure, "transfer batch kept failing transiently; giving up");
        for job in jobs {
            let _ = job.reply.send(Err(Error::Busy));
        }
        return;
    }
    // Not transient: find out which transfer it was by running them one at a time.
    tracing::warn!(error = %failure, "transfer batch failed; running its transfers one by one");
    let mut outcomes = Vec::with_capacity(jobs.len());
    for job in &jobs {
        let outcome = match ledger::transfer(pool, job.new, &job.event).await {
            Ok(outcome) => outcome
                .map(TransferResult::from)
                .map_err(|r| rejection(&job.new, r)),
            Err(e)
                if streambank_store::constraint_name(&e)
                    == Some("accounts_balance_nonnegative") =>
            {
                Err(Error::InsufficientFunds)
            }
            Err(e) if streambank_store::is_retryable(&e) => Err(Error::Busy),
            Err(e) => Err(Error::db(e)),
        };
        outcomes.push(outcome);
    }
    answer(pool, replica, jobs, outcomes).await;
}

/// Answers each job with its outcome, once a read replica (if any) knows of the transfers that
/// happened, so that their callers' next lists show them.
async fn answer(
    pool: &PgPool,
    replica: Option<&ReadReplica>,
    jobs: Vec<Job>,
    outcomes: Vec<Result<TransferResult>>,
) {
    if let Some(replica) = replica {
        let writers: Vec<i64> = jobs
            .iter()
            .zip(&outcomes)
            .filter(|(_, outcome)| outcome.is_ok())
            .map(|(job, _)| job.new.caller_id)
            .collect();
        replica.wrote(pool, &writers).await;
    }
    for (job, outcome) in jobs.into_iter().zip(outcomes) {
        let _ = job.reply.send(outcome);
    }
}
