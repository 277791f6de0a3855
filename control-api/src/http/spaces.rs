//! `/spaces`: spaces, the groups of apps that share a network and compliance flags (Akkeris'
//! spaces API: `GET`, `POST /spaces`, `GET /spaces/{space}`). A space also carries the fields of
//! Heroku's space resource the Heroku CLI reads: its `team` (Wharf's one team), `region`,
//! `state` (always `allocated`: a space is ready when created) and `shield`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use wharf_domain::SpaceName;
use wharf_domain::timestamp::format_seconds;

use super::wire::{ApiError, ApiResult, Body, Json, NamedRef, Plane, REGION, TEAM};
use crate::model::{Compliance, Space};
use crate::plane::Error;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SpaceCreate {
    name: String,
    #[serde(default)]
    compliance: Vec<Compliance>,
}

#[derive(Serialize)]
pub(super) struct SpaceOut {
    id: Uuid,
    name: String,
    compliance: Vec<Compliance>,
    team: NamedRef,
    region: NamedRef,
    state: &'static str,
    shield: bool,
    created_at: String,
    updated_at: String,
}

fn space_out(s: &Space) -> SpaceOut {
    SpaceOut {
        id: s.id,
        name: s.name.to_string(),
        compliance: s.compliance.clone(),
        team: TEAM,
        region: REGION,
        state: "allocated",
        shield: false,
        created_at: format_seconds(s.created_at),
        updated_at: format_seconds(s.updated_at),
    }
}

pub(super) async fn list_spaces(State(plane): Plane) -> impl IntoResponse {
    Json(plane.read(|m| m.spaces().map(space_out).collect::<Vec<_>>()).await)
}

pub(super) async fn get_space(State(plane): Plane, Path(space): Path<String>) -> ApiResult<impl IntoResponse> {
    let out = plane.read(|m| m.space(&space).map(space_out)).await;
    out.map(axum::Json).ok_or_else(|| Error::NotFound { what: "space", key: space }.into())
}

pub(super) async fn create_space(State(plane): Plane, Body(req): Body<SpaceCreate>) -> ApiResult<impl IntoResponse> {
    let name = SpaceName::try_new(&req.name).map_err(ApiError::invalid)?;
    let space = plane.create_space(name, req.compliance).await?;
    Ok((StatusCode::CREATED, Json(space_out(&space))))
}
