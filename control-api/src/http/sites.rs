//! `/sites`: sites, domains whose path prefixes route to apps (Akkeris' sites API: list, create,
//! info, delete; deleting a site deletes its routes and drains).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use wharf_domain::SiteDomain;
use wharf_domain::timestamp::format_seconds;

use super::wire::{ApiError, ApiResult, Body, Json, Plane};
use crate::model::{Compliance, Site};
use crate::plane::Error;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SiteCreate {
    domain: String,
    #[serde(default)]
    internal: bool,
}

#[derive(Serialize)]
pub(super) struct SiteOut {
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

pub(super) async fn list_sites(State(plane): Plane) -> impl IntoResponse {
    Json(plane.read(|m| m.sites().map(site_out).collect::<Vec<_>>()).await)
}

pub(super) async fn get_site(State(plane): Plane, Path(site): Path<String>) -> ApiResult<impl IntoResponse> {
    let out = plane.read(|m| m.site(&site).map(site_out)).await;
    out.map(Json).ok_or_else(|| Error::NotFound { what: "site", key: site }.into())
}

pub(super) async fn create_site(State(plane): Plane, Body(req): Body<SiteCreate>) -> ApiResult<impl IntoResponse> {
    let domain = SiteDomain::try_new(&req.domain).map_err(ApiError::invalid)?;
    let site = plane.create_site(domain, req.internal).await?;
    Ok((StatusCode::CREATED, Json(site_out(&site))))
}

pub(super) async fn delete_site(State(plane): Plane, Path(site): Path<String>) -> ApiResult<impl IntoResponse> {
    let s = plane.delete_site(&site).await?;
    Ok(Json(site_out(&s)))
}
