//! The worker's integration tests, one binary, on real Postgres, Redis and the SMTP catcher. Each
//! module holds one subject; nextest names a test `<module>::<test>` within the `it` binary.

mod batch;
mod cluster;
mod pipeline;
mod trace_propagation;
