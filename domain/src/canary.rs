//! Canary releases as both planes see them: the share of traffic, the judge's policy, and the
//! evidence behind a decision.
//!
//! A canary sends a weighted share of an app's requests to another app (the canary) and aborts
//! itself when the canary's error rate is statistically higher. The statistics live in the
//! router; this module holds the values that cross between the control API and the router.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::names::AppKey;

/// Why a canary setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CanaryError(String);

/// The share of an app's requests that goes to the canary, in hundredths of a percent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Weight(u16);

impl Weight {
    /// Every request: a promoted canary's weight.
    pub const ALL: Weight = Weight(10_000);

    /// A weight from a percentage: more than 0 and less than 100, in steps of 0.01 (`12.5` is
    /// 1,250 basis points). Errors with a [`CanaryError`] saying which rule the value breaks.
    pub fn from_percent(percent: f64) -> Result<Weight, CanaryError> {
        let bp = percent * 100.0;
        if !(percent > 0.0 && percent < 100.0) {
            return Err(CanaryError(format!("weight must be more than 0 and less than 100 percent, not {percent}")));
        }
        if (bp - bp.round()).abs() > 1e-6 {
            return Err(CanaryError(format!("weight is a percentage with at most two decimals, not {percent}")));
        }
        Ok(Weight(bp.round() as u16))
    }

    /// Hundredths of a percent: 1,000 is 10%.
    pub fn basis_points(self) -> u16 {
        self.0
    }

    /// The share as a fraction of one.
    pub fn fraction(self) -> f64 {
        f64::from(self.0) / 10_000.0
    }
}

impl TryFrom<f64> for Weight {
    type Error = CanaryError;
    fn try_from(p: f64) -> Result<Self, CanaryError> {
        Weight::from_percent(p)
    }
}

impl From<Weight> for f64 {
    fn from(w: Weight) -> f64 {
        f64::from(w.0) / 100.0
    }
}

/// What the judge counts against a side: which response statuses, and whether slowness. Each
/// kind judged is tested on its own (see the router's `canary` module), so a baseline's usual
/// share of one kind (bots' 404s, a slow report endpoint) never hides a regression in another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub struct ErrorClasses {
    client: bool,
    server: bool,
    slow: bool,
}

impl ErrorClasses {
    /// 5xx only: the judge before 4xx and slowness were judged by default, and what the
    /// simulation in `docs/canary.md` measures.
    pub const SERVER: ErrorClasses = ErrorClasses { client: false, server: true, slow: false };

    /// The default: 5xx, 4xx and slow requests, each compared with the baseline's own rate of
    /// it. A release whose routes or authentication break answers 404 or 401/403 where
    /// production answered 200 (FE27 #3: a canary answering 30% 404 was promoted), and one that
    /// hangs or answers seconds late fails its users as surely as a 500 (FE27 #1, #4); since
    /// each kind is compared with production's own rate of it, production's usual 4xx and slow
    /// requests abort nothing.
    pub const DEFAULT: ErrorClasses = ErrorClasses { client: true, server: true, slow: true };

    /// Whether a response with this status is an error.
    pub fn counts(self, status: u16) -> bool {
        (self.server && (500..600).contains(&status)) || (self.client && (400..500).contains(&status))
    }

    /// Whether 5xx answers (and the router's own errors, which are 5xx) are judged.
    pub fn server(self) -> bool {
        self.server
    }

    /// Whether 4xx answers are judged.
    pub fn client(self) -> bool {
        self.client
    }

    /// Whether slow requests (no response head within `slow_seconds`, or a client that went
    /// away before one) are judged.
    pub fn slow(self) -> bool {
        self.slow
    }

    /// How many kinds are judged: the false-alarm rate is shared among them.
    pub fn kinds(self) -> u32 {
        u32::from(self.client) + u32::from(self.server) + u32::from(self.slow)
    }
}

impl TryFrom<Vec<String>> for ErrorClasses {
    type Error = CanaryError;
    fn try_from(v: Vec<String>) -> Result<Self, CanaryError> {
        let mut c = ErrorClasses { client: false, server: false, slow: false };
        for s in &v {
            match s.as_str() {
                "4xx" => c.client = true,
                "5xx" => c.server = true,
                "slow" => c.slow = true,
                other => return Err(CanaryError(format!("errors are \"4xx\", \"5xx\" and \"slow\", not {other:?}"))),
            }
        }
        if c.kinds() == 0 {
            return Err(CanaryError("errors must name at least one of \"4xx\", \"5xx\" and \"slow\"".into()));
        }
        Ok(c)
    }
}

