//! The relay's integration tests, one binary, on real Postgres and Redis. Each module holds one
//! subject; nextest names a test `<module>::<test>` within the `it` binary.

mod partitions;
mod relay;
