//! The supervisor's settings: the periods it waits for dynos to start, stop and restart, where
//! it records the dynos it runs, and where releases' slugs are unpacked.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How the supervisor runs dynos; `wharf serve` fills it from the `[supervisor]` section of
/// the configuration file (`wharf_config::SupervisorConfig`).
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long a new web dyno has to pass its health check before its release is given up.
    pub health_timeout: Duration,
    /// How long a dyno has to exit after SIGTERM to its process group before SIGKILL.
    pub stop_grace: Duration,
    /// How long a web dyno keeps running after it left the router, so that the requests (and
    /// connections) already on their way to it finish before SIGTERM.
    pub connection_grace: Duration,
    /// After `connection_grace`, the longest a stopping web dyno waits for the requests at it to
    /// end before SIGTERM (see `in_flight`).
    pub request_grace: Duration,
    /// Reads the router's requests at a dyno, for that wait.
    pub in_flight: InFlight,
    /// Reads the snapshot version the router serves, so that a failed roll's dynos are out of
    /// the router before the failure is said (see `verdict`).
    pub router_version: RouterVersion,
    /// First delay before restarting a crashed dyno; it doubles, with jitter, up to
    /// [`RESTART_MAX`].
    pub restart_min: Duration,
    /// The directory where each running dyno's process group is recorded
    /// (`DATA_DIR/dynos/PGID`), so that the next start stops what a killed Wharf left running;
    /// `None` records nothing.
    pub records_dir: Option<PathBuf>,
    /// Where each release's slug is unpacked for its dynos (`DATA_DIR/releases/<id>/<slug id>`); `None`
    /// runs no slug (dynos run in Wharf's working directory, as releases without a slug do).
    pub releases_dir: Option<PathBuf>,
    /// How many of an app's newest releases keep their directory beside those whose dynos
    /// still run (what recent releases ran, for an operator to look at). A rollback is a new
    /// release, which unpacks a directory of its own whether its target's was kept or not.
    pub keep_releases: usize,
    /// How often each dyno's log-runtime-metrics lines (load, memory, CPU) go into its app's
    /// log stream; dynos are sampled every second whatever this is.
    pub runtime_metrics_interval: Duration,
    /// Longest a release phase may run; past it, it is stopped and its release fails.
    pub release_phase_timeout: Duration,
}

/// Reads how many requests the routers have at the dyno listening at an address (picked, their
/// response not yet ended), for the wait before a stopping dyno's SIGTERM. `wharf serve` gives
/// its embedded router's count plus what the routers in processes of their own reported
/// (`wharf_control_api::in_flight`); [`InFlight::none`] says 0.
///
/// It is made per wait: `begin` runs once as a wait begins (the dyno already out of the
/// snapshot) and returns the count that wait reads, so that the count may hold what was true
/// then (the snapshot version a remote router must have taken for its count to say anything).
#[derive(Clone)]
pub struct InFlight(Arc<dyn Fn() -> Count + Send + Sync>);

/// One wait's count: the requests at an address.
pub type Count = Box<dyn Fn(SocketAddr) -> usize + Send + Sync>;

impl InFlight {
    /// A reader whose waits each read the count `begin` returns as the wait begins.
    pub fn new<C>(begin: impl Fn() -> C + Send + Sync + 'static) -> InFlight
    where
        C: Fn(SocketAddr) -> usize + Send + Sync + 'static,
    {
        InFlight(Arc::new(move || Box::new(begin())))
    }

    /// No router to ask: a stopping dyno waits `connection_grace` only.
    pub fn none() -> InFlight {
        InFlight::new(|| |_: SocketAddr| 0)
    }

    /// The count for a wait that begins now.
    pub(crate) fn begin(&self) -> Count {
        (self.0)()
    }
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InFlight")
    }
}

/// Reads the version of the snapshot the router serves (its routing table's). `wharf serve`
/// gives the router's; [`RouterVersion::none`] says `u64::MAX`: no router to wait for.
#[derive(Clone)]
pub struct RouterVersion(Arc<dyn Fn() -> u64 + Send + Sync>);

impl RouterVersion {
    /// A reader of the router's version.
    pub fn new(read: impl Fn() -> u64 + Send + Sync + 'static) -> RouterVersion {
        RouterVersion(Arc::new(read))
    }

    /// No router in this process: nothing to wait for.
    pub fn none() -> RouterVersion {
        RouterVersion::new(|| u64::MAX)
    }

    pub(crate) fn serves(&self) -> u64 {
        (self.0)()
    }
}

impl std::fmt::Debug for RouterVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RouterVersion")
    }
}

/// The longest delay before a crashed dyno's restart, before jitter.
pub const RESTART_MAX: Duration = Duration::from_secs(60);

impl Default for Settings {
    fn default() -> Self {
        Settings {
            health_timeout: Duration::from_secs(60),
            stop_grace: Duration::from_secs(10),
            connection_grace: Duration::from_secs(1),
            request_grace: Duration::from_secs(30),
            in_flight: InFlight::none(),
            router_version: RouterVersion::none(),
            restart_min: Duration::from_secs(1),
            records_dir: None,
            releases_dir: None,
            keep_releases: 5,
            runtime_metrics_interval: Duration::from_secs(15 * 60),
            release_phase_timeout: Duration::from_secs(3600),
        }
    }
}
