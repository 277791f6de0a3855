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
//! `canaries`, `canary_releases` (the `canary` feature of production apps), `sessions`, `hooks` (app webhooks and their
//! deliveries), `pipelines` (pipelines, couplings, release status checks,
//! promotions), `previews` (preview apps of pull requests, and the `preview` feature),
//! `maintenance` (fetching the page an app in maintenance mode names),
//! `slugs` (slugs stored or named by image, and their releases), `builds` (sources fetched,
//! unpacked and released as slugs), `fetch` (URL rules and `GET` for users' URLs) on top of
//! `outbound_http` (the one exchange with a user's URL, the outbound policy on every address).

mod apps;
mod build_source;
mod builds;
mod canaries;
mod canary_baseline;
mod canary_down;
mod canary_guards;
mod canary_releases;
mod config_vars;
mod domains;
mod drains;
#[cfg(test)]
mod dyno_name_tests;
mod dynos;
mod engine;
mod error;
mod fetch;
mod formation;
mod hooks;
pub mod local;
mod maintenance;
pub mod metrics;
pub mod outbound_http;
#[cfg(test)]
mod outbound_tests;
mod output_states;
mod outputs;
mod pipelines;
mod previews;
#[cfg(test)]
mod release_tests;
mod releases;
mod routing;
mod sessions;
mod slug_retention;
mod slugs;
#[cfg(test)]
mod tests;

pub use builds::{SOURCE_FETCH_TIMEOUT, parse_procfile};
pub use canary_releases::{
    CanaryFeatureInput, DEFAULT_CANARY_WEIGHT, DEFAULT_SOAK_REQUESTS, DEFAULT_SOAK_SECONDS, MAX_SOAK_SECONDS,
};
pub use config_vars::MAX_CONFIG_VARS;
pub use domains::{domain_site, domain_sites};
pub use drains::{Drains, MAX_DRAINS_PER_APP};
pub use dynos::{DynoDeletion, local_dyno_id};
pub use engine::{CanaryReader, ControlPlane, Settings};
pub use error::Error;
pub use formation::{DynoSizes, FormationUpdate, MAX_COMMAND, Quantity};
pub use hooks::{Delivery, DeliveryRecord, DeliveryStatus, Happened, HookInput, MAX_HOOKS_PER_APP, RECENT_DELIVERIES};
pub use local::{DynoRelease, DynoState, LocalDyno, LocalRuntime, OneOff, Restart};
pub use maintenance::{PAGE_FETCH_TIMEOUT, fetch_page};
pub use metrics::{DynoMetrics, RequestMetrics};
pub use output_states::{OutputState, build_output_state, has_release_phase, release_output_state};
pub use outputs::{KEPT_OUTPUTS, MAX_OUTPUT_BYTES, MAX_OUTPUT_LINE_BYTES, MAX_OUTPUT_LINES, Output, OutputWriter};
pub use pipelines::{CheckInput, MAX_REQUIRED_CONTEXTS, PromotionInput};
pub use previews::{
    DEFAULT_PREVIEW_MAX_AGE, MAX_PREVIEW_MAX_AGE, PreviewFeatureInput, PreviewOutcome, PullRequest, SWEEP_INTERVAL,
    SignatureError, verify_signature,
};
pub use releases::{INITIAL_RELEASE, Settled, check_rollback_target};
pub use routing::{MAX_CERTS, MAX_ROUTES_PER_SITE};
pub use sessions::LogSession;
pub use slug_retention::UNRELEASED_SLUG_TTL;
pub use slugs::{DeploySettings, NewSlug, UPLOAD_TOKEN_TTL, UploadRefusal, check_image};
