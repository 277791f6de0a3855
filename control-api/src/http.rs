//! The REST edge: routes, bearer-token auth, JSON wire types, and Heroku's error shape.
//!
//! This is the only module that knows JSON. Request bodies are parsed into wire structs that
//! reject unknown fields, then into domain values; responses are built from the model. Every
//! refusal is `{"id": "...", "message": "..."}` with a 4xx status, and changes nothing.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;
use wharf_bus::Publisher;
use wharf_domain::timestamp::{format_seconds, now_seconds};
use wharf_domain::{
    AppName, CanaryEvidence, CanaryPolicy, Certificate, DrainUrl, DynoName, DynoType, Hostname, PolicyInput, RoutePath,
    SiteDomain, SpaceName,
};

use crate::model::{App, Canary, Cert, Compliance, Drain, Dyno, Formation, Model, Owner, Route, Site, Space};
use crate::plane::{ControlPlane, Drains, Error, FormationUpdate, LocalDyno};

/// A JSON response body, ending in a newline so that it reads well in a terminal.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        match serde_json::to_vec(&self.0) {
            Ok(mut body) => {
                body.push(b'\n');
                ([(header::CONTENT_TYPE, "application/json")], body).into_response()
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot serialize a response");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        }
    }
}

/// A refusal, as Heroku's Platform API shapes it.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    id: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, id: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, id, message: message.into() }
    }

    pub(crate) fn invalid(message: impl std::fmt::Display) -> Self {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_params", message.to_string())
    }

    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "id": self.id, "message": self.message }))).into_response()
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::NotFound { .. } => ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string()),
            Error::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            Error::Invalid(m) => ApiError::invalid(m),
            Error::Store(e) => {
                tracing::error!(error = %e, "control api storage failed");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "service_unavailable",
                    "storage is unavailable; nothing was changed",
                )
            }
        }
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// A JSON request body: malformed JSON is a 400, and well-formed JSON of the wrong shape
/// (unknown fields, wrong types, missing fields) a 422. An empty body reads as `{}`.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "request body is too large")
            } else {
                ApiError::new(StatusCode::BAD_REQUEST, "bad_request", format!("cannot read request body: {e}"))
            }
        })?;
        let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { &bytes };
        serde_json::from_slice(bytes).map(Body).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => ApiError::invalid(e),
            _ => ApiError::new(StatusCode::BAD_REQUEST, "bad_request", format!("malformed JSON: {e}")),
        })
    }
}

/// The bearer tokens the API accepts: the admin token, allowed everything, and an optional
/// data-plane token, allowed only the snapshot feed that remote routers and logshuttles follow.
#[derive(Clone)]
pub struct AdminToken {
    admin: Arc<str>,
    data_plane: Option<Arc<str>>,
}

/// Compares in time independent of where the first difference is.
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl AdminToken {
    /// The admin token alone.
    pub fn new(token: &str) -> Self {
        AdminToken { admin: token.into(), data_plane: None }
    }

    /// Also accepts `token` for the data-plane feed (`/v1/snapshot`), and nothing else.
    pub fn with_data_plane(mut self, token: &str) -> Self {
        self.data_plane = Some(token.into());
        self
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(****)")
    }
}

async fn require_token(State(token): State<AdminToken>, headers: HeaderMap, req: Request, next: Next) -> Response {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    let data_plane = given.zip(token.data_plane.as_deref()).is_some_and(|(t, d)| same(t, d));
    match given {
        Some(t) if same(t, &token.admin) => next.run(req).await,
        Some(_) if data_plane && req.uri().path().starts_with("/v1/") => next.run(req).await,
        Some(_) if data_plane => ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this token may only use the data-plane endpoints (/v1/snapshot, /v1/canary-verdicts); use the admin token",
        )
        .into_response(),
        Some(_) => {
            ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "invalid credentials provided").into_response()
        }
        None => ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "an Authorization: Bearer token is required")
            .into_response(),
    }
}

