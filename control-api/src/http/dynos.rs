//! `/apps/{app}/dynos`: an app's dynos, both those an external runtime registered with their
//! endpoint and those the local supervisor runs (Heroku's dyno resource: list, info, restart,
//! stop; and restart or stop of one type through `/apps/{app}/formations/{type}`), plus `PUT`
//! to register an endpoint. A dyno is addressed by its name, its id or Heroku's `type.N`
//! ([`ControlPlane::dyno_name`]); `DELETE` and `actions/stop` also take a process type, as the
//! Heroku CLI's `ps:restart worker` and `ps:stop worker` send it, and then restart or stop every
//! dyno of the type ([`ControlPlane::restart_type_named`]).
//!
//! Stopping a dyno of the formation is restarting it: as on Heroku, the formation starts a
//! replacement at once, so `actions/stop` answers as a restart does.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;
use wharf_domain::timestamp::format_seconds;
use wharf_domain::{DynoName, DynoType, Hostname};

use super::wire::{ApiError, ApiResult, AppRef, Body, Json, Plane, app_ref};
use crate::model::{App, Dyno, Model};
use crate::plane::{ControlPlane, DynoDeletion, DynoRelease, DynoState, Error, LocalDyno, local_dyno_id};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DynoPut {
    #[serde(rename = "type")]
    dyno_type: String,
    host: String,
    port: u32,
}

#[derive(Serialize)]
pub(super) struct DynoOut {
    /// A registered dyno's id; a dyno of the local supervisor that is not registered (a worker,
    /// a release phase `release.N`, a one-off, or a web dyno before its health check passes)
    /// has the one its app and name give ([`local_dyno_id`]), the same in every listing and in the
    /// answer to a one-off's creation.
    id: Uuid,
    name: String,
    #[serde(rename = "type")]
    dyno_type: String,
    state: &'static str,
    /// The command the dyno runs: its release's for its type (during a roll, old dynos show
    /// the old release's), a one-off's own, or the formation's for a dyno with no release.
    command: Option<String>,
    /// Heroku's dyno size: the formation entry's, or the configured default.
    size: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    app: AppRef,
    /// The release the dyno runs (Heroku's `{id, version}`): as the local supervisor reports it,
    /// or for an external runtime's dyno, the app's current release. Left out for an app with no
    /// release (a database older than releases): the Heroku CLI reads `release.version` whenever
    /// `release` is there, even `null`, and handles it missing.
    #[serde(skip_serializing_if = "Option::is_none")]
    release: Option<ReleaseRef>,
    created_at: String,
    updated_at: String,
}

/// A release as a dyno embeds it.
#[derive(Serialize)]
pub(super) struct ReleaseRef {
    id: Uuid,
    version: u32,
}

impl From<DynoRelease> for ReleaseRef {
    fn from(r: DynoRelease) -> Self {
        ReleaseRef { id: r.id, version: r.version }
    }
}

/// The release an external runtime's dyno is taken to run: the app's current one.
fn current_release_ref(m: &Model, app_id: Uuid) -> Option<ReleaseRef> {
    m.current_release(app_id).map(|r| ReleaseRef { id: r.id, version: r.version })
}

/// An environment value as clients send it: a string, or a number (the Heroku CLI's `COLUMNS`).
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum EnvValue {
    Text(String),
    Number(serde_json::Number),
}

/// `POST /apps/{app}/dynos`: a one-off dyno, as the Heroku CLI's `run:detached` asks for one.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DynoCreate {
    command: String,
    /// Only `false`: Wharf has no rendezvous to attach a terminal through.
    #[serde(default)]
    attach: Option<bool>,
    /// Variables on top of the app's config vars.
    #[serde(default)]
    env: Option<std::collections::BTreeMap<String, Option<EnvValue>>>,
    /// A configured dyno size.
    #[serde(default)]
    size: Option<String>,
    /// Only `run`, Heroku's one-off type.
    #[serde(default, rename = "type")]
    dyno_type: Option<String>,
    /// A terminal option of attached runs; nothing to do for a detached one.
    #[serde(default)]
    force_no_tty: Option<bool>,
}

