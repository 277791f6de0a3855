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
//! checks it after every request, since the guards below can come to hold at a request that
//! succeeds. `docs/canary.md` has the derivation and the simulation.

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

/// What became of a judged request, as the judge counts it: once, at the first of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Its response head came (or the router answered with its own error), with this status.
    Status(u16),
    /// No response head came within the policy's `slow_seconds`.
    Slow,
    /// Its client went away before the response head, within `slow_seconds` (an HTTP/2 stream
    /// reset, a connection closed): the client gave up waiting, so the request is counted as
    /// slow. An HTTP/1.1 client's close is not seen while the router waits for the dyno; its
    /// request is counted slow at `slow_seconds` instead.
    Abandoned,
}

/// The kinds of failure the judge tests, each on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// 5xx answers and the router's errors about a side's dynos.
    Server,
    /// 4xx answers.
    Client,
    /// Requests with no response head within `slow_seconds`, or abandoned before one.
    Slow,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::Server, Kind::Client, Kind::Slow];

    /// The kind's rate as the decision names it.
    fn rate_name(self) -> &'static str {
        match self {
            Kind::Server => "error rate",
            Kind::Client => "4xx rate",
            Kind::Slow => "slow-request rate",
        }
    }

    /// How many of a side's requests failed in this way.
    fn count(self, t: Tally) -> u64 {
        match self {
            Kind::Server => t.server_errors,
            Kind::Client => t.client_errors,
            Kind::Slow => t.slow,
        }
    }

    /// The side's rate of this kind; 0 before any request.
    fn rate(self, t: Tally) -> f64 {
        if t.requests == 0 { 0.0 } else { self.count(t) as f64 / t.requests as f64 }
    }
}

/// How far past the abort threshold the evidence must be for `min_requests` to be waived: a
/// thousand times (a p-value a thousandth of the false-alarm rate). `min_requests` is there so
/// that an abort judges the size of a difference on enough requests; a lopsided start (34 of 34
/// canary requests failed against none of 40, p 1e-16, FE27 #1) needs no more to know the
/// canary is worse by more than any guard asks, and a canary that hangs must not take its share
/// of production's users until `min_requests` of them have waited. The guards only ever hold an
/// abort back, so the waiver cannot raise the false-alarm rate past `false_alarm_rate`; a canary
/// no worse than the baseline reaches the waiver's level with a chance of at most a thousandth
/// of it (Ville's inequality, as for the threshold).
pub const OVERWHELMING: f64 = 1000.0;

/// One kind's sequential test.
#[derive(Debug, Clone, Copy, Default)]
struct Test {
    /// The log of each ratio's likelihood-ratio martingale.
    log_lr: [f64; RATIOS.len()],
    /// The log e-value now. It changes only at this kind's failures; it is kept so that the
    /// requests between them, which can make the guards pass, cost a comparison and no logarithm.
    log_e: f64,
    /// The largest log e-value seen, for the anytime-valid p-value.
    max_log_e: f64,
}

impl Test {
    /// The log of the mixture's e-value: the mean of the ratios' likelihood ratios.
    fn log_e_value(&self) -> f64 {
        let max = self.log_lr.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = self.log_lr.iter().map(|l| (l - max).exp()).sum();
        max + (sum / RATIOS.len() as f64).ln()
    }
}

/// The sequential tests over one canary's outcomes: one for each kind of failure the policy
/// judges (5xx, 4xx, slow), each at `false_alarm_rate / kinds` so that together they keep
/// `false_alarm_rate` (Bonferroni: the chance that any of them ever rejects a canary no worse in
/// every kind is at most the sum of their chances).
#[derive(Debug, Clone)]
pub struct Judge {
    policy: CanaryPolicy,
    baseline: Tally,
    canary: Tally,
    /// One test per kind, in [`Kind::ALL`]'s order; the kinds not judged stay at zero.
    tests: [Test; 3],
    /// `ln(kinds/α)`: the log e-value at which one kind's test rejects.
    threshold: f64,
    verdict: Option<CanaryEvidence>,
}

impl Judge {
    /// A judge that has seen nothing.
    pub fn new(policy: CanaryPolicy) -> Judge {
        let kinds = f64::from(policy.errors().kinds().max(1));
        let threshold = (kinds / policy.false_alarm_rate()).ln();
        Judge {
            policy,
            baseline: Tally::default(),
            canary: Tally::default(),
            tests: [Test::default(); 3],
            threshold,
            verdict: None,
        }
    }