/// The control API's routes. `extra` routes (the logshuttle's live tails in `wharf serve`) are
/// served beside them without the admin token: their URLs carry their own signed grant. With a
/// `publisher`, `POST /log-events` puts platform components' lines onto the log bus.
pub fn router(
    plane: Arc<ControlPlane>,
    token: AdminToken,
    max_body: usize,
    extra: Option<Router>,
    publisher: Option<Publisher>,
) -> Router {
    let mut api = Router::new();
    if let Some(publisher) = publisher {
        api = api.route("/log-events", post(move |plane, body| crate::ingest::post(plane, publisher.clone(), body)));
    }
    let api = api
        .route("/spaces", get(list_spaces).post(create_space))
        .route("/spaces/{space}", get(get_space))
        .route("/apps", get(list_apps).post(create_app))
        .route("/apps/{app}", get(get_app).delete(delete_app))
        .route("/apps/{app}/dynos", get(list_dynos).delete(restart_dynos))
        .route("/apps/{app}/formation", get(list_formation).patch(patch_formation))
        .route("/apps/{app}/formation/{type}", get(get_formation).patch(patch_formation_type).delete(delete_formation))
        .route("/apps/{app}/config-vars", get(get_config_vars).patch(patch_config_vars))
        .route("/apps/{app}/dynos/{dyno}", get(get_dyno).put(put_dyno).delete(delete_dyno))
        .route("/apps/{app}/log-drains", get(list_drains).post(create_drain))
        .route("/apps/{app}/log-drains/{drain}", get(get_drain).delete(delete_drain))
        .route("/apps/{app}/log-sessions", post(create_log_session))
        .route("/apps/{app}/routes", get(list_app_routes))
        .route("/apps/{app}/canary", get(get_canary).put(put_canary).delete(delete_canary))
        .route("/apps/{app}/canary/promote", post(promote_canary))
        .route("/sites", get(list_sites).post(create_site))
        .route("/sites/{site}", get(get_site).delete(delete_site))
        .route("/sites/{site}/routes", get(list_site_routes).post(create_site_route))
        .route("/sites/{site}/log-drains", get(list_site_drains).post(create_site_drain))
        .route("/sites/{site}/log-drains/{drain}", get(get_site_drain).delete(delete_site_drain))
        .route("/routes", get(list_routes).post(create_route))
        .route("/routes/{route}", get(get_route).delete(delete_route))
        .route("/certs", get(list_certs).post(create_cert))
        .route("/certs/{cert}", get(get_cert).delete(delete_cert))
        .route("/v1/snapshot", get(crate::watch::snapshot))
        .route("/v1/snapshot/watch", get(crate::watch::stream))
        .route("/v1/canary-verdicts", post(post_verdict))
        .route_layer(axum::middleware::from_fn_with_state(token, require_token))
        .route("/healthz", get(healthz))
        .route("/openapi.json", get(openapi))
        .with_state(plane);
    let app = match extra {
        Some(extra) => api.merge(extra),
        None => api,
    };
    app.fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not support that method",
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
}

type Plane = State<Arc<ControlPlane>>;

/// The OpenAPI document of every endpoint (`control-api/openapi/`), kept true by tests/openapi.rs.
pub const OPENAPI: &str = include_str!("../openapi/openapi.json");

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

async fn healthz(State(plane): Plane) -> impl IntoResponse {
    let version = plane.read(Model::version).await;
    Json(json!({ "status": "ok", "version": version }))
}

// ---- spaces ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpaceCreate {
    name: String,
    #[serde(default)]
    compliance: Vec<Compliance>,
}

#[derive(Serialize)]
struct SpaceOut {
    id: Uuid,
    name: String,
    compliance: Vec<Compliance>,
    created_at: String,
    updated_at: String,
}

fn space_out(s: &Space) -> SpaceOut {
    SpaceOut {
        id: s.id,
        name: s.name.to_string(),
        compliance: s.compliance.clone(),
        created_at: format_seconds(s.created_at),
        updated_at: format_seconds(s.updated_at),
    }
}

async fn list_spaces(State(plane): Plane) -> impl IntoResponse {
    Json(plane.read(|m| m.spaces().map(space_out).collect::<Vec<_>>()).await)
}

async fn get_space(State(plane): Plane, Path(space): Path<String>) -> ApiResult<impl IntoResponse> {
    let out = plane.read(|m| m.space(&space).map(space_out)).await;
    out.map(axum::Json).ok_or_else(|| Error::NotFound { what: "space", key: space }.into())
}

