//! Fetched messages read a batch at a time: the one place the bus calls librdkafka itself.
//!
//! rust-rdkafka's `BaseConsumer::poll` hands over one message per call, and every call pays
//! librdkafka's poll bookkeeping (two clock reads and an average kept under a mutex, for
//! `max.poll.interval.ms` and its telemetry) and rust-rdkafka's own clock read and event
//! allocation: per line, about 7% of the logshuttle's CPU at 1,000 drains (benches/RESULTS.md,
//! logshuttle run 14). librdkafka's `rd_kafka_consume_batch_queue` pays them once for a whole
//! batch, but it serves the queue it reads with librdkafka's callbacks, which rust-rdkafka does
//! not set: on the consumer queue, where rust-rdkafka has rebalances, commit results,
//! statistics and errors delivered as events, a rebalance would meet librdkafka's default (an
//! unassignment) and never reach the `ConsumerContext`.
//!
//! So fetched messages get a queue of their own ([`FetchQueue`]): each partition's fetch queue
//! is forwarded to it ([`FetchQueue::route`], `rd_kafka_queue_forward`) when the partition is
//! assigned, before the assignment is applied. Only the partitions' messages and errors land
//! there; every event stays on the consumer queue, served by `BaseConsumer::poll` as before.
//! librdkafka undoes the forward when it stops fetching a partition (an unassignment), and once
//! the application has forwarded a partition it no longer forwards it to the consumer queue at
//! the next start: every assignment forwards its partitions again. In the eager protocol an
//! assignment comes only after the previous unassignment has stopped every partition (the
//! member rejoins once that is done), so no late stop undoes a new forward. Messages of a
//! stopped partition still in the queue are outdated (librdkafka's version barrier) and
//! dropped by librdkafka as it serves the queue.

#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::bindings as rd;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// The fetched messages' own queue of one consumer, and a handle on that consumer's event queue
/// to see whether events wait there.
pub(super) struct FetchQueue<C: ConsumerContext + 'static> {
    /// Keeps the client (`rd_kafka_t`) both queues belong to alive as long as they are.
    consumer: Arc<BaseConsumer<C>>,
    /// Made by `rd_kafka_queue_new`; destroyed on drop.
    messages: NonNull<rd::rd_kafka_queue_t>,
    /// The consumer queue (`rd_kafka_queue_get_consumer`): a reference, dropped on drop.
    events: NonNull<rd::rd_kafka_queue_t>,
}

// SAFETY: librdkafka's queues are locked inside and may be used from any thread; the handles are
// only read (never moved out or freed) until the drop, which `&mut self` makes the only user.
unsafe impl<C: ConsumerContext + 'static> Send for FetchQueue<C> {}

impl<C: ConsumerContext + 'static> std::fmt::Debug for FetchQueue<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FetchQueue").finish_non_exhaustive()
    }
}