impl From<ErrorClasses> for Vec<String> {
    fn from(c: ErrorClasses) -> Vec<String> {
        let mut v = Vec::new();
        if c.client {
            v.push("4xx".to_owned());
        }
        if c.server {
            v.push("5xx".to_owned());
        }
        if c.slow {
            v.push("slow".to_owned());
        }
        v
    }
}

/// A canary's settings as an operator writes them; absent fields take the defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyInput {
    /// The canary's share of the app's requests, in percent.
    pub weight: Option<f64>,
    /// What is judged: `"5xx"`, `"4xx"` and `"slow"`, all three by default; each is compared
    /// with the baseline's own rate of it.
    pub errors: Option<Vec<String>>,
    /// A request whose response head has not come this many seconds after it arrived counts as
    /// slow on its side (when `"slow"` is judged): 2 by default, between 0.01 and 3600.
    pub slow_seconds: Option<f64>,
    /// The chance that a canary no worse than the baseline is ever aborted: 0.01 by default.
    pub false_alarm_rate: Option<f64>,
    /// Canary requests before any decision: 100 by default.
    pub min_requests: Option<u64>,
    /// Canary errors before any decision: 5 by default.
    pub min_errors: Option<u64>,
    /// The canary's error rate over the baseline's before an abort: 1.5 by default.
    pub min_rate_ratio: Option<f64>,
    /// The canary's error rate minus the baseline's before an abort: 0.005 by default.
    pub min_rate_difference: Option<f64>,
}

/// A canary's split and the rules its judge follows, checked when built.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "PolicyInput", into = "PolicyInput")]
pub struct CanaryPolicy {
    weight: Weight,
    errors: ErrorClasses,
    false_alarm_rate: f64,
    min_requests: u64,
    min_errors: u64,
    min_rate_ratio: f64,
    min_rate_difference: f64,
    slow_seconds: f64,
}

/// The default `slow_seconds`: web.dev calls a time to first byte over 1.8 s poor (its Core Web
/// Vitals guidance), and a production answer that slow is a regression users notice; it is
/// judged against production's own share of such requests, so an app whose usual answers are
/// slower loses power, never a false abort, and raises the bound.
pub const DEFAULT_SLOW_SECONDS: f64 = 2.0;

// The floats are checked finite when built, so equality is reflexive.
impl Eq for CanaryPolicy {}

impl CanaryPolicy {
    /// The defaults: 5xx, 4xx and slow requests (over 2 s) judged, a 1% false-alarm rate, at
    /// least 100 canary requests and 5 canary errors, and an effect of at least 1.5 times and
    /// 0.5 percentage points.
    pub fn with_weight(weight: Weight) -> CanaryPolicy {
        CanaryPolicy {
            weight,
            errors: ErrorClasses::DEFAULT,
            slow_seconds: DEFAULT_SLOW_SECONDS,
            false_alarm_rate: 0.01,
            min_requests: 100,
            min_errors: 5,
            min_rate_ratio: 1.5,
            min_rate_difference: 0.005,
        }
    }

    /// The canary's share of requests.
    pub fn weight(&self) -> Weight {
        self.weight
    }

    /// Which statuses are errors.
    pub fn errors(&self) -> ErrorClasses {
        self.errors
    }

    /// The bound on the chance of aborting a canary that is no worse.
    pub fn false_alarm_rate(&self) -> f64 {
        self.false_alarm_rate
    }

    /// Canary requests needed before a decision.
    pub fn min_requests(&self) -> u64 {
        self.min_requests
    }

    /// Canary errors needed before a decision.
    pub fn min_errors(&self) -> u64 {
        self.min_errors
    }

    /// Smallest ratio of error rates that aborts.
    pub fn min_rate_ratio(&self) -> f64 {
        self.min_rate_ratio
    }

    /// Smallest difference of error rates that aborts.
    pub fn min_rate_difference(&self) -> f64 {
        self.min_rate_difference
    }

    /// How long a request may wait for its response head before it counts as slow.
    pub fn slow_after(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.slow_seconds)
    }
}

