//! `/apps/{app}/formation`: how many dynos of each type an app runs, and how (Heroku's formation
//! resource: list, info, batch update, update; plus delete of one type).

use axum::extract::{Path, State};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use wharf_domain::DynoType;
use wharf_domain::timestamp::format_seconds;

use super::wire::{ApiError, ApiResult, AppRef, Body, Json, Plane, app_ref};
use crate::model::{Formation, Model};
use crate::plane::{ControlPlane, Error, FormationUpdate};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FormationPatch {
    #[serde(default)]
    quantity: Option<u32>,
    #[serde(default)]
    command: Option<String>,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    healthcheck: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FormationBatchItem {
    #[serde(rename = "type")]
    dyno_type: String,
    #[serde(default)]
    quantity: Option<u32>,
    #[serde(default)]
    command: Option<String>,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    healthcheck: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FormationBatch {
    updates: Vec<FormationBatchItem>,
}

#[derive(Serialize)]
pub(super) struct FormationOut {
    id: Uuid,
    #[serde(rename = "type")]
    dyno_type: String,
    quantity: u32,
    command: Option<String>,
    port: Option<u16>,
    healthcheck: Option<String>,
    size: &'static str,
    app: AppRef,
    created_at: String,
    updated_at: String,
}

fn formation_out(m: &Model, f: &Formation) -> Option<FormationOut> {
    let app = m.app(&f.app_id.to_string())?;
    Some(FormationOut {
        id: f.id,
        dyno_type: f.dyno_type.to_string(),
        quantity: f.quantity,
        command: f.command.clone(),
        port: f.port,
        healthcheck: f.healthcheck.clone(),
        size: "standard",
        app: app_ref(m, app),
        created_at: format_seconds(f.created_at),
        updated_at: format_seconds(f.updated_at),
    })
}

fn formation_update(dyno_type: &str, p: FormationPatch) -> ApiResult<FormationUpdate> {
    let dyno_type = DynoType::try_new(dyno_type).map_err(ApiError::invalid)?;
    Ok(FormationUpdate {
        dyno_type,
        quantity: p.quantity,
        command: p.command,
        port: p.port,
        healthcheck: p.healthcheck,
    })
}

pub(super) async fn list_formation(State(plane): Plane, Path(app): Path<String>) -> ApiResult<impl IntoResponse> {
    let out = plane
        .read(|m| {
            m.app(&app)
                .map(|a| m.formation_of(a.id).into_iter().filter_map(|f| formation_out(m, f)).collect::<Vec<_>>())
        })
        .await;
    out.map(Json).ok_or_else(|| Error::NotFound { what: "app", key: app }.into())
}

pub(super) async fn get_formation(
    State(plane): Plane,
    Path((app, ty)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    let out = plane
        .read(|m| {
            let a = m.app(&app).ok_or(Error::NotFound { what: "app", key: app.clone() })?;
            let f = m.formation_of(a.id).into_iter().find(|f| f.dyno_type.as_str() == ty);
            let f = f.ok_or(Error::NotFound { what: "formation", key: ty.clone() })?;
            Ok::<_, Error>(formation_out(m, f))
        })
        .await?;
    out.map(Json).ok_or_else(|| Error::NotFound { what: "app", key: app }.into())
}

pub(super) async fn formation_response(plane: &ControlPlane, updated: Vec<Formation>) -> Vec<FormationOut> {
    plane.read(|m| updated.iter().filter_map(|f| formation_out(m, f)).collect()).await
}

pub(super) async fn patch_formation(
    State(plane): Plane,
    Path(app): Path<String>,
    Body(req): Body<FormationBatch>,
) -> ApiResult<impl IntoResponse> {
    let updates = req
        .updates
        .into_iter()
        .map(|u| {
            let patch =
                FormationPatch { quantity: u.quantity, command: u.command, port: u.port, healthcheck: u.healthcheck };
            formation_update(&u.dyno_type, patch)
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let updated = plane.update_formation(&app, updates).await?;
    Ok(Json(formation_response(&plane, updated).await))
}

pub(super) async fn patch_formation_type(
    State(plane): Plane,
    Path((app, ty)): Path<(String, String)>,
    Body(req): Body<FormationPatch>,
) -> ApiResult<impl IntoResponse> {
    let updated = plane.update_formation(&app, vec![formation_update(&ty, req)?]).await?;
    let mut out = formation_response(&plane, updated).await;
    out.pop().map(Json).ok_or_else(|| Error::NotFound { what: "app", key: app }.into())
}

pub(super) async fn delete_formation(
    State(plane): Plane,
    Path((app, ty)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    let out = plane
        .read(|m| {
            let a = m.app(&app)?;
            m.formation_of(a.id).into_iter().find(|f| f.dyno_type.as_str() == ty).and_then(|f| formation_out(m, f))
        })
        .await;
    plane.delete_formation(&app, &ty).await?;
    out.map(Json).ok_or_else(|| Error::NotFound { what: "formation", key: ty }.into())
}
