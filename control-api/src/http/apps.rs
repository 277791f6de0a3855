//! `/apps`: apps, each in one space, named `app-space` (Heroku's and Akkeris' app resource:
//! list, create, info, rename, delete). An app's `web_url` is `https://app-space.<stack domain>/`.
//!
//! Heroku clients create apps without a space and then address them by the name they gave: an
//! app in the `default` space also answers to its bare name ([`crate::model::Model::app`]), and
//! a create without a name gets a generated one. The answer carries the fields of Heroku's app
//! resource that the Heroku CLI reads (`owner`, `region`, `stack`, ...), filled with what Wharf
//! has: one region (`local`), one stack (`wharf`), no git or slug storage.
//!
//! `maintenance` is Heroku's maintenance mode (`PATCH {"maintenance": true}`): the router then
//! answers the app's requests with 503 and a page, logged as `code=H80`. `maintenance_page`
//! (Wharf's) shows the page the app names in `MAINTENANCE_PAGE_URL` and how its fetch went.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use wharf_domain::AppName;
use wharf_domain::timestamp::format_seconds;

use super::account::{OwnerRef, owner_ref};
use super::wire::{ApiError, ApiResult, Body, Json, NamedRef, Plane, REGION, STACK, TEAM};
use crate::model::{App, DEFAULT_SPACE, Model};
use crate::plane::{ControlPlane, Error};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AppCreate {
    /// Absent: Wharf picks one.
    name: Option<String>,
    #[serde(default = "default_space")]
    space: String,
}

fn default_space() -> String {
    DEFAULT_SPACE.into()
}

/// `POST /teams/apps`: what the Heroku CLI's `apps:create --space S` (or `--team T`) sends.
/// Wharf has one team, region and stack, so those may only name them; its spaces' compliance
/// decides internal routing, so `internal_routing` must agree with the space.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TeamAppCreate {
    /// Absent: Wharf picks one.
    name: Option<String>,
    /// Absent: the default space.
    space: Option<String>,
    /// Wharf's one team, by name or id, if given.
    team: Option<String>,
    /// Wharf's one region, by name or id, if given.
    region: Option<String>,
    /// Wharf's one stack, by name or id, if given.
    stack: Option<String>,
    /// Whether the app is to be internal: only as its space is.
    internal_routing: Option<bool>,
    /// Heroku's locked apps: not a Wharf notion, refused when true.
    locked: Option<bool>,
    /// Heroku's kernel choice: not a Wharf notion, refused when given.
    kernel: Option<String>,
    /// Heroku's feature flags at creation: refused when any is given.
    feature_flags: Option<Vec<String>>,
}

/// Refuses a name or id that is not `fixed`'s.
fn check_fixed(what: &str, given: Option<&str>, fixed: NamedRef) -> ApiResult<()> {
    match given {
        Some(g) if g != fixed.name && g != fixed.id.to_string() => {
            Err(ApiError::invalid(format!("Wharf has one {what}, {}; not {g:?}", fixed.name)))
        }
        _ => Ok(()),
    }
}

/// `PATCH /apps/{app}`: what may change.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AppUpdate {
    /// The new short name; the app stays in its space.
    name: Option<String>,
    /// Heroku's maintenance mode (the CLI's `maintenance:on` and `maintenance:off`): a JSON
    /// boolean, anything else is a 422.
    maintenance: Option<bool>,
}

/// The app's own maintenance page, as the app's JSON shows it (Wharf's; Heroku's app resource
/// has no such field): the `MAINTENANCE_PAGE_URL` it names and how its last fetch went.
#[derive(Serialize)]
pub(super) struct MaintenancePageOut {
    url: String,
    /// `fetched` (the router serves it while the app is in maintenance), `stale` (the last
    /// fetch failed, `error` says why, and the copy an earlier fetch of the same URL got is
    /// served), `failed` (the default page stands; `error` says why) or `pending` (not fetched
    /// yet for this URL).
    status: &'static str,
    error: Option<String>,
    bytes: Option<usize>,
    fetched_at: Option<String>,
}

fn maintenance_page_out(m: &Model, a: &App) -> Option<MaintenancePageOut> {
    let url = m.maintenance_page_url(a.id)?;
    let fetch = a.maintenance_page.as_ref().filter(|p| p.url == url);
    let status = match fetch {
        None => "pending",
        Some(p) if p.html.is_some() && p.error.is_some() => "stale",
        Some(p) if p.html.is_some() => "fetched",
        Some(_) => "failed",
    };
    Some(MaintenancePageOut {
        url: url.to_owned(),
        status,
        error: fetch.and_then(|p| p.error.clone()),
        bytes: fetch.and_then(|p| p.html.as_ref().map(String::len)),
        fetched_at: fetch.map(|p| format_seconds(p.fetched_at)),
    })
}

