//! The baseline a canary release is judged against: how long its soak waits for production's
//! `min_requests` (a high `weight` leaves production few requests), when that wait ends in an
//! abort as one that cannot be judged, and what `decision` says while it waits (FE22d #2, FE24
//! NEW-1). The watcher in `canary_releases.rs` applies the rule.

use wharf_domain::{CanaryEvidence, CanaryState};

use super::engine::ControlPlane;
use crate::model::{Canary, Model};

/// How many times the requests a soak asks of the canary (the larger of `min_requests` and
/// `soak_requests`) it may have while production's stay below `min_requests`, before the canary
/// release is aborted as one that cannot be judged. 100 lets a weight up to about 99% finish
/// its soak (production then has 1 request in 100); a weight near 100% would otherwise leave the
/// soak waiting forever while the canary takes nearly every request (FE24).
const BASELINE_WAIT_RATIO: u64 = 100;

/// Whether production's share is too small to judge the canary by: the baseline still has fewer
/// than `min` requests while the canary has had [`BASELINE_WAIT_RATIO`] times what its soak asks.
pub(super) fn baseline_too_small(requests: u64, baseline: u64, min: u64, soak_requests: Option<u64>) -> bool {
    let asked = min.max(soak_requests.unwrap_or(0));
    baseline < min && requests >= asked.saturating_mul(BASELINE_WAIT_RATIO)
}

/// What `decision` says while a canary release's soak has the canary requests it asks (the
/// larger of `min_requests` and `soak_requests`) and waits for production's `min_requests`:
/// how many more, and at how many canary requests it is aborted as one that cannot be judged.
/// `None` while the canary's side is still short, or production's is not.
fn baseline_wait(requests: u64, baseline: u64, min: u64, soak_requests: Option<u64>) -> Option<String> {
    let asked = min.max(soak_requests.unwrap_or(0));
    (requests >= asked && baseline < min).then(|| {
        format!(
            "running: waiting for {} more baseline requests: the soak has {requests} of the {asked} canary requests \
             it asks, and production {baseline} of the min_requests ({min}) it needs too; aborted as one that cannot \
             be judged at {} canary requests",
            min - baseline,
            asked.saturating_mul(BASELINE_WAIT_RATIO),
        )
    })
}

impl ControlPlane {
    /// A canary's evidence as `GET /apps/{app}/canary` shows it: [`ControlPlane::canary_evidence`],
    /// whose `decision` says, while the canary of an open canary release waits for production's
    /// requests (`baseline_wait`), how many more it waits for.
    pub fn canary_evidence_in(&self, m: &Model, c: &Canary) -> Option<CanaryEvidence> {
        let mut evidence = self.canary_evidence(c)?;
        let release = m.open_canary_releases().into_iter().find(|cr| cr.canary_id == Some(c.id));
        if c.state == CanaryState::Running
            && self.counts_canary_requests()
            && let Some(cr) = release
            && let Some(decision) = baseline_wait(
                evidence.canary.requests,
                evidence.baseline.requests,
                c.policy.min_requests(),
                cr.soak_requests,
            )
        {
            evidence.decision = decision;
        }
        Some(evidence)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_baseline_too_small_to_compare_with_is_told_from_one_still_growing() {
        // (canary requests, baseline requests, min_requests, soak_requests, too small?)
        let rows: &[(u64, u64, u64, Option<u64>, bool)] = &[
            (301, 0, 100, Some(100), false),      // early: the soak waits for production
            (9_999, 99, 100, Some(100), false),   // weight 99: one short, still waiting
            (10_000, 99, 100, Some(100), true),   // a hundred soaks' worth and production short
            (10_000, 100, 100, Some(100), false), // production reached its minimum
            (50_000, 0, 100, Some(1_000), false), // the soak asks more: it waits longer
            (100_000, 0, 100, Some(1_000), true),
            (10_000, 0, 100, None, true), // a soak in seconds alone: min_requests decides
            (u64::MAX, 0, u64::MAX, None, true), // no overflow
        ];
        for &(requests, baseline, min, soak, want) in rows {
            assert_eq!(baseline_too_small(requests, baseline, min, soak), want, "{requests} {baseline} {min} {soak:?}");
        }
    }

    #[test]
    fn the_decision_says_how_many_baseline_requests_the_soak_waits_for() {
        // (canary requests, baseline requests, min_requests, soak_requests, how the decision
        // starts: "" when the soak is not waiting for production)
        let rows: &[(u64, u64, u64, Option<u64>, &str)] = &[
            (99, 0, 100, Some(100), ""),  // the canary's side is short
            (100, 0, 100, Some(300), ""), // so it is here: the soak asks 300
            (100, 0, 100, Some(100), "running: waiting for 100 more baseline requests"),
            (500, 97, 100, None, "running: waiting for 3 more baseline requests"), // a soak in seconds
            (500, 100, 100, Some(100), ""),                                        // production has its share
        ];
        for &(requests, baseline, min, soak, want) in rows {
            let got = baseline_wait(requests, baseline, min, soak);
            let right = match &got {
                None => want.is_empty(),
                Some(d) => !want.is_empty() && d.starts_with(want),
            };
            assert!(right, "{requests} {baseline} {min} {soak:?}: {got:?}");
        }
        let full = baseline_wait(100, 1, 100, Some(100)).unwrap();
        assert!(full.ends_with("aborted as one that cannot be judged at 10000 canary requests"), "{full}");
    }
}
