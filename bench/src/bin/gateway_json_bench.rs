//! What the gateway spends turning a gRPC answer into REST's JSON, by both of its paths, in one run.
//!
//! For the answers of `GET /v1/accounts/{id}` (an `Account`) and `POST /v1/transfers` (a
//! `TransferResult`: three nested messages, three timestamps), it times `gateway::response::success` on
//! the protobuf bytes as the gRPC server sends them, once with the route's direct path
//! (`gateway::json`: the bytes straight to JSON) and once with the reference path (decode into a
//! `DynamicMessage`, serialize into a `serde_json::Value`, add the `null`s, serialize again). The two
//! run interleaved, round after round, on one thread; it prints the median time per answer of each and
//! their ratio, and checks first that both paths write the same JSON.

use std::hint::black_box;
use std::time::Instant;

use anyhow::Context as _;
use axum::body::Bytes;
use clap::Parser;
use prost::Message as _;
use streambank_bench::stats::median;
use streambank_gateway::response;
use streambank_gateway::routes::{Route, RouteTable};
use streambank_proto::v1::{Account, Entry, Transfer, TransferResult};

#[derive(Debug, Parser)]
#[command(
    about = "The gateway's JSON transcoding: the direct path against the reference, in one run"
)]
struct Args {
    /// Answers transcoded per path in each round.
    #[arg(long, default_value_t = 100_000)]
    calls: u32,
    #[arg(long, default_value_t = 7)]
    rounds: usize,
}

fn timestamp(seconds: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds,
        nanos: 123_456_000,
    })
}

fn account(id: i64, balance: i64) -> Account {
    Account {
        id,
        owner_id: id,
        currency: "USD".into(),
        balance,
        created_at: timestamp(1_764_700_000),
    }
}

fn entry(id: i64, account_id: i64, amount: i64) -> Entry {
    Entry {
        id,
        account_id,
        amount,
        transfer_id: Some(9_001),
        created_at: timestamp(1_764_700_100),
    }
}

fn route<'a>(routes: &'a RouteTable, path: &str) -> anyhow::Result<&'a Route> {
    routes
        .routes()
        .iter()
        .find(|r| r.grpc_path.as_str() == path)
        .with_context(|| format!("no route for {path}"))
}

async fn body(response: axum::response::Response) -> anyhow::Result<Bytes> {
    Ok(axum::body::to_bytes(response.into_body(), usize::MAX).await?)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let pool = streambank_proto::descriptor_pool();
    let routes = RouteTable::from_pool(&pool)?;
    let transfer = TransferResult {
        transfer: Some(Transfer {
            id: 9_001,
            from_account_id: 17,
            to_account_id: 523,
            amount: 1,
            currency: "USD".into(),
            created_at: timestamp(1_764_700_100),
        }),
        from_account: Some(account(17, 99_999_876)),
        from_entry: Some(entry(18_002, 17, -1)),
    };
    let cases = [
        (
            "GET /v1/accounts/{id} (Account)",
            route(&routes, "/streambank.v1.AccountService/GetAccount")?,
            Bytes::from(account(17, 99_999_876).encode_to_vec()),
        ),
        (
            "POST /v1/transfers (TransferResult)",
            route(&routes, "/streambank.v1.TransferService/CreateTransfer")?,
            Bytes::from(transfer.encode_to_vec()),
        ),
    ];

    println!(
        "{} answers per path per round, {} rounds, interleaved, one thread; medians of the rounds.",
        args.calls, args.rounds
    );
    println!();
    println!(
        "| answer | protobuf bytes | JSON bytes | reference (ns) | direct (ns) | direct / reference |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, direct, bytes) in cases {
        anyhow::ensure!(
            direct.direct_json,
            "{name}: the route takes the reference path"
        );
        let mut reference = direct.clone();
        reference.direct_json = false;
        let a = body(response::success(direct, bytes.clone())?).await?;
        let b = body(response::success(&reference, bytes.clone())?).await?;
        let parse = |b: &Bytes| serde_json::from_slice::<serde_json::Value>(b);
        anyhow::ensure!(parse(&a)? == parse(&b)?, "{name}: the two paths disagree");

        let time = |route: &Route| -> anyhow::Result<f64> {
            let start = Instant::now();
            for _ in 0..args.calls {
                black_box(response::success(route, black_box(bytes.clone()))?);
            }
            Ok(start.elapsed().as_nanos() as f64 / f64::from(args.calls))
        };
        let (mut direct_ns, mut reference_ns) = (Vec::new(), Vec::new());
        for round in 0..args.rounds {
            // Alternate which goes first, so neither always runs on a warmer cache.
            if round % 2 == 0 {
                direct_ns.push(time(direct)?);
                reference_ns.push(time(&reference)?);
            } else {
                reference_ns.push(time(&reference)?);
                direct_ns.push(time(direct)?);
            }
        }
        let (d, r) = (median(&direct_ns), median(&reference_ns));
        println!(
            "| {name} | {} | {} | {r:.0} | {d:.0} | {:.2}x |",
            bytes.len(),
            a.len(),
            d / r
        );
    }
    Ok(())
}
