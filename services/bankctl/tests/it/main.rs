//! `bankctl`'s integration tests, one binary: the real `bankctl` binary run as an operator runs it,
//! against real Postgres and Redis. Each module holds one subject; nextest names a test
//! `<module>::<test>` within the `it` binary.

mod common;

mod cli;
mod demo;
mod repair;
mod scaled;
