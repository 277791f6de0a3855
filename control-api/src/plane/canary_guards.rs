//! What an automatic canary release refuses (issue 22), so that what its judge judges is what
//! the app is promoted to, and the judging is not disturbed: while one is open, other releases
//! of the app and changes to its canary app; with the `canary` feature on, releases that could
//! not be judged and code changes outside a judged release. `canary_releases.rs` runs the
//! canary releases themselves; the HTTP edge's route layer (`http/canary_apps.rs`) asks
//! [`ControlPlane::refuse_change_of_canary_app`] before every changing request of an app.

use uuid::Uuid;

use super::engine::ControlPlane;
use super::error::Error;
use crate::model::{App, Formation, Model, ReleaseProcess};

/// The process type the router sends requests to.
const WEB: &str = "web";

impl ControlPlane {
    /// Refuses (409, naming its canary release) a change to `app` when it is the canary app of
    /// an open canary release: the HTTP edge asks before every changing request of an app.
    /// A `registration` of a dyno passes where no local runtime runs dynos (an external runtime
    /// registers the canary's own). Unknown apps pass (the operation itself says 404).
    pub async fn refuse_change_of_canary_app(&self, app: &str, registration: bool) -> Result<(), Error> {
        if registration && self.local.get().is_none() {
            return Ok(());
        }
        self.read(|m| m.app(app).map_or(Ok(()), |a| refuse_canary_app(m, a.id))).await
    }
}

/// Refuses (409) a release of an app whose canary release is still open: it would run code the
/// judge has not seen, or be overtaken by the canary's release when the soak passes.
pub(super) fn refuse_during_canary(m: &Model, app_id: Uuid) -> Result<(), Error> {
    let Some(open) = m.canary_releases_of(app_id).into_iter().find(|c| c.state.is_open()) else { return Ok(()) };
    let key = m.app(&app_id.to_string()).map(|a| m.app_key(a).to_string()).unwrap_or_default();
    let version = m.releases_of(app_id).into_iter().find(|r| r.id == open.release_id).map_or(0, |r| r.version);
    Err(Error::Conflict(format!(
        "app {key} has a canary release of v{version} {} on {}: wait for its outcome, or end it with \
         POST /apps/{key}/canary/promote or DELETE /apps/{key}/canary",
        open.state.as_str(),
        open.canary_app
    )))
}

/// Refuses (409) a change to the canary app of an open canary release, whoever asks: what the
/// judge judges must be what the app is promoted to, so the canary app changes only with its
/// canary release (made at its start, deleted at its outcome). The message names the canary
/// release and how to end it.
pub(super) fn refuse_canary_app(m: &Model, app_id: Uuid) -> Result<(), Error> {
    let Some(open) = m.open_canary_releases().into_iter().find(|c| c.canary_app_id == app_id) else { return Ok(()) };
    let key = m.app(&open.app_id.to_string()).map(|a| m.app_key(a).to_string()).unwrap_or_default();
    let version = m.releases_of(open.app_id).into_iter().find(|r| r.id == open.release_id).map_or(0, |r| r.version);
    Err(Error::Conflict(format!(
        "app {} is the canary app of {key}'s canary release of v{version} ({}): it changes only with that canary \
         release; wait for its outcome, or end it with POST /apps/{key}/canary/promote or DELETE /apps/{key}/canary",
        open.canary_app,
        open.state.as_str(),
    )))
}

/// Refuses (422) a release without a `web` command for an app whose `canary` feature is on: the
/// canary judges web requests, so such a release could not be judged, and it would take the
/// app's web dynos down unjudged (their formation entry loses its command).
pub(super) fn refuse_unjudgeable(m: &Model, app: &App, processes: &[ReleaseProcess]) -> Result<(), Error> {
    if m.canary_feature_of(app.id).is_none_or(|f| !f.enabled) || has_web(processes) {
        return Ok(());
    }
    let key = m.app_key(app);
    Err(Error::Invalid(format!(
        "app {key} has the canary feature on, and this release has no web command for its canary to be judged \
         by: it would take the app's web dynos down unjudged. Give it a web process type, or turn the feature off \
         first (PATCH /apps/{key}/features/canary {{\"enabled\": false}})"
    )))
}