    /// Counts one request's status (see [`Judge::record_outcome`]).
    pub fn record(&mut self, arm: Arm, status: u16) -> Option<CanaryEvidence> {
        self.record_outcome(arm, Outcome::Status(status))
    }

    /// The kind of failure an outcome is, when the policy judges it.
    fn kind(&self, outcome: Outcome) -> Option<Kind> {
        let judged = self.policy.errors();
        match outcome {
            Outcome::Status(s) if judged.server() && (500..600).contains(&s) => Some(Kind::Server),
            Outcome::Status(s) if judged.client() && (400..500).contains(&s) => Some(Kind::Client),
            Outcome::Status(_) => None,
            Outcome::Slow | Outcome::Abandoned => judged.slow().then_some(Kind::Slow),
        }
    }

    /// Counts one request's outcome. Returns the evidence when this outcome decides to abort, once.
    ///
    /// The evidence moves only at failures, but the guards (minimum requests, minimum effect) can
    /// come to pass at a request that succeeds: evidence gathered from early errors, before
    /// `min_requests`, aborts at the request that reaches `min_requests`, not at the next error.
    /// Deciding only at errors let a soak of `min_requests` pass a canary the test had already
    /// rejected (a fresh user saw 19 of 100 canary errors against 0 of 100 promoted). Looking at
    /// every request does not change the false-alarm rate: Ville's inequality bounds the chance
    /// that the e-value *ever* reaches `1/α`, however often it is looked at.
    pub fn record_outcome(&mut self, arm: Arm, outcome: Outcome) -> Option<CanaryEvidence> {
        let kind = self.kind(outcome);
        let tally = match arm {
            Arm::Baseline => &mut self.baseline,
            Arm::Canary => &mut self.canary,
        };
        tally.requests += 1;
        if let Some(kind) = kind {
            tally.errors += 1;
            match kind {
                Kind::Server => tally.server_errors += 1,
                Kind::Client => tally.client_errors += 1,
                Kind::Slow => tally.slow += 1,
            }
            tally.abandoned += u64::from(outcome == Outcome::Abandoned);
        }
        if self.verdict.is_some() {
            return None;
        }
        if let Some(kind) = kind {
            // The canary's share of requests so far: what its share of this kind's failures
            // would be if it were no worse. Clamped so that one side's first requests cannot make
            // a ratio infinite.
            let total = (self.baseline.requests + self.canary.requests) as f64;
            let share = (self.canary.requests as f64 / total).clamp(1e-4, 1.0 - 1e-4);
            let test = &mut self.tests[kind as usize];
            for (log_lr, r) in test.log_lr.iter_mut().zip(RATIOS) {
                let expected = share * r + 1.0 - share;
                *log_lr += match arm {
                    Arm::Canary => (r / expected).ln(),
                    Arm::Baseline => -expected.ln(),
                };
            }
            test.log_e = test.log_e_value();
            test.max_log_e = test.max_log_e.max(test.log_e);
        }
        let deciding = Kind::ALL.into_iter().find(|&k| self.past_threshold(k) && self.guards_pass(k))?;
        let evidence = self.evidence_with(self.decision_text(deciding));
        self.verdict = Some(evidence.clone());
        Some(evidence)
    }

    /// Whether a kind's evidence has reached the abort threshold.
    fn past_threshold(&self, kind: Kind) -> bool {
        self.tests[kind as usize].log_e >= self.threshold
    }

    /// Which guards hold an abort on a kind's evidence back: `min_requests`, `min_errors`,
    /// `min_rate_difference`, `min_rate_ratio`, in that order. They keep evidence alone from
    /// aborting a canary that is worse by too little to matter, or judged on too few requests to
    /// be sure of the size; `min_requests` is waived once the evidence is [`OVERWHELMING`].
    fn failing_guards(&self, kind: Kind) -> [bool; 4] {
        let p = &self.policy;
        let (c, b) = (kind.rate(self.canary), kind.rate(self.baseline));
        let overwhelming = self.tests[kind as usize].log_e >= self.threshold + OVERWHELMING.ln();
        [
            self.canary.requests < p.min_requests() && !overwhelming,
            kind.count(self.canary) < p.min_errors(),
            c - b < p.min_rate_difference(),
            c < b * p.min_rate_ratio(),
        ]
    }

