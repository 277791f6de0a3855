//! Simulates the canary judge: for a table of baseline and canary error rates, the false-alarm
//! rate (canaries no worse than the baseline that get aborted) and the detection delay (requests
//! until a worse canary is aborted), beside a Flagger-style fixed threshold.
//!
//! The judge and the split are the router's own (`wharf_router::canary`); only the requests are
//! simulated, each an independent error with its side's rate.
//!
//! `cargo bench --bench canary` runs the table; `-- --trials N --horizon N` change its size, and
//! `-- --errors 4xx,5xx,slow` the kinds judged (5xx alone by default, as the table was first
//! measured; the simulated requests fail only with 5xx, so more kinds only split the
//! false-alarm rate between their tests, each at `α/k`).

#![allow(clippy::print_stdout)]

use std::thread;

use wharf_domain::{CanaryPolicy, PolicyInput};
use wharf_router::canary::{Arm, Judge, Split};

/// One row: error rates in percent, and an optional outage that fails every request on both
/// sides for a stretch of requests.
#[derive(Clone, Copy)]
struct Scenario {
    /// Whether the default guards apply; without them the sequential test alone decides.
    guards: bool,
    weight: f64,
    baseline: f64,
    canary: f64,
    outage: Option<(u64, u64)>,
}

/// Flagger's analysis, counted in requests: every `INTERVAL` requests it checks the canary's
/// error rate over the interval against `THRESHOLD` and rolls back after `FAILED_CHECKS` failed
/// checks (its defaults are a one-minute interval, a 99% success rate and 5 checks).
const INTERVAL: u64 = 1_000;
const THRESHOLD: f64 = 0.01;
const FAILED_CHECKS: u32 = 5;

struct Outcome {
    judge: Option<u64>,
    flagger: Option<u64>,
}

fn trial(s: Scenario, policy: &CanaryPolicy, horizon: u64, seed: u64) -> Outcome {
    let mut rng = fastrand::Rng::with_seed(seed);
    let split = Split::new(policy.weight().basis_points());
    let mut judge = Judge::new(policy.clone());
    let (mut judge_at, mut flagger_at) = (None, None);
    let (mut interval_requests, mut interval_errors, mut failed) = (0u64, 0u64, 0u32);
    for i in 0..horizon {
        let arm = if split.take() { Arm::Canary } else { Arm::Baseline };
        let rate = match arm {
            Arm::Canary => s.canary,
            Arm::Baseline => s.baseline,
        } / 100.0;
        let outage = s.outage.is_some_and(|(from, to)| (from..to).contains(&i));
        let error = outage || rng.f64() < rate;
        if judge_at.is_none() && judge.record(arm, if error { 500 } else { 200 }).is_some() {
            judge_at = Some(i + 1);
        }
        if arm == Arm::Canary {
            interval_requests += 1;
            interval_errors += u64::from(error);
        }
        if (i + 1) % INTERVAL == 0 {
            if flagger_at.is_none()
                && interval_requests > 0
                && interval_errors as f64 / interval_requests as f64 > THRESHOLD
            {
                failed += 1;
                if failed >= FAILED_CHECKS {
                    flagger_at = Some(i + 1);
                }
            }
            (interval_requests, interval_errors) = (0, 0);
        }
        if judge_at.is_some() && flagger_at.is_some() {
            break;
        }
    }
    Outcome { judge: judge_at, flagger: flagger_at }
}

struct Summary {
    rate: f64,
    median: Option<u64>,
    p95: Option<u64>,
    max: Option<u64>,
}

fn summarize(mut at: Vec<u64>, trials: usize) -> Summary {
    at.sort_unstable();
    let rate = at.len() as f64 / trials as f64;
    let q = |f: f64| (!at.is_empty()).then(|| at[((at.len() as f64 * f).ceil() as usize).clamp(1, at.len()) - 1]);
    Summary { rate, median: q(0.5), p95: q(0.95), max: at.last().copied() }
}

fn fmt(n: Option<u64>) -> String {
    n.map_or_else(|| "-".into(), |n| n.to_string())
}