impl TryFrom<PolicyInput> for CanaryPolicy {
    type Error = CanaryError;
    fn try_from(i: PolicyInput) -> Result<Self, CanaryError> {
        let weight = Weight::from_percent(i.weight.ok_or_else(|| CanaryError("weight is required".into()))?)?;
        let mut p = CanaryPolicy::with_weight(weight);
        if let Some(e) = i.errors {
            p.errors = ErrorClasses::try_from(e)?;
        }
        if let Some(a) = i.false_alarm_rate {
            if !(1e-9..=0.2).contains(&a) {
                return Err(CanaryError(format!("false_alarm_rate must be between 1e-9 and 0.2, not {a}")));
            }
            p.false_alarm_rate = a;
        }
        if let Some(n) = i.min_requests {
            p.min_requests = n;
        }
        if let Some(n) = i.min_errors {
            if n == 0 {
                return Err(CanaryError("min_errors must be at least 1: a canary without errors is not worse".into()));
            }
            p.min_errors = n;
        }
        if let Some(r) = i.min_rate_ratio {
            if !(1.0..=1e6).contains(&r) {
                return Err(CanaryError(format!("min_rate_ratio must be between 1 and 1000000, not {r}")));
            }
            p.min_rate_ratio = r;
        }
        if let Some(d) = i.min_rate_difference {
            if !(0.0..1.0).contains(&d) {
                return Err(CanaryError(format!(
                    "min_rate_difference is a difference of error rates, at least 0 and less than 1, not {d}"
                )));
            }
            p.min_rate_difference = d;
        }
        if let Some(t) = i.slow_seconds {
            if !(0.01..=3600.0).contains(&t) {
                return Err(CanaryError(format!("slow_seconds must be between 0.01 and 3600, not {t}")));
            }
            p.slow_seconds = t;
        }
        Ok(p)
    }
}

impl From<CanaryPolicy> for PolicyInput {
    fn from(p: CanaryPolicy) -> PolicyInput {
        PolicyInput {
            weight: Some(p.weight.into()),
            errors: Some(p.errors.into()),
            false_alarm_rate: Some(p.false_alarm_rate),
            min_requests: Some(p.min_requests),
            min_errors: Some(p.min_errors),
            min_rate_ratio: Some(p.min_rate_ratio),
            min_rate_difference: Some(p.min_rate_difference),
            slow_seconds: Some(p.slow_seconds),
        }
    }
}

/// Where a canary stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CanaryState {
    /// Taking its share and being judged.
    Running,
    /// Taking every request of the app; no longer judged.
    Promoted,
    /// Taking nothing; the app's own dynos serve everything.
    Aborted,
}

impl CanaryState {
    /// The state's name, as the API shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            CanaryState::Running => "running",
            CanaryState::Promoted => "promoted",
            CanaryState::Aborted => "aborted",
        }
    }
}

/// Outcomes of one side of a canary: requests judged, and how many failed in a judged way.
/// Each request is counted once, at the first of: its response head (its status), the router's
/// error, `slow_seconds` without a response head, or its client going away before one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// Requests counted.
    pub requests: u64,
    /// Of those, the ones that failed in a judged way: the sum of the three counts below.
    pub errors: u64,
    /// Of the errors, 5xx answers and the router's own errors about the side's dynos.
    #[serde(default)]
    pub server_errors: u64,
    /// Of the errors, 4xx answers.
    #[serde(default)]
    pub client_errors: u64,
    /// Of the errors, requests with no response head after `slow_seconds`, or whose client went
    /// away before one (`abandoned`).
    #[serde(default)]
    pub slow: u64,
    /// Of the slow, those whose client went away before the response head and before
    /// `slow_seconds`.
    #[serde(default)]
    pub abandoned: u64,
}

impl Tally {
    /// The error rate; 0 before any request.
    pub fn rate(self) -> f64 {
        if self.requests == 0 { 0.0 } else { self.errors as f64 / self.requests as f64 }
    }
}

/// The counts and statistics behind a decision, or a live look at them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanaryEvidence {
    /// The app's own dynos, counted while the canary ran.
    pub baseline: Tally,
    /// The canary's dynos.
    pub canary: Tally,
    /// The test statistic: the e-value, the evidence against "the canary is no worse". An
    /// abort needs at least `1 / false_alarm_rate`.
    pub e_value: f64,
    /// The anytime-valid p-value: `1 / ` the largest e-value seen, at most 1.
    pub p_value: f64,
    /// What was decided, in words.
    pub decision: String,
}

