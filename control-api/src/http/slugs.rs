//! `/apps/{app}/slugs` (Heroku's slug resource) and `/slugs/{slug}/blob`, the upload URL a new
//! slug's `blob.url` names.
//!
//! Heroku answers a new slug with `blob: {"method": "put", "url": <pre-signed S3 URL>}`; clients
//! then `curl -X PUT --data-binary @slug.tgz <url>` without the API token. Wharf's blob URL is
//! its own: `<api>/slugs/<id>/blob?token=<256-bit token>`, served without the admin token, good
//! for one upload of that one slug within an hour (see `plane::slugs`). The body is streamed to
//! disk with its own cap (`[control_api] max_slug_bytes`), not the API's JSON body limit.

use std::path::PathBuf;

use axum::body::Body as RawBody;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt as _;
use uuid::Uuid;
use wharf_domain::timestamp::format_seconds;

use super::wire::{ApiError, ApiResult, AppRef, Body, Json, NamedRef, Plane, STACK, app_ref};
use crate::model::{Model, Slug};
use crate::plane::{ControlPlane, Error, NewSlug, UploadRefusal};

/// `POST /apps/{app}/slugs`, as Heroku's slug create takes it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SlugIn {
    process_types: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    commit: Option<String>,
    #[serde(default)]
    commit_description: Option<String>,
    #[serde(default)]
    checksum: Option<String>,
    /// Wharf's addition: an image reference for an external runtime, instead of an archive.
    #[serde(default)]
    image: Option<String>,
    /// Heroku's `buildpack_provided_description` and `stack` are accepted and not kept: Wharf
    /// has one stack and no buildpacks.
    #[serde(default)]
    buildpack_provided_description: Option<String>,
    #[serde(default)]
    stack: Option<String>,
}

/// Where to upload a slug's archive: Heroku's `blob`.
#[derive(Serialize)]
pub(super) struct BlobOut {
    method: &'static str,
    url: String,
}

/// A slug as Heroku shapes it, with Wharf's `image`.
#[derive(Serialize)]
pub(super) struct SlugOut {
    id: Uuid,
    app: AppRef,
    /// The upload URL: shown only when the slug is created (it carries the upload token).
    blob: Option<BlobOut>,
    buildpack_provided_description: Option<String>,
    checksum: Option<String>,
    commit: Option<String>,
    commit_description: Option<String>,
    process_types: std::collections::BTreeMap<String, String>,
    /// The stored archive's size in bytes; null until uploaded.
    size: Option<u64>,
    /// `registry/name@sha256:...` for an external runtime, or null for an archive.
    image: Option<String>,
    /// `uploaded`, `pending` (waiting for its archive) or `image`.
    state: &'static str,
    stack: NamedRef,
    created_at: String,
    updated_at: String,
}

/// A slug's answer; `blob_url` only when it was just created.
pub(super) fn slug_out(m: &Model, s: &Slug, blob_url: Option<String>) -> Option<SlugOut> {
    let app = m.apps().find(|a| a.id == s.app_id)?;
    let state = match (&s.image, s.size) {
        (Some(_), _) => "image",
        (None, Some(_)) => "uploaded",
        (None, None) => "pending",
    };
    Some(SlugOut {
        id: s.id,
        app: app_ref(m, app),
        blob: blob_url.map(|url| BlobOut { method: "put", url }),
        buildpack_provided_description: None,
        checksum: s.checksum.clone(),
        commit: s.commit.clone(),
        commit_description: s.commit_description.clone(),
        process_types: s.process_types.clone(),
        size: s.size,
        image: s.image.clone(),
        state,
        stack: STACK,
        created_at: format_seconds(s.created_at),
        updated_at: format_seconds(s.updated_at),
    })
}

