//! `/apps/{app}/canary` and `POST /v1/canary-verdicts`: canaries (another app taking a share of
//! an app's requests, judged by the routers), their promotion and abort, and routers' verdicts.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;
use wharf_domain::timestamp::format_seconds;
use wharf_domain::{CanaryEvidence, CanaryPolicy, PolicyInput};

use super::wire::{ApiError, ApiResult, AppRef, Body, Json, Plane, app_ref};
use crate::model::{Canary, Model};
use crate::plane::{ControlPlane, Error};

/// `POST /v1/canary-verdicts`: a router elsewhere reports that it aborted a canary, so that
/// every router follows. The first verdict of a running canary is recorded; later ones change
/// nothing.
pub(super) async fn post_verdict(
    State(plane): Plane,
    Body(verdict): Body<wharf_domain::CanaryVerdict>,
) -> ApiResult<impl IntoResponse> {
    let recorded = plane.record_verdict(verdict).await?.is_some();
    Ok(Json(json!({ "recorded": recorded })))
}

#[derive(Serialize)]
pub(super) struct CanaryOut {
    id: Uuid,
    app: AppRef,
    canary_app: AppRef,
    state: &'static str,
    #[serde(flatten)]
    policy: PolicyInput,
    /// Live counts while running; the decision's once aborted.
    evidence: Option<CanaryEvidence>,
    created_at: String,
    updated_at: String,
}

fn canary_out(plane: &ControlPlane, m: &Model, c: &Canary) -> Option<CanaryOut> {
    let (app, canary) = (m.app(&c.app_id.to_string())?, m.app(&c.canary_app_id.to_string())?);
    Some(CanaryOut {
        id: c.id,
        app: app_ref(m, app),
        canary_app: app_ref(m, canary),
        state: c.state.as_str(),
        policy: c.policy.clone().into(),
        evidence: plane.canary_evidence_in(m, c),
        created_at: format_seconds(c.created_at),
        updated_at: format_seconds(c.updated_at),
    })
}

/// The canary as stored now, for a response.
pub(super) async fn canary_response(plane: &ControlPlane, c: &Canary) -> ApiResult<Json<CanaryOut>> {
    let out = plane.read(|m| canary_out(plane, m, c)).await;
    out.map(Json).ok_or_else(|| Error::NotFound { what: "canary", key: c.id.to_string() }.into())
}

pub(super) async fn get_canary(State(plane): Plane, Path(app): Path<String>) -> ApiResult<impl IntoResponse> {
    let c = plane.read(|m| m.app(&app).and_then(|a| m.canary_of(a.id)).cloned()).await;
    match c {
        Some(c) => canary_response(&plane, &c).await,
        None => Err(Error::NotFound { what: "canary of app", key: app }.into()),
    }
}

/// `{"canary_app": ..., "weight": ..., ...}`: the canary app beside the policy's fields, which
/// reject anything unknown.
pub(super) async fn put_canary(
    State(plane): Plane,
    Path(app): Path<String>,
    Body(mut req): Body<serde_json::Map<String, serde_json::Value>>,
) -> ApiResult<impl IntoResponse> {
    let canary_app = match req.remove("canary_app") {
        Some(serde_json::Value::String(s)) => s,
        Some(_) => return Err(ApiError::invalid("canary_app must be a string: the canary app's id or name")),
        None => return Err(ApiError::invalid("canary_app is required: the canary app's id or name")),
    };
    super::features::refuse_nulls(&req)?;
    let policy: CanaryPolicy = super::wire::from_json_value(serde_json::Value::Object(req))?;
    let (c, created) = plane.put_canary(&app, &canary_app, policy).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, canary_response(&plane, &c).await?))
}

/// `POST /apps/{app}/canary/promote`: promotes the app's canary; for an automatic canary
/// release still `starting` (no split yet), passes that release and answers with it.
pub(super) async fn promote_canary(State(plane): Plane, Path(app): Path<String>) -> ApiResult<Response> {
    if let Some(out) = end_starting(&plane, &app, true).await? {
        return Ok(out);
    }
    let c = plane.promote_canary(&app).await?;
    Ok(canary_response(&plane, &c).await?.into_response())
}

/// `DELETE /apps/{app}/canary`: aborts the app's canary; for an automatic canary release still
/// `starting` (no split yet), aborts that release and answers with it.
pub(super) async fn delete_canary(State(plane): Plane, Path(app): Path<String>) -> ApiResult<Response> {
    if let Some(out) = end_starting(&plane, &app, false).await? {
        return Ok(out);
    }
    let c = plane.abort_canary(&app).await?;
    Ok(canary_response(&plane, &c).await?.into_response())
}

/// Ends the app's `starting` canary release by hand ([`ControlPlane::end_starting_canary_release`]),
/// answering with it as `GET /apps/{app}/canary-releases/{id}` shows it; `None` when there is none.
async fn end_starting(plane: &ControlPlane, app: &str, passed: bool) -> ApiResult<Option<Response>> {
    let Some(done) = plane.end_starting_canary_release(app, passed).await? else { return Ok(None) };
    let out = plane.read(|m| super::canary_releases::canary_release_out(m, &done)).await;
    Ok(Some(Json(out).into_response()))
}
