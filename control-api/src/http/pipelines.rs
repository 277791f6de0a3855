//! Pipelines in Akkeris' shapes (Heroku's where they agree): `/pipelines`, `/pipeline-stages`,
//! `/pipeline-couplings` (also listed by pipeline and by app), release statuses
//! (`/apps/{app}/releases/{release}/statuses`, with the combined state), and
//! `/pipeline-promotions` with their `promotion-targets`.
//!
//! A resource is named in a body as `{"id": ...}` or `{"name": ...}` (an app by id or key, a
//! pipeline by id or name), or by the bare string. The rules a promotion follows are
//! `plane::pipelines`'.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use wharf_domain::timestamp::format_seconds;
use wharf_domain::{PipelineName, Stage};

use super::wire::{ApiError, ApiResult, AppRef, Body, Json, Plane, app_ref};
use crate::model::{CheckState, Coupling, Model, Pipeline, Promotion, Release, ReleaseStatus, StatusCheck};
use crate::plane::{CheckInput, Error, PromotionInput};

/// A reference in a request body: a bare id or name, or `{"id"}` / `{"name"}`.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RefIn {
    Bare(String),
    Object(RefObject),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RefObject {
    id: Option<String>,
    name: Option<String>,
}

impl RefIn {
    fn key(self, what: &str) -> Result<String, ApiError> {
        match self {
            RefIn::Bare(s) => Ok(s),
            RefIn::Object(RefObject { id: Some(id), .. }) => Ok(id),
            RefIn::Object(RefObject { name: Some(name), .. }) => Ok(name),
            RefIn::Object(_) => Err(ApiError::invalid(format!("{what} needs an id or a name"))),
        }
    }
}

/// A pipeline as the API shows it.
#[derive(Serialize)]
struct PipelineOut {
    id: Uuid,
    name: String,
    created_at: String,
    updated_at: String,
}

fn pipeline_out(p: &Pipeline) -> PipelineOut {
    PipelineOut {
        id: p.id,
        name: p.name.to_string(),
        created_at: format_seconds(p.created_at),
        updated_at: format_seconds(p.updated_at),
    }
}

#[derive(Serialize)]
struct PipelineRef {
    id: Uuid,
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PipelineIn {
    name: String,
}

fn pipeline_name(name: &str) -> Result<PipelineName, ApiError> {
    PipelineName::try_new(name).map_err(|e| ApiError::invalid(format!("invalid {} {:?}: {}", e.kind, e.value, e.rule)))
}

/// `GET /pipelines`.
pub(super) async fn list_pipelines(State(plane): Plane) -> impl IntoResponse {
    Json(plane.read(|m| m.pipelines().into_iter().map(pipeline_out).collect::<Vec<_>>()).await)
}

/// `POST /pipelines {"name"}`: 201, or 409 for a taken name.
pub(super) async fn create_pipeline(State(plane): Plane, Body(req): Body<PipelineIn>) -> ApiResult<impl IntoResponse> {
    let p = plane.create_pipeline(pipeline_name(&req.name)?).await?;
    Ok((StatusCode::CREATED, Json(pipeline_out(&p))))
}

/// `GET /pipelines/{pipeline}`, by id or name.
pub(super) async fn get_pipeline(State(plane): Plane, Path(p): Path<String>) -> ApiResult<impl IntoResponse> {
    let out = plane.read(|m| m.pipeline(&p).map(pipeline_out)).await;
    Ok(Json(out.ok_or(Error::NotFound { what: "pipeline", key: p })?))
}

/// `PATCH /pipelines/{pipeline} {"name"}`: renames it.
pub(super) async fn update_pipeline(
    State(plane): Plane,
    Path(p): Path<String>,
    Body(req): Body<PipelineIn>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(pipeline_out(&plane.rename_pipeline(&p, pipeline_name(&req.name)?).await?)))
}

