//! The port between the control plane and a local runtime (the supervisor in `wharf serve`):
//! [`LocalRuntime`] is all the plane and the HTTP edge ask of it, namely which dynos it runs and
//! in what state, and to restart some. The runtime implements it and hands itself to
//! [`ControlPlane::set_local_runtime`](super::ControlPlane::set_local_runtime); the control API
//! knows nothing else of it. Nothing here is stored; it lives as long as the process.

use std::collections::BTreeMap;

use uuid::Uuid;
use wharf_domain::DynoType;

/// A one-off dyno to run (Heroku's `run:detached`): a command with the app's config vars and
/// the caller's additions, its output in the app's log stream, gone when it exits. An action,
/// not state: it is not stored, and a Wharf that stops stops it.
#[derive(Clone, PartialEq, Eq)]
pub struct OneOff {
    /// The app.
    pub app_id: Uuid,
    /// The app's key (`name-space`), as its log lines name it.
    pub app: String,
    /// Run with `sh -c`.
    pub command: String,
    /// The environment: the app's config vars, then the request's `env` (secrets: not in `Debug`).
    pub env: BTreeMap<String, String>,
    /// Its size as configured, if the request named one.
    pub size: Option<String>,
    /// The app's newest release, whose config vars it runs with.
    pub release: Option<DynoRelease>,
    /// That release's slug when it has a stored archive: the one-off runs in the release's own
    /// unpacked directory, as the release's formation dynos do. None for a release of commands
    /// alone or an image.
    pub slug: Option<Uuid>,
}

impl std::fmt::Debug for OneOff {
    // Values are secrets: debug output names the variables only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OneOff")
            .field("app_id", &self.app_id)
            .field("app", &self.app)
            .field("command", &self.command)
            .field("env_names", &self.env.keys().collect::<Vec<_>>())
            .field("size", &self.size)
            .field("release", &self.release)
            .field("slug", &self.slug)
            .finish()
    }
}

/// A request to restart an app's dynos run by the local supervisor: all of them (rolling), or
/// one. An action, not state: it is not stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restart {
    /// The app.
    pub app_id: Uuid,
    /// One dyno's name, or every dyno when `None`.
    pub dyno: Option<String>,
}

/// What a dyno the local supervisor runs is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DynoState {
    /// Started, not yet healthy.
    Starting,
    /// Running (and, for a web dyno, passing its health check).
    Up,
    /// Exited, and waiting to be started again.
    Crashed,
}

impl DynoState {
    /// Heroku's name for the state.
    pub fn as_str(self) -> &'static str {
        match self {
            DynoState::Starting => "starting",
            DynoState::Up => "up",
            DynoState::Crashed => "crashed",
        }
    }
}

/// The release a dyno runs, as Heroku's dyno resource embeds it (`release: {id, version}`); the
/// Heroku CLI's `ps:wait` waits until every dyno runs the newest version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DynoRelease {
    /// The release's id.
    pub id: Uuid,
    /// Its version, 1, 2, ...
    pub version: u32,
}

/// A dyno the local supervisor runs, as it reports it. Workers appear only here (they have no
/// endpoint to register), and web dynos appear here before they are healthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalDyno {
    /// `type.N-xxxxx` for a dyno of the formation (`N` its index), `release.N` for a release
    /// phase, `run.N` for a one-off dyno.
    pub name: String,
    /// Its formation entry's type.
    pub dyno_type: DynoType,
    /// What it is doing.
    pub state: DynoState,
    /// When it was started, in seconds since the epoch.
    pub started_at: i64,
    /// Its place in the order this process started dynos ([`next_launch`]): of two dynos
    /// started in the same second (a roll's replacement and the dyno it replaces), the later
    /// has the greater.
    pub launched: u64,
    /// The release it runs; none for an app that has no release (a database older than
    /// releases, until its next change).
    pub release: Option<DynoRelease>,
    /// A formation dyno's index among the running dynos of its type, 1 to N (Heroku's `web.N`,
    /// which [`crate::ControlPlane::dyno_name`] resolves by it); `None` for a release phase or
    /// a one-off dyno, whose name holds its own number.
    pub index: Option<u32>,
    /// A one-off dyno's command and size (a formation dyno's are its entry's): `None` for those.
    pub one_off: Option<(String, Option<String>)>,
}

/// The next number in the order this process starts dynos ([`LocalDyno::launched`]), from 1.
pub fn next_launch() -> u64 {
    static LAUNCHED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    LAUNCHED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
}

/// What the control plane needs from a runtime that runs dynos on this machine. The plane reads
/// dynos through it to show unregistered ones (workers, web dynos not yet healthy) and to check
/// a restart names a dyno that exists; it never reaches into the runtime otherwise.
pub trait LocalRuntime: Send + Sync {
    /// The app's dynos this runtime runs, by name; empty for an app it does not run.
    fn dynos(&self, app_id: Uuid) -> Vec<LocalDyno>;

    /// One of the app's dynos, by name.
    fn dyno(&self, app_id: Uuid, name: &str) -> Option<LocalDyno> {
        self.dynos(app_id).into_iter().find(|d| d.name == name)
    }

    /// Asks for a restart: every dyno of the app, rolling, or one. Fire and forget: the runtime
    /// restarts in its own time, and a request with no runtime listening is dropped.
    fn restart(&self, restart: Restart);

    /// Starts a one-off dyno and returns its name (`run.N`, N counting up per app), or `None`
    /// when this runtime runs no dynos.
    fn run(&self, one_off: OneOff) -> Option<String>;
}

/// The runtime of a control plane that runs no dynos itself (`wharf control-api`, or before the
/// supervisor starts): no dynos, and restart requests go nowhere.
#[derive(Debug, Default)]
pub(crate) struct NoLocalRuntime;

impl LocalRuntime for NoLocalRuntime {
    fn dynos(&self, _app_id: Uuid) -> Vec<LocalDyno> {
        Vec::new()
    }

    fn restart(&self, _restart: Restart) {}

    fn run(&self, _one_off: OneOff) -> Option<String> {
        None
    }
}
