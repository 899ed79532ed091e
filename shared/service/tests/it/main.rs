//! The service layer's integration tests, one binary, against a real Postgres (a database per test).
//! Each module holds one subject; nextest names a test `<module>::<test>` within the `it` binary.
//!
//! `common` makes a bank over a fresh database, with a banker, customers and funded accounts.

mod common;

mod concurrency;
mod ledger;
