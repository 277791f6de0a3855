//! Access lines wait in a per-worker batch for at most a millisecond, so the bus is handed one
//! batch (and its consumer woken once) per millisecond rather than once per request.

use std::cell::RefCell;
use std::time::Duration;

use wharf_bus::{LogEvent, Publisher};

/// Lines that go out at once, however little time has passed.
const MAX_BATCH: usize = 256;
/// Longest a line waits for company.
const MAX_WAIT: Duration = Duration::from_millis(1);

thread_local! {
    static PENDING: RefCell<Vec<LogEvent>> = const { RefCell::new(Vec::new()) };
}

/// Queues a line; the first line of a batch arms the flush.
pub(crate) fn publish(publisher: &Publisher, event: LogEvent) {
    let len = PENDING.with(|p| {
        let mut p = p.borrow_mut();
        p.push(event);
        p.len()
    });
    if len >= MAX_BATCH {
        flush(publisher);
    } else if len == 1 {
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                let publisher = publisher.clone();
                rt.spawn(async move {
                    tokio::time::sleep(MAX_WAIT).await;
                    flush(&publisher);
                });
            }
            // Outside the worker's event loop (dropped during shutdown): no waiting.
            Err(_) => flush(publisher),
        }
    }
}

/// Hands this worker's pending lines to the bus.
pub(crate) fn flush(publisher: &Publisher) {
    let batch = PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
    if !batch.is_empty() {
        publisher.publish_batch(batch);
    }
}
