//! Followed outputs: the lines of something that runs once and is read through a URL of its
//! own, Heroku's `output_stream_url`: a build's (`builds.rs`), and a release's, which streams
//! its release phase (run by the local supervisor, `release_phase`).
//!
//! One piece serves both. An output is opened under the id of what it belongs to (the build's
//! or the release's: 122 random bits that only holders of the admin token see, the capability
//! its URL carries, as Heroku's URL is); lines are pushed to it while it runs, and followers
//! (`http/outputs.rs`) stream them as they come; once it ends, its lines are stored in its
//! record, and the URL answers them from there (`output_states.rs` says what the URL answers in
//! every state: not started yet, running, ended, never ran, cut short).
//!
//! While it runs, its lines so far are stored in its record too, every [`STORE_EVERY`] when
//! they changed ([`ControlPlane::open_output`]'s task, through the same record as its end), so
//! that a `kill -9` of Wharf loses at most the lines of its last seconds (they are in the app's
//! log stream): a build's record keeps its lines (the next start adds why it failed), and a
//! release phase's ends with the line that tells the next start a kill cut it ([`kill_line`]),
//! which its end, or a graceful stop's cut, replaces. The cost is bounded: no store per line,
//! none while nothing changed, one change of one record per output every [`STORE_EVERY`] at
//! most, and none once the output ended (its end is stored last: the task stops first).
//!
//! What an output holds is bounded, while it runs and in its record: a line keeps its first
//! [`MAX_OUTPUT_LINE_BYTES`] bytes and says how many were cut (`… [N bytes cut]`); an output
//! keeps its first half of [`MAX_OUTPUT_LINES`] lines and [`MAX_OUTPUT_BYTES`] bytes and its
//! newest other half, with one line between saying how many were left out (all of them are in
//! the app's log stream), so a phase that prints without end, or one huge line, does not grow
//! Wharf and its end (a migration's error, the line saying how it ended) is kept. Followers get
//! every line as it comes ([`Output::since`]); one that falls more than the newest half behind
//! is told how many it missed. Each app keeps the outputs of its newest
//! [`KEPT_OUTPUTS`] releases and of its newest [`KEPT_OUTPUTS`] builds; an older one's record
//! keeps one line saying so ([`dropped_outputs`]), so all outputs together hold at most
//! `2 × KEPT_OUTPUTS × MAX_OUTPUT_BYTES` per app.
//!
//! Wharf's graceful stop cuts every running output ([`ControlPlane::cut_outputs`]): its last
//! line says that Wharf stopped while it ran and what becomes of it, its followers get that line
//! and the end, and its record keeps its lines so far with that line; whatever it pushes
//! afterwards is dropped (what it belongs to runs again, or fails, at the next start).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use uuid::Uuid;

use super::engine::ControlPlane;
use crate::model::{BuildStatus, Change, Model, Object, ReleaseStatus};

/// Most lines an output holds while it runs, and keeps in its record once it ended.
pub const MAX_OUTPUT_LINES: usize = 1000;

/// Most bytes of one output line kept; the rest is cut, and the line says how many bytes were.
pub const MAX_OUTPUT_LINE_BYTES: usize = 1024;

/// Most bytes of lines an output holds while it runs and keeps in its record (half for its
/// first lines, half for its newest), besides the line saying how many were left out.
pub const MAX_OUTPUT_BYTES: usize = 128 * 1024;

/// How often a running output's lines are stored in its record when they changed (see the
/// module comment): what a `kill -9` of Wharf can lose of it.
pub(crate) const STORE_EVERY: Duration = Duration::from_secs(2);

/// How many of an app's newest releases, and of its newest builds, keep their output.
pub const KEPT_OUTPUTS: usize = 10;

/// How the line that ends an output cut by Wharf's stop starts ([`ControlPlane::cut_outputs`]).
pub(crate) const CUT_PREFIX: &str = " !     Wharf stopped while";

