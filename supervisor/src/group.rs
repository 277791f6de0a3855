//! A dyno's process group: what the supervisor signals to stop a dyno, so that everything the
//! dyno's shell started stops with it, also after the shell itself has exited.
//!
//! A group is stopped with SIGTERM to all its members, then, after a grace period, SIGKILL to
//! whatever is left of it (Heroku's dyno shutdown, <https://devcenter.heroku.com/articles/dynos#shutdown>).
//! Its id is the pid of its first process (the dyno's `sh`), and `killpg` reaches the group
//! while any member lives. A member that leaves its group (`setsid`) escapes this: only a
//! cgroup would hold it, which needs privileges `wharf serve` does not ask for.

use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process_group, test_kill_process_group};

use crate::reaper;

/// How long to wait for a group to empty after SIGKILL, which the kernel delivers at once but
/// a process in uninterruptible sleep only acts on when it wakes.
const AFTER_KILL: Duration = Duration::from_secs(5);

/// How often to look whether a group has emptied.
const POLL: Duration = Duration::from_millis(20);

/// Sends `signal` to every member of group `pgid`; false when the group has no member (left).
pub(crate) fn signal(pgid: i32, signal: Signal) -> bool {
    Pid::from_raw(pgid).is_some_and(|g| kill_process_group(g, signal).is_ok())
}

/// Whether group `pgid` has members, zombies included.
pub(crate) fn exists(pgid: i32) -> bool {
    Pid::from_raw(pgid).is_some_and(|g| test_kill_process_group(g).is_ok())
}

/// Waits until group `pgid` has no member left, reaping the orphans of it that Wharf adopted;
/// false when some remain after `timeout`.
pub(crate) async fn wait_empty(pgid: i32, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        reaper::reap_orphans();
        if !exists(pgid) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Stops group `pgid`: SIGTERM, then SIGKILL to what is left after `grace`, and returns once
/// the group is empty (or [`AFTER_KILL`] later, logged). The caller must meanwhile wait for the
/// children it started itself, since their zombies keep the group.
pub(crate) async fn stop_group(pgid: i32, grace: Duration) {
    if !signal(pgid, Signal::TERM) || wait_empty(pgid, grace).await {
        return;
    }
    signal(pgid, Signal::KILL);
    if !wait_empty(pgid, AFTER_KILL).await {
        tracing::warn!(pgid, "processes of a stopped dyno are still there after SIGKILL");
    }
}
