//! `GET /` on REST and on the gateway: a small HTML page saying where to go from here (this
//! listener's Swagger UI and OpenAPI document, the other listener, health, metrics, the mail catcher's
//! web page and the trace viewer). Plain HTML: no script, no style, nothing fetched, so that it runs
//! under the strictest content security policy, which it sends. It is no API operation, so neither
//! OpenAPI document lists it.
//!
//! Links to this process's other listeners use the host the browser used (`Host`, when it is a plain
//! host name or address) with each listener's own port; the external pages come from the
//! configuration (`LANDING_MAIL_URL`, `LANDING_TRACES_URL`).

use std::fmt::Write as _;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use super::http::{Listener, MatchedRoute};
use crate::config::Config;

/// What the page links to.
#[derive(Debug, Clone)]
pub struct Landing {
    pub rest_port: u16,
    pub gateway_port: u16,
    pub grpc_port: u16,
    pub metrics_port: u16,
    pub mail_url: String,
    pub traces_url: String,
}

impl Landing {
    /// The ports the listeners are bound to, and the configured external pages.
    pub fn new(
        config: &Config,
        [rest_port, gateway_port, grpc_port, metrics_port]: [u16; 4],
    ) -> Self {
        Self {
            rest_port,
            gateway_port,
            grpc_port,
            metrics_port,
            mail_url: config.landing_mail_url.clone(),
            traces_url: config.landing_traces_url.clone(),
        }
    }
}

/// The route `GET /` for `listener`.
pub fn router<S: Clone + Send + Sync + 'static>(landing: Landing, listener: Listener) -> Router<S> {
    Router::new()
        .route("/", get(page))
        .with_state((landing, listener))
}

async fn page(
    State((landing, listener)): State<(Landing, Listener)>,
    headers: HeaderMap,
) -> Response {
    let host = host(&headers);
    // The route, for the span and the request's log line, as every other route leaves it.
    tracing::Span::current().record("route", "/");
    let mut response = Html(render(&landing, listener, &host)).into_response();
    response
        .extensions_mut()
        .insert(MatchedRoute("/".to_owned()));
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
    );
    response
}

/// The host part of `Host`, if it is a plain name, IPv4 or bracketed IPv6 address; else loopback.
fn host(headers: &HeaderMap) -> String {
    let raw = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let host = if raw.starts_with('[') {
        raw.split_inclusive(']').next().unwrap_or_default()
    } else {
        raw.split(':').next().unwrap_or_default()
    };
    let plain = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'));
    if plain {
        host.to_owned()
    } else {
        "127.0.0.1".to_owned()
    }
}

/// The page, every interpolated value escaped.
fn render(landing: &Landing, listener: Listener, host: &str) -> String {
    let url = |port: u16, path: &str| format!("http://{host}:{port}{path}");
    let (title, swagger, other_name, other) = match listener {
        Listener::Rest => (
            "StreamBank REST API",
            "/swagger-ui/",
            "The HTTP/JSON gateway (the same API, transcoded to gRPC)",
            url(landing.gateway_port, "/"),
        ),
        Listener::Gateway => (
            "StreamBank HTTP/JSON gateway",
            "/swagger/",
            "The REST API (the same paths and JSON, served directly)",
            url(landing.rest_port, "/"),
        ),
    };
    let links = [
        ("Swagger UI for this listener", swagger.to_owned()),
        (
            "The OpenAPI document of this listener",
            "/openapi.json".to_owned(),
        ),
        (other_name, other),
        (
            "Liveness (/healthz, on the REST listener)",
            url(landing.rest_port, "/healthz"),
        ),
        (
            "Readiness: Postgres and Redis (/readyz, on the REST listener)",
            url(landing.rest_port, "/readyz"),
        ),
        (
            "Prometheus metrics (METRICS_ADDR)",
            url(landing.metrics_port, "/metrics"),
        ),
        (
            "The mail catcher: verification emails",
            landing.mail_url.clone(),
        ),
        ("The trace viewer (Jaeger UI)", landing.traces_url.clone()),
    ];
    let mut items = String::new();
    for (text, href) in links {
        let _ = writeln!(
            items,
            "<li><a href=\"{}\">{}</a></li>",
            escape(&href),
            escape(text)
        );
    }
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>{title}</title></head>\n\
         <body>\n<h1>{title}</h1>\n<p>An API: the pages below describe it and show what it is doing. \
         The gRPC server has no page; list its methods with <code>grpcurl -plaintext {host}:{grpc} list</code>.</p>\n\
         <ul>\n{items}</ul>\n</body>\n</html>\n",
        title = escape(title),
        host = escape(host),
        grpc = landing.grpc_port,
    )
}

/// Text as HTML, safe inside an element or a double-quoted attribute.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_kept_only_when_plain() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::HOST, HeaderValue::from_str(value).expect("value"));
            host(&headers)
        };
        assert_eq!(with("localhost:8080"), "localhost");
        assert_eq!(with("[::1]:8081"), "[::1]");
        assert_eq!(with("evil\"><script>:8080"), "127.0.0.1");
        assert_eq!(host(&HeaderMap::new()), "127.0.0.1");
    }
}