/// The line a running release phase's record ends with (version `version`): its end, or a
/// graceful stop's cut, replaces it, so a start that finds it last knows a kill cut the phase
/// (FE43 #3). The lines before it were stored at most [`STORE_EVERY`] before the kill.
pub(crate) fn kill_line(version: u32) -> String {
    format!(
        "{CUT_PREFIX} v{version}'s release phase ran (it was killed: what it printed in its last {} seconds may be \
         missing here; the app's log stream had every line)",
        STORE_EVERY.as_secs()
    )
}

/// The line an output past [`KEPT_OUTPUTS`] keeps in its record.
pub(crate) fn dropped_line() -> String {
    format!(
        " !     This output is no longer kept: Wharf keeps the outputs of each app's newest {KEPT_OUTPUTS} releases \
         and {KEPT_OUTPUTS} builds (all its lines went to the app's log stream)"
    )
}

/// An output as it grows: its first lines, its newest, and whether it ended. Line `n` (from 0,
/// in the order pushed) is `lines[n]` while `n < lines.len()`, then, past the `left_out` lines
/// no longer held, in `tail`; a follower keeps the number of the next line it wants and reads
/// from there ([`Output::since`]), so it gets every line as it comes while it keeps up.
#[derive(Debug, Clone, Default)]
pub struct Output {
    /// Its first lines (at most the first half of the caps), oldest first.
    pub lines: Vec<String>,
    /// Whether it ended (no more lines will come).
    pub done: bool,
    /// Lines pushed after `lines` and no longer held (they are in the app's log stream).
    pub left_out: u64,
    /// The newest lines after `lines` and the ones left out, at most the other half of the caps.
    pub tail: std::collections::VecDeque<String>,
    /// Bytes of `lines` (while it runs) and of `tail`.
    head_bytes: usize,
    tail_bytes: usize,
    /// Whether Wharf's stop cut it ([`ControlPlane::cut_outputs`]): its record has its lines.
    cut: bool,
    /// Whether its end is being stored: the task that stores it while it runs stores no more.
    sealed: bool,
}

impl Output {
    /// The lines from line `from` on (see [`Output`]), with one saying how many were left out
    /// first when some of them are no longer held, and the number of the next line.
    pub fn since(&self, from: u64) -> (Vec<String>, u64) {
        let head = self.lines.len() as u64;
        let mut out: Vec<String> = self.lines.get(from.min(head) as usize..).unwrap_or_default().to_vec();
        let tail_start = head + self.left_out;
        let from = from.max(head);
        if from < tail_start {
            out.push(format!(" !     {} lines left out here are in the app's log stream only", tail_start - from));
        }
        out.extend(self.tail.iter().skip(from.saturating_sub(tail_start) as usize).cloned());
        (out, tail_start + self.tail.len() as u64)
    }
}

/// `line`, or its first [`MAX_OUTPUT_LINE_BYTES`] bytes (at a character's boundary) and how many
/// bytes were cut.
fn capped(line: String) -> String {
    if line.len() <= MAX_OUTPUT_LINE_BYTES {
        return line;
    }
    let mut end = MAX_OUTPUT_LINE_BYTES;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [{} bytes cut]", &line[..end], line.len() - end)
}

/// The writing end of an output (see the module comment), for the code that runs what it
/// belongs to. Dropping it does not end the output: [`ControlPlane::close_release_output`] does.
#[derive(Debug, Clone)]
pub struct OutputWriter {
    /// The build's or the release's id.
    pub(super) id: Uuid,
    pub(super) tx: watch::Sender<Output>,
}

