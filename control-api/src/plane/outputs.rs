//! Followed outputs: the lines of something that runs once and is read through a URL of its
//! own, Heroku's `output_stream_url`: a build's (`builds.rs`), and a release's, which streams
//! its release phase (run by the local supervisor, `release_phase`).
//!
//! One piece serves both. An output is opened under the id of what it belongs to (the build's
//! or the release's: 122 random bits that only holders of the admin token see, the capability
//! its URL carries, as Heroku's URL is); lines are pushed to it while it runs, and followers
//! (`http/outputs.rs`) stream them as they come; once it ends, its lines are stored in its
//! record (at most [`MAX_OUTPUT_LINES`]), and the URL answers them from there. An output holds
//! at most [`MAX_OUTPUT_LINES`] lines while it runs too: its first half, streamed as they come,
//! and its newest half, handed to followers when it ends after one line saying how many were
//! left out between (they are in the app's log stream), so a phase that prints without end does
//! not grow Wharf and its end (a migration's error, the line saying how it ended) is kept.

use tokio::sync::watch;
use uuid::Uuid;

use super::engine::ControlPlane;

/// Most lines an output holds while it runs, and keeps in its record once it ended.
pub const MAX_OUTPUT_LINES: usize = 1000;

/// An output as it grows: its lines so far, and whether it ended.
#[derive(Debug, Clone, Default)]
pub struct Output {
    /// Lines so far, oldest first.
    pub lines: Vec<String>,
    /// Whether it ended (no more lines will come).
    pub done: bool,
    /// Lines left out past [`MAX_OUTPUT_LINES`] (they are in the app's log stream).
    pub left_out: u64,
    /// The newest lines past the first half of [`MAX_OUTPUT_LINES`], at most the other half;
    /// appended to `lines` when the output ends.
    pub tail: std::collections::VecDeque<String>,
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
    /// Adds a line: streamed while the output has fewer than half [`MAX_OUTPUT_LINES`], else
    /// kept among the newest other half (the oldest of those is then left out, counted).
    pub fn push(&self, line: String) {
        self.tx.send_if_modified(|o| {
            if o.lines.len() < MAX_OUTPUT_LINES / 2 {
                o.lines.push(line);
                return true;
            }
            o.tail.push_back(line);
            if o.tail.len() > MAX_OUTPUT_LINES / 2 {
                o.tail.pop_front();
                o.left_out += 1;
            }
            false
        });
    }

    /// The lines so far: the first half, a line saying how many were left out (if any), then
    /// the newest.
    pub(super) fn lines(&self) -> Vec<String> {
        let o = self.tx.borrow();
        let mut lines = o.lines.clone();
        if o.left_out > 0 {
            lines.push(format!(" !     {} lines left out here are in the app's log stream only", o.left_out));
        }
        lines.extend(o.tail.iter().cloned());
        lines
    }

    /// Ends the output for its followers: they get the rest of its lines and the end.
    pub(super) fn end(&self) {
        let lines = self.lines();
        self.tx.send_modify(|o| {
            o.lines = lines;
            o.left_out = 0;
            o.tail.clear();
            o.done = true;
        });
    }
}

impl ControlPlane {
    /// Opens the output of the build or release `id`, starting with `lines` (an output followed
    /// again after a restart), and returns its writing end; followers find it by `id` until
    /// [`ControlPlane::forget_output`].
    pub(super) fn open_output(&self, id: Uuid, lines: Vec<String>) -> OutputWriter {
        let tx = watch::Sender::new(Output { lines, ..Output::default() });
        self.outputs.lock().expect("outputs lock").insert(id, tx.clone());
        OutputWriter { id, tx }
    }

    /// Ends the output for its followers and forgets it: its URL answers from its record now.
    pub(super) fn forget_output(&self, out: &OutputWriter) {
        out.end();
        self.outputs.lock().expect("outputs lock").remove(&out.id);
    }

    /// Follows the output of the build or release `id` while it runs here; `None` when it does
    /// not (read its record).
    pub fn output(&self, id: Uuid) -> Option<watch::Receiver<Output>> {
        self.outputs.lock().expect("outputs lock").get(&id).map(watch::Sender::subscribe)
    }

    /// Opens the output of release `release_id`'s release phase, which the local supervisor
    /// runs: its URL (the release's `output_stream_url`) streams what is pushed to it.
    pub fn open_release_output(&self, release_id: Uuid) -> OutputWriter {
        self.open_output(release_id, Vec::new())
    }

    /// Stores a release phase's output in its release's record (at most [`MAX_OUTPUT_LINES`]
    /// lines), then ends it for its followers. A release deleted meanwhile (its app was) keeps
    /// nothing.
    pub async fn close_release_output(&self, out: &OutputWriter) {
        let lines = out.lines();
        let stored = self
            .change(|m| {
                let Some(r) = m.release_by_id(out.id) else { return Ok(((), vec![])) };
                let r = crate::model::Release { output: lines.clone(), ..r.clone() };
                Ok(((), vec![crate::model::Change::Put(crate::model::Object::Release(r))]))
            })
            .await;
        if let Err(e) = stored {
            tracing::warn!(release = %out.id, error = %e, "cannot store a release phase's output");
        }
        self.forget_output(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FE38 #3: a verbose phase keeps its head and its end (the error, how it ended).
    #[test]
    fn an_output_holds_at_most_its_cap_its_head_and_its_end_and_says_how_many_are_left_out() {
        let tx = watch::Sender::new(Output::default());
        let out = OutputWriter { id: Uuid::nil(), tx };
        let mut rx = out.tx.subscribe();
        for n in 0..MAX_OUTPUT_LINES + 3 {
            out.push(format!("line {n}"));
        }
        out.push("FATAL: the end".to_owned());
        assert_eq!(rx.borrow_and_update().lines.len(), MAX_OUTPUT_LINES / 2, "the head streams as it comes");
        out.end();
        let o = rx.borrow_and_update().clone();
        assert!(o.done);
        assert_eq!(o.lines.len(), MAX_OUTPUT_LINES + 1);
        assert_eq!(o.lines[0], "line 0", "the first lines stay, so that a follower's place in them holds");
        assert_eq!(o.lines[MAX_OUTPUT_LINES / 2], " !     4 lines left out here are in the app's log stream only");
        assert_eq!(o.lines.last().unwrap(), "FATAL: the end", "the end is kept");
    }
}