/// `POST /apps/{app}/dynos`: runs a one-off dyno detached under the local supervisor; its output
/// is in the app's log stream as `run.N`, and it is gone when it exits. `attach: true` is a 422:
/// there is no rendezvous service to attach a terminal through.
pub(super) async fn create_dyno(
    State(plane): Plane,
    Path(app): Path<String>,
    Body(req): Body<DynoCreate>,
) -> ApiResult<Response> {
    let _ = req.force_no_tty;
    if req.attach == Some(true) {
        return Err(ApiError::invalid(
            "attached one-off dynos are not supported: Wharf has no rendezvous; use run:detached and heroku logs",
        ));
    }
    if let Some(t) = req.dyno_type.as_deref().filter(|t| *t != "run") {
        return Err(ApiError::invalid(format!("a one-off dyno is of type run, not {t:?}")));
    }
    let env = req
        .env
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(k, v)| {
            v.map(|v| match v {
                EnvValue::Text(s) => (k, s),
                EnvValue::Number(n) => (k, n.to_string()),
            })
        })
        .collect();
    let name = plane.run_detached(&app, &req.command, env, req.size.as_deref()).await?;
    let out = plane
        .read(|m| {
            let a = m.app(&app)?;
            let size = req.size.as_deref().and_then(|s| plane.settings().dyno_sizes.find(s)).map(|s| s.name.clone());
            let now = format_seconds(wharf_domain::timestamp::now_seconds());
            Some(DynoOut {
                id: local_dyno_id(a.id, &name),
                name,
                dyno_type: "run".to_owned(),
                state: DynoState::Starting.as_str(),
                command: Some(req.command.clone()),
                size: size.unwrap_or_else(|| plane.settings().dyno_sizes.default_size().to_owned()),
                host: None,
                port: None,
                app: app_ref(m, a),
                release: current_release_ref(m, a.id),
                created_at: now.clone(),
                updated_at: now,
            })
        })
        .await;
    let out = out.ok_or(Error::NotFound { what: "app", key: app })?;
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

/// A registered dyno, with the state the local supervisor reports if it runs it.
fn dyno_out(plane: &ControlPlane, m: &Model, d: &Dyno, local: Option<&LocalDyno>) -> Option<DynoOut> {
    let app = m.app(&d.app_id.to_string())?;
    Some(DynoOut {
        id: d.id,
        name: d.name.to_string(),
        dyno_type: d.dyno_type.to_string(),
        state: local.map_or("up", |l| l.state.as_str()),
        command: command_of(m, d.app_id, &d.dyno_type, local.and_then(|l| l.release)),
        size: size_of(plane, m, d.app_id, &d.dyno_type),
        host: Some(d.host.to_string()),
        port: Some(d.port),
        app: app_ref(m, app),
        release: match local {
            Some(l) => l.release.map(ReleaseRef::from),
            None => current_release_ref(m, d.app_id),
        },
        created_at: format_seconds(d.created_at),
        updated_at: format_seconds(d.updated_at),
    })
}

/// The command an app's dyno of `dyno_type` runs: that of the release it runs (`release`, as
/// the local supervisor reports it), so that during a roll the old dynos show the command they
/// run rather than the pending release's; else the formation's.
fn command_of(m: &Model, app_id: Uuid, dyno_type: &DynoType, release: Option<DynoRelease>) -> Option<String> {
    let of_release = release
        .and_then(|r| m.release(app_id, &r.id.to_string()))
        .and_then(|r| r.processes.iter().find(|p| &p.dyno_type == dyno_type))
        .and_then(|p| p.command.clone());
    of_release.or_else(|| {
        m.formation_of(app_id).into_iter().find(|f| &f.dyno_type == dyno_type).and_then(|f| f.command.clone())
    })
}

/// The size of an app's dyno type: its formation entry's, or the configured default.
fn size_of(plane: &ControlPlane, m: &Model, app_id: Uuid, dyno_type: &DynoType) -> String {
    let f = m.formation_of(app_id).into_iter().find(|f| &f.dyno_type == dyno_type);
    plane.settings().dyno_sizes.of(f.and_then(|f| f.size.as_deref())).to_owned()
}

/// A dyno the local supervisor runs that is not registered.
fn local_dyno_out(plane: &ControlPlane, m: &Model, app: &App, d: &LocalDyno) -> DynoOut {
    let (command, size) = match &d.one_off {
        Some((command, size)) => (Some(command.clone()), plane.settings().dyno_sizes.of(size.as_deref()).to_owned()),
        None => (command_of(m, app.id, &d.dyno_type, d.release), size_of(plane, m, app.id, &d.dyno_type)),
    };
    DynoOut {
        id: local_dyno_id(app.id, &d.name),
        name: d.name.clone(),
        dyno_type: d.dyno_type.to_string(),
        state: d.state.as_str(),
        command,
        size,
        host: None,
        port: None,
        app: app_ref(m, app),
        release: d.release.map(ReleaseRef::from),
        created_at: format_seconds(d.started_at),
        updated_at: format_seconds(d.started_at),
    }
}

