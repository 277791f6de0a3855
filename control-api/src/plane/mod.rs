//! The control plane: typed operations on the state, each checking its inputs against the
//! current model, computing the changes, and handing them to the commit engine (`engine`, which also holds
//! [`ControlPlane`] itself),
//! which makes them durable, applies them and publishes the new snapshot.
//!
//! Operations take typed values (names and URLs already parsed); what they check is what
//! depends on state: existence, uniqueness, limits. There is one `impl ControlPlane` file per
//! aggregate: `apps` (spaces and apps), `formation`, `dynos`, `config_vars`,
//! `drains`, `releases` (every config or command change, and rollbacks), `routing` (sites,
//! routes, certificates), `domains` (an app's custom domains, as sites routing `/` to it),
//! `canaries`, `sessions`, `maintenance` (fetching the page an app in maintenance mode names).

mod apps;
mod canaries;
mod config_vars;
mod domains;
mod drains;
mod dynos;
mod engine;
mod error;
mod formation;
pub mod local;
mod maintenance;
pub mod metrics;
mod releases;
mod routing;
mod sessions;
#[cfg(test)]
mod tests;

pub use config_vars::MAX_CONFIG_VARS;
pub use domains::{domain_site, domain_sites};
pub use drains::{Drains, MAX_DRAINS_PER_APP};
pub use engine::{CanaryReader, ControlPlane, Settings};
pub use error::Error;
pub use formation::{DynoSizes, FormationUpdate, Quantity};
pub use local::{DynoRelease, DynoState, LocalDyno, LocalRuntime, OneOff, Restart};
pub use maintenance::{PAGE_FETCH_TIMEOUT, fetch_page};
pub use metrics::{DynoMetrics, RequestMetrics};
pub use releases::INITIAL_RELEASE;
pub use routing::{MAX_CERTS, MAX_ROUTES_PER_SITE};
pub use sessions::LogSession;
