//! Canary judging: the smooth split of an app's requests, and the sequential test that aborts a
//! canary whose error rate is statistically higher than the baseline's.
//!
//! The test looks only at errors. Each error comes from the canary or from the baseline; if the
//! canary is no worse, the chance that it comes from the canary is at most the canary's share of
//! requests, `π`, whatever the error rate is and however it moves (an outage of a shared
//! database hits both sides alike). For a canary `r` times as error-prone, that chance is
//! `π r / (π r + 1 − π)`. The likelihood ratio of the two, multiplied over the errors, is a
//! nonnegative martingale when the canary is no worse (a supermartingale when it is better), and
//! so is the average of such ratios over a grid of `r`. By Ville's inequality the chance that
//! this average ever reaches `1/α` is at most `α`, however often it is looked at: the router
//! checks it after every error. `docs/canary.md` has the derivation and the simulation.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use wharf_bus::{LogEvent, Publisher};
use wharf_domain::{AppKey, CanaryEvidence, CanaryPolicy, CanaryVerdict, Tally};

/// The rate ratios the test mixes over, equally weighted. Below the smallest, the effect guard
/// refuses to abort anyway; above the largest, the largest already detects within a few errors.
const RATIOS: [f64; 9] = [1.5, 2.0, 3.0, 5.0, 8.0, 13.0, 25.0, 50.0, 100.0];

/// Which side of a canary a request went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arm {
    /// The app's own dynos.
    Baseline,
    /// The canary app's dynos.
    Canary,
}

/// Sends a fixed share of requests to the canary, evenly: request `i` goes to the canary when
/// `⌊(i+1)w⌋ > ⌊iw⌋`, so any run of requests holds the share to within one request, where a coin
/// flip per request would stray by about 1 percentage point in 1,000 requests at 10%.
#[derive(Debug)]
pub struct Split {
    basis_points: u64,
    next: AtomicU64,
}

impl Split {
    /// A split sending `basis_points` in 10,000 requests to the canary.
    pub fn new(basis_points: u16) -> Split {
        Split { basis_points: u64::from(basis_points.min(10_000)), next: AtomicU64::new(0) }
    }

    /// Whether the next request goes to the canary.
    pub fn take(&self) -> bool {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        (i + 1) * self.basis_points / 10_000 > i * self.basis_points / 10_000
    }
}

/// The sequential test over one canary's outcomes.
#[derive(Debug, Clone)]
pub struct Judge {
    policy: CanaryPolicy,
    baseline: Tally,
    canary: Tally,
    /// The log of each ratio's likelihood-ratio martingale.
    log_lr: [f64; RATIOS.len()],
    /// The largest log e-value seen, for the anytime-valid p-value.
    max_log_e: f64,
    /// Whether the e-value (which moves only at errors) is at the abort threshold while a guard
    /// holds the abort back: the guards may pass at any later outcome, an error or not.
    held: bool,
    verdict: Option<CanaryEvidence>,
}

impl Judge {
    /// A judge that has seen nothing.
    pub fn new(policy: CanaryPolicy) -> Judge {
        Judge {
            policy,
            baseline: Tally::default(),
            canary: Tally::default(),
            log_lr: [0.0; RATIOS.len()],
            max_log_e: 0.0,
            held: false,
            verdict: None,
        }
    }

    /// Counts one outcome. Returns the evidence when this outcome decides to abort, once.
    pub fn record(&mut self, arm: Arm, status: u16) -> Option<CanaryEvidence> {
        let error = self.policy.errors().counts(status);
        let tally = match arm {
            Arm::Baseline => &mut self.baseline,
            Arm::Canary => &mut self.canary,
        };
        tally.requests += 1;
        tally.errors += u64::from(error);
        if self.verdict.is_some() {
            return None;
        }
        if !error {
            // The evidence is where the last error left it; the guards (the canary's requests,
            // the rates) may pass now, and a held abort then happens at once, not at the next
            // error, which a soak that passes meanwhile would never wait for.
            return if self.held && self.guards_pass() { Some(self.decide()) } else { None };
        }
        // The canary's share of requests so far: what its share of errors would be if it were
        // no worse. Clamped so that one side's first requests cannot make a ratio infinite.
        let total = (self.baseline.requests + self.canary.requests) as f64;
        let share = (self.canary.requests as f64 / total).clamp(1e-4, 1.0 - 1e-4);
        for (log_lr, r) in self.log_lr.iter_mut().zip(RATIOS) {
            let expected = share * r + 1.0 - share;
            *log_lr += match arm {
                Arm::Canary => (r / expected).ln(),
                Arm::Baseline => -expected.ln(),
            };
        }
        let log_e = self.log_e_value();
        self.max_log_e = self.max_log_e.max(log_e);
        self.held = log_e >= -self.policy.false_alarm_rate().ln();
        if self.held && self.guards_pass() {
            return Some(self.decide());
        }
        None
    }

