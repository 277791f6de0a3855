//! `POST /v1/router-in-flight`: a remote router's requests in flight at the dynos that left its
//! table, and the snapshot version it routes by, for `wharf serve`'s supervisor to wait for
//! before it stops a dyno (the rule is in `crate::in_flight`).

use axum::extract::State;
use axum::response::IntoResponse;
use serde_json::json;

use super::wire::{ApiError, ApiResult, Body, Json, Plane};
use crate::in_flight::{InFlightReport, MAX_DYNOS};

/// Keeps the report as its router's latest; answers how many routers this replica counts now.
pub(super) async fn post_in_flight(
    State(plane): Plane,
    Body(report): Body<InFlightReport>,
) -> ApiResult<impl IntoResponse> {
    if report.dynos.len() > MAX_DYNOS {
        return Err(ApiError::invalid(format!(
            "dynos names {} dynos; a report names at most {MAX_DYNOS}: those with requests in flight",
            report.dynos.len()
        )));
    }
    let routers = plane.routers_in_flight().record(report);
    Ok(Json(json!({ "routers": routers })))
}
