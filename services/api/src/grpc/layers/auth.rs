//! Authentication: every method not in [`PUBLIC_METHODS`] needs a valid access token.

use std::net::IpAddr;

use axum::http::{HeaderMap, Request};
use streambank_service::{Authenticated, Error, Sessions};
use tonic::Status;

use super::super::error;
use super::super::peer::Peer;
use super::{Answer, Around, Inner, PUBLIC_METHODS, Payload};
use crate::contract::Reason;
use crate::contract::client::{client_ip, forwarded};

/// Whether a call to `path` (`/package.Service/Method`) must carry an access token.
pub fn requires_token(path: &str) -> bool {
    path.starts_with("/streambank.v1.") && !PUBLIC_METHODS.contains(&path)
}

/// The authenticated caller of a protected method (the auth layer put it there).
pub fn caller<T>(request: &tonic::Request<T>) -> Result<Authenticated, Status> {
    request
        .extensions()
        .get::<Authenticated>()
        .copied()
        .ok_or_else(|| error::status(Error::TokenInvalid))
}

/// The client's address: the socket's peer, or what `x-forwarded-for` says when the peer is a trusted
/// proxy: this process's own gateway always ([`Peer::Gateway`]), another when `TRUSTED_PROXIES` lists it.
pub fn client_addr(
    extensions: &axum::http::Extensions,
    headers: &HeaderMap,
    trusted: &[IpAddr],
) -> Option<IpAddr> {
    match extensions.get::<Peer>() {
        Some(Peer::Tcp(peer)) => client_ip(peer.map(|a| a.ip()), headers, trusted),
        // The gateway appends its own caller's socket address last: the peer it stands in for. (It
        // always does; were it missing, the gateway's own address would stand for all its callers.)
        Some(Peer::Gateway(gateway)) => client_ip(
            forwarded(headers).next_back().or(Some(gateway.ip())),
            headers,
            trusted,
        ),
        None => None,
    }
}

/// Checks the bearer token of every protected call.
#[derive(Debug, Clone)]
pub struct Authenticate {
    sessions: Sessions,
}

impl Authenticate {
    pub fn new(sessions: Sessions) -> Self {
        Self { sessions }
    }
}

impl Around for Authenticate {
    fn around<S: Inner<B, R>, B: Payload, R: Payload + Default>(
        &self,
        mut inner: S,
        mut request: Request<B>,
    ) -> Answer<R, S::Error> {
        let sessions = self.sessions.clone();
        Box::pin(async move {
            if requires_token(request.uri().path()) {
                match authenticate(&sessions, request.headers()).await {
                    Ok(who) => {
                        request.extensions_mut().insert(who);
                    }
                    Err(status) => return Ok(status.into_http()),
                }
            }
            inner.call(request).await
        })
    }
}

async fn authenticate(sessions: &Sessions, headers: &HeaderMap) -> Result<Authenticated, Status> {
    let token =
        streambank_auth::bearer_token(headers.get("authorization").and_then(|v| v.to_str().ok()))
            .ok_or_else(|| {
            error::refusal(
                Reason::TokenMissing,
                "the Authorization header must be `Bearer <access token>`",
                &[],
            )
        })?;
    sessions.authenticate(token).await.map_err(error::status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_methods_are_listed_once_and_everything_else_needs_a_token() {
        for path in PUBLIC_METHODS {
            assert!(!requires_token(path), "{path}");
        }
        assert!(requires_token("/streambank.v1.AccountService/GetAccount"));
        assert!(requires_token("/streambank.v1.UserService/Logout"));
        assert!(!requires_token("/grpc.health.v1.Health/Check"));
        assert!(!requires_token(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
        ));
    }
}
