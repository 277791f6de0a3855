//! Dyno metrics: every second, the CPU time, memory and disk I/O of each dyno's whole process
//! group, read from `/proc` (proc(5)); one record per dyno per second for the last hour, for the
//! control API's `GET /apps/{app}/metrics` (through `wharf_control_api::DynoMetrics`); and, at
//! a configured interval (15 minutes by default), Heroku's log-runtime-metrics lines in the
//! app's log stream.
//!
//! The lines follow Heroku's format (Dev Center, "Heroku Labs: log-runtime-metrics"): a load
//! line and a memory line per dyno,
//!
//! ```text
//! source=web.1 dyno=heroku.APP_ID.RUN_ID sample#load_avg_1m=0.98 sample#load_avg_5m=0.40 sample#load_avg_15m=0.15 sample#cpu_percent=97.95
//! source=web.1 dyno=heroku.APP_ID.RUN_ID sample#memory_total=21.00MB sample#memory_rss=21.00MB sample#memory_swap=0.00MB
//! ```
//!
//! `source` is the dyno's process name, `TYPE.N` (Heroku's `web.1`: its index among the running
//! dynos of its type, see `formation`), which is also the lines' process (`akkeris/supervisor[web.1]`,
//! as Heroku's `heroku[web.1]`), and `dyno` is `heroku.`, the app's id and an id of this run of
//! the dyno (a new one each time it starts), as Heroku's: unique where the process name is not.
//! The API's figures (`GET /apps/{app}/metrics`) stay keyed by the dyno's unique name. Load
//! averages are the kernel's formula over the group's runnable and uninterruptible processes,
//! sampled each second; `cpu_percent` (a Wharf addition: the seed asks for CPU utilization) is
//! the average over the interval, in percent of one core. Memory is a sample (`sample#`, as in
//! Heroku's l2met convention): `memory_rss` the group's resident memory (`VmRSS`), `memory_swap`
//! its swap (`VmSwap`), `memory_total` their sum; MB is 2^20 bytes, as Heroku's. Heroku's
//! `memory_cache`, `memory_pgpgin`, `memory_pgpgout` and `memory_quota` are cgroup counters with
//! no per-process equivalent (and sizes are not enforced without cgroups), so they are left out
//! rather than made up.
//!
//! A process that leaves the group (`setsid`) is not counted, as it is not stopped. The
//! children a member waits for are counted once: their CPU time reaches its `cutime`, and their
//! storage bytes its own `/proc/PID/io` counts, when it reaps them, and what was counted of a
//! child while it ran is taken off that growth. A process that exits and is waited for outside
//! the group (by Wharf, the orphans' subreaper) loses its last second of CPU time and I/O: the
//! kernel keeps no total for a group's exited members.
//!
//! Memory: each dyno's seconds are [`Second`]s of 24 bytes, at most 3,600 of them (84 KiB) per
//! dyno, growing as the dyno runs. A stopped dyno's seconds are kept while they are within the
//! hour, at most [`STOPPED_KEPT`] stopped dynos (the longest stopped go first).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use uuid::Uuid;
use wharf_bus::{LogEvent, Publisher, Stream};
use wharf_domain::metrics::{DynoSecond, DynoSeries, WINDOW_SECONDS};

use crate::procfs;

/// How often every dyno is sampled.
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// The most stopped dynos whose seconds are kept.
pub(crate) const STOPPED_KEPT: usize = 200;

/// One dyno's second, packed: 24 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Second {
    /// Seconds since the epoch (as `u32`: good until 2106).
    at: u32,
    /// CPU, in hundredths of a percent of one core.
    cpu: u32,
    /// Resident memory, KiB.
    rss_kib: u32,
    /// Swap, KiB.
    swap_kib: u32,
    /// Bytes read from storage in the second (saturating at 4 GiB).
    read: u32,
    /// Bytes written to storage in the second (saturating at 4 GiB).
    write: u32,
}

