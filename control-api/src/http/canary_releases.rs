//! `/apps/{app}/canary-releases`: a production app's canary releases (issue 22), open and
//! ended, with the canary app, the outcome and the judge's evidence. The rules are in
//! `plane/canary_releases.rs`; the live counts of a running one are the router canary's
//! (`GET /apps/{app}/canary`).

use axum::extract::{Path, State};
use axum::response::IntoResponse;
use serde::Serialize;
use uuid::Uuid;
use wharf_domain::CanaryEvidence;
use wharf_domain::timestamp::format_seconds;

use super::wire::{ApiResult, AppRef, Json, Plane, app_ref};
use crate::model::{CanaryRelease, Model};
use crate::plane::Error;

/// A canary release as the API shows it.
#[derive(Serialize)]
pub(super) struct CanaryReleaseOut {
    id: Uuid,
    /// The production app.
    app: Option<AppRef>,
    /// The production release it is about: `pending` while open, then `succeeded` (or
    /// `pending` while the app rolls to it) or `failed`.
    release: ReleaseOut,
    /// The canary app's name (`app-space`); the app exists only while the release is open.
    canary_app: NameRef,
    /// `starting`, `running`, `promoted` or `aborted`.
    state: &'static str,
    /// Why it ended as it did, in words.
    outcome: Option<String>,
    /// The judge's counts and statistics when it ended.
    evidence: Option<CanaryEvidence>,
    soak_requests: Option<u64>,
    soak_seconds: Option<u64>,
    /// When the split started (RFC 3339).
    running_since: Option<String>,
    created_at: String,
    updated_at: String,
}

#[derive(Serialize)]
struct ReleaseOut {
    id: Uuid,
    version: Option<u32>,
    status: Option<&'static str>,
}

#[derive(Serialize)]
struct NameRef {
    name: String,
}

/// The API's view of a canary release.
pub(super) fn canary_release_out(m: &Model, c: &CanaryRelease) -> CanaryReleaseOut {
    let app = m.app(&c.app_id.to_string());
    let r = m.releases_of(c.app_id).into_iter().find(|r| r.id == c.release_id);
    CanaryReleaseOut {
        id: c.id,
        app: app.map(|a| app_ref(m, a)),
        release: ReleaseOut { id: c.release_id, version: r.map(|r| r.version), status: r.map(|r| r.status.as_str()) },
        canary_app: NameRef { name: c.canary_app.clone() },
        state: c.state.as_str(),
        outcome: c.outcome.clone(),
        evidence: c.evidence.clone(),
        soak_requests: c.soak_requests,
        soak_seconds: c.soak_seconds,
        running_since: c.running_since.map(format_seconds),
        created_at: format_seconds(c.created_at),
        updated_at: format_seconds(c.updated_at),
    }
}

/// `GET /apps/{app}/canary-releases`: the app's canary releases, oldest first.
pub(super) async fn list_canary_releases(State(plane): Plane, Path(app): Path<String>) -> ApiResult<impl IntoResponse> {
    let out = plane
        .read(|m| {
            let a = m.app(&app)?;
            Some(m.canary_releases_of(a.id).into_iter().map(|c| canary_release_out(m, c)).collect::<Vec<_>>())
        })
        .await;
    Ok(Json(out.ok_or(Error::NotFound { what: "app", key: app })?))
}

/// `GET /apps/{app}/canary-releases/{id}`: one canary release of the app.
pub(super) async fn get_canary_release(
    State(plane): Plane,
    Path((app, id)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    let out = plane
        .read(|m| {
            let a = m.app(&app).ok_or_else(|| Error::NotFound { what: "app", key: app.clone() })?;
            let c = m.canary_releases_of(a.id).into_iter().find(|c| c.id.to_string() == id);
            c.map(|c| canary_release_out(m, c))
                .ok_or_else(|| Error::NotFound { what: "canary release", key: id.clone() })
        })
        .await?;
    Ok(Json(out))
}
