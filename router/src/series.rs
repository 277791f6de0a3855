//! Each app's requests per second for the last hour (`wharf_domain::metrics::WINDOW_SECONDS`):
//! counts, 4xx and 5xx, Heroku's error codes and a latency histogram, for the control API's
//! `GET /apps/{app}/metrics`, which reads them through [`crate::Router::request_series`].
//!
//! A request is counted in its worker's thread-local second (no lock, no shared cache line on
//! the request path); the worker hands the second to the shared [`Series`] when a request of a
//! later second ends, and at the latest just after the second is over (a timer the second's
//! first request arms), so the store is at most about a second behind.
//!
//! Memory: per app that served a request in the last hour, at most one record per second of
//! it (3,600): about 80 bytes, plus 8 per latency bucket in use (at most
//! `LatencyHistogram::BUCKETS`; a typical app uses ten or so) and 16 per distinct error code. A
//! continuously busy app holds about 600 KB; an app with no request for an hour holds nothing.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wharf_domain::metrics::{RequestSecond, WINDOW_SECONDS};

/// Every app's seconds, shared by the workers.
#[derive(Debug, Default)]
pub(crate) struct Series {
    apps: Mutex<HashMap<Arc<str>, VecDeque<RequestSecond>>>,
}

impl Series {
    /// The app's seconds from `from` up to `to` (exclusive, seconds since the epoch), oldest
    /// first; seconds without a request are not there.
    pub(crate) fn app(&self, app: &str, from: i64, to: i64) -> Vec<RequestSecond> {
        let apps = self.apps.lock().expect("series lock");
        let Some(seconds) = apps.get(app) else { return Vec::new() };
        seconds.iter().filter(|s| s.at >= from && s.at < to).cloned().collect()
    }

    /// Adds a worker's counts of one second, and forgets what is older than the window.
    fn add(&self, at: i64, counts: impl IntoIterator<Item = (Arc<str>, RequestSecond)>) {
        let oldest = at - WINDOW_SECONDS;
        let mut apps = self.apps.lock().expect("series lock");
        for (app, second) in counts {
            let seconds = apps.entry(app).or_default();
            // Workers hand seconds over independently, so one may arrive after a later one.
            match seconds.iter().rposition(|s| s.at <= at) {
                Some(i) if seconds[i].at == at => seconds[i].merge(&second),
                Some(i) => seconds.insert(i + 1, second),
                None => seconds.push_front(second),
            }
            while seconds.front().is_some_and(|s| s.at <= oldest) {
                seconds.pop_front();
            }
        }
        apps.retain(|_, seconds| seconds.back().is_some_and(|s| s.at > oldest));
    }
}

/// A worker's second being counted. Apps are keyed by the address of their key's `Arc`, which
/// the entry holds (so the address cannot be reused meanwhile): a request costs a hash of one
/// word, not of the app's name. The same app under two tables' `Arc`s (a reload within the
/// second) gets two entries, which the store merges by name.
struct Current {
    at: i64,
    apps: HashMap<usize, (Arc<str>, RequestSecond), foldhash::fast::RandomState>,
}

thread_local! {
    static CURRENT: RefCell<Current> = RefCell::new(Current { at: 0, apps: HashMap::default() });
}

/// Counts a request to `app` that ended at `end_micros` (microseconds since the epoch) with
/// `status` and the router's error `code`, after `total_ms` milliseconds.
pub(crate) fn record(
    series: &Arc<Series>,
    app: &Arc<str>,
    end_micros: i64,
    status: u16,
    code: Option<&'static str>,
    total_ms: u64,
) {
    let at = end_micros.div_euclid(1_000_000);
    let (handed, first) = CURRENT.with(|c| {
        let mut c = c.borrow_mut();
        let handed = (c.at != at && !c.apps.is_empty()).then(|| (c.at, std::mem::take(&mut c.apps)));
        c.at = at;
        let first = c.apps.is_empty();
        let key = Arc::as_ptr(app).cast::<u8>() as usize;
        let (_, second) =
            c.apps.entry(key).or_insert_with(|| (app.clone(), RequestSecond { at, ..RequestSecond::default() }));
        second.record(status, code, total_ms);
        (handed, first)
    });
    if let Some((at, apps)) = handed {
        series.add(at, apps.into_values());
    }
    if first {
        // Hand the second over once it is over, should no later request do it.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let series = series.clone();
            let left_micros = 1_000_000 - end_micros.rem_euclid(1_000_000) as u64;
            rt.spawn(async move {
                tokio::time::sleep(Duration::from_micros(left_micros) + Duration::from_millis(5)).await;
                flush(&series, at);
            });
        }
    }
}

/// Hands this worker's counts of second `at` (or an earlier one) to the store.
fn flush(series: &Series, at: i64) {
    let handed = CURRENT.with(|c| {
        let mut c = c.borrow_mut();
        (c.at <= at && !c.apps.is_empty()).then(|| (c.at, std::mem::take(&mut c.apps)))
    });
    if let Some((at, apps)) = handed {
        series.add(at, apps.into_values());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn second(at: i64, requests: u32) -> (Arc<str>, RequestSecond) {
        let mut s = RequestSecond { at, ..RequestSecond::default() };
        for _ in 0..requests {
            s.record(200, None, 1);
        }
        (Arc::from("app-default"), s)
    }

    #[test]
    fn seconds_merge_in_order_and_age_out() {
        let series = Series::default();
        let add = |at, n| series.add(at, [second(at, n)]);
        add(100, 1);
        add(102, 2);
        add(101, 3); // a worker late with an earlier second
        add(102, 4); // another worker's share of the same second
        let counts =
            |from, to| series.app("app-default", from, to).iter().map(|s| (s.at, s.requests)).collect::<Vec<_>>();
        assert_eq!(counts(0, i64::MAX), [(100, 1), (101, 3), (102, 6)]);
        assert_eq!(counts(101, 102), [(101, 3)]);
        assert!(series.app("other-default", 0, i64::MAX).is_empty());
        add(100 + WINDOW_SECONDS, 1);
        assert_eq!(counts(0, i64::MAX), [(101, 3), (102, 6), (100 + WINDOW_SECONDS, 1)]);
    }

    #[test]
    fn a_worker_hands_a_second_over_when_the_next_begins() {
        let series = Arc::new(Series::default());
        let app: Arc<str> = Arc::from("app-default");
        record(&series, &app, 5_000_000, 200, None, 3);
        record(&series, &app, 5_999_999, 503, Some("H12"), 30_000);
        assert!(series.app("app-default", 0, i64::MAX).is_empty(), "second 5 is still being counted");
        record(&series, &app, 6_000_000, 200, None, 3);
        let seconds = series.app("app-default", 0, i64::MAX);
        assert_eq!(seconds.len(), 1);
        assert_eq!((seconds[0].at, seconds[0].requests, seconds[0].status_5xx), (5, 2, 1));
        assert_eq!(seconds[0].codes, [("H12", 1)]);
        flush(&series, 6);
        assert_eq!(series.app("app-default", 6, 7)[0].requests, 1);
    }
}
