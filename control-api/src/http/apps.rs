//! `/apps`: apps, each in one space, named `app-space` (Heroku's and Akkeris' app resource:
//! list, create, info, delete). An app's `web_url` is `https://app-space.<stack domain>/`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use wharf_domain::AppName;
use wharf_domain::timestamp::format_seconds;

use super::account::{OwnerRef, owner_ref};
use super::wire::{ApiError, ApiResult, Body, Json, Plane};
use crate::model::{App, Model};
use crate::plane::{ControlPlane, Error};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AppCreate {
    name: String,
    #[serde(default = "default_space")]
    space: String,
}

fn default_space() -> String {
    "default".into()
}

#[derive(Serialize)]
pub(super) struct AppOut {
    id: Uuid,
    name: String,
    simple_name: String,
    space: SpaceRef,
    owner: OwnerRef,
    web_url: String,
    created_at: String,
    updated_at: String,
}

#[derive(Serialize)]
pub(super) struct SpaceRef {
    id: Uuid,
    name: String,
}

fn app_out(plane: &ControlPlane, m: &Model, a: &App) -> AppOut {
    let key = m.app_key(a);
    let space = m.app_space(a);
    let s = plane.settings();
    let port = if s.https_port == 443 { String::new() } else { format!(":{}", s.https_port) };
    AppOut {
        id: a.id,
        web_url: format!("https://{key}.{}{port}/", s.stack_domain),
        name: key.to_string(),
        simple_name: a.name.to_string(),
        space: SpaceRef { id: space.id, name: space.name.to_string() },
        owner: owner_ref(plane),
        created_at: format_seconds(a.created_at),
        updated_at: format_seconds(a.updated_at),
    }
}

pub(super) async fn list_apps(State(plane): Plane) -> impl IntoResponse {
    Json(plane.read(|m| m.apps().map(|a| app_out(&plane, m, a)).collect::<Vec<_>>()).await)
}

pub(super) async fn get_app(State(plane): Plane, Path(app): Path<String>) -> ApiResult<impl IntoResponse> {
    let out = plane.read(|m| m.app(&app).map(|a| app_out(&plane, m, a))).await;
    out.map(axum::Json).ok_or_else(|| Error::NotFound { what: "app", key: app }.into())
}

pub(super) async fn create_app(State(plane): Plane, Body(req): Body<AppCreate>) -> ApiResult<impl IntoResponse> {
    let name = AppName::try_new(&req.name).map_err(ApiError::invalid)?;
    let app = plane.create_app(name, &req.space).await?;
    let out = plane.read(|m| app_out(&plane, m, &app)).await;
    Ok((StatusCode::CREATED, Json(out)))
}

pub(super) async fn delete_app(State(plane): Plane, Path(app): Path<String>) -> ApiResult<impl IntoResponse> {
    // Build the response while the app's space is still known.
    let out = plane.read(|m| m.app(&app).map(|a| app_out(&plane, m, a))).await;
    plane.delete_app(&app).await?;
    Ok(Json(out))
}