impl Second {
    fn unpack(self) -> DynoSecond {
        DynoSecond {
            at: i64::from(self.at),
            cpu_percent: f64::from(self.cpu) / 100.0,
            memory_rss_bytes: u64::from(self.rss_kib) * 1024,
            memory_total_bytes: (u64::from(self.rss_kib) + u64::from(self.swap_kib)) * 1024,
            read_bytes: u64::from(self.read),
            write_bytes: u64::from(self.write),
        }
    }
}

/// A dyno's seconds: those of every run of it (a crashed dyno keeps its name when it restarts).
#[derive(Debug)]
struct Series {
    app_id: Uuid,
    dyno: String,
    dyno_type: String,
    seconds: VecDeque<Second>,
    /// The process groups of it being sampled (one, or none once it stopped).
    running: usize,
}

/// What one process contributed at the previous sample: its CPU ticks and I/O bytes so far.
#[derive(Debug, Clone, Copy, Default)]
struct Counted {
    /// Its parent, whose storage bytes take its own in when it reaps it.
    parent: i32,
    ticks: u64,
    /// Its waited-for children's CPU ticks (`procfs::ProcUsage::reaped_ticks`).
    reaped: u64,
    read: u64,
    write: u64,
}

/// A running dyno's process group being sampled.
#[derive(Debug)]
struct Group {
    /// The series it adds to: (app, dyno name).
    key: (Uuid, String),
    /// The app's key, whose log stream gets the lines.
    app: String,
    /// The dyno's process name, `TYPE.N`: the lines' `source` and process.
    source: String,
    /// This run's id, for the lines' `dyno=`.
    run_id: Uuid,
    /// Each member's counts at the previous sample, by (pid, start time).
    members: HashMap<(i32, u64), Counted>,
    /// Load averages over 1, 5 and 15 minutes.
    load: [f64; 3],
    /// CPU ticks and seconds since the last log line, for its average.
    ticks_since_line: u64,
    since_line: Duration,
    /// The last sample's memory, KiB: resident and swap.
    rss_kib: u64,
    swap_kib: u64,
}

#[derive(Debug, Default)]
struct Inner {
    groups: HashMap<i32, Group>,
    series: HashMap<(Uuid, String), Series>,
}

/// Every dyno's sampled seconds, and the groups being sampled. One per supervisor.
#[derive(Debug, Default)]
pub(crate) struct DynoMetrics {
    inner: Mutex<Inner>,
}

/// Stops sampling a group when dropped (its dyno's process stopped or exited).
#[derive(Debug)]
pub(crate) struct Sampled {
    metrics: Arc<DynoMetrics>,
    pgid: i32,
}

impl Drop for Sampled {
    fn drop(&mut self) {
        let mut inner = self.metrics.inner.lock().expect("metrics lock");
        if let Some(group) = inner.groups.remove(&self.pgid)
            && let Some(series) = inner.series.get_mut(&group.key)
        {
            series.running = series.running.saturating_sub(1);
        }
    }
}

impl DynoMetrics {
    /// Starts sampling process group `pgid`, dyno `dyno` (of type `dyno_type`, process name
    /// `source`: `TYPE.N`) of app `app_id` (key `app`), until the returned guard is dropped.
    pub(crate) fn sample(
        self: &Arc<Self>,
        pgid: i32,
        app_id: Uuid,
        app: &str,
        dyno: &str,
        source: &str,
        dyno_type: &str,
    ) -> Sampled {
        let key = (app_id, dyno.to_owned());
        let mut inner = self.inner.lock().expect("metrics lock");
        let series = inner.series.entry(key.clone()).or_insert_with(|| Series {
            app_id,
            dyno: dyno.to_owned(),
            dyno_type: dyno_type.to_owned(),
            seconds: VecDeque::new(),
            running: 0,
        });
        series.running += 1;
        inner.groups.insert(
            pgid,
            Group {
                key,
                app: app.to_owned(),
                source: source.to_owned(),
                // A random (version 4) id, from fastrand's bytes: uuid's own generator is a feature
                // this crate does not need otherwise.
                run_id: uuid::Builder::from_random_bytes(fastrand::u128(..).to_le_bytes()).into_uuid(),
                members: HashMap::new(),
                load: [0.0; 3],
                ticks_since_line: 0,
                since_line: Duration::ZERO,
                rss_kib: 0,
                swap_kib: 0,
            },
        );
        Sampled { metrics: self.clone(), pgid }
    }

