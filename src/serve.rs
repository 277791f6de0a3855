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

/// A token: from the environment variable `var`, else the one stored in the data directory's
/// file `file`, else a new one stored there. Returns it and whether it was just generated.
fn load_token(data_dir: &Path, var: &str, file: &str) -> Result<(String, bool)> {
    if let Ok(t) = std::env::var(var) {
        anyhow::ensure!(t.trim().len() >= 16, "{var} must be at least 16 characters");
        return Ok((t.trim().to_owned(), false));
    }
    let path = data_dir.join(file);
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => return Ok((t.trim().to_owned(), false)),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    let token: String = wharf_domain::random_bytes::<24>().iter().map(|b| format!("{b:02x}")).collect();
    let mut f = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)
    }
    .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(token.as_bytes())?;
    Ok((token, true))
}

/// Where the banner says a token is: the variable it was given in (which wins over the file,
/// as in [`load_token`]), or its file in `data_dir`.
fn token_source(data_dir: &Path, var: &str, file: &str) -> String {
    if std::env::var_os(var).is_some() {
        format!("given in {var}")
    } else {
        format!("{var} in {}", absolute(&data_dir.join(file)).display())
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
/// of one control API must share all four (the same files, or the same `WHARF_*` variables).
pub(crate) struct ApiSecrets {
    /// The admin token, and whether it was generated just now (then it is printed once).
    admin: (String, bool),
    /// `router-token`: what a `wharf router --control-api` sends.
    router: String,
    /// `logshuttle-token`: what a `wharf logshuttle --control-api` sends.
    logshuttle: String,
    /// `runtime-token`: what an external runtime sends to read the images apps run.
    runtime: String,
    /// The key of `session-secret`, which signs log session URLs.
    pub(crate) sessions: Arc<SessionKey>,
}

impl ApiSecrets {
    /// Loads (or generates and stores, owner-only) the four secrets in `data_dir`. Errors when
    /// a file cannot be read or written or a variable is shorter than 16 characters.
    pub(crate) fn load(data_dir: &Path) -> Result<ApiSecrets> {
        let admin = load_token(data_dir, "WHARF_ADMIN_TOKEN", "admin-token")?;
        // One token per data-plane role, so that each remote data plane reads only its part of
        // the feed (least privilege). The one data-plane token of earlier versions read it all;
        // it is no longer accepted (the configuration refuses WHARF_DATA_PLANE_TOKEN).
        let (router, _) = load_token(data_dir, "WHARF_ROUTER_TOKEN", "router-token")?;
        let (logshuttle, _) = load_token(data_dir, "WHARF_LOGSHUTTLE_TOKEN", "logshuttle-token")?;
        let (runtime, _) = load_token(data_dir, "WHARF_RUNTIME_TOKEN", "runtime-token")?;
        if data_dir.join("data-plane-token").exists() {
            tracing::warn!(
                file = %data_dir.join("data-plane-token").display(),
                "the data-plane token is no longer accepted: give remote routers router-token and remote logshuttles logshuttle-token, then delete this file"
            );
        }
        // Log session URLs are signed with a secret kept in the data directory, so that they
        // stay valid across restarts and a logshuttle elsewhere given the same secret can
        // serve them.
        let (session_secret, _) = load_token(data_dir, "WHARF_SESSION_SECRET", "session-secret")?;
        let sessions = Arc::new(SessionKey::new(session_secret.as_bytes()));
        Ok(ApiSecrets { admin, router, logshuttle, runtime, sessions })
    }

    /// The tokens the API accepts: the admin token, and each data-plane role's.
    pub(crate) fn tokens(&self) -> AdminToken {
        AdminToken::new(&self.admin.0)
            .with_data_plane(DataPlaneRole::Router, &self.router)
            .with_data_plane(DataPlaneRole::Logshuttle, &self.logshuttle)
            .with_data_plane(DataPlaneRole::Runtime, &self.runtime)
    }

    /// Prints where each token is, and the admin token itself if it was generated just now.
    pub(crate) fn print(&self, out: &mut impl std::io::Write, data_dir: &Path) -> std::io::Result<()> {
        // A token given as a variable has no file: the banner names the variable instead.
        writeln!(
            out,
            "  data planes:  for wharf router --control-api: {}",
            token_source(data_dir, "WHARF_ROUTER_TOKEN", "router-token")
        )?;
        writeln!(
            out,
            "                for wharf logshuttle --control-api: {}",
            token_source(data_dir, "WHARF_LOGSHUTTLE_TOKEN", "logshuttle-token")
        )?;
        writeln!(
            out,
            "                for an external runtime (images): {}",
            token_source(data_dir, "WHARF_RUNTIME_TOKEN", "runtime-token")
        )?;
        let file = absolute(&data_dir.join("admin-token"));
        match &self.admin {
            (token, true) => writeln!(
                out,
                "  admin token:  {token}  (generated now and stored in {}; it is not printed again)",
                file.display()
            ),
            (_, false) => writeln!(out, "  admin token:  from WHARF_ADMIN_TOKEN or {}", file.display()),
        }
    }
}

/// The control API's TLS server configuration, when `control_api.tls_cert` and `tls_key` are
/// set. Errors when either cannot be read or parsed.
pub(crate) fn api_tls(config: &Config) -> Result<Option<Arc<rustls::ServerConfig>>> {
    match (&config.control_api.tls_cert, &config.control_api.tls_key) {
        (Some(cert), Some(key)) => Ok(Some(
            wharf_control_api::http::server_config(cert, key).context("cannot serve the control API over HTTPS")?,
        )),
        _ => Ok(None),
    }
}

/// Opens the store (PostgreSQL at `control_api.database_url`, else SQLite in the data
/// directory) and the control plane over it, and follows other replicas' commits. Log session
/// URLs point at `logshuttle.public_url`, else at `api_url`; slug blob and build output URLs at `api_url`. Errors when the store cannot be
/// opened or migrated.
pub(crate) async fn open_plane(
    config: &Config,
    sessions: Arc<SessionKey>,
    api_url: String,
    https_port: u16,
) -> Result<Arc<ControlPlane>> {
    let store: Box<dyn Store> = match &config.control_api.database_url {
        Some(url) => Box::new(
            PostgresStore::connect(url, config.control_api.database_ca.as_deref())
                .await
                .with_context(|| format!("cannot open the database {url}"))?,
        ),
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
    let secrets = ApiSecrets::load(data_dir)?;
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
    let plane = open_plane(&config, sessions.clone(), format!("{api_scheme}://{api_addr}"), https_port).await?;

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
    let (shuttle_metrics, bus_stats) = (logshuttle.metrics(), bus.publisher.stats());
    router.add_metrics(Box::new(move |out: &mut String| {
        shuttle_metrics(out);
        bus_stats.render(out);
    }));
    let supervisor = wharf_supervisor::Supervisor::start(
        plane.clone(),
        bus.publisher.clone(),
        wharf_supervisor::Settings {
            health_timeout: config.supervisor.health_timeout.0,
            stop_grace: config.supervisor.stop_grace.0,
            connection_grace: config.supervisor.connection_grace.0,
            request_grace: config.supervisor.request_grace.0,
            in_flight: wharf_supervisor::InFlight::new(router.in_flight_reader()),
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