// The floats are products and ratios of finite counts, never NaN.
impl Eq for CanaryEvidence {}

/// A canary as the data planes see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CanarySpec {
    /// The canary's id: a new `PUT` is a new canary, judged from zero.
    pub id: Uuid,
    /// The app whose requests are split.
    pub app: AppKey,
    /// The app that takes the canary's share.
    pub canary: AppKey,
    /// The split and the judge's rules.
    pub policy: CanaryPolicy,
    /// Running, promoted or aborted.
    pub state: CanaryState,
}

/// A router's decision to abort a canary, sent to the control API to record for all routers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryVerdict {
    /// The canary.
    pub id: Uuid,
    /// The app whose requests were split.
    pub app: AppKey,
    /// What the router saw.
    pub evidence: CanaryEvidence,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights() {
        let check = |p: f64, want: Result<u16, &str>| {
            let got = Weight::from_percent(p).map(Weight::basis_points).map_err(|e| e.to_string());
            match want {
                Ok(bp) => assert_eq!(got, Ok(bp), "{p}"),
                Err(msg) => assert!(got.as_ref().is_err_and(|e| e.contains(msg)), "{p}: {got:?}"),
            }
        };
        check(10.0, Ok(1000));
        check(0.01, Ok(1));
        check(99.99, Ok(9999));
        check(12.5, Ok(1250));
        check(0.0, Err("more than 0"));
        check(100.0, Err("less than 100"));
        check(-1.0, Err("more than 0"));
        check(f64::NAN, Err("more than 0"));
        check(12.345, Err("two decimals"));
    }

    #[test]
    fn policies() {
        let check = |json: &str, want: Result<(), &str>| {
            let got: Result<CanaryPolicy, _> = serde_json::from_str(json);
            match want {
                Ok(()) => {
                    let p = got.unwrap_or_else(|e| panic!("{json}: {e}"));
                    let back: CanaryPolicy = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
                    assert_eq!(back, p);
                }
                Err(msg) => {
                    let e = got.expect_err(json).to_string();
                    assert!(e.contains(msg), "{json}: {e}");
                }
            }
        };
        check(r#"{"weight": 10}"#, Ok(()));
        check(r#"{"weight": 5, "errors": ["4xx", "5xx"], "false_alarm_rate": 0.001, "min_requests": 0}"#, Ok(()));
        check(r#"{}"#, Err("weight is required"));
        check(r#"{"weight": 10, "errors": []}"#, Err("at least one"));
        check(r#"{"weight": 10, "errors": ["3xx"]}"#, Err("not \"3xx\""));
        check(r#"{"weight": 10, "errors": ["slow"], "slow_seconds": 0.5}"#, Ok(()));
        check(r#"{"weight": 10, "slow_seconds": 0}"#, Err("slow_seconds must be between 0.01 and 3600"));
        check(r#"{"weight": 10, "slow_seconds": 4000}"#, Err("slow_seconds must be between 0.01 and 3600"));
        check(r#"{"weight": 10, "false_alarm_rate": 0.5}"#, Err("false_alarm_rate"));
        check(r#"{"weight": 10, "false_alarm_rate": 0}"#, Err("false_alarm_rate"));
        check(r#"{"weight": 10, "min_errors": 0}"#, Err("min_errors"));
        check(r#"{"weight": 10, "min_rate_ratio": 0.5}"#, Err("min_rate_ratio"));
        check(r#"{"weight": 10, "min_rate_difference": 1}"#, Err("min_rate_difference"));
        check(r#"{"weight": 10, "colour": "red"}"#, Err("unknown field"));
        let p: CanaryPolicy = serde_json::from_str(r#"{"weight": 10}"#).unwrap();
        // The default judges 5xx, 4xx and slowness (FE27 #1, #3, #4); 2xx and 3xx are never errors.
        assert!(p.errors().counts(503) && p.errors().counts(404) && p.errors().slow() && !p.errors().counts(200));
        assert!(!p.errors().counts(302) && p.errors().kinds() == 3);
        assert_eq!(p.slow_after(), std::time::Duration::from_secs(2));
        let only_5xx: CanaryPolicy = serde_json::from_str(r#"{"weight": 10, "errors": ["5xx"]}"#).unwrap();
        assert!(!only_5xx.errors().counts(404) && !only_5xx.errors().slow() && only_5xx.errors().kinds() == 1);
    }
}
