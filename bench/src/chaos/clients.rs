//! The workload: careful clients and a balance sampler.
//!
//! Each client uses one transport (REST, gRPC or the gateway, in turn by client number) and sends
//! transfers between random customers, each with an idempotency key of its own. On an error that may be
//! passing (a connection refused or cut, a timeout, a 5xx, 409 `IDEMPOTENCY_IN_PROGRESS`, 429) it retries
//! with the same key after a short backoff, as a careful client would, until it is answered or gives up
//! (`--give-up-secs`; such a transfer is indeterminate). It records every acknowledged transfer (key ->
//! transfer id), every refusal and every answer that was not a success, with 5xx counted apart: the goal
//! is none.
//!
//! The sampler reads the sum and the minimum of the balances in one statement (one snapshot) every
//! 250 ms and flags any negative balance or a sum other than the deposits.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use rand::{Rng as _, SeedableRng as _};
use serde_json::{Value, json};
use streambank_proto::v1 as pb;
use streambank_proto::v1::transfer_service_client::TransferServiceClient;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};

use super::procs::ApiAddrs;
use super::setup::Customer;
use super::timeline::Timeline;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Transport {
    Rest,
    Grpc,
    Gateway,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Self::Rest => "rest",
            Self::Grpc => "grpc",
            Self::Gateway => "gateway",
        }
    }
}

/// An acknowledged transfer.
#[derive(Debug, Clone)]
pub struct Ack {
    pub user_id: i64,
    pub key: String,
    pub transfer_id: i64,
}

