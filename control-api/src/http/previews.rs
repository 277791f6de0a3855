//! Preview apps (issue 22, `plane/previews.rs`): GitHub's `pull_request` webhook for a
//! development app, `POST /apps/{app}/previews/webhook`, the list `GET /apps/{app}/previews`,
//! and the `preview` feature's settings (`PATCH /apps/{app}/features/preview`).
//!
//! The webhook cannot carry the admin token (GitHub sends what it sends), so it is served
//! without one and authenticated by its signature alone: `X-Hub-Signature-256: sha256=<hex>`,
//! the HMAC-SHA256 of the raw body under the feature's secret. The answers, each Heroku's error
//! body `{"id", "message"}` and changing nothing:
//!
//! - 404 for an unknown app and an app without the enabled feature alike (one message, so that
//!   the endpoint does not tell which apps exist);
//! - 401 without a well-formed signature, 403 for a signature that is not the body's;
//! - then, signed: 400 without `X-GitHub-Event` or a valid `X-GitHub-Delivery` (1 to 64 letters,
//!   digits and `-`), or for a body that is not JSON; 422 for a `pull_request` body without the
//!   fields acted on (`action`, `number`, `pull_request.head.ref`, `.sha`, `.repo.full_name`,
//!   `.repo.archive_url`, `pull_request.base.repo.full_name`);
//!   409 for a delivery id already acted on (a replay).
//!
//! `ping` (GitHub's first delivery) is answered 200; other events, other actions, and pull
//! requests from forks (whose code would run with the development app's config vars) 202 with
//! `outcome: "ignored"`; `opened`, `reopened`, `synchronize` and `closed` 202 with what they did
//! (`created`, `rebuilt`, `unchanged`, `deleted`, or `ignored`) and the preview.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;
use wharf_domain::timestamp::{format_seconds, parse_micros};

use super::wire::{ApiError, ApiResult, AppRef, Body, Json, Plane, app_ref};
use crate::model::{ActedOn, Model, Preview, PreviewFeature};
use crate::plane::{
    ControlPlane, DEFAULT_PREVIEW_MAX_AGE, Error, PreviewFeatureInput, PreviewOutcome, PullRequest, SignatureError,
    verify_signature,
};

/// What the API shows instead of the feature's secret.
const REDACTED: &str = "[redacted]";

/// The `preview` feature's settings, flattened into the feature's Heroku shape: the secret
/// redacted (`null` when none is set) and the age after which preview apps are deleted.
#[derive(Serialize)]
pub(super) struct PreviewSettings {
    secret: Option<&'static str>,
    max_age_seconds: u64,
}

impl PreviewSettings {
    /// The settings of `f`, or the defaults when the feature was never set.
    pub(super) fn of(f: Option<&PreviewFeature>) -> PreviewSettings {
        PreviewSettings {
            secret: f.filter(|f| !f.secret.is_empty()).map(|_| REDACTED),
            max_age_seconds: f.map_or(DEFAULT_PREVIEW_MAX_AGE, |f| f.max_age_seconds),
        }
    }
}

/// A `PATCH /apps/{app}/features/preview` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PreviewFeatureIn {
    enabled: Option<bool>,
    secret: Option<String>,
    max_age_seconds: Option<u64>,
}

/// `PATCH /apps/{app}/features/preview {"enabled"?, "secret"?, "max_age_seconds"?}`, as
/// `features.rs` hands it on: absent fields keep their value.
pub(super) async fn patch_preview_feature(
    plane: &ControlPlane,
    app: &str,
    req: serde_json::Map<String, serde_json::Value>,
) -> ApiResult<()> {
    let req: PreviewFeatureIn = super::wire::from_json_value(serde_json::Value::Object(req))?;
    let input = PreviewFeatureInput { enabled: req.enabled, secret: req.secret, max_age_seconds: req.max_age_seconds };
    plane.set_preview_feature(app, input).await?;
    Ok(())
}

/// A preview as the API shows it.
#[derive(Serialize)]
struct PreviewOut {
    id: Uuid,
    /// The preview app.
    app: AppRef,
    /// The development app it was forked from.
    parent: AppRef,
    pull_request: serde_json::Value,
    source_url: String,
    build: Option<serde_json::Value>,
    created_at: String,
    updated_at: String,
    /// When the sweeper deletes it unless it is deployed again.
    expires_at: String,
}

