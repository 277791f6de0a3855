//! A log session whose requested history (`lines`) reaches further back than the log keeps is
//! told so: its first line says how many of the lines asked for there were, and why the
//! history starts there, in the session's own format (text, or a Server-Sent Event). A
//! session whose app never had more lines, or that asks for fewer than are kept, gets no such
//! line. One table, both buses: the embedded bus (the logshuttle's ring of an app's last
//! `history_lines` lines and 512 bytes a line: sessions may ask for up to `history_lines`, so
//! long lines are what cut it) and Kafka (a real tansu; a session reads the newest
//! `session_history_messages` of the app's partition). Cutting by the topic's retention is
//! covered by `tail::tests` only: tansu 0.6's storage engines answer DeleteRecords with a panic
//! (`todo!()`) and apply `retention.ms` on their own schedule.

use std::time::Duration;

use serde_json::{Value, json};
use wharf_testkit::client::{self, Req};
use wharf_testkit::tansu::Tansu;
use wharf_testkit::wharf::Wharf;
use wharf_testkit::{TempDir, eventually};

const WHARF: &str = env!("CARGO_BIN_EXE_wharf");
const WAIT: Duration = Duration::from_secs(60);
/// Lines a session asks for, more than either bus keeps here of the app's long lines.
const ASKED: usize = 25;
/// Lines a session asks for, fewer than either bus keeps.
const FEW: usize = 5;
/// A long line's padding: 30 ring lines of 512 bytes hold about 7 of them.
const PAD: usize = 2000;

/// Posts one `app` line per message, in one request.
async fn post(wharf: &Wharf, app: &str, messages: &[String]) {
    let events: Vec<Value> =
        messages.iter().map(|m| json!({"app": app, "source": "app", "process": "web.1", "message": m})).collect();
    let out = wharf.api.expect("POST", "/log-events", Value::Array(events), 202).await;
    assert_eq!(out["accepted"], messages.len());
}

/// A history-only session of `app` asking for `lines`; the stream's lines, as text or, with
/// `events`, the `data:` fields of its Server-Sent Events.
async fn session(wharf: &Wharf, app: &str, lines: usize, events: bool) -> Vec<String> {
    let grant = wharf.api.expect("POST", &format!("/apps/{app}/log-sessions"), json!({"lines": lines}), 201).await;
    let url = grant["logplex_url"].as_str().expect("logplex_url");
    let path = &url[url.find("/log-sessions/").expect("session path")..];
    let mut req = Req::get(&wharf.api.addr.to_string(), path);
    if events {
        req = req.header("accept", "text/event-stream");
    }
    let r = client::send(wharf.api.addr, None, &req).await.expect("session stream");
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    if events {
        // Each event is one `data:` field and a blank line (no message here has a line break).
        assert!(text.split("\n\n").filter(|e| !e.is_empty()).all(|e| e.starts_with("data: ")), "{text}");
        text.lines().filter_map(|l| l.strip_prefix("data: ")).map(str::to_owned).collect()
    } else {
        text.lines().map(str::to_owned).collect()
    }
}

/// The message of a stream's line (after `SOURCE[PROCESS]: `), without a long line's padding.
fn message(line: &str) -> &str {
    let m = line.split_once("]: ").or_else(|| line.split_once(": ")).map_or(line, |(_, m)| m);
    m.split_once(' ').map_or(m, |(m, _)| m)
}

/// Waits until a session of `app` (asking for `lines`) ends with the line `last`: the lines
/// are on the bus and wherever sessions read them.
async fn settled(wharf: &Wharf, app: &str, last: &str) {
    eventually(WAIT, "the posted lines to reach the sessions' history", || async {
        session(wharf, app, 1, false).await.last().is_some_and(|l| message(l) == last).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_history_shorter_than_asked_is_said_on_the_embedded_bus() {
    let dir = TempDir::new("session-history");
    let wharf =
        Wharf::serve_with(WHARF, &[], &dir.path().join("data"), &[("WHARF_LOGSHUTTLE__HISTORY_LINES", "30")]).await;
    check(&wharf, "this logshuttle keeps an app's lines (its last 30 lines or 15360 bytes, logshuttle.history_lines)")
        .await;
}

#[tokio::test]
async fn a_history_shorter_than_asked_is_said_on_kafka() {
    let broker = Tansu::start().await;
    let dir = TempDir::new("session-history");
    // One partition: every app's lines share it, so the window holds other apps' lines too.
    let env = [("WHARF_LOGSHUTTLE__SESSION_HISTORY_MESSAGES", "20"), ("WHARF_KAFKA__PARTITIONS", "1")];
    let wharf = Wharf::serve_with(WHARF, &["--kafka", &broker.brokers()], &dir.path().join("data"), &env).await;
    // How many of the app's lines the window holds depends on where tansu says the partition
    // ends (its newest producer batch's first offset plus one), so it is not fixed here.
    check(
        &wharf,
        "a session reads the app's Kafka partition (its newest 20 messages, logshuttle.session_history_messages)",
    )
    .await;
}

/// The table, on one Wharf: `why` is the reason the notice gives. How many of the app's lines
/// the history has depends on the lines' encoded size (the ring) or on where tansu says the
/// partition ends (its newest producer batch's first offset plus one), so it is not fixed here:
/// the notice must say the number the history has.
async fn check(wharf: &Wharf, why: &str) {
    for app in ["few-default", "many-default", "last-default"] {
        wharf.api.create_app(app, &[]).await;
    }
    // An app that logged 5 lines, while the log still holds everything: its history is whole.
    let few: Vec<String> = (0..5).map(|i| format!("few-{i:03}")).collect();
    post(wharf, "few-default", &few).await;
    settled(wharf, "few-default", "few-004").await;
    for events in [false, true] {
        let got = session(wharf, "few-default", ASKED, events).await;
        assert_eq!(got.iter().map(|l| message(l)).collect::<Vec<_>>(), few, "events {events}: {got:#?}");
    }

    // An app that logged 100 long lines, more than the log keeps for sessions; then one line of
    // another app, so that the partition's newest batch is a small one.
    let many: Vec<String> = (0..100).map(|i| format!("many-{i:03}")).collect();
    let long: Vec<String> = many.iter().map(|m| format!("{m} {}", "x".repeat(PAD))).collect();
    post(wharf, "many-default", &long).await;
    settled(wharf, "many-default", "many-099").await;
    post(wharf, "last-default", &["last-000".to_owned()]).await;
    settled(wharf, "last-default", "last-000").await;

    for events in [false, true] {
        // Asking for more than there is: the notice first, then the newest lines, in order.
        let got = session(wharf, "many-default", ASKED, events).await;
        let (notice, history) = got.split_first().expect("a notice line");
        let n = history.len();
        assert!((FEW..ASKED).contains(&n), "events {events}: {n} lines");
        let want = format!(
            " many-default akkeris/logshuttle: History: {n} of the {ASKED} lines asked for, from as far back as {why}."
        );
        assert!(notice.ends_with(&want), "events {events}: {notice:?} ends with {want:?}");
        assert_eq!(
            history.iter().map(|l| message(l)).collect::<Vec<_>>(),
            &many[100 - n..],
            "events {events}: the newest lines, in order"
        );

        // Asking for no more than there is: no notice.
        let got = session(wharf, "many-default", FEW, events).await;
        assert_eq!(got.iter().map(|l| message(l)).collect::<Vec<_>>(), &many[100 - FEW..], "events {events}");
    }
}