    /// Reads `/proc` for every group being sampled and records second `at` (seconds since the
    /// epoch), `elapsed` after the previous sample. Returns the log lines due: those of groups
    /// whose `since_line` reached `interval`, as (app key, the dyno's process name, lines).
    fn sample_now(&self, at: i64, elapsed: Duration, interval: Duration, hz: u64) -> Vec<(String, String, String)> {
        let pgids: HashSet<i32> = self.inner.lock().expect("metrics lock").groups.keys().copied().collect();
        if pgids.is_empty() {
            return Vec::new();
        }
        // The reading is done without the lock: `/proc` is slow next to a map.
        let mut read: HashMap<i32, Vec<Member>> = HashMap::new();
        for p in procfs::all_usage() {
            if pgids.contains(&p.pgrp) {
                read.entry(p.pgrp).or_default().push(Member::read(p));
            }
        }
        let mut inner = self.inner.lock().expect("metrics lock");
        let Inner { groups, series } = &mut *inner;
        let mut lines = Vec::new();
        for (pgid, group) in groups.iter_mut() {
            let members = read.remove(pgid).unwrap_or_default();
            let (mut ticks, mut rss, mut swap, mut runnable) = (0, 0, 0, 0u32);
            let mut now = HashMap::with_capacity(members.len());
            // Each member's storage bytes since the previous sample, by pid.
            let mut io: HashMap<i32, (u64, u64)> = HashMap::with_capacity(members.len());
            let mut reaped = 0;
            for m in &members {
                let before = group.members.get(&(m.pid, m.start_time)).copied().unwrap_or_default();
                ticks += m.counted.ticks.saturating_sub(before.ticks);
                reaped += m.counted.reaped.saturating_sub(before.reaped);
                let grew = (m.counted.read.saturating_sub(before.read), m.counted.write.saturating_sub(before.write));
                io.insert(m.pid, grew);
                rss += m.rss_kib;
                swap += m.swap_kib;
                runnable += u32::from(m.runnable);
                now.insert((m.pid, m.start_time), m.counted);
            }
            // A member's children's time reaches its `cutime` when it waits for them: short
            // commands a shell runs between samples are counted only there. A member that was
            // sampled while it ran and has gone since was counted then: what its parent's count
            // grew by includes that again, and is not counted twice.
            let gone: u64 =
                group.members.iter().filter(|(k, _)| !now.contains_key(*k)).map(|(_, c)| c.ticks + c.reaped).sum();
            ticks += reaped.saturating_sub(gone);
            uncount_reaped_io(&group.members, &now, &mut io);
            let (bytes_read, bytes_written) = io.values().fold((0, 0), |(r, w), (dr, dw)| (r + dr, w + dw));
            group.members = now;
            for (load, minutes) in group.load.iter_mut().zip([1.0, 5.0, 15.0]) {
                // The kernel's exponentially damped average (kernel/sched/loadavg.c), per second.
                let e = (-elapsed.as_secs_f64() / (60.0 * minutes)).exp();
                *load = *load * e + f64::from(runnable) * (1.0 - e);
            }
            group.rss_kib = rss;
            group.swap_kib = swap;
            group.ticks_since_line += ticks;
            group.since_line += elapsed;
            let cpu = ticks as f64 / hz.max(1) as f64 / elapsed.as_secs_f64().max(0.001) * 100.0;
            let second = Second {
                at: u32::try_from(at).unwrap_or(u32::MAX),
                cpu: (cpu * 100.0).round().clamp(0.0, f64::from(u32::MAX)) as u32,
                rss_kib: u32::try_from(rss).unwrap_or(u32::MAX),
                swap_kib: u32::try_from(swap).unwrap_or(u32::MAX),
                read: u32::try_from(bytes_read).unwrap_or(u32::MAX),
                write: u32::try_from(bytes_written).unwrap_or(u32::MAX),
            };
            if let Some(series) = series.get_mut(&group.key) {
                match series.seconds.back_mut() {
                    // Two samples in one wall-clock second (a late tick): the later one stands.
                    Some(last) if last.at >= second.at => *last = second,
                    _ => series.seconds.push_back(second),
                }
                while series.seconds.front().is_some_and(|s| i64::from(s.at) <= at - WINDOW_SECONDS) {
                    series.seconds.pop_front();
                }
            }
            if group.since_line >= interval {
                lines.push((group.app.clone(), group.source.clone(), group.lines(hz)));
                group.ticks_since_line = 0;
                group.since_line = Duration::ZERO;
            }
        }
        forget_stopped(series, at);
        lines
    }
}

