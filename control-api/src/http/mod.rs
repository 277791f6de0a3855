//! The REST edge: the route table, bearer-token auth, and one module per resource.
//!
//! [`wire`] holds what every handler shares (JSON bodies, Heroku's error shape, embedded
//! references); each resource module parses requests into domain values, calls one
//! [`ControlPlane`] operation, and shapes the answer. The route table below is written once:
//! the same declaration registers the routes and lists them ([`endpoints`]), so that
//! tests/openapi.rs compares the OpenAPI document with what is really served.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{MethodFilter, on};
use axum::{Extension, Router};
use serde_json::json;
use wharf_bus::Publisher;

use crate::model::Model;
use crate::plane::ControlPlane;

mod account;
mod apps;
mod auth;
mod builds;
mod canaries;
pub mod canary_apps;
mod canary_releases;
mod certs;
mod config_vars;
mod domains;
mod drains;
mod dynos;
mod features;
mod formation;
mod hooks;
mod log_events;
mod log_sessions;
mod metrics;
mod outputs;
mod pipelines;
mod previews;
mod releases;
mod router_in_flight;
mod routes;
mod sites;
mod slugs;
mod snapshot;
mod spaces;
mod tls;
pub mod wire;

pub use auth::{AdminToken, Caller, role_may};
pub use snapshot::HEARTBEAT;
pub use tls::{TlsError, TlsListener, server_config};
pub use wire::{ApiError, Body, Json};

/// One served operation: an HTTP method (RFC 9110 section 9) and a path template, with
/// `{param}` segments as axum and OpenAPI write them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    /// `GET`, `POST`, `PUT`, `PATCH` or `DELETE`.
    pub method: &'static str,
    /// `/apps/{app}/dynos`, ...
    pub path: &'static str,
}

