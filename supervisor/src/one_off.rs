//! One-off dynos (Heroku's `run:detached`): a command run once with the app's config vars, in
//! a copy of the current release's files of its own, removed when it exits (`release_dir`), its
//! output in the app's log stream as `run.N`, listed while it runs, and gone when it exits: its
//! whole process group is stopped and reaped then, as a formation dyno's is, and it is never
//! restarted: a restart or stop that names it, or restarts all of its app's dynos (Heroku's
//! `ps:stop run.N`, `ps:restart run.N`, `ps:restart`), stops it. A supervisor that stops stops its
//! one-off dynos too (SIGTERM, then SIGKILL after the stop grace).

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::watch;
use wharf_bus::{LogEvent, Publisher, Stream};
use wharf_control_api::{ControlPlane, DynoState, OneOff};

use crate::desired::DynoSpec;
use crate::dyno::stop_requested;
use crate::process;
use crate::record::Records;
use crate::registry::Registry;
use crate::release_dir;
use crate::settings::Settings;

/// What a one-off dyno needs besides its request: where its output goes, the grace to stop it
/// in, where its group is recorded, and the listing the control plane reads.
pub(crate) struct OneOffContext {
    /// The control plane, where the release's slug archive is found.
    pub(crate) plane: Arc<ControlPlane>,
    /// The log bus.
    pub(crate) publisher: Publisher,
    /// The stop grace.
    pub(crate) settings: Settings,
    /// Where running groups are recorded.
    pub(crate) records: Option<Records>,
    /// The dynos the control plane sees.
    pub(crate) registry: Arc<Registry>,
}

/// Runs the one-off dyno `name` to its end, until the supervisor stops (`stopped`), or until it
/// is stopped by name or with its app's other dynos (`own`); then stops what is left of its
/// group and takes it off the list.
pub(crate) async fn run(
    cx: OneOffContext,
    name: String,
    one_off: OneOff,
    mut stopped: watch::Receiver<bool>,
    mut own: watch::Receiver<bool>,
) {
    let spec = DynoSpec {
        command: one_off.command.clone(),
        env: one_off.env.clone().into_iter().collect::<BTreeMap<_, _>>(),
        port: None,
        healthcheck: None,
        release: one_off.release,
        slug: one_off.slug,
    };
    let (app, app_id) = (one_off.app.as_str(), one_off.app_id);
    // Its own copy of the release's files, so that what it writes stays its own.
    let (spawned, copy) = match release_dir::one_off_dir(&cx.plane, &cx.settings, &spec).await {
        Ok(copy) => {
            let dir = copy.as_ref().map(|c| c.app.as_path());
            (process::spawn(&spec, &name, 0, app, &cx.publisher, cx.records.as_ref(), dir), copy)
        }
        Err(e) => (Err(e), None),
    };
    let status = match spawned {
        Ok(mut process) => {
            cx.registry.set_state(app_id, &name, DynoState::Up);
            let _sampled = cx.registry.metrics.sample(process.pgid(), app_id, app, &name, &name, "run");
            let status = tokio::select! {
                status = process.wait() => status,
                () = stop_requested(&mut stopped) => "stopped with Wharf".to_owned(),
                () = stop_requested(&mut own) => "stopped by request".to_owned(),
            };
            process.stop(cx.settings.stop_grace).await;
            status
        }
        Err(e) => format!("cannot start: {e}"),
    };
    if let Some(copy) = copy {
        copy.remove().await;
    }
    tracing::info!(app, dyno = name, status, "one-off dyno ended");
    // Heroku announces a one-off's end in its stream as the platform: `State changed from up to
    // complete`; Wharf says how it ended as well.
    let text = format!("Process exited: {status}");
    let event = LogEvent::builder(app, "akkeris/supervisor").process(&name).stream(Stream::Platform);
    cx.publisher.publish(event.message(text.as_bytes()));
    cx.registry.remove(app_id, &name);
}
