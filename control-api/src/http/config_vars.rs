//! `/apps/{app}/config-vars`: an app's config vars (Heroku's config-vars resource: info and
//! update, where `null` deletes a var). In a `socs` space, sensitive values are redacted.

use axum::extract::{Path, State};
use axum::response::IntoResponse;

use super::wire::{ApiResult, Body, Json, Plane};
use crate::model::{App, Compliance, Model};
use crate::plane::Error;

/// Shown instead of a sensitive value in a `socs` space.
const REDACTED: &str = "[redacted]";

/// Whether a config var's name marks it sensitive: its value is hidden in `socs` spaces.
fn sensitive(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ["PASSWORD", "SECRET", "TOKEN", "KEY", "PRIVATE", "CREDENTIAL"].iter().any(|w| upper.contains(w))
}

/// An app's config vars as the API shows them: in a `socs` space, sensitive values redacted.
pub(super) fn config_vars_out(
    m: &Model,
    app: &App,
    vars: &std::collections::BTreeMap<String, String>,
) -> serde_json::Map<String, serde_json::Value> {
    let socs = m.app_space(app).compliance.contains(&Compliance::Socs);
    vars.iter()
        .map(|(k, v)| {
            let shown = if socs && sensitive(k) { REDACTED } else { v.as_str() };
            (k.clone(), serde_json::Value::String(shown.to_owned()))
        })
        .collect()
}

pub(super) async fn get_config_vars(State(plane): Plane, Path(app): Path<String>) -> ApiResult<impl IntoResponse> {
    let out = plane
        .read(|m| {
            let a = m.app(&app)?;
            let empty = std::collections::BTreeMap::new();
            let vars = m.config_vars_of(a.id).map_or(&empty, |c| &c.vars);
            Some(config_vars_out(m, a, vars))
        })
        .await;
    out.map(Json).ok_or_else(|| Error::NotFound { what: "app", key: app }.into())
}

pub(super) async fn patch_config_vars(
    State(plane): Plane,
    Path(app): Path<String>,
    Body(req): Body<std::collections::BTreeMap<String, Option<String>>>,
) -> ApiResult<impl IntoResponse> {
    let names_page = req.contains_key(crate::model::MAINTENANCE_PAGE_URL);
    let vars = plane.update_config_vars(&app, req).await?;
    // A page URL set, changed or removed is fetched (or forgotten) now, so that the page is
    // ready before maintenance mode is turned on.
    if names_page && let Some(id) = plane.read(|m| m.app(&app).map(|a| a.id)).await {
        tokio::spawn(plane.clone().refresh_maintenance_page(id));
    }
    let out = plane.read(|m| m.app(&app).map(|a| config_vars_out(m, a, &vars))).await;
    out.map(Json).ok_or_else(|| Error::NotFound { what: "app", key: app }.into())
}
