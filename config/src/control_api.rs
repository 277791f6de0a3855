//! `[control_api]`: where the control API listens, where it keeps its state, how it serves
//! TLS, and the limits and dyno sizes it applies to what clients ask for.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use wharf_domain::units::{ByteSize, HumanDuration};

use crate::DatabaseUrl;
use crate::dyno_size::{DynoSize, default_dyno_sizes};

/// The control API's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlApiConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Largest request body accepted.
    pub max_body: ByteSize,
    /// Most dynos of one type an app's formation may ask for.
    pub max_quantity: u32,
    /// PostgreSQL database to keep the state in, shared by every control-API replica that names
    /// it (`postgres://user:password@host:5432/dbname`, libpq's URL form). Without it, the state
    /// is in an embedded SQLite database in the data directory.
    pub database_url: Option<DatabaseUrl>,
    /// PEM file of the CA that signs the database server's certificate, trusted beside the
    /// system's trust store when the connection uses TLS (`sslmode=prefer`, the default, or `require`).
    pub database_ca: Option<PathBuf>,
    /// PEM certificate chain (leaf first) to serve the API over HTTPS with. Without it the API
    /// is plain HTTP, which remote data planes accept only on a loopback address.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Whether the API may listen in clear (without `tls_cert`) on an address that is not
    /// loopback. Off by default: the admin token, and the data planes' feed with every private
    /// key and drain credential, would cross the network readable; a control API refuses to
    /// start so. On for a network that is encrypted and trusted by other means (as
    /// `[feed] allow_cleartext` on the data planes).
    pub allow_cleartext: bool,
    /// PEM file of CAs trusted beside the system's trust store when the control plane fetches a URL an
    /// app names: its maintenance page (`MAINTENANCE_PAGE_URL`).
    pub trusted_ca: Option<PathBuf>,
    /// The dyno sizes a formation entry may ask for (Heroku's `size`, as `ps:type` and
    /// `ps:scale web=2:Standard-2X` set it), matched without regard to case. Heroku's names and
    /// memory figures by default.
    pub dyno_sizes: Vec<DynoSize>,
    /// The size of a formation entry that names none; one of `dyno_sizes`.
    pub default_dyno_size: String,
    /// Largest slug or build source archive, as uploaded or fetched (compressed): 500 MiB,
    /// Heroku's slug limit. Archives are kept in `DATA_DIR/slugs`.
    pub max_slug_bytes: ByteSize,
    /// Most bytes one slug or source archive may unpack to (the sum of its files), so that a
    /// small archive cannot fill the disk: 2 GiB.
    pub max_unpacked_bytes: ByteSize,
    /// Whether a build's `source_blob.url` may be a `file://` path on the control API's machine.
    /// Off by default: with it, whoever holds the admin token can have Wharf read any archive
    /// Wharf's user can.
    pub allow_file_urls: bool,
    /// How many of each app's newest releases keep their slug's archive, so that a rollback
    /// (or a promotion) within them can run it again: 20. A slug that no app's newest
    /// `keep_slugs` releases run is deleted, record and archive; one never released is kept for
    /// a day after it was made, to be uploaded and released. At least 1.
    pub keep_slugs: usize,
    /// How many builds fetch, unpack and pack at once on this server: 4. A build beyond them
    /// waits, `pending`, its output saying so, until one ends (builds use the disk and a core
    /// each, and a source may take up to 600 s to arrive). At least 1.
    pub max_concurrent_builds: usize,
    /// How long either side of a running canary release (its canary app, or the production app
    /// it is compared with) may have no web dyno before the canary release is aborted as one
    /// that cannot be judged: 120 s, so that a crash or two, restarted with backoff, does not
    /// abort it and a dyno that keeps crashing does. At least 1 s; whole seconds.
    pub canary_down_after: HumanDuration,
}

impl Default for ControlApiConfig {
    fn default() -> Self {
        ControlApiConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 5000)),
            max_body: ByteSize(1 << 20),
            max_quantity: 100,
            database_url: None,
            database_ca: None,
            tls_cert: None,
            tls_key: None,
            allow_cleartext: false,
            trusted_ca: None,
            dyno_sizes: default_dyno_sizes(),
            default_dyno_size: "Standard-1X".to_owned(),
            max_slug_bytes: ByteSize(500 << 20),
            max_unpacked_bytes: ByteSize(2 << 30),
            allow_file_urls: false,
            keep_slugs: 20,
            max_concurrent_builds: 4,
            canary_down_after: HumanDuration::secs(120),
        }
    }
}

impl ControlApiConfig {
    /// Checks the section on its own: the first problem's field (`control_api.…`) and message.
    pub(crate) fn validate(&self) -> Result<(), (&'static str, String)> {
        let invalid = |field, message: &str| Err((field, message.to_owned()));
        if self.keep_slugs == 0 {
            return invalid("control_api.keep_slugs", "must be at least 1: each app's current release runs its slug");
        }
        if self.max_concurrent_builds == 0 {
            return invalid("control_api.max_concurrent_builds", "must be at least 1, or no build would ever run");
        }
        if self.canary_down_after.0 < std::time::Duration::from_secs(1) {
            return invalid("control_api.canary_down_after", "must be at least 1s");
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return invalid("control_api.tls_cert", "tls_cert and tls_key go together");
        }
        if self.max_quantity == 0 {
            return invalid("control_api.max_quantity", "must be at least 1");
        }
        let sizes = &self.dyno_sizes;
        for (i, size) in sizes.iter().enumerate() {
            let n = &size.name;
            if n.is_empty() || n.len() > 64 || !n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                return invalid("control_api.dyno_sizes", &format!("{n:?} is not a size name: letters, digits and -"));
            }
            if sizes[..i].iter().any(|o| o.name.eq_ignore_ascii_case(n)) {
                return invalid("control_api.dyno_sizes", &format!("{n} is listed twice"));
            }
            if size.memory.0 == 0 {
                return invalid("control_api.dyno_sizes", &format!("{n} must have some memory"));
            }
        }
        if !sizes.iter().any(|s| s.name.eq_ignore_ascii_case(&self.default_dyno_size)) {
            return invalid("control_api.default_dyno_size", "must be one of dyno_sizes");
        }
        Ok(())
    }
}
