//! REST, gRPC and the HTTP/JSON gateway side by side, in one run: the parts of `transport-bench`.
//!
//! The binary (`src/bin/transport_bench.rs`) starts `streambank-api` in the process on a fresh database
//! (see [`crate::api`]), logs in one customer per concurrent caller, and drives the same two operations
//! through each of the three listeners, with the service layer called directly as the reference:
//!
//! - `GET /v1/accounts/{id}` (REST and gateway) against `AccountService/GetAccount` (gRPC) and
//!   `Bank::get_account`;
//! - `POST /v1/transfers` (REST and gateway) against `TransferService/CreateTransfer` (gRPC) and
//!   `Bank::transfer`, each a transfer of one minor unit out of the caller's own account to a random
//!   other account;
//! - and, to see the transport alone, a health check (REST `/healthz`, gRPC `grpc.health.v1.Health/
//!   Check`): no authentication, no database, the same layers (`--no-health` skips it).
//!
//! REST and the gateway get one HTTP/1.1 keep-alive connection per caller (reqwest); gRPC callers share a
//! few HTTP/2 channels (`--grpc-channels`), because one HTTP/2 connection multiplexes many calls. Each
//! run measures every (operation, transport) pair for `--seconds`, transports interleaved and their order
//! rotated from run to run, so drift hits them alike; throughput is the median over the runs, latency
//! percentiles are over every call of every run.
//!
//! The API runs on a runtime like its own binary's (a worker per core) and the load generator on a
//! second runtime with threads of its own (`--load-threads`), as a separate client process would; so
//! the CPU time each used can be read apart from `/proc`, next to that of the Postgres backends of the
//! benchmark database and of everything else on the machine. That, and the count of connections the
//! HTTP clients opened, is there so that a shortfall can be traced to where the time goes.
//!
//! Then it counts the bytes each call puts on the wire: `--wire-calls` sequential calls per pair through
//! an in-process TCP proxy that counts what it copies in each direction, after a few warm-up calls on
//! the same connection (so the figures are per call on a warm connection: HTTP/1.1 headers, HTTP/2
//! frames and HPACK as they really are, not estimates).
//!
//! It prints Markdown tables and writes an SVG chart (`--chart`).
//!
//! # Layout
//!
//! - this file: the transports and the operations.
//! - [`load`]: the callers' connections, one call of an operation on each transport, and the load.
//! - [`cpu`]: CPU time from `/proc`: the API's, the load generator's, the benchmark's Postgres backends'
//!   and the rest of the machine's.
//! - [`measure`]: the runs, and what each (operation, transport) pair measured in them.
//! - [`proxy`]: the byte-counting proxy and the bytes per call it counts.
//! - [`report`]: the Markdown tables.
//! - [`chart`]: the SVG chart.

pub mod chart;
pub mod cpu;
pub mod load;
pub mod measure;
pub mod proxy;
pub mod report;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Transport {
    /// The reference: the service layer called in the process, no transport at all.
    Service,
    Rest,
    Grpc,
    Gateway,
}

impl Transport {
    pub const ALL: [Self; 4] = [Self::Service, Self::Rest, Self::Grpc, Self::Gateway];

    pub fn name(self) -> &'static str {
        match self {
            Self::Service => "service layer",
            Self::Rest => "REST",
            Self::Grpc => "gRPC",
            Self::Gateway => "gateway",
        }
    }

    /// How `--transports` names it.
    pub fn flag(self) -> String {
        match self {
            Self::Service => "service",
            Self::Rest => "rest",
            Self::Grpc => "grpc",
            Self::Gateway => "gateway",
        }
        .to_owned()
    }

    pub fn wire(self) -> &'static str {
        match self {
            Self::Service => "no transport",
            Self::Rest => "HTTP/1.1 + JSON",
            Self::Grpc => "HTTP/2 + protobuf",
            Self::Gateway => "HTTP/1.1 + JSON → gRPC",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    GetAccount,
    Transfer,
    /// The transport alone: a health check, with no authentication and no database (REST `/healthz`,
    /// gRPC `grpc.health.v1.Health/Check`), through the same layers as every call.
    Health,
}

impl Op {
    /// The operations the benchmark is about (the health check is measured beside them).
    pub const ALL: [Self; 2] = [Self::GetAccount, Self::Transfer];

    pub fn http(self) -> &'static str {
        match self {
            Self::GetAccount => "GET /v1/accounts/{id}",
            Self::Transfer => "POST /v1/transfers",
            Self::Health => "GET /healthz",
        }
    }

    pub fn rpc(self) -> &'static str {
        match self {
            Self::GetAccount => "AccountService/GetAccount",
            Self::Transfer => "TransferService/CreateTransfer",
            Self::Health => "grpc.health.v1.Health/Check",
        }
    }

    pub fn service(self) -> &'static str {
        match self {
            Self::GetAccount => "Bank::get_account",
            Self::Transfer => "Bank::transfer",
            Self::Health => "(none)",
        }
    }

    /// Whether `transport` has this operation (the gateway serves only the API's own methods).
    pub fn on(self, transport: Transport) -> bool {
        match self {
            Self::GetAccount | Self::Transfer => true,
            Self::Health => matches!(transport, Transport::Rest | Transport::Grpc),
        }
    }

    pub fn label(self, transport: Transport) -> &'static str {
        match transport {
            Transport::Service => self.service(),
            Transport::Grpc => self.rpc(),
            Transport::Rest | Transport::Gateway => self.http(),
        }
    }
}
