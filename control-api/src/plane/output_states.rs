//! What an output URL answers, in every state of what it belongs to (`outputs.rs` holds the
//! outputs; `http/outputs.rs` serves them). One rule for builds and releases: the URL never
//! answers a bare end for something that has not ended, and what ended without running says so.
//!
//! - Running in this process: its lines stream as they come, and the stream ends with it.
//! - Ended: its stored lines, the last saying how it ended.
//! - Not started yet (a release queued behind another release's phase or roll; a build another
//!   process runs; a phase cut short by Wharf's stop, which runs again at the next start): the
//!   stream opens at once with the lines so far and a line saying what it waits for, then
//!   follows it when it starts ([`OutputState::NotYet`]); Heroku answers 404 there, which its
//!   CLI's `releases:output` reads as "not started yet, try again", while a stream that waits
//!   serves `releases:output`, `rollback`, `container:release` and `curl` alike.
//! - Never ran (a release superseded before its phase started, or settled where no supervisor
//!   runs phases): a final text saying so, and by which release.
//! - A release without a release phase, or nothing of that id: 404.

use uuid::Uuid;

use crate::model::{BuildStatus, Model, Release, ReleaseStatus};

use super::outputs::{CUT_PREFIX, MAX_OUTPUT_BYTES, MAX_OUTPUT_LINES};

/// What an output URL answers now (see the module comment); the URL checks first whether the
/// output runs in this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputState {
    /// Nothing of that id has an output: 404.
    Missing,
    /// It ended: these lines, and the end.
    Ended(Vec<String>),
    /// It has not started (again) yet: `lines` so far, then `why` (a line for the follower
    /// only, never stored), then its lines once it runs.
    NotYet {
        /// What its record holds so far.
        lines: Vec<String>,
        /// What it waits for.
        why: String,
    },
}

/// Whether release `r` has a release phase: a `release` process type with a command.
pub fn has_release_phase(r: &Release) -> bool {
    r.processes.iter().any(|p| p.dyno_type.as_str() == "release" && p.command.is_some())
}

/// Whether an output line is the one Wharf's stop ended an output with.
fn is_cut(line: &str) -> bool {
    line.starts_with(CUT_PREFIX)
}

/// What the output URL of release `id` answers now (besides a phase running here).
pub fn release_output_state(m: &Model, id: Uuid) -> OutputState {
    let Some(r) = m.release_by_id(id).filter(|r| has_release_phase(r)) else { return OutputState::Missing };
    let v = r.version;
    if r.status != ReleaseStatus::Pending {
        if r.output.is_empty() {
            return OutputState::Ended(vec![never_ran(m, r)]);
        }
        return OutputState::Ended(r.output.clone());
    }
    // A pending release's phase ended (its release rolls now), or has not run yet, or was cut.
    if r.output.last().is_some_and(|l| !is_cut(l)) {
        return OutputState::Ended(r.output.clone());
    }
    let ahead = m.releases_of(r.app_id).into_iter().find(|o| o.version < v && o.status == ReleaseStatus::Pending);
    let why = match (r.output.is_empty(), ahead) {
        (false, _) => format!(
            "-----> v{v}'s release phase runs again from its start when Wharf's supervisor gets to it (Wharf \
             stopped while it ran); this stream follows it then"
        ),
        (true, Some(o)) => format!(
            "-----> v{v}'s release phase has not started yet: v{} is pending before it (an app runs one release \
             phase at a time); this stream follows it when it starts",
            o.version
        ),
        (true, None) => {
            format!("-----> v{v}'s release phase has not started yet; this stream follows it when it starts")
        }
    };
    OutputState::NotYet { lines: rerun_lines(&r.output), why }
}

