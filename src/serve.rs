//! `wharf serve`: the whole platform data plane in one process.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use wharf_bus::{Bus, BusConfig};
use wharf_config::{Config, KafkaConfig};
use wharf_control_api::{ControlPlane, PostgresStore, Settings, SqliteStore, Store};

pub(crate) use crate::secrets::ApiSecrets;
use crate::secrets::absolute;
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
    // Builds and release phases running here are cut first: their records keep their lines
    // with one saying Wharf stopped, and their output URLs' followers get that line.
    plane.cut_outputs().await;
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