/// Refuses (422) a change of an app's process types through its formation (a command, port or
/// health check, or a process type removed) while its `canary` feature is on: it would be a
/// release of code no canary judged (removing `web` would take the app's web down). With the
/// feature on, code changes come with a release its canary judges: a build, a slug, a
/// promotion or a rollback. Scaling is no release and is not refused.
pub(super) fn refuse_unjudged_commands(m: &Model, app: &App) -> Result<(), Error> {
    if m.canary_feature_of(app.id).is_none_or(|f| !f.enabled) {
        return Ok(());
    }
    let key = m.app_key(app);
    Err(Error::Invalid(format!(
        "app {key} has the canary feature on: its process types' commands, ports and health checks change only \
         with a release of code its canary judges (a build, a slug release, a promotion or a rollback). Scale with \
         quantity alone, or turn the feature off first (PATCH /apps/{key}/features/canary {{\"enabled\": false}})"
    )))
}

/// Refuses (409) an endpoint registered through the API on an app whose `canary` feature is on
/// and whose dynos this process's supervisor runs (`supervised`): the router would send it a
/// share of the app's requests, and its code is none a canary judged (FE22c #2). Where an
/// external runtime runs the app, that runtime registers the app's dynos (the released code's,
/// after its canary) and passes, as it does on the canary app ([`refuse_canary_app`]'s
/// counterpart at the HTTP edge).
pub(super) fn refuse_unjudged_registration(m: &Model, app: &App, supervised: bool) -> Result<(), Error> {
    if !supervised || m.canary_feature_of(app.id).is_none_or(|f| !f.enabled) {
        return Ok(());
    }
    let key = m.app_key(app);
    Err(Error::Conflict(format!(
        "app {key} has the canary feature on and its dynos are run by this Wharf's supervisor: an endpoint \
         registered by hand would take a share of its requests with code no canary judged. Release code \
         with a build, a slug release, a promotion or a rollback, or turn the feature off first \
         (PATCH /apps/{key}/features/canary {{\"enabled\": false}})"
    )))
}

/// Refuses (409) scaling an app's `web` to 0 (`after`, the formation entries an update leaves)
/// while a canary release of it is open: production's web dynos are the baseline the judge
/// compares the canary with, and without them the canary would take every counted request with
/// nothing to be compared with (FE22d #1). Scaling to any other quantity goes on.
pub(super) fn refuse_baseline_scaled_away(m: &Model, app: &App, after: &[Formation]) -> Result<(), Error> {
    let web_to_zero = after.iter().any(|f| f.dyno_type.as_str() == WEB && f.quantity == 0);
    let Some(open) = m.canary_releases_of(app.id).into_iter().find(|c| c.state.is_open()) else { return Ok(()) };
    if !web_to_zero {
        return Ok(());
    }
    let key = m.app_key(app);
    let version = m.releases_of(app.id).into_iter().find(|r| r.id == open.release_id).map_or(0, |r| r.version);
    Err(Error::Conflict(format!(
        "app {key} has a canary release of v{version} {} on {}: its web dynos are the baseline the canary is \
         judged against, so web cannot be scaled to 0 until it ends (wait for its outcome, or end it with \
         POST /apps/{key}/canary/promote or DELETE /apps/{key}/canary)",
        open.state.as_str(),
        open.canary_app
    )))
}

/// Whether `processes` have a `web` command, which the router sends requests to.
fn has_web(processes: &[ReleaseProcess]) -> bool {
    processes.iter().any(|p| p.dyno_type.as_str() == WEB && p.command.is_some())
}
