//! `/certs`: TLS certificates the router serves by SNI (Akkeris' certificate resource: list,
//! upload, info, delete). Private keys are stored and never returned.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use wharf_domain::Certificate;
use wharf_domain::timestamp::{format_seconds, now_seconds};

use super::wire::{ApiError, ApiResult, Body, Json, Plane};
use crate::model::Cert;
use crate::plane::Error;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CertCreate {
    /// PEM, leaf first.
    certificate_chain: String,
    /// PEM; stored, never returned.
    private_key: String,
}

#[derive(Serialize)]
pub(super) struct CertOut {
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

pub(super) async fn list_certs(State(plane): Plane) -> impl IntoResponse {
    Json(plane.read(|m| m.certs().map(cert_out).collect::<Vec<_>>()).await)
}

pub(super) async fn get_cert(State(plane): Plane, Path(cert): Path<String>) -> ApiResult<impl IntoResponse> {
    let out = plane.read(|m| m.cert(&cert).map(cert_out)).await;
    out.map(Json).ok_or_else(|| Error::NotFound { what: "certificate", key: cert }.into())
}

pub(super) async fn create_cert(State(plane): Plane, Body(req): Body<CertCreate>) -> ApiResult<impl IntoResponse> {
    let certificate =
        Certificate::try_new(&req.certificate_chain, &req.private_key, now_seconds()).map_err(ApiError::invalid)?;
    let c = plane.add_cert(certificate).await?;
    Ok((StatusCode::CREATED, Json(cert_out(&c))))
}

pub(super) async fn delete_cert(State(plane): Plane, Path(cert): Path<String>) -> ApiResult<impl IntoResponse> {
    Ok(Json(cert_out(&plane.delete_cert(&cert).await?)))
}
