//! The restart policy of a crashed dyno: exponential backoff with jitter, reset after a stable
//! run.
//!
//! Heroku restarts a dyno that crashes "multiple times in a row ... with exponentially
//! increasing cool-off periods", and a new release resets the cool-off
//! (<https://devcenter.heroku.com/changelog-items/344>,
//! <https://devcenter.heroku.com/articles/dyno-restarts>). Wharf does the same: the first delay
//! is `restart_min`, each next one doubles up to [`RESTART_MAX`] (plus up to as much again of
//! jitter, so dynos that crashed together do not restart together), and a dyno of a new
//! release starts with a fresh policy. A crash ends the row when the dyno ran at least
//! [`STABLE_RUNS`] times `restart_min` (10 s by default) before it: the next delay is
//! `restart_min` again.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use tokio::time::Instant;

use crate::settings::RESTART_MAX;

/// A run at least this many times `restart_min` long counts as stable, and resets the backoff.
pub(crate) const STABLE_RUNS: u32 = 10;

/// One dyno's restart policy.
#[derive(Debug)]
pub(crate) struct RestartPolicy {
    min: Duration,
    delays: ExponentialBackoff,
    /// When the current run started.
    started: Instant,
}

impl RestartPolicy {
    /// A fresh policy whose first delay is `min`.
    pub(crate) fn new(min: Duration) -> RestartPolicy {
        RestartPolicy { min, delays: restart_backoff(min), started: Instant::now() }
    }

    /// Notes that a run starts now.
    pub(crate) fn started(&mut self) {
        self.started = Instant::now();
    }

    /// The delay before restarting a dyno whose run just ended.
    pub(crate) fn delay_after_crash(&mut self) -> Duration {
        if self.started.elapsed() >= self.min * STABLE_RUNS {
            self.delays = restart_backoff(self.min);
        }
        self.delays.next().unwrap_or(RESTART_MAX)
    }
}

/// The delays between a crashed dyno's restarts: `min`, doubling up to [`RESTART_MAX`], each
/// plus up to as much again of random jitter; never ending.
pub(crate) fn restart_backoff(min: Duration) -> ExponentialBackoff {
    ExponentialBuilder::new().with_jitter().with_min_delay(min).with_max_delay(RESTART_MAX).without_max_times().build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_delays_double_from_the_minimum_with_jitter_up_to_the_maximum() {
        let min = Duration::from_millis(500);
        let delays: Vec<_> = restart_backoff(min).take(12).collect();
        assert_eq!(delays.len(), 12, "never ending");
        for (i, d) in delays.into_iter().enumerate() {
            let base = (min * 2u32.pow(i as u32)).min(RESTART_MAX);
            assert!(d >= base && d <= base * 2, "delay {i}: {d:?} from {base:?}");
        }
    }

    /// Runs of `ran` each, crashing: the delays the policy asks for.
    async fn crashes(policy: &mut RestartPolicy, ran: Duration, n: usize) -> Vec<Duration> {
        let mut delays = Vec::new();
        for _ in 0..n {
            policy.started();
            tokio::time::sleep(ran).await;
            let d = policy.delay_after_crash();
            tokio::time::sleep(d).await;
            delays.push(d);
        }
        delays
    }

    fn within(d: Duration, base: Duration) -> bool {
        d >= base && d <= base * 2
    }

    #[tokio::test(start_paused = true)]
    async fn quick_crashes_in_a_row_back_off_and_a_stable_run_resets_the_delay() {
        let second = Duration::from_secs(1);
        let mut policy = RestartPolicy::new(second);
        // The example: three quick crashes, a long healthy run, one more crash.
        let quick = crashes(&mut policy, Duration::from_millis(100), 3).await;
        assert!(within(quick[0], second) && within(quick[1], 2 * second) && within(quick[2], 4 * second), "{quick:?}");
        let after_long_run = crashes(&mut policy, Duration::from_secs(3600), 1).await;
        assert!(within(after_long_run[0], second), "reset, not 8-16 s: {after_long_run:?}");
        // A run just short of stable does not reset.
        let quick = crashes(&mut policy, Duration::from_millis(100), 1).await;
        assert!(within(quick[0], 2 * second), "{quick:?}");
        let short = crashes(&mut policy, second * STABLE_RUNS - Duration::from_millis(1), 1).await;
        assert!(within(short[0], 4 * second), "{short:?}");
        let stable = crashes(&mut policy, second * STABLE_RUNS, 1).await;
        assert!(within(stable[0], second), "{stable:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn delays_stop_growing_at_the_maximum() {
        let mut policy = RestartPolicy::new(Duration::from_secs(1));
        let delays = crashes(&mut policy, Duration::ZERO, 10).await;
        assert!(delays[9] >= RESTART_MAX && delays[9] <= 2 * RESTART_MAX, "{delays:?}");
    }
}
