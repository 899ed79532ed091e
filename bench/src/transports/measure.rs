//! The runs: every (operation, transport) pair measured in each, with the CPU time it took; and what
//! each pair measured over all of them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Context as _;

use super::cpu::CpuSnapshot;
use super::load::Callers;
use super::{Op, Transport};
use crate::stats::{median, percentile};

/// What one (operation, transport) pair measured over all runs.
#[derive(Debug, Default)]
pub struct Series {
    pub throughput: Vec<f64>,
    latencies: Vec<Duration>,
    /// CPU microseconds per call, each run: the API, the load generator, Postgres.
    cpu_server: Vec<f64>,
    cpu_server_kernel: Vec<f64>,
    cpu_client: Vec<f64>,
    cpu_postgres: Vec<f64>,
    /// The share of the machine's CPU that other processes took, each run.
    others_share: Vec<f64>,
    /// Connections the HTTP clients opened during the measurements (none for gRPC: its channels are
    /// connected once, before).
    pub connects: u64,
}

/// A pair's figures: median throughput, latency percentiles over every call.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub throughput: f64,
    pub p50: Duration,
    pub p99: Duration,
    pub cpu_server: f64,
    pub cpu_server_kernel: f64,
    pub cpu_client: f64,
    pub cpu_postgres: f64,
    pub others_share: f64,
}

/// A second of each pair: every HTTP client opens its connection, caches and plans warm up.
pub async fn warm_up(
    callers: &Callers,
    ops: &[Op],
    transports: &[Transport],
) -> anyhow::Result<()> {
    for &op in ops {
        for &transport in transports.iter().filter(|&&t| op.on(t)) {
            callers
                .load(transport, op, Duration::from_secs(1))
                .await
                .with_context(|| {
                    format!("warming up {} {}", transport.name(), op.label(transport))
                })?;
        }
    }
    Ok(())
}

/// `runs` runs, each measuring every pair of `ops` and `transports` for `duration`, transports in an
/// order rotated from run to run so no transport always goes first (or last). `database` is the
/// benchmark database, whose Postgres backends' CPU time is counted. Prints each run's throughputs on
/// stderr.
pub async fn runs(
    callers: &Callers,
    ops: &[Op],
    transports: &[Transport],
    duration: Duration,
    runs: usize,
    database: &str,
) -> anyhow::Result<BTreeMap<(Op, Transport), Series>> {
    let mut series: BTreeMap<(Op, Transport), Series> = BTreeMap::new();
    for run in 0..runs {
        let mut line = format!("run {}:", run + 1);
        for &op in ops {
            let these: Vec<Transport> = transports.iter().copied().filter(|&t| op.on(t)).collect();
            for k in 0..these.len() {
                let transport = these[(k + run) % these.len()];
                let connected = callers.connects(transport);
                let before = CpuSnapshot::take(database);
                let (tps, mut latencies) = callers
                    .load(transport, op, duration)
                    .await
                    .with_context(|| format!("{} {}", transport.name(), op.label(transport)))?;
                let used = CpuSnapshot::take(database).since(&before);
                let calls = latencies.len().max(1) as f64;
                let _ = write!(
                    line,
                    " {} {} {tps:.0}/s;",
                    transport.name(),
                    op.label(transport)
                );
                let entry = series.entry((op, transport)).or_default();
                entry.throughput.push(tps);
                entry.latencies.append(&mut latencies);
                entry.cpu_server.push(used.server * 1e6 / calls);
                entry
                    .cpu_server_kernel
                    .push(used.server_kernel * 1e6 / calls);
                entry.cpu_client.push(used.client * 1e6 / calls);
                entry.others_share.push(used.others_share);
                if let Some(postgres) = used.postgres {
                    entry.cpu_postgres.push(postgres * 1e6 / calls);
                }
                entry.connects += callers.connects(transport) - connected;
            }
        }
        eprintln!("{line}");
    }
    Ok(series)
}

/// Each pair's figures: medians over the runs, latency percentiles over every call (sorting each
/// series' latencies in place).
pub fn summarise(
    series: &mut BTreeMap<(Op, Transport), Series>,
) -> BTreeMap<(Op, Transport), Summary> {
    series
        .iter_mut()
        .map(|(key, s)| {
            s.latencies.sort();
            let summary = Summary {
                throughput: median(&s.throughput),
                p50: percentile(&s.latencies, 0.5),
                p99: percentile(&s.latencies, 0.99),
                cpu_server: median(&s.cpu_server),
                cpu_server_kernel: median(&s.cpu_server_kernel),
                cpu_client: median(&s.cpu_client),
                cpu_postgres: median(&s.cpu_postgres),
                others_share: median(&s.others_share),
            };
            (*key, summary)
        })
        .collect()
}
