//! The reaper: Wharf registers as its dynos' child subreaper (Linux's `PR_SET_CHILD_SUBREAPER`,
//! prctl(2)), so that a dyno's orphaned descendants are reparented to Wharf rather than to PID 1,
//! and reaps those orphans when they exit, so that none stays a zombie, also when Wharf runs as
//! PID 1 of a container.
//!
//! Tokio reaps the children it started itself (each dyno's `sh`), by pid. Reaping one of those
//! here would take its exit status from the dyno, so the reaper reaps only zombies that are
//! not in the set of pids tokio still waits for. A dyno is started while holding the set's lock
//! and its pid is added before the lock is released, so that a dyno that exits at once is
//! never taken for an orphan. Only the supervisor starts processes in Wharf (ARCHITECTURE.md),
//! so every other child is an adopted orphan.

use std::collections::HashSet;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use crate::procfs;

/// How often the reaper looks for zombies besides when SIGCHLD arrives (a signal may be
/// coalesced with another, or arrive before the reaper listens).
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// The pids of the dyno processes tokio started and has not reaped yet.
fn spawned() -> &'static Mutex<HashSet<i32>> {
    static SPAWNED: OnceLock<Mutex<HashSet<i32>>> = OnceLock::new();
    SPAWNED.get_or_init(Mutex::default)
}

/// The lock held while a dyno is started and its pid recorded with [`Spawning::started`].
pub(crate) struct Spawning(MutexGuard<'static, HashSet<i32>>);

impl std::fmt::Debug for Spawning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Spawning")
    }
}

/// Takes the lock that keeps the reaper away while a dyno process starts.
pub(crate) fn spawning() -> Spawning {
    Spawning(spawned().lock().unwrap_or_else(std::sync::PoisonError::into_inner))
}

impl Spawning {
    /// Records `pid` as tokio's to reap, and releases the lock.
    pub(crate) fn started(mut self, pid: i32) {
        self.0.insert(pid);
    }
}

/// Tells the reaper that tokio has reaped `pid` (or will no longer).
pub(crate) fn reaped(pid: i32) {
    spawned().lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&pid);
}

/// Registers this process as child subreaper and starts the reaper's task on the current
/// runtime, once per process; later calls do nothing.
pub(crate) fn start() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        if let Err(e) = rustix::process::set_child_subreaper(Some(rustix::process::getpid())) {
            tracing::warn!(error = %e, "cannot become the dynos' child subreaper; their orphans go to PID 1");
        }
        tokio::spawn(async {
            let mut sigchld = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child()).ok();
            loop {
                reap_orphans();
                match &mut sigchld {
                    Some(s) => {
                        let _ = tokio::time::timeout(SWEEP_EVERY, s.recv()).await;
                    }
                    None => tokio::time::sleep(SWEEP_EVERY).await,
                }
            }
        });
    });
}

/// Reaps every zombie child of this process that tokio does not wait for; returns their pids.
pub(crate) fn reap_orphans() -> Vec<i32> {
    let me = rustix::process::getpid().as_raw_nonzero().get();
    let zombies: Vec<i32> =
        procfs::all().into_iter().filter(|p| p.ppid == me && p.is_zombie()).map(|p| p.pid).collect();
    if zombies.is_empty() {
        return zombies;
    }
    let tokio_s = spawned().lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut out = Vec::new();
    for pid in zombies.into_iter().filter(|p| !tokio_s.contains(p)) {
        let Some(pid) = rustix::process::Pid::from_raw(pid) else { continue };
        if let Ok(Some(_)) = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::NOHANG) {
            tracing::debug!(pid = pid.as_raw_nonzero().get(), "reaped an orphan a dyno left");
            out.push(pid.as_raw_nonzero().get());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn orphans_are_reaped_and_tokio_s_children_are_not() {
        start();
        // A child of ours that tokio started: it must stay for tokio to reap.
        let spawning = spawning();
        let mut mine = tokio::process::Command::new("true").spawn().unwrap();
        let mine_pid = mine.id().unwrap() as i32;
        spawning.started(mine_pid);
        // An orphan: `sh` starts `sleep` in the background and exits; as subreaper we adopt it.
        let out = tokio::process::Command::new("sh").args(["-c", "sleep 0.3 & echo $!"]).output().await.unwrap();
        let orphan: i32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        let adopted = procfs::stat(orphan).is_some_and(|p| p.ppid == rustix::process::getpid().as_raw_nonzero().get());
        assert!(adopted, "the orphan is reparented to the subreaper");
        let mut gone = false;
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            reap_orphans();
            if procfs::stat(orphan).is_none() {
                gone = true;
                break;
            }
        }
        assert!(gone, "the orphan was reaped, not left a zombie");
        assert!(mine.wait().await.unwrap().success(), "tokio still got its child's status");
        reaped(mine_pid);
    }
}