fn main() {
    let mut trials = 2_000usize;
    let mut horizon = 100_000u64;
    let mut errors = vec!["5xx".to_owned()];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--trials" => trials = args.next().and_then(|v| v.parse().ok()).expect("--trials N"),
            "--horizon" => horizon = args.next().and_then(|v| v.parse().ok()).expect("--horizon N"),
            "--errors" => {
                errors = args.next().expect("--errors KIND,KIND").split(',').map(str::to_owned).collect();
            }
            // `cargo bench` passes `--bench`; nothing else is expected.
            _ => {}
        }
    }
    let s = |weight, baseline, canary| Scenario { guards: true, weight, baseline, canary, outage: None };
    let raw = |weight, baseline, canary| Scenario { guards: false, ..s(weight, baseline, canary) };
    let scenarios = [
        s(10.0, 0.1, 0.1),
        s(10.0, 1.0, 1.0),
        s(10.0, 5.0, 5.0),
        s(50.0, 1.0, 1.0),
        Scenario { outage: Some((40_000, 42_000)), ..s(10.0, 0.5, 0.5) },
        s(10.0, 1.0, 0.5),
        s(10.0, 0.1, 5.0),
        s(10.0, 0.1, 1.0),
        s(10.0, 1.0, 2.0),
        s(10.0, 1.0, 3.0),
        s(10.0, 5.0, 10.0),
        s(1.0, 0.1, 5.0),
        s(50.0, 1.0, 1.5),
        raw(10.0, 0.1, 0.1),
        raw(10.0, 1.0, 1.0),
        raw(10.0, 5.0, 5.0),
        raw(50.0, 1.0, 1.0),
        Scenario { outage: Some((40_000, 42_000)), ..raw(10.0, 0.5, 0.5) },
        raw(10.0, 0.1, 5.0),
        raw(10.0, 1.0, 2.0),
    ];
    println!(
        "{trials} trials of {horizon} requests each; false-alarm rate 0.01; kinds judged {errors:?} (the requests \
         fail only with 5xx); guards on: the defaults (100 canary requests, 5 canary errors, ratio 1.5, difference 0.5 \
         points, min_requests waived past 1000/α); off: none. Flagger-style: canary error rate over \
         {INTERVAL}-request intervals above {}%, rolled back after {FAILED_CHECKS} failed checks.\n",
        THRESHOLD * 100.0
    );
    println!(
        "| guards | weight | baseline | canary | judge aborts | median | p95 | max | fixed threshold aborts | median | p95 |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for sc in scenarios {
        // 5xx alone unless `--errors` says otherwise: the simulated requests have no 4xx and no
        // latency, so judging those kinds too only shares the false-alarm rate.
        let errors = Some(errors.clone());
        let mut input = PolicyInput { weight: Some(sc.weight), errors, ..PolicyInput::default() };
        if !sc.guards {
            input.min_requests = Some(0);
            input.min_errors = Some(1);
            input.min_rate_ratio = Some(1.0);
            input.min_rate_difference = Some(0.0);
        }
        let policy = CanaryPolicy::try_from(input).expect("valid");
        let workers = thread::available_parallelism().map_or(1, |n| n.get());
        let outcomes: Vec<Outcome> = thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|w| {
                    let policy = &policy;
                    scope.spawn(move || {
                        (w..trials)
                            .step_by(workers)
                            .map(|t| trial(sc, policy, horizon, t as u64 + 1))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles.into_iter().flat_map(|h| h.join().expect("a trial does not panic")).collect()
        });
        let judge = summarize(outcomes.iter().filter_map(|o| o.judge).collect(), trials);
        let flagger = summarize(outcomes.iter().filter_map(|o| o.flagger).collect(), trials);
        let outage = if sc.outage.is_some() { " (+outage)" } else { "" };
        println!(
            "| {} | {}% | {}%{outage} | {}% | {:.2}% | {} | {} | {} | {:.2}% | {} | {} |",
            if sc.guards { "on" } else { "off" },
            sc.weight,
            sc.baseline,
            sc.canary,
            judge.rate * 100.0,
            fmt(judge.median),
            fmt(judge.p95),
            fmt(judge.max),
            flagger.rate * 100.0,
            fmt(flagger.median),
            fmt(flagger.p95),
        );
    }
}
