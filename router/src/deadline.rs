//! A timer for one wait at a time that is re-armed without touching tokio's timer wheel.
//!
//! A keep-alive connection waits for every request head and every first response byte under a
//! timeout; a new `tokio::time::timeout` for each registered and removed a timer-wheel entry
//! twice per request, several percent of a request's cost. A `Deadline` keeps one sleep per
//! connection: moving the deadline later only updates a field, and when the sleep fires before
//! the real deadline (because the deadline moved), it is set again to the real one. So an active
//! connection touches the wheel about once per timeout period instead of twice per request.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// A deadline for sequential waits.
#[derive(Debug)]
pub(crate) struct Deadline {
    sleep: Pin<Box<Sleep>>,
    at: Instant,
}

/// The deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Elapsed;

impl Deadline {
    /// A deadline `after` from now.
    pub(crate) fn new(after: Duration) -> Deadline {
        let at = Instant::now() + after;
        Deadline { sleep: Box::pin(tokio::time::sleep_until(at)), at }
    }

    /// Sets the deadline to `after` from now.
    pub(crate) fn set(&mut self, after: Duration) {
        self.set_at(Instant::now() + after);
    }

    /// Sets the deadline to `at`.
    pub(crate) fn set_at(&mut self, at: Instant) {
        self.at = at;
        // Only an earlier deadline moves the sleep now; a later one is caught up with when the
        // sleep fires.
        if self.at < self.sleep.deadline() {
            self.sleep.as_mut().reset(self.at);
        }
    }

    /// Ready once the deadline has passed.
    pub(crate) fn poll_elapsed(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            ready!(self.sleep.as_mut().poll(cx));
            if self.sleep.deadline() >= self.at {
                return Poll::Ready(());
            }
            self.sleep.as_mut().reset(self.at);
        }
    }

    /// Waits until the deadline has passed.
    pub(crate) async fn elapsed(&mut self) {
        std::future::poll_fn(|cx| self.poll_elapsed(cx)).await;
    }

    /// Runs `fut` until `at` at the latest, for a caller that has just read the clock. The
    /// future is borrowed pinned where the caller made it: a request's exchange with a dyno is a
    /// large future, and moving it in and pinning it again copied it twice per request.
    pub(crate) async fn timeout_at<F: Future>(
        &mut self,
        at: impl Into<Instant>,
        mut fut: Pin<&mut F>,
    ) -> Result<F::Output, Elapsed> {
        self.set_at(at.into());
        std::future::poll_fn(|cx| {
            if let Poll::Ready(out) = fut.as_mut().poll(cx) {
                return Poll::Ready(Ok(out));
            }
            self.poll_elapsed(cx).map(|()| Err(Elapsed))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_deadline_fires_at_the_latest_time_it_was_set_to() {
        let start = Instant::now();
        let mut d = Deadline::new(Duration::from_secs(10));
        // Moved later twice before the first time would have come: only the last one counts.
        tokio::time::sleep(Duration::from_secs(4)).await;
        d.set(Duration::from_secs(10));
        tokio::time::sleep(Duration::from_secs(4)).await;
        d.set(Duration::from_secs(10));
        d.elapsed().await;
        assert_eq!(start.elapsed(), Duration::from_secs(18));
        // Moved earlier: it fires then.
        d.set(Duration::from_secs(60));
        d.set(Duration::from_secs(1));
        d.elapsed().await;
        assert_eq!(start.elapsed(), Duration::from_secs(19));
    }

    #[tokio::test(start_paused = true)]
    async fn timeouts_let_quick_work_finish_and_cut_slow_work_off() {
        let mut d = Deadline::new(Duration::from_secs(1));
        assert_eq!(d.timeout_at(Instant::now() + Duration::from_secs(5), std::pin::pin!(async { 7 })).await, Ok(7));
        let slow = std::pin::pin!(tokio::time::sleep(Duration::from_secs(6)));
        let start = Instant::now();
        assert_eq!(d.timeout_at(Instant::now() + Duration::from_secs(5), slow).await, Err(Elapsed));
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        let quick = std::pin::pin!(tokio::time::sleep(Duration::from_secs(4)));
        assert_eq!(d.timeout_at(Instant::now() + Duration::from_secs(5), quick).await, Ok(()));
    }
}