/// Takes what was counted of each member gone since the previous sample (in `before`, not in
/// `now`) off the storage bytes its parent's count grew by (`io`, by pid): a parent's
/// `/proc/PID/io` takes in the whole count of a child it reaps, which was counted, up to the
/// previous sample, while the child ran. A parent that is gone too passes it on to its own
/// parent (a shell that ran a command, both reaped within the second). A child whose parent is
/// not in the group was reaped outside it (by Wharf, the orphans' subreaper): nothing is taken.
fn uncount_reaped_io(
    before: &HashMap<(i32, u64), Counted>,
    now: &HashMap<(i32, u64), Counted>,
    io: &mut HashMap<i32, (u64, u64)>,
) {
    let gone: HashMap<i32, &Counted> =
        before.iter().filter(|(k, _)| !now.contains_key(*k)).map(|((pid, _), c)| (*pid, c)).collect();
    for counted in gone.values() {
        let mut parent = counted.parent;
        // A chain of gone parents is at most as long as the members that went.
        for _ in 0..=gone.len() {
            if let Some((read, write)) = io.get_mut(&parent) {
                *read = read.saturating_sub(counted.read);
                *write = write.saturating_sub(counted.write);
                break;
            }
            match gone.get(&parent) {
                Some(up) => parent = up.parent,
                None => break,
            }
        }
    }
}

/// Forgets stopped dynos' seconds older than the window, and the longest stopped past
/// [`STOPPED_KEPT`].
fn forget_stopped(series: &mut HashMap<(Uuid, String), Series>, at: i64) {
    series.retain(|_, s| {
        if s.running == 0 {
            while s.seconds.front().is_some_and(|x| i64::from(x.at) <= at - WINDOW_SECONDS) {
                s.seconds.pop_front();
            }
        }
        s.running > 0 || !s.seconds.is_empty()
    });
    let mut stopped: Vec<(u32, (Uuid, String))> = series
        .iter()
        .filter(|(_, s)| s.running == 0)
        .map(|(k, s)| (s.seconds.back().map_or(0, |x| x.at), k.clone()))
        .collect();
    if stopped.len() > STOPPED_KEPT {
        stopped.sort();
        let excess = stopped.len() - STOPPED_KEPT;
        for (_, key) in stopped.into_iter().take(excess) {
            series.remove(&key);
        }
    }
}

