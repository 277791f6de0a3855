//! `POST /apps/{app}/log-sessions`: a signed, expiring URL that streams an app's lines (Heroku's
//! log-session resource; the answer's `logplex_url` is served by the logshuttle).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::json;
use wharf_domain::timestamp::format_seconds;

use super::wire::{ApiError, ApiResult, Body, Json, Plane};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LogSessionCreate {
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

pub(super) async fn create_log_session(
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
