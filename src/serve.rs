//! `wharf serve`: the whole platform data plane in one process.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use wharf_bus::{Bus, BusConfig};
use wharf_config::{Config, KafkaConfig};
use wharf_control_api::{AdminToken, ControlPlane, PostgresStore, Settings, SqliteStore, Store};
use wharf_domain::{DataPlaneRole, SessionKey};
use wharf_logshuttle::Logshuttle;
use wharf_router::{Listeners, Router, tls};

use crate::Common;

/// Batches the embedded bus holds before producers' lines are dropped and counted. The router
/// hands over a batch per worker per millisecond at most, so this is seconds of backlog.
const EMBEDDED_BUS_CAPACITY: usize = 4096;

/// Options of `wharf serve`.
#[derive(clap::Args, Debug)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    common: Common,
    /// Use Kafka at these brokers (host:port, comma-separated) as the log bus instead of the
    /// embedded one.
    #[arg(long, value_name = "BROKERS")]
    kafka: Option<String>,
    /// Keep the state in this PostgreSQL database (postgres://user:password@host/db) instead of
    /// SQLite in the data directory; control APIs given the same database are replicas of one
    /// another. WHARF_CONTROL_API__DATABASE_URL keeps the password off the command line.
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
}

/// Runs the control API, router and logshuttle in one process on a multi-threaded Tokio
/// runtime until SIGINT or SIGTERM, then stops them in order. Errors when the configuration
/// does not load, a listener cannot bind, or the data directory cannot be written.
pub(crate) fn run(args: ServeArgs) -> Result<()> {
    let mut config = args.common.load(args.kafka)?;
    if let Some(url) = args.database_url {
        let url = wharf_config::DatabaseUrl::try_new(&url).map_err(|e| anyhow::anyhow!("--database-url {e}"))?;
        config.control_api.database_url = Some(url);
    }
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(serve(config))
}

/// One secret every control API keeps: what it is called in messages, the environment variable
/// that gives it, and its file in the data directory.
struct SecretSpec {
    what: &'static str,
    var: &'static str,
    file: &'static str,
}

/// The admin token.
const ADMIN: SecretSpec = SecretSpec { what: "admin token", var: "WHARF_ADMIN_TOKEN", file: "admin-token" };
/// What a `wharf router --control-api` sends.
const ROUTER: SecretSpec = SecretSpec { what: "router token", var: "WHARF_ROUTER_TOKEN", file: "router-token" };
/// What a `wharf logshuttle --control-api` sends.
const LOGSHUTTLE: SecretSpec =
    SecretSpec { what: "logshuttle token", var: "WHARF_LOGSHUTTLE_TOKEN", file: "logshuttle-token" };
/// What an external runtime sends to read the images apps run.
const RUNTIME: SecretSpec = SecretSpec { what: "runtime token", var: "WHARF_RUNTIME_TOKEN", file: "runtime-token" };
/// The key that signs log session URLs.
const SESSIONS: SecretSpec = SecretSpec { what: "session secret", var: "WHARF_SESSION_SECRET", file: "session-secret" };

/// Every secret a control API keeps, which replicas on one database must all share.
const SHARED_SECRETS: [&SecretSpec; 5] = [&ADMIN, &ROUTER, &LOGSHUTTLE, &RUNTIME, &SESSIONS];

/// Where a secret came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// Its environment variable.
    Variable,
    /// Its file in the data directory.
    File,
    /// Made at this start and stored in its file.
    Generated,
}