impl Group {
    /// Heroku's two log-runtime-metrics lines for this group, load then memory.
    fn lines(&self, hz: u64) -> String {
        let (source, app_id) = (&self.source, self.key.0);
        let cpu = self.ticks_since_line as f64 / hz.max(1) as f64 / self.since_line.as_secs_f64().max(0.001) * 100.0;
        let mb = |kib: u64| kib as f64 / 1024.0;
        format!(
            "source={source} dyno=heroku.{app_id}.{run} sample#load_avg_1m={:.2} sample#load_avg_5m={:.2} \
             sample#load_avg_15m={:.2} sample#cpu_percent={cpu:.2}\n\
             source={source} dyno=heroku.{app_id}.{run} sample#memory_total={:.2}MB sample#memory_rss={:.2}MB \
             sample#memory_swap={:.2}MB",
            self.load[0],
            self.load[1],
            self.load[2],
            mb(self.rss_kib + self.swap_kib),
            mb(self.rss_kib),
            mb(self.swap_kib),
            run = self.run_id,
        )
    }
}

/// One process's figures at a sample.
#[derive(Debug)]
struct Member {
    pid: i32,
    start_time: u64,
    runnable: bool,
    counted: Counted,
    rss_kib: u64,
    swap_kib: u64,
}

impl Member {
    /// Reads what `/proc/PID/stat` did not give: memory from `status`, I/O from `io`. A process
    /// that exited meanwhile counts what was read.
    fn read(p: procfs::ProcUsage) -> Member {
        let (rss_kib, swap_kib) = procfs::memory_kib(p.pid).unwrap_or_default();
        let (read, write) = procfs::io_bytes(p.pid).unwrap_or_default();
        Member {
            pid: p.pid,
            start_time: p.start_time,
            runnable: matches!(p.state, b'R' | b'D'),
            counted: Counted { parent: p.ppid, ticks: p.cpu_ticks, reaped: p.reaped_ticks, read, write },
            rss_kib,
            swap_kib,
        }
    }
}

impl wharf_control_api::DynoMetrics for DynoMetrics {
    fn dynos(&self, app_id: Uuid, from: i64, to: i64) -> Vec<DynoSeries> {
        let inner = self.inner.lock().expect("metrics lock");
        let mut out: Vec<DynoSeries> = inner
            .series
            .values()
            .filter(|s| s.app_id == app_id)
            .map(|s| DynoSeries {
                dyno: s.dyno.clone(),
                dyno_type: s.dyno_type.clone(),
                seconds: s
                    .seconds
                    .iter()
                    .filter(|x| (from..to).contains(&i64::from(x.at)))
                    .map(|x| x.unpack())
                    .collect(),
            })
            .filter(|s| !s.seconds.is_empty())
            .collect();
        out.sort_by(|a, b| a.dyno.cmp(&b.dyno));
        out
    }
}