async fn create_space(State(plane): Plane, Body(req): Body<SpaceCreate>) -> ApiResult<impl IntoResponse> {
    let name = SpaceName::try_new(&req.name).map_err(ApiError::invalid)?;
    let space = plane.create_space(name, req.compliance).await?;
    Ok((StatusCode::CREATED, Json(space_out(&space))))
}

// ---- apps ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AppCreate {
    name: String,
    #[serde(default = "default_space")]
    space: String,
}

fn default_space() -> String {
    "default".into()
}

#[derive(Serialize)]
struct AppOut {
    id: Uuid,
    name: String,
    simple_name: String,
    space: SpaceRef,
    web_url: String,
    created_at: String,
    updated_at: String,
}

#[derive(Serialize)]
struct SpaceRef {
    id: Uuid,
    name: String,
}

#[derive(Serialize)]
struct AppRef {
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
        created_at: format_seconds(a.created_at),
        updated_at: format_seconds(a.updated_at),
    }
}

fn app_ref(m: &Model, a: &App) -> AppRef {
    AppRef { id: a.id, name: m.app_key(a).to_string() }
}

async fn list_apps(State(plane): Plane) -> impl IntoResponse {
    Json(plane.read(|m| m.apps().map(|a| app_out(&plane, m, a)).collect::<Vec<_>>()).await)
}

async fn get_app(State(plane): Plane, Path(app): Path<String>) -> ApiResult<impl IntoResponse> {
    let out = plane.read(|m| m.app(&app).map(|a| app_out(&plane, m, a))).await;
    out.map(axum::Json).ok_or_else(|| Error::NotFound { what: "app", key: app }.into())
}

async fn create_app(State(plane): Plane, Body(req): Body<AppCreate>) -> ApiResult<impl IntoResponse> {
    let name = AppName::try_new(&req.name).map_err(ApiError::invalid)?;
    let app = plane.create_app(name, &req.space).await?;
    let out = plane.read(|m| app_out(&plane, m, &app)).await;
    Ok((StatusCode::CREATED, Json(out)))
}

async fn delete_app(State(plane): Plane, Path(app): Path<String>) -> ApiResult<impl IntoResponse> {
    // Build the response while the app's space is still known.
    let out = plane.read(|m| m.app(&app).map(|a| app_out(&plane, m, a))).await;
    plane.delete_app(&app).await?;
    Ok(Json(out))
}

// ---- dynos ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DynoPut {
    #[serde(rename = "type")]
    dyno_type: String,
    host: String,
    port: u32,
}

#[derive(Serialize)]
struct DynoOut {
    /// A registered dyno's id; a dyno of the local supervisor that is not registered (a worker,
    /// or a web dyno before its health check passes) has none.
    id: Option<Uuid>,
    name: String,
    #[serde(rename = "type")]
    dyno_type: String,
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    app: AppRef,
    created_at: String,
    updated_at: String,
}

/// A registered dyno, with the state the local supervisor reports if it runs it.
fn dyno_out(m: &Model, d: &Dyno, local: Option<&LocalDyno>) -> Option<DynoOut> {
    let app = m.app(&d.app_id.to_string())?;
    Some(DynoOut {
        id: Some(d.id),
        name: d.name.to_string(),
        dyno_type: d.dyno_type.to_string(),
        state: local.map_or("up", |l| l.state.as_str()),
        host: Some(d.host.to_string()),
        port: Some(d.port),
        app: app_ref(m, app),
        created_at: format_seconds(d.created_at),
        updated_at: format_seconds(d.updated_at),
    })
}

/// A dyno the local supervisor runs that is not registered.
fn local_dyno_out(m: &Model, app: &App, d: &LocalDyno) -> DynoOut {
    DynoOut {
        id: None,
        name: d.name.clone(),
        dyno_type: d.dyno_type.to_string(),
        state: d.state.as_str(),
        host: None,
        port: None,
        app: app_ref(m, app),
        created_at: format_seconds(d.started_at),
        updated_at: format_seconds(d.started_at),
    }
}

