//! The logshuttle's Prometheus metrics: per drain, lines in and out of its buffer as paired
//! pushed/popped counts, lines sent, dropped (by reason), retries, errors and the last error;
//! and a drain's catch-up from Kafka (lines read back, spells behind, partitions behind now,
//! cursor saves by result);
//! and, with Kafka, the log sessions' readers open now and the partitions this member owns.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::DrainTable;
use crate::drain::Drain;
use crate::tail::Readers;

/// Counters of the consumer side.
#[derive(Debug, Default)]
pub struct ShuttleStats {
    /// Events taken off the bus.
    pub received: AtomicU64,
    /// The bus's own counters.
    pub source: std::sync::Arc<wharf_bus::SourceStats>,
}

/// A per-drain counter: its name, its help text, and how to read it.
type Counter = (&'static str, &'static str, fn(&Drain) -> u64);

/// Escapes a label value: backslash, double quote and newline, as the text format requires.
fn escape(value: &str) -> String {
    value.replace('\\', r"\\").replace('"', "\\\"").replace('\n', r"\n")
}

fn family(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Renders the metrics of every running drain.
pub(crate) fn render(out: &mut String, table: &DrainTable, shuttle: &ShuttleStats, readers: Option<&Readers>) {
    family(out, "wharf_logshuttle_events_received_total", "Log events taken off the bus.", "counter");
    let _ = writeln!(out, "wharf_logshuttle_events_received_total {}", shuttle.received.load(Relaxed));
    let name = "wharf_logshuttle_events_undecodable_total";
    family(out, name, "Messages on the bus skipped because they are not log events.", "counter");
    let _ = writeln!(out, "{name} {}", shuttle.source.undecodable.load(Relaxed));
    if let Some(readers) = readers {
        let name = "wharf_logshuttle_session_readers";
        family(out, name, "Log sessions reading the Kafka topic now (each a client of its own).", "gauge");
        let _ = writeln!(out, "{name} {}", readers.open_count());
    }
    let name = "wharf_logshuttle_positions_reset_total";
    family(
        out,
        name,
        "Committed Kafka offsets found outside their partition (topic created again, or retention) and reset to its oldest kept message.",
        "counter",
    );
    let _ = writeln!(out, "{name} {}", shuttle.source.positions_reset.load(Relaxed));
    let name = "wharf_logshuttle_commits_failed_total";
    family(out, name, "Commits of the group's Kafka offsets the broker did not take; each is made again.", "counter");
    let _ = writeln!(out, "{name} {}", shuttle.source.commits_failed.load(Relaxed));
    let name = "wharf_logshuttle_consumer_lag";
    family(out, name, "Kafka messages after the committed offset: not yet delivered to every drain.", "gauge");
    for (topic, partition, lag) in shuttle.source.lag.lock().expect("lag lock").iter() {
        let _ = writeln!(out, "{name}{{topic=\"{}\",partition=\"{partition}\"}} {lag}", escape(topic));
    }
    // Which partitions this member owns (Kafka only), so that an operator sees from every
    // member's /metrics that each partition has exactly one owner (docs/fleet.md).
    if let Some(owned) = shuttle.source.assigned.lock().expect("assigned lock").as_ref() {
        let name = "wharf_logshuttle_partitions_assigned";
        family(out, name, "Kafka partitions this consumer-group member owns now.", "gauge");
        let _ = writeln!(out, "{name} {}", owned.len());
        let name = "wharf_logshuttle_partition_assigned";
        family(out, name, "1 for each Kafka partition this consumer-group member owns now.", "gauge");
        for (topic, partition) in owned {
            let _ = writeln!(out, "{name}{{topic=\"{}\",partition=\"{partition}\"}} 1", escape(topic));
        }
    }
    let labels: Vec<String> =
        table.all.iter().map(|d| format!("drain=\"{}\",owner=\"{}\"", d.id, escape(&d.label))).collect();
    let counters: [Counter; 9] = [
        ("wharf_drain_lines_pushed_total", "Lines given to a drain's buffer.", |d| d.buffer.stats.pushed.load(Relaxed)),
        ("wharf_drain_lines_popped_total", "Lines taken from a drain's buffer for delivery.", |d| {
            d.buffer.stats.popped.load(Relaxed)
        }),
        ("wharf_drain_lines_sent_total", "Lines a drain's receiver took.", |d| d.stats.sent.load(Relaxed)),
        ("wharf_drain_retries_total", "Batches sent again after a failed attempt.", |d| d.stats.retried.load(Relaxed)),
        ("wharf_drain_errors_total", "Failed connections and deliveries.", |d| d.stats.errors.load(Relaxed)),
        ("wharf_drain_destinations_refused_total", "Connections the outbound policy refused.", |d| {
            d.stats.destination_refused.load(Relaxed)
        }),
        ("wharf_drain_messages_truncated_total", "Messages cut to fit a UDP datagram.", |d| {
            d.stats.truncated.load(Relaxed)
        }),
        ("wharf_drain_lines_replayed_total", "Lines a drain behind its budget read back from Kafka.", |d| {
            d.buffer.stats.replayed.load(Relaxed)
        }),
        ("wharf_drain_fell_behind_total", "Times a drain went past its budget and caught up from Kafka.", |d| {
            d.buffer.stats.fell_behind.load(Relaxed)
        }),
    ];
    for (name, help, value) in counters {
        family(out, name, help, "counter");
        for (d, l) in table.all.iter().zip(&labels) {
            let _ = writeln!(out, "{name}{{{l}}} {}", value(d));
        }
    }
    let name = "wharf_drain_lines_dropped_total";
    family(out, name, "Lines dropped: the buffer overflowed, or the receiver refused them.", "counter");
    for (d, l) in table.all.iter().zip(&labels) {
        let _ = writeln!(out, "{name}{{{l},reason=\"overflow\"}} {}", d.buffer.stats.dropped.load(Relaxed));
        let _ = writeln!(out, "{name}{{{l},reason=\"refused\"}} {}", d.stats.rejected.load(Relaxed));
    }
    let name = "wharf_drain_cursor_saves_total";
    family(
        out,
        name,
        "Saves of a drain's catch-up cursor in Kafka, by result: saved, or failed (a restart repeats more).",
        "counter",
    );
    for (d, l) in table.all.iter().zip(&labels) {
        let _ = writeln!(out, "{name}{{{l},result=\"saved\"}} {}", d.stats.cursor_saves.load(Relaxed));
        let _ = writeln!(out, "{name}{{{l},result=\"failed\"}} {}", d.stats.cursor_save_failures.load(Relaxed));
    }
    let name = "wharf_drain_partitions_behind";
    family(out, name, "Partitions in which a drain is catching up from Kafka.", "gauge");
    for (d, l) in table.all.iter().zip(&labels) {
        let _ = writeln!(out, "{name}{{{l}}} {}", d.buffer.behind_count());
    }
    family(out, "wharf_drain_last_error_info", "The last error of a drain that has had one.", "gauge");
    for (d, l) in table.all.iter().zip(&labels) {
        if let Some(e) = d.stats.last_error.lock().expect("last error lock").as_deref() {
            let _ = writeln!(out, "wharf_drain_last_error_info{{{l},error=\"{}\"}} 1", escape(e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), r#"a\"b\\c\nd"#);
    }
}