/// A secret from its environment variable, else from its file in `data_dir`; `None` when it has
/// neither. The same rules hold for both: at least 16 characters (after trimming), and a file
/// readable by its owner only (as Wharf writes them: a secret others may read is no secret).
/// Errors when a secret breaks either rule or its file cannot be read, naming the variable or
/// the file.
fn read_secret(data_dir: &Path, spec: &SecretSpec) -> Result<Option<(String, Origin)>> {
    if let Ok(t) = std::env::var(spec.var) {
        anyhow::ensure!(t.trim().len() >= MIN_SECRET, "{} must be at least {MIN_SECRET} characters", spec.var);
        return Ok(Some((t.trim().to_owned(), Origin::Variable)));
    }
    let path = data_dir.join(spec.file);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => t,
        Ok(_) => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let shown = absolute(&path);
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path)?.permissions());
    anyhow::ensure!(
        mode & 0o077 == 0,
        "{} ({}) may be read by others (mode {:o}): make it its owner's only (chmod 600 {})",
        shown.display(),
        spec.what,
        mode & 0o777,
        shown.display()
    );
    anyhow::ensure!(
        text.trim().len() >= MIN_SECRET,
        "{} ({}) must hold at least {MIN_SECRET} characters",
        shown.display(),
        spec.what
    );
    Ok(Some((text.trim().to_owned(), Origin::File)))
}

/// The shortest secret accepted, in characters, from a variable or a file alike.
const MIN_SECRET: usize = 16;

/// Makes a new secret (24 random bytes, hex) and stores it owner-only in its file in
/// `data_dir`; it is never printed or logged, only where it is. Errors when the file cannot be
/// written.
fn generate_secret(data_dir: &Path, spec: &SecretSpec) -> Result<(String, Origin)> {
    let path = data_dir.join(spec.file);
    let token: String = wharf_domain::random_bytes::<24>().iter().map(|b| format!("{b:02x}")).collect();
    let mut f = {
        use std::os::unix::fs::OpenOptionsExt;
        // An empty file left behind is replaced; `create_new` would refuse it.
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&path)
    }
    .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(token.as_bytes()).with_context(|| format!("cannot write {}", path.display()))?;
    tracing::info!(secret = spec.what, file = %absolute(&path).display(), "generated a new secret (owner-only)");
    Ok((token, Origin::Generated))
}

/// Why a control API on a shared database refuses to start without every secret, naming each
/// missing one's variable and file and how to make them.
fn missing_secrets_error(data_dir: &Path, missing: &[&SecretSpec]) -> anyhow::Error {
    let dir = absolute(data_dir);
    let mut text = String::from(
        "this control API shares its database (control_api.database_url) with its replicas, so it does not make secrets of its own: \
         every replica must have the same ones, and a replica with its own would answer the others' tokens with 401. Missing:",
    );
    for spec in missing {
        text.push_str(&format!("\n  {}: set {} or write {}", spec.what, spec.var, dir.join(spec.file).display()));
    }
    text.push_str(&format!(
        "\nCopy these files (owner-only) from another replica's data directory, or, for a new fleet, make each once and give \
         every replica the same: (umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \\n' > {}/FILE)",
        dir.display()
    ));
    anyhow::anyhow!(text)
}

/// Where the banner says a secret is: the variable it was given in (which wins over the file,
/// as in [`read_secret`]), or its file in `data_dir`.
fn token_source(data_dir: &Path, spec: &SecretSpec) -> String {
    if std::env::var_os(spec.var).is_some() {
        format!("given in {}", spec.var)
    } else {
        format!("{} in {}", spec.var, absolute(&data_dir.join(spec.file)).display())
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_owned())
}

/// The router's certificates: the default one (from the configuration, or generated with a
/// local CA in the data directory, whose CA file is returned) and those from files. Errors
/// when a certificate or key cannot be read or parsed, or the local CA cannot be written.
pub(crate) fn router_tls(config: &Config, data_dir: &Path) -> Result<(Arc<tls::SniResolver>, Option<PathBuf>)> {
    let (cert_pem, key_pem, ca) = match (&config.router.default_cert, &config.router.default_key) {
        (Some(c), Some(k)) => (c.clone(), k.clone(), None),
        _ => {
            let paths = tls::ensure_local_cert(&data_dir.join("tls"), &config.router.stack_domain)?;
            (paths.cert, paths.key, Some(paths.ca))
        }
    };
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
    let default_cert = tls::certified_key(&read(&cert_pem)?, &read(&key_pem)?)
        .with_context(|| format!("default certificate {}", cert_pem.display()))?;
    let mut certs = tls::CertSet::with_default(default_cert);
    for files in &config.router.certificates {
        let text = |p: &Path| std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()));
        let cert = wharf_domain::Certificate::parse(&text(&files.chain)?, &text(&files.key)?)
            .with_context(|| format!("certificate {}", files.chain.display()))?;
        // An expired file is still served rather than refusing to start: clients see the
        // expiry, and the other names keep working.
        if let Err(e) = cert.check_time(wharf_domain::timestamp::now_seconds()) {
            tracing::warn!(file = %files.chain.display(), error = %e, "serving a certificate outside its validity");
        }
        certs.add(&cert).with_context(|| format!("certificate {}", files.chain.display()))?;
    }
    let certs = Arc::new(match &ca {
        Some(_) => tls::SniResolver::with_local_ca(certs, tls::LocalCa::load(&data_dir.join("tls"))?),
        None => tls::SniResolver::new(certs),
    });

    Ok((certs, ca))
}

