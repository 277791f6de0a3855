//! What the supervisor reads about processes from Linux's `/proc` (proc(5)): a process's state,
//! parent, process group and start time, the members of a process group, and the boot id; for
//! dyno metrics, every process's CPU time, and a process's memory and storage I/O.
//!
//! Four fields of `/proc/PID/stat` are all it needs, so they are parsed here rather than with
//! the `procfs` crate, which would bring a large API (and its dependencies) for them.

use std::path::Path;

/// The fields of `/proc/PID/stat` (proc(5)) the supervisor uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcStat {
    /// The process id.
    pub(crate) pid: i32,
    /// Its state letter: `R`, `S`, `D`, `Z` (zombie), `T`, ...
    pub(crate) state: u8,
    /// Its parent's process id.
    pub(crate) ppid: i32,
    /// Its process group's id.
    pub(crate) pgrp: i32,
    /// When it started, in clock ticks after boot: with the pid, it names one process for the
    /// whole boot, since pids are reused.
    pub(crate) start_time: u64,
}

impl ProcStat {
    /// Whether the process has exited and waits for its parent to reap it.
    pub(crate) fn is_zombie(&self) -> bool {
        self.state == b'Z'
    }
}

/// Parses the text of `/proc/PID/stat`: `pid (comm) state ppid pgrp session ...`, where comm
/// may hold spaces and parentheses, so the fields are counted from the last `)`.
pub(crate) fn parse_stat(text: &str) -> Option<ProcStat> {
    let (head, rest) = text.rsplit_once(')')?;
    let pid = head.split_once(" (")?.0.trim().parse().ok()?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After comm: state is field 3 of proc(5), ppid 4, pgrp 5, starttime 22.
    Some(ProcStat {
        pid,
        state: *fields.first()?.as_bytes().first()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

/// The stat of process `pid`, or `None` when it does not exist (any more).
pub(crate) fn stat(pid: i32) -> Option<ProcStat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Every process's stat, as far as `/proc` can be read.
pub(crate) fn all() -> Vec<ProcStat> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()).filter_map(stat).collect()
}

/// The processes of process group `pgrp`, zombies included.
pub(crate) fn group_members(pgrp: i32) -> Vec<ProcStat> {
    all().into_iter().filter(|p| p.pgrp == pgrp).collect()
}

/// What dyno metrics read of every process's `/proc/PID/stat` (proc(5)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcUsage {
    /// The process id.
    pub(crate) pid: i32,
    /// Its state letter (`R` running, `D` uninterruptible sleep, ...).
    pub(crate) state: u8,
    /// Its parent's process id: the process that waits for it, and whose storage bytes take
    /// its own in when it does (see `metrics`).
    pub(crate) ppid: i32,
    /// Its process group's id.
    pub(crate) pgrp: i32,
    /// When it started, in clock ticks after boot.
    pub(crate) start_time: u64,
    /// CPU time used so far, user and system (`utime` + `stime`), in clock ticks.
    pub(crate) cpu_ticks: u64,
    /// CPU time of its children it has waited for (`cutime` + `cstime`), in clock ticks: what a
    /// dyno whose shell runs many short commands (`while :; do /bin/true; done`) spends is
    /// there (AU21: such a dyno at 60% of a core read 1-3% without it).
    pub(crate) reaped_ticks: u64,
}

/// Parses `/proc/PID/stat` for [`ProcUsage`]: fields counted from the last `)`, as
/// [`parse_stat`] does; utime, stime, cutime and cstime are fields 14 to 17 of proc(5).
pub(crate) fn parse_usage(text: &str) -> Option<ProcUsage> {
    let (head, rest) = text.rsplit_once(')')?;
    let pid = head.split_once(" (")?.0.trim().parse().ok()?;
    let mut fields = rest.split_whitespace();
    let state = *fields.next()?.as_bytes().first()?;
    let ppid = fields.next()?.parse().ok()?; // field 4
    let pgrp = fields.next()?.parse().ok()?; // field 5
    let utime: u64 = fields.nth(8)?.parse().ok()?; // field 14
    let stime: u64 = fields.next()?.parse().ok()?; // field 15
    // Signed in proc(5) (`%ld`); never negative in practice.
    let cutime: i64 = fields.next()?.parse().ok()?; // field 16
    let cstime: i64 = fields.next()?.parse().ok()?; // field 17
    let start_time = fields.nth(4)?.parse().ok()?; // field 22
    let reaped_ticks = u64::try_from(cutime.max(0) + cstime.max(0)).unwrap_or(0);
    Some(ProcUsage { pid, state, ppid, pgrp, start_time, cpu_ticks: utime + stime, reaped_ticks })
}

/// Every process's [`ProcUsage`], as far as `/proc` can be read: one directory listing and one
/// read per process, into one reused buffer, whatever the number of dynos.
pub(crate) fn all_usage() -> Vec<ProcUsage> {
    use std::io::Read;
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut buf = String::with_capacity(512);
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().filter(|n| n.bytes().all(|b| b.is_ascii_digit())) else { continue };
        buf.clear();
        let Ok(mut f) = std::fs::File::open(format!("/proc/{pid}/stat")) else { continue };
        if f.read_to_string(&mut buf).is_ok() {
            out.extend(parse_usage(&buf));
        }
    }
    out
}

/// A process's resident memory and swap in KiB (`VmRSS` and `VmSwap` of `/proc/PID/status`);
/// `None` when it is gone. A kernel thread or zombie has neither: zeros.
pub(crate) fn memory_kib(pid: i32) -> Option<(u64, u64)> {
    Some(parse_memory(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?))
}