    /// Whether no guard holds an abort on a kind's evidence back.
    fn guards_pass(&self, kind: Kind) -> bool {
        !self.failing_guards(kind).contains(&true)
    }

    /// The guards that hold an abort on a kind's evidence back, in words.
    fn held_back_by(&self, kind: Kind) -> Vec<String> {
        let p = &self.policy;
        let (c, b) = (kind.rate(self.canary), kind.rate(self.baseline));
        let texts = [
            format!("min_requests ({} of {} canary requests)", self.canary.requests, p.min_requests()),
            format!("min_errors ({} of {} canary errors)", kind.count(self.canary), p.min_errors()),
            format!("min_rate_difference (the rates differ by {:.4}, not {})", c - b, p.min_rate_difference()),
            format!(
                "min_rate_ratio (the canary's rate is {:.2} times the baseline's, not {})",
                c / b,
                p.min_rate_ratio()
            ),
        ];
        self.failing_guards(kind).into_iter().zip(texts).filter_map(|(failing, text)| failing.then_some(text)).collect()
    }

    /// The anytime-valid p-value over every kind: the smallest kind's, times the number of kinds.
    fn p_value(&self) -> f64 {
        let max_log_e = self.tests.iter().map(|t| t.max_log_e).fold(0.0, f64::max);
        let kinds = f64::from(self.policy.errors().kinds().max(1));
        (kinds * (-max_log_e).exp()).min(1.0)
    }

    /// What a kind's rates say, for the decision: the canary's and the baseline's.
    fn rates_text(&self, kind: Kind) -> String {
        self.rates_joined(kind, "against")
    }

    /// The canary's and the baseline's rates of `kind`, with `between` between them (one
    /// wording for the running decision and the abort's).
    fn rates_joined(&self, kind: Kind, between: &str) -> String {
        let (c, b) = (self.canary, self.baseline);
        format!(
            "the canary's {} {:.3}% ({} of {}) {between} the baseline's {:.3}% ({} of {})",
            kind.rate_name(),
            kind.rate(c) * 100.0,
            kind.count(c),
            c.requests,
            kind.rate(b) * 100.0,
            kind.count(b),
            b.requests,
        )
    }

    fn decision_text(&self, kind: Kind) -> String {
        format!(
            "aborted: {}, p-value {:.2e} at a false-alarm rate of {}",
            self.rates_joined(kind, "is higher than"),
            self.p_value(),
            self.policy.false_alarm_rate(),
        )
    }

    /// What a running canary's decision says: that an abort is held back, and by what, when a
    /// kind's evidence is past the threshold; else that there is no evidence yet.
    fn running_text(&self) -> String {
        let held = Kind::ALL.into_iter().filter(|&k| self.past_threshold(k)).map(|k| (k, self.held_back_by(k))).next();
        match held {
            Some((kind, guards)) => format!(
                "running: an abort is held back by {}: {} is past the abort threshold (p-value {:.2e}); \
                 min_requests is waived below a p-value of {:.1e}",
                guards.join(", "),
                self.rates_text(kind),
                self.p_value(),
                self.policy.false_alarm_rate() / OVERWHELMING,
            ),
            None => "running: no evidence yet that the canary is worse".into(),
        }
    }

    fn evidence_with(&self, decision: String) -> CanaryEvidence {
        let log_e = self.tests.iter().map(Test::log_e_value).fold(f64::NEG_INFINITY, f64::max);
        let kinds = f64::from(self.policy.errors().kinds().max(1));
        CanaryEvidence {
            baseline: self.baseline,
            canary: self.canary,
            e_value: (log_e.exp() / kinds).min(f64::MAX),
            p_value: self.p_value(),
            decision,
        }
    }