/// What the clients did, shared by all of them.
#[derive(Debug, Default)]
pub struct Record {
    /// Every key sent, with its user: (user id, key).
    pub keys: Mutex<Vec<(i64, String)>>,
    pub acked: Mutex<Vec<Ack>>,
    /// Keys definitely refused, with the answer.
    pub refused: Mutex<Vec<(String, String)>>,
    /// Keys given up on: the transfer may or may not have happened.
    pub indeterminate: Mutex<Vec<(i64, String)>>,
    /// Every answer that was not a success, by transport and kind ("rest 409", "grpc Unavailable",
    /// "gateway connection error", ...).
    pub statuses: Mutex<BTreeMap<String, u64>>,
    /// The first few 5xx answers, for the report.
    pub five_xx_samples: Mutex<Vec<String>>,
    pub five_xx: AtomicU64,
    pub acked_count: AtomicU64,
    pub attempts: AtomicU64,
    /// The longest a transfer took from its first attempt to its acknowledgement, and its key.
    pub slowest: Mutex<(Duration, String)>,
    /// Clients stop when this is set.
    pub stop: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Record {
    pub fn take<T: Clone>(m: &Mutex<Vec<T>>) -> Vec<T> {
        lock(m).clone()
    }

    fn count(&self, what: String) {
        *lock(&self.statuses).entry(what).or_default() += 1;
    }

    fn five_xx(&self, at: Duration, what: String) {
        self.five_xx.fetch_add(1, Ordering::Relaxed);
        let mut samples = lock(&self.five_xx_samples);
        if samples.len() < 20 {
            samples.push(format!("[{:>7.1}s] {what}", at.as_secs_f64()));
        }
    }
}

/// How one attempt ended.
enum Attempt {
    Done(i64),
    Refused(String),
    Retry,
}

struct Client {
    transport: Transport,
    http: reqwest::Client,
    base: String,
    grpc: TransferServiceClient<Channel>,
}

/// Runs `n` clients until `record.stop` is set; returns when all have finished their transfer in hand.
pub async fn run(
    n: usize,
    seed: u64,
    addrs: ApiAddrs,
    customers: Arc<Vec<Customer>>,
    record: Arc<Record>,
    timeline: Arc<Timeline>,
    give_up: Duration,
) -> anyhow::Result<()> {
    let channels: Vec<Channel> = (0..4)
        .map(|_| {
            Endpoint::from_shared(format!("http://{}", addrs.grpc))
                .map(|e| {
                    e.tcp_nodelay(true)
                        .connect_timeout(Duration::from_secs(2))
                        .timeout(REQUEST_TIMEOUT)
                        .connect_lazy()
                })
                .context("gRPC endpoint")
        })
        .collect::<anyhow::Result<_>>()?;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let transport = [Transport::Rest, Transport::Grpc, Transport::Gateway][i % 3];
        let client = Client {
            transport,
            http: reqwest::Client::builder()
                .timeout(REQUEST_TIMEOUT)
                .connect_timeout(Duration::from_secs(2))
                .build()?,
            base: format!(
                "http://{}",
                if transport == Transport::Gateway {
                    addrs.gateway
                } else {
                    addrs.rest
                }
            ),
            grpc: TransferServiceClient::new(channels[i % channels.len()].clone()),
        };
        let (customers, record, timeline) = (
            Arc::clone(&customers),
            Arc::clone(&record),
            Arc::clone(&timeline),
        );
        tasks.spawn(async move {
            client
                .run(i, seed, &customers, &record, &timeline, give_up)
                .await
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(())
}

impl Client {
    async fn run(
        mut self,
        me: usize,
        seed: u64,
        customers: &[Customer],
        record: &Record,
        timeline: &Timeline,
        give_up: Duration,
    ) -> anyhow::Result<()> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed.wrapping_mul(1_000_003) + me as u64);
        let mut sent = 0u64;
        while !record.stop.load(Ordering::Relaxed) {
            let from = &customers[rng.random_range(0..customers.len())];
            let to = loop {
                let to = &customers[rng.random_range(0..customers.len())];
                if to.account != from.account {
                    break to;
                }
            };
            let amount: i64 = rng.random_range(1..=500);
            let key = format!("chaos-{seed}-{me}-{sent}");
            sent += 1;
            lock(&record.keys).push((from.user_id, key.clone()));
            let started = tokio::time::Instant::now();
            let mut backoff = Duration::from_millis(50);
            loop {
                record.attempts.fetch_add(1, Ordering::Relaxed);
                match self
                    .attempt(from, to.account, amount, &key, record, timeline)
                    .await
                {
                    Attempt::Done(transfer_id) => {
                        let took = started.elapsed();
                        {
                            let mut slowest = lock(&record.slowest);
                            if took > slowest.0 {
                                *slowest = (took, key.clone());
                            }
                        }
                        lock(&record.acked).push(Ack {
                            user_id: from.user_id,
                            key,
                            transfer_id,
                        });
                        record.acked_count.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    Attempt::Refused(why) => {
                        lock(&record.refused).push((key, why));
                        break;
                    }
                    Attempt::Retry => {
                        if started.elapsed() > give_up {
                            lock(&record.indeterminate).push((from.user_id, key));
                            break;
                        }
                        let jitter = rng.random_range(0..=backoff.as_millis() as u64);
                        tokio::time::sleep(Duration::from_millis(jitter) + backoff / 2).await;
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                    }
                }
            }
        }
        Ok(())
    }

    async fn attempt(
        &mut self,
        from: &Customer,
        to: i64,
        amount: i64,
        key: &str,
        record: &Record,
        timeline: &Timeline,
    ) -> Attempt {
        let t = self.transport.name();
        match self.transport {
            Transport::Rest | Transport::Gateway => {
                let sent = self
                    .http
                    .post(format!("{}/v1/transfers", self.base))
                    .bearer_auth(&from.token)
                    .header("Idempotency-Key", key)
                    .json(
                        &json!({"from_account_id": from.account, "to_account_id": to,
                                  "amount": amount, "currency": "USD"}),
                    )
                    .send()
                    .await;
                let response = match sent {
                    Ok(r) => r,
                    Err(e) => {
                        let kind = if e.is_timeout() {
                            "timeout"
                        } else {
                            "connection error"
                        };
                        record.count(format!("{t} {kind}"));
                        return Attempt::Retry;
                    }
                };
                let status = response.status();
                let body: Value = match response.json().await {
                    Ok(body) => body,
                    Err(_) => {
                        record.count(format!("{t} {} (body cut)", status.as_u16()));
                        return Attempt::Retry;
                    }
                };
                if status.is_success() {
                    return match body["transfer"]["id"].as_i64() {
                        Some(id) => Attempt::Done(id),
                        None => Attempt::Refused(format!("{status} without a transfer id")),
                    };
                }
                let reason = body["error"]["reason"].as_str().unwrap_or("").to_owned();
                record.count(format!("{t} {} {reason}", status.as_u16()));
                if status.is_server_error() {
                    record.five_xx(
                        timeline.elapsed(),
                        format!("{t} {status} {reason} key={key}: {body}"),
                    );
                    return Attempt::Retry;
                }
                if status.as_u16() == 409 || status.as_u16() == 429 {
                    return Attempt::Retry;
                }
                Attempt::Refused(format!("{t} {status} {reason}"))
            }
            Transport::Grpc => {
                let mut request = tonic::Request::new(pb::CreateTransferRequest {
                    from_account_id: from.account,
                    to_account_id: to,
                    amount,
                    currency: "USD".into(),
                });
                if let (Ok(auth), Ok(k)) = (
                    MetadataValue::try_from(format!("Bearer {}", from.token)),
                    MetadataValue::try_from(key),
                ) {
                    request.metadata_mut().insert("authorization", auth);
                    request.metadata_mut().insert("idempotency-key", k);
                }
                match self.grpc.create_transfer(request).await {
                    Ok(response) => match response.into_inner().transfer {
                        Some(transfer) => Attempt::Done(transfer.id),
                        None => Attempt::Refused("grpc OK without a transfer".into()),
                    },
                    Err(status) => self.grpc_failure(&status, key, record, timeline),
                }
            }
        }
    }

    fn grpc_failure(
        &self,
        status: &tonic::Status,
        key: &str,
        record: &Record,
        timeline: &Timeline,
    ) -> Attempt {
        use tonic::Code;
        let message = status.message().to_ascii_lowercase();
        // A call that never reached the API, or whose connection died under it (the API was killed).
        let transport_failure = [
            "transport",
            "connect",
            "connection",
            "h2 protocol",
            "broken pipe",
        ]
        .iter()
        .any(|w| message.contains(w));
        if transport_failure {
            record.count("grpc connection error".into());
            return Attempt::Retry;
        }
        if status.code() == Code::Cancelled && message.contains("timeout") {
            record.count("grpc timeout".into());
            return Attempt::Retry;
        }
        record.count(format!("grpc {:?}", status.code()));
        match status.code() {
            Code::Internal | Code::Unknown | Code::DataLoss | Code::Unavailable => {
                record.five_xx(
                    timeline.elapsed(),
                    format!("grpc {:?} key={key}: {}", status.code(), status.message()),
                );
                Attempt::Retry
            }
            Code::Aborted | Code::ResourceExhausted | Code::DeadlineExceeded | Code::Cancelled => {
                Attempt::Retry
            }
            code => Attempt::Refused(format!("grpc {code:?}: {}", status.message())),
        }
    }
}

/// What the sampler saw.
#[derive(Debug, Default)]
pub struct Samples {
    pub taken: AtomicU64,
    pub failed: AtomicU64,
    /// Every sample with a negative balance or a sum other than the deposits.
    pub violations: Mutex<Vec<String>>,
}

/// Samples the balances until `stop` is set.
pub async fn sample(
    pool: sqlx::PgPool,
    deposited: i64,
    samples: Arc<Samples>,
    stop: Arc<AtomicBool>,
    timeline: Arc<Timeline>,
) {
    while !stop.load(Ordering::Relaxed) {
        let row: Result<(i64, i64, i64), _> = sqlx::query_as(
            "SELECT coalesce(sum(balance), 0)::bigint, coalesce(min(balance), 0)::bigint, \
             count(*) FILTER (WHERE balance < 0) FROM accounts",
        )
        .fetch_one(&pool)
        .await;
        match row {
            Ok((sum, min, negative)) => {
                samples.taken.fetch_add(1, Ordering::Relaxed);
                if sum != deposited || negative > 0 {
                    lock(&samples.violations).push(format!(
                        "[{:>7.1}s] sum of balances {sum} (deposited {deposited}), minimum {min}, \
                         {negative} negative",
                        timeline.elapsed().as_secs_f64()
                    ));
                }
            }
            Err(_) => {
                samples.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
