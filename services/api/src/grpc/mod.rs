//! The gRPC server (`GRPC_ADDR`, package `streambank.v1`): four services over the same service layer
//! as REST, plus server reflection (v1 and v1alpha, so grpcurl 1.8 works too) and `grpc.health.v1`.
//!
//! Methods decode, call the service layer and encode; everything that applies to every call is a tower
//! layer, assembled once in [`serve`], outermost first:
//!
//! 1. panic recovery: a panicking method answers `Internal` and the server keeps serving;
//! 2. the caller: a TCP client, or this process's own gateway ([`peer::PeerLayer`]);
//! 3. request id: `x-request-id` metadata, generated when absent, echoed in the response metadata;
//! 4. a tracing span per call (`grpc call`, with the method and the request id), continuing the
//!    caller's W3C `traceparent` when it sends one;
//! 5. metrics: every call counted by method and code, timed, and logged in one line
//!    ([`layers::CallMetrics`]);
//! 6. the call's time limit: `REQUEST_TIMEOUT`, or the caller's `grpc-timeout` when sooner
//!    ([`layers::Deadline`]), inside the metrics so that they count a call cut short;
//! 7. per-client-IP rate limits on `CreateUser` and `Login` ([`layers::RateLimit`]; one budget
//!    per address, shared with REST's), the client being the gateway's caller on the gateway's calls;
//! 8. authentication of every method not in [`layers::PUBLIC_METHODS`] ([`layers::Authenticate`]);
//! 9. tonic's own answers to a request it cannot read or route, restated in the contract's shape
//!    ([`layers::Restate`]).
//!
//! # Layout
//!
//! - [`layers`]: authentication, rate limits, metrics, time limits, tonic's statuses restated, the
//!   list of public methods.
//! - [`error`]: service errors as statuses with `ErrorInfo` and `BadRequest` details.
//! - [`convert`]: service values as protobuf messages.
//! - [`peer`]: who is calling: a TCP client, or this process's own gateway ([`peer::Peer`]).
//! - [`users`], [`accounts`], [`transfers`], [`notifications`]: one module per service.

pub mod accounts;
pub mod convert;
pub mod error;
pub mod layers;
pub mod notifications;
pub mod peer;
pub mod transfers;
pub mod users;

use std::future::Future;
use std::time::Duration;

use axum::http::Request;
use streambank_domain::PageRequest;
use streambank_proto::v1::account_service_server::AccountServiceServer;
use streambank_proto::v1::notification_service_server::NotificationServiceServer;
use streambank_proto::v1::transfer_service_server::TransferServiceServer;
use streambank_proto::v1::user_service_server::UserServiceServer;
use tonic::Status;
use tonic::service::Routes;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::config::Config;
use crate::contract::{INTERNAL_MESSAGE_GRPC, REQUEST_ID, Reason, http};
use crate::state::AppState;
use layers::Around as _;

/// The largest header list a call may carry (hyper's default is 16 KiB). Twice what REST and the
/// gateway accept ([`crate::contract::http::MAX_HEADER_BYTES`]), so that whatever the gateway forwards fits with
/// room for tonic's own headers, and a long bogus token is answered `Unauthenticated` rather than by
/// HTTP/2 with a 431, which a gRPC client can only report as `Unknown`.
pub const MAX_HEADER_LIST_BYTES: u32 = 64 * 1024;

/// The gRPC server's parts: what its layers need, and its routes.
#[derive(Debug, Clone)]
pub struct Grpc {
    state: AppState,
    gateway: peer::GatewayConnections,
    request_timeout: Duration,
}

impl Grpc {
    pub fn new(state: AppState, config: &Config) -> Self {
        Self {
            state,
            gateway: peer::GatewayConnections::default(),
            request_timeout: config.request_timeout,
        }
    }

    /// The channel this process's gateway calls `upstream` (an `http://host:port` URL) on; when that
    /// is this server, it knows the gateway's calls for what they are ([`peer`]).
    pub fn gateway_channel(&self, upstream: &str) -> anyhow::Result<tonic::transport::Channel> {
        self.gateway.channel(upstream)
    }

    /// The four StreamBank services, reflection (v1 and v1alpha) and health.
    pub async fn routes(&self) -> anyhow::Result<Routes> {
        let state = &self.state;
        let users = UserServiceServer::new(users::Users {
            state: state.clone(),
        });
        let accounts = AccountServiceServer::new(accounts::Accounts {
            state: state.clone(),
        });
        let transfers = TransferServiceServer::new(transfers::Transfers {
            state: state.clone(),
        });
        let notifications = NotificationServiceServer::new(notifications::Notifications {
            state: state.clone(),
        });

        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_serving::<UserServiceServer<users::Users>>()
            .await;
        health
            .set_serving::<AccountServiceServer<accounts::Accounts>>()
            .await;
        health
            .set_serving::<TransferServiceServer<transfers::Transfers>>()
            .await;
        health
            .set_serving::<NotificationServiceServer<notifications::Notifications>>()
            .await;

        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(streambank_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                // google.rpc.ErrorInfo and BadRequest, so that grpcurl prints error details readably.
                .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        };
        let reflection_v1 = reflection().build_v1()?;
        let reflection_v1alpha = reflection().build_v1alpha()?;

        Ok(Routes::new(users)
            .add_service(accounts)
            .add_service(transfers)
            .add_service(notifications)
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha))
    }

    /// Serves `routes` behind the layers until `shutdown` completes, then lets in-flight calls finish.
    pub async fn serve(
        self,
        incoming: tokio_stream::wrappers::ReceiverStream<
            std::io::Result<crate::conn::Guarded<tokio::net::TcpStream>>,
        >,
        routes: Routes,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), tonic::transport::Error> {
        let layers = ServiceBuilder::new()
            .layer(CatchPanicLayer::custom(|_panic| {
                tracing::error!("a gRPC method panicked; answering Internal");
                error::refusal(Reason::Internal, INTERNAL_MESSAGE_GRPC, &[])
                .into_http::<tonic::body::Body>()
            }))
            .layer(peer::PeerLayer::new(self.gateway.clone()))
            .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
            // The call's one log line is the metrics layer's, whatever its code.
            .layer(TraceLayer::new_for_grpc().on_response(()).on_failure(()).make_span_with(|request: &Request<_>| {
                let request_id = http::request_id(request.headers());
                let span = tracing::info_span!("grpc call", rpc.method = %request.uri().path(), request_id);
                http::continue_trace(&span, request.headers());
                span
            }))
            .layer(PropagateRequestIdLayer::new(REQUEST_ID))
            .layer(layers::CallMetrics::new(self.state.metrics.clone()).into_layer())
            .layer(layers::Deadline::new(self.request_timeout).into_layer())
            .layer(
                layers::RateLimit::new(self.state.auth_limiter.clone(), &self.state.trusted_proxies)
                    .into_layer(),
            )
            .layer(layers::Authenticate::new(self.state.sessions.clone()).into_layer())
            .layer(layers::Restate.into_layer())
            .into_inner();

        tonic::transport::Server::builder()
            .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
            .layer(layers)
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
    }
}

/// Parses `page_size` and `page_token` exactly as REST does.
pub fn page(size: Option<i64>, token: Option<&str>) -> Result<PageRequest, Status> {
    streambank_service::page_request(size, token).map_err(error::status)
}
