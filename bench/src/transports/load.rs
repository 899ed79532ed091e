//! The callers: one logged-in customer each, with a connection of its own to every listener (gRPC
//! callers share a few channels), one call of an operation on each transport, and the load itself.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::{Value, json};
use streambank_proto::v1 as pb;
use streambank_proto::v1::account_service_client::AccountServiceClient;
use streambank_proto::v1::transfer_service_client::TransferServiceClient;
use streambank_service::Bank;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use super::{Op, Transport};
use crate::api;
use crate::ledger::{self, owner, random_other};

/// A logged-in customer, with the access token also as gRPC metadata: user `i` owns account `i`.
#[derive(Debug, Clone)]
pub struct Customer {
    pub account: i64,
    pub token: String,
    metadata: MetadataValue<Ascii>,
}

impl Customer {
    pub fn new(customer: api::Customer) -> anyhow::Result<Self> {
        let metadata = MetadataValue::try_from(format!("Bearer {}", customer.token))
            .context("the access token is not ASCII")?;
        Ok(Self {
            account: customer.account,
            token: customer.token,
            metadata,
        })
    }
}

/// One caller's connection to one listener.
#[derive(Debug, Clone)]
pub enum Conn {
    Http {
        client: reqwest::Client,
        base: Arc<str>,
    },
    Grpc(Box<GrpcClients>),
    Service(Bank),
}

#[derive(Debug, Clone)]
pub struct GrpcClients {
    accounts: AccountServiceClient<Channel>,
    transfers: TransferServiceClient<Channel>,
    health: HealthClient<Channel>,
}

impl Conn {
    /// An HTTP/1.1 client of its own (so its own keep-alive connection) to `addr`; every connection it
    /// opens adds one to `connects`.
    pub fn http(addr: SocketAddr, connects: &Arc<AtomicU64>) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .connector_layer(CountConnects(Arc::clone(connects)))
            .build()
            .context("building an HTTP client")?;
        Ok(Self::Http {
            client,
            base: format!("http://{addr}").into(),
        })
    }

    /// gRPC clients over `channel` (shared, multiplexed).
    pub fn grpc(channel: &Channel) -> Self {
        Self::Grpc(Box::new(GrpcClients {
            accounts: AccountServiceClient::new(channel.clone()),
            transfers: TransferServiceClient::new(channel.clone()),
            health: HealthClient::new(channel.clone()),
        }))
    }

    /// One call of `op` as `customer`; `to` is the transfer's destination. Fails unless it succeeds.
    pub async fn call(&mut self, op: Op, customer: &Customer, to: i64) -> anyhow::Result<()> {
        match self {
            Self::Http { client, base } => {
                let request = match op {
                    Op::GetAccount => client
                        .get(format!("{base}/v1/accounts/{}", customer.account))
                        .bearer_auth(&customer.token),
                    Op::Transfer => client
                        .post(format!("{base}/v1/transfers"))
                        .bearer_auth(&customer.token)
                        .json(&json!({
                            "from_account_id": customer.account,
                            "to_account_id": to,
                            "amount": 1,
                            "currency": "USD",
                        })),
                    Op::Health => client.get(format!("{base}/healthz")),
                };
                let response = request
                    .send()
                    .await
                    .with_context(|| format!("{} to {base}", op.http()))?;
                let status = response.status();
                let body = response.bytes().await?;
                anyhow::ensure!(
                    status.is_success(),
                    "{} on {base} answered {status}: {}",
                    op.http(),
                    String::from_utf8_lossy(&body)
                );
            }
            Self::Grpc(clients) => {
                let answered = match op {
                    Op::GetAccount => {
                        let request = pb::GetAccountRequest {
                            id: customer.account,
                        };
                        let request = authed(request, customer);
                        clients.accounts.get_account(request).await.map(drop)
                    }
                    Op::Transfer => {
                        let request = pb::CreateTransferRequest {
                            from_account_id: customer.account,
                            to_account_id: to,
                            amount: 1,
                            currency: "USD".into(),
                        };
                        let request = authed(request, customer);
                        clients.transfers.create_transfer(request).await.map(drop)
                    }
                    Op::Health => {
                        let request = HealthCheckRequest {
                            service: String::new(),
                        };
                        clients.health.check(request).await.map(drop)
                    }
                };
                answered.context(op.rpc())?;
            }
            Self::Service(bank) => match op {
                Op::GetAccount => {
                    bank.get_account(owner(customer.account), customer.account)
                        .await
                        .context(op.service())?;
                }
                Op::Transfer => {
                    ledger::transfer(bank, customer.account, to, 1)
                        .await
                        .context(op.service())?;
                }
                Op::Health => anyhow::bail!("the service layer has no health check"),
            },
        }
        Ok(())
    }
}

fn authed<T>(message: T, customer: &Customer) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", customer.metadata.clone());
    request
}

pub async fn grpc_channel(addr: SocketAddr) -> anyhow::Result<Channel> {
    Endpoint::from_shared(format!("http://{addr}"))
        .context("gRPC endpoint")?
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("connecting to the gRPC listener {addr}"))
}

/// A reqwest connector layer that counts the connections a client opens. reqwest returns a connection
/// to its pool in a task of its own once a response is read, so a request sent at once may find the pool
/// empty and open another connection: this shows how often that happens.
#[derive(Debug, Clone)]
struct CountConnects(Arc<AtomicU64>);

