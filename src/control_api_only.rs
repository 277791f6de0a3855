//! `wharf control-api`: the control API and its store alone (no router, logshuttle or
//! supervisor), for replicas on one PostgreSQL database that feed routers and logshuttles on
//! other machines.

use std::io::Write as _;
use std::time::Duration;

use anyhow::{Context, Result};
use wharf_bus::{Bus, BusConfig};
use wharf_config::Config;

use crate::Common;
use crate::serve::{ApiSecrets, api_tls, open_plane, print_database, shutdown_signal, spawn_api};

/// Options of `wharf control-api`.
#[derive(clap::Args, Debug)]
pub(crate) struct ControlApiArgs {
    #[command(flatten)]
    common: Common,
    /// Keep the state in this PostgreSQL database (postgres://user:password@host/db) instead of
    /// SQLite in the data directory; control APIs given the same database are replicas of one
    /// another. WHARF_CONTROL_API__DATABASE_URL keeps the password off the command line.
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// Put the lines platform components post to `/log-events` on Kafka at these brokers
    /// (host:port, comma-separated). Without it, `/log-events` is not served: a control API on
    /// its own has no log bus.
    #[arg(long, value_name = "BROKERS")]
    kafka: Option<String>,
}

/// Runs the control API alone until SIGINT or SIGTERM. Errors when the configuration does not
/// load, the store cannot be opened, or the listener cannot bind.
pub(crate) fn run(args: ControlApiArgs) -> Result<()> {
    let mut config = args.common.load(args.kafka)?;
    if let Some(url) = args.database_url {
        let url = wharf_config::DatabaseUrl::try_new(&url).map_err(|e| anyhow::anyhow!("--database-url {e}"))?;
        config.control_api.database_url = Some(url);
    }
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(serve(config))
}

/// `GET /metrics` (Prometheus' text format), served beside the API without a token, as
/// `/healthz` is: it holds counts only. A control API on its own has no router whose admin
/// listener would carry them: the store's series (`ControlPlane::render_storage_metrics`) and,
/// with `--kafka`, the producer's counters of `POST /log-events` and build output
/// (`PublishStats::render`).
fn metrics_route(
    plane: std::sync::Arc<wharf_control_api::ControlPlane>,
    publish: Option<std::sync::Arc<wharf_bus::PublishStats>>,
) -> axum::Router {
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let mut out = String::new();
            plane.render_storage_metrics(&mut out);
            if let Some(p) = &publish {
                p.render(&mut out);
            }
            async move { ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], out) }
        }),
    )
}

async fn serve(config: Config) -> Result<()> {
    let data_dir = &config.data_dir;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    // With a database other replicas may share, every secret must be given (ApiSecrets::load).
    let secrets = ApiSecrets::load(data_dir, config.control_api.database_url.is_some())?;
    let tls = api_tls(&config)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    if config.control_api.database_url.is_none() {
        tracing::warn!("no database url: this control API keeps its state in SQLite and cannot have replicas");
    }
    if config.logshuttle.public_url.is_none() {
        // The control API signs log session URLs but serves no tails itself here.
        tracing::warn!(
            "logshuttle.public_url is not set: log session URLs will name this control API, which serves no live tails; set it to a logshuttle's (or their load balancer's) URL"
        );
    }
    let bus = match &config.kafka {
        Some(k) => Some(Bus::connect(BusConfig::Kafka(k.clone())).await?),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(config.control_api.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.control_api.listen))?;
    let addr = listener.local_addr()?;
    // Apps' web URLs name the routers' public HTTPS port: the one routers are configured with.
    let https_port = config.router.https_public_port.unwrap_or(config.router.https_listen.port());
    let plane = open_plane(&config, &secrets, format!("{scheme}://{addr}"), https_port).await?;
    if let Some(bus) = &bus {
        plane.set_build_publisher(bus.publisher.clone());
    }
    // Canary releases move on with the routers' verdicts; with routers elsewhere their soak is
    // a time (`soak_seconds`), which any replica can count.
    tokio::spawn(plane.clone().watch_canary_releases());
    let app = wharf_control_api::router(
        plane.clone(),
        secrets.tokens(),
        config.control_api.max_body.0 as usize,
        Some(metrics_route(plane.clone(), bus.as_ref().map(|b| b.publisher.stats()))),
        bus.as_ref().map(|b| b.publisher.clone()),
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let api = spawn_api(listener, tls, app, stop_rx)?;

    let mut out = std::io::stdout().lock();
    writeln!(out, "Wharf control API is running.")?;
    writeln!(out, "  control API:  {scheme}://{addr}")?;
    writeln!(out, "  metrics:      {scheme}://{addr}/metrics")?;
    match &config.kafka {
        Some(k) => writeln!(out, "  log events:   kafka at {} (topic {})", k.brokers, k.topic)?,
        None => writeln!(out, "  log events:   not served (no --kafka)")?,
    }
    writeln!(out, "  data:         {}", std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.clone()).display())?;
    print_database(&mut out, &config)?;
    secrets.print(&mut out, data_dir)?;
    out.flush()?;
    drop(out);
    crate::addresses::Addresses { control_api: Some(addr), ..Default::default() }.write(data_dir)?;

    shutdown_signal().await;
    tracing::info!("shutting down");
    crate::addresses::Addresses::remove(data_dir);
    // Builds and release phases running here are cut first: their records keep their lines
    // with one saying Wharf stopped, and their output URLs' followers get that line.
    plane.cut_outputs().await;
    // Snapshot watches never end by themselves: they end first, so the server stops at once.
    plane.end_streams();
    let _ = stop_tx.send(true);
    // The same grace `wharf serve` gives its API: requests in flight finish within it.
    match tokio::time::timeout(config.router.shutdown_grace.0, api).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "control api stopped with an error"),
        Err(_) => tracing::warn!("control api did not stop in time"),
        _ => {}
    }
    if let Some(bus) = bus {
        bus.publisher.flush(Duration::from_secs(5));
    }
    writeln!(std::io::stdout(), "Wharf control API stopped.")?;
    Ok(())
}
