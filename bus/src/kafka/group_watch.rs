//! The group watch: a member of the logshuttle's consumer group that notices partitions nobody
//! consumes, and leaves and joins the group again so that the coordinator assigns them.
//!
//! Kafka's group protocol (KIP-62, the classic `JoinGroup`/`SyncGroup`/`Heartbeat` protocol)
//! makes the coordinator rebalance every member when one misses its session timeout. tansu
//! 0.6.0 does not: the member whose heartbeat notices the expiry is told to rejoin, but the group
//! keeps its generation, so that member gets its old partitions back, every other member is never
//! told, and the dead member's partitions stay unassigned for good (benches/RESULTS.md, "Fleet
//! drill", finding 1, with the broker's code). A clean `LeaveGroup` does start a new generation
//! on both, so leaving and joining again is the remedy. On a coordinator that rebalances as Kafka
//! does, the watch never acts: a departure always reaches this member as a rebalance first.
//!
//! Every [`WATCH_EVERY`] the watch thread describes the group (`DescribeGroups`) and feeds what
//! it saw to [`Watch::observe`], which decides; the poll thread does the leave and the join, so
//! that the rebalance callbacks run where they always do.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};

use super::ConsumeContext;

/// How often the group is described.
pub(super) const WATCH_EVERY: Duration = Duration::from_secs(2);
/// How long a sign of unconsumed partitions must last, with no rebalance reaching this member,
/// before it leaves and joins again: the group's session timeout, so that a coordinator that
/// rebalances on its own (Kafka) always gets there first.
pub(super) const GRACE: Duration = Duration::from_secs(6);
/// How long one `DescribeGroups` or metadata request may take.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// What the consumer's rebalance callback tells the watch, and what the watch asks of the poll
/// thread.
#[derive(Debug, Default)]
pub(super) struct GroupSignals {
    /// Rebalance callbacks run so far (revocations and assignments).
    pub(super) rebalances: AtomicU64,
    /// Partitions assigned to this member now.
    pub(super) assigned: AtomicUsize,
    /// Set by the watch: the poll thread is to leave the group and join it again.
    pub(super) rejoin: AtomicBool,
}

/// One look at the group, as the watch thread saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Seen {
    /// The group's member ids, when the coordinator reports the group as stable (`Stable`);
    /// `None` while it forms, or when it could not be described.
    pub(super) members: Option<BTreeSet<String>>,
    /// [`GroupSignals::rebalances`] at the time.
    pub(super) rebalances: u64,
    /// [`GroupSignals::assigned`] at the time.
    pub(super) assigned: usize,
    /// Partitions of the subscribed topics, as the broker's metadata says (asked only when
    /// this member is alone in the group).
    pub(super) partitions: usize,
}

/// Why the watch asks to leave and join again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sign {
    /// A member left the group and no rebalance reached this member.
    Departed,
    /// This member is alone in the group and holds fewer partitions than there are, whether it
    /// had an assignment callback or never got one.
    AloneShort,
    /// The group is stable without this member: its join never completed, as when the
    /// coordinator still lists members of processes that are gone (FE23 #7: a lone logshuttle
    /// restarted into such a group idled with no partitions).
    Absent,
}

/// The watch's decision rule; kept apart from the broker calls so that it can be tested with
/// a table of observations.
#[derive(Debug)]
pub(super) struct Watch {
    /// How this member's ids start: `{client.id}-`. Kafka and tansu both name a member
    /// `{client.id}-{uuid}`, and a member that joins again gets a new uuid.
    mine: String,
    /// The members at the last stable look, and the rebalance count then.
    last: Option<(BTreeSet<String>, u64)>,
    /// The first sign seen since the last rebalance reached this member, and when.
    pending: Option<(Sign, Instant)>,
}

impl Watch {
    /// A watch for the member whose `client.id` is `client_id`.
    pub(super) fn new(client_id: &str) -> Watch {
        Watch { mine: format!("{client_id}-"), last: None, pending: None }
    }

    /// Whether `member` is this member (now, or before it joined again).
    fn is_mine(&self, member: &str) -> bool {
        member.starts_with(&self.mine)
    }