    /// The counts and statistics now: the decision if there was one, else a live look.
    pub fn evidence(&self) -> CanaryEvidence {
        match &self.verdict {
            Some(v) => CanaryEvidence { baseline: self.baseline, canary: self.canary, ..v.clone() },
            None => self.evidence_with(self.running_text()),
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
    /// How long a request may wait for its response head before it counts as slow; `None` when
    /// slowness is not judged.
    slow_after: Option<std::time::Duration>,
    judge: Mutex<Judge>,
    /// Set at once when the judge decides, before anything else happens, or when the control
    /// API's snapshot says the canary was aborted ([`Canary::end`]).
    aborted: AtomicBool,
    /// Wakes the requests waiting at the canary's dynos for a response head when it is aborted
    /// ([`Canary::ended`]): they are answered at once, not at the router's 30 s timeout.
    ended: tokio::sync::Notify,
}

impl Canary {
    /// A canary that has seen nothing.
    pub fn new(id: uuid::Uuid, app: Arc<str>, canary_app: Arc<str>, policy: CanaryPolicy) -> Canary {
        Canary {
            id,
            app,
            canary_app,
            split: Split::new(policy.weight().basis_points()),
            slow_after: policy.errors().slow().then(|| policy.slow_after()),
            judge: Mutex::new(Judge::new(policy)),
            aborted: AtomicBool::new(false),
            ended: tokio::sync::Notify::new(),
        }
    }

    /// The side the next request goes to.
    pub fn choose(&self) -> Arm {
        if !self.aborted.load(Ordering::Relaxed) && self.split.take() { Arm::Canary } else { Arm::Baseline }
    }

    /// How long a request may wait for its response head before it counts as slow; `None` when
    /// slowness is not judged.
    pub fn slow_after(&self) -> Option<std::time::Duration> {
        self.slow_after
    }

    /// Counts an outcome; returns the evidence when it decides to abort, once.
    pub fn record(&self, arm: Arm, outcome: Outcome) -> Option<CanaryEvidence> {
        let mut judge = self.judge.lock().unwrap_or_else(|e| e.into_inner());
        let verdict = judge.record_outcome(arm, outcome);
        if verdict.is_some() {
            self.end();
        }
        verdict
    }

    /// Ends the canary: no more requests go to it, and those waiting at its dynos for a
    /// response head are woken ([`Canary::ended`]). Called when this router's judge aborts it,
    /// and when a snapshot says it was aborted (another router's verdict, or by hand).
    pub fn end(&self) {
        self.aborted.store(true, Ordering::Release);
        self.ended.notify_waiters();
    }

    /// Resolves once the canary has ended ([`Canary::end`]); at once if it has. A request at
    /// the canary's dynos waits on it beside its response head.
    pub async fn ended(&self) {
        let woken = self.ended.notified();
        let mut woken = std::pin::pin!(woken);
        // Registered before the flag is read, so an end between the two is not missed.
        woken.as_mut().enable();
        if self.aborted.load(Ordering::Acquire) {
            return;
        }
        woken.await;
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
        outcome: Outcome,
    ) {
        let Some(evidence) = self.record(arm, outcome) else { return };
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
    fn a_lopsided_start_aborts_before_min_requests() {
        // (weight, min_requests): a canary that fails every request (a hang: each one counted
        // slow) against a baseline that fails none is aborted once the evidence is
        // OVERWHELMING, before min_requests, on at least min_errors canary failures; FE27 #1's
        // 34 of 34 against 0 of 40 (p 1e-16) was held back until 100 canary requests.
        for (weight, min_requests) in [(50.0, 100), (10.0, 100), (10.0, 300), (1.0, 1000)] {
            let input =
                PolicyInput { weight: Some(weight), min_requests: Some(min_requests), ..PolicyInput::default() };
            let policy = CanaryPolicy::try_from(input).unwrap();
            let split = Split::new(policy.weight().basis_points());
            let mut judge = Judge::new(policy);
            let mut held_back_seen = false;
            let evidence = (0..1_000_000)
                .find_map(|_| {
                    let arm = if split.take() { Arm::Canary } else { Arm::Baseline };
                    let outcome = if arm == Arm::Canary { Outcome::Slow } else { Outcome::Status(200) };
                    let verdict = judge.record_outcome(arm, outcome);
                    held_back_seen |=
                        judge.evidence().decision.starts_with("running: an abort is held back by min_requests (");
                    verdict
                })
                .expect("aborted");
            let c = evidence.canary;
            assert!(c.requests < min_requests && c.slow >= 5 && c.slow == c.requests, "{weight}%: {evidence:?}");
            assert!(evidence.p_value <= 0.01 / OVERWHELMING, "{weight}%: {evidence:?}");
            assert!(
                evidence.decision.starts_with("aborted: the canary's slow-request rate 100.000%"),
                "{}",
                evidence.decision
            );
            assert!(held_back_seen, "{weight}%: the decision said what held the abort back before it came");
        }
    }

    #[test]
    fn the_decision_says_what_holds_an_abort_back() {
        // 12 canary failures at 50% against none: past the threshold (p about 1e-3 and less)
        // but short of the waiver; min_requests (100) holds the abort back, and says so.
        let mut judge =
            Judge::new(CanaryPolicy::try_from(PolicyInput { weight: Some(50.0), ..PolicyInput::default() }).unwrap());
        for _ in 0..12 {
            judge.record_outcome(Arm::Baseline, Outcome::Status(200));
            assert!(judge.record_outcome(Arm::Canary, Outcome::Status(503)).is_none());
        }
        let d = judge.evidence().decision;
        assert!(
            d.starts_with("running: an abort is held back by min_requests (12 of 100 canary requests): the canary's error rate 100.000% (12 of 12) against the baseline's 0.000% (0 of 12) is past the abort threshold"),
            "{d}"
        );
        assert!(d.ends_with("min_requests is waived below a p-value of 1.0e-5"), "{d}");
        // Nothing past the threshold: no evidence yet.
        let quiet = Judge::new(policy(50.0));
        assert_eq!(quiet.evidence().decision, "running: no evidence yet that the canary is worse");
    }

    #[test]
    fn each_kind_is_judged_on_its_own() {
        // (what is judged, a request's outcome, the tally it leaves: requests, errors, 5xx,
        // 4xx, slow, abandoned)
        let rows: &[(&[&str], Outcome, [u64; 6])] = &[
            (&["5xx", "4xx", "slow"], Outcome::Status(200), [1, 0, 0, 0, 0, 0]),
            (&["5xx", "4xx", "slow"], Outcome::Status(302), [1, 0, 0, 0, 0, 0]),
            (&["5xx", "4xx", "slow"], Outcome::Status(503), [1, 1, 1, 0, 0, 0]),
            (&["5xx", "4xx", "slow"], Outcome::Status(404), [1, 1, 0, 1, 0, 0]),
            (&["5xx", "4xx", "slow"], Outcome::Slow, [1, 1, 0, 0, 1, 0]),
            (&["5xx", "4xx", "slow"], Outcome::Abandoned, [1, 1, 0, 0, 1, 1]),
            (&["5xx"], Outcome::Status(404), [1, 0, 0, 0, 0, 0]),
            (&["5xx"], Outcome::Slow, [1, 0, 0, 0, 0, 0]),
            (&["5xx"], Outcome::Abandoned, [1, 0, 0, 0, 0, 0]),
            (&["4xx"], Outcome::Status(503), [1, 0, 0, 0, 0, 0]),
            (&["slow"], Outcome::Abandoned, [1, 1, 0, 0, 1, 1]),
            (&["slow"], Outcome::Status(500), [1, 0, 0, 0, 0, 0]),
        ];
        for (errors, outcome, want) in rows {
            let errors = errors.iter().map(|e| (*e).to_owned()).collect();
            let input = PolicyInput { weight: Some(10.0), errors: Some(errors), ..PolicyInput::default() };
            let mut judge = Judge::new(CanaryPolicy::try_from(input).unwrap());
            judge.record_outcome(Arm::Canary, *outcome);
            let t = judge.evidence().canary;
            let got = [t.requests, t.errors, t.server_errors, t.client_errors, t.slow, t.abandoned];
            assert_eq!(&got, want, "{outcome:?}");
        }
    }

    #[test]
    fn a_regression_of_one_kind_is_aborted_and_the_baseline_s_usual_share_of_another_hides_nothing() {
        // (name, the canary's and the baseline's outcome for request i, whether aborted, the
        // decision's start): with the default judge.
        type Pick = fn(&mut fastrand::Rng) -> Outcome;
        let ok: Pick = |_| Outcome::Status(200);
        let rows: &[(&str, Pick, Pick, Option<&str>)] = &[
            // FE27 #3: 30% 404 where production answers 200.
            (
                "404s",
                |r| Outcome::Status(if r.f64() < 0.3 { 404 } else { 200 }),
                ok,
                Some("aborted: the canary's 4xx rate"),
            ),
            // FE27 #4: every answer late.
            ("slow", |_| Outcome::Slow, ok, Some("aborted: the canary's slow-request rate")),
            // Both sides' usual 20% 404s, and the canary's 5% 500s on top.
            (
                "5xx among usual 404s",
                |r| {
                    Outcome::Status(match r.f64() {
                        x if x < 0.2 => 404,
                        x if x < 0.25 => 500,
                        _ => 200,
                    })
                },
                |r| Outcome::Status(if r.f64() < 0.2 { 404 } else { 200 }),
                Some("aborted: the canary's error rate"),
            ),
            // The same 20% 404s and 10% slow on both sides: nothing to abort.
            (
                "the same on both sides",
                |r| match r.f64() {
                    x if x < 0.2 => Outcome::Status(404),
                    x if x < 0.3 => Outcome::Slow,
                    _ => Outcome::Status(200),
                },
                |r| match r.f64() {
                    x if x < 0.2 => Outcome::Status(404),
                    x if x < 0.3 => Outcome::Slow,
                    _ => Outcome::Status(200),
                },
                None,
            ),
        ];
        for (name, canary, baseline, want) in rows {
            let mut rng = fastrand::Rng::with_seed(5);
            let split = Split::new(Weight::from_percent(20.0).unwrap().basis_points());
            let mut judge = Judge::new(policy(20.0));
            let verdict = (0..50_000).find_map(|_| {
                let arm = if split.take() { Arm::Canary } else { Arm::Baseline };
                let outcome = if arm == Arm::Canary { canary(&mut rng) } else { baseline(&mut rng) };
                judge.record_outcome(arm, outcome)
            });
            match (want, verdict) {
                (Some(start), Some(e)) => assert!(e.decision.starts_with(start), "{name}: {}", e.decision),
                (None, None) => {}
                (want, got) => panic!("{name}: wanted {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn evidence_from_before_the_minimum_aborts_when_the_minimum_is_reached() {
        // (canary errors among its first requests, min_requests, where the abort comes): the
        // canary fails early, then only succeeds. The test rejected it before `min_requests`; it
        // aborts at the canary request that reaches `min_requests`, though that request succeeds,
        // and not later. With too few errors for `min_errors` it never aborts. Early errors
        // enough for the evidence to be OVERWHELMING abort before `min_requests` (the last row:
        // at the 21st error the waiver's level is passed).
        for (early_errors, min_requests, expected) in
            [(20, 100, Some(100)), (15, 50, Some(50)), (19, 100, Some(100)), (4, 100, None), (40, 100, Some(21))]
        {
            let input = PolicyInput { weight: Some(50.0), min_requests: Some(min_requests), ..PolicyInput::default() };
            let mut judge = Judge::new(CanaryPolicy::try_from(input).unwrap());
            let mut aborted_at = None;
            for i in 1..=1000u64 {
                judge.record(Arm::Baseline, 200);
                let status = if i <= early_errors { 500 } else { 200 };
                if judge.record(Arm::Canary, status).is_some() {
                    aborted_at = Some(i);
                    break;
                }
            }
            assert_eq!(aborted_at, expected, "{early_errors} early errors, min_requests {min_requests}");
        }
    }

    #[test]
    fn client_errors_count_only_when_asked() {
        let input = PolicyInput { weight: Some(10.0), errors: Some(vec!["4xx".into()]), ..PolicyInput::default() };
        let mut judge = Judge::new(CanaryPolicy::try_from(input).unwrap());
        judge.record(Arm::Canary, 404);
        judge.record(Arm::Canary, 503);
        assert_eq!(judge.evidence().canary, Tally { requests: 2, errors: 1, client_errors: 1, ..Tally::default() });
    }

    #[test]
    fn an_aborted_canary_takes_no_more_requests() {
        let canary = Canary::new(uuid::Uuid::nil(), "api-default".into(), "next-default".into(), policy(50.0));
        let mut verdicts = 0;
        for _ in 0..1000 {
            let arm = canary.choose();
            let status = if arm == Arm::Canary { 500 } else { 200 };
            verdicts += usize::from(canary.record(arm, Outcome::Status(status)).is_some());
        }
        assert_eq!(verdicts, 1);
        let e = canary.evidence();
        assert!(e.canary.requests < 150, "{e:?}");
        assert!((0..100).all(|_| canary.choose() == Arm::Baseline));
    }
}
