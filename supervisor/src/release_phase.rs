//! The release phase (Heroku's): when an app's release has a `release` process type, its command
//! runs once, with the release's config vars and in the release's own directory, before any
//! dyno of the release starts. Exit status 0 lets the release roll; anything else (or a command
//! that cannot start) makes the release `failed`, and the dynos of the release before it keep
//! serving. Its output is in the app's log stream as `release.<version>`, and its end is
//! announced there by the platform; the release's `output_stream_url` streams the same lines
//! (the command's and those two) while it runs, and answers them from the release's record
//! once it ended (`plane::outputs`), which holds its lines so far every 2 s while it runs too,
//! so that a `kill -9` of Wharf loses at most the last seconds' lines from the URL.
//!
//! A phase may run at most `supervisor.release_phase_timeout` (an hour, Heroku's limit); past it,
//! its process group is stopped and the release fails.
//!
//! The `release` process type is never run as a formation entry: it is this phase's command.
//!
//! While it runs, the phase is listed among the app's dynos as `release.<version>` (type
//! `release`, its command shown), as Heroku's `heroku ps` lists the release dyno; stopping that
//! dyno by name (`DELETE /apps/{app}/dynos/release.N`, `ps:stop`, `ps:restart release.N`) ends
//! the phase as a failure: its process group is stopped and the release fails, so a hung
//! migration can be ended without waiting for the timeout. A restart of all the app's dynos
//! (`ps:restart`) leaves it running: it restarts the formation's dynos, and a migration is not
//! one of them.

use std::sync::Arc;

use tokio::sync::watch;
use uuid::Uuid;
use wharf_bus::{LogEvent, Publisher, Stream};
use wharf_control_api::{ControlPlane, DynoState, LocalDyno};
use wharf_domain::DynoType;

use crate::desired::DynoSpec;
use crate::dyno::stop_requested;
use crate::record::Records;
use crate::registry::Registry;
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
    /// Where it is listed among the app's dynos while it runs.
    pub(crate) registry: Arc<Registry>,
}

/// Why a running phase is asked to stop before it ends (`None` while it is not): its app was
/// deleted, or its dyno was stopped by name.
pub(crate) type PhaseStop = Option<&'static str>;

/// Why a phase stops when its app is deleted.
pub(crate) const APP_DELETED: &str = "stopped: its app was deleted";

/// Why a phase stops when Wharf stops (the release stays pending: its phase runs again).
const STOPPED_WITH_WHARF: &str = "stopped with Wharf";

/// Why a phase stops when its dyno is stopped through the API.
pub(crate) const STOPPED_BY_REQUEST: &str = "stopped by request (its dyno was stopped)";

/// The name a release phase of release `version` runs and is listed under: `release.<version>`.
pub(crate) fn dyno_name(version: u32) -> String {
    format!("{RELEASE}.{version}")
}

/// Runs the release command of `spec` for `app` (`app_id`, and its key) to its end, listed as
/// a dyno meanwhile, and says whether it succeeded; a supervisor stopping (`stopped`) or a stop
/// of its own (`own`: its app deleted, its dyno stopped; a dropped sender reads as the app's
/// deletion) stops it, and that is not a success.
pub(crate) async fn run(
    cx: PhaseContext,
    app_id: Uuid,
    app: String,
    spec: DynoSpec,
    mut stopped: watch::Receiver<bool>,
    mut own: watch::Receiver<PhaseStop>,
) -> bool {
    let version = spec.release.map_or(0, |r| r.version);
    let name = dyno_name(version);
    let listing = LocalDyno {
        name: name.clone(),
        dyno_type: DynoType::try_new(RELEASE).expect("a valid dyno type"),
        state: DynoState::Up,
        started_at: wharf_domain::timestamp::now_seconds(),
        launched: wharf_control_api::plane::local::next_launch(),
        release: spec.release,
        index: None,
        // Shown as a one-off's is: its own command, and never counted as a formation dyno.
        one_off: Some((spec.command.clone(), None)),
    };
    cx.registry.set(app_id, listing);
    // The release's `output_stream_url` streams the phase's lines, and its record keeps them.
    let output = match spec.release {
        Some(r) => Some(cx.plane.open_release_output(r.id).await),
        None => None,
    };
    let say = |text: String| {
        let event = LogEvent::builder(&app, "akkeris/supervisor").process(&name).stream(Stream::Platform);
        cx.publisher.publish(event.message(text.as_bytes()));
        if let Some(out) = &output {
            out.push(text);
        }
    };
    say(format!("Release phase of v{version} starting: {}", spec.command));
    let spawned = match release_dir::working_dir(&cx.plane, &cx.settings, &spec).await {
        Ok(dir) => {
            let (records, tee) = (cx.records.as_ref(), output.as_ref());
            process::spawn_teed(&spec, &name, 0, &app, &cx.publisher, records, dir.as_deref(), tee)
        }
        Err(e) => Err(e),
    };
    let (ok, status) = match spawned {
        Ok(mut process) => {
            let limit = cx.settings.release_phase_timeout;
            let outcome = tokio::select! {
                status = process.wait() => Ok(status),
                () = stop_requested(&mut stopped) => Err(STOPPED_WITH_WHARF.to_owned()),
                why = own.wait_for(Option::is_some) => {
                    Err(why.ok().and_then(|w| *w).unwrap_or(APP_DELETED).to_owned())
                }
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
    } else if status == STOPPED_WITH_WHARF {
        // Not a failure: the release stays pending, and the next start runs its phase again
        // (its output URL's followers were told so when Wharf cut it: `plane::outputs`).
        say(format!(
            "Release phase of v{version} cut short: Wharf stopped while it ran; it runs again from its start when \
             Wharf starts (v{version} stays pending)"
        ));
    } else {
        say(format!("Release phase of v{version} failed ({status}); the running release keeps serving"));
    }
    tracing::info!(app, version, status, "release phase ended");
    if let Some(out) = &output {
        cx.plane.close_release_output(out).await;
    }
    cx.registry.remove(app_id, &name);
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
    let name = dyno_name(version);
    let event = LogEvent::builder(&app, "akkeris/supervisor").process(&name).stream(Stream::Platform);
    let text =
        format!("Release v{waiting} waits for the release phase of v{version} to end: an app runs one at a time");
    publisher.publish(event.message(text.as_bytes()));
    tracing::info!(app, running = version, waiting, "a release waits for the running release phase");
}
