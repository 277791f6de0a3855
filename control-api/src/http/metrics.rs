//! `GET /apps/{app}/metrics?from=&to=&resolution=`: an app's figures per second (or per step of
//! `resolution` seconds) over at most the last hour: each dyno's CPU, memory and storage I/O,
//! from the local runtime, and the app's requests, errors and latency percentiles, from the
//! router of this process.
//!
//! `from` and `to` are RFC 3339 times (RFC 3339 §5.6; `to` exclusive, both taken to the
//! second); `to` defaults to now and `from` to an hour before `to`; `resolution` is a whole
//! number of seconds from 1 to 3600, 1 by default. A range that is empty, reversed or longer
//! than an hour, a time that does not parse, a bad resolution or an unknown parameter is a 422
//! naming it. Steps start at `from`; a dyno's figures are averages over the seconds of a step it
//! was sampled in (so `cpu_percent` and the bytes per second keep their units at any
//! resolution), request counts are sums, and the latency percentiles are those of every request
//! in the step (`wharf_domain::metrics`). Steps without figures are left out. `requests` is
//! `null` when no router runs in this process (a remote router keeps its counts to itself).

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use wharf_domain::metrics::{DynoSecond, RequestSecond, WINDOW_SECONDS, dyno_steps, request_steps};
use wharf_domain::timestamp;

use super::wire::{ApiError, ApiResult, AppRef, Json, Plane, app_ref};
use crate::plane::Error;

/// The query, as sent: strings, so that each refusal can say what was wrong.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MetricsQuery {
    from: Option<String>,
    to: Option<String>,
    resolution: Option<String>,
}

/// The answer.
#[derive(Serialize)]
pub(super) struct MetricsOut {
    app: AppRef,
    from: String,
    to: String,
    resolution: i64,
    dynos: Vec<DynoOut>,
    requests: Option<Vec<RequestsOut>>,
}

/// One dyno's steps.
#[derive(Serialize)]
pub(super) struct DynoOut {
    name: String,
    #[serde(rename = "type")]
    dyno_type: String,
    samples: Vec<DynoSampleOut>,
}

/// A dyno's figures over one step.
#[derive(Serialize)]
pub(super) struct DynoSampleOut {
    time: String,
    cpu_percent: f64,
    memory_rss_bytes: u64,
    memory_total_bytes: u64,
    read_bytes_per_second: u64,
    write_bytes_per_second: u64,
}

/// The app's requests over one step.
#[derive(Serialize)]
pub(super) struct RequestsOut {
    time: String,
    requests: u32,
    status_4xx: u32,
    status_5xx: u32,
    codes: std::collections::BTreeMap<&'static str, u32>,
    latency_ms: LatencyOut,
}

/// Latency percentiles of a step's requests, in milliseconds (each at most 25% above the true
/// value: the upper bound of its histogram bucket).
#[derive(Serialize)]
pub(super) struct LatencyOut {
    p50: Option<u64>,
    p95: Option<u64>,
    p99: Option<u64>,
    max: Option<u64>,
}

/// The range and step asked for, checked: `from` before `to`, at most an hour apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    from: i64,
    to: i64,
    resolution: i64,
}

/// Checks the query against the rules in the module comment, `now` being the current second.
fn range(q: &MetricsQuery, now: i64) -> Result<Range, String> {
    let time = |name: &str, value: &Option<String>| -> Result<Option<i64>, String> {
        value
            .as_deref()
            .map(|v| {
                timestamp::parse_micros(v)
                    .map(|m| m.div_euclid(1_000_000))
                    .ok_or_else(|| format!("{name} must be an RFC 3339 time, such as 2026-01-02T03:04:05Z, not {v:?}"))
            })
            .transpose()
    };
    let to = time("to", &q.to)?.unwrap_or(now);
    let from = time("from", &q.from)?.unwrap_or(to - WINDOW_SECONDS);
    let resolution = match q.resolution.as_deref() {
        None => 1,
        Some(r) => r
            .parse::<i64>()
            .ok()
            .filter(|r| (1..=WINDOW_SECONDS).contains(r))
            .ok_or_else(|| format!("resolution must be a whole number of seconds from 1 to 3600, not {r:?}"))?,
    };
    if from >= to {
        return Err("from must be before to".to_owned());
    }
    if to - from > WINDOW_SECONDS {
        return Err("from and to must be at most an hour (3600 s) apart: figures are kept for an hour".to_owned());
    }
    Ok(Range { from, to, resolution })
}