fn parse_memory(status: &str) -> (u64, u64) {
    let kib = |key: &str| {
        status.lines().find_map(|l| l.strip_prefix(key)?.trim().strip_suffix("kB")?.trim().parse().ok()).unwrap_or(0)
    };
    (kib("VmRSS:"), kib("VmSwap:"))
}

/// The bytes a process caused to be read from and written to storage so far (`read_bytes` and
/// `write_bytes` of `/proc/PID/io`; readable for processes of the same user), those of the
/// children it waited for included (the kernel adds a child's counts to its parent's when the
/// parent reaps it); `None` when it is gone or unreadable.
pub(crate) fn io_bytes(pid: i32) -> Option<(u64, u64)> {
    Some(parse_io(&std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?))
}

fn parse_io(io: &str) -> (u64, u64) {
    let bytes = |key: &str| io.lines().find_map(|l| l.strip_prefix(key)?.trim().parse().ok()).unwrap_or(0);
    (bytes("read_bytes:"), bytes("write_bytes:"))
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`), which tells a record written before a
/// reboot, whose pids mean nothing now; empty when it cannot be read.
pub(crate) fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").map(|s| s.trim().to_owned()).unwrap_or_default()
}

/// The inodes of the sockets that processes of group `pgrp` hold open, from their
/// `/proc/PID/fd` links (`socket:[INODE]`).
pub(crate) fn group_sockets(pgrp: i32) -> Vec<u64> {
    let mut out = Vec::new();
    for p in group_members(pgrp) {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{}/fd", p.pid)) else { continue };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else { continue };
            let target = target.to_string_lossy();
            if let Some(inode) = target.strip_prefix("socket:[").and_then(|t| t.strip_suffix(']')) {
                out.extend(inode.parse::<u64>().ok());
            }
        }
    }
    out
}

/// The inodes of the TCP sockets listening on `port` (any address, IPv4 and IPv6), from
/// `/proc/net/tcp` and `/proc/net/tcp6`.
pub(crate) fn listening_sockets(port: u16) -> Vec<u64> {
    let mut out = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        out.extend(listeners_in(&std::fs::read_to_string(Path::new(table)).unwrap_or_default(), port));
    }
    out
}

/// The inodes of the sockets in state LISTEN (`0A`) on `port` in one `/proc/net/tcp*` table:
/// `sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode`.
fn listeners_in(table: &str, port: u16) -> Vec<u64> {
    let want = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            (f.get(1)?.ends_with(&want) && *f.get(3)? == "0A").then(|| f.get(9)?.parse().ok()).flatten()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let text = "4242 (a (b) c) Z 1 4240 4240 0 -1 4194560 93 0 0 0 0 0 0 0 20 0 1 0 123456 0 0";
        let s = parse_stat(text).unwrap();
        assert_eq!(s, ProcStat { pid: 4242, state: b'Z', ppid: 1, pgrp: 4240, start_time: 123456 });
        assert!(s.is_zombie());
        assert_eq!(parse_stat("4242 (x) S 1"), None);
    }

    #[test]
    fn this_process_is_readable_and_in_its_own_group() {
        let me = stat(std::process::id() as i32).unwrap();
        assert!(!me.is_zombie());
        assert!(group_members(me.pgrp).iter().any(|p| p.pid == me.pid));
        assert!(!boot_id().is_empty());
    }

    #[test]
    fn listening_sockets_are_found_by_port() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
            0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 111 1 0 100 0 0 10 0\n\
            1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000  1000        0 222 1 0 100 0 0 10 0\n\
            2: 0100007F:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 333 1 0 100 0 0 10 0";
        assert_eq!(listeners_in(table, 8080), [111]);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mine = group_sockets(stat(std::process::id() as i32).unwrap().pgrp);
        let listening = listening_sockets(port);
        assert_eq!(listening.len(), 1);
        assert!(mine.contains(&listening[0]));
    }

    #[test]
    fn usage_memory_and_io_are_read_from_their_files() {
        let text = "4242 (a (b) c) R 1 4240 4240 0 -1 4194560 93 0 0 0 70 30 5 7 20 0 1 0 123456 0 0";
        assert_eq!(
            parse_usage(text),
            Some(ProcUsage {
                pid: 4242,
                state: b'R',
                ppid: 1,
                pgrp: 4240,
                start_time: 123456,
                cpu_ticks: 100,
                reaped_ticks: 12
            }),
            "its own CPU time and its waited-for children's"
        );
        assert_eq!(parse_usage("4242 (x) S 1 2"), None);
        assert_eq!(parse_memory("Name:\tsh\nVmRSS:\t    1234 kB\nRssAnon:\t 1 kB\nVmSwap:\t       5 kB\n"), (1234, 5));
        assert_eq!(parse_memory("Name:\tkthreadd\n"), (0, 0));
        assert_eq!(
            parse_io("rchar: 10\nwchar: 20\nread_bytes: 4096\nwrite_bytes: 8192\ncancelled_write_bytes: 0\n"),
            (4096, 8192)
        );
        let me = std::process::id() as i32;
        let mine = all_usage().into_iter().find(|p| p.pid == me).unwrap();
        assert_eq!(mine.pgrp, stat(me).unwrap().pgrp);
        assert!(memory_kib(me).unwrap().0 > 0);
        assert!(io_bytes(me).is_some());
    }
}
