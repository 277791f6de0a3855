//! A judged request (one a running canary's split sent to a side) on its way to the canary's
//! judge: counted once, at the first of its response head or the router's error (the proxy's
//! `finish`), the canary's `slow_seconds` without a response head ([`timed`]), or its client
//! going away before a response head, which drops it uncounted: an HTTP/2 stream reset, or the
//! router stopping (counted as abandoned, a kind of slow). Before this, a canary that hung was
//! counted only when the router's 30 s timeout ended a request whose client still waited, so with
//! clients that give up sooner it took its share of production's users with next to nothing
//! counted (FE27 #1).

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use crate::canary::{Arm, Canary, Outcome};
use crate::state::RouterState;

/// A judged request whose outcome the judge has not counted yet; dropped uncounted, it counts
/// as abandoned.
pub(crate) struct Pending {
    canary: Arc<Canary>,
    arm: Arm,
    shared: Arc<RouterState>,
    counted: bool,
}

impl Pending {
    /// A request `canary`'s split sent to `arm`, not yet counted.
    pub(crate) fn new(canary: Arc<Canary>, arm: Arm, shared: Arc<RouterState>) -> Pending {
        Pending { canary, arm, shared, counted: false }
    }

    /// Counts the request's outcome, unless it was counted already.
    pub(crate) fn count(&mut self, outcome: Outcome) {
        if !std::mem::replace(&mut self.counted, true) {
            self.canary.judge(&self.shared.publisher, &self.shared.verdicts, self.arm, outcome);
        }
    }

    /// Leaves the request uncounted: its outcome says nothing about either side's code.
    pub(crate) fn skip(&mut self) {
        self.counted = true;
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.count(Outcome::Abandoned);
    }
}

/// What a judged request's wait for its response head came to.
pub(crate) enum Waited<T> {
    /// The attempts ended (a response head, or the router's error).
    Done(T),
    /// The request was at the canary's dynos, still without a response head, when the canary
    /// was aborted: its attempts were dropped (closing their connection to the canary's dyno)
    /// and it was not counted, the judge having decided.
    CanaryEnded,
}

/// Runs a request's attempts (`run`, which ends at the response head or an error); a judged
/// request still without one `slow_seconds` after `started` is counted slow then and goes on:
/// its client may still want the answer, late as it is. A request at the canary's dynos whose
/// canary is aborted meanwhile ends at once ([`Waited::CanaryEnded`]): the canary is known bad
/// and about to be removed, so its client should not wait out the router's 30 s timeout for it
/// (FE32: a hanging canary's patient clients got their 503 only at 30 s).
pub(crate) async fn timed<T>(
    pending: Option<&mut Pending>,
    started: Instant,
    run: impl Future<Output = T>,
) -> Waited<T> {
    let mut run = std::pin::pin!(run);
    let Some(pending) = pending else {
        return Waited::Done(run.await);
    };
    let (canary, arm) = (pending.canary.clone(), pending.arm);
    let ended = async move {
        match arm {
            Arm::Canary => canary.ended().await,
            // The app's own dynos stay: their requests go on whatever becomes of the canary.
            Arm::Baseline => std::future::pending().await,
        }
    };
    let mut ended = std::pin::pin!(ended);
    if let Some(slow_after) = pending.canary.slow_after() {
        let bound = tokio::time::Instant::from_std(started + slow_after);
        tokio::select! {
            biased;
            outcome = &mut run => return Waited::Done(outcome),
            () = &mut ended => {
                pending.skip();
                return Waited::CanaryEnded;
            }
            () = tokio::time::sleep_until(bound) => pending.count(Outcome::Slow),
        }
    }
    tokio::select! {
        biased;
        outcome = &mut run => Waited::Done(outcome),
        () = &mut ended => {
            pending.skip();
            Waited::CanaryEnded
        }
    }
}