/// An app's dynos: those registered, and those the local supervisor runs, once each.
fn dynos_out(plane: &ControlPlane, m: &Model, app: &App) -> Vec<DynoOut> {
    let local = plane.local_runtime().dynos(app.id);
    let registered = m.dynos_of(app.id);
    let mut out: Vec<DynoOut> = registered
        .iter()
        .filter_map(|d| dyno_out(plane, m, d, local.iter().find(|l| l.name == d.name.as_str())))
        .collect();
    let unregistered = local.iter().filter(|l| !registered.iter().any(|d| d.name.as_str() == l.name));
    out.extend(unregistered.map(|l| local_dyno_out(plane, m, app, l)));
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

pub(super) async fn list_dynos(State(plane): Plane, Path(app): Path<String>) -> ApiResult<impl IntoResponse> {
    let out = plane.read(|m| m.app(&app).map(|a| dynos_out(&plane, m, a))).await;
    out.map(axum::Json).ok_or_else(|| Error::NotFound { what: "app", key: app }.into())
}

pub(super) async fn get_dyno(
    State(plane): Plane,
    Path((app, dyno)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    let out = plane
        .read(|m| {
            let a = m.app(&app).ok_or(Error::NotFound { what: "app", key: app.clone() })?;
            let name = plane.dyno_name(m, a.id, &dyno);
            dynos_out(&plane, m, a)
                .into_iter()
                .find(|d| Some(&d.name) == name.as_ref())
                .ok_or(Error::NotFound { what: "dyno", key: dyno.clone() })
        })
        .await?;
    Ok(Json(out))
}

pub(super) async fn put_dyno(
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
    let (d, created) = plane.register_dyno(&app, name, dyno_type, host, port).await?;
    let out = plane.read(|m| dyno_out(&plane, m, &d, None)).await;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(out)))
}

/// One dyno as the API shows it, found by its name or Heroku's `type.N`; `None` when the app or
/// the dyno does not exist (the operation that follows says which).
async fn dyno_by_heroku_name(plane: &ControlPlane, app: &str, dyno: &str) -> Option<DynoOut> {
    plane
        .read(|m| {
            let a = m.app(app)?;
            let name = plane.dyno_name(m, a.id, dyno)?;
            dynos_out(plane, m, a).into_iter().find(|d| d.name == name)
        })
        .await
}

/// Restarts a dyno the local supervisor runs (202), or removes one that is only registered
/// (200), by an external runtime or by hand beside the supervisor's
/// ([`ControlPlane::delete_or_restart_dyno`]); given a process type, restarts every dyno of it
/// (202, `{"restarted": N}`, as `DELETE /apps/{app}/formations/{type}`).
pub(super) async fn delete_dyno(State(plane): Plane, Path((app, dyno)): Path<(String, String)>) -> ApiResult<Response> {
    if let Some(n) = plane.restart_type_named(&app, &dyno).await? {
        return Ok((StatusCode::ACCEPTED, Json(json!({ "restarted": n }))).into_response());
    }
    let out = dyno_by_heroku_name(&plane, &app, &dyno).await;
    match plane.delete_or_restart_dyno(&app, &dyno).await? {
        DynoDeletion::Restarted => Ok((StatusCode::ACCEPTED, Json(out)).into_response()),
        DynoDeletion::Removed(_) => Ok(Json(out).into_response()),
    }
}

/// Restarts every dyno of an app the local supervisor runs, rolling, as Heroku's
/// `DELETE /apps/{app}/dynos` does.
pub(super) async fn restart_dynos(State(plane): Plane, Path(app): Path<String>) -> ApiResult<impl IntoResponse> {
    plane.restart_dynos(&app, None).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({}))))
}

/// `POST /apps/{app}/dynos/{dyno}/actions/stop`: stops one dyno the local supervisor runs, which
/// the formation replaces at once (a restart); 202 with the dyno. Given a process type, every
/// dyno of it (202, `{"restarted": N}`, as `POST /apps/{app}/formations/{type}/actions/stop`).
pub(super) async fn stop_dyno(State(plane): Plane, Path((app, dyno)): Path<(String, String)>) -> ApiResult<Response> {
    if let Some(n) = plane.restart_type_named(&app, &dyno).await? {
        return Ok((StatusCode::ACCEPTED, Json(json!({ "restarted": n }))).into_response());
    }
    let out = dyno_by_heroku_name(&plane, &app, &dyno).await;
    plane.restart_dynos(&app, Some(&dyno)).await?;
    Ok((StatusCode::ACCEPTED, Json(out)).into_response())
}

/// `DELETE /apps/{app}/formations/{type}` and `POST .../actions/stop`: restarts (or stops, which
/// the formation follows with a start) every dyno of one type the local supervisor runs; 202
/// with how many, `{"restarted": N}`.
pub(super) async fn restart_dyno_type(
    State(plane): Plane,
    Path((app, ty)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    let n = plane.restart_dyno_type(&app, &ty).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "restarted": n }))))
}
