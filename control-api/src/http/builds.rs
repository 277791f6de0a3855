//! `/apps/{app}/builds` (Heroku's build resource) and `/builds/{build}/output`, the build's
//! `output_stream_url`.
//!
//! As Heroku's, the output URL needs no API token (the CLI streams it with a plain GET): the
//! build's id, 122 random bits seen only by holders of the admin token, is the capability. It
//! streams `text/plain` lines while the build runs and ends with the build; afterwards it
//! answers the lines the build record kept (`outputs.rs`, which a release's output shares).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use wharf_domain::timestamp::format_seconds;

use super::account::{OwnerRef, owner_ref};
use super::slugs::base_url;
use super::wire::{ApiResult, AppRef, Body, Json, NamedRef, Plane, STACK, app_ref};
use crate::model::{Build, Model};
use crate::plane::{ControlPlane, Error};

/// `source_blob` of a build request.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SourceBlobIn {
    url: String,
    #[serde(default)]
    checksum: Option<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    version_description: Option<String>,
}

/// `POST /apps/{app}/builds`. Heroku's `buildpacks` are accepted and not used: Wharf runs none.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BuildIn {
    source_blob: SourceBlobIn,
    #[serde(default)]
    buildpacks: Option<serde_json::Value>,
}

#[derive(Serialize)]
pub(super) struct SourceBlobOut {
    checksum: Option<String>,
    url: String,
    version: Option<String>,
    version_description: Option<String>,
}

#[derive(Serialize)]
pub(super) struct IdRef {
    id: Uuid,
}

/// A build as Heroku shapes it.
#[derive(Serialize)]
pub(super) struct BuildOut {
    id: Uuid,
    app: AppRef,
    buildpacks: Vec<()>,
    output_stream_url: String,
    release: Option<IdRef>,
    slug: Option<IdRef>,
    source_blob: SourceBlobOut,
    stack: NamedRef,
    status: &'static str,
    user: OwnerRef,
    created_at: String,
    updated_at: String,
}

fn build_out(plane: &ControlPlane, m: &Model, b: &Build, base: &str) -> Option<BuildOut> {
    let app = m.apps().find(|a| a.id == b.app_id)?;
    Some(BuildOut {
        id: b.id,
        app: app_ref(m, app),
        buildpacks: vec![],
        output_stream_url: format!("{base}/builds/{}/output", b.id),
        release: b.release_id.map(|id| IdRef { id }),
        slug: b.slug_id.map(|id| IdRef { id }),
        source_blob: SourceBlobOut {
            checksum: b.source_checksum.clone(),
            url: b.source_url.clone(),
            version: b.source_version.clone(),
            version_description: None,
        },
        stack: STACK,
        status: b.status.as_str(),
        user: owner_ref(plane),
        created_at: format_seconds(b.created_at),
        updated_at: format_seconds(b.updated_at),
    })
}

/// `POST /apps/{app}/builds`: starts a build (201, `pending`); 422 for a source URL Wharf will
/// not fetch (scheme, credentials, `file://` unless allowed) or an invalid checksum.
pub(super) async fn create_build(
    State(plane): Plane,
    Path(app): Path<String>,
    headers: HeaderMap,
    Body(req): Body<BuildIn>,
) -> ApiResult<impl IntoResponse> {
    let (blob, _unused) = (req.source_blob, req.buildpacks);
    let _ = blob.version_description;
    let build = plane.create_build(&app, &blob.url, blob.checksum.as_deref(), blob.version).await?;
    let base = base_url(&plane, &headers);
    let out =
        plane.read(|m| build_out(&plane, m, &build, &base)).await.ok_or(Error::NotFound { what: "app", key: app })?;
    Ok((StatusCode::CREATED, Json(out)))
}

/// `GET /apps/{app}/builds`: the app's builds, oldest first.
pub(super) async fn list_builds(
    State(plane): Plane,
    Path(app): Path<String>,
    headers: HeaderMap,
) -> ApiResult<impl IntoResponse> {
    let base = base_url(&plane, &headers);
    let out = plane
        .read(|m| {
            let a = m.app(&app).ok_or_else(|| Error::NotFound { what: "app", key: app.clone() })?;
            Ok::<_, Error>(
                m.builds_of(a.id).into_iter().filter_map(|b| build_out(&plane, m, b, &base)).collect::<Vec<_>>(),
            )
        })
        .await?;
    Ok(Json(out))
}

/// `GET /apps/{app}/builds/{build}`: one build.
pub(super) async fn get_build(
    State(plane): Plane,
    Path((app, build)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<impl IntoResponse> {
    let base = base_url(&plane, &headers);
    let out = plane
        .read(|m| {
            let a = m.app(&app).ok_or_else(|| Error::NotFound { what: "app", key: app.clone() })?;
            let b = build.parse().ok().and_then(|id| m.build(id)).filter(|b| b.app_id == a.id);
            let b = b.ok_or_else(|| Error::NotFound { what: "build", key: build.clone() })?;
            build_out(&plane, m, b, &base).ok_or(Error::NotFound { what: "app", key: app.clone() })
        })
        .await?;
    Ok(Json(out))
}

/// `GET /builds/{build}/output`: the build's output (`outputs::stream`, under
/// `plane::output_states`' rule).
pub(super) async fn build_output(
    State(plane): State<Arc<ControlPlane>>,
    Path(build): Path<String>,
) -> ApiResult<Response> {
    let id = build.parse::<Uuid>().ok();
    super::outputs::stream(plane, "build", &build, id, crate::plane::build_output_state).await
}