impl<C: ConsumerContext + 'static> FetchQueue<C> {
    /// A new, empty queue for `consumer`'s messages; `None` when librdkafka makes none (a
    /// consumer without a group has no consumer queue).
    pub(super) fn new(consumer: &Arc<BaseConsumer<C>>) -> Option<Self> {
        let rk = consumer.client().native_ptr();
        // SAFETY: `rk` is the live client of `consumer`, which the queue keeps alive.
        let events = NonNull::new(unsafe { rd::rd_kafka_queue_get_consumer(rk) })?;
        // SAFETY: as above.
        let Some(messages) = NonNull::new(unsafe { rd::rd_kafka_queue_new(rk) }) else {
            // SAFETY: `events` was just returned by librdkafka and is destroyed once.
            unsafe { rd::rd_kafka_queue_destroy(events.as_ptr()) };
            return None;
        };
        Some(FetchQueue { consumer: consumer.clone(), messages, events })
    }

    /// Has partition `partition` of `topic` deliver its fetched messages (and errors) to this
    /// queue from now on. Call it for every partition of an assignment before applying it.
    /// `false` when librdkafka has no such partition (its messages then go to the consumer
    /// queue, where `BaseConsumer::poll` returns them).
    pub(super) fn route(&self, topic: &str, partition: i32) -> bool {
        let Ok(topic) = CString::new(topic) else { return false };
        let rk = self.consumer.client().native_ptr();
        // SAFETY: `rk` is alive (held by `self.consumer`); `topic` is a NUL-terminated string
        // that librdkafka only reads during the call.
        let Some(part) = NonNull::new(unsafe { rd::rd_kafka_queue_get_partition(rk, topic.as_ptr(), partition) })
        else {
            return false;
        };
        // SAFETY: both queues are alive; forwarding takes librdkafka's own reference on the
        // destination, and the partition queue's handle is a reference dropped right after.
        unsafe {
            rd::rd_kafka_queue_forward(part.as_ptr(), self.messages.as_ptr());
            rd::rd_kafka_queue_destroy(part.as_ptr());
        }
        true
    }

    /// Whether events (a rebalance, a commit's result, statistics, an error) wait on the
    /// consumer queue for `BaseConsumer::poll`.
    pub(super) fn events_waiting(&self) -> bool {
        // SAFETY: the consumer queue's handle is alive until the drop.
        unsafe { rd::rd_kafka_queue_length(self.events.as_ptr()) > 0 }
    }

    /// Takes up to `max` messages: those already in the queue, or, when there are none, the
    /// first to arrive within `wait` and whatever else has arrived with it. librdkafka's batch
    /// call waits for a full batch until its timeout, so it is called with a timeout only for
    /// the first message.
    pub(super) fn read(&self, wait: Duration, max: usize) -> Fetched<'_> {
        let mut out = Fetched { messages: Vec::with_capacity(max), _queue: std::marker::PhantomData };
        self.take(&mut out.messages, Duration::ZERO, max);
        if out.messages.is_empty() && !wait.is_zero() && max > 0 {
            self.take(&mut out.messages, wait, 1);
            if !out.messages.is_empty() {
                self.take(&mut out.messages, Duration::ZERO, max - 1);
            }
        }
        out
    }

    /// Appends up to `n` messages to `to`, waiting up to `wait` for them.
    fn take(&self, to: &mut Vec<NonNull<rd::rd_kafka_message_t>>, wait: Duration, n: usize) {
        to.reserve(n);
        let ms = i32::try_from(wait.as_millis()).unwrap_or(i32::MAX);
        let len = to.len();
        // `NonNull<T>` has the layout of `*mut T`, and librdkafka writes only non-null pointers.
        let spare = to.spare_capacity_mut().as_mut_ptr().cast::<*mut rd::rd_kafka_message_t>();
        // SAFETY: the queue is alive; `spare` has room for the `n` pointers librdkafka may write.
        let read = unsafe { rd::rd_kafka_consume_batch_queue(self.messages.as_ptr(), ms, spare, n) };
        let read = usize::try_from(read).unwrap_or(0).min(n);
        // SAFETY: librdkafka wrote `read` message pointers, each non-null, after the first `len`.
        unsafe { to.set_len(len + read) };
    }
}

impl<C: ConsumerContext + 'static> Drop for FetchQueue<C> {
    fn drop(&mut self) {
        // SAFETY: both handles came from librdkafka, are destroyed once, and the client is still
        // alive (`self.consumer` is dropped after this). Partitions still forwarded to the
        // message queue hold librdkafka's own reference to it; they drop what they still send.
        unsafe {
            rd::rd_kafka_queue_destroy(self.messages.as_ptr());
            rd::rd_kafka_queue_destroy(self.events.as_ptr());
        }
    }
}

/// Messages taken from a [`FetchQueue`], in the order librdkafka queued them; given back to
/// librdkafka when dropped.
pub(super) struct Fetched<'q> {
    messages: Vec<NonNull<rd::rd_kafka_message_t>>,
    /// The messages must not outlive their queue's client.
    _queue: std::marker::PhantomData<&'q ()>,
}