/// The text a settled release whose phase never ran answers: which release superseded it (the
/// oldest newer one settled in the same commit that did not skip its own phase), or that none
/// ran it here. `settle_release` stores the superseded case's text when it settles; this reads
/// older records the same way.
fn never_ran(m: &Model, r: &Release) -> String {
    let v = r.version;
    let by = m.releases_of(r.app_id).into_iter().find(|o| {
        o.version > v
            && o.updated_at == r.updated_at
            && o.status == r.status
            && (!o.output.is_empty() || !has_release_phase(o))
    });
    match by {
        Some(o) => superseded_line(v, o.version, r.status),
        None => format!(
            " !     v{v}'s release phase never ran: the release was {} without it (no supervisor in this Wharf ran \
             it)",
            r.status.as_str()
        ),
    }
}

/// The text of a release `v` whose phase never ran because release `by` settled first, as
/// `status`.
pub(crate) fn superseded_line(v: u32, by: u32, status: ReleaseStatus) -> String {
    format!(
        " !     v{v}'s release phase never ran: v{by} superseded it before it started, and v{v} is {} with v{by}",
        status.as_str()
    )
}

/// What the output URL of build `id` answers now (besides a build running here): its stored
/// lines once it ended (failed, or succeeded and its output says what became of its release,
/// or that release settled), else what its record holds so far while another process runs it.
pub fn build_output_state(m: &Model, id: Uuid) -> OutputState {
    let Some(b) = m.build(id) else { return OutputState::Missing };
    let release_settled = b.release_id.and_then(|r| m.release_by_id(r)).is_none_or(|r| r.status != ReleaseStatus::Pending);
    let fate = b.output.last().is_some_and(|l| super::builds::is_release_fate(l));
    let ended = match b.status {
        BuildStatus::Failed => true,
        BuildStatus::Succeeded => fate || release_settled,
        BuildStatus::Pending => false,
    };
    if ended {
        return OutputState::Ended(b.output.clone());
    }
    let why = "-----> This build is not running in this process (another Wharf sharing its store runs it, or \
               Wharf is starting): this stream follows it when it runs here, or gives its output when it ends";
    OutputState::NotYet { lines: b.output.clone(), why: why.to_owned() }
}

/// The line Wharf's stop ends the running output `id` with: what stopped, and what becomes of
/// it at the next start.
pub(crate) fn cut_line(m: &Model, id: Uuid) -> String {
    if let Some(r) = m.release_by_id(id) {
        let v = r.version;
        return format!(
            "{CUT_PREFIX} v{v}'s release phase ran: it is cut short here, and runs again from its start when Wharf \
             starts again (v{v} stays pending until then)"
        );
    }
    match m.build(id) {
        Some(b) if b.status == BuildStatus::Succeeded => {
            let v = b.release_id.and_then(|r| m.release_by_id(r)).map_or(0, |r| r.version);
            format!("{CUT_PREFIX} v{v} was being released: when Wharf starts again, this output follows it again")
        }
        _ => format!("{CUT_PREFIX} this build ran: it is cut short here, and fails (start it again)"),
    }
}

/// The lines a release phase that runs again keeps of its run before (`output`, its record):
/// as many of the first as fit in the first half of an output's caps, less a line, so that the
/// run's own lines still stream as they come.
fn rerun_lines(output: &[String]) -> Vec<String> {
    let mut bytes = 0;
    output
        .iter()
        .take(MAX_OUTPUT_LINES / 2 - 1)
        .take_while(|l| {
            bytes += l.len();
            bytes <= MAX_OUTPUT_BYTES / 2 - 512
        })
        .cloned()
        .collect()
}

/// What the output of `r`'s release phase starts with when the phase starts: nothing for its
/// first run; for a run again, the lines followers were given of the run before
/// ([`release_output_state`]'s) and a line saying it runs again.
pub(crate) fn rerun_seed(r: &Release) -> Vec<String> {
    if r.output.is_empty() {
        return vec![];
    }
    let mut lines = rerun_lines(&r.output);
    lines.push(format!(" !     Wharf started again while v{} was pending: its release phase runs again from its start", r.version));
    lines
}
