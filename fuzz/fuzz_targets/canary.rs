//! Canary settings and the judge: any JSON body is refused or accepted without panicking, an
//! accepted policy survives the round trip through storage, and a judge fed any outcomes keeps
//! its statistics in range and decides at most once.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf_domain::CanaryPolicy;
use wharf_router::canary::{Arm, Judge};

fuzz_target!(|input: (&str, Vec<(bool, u16)>)| {
    let (json, outcomes) = input;
    let Ok(policy) = serde_json::from_str::<CanaryPolicy>(json) else { return };
    let back: CanaryPolicy = serde_json::from_str(&serde_json::to_string(&policy).unwrap()).unwrap();
    assert_eq!(back, policy);
    let mut judge = Judge::new(policy);
    let mut decisions = 0;
    for (canary, status) in outcomes {
        let arm = if canary { Arm::Canary } else { Arm::Baseline };
        decisions += usize::from(judge.record(arm, status).is_some());
        let e = judge.evidence();
        assert!(e.e_value >= 0.0 && e.e_value.is_finite(), "{e:?}");
        assert!(e.p_value > 0.0 && e.p_value <= 1.0, "{e:?}");
        assert!(e.canary.errors <= e.canary.requests && e.baseline.errors <= e.baseline.requests);
    }
    assert!(decisions <= 1);
    assert_eq!(decisions == 1, judge.aborted());
});