    /// Records the abort, and returns its evidence.
    fn decide(&mut self) -> CanaryEvidence {
        let evidence = self.evidence_with(self.decision_text());
        self.verdict = Some(evidence.clone());
        evidence
    }

    /// The log of the mixture's e-value: the mean of the ratios' likelihood ratios.
    fn log_e_value(&self) -> f64 {
        let max = self.log_lr.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = self.log_lr.iter().map(|l| (l - max).exp()).sum();
        max + (sum / RATIOS.len() as f64).ln()
    }

    /// The minimum sample and the minimum effect: evidence alone does not abort a canary that
    /// is worse by too little to matter, or judged on too few requests to be sure of the size.
    fn guards_pass(&self) -> bool {
        let p = &self.policy;
        let (c, b) = (self.canary.rate(), self.baseline.rate());
        self.canary.requests >= p.min_requests()
            && self.canary.errors >= p.min_errors()
            && c - b >= p.min_rate_difference()
            && c >= b * p.min_rate_ratio()
    }

    fn decision_text(&self) -> String {
        let (c, b) = (self.canary, self.baseline);
        format!(
            "aborted: the canary's error rate {:.3}% ({} of {}) is higher than the baseline's {:.3}% ({} of {}), \
             p-value {:.2e} at a false-alarm rate of {}",
            c.rate() * 100.0,
            c.errors,
            c.requests,
            b.rate() * 100.0,
            b.errors,
            b.requests,
            (-self.max_log_e).exp().min(1.0),
            self.policy.false_alarm_rate(),
        )
    }

    fn evidence_with(&self, decision: String) -> CanaryEvidence {
        CanaryEvidence {
            baseline: self.baseline,
            canary: self.canary,
            e_value: self.log_e_value().exp().min(f64::MAX),
            p_value: (-self.max_log_e).exp().min(1.0),
            decision,
        }
    }

    /// The counts and statistics now: the decision if there was one, else a live look.
    pub fn evidence(&self) -> CanaryEvidence {
        match &self.verdict {
            Some(v) => CanaryEvidence { baseline: self.baseline, canary: self.canary, ..v.clone() },
            None => self.evidence_with("running: no evidence yet that the canary is worse".into()),
        }
    }

    /// Whether the judge has decided to abort.
    pub fn aborted(&self) -> bool {
        self.verdict.is_some()
    }
}

/// A running canary in the router: its split, its judge, and whether it is still taking
/// traffic. It outlives routing tables, by id, so that a reload neither resets the counts nor
/// revives an aborted canary.
#[derive(Debug)]
pub struct Canary {
    /// The canary's id in the control API.
    pub id: uuid::Uuid,
    /// The app whose requests are split.
    pub app: Arc<str>,
    /// The app taking the canary's share.
    pub canary_app: Arc<str>,
    split: Split,
    judge: Mutex<Judge>,
    /// Set at once when the judge decides, before anything else happens.
    aborted: AtomicBool,
}

impl Canary {
    /// A canary that has seen nothing.
    pub fn new(id: uuid::Uuid, app: Arc<str>, canary_app: Arc<str>, policy: CanaryPolicy) -> Canary {
        Canary {
            id,
            app,
            canary_app,
            split: Split::new(policy.weight().basis_points()),
            judge: Mutex::new(Judge::new(policy)),
            aborted: AtomicBool::new(false),
        }
    }

    /// The side the next request goes to.
    pub fn choose(&self) -> Arm {
        if !self.aborted.load(Ordering::Relaxed) && self.split.take() { Arm::Canary } else { Arm::Baseline }
    }