/// What every control API reads from its data directory (or the environment): the admin
/// token, each data-plane role's token, and the secret that signs log session URLs. Replicas
/// of one control API must share all five (the same files, or the same `WHARF_*` variables).
pub(crate) struct ApiSecrets {
    /// The admin token, and where it came from.
    admin: (String, Origin),
    /// `router-token`: what a `wharf router --control-api` sends.
    router: String,
    /// `logshuttle-token`: what a `wharf logshuttle --control-api` sends.
    logshuttle: String,
    /// `runtime-token`: what an external runtime sends to read the images apps run.
    runtime: String,
    /// The key of `session-secret`, which signs log session URLs.
    pub(crate) sessions: Arc<SessionKey>,
    /// `session-secret` itself, for its fingerprint ([`ApiSecrets::check_shared`]).
    session_secret: String,
}

impl ApiSecrets {
    /// Loads the five secrets from their variables or files in `data_dir`. One that is missing
    /// is generated and stored (owner-only), unless `shared` (the control API is given a
    /// database other replicas may share): then every missing one is named in the error and
    /// nothing is written, because a replica with secrets of its own refuses the others'
    /// tokens. Errors also when a file cannot be read or written or a variable is shorter
    /// than 16 characters.
    ///
    /// Why replicas are refused rather than given the secrets through the database: the
    /// database would then hold the admin token and the session key beside the state, so
    /// anyone who reads it or a backup of it could act as admin, and a data plane's token
    /// would be one query away from every other's. Kept in files, each secret is only on the
    /// machines that need it, and a missing one is found at start, not by random 401s.
    pub(crate) fn load(data_dir: &Path, shared: bool) -> Result<ApiSecrets> {
        let mut found = Vec::with_capacity(SHARED_SECRETS.len());
        let mut missing = Vec::new();
        for spec in SHARED_SECRETS {
            let secret = read_secret(data_dir, spec)?;
            if secret.is_none() {
                missing.push(spec);
            }
            found.push(secret);
        }
        if shared && !missing.is_empty() {
            return Err(missing_secrets_error(data_dir, &missing));
        }
        let mut secrets = Vec::with_capacity(SHARED_SECRETS.len());
        for (spec, secret) in SHARED_SECRETS.into_iter().zip(found) {
            secrets.push(match secret {
                Some(s) => s,
                None => generate_secret(data_dir, spec)?,
            });
        }
        if data_dir.join("data-plane-token").exists() {
            // One token per data-plane role, so that each remote data plane reads only its part
            // of the feed (least privilege). The one data-plane token of earlier versions read
            // it all; it is no longer accepted (the configuration refuses WHARF_DATA_PLANE_TOKEN).
            tracing::warn!(
                file = %data_dir.join("data-plane-token").display(),
                "the data-plane token is no longer accepted: give remote routers router-token and remote logshuttles logshuttle-token, then delete this file"
            );
        }
        let mut secrets = secrets.into_iter();
        let mut next = || secrets.next().expect("one secret per spec");
        let admin = next();
        let (router, logshuttle, runtime) = (next().0, next().0, next().0);
        // Log session URLs are signed with a kept secret, so that they stay valid across
        // restarts and a logshuttle elsewhere given the same secret can serve them.
        let session_secret = next().0;
        let sessions = Arc::new(SessionKey::new(session_secret.as_bytes()));
        Ok(ApiSecrets { admin, router, logshuttle, runtime, sessions, session_secret })
    }

