//! The Markdown tables: throughput and latency, the ratios and their targets, the transport alone (a
//! health check), CPU per call, and bytes on the wire per call.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use super::cpu::LOAD_THREAD;
use super::measure::{Series, Summary};
use super::proxy::{WIRE_WARM_UP_CALLS, Wire};
use super::{Op, Transport};

/// How the benchmark ran, as the report states it.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Concurrent callers.
    pub concurrency: usize,
    /// HTTP/2 connections the gRPC callers share.
    pub grpc_channels: usize,
    pub runs: usize,
    /// Seconds per (operation, transport) measurement in each run.
    pub seconds: u64,
    /// Sequential calls per (operation, transport) through the byte-counting proxy.
    pub wire_calls: u64,
}

/// Everything measured, ready to print and draw.
#[derive(Debug)]
pub struct Report<'a> {
    pub settings: &'a Settings,
    pub summaries: &'a BTreeMap<(Op, Transport), Summary>,
    pub series: &'a BTreeMap<(Op, Transport), Series>,
    pub wire: &'a BTreeMap<(Op, Transport), Wire>,
    /// The transports left out, and why.
    pub missing: &'a [(Transport, String)],
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `12345.6` as `12,346`.
pub fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "**not met**" }
}

impl Report<'_> {
    pub fn get(&self, op: Op, transport: Transport) -> Option<Summary> {
        self.summaries.get(&(op, transport)).copied()
    }

    pub fn markdown(&self) -> String {
        let mut out = String::new();
        self.throughput_table(&mut out);
        let _ = writeln!(out);
        self.ratio_table(&mut out);
        self.health_table(&mut out);
        let _ = writeln!(out);
        self.cpu_table(&mut out);
        let _ = writeln!(out);
        self.wire_table(&mut out);
        out
    }

    /// Throughput and latency of every pair, with the runs that made the median.
    fn throughput_table(&self, out: &mut String) {
        let a = self.settings;
        let _ = writeln!(
            out,
            "| operation ({} concurrent callers) | transport | throughput (req/s) | of the service layer's | p50 (ms) | p99 (ms) | each run (req/s) |",
            a.concurrency
        );
        let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---|");
        for op in Op::ALL {
            for transport in Transport::ALL {
                let Some(s) = self.get(op, transport) else {
                    let _ = writeln!(
                        out,
                        "| `{}` | {} | n/a | | | | |",
                        op.label(transport),
                        transport.name()
                    );
                    continue;
                };
                let runs = self.series[&(op, transport)]
                    .throughput
                    .iter()
                    .map(|t| format!("{t:.0}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                let of_service = self
                    .get(op, Transport::Service)
                    .map(|r| format!("{:.2}x", s.throughput / r.throughput))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "| `{}` | {} ({}) | {:.0} | {of_service} | {:.2} | {:.2} | {runs} |",
                    op.label(transport),
                    transport.name(),
                    transport.wire(),
                    s.throughput,
                    ms(s.p50),
                    ms(s.p99),
                );
            }
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Medians of {} runs of {} s per (operation, transport), transports interleaved in each run \
             with their order rotated; latency percentiles over every call of all runs. REST and the \
             gateway: one HTTP/1.1 keep-alive connection per caller; gRPC: the callers share {} HTTP/2 \
             connections.",
            a.runs, a.seconds, a.grpc_channels
        );
        for (transport, why) in self.missing {
            let _ = writeln!(
                out,
                "\n{} left out: it did not answer ({why}).",
                transport.name()
            );
        }
    }

    /// The ratios the issue sets targets for.
    fn ratio_table(&self, out: &mut String) {
        let _ = writeln!(out, "| ratio | value | target |");
        let _ = writeln!(out, "|---|---:|---|");
        if let (Some(g), Some(r)) = (
            self.get(Op::GetAccount, Transport::Grpc),
            self.get(Op::GetAccount, Transport::Rest),
        ) {
            let ratio = g.throughput / r.throughput;
            let _ = writeln!(
                out,
                "| gRPC / REST throughput, GET account | **{ratio:.2}x** | ≥ 1.2x: {} |",
                verdict(ratio >= 1.2)
            );
        }
        if let (Some(g), Some(r)) = (
            self.get(Op::Transfer, Transport::Grpc),
            self.get(Op::Transfer, Transport::Rest),
        ) {
            let _ = writeln!(
                out,
                "| gRPC / REST throughput, transfer | {:.2}x | (reported) |",
                g.throughput / r.throughput
            );
        }
        for op in Op::ALL {
            let (Some(g), Some(r)) = (
                self.get(op, Transport::Gateway),
                self.get(op, Transport::Rest),
            ) else {
                continue;
            };
            let ratio = g.throughput / r.throughput;
            let name = match op {
                Op::GetAccount => "GET account",
                Op::Transfer => "transfer",
                Op::Health => "health check",
            };
            let _ = writeln!(
                out,
                "| gateway / REST throughput, {name} | **{ratio:.2}x** ({:+.0}% req/s) | ≥ 0.8x: {} |",
                (ratio - 1.0) * 100.0,
                verdict(ratio >= 0.8)
            );
            let extra = ms(g.p50) - ms(r.p50);
            let _ = writeln!(
                out,
                "| gateway − REST p50 latency, {name} | {extra:+.2} ms ({:+.0}%) | (reported) |",
                extra / ms(r.p50) * 100.0
            );
        }
    }

    /// The transport alone: the health check, REST against gRPC (nothing without both).
    fn health_table(&self, out: &mut String) {
        if let (Some(g), Some(r)) = (
            self.get(Op::Health, Transport::Grpc),
            self.get(Op::Health, Transport::Rest),
        ) {
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "The transport alone (a health check: no authentication, no database, the same layers), \
                 measured in the same runs:"
            );
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "| health check | throughput (req/s) | p50 (ms) | p99 (ms) | API CPU per call (µs) | load generator CPU per call (µs) |"
            );
            let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
            for (transport, s) in [(Transport::Rest, r), (Transport::Grpc, g)] {
                let _ = writeln!(
                    out,
                    "| {} `{}` | {:.0} | {:.2} | {:.2} | {:.0} | {:.0} |",
                    transport.name(),
                    Op::Health.label(transport),
                    s.throughput,
                    ms(s.p50),
                    ms(s.p99),
                    s.cpu_server,
                    s.cpu_client
                );
            }
            let _ = writeln!(
                out,
                "| gRPC / REST | **{:.2}x** | | | {:.2}x | {:.2}x |",
                g.throughput / r.throughput,
                g.cpu_server / r.cpu_server,
                g.cpu_client / r.cpu_client
            );
        }
    }

    /// CPU per call: the API's, the load generator's, Postgres's, and the connections opened.
    fn cpu_table(&self, out: &mut String) {
        let a = self.settings;
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let _ = writeln!(
            out,
            "| CPU per call (µs) | transport | API | of which in the kernel | load generator | API + load generator − service layer's | Postgres | all | of {cores} cores | others' share of the machine | HTTP connections opened while measuring |"
        );
        let _ = writeln!(
            out,
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for op in Op::ALL.into_iter().chain([Op::Health]) {
            for transport in Transport::ALL {
                let Some(s) = self.get(op, transport) else {
                    continue;
                };
                let all = s.cpu_server + s.cpu_client + s.cpu_postgres;
                let connects = match transport {
                    Transport::Service => "(in the process)".to_owned(),
                    Transport::Grpc => format!("({} channels, opened before)", a.grpc_channels),
                    Transport::Rest | Transport::Gateway => {
                        self.series[&(op, transport)].connects.to_string()
                    }
                };
                let over = match (transport, self.get(op, Transport::Service)) {
                    (Transport::Service, _) | (_, None) => String::new(),
                    (_, Some(r)) => format!(
                        "{:+.0}",
                        s.cpu_server + s.cpu_client - r.cpu_server - r.cpu_client
                    ),
                };
                let _ = writeln!(
                    out,
                    "| `{}` | {} | {:.0} | {:.0} | {:.0} | {over} | {:.0} | {all:.0} | {:.0}% | {:.0}% | {connects} |",
                    op.label(transport),
                    transport.name(),
                    s.cpu_server,
                    s.cpu_server_kernel,
                    s.cpu_client,
                    s.cpu_postgres,
                    all * s.throughput / 1e6 / cores as f64 * 100.0,
                    s.others_share * 100.0,
                );
            }
        }
        let _ = writeln!(
            out,
            "\nCPU time from `/proc` (utime + stime, 10 ms ticks) over each measurement, divided by its \
             calls; medians over the runs. API: the process's threads other than the load generator's \
             (which run on a runtime of their own, `{LOAD_THREAD}`); the service-layer reference runs \
             on the load generator's threads. Postgres: the backends connected to the benchmark \
             database (background processes such as the WAL writer are left out). Others' share: the \
             machine's busy time not ours nor our backends', over all its CPU time. The HTTP clients \
             opened their {} connections per transport in a warm-up second before the first \
             measurement; the last column counts the ones they opened after that, over all runs.",
            a.concurrency
        );
    }

    /// Bytes on the wire per call, and how many connections the counts went over.
    fn wire_table(&self, out: &mut String) {
        let a = self.settings;
        let _ = writeln!(
            out,
            "| bytes on the wire per call | transport | request (client → server) | response (server → client) | total |"
        );
        let _ = writeln!(out, "|---|---|---:|---:|---:|");
        for op in Op::ALL.into_iter().chain([Op::Health]) {
            for transport in Transport::ALL {
                let Some(w) = self.wire.get(&(op, transport)) else {
                    continue;
                };
                let _ = writeln!(
                    out,
                    "| `{}` | {} | {:.1} | {:.1} | {:.1} |",
                    op.label(transport),
                    transport.name(),
                    w.request,
                    w.response,
                    w.request + w.response
                );
            }
        }
        let _ = writeln!(out);
        let connections: Vec<String> = self
            .wire
            .iter()
            .filter(|(_, w)| w.connections != 1)
            .map(|((op, t), w)| format!("{} {}: {} connections", t.name(), op.rpc(), w.connections))
            .collect();
        let _ = writeln!(
            out,
            "Bytes per call: {} sequential calls on one warm connection (after {WIRE_WARM_UP_CALLS} \
             warm-up calls), counted by a TCP proxy in the process, both directions; TCP/IP headers \
             are not included. {}",
            a.wire_calls,
            if connections.is_empty() {
                "Every count went over a single connection.".to_owned()
            } else {
                format!(
                    "Warning, more than one connection: {}.",
                    connections.join("; ")
                )
            }
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn thousands() {
        assert_eq!(super::thousands(9945.4), "9,945");
        assert_eq!(super::thousands(123.0), "123");
        assert_eq!(super::thousands(1_234_567.0), "1,234,567");
    }
}
