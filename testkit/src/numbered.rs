//! Numbered lines through the log bus: post them with `POST /log-events`, wait for them at a
//! syslog receiver, and check that every one came with first arrivals in order. A line may come
//! twice after a crash or a rebalance (the logshuttle delivers at least once); it may never be
//! missing, and no line may first arrive before an older one of its app.

use std::time::Duration;

use serde_json::{Value, json};

use crate::client::Api;
use crate::rfc5424::{line_numbers, numbered_line};
use crate::syslog::SyslogReceiver;

/// Puts lines `range` of `app` on the bus ([`numbered_line`]s of `size` bytes), 500 to a
/// request, through `api` (a control API with the admin token); panics unless each is accepted.
pub async fn post(api: &Api, app: &str, range: std::ops::Range<usize>, size: usize) {
    let all: Vec<usize> = range.collect();
    for chunk in all.chunks(500) {
        let events: Vec<Value> = chunk
            .iter()
            .map(|&i| json!({"app": app, "source": "akkeris/build", "process": "build.1", "message": numbered_line(i, size)}))
            .collect();
        let out = api.expect("POST", "/log-events", Value::Array(events), 202).await;
        assert_eq!(out["accepted"], chunk.len());
    }
}

/// Waits up to `wait` until `receiver` holds every one of lines `0..n` (repeats allowed);
/// returns the line numbers in arrival order. `what` names the wait in the panic.
pub async fn all_lines(receiver: &SyslogReceiver, n: usize, wait: Duration, what: &str) -> Vec<usize> {
    crate::eventually(wait, what, || async {
        let got = line_numbers(&receiver.messages());
        let mut unique = got.clone();
        unique.sort_unstable();
        unique.dedup();
        (unique.len() >= n).then_some(got)
    })
    .await
}

/// Checks that `got` (line numbers in arrival order) holds each of `0..n`, that first arrivals
/// come in order, and that nothing else came; returns how many came again.
pub fn check_all_in_order(what: &str, got: &[usize], n: usize) -> usize {
    let mut seen = vec![false; n];
    let mut firsts = Vec::with_capacity(n);
    for &i in got {
        assert!(i < n, "{what}: line {i} was never sent");
        if !std::mem::replace(&mut seen[i], true) {
            firsts.push(i);
        }
    }
    assert_eq!(firsts, (0..n).collect::<Vec<_>>(), "{what}: every line, first arrivals in order");
    got.len() - n
}
