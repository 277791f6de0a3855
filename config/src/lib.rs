//! The configuration file (TOML) and its `WHARF_*` environment overrides.
//!
//! Every section has defaults that make `wharf serve` work with no file at all. Loading is
//! three steps: read the TOML, overlay `WHARF_SECTION__KEY=value` variables, deserialize with
//! unknown keys rejected, then [`Config::validate`].

#![forbid(unsafe_code)]

mod control_api;
mod database_url;
mod dyno_size;
mod env;
mod feed;
mod kafka;

pub use control_api::ControlApiConfig;
pub use database_url::DatabaseUrl;
pub use dyno_size::DynoSize;
pub use env::unrecognised_variables;
use env::{env_path, set_path};
pub use feed::FeedConfig;
pub use kafka::KafkaConfig;
use kafka::valid_broker;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use wharf_domain::names::Hostname;
use wharf_domain::units::{ByteSize, HumanDuration};

/// Variables with the `WHARF_` prefix that Wharf reads, but not as configuration keys: the
/// named secrets (the admin token, one token per data-plane role, the log sessions' secret)
/// and the log filter.
pub const NAMED_VARIABLES: &[&str] = &[
    "WHARF_ADMIN_TOKEN",
    "WHARF_ROUTER_TOKEN",
    "WHARF_LOGSHUTTLE_TOKEN",
    "WHARF_RUNTIME_TOKEN",
    "WHARF_SESSION_SECRET",
    "WHARF_LOG",
];

/// Variables Wharf once read and now refuses, with what replaces each: setting one stops
/// start-up with that message rather than being ignored, so that an operator who relied on it
/// learns at once that it no longer does what it did.
pub const RETIRED_VARIABLES: &[(&str, &str)] = &[(
    "WHARF_DATA_PLANE_TOKEN",
    "no longer accepted: the one data-plane token read every secret of the feed; each data plane now has \
     its role's token, WHARF_ROUTER_TOKEN for `wharf router` and WHARF_LOGSHUTTLE_TOKEN for `wharf logshuttle` \
     (the control API's router-token and logshuttle-token files), and `wharf serve` needs neither",
)];

/// The configuration's top-level keys that are values, not sections: the only configuration
/// variables without a `__` (`WHARF_DATA_DIR`). A unit test checks this list against [`Config`].
const TOP_LEVEL_VALUES: &[&str] = &["data_dir"];

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The file is not valid TOML, or has unknown keys or wrong types.
    #[error("invalid configuration{origin}: {message}")]
    Parse {
        /// Where the configuration came from, for the message.
        origin: String,
        /// The parser's explanation.
        message: String,
    },
    /// A `WHARF_*` variable does not name a configuration key.
    #[error("environment variable {var}: {message}")]
    Env {
        /// The variable.
        var: String,
        /// What is wrong with it.
        message: String,
    },
    /// Well-formed, but a value is impossible.
    #[error("invalid configuration: {field}: {message}")]
    Invalid {
        /// The key, as `section.key`.
        field: &'static str,
        /// What to fix.
        message: String,
    },
}

/// The `section.key` of the `key = value` line of TOML `text` that holds byte `offset`, the
/// section being the nearest `[header]` above it; `None` when that line is no such line.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let start = text.get(..offset)?.rfind('\n').map_or(0, |i| i + 1);
    let line = text[start..].lines().next()?;
    let key = line.split_once('=')?.0.trim();
    let section = text[..start].lines().rev().find_map(|l| l.trim().strip_prefix('[')?.strip_suffix(']'));
    Some(match section {
        Some(s) => format!("{}.{key}", s.trim()),
        None => key.to_owned(),
    })
}

/// All of Wharf's configuration. Each service reads its own section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Directory for state: the embedded database, generated certificates and the admin token.
    pub data_dir: PathBuf,
    /// The control API.
    pub control_api: ControlApiConfig,
    /// The router.
    pub router: RouterConfig,
    /// The logshuttle.
    pub logshuttle: LogshuttleConfig,
    /// The local supervisor, which runs formations that have commands.
    pub supervisor: SupervisorConfig,
    /// The Kafka log bus. Without this section, the embedded in-process bus carries logs.
    pub kafka: Option<KafkaConfig>,
    /// Where connections to URLs users give (log drains) may go: `[outbound] allow_loopback`,
    /// `allow_private`, both `true` by default (see [`wharf_domain::outbound`]).
    pub outbound: wharf_domain::outbound::Policy,
    /// How `wharf router` and `wharf logshuttle` reach the control API they follow.
    pub feed: FeedConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("wharf-data"),
            control_api: ControlApiConfig::default(),
            router: RouterConfig::default(),
            logshuttle: LogshuttleConfig::default(),
            supervisor: SupervisorConfig::default(),
            kafka: None,
            outbound: wharf_domain::outbound::Policy::default(),
            feed: FeedConfig::default(),
        }
    }
}

