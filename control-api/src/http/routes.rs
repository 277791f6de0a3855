//! `/routes`, `/sites/{site}/routes` and `/apps/{app}/routes`: routes, a site's path prefix sent
//! to an app under another prefix (Akkeris' routes API).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use wharf_domain::RoutePath;
use wharf_domain::timestamp::format_seconds;

use super::wire::{ApiError, ApiResult, AppRef, Body, Json, Plane, SiteRef, app_ref, site_ref};
use crate::model::{Model, Route};
use crate::plane::{ControlPlane, Error};
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RouteCreate {
    /// Required on `POST /routes`; taken from the path on `POST /sites/{site}/routes`.
    site: Option<String>,
    app: String,
    source_path: String,
    #[serde(default = "root")]
    target_path: String,
}

fn root() -> String {
    "/".into()
}

#[derive(Serialize)]
pub(super) struct RouteOut {
    id: Uuid,
    /// Always false: routes take effect with the snapshot the change publishes.
    pending: bool,
    app: AppRef,
    site: SiteRef,
    source_path: String,
    target_path: String,
    created_at: String,
    updated_at: String,
}

fn route_out(m: &Model, r: &Route) -> Option<RouteOut> {
    let app = m.app(&r.app_id.to_string())?;
    let site = m.site_by_id(r.site_id)?;
    Some(RouteOut {
        id: r.id,
        pending: false,
        app: app_ref(m, app),
        site: site_ref(site),
        source_path: r.source_path.to_string(),
        target_path: r.target_path.to_string(),
        created_at: format_seconds(r.created_at),
        updated_at: format_seconds(r.updated_at),
    })
}

fn routes_out(m: &Model, keep: impl Fn(&Route) -> bool) -> Vec<RouteOut> {
    m.routes_where(keep).into_iter().filter_map(|r| route_out(m, r)).collect()
}

pub(super) async fn list_routes(State(plane): Plane) -> impl IntoResponse {
    Json(plane.read(|m| routes_out(m, |_| true)).await)
}

pub(super) async fn list_site_routes(State(plane): Plane, Path(site): Path<String>) -> ApiResult<impl IntoResponse> {
    let out = plane.read(|m| m.site(&site).map(|s| routes_out(m, |r| r.site_id == s.id))).await;
    out.map(Json).ok_or_else(|| Error::NotFound { what: "site", key: site }.into())
}

pub(super) async fn list_app_routes(State(plane): Plane, Path(app): Path<String>) -> ApiResult<impl IntoResponse> {
    let out = plane.read(|m| m.app(&app).map(|a| routes_out(m, |r| r.app_id == a.id))).await;
    out.map(Json).ok_or_else(|| Error::NotFound { what: "app", key: app }.into())
}

pub(super) async fn get_route(State(plane): Plane, Path(route): Path<String>) -> ApiResult<impl IntoResponse> {
    let out = plane.read(|m| route.parse().ok().and_then(|id| m.route(id)).and_then(|r| route_out(m, r))).await;
    out.map(Json).ok_or_else(|| Error::NotFound { what: "route", key: route }.into())
}

pub(super) async fn add_route(
    plane: &ControlPlane,
    site: &str,
    req: RouteCreate,
) -> ApiResult<(StatusCode, Json<RouteOut>)> {
    let parse = |field: &str, v: &str| RoutePath::try_new(v).map_err(|e| ApiError::invalid(format!("{field}: {e}")));
    let source = parse("source_path", &req.source_path)?;
    let target = parse("target_path", &req.target_path)?;
    let r = plane.create_route(site, &req.app, source, target).await?;
    let out = plane.read(|m| route_out(m, &r)).await;
    let out = out.ok_or_else(|| ApiError::new(StatusCode::CONFLICT, "conflict", "the route was removed meanwhile"))?;
    Ok((StatusCode::CREATED, Json(out)))
}

pub(super) async fn create_route(State(plane): Plane, Body(req): Body<RouteCreate>) -> ApiResult<impl IntoResponse> {
    let Some(site) = req.site.clone() else {
        return Err(ApiError::invalid("missing field `site`"));
    };
    add_route(&plane, &site, req).await
}

pub(super) async fn create_site_route(
    State(plane): Plane,
    Path(site): Path<String>,
    Body(req): Body<RouteCreate>,
) -> ApiResult<impl IntoResponse> {
    if req.site.as_ref().is_some_and(|s| s != &site) {
        return Err(ApiError::invalid(format!("site in the body ({:?}) is not the site in the path", req.site)));
    }
    add_route(&plane, &site, req).await
}

pub(super) async fn delete_route(State(plane): Plane, Path(route): Path<String>) -> ApiResult<impl IntoResponse> {
    let out = plane.read(|m| route.parse().ok().and_then(|id| m.route(id)).and_then(|r| route_out(m, r))).await;
    plane.delete_route(&route).await?;
    Ok(Json(out))
}