#[derive(Serialize)]
pub(super) struct AppOut {
    id: Uuid,
    name: String,
    simple_name: String,
    space: SpaceRef,
    owner: OwnerRef,
    region: NamedRef,
    stack: NamedRef,
    build_stack: NamedRef,
    internal_routing: bool,
    maintenance: bool,
    maintenance_page: Option<MaintenancePageOut>,
    acm: bool,
    create_status: &'static str,
    git_url: Option<String>,
    repo_size: u64,
    slug_size: u64,
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
        region: REGION,
        stack: STACK,
        build_stack: STACK,
        internal_routing: m.app_is_internal(a),
        maintenance: a.maintenance,
        maintenance_page: maintenance_page_out(m, a),
        acm: false,
        create_status: "complete",
        git_url: None,
        repo_size: 0,
        slug_size: 0,
        created_at: format_seconds(a.created_at),
        updated_at: format_seconds(a.updated_at),
    }
}

pub(super) async fn list_apps(State(plane): Plane) -> impl IntoResponse {
    Json(plane.read(|m| m.apps().map(|a| app_out(&plane, m, a)).collect::<Vec<_>>()).await)
}

/// `GET /teams/{team}/apps`: every app, since every space belongs to Wharf's one team ([`TEAM`]);
/// the Heroku CLI's `apps --space` asks for the space's team's apps and keeps the space's own.
pub(super) async fn list_team_apps(State(plane): Plane, Path(team): Path<String>) -> ApiResult<impl IntoResponse> {
    if team != TEAM.name && team != TEAM.id.to_string() {
        return Err(Error::NotFound { what: "team", key: team }.into());
    }
    Ok(Json(plane.read(|m| m.apps().map(|a| app_out(&plane, m, a)).collect::<Vec<_>>()).await))
}

pub(super) async fn get_app(State(plane): Plane, Path(app): Path<String>) -> ApiResult<impl IntoResponse> {
    let out = plane.read(|m| m.app(&app).map(|a| app_out(&plane, m, a))).await;
    out.map(axum::Json).ok_or_else(|| Error::NotFound { what: "app", key: app }.into())
}

pub(super) async fn create_app(State(plane): Plane, Body(req): Body<AppCreate>) -> ApiResult<impl IntoResponse> {
    let name = req.name.as_deref().map(AppName::try_new).transpose().map_err(ApiError::invalid)?;
    let app = plane.create_app_named(name, &req.space).await?;
    let out = plane.read(|m| app_out(&plane, m, &app)).await;
    Ok((StatusCode::CREATED, Json(out)))
}

/// `POST /teams/apps`: creates an app in a space of Wharf's one team, as `POST /apps` does, after
/// checking the Heroku fields Wharf has one of. Refused (422) with nothing changed otherwise.
pub(super) async fn create_team_app(
    State(plane): Plane,
    Body(req): Body<TeamAppCreate>,
) -> ApiResult<impl IntoResponse> {
    check_fixed("team", req.team.as_deref(), TEAM)?;
    check_fixed("region", req.region.as_deref(), REGION)?;
    check_fixed("stack", req.stack.as_deref(), STACK)?;
    if req.locked == Some(true) || req.kernel.is_some() || req.feature_flags.as_ref().is_some_and(|f| !f.is_empty()) {
        return Err(ApiError::invalid("Wharf has no locked apps, kernels or creation feature flags"));
    }
    let name = req.name.as_deref().map(AppName::try_new).transpose().map_err(ApiError::invalid)?;
    let space = req.space.unwrap_or_else(default_space);
    if let Some(internal) = req.internal_routing {
        let is_internal = plane
            .read(|m| m.space(&space).map(|s| s.compliance.contains(&crate::model::Compliance::Internal)))
            .await
            .ok_or(Error::NotFound { what: "space", key: space.clone() })?;
        if internal != is_internal {
            return Err(ApiError::invalid(format!(
                "internal_routing is {is_internal} for every app of space {space}: it follows the space's compliance"
            )));
        }
    }
    let app = plane.create_app_named(name, &space).await?;
    let out = plane.read(|m| app_out(&plane, m, &app)).await;
    Ok((StatusCode::CREATED, Json(out)))
}

/// `PATCH /apps/{app}` `{"name": "new", "maintenance": true}` (Heroku's app update): renames the
/// app within its space and turns maintenance mode on or off, in one change. An invalid name is
/// a 422, a taken one a 409, a maintenance that is not a boolean a 422; each changes nothing.
/// Turning maintenance on fetches the app's `MAINTENANCE_PAGE_URL` again in the background, so
/// a page edited since it was last fetched is the one served.
pub(super) async fn update_app(
    State(plane): Plane,
    Path(app): Path<String>,
    Body(req): Body<AppUpdate>,
) -> ApiResult<impl IntoResponse> {
    let name = req.name.as_deref().map(AppName::try_new).transpose().map_err(ApiError::invalid)?;
    let app = plane.update_app(&app, name, req.maintenance).await?;
    if req.maintenance == Some(true) {
        tokio::spawn(plane.clone().refresh_maintenance_page(app.id));
    }
    Ok(Json(plane.read(|m| app_out(&plane, m, &app)).await))
}

pub(super) async fn delete_app(State(plane): Plane, Path(app): Path<String>) -> ApiResult<impl IntoResponse> {
    // Build the response while the app's space is still known.
    let out = plane.read(|m| m.app(&app).map(|a| app_out(&plane, m, a))).await;
    plane.delete_app(&app).await?;
    Ok(Json(out))
}