    /// Takes one look at `now`; returns the sign to act on once it has lasted [`GRACE`] with no
    /// rebalance reaching this member, and forgets it then (the leave and join that follow are a
    /// rebalance of their own).
    pub(super) fn observe(&mut self, seen: &Seen, now: Instant) -> Option<Sign> {
        let Some(members) = &seen.members else { return None };
        if self.last.as_ref().is_some_and(|(_, rebalances)| *rebalances != seen.rebalances) {
            // A rebalance reached this member: whatever was pending has been dealt with by the
            // coordinator (or it shows again from this look on).
            self.pending = None;
        } else if let Some((before, _)) = &self.last {
            let departed = before.iter().any(|m| !members.contains(m) && !self.is_mine(m));
            if departed && self.pending.is_none() {
                self.pending = Some((Sign::Departed, now));
            }
        }
        // A stable group has finished its joins: a member listed alone in it has had its
        // assignment handed out, so holding fewer partitions than there are is a sign even when
        // no assignment callback ever came; and a member not listed at all is outside it.
        let alone = members.len() == 1 && members.iter().all(|m| self.is_mine(m));
        let absent = !members.iter().any(|m| self.is_mine(m));
        let short = alone && seen.assigned < seen.partitions;
        // Those two are states, not events: gone, their sign is too.
        match self.pending {
            Some((Sign::AloneShort, _)) if !short => self.pending = None,
            Some((Sign::Absent, _)) if !absent => self.pending = None,
            _ => {}
        }
        if short && self.pending.is_none() {
            self.pending = Some((Sign::AloneShort, now));
        }
        if absent && self.pending.is_none() {
            self.pending = Some((Sign::Absent, now));
        }
        self.last = Some((members.clone(), seen.rebalances));
        match self.pending {
            Some((sign, since)) if now.duration_since(since) >= GRACE => {
                self.pending = None;
                self.last = None;
                Some(sign)
            }
            _ => None,
        }
    }
}

