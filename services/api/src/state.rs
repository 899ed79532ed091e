//! What every request handler shares.

use std::net::IpAddr;

use streambank_service::{Bank, Sessions};

#[derive(Debug, Clone)]
pub struct AppState {
    pub bank: Bank,
    pub sessions: Sessions,
    pub redis: redis::Client,
    pub trusted_proxies: Vec<IpAddr>,
    pub body_limit_bytes: usize,
    pub metrics: crate::rest::metrics::ApiMetrics,
}