impl OutputWriter {
    /// Adds a line (cut to [`MAX_OUTPUT_LINE_BYTES`]), which followers get at once: held among
    /// the first lines while they are under half the caps, else among the newest other half
    /// (the oldest of those is then left out, counted). A line pushed once the output ended
    /// (Wharf's stop cut it) is dropped.
    pub fn push(&self, line: String) {
        let line = capped(line);
        self.tx.send_if_modified(|o| {
            if o.done {
                return false;
            }
            let n = line.len();
            if o.tail.is_empty()
                && o.left_out == 0
                && o.lines.len() < MAX_OUTPUT_LINES / 2
                && o.head_bytes + n <= MAX_OUTPUT_BYTES / 2
            {
                o.head_bytes += n;
                o.lines.push(line);
                return true;
            }
            o.tail_bytes += n;
            o.tail.push_back(line);
            while o.tail.len() > MAX_OUTPUT_LINES / 2 || o.tail_bytes > MAX_OUTPUT_BYTES / 2 {
                let gone = o.tail.pop_front().expect("a tail over its caps has lines");
                o.tail_bytes -= gone.len();
                o.left_out += 1;
            }
            true
        });
    }

    /// The lines held: the first half, a line saying how many were left out (if any), then the
    /// newest; what the record keeps.
    pub(super) fn lines(&self) -> Vec<String> {
        self.tx.borrow().since(0).0
    }

    /// Ends the output for its followers: they get the rest of its lines and the end.
    pub(super) fn end(&self) {
        self.tx.send_modify(|o| o.done = true);
    }

    /// Ends the output with `line` (Wharf stops): its followers get it, and nothing pushed
    /// afterwards is kept.
    fn cut(&self, line: String) {
        self.push(line);
        self.tx.send_modify(|o| o.cut = true);
        self.end();
    }

    /// Whether Wharf's stop cut the output.
    fn is_cut(&self) -> bool {
        self.tx.borrow().cut
    }

    /// Stops the stores of the output while it runs (its end is stored next, and no store of
    /// its lines so far may follow it); followers are not woken: nothing they read changed.
    fn seal(&self) {
        self.tx.send_if_modified(|o| {
            o.sealed = true;
            false
        });
    }
}

/// The changes that replace, by [`dropped_line`], the stored outputs of `app_id`'s releases and
/// builds past its newest [`KEPT_OUTPUTS`] of each, but `except` (the record being stored) and
/// any still pending.
pub(crate) fn dropped_outputs(m: &Model, app_id: Uuid, except: Uuid) -> Vec<Change> {
    let dropped = dropped_line();
    let keeps = |output: &[String]| output.is_empty() || output == std::slice::from_ref(&dropped);
    let releases = m.releases_of(app_id);
    let old_releases = releases.iter().rev().skip(KEPT_OUTPUTS);
    let mut changes: Vec<Change> = old_releases
        .filter(|r| r.id != except && r.status != ReleaseStatus::Pending && !keeps(&r.output))
        .map(|r| Change::Put(Object::Release(crate::model::Release { output: vec![dropped.clone()], ..(*r).clone() })))
        .collect();
    let builds = m.builds_of(app_id);
    let old_builds = builds.iter().rev().skip(KEPT_OUTPUTS);
    changes.extend(
        old_builds
            .filter(|b| b.id != except && b.status != BuildStatus::Pending && !keeps(&b.output))
            .map(|b| Change::Put(Object::Build(crate::model::Build { output: vec![dropped.clone()], ..(*b).clone() }))),
    );
    changes
}

/// The changes that store `put` (release or build `id` with its output) and drop what its app's
/// older records keep past [`KEPT_OUTPUTS`].
fn output_changes(m: &Model, id: Uuid, put: Object) -> Vec<Change> {
    let app_id = match &put {
        Object::Release(r) => r.app_id,
        Object::Build(b) => b.app_id,
        _ => return vec![],
    };
    let mut changes = vec![Change::Put(put)];
    changes.extend(dropped_outputs(m, app_id, id));
    changes
}