/// The control API's base URL as clients reach it: the configured one, else from the request's
/// `Host` over plain HTTP (a client that reached the API over TLS was given its https URL).
pub(super) fn base_url(plane: &ControlPlane, headers: &HeaderMap) -> String {
    if let Some(url) = plane.deploy().and_then(|d| d.public_url.clone()) {
        return url.trim_end_matches('/').to_owned();
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
    format!("http://{host}")
}

/// `POST /apps/{app}/slugs`: a new slug, with the URL to `PUT` its archive to (none for an image).
pub(super) async fn create_slug(
    State(plane): Plane,
    Path(app): Path<String>,
    headers: HeaderMap,
    Body(req): Body<SlugIn>,
) -> ApiResult<impl IntoResponse> {
    let _ = (req.buildpack_provided_description, req.stack);
    let new = NewSlug {
        process_types: req.process_types,
        commit: req.commit,
        commit_description: req.commit_description,
        checksum: req.checksum,
        image: req.image,
    };
    let (slug, token) = plane.create_slug(&app, new).await?;
    let url = token.map(|t| format!("{}/slugs/{}/blob?token={t}", base_url(&plane, &headers), slug.id));
    let out = plane.read(|m| slug_out(m, &slug, url)).await.ok_or(Error::NotFound { what: "app", key: app })?;
    Ok((StatusCode::CREATED, Json(out)))
}

/// `GET /apps/{app}/slugs/{slug}`: a slug the app made, or one that a release of the app runs
/// (a slug copied from another app, as Heroku's "copying slugs" does, or promoted to it), without
/// its upload URL. Any other slug is a 404 for this app, whatever another app may do with it.
/// `app` is the app that made it, or this app when that one was deleted (a promoted slug
/// outlives its app).
pub(super) async fn get_slug(
    State(plane): Plane,
    Path((app, slug)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    let out = plane
        .read(|m| {
            let a = m.app(&app).ok_or_else(|| Error::NotFound { what: "app", key: app.clone() })?;
            let runs = |id| m.releases_of(a.id).iter().any(|r| r.slug_id == Some(id));
            let s = slug.parse().ok().and_then(|id| m.slug(id)).filter(|s| s.app_id == a.id || runs(s.id));
            let s = s.ok_or_else(|| Error::NotFound { what: "slug", key: slug.clone() })?;
            Ok::<_, Error>(slug_out(m, s, None).unwrap_or_else(|| {
                let orphan = Slug { app_id: a.id, ..s.clone() };
                slug_out(m, &orphan, None).expect("the reading app exists")
            }))
        })
        .await?;
    Ok(Json(out))
}

/// The blob URL's query; a missing token is a 403 like a wrong one.
#[derive(Deserialize)]
pub(super) struct BlobQuery {
    token: Option<String>,
}

/// `PUT /slugs/{slug}/blob?token=...`: the slug's archive, streamed to disk (413 past
/// `max_slug_bytes`), then checked and kept (200 with the slug), or refused with 422 and the
/// reason. A wrong or unknown URL is 403, an expired one 403 too (`expired`), a second upload 409.
pub(super) async fn put_blob(
    State(plane): Plane,
    Path(slug): Path<String>,
    query: Result<Query<BlobQuery>, QueryRejection>,
    body: RawBody,
) -> ApiResult<impl IntoResponse> {
    let forbidden = || ApiError::new(StatusCode::FORBIDDEN, "forbidden", "this blob URL is not valid");
    // A query that does not parse (a `token` twice) is no valid blob URL either: the same 403
    // in Heroku's JSON error shape, never the extractor's plain-text 400.
    let Query(query) = query.map_err(|_| forbidden())?;
    let id: Uuid = slug.parse().map_err(|_| forbidden())?;
    let token = query.token.ok_or_else(forbidden)?;
    match plane.check_slug_upload(id, &token).await {
        Ok(()) => {}
        Err(UploadRefusal::Forbidden) => return Err(forbidden()),
        Err(UploadRefusal::Expired) => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "expired",
                "this blob URL has expired; create a new slug",
            ));
        }
        Err(UploadRefusal::AlreadyStored) => {
            return Err(ApiError::new(StatusCode::CONFLICT, "conflict", "this slug's archive is already stored"));
        }
    }
    let max = plane.deploy().map_or(0, |d| d.max_slug_bytes);
    // Deleting the slug's app (and so the slug) cuts the upload short: nothing would keep it.
    let upload = tokio::select! {
        upload = receive(&plane, body, max) => upload?,
        () = plane.slug_gone(id) => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("slug {id} was deleted (its app was) while its archive arrived; nothing was kept"),
            ));
        }
    };
    let slug = plane.store_slug_archive(id, &token, upload).await?;
    let out = plane
        .read(|m| slug_out(m, &slug, None))
        .await
        .ok_or(Error::NotFound { what: "slug", key: slug.id.to_string() })?;
    Ok(Json(out))
}

/// A file being received, removed unless it was received whole (an error, or an upload cut
/// short by dropping [`receive`]'s future, leaves nothing in the incoming directory).
struct Partial(Option<PathBuf>);

impl Drop for Partial {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Streams a request body into a new file in the incoming directory, at most `max` bytes (413
/// past it, and the partial file removed, as it is when the future is dropped).
async fn receive(plane: &ControlPlane, body: RawBody, max: u64) -> ApiResult<PathBuf> {
    let dir = plane.incoming_dir()?;
    let path = dir.join(format!("{}.upload", wharf_domain::new_id()));
    let mut partial = Partial(Some(path.clone()));
    let outcome = async {
        let mut file = tokio::fs::File::create(&path)
            .await
            .map_err(|e| ApiError::unavailable(format!("cannot store the upload: {e}")))?;
        let mut stream = body.into_data_stream();
        let mut written: u64 = 0;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                ApiError::new(StatusCode::BAD_REQUEST, "bad_request", format!("reading the upload: {e}"))
            })?;
            written += chunk.len() as u64;
            if written > max {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    format!("the archive is larger than {max} bytes"),
                ));
            }
            file.write_all(&chunk).await.map_err(|e| ApiError::unavailable(format!("cannot store the upload: {e}")))?;
        }
        file.sync_all().await.map_err(|e| ApiError::unavailable(format!("cannot store the upload: {e}")))?;
        Ok(())
    }
    .await;
    if outcome.is_ok() {
        partial.0 = None;
    }
    outcome.map(|()| path)
}
