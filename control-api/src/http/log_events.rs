//! `POST /log-events`: platform components (build workers, schedulers, an orchestrator) put
//! log lines onto the bus over HTTP, in batches, with the admin token.
//!
//! A batch is checked whole before any of it is published, so a refused batch changes
//! nothing: every event names an app that exists, a source and process that fit RFC 5424's
//! header fields, a known stream and, when given, an RFC 3339 time. The event's own time is
//! kept; only an event without one gets the time it arrived. A message longer than
//! [`wharf_bus::event::MAX_CHUNK`] bytes goes on the bus as consecutive chunks of at most that
//! many bytes, cut on character boundaries ([`wharf_bus::split_message`]); one over
//! [`wharf_bus::event::MAX_MESSAGE`] is refused (422), never cut.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::json;
use wharf_bus::{LogEvent, Publisher, Refused, Stream};

use super::wire::{ApiError, Body, Json};
use crate::plane::ControlPlane;

/// Most events in one request.
pub(super) const MAX_EVENTS: usize = 1000;
/// RFC 5424's limits for APP-NAME (the source) and PROCID (the process), in bytes.
const SOURCE_MAX: usize = 48;
const PROCESS_MAX: usize = 128;

/// One event as it arrives.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventIn {
    /// The app's key (`app-space`) or id.
    app: String,
    /// Who wrote the line: `akkeris/build`, `app`, ...
    source: String,
    /// The process or dyno, if any.
    #[serde(default)]
    process: String,
    /// `stdout`, `stderr`, or absent.
    #[serde(default)]
    stream: Option<String>,
    /// When the line was written, RFC 3339; when it arrived, if absent.
    #[serde(default)]
    time: Option<String>,
    /// The line.
    message: String,
}

fn header_field(what: &str, value: &str, max: usize, required: bool) -> Result<(), String> {
    if value.is_empty() && !required {
        return Ok(());
    }
    if value.is_empty() || value.len() > max || !value.bytes().all(|c| c.is_ascii_graphic()) {
        return Err(format!("{what} must be 1 to {max} printable ASCII characters without spaces"));
    }
    Ok(())
}

/// Checks one event and encodes it for the bus with the app's canonical key: one event, or one
/// per chunk of a long message.
fn event(e: &EventIn, key: &str) -> Result<Vec<LogEvent>, String> {
    header_field("source", &e.source, SOURCE_MAX, true)?;
    header_field("process", &e.process, PROCESS_MAX, false)?;
    let stream = match e.stream.as_deref() {
        None => Stream::Platform,
        Some("stdout") => Stream::Stdout,
        Some("stderr") => Stream::Stderr,
        Some(other) => return Err(format!("stream is stdout or stderr, not {other:?}")),
    };
    if e.message.len() > wharf_bus::event::MAX_MESSAGE {
        return Err(format!("message is longer than {} bytes", wharf_bus::event::MAX_MESSAGE));
    }
    let mut b = LogEvent::builder(key, &e.source).process(&e.process).stream(stream);
    if let Some(t) = &e.time {
        let micros = wharf_domain::timestamp::parse_micros(t)
            .filter(|&m| wharf_domain::timestamp::in_range(m))
            .ok_or_else(|| format!("time {t:?} is not an RFC 3339 timestamp such as 2024-01-02T03:04:05.678Z"))?;
        b = b.time_micros(micros);
    }
    Ok(b.messages(e.message.as_bytes()))
}