impl ControlPlane {
    /// Opens the output of the build or release `id`, starting with `lines` (an output followed
    /// again after a restart, whose record holds them already), and returns its writing end;
    /// followers find it by `id` until [`ControlPlane::forget_output`]. A task stores its lines
    /// in its record every [`STORE_EVERY`] while they change, until it ends (see the module
    /// comment).
    pub(super) fn open_output(self: &Arc<Self>, id: Uuid, lines: Vec<String>) -> OutputWriter {
        let head_bytes = lines.iter().map(String::len).sum();
        let tx = watch::Sender::new(Output { lines, head_bytes, ..Output::default() });
        self.outputs.lock().expect("outputs lock").insert(id, tx.clone());
        self.outputs_opened.send_modify(|n| *n += 1);
        let (plane, rx) = (self.clone(), tx.subscribe());
        tokio::spawn(async move { plane.keep_stored(id, rx).await });
        OutputWriter { id, tx }
    }

    /// Stores the lines of the running output `id` (read from `rx`) every [`STORE_EVERY`] when
    /// they changed (or the store before failed), until it ends or its end is being stored.
    async fn keep_stored(&self, id: Uuid, mut rx: watch::Receiver<Output>) {
        let (mut ends, mut failed) = (rx.clone(), false);
        loop {
            tokio::select! {
                () = tokio::time::sleep(STORE_EVERY) => {}
                _ = ends.wait_for(|o| o.done) => return,
            }
            match rx.has_changed() {
                Ok(changed) if changed || failed => {}
                Ok(_) => continue,
                // Its writer and its entry are gone: nothing more will come.
                Err(_) => return,
            }
            match self.store_running(id, &mut rx).await {
                Ok(true) => failed = false,
                Ok(false) => return,
                Err(()) => failed = true,
            }
        }
    }

    /// Stores the lines so far of the running output `id` (`rx`) in its record: a build's as
    /// they are, a release phase's followed by [`kill_line`]. The lines are read in the change,
    /// after any store before it, so a store never puts older lines over newer ones; nothing is
    /// stored when the record holds them already. False once the output ended or its end is
    /// being stored (which stores its lines itself), or its record is gone; `Err` when the store
    /// refused the change (the next period tries again; the record keeps the store before).
    async fn store_running(&self, id: Uuid, rx: &mut watch::Receiver<Output>) -> Result<bool, ()> {
        let stored = self
            .change(|m| {
                let lines = {
                    let o = rx.borrow_and_update();
                    if o.done || o.sealed {
                        return Ok((false, vec![]));
                    }
                    o.since(0).0
                };
                let put = if let Some(r) = m.release_by_id(id) {
                    let mut output = lines;
                    output.push(kill_line(r.version));
                    (r.output != output).then(|| Object::Release(crate::model::Release { output, ..r.clone() }))
                } else if let Some(b) = m.build(id) {
                    let touched = wharf_domain::timestamp::now_seconds();
                    let build = crate::model::Build { output: lines, updated_at: touched, ..b.clone() };
                    (b.output != build.output).then_some(Object::Build(build))
                } else {
                    return Ok((false, vec![]));
                };
                Ok((true, put.map(|put| output_changes(m, id, put)).unwrap_or_default()))
            })
            .await;
        stored.map_err(|e| {
            // A store outage is logged once by the engine (`State::record`), not every period.
            tracing::debug!(output = %id, error = %e, "cannot store a running output's lines so far");
        })
    }

    /// Ends the output for its followers and forgets it: its URL answers from its record now.
    pub(super) fn forget_output(&self, out: &OutputWriter) {
        out.end();
        let mut outputs = self.outputs.lock().expect("outputs lock");
        if outputs.get(&out.id).is_some_and(|tx| tx.same_channel(&out.tx)) {
            outputs.remove(&out.id);
        }
    }

    /// Follows the output of the build or release `id` while it runs here; `None` when it does
    /// not (read its record).
    pub fn output(&self, id: Uuid) -> Option<watch::Receiver<Output>> {
        self.outputs.lock().expect("outputs lock").get(&id).map(watch::Sender::subscribe)
    }