impl Fetched<'_> {
    /// How many messages were taken.
    pub(super) fn len(&self) -> usize {
        self.messages.len()
    }

    /// The messages, in order.
    pub(super) fn iter(&self) -> impl Iterator<Item = FetchedMessage<'_>> {
        self.messages.iter().map(|m| {
            // SAFETY: librdkafka handed the message over and it lives until `self` drops.
            let m = unsafe { m.as_ref() };
            let payload = match NonNull::new(m.payload.cast::<u8>()) {
                // SAFETY: librdkafka's payload is `len` bytes, alive with the message.
                Some(p) => unsafe { std::slice::from_raw_parts(p.as_ptr(), m.len) },
                None => &[],
            };
            FetchedMessage { topic: m.rkt, partition: m.partition, offset: m.offset, payload, error: m.err }
        })
    }
}

impl Drop for Fetched<'_> {
    fn drop(&mut self) {
        for m in self.messages.drain(..) {
            // SAFETY: each message was handed over once by `rd_kafka_consume_batch_queue` and is
            // given back once.
            unsafe { rd::rd_kafka_message_destroy(m.as_ptr()) };
        }
    }
}

/// One message of a [`Fetched`] batch, or a partition's error.
pub(super) struct FetchedMessage<'a> {
    topic: *mut rd::rd_kafka_topic_t,
    /// The partition it came from.
    pub(super) partition: i32,
    /// Its offset (for an error, the fetch position it happened at).
    pub(super) offset: i64,
    /// Its value (for an error, librdkafka's text).
    pub(super) payload: &'a [u8],
    error: rd::rd_kafka_resp_err_t,
}

impl<'a> FetchedMessage<'a> {
    /// The same number for every message of one topic within a batch (the topic handle each
    /// message holds a reference to), to look the topic's name up once per batch.
    pub(super) fn topic_id(&self) -> usize {
        self.topic as usize
    }

    /// The topic's name; `None` for a message without one.
    pub(super) fn topic(&self) -> Option<&'a str> {
        let topic = NonNull::new(self.topic)?;
        // SAFETY: the message holds a reference to its topic, whose name is a NUL-terminated
        // string that lives as long as the topic.
        let name = unsafe { CStr::from_ptr(rd::rd_kafka_topic_name(topic.as_ptr())) };
        name.to_str().ok()
    }

    /// The error librdkafka reports in place of a message, as rust-rdkafka's `poll` reports it.
    pub(super) fn error(&self) -> Option<KafkaError> {
        match self.error {
            rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR => None,
            rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__PARTITION_EOF => Some(KafkaError::PartitionEOF(self.partition)),
            e => Some(KafkaError::MessageConsumption(RDKafkaErrorCode::from(e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::ClientConfig;
    use rdkafka::consumer::DefaultConsumerContext;

    /// A consumer whose broker does not answer: the queues exist all the same, routing a
    /// partition works on librdkafka's own partition object (not on a topic name C cannot hold),
    /// a read with nothing fetched returns nothing, and the queue lets its consumer go on drop.
    #[test]
    fn a_queue_routes_partitions_and_lets_its_consumer_go() {
        let consumer: BaseConsumer<DefaultConsumerContext> = ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:9")
            .set("group.id", "fetch-queue-test")
            .set("log_level", "0")
            .create()
            .expect("consumer");
        let consumer = Arc::new(consumer);
        let q = FetchQueue::new(&consumer).expect("queues");
        assert!(q.route("t", 0));
        assert!(q.route("t", 3));
        assert!(!q.route("nul\0inside", 0));
        let got = q.read(Duration::from_millis(50), 16);
        assert_eq!(got.len(), 0);
        drop(got);
        drop(q);
        assert_eq!(Arc::strong_count(&consumer), 1, "the queue let its consumer go");
    }
}
