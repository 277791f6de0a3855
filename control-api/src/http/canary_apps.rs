//! The canary app of an open canary release is read-only (issue 22): every request that would
//! change it is refused with 409 naming the canary release, before its handler runs, so that
//! what the router's judge judges is what the production app is promoted to.
//!
//! The rule is kept here, once, for every route of an app (`/apps/{app}/...`): a route added
//! later is covered without a line of its own. What stays open is what changes nothing that
//! runs or is judged ([`WATCHING`]): reads, and watching the canary (its log sessions, log
//! drains and hooks); and, where an external runtime runs the canary (no local supervisor in
//! this process), that runtime's registrations of the canary's own dynos ([`RUNTIME`]). Where
//! the local supervisor runs it, those routes are an operator's (a restart of one dyno, or an
//! endpoint of another app's dyno registered as the canary's) and are refused too. Routes that
//! name an app elsewhere (a coupling, a site's route, another app's split) refuse in the
//! control plane (`plane/canary_releases.rs`'s `refuse_canary_app`).
//!
//! The check reads the model before the operation commits. A canary app is made fresh, under
//! a name that was free, and the check only ever lets through a change: so the one request that
//! can slip past is one naming the canary app's name in the instant it is made, before the
//! check could see it. A canary app never stops being one while its canary release is open,
//! so no request is refused that the app could take.

use std::sync::Arc;

use axum::extract::{FromRequestParts, RawPathParams, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::wire::ApiError;
use crate::plane::ControlPlane;

/// The changing routes of an app that stay open on a canary app, method and path template,
/// each because it changes nothing the canary runs or is judged on.
pub const WATCHING: [(&str, &str); 6] = [
    // A log session is a read of the app's log stream (a POST only because it makes a URL).
    ("POST", "/apps/{app}/log-sessions"),
    // Drains and hooks watch the canary; they go with the canary app when it is deleted.
    ("POST", "/apps/{app}/log-drains"),
    ("DELETE", "/apps/{app}/log-drains/{drain}"),
    ("POST", "/apps/{app}/hooks"),
    ("PATCH", "/apps/{app}/hooks/{hook}"),
    ("DELETE", "/apps/{app}/hooks/{hook}"),
];

/// The runtime's registrations of an app's dynos, which an external runtime running the
/// canary's dyno makes like any app's: refusing them would hide the canary from the router.
pub const RUNTIME: [(&str, &str); 2] = [("PUT", "/apps/{app}/dynos/{dyno}"), ("DELETE", "/apps/{app}/dynos/{dyno}")];

/// Whether `method path` (a request's path, or a route template) may always reach a canary
/// app: reads and [`WATCHING`].
pub fn open_on_canary_apps(method: &str, path: &str) -> bool {
    method == Method::GET || method == Method::HEAD || WATCHING.iter().any(|&(m, p)| m == method && matches(p, path))
}

/// Whether `method path` is one of [`RUNTIME`]'s dyno registrations, open on a canary app only
/// where an external runtime runs it.
pub fn registers_a_dyno(method: &str, path: &str) -> bool {
    RUNTIME.iter().any(|&(m, p)| m == method && matches(p, path))
}

/// Whether `path` is of route template `template`: the same segments, a `{param}` segment
/// matching any one. (The router has already matched the request to one of the admin routes,
/// so this only tells those templates apart.)
fn matches(template: &str, path: &str) -> bool {
    let (mut t, mut p) = (template.split('/'), path.split('/'));
    loop {
        match (t.next(), p.next()) {
            (None, None) => return true,
            (Some(t), Some(p)) if t == p || (t.starts_with('{') && !p.is_empty()) => {}
            _ => return false,
        }
    }
}

/// Whether `path` is under `/apps/{app}/` or is `/apps/{app}` itself: a route of one app.
fn names_an_app(path: &str) -> bool {
    matches!(path.split('/').collect::<Vec<_>>()[..], ["", "apps", app, ..] if !app.is_empty())
}

/// Middleware: refuses (409, Heroku's `conflict`) a changing request of an app that is the
/// canary app of an open canary release, unless [`open_on_canary_apps`].
pub(super) async fn refuse_changes_to_canary_apps(
    State(plane): State<Arc<ControlPlane>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    if !names_an_app(path) || open_on_canary_apps(request.method().as_str(), path) {
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    let params = RawPathParams::from_request_parts(&mut parts, &()).await.ok();
    let request = Request::from_parts(parts, body);
    let app = params.as_ref().and_then(|p| p.iter().find(|(name, _)| *name == "app").map(|(_, v)| v.to_owned()));
    let registration = registers_a_dyno(request.method().as_str(), request.uri().path());
    if let Some(app) = app
        && let Err(e) = plane.refuse_change_of_canary_app(&app, registration).await
    {
        return ApiError::from(e).into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_reads_watching_and_the_runtime_s_registrations_reach_a_canary_app() {
        // (method, request path, whether it names an app, whether it is open on a canary app)
        let rows = [
            ("GET", "/apps/webprdcanary/config-vars", true, true),
            ("HEAD", "/apps/webprdcanary", true, true),
            ("PATCH", "/apps/webprdcanary/config-vars", true, false),
            ("DELETE", "/apps/webprdcanary", true, false),
            ("PATCH", "/apps/webprdcanary", true, false),
            ("POST", "/apps/webprdcanary/log-sessions", true, true),
            ("POST", "/apps/webprdcanary/log-drains", true, true),
            ("DELETE", "/apps/webprdcanary/log-drains/d1", true, true),
            ("PATCH", "/apps/webprdcanary/hooks/h1", true, true),
            // The runtime's registrations: open only where an external runtime runs the canary.
            ("PUT", "/apps/webprdcanary/dynos/web.1", true, false),
            ("DELETE", "/apps/webprdcanary/dynos/web.1", true, false),
            // A restart of every dyno is no registration; nor is a one-off dyno.
            ("DELETE", "/apps/webprdcanary/dynos", true, false),
            ("POST", "/apps/webprdcanary/dynos", true, false),
            ("POST", "/apps/webprdcanary/log-drains/d1", true, false),
            ("DELETE", "/apps/webprdcanary/log-drains/", true, false),
            ("POST", "/apps", false, false),
            ("POST", "/apps/", false, false),
            ("PATCH", "/pipeline-couplings/c1", false, false),
        ];
        for (method, path, app, open) in rows {
            assert_eq!(names_an_app(path), app, "{method} {path}");
            assert_eq!(open_on_canary_apps(method, path), open, "{method} {path}");
            assert_eq!(registers_a_dyno(method, path), path.ends_with("/dynos/web.1"), "{method} {path}");
        }
    }
}