    /// Follows the opening of outputs: it changes each time one opens.
    pub(crate) fn outputs_opened(&self) -> watch::Receiver<u64> {
        self.outputs_opened.subscribe()
    }

    /// Opens the output of release `release_id`'s release phase, which the local supervisor
    /// runs: its URL (the release's `output_stream_url`) streams what is pushed to it. A phase
    /// that runs again (Wharf stopped while it ran, or while its release rolled) starts with
    /// what its record kept of the run before and a line saying it runs again.
    pub async fn open_release_output(self: &Arc<Self>, release_id: Uuid) -> OutputWriter {
        let seeded =
            self.read(|m| m.release_by_id(release_id).map(|r| (super::output_states::rerun_seed(r), r.version))).await;
        let (seed, version) = seeded.unwrap_or_default();
        let out = self.open_output(release_id, seed.clone());
        // The record says at once that the phase runs, in a line its end (or a graceful stop's
        // cut) replaces: a start that finds it last knows a kill cut the phase (FE43 #3). The
        // output's task stores the lines before it as they come (`keep_stored`).
        let mut stored = seed;
        stored.push(kill_line(version));
        self.store_output(release_id, stored).await;
        out
    }

    /// Stores a release phase's output in its release's record (see the module comment for
    /// its caps), then ends it for its followers. A release deleted meanwhile (its app was)
    /// keeps nothing, and one Wharf's stop cut keeps what the cut stored.
    pub async fn close_release_output(&self, out: &OutputWriter) {
        out.seal();
        if !out.is_cut() {
            self.store_output(out.id, out.lines()).await;
        }
        self.forget_output(out);
    }

    /// Stores `lines` as the output of the release or build `id`, and drops what its app's
    /// older records keep past [`KEPT_OUTPUTS`], in one change.
    pub(super) async fn store_output(&self, id: Uuid, lines: Vec<String>) {
        let stored = self
            .change(|m| {
                let put = if let Some(r) = m.release_by_id(id) {
                    Object::Release(crate::model::Release { output: lines, ..r.clone() })
                } else if let Some(b) = m.build(id) {
                    Object::Build(crate::model::Build { output: lines, ..b.clone() })
                } else {
                    return Ok(((), vec![]));
                };
                Ok(((), output_changes(m, id, put)))
            })
            .await;
        if let Err(e) = stored {
            tracing::warn!(output = %id, error = %e, "cannot store an output");
        }
    }