    /// Counts an outcome; returns the evidence when it decides to abort, once.
    pub fn record(&self, arm: Arm, status: u16) -> Option<CanaryEvidence> {
        let mut judge = self.judge.lock().unwrap_or_else(|e| e.into_inner());
        let verdict = judge.record(arm, status);
        if verdict.is_some() {
            self.aborted.store(true, Ordering::Relaxed);
        }
        verdict
    }

    /// The live counts and statistics.
    pub fn evidence(&self) -> CanaryEvidence {
        self.judge.lock().unwrap_or_else(|e| e.into_inner()).evidence()
    }

    /// The live counts and statistics, and whether the judge has aborted the canary, read
    /// together: a reader that sees counts past a soak must also see an abort decided on them.
    pub fn evidence_and_verdict(&self) -> (CanaryEvidence, bool) {
        let judge = self.judge.lock().unwrap_or_else(|e| e.into_inner());
        (judge.evidence(), judge.aborted())
    }

    /// Counts a request's outcome, and when that decides an abort, tells the apps' log streams
    /// (through `publisher`) and the control API (through `verdicts`). The split has already
    /// stopped by then.
    pub(crate) fn judge(
        &self,
        publisher: &Publisher,
        verdicts: &tokio::sync::mpsc::UnboundedSender<CanaryVerdict>,
        arm: Arm,
        status: u16,
    ) {
        let Some(evidence) = self.record(arm, status) else { return };
        let (b, c) = (evidence.baseline, evidence.canary);
        let ratio = if b.rate() > 0.0 { c.rate() / b.rate() } else { f64::INFINITY };
        let line = format!(
            "at=error code=C10 desc=\"Canary aborted\" canary_id={} app={} canary={} canary_errors={} \
             canary_requests={} canary_rate={:.5} baseline_errors={} baseline_requests={} baseline_rate={:.5} \
             rate_ratio={ratio:.2} e_value={:.3e} p_value={:.3e}",
            self.id,
            self.app,
            self.canary_app,
            c.errors,
            c.requests,
            c.rate(),
            b.errors,
            b.requests,
            b.rate(),
            evidence.e_value,
            evidence.p_value,
        );
        tracing::warn!(canary_id = %self.id, app = %self.app, canary = %self.canary_app, p_value = evidence.p_value, "canary aborted");
        for app in [&self.app, &self.canary_app] {
            crate::batch::publish(
                publisher,
                LogEvent::builder(app, "akkeris/router").process("canary").message(line.as_bytes()),
            );
        }
        match AppKey::try_new(&self.app) {
            Ok(app) => {
                // The receiver goes away only when the process stops; the abort holds here anyway.
                let _ = verdicts.send(CanaryVerdict { id: self.id, app, evidence });
            }
            Err(e) => tracing::warn!(app = %self.app, error = %e, "cannot report a canary abort"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_domain::{PolicyInput, Weight};

    fn policy(weight: f64) -> CanaryPolicy {
        CanaryPolicy::with_weight(Weight::from_percent(weight).unwrap())
    }

    #[test]
    fn the_split_is_smooth() {
        for (weight, bp) in [(10.0, 1000u64), (1.0, 100), (33.33, 3333), (0.5, 50)] {
            let split = Split::new(Weight::from_percent(weight).unwrap().basis_points());
            let taken: Vec<bool> = (0..100_000).map(|_| split.take()).collect();
            for window in taken.windows(1000).step_by(97) {
                let n = window.iter().filter(|t| **t).count() as u64;
                assert!(n.abs_diff(bp / 10) <= 1, "{weight}%: {n} of 1000");
            }
        }
    }

    /// Feeds a judge requests in the split's order with errors decided by `error(arm, i)`.
    fn run(policy: CanaryPolicy, n: u64, mut error: impl FnMut(Arm, u64) -> bool) -> (Judge, Option<u64>) {
        let split = Split::new(policy.weight().basis_points());
        let mut judge = Judge::new(policy);
        for i in 0..n {
            let arm = if split.take() { Arm::Canary } else { Arm::Baseline };
            let status = if error(arm, i) { 500 } else { 200 };
            if judge.record(arm, status).is_some() {
                return (judge, Some(i + 1));
            }
        }
        (judge, None)
    }

    #[test]
    fn a_much_worse_canary_is_aborted() {
        let mut rng = fastrand::Rng::with_seed(7);
        let (judge, at) = run(policy(10.0), 100_000, |arm, _| match arm {
            Arm::Canary => rng.f64() < 0.05,
            Arm::Baseline => rng.f64() < 0.001,
        });
        let at = at.expect("aborted");
        assert!(judge.aborted());
        let e = judge.evidence();
        assert!(e.p_value <= 0.01 && e.canary.errors >= 5 && e.canary.requests >= 100, "{e:?}");
        assert!(e.decision.starts_with("aborted: "), "{}", e.decision);
        assert!(at < 20_000, "aborted only after {at} requests");
    }

    #[test]
    fn an_equal_canary_is_not_aborted() {
        let mut rng = fastrand::Rng::with_seed(11);
        let (judge, at) = run(policy(10.0), 100_000, |_, _| rng.f64() < 0.02);
        assert_eq!(at, None, "{:?}", judge.evidence());
        let e = judge.evidence();
        assert_eq!(e.baseline.requests + e.canary.requests, 100_000);
        assert_eq!(e.canary.requests, 10_000);
        assert!(e.decision.starts_with("running"));
    }

    #[test]
    fn errors_on_both_sides_at_once_are_no_evidence() {
        // An outage that fails every request for a while hits both sides alike.
        let (judge, at) = run(policy(10.0), 50_000, |_, i| (20_000..25_000).contains(&i));
        assert_eq!(at, None);
        assert!(judge.evidence().p_value > 0.5, "{:?}", judge.evidence());
    }

    #[test]
    fn guards_hold_back_a_decision() {
        // The canary always fails and the baseline never does: overwhelming evidence, but not
        // before the minimum number of canary requests.
        let input = PolicyInput { weight: Some(10.0), min_requests: Some(300), ..PolicyInput::default() };
        let (judge, at) = run(CanaryPolicy::try_from(input).unwrap(), 10_000, |arm, _| arm == Arm::Canary);
        assert_eq!(at, Some(3000));
        assert_eq!(judge.evidence().canary.requests, 300);
        // A canary worse by less than the minimum effect is never aborted, however long.
        let mut rng = fastrand::Rng::with_seed(3);
        let input = PolicyInput { weight: Some(50.0), min_rate_ratio: Some(3.0), ..PolicyInput::default() };
        let (_, at) = run(CanaryPolicy::try_from(input).unwrap(), 200_000, |arm, _| match arm {
            Arm::Canary => rng.f64() < 0.04,
            Arm::Baseline => rng.f64() < 0.02,
        });
        assert_eq!(at, None);
    }

    #[test]
    fn a_held_abort_happens_when_the_guards_pass_even_on_a_success() {
        // The canary's first 30 requests fail (evidence enough long before), then none does:
        // the abort waits for `min_requests` (100) canary requests and comes at the 100th, a
        // success, not at an error that may never come (a soak would pass meanwhile).
        let mut judge = Judge::new(policy(50.0));
        let mut at = None;
        for i in 0..400u64 {
            let (arm, n) = if i % 2 == 0 { (Arm::Canary, i / 2) } else { (Arm::Baseline, i / 2) };
            let status = if arm == Arm::Canary && n < 30 { 500 } else { 200 };
            if judge.record(arm, status).is_some() {
                at = Some(judge.evidence().canary);
                break;
            }
        }
        assert_eq!(at, Some(Tally { requests: 100, errors: 30 }), "{:?}", judge.evidence());
    }

    #[test]
    fn client_errors_count_only_when_asked() {
        let input = PolicyInput { weight: Some(10.0), errors: Some(vec!["4xx".into()]), ..PolicyInput::default() };
        let mut judge = Judge::new(CanaryPolicy::try_from(input).unwrap());
        judge.record(Arm::Canary, 404);
        judge.record(Arm::Canary, 503);
        assert_eq!(judge.evidence().canary, Tally { requests: 2, errors: 1 });
    }

    #[test]
    fn an_aborted_canary_takes_no_more_requests() {
        let canary = Canary::new(uuid::Uuid::nil(), "api-default".into(), "next-default".into(), policy(50.0));
        let mut verdicts = 0;
        for _ in 0..1000 {
            let arm = canary.choose();
            verdicts += usize::from(canary.record(arm, if arm == Arm::Canary { 500 } else { 200 }).is_some());
        }
        assert_eq!(verdicts, 1);
        let e = canary.evidence();
        assert!(e.canary.requests < 150, "{e:?}");
        assert!((0..100).all(|_| canary.choose() == Arm::Baseline));
    }
}
