//! The chaos harness of issue 19: a Jepsen-style fault campaign against the real binaries.
//!
//! `bench/run-chaos.sh` builds the binaries and runs `src/bin/chaos.rs`, which starts a private copy of
//! the whole system on loopback (its own Redis, its own SMTP sink, a fresh database on the shared
//! Postgres, one `streambank-api`, two `streambank-relay`, two `streambank-worker`), drives concurrent
//! clients over REST, gRPC and the gateway while it injects faults at random times, lets the system come
//! to rest, and then checks what came out: money, transfers, notification rows, emails, pending entries,
//! the outbox and the dead letters. It prints a report and one summary line, and exits non-zero on any
//! violation. `docs/reliability.md` says what it checks and how to run it.
//!
//! # Layout
//!
//! - [`settings`]: the command line and every timing handed to the processes, in one place.
//! - [`timeline`]: the run's clock and its log of what happened when.
//! - [`procs`]: starting, killing and restarting the processes (Redis included), and the ports they use.
//! - [`smtp`]: the SMTP sink that records each message's recipients and headers; it can go down.
//! - [`setup`]: the database, the banker, the customers (registered and verified through the API), their
//!   accounts and deposits.
//! - [`clients`]: the workload (careful clients with idempotency keys) and the balance sampler.
//! - [`faults`]: the fault campaign.
//! - [`quiesce`]: the event pipeline's state, and waiting for it to come to rest.
//! - [`emails`]: which emails the outbox calls for, against what the sink received.
//! - [`check`]: every check.
//! - [`report`]: the report and its summary line.

pub mod check;
pub mod clients;
pub mod emails;
pub mod faults;
pub mod procs;
pub mod quiesce;
pub mod report;
pub mod settings;
pub mod setup;
pub mod smtp;
pub mod timeline;