/// Declares a group of routes once: a const that lists them and a function that registers
/// them on a router, so that the list cannot drift from what is served.
macro_rules! route_group {
    ($(#[$doc:meta])* $list:ident, $register:ident: [$($method:ident $path:literal => $handler:expr,)*]) => {
        $(#[$doc])*
        const $list: &[Endpoint] = &[$(Endpoint { method: stringify!($method), path: $path }),*];

        /// Registers the group's routes on `router`.
        fn $register(router: Router<Arc<ControlPlane>>) -> Router<Arc<ControlPlane>> {
            router$(.route($path, on(MethodFilter::$method, $handler)))*
        }
    };
}

route_group! {
    /// The routes behind the admin token; a data plane's token opens only its role's `/v1/` ones.
    ADMIN, admin_routes: [
        GET "/account" => account::get_account,
        GET "/account/features" => features::list_account_features,
        GET "/users/~/apps" => apps::list_apps,
        GET "/teams/{team}/apps" => apps::list_team_apps,
        POST "/teams/apps" => apps::create_team_app,
        GET "/spaces" => spaces::list_spaces,
        POST "/spaces" => spaces::create_space,
        GET "/spaces/{space}" => spaces::get_space,
        GET "/apps" => apps::list_apps,
        POST "/apps" => apps::create_app,
        GET "/apps/{app}" => apps::get_app,
        PATCH "/apps/{app}" => apps::update_app,
        GET "/apps/{app}/domains" => domains::list_domains,
        POST "/apps/{app}/domains" => domains::add_domain,
        GET "/apps/{app}/domains/{domain}" => domains::get_domain,
        PATCH "/apps/{app}/domains/{domain}" => domains::update_domain,
        DELETE "/apps/{app}/domains/{domain}" => domains::remove_domain,
        GET "/apps/{app}/sni-endpoints" => domains::list_sni_endpoints,
        POST "/apps/{app}/sni-endpoints" => domains::add_sni_endpoint,
        GET "/apps/{app}/sni-endpoints/{name}" => domains::get_sni_endpoint,
        DELETE "/apps/{app}/sni-endpoints/{name}" => domains::remove_sni_endpoint,
        GET "/apps/{app}/addons" => features::list_addons,
        GET "/apps/{app}/features" => features::list_app_features,
        GET "/apps/{app}/features/{feature}" => features::get_app_feature,
        PATCH "/apps/{app}/features/{feature}" => features::patch_app_feature,
        DELETE "/apps/{app}" => apps::delete_app,
        GET "/apps/{app}/dynos" => dynos::list_dynos,
        POST "/apps/{app}/dynos" => dynos::create_dyno,
        DELETE "/apps/{app}/dynos" => dynos::restart_dynos,
        GET "/apps/{app}/dynos/{dyno}" => dynos::get_dyno,
        PUT "/apps/{app}/dynos/{dyno}" => dynos::put_dyno,
        DELETE "/apps/{app}/dynos/{dyno}" => dynos::delete_dyno,
        POST "/apps/{app}/dynos/{dyno}/actions/stop" => dynos::stop_dyno,
        DELETE "/apps/{app}/formations/{type}" => dynos::restart_dyno_type,
        POST "/apps/{app}/formations/{type}/actions/stop" => dynos::restart_dyno_type,
        GET "/apps/{app}/formation" => formation::list_formation,
        PATCH "/apps/{app}/formation" => formation::patch_formation,
        GET "/apps/{app}/formation/{type}" => formation::get_formation,
        PATCH "/apps/{app}/formation/{type}" => formation::patch_formation_type,
        DELETE "/apps/{app}/formation/{type}" => formation::delete_formation,
        GET "/apps/{app}/config-vars" => config_vars::get_config_vars,
        PATCH "/apps/{app}/config-vars" => config_vars::patch_config_vars,
        GET "/apps/{app}/releases" => releases::list_releases,
        POST "/apps/{app}/releases" => releases::rollback,
        GET "/apps/{app}/releases/{release}" => releases::get_release,
        GET "/apps/{app}/releases/{release}/config-vars" => releases::get_release_config_vars,
        POST "/apps/{app}/slugs" => slugs::create_slug,
        GET "/apps/{app}/slugs/{slug}" => slugs::get_slug,
        GET "/apps/{app}/builds" => builds::list_builds,
        POST "/apps/{app}/builds" => builds::create_build,
        GET "/apps/{app}/builds/{build}" => builds::get_build,
        GET "/apps/{app}/log-drains" => drains::list_drains,
        POST "/apps/{app}/log-drains" => drains::create_drain,
        GET "/apps/{app}/log-drains/{drain}" => drains::get_drain,
        DELETE "/apps/{app}/log-drains/{drain}" => drains::delete_drain,
        POST "/apps/{app}/log-sessions" => log_sessions::create_log_session,
        GET "/apps/{app}/metrics" => metrics::get_metrics,
        GET "/apps/{app}/routes" => routes::list_app_routes,
        GET "/apps/{app}/canary" => canaries::get_canary,
        PUT "/apps/{app}/canary" => canaries::put_canary,
        DELETE "/apps/{app}/canary" => canaries::delete_canary,
        POST "/apps/{app}/canary/promote" => canaries::promote_canary,
        GET "/apps/{app}/canary-releases" => canary_releases::list_canary_releases,
        GET "/apps/{app}/canary-releases/{canary_release}" => canary_releases::get_canary_release,
        GET "/sites" => sites::list_sites,
        POST "/sites" => sites::create_site,
        GET "/sites/{site}" => sites::get_site,
        DELETE "/sites/{site}" => sites::delete_site,
        GET "/sites/{site}/routes" => routes::list_site_routes,
        POST "/sites/{site}/routes" => routes::create_site_route,
        GET "/sites/{site}/log-drains" => drains::list_site_drains,
        POST "/sites/{site}/log-drains" => drains::create_site_drain,
        GET "/sites/{site}/log-drains/{drain}" => drains::get_site_drain,
        DELETE "/sites/{site}/log-drains/{drain}" => drains::delete_site_drain,
        GET "/routes" => routes::list_routes,
        POST "/routes" => routes::create_route,
        GET "/routes/{route}" => routes::get_route,
        DELETE "/routes/{route}" => routes::delete_route,
        GET "/certs" => certs::list_certs,
        POST "/certs" => certs::create_cert,
        GET "/certs/{cert}" => certs::get_cert,
        DELETE "/certs/{cert}" => certs::delete_cert,
        GET "/pipelines" => pipelines::list_pipelines,
        POST "/pipelines" => pipelines::create_pipeline,
        GET "/pipelines/{pipeline}" => pipelines::get_pipeline,
        PATCH "/pipelines/{pipeline}" => pipelines::update_pipeline,
        DELETE "/pipelines/{pipeline}" => pipelines::delete_pipeline,
        GET "/pipelines/{pipeline}/pipeline-couplings" => pipelines::list_pipeline_couplings,
        GET "/pipeline-stages" => pipelines::list_stages,
        GET "/pipeline-couplings" => pipelines::list_couplings,
        POST "/pipeline-couplings" => pipelines::create_coupling,
        GET "/pipeline-couplings/{coupling}" => pipelines::get_coupling,
        PATCH "/pipeline-couplings/{coupling}" => pipelines::update_coupling,
        DELETE "/pipeline-couplings/{coupling}" => pipelines::delete_coupling,
        GET "/apps/{app}/pipeline-couplings" => pipelines::get_app_coupling,
        GET "/apps/{app}/releases/{release}/statuses" => pipelines::list_statuses,
        POST "/apps/{app}/releases/{release}/statuses" => pipelines::create_status,
        GET "/apps/{app}/releases/{release}/statuses/{status}" => pipelines::get_status,
        PATCH "/apps/{app}/releases/{release}/statuses/{status}" => pipelines::update_status,
        GET "/pipeline-promotions" => pipelines::list_promotions,
        POST "/pipeline-promotions" => pipelines::create_promotion,
        GET "/pipeline-promotions/{promotion}" => pipelines::get_promotion,
        GET "/pipeline-promotions/{promotion}/promotion-targets" => pipelines::list_promotion_targets,
        GET "/apps/{app}/hooks" => hooks::list_hooks,
        POST "/apps/{app}/hooks" => hooks::create_hook,
        GET "/apps/{app}/hooks/{hook}" => hooks::get_hook,
        PATCH "/apps/{app}/hooks/{hook}" => hooks::update_hook,
        DELETE "/apps/{app}/hooks/{hook}" => hooks::delete_hook,
        GET "/apps/{app}/hooks/{hook}/deliveries" => hooks::list_deliveries,
        // Akkeris' name for the same list ("Getting Webhook Results").
        GET "/apps/{app}/hooks/{hook}/results" => hooks::list_deliveries,
        GET "/apps/{app}/previews" => previews::list_previews,
        GET "/v1/snapshot" => snapshot::snapshot,
        GET "/v1/snapshot/watch" => snapshot::stream,
        POST "/v1/canary-verdicts" => canaries::post_verdict,
        POST "/v1/router-in-flight" => router_in_flight::post_in_flight,
    ]
}

route_group! {
    /// The routes served, behind the admin token, only when the API has a log bus to publish to.
    LOG_EVENTS, log_event_routes: [
        POST "/log-events" => log_events::post,
    ]
}

route_group! {
    /// The routes served without a token.
    OPEN, open_routes: [
        // The slug's blob URL carries its own upload token. Its body is a raw stream, which the
        // JSON body limit does not apply to: `put_blob` caps it at `max_slug_bytes` itself.
        PUT "/slugs/{slug}/blob" => slugs::put_blob,
        // A build's output_stream_url: the build's random id is the capability, as Heroku's URL.
        GET "/builds/{build}/output" => builds::build_output,
        // A release's output_stream_url (its release phase's output): its random id likewise.
        GET "/releases/{release}/output" => releases::release_output,
        // GitHub's pull_request events cannot carry the admin token: each is authenticated by
        // its HMAC signature under the app's preview secret.
        POST "/apps/{app}/previews/webhook" => previews::webhook,
        GET "/healthz" => healthz,
        GET "/openapi.json" => openapi,
    ]
}

/// Every operation [`router`] serves itself (with a publisher), in declaration order; `extra`
/// routes are not among them.
pub fn endpoints() -> impl Iterator<Item = Endpoint> {
    [ADMIN, LOG_EVENTS, OPEN].into_iter().flatten().copied()
}

/// The control API's routes. `extra` routes (the logshuttle's live tails in `wharf serve`) are
/// served beside them without the admin token: their URLs carry their own signed grant. With a
/// `publisher`, `POST /log-events` puts platform components' lines onto the log bus. Request
/// bodies over `max_body` bytes are refused with 413; unknown paths answer 404 and known paths
/// with another method 405, both in Heroku's error shape.
pub fn router(
    plane: Arc<ControlPlane>,
    token: AdminToken,
    max_body: usize,
    extra: Option<Router>,
    publisher: Option<Publisher>,
) -> Router {
    // Webhook deliveries are sent by the process that serves the API.
    hooks::start_deliveries(plane.clone());
    // Stale preview apps are deleted by the process that serves the API.
    plane.start_preview_sweeper();
    let mut api = admin_routes(Router::new());
    if let Some(publisher) = publisher {
        api = log_event_routes(api).layer(Extension(publisher));
    }
    // After the token's check (a route layer added later runs first): the canary apps of open
    // canary releases are read-only.
    let api = api
        .route_layer(axum::middleware::from_fn_with_state(plane.clone(), canary_apps::refuse_changes_to_canary_apps));
    let api = api.route_layer(axum::middleware::from_fn_with_state(token, auth::require_token));
    let api = open_routes(api).with_state(plane);
    let app = match extra {
        Some(extra) => api.merge(extra),
        None => api,
    };
    app.fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not support that method",
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
}

/// The OpenAPI 3.0 document of every endpoint, generated by `control-api/openapi/generate.py`
/// and kept true by tests/openapi.rs.
pub const OPENAPI: &str = include_str!("../../openapi/openapi.json");

/// `GET /openapi.json`.
async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

/// `GET /healthz`: `{"status": "ok", "version": N, "storage": "ok"}` with the model's
/// version. Always 200 while the process answers: it serves reads (and the data planes' feed)
/// from memory even while its database is down, so a load balancer should keep it in on this
/// status alone. `"storage": "unavailable"` says the store's last operation (a write, or the
/// poll for other replicas' changes every 5 s) failed, so writes answer 503 until it is back:
/// for monitoring and alerts, not for taking the replica out (every replica shares the database).
async fn healthz(State(plane): State<Arc<ControlPlane>>) -> impl IntoResponse {
    let version = plane.read(Model::version).await;
    let storage = if plane.storage_available() { "ok" } else { "unavailable" };
    Json(json!({ "status": "ok", "version": version, "storage": storage }))
}
