//! `/apps/{app}/addons`, `/apps/{app}/features` and `/account/features`: the add-on and feature
//! lists of Heroku's Platform API, which the Heroku CLI's `apps:info` and `labs` read.
//!
//! Wharf has no add-ons yet, so an app's list is empty. Its features are the app-level switches
//! Wharf has, each `enabled` as the app's records say; they are changed through their own
//! resources (a canary through `/apps/{app}/canary`, internal routing through the space), not
//! through `PATCH /apps/{app}/features`.

use axum::extract::{Path, State};
use axum::response::IntoResponse;
use serde::Serialize;
use uuid::Uuid;

use super::wire::{ApiResult, Json, Plane};
use crate::plane::Error;

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

/// `GET /apps/{app}/features`: Wharf's app features, enabled as the app's records say.
pub(super) async fn list_app_features(State(plane): Plane, Path(app): Path<String>) -> ApiResult<impl IntoResponse> {
    let flags = plane.read(|m| m.app(&app).map(|a| (m.app_is_internal(a), m.canary_of(a.id).is_some()))).await;
    let (internal, canary) = flags.ok_or(Error::NotFound { what: "app", key: app })?;
    Ok(Json(vec![
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
            description: "A share of the app's requests goes to a canary app, aborted on its error rate.",
            doc_url: "",
            feedback_email: "",
            enabled: canary,
            state: "general",
        },
    ]))
}

/// `GET /account/features`: the account's features, none.
pub(super) async fn list_account_features() -> impl IntoResponse {
    Json(Vec::<()>::new())
}
