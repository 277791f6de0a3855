//! `/apps/{app}/addons`, `/apps/{app}/features` and `/account/features`: the add-on and feature
//! lists of Heroku's Platform API, which the Heroku CLI's `apps:info` and `labs` read.
//!
//! Wharf has no add-ons yet, so an app's list is empty. Its features are the app-level switches
//! Wharf has, each `enabled` as the app's records say. `canary` (automatic canary releases of a
//! production app, issue 22) is changed with `PATCH /apps/{app}/features/canary`, which also
//! takes its settings; `preview` (preview apps of a development app's pull requests) with
//! `PATCH /apps/{app}/features/preview` (`previews.rs`); internal routing is changed through
//! the app's space.

use axum::extract::{Path, State};
use axum::response::IntoResponse;
use serde::Serialize;
use uuid::Uuid;
use wharf_domain::{CanaryPolicy, PolicyInput, Weight};

use super::wire::{ApiError, ApiResult, Body, Json, Plane};
use crate::model::CanaryFeature;
use crate::plane::{CanaryFeatureInput, DEFAULT_CANARY_WEIGHT, DEFAULT_SOAK_REQUESTS, DEFAULT_SOAK_SECONDS, Error};

/// A feature in Heroku's app-feature shape.
#[derive(Serialize)]
pub(super) struct FeatureOut {
    id: Uuid,
    name: &'static str,
    display_name: &'static str,
    description: &'static str,
    doc_url: &'static str,
    feedback_email: &'static str,
    enabled: bool,
    state: &'static str,
}

/// `GET /apps/{app}/addons`: the app's add-ons, none (404 for an unknown app).
pub(super) async fn list_addons(State(plane): Plane, Path(app): Path<String>) -> ApiResult<impl IntoResponse> {
    let known = plane.read(|m| m.app(&app).is_some()).await;
    if !known {
        return Err(Error::NotFound { what: "app", key: app }.into());
    }
    Ok(Json(Vec::<()>::new()))
}

/// A feature with its settings: Heroku's shape, plus the canary's share, judge settings and
/// soak length for `canary` (absent for other features).
#[derive(Serialize)]
pub(super) struct FeatureWithSettings {
    #[serde(flatten)]
    feature: FeatureOut,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    canary: Option<CanarySettings>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    preview: Option<super::previews::PreviewSettings>,
}

/// The `canary` feature's settings: `docs/canary.md`'s policy fields, `soak_requests` and
/// `soak_seconds` (`null` when the soak does not wait for it).
#[derive(Serialize)]
pub(super) struct CanarySettings {
    #[serde(flatten)]
    policy: PolicyInput,
    soak_requests: Option<u64>,
    soak_seconds: Option<u64>,
}

/// The app's features, with the canary and preview features' settings (the defaults when never
/// set: for the canary's soak, a request count where this process has a router to count them,
/// else a time).
fn app_features(
    internal: bool,
    canary: Option<CanaryFeature>,
    preview: Option<&crate::model::PreviewFeature>,
    counts: bool,
) -> Vec<FeatureWithSettings> {
    let settings = match &canary {
        Some(f) => CanarySettings {
            policy: f.policy.clone().into(),
            soak_requests: f.soak_requests,
            soak_seconds: f.soak_seconds,
        },
        None => CanarySettings {
            policy: Weight::from_percent(DEFAULT_CANARY_WEIGHT)
                .map(|w| CanaryPolicy::with_weight(w).into())
                .unwrap_or_default(),
            soak_requests: counts.then_some(DEFAULT_SOAK_REQUESTS),
            soak_seconds: (!counts).then_some(DEFAULT_SOAK_SECONDS),
        },
    };
    let [a, b, c] = features(internal, canary.is_some_and(|f| f.enabled), preview.is_some_and(|f| f.enabled));
    vec![
        FeatureWithSettings { feature: a, canary: None, preview: None },
        FeatureWithSettings { feature: b, canary: Some(settings), preview: None },
        FeatureWithSettings { feature: c, canary: None, preview: Some(super::previews::PreviewSettings::of(preview)) },
    ]
}

/// The app's features and its canary feature, or 404 for an unknown app.
async fn read_features(plane: &crate::plane::ControlPlane, app: &str) -> ApiResult<Vec<FeatureWithSettings>> {
    let counts = plane.counts_canary_requests();
    let all = plane
        .read(|m| {
            let a = m.app(app)?;
            let (canary, preview) = (m.canary_feature_of(a.id).cloned(), m.preview_feature_of(a.id));
            Some(app_features(m.app_is_internal(a), canary, preview, counts))
        })
        .await;
    all.ok_or_else(|| Error::NotFound { what: "app", key: app.into() }.into())
}

/// `GET /apps/{app}/features`: Wharf's app features, enabled as the app's records say.
pub(super) async fn list_app_features(State(plane): Plane, Path(app): Path<String>) -> ApiResult<impl IntoResponse> {
    Ok(Json(read_features(&plane, &app).await?))
}

