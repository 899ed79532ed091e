//! The API's integration tests, one binary: a real `streambank-api` on port 0 over a fresh database,
//! talked to over real sockets (REST, the gateway, gRPC). Each module holds one subject; nextest names
//! a test `<module>::<test>` within the `it` binary.
//!
//! `common` starts the API and makes its users; `over_both_transports!` (from `common`) runs a contract
//! test once against REST and once against the gateway.

#[macro_use]
mod common;

mod auth;
mod connections;
mod gateway;
mod grpc;
mod input;
mod journey;
mod landing;
mod process;
mod read_replica;
mod security;
mod verify_page;