/// The local supervisor's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SupervisorConfig {
    /// How long a new web dyno has to pass its health check before its release is given up.
    pub health_timeout: HumanDuration,
    /// How long a dyno has to exit after SIGTERM before it gets SIGKILL.
    pub stop_grace: HumanDuration,
    /// How long a web dyno keeps running after it left the router, for the requests and
    /// connections already on their way to it (before SIGTERM). Not a log drain; `drain` is
    /// still accepted, its name before drain came to mean log drains only.
    #[serde(alias = "drain")]
    pub connection_grace: HumanDuration,
    /// After `connection_grace`, the longest a stopping web dyno waits for the requests the
    /// router has at it to end before SIGTERM: 30 s by default, the router's own limit on a
    /// request's wait for its response (Heroku's H12). A roll, a scale down, a restart or a
    /// canary's end then cuts no request that would have been answered. The requests counted
    /// are the embedded router's and those of the `wharf router`s that follow this control API
    /// and report them (`wharf_control_api::in_flight`).
    pub request_grace: HumanDuration,
    /// First delay before a crashed dyno is restarted; it doubles up to a minute.
    pub restart_min: HumanDuration,
    /// How many of an app's newest releases keep their unpacked directory
    /// (`DATA_DIR/releases/<id>`) beside those whose dynos still run. A rollback is a new
    /// release with a directory of its own: it does not reuse its target's.
    pub keep_releases: u32,
    /// How often each dyno's log-runtime-metrics lines (Heroku's `sample#load_avg_1m`,
    /// `sample#memory_rss`, ..., and `sample#cpu_percent`) go into its app's log stream. Dynos
    /// are sampled every second regardless, for `GET /apps/{app}/metrics`. At least a second.
    pub runtime_metrics_interval: HumanDuration,
    /// Longest a release phase may run (Heroku's limit: an hour); past it, its process group is
    /// stopped and the release fails, and the running release keeps serving.
    pub release_phase_timeout: HumanDuration,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        SupervisorConfig {
            health_timeout: HumanDuration::secs(60),
            stop_grace: HumanDuration::secs(10),
            connection_grace: HumanDuration::secs(1),
            request_grace: HumanDuration::secs(30),
            restart_min: HumanDuration::secs(1),
            keep_releases: 5,
            runtime_metrics_interval: HumanDuration::secs(15 * 60),
            release_phase_timeout: HumanDuration::secs(3600),
        }
    }
}

/// The router's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouterConfig {
    /// Plain-HTTP listener; it redirects every request to HTTPS.
    pub http_listen: SocketAddr,
    /// HTTPS listener.
    pub https_listen: SocketAddr,
    /// HTTPS listener for internal sites and apps in internal spaces, which the public
    /// listeners never serve. Bind it only where internal clients reach it.
    pub internal_listen: SocketAddr,
    /// Prometheus metrics (`/metrics`) and health (`/healthz`), over plain HTTP.
    pub admin_listen: SocketAddr,
    /// The port clients reach the routers' HTTPS on (a load balancer's, say): what
    /// HTTP-to-HTTPS redirects and apps' `web_url` name (443 leaves it out of the URL).
    /// Defaults to `https_listen`'s port. A `wharf control-api`, which has no router, needs it
    /// set to the routers' public port for `web_url` to be right.
    pub https_public_port: Option<u16>,
    /// Whether the plain-HTTP listener redirects to HTTPS. Turn it off only behind a load
    /// balancer that terminates TLS itself; requests are then proxied as plain HTTP.
    pub http_redirect: bool,
    /// Apps are served on `app-space.<stack_domain>`.
    pub stack_domain: String,
    /// Worker threads, each with its own event loop and listening sockets; 0 means one per CPU.
    pub workers: usize,
    /// PEM certificate chain served when no other certificate matches. Without it, a
    /// certificate for `*.<stack_domain>` is generated in the data directory at first start.
    pub default_cert: Option<PathBuf>,
    /// PEM private key of `default_cert`.
    pub default_key: Option<PathBuf>,
    /// More certificates, read at start and chosen by SNI like uploaded ones: exact name, then
    /// wildcard; of two for one name, the one expiring later.
    pub certificates: Vec<CertFiles>,
    /// How long to wait for a dyno to accept a connection.
    pub connect_timeout: HumanDuration,
    /// How long to wait for the first byte of a dyno's response once the request is sent.
    pub first_byte_timeout: HumanDuration,
    /// How long a dyno's response may stay silent between two bytes before it is cut off (H15).
    pub idle_timeout: HumanDuration,
    /// How long a client may take to send a request's line and headers; also how long an idle
    /// keep-alive connection is kept waiting for the next request.
    pub header_timeout: HumanDuration,
    /// Longest request line (method, target and version) accepted; longer ones get 414.
    pub max_request_line: ByteSize,
    /// Most bytes of header names and values accepted; more get 431.
    pub max_header_bytes: ByteSize,
    /// Most header fields accepted; more get 431.
    pub max_headers: usize,
    /// `max-age` of the `Strict-Transport-Security` header added to HTTPS responses that do not
    /// set their own; `0s` adds none.
    pub hsts_max_age: HumanDuration,
    /// Session tickets a client gets after each TLS 1.3 handshake, to resume a later connection
    /// without a full handshake. One serves a client that opens its connections one after
    /// another (every connection, resumed or not, brings a fresh ticket); more serve one that
    /// opens several at once from a single earlier connection, at a cost to every client that
    /// never resumes. `0` turns TLS 1.3 resumption off.
    pub tls13_tickets: usize,
    /// How many dynos to try when connecting fails, per request.
    pub connect_attempts: u32,
    /// How long a dyno that failed to accept a connection is skipped.
    pub quarantine: HumanDuration,
    /// How long in-flight requests may take to finish at shutdown.
    pub shutdown_grace: HumanDuration,
    /// Which client fields with `_` in their names are dropped before a request reaches a dyno
    /// (CGI, WSGI and Rack servers read `_` and `-` alike, so `X_Forwarded_For` would stand
    /// beside the router's `X-Forwarded-For`).
    pub underscore_fields: UnderscoreFields,
    /// The protocols a request may upgrade to (`Upgrade`, RFC 9110, section 7.8), by name
    /// without version; the router tunnels only these. `h2c` is refused (RFC 9113, section 3.1).
    pub upgrades: Vec<String>,
}