/// `DELETE /pipelines/{pipeline}`: the pipeline, its couplings and promotions; the apps stay.
pub(super) async fn delete_pipeline(State(plane): Plane, Path(p): Path<String>) -> ApiResult<impl IntoResponse> {
    Ok(Json(pipeline_out(&plane.delete_pipeline(&p).await?)))
}

/// `GET /pipeline-stages`: the stages, first to last.
pub(super) async fn list_stages() -> impl IntoResponse {
    Json(Stage::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>())
}

/// A coupling as the API shows it.
#[derive(Serialize)]
struct CouplingOut {
    id: Uuid,
    app: AppRef,
    pipeline: PipelineRef,
    stage: &'static str,
    required_status_checks: Contexts,
    created_at: String,
    updated_at: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Contexts {
    contexts: Vec<String>,
}

fn coupling_out(m: &Model, c: &Coupling) -> Option<CouplingOut> {
    let app = m.app(&c.app_id.to_string())?;
    let p = m.pipeline(&c.pipeline_id.to_string())?;
    Some(CouplingOut {
        id: c.id,
        app: app_ref(m, app),
        pipeline: PipelineRef { id: p.id, name: p.name.to_string() },
        stage: c.stage.as_str(),
        required_status_checks: Contexts { contexts: c.required_contexts.clone() },
        created_at: format_seconds(c.created_at),
        updated_at: format_seconds(c.updated_at),
    })
}

fn stage(s: &str) -> Result<Stage, ApiError> {
    s.parse().map_err(ApiError::invalid)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CouplingIn {
    app: RefIn,
    pipeline: RefIn,
    stage: String,
    required_status_checks: Option<Contexts>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CouplingUpdate {
    stage: Option<String>,
    required_status_checks: Option<Contexts>,
}

/// `GET /pipeline-couplings`: every coupling.
pub(super) async fn list_couplings(State(plane): Plane) -> impl IntoResponse {
    Json(
        plane.read(|m| m.couplings_where(|_| true).iter().filter_map(|c| coupling_out(m, c)).collect::<Vec<_>>()).await,
    )
}

/// `GET /pipelines/{pipeline}/pipeline-couplings`: the pipeline's couplings, by stage.
pub(super) async fn list_pipeline_couplings(
    State(plane): Plane,
    Path(p): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let out = plane
        .read(|m| {
            let p = m.pipeline(&p).ok_or(Error::NotFound { what: "pipeline", key: p.clone() })?;
            Ok::<_, Error>(
                m.couplings_where(|c| c.pipeline_id == p.id)
                    .iter()
                    .filter_map(|c| coupling_out(m, c))
                    .collect::<Vec<_>>(),
            )
        })
        .await?;
    Ok(Json(out))
}

/// `GET /apps/{app}/pipeline-couplings`: the app's coupling (Heroku's "info by app"); 404 when
/// the app is in no pipeline.
pub(super) async fn get_app_coupling(State(plane): Plane, Path(app): Path<String>) -> ApiResult<impl IntoResponse> {
    let out = plane
        .read(|m| {
            let a = m.app(&app).ok_or(Error::NotFound { what: "app", key: app.clone() })?;
            m.coupling_of(a.id)
                .and_then(|c| coupling_out(m, c))
                .ok_or(Error::NotFound { what: "pipeline coupling of app", key: app.clone() })
        })
        .await?;
    Ok(Json(out))
}

/// `POST /pipeline-couplings {"app", "pipeline", "stage", "required_status_checks"}`: 201; 409
/// when the app is in a pipeline already, 422 for an unknown stage.
pub(super) async fn create_coupling(State(plane): Plane, Body(req): Body<CouplingIn>) -> ApiResult<impl IntoResponse> {
    let st = stage(&req.stage)?;
    let app = req.app.key("app")?;
    let pipeline = req.pipeline.key("pipeline")?;
    let required = req.required_status_checks.map(|c| c.contexts).unwrap_or_default();
    let c = plane.create_coupling(&app, &pipeline, st, required).await?;
    let out = plane.read(|m| coupling_out(m, &c)).await;
    Ok((StatusCode::CREATED, Json(out.ok_or(Error::NotFound { what: "app", key: app })?)))
}

/// `GET /pipeline-couplings/{coupling}`.
pub(super) async fn get_coupling(State(plane): Plane, Path(id): Path<String>) -> ApiResult<impl IntoResponse> {
    let out = plane.read(|m| m.coupling(&id).and_then(|c| coupling_out(m, c))).await;
    Ok(Json(out.ok_or(Error::NotFound { what: "pipeline coupling", key: id })?))
}

/// `PATCH /pipeline-couplings/{coupling} {"stage", "required_status_checks"}`.
pub(super) async fn update_coupling(
    State(plane): Plane,
    Path(id): Path<String>,
    Body(req): Body<CouplingUpdate>,
) -> ApiResult<impl IntoResponse> {
    let st = req.stage.as_deref().map(stage).transpose()?;
    let c = plane.update_coupling(&id, st, req.required_status_checks.map(|c| c.contexts)).await?;
    let out = plane.read(|m| coupling_out(m, &c)).await;
    Ok(Json(out.ok_or(Error::NotFound { what: "pipeline coupling", key: id })?))
}

/// `DELETE /pipeline-couplings/{coupling}`: the app leaves its pipeline.
pub(super) async fn delete_coupling(State(plane): Plane, Path(id): Path<String>) -> ApiResult<impl IntoResponse> {
    let out = plane.read(|m| m.coupling(&id).and_then(|c| coupling_out(m, c))).await;
    plane.delete_coupling(&id).await?;
    Ok(Json(out.ok_or(Error::NotFound { what: "pipeline coupling", key: id })?))
}

/// A release status as the API shows it.
#[derive(Serialize)]
struct CheckOut {
    id: Uuid,
    context: String,
    state: &'static str,
    name: Option<String>,
    description: Option<String>,
    target_url: Option<String>,
    created_at: String,
    updated_at: String,
}

fn check_out(c: &StatusCheck) -> CheckOut {
    CheckOut {
        id: c.id,
        context: c.context.clone(),
        state: c.state.as_str(),
        name: c.name.clone(),
        description: c.description.clone(),
        target_url: c.target_url.clone(),
        created_at: format_seconds(c.created_at),
        updated_at: format_seconds(c.updated_at),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CheckIn {
    context: Option<String>,
    state: Option<CheckState>,
    name: Option<String>,
    description: Option<String>,
    target_url: Option<String>,
}

impl From<CheckIn> for CheckInput {
    fn from(c: CheckIn) -> Self {
        CheckInput {
            context: c.context,
            state: c.state,
            name: c.name,
            description: c.description,
            target_url: c.target_url,
        }
    }
}

/// The combined state of a release's statuses and the list (GitHub's combined status).
#[derive(Serialize)]
struct CombinedOut {
    state: &'static str,
    release: ReleaseRef,
    statuses: Vec<CheckOut>,
}

#[derive(Serialize)]
struct ReleaseRef {
    id: Uuid,
    version: u32,
}

/// `GET /apps/{app}/releases/{release}/statuses`: `{"state", "release", "statuses"}`.
pub(super) async fn list_statuses(
    State(plane): Plane,
    Path((app, release)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    let out = plane
        .read(|m| {
            let a = m.app(&app).ok_or(Error::NotFound { what: "app", key: app.clone() })?;
            let r = m.release(a.id, &release).ok_or(Error::NotFound { what: "release", key: release.clone() })?;
            let checks = m.checks_of(r.id);
            Ok::<_, Error>(CombinedOut {
                state: CheckState::combined(checks.iter().map(|c| c.state)).as_str(),
                release: ReleaseRef { id: r.id, version: r.version },
                statuses: checks.into_iter().map(check_out).collect(),
            })
        })
        .await?;
    Ok(Json(out))
}

/// `POST /apps/{app}/releases/{release}/statuses {"state", "context", ...}`: 201; 409 when the
/// release has a status of that context already; 404 for a release of another app.
pub(super) async fn create_status(
    State(plane): Plane,
    Path((app, release)): Path<(String, String)>,
    Body(req): Body<CheckIn>,
) -> ApiResult<impl IntoResponse> {
    let c = plane.create_check(&app, &release, req.into()).await?;
    Ok((StatusCode::CREATED, Json(check_out(&c))))
}

/// `GET /apps/{app}/releases/{release}/statuses/{status}`, by id or context.
pub(super) async fn get_status(
    State(plane): Plane,
    Path((app, release, status)): Path<(String, String, String)>,
) -> ApiResult<impl IntoResponse> {
    let out = plane
        .read(|m| {
            let a = m.app(&app)?;
            let r = m.release(a.id, &release)?;
            m.checks_of(r.id).into_iter().find(|c| c.id.to_string() == status || c.context == status).map(check_out)
        })
        .await;
    Ok(Json(out.ok_or(Error::NotFound { what: "status", key: status })?))
}

/// `PATCH /apps/{app}/releases/{release}/statuses/{status} {"state", ...}`.
pub(super) async fn update_status(
    State(plane): Plane,
    Path((app, release, status)): Path<(String, String, String)>,
    Body(req): Body<CheckIn>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(check_out(&plane.update_check(&app, &release, &status, req.into()).await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PromotionIn {
    pipeline: RefIn,
    source: SourceIn,
    targets: Option<Vec<TargetIn>>,
    #[serde(default)]
    safe: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SourceIn {
    app: RefIn,
    release: Option<RefIn>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TargetIn {
    app: RefIn,
}

/// A promotion as the API shows it (Heroku's: `status` is `pending` while a target's release
/// is, then `completed`).
#[derive(Serialize)]
struct PromotionOut {
    id: Uuid,
    pipeline: PipelineRef,
    source: SourceOut,
    safe: bool,
    status: &'static str,
    targets: Vec<TargetOut>,
    created_at: String,
    updated_at: String,
}

#[derive(Serialize)]
struct SourceOut {
    app: PromotedApp,
    release: PromotedRelease,
}

/// An app a promotion names: `name` is `null` once the app was deleted (a promotion is the
/// pipeline's history, and outlives its apps).
#[derive(Serialize)]
struct PromotedApp {
    id: Uuid,
    name: Option<String>,
}

/// A release a promotion names: `version` is `null` once its app was deleted.
#[derive(Serialize)]
struct PromotedRelease {
    id: Uuid,
    version: Option<u32>,
}

/// A promotion target: the app, the release made there, and how it went (`pending`,
/// `succeeded`, `failed`, or `deleted` once the app is gone), with the error when it failed,
/// and the canary release that holds it when the app has the `canary` feature.
#[derive(Serialize)]
struct TargetOut {
    id: Uuid,
    app: PromotedApp,
    release: PromotedRelease,
    status: &'static str,
    error_message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    canary_release: Option<super::canary_releases::CanaryReleaseOut>,
    pipeline_promotion: IdRef,
}

#[derive(Serialize)]
struct IdRef {
    id: Uuid,
}

/// The app and release a promotion names, as they are now (names and versions gone with a
/// deleted app).
fn promoted(m: &Model, app_id: Uuid, release_id: Uuid) -> (PromotedApp, PromotedRelease, Option<&Release>) {
    let app = m.app(&app_id.to_string());
    let r = app.and_then(|_| m.releases_of(app_id).into_iter().find(|r| r.id == release_id));
    (
        PromotedApp { id: app_id, name: app.map(|a| m.app_key(a).to_string()) },
        PromotedRelease { id: release_id, version: r.map(|r| r.version) },
        r,
    )
}

fn targets_out(m: &Model, p: &Promotion) -> Vec<TargetOut> {
    p.targets
        .iter()
        .map(|t| {
            let (app, release, r) = promoted(m, t.app_id, t.release_id);
            let canary = m.canary_release_making(t.release_id);
            let (status, error_message) = match (r, canary) {
                (None, _) => ("deleted", Some("the target app was deleted".to_owned())),
                (Some(r), Some(c)) if r.status == ReleaseStatus::Failed => (
                    r.status.as_str(),
                    Some(format!(
                        "release v{} failed in its canary: {}",
                        r.version,
                        c.outcome.as_deref().unwrap_or("")
                    )),
                ),
                (Some(r), _) if r.status == ReleaseStatus::Failed => (
                    r.status.as_str(),
                    Some(format!(
                        "release v{} failed: its dynos did not pass their health check, or a newer release replaced it",
                        r.version
                    )),
                ),
                (Some(r), _) => (r.status.as_str(), None),
            };
            TargetOut {
                id: t.id,
                app,
                release,
                status,
                error_message,
                canary_release: canary.map(|c| super::canary_releases::canary_release_out(m, c)),
                pipeline_promotion: IdRef { id: p.id },
            }
        })
        .collect()
}

fn promotion_out(m: &Model, p: &Promotion) -> Option<PromotionOut> {
    let pipeline = m.pipeline(&p.pipeline_id.to_string())?;
    let (app, release, _) = promoted(m, p.source_app_id, p.source_release_id);
    let targets = targets_out(m, p);
    let pending = targets.iter().any(|t| t.status == ReleaseStatus::Pending.as_str());
    Some(PromotionOut {
        id: p.id,
        pipeline: PipelineRef { id: pipeline.id, name: pipeline.name.to_string() },
        source: SourceOut { app, release },
        safe: p.safe,
        status: if pending { "pending" } else { "completed" },
        targets,
        created_at: format_seconds(p.created_at),
        updated_at: format_seconds(p.updated_at),
    })
}

/// `POST /pipeline-promotions {"pipeline", "source": {"app", "release"?}, "targets"?, "safe"?}`:
/// 201 with the promotion; 409 naming unmet required statuses; 422 for a target outside the
/// next stage, a source in the last stage, or (safe) missing config vars. Nothing is deployed
/// when refused.
pub(super) async fn create_promotion(
    State(plane): Plane,
    Body(req): Body<PromotionIn>,
) -> ApiResult<impl IntoResponse> {
    let targets = match req.targets {
        None => None,
        Some(t) => Some(t.into_iter().map(|t| t.app.key("target app")).collect::<Result<Vec<_>, _>>()?),
    };
    let input = PromotionInput {
        pipeline: req.pipeline.key("pipeline")?,
        source_app: req.source.app.key("source app")?,
        source_release: req.source.release.map(|r| r.key("source release")).transpose()?,
        targets,
        safe: req.safe,
    };
    let p = plane.promote(input).await?;
    let out = plane.read(|m| promotion_out(m, &p)).await;
    Ok((StatusCode::CREATED, Json(out.ok_or(Error::NotFound { what: "pipeline promotion", key: p.id.to_string() })?)))
}

/// `GET /pipeline-promotions`: every promotion, oldest first.
pub(super) async fn list_promotions(State(plane): Plane) -> impl IntoResponse {
    Json(
        plane
            .read(|m| m.promotions_where(|_| true).iter().filter_map(|p| promotion_out(m, p)).collect::<Vec<_>>())
            .await,
    )
}

/// `GET /pipeline-promotions/{promotion}`.
pub(super) async fn get_promotion(State(plane): Plane, Path(id): Path<String>) -> ApiResult<impl IntoResponse> {
    let out = plane.read(|m| m.promotion(&id).and_then(|p| promotion_out(m, p))).await;
    Ok(Json(out.ok_or(Error::NotFound { what: "pipeline promotion", key: id })?))
}

/// `GET /pipeline-promotions/{promotion}/promotion-targets`: each target's app, release, status
/// and error.
pub(super) async fn list_promotion_targets(
    State(plane): Plane,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let out = plane.read(|m| m.promotion(&id).map(|p| targets_out(m, p))).await;
    Ok(Json(out.ok_or(Error::NotFound { what: "pipeline promotion", key: id })?))
}
