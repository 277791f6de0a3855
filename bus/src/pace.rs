//! Pacing: with the embedded bus, a dyno's output is paced by its app's fastest live drain.
//!
//! The logshuttle tells the [`Pacer`] about each of an app's drains: whether it is *live*
//! (connected and delivering: not down, not backing off after a failure, not stuck in a write)
//! and whether its buffer is *full* (above its high-water mark, half its budget, until it drains
//! below its low-water mark, a quarter). An app is paused while it has a live drain and every live
//! drain is full; the supervisor waits in [`AppPace::ready`] before it publishes a batch of the
//! app's dyno output, so the dyno blocks on its pipe as it would writing to a slow terminal, and
//! nothing is dropped. The rule, and why each part of it:
//!
//! - By the *fastest* live drain: one slow receiver never slows the app's faster ones; past its
//!   budget, the slow one drops its oldest lines, counted and announced (L10), as without pacing.
//! - Only *live* drains: a receiver that is down or failing never freezes an app (Heroku never
//!   blocks dynos on their drains); its lines past the budget are dropped and announced.
//! - Per app: no app's drains pace another app's dynos. Live tails never pace, and an app with no
//!   drains is never paused.
//!
//! Kafka's publisher is not paced: there the logshuttle may be on another machine, and a drain
//! that falls behind is to catch up from the topic instead (issue 18).
//!
//! Lines on their way count too: a batch of paced output is *in transit* from when it is put on
//! the embedded bus until the consumer has handed it to the drains (it asks for the next batch),
//! and an app waits while [`IN_TRANSIT_MAX`] of its batches are in transit. Without that, a
//! consumer running behind would let the bus's queue hold far more of the app's lines than the
//! drains' marks allow for, and the buffers would overflow once it caught up; it also keeps one
//! app's burst from filling the bus that every app's access lines share.
//!
//! The hot paths are cheap: the supervisor reads two atomics per batch, the logshuttle compares
//! its buffer's length against the marks under the buffer's own lock, and only a change of a
//! drain's state takes the app's lock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// Most batches of one app's paced output in transit on the embedded bus at once. With the
/// supervisor's batches of at most 256 lines this is at most 1,024 lines, well within the
/// headroom above a drain's high-water mark (half its budget, 5,000 lines by default).
pub const IN_TRANSIT_MAX: usize = 4;

/// Every app's pace, by app key: shared by the embedded bus's publisher and its source.
#[derive(Debug, Default)]
pub struct Pacer {
    apps: Mutex<HashMap<Box<str>, Arc<AppPace>>>,
}

impl Pacer {
    /// The pace of app `app` (its key, as events carry it), made on first use.
    pub fn app(&self, app: &str) -> Arc<AppPace> {
        let mut apps = self.apps.lock().expect("pacer lock");
        if let Some(pace) = apps.get(app) {
            return pace.clone();
        }
        // Forget apps nobody holds any more (deleted apps), so the map follows the live ones.
        apps.retain(|_, pace| Arc::strong_count(pace) > 1);
        apps.entry(app.into()).or_default().clone()
    }
}

/// What one drain tells its app's pace.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DrainState {
    /// Connected and delivering.
    pub live: bool,
    /// Its buffer is above its high-water mark (and has not yet drained below its low-water mark).
    pub full: bool,
}

#[derive(Debug, Default)]
struct Counts {
    /// Drains that are live.
    live: usize,
    /// Drains that are live and full.
    live_full: usize,
}

/// One app's pace: whether its dyno output should wait.
#[derive(Debug, Default)]
pub struct AppPace {
    counts: Mutex<Counts>,
    /// Whether the app has a live drain and every live drain is full.
    paused: AtomicBool,
    /// Batches of the app's paced output on the bus, not yet handed to the drains.
    in_transit: AtomicUsize,
    resumed: Notify,
}

/// One batch of an app's paced output in transit: made when it is put on the bus, dropped once
/// the consumer has handed it to the drains (or the bus dropped it).
#[derive(Debug)]
pub(crate) struct Transit(Arc<AppPace>);

impl Transit {
    /// Counts one more batch of `pace`'s app in transit.
    pub(crate) fn new(pace: &Arc<AppPace>) -> Transit {
        pace.in_transit.fetch_add(1, Ordering::AcqRel);
        Transit(pace.clone())
    }
}

impl Drop for Transit {
    fn drop(&mut self) {
        if self.0.in_transit.fetch_sub(1, Ordering::AcqRel) <= IN_TRANSIT_MAX {
            self.0.resumed.notify_waiters();
        }
    }
}

impl AppPace {
    /// Whether the app's drains pause its dyno output: it has a live drain, and every live drain
    /// is full.
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    /// Whether the app's dyno output should wait now: it is paused, or [`IN_TRANSIT_MAX`] of its
    /// batches are in transit.
    pub fn must_wait(&self) -> bool {
        self.is_paused() || self.in_transit.load(Ordering::Acquire) >= IN_TRANSIT_MAX
    }

