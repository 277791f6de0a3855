//! Automatic canary releases (issue 22): a production app's `canary` feature, which says that a
//! new release of the app first runs as a canary app judged by the routers (`canaries`), with
//! the share, judge settings and soak length it holds.

use wharf_domain::timestamp::now_seconds;
use wharf_domain::{CanaryPolicy, PolicyInput, Stage};

use super::engine::ControlPlane;
use super::error::{Error, not_found};
use crate::model::{CanaryFeature, Change, Object};

/// The canary's share of the app's requests, in percent, when the first `PATCH` names none.
pub const DEFAULT_CANARY_WEIGHT: f64 = 10.0;

/// Canary requests without an abort before the release goes to the app, when the first `PATCH`
/// names none: ten times the judge's default `min_requests`, so that the judge has had the
/// chance to act.
pub const DEFAULT_SOAK_REQUESTS: u64 = 1000;

/// A `PATCH /apps/{app}/features/canary` body: every field optional; absent ones keep the
/// feature's current value (or the default, the first time).
#[derive(Debug, Clone, Default)]
pub struct CanaryFeatureInput {
    /// Whether new releases go through a canary.
    pub enabled: Option<bool>,
    /// Canary requests without an abort before the release goes to the app (at least 1).
    pub soak_requests: Option<u64>,
    /// The share and judge settings that change (`docs/canary.md`'s fields).
    pub policy: PolicyInput,
}

/// `new`'s fields where set, else `old`'s.
fn merge(old: PolicyInput, new: PolicyInput) -> PolicyInput {
    PolicyInput {
        weight: new.weight.or(old.weight),
        errors: new.errors.or(old.errors),
        false_alarm_rate: new.false_alarm_rate.or(old.false_alarm_rate),
        min_requests: new.min_requests.or(old.min_requests),
        min_errors: new.min_errors.or(old.min_errors),
        min_rate_ratio: new.min_rate_ratio.or(old.min_rate_ratio),
        min_rate_difference: new.min_rate_difference.or(old.min_rate_difference),
    }
}

impl ControlPlane {
    /// Sets the app's `canary` feature. Enabling it needs the app in a pipeline's production
    /// stage (422 otherwise): canary releases are what the canary stage is for. Settings are
    /// checked as a canary's are (422 naming the field); a refusal changes nothing.
    pub async fn set_canary_feature(&self, app: &str, input: CanaryFeatureInput) -> Result<CanaryFeature, Error> {
        self.change(|m| {
            let a = m.app(app).ok_or_else(|| not_found("app", app))?;
            let key = m.app_key(a);
            let old = m.canary_feature_of(a.id);
            let enabled = input.enabled.or(old.map(|f| f.enabled)).unwrap_or(false);
            if enabled && m.coupling_of(a.id).is_none_or(|c| c.stage != Stage::Production) {
                return Err(Error::Invalid(format!(
                    "app {key} is not in a pipeline's production stage: only production apps have canary releases"
                )));
            }
            let base = old
                .map(|f| PolicyInput::from(f.policy.clone()))
                .unwrap_or(PolicyInput { weight: Some(DEFAULT_CANARY_WEIGHT), ..PolicyInput::default() });
            let policy =
                CanaryPolicy::try_from(merge(base, input.policy.clone())).map_err(|e| Error::Invalid(e.to_string()))?;
            let soak_requests = input.soak_requests.or(old.map(|f| f.soak_requests)).unwrap_or(DEFAULT_SOAK_REQUESTS);
            if soak_requests == 0 {
                return Err(Error::Invalid("soak_requests must be at least 1".into()));
            }
            let now = now_seconds();
            let f = CanaryFeature {
                id: a.id,
                enabled,
                policy,
                soak_requests,
                created_at: old.map_or(now, |f| f.created_at),
                updated_at: now,
            };
            Ok((f.clone(), vec![Change::Put(Object::CanaryFeature(f))]))
        })
        .await
    }
}
