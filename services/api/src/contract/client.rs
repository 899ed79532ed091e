//! Who the client is: the socket's peer, or the address a trusted proxy forwarded (REST's rate
//! limits and sessions, and the gRPC server's, for its TCP callers and for the gateway's calls).

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::HeaderMap;

/// The client's address: the socket's peer, or, when the peer is a trusted proxy, the right-most address
/// in `X-Forwarded-For` that is not itself a trusted proxy.
pub fn client_ip(
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    trusted_proxies: &[IpAddr],
) -> Option<IpAddr> {
    let peer = peer?;
    if !trusted_proxies.contains(&peer) {
        return Some(peer);
    }
    Some(
        forwarded(headers)
            .rev()
            .find(|ip| !trusted_proxies.contains(ip))
            .unwrap_or(peer),
    )
}

/// The addresses in `X-Forwarded-For`, left (the first hop) to right (the last), skipping what is not
/// an address.
pub fn forwarded(headers: &HeaderMap) -> impl DoubleEndedIterator<Item = IpAddr> + '_ {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|ip| ip.trim().parse::<IpAddr>().ok())
}

/// The peer address recorded by `into_make_service_with_connect_info`.
pub fn peer_ip(parts_extensions: &axum::http::Extensions) -> Option<IpAddr> {
    parts_extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
}
