//! The one tower `Layer` and `Service` pair the gRPC layers share: each layer says only what it does
//! around a call ([`Around`]), and [`AroundService`] does the rest (readiness, and handing the clone
//! that was polled ready to the call, tower's usual dance).

use std::task::{Context, Poll};

use axum::http::{Request, Response};
use tower::{Layer, Service};

use super::BoxFuture;

/// The inner service a layer calls: any HTTP service whose futures and errors may cross threads.
pub trait Inner<B, R>:
    Service<Request<B>, Response = Response<R>, Future: Send + 'static, Error: Send + 'static>
    + Send
    + 'static
{
}

impl<S, B, R> Inner<B, R> for S where
    S: Service<Request<B>, Response = Response<R>, Future: Send + 'static, Error: Send + 'static>
        + Send
        + 'static
{
}

/// A request or response body that may cross threads.
pub trait Payload: Send + 'static {}

impl<T: Send + 'static> Payload for T {}

/// What a layer answers: the response, later.
pub type Answer<R, E> = BoxFuture<Result<Response<R>, E>>;

/// What a layer does around one call: it gets the request and the inner service, ready to call.
pub trait Around: Clone + Send + Sync + 'static {
    fn around<S: Inner<B, R>, B: Payload, R: Payload + Default>(
        &self,
        inner: S,
        request: Request<B>,
    ) -> Answer<R, S::Error>;

    /// This as a tower layer.
    fn into_layer(self) -> AroundLayer<Self> {
        AroundLayer(self)
    }
}

#[derive(Debug, Clone)]
pub struct AroundLayer<A>(A);

impl<A: Clone, S> Layer<S> for AroundLayer<A> {
    type Service = AroundService<A, S>;

    fn layer(&self, inner: S) -> Self::Service {
        AroundService {
            around: self.0.clone(),
            inner,
        }
    }
}

#[derive(Debug, Clone)]
pub struct AroundService<A, S> {
    around: A,
    inner: S,
}

impl<A, S, B, R> Service<Request<B>> for AroundService<A, S>
where
    A: Around,
    // Written out as well as through `Inner`, so that the response type pins `R`.
    S: Service<Request<B>, Response = Response<R>> + Inner<B, R> + Clone,
    B: Payload,
    R: Payload + Default,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = Answer<R, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The clone that was polled ready serves this call; the fresh clone waits for the next.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        self.around.around(inner, request)
    }
}
