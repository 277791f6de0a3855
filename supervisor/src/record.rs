//! The dyno records: each running dyno's process group, written to `DATA_DIR/dynos/PGID` once
//! its process is started and removed once its group is gone, so that a Wharf killed without
//! its shutdown (`kill -9`, a crash, the OOM killer) leaves a list of what it ran, and the next
//! start stops those groups (or adopts them until their replacements are healthy, see
//! `adopt`).
//!
//! A record is one line: `BOOT_ID START_TIME APP DYNO`. A process group's id is its first
//! process's pid, and pids are reused, so a group is only stopped when it is the recorded one:
//! the same boot (`/proc/sys/kernel/random/boot_id`), and either its leader still runs with the
//! recorded start time, or the leader is gone and members remain (Linux does not reuse a pid
//! while a process group of that id has members).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::procfs;

/// Where the records are kept; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Records {
    dir: Arc<Path>,
}

impl Records {
    /// The records in `dir` (created when missing).
    pub(crate) fn new(dir: PathBuf) -> Records {
        Records { dir: dir.into() }
    }

    /// Records that group `pgid`, led by a process started at `start_time` (clock ticks after
    /// boot), runs `app`'s dyno `dyno`. Failing to write is logged: the dyno runs anyway.
    pub(crate) fn add(&self, pgid: i32, start_time: u64, app: &str, dyno: &str) {
        let line = format!("{} {start_time} {app} {dyno}\n", procfs::boot_id());
        let written = std::fs::create_dir_all(&self.dir).and_then(|()| std::fs::write(self.path(pgid), line));
        if let Err(e) = written {
            tracing::warn!(dir = %self.dir.display(), dyno, error = %e, "cannot record the dyno's process group");
        }
    }

    /// Removes group `pgid`'s record, once the group is gone.
    pub(crate) fn remove(&self, pgid: i32) {
        let _ = std::fs::remove_file(self.path(pgid));
    }

    fn path(&self, pgid: i32) -> PathBuf {
        self.dir.join(pgid.to_string())
    }

    /// The dynos an earlier run left running: every recorded group that is still the recorded
    /// one. The records of the others are removed; a living group's record stays until
    /// [`Records::stop`], so that a Wharf killed again before then leaves it to the next run.
    pub(crate) fn living(&self) -> Vec<Orphan> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return Vec::new() };
        let boot = procfs::boot_id();
        let mut living = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let pgid = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok());
            match (pgid, Record::parse(&text)) {
                (Some(pgid), Some(record)) if record.boot_id == boot && is_recorded_group(pgid, record.start_time) => {
                    living.push(Orphan { pgid, app: record.app, dyno: record.dyno });
                }
                _ => {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        living
    }

    /// Stops an orphan's process group (SIGTERM, then SIGKILL after `grace`) and removes its
    /// record once the group is gone.
    pub(crate) async fn stop(&self, orphan: &Orphan, grace: Duration) {
        tracing::warn!(app = orphan.app, dyno = orphan.dyno, pgid = orphan.pgid, "stopping a dyno an earlier run left");
        crate::group::stop_group(orphan.pgid, grace).await;
        self.remove(orphan.pgid);
    }

    /// Stops every recorded group that is still the recorded one, all at once, and removes
    /// every record; returns the dynos stopped, as `APP DYNO`.
    #[cfg(test)]
    pub(crate) async fn reclaim(&self, grace: Duration) -> Vec<String> {
        let mut stops = tokio::task::JoinSet::new();
        for orphan in self.living() {
            let records = self.clone();
            stops.spawn(async move {
                records.stop(&orphan, grace).await;
                format!("{} {}", orphan.app, orphan.dyno)
            });
        }
        stops.join_all().await
    }
}

/// A dyno an earlier run of Wharf left running: its process group, still the recorded one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Orphan {
    /// The dyno's process group id.
    pub(crate) pgid: i32,
    /// Its app's key (`name-space`).
    pub(crate) app: String,
    /// The dyno's name (`web.1-abcde`).
    pub(crate) dyno: String,
}

/// One record's fields.
#[derive(Debug, PartialEq, Eq)]
struct Record {
    boot_id: String,
    start_time: u64,
    app: String,
    dyno: String,
}

impl Record {
    fn parse(text: &str) -> Option<Record> {
        let mut f = text.split_whitespace();
        Some(Record {
            boot_id: f.next()?.to_owned(),
            start_time: f.next()?.parse().ok()?,
            app: f.next()?.to_owned(),
            dyno: f.next()?.to_owned(),
        })
    }
}

/// Whether process group `pgid` is still the one whose leader started at `start_time`.
fn is_recorded_group(pgid: i32, start_time: u64) -> bool {
    match procfs::stat(pgid) {
        Some(leader) => leader.pgrp == pgid && leader.start_time == start_time,
        None => !procfs::group_members(pgid).is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Stdio;
    use tokio::io::{AsyncBufReadExt, BufReader};

    #[tokio::test]
    async fn reclaiming_stops_the_recorded_groups_and_only_those() {
        let dir = std::env::temp_dir().join(format!("wharf-records-{}", std::process::id()));
        let records = Records::new(dir.clone());
        // A group whose leader exited and whose child ignores SIGTERM, as a killed Wharf leaves it.
        let mut cmd = tokio::process::Command::new("sh");
        cmd.args(["-c", "(trap '' TERM; exec sleep 600) & echo $!"]).process_group(0).stdout(Stdio::piped());
        let mut leader = cmd.spawn().unwrap();
        let pgid = leader.id().unwrap() as i32;
        let start_time = procfs::stat(pgid).unwrap().start_time;
        let mut out = BufReader::new(leader.stdout.take().unwrap()).lines();
        let child: i32 = out.next_line().await.unwrap().unwrap().parse().unwrap();
        records.add(pgid, start_time, "api-default", "worker.1-abcde");
        // Another test's reaper (`reaper::reap_orphans`, which reaps any zombie child it did not
        // spawn through `process`) may have reaped the leader first: either way it has exited.
        let _ = leader.wait().await;
        // A record of a group that no longer exists, and one from another boot.
        records.add(999_999_999, 1, "api-default", "worker.1-fghij");
        std::fs::write(dir.join("1"), "another-boot 1 api-default web.1-klmno\n").unwrap();

        let stopped = records.reclaim(Duration::from_millis(200)).await;
        assert_eq!(stopped, ["api-default worker.1-abcde"]);
        let child_gone = procfs::stat(child).is_none_or(|p| p.is_zombie());
        assert!(child_gone, "SIGKILL after the grace, though its leader was gone");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "every record is removed");
        assert!(procfs::stat(1).is_some(), "PID 1 was not stopped: its record was another boot's");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_recycled_group_id_is_not_the_recorded_group() {
        let me = procfs::stat(std::process::id() as i32).unwrap();
        assert!(!is_recorded_group(me.pid, me.start_time + 1) || me.pgrp != me.pid);
        assert!(!is_recorded_group(999_999_999, 1), "no such group");
    }
}
