//! Akkeris' JSON inputs (fluentd/Kubernetes app lines and build lines): parsing never panics,
//! whatever is accepted is a valid event for an app key `app-space`, and it survives the bus
//! encoding unchanged, every chunk of a long line alike.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf_bus::LogEvent;
use wharf_bus::akkeris::{app_line, build_line};

fn check(e: &LogEvent) {
    let (app, space) = e.app().split_once('-').expect("an app key has a dash");
    assert!(!app.is_empty() && !space.is_empty(), "{e:?}");
    assert!(app.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()), "{e:?}");
    let again = LogEvent::decode(e.encoded().clone()).expect("an accepted line encodes validly");
    assert_eq!(&again, e);
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the space name's length, to vary it with the input.
    let Some((&n, json)) = data.split_first() else { return };
    let space = ["default", "perf-stg", "", "Bad", "a"][usize::from(n) % 5];
    // A long line comes back as several events (chunks, in order); each must hold on its own.
    if let Ok(events) = app_line(json, space) {
        assert!(!space.is_empty() && space != "Bad");
        assert!(!events.is_empty(), "an accepted line gives at least one event");
        events.iter().for_each(check);
    }
    if let Ok(events) = build_line(json) {
        assert!(!events.is_empty(), "an accepted line gives at least one event");
        for e in &events {
            assert_eq!(e.source(), "akkeris/build");
            check(e);
        }
    }
});