fn preview_out(m: &Model, p: &Preview) -> Option<PreviewOut> {
    let app = m.app(&p.preview_app_id.to_string())?;
    let parent = m.app(&p.app_id.to_string())?;
    let max_age = m.preview_feature_of(p.app_id).map_or(DEFAULT_PREVIEW_MAX_AGE, |f| f.max_age_seconds);
    Some(PreviewOut {
        id: p.id,
        app: app_ref(m, app),
        parent: app_ref(m, parent),
        pull_request: json!({"number": p.number, "head": {"ref": p.head_ref, "sha": p.head_sha}}),
        source_url: p.source_url.clone(),
        build: p.build_id.and_then(|id| m.build(id)).map(|b| json!({"id": b.id, "status": b.status.as_str()})),
        created_at: format_seconds(p.created_at),
        updated_at: format_seconds(p.updated_at),
        expires_at: format_seconds(p.updated_at.saturating_add(i64::try_from(max_age).unwrap_or(i64::MAX))),
    })
}

/// `GET /apps/{app}/previews`: the app's preview apps, by pull request number.
pub(super) async fn list_previews(State(plane): Plane, Path(app): Path<String>) -> ApiResult<impl IntoResponse> {
    let out = plane
        .read(|m| {
            let a = m.app(&app).ok_or(Error::NotFound { what: "app", key: app.clone() })?;
            Ok::<_, Error>(m.previews_of(a.id).into_iter().filter_map(|p| preview_out(m, p)).collect::<Vec<_>>())
        })
        .await?;
    Ok(Json(out))
}

/// The fields of GitHub's `pull_request` event Wharf reads; the rest is ignored.
#[derive(Deserialize)]
struct PullRequestEvent {
    action: String,
    number: u64,
    pull_request: Option<PullRequestIn>,
}

#[derive(Deserialize)]
struct PullRequestIn {
    head: HeadIn,
    base: BaseIn,
    /// RFC 3339 (`2024-01-02T03:04:05Z`): GitHub's last change of the pull request. Signed
    /// with the body, it orders the events of one pull request (see [`ActedOn`]).
    updated_at: Option<String>,
}

impl PullRequestIn {
    /// `updated_at` in microseconds since the epoch; 422 when it is there but not RFC 3339.
    fn updated_at(&self) -> Result<Option<i64>, ApiError> {
        self.updated_at
            .as_deref()
            .map(|t| {
                parse_micros(t).ok_or_else(|| {
                    ApiError::invalid(format!("pull_request.updated_at {t:?} is not an RFC 3339 timestamp"))
                })
            })
            .transpose()
    }
}

#[derive(Deserialize)]
struct BaseIn {
    repo: BaseRepoIn,
}

#[derive(Deserialize)]
struct BaseRepoIn {
    /// `owner/name`.
    full_name: String,
}

#[derive(Deserialize)]
struct HeadIn {
    #[serde(rename = "ref")]
    branch: String,
    sha: String,
    /// `null` when the pull request's fork was deleted.
    repo: Option<RepoIn>,
}

#[derive(Deserialize)]
struct RepoIn {
    /// `owner/name`.
    full_name: String,
    archive_url: String,
}

/// Why a pull request's event is not acted on though it is well formed.
enum NotActedOn {
    /// Its head is in another repository than its base: a fork's code would run with the
    /// development app's config vars (its secrets), so it gets no preview app, as Heroku's
    /// review apps do not by default.
    Fork(String),
}

impl PullRequestEvent {
    /// What `opened`, `reopened` and `synchronize` build: the head commit's archive URL, from
    /// the head repository's `archive_url` template (RFC 6570: `{archive_format}` = `tarball`,
    /// `{/ref}` = `/<sha>`). 422 names the field that is missing or wrong; `Ok(Err(_))` is a
    /// pull request Wharf makes no preview of.
    fn pull_request(self) -> Result<Result<PullRequest, NotActedOn>, ApiError> {
        let pr = self.pull_request.ok_or_else(|| ApiError::invalid("the event has no pull_request"))?;
        let updated = pr.updated_at()?.map(|at| (self.action, at));
        let (head, base) = (pr.head, pr.base);
        let sha_ok = matches!(head.sha.len(), 40 | 64) && head.sha.bytes().all(|b| b.is_ascii_hexdigit());
        if !sha_ok {
            return Err(ApiError::invalid("pull_request.head.sha is not a commit id (40 or 64 hex digits)"));
        }
        if head.branch.is_empty() || head.branch.len() > 255 || head.branch.chars().any(char::is_control) {
            return Err(ApiError::invalid("pull_request.head.ref must be 1 to 255 bytes without control characters"));
        }
        let repo = head.repo.ok_or_else(|| {
            ApiError::invalid("pull_request.head.repo is null: the pull request's repository is gone")
        })?;
        if repo.full_name != base.repo.full_name {
            return Ok(Err(NotActedOn::Fork(repo.full_name)));
        }
        let template = repo.archive_url;
        if !template.contains("{archive_format}") || !template.contains("{/ref}") {
            return Err(ApiError::invalid(
                "pull_request.head.repo.archive_url is not GitHub's template with {archive_format} and {/ref}",
            ));
        }
        let source_url = template.replace("{archive_format}", "tarball").replace("{/ref}", &format!("/{}", head.sha));
        Ok(Ok(PullRequest { number: self.number, head_ref: head.branch, head_sha: head.sha, source_url, updated }))
    }
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
}