/// Which client fields with underscores in their names the router drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnderscoreFields {
    /// Those that read as a field the platform sets or acts on once `_` is read as `-`
    /// (`X_Forwarded_For`, `Content_Length`); others pass.
    #[default]
    DropColliding,
    /// Every one, as nginx does by default.
    DropAll,
}

/// A certificate chain and its key, in PEM files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertFiles {
    /// The chain, leaf first.
    pub chain: PathBuf,
    /// The chain's private key.
    pub key: PathBuf,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            http_listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            https_listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            internal_listen: SocketAddr::from(([127, 0, 0, 1], 8444)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9100)),
            https_public_port: None,
            http_redirect: true,
            stack_domain: "localhost".into(),
            workers: 0,
            default_cert: None,
            default_key: None,
            certificates: vec![],
            connect_timeout: HumanDuration::secs(5),
            first_byte_timeout: HumanDuration::secs(30),
            idle_timeout: HumanDuration::secs(55),
            header_timeout: HumanDuration::secs(10),
            max_request_line: ByteSize(8 * 1024),
            max_header_bytes: ByteSize(8 * 1024),
            max_headers: 100,
            hsts_max_age: HumanDuration::secs(365 * 24 * 3600),
            tls13_tickets: 1,
            connect_attempts: 3,
            quarantine: HumanDuration::secs(5),
            shutdown_grace: HumanDuration::secs(10),
            underscore_fields: UnderscoreFields::DropColliding,
            upgrades: vec!["websocket".into()],
        }
    }
}

/// The logshuttle's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogshuttleConfig {
    /// Where a standalone logshuttle serves live tails. `wharf serve` serves them on the
    /// control API's listener instead.
    pub listen: SocketAddr,
    /// Base URL of live-tail links (`logplex_url`); defaults to the address tails are served on.
    pub public_url: Option<String>,
    /// Most lines a drain holds while its receiver is slow or away; past it, the oldest go.
    pub drain_buffer_lines: usize,
    /// Most bytes a drain holds while its receiver is slow or away; past it, the oldest go.
    pub drain_buffer_bytes: ByteSize,
    /// Lines of recent history kept per app for new log sessions.
    pub history_lines: usize,
    /// First delay before reconnecting to a drain; it doubles up to `reconnect_max`.
    pub reconnect_min: HumanDuration,
    /// Longest delay between reconnection attempts.
    pub reconnect_max: HumanDuration,
    /// How long a log session URL stays valid.
    pub session_ttl: HumanDuration,
    /// How long, at shutdown, drains may take to deliver what they hold before the last commit;
    /// `wharf logshuttle` also gives its listener's requests in flight this long to finish.
    pub shutdown_grace: HumanDuration,
    /// A PEM file of CAs that `syslog+tls://` and `https://` drains trust beside the
    /// system's trust store: an organisation's internal CA. A drain's own CAs come as PEM through the API.
    pub trusted_ca: Option<PathBuf>,
    /// Largest body of one HTTPS drain POST, in bytes (estimated from the lines' sizes before
    /// framing): logplex aims at about 100 KB. A receiver that answers 413 gets the batch again
    /// in halves, down to one line.
    pub https_batch_bytes: ByteSize,
    /// With Kafka as the bus, a drain past its budget reads the lines it missed back from the
    /// topic and rejoins the live stream, losing nothing the topic still holds (L10 only for
    /// what retention removed). `false` drops the oldest past the budget and announces them
    /// (L10), as logplex does. The embedded bus keeps nothing, so it always drops.
    pub catch_up: bool,
    /// With Kafka as the bus, most log sessions this logshuttle streams at once: each reads
    /// its app's partition of the topic with a client of its own (a few threads and up to a
    /// mebibyte of fetched messages). Past it, a session is refused with 503
    /// `service_unavailable` until one ends. 1 to 1024.
    pub session_readers: usize,
    /// With Kafka as the bus, how many of the newest messages of an app's partition a log
    /// session reads for its history: the app's last `lines` lines among them (the partition
    /// carries other apps' lines too).
    pub session_history_messages: u64,
}

