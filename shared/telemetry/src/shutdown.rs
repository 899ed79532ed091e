//! Stopping a process: one [`CancellationToken`] that every task of the process watches.

use std::future::Future;

pub use tokio_util::sync::CancellationToken;

/// A token cancelled when `shutdown` completes (a signal, or a test's trigger).
pub fn stop_token(shutdown: impl Future<Output = ()> + Send + 'static) -> CancellationToken {
    let stop = CancellationToken::new();
    let cancel = stop.clone();
    tokio::spawn(async move {
        shutdown.await;
        cancel.cancel();
    });
    stop
}
