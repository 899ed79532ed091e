//! What the consumer machinery hands entries to: the [`Handle`] trait (the real handlers implement it;
//! tests and benchmarks wrap them), and the [`Delivery`] of one entry with the span of its handling.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use futures_util::StreamExt as _;
use streambank_events::StreamEntry;
use tracing::Instrument as _;

use crate::group::Group;

/// Entries one group handles at the same time.
const HANDLERS_IN_FLIGHT: usize = 16;

/// A stream entry as read, with the span of its handling (which continues the trace of the request that
/// caused the event).
#[derive(Debug)]
pub struct Delivery {
    pub entry: StreamEntry,
    pub span: tracing::Span,
}

impl Delivery {
    pub fn new(group: Group, entry: StreamEntry) -> Self {
        let span = tracing::info_span!("handle event", group = group.name(), event_type = %entry.event_type, event_id = %entry.event_id);
        streambank_telemetry::continue_trace(&span, &entry.traceparent);
        Self { entry, span }
    }
}

pub type Outcome<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Something that handles events (the real [`Handlers`], or a test double wrapping them).
pub trait Handle: Send + Sync + std::fmt::Debug {
    /// Handles one entry: `Ok` means done, `Err` means try again later.
    fn handle<'a>(
        &'a self,
        group: Group,
        entry: &'a StreamEntry,
    ) -> Outcome<'a, anyhow::Result<()>>;

    /// Handles the entries of one read; one outcome per entry, in their order. By default each entry is
    /// handled on its own, up to [`HANDLERS_IN_FLIGHT`] at once.
    fn handle_many<'a>(
        &'a self,
        group: Group,
        deliveries: &'a [Delivery],
    ) -> Outcome<'a, Vec<anyhow::Result<()>>> {
        Box::pin(handle_each(self, group, deliveries))
    }
}

/// Handles each delivery with [`Handle::handle`], concurrently: each event has its own effects and
/// records, so their order does not matter, and one slow SMTP exchange must not hold up the rest. Copies
/// of one event (the relay may publish twice) are handled one after the other, so that the second sees
/// what the first recorded.
pub async fn handle_each<H: Handle + ?Sized>(
    handler: &H,
    group: Group,
    deliveries: &[Delivery],
) -> Vec<anyhow::Result<()>> {
    let mut buckets: Vec<Vec<usize>> = Vec::new();
    let mut bucket_of_event: HashMap<&str, usize> = HashMap::new();
    for (i, delivery) in deliveries.iter().enumerate() {
        let next = buckets.len();
        let bucket = *bucket_of_event
            .entry(delivery.entry.event_id.as_str())
            .or_insert(next);
        if bucket == next {
            buckets.push(Vec::new());
        }
        buckets[bucket].push(i);
    }
    let done: Vec<Vec<(usize, anyhow::Result<()>)>> = futures_util::stream::iter(buckets)
        .map(|bucket| async move {
            let mut outcomes = Vec::with_capacity(bucket.len());
            for i in bucket {
                let Delivery { entry, span } = &deliveries[i];
                let outcome = handler.handle(group, entry).instrument(span.clone()).await;
                outcomes.push((i, outcome));
            }
            outcomes
        })
        .buffer_unordered(HANDLERS_IN_FLIGHT)
        .collect()
        .await;
    let mut outcomes: Vec<Option<anyhow::Result<()>>> = deliveries.iter().map(|_| None).collect();
    for (i, outcome) in done.into_iter().flatten() {
        outcomes[i] = Some(outcome);
    }
    outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Err(anyhow::anyhow!("not handled"))))
        .collect()
}

/// The real handlers of one group; the other groups' entries are acknowledged untouched. For tests
/// and benchmarks that exercise or time one group (its entries still flow through the others, which
/// read and acknowledge them).
#[derive(Debug)]
pub struct OnlyGroup<H>(pub Group, pub H);

impl<H: Handle> Handle for OnlyGroup<H> {
    fn handle<'a>(
        &'a self,
        group: Group,
        entry: &'a StreamEntry,
    ) -> Outcome<'a, anyhow::Result<()>> {
        Box::pin(async move {
            if group == self.0 {
                self.1.handle(group, entry).await
            } else {
                Ok(())
            }
        })
    }

    fn handle_many<'a>(
        &'a self,
        group: Group,
        deliveries: &'a [Delivery],
    ) -> Outcome<'a, Vec<anyhow::Result<()>>> {
        Box::pin(async move {
            if group == self.0 {
                self.1.handle_many(group, deliveries).await
            } else {
                deliveries.iter().map(|_| Ok(())).collect()
            }
        })
    }
}
