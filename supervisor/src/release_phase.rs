//! The release phase (Heroku's): when an app's release has a `release` process type, its command
//! runs once, with the release's config vars and in the release's own directory, before any
//! dyno of the release starts. Exit status 0 lets the release roll; anything else (or a command
//! that cannot start) makes the release `failed`, and the dynos of the release before it keep
//! serving. Its output is in the app's log stream as `release.<version>`, and its end is
//! announced there by the platform.
//!
//! A phase may run at most `supervisor.release_phase_timeout` (an hour, Heroku's limit); past it,
//! its process group is stopped and the release fails.
//!
//! The `release` process type is never run as a formation entry: it is this phase's command.

use std::sync::Arc;

use tokio::sync::watch;
use uuid::Uuid;
use wharf_bus::{LogEvent, Publisher, Stream};
use wharf_control_api::ControlPlane;

use crate::desired::DynoSpec;
use crate::dyno::stop_requested;
use crate::record::Records;
use crate::{process, release_dir};

/// The process type whose command is the release phase.
pub(crate) const RELEASE: &str = "release";

/// What the release phase needs: the plane (for the release's directory), the log bus, the
/// settings and where process groups are recorded.
pub(crate) struct PhaseContext {
    /// The control plane.
    pub(crate) plane: Arc<ControlPlane>,
    /// Where its output goes.
    pub(crate) publisher: Publisher,
    /// Stop grace and the releases directory.
    pub(crate) settings: crate::settings::Settings,
    /// Where its process group is recorded.
    pub(crate) records: Option<Records>,
}

/// Runs the release command of `spec` for `app` (its key) to its end, and says whether it
/// succeeded; a supervisor stopping (`stopped`) or the app's deletion (`deleted`) stops it, and
/// that is not a success.
pub(crate) async fn run(
    cx: PhaseContext,
    app: String,
    spec: DynoSpec,
    mut stopped: watch::Receiver<bool>,
    mut deleted: watch::Receiver<bool>,
) -> bool {
    let version = spec.release.map_or(0, |r| r.version);
    let name = format!("{RELEASE}.{version}");
    let say = |text: String| {
        let event = LogEvent::builder(&app, "akkeris/supervisor").process(&name).stream(Stream::Platform);
        cx.publisher.publish(event.message(text.as_bytes()));
    };
    say(format!("Release phase of v{version} starting: {}", spec.command));
    let spawned = match release_dir::working_dir(&cx.plane, &cx.settings, &spec).await {
        Ok(dir) => process::spawn(&spec, &name, 0, &app, &cx.publisher, cx.records.as_ref(), dir.as_deref()),
        Err(e) => Err(e),
    };
    let (ok, status) = match spawned {
        Ok(mut process) => {
            let limit = cx.settings.release_phase_timeout;
            let outcome = tokio::select! {
                status = process.wait() => Ok(status),
                () = stop_requested(&mut stopped) => Err("stopped with Wharf".to_owned()),
                () = stop_requested(&mut deleted) => Err("stopped: its app was deleted".to_owned()),
                () = tokio::time::sleep(limit) => Err(format!(
                    "timed out after {}s (supervisor.release_phase_timeout); its processes were stopped",
                    limit.as_secs()
                )),
            };
            // Whatever ended it, nothing of its process group outlives the phase.
            process.stop(cx.settings.stop_grace).await;
            match outcome {
                Ok(status) => (status == "exit status: 0", status),
                Err(why) => (false, why),
            }
        }
        Err(e) => (false, format!("cannot start: {e}")),
    };
    if ok {
        say(format!("Release phase of v{version} succeeded"));
    } else {
        say(format!("Release phase of v{version} failed ({status}); the running release keeps serving"));
    }
    tracing::info!(app, version, status, "release phase ended");
    ok
}

/// Says in the app's log stream (as `release.<version>` of the running phase) that release
/// `waiting` (its version) waits for the running phase of release `running` to end: an app
/// runs one release phase at a time.
pub(crate) async fn say_waits(plane: &ControlPlane, publisher: &Publisher, app_id: Uuid, running: Uuid, waiting: u32) {
    let named = plane
        .read(|m| {
            let app = m.apps().find(|a| a.id == app_id).map(|a| m.app_key(a).to_string());
            app.zip(m.release(app_id, &running.to_string()).map(|r| r.version))
        })
        .await;
    let Some((app, version)) = named else { return };
    let name = format!("{RELEASE}.{version}");
    let event = LogEvent::builder(&app, "akkeris/supervisor").process(&name).stream(Stream::Platform);
    let text =
        format!("Release v{waiting} waits for the release phase of v{version} to end: an app runs one at a time");
    publisher.publish(event.message(text.as_bytes()));
    tracing::info!(app, running = version, waiting, "a release waits for the running release phase");
}
