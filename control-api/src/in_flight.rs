//! Requests in flight at remote routers: each `wharf router` reports, to the control API it
//! follows (`POST /v1/router-in-flight`), the snapshot version it routes by and how many of its
//! requests are at each dyno that has left its routing table, so that `wharf serve`'s supervisor
//! waits for those too before it stops a dyno (`[supervisor] request_grace`), as it waits for
//! its embedded router's.
//!
//! The rule, and why. A dyno the platform stops leaves the snapshot first; a remote router that
//! has taken that snapshot sends no new request to it and counts the ones still there (its
//! `leaving` dynos). The supervisor's wait therefore needs, from each remote router, two facts:
//! that it has taken a snapshot without the dyno (else it may still route to it, and its count
//! says nothing), and its count there. A report carries both: the version, and the counts at
//! the dynos that left its table. While a router's last report is older than the version the
//! wait began at, the router counts as one request at every address ([`RoutersInFlight::at`]),
//! so the wait never ends on a router that has not seen the dyno leave; a router reports within
//! [`POLL`] of taking a snapshot. A router silent for [`SILENCE`] is taken for gone (it reports
//! at least every [`HEARTBEAT`]) and no longer holds any wait: a dead router's requests are
//! lost with it, and it must not hold every stop for the whole `request_grace`.
//!
//! Reports stay in the memory of the replica that received them: the supervisor of a
//! `wharf serve` counts the routers that follow it. A router following another replica (a
//! `wharf control-api` of the same database) is not counted and gets `connection_grace` alone;
//! give the routers serving `wharf serve`'s dynos its control API (first) in `--control-api`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::watch::ControlApiUrl;

/// How often a router looks at its counts and version, and sends a report when they changed.
pub const POLL: Duration = Duration::from_millis(50);

/// The longest a router goes without a report, so that the control API knows it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// A router not heard from for this long is taken for gone: five heartbeats, as the feed's
/// `silence_timeout` takes five of the server's.
pub const SILENCE: Duration = Duration::from_secs(5);

/// The most dynos one report may name: a router has requests at only the dynos that left its
/// table while requests were at them, a handful at a time.
pub const MAX_DYNOS: usize = 10_000;

/// One router's report, the body of `POST /v1/router-in-flight`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InFlightReport {
    /// The reporting router's id, new at each start of the router process.
    pub router: Uuid,
    /// The snapshot version the router routes by now (its routing table's).
    pub version: u64,
    /// The dynos that left the router's table and still have its requests at them.
    pub dynos: Vec<DynoInFlight>,
}

/// Requests in flight at one dyno, by its address (the one the router connects to).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DynoInFlight {
    /// The dyno's address, `ip:port`.
    pub address: SocketAddr,
    /// The router's requests at it: picked, and their response not yet ended.
    pub requests: usize,
}

/// The last report of each remote router, kept in memory (see the module's comment).
#[derive(Debug, Default)]
pub struct RoutersInFlight {
    routers: Mutex<HashMap<Uuid, Kept>>,
}

#[derive(Debug)]
struct Kept {
    version: u64,
    at: HashMap<SocketAddr, usize>,
    received: Instant,
}

impl RoutersInFlight {
    /// Keeps `report` as its router's latest; returns how many routers are counted now.
    /// Forgets routers silent for [`SILENCE`].
    pub fn record(&self, report: InFlightReport) -> usize {
        let now = Instant::now();
        let mut routers = self.routers.lock().expect("not poisoned");
        routers.retain(|_, k| now.duration_since(k.received) < SILENCE);
        let at = report.dynos.iter().filter(|d| d.requests > 0).map(|d| (d.address, d.requests)).collect();
        routers.insert(report.router, Kept { version: report.version, at, received: now });
        routers.len()
    }

    /// How many requests the routers heard from within [`SILENCE`] have at `addr`, for a wait
    /// that began at snapshot `version`: a router whose last report is of an older version
    /// counts as one (it may not have seen the dyno leave).
    pub fn at(&self, addr: SocketAddr, version: u64) -> usize {
        let now = Instant::now();
        let routers = self.routers.lock().expect("not poisoned");
        let alive = routers.values().filter(|k| now.duration_since(k.received) < SILENCE);
        alive.map(|k| if k.version < version { 1 } else { k.at.get(&addr).copied().unwrap_or(0) }).sum()
    }
}

