//! The REST API under load, against the service layer measured in the same run.
//!
//! With `--connections` HTTP/1.1 keep-alive connections (one per simulated customer) it measures
//! `POST /v1/transfers` and `GET /v1/accounts/{id}` (throughput, p50 and p99 latency), and the
//! service layer's `Bank::transfer` with the same concurrency; the figure of merit is REST transfers/s
//! divided by service-layer transfers/s. It also measures what authenticating a request costs: token
//! verification alone, and verification plus the session lookup that makes revocation immediate.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::json;
use streambank_bench::api::{self, Customer};
use streambank_bench::ledger::{random_other, service_tps};
use streambank_bench::stats::{median, percentile};
use streambank_service::Sessions;

#[derive(Debug, Parser)]
#[command(about = "REST API throughput and latency against the service layer, in one run")]
struct Args {
    /// The benchmark database; it is dropped and created again.
    #[arg(
        long,
        env = "BENCH_API_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/streambank_bench_api"
    )]
    database_url: String,
    #[arg(long, default_value_t = 1_000)]
    accounts: i64,
    /// Concurrent HTTP connections (and service-layer callers).
    #[arg(long, default_value_t = 32)]
    connections: usize,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let api::Database { pool, bank, .. } = api::prepare(
        &args.database_url,
        "BENCH_API_DATABASE_URL",
        args.accounts,
        args.connections,
    )
    .await?;
    let rest = api::start(&args.database_url, args.connections).await?.rest;
    let base = format!("http://{rest}");

    // One logged-in customer per connection; customer i owns account i.
    let customers = Arc::new(api::log_in(rest, args.connections).await?);

    let duration = Duration::from_secs(args.seconds);
    let (mut service, mut post_tps, mut get_tps) = (Vec::new(), Vec::new(), Vec::new());
    let (mut post_latencies, mut get_latencies) = (Vec::new(), Vec::new());
    for run in 1..=args.runs {
        let s = service_tps(&bank, args.accounts, args.connections, duration).await?;
        let (p, mut pl) =
            http_load(&base, &customers, args.accounts, duration, Load::Transfer).await?;
        let (g, mut gl) =
            http_load(&base, &customers, args.accounts, duration, Load::GetAccount).await?;
        eprintln!(
            "run {run}: service {s:.0} transfers/s, REST POST /v1/transfers {p:.0}/s, REST GET /v1/accounts/{{id}} {g:.0}/s"
        );
        service.push(s);
        post_tps.push(p);
        get_tps.push(g);
        post_latencies.append(&mut pl);
        get_latencies.append(&mut gl);
    }
    post_latencies.sort();
    get_latencies.sort();
    let (s, p, g) = (median(&service), median(&post_tps), median(&get_tps));
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;

    println!(
        "| operation ({} connections) | throughput (req/s) | p50 (ms) | p99 (ms) | ratio |",
        args.connections
    );
    println!("|---|---:|---:|---:|---:|");
    println!("| service layer `Bank::transfer` | {s:.0} | | | 1.00x |");
    println!(
        "| REST `POST /v1/transfers` | {p:.0} | {:.2} | {:.2} | {:.2}x of service layer |",
        ms(percentile(&post_latencies, 0.5)),
        ms(percentile(&post_latencies, 0.99)),
        p / s
    );
    println!(
        "| REST `GET /v1/accounts/{{id}}` | {g:.0} | {:.2} | {:.2} | |",
        ms(percentile(&get_latencies, 0.5)),
        ms(percentile(&get_latencies, 0.99))
    );
    println!();
    println!(
        "Medians of {} runs of {} s each; latency percentiles over every request of all runs.",
        args.runs, args.seconds
    );

    auth_cost(&pool, rest).await?;
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum Load {
    Transfer,
    GetAccount,
}

/// Requests per second and every request's latency, from one keep-alive connection per customer.
async fn http_load(
    base: &str,
    customers: &Arc<Vec<Customer>>,
    accounts: i64,
    duration: Duration,
    load: Load,
) -> anyhow::Result<(f64, Vec<Duration>)> {
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for Customer { account, token } in customers.iter().cloned() {
        let base = base.to_owned();
        tasks.spawn(async move {
            let client = reqwest::Client::builder().pool_max_idle_per_host(1).build()?;
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let sent = Instant::now();
                let response = match load {
                    Load::Transfer => {
                        let to = random_other(account, accounts);
                        let body = json!({"from_account_id": account, "to_account_id": to, "amount": 1, "currency": "USD"});
                        client.post(format!("{base}/v1/transfers")).bearer_auth(&token).json(&body).send().await?
                    }
                    Load::GetAccount => client.get(format!("{base}/v1/accounts/{account}")).bearer_auth(&token).send().await?,
                };
                let status = response.status();
                response.bytes().await?;
                anyhow::ensure!(status.is_success(), "{load:?} answered {status}");
                latencies.push(sent.elapsed());
            }
            anyhow::Ok(latencies)
        });
    }
    streambank_bench::stats::gather(tasks, start).await
}

/// What authentication costs per request: verifying the token alone, and verifying it plus the session
/// lookup (one primary-key query) that makes logout and revocation take effect at once.
async fn auth_cost(pool: &sqlx::PgPool, rest: SocketAddr) -> anyhow::Result<()> {
    let token = api::access_token(&reqwest::Client::new(), rest, 1).await?;
    let key = streambank_auth::TokenKey::parse(api::KEY).map_err(anyhow::Error::msg)?;
    let maker = streambank_auth::maker(streambank_auth::TokenKind::Paseto, &key)
        .map_err(anyhow::Error::msg)?;
    let sessions = Sessions::new(
        pool.clone(),
        Arc::clone(&maker),
        Duration::from_secs(900),
        Duration::from_secs(86_400),
    )
    .await?;
    const N: u32 = 5_000;
    let start = Instant::now();
    for _ in 0..N {
        maker.verify(&token).map_err(anyhow::Error::msg)?;
    }
    let verify = start.elapsed() / N;
    let start = Instant::now();
    for _ in 0..N {
        sessions.authenticate(&token).await?;
    }
    let uncached = start.elapsed() / N;
    // With the invalidation listener connected, live sessions are served from memory.
    tokio::spawn(sessions.clone().listen_for_invalidations());
    while !sessions.cache_enabled() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let start = Instant::now();
    for _ in 0..N {
        sessions.authenticate(&token).await?;
    }
    let cached = start.elapsed() / N;
    println!();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "Authentication per request (sequential, {N} calls each): PASETO v4.local verification alone \
         {:.1} µs; with the session check answered from the invalidated in-memory cache {:.1} µs \
         (+{:.1} µs); with the session looked up in Postgres (cache off) {:.1} µs (+{:.1} µs, one \
         primary-key query on loopback).",
        us(verify),
        us(cached),
        us(cached.saturating_sub(verify)),
        us(uncached),
        us(uncached.saturating_sub(verify))
    );
    Ok(())
}