/// An app's dynos: those registered, and those the local supervisor runs, once each.
fn dynos_out(plane: &ControlPlane, m: &Model, app: &App) -> Vec<DynoOut> {
    let local = plane.local_dynos().of(app.id);
    let registered = m.dynos_of(app.id);
    let mut out: Vec<DynoOut> =
        registered.iter().filter_map(|d| dyno_out(m, d, local.iter().find(|l| l.name == d.name.as_str()))).collect();
    let unregistered = local.iter().filter(|l| !registered.iter().any(|d| d.name.as_str() == l.name));
    out.extend(unregistered.map(|l| local_dyno_out(m, app, l)));
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

async fn list_dynos(State(plane): Plane, Path(app): Path<String>) -> ApiResult<impl IntoResponse> {
    let out = plane.read(|m| m.app(&app).map(|a| dynos_out(&plane, m, a))).await;
    out.map(axum::Json).ok_or_else(|| Error::NotFound { what: "app", key: app }.into())
}

async fn get_dyno(State(plane): Plane, Path((app, dyno)): Path<(String, String)>) -> ApiResult<impl IntoResponse> {
    let out = plane
        .read(|m| {
            let a = m.app(&app).ok_or(Error::NotFound { what: "app", key: app.clone() })?;
            dynos_out(&plane, m, a)
                .into_iter()
                .find(|d| d.name == dyno)
                .ok_or(Error::NotFound { what: "dyno", key: dyno.clone() })
        })
        .await?;
    Ok(Json(out))
}

async fn put_dyno(
    State(plane): Plane,
    Path((app, dyno)): Path<(String, String)>,
    Body(req): Body<DynoPut>,
) -> ApiResult<impl IntoResponse> {
    let name = DynoName::try_new(&dyno).map_err(ApiError::invalid)?;
    let dyno_type = DynoType::try_new(&req.dyno_type).map_err(ApiError::invalid)?;
    let host = Hostname::try_new(&req.host).map_err(ApiError::invalid)?;
    let port = u16::try_from(req.port)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| ApiError::invalid(format!("port {} is not between 1 and 65535", req.port)))?;
    let (d, created) = plane.put_dyno(&app, name, dyno_type, host, port).await?;
    let out = plane.read(|m| dyno_out(m, &d, None)).await;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(out)))
}

/// Restarts a dyno the local supervisor runs (202), or removes one an external runtime
/// registered (200).
async fn delete_dyno(State(plane): Plane, Path((app, dyno)): Path<(String, String)>) -> ApiResult<Response> {
    let out =
        plane.read(|m| m.app(&app).and_then(|a| dynos_out(&plane, m, a).into_iter().find(|d| d.name == dyno))).await;
    if plane.supervised(&app).await? {
        plane.restart_dynos(&app, Some(&dyno)).await?;
        return Ok((StatusCode::ACCEPTED, Json(out)).into_response());
    }
    plane.delete_dyno(&app, &dyno).await?;
    Ok(Json(out).into_response())
}

/// Restarts every dyno of an app the local supervisor runs, rolling, as Heroku's
/// `DELETE /apps/{app}/dynos` does.
async fn restart_dynos(State(plane): Plane, Path(app): Path<String>) -> ApiResult<impl IntoResponse> {
    plane.restart_dynos(&app, None).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({}))))
}

// ---- log drains ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DrainCreate {
    url: String,
}

#[derive(Serialize)]
struct DrainOut {
    id: Uuid,
    /// With any password replaced by `****`.
    url: String,
    token: String,
    addon: Option<()>,
    #[serde(skip_serializing_if = "Option::is_none")]
    app: Option<AppRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    site: Option<SiteRef>,
    created_at: String,
    updated_at: String,
}

#[derive(Serialize)]
struct SiteRef {
    id: Uuid,
    domain: String,
}

fn site_ref(s: &Site) -> SiteRef {
    SiteRef { id: s.id, domain: s.domain.to_string() }
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
        addon: None,
        app,
        site,
        created_at: format_seconds(d.created_at),
        updated_at: format_seconds(d.updated_at),
    })
}

async fn drains_list(plane: &ControlPlane, of: Drains<'_>) -> ApiResult<Json<Vec<DrainOut>>> {
    let out = plane
        .read(|m| Ok::<_, Error>(m.drains_of(of.owner(m)?).into_iter().filter_map(|d| drain_out(m, d)).collect()))
        .await?;
    Ok(Json(out))
}

