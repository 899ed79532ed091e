//! StreamBank's benchmarks. Each one measures a figure of ours and a reference (pgbench, redis-benchmark)
//! on the same machine in the same run, and reports the ratio, so the numbers mean something on a shared
//! two-core box whose absolute speed drifts.
//!
//! # Layout
//!
//! - [`pgbench`]: running pgbench and reading its throughput; turning the store's transfer statement into
//!   the pgbench script `bench/sql/transfer.sql`.
//! - [`ledger`]: the benchmark database (one funded account per user), random accounts, a transfer by
//!   the source's owner, and the service-layer load.
//! - [`stats`]: medians and percentiles.
//! - [`api`]: the API in the process over the benchmark database, and its customers logged in: what
//!   `api-bench` and `transport-bench` share.
//! - [`transports`]: the parts of `transport-bench`: the transports and operations, the load, CPU time
//!   from `/proc`, the byte-counting proxy, the report and the chart.
//! - `src/bin/ledger_bench.rs`: the service layer's transfer throughput against pgbench.
//! - `src/bin/api_bench.rs`: REST transfers and reads against the service layer; what authentication costs.
//! - `src/bin/relay_bench.rs`: the outbox relay's drain against redis-benchmark; commit-to-XADD and
//!   commit-to-notification latency.
//! - `src/bin/drain_bench.rs`: a worker draining the backlog an outage leaves, against Postgres and the
//!   SMTP catcher alone.
//! - `src/bin/transport_bench.rs`: REST, gRPC and the gateway side by side, with the SVG chart: the
//!   command line and the order of the steps.
//! - `src/bin/scale_bench.rs`: the relay over 1, 2, 4 and 8 partitions, on a lone Redis and a Redis
//!   Cluster, with and without `WAIT` (issue 23; `docs/scaling.md`).
//! - [`chaos`] and `src/bin/chaos.rs`: not a benchmark but the chaos harness of issue 19 (real binaries,
//!   concurrent clients, random faults, then a checker), run by `bench/run-chaos.sh`.

pub mod api;
pub mod chaos;
pub mod ledger;
pub mod pgbench;
pub mod stats;
pub mod transports;
