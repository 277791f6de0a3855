//! When the dispatcher wakes drains: once per round for drains that were idle, and on one
//! linger timer, shared by every drain, for drains that sent a batch a moment ago.
//!
//! With many drains each receives few lines per round (1,000 apps with a drain each and a poll
//! batch of 1,024 lines: about one line a drain), so waking a drain per line made it send about
//! one line per write, and the kernel's share of a loopback `send`, an acknowledgement check and
//! a worker's futex wake-up per line dominated the logshuttle's CPU (benches/RESULTS.md,
//! "Logshuttle" runs 5 and 7). A drain that took a batch less than `drain_linger` ago waits for
//! the shared timer instead, and wakes to every line that came meanwhile; a drain idle for
//! longer, or holding a full write's worth ([`crate::buffer::WAKE_LINES`]), is woken when the
//! round's lines are all handed over. A per-drain timer was tried first and cost more than it
//! saved (run 4): one timer for all drains costs one wake-up per linger.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::buffer::Wake;
use crate::drain::Drain;

/// Drains the dispatcher owes a wake-up, and when the lingering ones are due.
#[derive(Debug)]
pub(crate) struct Wakes {
    linger: Duration,
    /// Woken when the round is handed over.
    now: Vec<Arc<Drain>>,
    /// Woken when the linger timer fires.
    later: Vec<Arc<Drain>>,
    /// When the linger timer fires, while `later` holds drains.
    due: Option<Instant>,
}

impl Wakes {
    /// No drain owed anything; lingering drains wait up to `linger`.
    pub(crate) fn new(linger: Duration) -> Wakes {
        Wakes { linger, now: Vec::new(), later: Vec::new(), due: None }
    }

    /// How long a drain that sent a batch a moment ago waits for more lines.
    pub(crate) fn linger(&self) -> Duration {
        self.linger
    }

    /// Notes what a push owes `drain`.
    pub(crate) fn owe(&mut self, drain: &Arc<Drain>, wake: Wake) {
        match wake {
            Wake::No => {}
            Wake::Now => self.now.push(drain.clone()),
            Wake::Later => self.later.push(drain.clone()),
        }
    }

    /// The round is handed over: wakes the drains owed a wake-up now, and starts the linger
    /// timer if lingering drains wait and it is not running.
    pub(crate) fn round_done(&mut self) {
        for d in self.now.drain(..) {
            d.buffer.wake();
        }
        if !self.later.is_empty() && self.due.is_none() {
            self.due = Some(Instant::now() + self.linger);
        }
    }

    /// When the linger timer fires, if it runs.
    pub(crate) fn due(&self) -> Option<Instant> {
        self.due
    }

    /// Wakes every drain still owed a wake-up: when the linger timer fires, and before
    /// shutdown waits for the drains to deliver what they hold.
    pub(crate) fn wake_all(&mut self) {
        for d in self.now.drain(..).chain(self.later.drain(..)) {
            d.buffer.wake();
        }
        self.due = None;
    }
}