/// Runs the watch until `stop`: describes the group every [`WATCH_EVERY`] and sets
/// [`GroupSignals::rejoin`] when [`Watch::observe`] says so. `client_id` is this member's
/// `client.id`; Kafka and tansu both name a member `{client.id}-{uuid}`.
pub(super) fn run(
    consumer: &BaseConsumer<ConsumeContext>,
    group: &str,
    client_id: &str,
    topics: &[String],
    stop: &AtomicBool,
) {
    let signals: &Arc<GroupSignals> = &consumer.context().signals;
    let mut watch = Watch::new(client_id);
    while !stop.load(Ordering::Relaxed) {
        let start = Instant::now();
        let rebalances = signals.rebalances.load(Ordering::Relaxed);
        let assigned = signals.assigned.load(Ordering::Relaxed);
        let members = match consumer.fetch_group_list(Some(group), ASK_TIMEOUT) {
            Ok(list) => list
                .groups()
                .iter()
                .find(|g| g.name() == group && g.state() == "Stable")
                .map(|g| g.members().iter().map(|m| m.id().to_owned()).collect::<BTreeSet<_>>()),
            Err(e) => {
                tracing::debug!(error = %e, "cannot describe the consumer group");
                None
            }
        };
        let alone = members.as_ref().is_some_and(|m| m.len() == 1 && m.iter().all(|m| watch.is_mine(m)));
        let partitions = if alone { partition_count(consumer, topics) } else { 0 };
        let seen = Seen { members, rebalances, assigned, partitions };
        if let Some(sign) = watch.observe(&seen, start) {
            tracing::warn!(
                ?sign,
                members = %seen.members.iter().flatten().cloned().collect::<Vec<_>>().join(", "),
                assigned,
                partitions,
                "partitions of the consumer group may be consumed by no member (the coordinator did not rebalance); leaving and joining again"
            );
            signals.rejoin.store(true, Ordering::Relaxed);
        }
        // Looked at every 100 ms, so that a source being dropped does not wait.
        while !stop.load(Ordering::Relaxed) && start.elapsed() < WATCH_EVERY {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Partitions of `topics` that the broker knows (a topic it does not know counts none).
fn partition_count(consumer: &BaseConsumer<ConsumeContext>, topics: &[String]) -> usize {
    topics
        .iter()
        .filter_map(|t| consumer.fetch_metadata(Some(t), ASK_TIMEOUT).ok())
        .flat_map(|m| {
            m.topics().iter().filter(|t| t.error().is_none()).map(|t| t.partitions().len()).collect::<Vec<_>>()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(names: &[&str]) -> Option<BTreeSet<String>> {
        Some(names.iter().map(|s| (*s).to_owned()).collect())
    }

    /// A look at the group: `members` (`["-"]`: not stable), the rebalance count and the
    /// partitions held of 8. This member is `a-…`.
    fn seen(members: &[&str], rebalances: u64, assigned: usize) -> Seen {
        let members = if members == ["-"] { None } else { ids(members) };
        Seen { members, rebalances, assigned, partitions: 8 }
    }

    /// Feeds `looks` (seconds since the start, the look) to a new watch; returns the sign
    /// given at each look.
    fn check(what: &str, looks: &[(u64, Seen)], expected: &[Option<Sign>]) {
        let start = Instant::now();
        let mut watch = Watch::new("a");
        let got: Vec<Option<Sign>> =
            looks.iter().map(|(s, seen)| watch.observe(seen, start + Duration::from_secs(*s))).collect();
        assert_eq!(got, expected, "{what}");
    }

    #[test]
    fn the_watch_acts_only_on_partitions_no_rebalance_gave_out() {
        use Sign::*;
        check(
            "a steady group: nothing",
            &[
                (0, seen(&["a-1", "b", "c"], 2, 3)),
                (2, seen(&["a-1", "b", "c"], 2, 3)),
                (8, seen(&["a-1", "b", "c"], 2, 3)),
            ],
            &[None, None, None],
        );
        check(
            "c expired and no rebalance reached a (tansu): a acts after the grace",
            &[
                (0, seen(&["a-1", "b", "c"], 2, 3)),
                (2, seen(&["a-1", "b"], 2, 3)),
                (4, seen(&["a-1", "b"], 2, 3)),
                (8, seen(&["a-1", "b"], 2, 3)),
                (10, seen(&["a-1", "b"], 2, 3)),
            ],
            &[None, None, None, Some(Departed), None],
        );
        check(
            "c expired and the coordinator rebalanced a (Kafka): nothing",
            &[
                (0, seen(&["a-1", "b", "c"], 2, 3)),
                (2, seen(&["a-1", "b"], 2, 3)),
                (4, seen(&["a-1", "b"], 4, 4)),
                (10, seen(&["a-1", "b"], 4, 4)),
            ],
            &[None, None, None, None],
        );
        check(
            "the group forming in between does not hide a departure",
            &[
                (0, seen(&["a-1", "b", "c"], 2, 3)),
                (2, seen(&["-"], 2, 3)),
                (4, seen(&["a-1", "b"], 2, 3)),
                (10, seen(&["a-1", "b"], 2, 3)),
            ],
            &[None, None, None, Some(Departed)],
        );
        check(
            "a's own old id is not a departure (it left and joined again)",
            &[(0, seen(&["a-0", "b"], 2, 3)), (2, seen(&["a-1", "b"], 2, 3)), (10, seen(&["a-1", "b"], 2, 3))],
            &[None, None, None],
        );
        check(
            "alone with its old partitions (tansu gave them back): a acts after the grace",
            &[
                (0, seen(&["a-1"], 4, 4)),
                (2, seen(&["a-1"], 4, 4)),
                (6, seen(&["a-1"], 4, 4)),
                (8, seen(&["a-1"], 6, 8)),
            ],
            &[None, None, Some(AloneShort), None],
        );
        check(
            "alone with every partition: nothing",
            &[(0, seen(&["a-1"], 2, 8)), (10, seen(&["a-1"], 2, 8))],
            &[None, None],
        );
        check(
            "alone in the stable group and no assignment callback came (FE23 #7): a acts after the grace",
            &[
                (0, seen(&["a-1"], 0, 0)),
                (2, seen(&["a-1"], 0, 0)),
                (6, seen(&["a-1"], 0, 0)),
                (8, seen(&["a-1"], 2, 8)),
            ],
            &[None, None, Some(AloneShort), None],
        );
        check(
            "still joining (the group forming, not stable): nothing",
            &[(0, seen(&["-"], 0, 0)), (10, seen(&["-"], 0, 0))],
            &[None, None],
        );
        check(
            "the stable group lists only members that are gone, not a (FE23 #7): a acts after the grace",
            &[(0, seen(&["b", "c"], 0, 0)), (2, seen(&["b", "c"], 0, 0)), (6, seen(&["b", "c"], 0, 0))],
            &[None, None, Some(Absent)],
        );
        check(
            "a joins a stable group: the rebalance lists it within the grace, nothing",
            &[
                (0, seen(&["b", "c"], 0, 0)),
                (2, seen(&["-"], 0, 0)),
                (4, seen(&["a-1", "b", "c"], 2, 3)),
                (10, seen(&["a-1", "b", "c"], 2, 3)),
            ],
            &[None, None, None, None],
        );
        check(
            "a joins a stable group and the rebalance's callback comes first: nothing",
            &[
                (0, seen(&["b", "c"], 0, 0)),
                (4, seen(&["b", "c"], 2, 3)),
                (6, seen(&["a-1", "b", "c"], 2, 3)),
                (12, seen(&["a-1", "b", "c"], 2, 3)),
            ],
            &[None, None, None, None],
        );
        check(
            "a member joins: a rebalance follows, nothing",
            &[(0, seen(&["a-1", "b"], 2, 4)), (2, seen(&["a-1", "b", "c"], 2, 4)), (4, seen(&["a-1", "b", "c"], 4, 3))],
            &[None, None, None],
        );
    }
}