/// `GET /apps/{app}/features/{feature}`: one feature by name or id.
pub(super) async fn get_app_feature(
    State(plane): Plane,
    Path((app, feature)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    let all = read_features(&plane, &app).await?;
    let found = all.into_iter().find(|f| f.feature.name == feature || f.feature.id.to_string() == feature);
    Ok(Json(found.ok_or(Error::NotFound { what: "feature", key: feature })?))
}

/// `PATCH /apps/{app}/features/canary {"enabled", "weight"?, "soak_requests"?, "soak_seconds"?,
/// ...judge settings}`: automatic canary releases of a production app. Absent fields keep their
/// value; a soak field set to `null` is no longer waited for.
/// Other features are not changed here (422): internal routing follows the app's space.
pub(super) async fn patch_app_feature(
    State(plane): Plane,
    Path((app, feature)): Path<(String, String)>,
    Body(mut req): Body<serde_json::Map<String, serde_json::Value>>,
) -> ApiResult<impl IntoResponse> {
    let known = read_features(&plane, &app).await?;
    let Some(f) = known.iter().find(|f| f.feature.name == feature || f.feature.id.to_string() == feature) else {
        return Err(Error::NotFound { what: "feature", key: feature }.into());
    };
    if f.preview.is_some() {
        super::previews::patch_preview_feature(&plane, &app, req).await?;
        let all = read_features(&plane, &app).await?;
        return Ok(Json(all.into_iter().find(|f| f.preview.is_some())));
    }
    if f.canary.is_none() {
        return Err(ApiError::invalid(format!(
            "feature {} is not changed here: an app is internal when its space is",
            f.feature.name
        )));
    }
    let enabled = match req.remove("enabled") {
        None => None,
        Some(serde_json::Value::Bool(b)) => Some(b),
        Some(_) => return Err(ApiError::invalid("enabled must be true or false")),
    };
    // Absent keeps the setting, `null` drops the condition, a whole number sets it.
    let mut soak = |name: &str, unit: &str| match req.remove(name) {
        None => Ok(None),
        Some(serde_json::Value::Null) => Ok(Some(None)),
        Some(v) => match (v.as_u64(), v.as_f64()) {
            (Some(n), _) => Ok(Some(Some(n))),
            // A whole number past u64 (`1e30`, `18446744073709551616`) arrives as a float.
            (None, Some(f)) if f >= 1.0 && f.fract() == 0.0 => {
                Err(ApiError::invalid(format!("{name} is too large: at most {} {unit}", u64::MAX)))
            }
            _ => Err(ApiError::invalid(format!("{name} must be a whole number of {unit}, or null"))),
        },
    };
    let soak_requests = soak("soak_requests", "requests")?;
    let soak_seconds = soak("soak_seconds", "seconds")?;
    refuse_nulls(&req)?;
    // The judge's fields are `PolicyInput`'s, read as every body is (the field's path and JSON's
    // words); an unknown field's refusal names the three this handler took out too.
    let taken = ["enabled", "soak_requests", "soak_seconds"];
    let policy: PolicyInput = super::wire::from_json_value_without(serde_json::Value::Object(req), &taken)?;
    plane.set_canary_feature(&app, CanaryFeatureInput { enabled, soak_requests, soak_seconds, policy }).await?;
    let all = read_features(&plane, &app).await?;
    Ok(Json(all.into_iter().find(|f| f.canary.is_some())))
}

/// Refuses a judge's field given as `null` (422, naming it). Only a soak's fields have a
/// meaning for `null` (that condition is not waited for); a judge's fields have no "none",
/// and a `null` that kept (or defaulted) the value silently would look like a change that
/// was made. Leaving a field out keeps it (`PATCH`) or takes its default (`PUT`).
pub(super) fn refuse_nulls(req: &serde_json::Map<String, serde_json::Value>) -> ApiResult<()> {
    match req.iter().find(|(_, v)| v.is_null()) {
        Some((name, _)) => Err(ApiError::invalid(format!(
            "{name} cannot be null: null means a soak that is not waited for, so only soak_requests and \
             soak_seconds take it; leave {name} out instead"
        ))),
        None => Ok(()),
    }
}

/// Wharf's three app features, `internal-routing`, `canary` and `preview`, enabled as given.
fn features(internal: bool, canary: bool, preview: bool) -> [FeatureOut; 3] {
    [
        FeatureOut {
            id: Uuid::from_u128(0x7768_6172_6600_4000_8000_0000_0000_0101),
            name: "internal-routing",
            display_name: "Internal routing",
            description: "The app is served only on the router's internal listener (its space is `internal`).",
            doc_url: "",
            feedback_email: "",
            enabled: internal,
            state: "general",
        },
        FeatureOut {
            id: Uuid::from_u128(0x7768_6172_6600_4000_8000_0000_0000_0102),
            name: "canary",
            display_name: "Canary releases",
            description: "A new release first runs as a canary app taking a share of the app's requests, aborted on its error rate, and reaches the app after its soak.",
            doc_url: "",
            feedback_email: "",
            enabled: canary,
            state: "general",
        },
        FeatureOut {
            id: Uuid::from_u128(0x7768_6172_6600_4000_8000_0000_0000_0103),
            name: "preview",
            display_name: "Preview apps",
            description: "A signed GitHub pull_request event forks a development app into a review-stage preview app running the pull request's head commit, rebuilt on each push and deleted when the pull request closes or goes stale.",
            doc_url: "",
            feedback_email: "",
            enabled: preview,
            state: "general",
        },
    ]
}

/// `GET /account/features`: the account's features, none.
pub(super) async fn list_account_features() -> impl IntoResponse {
    Json(Vec::<()>::new())
}