async fn drains_get(plane: &ControlPlane, of: Drains<'_>, drain: &str) -> ApiResult<Json<Option<DrainOut>>> {
    let out = plane
        .read(|m| {
            let d = m.drain(of.owner(m)?, drain).ok_or(Error::NotFound { what: "log drain", key: drain.into() })?;
            Ok::<_, Error>(drain_out(m, d))
        })
        .await?;
    Ok(Json(out))
}

async fn drains_add(plane: &ControlPlane, of: Drains<'_>, req: DrainCreate) -> ApiResult<impl IntoResponse + use<>> {
    let url = DrainUrl::try_new(&req.url).map_err(ApiError::invalid)?;
    let d = plane.add_drain(of, url).await?;
    let out = plane.read(|m| drain_out(m, &d)).await;
    Ok((StatusCode::CREATED, Json(out)))
}

async fn drains_delete(plane: &ControlPlane, of: Drains<'_>, drain: &str) -> ApiResult<Json<Option<DrainOut>>> {
    let out = plane.read(|m| of.owner(m).ok().and_then(|o| m.drain(o, drain)).and_then(|d| drain_out(m, d))).await;
    plane.delete_drain(of, drain).await?;
    Ok(Json(out))
}

async fn list_drains(State(plane): Plane, Path(app): Path<String>) -> ApiResult<impl IntoResponse> {
    drains_list(&plane, Drains::App(&app)).await
}

async fn get_drain(State(plane): Plane, Path((app, drain)): Path<(String, String)>) -> ApiResult<impl IntoResponse> {
    drains_get(&plane, Drains::App(&app), &drain).await
}

async fn create_drain(
    State(plane): Plane,
    Path(app): Path<String>,
    Body(req): Body<DrainCreate>,
) -> ApiResult<impl IntoResponse> {
    drains_add(&plane, Drains::App(&app), req).await
}

async fn delete_drain(State(plane): Plane, Path((app, drain)): Path<(String, String)>) -> ApiResult<impl IntoResponse> {
    drains_delete(&plane, Drains::App(&app), &drain).await
}

async fn list_site_drains(State(plane): Plane, Path(site): Path<String>) -> ApiResult<impl IntoResponse> {
    drains_list(&plane, Drains::Site(&site)).await
}

async fn get_site_drain(
    State(plane): Plane,
    Path((site, drain)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    drains_get(&plane, Drains::Site(&site), &drain).await
}

async fn create_site_drain(
    State(plane): Plane,
    Path(site): Path<String>,
    Body(req): Body<DrainCreate>,
) -> ApiResult<impl IntoResponse> {
    drains_add(&plane, Drains::Site(&site), req).await
}

async fn delete_site_drain(
    State(plane): Plane,
    Path((site, drain)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    drains_delete(&plane, Drains::Site(&site), &drain).await
}

// ---- log sessions ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogSessionCreate {
    #[serde(default = "default_lines")]
    lines: u32,
    #[serde(default)]
    tail: bool,
    source: Option<String>,
    dyno: Option<String>,
}

fn default_lines() -> u32 {
    100
}

async fn create_log_session(
    State(plane): Plane,
    Path(app): Path<String>,
    Body(req): Body<LogSessionCreate>,
) -> ApiResult<impl IntoResponse> {
    for (field, value) in [("source", &req.source), ("dyno", &req.dyno)] {
        if value.as_ref().is_some_and(|v| v.is_empty() || v.len() > 255 || !v.bytes().all(|c| c.is_ascii_graphic())) {
            return Err(ApiError::invalid(format!("{field} must be 1 to 255 printable characters without spaces")));
        }
    }
    let session = plane.create_log_session(&app, req.lines, req.tail, req.source, req.dyno).await?;
    let now = format_seconds(wharf_domain::timestamp::now_seconds());
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "id": session.grant.id,
            "logplex_url": session.url,
            "created_at": now,
            "updated_at": now,
        })),
    ))
}

// ---- sites and routes ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SiteCreate {
    domain: String,
    #[serde(default)]
    internal: bool,
}

#[derive(Serialize)]
struct SiteOut {
    id: Uuid,
    domain: String,
    internal: bool,
    /// Akkeris' spelling of `internal`.
    compliance: Vec<Compliance>,
    created_at: String,
    updated_at: String,
}

