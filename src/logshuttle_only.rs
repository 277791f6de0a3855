//! `wharf logshuttle`: the logshuttle alone, on a machine of its own, consuming Kafka and
//! following a control API elsewhere for its drains; it serves live tails and its metrics.

use std::io::Write as _;
use std::sync::Arc;

use anyhow::{Context, Result};
use wharf_bus::{Bus, BusConfig};
use wharf_config::Config;
use wharf_control_api::watch::{ControlApiUrl, follow};
use wharf_domain::SessionKey;
use wharf_logshuttle::Logshuttle;

use crate::Common;
use crate::serve::shutdown_signal;

/// Options of `wharf logshuttle`.
#[derive(clap::Args, Debug)]
pub(crate) struct LogshuttleArgs {
    #[command(flatten)]
    common: Common,
    /// The control API to follow, `https://host:port` (or `http://` on a loopback address, or
    /// with `[feed] allow_cleartext`), or its replicas' URLs separated by commas (one is
    /// followed; the next after a failure); the token comes from WHARF_LOGSHUTTLE_TOKEN (the control
    /// API's `logshuttle-token` file). Log session URLs verify with WHARF_SESSION_SECRET, the
    /// control API's `session-secret` file, which it must be given.
    #[arg(long, value_name = "URL")]
    control_api: String,
    /// Kafka brokers (host:port, comma-separated), unless the configuration has a `[kafka]`
    /// section: a logshuttle on its own reads Kafka.
    #[arg(long, value_name = "BROKERS")]
    kafka: Option<String>,
}

/// Runs a logshuttle that reads Kafka and follows the control API at `--control-api` for its
/// snapshots, until SIGINT or SIGTERM. Errors when no Kafka brokers are configured, the
/// token or the session secret is missing, the configuration does not load, or the tail
/// listener cannot bind.
pub(crate) fn run(args: LogshuttleArgs) -> Result<()> {
    let config = args.common.load(args.kafka)?;
    anyhow::ensure!(config.kafka.is_some(), "wharf logshuttle reads Kafka: pass --kafka BROKERS or a [kafka] section");
    let control_api = crate::control_api_url(&args.control_api, wharf_domain::DataPlaneRole::Logshuttle, &config)?;
    let sessions = session_key()?;
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(serve(config, control_api, sessions))
}

/// The key that verifies log session URLs: the control API's session secret, from
/// WHARF_SESSION_SECRET. Errors when it is missing or shorter than 16 characters. A logshuttle
/// with a key of its own would refuse every session URL the control APIs sign, at random
/// behind a load balancer among logshuttles that have the right one, so it does not start
/// without it (as a control API on a shared database does not start without its secrets).
fn session_key() -> Result<SessionKey> {
    let secret = std::env::var("WHARF_SESSION_SECRET").ok().filter(|s| !s.trim().is_empty()).context(
        "WHARF_SESSION_SECRET must hold the control API's session secret (its session-secret file): log session URLs are signed with it",
    )?;
    anyhow::ensure!(secret.trim().len() >= 16, "WHARF_SESSION_SECRET must be at least 16 characters");
    Ok(SessionKey::new(secret.trim().as_bytes()))
}

async fn serve(config: Config, control_api: ControlApiUrl, sessions: SessionKey) -> Result<()> {
    let data_dir = &config.data_dir;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    let kafka = config.kafka.clone().context("a [kafka] section")?;
    let feed = control_api.clone();
    let (snapshots, follower) =
        follow(control_api, data_dir).with_context(|| format!("cannot keep the snapshot in {}", data_dir.display()))?;
    // A logshuttle with no snapshot knows no drain. Were it to join the consumer group now, it
    // would take partitions and commit their lines as handled while delivering them nowhere: a
    // wrong token or CA lost every line of its partitions (FE36). So it joins only once it has
    // a snapshot: the kept copy of an earlier run, or a control API's first answer.
    if snapshots.borrow().version == 0 && !feed.has_heard() {
        tracing::info!("waiting for a control api's first snapshot before joining the consumer group");
        let heard = async {
            while !feed.has_heard() {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        };
        tokio::select! {
            () = heard => {}
            () = shutdown_signal() => {
                follower.abort();
                writeln!(std::io::stdout(), "Wharf logshuttle stopped (it never had a snapshot).")?;
                return Ok(());
            }
        }
    }
    let mut bus = Bus::connect(BusConfig::Kafka(kafka.clone())).await?;
    let source = bus.take_source()?;
    let logshuttle = Logshuttle::start(
        &config.logshuttle,
        config.outbound,
        source,
        snapshots,
        Arc::new(sessions),
        kafka.commit_interval.0,
    )?;
    let metrics = Arc::new(logshuttle.metrics());
    let app = logshuttle
        .tail_router()
        .route(
            "/metrics",
            axum::routing::get(move || {
                let mut out = String::with_capacity(4096);
                (*metrics)(&mut out);
                // Which control API replica it follows now (`wharf_feed_following`).
                feed.render_metrics(&mut out);
                std::future::ready(([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], out))
            }),
        )
        .route("/healthz", axum::routing::get(|| std::future::ready("{\"status\":\"ok\"}\n")));
    let listener = tokio::net::TcpListener::bind(config.logshuttle.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.logshuttle.listen))?;
    let addr = listener.local_addr()?;
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(wharf_control_api::serve(listener, app, async move {
        let _ = stop_rx.wait_for(|s| *s).await;
    }));

    let mut out = std::io::stdout().lock();
    writeln!(out, "Wharf logshuttle is running.")?;
    writeln!(out, "  log bus:      kafka at {} (topic {})", kafka.brokers, kafka.topic)?;
    writeln!(out, "  tails:        http://{addr}/log-sessions/...")?;
    writeln!(out, "  metrics:      http://{addr}/metrics")?;
    out.flush()?;
    drop(out);
    crate::addresses::Addresses { logshuttle: Some(addr), ..Default::default() }.write(data_dir)?;

    shutdown_signal().await;
    // The feed is followed no more, before anything is said: a whole fleet stopping ends the
    // control APIs' watch streams too, which is no outage to warn about. Awaited, so that a
    // warning the follower is writing right now comes before "shutting down", never after.
    follower.abort();
    let _ = follower.await;
    tracing::info!("shutting down");
    crate::addresses::Addresses::remove(data_dir);
    // Live tails never end by themselves: they end first, so the server stops at once.
    logshuttle.end_tails();
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(config.logshuttle.shutdown_grace.0, server).await;
    logshuttle.shutdown().await;
    writeln!(std::io::stdout(), "Wharf logshuttle stopped.")?;
    Ok(())
}
