//! Akkeris' log inputs, read from their Kafka topics as Akkeris' logshuttle reads them.
//!
//! - App lines: fluentd's Kubernetes JSON on a topic per space,
//!   `{"log", "stream", "time", "kubernetes": {"namespace_name", "pod_name", "container_name"}}`.
//!   The topic is the space; the container name is the app, or `app--type` for a dyno type
//!   other than `web`; the process is the type and the pod name without the app (and type),
//!   `web.1562910588-cg82f`.
//! - Build lines: `{"build", "job", "message", "metadata": "app-space"}` (a bare `app` is in
//!   the `default` space), with the values of Docker `ARG` steps hidden.
//!
//! Anything else is refused with the reason, for the consumer to count and skip. A line longer
//! than [`crate::event::MAX_CHUNK`] bytes becomes several events, in order (see
//! [`crate::split_message`]).

use serde::Deserialize;

use crate::{LogEvent, Stream};

/// Why a message is not an Akkeris log line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AkkerisError {
    /// Not JSON, or not the expected shape.
    #[error("not an akkeris log line: {0}")]
    Shape(String),
    /// The app or space is missing or cannot be an app key.
    #[error("akkeris log line names no valid app: {0:?}")]
    App(String),
    /// The time is not RFC 3339.
    #[error("akkeris log line has an invalid time {0:?}")]
    Time(String),
}

#[derive(Deserialize)]
struct AppLine<'a> {
    #[serde(borrow)]
    log: std::borrow::Cow<'a, str>,
    #[serde(default)]
    stream: Option<&'a str>,
    #[serde(default)]
    time: Option<&'a str>,
    kubernetes: Kubernetes<'a>,
}

#[derive(Deserialize)]
struct Kubernetes<'a> {
    #[serde(default)]
    pod_name: &'a str,
    container_name: &'a str,
}

#[derive(Deserialize)]
struct BuildLine<'a> {
    metadata: &'a str,
    #[serde(borrow)]
    message: std::borrow::Cow<'a, str>,
}

/// An app or space name as Akkeris writes them: lowercase letters, digits and (for spaces)
/// dashes.
fn name_ok(s: &str, dashes: bool) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || (dashes && c == b'-'))
}

/// One line without the newline fluentd keeps at its end.
fn trim_newline(s: &str) -> &str {
    s.strip_suffix('\n').map_or(s, |s| s.strip_suffix('\r').unwrap_or(s))
}

/// Reads a fluentd/Kubernetes JSON line from the topic of `space` as an event of source `app`
/// for the app `app-space`, with the process `type.instance`. Errors with
/// [`AkkerisError::Shape`] for bad JSON, [`AkkerisError::App`] when the container or space is
/// not a valid name, and [`AkkerisError::Time`] when `time` is not RFC 3339. One event per
/// chunk of a long line.
pub fn app_line(json: &[u8], space: &str) -> Result<Vec<LogEvent>, AkkerisError> {
    let line: AppLine<'_> = serde_json::from_slice(json).map_err(|e| AkkerisError::Shape(e.to_string()))?;
    let container = line.kubernetes.container_name;
    let (app, kind) = container.split_once("--").unwrap_or((container, "web"));
    if !name_ok(app, false) || !name_ok(kind, true) || !name_ok(space, true) {
        return Err(AkkerisError::App(format!("{container} in {space}")));
    }
    // A pod is named after its container (`api--worker-1562910588-x7k2p`); for other names,
    // Akkeris' own rule: drop `-type-` and `app-`.
    let pod = line.kubernetes.pod_name;
    let process = match pod.strip_prefix(container).and_then(|p| p.strip_prefix('-')) {
        Some(instance) => format!("{kind}.{instance}"),
        None => {
            let instance = pod.replacen(&format!("-{kind}-"), "", 1);
            format!("{kind}.{}", instance.strip_prefix(&format!("{app}-")).unwrap_or(&instance))
        }
    };
    let stream = match line.stream {
        Some("stderr") => Stream::Stderr,
        Some("stdout") => Stream::Stdout,
        _ => Stream::Platform,
    };
    let key = format!("{app}-{space}");
    let mut b = LogEvent::builder(&key, "app").process(&process).stream(stream);
    if let Some(t) = line.time {
        let micros = wharf_domain::timestamp::parse_micros(t).ok_or_else(|| AkkerisError::Time(t.to_owned()))?;
        b = b.time_micros(micros);
    }
    Ok(b.messages(trim_newline(&line.log).as_bytes()))
}

/// Reads a build-log JSON line as an event of source `akkeris/build`, with Docker `ARG` values
/// hidden. Errors with [`AkkerisError::Shape`] for bad JSON and [`AkkerisError::App`] when
/// `metadata` is not `app` or `app-space` of valid names. One event per chunk of a long line.
pub fn build_line(json: &[u8]) -> Result<Vec<LogEvent>, AkkerisError> {
    let line: BuildLine<'_> = serde_json::from_slice(json).map_err(|e| AkkerisError::Shape(e.to_string()))?;
    let (app, space) = line.metadata.split_once('-').unwrap_or((line.metadata, "default"));
    if !name_ok(app, false) || !name_ok(space, true) {
        return Err(AkkerisError::App(line.metadata.to_owned()));
    }
    let key = format!("{app}-{space}");
    let message = hide_build_args(trim_newline(&line.message));
    Ok(LogEvent::builder(&key, "akkeris/build").messages(message.as_bytes()))
}

