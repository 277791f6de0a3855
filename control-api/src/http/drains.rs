//! `/apps/{app}/log-drains` and `/sites/{site}/log-drains`: log drains of an app or of a site
//! (Heroku's log-drain resource: list, create, info, delete, by id or URL). Passwords in drain
//! URLs are shown as `****`. A TLS or HTTPS drain's own trusted CAs come in the body's `ca`
//! field as PEM, never as a server path (a URL's `ca=` is refused).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use wharf_domain::timestamp::format_seconds;
use wharf_domain::{DrainCa, DrainScheme, DrainUrl};

use super::wire::{ApiError, ApiResult, AppRef, Body, Json, Plane, SiteRef, app_ref, site_ref};
use crate::model::{Drain, Model, Owner};
use crate::plane::{ControlPlane, Drains, Error};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DrainCreate {
    url: String,
    /// PEM certificates the drain trusts beside the system's trust store (TLS and HTTPS drains).
    #[serde(default)]
    ca: Option<String>,
}

#[derive(Serialize)]
pub(super) struct DrainOut {
    id: Uuid,
    /// With any password replaced by `****`.
    url: String,
    token: String,
    /// Whether the drain has its own trusted CAs (the PEM is not echoed back).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    ca: bool,
    addon: Option<()>,
    #[serde(skip_serializing_if = "Option::is_none")]
    app: Option<AppRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    site: Option<SiteRef>,
    created_at: String,
    updated_at: String,
}

fn drain_out(m: &Model, d: &Drain) -> Option<DrainOut> {
    let (app, site) = match d.owner {
        Owner::App(id) => (Some(app_ref(m, m.app(&id.to_string())?)), None),
        Owner::Site(id) => {
            let s = m.site_by_id(id)?;
            (None, Some(site_ref(s)))
        }
    };
    Some(DrainOut {
        id: d.id,
        url: d.url.redacted(),
        token: d.token.clone(),
        ca: d.ca.is_some(),
        addon: None,
        app,
        site,
        created_at: format_seconds(d.created_at),
        updated_at: format_seconds(d.updated_at),
    })
}

pub(super) async fn drains_list(plane: &ControlPlane, of: Drains<'_>) -> ApiResult<Json<Vec<DrainOut>>> {
    let out = plane
        .read(|m| Ok::<_, Error>(m.drains_of(of.owner(m)?).into_iter().filter_map(|d| drain_out(m, d)).collect()))
        .await?;
    Ok(Json(out))
}

pub(super) async fn drains_get(plane: &ControlPlane, of: Drains<'_>, drain: &str) -> ApiResult<Json<Option<DrainOut>>> {
    let out = plane
        .read(|m| {
            let d = m.drain(of.owner(m)?, drain).ok_or(Error::NotFound { what: "log drain", key: drain.into() })?;
            Ok::<_, Error>(drain_out(m, d))
        })
        .await?;
    Ok(Json(out))
}

pub(super) async fn drains_add(
    plane: &ControlPlane,
    of: Drains<'_>,
    req: DrainCreate,
) -> ApiResult<impl IntoResponse + use<>> {
    let url = DrainUrl::try_new(&req.url).map_err(ApiError::invalid)?;
    let ca = match req.ca {
        None => None,
        Some(_) if !matches!(url.scheme(), DrainScheme::SyslogTls | DrainScheme::Https) => {
            return Err(ApiError::invalid("ca is for syslog+tls and https drains only"));
        }
        Some(pem) => Some(DrainCa::try_new(&pem).map_err(ApiError::invalid)?),
    };
    let d = plane.add_drain_with_ca(of, url, ca).await?;
    let out = plane.read(|m| drain_out(m, &d)).await;
    Ok((StatusCode::CREATED, Json(out)))
}

pub(super) async fn drains_delete(
    plane: &ControlPlane,
    of: Drains<'_>,
    drain: &str,
) -> ApiResult<Json<Option<DrainOut>>> {
    let out = plane.read(|m| of.owner(m).ok().and_then(|o| m.drain(o, drain)).and_then(|d| drain_out(m, d))).await;
    plane.delete_drain(of, drain).await?;
    Ok(Json(out))
}

pub(super) async fn list_drains(State(plane): Plane, Path(app): Path<String>) -> ApiResult<impl IntoResponse> {
    drains_list(&plane, Drains::App(&app)).await
}

pub(super) async fn get_drain(
    State(plane): Plane,
    Path((app, drain)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    drains_get(&plane, Drains::App(&app), &drain).await
}

pub(super) async fn create_drain(
    State(plane): Plane,
    Path(app): Path<String>,
    Body(req): Body<DrainCreate>,
) -> ApiResult<impl IntoResponse> {
    drains_add(&plane, Drains::App(&app), req).await
}

pub(super) async fn delete_drain(
    State(plane): Plane,
    Path((app, drain)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    drains_delete(&plane, Drains::App(&app), &drain).await
}

pub(super) async fn list_site_drains(State(plane): Plane, Path(site): Path<String>) -> ApiResult<impl IntoResponse> {
    drains_list(&plane, Drains::Site(&site)).await
}

pub(super) async fn get_site_drain(
    State(plane): Plane,
    Path((site, drain)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    drains_get(&plane, Drains::Site(&site), &drain).await
}

pub(super) async fn create_site_drain(
    State(plane): Plane,
    Path(site): Path<String>,
    Body(req): Body<DrainCreate>,
) -> ApiResult<impl IntoResponse> {
    drains_add(&plane, Drains::Site(&site), req).await
}

pub(super) async fn delete_site_drain(
    State(plane): Plane,
    Path((site, drain)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    drains_delete(&plane, Drains::Site(&site), &drain).await
}