impl Default for LogshuttleConfig {
    fn default() -> Self {
        LogshuttleConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 5001)),
            public_url: None,
            drain_buffer_lines: 10_000,
            drain_buffer_bytes: ByteSize(8 << 20),
            history_lines: 1500,
            reconnect_min: HumanDuration::millis(100),
            reconnect_max: HumanDuration::secs(10),
            session_ttl: HumanDuration::secs(300),
            shutdown_grace: HumanDuration::secs(5),
            trusted_ca: None,
            https_batch_bytes: ByteSize(100_000),
            catch_up: true,
            session_readers: 32,
            session_history_messages: 20_000,
        }
    }
}

impl Config {
    /// Reads the optional file (no file: all defaults), applies the `WHARF_*` variables among
    /// `env`, and validates. Errors with [`ConfigError::Read`] when the file cannot be read, and
    /// as [`Config::from_toml_and_env`] otherwise.
    pub fn load(file: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
        let text = match file {
            Some(path) => {
                std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?
            }
            None => String::new(),
        };
        let origin = file.map(|p| format!(" in {}", p.display())).unwrap_or_default();
        Config::from_toml_and_env(&text, &origin, env)
    }

    /// Parses TOML text, applies the `WHARF_*` variables among `env`, and validates; `origin`
    /// (` in PATH`, or empty) goes into parse errors. Errors with [`ConfigError::Parse`] for bad
    /// TOML, unknown keys or wrong types, [`ConfigError::Env`] for a malformed `WHARF_*`
    /// variable, and [`ConfigError::Invalid`] from [`Config::validate`].
    pub fn from_toml_and_env(
        text: &str,
        origin: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let parse_err = |origin: &str, e: &dyn std::fmt::Display| ConfigError::Parse {
            origin: origin.to_owned(),
            message: e.to_string().trim().replace('\n', " "),
        };
        let mut table: toml::Table = toml::from_str(text).map_err(|e| parse_err(origin, &e))?;
        let mut from_env = Vec::new();
        for (var, value) in env {
            if let Some((_, message)) = RETIRED_VARIABLES.iter().find(|(name, _)| *name == var) {
                return Err(ConfigError::Env { var, message: (*message).to_owned() });
            }
            if let Some(path) = env_path(&var)? {
                set_path(&mut table, &var, &path, &value)?;
                from_env.push(var);
            }
        }
        let origin =
            if from_env.is_empty() { origin.to_owned() } else { format!("{origin} (with {})", from_env.join(", ")) };
        let merged = toml::to_string(&table).map_err(|e| parse_err(&origin, &e))?;
        // The parser's own text quotes the offending line of the merged document, value and
        // all: a database URL in keyword form (`host=... password=...`) would put its password
        // in the log, and "line 2" names a line of no file. The key and the parser's message
        // say what is wrong without the value.
        let config: Config = toml::from_str(&merged).map_err(|e: toml::de::Error| ConfigError::Parse {
            origin: origin.clone(),
            message: match e.span().and_then(|s| key_at(&merged, s.start)) {
                Some(key) => format!("{key}: {}", e.message().trim().replace('\n', " ")),
                None => e.message().trim().replace('\n', " "),
            },
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that parse but cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, message: &str| Err(ConfigError::Invalid { field, message: message.to_owned() });
        let r = &self.router;
        if self.data_dir.as_os_str().is_empty() {
            return invalid("data_dir", "must not be empty");
        }
        if Hostname::try_new(&r.stack_domain).is_err() || r.stack_domain.parse::<std::net::IpAddr>().is_ok() {
            return invalid("router.stack_domain", "must be a DNS name such as `localhost` or `apps.example.com`");
        }
        if r.workers > 1024 {
            return invalid("router.workers", "must be at most 1024 (0 means one per CPU)");
        }
        for (field, d) in [
            ("router.connect_timeout", r.connect_timeout),
            ("router.first_byte_timeout", r.first_byte_timeout),
            ("router.idle_timeout", r.idle_timeout),
            ("router.header_timeout", r.header_timeout),
        ] {
            if d.0.is_zero() {
                return invalid(field, "must be longer than zero");
            }
        }
        for (field, size) in
            [("router.max_request_line", r.max_request_line), ("router.max_header_bytes", r.max_header_bytes)]
        {
            if !(1024..=1024 * 1024).contains(&size.0) {
                return invalid(field, "must be between 1KiB and 1MiB");
            }
        }
        if !(1..=1000).contains(&r.max_headers) {
            return invalid("router.max_headers", "must be between 1 and 1000");
        }
        if r.tls13_tickets > 8 {
            return invalid("router.tls13_tickets", "must be at most 8");
        }
        if r.connect_attempts == 0 || r.connect_attempts > 10 {
            return invalid("router.connect_attempts", "must be between 1 and 10");
        }
        if r.default_cert.is_some() != r.default_key.is_some() {
            return invalid("router.default_cert", "default_cert and default_key go together");
        }
        if let Some(bad) =
            r.upgrades.iter().find(|u| u.eq_ignore_ascii_case("h2c") || u.is_empty() || u.contains(['/', ',', ' ']))
        {
            return invalid(
                "router.upgrades",
                &format!("{bad:?} cannot be tunnelled (h2c never is; names carry no version)"),
            );
        }
        if r.https_public_port == Some(0) {
            return invalid("router.https_public_port", "must be a port between 1 and 65535");
        }
        let mut listens = vec![
            ("control_api.listen", self.control_api.listen),
            ("router.http_listen", r.http_listen),
            ("router.https_listen", r.https_listen),
            ("router.internal_listen", r.internal_listen),
            ("router.admin_listen", r.admin_listen),
        ];
        listens.retain(|(_, a)| a.port() != 0);
        for (i, (field, a)) in listens.iter().enumerate() {
            if listens[..i].iter().any(|(_, b)| b == a) {
                return invalid(field, &format!("{a} is already used by another listener"));
            }
        }
        if self.supervisor.health_timeout.0.is_zero() || self.supervisor.restart_min.0.is_zero() {
            return invalid("supervisor.health_timeout", "health_timeout and restart_min must be longer than zero");
        }
        if self.supervisor.runtime_metrics_interval.0 < std::time::Duration::from_secs(1) {
            return invalid(
                "supervisor.runtime_metrics_interval",
                "must be at least 1s: dynos are sampled each second",
            );
        }
        if let Err((field, message)) = self.control_api.validate() {
            return invalid(field, &message);
        }
        if self.feed.silence_timeout.0 < std::time::Duration::from_secs(2) {
            return invalid(
                "feed.silence_timeout",
                "must be at least 2s: the control api's heartbeat comes every second, and one late one must not end the stream",
            );
        }
        let l = &self.logshuttle;
        if l.drain_buffer_lines == 0 || l.drain_buffer_bytes.0 == 0 {
            return invalid("logshuttle.drain_buffer_lines", "drain buffers must hold at least one line and one byte");
        }
        if !(1024..=64 << 20).contains(&l.https_batch_bytes.0) {
            return invalid("logshuttle.https_batch_bytes", "must be between 1KiB and 64MiB");
        }
        if l.reconnect_min.0.is_zero() || l.reconnect_min > l.reconnect_max {
            return invalid("logshuttle.reconnect_min", "must be longer than zero and at most reconnect_max");
        }
        if l.session_ttl.0.is_zero() {
            return invalid("logshuttle.session_ttl", "must be longer than zero");
        }
        // Each reader is a Kafka client of its own: a few threads and up to a mebibyte.
        if !(1..=1024).contains(&l.session_readers) {
            return invalid("logshuttle.session_readers", "must be between 1 and 1024");
        }
        if let Some(url) = &l.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return invalid("logshuttle.public_url", "must start with http:// or https://");
        }
        if let Some(k) = &self.kafka {
            if k.brokers.split(',').any(|b| !valid_broker(b.trim())) {
                return invalid("kafka.brokers", "must be host:port pairs separated by commas");
            }
            let topic_ok = |t: &str| {
                !t.is_empty() && t.len() <= 249 && t.bytes().all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c))
            };
            const TOPIC: &str = "must be 1 to 249 letters, digits, dots, underscores or dashes";
            if !topic_ok(&k.topic) {
                return invalid("kafka.topic", TOPIC);
            }
            if !k.akkeris_app_topics.iter().all(|t| topic_ok(t)) {
                return invalid("kafka.akkeris_app_topics", TOPIC);
            }
            if !k.akkeris_build_topic.as_deref().is_none_or(topic_ok) {
                return invalid("kafka.akkeris_build_topic", TOPIC);
            }
            let topics = k.topics();
            if topics.iter().enumerate().any(|(i, t)| topics[..i].contains(t)) {
                return invalid("kafka.akkeris_app_topics", "each topic is read once: the lists name one twice");
            }
            if k.partitions == 0 || k.replication_factor == 0 {
                return invalid("kafka.partitions", "partitions and replication_factor must be at least 1");
            }
            if k.group_id.is_empty() {
                return invalid("kafka.group_id", "must not be empty");
            }
            if k.commit_interval.0.is_zero() {
                return invalid("kafka.commit_interval", "must be longer than zero");
            }
            // librdkafka refuses a wait of more than its socket timeout (60 s) less a second; 0
            // would make a broker that holds each fetch for the wait answer at once, in a loop.
            if !(HumanDuration::millis(1)..=HumanDuration::secs(10)).contains(&k.fetch_wait_max) {
                return invalid("kafka.fetch_wait_max", "must be 1 ms to 10 s");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, String> {
        Config::from_toml_and_env(text, "", env.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .map_err(|e| e.to_string())
    }

    #[track_caller]
    fn check_rejected(text: &str, env: &[(&str, &str)], want: &str) {
        let err = load(text, env).expect_err("should be rejected");
        assert!(err.contains(want), "error {err:?} should mention {want:?}");
    }

    /// A value the parser refuses is named by its key, never quoted: a database URL in keyword
    /// form would otherwise put its password in the log (FE31), from a variable or the file.
    #[test]
    fn a_refused_value_is_named_by_its_key_and_never_quoted() {
        let keyword = "host=db.internal port=5432 user=wharf password=SUPERSECRET dbname=wharf";
        for (text, env) in [
            (String::new(), vec![("WHARF_CONTROL_API__DATABASE_URL", keyword)]),
            (format!("[control_api]\ndatabase_url = \"{keyword}\""), vec![]),
        ] {
            let err = load(&text, &env).expect_err("a keyword-form URL is refused");
            assert!(err.contains("control_api.database_url: must be a postgres:// URL"), "{err}");
            assert!(!err.contains("SUPERSECRET") && !err.contains("line 2"), "{err}");
        }
        check_rejected("[router]\nworkers = \"many\"", &[], "router.workers: invalid type");
    }

    #[test]
    fn defaults_need_no_file() {
        let c = load("", &[]).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.control_api.listen.to_string(), "127.0.0.1:5000");
        assert!(c.kafka.is_none());
        assert!(c.outbound.allow_loopback && c.outbound.allow_private, "wharf serve reaches receivers beside it");
        let c = load("[outbound]\nallow_private = false", &[("WHARF_OUTBOUND__ALLOW_LOOPBACK", "false")]).unwrap();
        assert!(!c.outbound.allow_loopback && !c.outbound.allow_private);
    }

    #[test]
    fn env_overrides_file() {
        let c = load(
            "[router]\nworkers = 2\n",
            &[
                ("WHARF_ROUTER__WORKERS", "3"),
                ("WHARF_DATA_DIR", "/tmp/w"),
                ("WHARF_KAFKA__BROKERS", "k1:9092,k2:9092"),
                ("WHARF_ROUTER__CONNECT_TIMEOUT", "2s"),
                ("WHARF_ADMIN_TOKEN", "not config"),
                ("WHARF_ROUTER_TOKEN", "not config"),
                ("WHARF_LOGSHUTTLE_TOKEN", "not config"),
                ("WHARF_RUNTIME_TOKEN", "not config"),
                ("HOME", "/root"),
                // A wrapper's own variables are not Wharf's configuration.
                ("WHARF_BIN", "/usr/local/bin/wharf"),
                ("WHARF_HOME", "/srv/wharf"),
                ("WHARF_ROUTER_WORKERS", "9"),
            ],
        )
        .unwrap();
        assert_eq!(c.router.workers, 3);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/w"));
        assert_eq!(c.kafka.unwrap().brokers, "k1:9092,k2:9092");
        assert_eq!(c.router.connect_timeout, HumanDuration::secs(2));
    }

    #[test]
    fn only_documented_variables_are_configuration() {
        let env = |pairs: &[&str]| pairs.iter().map(|v| (v.to_string(), "1".to_string())).collect::<Vec<_>>();
        assert_eq!(
            unrecognised_variables(env(&[
                "WHARF_BIN",
                "WHARF_HOME",
                "WHARF_ROUTER_WORKERS",
                "WHARF_ROUTER__WORKERS",
                "WHARF_DATA_DIR",
                "WHARF_ADMIN_TOKEN",
                "WHARF_LOG",
                "PATH",
            ])),
            ["WHARF_BIN", "WHARF_HOME", "WHARF_ROUTER_WORKERS"]
        );
        // An unknown key in the documented form is still refused, with the variable named.
        check_rejected("", &[("WHARF_BOGUS__KEY", "1")], "WHARF_BOGUS__KEY");
        check_rejected("", &[("WHARF_LOGSHUTTLE__NOPE", "1")], "WHARF_LOGSHUTTLE__NOPE");
    }

    /// `TOP_LEVEL_VALUES` lists exactly the top-level keys that are not sections.
    #[test]
    fn top_level_values_match_the_configuration() {
        let table: toml::Table = toml::from_str(&toml::to_string(&Config::default()).unwrap()).unwrap();
        let values: Vec<&str> = table.iter().filter(|(_, v)| !v.is_table()).map(|(k, _)| k.as_str()).collect();
        assert_eq!(values, TOP_LEVEL_VALUES);
    }

    #[test]
    fn the_supervisor_s_connection_grace_is_still_read_from_its_old_name_drain() {
        let c = load("[supervisor]\nconnection_grace = \"3s\"\n", &[]).unwrap();
        assert_eq!(c.supervisor.connection_grace, HumanDuration::secs(3));
        let c = load("[supervisor]\ndrain = \"2s\"\n", &[]).unwrap();
        assert_eq!(c.supervisor.connection_grace, HumanDuration::secs(2));
        let c = load("", &[("WHARF_SUPERVISOR__DRAIN", "4s")]).unwrap();
        assert_eq!(c.supervisor.connection_grace, HumanDuration::secs(4));
    }

    #[test]
    fn rejections() {
        check_rejected("bogus = 1", &[], "unknown field `bogus`");
        check_rejected("[router]\nworker = 1", &[], "unknown field `worker`");
        check_rejected("[router]\nworkers = \"two\"", &[], "invalid type");
        check_rejected("[router\n", &[], "invalid configuration");
        check_rejected("", &[("WHARF_ROUTER__NOPE", "1")], "WHARF_ROUTER__NOPE");
        check_rejected("", &[("WHARF_ROUTER____X", "1")], "WHARF_SECTION__KEY");
        check_rejected("data_dir = \"\"", &[], "data_dir");
        check_rejected("[router]\nstack_domain = \"bad domain\"", &[], "router.stack_domain");
        check_rejected("[router]\nstack_domain = \"10.0.0.1\"", &[], "router.stack_domain");
        check_rejected("[router]\nworkers = 5000", &[], "router.workers");
        check_rejected("[router]\nconnect_timeout = \"0s\"", &[], "router.connect_timeout");
        check_rejected("[router]\nconnect_timeout = \"5\"", &[], "invalid duration");
        check_rejected("[router]\nconnect_attempts = 0", &[], "router.connect_attempts");
        check_rejected("[router]\nheader_timeout = \"0s\"", &[], "router.header_timeout");
        check_rejected("[router]\nmax_header_bytes = \"10B\"", &[], "router.max_header_bytes");
        check_rejected("[router]\nmax_request_line = \"2MiB\"", &[], "router.max_request_line");
        check_rejected("[router]\nmax_headers = 0", &[], "router.max_headers");
        check_rejected("[router]\nupgrades = [\"websocket\", \"H2C\"]", &[], "router.upgrades");
        check_rejected("[router]\nupgrades = [\"websocket/13\"]", &[], "router.upgrades");
        check_rejected("[router]\ntls13_tickets = 9", &[], "router.tls13_tickets");
        check_rejected("[router]\ntls13_tickets = -1", &[], "invalid value");
        check_rejected("[router]\nadmin_listen = \"127.0.0.1:8443\"", &[], "already used");
        check_rejected("[router]\ndefault_cert = \"/x.pem\"", &[], "router.default_cert");
        check_rejected("[router]\nhttps_public_port = 0", &[], "router.https_public_port");
        check_rejected("[[router.certificates]]\nchain = \"/x.pem\"", &[], "missing field `key`");
        check_rejected("[[router.certificates]]\nchain = \"a\"\nkey = \"b\"\nname = \"c\"", &[], "unknown field");
        check_rejected("[router]\nhttps_listen = \"127.0.0.1:5000\"", &[], "already used");
        check_rejected("[router]\nhttps_listen = \"localhost:1\"", &[], "invalid");
        check_rejected("[logshuttle]\ndrain_buffer_lines = 0", &[], "logshuttle.drain_buffer_lines");
        check_rejected("[logshuttle]\ndrain_buffer_bytes = \"1XB\"", &[], "invalid size");
        check_rejected("[logshuttle]\nhttps_batch_bytes = 10", &[], "logshuttle.https_batch_bytes");
        check_rejected("[outbound]\nallow_everything = true", &[], "allow_everything");
        check_rejected("[logshuttle]\nreconnect_min = \"1m\"", &[], "logshuttle.reconnect_min");
        check_rejected("[logshuttle]\nsession_ttl = \"0s\"", &[], "logshuttle.session_ttl");
        check_rejected("[logshuttle]\nsession_readers = 0", &[], "logshuttle.session_readers");
        check_rejected("[logshuttle]\nsession_readers = 1025", &[], "logshuttle.session_readers");
        check_rejected("[logshuttle]\npublic_url = \"ftp://x\"", &[], "logshuttle.public_url");
        check_rejected("[kafka]\nbrokers = \"nohost\"", &[], "kafka.brokers");
        check_rejected("[kafka]\ntopic = \"a b\"", &[], "kafka.topic");
        check_rejected("[kafka]\nakkeris_app_topics = [\"ok\", \"\"]", &[], "kafka.akkeris_app_topics");
        check_rejected("[kafka]\nakkeris_build_topic = \"a/b\"", &[], "kafka.akkeris_build_topic");
        check_rejected("[kafka]\nakkeris_app_topics = [\"wharf-logs\"]", &[], "read once");
        check_rejected("[kafka]\npartitions = 0", &[], "kafka.partitions");
        check_rejected("[control_api]\nmax_quantity = 0", &[], "control_api.max_quantity");
        check_rejected("[control_api]\ncanary_down_after = \"500ms\"", &[], "control_api.canary_down_after");
        check_rejected("[control_api]\ntls_cert = \"/c.pem\"", &[], "control_api.tls_cert");
        check_rejected("[control_api]\ntls_key = \"/k.pem\"", &[], "control_api.tls_cert");
        check_rejected("[feed]\nallow_insecure = true", &[], "unknown field `allow_insecure`");
        check_rejected("", &[("WHARF_FEED__ALLOW_CLEARTEXT", "yes")], "WHARF_FEED__ALLOW_CLEARTEXT");
        // The retired data-plane token stops start-up and names the tokens that replace it.
        for want in ["WHARF_DATA_PLANE_TOKEN", "WHARF_ROUTER_TOKEN", "WHARF_LOGSHUTTLE_TOKEN"] {
            check_rejected("", &[("WHARF_DATA_PLANE_TOKEN", "0123456789abcdef0123")], want);
        }
        check_rejected("[control_api]\ndefault_dyno_size = \"huge\"", &[], "control_api.default_dyno_size");
        check_rejected("[control_api]\ndyno_sizes = []", &[], "control_api.default_dyno_size");
        let sizes = "[control_api]\ndefault_dyno_size = \"a\"\ndyno_sizes = [";
        check_rejected(
            &format!("{sizes}{{name = \"a\", memory = \"1MiB\"}}, {{name = \"A\", memory = \"1MiB\"}}]"),
            &[],
            "listed twice",
        );
        check_rejected(&format!("{sizes}{{name = \"a b\", memory = \"1MiB\"}}]"), &[], "not a size name");
        check_rejected(&format!("{sizes}{{name = \"a\", memory = \"0B\"}}]"), &[], "must have some memory");
        check_rejected(&format!("{sizes}{{name = \"a\", memory = \"1MiB\", cpu = 1}}]"), &[], "unknown field");
        check_rejected("[control_api]\ndatabase_url = \"mysql://db/wharf\"", &[], "must be a postgres:// URL");
        check_rejected("[feed]\nsilence_timeout = \"1s\"", &[], "must be at least 2s");
        check_rejected("[control_api]\ndatabase_url = \"postgres://\"", &[], "must name a host");
        check_rejected("[supervisor]\nhealth_timeout = \"0s\"", &[], "supervisor.health_timeout");
        check_rejected(
            "[supervisor]\nruntime_metrics_interval = \"500ms\"",
            &[],
            "supervisor.runtime_metrics_interval",
        );
        check_rejected("[control_api]\nkeep_slugs = 0", &[], "control_api.keep_slugs");
        check_rejected("[control_api]\nmax_concurrent_builds = 0", &[], "control_api.max_concurrent_builds");
        check_rejected("[supervisor]\nrestart = \"1s\"", &[], "unknown field");
        check_rejected("[kafka]\ngroup_id = \"\"", &[], "kafka.group_id");
        check_rejected("[kafka]\ncommit_interval = \"0ms\"", &[], "kafka.commit_interval");
        for wait in ["0ms", "11s", "1h"] {
            check_rejected(&format!("[kafka]\nfetch_wait_max = \"{wait}\""), &[], "kafka.fetch_wait_max");
        }
    }

    #[test]
    fn database_url_passwords_are_never_shown() {
        for (url, shown) in [
            ("postgres://wharf:s3cret@db:5432/wharf", "postgres://wharf:***@db:5432/wharf"),
            ("postgresql://wharf@db/wharf?sslmode=require", "postgresql://wharf@db/wharf?sslmode=require"),
            ("postgres://db/wharf?user=w&password=s3cret", "postgres://db/wharf?user=w&password=***"),
            ("postgres://w:p%40ss@db", "postgres://w:***@db"),
        ] {
            let u = DatabaseUrl::try_new(url).unwrap();
            assert_eq!(u.to_string(), shown);
            assert!(!format!("{u:?}").contains("s3cret"), "{u:?}");
        }
        let c = load("[control_api]\ndatabase_url = \"postgres://wharf:s3cret@db/wharf\"", &[]).unwrap();
        assert!(!format!("{c:?}").contains("s3cret"), "a configuration's Debug hides the password");
        assert_eq!(c.control_api.database_url.unwrap().expose(), "postgres://wharf:s3cret@db/wharf");
    }

    /// Every file in config/examples loads as its process would load it (the fleet's with the
    /// variables their systemd units set: the keys come through credentials), and says what
    /// docs/fleet.md says it does; a new example must be added here.
    #[test]
    fn example_files_are_valid() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        let check = |file: &str, env: &[(&str, &str)], expected: &dyn Fn(&Config) -> bool| {
            let path = dir.join(file);
            let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
            let c = Config::load(Some(&path), env).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert!(expected(&c), "{file}: {c:?}");
        };
        let mut files: Vec<String> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        files.sort();
        assert_eq!(
            files,
            ["fleet-control-api.toml", "fleet-logshuttle.toml", "fleet-router.toml", "kafka.toml", "serve.toml"]
        );
        check(
            "fleet-control-api.toml",
            &[("WHARF_CONTROL_API__TLS_KEY", "/run/credentials/wharf-control-api.service/tls-key")],
            &|c| c.control_api.tls_cert.is_some() && c.router.https_public_port == Some(443) && c.kafka.is_some(),
        );
        check(
            "fleet-router.toml",
            &[("WHARF_ROUTER__DEFAULT_KEY", "/run/credentials/wharf-router.service/default-key")],
            &|c| c.router.default_cert.is_some() && c.feed.control_api_ca.is_some() && c.kafka.is_some(),
        );
        check("fleet-logshuttle.toml", &[], &|c| {
            c.kafka.as_ref().is_some_and(|k| k.group_id == "wharf-logshuttle") && c.feed.control_api_ca.is_some()
        });
        check("kafka.toml", &[], &|c| c.kafka.is_some());
        check("serve.toml", &[], &|c| c.kafka.is_none());
    }
}