/// The handler: 202 with the count when every event is on the bus, 503 when the bus could not
/// take them all (the client retries; lines may then arrive twice, never not at all), naming
/// the cause ([`refusal`]).
pub(super) async fn post(
    State(plane): State<Arc<ControlPlane>>,
    Extension(publisher): Extension<Publisher>,
    Body(events): Body<Vec<EventIn>>,
) -> Result<impl IntoResponse, ApiError> {
    if events.is_empty() {
        return Err(ApiError::invalid("the body is a JSON array of at least one event"));
    }
    if events.len() > MAX_EVENTS {
        return Err(ApiError::invalid(format!("at most {MAX_EVENTS} events per request, got {}", events.len())));
    }
    let keys = plane
        .read(|m| events.iter().map(|e| m.app(&e.app).map(|a| m.app_key(a).to_string())).collect::<Vec<_>>())
        .await;
    let mut encoded = Vec::with_capacity(events.len());
    // How many bus events (chunks) each posted event became, to say which were taken.
    let mut chunks_of = Vec::with_capacity(events.len());
    for (i, (e, key)) in events.iter().zip(keys).enumerate() {
        let Some(key) = key else {
            return Err(ApiError::invalid(format!("event {i}: no app {:?}", e.app)));
        };
        let chunks = event(e, &key).map_err(|m| ApiError::invalid(format!("event {i}: {m}")))?;
        chunks_of.push(chunks.len() as u64);
        encoded.push(chunks);
    }
    let n = events.len() as u64;
    // Each event whole or not at all (FE47: a 503 that named an event cut in two had its
    // first chunks arrive twice when the client sent it again, as told).
    publisher.try_publish_messages(encoded).map_err(|r| refusal(r, &chunks_of))?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "accepted": n }))))
}