fn site_out(s: &Site) -> SiteOut {
    SiteOut {
        id: s.id,
        domain: s.domain.to_string(),
        internal: s.internal,
        compliance: if s.internal { vec![Compliance::Internal] } else { vec![] },
        created_at: format_seconds(s.created_at),
        updated_at: format_seconds(s.updated_at),
    }
}

async fn list_sites(State(plane): Plane) -> impl IntoResponse {
    Json(plane.read(|m| m.sites().map(site_out).collect::<Vec<_>>()).await)
}

async fn get_site(State(plane): Plane, Path(site): Path<String>) -> ApiResult<impl IntoResponse> {
    let out = plane.read(|m| m.site(&site).map(site_out)).await;
    out.map(Json).ok_or_else(|| Error::NotFound { what: "site", key: site }.into())
}

async fn create_site(State(plane): Plane, Body(req): Body<SiteCreate>) -> ApiResult<impl IntoResponse> {
    let domain = SiteDomain::try_new(&req.domain).map_err(ApiError::invalid)?;
    let site = plane.create_site(domain, req.internal).await?;
    Ok((StatusCode::CREATED, Json(site_out(&site))))
}

async fn delete_site(State(plane): Plane, Path(site): Path<String>) -> ApiResult<impl IntoResponse> {
    let s = plane.delete_site(&site).await?;
    Ok(Json(site_out(&s)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteCreate {
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
struct RouteOut {
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

async fn list_routes(State(plane): Plane) -> impl IntoResponse {
    Json(plane.read(|m| routes_out(m, |_| true)).await)
}

async fn list_site_routes(State(plane): Plane, Path(site): Path<String>) -> ApiResult<impl IntoResponse> {
    let out = plane.read(|m| m.site(&site).map(|s| routes_out(m, |r| r.site_id == s.id))).await;
    out.map(Json).ok_or_else(|| Error::NotFound { what: "site", key: site }.into())
}

async fn list_app_routes(State(plane): Plane, Path(app): Path<String>) -> ApiResult<impl IntoResponse> {
    let out = plane.read(|m| m.app(&app).map(|a| routes_out(m, |r| r.app_id == a.id))).await;
    out.map(Json).ok_or_else(|| Error::NotFound { what: "app", key: app }.into())
}

async fn get_route(State(plane): Plane, Path(route): Path<String>) -> ApiResult<impl IntoResponse> {
    let out = plane.read(|m| route.parse().ok().and_then(|id| m.route(id)).and_then(|r| route_out(m, r))).await;
    out.map(Json).ok_or_else(|| Error::NotFound { what: "route", key: route }.into())
}

async fn add_route(plane: &ControlPlane, site: &str, req: RouteCreate) -> ApiResult<(StatusCode, Json<RouteOut>)> {
    let parse = |field: &str, v: &str| RoutePath::try_new(v).map_err(|e| ApiError::invalid(format!("{field}: {e}")));
    let source = parse("source_path", &req.source_path)?;
    let target = parse("target_path", &req.target_path)?;
    let r = plane.create_route(site, &req.app, source, target).await?;
    let out = plane.read(|m| route_out(m, &r)).await;
    let out = out.ok_or_else(|| ApiError::new(StatusCode::CONFLICT, "conflict", "the route was removed meanwhile"))?;
    Ok((StatusCode::CREATED, Json(out)))
}

async fn create_route(State(plane): Plane, Body(req): Body<RouteCreate>) -> ApiResult<impl IntoResponse> {
    let Some(site) = req.site.clone() else {
        return Err(ApiError::invalid("missing field `site`"));
    };
    add_route(&plane, &site, req).await
}

async fn create_site_route(
    State(plane): Plane,
    Path(site): Path<String>,
    Body(req): Body<RouteCreate>,
) -> ApiResult<impl IntoResponse> {
    if req.site.as_ref().is_some_and(|s| s != &site) {
        return Err(ApiError::invalid(format!("site in the body ({:?}) is not the site in the path", req.site)));
    }
    add_route(&plane, &site, req).await
}

async fn delete_route(State(plane): Plane, Path(route): Path<String>) -> ApiResult<impl IntoResponse> {
    let out = plane.read(|m| route.parse().ok().and_then(|id| m.route(id)).and_then(|r| route_out(m, r))).await;
    plane.delete_route(&route).await?;
    Ok(Json(out))
}

// ---- certificates ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CertCreate {
    /// PEM, leaf first.
    certificate_chain: String,
    /// PEM; stored, never returned.
    private_key: String,
}

#[derive(Serialize)]
struct CertOut {
    id: Uuid,
    domains: Vec<String>,
    subject: String,
    issuer: String,
    fingerprint_sha256: String,
    starts_at: String,
    expires_at: String,
    created_at: String,
    updated_at: String,
}

fn cert_out(c: &Cert) -> CertOut {
    let cert = &c.certificate;
    CertOut {
        id: c.id,
        domains: cert.names().iter().map(|n| n.to_string()).collect(),
        subject: cert.subject().to_owned(),
        issuer: cert.issuer().to_owned(),
        fingerprint_sha256: cert.fingerprint().to_owned(),
        starts_at: format_seconds(cert.not_before()),
        expires_at: format_seconds(cert.not_after()),
        created_at: format_seconds(c.created_at),
        updated_at: format_seconds(c.updated_at),
    }
}

async fn list_certs(State(plane): Plane) -> impl IntoResponse {
    Json(plane.read(|m| m.certs().map(cert_out).collect::<Vec<_>>()).await)
}

async fn get_cert(State(plane): Plane, Path(cert): Path<String>) -> ApiResult<impl IntoResponse> {
    let out = plane.read(|m| m.cert(&cert).map(cert_out)).await;
    out.map(Json).ok_or_else(|| Error::NotFound { what: "certificate", key: cert }.into())
}

async fn create_cert(State(plane): Plane, Body(req): Body<CertCreate>) -> ApiResult<impl IntoResponse> {
    let certificate =
        Certificate::try_new(&req.certificate_chain, &req.private_key, now_seconds()).map_err(ApiError::invalid)?;
    let c = plane.add_cert(certificate).await?;
    Ok((StatusCode::CREATED, Json(cert_out(&c))))
}

async fn delete_cert(State(plane): Plane, Path(cert): Path<String>) -> ApiResult<impl IntoResponse> {
    Ok(Json(cert_out(&plane.delete_cert(&cert).await?)))
}

// ---- canaries ----

/// `POST /v1/canary-verdicts`: a router elsewhere reports that it aborted a canary, so that
/// every router follows. The first verdict of a running canary is recorded; later ones change
/// nothing.
async fn post_verdict(
    State(plane): Plane,
    Body(verdict): Body<wharf_domain::CanaryVerdict>,
) -> ApiResult<impl IntoResponse> {
    let recorded = plane.record_verdict(verdict).await?.is_some();
    Ok(Json(json!({ "recorded": recorded })))
}

#[derive(Serialize)]
struct CanaryOut {
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
        evidence: plane.canary_evidence(c),
        created_at: format_seconds(c.created_at),
        updated_at: format_seconds(c.updated_at),
    })
}

/// The canary as stored now, for a response.
async fn canary_response(plane: &ControlPlane, c: &Canary) -> ApiResult<Json<CanaryOut>> {
    let out = plane.read(|m| canary_out(plane, m, c)).await;
    out.map(Json).ok_or_else(|| Error::NotFound { what: "canary", key: c.id.to_string() }.into())
}

async fn get_canary(State(plane): Plane, Path(app): Path<String>) -> ApiResult<impl IntoResponse> {
    let c = plane.read(|m| m.app(&app).and_then(|a| m.canary_of(a.id)).cloned()).await;
    match c {
        Some(c) => canary_response(&plane, &c).await,
        None => Err(Error::NotFound { what: "canary of app", key: app }.into()),
    }
}

/// `{"canary_app": ..., "weight": ..., ...}`: the canary app beside the policy's fields, which
/// reject anything unknown.
async fn put_canary(
    State(plane): Plane,
    Path(app): Path<String>,
    Body(mut req): Body<serde_json::Map<String, serde_json::Value>>,
) -> ApiResult<impl IntoResponse> {
    let canary_app = match req.remove("canary_app") {
        Some(serde_json::Value::String(s)) => s,
        Some(_) => return Err(ApiError::invalid("canary_app must be a string: the canary app's id or name")),
        None => return Err(ApiError::invalid("canary_app is required: the canary app's id or name")),
    };
    let policy: CanaryPolicy = serde_json::from_value(serde_json::Value::Object(req)).map_err(ApiError::invalid)?;
    let (c, created) = plane.put_canary(&app, &canary_app, policy).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, canary_response(&plane, &c).await?))
}

