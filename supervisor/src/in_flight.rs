//! The wait before a web dyno the platform stops (a roll's old dynos, a scale down,
//! `ps:restart`, a canary's end, a deleted app) gets SIGTERM: out of the router first, then a
//! wait for the requests already at it to end, then SIGTERM.
//!
//! The wait is on the router's own count of requests at the dyno (the in-process router of
//! `wharf serve`, read through `InFlight`), not a fixed sleep: the fixed `connection_grace`
//! alone cut every request slower than about a second with a 503 at every roll (FE27 #2).
//! `connection_grace` still comes first, for the routing table without the dyno to reach the
//! router and requests routed by the table before to reach the dyno; then the supervisor waits
//! while any request is at it, for at most `request_grace` (30 s by default: Heroku's router
//! ends a request with no response in 30 s (H12), so a request still waiting longer would be
//! cut anyway; a response body still streaming then, or a WebSocket, is cut at SIGTERM, as
//! Heroku's dyno stop does). Routers in processes of their own (`wharf router`) that follow this
//! `wharf serve` are counted too, from their reports (`wharf_control_api::in_flight`): a
//! router that has not yet reported the snapshot without the dyno counts as a request there.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::settings::Settings;

/// How often the wait looks at the count again.
const POLL: Duration = Duration::from_millis(50);

/// Waits, for a web dyno on `port` that has just left the router, `connection_grace` and then
/// while requests are at it, for at most `request_grace` more (see the module's comment).
pub(crate) async fn wait_for_requests(settings: &Settings, dyno: &str, port: u16) {
    tokio::time::sleep(settings.connection_grace).await;
    until_idle(settings, &[(dyno, port)]).await;
}

/// Waits while the router has requests at any of `dynos` (name, port), for at most
/// `request_grace`.
pub(crate) async fn until_idle(settings: &Settings, dynos: &[(&str, u16)]) {
    let deadline = tokio::time::Instant::now() + settings.request_grace;
    let count = settings.in_flight.begin();
    let at = |port: u16| count(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    let busy =
        || dynos.iter().filter(|(_, port)| at(*port) > 0).map(|(name, port)| (*name, at(*port))).collect::<Vec<_>>();
    let waiting = busy();
    if waiting.is_empty() {
        return;
    }
    tracing::info!(dynos = ?waiting, "stopping dynos wait for the requests at them to end");
    loop {
        tokio::time::sleep(POLL).await;
        let left = busy();
        if left.is_empty() {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(dynos = ?left, request_grace = ?settings.request_grace, "requests still at stopping dynos after request_grace; stopping them");
            return;
        }
    }
}