/// The 503 for a batch the bus did not all take (`chunks_of`: how many bus events each posted
/// event became): its cause in words, which of the request's events are on the bus (the bus
/// takes a batch in order, each event whole or not at all, and stops at its first refusal, so
/// they are the first ones: a client that sends the rest again sends no line twice; only
/// librdkafka's own queue filling between two chunks of one event can leave part of it on the
/// bus, which the message then says), and a `Retry-After` as long as the cause usually lasts.
fn refusal(r: Refused, chunks_of: &[u64]) -> ApiError {
    let n = chunks_of.len();
    let mut whole = 0;
    let mut left = r.taken;
    for &c in chunks_of {
        if c > left {
            break;
        }
        left -= c;
        whole += 1;
    }
    let taken = match (whole, left) {
        (0, 0) => "none of the request's events is on the bus: send them all again".to_owned(),
        (0, _) => format!("only {left} chunk(s) of event 0 are on the bus: send them all again"),
        (w, 0) => format!("events 0 to {} of {n} are on the bus: send the rest again, from event {w}", w - 1),
        (w, _) => format!(
            "events 0 to {} of {n} and {left} chunk(s) of event {w} are on the bus: send the rest again, \
             from event {w}",
            w - 1
        ),
    };
    ApiError::unavailable_for(
        format!(
            "{}: {} of the request's {n} events were not taken; {taken}; retry in {} s",
            r.why.cause(),
            n - whole,
            r.why.retry_after_seconds()
        ),
        r.why.retry_after_seconds(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(json: serde_json::Value, want: Result<(&str, &str, &str), &str>) {
        let e: EventIn = serde_json::from_value(json).expect("wire shape");
        match (event(&e, "api-default"), want) {
            (Ok(mut got), Ok((source, process, message))) => {
                assert_eq!(got.len(), 1, "a short message is one event");
                let got = got.remove(0);
                assert_eq!((got.app(), got.source(), got.process()), ("api-default", source, process));
                assert_eq!(got.message(), message.as_bytes());
            }
            (Err(got), Err(want)) => assert!(got.contains(want), "{got:?} should say {want:?}"),
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn events() {
        let ok = |source, process, message| Ok((source, process, message));
        check(json!({"app": "x", "source": "akkeris/build", "message": "hi"}), ok("akkeris/build", "", "hi"));
        check(
            json!({"app": "x", "source": "app", "process": "web.1", "stream": "stderr", "message": "m"}),
            ok("app", "web.1", "m"),
        );
        check(json!({"app": "x", "source": "", "message": "m"}), Err("source must be 1 to 48"));
        check(json!({"app": "x", "source": "a b", "message": "m"}), Err("source must be"));
        check(json!({"app": "x", "source": "a".repeat(49), "message": "m"}), Err("source must be"));
        check(json!({"app": "x", "source": "s", "process": "p\u{e9}", "message": "m"}), Err("process must be"));
        check(json!({"app": "x", "source": "s", "stream": "out", "message": "m"}), Err("stream is stdout or stderr"));
        check(json!({"app": "x", "source": "s", "time": "yesterday", "message": "m"}), Err("RFC 3339"));
        check(json!({"app": "x", "source": "s", "message": "x".repeat(65 * 1024)}), Err("longer than"));
    }

    #[test]
    fn a_long_message_becomes_chunks_in_order() {
        let message = "\u{e9}".repeat(30_000); // 60,000 bytes, under the 64 KiB refusal
        let e: EventIn = serde_json::from_value(json!({"app": "x", "source": "s", "message": message})).unwrap();
        let got = event(&e, "api-default").unwrap();
        assert_eq!(got.len(), 6);
        let parts: Vec<&str> = got.iter().map(|e| std::str::from_utf8(e.message()).unwrap()).collect();
        assert!(parts.iter().all(|p| p.len() <= wharf_bus::event::MAX_CHUNK));
        assert_eq!(parts.concat(), message);
    }

    #[test]
    fn the_event_time_is_kept() {
        let e: EventIn =
            serde_json::from_value(json!({"app": "x", "source": "s", "time": "2024-01-02T03:04:05.5Z", "message": ""}))
                .unwrap();
        let got = event(&e, "api-default").unwrap().remove(0);
        assert_eq!(wharf_domain::timestamp::format_micros(got.time_micros()), "2024-01-02T03:04:05.500000Z");
    }

    /// Each reason the bus gives for not taking a batch is a 503 that names it, with how many
    /// events were not taken and a `Retry-After` as long as the cause usually lasts. The table
    /// covers every [`wharf_bus::Refusal`]: a new one must be added here.
    #[tokio::test]
    async fn each_refusal_is_a_503_naming_its_cause() {
        use wharf_bus::Refusal;
        let table = [
            (Refusal::Full, "the log bus is full", "1"),
            (Refusal::BrokersUnreachable, "the kafka brokers are unreachable", "5"),
            (Refusal::TopicMissing, "the kafka topic is missing", "1"),
            (Refusal::Refused, "the kafka producer refused the lines", "5"),
            (Refusal::Closed, "the log bus is shutting down", "5"),
        ];
        assert_eq!(table.len(), Refusal::ALL.len(), "every refusal has a row");
        for (why, cause, retry_after) in table {
            let response = refusal(Refused { taken: 1, refused: 2, why }, &[1, 1, 1]).into_response();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "{why:?}");
            assert_eq!(response.headers()["retry-after"], retry_after, "{why:?}");
            let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(body["id"], "service_unavailable");
            let message = body["message"].as_str().unwrap();
            assert!(message.starts_with(cause), "{why:?}: {message}");
            assert!(message.contains("2 of the request's 3 events were not taken"), "{why:?}: {message}");
            assert!(
                message.contains("events 0 to 0 of 3 are on the bus: send the rest again, from event 1"),
                "{message}"
            );
            assert!(message.ends_with(&format!("retry in {retry_after} s")), "{why:?}: {message}");
        }
    }

    /// Which of a partly refused request's events are on the bus, by the chunks taken: the
    /// message names the first event to send again (FE46 LOW: it said only how many).
    #[test]
    fn a_partly_refused_request_says_which_events_to_send_again() {
        let check = |chunks_of: &[u64], taken: u64, says: &str| {
            let refused = chunks_of.iter().sum::<u64>() - taken;
            let e = refusal(Refused { taken, refused, why: wharf_bus::Refusal::Full }, chunks_of);
            let said = format!("{e:?}");
            assert!(said.contains(says), "{chunks_of:?} taken {taken}: {said}");
        };
        check(&[1, 1, 1], 0, "none of the request's events is on the bus: send them all again");
        check(&[1, 1, 1], 2, "events 0 to 1 of 3 are on the bus: send the rest again, from event 2");
        check(&[3, 1], 2, "only 2 chunk(s) of event 0 are on the bus: send them all again");
        check(
            &[1, 3, 1],
            3,
            "events 0 to 0 of 3 and 2 chunk(s) of event 1 are on the bus: send the rest again, from event 1",
        );
        check(&[1, 3, 1], 4, "events 0 to 1 of 3 are on the bus: send the rest again, from event 2");
    }
}
