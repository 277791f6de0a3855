//! Wharf's domain vocabulary: the validated value types every part speaks, and the snapshot.
//!
//! The snapshot (`Snapshot`) is what the control API publishes and the router and logshuttle
//! consume. It is built from the value types in [`names`], [`drain`], [`cert`] and [`canary`],
//! whose constructors reject bad values, so that nothing past the parsing edge has to validate
//! again. The file configuration an operator writes lives in the `wharf-config` crate, which
//! builds on these types.

#![forbid(unsafe_code)]

pub mod canary;
pub mod cert;
pub mod drain;
pub mod metrics;
pub mod names;
pub mod outbound;
pub mod pipeline;
pub mod session;
pub mod snapshot;
pub mod timestamp;
pub mod trust;
pub mod units;

pub use canary::{
    CanaryError, CanaryEvidence, CanaryPolicy, CanarySpec, CanaryState, CanaryVerdict, ErrorClasses, PolicyInput,
    Tally, Weight,
};
pub use cert::{CertError, Certificate};
pub use drain::{DrainCa, DrainScheme, DrainUrl, DrainUrlError, SyslogFraming};
pub use names::{AppKey, AppName, DynoName, DynoType, Hostname, NameError, RoutePath, SiteDomain, SpaceName};
pub use pipeline::{HookUrl, HookUrlError, PipelineName, Stage};
pub use session::{SessionError, SessionGrant, SessionKey};
pub use snapshot::{
    AppSpec, CertSpec, DataPlaneRole, DrainSpec, DrainTarget, DynoSpec, ImageProcess, ImageSpec, MaintenancePage,
    RouteSpec, SiteSpec, Snapshot,
};
pub use units::{ByteSize, HumanDuration};

/// A new random (version 4) id for a control-API resource.
pub fn new_id() -> uuid::Uuid {
    uuid::Builder::from_random_bytes(random_bytes()).into_uuid()
}

/// Fills a buffer from the system's secure random number generator.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .expect("the system random number generator works");
    bytes
}
