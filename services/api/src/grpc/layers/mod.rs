//! The tower layers every gRPC call passes through, so that no method repeats them: authentication
//! and per-IP rate limits, metrics and the call's log line, deadlines, and the contract's shape for
//! tonic's own answers; request ids, tracing and panic recovery are assembled with these in
//! [`super::serve`].
//!
//! Authentication is a layer rather than a tonic interceptor because checking a session may ask
//! Postgres (an interceptor is synchronous). It runs the same `Sessions::authenticate` as REST and
//! leaves the caller in the request's extensions, where [`caller`] finds it.

use std::future::Future;
use std::pin::Pin;

mod around;
mod auth;
mod deadline;
mod metrics;
mod rate_limit;
mod restate;

pub use around::{Answer, Around, AroundLayer, AroundService, Inner, Payload};
pub use auth::{Authenticate, caller, client_addr, requires_token};
pub use deadline::{Deadline, grpc_timeout};
pub use metrics::CallMetrics;
pub use rate_limit::{RATE_LIMITED_METHODS, RateLimit};
pub use restate::{Restate, restate};

pub use crate::contract::PUBLIC_METHODS;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