async fn promote_canary(State(plane): Plane, Path(app): Path<String>) -> ApiResult<impl IntoResponse> {
    let c = plane.promote_canary(&app).await?;
    canary_response(&plane, &c).await
}

async fn delete_canary(State(plane): Plane, Path(app): Path<String>) -> ApiResult<impl IntoResponse> {
    let c = plane.abort_canary(&app).await?;
    canary_response(&plane, &c).await
}

// ---- formation ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FormationPatch {
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
struct FormationBatchItem {
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
struct FormationBatch {
    updates: Vec<FormationBatchItem>,
}

#[derive(Serialize)]
struct FormationOut {
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

async fn list_formation(State(plane): Plane, Path(app): Path<String>) -> ApiResult<impl IntoResponse> {
    let out = plane
        .read(|m| {
            m.app(&app)
                .map(|a| m.formation_of(a.id).into_iter().filter_map(|f| formation_out(m, f)).collect::<Vec<_>>())
        })
        .await;
    out.map(Json).ok_or_else(|| Error::NotFound { what: "app", key: app }.into())
}

async fn get_formation(State(plane): Plane, Path((app, ty)): Path<(String, String)>) -> ApiResult<impl IntoResponse> {
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

async fn formation_response(plane: &ControlPlane, updated: Vec<Formation>) -> Vec<FormationOut> {
    plane.read(|m| updated.iter().filter_map(|f| formation_out(m, f)).collect()).await
}

async fn patch_formation(
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

async fn patch_formation_type(
    State(plane): Plane,
    Path((app, ty)): Path<(String, String)>,
    Body(req): Body<FormationPatch>,
) -> ApiResult<impl IntoResponse> {
    let updated = plane.update_formation(&app, vec![formation_update(&ty, req)?]).await?;
    let mut out = formation_response(&plane, updated).await;
    out.pop().map(Json).ok_or_else(|| Error::NotFound { what: "app", key: app }.into())
}

async fn delete_formation(
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

// ---- config vars ----

/// Shown instead of a sensitive value in a `socs` space.
const REDACTED: &str = "[redacted]";

/// Whether a config var's name marks it sensitive: its value is hidden in `socs` spaces.
fn sensitive(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ["PASSWORD", "SECRET", "TOKEN", "KEY", "PRIVATE", "CREDENTIAL"].iter().any(|w| upper.contains(w))
}

/// An app's config vars as the API shows them: in a `socs` space, sensitive values redacted.
fn config_vars_out(
    m: &Model,
    app: &App,
    vars: &std::collections::BTreeMap<String, String>,
) -> serde_json::Map<String, serde_json::Value> {
    let socs = m.app_space(app).compliance.contains(&Compliance::Socs);
    vars.iter()
        .map(|(k, v)| {
            let shown = if socs && sensitive(k) { REDACTED } else { v.as_str() };
            (k.clone(), serde_json::Value::String(shown.to_owned()))
        })
        .collect()
}

async fn get_config_vars(State(plane): Plane, Path(app): Path<String>) -> ApiResult<impl IntoResponse> {
    let out = plane
        .read(|m| {
            let a = m.app(&app)?;
            let empty = std::collections::BTreeMap::new();
            let vars = m.config_vars_of(a.id).map_or(&empty, |c| &c.vars);
            Some(config_vars_out(m, a, vars))
        })
        .await;
    out.map(Json).ok_or_else(|| Error::NotFound { what: "app", key: app }.into())
}

async fn patch_config_vars(
    State(plane): Plane,
    Path(app): Path<String>,
    Body(req): Body<std::collections::BTreeMap<String, Option<String>>>,
) -> ApiResult<impl IntoResponse> {
    let vars = plane.update_config_vars(&app, req).await?;
    let out = plane.read(|m| m.app(&app).map(|a| config_vars_out(m, a, &vars))).await;
    out.map(Json).ok_or_else(|| Error::NotFound { what: "app", key: app }.into())
}
