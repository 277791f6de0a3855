//! The order `POST /log-events` keeps, through real processes: two `wharf control-api` replicas
//! on one PostgreSQL database putting the events on one Kafka broker (tansu), a logshuttle and a
//! syslog drain. A client that posts an app's events one request after another, each after the
//! last one's 202, to one replica finds them at the drain in the order it sent them; the same
//! client alternating between the replicas has no such promise (each replica's producer sends on
//! its own, and the 202 comes before the broker's acknowledgement), so the test counts how many
//! arrived after a later one and prints it, with the 202's latency (docs/fleet.md, "Order of an
//! app's lines").

use std::time::{Duration, Instant};

use serde_json::json;
use wharf_testkit::client::Api;
use wharf_testkit::postgres::Postgres;
use wharf_testkit::syslog::SyslogReceiver;
use wharf_testkit::tansu::Tansu;
use wharf_testkit::wharf::{REPLICA_SECRETS, WharfControlApi, WharfLogshuttle};
use wharf_testkit::{TempDir, eventually};

const WHARF: &str = env!("CARGO_BIN_EXE_wharf");
const WAIT: Duration = Duration::from_secs(120);
/// Requests per sequence.
const N: usize = 400;

/// Posts the numbered events `0..N` of sequence `name`, one per request, each after the last
/// one's answer, to `apis[i % apis.len()]`; returns each request's latency.
async fn post_in_turn(apis: &[&Api], name: &str) -> Vec<Duration> {
    let mut latencies = Vec::with_capacity(N);
    for i in 0..N {
        let event =
            json!([{"app": "order-default", "source": "app", "process": "web.1", "message": format!("{name} {i:04}")}]);
        let start = Instant::now();
        let (status, out) = apis[i % apis.len()].call("POST", "/log-events", Some(event)).await;
        latencies.push(start.elapsed());
        assert_eq!(status, 202, "{name} {i}: {out}");
    }
    latencies
}

/// The numbers of sequence `name` in the order the drain received them.
fn arrived(drain: &SyslogReceiver, name: &str) -> Vec<usize> {
    let prefix = format!("{name} ");
    let number = |text: String| {
        let at = text.find(&prefix)? + prefix.len();
        text[at..].split_whitespace().next()?.parse().ok()
    };
    drain.messages().iter().filter_map(|m| number(m.text())).collect()
}

/// How many numbers arrived after a greater one: 0 when in order.
fn late(seq: &[usize]) -> usize {
    let mut highest = None;
    let mut late = 0;
    for &n in seq {
        if highest.is_some_and(|h| n < h) {
            late += 1;
        }
        highest = highest.max(Some(n));
    }
    late
}

/// The `q` quantile of `d`, in milliseconds.
fn quantile(d: &[Duration], q: f64) -> f64 {
    let mut v: Vec<f64> = d.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

#[test]
fn late_counts_lines_that_arrive_after_a_later_one() {
    for (seq, want) in
        [(&[][..], 0), (&[0, 1, 2][..], 0), (&[1, 0, 2][..], 1), (&[2, 0, 1][..], 2), (&[0, 2, 1, 3][..], 1)]
    {
        assert_eq!(late(seq), want, "{seq:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_events_keep_their_order_through_one_replica_and_are_counted_across_two() {
    let pg = Postgres::start().await;
    let db = pg.database("log_order").await;
    let broker = Tansu::start().await;
    let brokers = broker.brokers();
    let dir = TempDir::new("log-events-order");
    let mut env: Vec<(&str, &str)> = REPLICA_SECRETS.to_vec();
    env.push(("WHARF_KAFKA__PARTITIONS", "4"));
    let args = ["--database-url", db.as_str(), "--kafka", brokers.as_str()];
    let a = WharfControlApi::start(WHARF, &args, &dir.path().join("a"), &env).await;
    let b = WharfControlApi::start(WHARF, &args, &dir.path().join("b"), &env).await;
    a.api.expect("POST", "/apps", json!({"name": "order", "space": "default"}), 201).await;
    let drain = SyslogReceiver::tcp().await;
    a.api.expect("POST", "/apps/order-default/log-drains", json!({"url": drain.url()}), 201).await;
    let secret = |k: &str| REPLICA_SECRETS.iter().find(|(name, _)| *name == k).expect("a secret").1;
    let shuttle_env = [
        ("WHARF_LOGSHUTTLE_TOKEN", secret("WHARF_LOGSHUTTLE_TOKEN")),
        ("WHARF_SESSION_SECRET", secret("WHARF_SESSION_SECRET")),
        ("WHARF_KAFKA__PARTITIONS", "4"),
    ];
    let _shuttle = WharfLogshuttle::start(WHARF, &a.url(), &brokers, &dir.path().join("shuttle"), &shuttle_env).await;
    // The drain is running once a first line gets through.
    eventually(WAIT, "a first line at the drain", || async {
        let event = json!([{"app": "order-default", "source": "app", "message": "warm-up"}]);
        assert_eq!(a.api.call("POST", "/log-events", Some(event)).await.0, 202);
        (!drain.messages().is_empty()).then_some(())
    })
    .await;

    let one = post_in_turn(&[&a.api], "one").await;
    let two = post_in_turn(&[&a.api, &b.api], "two").await;
    let (one_seen, two_seen) = eventually(WAIT, "every line of both sequences at the drain", || async {
        let (one, two) = (arrived(&drain, "one"), arrived(&drain, "two"));
        (one.len() >= N && two.len() >= N).then_some((one, two))
    })
    .await;
    for (name, latencies, seen) in [("one replica", &one, &one_seen), ("two replicas in turn", &two, &two_seen)] {
        eprintln!(
            "{name}: {N} requests, 202 after p50 {:.2} ms, p99 {:.2} ms; lines after a later one: {}; repeated: {}",
            quantile(latencies, 0.5),
            quantile(latencies, 0.99),
            late(seen),
            seen.len() - N
        );
    }
    assert_eq!(late(&one_seen), 0, "one replica keeps the order a client posts in: {one_seen:?}");
}