/// The answer to an event: what it was and what Wharf did.
fn answer(
    status: StatusCode,
    event: &str,
    action: Option<&str>,
    outcome: &str,
    preview: Option<PreviewOut>,
) -> impl IntoResponse {
    (status, Json(json!({"event": event, "action": action, "outcome": outcome, "preview": preview})))
}

/// `POST /apps/{app}/previews/webhook`: GitHub's `pull_request` event for the app, signed with
/// the preview feature's secret (see the module's comment for every answer).
pub(super) async fn webhook(
    State(plane): Plane,
    Path(app): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<axum::response::Response> {
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "request body is too large")
        }
        _ => bad_request(format!("cannot read request body: {e}")),
    })?;
    let secret = plane.preview_secret(&app).await?;
    match verify_signature(&secret, &body, header(&headers, "x-hub-signature-256")) {
        Ok(()) => {}
        Err(SignatureError::Missing) => {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "an X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body> header is required",
            ));
        }
        Err(SignatureError::Mismatch) => {
            tracing::info!(app, "a preview webhook's signature does not match: refused");
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "the X-Hub-Signature-256 signature does not match the body under the preview feature's secret",
            ));
        }
    }
    let event =
        header(&headers, "x-github-event").ok_or_else(|| bad_request("an X-GitHub-Event header is required"))?;
    if event == "ping" {
        return Ok(answer(StatusCode::OK, event, None, "pong", None).into_response());
    }
    if event != "pull_request" {
        return Ok(answer(StatusCode::ACCEPTED, event, None, "ignored", None).into_response());
    }
    let delivery = header(&headers, "x-github-delivery")
        .filter(|d| (1..=64).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .ok_or_else(|| bad_request("an X-GitHub-Delivery header of 1 to 64 letters, digits and - is required"))?;
    let Body(parsed): Body<PullRequestEvent> = parse_body(&body)?;
    let action = parsed.action.clone();
    let number = parsed.number;
    if number == 0 {
        // GitHub numbers pull requests from 1; a 0 would name a preview app no pull request has.
        return Err(ApiError::invalid("number is a pull request's number: 1 or more"));
    }
    // A closed preview's app is gone once the event is acted on: it is shown as it was.
    let before = plane
        .read(|m| {
            let a = m.app(&app)?;
            m.preview_for(a.id, number).and_then(|p| preview_out(m, p))
        })
        .await;
    let outcome = match action.as_str() {
        "opened" | "reopened" | "synchronize" => match parsed.pull_request()? {
            Ok(pr) => plane.open_preview(&app, delivery, &pr).await?,
            Err(NotActedOn::Fork(repo)) => {
                tracing::info!(app, delivery, number, repo, "no preview app of a pull request from a fork");
                return Ok(answer(StatusCode::ACCEPTED, event, Some(&action), "ignored", None).into_response());
            }
        },
        "closed" => {
            let mark = match &parsed.pull_request {
                Some(pr) => pr.updated_at()?.map(|updated_at| ActedOn {
                    number,
                    updated_at,
                    action: action.clone(),
                    head_sha: pr.head.sha.clone(),
                }),
                None => None,
            };
            plane.close_preview(&app, delivery, number, mark).await?
        }
        _ => return Ok(answer(StatusCode::ACCEPTED, event, Some(&action), "ignored", None).into_response()),
    };
    let (word, out) = match &outcome {
        PreviewOutcome::Created(p) => ("created", plane.read(|m| preview_out(m, p)).await),
        PreviewOutcome::Rebuilt(p) => ("rebuilt", plane.read(|m| preview_out(m, p)).await),
        PreviewOutcome::Unchanged(p) => ("unchanged", plane.read(|m| preview_out(m, p)).await),
        PreviewOutcome::Deleted(_) => ("deleted", before),
        PreviewOutcome::Ignored(_) => ("ignored", None),
    };
    tracing::info!(app, delivery, action, number, outcome = word, "pull request event acted on");
    Ok(answer(StatusCode::ACCEPTED, event, Some(&action), word, out).into_response())
}

/// The body as JSON of `T`, with [`Body`]'s answers: 400 for malformed JSON, 422 for the wrong
/// shape.
fn parse_body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<Body<T>, ApiError> {
    super::wire::parse_json(bytes).map(Body)
}