    /// Cuts every output running here (Wharf stops gracefully; see the module comment): each
    /// ends with a line saying so and what becomes of what it belongs to, and its record keeps
    /// its lines. Called before the API's streams end, so that their followers get that line.
    pub async fn cut_outputs(&self) {
        let running: Vec<(Uuid, watch::Sender<Output>)> = self.outputs.lock().expect("outputs lock").drain().collect();
        for (id, tx) in running {
            let out = OutputWriter { id, tx };
            let line = self.read(|m| super::output_states::cut_line(m, id)).await;
            out.cut(line);
            self.store_output(id, out.lines()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer() -> OutputWriter {
        OutputWriter { id: Uuid::nil(), tx: watch::Sender::new(Output::default()) }
    }

    /// FE38 #3: a verbose phase keeps its head and its end (the error, how it ended); FE43 #1:
    /// a follower that keeps up gets every line as it comes, one that falls behind is told how
    /// many it missed.
    #[test]
    fn an_output_holds_at_most_its_cap_its_head_and_its_end_and_streams_every_line_as_it_comes() {
        let out = writer();
        let rx = out.tx.subscribe();
        let mut next = 0;
        for n in 0..MAX_OUTPUT_LINES + 3 {
            out.push(format!("line {n}"));
            if n % 100 == 0 || n == MAX_OUTPUT_LINES / 2 + 10 {
                let (got, at) = rx.borrow().since(next);
                assert_eq!(got.last().map(String::as_str), Some(&*format!("line {n}")), "line {n} streams at once");
                assert!(!got.iter().any(|l| l.contains("left out")), "a follower that keeps up misses nothing");
                next = at;
            }
        }
        assert_eq!(next, MAX_OUTPUT_LINES as u64 + 1, "line numbers count every line pushed");
        let (late, _) = rx.borrow().since(MAX_OUTPUT_LINES as u64 / 2);
        assert_eq!(late[0], " !     3 lines left out here are in the app's log stream only", "it fell behind");
        out.push("FATAL: the end".to_owned());
        out.end();
        let o = rx.borrow().clone();
        assert!(o.done);
        let kept = out.lines();
        assert_eq!(kept.len(), MAX_OUTPUT_LINES + 1);
        assert_eq!(kept[0], "line 0", "the first lines stay, so that a follower's place in them holds");
        assert_eq!(kept[MAX_OUTPUT_LINES / 2], " !     4 lines left out here are in the app's log stream only");
        assert_eq!(kept.last().unwrap(), "FATAL: the end", "the end is kept");
        out.push("after the end".to_owned());
        assert_eq!(out.lines().last().unwrap(), "FATAL: the end", "nothing is added once it ended");
    }

    /// FE47: a running output's lines so far are stored in its record, through the same record
    /// as its end: a build's as they are (its `updated_at` moves), a release phase's followed by
    /// the line telling the next start a kill cut it; nothing is stored when the record holds
    /// them already, and nothing once the output ended (its end is what the record keeps).
    #[tokio::test]
    async fn a_running_output_s_lines_so_far_are_stored_in_its_record_until_it_ends() {
        use crate::model::BuildStatus;
        let p = Arc::new(super::super::tests::plane().await);
        let app = p.create_app("api".parse().unwrap(), "default").await.unwrap();
        let v1 = p.read(|m| m.latest_release(app.id).unwrap().clone()).await;
        let build = super::super::release_tests::test_build(app.id, BuildStatus::Pending);
        p.change(|_| Ok(((), vec![Change::Put(Object::Build(build.clone()))]))).await.unwrap();
        let record = |id: Uuid| {
            let p = p.clone();
            async move {
                p.read(|m| {
                    let r = m.release_by_id(id).map(|r| (r.output.clone(), 0));
                    r.or_else(|| m.build(id).map(|b| (b.output.clone(), b.updated_at))).unwrap()
                })
                .await
            }
        };
        let kill = kill_line(v1.version);
        assert!(kill.starts_with(CUT_PREFIX), "the next start reads it as a cut: {kill}");
        let phase = p.open_release_output(v1.id).await;
        assert_eq!(record(v1.id).await.0, vec![kill.clone()], "a phase's record says at once that it runs");
        let built = p.open_output(build.id, vec![]);
        // (the output, the line pushed, what its record holds once stored)
        let rows = [
            (&phase, "Release phase of v1 starting: migrate", vec!["Release phase of v1 starting: migrate", &kill]),
            (
                &built,
                "-----> Fetching source https://example.com/s.tgz",
                vec!["-----> Fetching source https://example.com/s.tgz"],
            ),
        ];
        for (out, line, want) in rows {
            out.push(line.to_owned());
            let mut rx = out.tx.subscribe();
            assert_eq!(p.store_running(out.id, &mut rx).await, Ok(true), "{line}: it runs on");
            let (stored, touched) = record(out.id).await;
            assert_eq!(stored, want, "{line}");
            let version = p.read(|m| m.version()).await;
            assert_eq!(p.store_running(out.id, &mut rx).await, Ok(true));
            assert_eq!(p.read(|m| m.version()).await, version, "{line}: nothing changed, nothing is stored");
            if out.id == build.id {
                assert!(touched > 0, "a build's updated_at moves with its stored output");
            }
        }
        // The task stores what comes next within a period or two, with no call.
        phase.push("migrating".into());
        let want = vec!["Release phase of v1 starting: migrate".to_owned(), "migrating".into(), kill.clone()];
        tokio::time::timeout(STORE_EVERY * 5, async {
            while record(v1.id).await.0 != want {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the phase's new line to be stored by its task");
        // Its end is what the record keeps: no store of its lines so far follows it.
        phase.push("Release phase of v1 succeeded".into());
        p.close_release_output(&phase).await;
        let ended = record(v1.id).await.0;
        assert_eq!(ended.last().map(String::as_str), Some("Release phase of v1 succeeded"), "{ended:?}");
        let mut rx = phase.tx.subscribe();
        assert_eq!(p.store_running(v1.id, &mut rx).await, Ok(false), "an ended output is not stored again");
        assert_eq!(record(v1.id).await.0, ended);
        p.forget_output(&built);
        // The tasks end with their outputs: they hold the plane no longer.
        tokio::time::timeout(STORE_EVERY * 5, async {
            while Arc::strong_count(&p) > 1 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the outputs' tasks to end with them");
    }

    /// Issue 21: an output's lines are capped in length and its bytes in total, whatever the
    /// phase prints: one 5 MB line, 2,000 long lines, 2,000 short ones.
    #[test]
    fn an_output_caps_each_line_and_its_bytes_and_keeps_its_first_and_last_lines() {
        let long = |n: usize, bytes: usize| format!("{n:05} {}", "é".repeat(bytes / 2));
        // (what is pushed, the first stored line's start, how many lines are left out, whether
        // a line is cut)
        let rows: Vec<(&str, Vec<String>, u64, bool)> = vec![
            ("one 5 MB line", vec![long(0, 5_000_000)], 0, true),
            ("2,000 lines of 5 KB", (0..2000).map(|n| long(n, 5000)).collect(), 1876, true),
            ("2,000 lines of 1 KB", (0..2000).map(|n| long(n, 900)).collect(), 1856, false),
            ("2,000 short lines", (0..2000).map(|n| format!("line {n}")).collect(), 1000, false),
        ];
        for (what, pushed, left_out, cut) in rows {
            let out = writer();
            for line in &pushed {
                out.push(line.clone());
            }
            out.end();
            let stored = out.lines();
            let bytes: usize = stored.iter().map(String::len).sum();
            assert!(bytes <= MAX_OUTPUT_BYTES + 100, "{what}: {bytes} bytes kept");
            assert!(stored.iter().all(|l| l.len() <= MAX_OUTPUT_LINE_BYTES + 30), "{what}: a line is over its cap");
            assert_eq!(stored[0].get(..5), pushed[0].get(..5), "{what}: the first line is kept");
            let last = stored.last().unwrap();
            assert_eq!(last.get(..5), pushed.last().unwrap().get(..5), "{what}: the last line is kept");
            let said = format!(" !     {left_out} lines left out here are in the app's log stream only");
            assert_eq!(stored.contains(&said), left_out > 0, "{what}: {said}");
            assert_eq!(stored.len() as u64, pushed.len() as u64 - left_out + u64::from(left_out > 0), "{what}");
            let marked = stored.iter().any(|l| l.ends_with(" bytes cut]"));
            assert_eq!(marked, cut, "{what}: a cut line says how many bytes were cut");
        }
        let one = capped("x".repeat(MAX_OUTPUT_LINE_BYTES + 7));
        assert_eq!(one, format!("{}… [7 bytes cut]", "x".repeat(MAX_OUTPUT_LINE_BYTES)));
        let at_boundary = capped(format!("{}é", "x".repeat(MAX_OUTPUT_LINE_BYTES - 1)));
        assert_eq!(at_boundary, format!("{}… [2 bytes cut]", "x".repeat(MAX_OUTPUT_LINE_BYTES - 1)));
    }
}