/// `GET /apps/{app}/metrics`.
pub(super) async fn get_metrics(
    State(plane): Plane,
    Path(app): Path<String>,
    query: Result<Query<MetricsQuery>, QueryRejection>,
) -> ApiResult<impl IntoResponse> {
    let Query(query) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    let found = plane.read(|m| m.app(&app).map(|a| (a.id, m.app_key(a).to_string(), app_ref(m, a)))).await;
    let (app_id, key, app) = found.ok_or(Error::NotFound { what: "app", key: app })?;
    let Range { from, to, resolution } = range(&query, timestamp::now_seconds()).map_err(ApiError::invalid)?;
    let dynos = plane
        .dyno_seconds(app_id, from, to)
        .into_iter()
        .map(|d| DynoOut {
            samples: dyno_steps(&d.seconds, from, to, resolution).iter().map(dyno_sample).collect(),
            name: d.dyno,
            dyno_type: d.dyno_type,
        })
        .collect();
    let requests = plane
        .request_seconds(&key, from, to)
        .map(|seconds| request_steps(&seconds, from, to, resolution).iter().map(requests_step).collect());
    Ok(Json(MetricsOut {
        app,
        from: timestamp::format_seconds(from),
        to: timestamp::format_seconds(to),
        resolution,
        dynos,
        requests,
    }))
}

fn dyno_sample(s: &DynoSecond) -> DynoSampleOut {
    DynoSampleOut {
        time: timestamp::format_seconds(s.at),
        // Two decimals are what a percentage of a sampled tick count can tell.
        cpu_percent: (s.cpu_percent * 100.0).round() / 100.0,
        memory_rss_bytes: s.memory_rss_bytes,
        memory_total_bytes: s.memory_total_bytes,
        read_bytes_per_second: s.read_bytes,
        write_bytes_per_second: s.write_bytes,
    }
}

fn requests_step(s: &RequestSecond) -> RequestsOut {
    RequestsOut {
        time: timestamp::format_seconds(s.at),
        requests: s.requests,
        status_4xx: s.status_4xx,
        status_5xx: s.status_5xx,
        codes: s.codes.iter().copied().collect(),
        latency_ms: LatencyOut {
            p50: s.latency.quantile(0.5),
            p95: s.latency.quantile(0.95),
            p99: s.latency.quantile(0.99),
            max: s.latency.quantile(1.0),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_checked() {
        let now = 1_800_000_000; // 2027-01-15T08:00:00Z
        let q = |from: Option<&str>, to: Option<&str>, resolution: Option<&str>| MetricsQuery {
            from: from.map(str::to_owned),
            to: to.map(str::to_owned),
            resolution: resolution.map(str::to_owned),
        };
        let ok = |from, to, resolution| Ok(Range { from, to, resolution });
        let check = |query: MetricsQuery, expected: Result<Range, &str>| {
            let got = range(&query, now);
            match (&got, &expected) {
                (Ok(g), Ok(e)) => assert_eq!(g, e, "{query:?}"),
                (Err(g), Err(e)) => assert!(g.contains(e), "{query:?}: {g}"),
                _ => panic!("{query:?}: got {got:?}, expected {expected:?}"),
            }
        };
        check(q(None, None, None), ok(now - 3600, now, 1));
        check(q(Some("2027-01-15T07:59:00Z"), None, Some("10")), ok(now - 60, now, 10));
        check(
            q(Some("2027-01-15T09:00:00.9+02:00"), Some("2027-01-15T07:30:00Z"), None),
            ok(now - 3600, now - 1800, 1),
        );
        check(q(Some("2027-01-15T07:00:00Z"), Some("2027-01-15T08:00:00Z"), Some("3600")), ok(now - 3600, now, 3600));
        check(q(Some("yesterday"), None, None), Err("from must be an RFC 3339 time"));
        check(q(None, Some("2027-01-15"), None), Err("to must be an RFC 3339 time"));
        check(q(Some("2027-01-15T08:00:00Z"), Some("2027-01-15T08:00:00Z"), None), Err("from must be before to"));
        check(q(Some("2027-01-15T08:00:01Z"), Some("2027-01-15T08:00:00Z"), None), Err("from must be before to"));
        check(q(Some("2027-01-15T06:59:59Z"), Some("2027-01-15T08:00:00Z"), None), Err("at most an hour"));
        for bad in ["0", "-1", "3601", "1.5", "", "1s"] {
            check(q(None, None, Some(bad)), Err("resolution must be a whole number"));
        }
    }
}