impl<S> tower::Layer<S> for CountConnects {
    type Service = Counting<S>;

    fn layer(&self, inner: S) -> Counting<S> {
        Counting {
            inner,
            count: Arc::clone(&self.0),
        }
    }
}

#[derive(Debug, Clone)]
struct Counting<S> {
    inner: S,
    count: Arc<AtomicU64>,
}

impl<S: tower::Service<R>, R> tower::Service<R> for Counting<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> S::Future {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.inner.call(request)
    }
}

/// Every caller's connection to every listener, made once and kept for the whole run; the customers
/// they call as (caller `i` is customer `i`); and the connections each transport's clients opened.
#[derive(Debug)]
pub struct Callers {
    conns: BTreeMap<Transport, Vec<Conn>>,
    connects: BTreeMap<Transport, Arc<AtomicU64>>,
    customers: Arc<Vec<Customer>>,
    accounts: i64,
}

impl Callers {
    /// Connects one caller per customer to every listener of `addrs`, and to `bank` as the reference;
    /// the gRPC callers share `grpc_channels` channels. Transfers go to random accounts of
    /// `1..=accounts`.
    pub async fn connect(
        addrs: &BTreeMap<Transport, SocketAddr>,
        bank: Bank,
        customers: Vec<Customer>,
        accounts: i64,
        grpc_channels: usize,
    ) -> anyhow::Result<Self> {
        let n = customers.len();
        let mut conns: BTreeMap<Transport, Vec<Conn>> = BTreeMap::new();
        let connects: BTreeMap<Transport, Arc<AtomicU64>> = Transport::ALL
            .map(|t| (t, Arc::new(AtomicU64::new(0))))
            .into();
        for transport in [Transport::Rest, Transport::Gateway] {
            let list = (0..n)
                .map(|_| Conn::http(addrs[&transport], &connects[&transport]))
                .collect::<anyhow::Result<_>>()?;
            conns.insert(transport, list);
        }
        conns.insert(Transport::Service, vec![Conn::Service(bank); n]);
        let mut channels = Vec::new();
        for _ in 0..grpc_channels {
            channels.push(grpc_channel(addrs[&Transport::Grpc]).await?);
        }
        conns.insert(
            Transport::Grpc,
            (0..n)
                .map(|i| Conn::grpc(&channels[i % channels.len()]))
                .collect(),
        );
        Ok(Self {
            conns,
            connects,
            customers: Arc::new(customers),
            accounts,
        })
    }

    pub fn customers(&self) -> &[Customer] {
        &self.customers
    }

    pub fn accounts(&self) -> i64 {
        self.accounts
    }

    /// The connections `transport`'s clients have opened so far (always 0 but for REST and the
    /// gateway).
    pub fn connects(&self, transport: Transport) -> u64 {
        self.connects[&transport].load(Ordering::Relaxed)
    }

    /// One call of each operation on the first connection: does the listener answer as it should?
    pub async fn probe(&mut self, transport: Transport) -> anyhow::Result<()> {
        let conn = self
            .conns
            .get_mut(&transport)
            .and_then(|list| list.first_mut())
            .context("no connection")?;
        let customer = &self.customers[0];
        for op in Op::ALL {
            conn.call(op, customer, random_other(customer.account, self.accounts))
                .await?;
        }
        Ok(())
    }

    /// Calls per second and every call's latency: `op` on `transport` for `duration`, one task per
    /// caller, each on its own connection.
    pub async fn load(
        &self,
        transport: Transport,
        op: Op,
        duration: Duration,
    ) -> anyhow::Result<(f64, Vec<Duration>)> {
        let accounts = self.accounts;
        let start = Instant::now();
        let deadline = start + duration;
        let mut tasks = tokio::task::JoinSet::new();
        for (i, conn) in self.conns[&transport].iter().cloned().enumerate() {
            let customers = Arc::clone(&self.customers);
            tasks.spawn(async move {
                let mut conn = conn;
                let customer = &customers[i];
                let mut latencies = Vec::with_capacity(64 * 1024);
                while Instant::now() < deadline {
                    let to = random_other(customer.account, accounts);
                    let sent = Instant::now();
                    conn.call(op, customer, to).await?;
                    latencies.push(sent.elapsed());
                }
                anyhow::Ok(latencies)
            });
        }
        crate::stats::gather(tasks, start).await
    }
}

/// Warns (on stderr) if the gateway's JSON for an account differs from REST's.
pub async fn compare_json(
    addrs: &BTreeMap<Transport, SocketAddr>,
    customer: &Customer,
    transports: &[Transport],
) {
    if !transports.contains(&Transport::Gateway) {
        return;
    }
    let client = reqwest::Client::new();
    let mut bodies = Vec::new();
    for transport in [Transport::Rest, Transport::Gateway] {
        let body = async {
            client
                .get(format!(
                    "http://{}/v1/accounts/{}",
                    addrs[&transport], customer.account
                ))
                .bearer_auth(&customer.token)
                .send()
                .await?
                .json::<Value>()
                .await
        }
        .await;
        bodies.push(body.map_err(|e| e.to_string()));
    }
    if bodies[0] != bodies[1] {
        eprintln!(
            "warning: REST and the gateway answer GET /v1/accounts/{{id}} differently: {:?} vs {:?}",
            bodies[0], bodies[1]
        );
    }
}