/// Samples every second until `stopped`, and puts each dyno's lines in its app's stream every
/// `interval`.
pub(crate) async fn run(
    metrics: Arc<DynoMetrics>,
    publisher: Publisher,
    interval: Duration,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let hz = rustix::param::clock_ticks_per_second();
    let mut ticks = tokio::time::interval(SAMPLE_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = Instant::now();
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stopped.wait_for(|s| *s) => return,
        }
        let now = Instant::now();
        let (elapsed, at) = (now - last, wharf_domain::timestamp::now_seconds());
        last = now;
        let m = metrics.clone();
        let Ok(lines) = tokio::task::spawn_blocking(move || m.sample_now(at, elapsed, interval, hz)).await else {
            continue;
        };
        for (app, dyno, text) in lines {
            let event = LogEvent::builder(&app, "akkeris/supervisor").process(&dyno).stream(Stream::Platform);
            publisher.publish_batch(text.lines().map(|l| event.clone().message(l.as_bytes())).collect());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_control_api::DynoMetrics as _;

    #[test]
    fn a_shell_s_short_commands_count_in_its_dyno_s_cpu() {
        use std::os::unix::process::CommandExt as _;
        // AU21: a dyno whose shell runs short commands in a loop spends its CPU in children
        // that live less than a sample; the shell's count of its waited-for children has it.
        let mut shell = std::process::Command::new("sh")
            .args(["-c", "while :; do /bin/true; done"])
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = shell.id() as i32;
        let metrics = Arc::new(DynoMetrics::default());
        let app_id = Uuid::from_u128(fastrand::u128(..));
        let hz = rustix::param::clock_ticks_per_second();
        let sampled = metrics.sample(pgid, app_id, "app-default", "worker.1-abcde", "worker.1", "worker");
        let leader = || procfs::parse_usage(&std::fs::read_to_string(format!("/proc/{pgid}/stat")).unwrap()).unwrap();
        metrics.sample_now(100, SAMPLE_EVERY, Duration::from_secs(60), hz);
        let before = leader();
        std::thread::sleep(Duration::from_secs(1));
        let after = leader();
        metrics.sample_now(101, Duration::from_secs(1), Duration::from_secs(60), hz);
        let own = after.cpu_ticks - before.cpu_ticks;
        let all = own + after.reaped_ticks - before.reaped_ticks;
        let seconds = metrics.dynos(app_id, 0, i64::MAX)[0].seconds.clone();
        let counted = seconds[1].cpu_percent / 100.0 * hz as f64;
        let _ = shell.kill();
        let _ = shell.wait();
        drop(sampled);
        // The row is what it says: most of the CPU went to the children.
        assert!(all >= own * 2 && all >= 5, "own {own} ticks, with the children's {all}");
        assert!(counted >= all as f64 * 0.7, "counted {counted} ticks; the group used {all} ({own} its shell's own)");
    }

    #[test]
    fn a_busy_group_is_sampled_with_its_cpu_memory_and_lines() {
        let metrics = Arc::new(DynoMetrics::default());
        let me = procfs::stat(std::process::id() as i32).unwrap();
        let app_id = Uuid::from_u128(fastrand::u128(..));
        let hz = rustix::param::clock_ticks_per_second();
        let sampled = metrics.sample(me.pgrp, app_id, "app-default", "web.1-abcde", "web.1", "web");
        assert!(metrics.sample_now(100, SAMPLE_EVERY, Duration::from_secs(2), hz).is_empty());
        // Busy for a while, so the next sample counts CPU time.
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(300) {
            std::hint::black_box(fastrand::u64(..));
        }
        let lines = metrics.sample_now(101, SAMPLE_EVERY, Duration::from_secs(2), hz);
        assert_eq!(lines.len(), 1, "two seconds since the start: the lines are due");
        let (app, dyno, text) = &lines[0];
        assert_eq!((app.as_str(), dyno.as_str()), ("app-default", "web.1"), "the process name, as Heroku's");
        let text: Vec<&str> = text.lines().collect();
        assert!(text[0].starts_with(&format!("source=web.1 dyno=heroku.{app_id}.")), "{text:?}");
        assert!(text[1].starts_with(&format!("source=web.1 dyno=heroku.{app_id}.")), "{text:?}");
        assert!(text[0].contains(" sample#load_avg_1m=") && text[0].contains(" sample#cpu_percent="), "{text:?}");
        assert!(text[1].contains(" sample#memory_total=") && text[1].ends_with("MB"), "{text:?}");
        let series = metrics.dynos(app_id, 0, i64::MAX);
        assert_eq!(series.len(), 1);
        let seconds = &series[0].seconds;
        assert_eq!(seconds.iter().map(|s| s.at).collect::<Vec<_>>(), [100, 101]);
        assert!(seconds[1].cpu_percent > 5.0, "{seconds:?}");
        assert!(seconds[1].memory_rss_bytes > 1 << 20, "{seconds:?}");
        assert!(metrics.dynos(Uuid::from_u128(fastrand::u128(..)), 0, i64::MAX).is_empty());
        assert!(metrics.dynos(app_id, 101, 102)[0].seconds.len() == 1);
        drop(sampled);
        // Stopped: its seconds stay for the hour, then go.
        assert!(metrics.sample_now(102, SAMPLE_EVERY, Duration::from_secs(2), hz).is_empty());
        assert_eq!(metrics.dynos(app_id, 0, i64::MAX)[0].seconds.len(), 2);
        forget_stopped(&mut metrics.inner.lock().unwrap().series, 101 + WINDOW_SECONDS);
        assert!(metrics.dynos(app_id, 0, i64::MAX).is_empty());
    }

    #[test]
    fn a_reaped_child_s_bytes_are_counted_once() {
        /// A member's pid and bytes read and written.
        type Bytes = (i32, u64, u64);
        let member = |parent: i32, read: u64, write: u64| Counted { parent, read, write, ..Counted::default() };
        // Before: a shell (10) running a command (11) that ran one of its own (12), and a
        // process (13) whose parent (1) is not in the group.
        let before = HashMap::from([
            ((10, 0), member(1, 0, 0)),
            ((11, 0), member(10, 5, 50)),
            ((12, 0), member(11, 7, 70)),
            ((13, 0), member(1, 9, 90)),
        ]);
        // (who is still there, what each that is grew by, what the growth becomes)
        let rows: [(&[i32], &[Bytes], &[Bytes]); 4] = [
            // Nothing went: nothing is taken off.
            (&[10, 11, 12, 13], &[(10, 1, 2), (11, 3, 4)], &[(10, 1, 2), (11, 3, 4)]),
            // 12 was reaped by 11, whose count took in its 7 and 70 and 1 and 10 more.
            (&[10, 11, 13], &[(10, 0, 0), (11, 8, 80)], &[(10, 0, 0), (11, 1, 10)]),
            // 11 and 12 both went; the shell took in both counts.
            (&[10, 13], &[(10, 14, 140)], &[(10, 2, 20)]),
            // 13 was reaped outside the group: the others' bytes stay.
            (&[10, 11, 12], &[(10, 4, 40)], &[(10, 4, 40)]),
        ];
        for (i, (left, grew, want)) in rows.into_iter().enumerate() {
            let now: HashMap<(i32, u64), Counted> =
                before.iter().filter(|((pid, _), _)| left.contains(pid)).map(|(k, c)| (*k, *c)).collect();
            let mut io: HashMap<i32, (u64, u64)> = grew.iter().map(|(p, r, w)| (*p, (*r, *w))).collect();
            uncount_reaped_io(&before, &now, &mut io);
            let want: HashMap<i32, (u64, u64)> = want.iter().map(|(p, r, w)| (*p, (*r, *w))).collect();
            assert_eq!(io, want, "row {i}");
        }
    }

    #[test]
    fn the_longest_stopped_dynos_go_first_past_the_limit() {
        let mut series = HashMap::new();
        for i in 0..STOPPED_KEPT + 3 {
            let key = (Uuid::nil(), format!("run.{i}"));
            let second = Second { at: 1000 + i as u32, cpu: 0, rss_kib: 0, swap_kib: 0, read: 0, write: 0 };
            series.insert(
                key,
                Series {
                    app_id: Uuid::nil(),
                    dyno: format!("run.{i}"),
                    dyno_type: "run".into(),
                    seconds: VecDeque::from([second]),
                    running: usize::from(i == 0),
                },
            );
        }
        forget_stopped(&mut series, 2000);
        assert_eq!(series.values().filter(|s| s.running == 0).count(), STOPPED_KEPT);
        assert!(series.contains_key(&(Uuid::nil(), "run.0".into())), "a running dyno is never forgotten");
        assert!(!series.contains_key(&(Uuid::nil(), "run.1".into())));
        assert!(series.contains_key(&(Uuid::nil(), format!("run.{}", STOPPED_KEPT + 2))));
    }
}