/// `Step 3/9 : ARG TOKEN=secret` becomes `Step 3/9 : ARG TOKEN=...`: build arguments often
/// carry credentials, and build logs go to every drain of the app.
fn hide_build_args(message: &str) -> std::borrow::Cow<'_, str> {
    let Some(step) = message.find("Step ") else {
        return message.into();
    };
    let rest = &message[step + 5..];
    let Some((counts, after)) = rest.split_once(" : ARG ") else {
        return message.into();
    };
    let numbers = counts
        .split_once('/')
        .is_some_and(|(a, b)| [a, b].iter().all(|n| !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit())));
    let Some(eq) = after.find('=') else {
        return message.into();
    };
    let name = &after[..eq];
    if !numbers || name.is_empty() || !name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') {
        return message.into();
    }
    let keep = message.len() - after.len() + eq + 1;
    format!("{}...", &message[..keep]).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The only event a short line makes.
    fn one(mut events: Vec<LogEvent>) -> LogEvent {
        assert_eq!(events.len(), 1, "a short line is one event");
        events.remove(0)
    }

    fn check_app(json: &str, space: &str, want: Result<(&str, &str, &str, Stream), &str>) {
        match (app_line(json.as_bytes(), space).map(one), want) {
            (Ok(e), Ok((app, process, message, stream))) => {
                assert_eq!((e.app(), e.source(), e.process(), e.stream()), (app, "app", process, stream), "{json}");
                assert_eq!(e.message(), message.as_bytes(), "{json}");
            }
            (Err(e), Err(want)) => assert!(e.to_string().contains(want), "{json}: {e} should say {want}"),
            (got, want) => panic!("{json}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn app_lines() {
        let k = |container: &str, pod: &str, log: &str, stream: &str| {
            format!(
                r#"{{"log":{log:?},"stream":"{stream}","time":"2019-07-16T20:05:21.123456789Z","docker":{{}},"kubernetes":{{"namespace_name":"x","pod_name":"{pod}","container_name":"{container}","labels":{{"app":"a"}}}}}}"#
            )
        };
        check_app(
            &k("api", "api-1562910588-cg82f", "listening on 5000\n", "stdout"),
            "perf",
            Ok(("api-perf", "web.1562910588-cg82f", "listening on 5000", Stream::Stdout)),
        );
        check_app(
            &k("api--worker", "api--worker-1562910588-cg82f", "boom", "stderr"),
            "default",
            Ok(("api-default", "worker.1562910588-cg82f", "boom", Stream::Stderr)),
        );
        check_app(&k("Api", "p", "m", "stdout"), "perf", Err("no valid app"));
        check_app(&k("api", "p", "m", "stdout"), "Perf", Err("no valid app"));
        check_app(r#"{"log":"m","kubernetes":{}}"#, "s", Err("not an akkeris log line"));
        check_app(r#"{"log":"m","time":"noon","kubernetes":{"container_name":"a"}}"#, "s", Err("invalid time"));
        check_app("not json", "s", Err("not an akkeris log line"));
    }

    #[test]
    fn the_event_time_is_kept() {
        let e =
            one(app_line(br#"{"log":"m","time":"2019-07-16T20:05:21.5Z","kubernetes":{"container_name":"a"}}"#, "s")
                .unwrap());
        assert_eq!(wharf_domain::timestamp::format_micros(e.time_micros()), "2019-07-16T20:05:21.500000Z");
    }

    #[test]
    fn build_lines() {
        let e =
            one(build_line(br#"{"build":3,"job":"7","message":"Step 2/9 : RUN make\n","metadata":"api-perf"}"#)
                .unwrap());
        assert_eq!((e.app(), e.source(), e.message()), ("api-perf", "akkeris/build", &b"Step 2/9 : RUN make"[..]));
        let e = one(build_line(br#"{"message":"Step 3/9 : ARG TOKEN=s3cret","metadata":"api"}"#).unwrap());
        assert_eq!((e.app(), e.message()), ("api-default", &b"Step 3/9 : ARG TOKEN=..."[..]));
        for bad in [r#"{"message":"m","metadata":""}"#, r#"{"message":"m"}"#, r#"{"message":"m","metadata":"A-b"}"#] {
            assert!(build_line(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn long_app_and_build_lines_become_chunks_in_order() {
        let long = "\u{e9}".repeat(15_000); // 30,000 bytes
        let app = format!(
            r#"{{"log":"{long}\n","stream":"stdout","kubernetes":{{"pod_name":"a-1-x","container_name":"a"}}}}"#
        );
        let build = format!(r#"{{"message":"{long}","metadata":"a-s"}}"#);
        for events in [app_line(app.as_bytes(), "s").unwrap(), build_line(build.as_bytes()).unwrap()] {
            assert_eq!(events.len(), 3);
            let parts: Vec<&str> = events.iter().map(|e| std::str::from_utf8(e.message()).unwrap()).collect();
            assert!(parts.iter().all(|p| p.len() <= crate::event::MAX_CHUNK));
            assert_eq!(parts.concat(), long);
        }
    }

    #[test]
    fn build_arguments_are_hidden() {
        for (given, want) in [
            ("Step 3/9 : ARG TOKEN=s3cret", "Step 3/9 : ARG TOKEN=..."),
            (" ---> Step 10/12 : ARG A_1=x y z", " ---> Step 10/12 : ARG A_1=..."),
            ("Step 3/9 : ARG TOKEN", "Step 3/9 : ARG TOKEN"),
            ("Step x/9 : ARG TOKEN=v", "Step x/9 : ARG TOKEN=v"),
            ("Step 3/9 : RUN echo a=b", "Step 3/9 : RUN echo a=b"),
            ("no step", "no step"),
        ] {
            assert_eq!(hide_build_args(given), want);
        }
    }
}