    /// Refuses to go on when a secret differs from the one the replicas on `store`'s database use
    /// (a keyed fingerprint of each, [`PostgresStore::check_secrets`]), naming each and its
    /// variable or file in `data_dir`, never a value: such a replica would answer the others'
    /// tokens with 401 at random behind a load balancer. Errors too when the database fails.
    pub(crate) async fn check_shared(&self, store: &PostgresStore, data_dir: &Path) -> Result<()> {
        let values = [&self.admin.0, &self.router, &self.logshuttle, &self.runtime, &self.session_secret];
        let named: Vec<(&str, &str)> =
            SHARED_SECRETS.iter().zip(values).map(|(spec, value)| (spec.file, value.as_str())).collect();
        let differ = store.check_secrets(&named).await.context("cannot check the shared secrets' fingerprints")?;
        if differ.is_empty() {
            return Ok(());
        }
        let mut text = String::from(
            "this control API's secrets must be the ones its replicas on this database use (the database keeps a keyed fingerprint \
             of each, recorded by the first replica, never the secret), and these differ:",
        );
        for spec in SHARED_SECRETS.iter().filter(|spec| differ.contains(&spec.file)) {
            text.push_str(&format!("\n  {}: {}", spec.what, token_source(data_dir, spec)));
        }
        text.push_str(
            "\nGive this replica the same files (or variables) as the others. To change a secret on purpose, stop every replica, \
             forget its fingerprint (DELETE FROM wharf_secrets WHERE name = 'FILE', e.g. 'router-token'), and start them all with the new one.",
        );
        Err(anyhow::anyhow!(text))
    }

    /// The tokens the API accepts: the admin token, and each data-plane role's.
    pub(crate) fn tokens(&self) -> AdminToken {
        AdminToken::new(&self.admin.0)
            .with_data_plane(DataPlaneRole::Router, &self.router)
            .with_data_plane(DataPlaneRole::Logshuttle, &self.logshuttle)
            .with_data_plane(DataPlaneRole::Runtime, &self.runtime)
    }

    /// Prints where each token is, never a token itself: standard output goes to logs
    /// (journald, files), which more people read than the owner-only files.
    pub(crate) fn print(&self, out: &mut impl std::io::Write, data_dir: &Path) -> std::io::Result<()> {
        // A token given as a variable has no file: the banner names the variable instead.
        writeln!(out, "  data planes:  for wharf router --control-api: {}", token_source(data_dir, &ROUTER))?;
        writeln!(out, "                for wharf logshuttle --control-api: {}", token_source(data_dir, &LOGSHUTTLE))?;
        writeln!(out, "                for an external runtime (images): {}", token_source(data_dir, &RUNTIME))?;
        let file = absolute(&data_dir.join(ADMIN.file));
        match self.admin.1 {
            Origin::Generated => writeln!(
                out,
                "  admin token:  generated now and stored in {0} (owner-only; read it with: cat {0})",
                file.display()
            ),
            Origin::File => writeln!(out, "  admin token:  in {}", file.display()),
            Origin::Variable => writeln!(out, "  admin token:  given in {}", ADMIN.var),
        }
    }
}

/// The control API's TLS server configuration, when `control_api.tls_cert` and `tls_key` are
/// set. Errors when either cannot be read or parsed, or without them on an address that is not
/// loopback unless `control_api.allow_cleartext` (the admin token and feed would go in clear).
pub(crate) fn api_tls(config: &Config) -> Result<Option<Arc<rustls::ServerConfig>>> {
    match (&config.control_api.tls_cert, &config.control_api.tls_key) {
        (Some(cert), Some(key)) => Ok(Some(
            wharf_control_api::http::server_config(cert, key).context("cannot serve the control API over HTTPS")?,
        )),
        _ => {
            let listen = config.control_api.listen;
            anyhow::ensure!(
                listen.ip().is_loopback() || config.control_api.allow_cleartext,
                "control_api.listen {listen} is not a loopback address and the control API has no TLS: the admin token and \
                 the data planes' feed (private keys, drain credentials) would cross the network in clear. Give it \
                 control_api.tls_cert and tls_key, listen on 127.0.0.1, or set control_api.allow_cleartext = true for a \
                 network encrypted by other means"
            );
            Ok(None)
        }
    }
}

