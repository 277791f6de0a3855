//! `wharf router`: the router alone, on a machine of its own, following a control API
//! elsewhere over its watch stream and serving the last good snapshot while that API is away.

use std::io::Write as _;
use std::time::Duration;

use anyhow::{Context, Result};
use wharf_bus::{Bus, BusConfig};
use wharf_config::Config;
use wharf_control_api::in_flight::{DynoInFlight, report_in_flight};
use wharf_control_api::watch::{ControlApiUrl, follow, report_verdicts};
use wharf_router::{Listeners, Router};

use crate::Common;
use crate::serve::{router_tls, shutdown_signal};

/// Options of `wharf router`.
#[derive(clap::Args, Debug)]
pub(crate) struct RouterArgs {
    #[command(flatten)]
    common: Common,
    /// The control API to follow, `https://host:port` (or `http://` on a loopback address, or
    /// with `[feed] allow_cleartext`), or its replicas' URLs separated by commas (one is
    /// followed; the next after a failure); the token comes from WHARF_ROUTER_TOKEN (the control
    /// API's `router-token` file).
    #[arg(long, value_name = "URL")]
    control_api: String,
    /// Put access lines on Kafka at these brokers (host:port, comma-separated). Without it they
    /// are counted and dropped: a router on its own has no logshuttle beside it.
    #[arg(long, value_name = "BROKERS")]
    kafka: Option<String>,
}

/// Runs a router that follows the control API at `--control-api` for its snapshots, until
/// SIGINT or SIGTERM. Errors when the configuration does not load, the control API URL or
/// token is missing or malformed, or a listener cannot bind.
pub(crate) fn run(args: RouterArgs) -> Result<()> {
    let config = args.common.load(args.kafka)?;
    let control_api = crate::control_api_url(&args.control_api, wharf_domain::DataPlaneRole::Router, &config)?;
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(serve(config, control_api))
}

async fn serve(config: Config, control_api: ControlApiUrl) -> Result<()> {
    let data_dir = &config.data_dir;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    let (certs, ca) = router_tls(&config, data_dir)?;
    let bus = Bus::connect(match &config.kafka {
        Some(k) => BusConfig::Kafka(k.clone()),
        // Nobody consumes this queue: the router's lines are counted as dropped.
        None => BusConfig::Embedded { capacity: 1 },
    })
    .await?;
    let (snapshots, follower) = follow(control_api.clone(), data_dir)
        .with_context(|| format!("cannot keep the snapshot in {}", data_dir.display()))?;
    let listeners = Listeners::bind(&config.router)?;
    let mut router = Router::start(&config.router, listeners, certs, snapshots, bus.publisher.clone())?;
    // Access lines the bus could not take show in /metrics.
    let bus_stats = bus.publisher.stats();
    // And which control API replica it follows now (`wharf_feed_following`). One closure: the
    // router takes one.
    let feed = control_api.clone();
    router.add_metrics(Box::new(move |out: &mut String| {
        bus_stats.render(out);
        feed.render_metrics(out);
    }));
    // Canary aborts this router decides apply here at once, and go to the control API, which
    // records them so that every router follows.
    let reporter = router.take_verdicts().map(|v| tokio::spawn(report_verdicts(control_api.clone(), v)));
    // Its requests at the dynos that left its table go to the control API too, so that the
    // supervisor of the `wharf serve` it follows waits for them before it stops such a dyno
    // (`wharf_control_api::in_flight`).
    let leaving = router.leaving_reader();
    let in_flight = tokio::spawn(report_in_flight(control_api, move || {
        let (version, at) = leaving();
        (version, at.into_iter().map(|(address, requests)| DynoInFlight { address, requests }).collect())
    }));

    let addrs = router.addrs();
    let mut out = std::io::stdout().lock();
    writeln!(out, "Wharf router is running.")?;
    writeln!(out, "  router HTTP:  http://{}", addrs.http)?;
    writeln!(out, "  router HTTPS: https://{}", addrs.https)?;
    writeln!(out, "  internal:     https://{}", addrs.internal)?;
    if let Some(ca) = &ca {
        writeln!(out, "  CA to trust:  {}", std::path::absolute(ca).unwrap_or_else(|_| ca.clone()).display())?;
    }
    writeln!(out, "  metrics:      http://{}/metrics", addrs.admin)?;
    out.flush()?;
    drop(out);
    crate::addresses::Addresses {
        router_http: Some(addrs.http),
        router_https: Some(addrs.https),
        router_internal: Some(addrs.internal),
        admin: Some(addrs.admin),
        ca: ca.clone(),
        ..Default::default()
    }
    .write(data_dir)?;

    shutdown_signal().await;
    // The feed and the verdict reports stop before anything is said: a whole fleet stopping
    // ends the control APIs' streams too, which is no outage to warn about. Awaited, so that a
    // warning either is writing right now comes before "shutting down", never after.
    for task in std::iter::once(follower).chain(reporter) {
        task.abort();
        let _ = task.await;
    }
    tracing::info!("shutting down");
    crate::addresses::Addresses::remove(data_dir);
    // The in-flight reports go on while requests end: the supervisor may be waiting for them.
    router.shutdown().await;
    in_flight.abort();
    bus.publisher.flush(Duration::from_secs(5));
    writeln!(std::io::stdout(), "Wharf router stopped.")?;
    Ok(())
}