    /// Returns once the app's dyno output need not wait: at once when it need not.
    pub async fn ready(&self) {
        loop {
            let resumed = self.resumed.notified();
            tokio::pin!(resumed);
            // Registered before the check, so a resumption between the two is not missed.
            resumed.as_mut().enable();
            if !self.must_wait() {
                return;
            }
            resumed.await;
        }
    }

    /// Records that one of the app's drains went from `before` to `after`; a drain that goes
    /// away goes to `DrainState::default()`.
    pub fn update(&self, before: DrainState, after: DrainState) {
        if before == after {
            return;
        }
        let mut c = self.counts.lock().expect("pace lock");
        let counts = |s: DrainState| (usize::from(s.live), usize::from(s.live && s.full));
        let (live_before, full_before) = counts(before);
        let (live_after, full_after) = counts(after);
        c.live = c.live + live_after - live_before;
        c.live_full = c.live_full + full_after - full_before;
        let paused = c.live > 0 && c.live_full == c.live;
        if self.paused.swap(paused, Ordering::AcqRel) && !paused {
            self.resumed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const IDLE: DrainState = DrainState { live: true, full: false };
    const FULL: DrainState = DrainState { live: true, full: true };
    const DOWN: DrainState = DrainState { live: false, full: false };
    const DOWN_FULL: DrainState = DrainState { live: false, full: true };

    /// Whether an app whose drains are in `states` is paused: the rule as a table.
    fn paused(states: &[DrainState]) -> bool {
        let pace = AppPace::default();
        for s in states {
            pace.update(DrainState::default(), *s);
        }
        pace.is_paused()
    }

    #[test]
    fn an_app_is_paused_only_while_every_live_drain_is_full() {
        let table: &[(&[DrainState], bool)] = &[
            (&[], false),                // no drains: never paused
            (&[IDLE], false),            // room in its one drain
            (&[FULL], true),             // its one live drain is full
            (&[FULL, IDLE], false),      // paced by the fastest: one has room
            (&[FULL, FULL], true),       // every live drain is full
            (&[DOWN_FULL], false),       // a drain that is down never paces
            (&[FULL, DOWN_FULL], true),  // ... nor stops the live one from pacing
            (&[DOWN, DOWN_FULL], false), // all down: never paused
            (&[IDLE, DOWN_FULL], false), // down and full beside one with room
        ];
        for (states, expected) in table {
            assert_eq!(paused(states), *expected, "{states:?}");
        }
    }

    #[test]
    fn changes_and_departures_are_counted_back() {
        let pace = AppPace::default();
        pace.update(DrainState::default(), FULL);
        pace.update(DrainState::default(), IDLE);
        assert!(!pace.is_paused());
        pace.update(IDLE, FULL);
        assert!(pace.is_paused());
        // The receiver failed: that drain stops pacing, and the other still does.
        pace.update(FULL, DOWN_FULL);
        assert!(pace.is_paused());
        // A drain removed from the app goes back to the default state.
        pace.update(FULL, DrainState::default());
        assert!(!pace.is_paused(), "only a down drain is left");
    }

    #[test]
    fn apps_have_their_own_pace() {
        let pacer = Pacer::default();
        let a = pacer.app("a-space");
        a.update(DrainState::default(), FULL);
        assert!(pacer.app("a-space").is_paused());
        assert!(!pacer.app("b-space").is_paused(), "another app's drains never pace it");
    }

    #[tokio::test(start_paused = true)]
    async fn an_app_waits_while_its_batches_in_transit_reach_the_limit() {
        let pace = Arc::new(AppPace::default());
        let mut transit: Vec<Transit> = (0..IN_TRANSIT_MAX - 1).map(|_| Transit::new(&pace)).collect();
        assert!(!pace.must_wait(), "below the limit");
        transit.push(Transit::new(&pace));
        assert!(pace.must_wait() && !pace.is_paused(), "at the limit, whatever the drains say");
        let waiter = tokio::spawn({
            let pace = pace.clone();
            async move { pace.ready().await }
        });
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert!(!waiter.is_finished());
        transit.pop();
        tokio::time::timeout(Duration::from_secs(1), waiter).await.expect("resumed").unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_publisher_resumes_when_a_drain_has_room_again() {
        let pace = Arc::new(AppPace::default());
        pace.update(DrainState::default(), FULL);
        let waiter = tokio::spawn({
            let pace = pace.clone();
            async move { pace.ready().await }
        });
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert!(!waiter.is_finished(), "paused for as long as the drain stays full");
        pace.update(FULL, IDLE);
        tokio::time::timeout(Duration::from_secs(1), waiter).await.expect("resumed").unwrap();
        // And a drain that goes down resumes it too.
        pace.update(IDLE, FULL);
        let waiter = tokio::spawn({
            let pace = pace.clone();
            async move { pace.ready().await }
        });
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert!(!waiter.is_finished());
        pace.update(FULL, DOWN_FULL);
        tokio::time::timeout(Duration::from_secs(1), waiter).await.expect("resumed").unwrap();
    }
}