/// A router's side: every [`POLL`] reads `read` (its routing table's version and its counts at
/// the dynos that left it) and reports it to the control API it follows when it changed, or
/// every [`HEARTBEAT`]; runs until dropped. A failed report is logged once per run of failures
/// and the newest counts tried again a heartbeat later: only the newest matter, so nothing is
/// queued. It follows the replica the watch stream follows (`ControlApiUrl` clones move
/// together), and does not move on itself: the watch stream notices a failed replica first.
pub async fn report_in_flight(control_api: ControlApiUrl, read: impl Fn() -> (u64, Vec<DynoInFlight>) + Send) {
    let router = wharf_domain::new_id();
    let mut last: Option<(u64, Vec<DynoInFlight>)> = None;
    let mut sent = Instant::now();
    let mut failing = false;
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (version, mut dynos) = read();
        if version == 0 {
            // No snapshot yet: nothing routed, nothing to say.
            continue;
        }
        dynos.sort_by_key(|d| d.address);
        let now = (version, dynos);
        // A change goes at once; an unchanged report, or another try after a failure (the
        // control API may be away), once a heartbeat.
        if (failing || last.as_ref() == Some(&now)) && sent.elapsed() < HEARTBEAT {
            continue;
        }
        let report = InFlightReport { router, version: now.0, dynos: now.1.clone() };
        sent = Instant::now();
        match post(&control_api, &report).await {
            Ok(()) => {
                if failing {
                    tracing::info!(api = %control_api.authority(), "requests in flight reported again");
                }
                failing = false;
                last = Some(now);
            }
            Err(e) => {
                if !failing {
                    let api = control_api.authority().to_owned();
                    tracing::warn!(%api, error = %e, "cannot report the requests in flight at stopping dynos");
                }
                failing = true;
                last = None;
            }
        }
    }
}

/// One report.
async fn post(control_api: &ControlApiUrl, report: &InFlightReport) -> Result<(), String> {
    match control_api.post_json("/v1/router-in-flight", report, HEARTBEAT * 2).await? {
        s if s.is_success() => Ok(()),
        s => Err(format!("answered {s}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(router: u128, version: u64, at: &[(u16, usize)]) -> InFlightReport {
        let dynos = at.iter().map(|&(port, requests)| DynoInFlight { address: addr(port), requests }).collect();
        InFlightReport { router: Uuid::from_u128(router), version, dynos }
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// What a wait that began at version 10 reads at port 5001, after the reports given.
    #[test]
    fn a_wait_counts_each_router_s_requests_and_a_router_behind_it_as_one() {
        let check = |reports: &[InFlightReport], want: usize| {
            let routers = RoutersInFlight::default();
            for r in reports {
                routers.record(r.clone());
            }
            assert_eq!(routers.at(addr(5001), 10), want, "{reports:?}");
        };
        // No router: nothing to wait for.
        check(&[], 0);
        // A router that has seen the dyno leave, with its requests there and elsewhere.
        check(&[report(1, 10, &[(5001, 3), (5002, 7)])], 3);
        check(&[report(1, 11, &[(5002, 7)])], 0);
        // Its requests ended (a zero is no request).
        check(&[report(1, 10, &[(5001, 0)])], 0);
        // A router still on an older snapshot may still route there: one, whatever it says.
        check(&[report(1, 9, &[])], 1);
        check(&[report(1, 9, &[(5001, 4)])], 1);
        // Two routers add up; each router's newest report replaces its older one.
        check(&[report(1, 10, &[(5001, 2)]), report(2, 12, &[(5001, 5)])], 7);
        check(&[report(1, 10, &[(5001, 2)]), report(1, 10, &[(5001, 1)])], 1);
        check(&[report(1, 9, &[]), report(1, 10, &[])], 0);
    }

    #[test]
    fn a_silent_router_holds_no_wait() {
        let routers = RoutersInFlight::default();
        routers.record(report(1, 9, &[(5001, 2)]));
        routers.record(report(2, 10, &[(5001, 3)]));
        assert_eq!(routers.at(addr(5001), 10), 4);
        let long_ago = Instant::now().checked_sub(SILENCE).expect("the clock is past SILENCE");
        routers.routers.lock().unwrap().get_mut(&Uuid::from_u128(1)).unwrap().received = long_ago;
        assert_eq!(routers.at(addr(5001), 10), 3, "router 1 went silent");
        assert_eq!(routers.record(report(3, 10, &[])), 2, "a report forgets the silent router");
    }

    #[test]
    fn a_report_s_json_is_refused_with_unknown_fields() {
        let good = r#"{"router":"00000000-0000-0000-0000-000000000001","version":3,"dynos":[{"address":"127.0.0.1:5001","requests":2}]}"#;
        assert_eq!(serde_json::from_str::<InFlightReport>(good).unwrap(), report(1, 3, &[(5001, 2)]));
        for bad in [
            r#"{"router":"00000000-0000-0000-0000-000000000001","version":3,"dynos":[],"x":1}"#,
            r#"{"router":"00000000-0000-0000-0000-000000000001","version":3,"dynos":[{"address":"localhost:5001","requests":2}]}"#,
            r#"{"router":"00000000-0000-0000-0000-000000000001","version":-1,"dynos":[]}"#,
            r#"{"router":"r1","version":3,"dynos":[]}"#,
        ] {
            assert!(serde_json::from_str::<InFlightReport>(bad).is_err(), "{bad}");
        }
    }
}
