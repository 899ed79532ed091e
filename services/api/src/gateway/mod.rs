//! The HTTP/JSON gateway: a transcoding proxy in front of the gRPC server. (Skeleton: being built.)

use std::time::Duration;

use prost_reflect::DescriptorPool;
use tonic::transport::Channel;

use crate::config::Config;

/// What the gateway takes from the process configuration.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    pub body_limit_bytes: usize,
    pub request_timeout: Duration,
    pub cors_allowed_origins: Vec<String>,
}

impl From<&Config> for GatewayOptions {
    fn from(config: &Config) -> Self {
        Self {
            body_limit_bytes: config.body_limit_bytes,
            request_timeout: config.request_timeout,
            cors_allowed_origins: config.cors_allowed_origins.clone(),
        }
    }
}

/// The gateway's routes, built from the `google.api.http` rules in `pool`; every call goes to `upstream`.
pub fn router(
    _pool: &DescriptorPool,
    _upstream: Channel,
    _options: GatewayOptions,
) -> anyhow::Result<axum::Router> {
    Ok(axum::Router::new())
}