/// Opens the store (PostgreSQL at `control_api.database_url`, else SQLite in the data
/// directory) and the control plane over it, and follows other replicas' commits. Log session
/// URLs point at `logshuttle.public_url`, else at `api_url`; slug blob and build output URLs at `api_url`. Errors when the store cannot be
/// opened or migrated, or when one of `secrets` differs from what the replicas on the same
/// PostgreSQL database use ([`ApiSecrets::check_shared`]).
pub(crate) async fn open_plane(
    config: &Config,
    secrets: &ApiSecrets,
    api_url: String,
    https_port: u16,
) -> Result<Arc<ControlPlane>> {
    let sessions = secrets.sessions.clone();
    let store: Box<dyn Store> = match &config.control_api.database_url {
        Some(url) => {
            let store = PostgresStore::connect(url, config.control_api.database_ca.as_deref())
                .await
                .with_context(|| format!("cannot open the database {url}"))?;
            secrets.check_shared(&store, &config.data_dir).await?;
            Box::new(store)
        }
        None => Box::new(SqliteStore::open(&config.data_dir.join("wharf.db")).context("cannot open the database")?),
    };
    let settings = Settings {
        stack_domain: config.router.stack_domain.clone(),
        https_port,
        session_base_url: config.logshuttle.public_url.clone().unwrap_or_else(|| api_url.clone()),
        session_ttl: config.logshuttle.session_ttl.0,
        max_session_lines: config.logshuttle.history_lines as u32,
        max_quantity: config.control_api.max_quantity,
        dyno_sizes: wharf_control_api::DynoSizes::new(
            &config.control_api.dyno_sizes,
            &config.control_api.default_dyno_size,
        ),
    };
    let plane = Arc::new(ControlPlane::open(store, settings, sessions).await?);
    tokio::spawn(plane.clone().follow_store());
    plane.set_outbound(config.outbound);
    if let Some(path) = &config.control_api.trusted_ca {
        let cas =
            wharf_domain::cert::read_ca(path).with_context(|| format!("control_api.trusted_ca {}", path.display()))?;
        plane.set_trusted_ca(cas);
    }
    plane.set_deploy(wharf_control_api::DeploySettings {
        data_dir: absolute(&config.data_dir),
        max_slug_bytes: config.control_api.max_slug_bytes.0,
        unpack_limits: wharf_control_api::archive::Limits {
            max_bytes: config.control_api.max_unpacked_bytes.0,
            ..Default::default()
        },
        allow_file_urls: config.control_api.allow_file_urls,
        public_url: Some(api_url),
        keep_slugs: config.control_api.keep_slugs,
        max_concurrent_builds: config.control_api.max_concurrent_builds,
    });
    plane.set_canary_down_after(config.control_api.canary_down_after.0);
    let interrupted = plane.fail_interrupted_builds().await?;
    if interrupted > 0 {
        tracing::warn!(builds = interrupted, "builds an earlier run left pending are marked failed");
    }
    // A build whose release an earlier run was still following says what became of it.
    let followed = plane.finish_interrupted_outputs().await;
    if followed > 0 {
        tracing::info!(
            builds = followed,
            "the outputs of builds an earlier run left mid-release follow their releases"
        );
    }
    // Slugs no release needs are deleted after every change, starting with what an earlier
    // run (or an earlier version, which never deleted them) left behind.
    tokio::spawn(plane.clone().retain_slugs());
    Ok(plane)
}

/// Serves the control API's `app` on `listener`, over TLS when `tls` is given, until `stop`
/// turns true. Errors when the TLS listener cannot be made.
pub(crate) fn spawn_api(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: axum::Router,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<std::io::Result<()>>> {
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    Ok(match tls {
        Some(tls) => tokio::spawn(wharf_control_api::serve(
            wharf_control_api::http::TlsListener::new(listener, tls)?,
            app,
            stopped,
        )),
        None => tokio::spawn(wharf_control_api::serve(listener, app, stopped)),
    })
}

/// The supervisor's count of requests at a stopping dyno: the embedded router's, plus what the
/// routers in processes of their own that follow this control API reported, each of which
/// counts as one request until it has reported the snapshot version the wait began at (the
/// dyno was out of the snapshot by then; `wharf_control_api::in_flight` has the rule).
fn in_flight(router: &Router, plane: &ControlPlane) -> wharf_supervisor::InFlight {
    let (local, remote, snapshots) =
        (Arc::new(router.in_flight_reader()), plane.routers_in_flight(), plane.subscribe());
    wharf_supervisor::InFlight::new(move || {
        let version = snapshots.borrow().version;
        let (local, remote) = (local.clone(), remote.clone());
        move |addr: std::net::SocketAddr| local(addr) + remote.at(addr, version)
    })
}

/// Prints the database line of the banner (the URL shows no password).
pub(crate) fn print_database(out: &mut impl std::io::Write, config: &Config) -> std::io::Result<()> {
    match &config.control_api.database_url {
        Some(url) => writeln!(out, "  database:     {url}"),
        None => writeln!(out, "  database:     {}", absolute(&config.data_dir.join("wharf.db")).display()),
    }
}

async fn serve(config: Config) -> Result<()> {
    let data_dir = &config.data_dir;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    // With a database other replicas may share, every secret must be given (ApiSecrets::load).
    let secrets = ApiSecrets::load(data_dir, config.control_api.database_url.is_some())?;
    let api_tls = api_tls(&config)?;
    let api_scheme = if api_tls.is_some() { "https" } else { "http" };

    let (certs, ca) = router_tls(&config, data_dir)?;

    let bus_config = match &config.kafka {
        Some(k) => BusConfig::Kafka(k.clone()),
        None => BusConfig::Embedded { capacity: EMBEDDED_BUS_CAPACITY },
    };
    let mut bus = Bus::connect(bus_config).await?;
    let source = bus.take_source()?;

    let api_listener = tokio::net::TcpListener::bind(config.control_api.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.control_api.listen))?;
    let api_addr = api_listener.local_addr()?;
    let listeners = Listeners::bind(&config.router)?;
    let https_port = config.router.https_public_port.unwrap_or(listeners.addrs().https.port());

    let sessions = secrets.sessions.clone();
    let plane = open_plane(&config, &secrets, format!("{api_scheme}://{api_addr}"), https_port).await?;

    let mut router = Router::start(&config.router, listeners, certs, plane.subscribe(), bus.publisher.clone())?;
    plane.set_canary_reader(Box::new(router.canary_reader()));
    plane.set_build_publisher(bus.publisher.clone());
    plane.set_request_metrics(Arc::new(router.request_series()));
    if let Some(verdicts) = router.take_verdicts() {
        tokio::spawn(plane.clone().record_verdicts(verdicts));
    }
    tokio::spawn(plane.clone().watch_canary_releases());
    let commit_interval = config.kafka.as_ref().map_or(Duration::from_secs(1), |k: &KafkaConfig| k.commit_interval.0);
    let logshuttle =
        Logshuttle::start(&config.logshuttle, config.outbound, source, plane.subscribe(), sessions, commit_interval)?;
    // The router's /metrics carries the logshuttle's counters and the log bus's publish counts
    // (lines the bus dropped would otherwise be visible nowhere).
    let (shuttle_metrics, bus_stats, store) = (logshuttle.metrics(), bus.publisher.stats(), plane.clone());
    router.add_metrics(Box::new(move |out: &mut String| {
        shuttle_metrics(out);
        bus_stats.render(out);
        store.render_storage_metrics(out);
    }));
    let supervisor = wharf_supervisor::Supervisor::start(
        plane.clone(),
        bus.publisher.clone(),
        wharf_supervisor::Settings {
            health_timeout: config.supervisor.health_timeout.0,
            stop_grace: config.supervisor.stop_grace.0,
            connection_grace: config.supervisor.connection_grace.0,
            request_grace: config.supervisor.request_grace.0,
            in_flight: in_flight(&router, &plane),
            router_version: wharf_supervisor::RouterVersion::new(router.version_reader()),
            restart_min: config.supervisor.restart_min.0,
            records_dir: Some(data_dir.join("dynos")),
            releases_dir: Some(absolute(data_dir).join("releases")),
            keep_releases: config.supervisor.keep_releases as usize,
            runtime_metrics_interval: config.supervisor.runtime_metrics_interval.0,
            release_phase_timeout: config.supervisor.release_phase_timeout.0,
        },
    );

    let app = wharf_control_api::router(
        plane.clone(),
        secrets.tokens(),
        config.control_api.max_body.0 as usize,
        Some(logshuttle.tail_router()),
        Some(bus.publisher.clone()),
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let api = spawn_api(api_listener, api_tls, app, stop_rx)?;

    let port = if https_port == 443 { String::new() } else { format!(":{https_port}") };
    let mut out = std::io::stdout().lock();
    writeln!(out, "Wharf is running.")?;
    writeln!(out, "  control API:  {api_scheme}://{api_addr}")?;
    let addrs = router.addrs();
    if config.router.http_redirect {
        writeln!(out, "  router HTTP:  http://{}  (redirects to HTTPS)", addrs.http)?;
    } else {
        writeln!(out, "  router HTTP:  http://{}", addrs.http)?;
    }
    writeln!(
        out,
        "  router HTTPS: https://{}  (apps at https://APP-SPACE.{}{port}/)",
        addrs.https, config.router.stack_domain
    )?;
    writeln!(out, "  internal:     https://{}  (internal sites and apps only)", addrs.internal)?;
    writeln!(out, "  metrics:      http://{}/metrics", addrs.admin)?;
    if let Some(ca) = &ca {
        writeln!(out, "  CA to trust:  {}", absolute(ca).display())?;
    }
    match &config.kafka {
        Some(k) => writeln!(out, "  log bus:      kafka at {} (topic {})", k.brokers, k.topic)?,
        None => writeln!(out, "  log bus:      embedded")?,
    }
    writeln!(out, "  data:         {}", absolute(data_dir).display())?;
    print_database(&mut out, &config)?;
    secrets.print(&mut out, data_dir)?;
    out.flush()?;
    drop(out);
    crate::addresses::Addresses {
        control_api: Some(api_addr),
        router_http: Some(addrs.http),
        router_https: Some(addrs.https),
        router_internal: Some(addrs.internal),
        admin: Some(addrs.admin),
        logshuttle: None,
        ca: ca.clone(),
    }
    .write(data_dir)?;

    shutdown_signal().await;
    tracing::info!("shutting down");
    crate::addresses::Addresses::remove(data_dir);
    // Endless responses (snapshot watches, live tails) end first: the API's graceful shutdown
    // then waits only for requests that end by themselves, not for the whole grace.
    plane.end_streams();
    logshuttle.end_tails();
    let _ = stop_tx.send(true);
    router.shutdown().await;
    supervisor.shutdown().await;
    match tokio::time::timeout(config.router.shutdown_grace.0, api).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "control api stopped with an error"),
        Err(_) => tracing::warn!("control api did not stop in time"),
        _ => {}
    }
    bus.publisher.flush(Duration::from_secs(5));
    logshuttle.shutdown().await;
    writeln!(std::io::stdout(), "Wharf stopped.")?;
    Ok(())
}

/// Resolves on the first SIGINT (Ctrl-C) or SIGTERM. If the SIGTERM handler cannot be
/// installed, only SIGINT stops the process.
pub(crate) async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match term.as_mut() {
                Some(t) => { t.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}
