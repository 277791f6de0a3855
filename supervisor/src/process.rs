//! A dyno's operating-system process: `sh -c COMMAND` in its own process group with only the
//! dyno's environment, its output onto the log bus (see [`crate::output`]), its group recorded
//! in the data directory (see [`crate::record`]), and its end: stopped or exited, its whole group
//! is stopped (see [`crate::group`]) before the dyno counts as gone.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};
use wharf_bus::{Publisher, Stream};
use wharf_control_api::plane::OutputWriter;

use crate::desired::DynoSpec;
use crate::record::Records;
use crate::{group, output, procfs, reaper};

/// The variables of Wharf's own environment a dyno keeps; it sees nothing else of it (not the
/// admin token), only its app's config.
const INHERITED: [&str; 4] = ["PATH", "HOME", "LANG", "TMPDIR"];

/// What `sh -c` runs before the dyno's command (its `$1`): it reads one line from its stdin, a
/// pipe that Wharf writes `go` to only once the process group is recorded (`DATA_DIR/dynos/`),
/// and exits (status 111) without running the command if the pipe closes first: a Wharf killed
/// between the fork and the record (FE33: a second `kill -9` while dynos were starting) leaves
/// no dyno that no record names and so nothing ever stops. Then stdin becomes `/dev/null`, the
/// positional parameters are cleared, and the command runs as `sh -c COMMAND` runs it (`$0` is
/// `sh`; its own variables are the gate's one `wharf_command`, which it does not export).
const GATE: &str = "IFS= read -r wharf_go || exit 111; unset wharf_go; exec </dev/null; wharf_command=$1; set --; eval \"$wharf_command\"";

/// A running dyno process and its process group.
#[derive(Debug)]
pub(crate) struct DynoProcess {
    child: Child,
    /// The group's id: the pid of the dyno's `sh`.
    pgid: i32,
    records: Option<Records>,
    /// Whether [`DynoProcess::stop`] ran: if not, dropping it kills the group.
    stopped: bool,
    /// Set when the dyno is being stopped, and dropped with it: its output is then no longer
    /// paced by its app's drains (see [`crate::output`]).
    stopping: tokio::sync::watch::Sender<bool>,
    /// The tasks forwarding its stdout and stderr: [`DynoProcess::stop`] lets them finish, so
    /// that what follows a stop in the app's stream (a one-off's `Process exited`) comes after
    /// the dyno's last line.
    forwarders: Vec<tokio::task::JoinHandle<()>>,
}

/// How long a stop waits for the dyno's output to be forwarded once its group is gone. The
/// pipes close with the group, so this bounds only a process that left the group (`setsid`)
/// holding them open.
const OUTPUT_DRAIN: Duration = Duration::from_secs(1);

/// Starts dyno `dyno` of `app` (its key): `sh -c` of the spec's command, with the spec's
/// environment, `DYNO` (Heroku's, see [`heroku_dyno`]) and, unless `port` is 0, `PORT`, in a process group of its own that is
/// recorded in `records`, and forwards its stdout and stderr lines to `publisher`. With `dir`
/// (its release's unpacked slug) it runs there, with `HOME` set to it as Heroku's dynos have
/// `HOME=/app`; without, in Wharf's working directory.
///
/// # Errors
///
/// When `sh` cannot be started.
pub(crate) fn spawn(
    spec: &DynoSpec,
    dyno: &str,
    port: u16,
    app: &str,
    publisher: &Publisher,
    records: Option<&Records>,
    dir: Option<&std::path::Path>,
) -> std::io::Result<DynoProcess> {
    spawn_teed(spec, dyno, port, app, publisher, records, dir, None)
}

/// Heroku's `DYNO` of dyno `dyno`: its process name, `web.1` for `web.1-abcde` (the dyno of
/// index 1: the `-xxxxx` only keeps names unique), as its runtime metrics lines' `source` and
/// the API's `type.N` name it, so that an app's `DYNO == "web.1"` (one dyno running a singleton
/// job) holds for exactly one running dyno (two while a roll runs an old and a new one, as on
/// Heroku); a one-off's `run.N` and a release phase's `release.N` as they are.
pub(crate) fn heroku_dyno(dyno: &str) -> &str {
    dyno.rsplit_once('-').map_or(dyno, |(process, _)| process)
}

/// [`spawn`], its output lines also pushed to `tee` when given (a release phase's
/// `output_stream_url`, see [`output::forward`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn spawn_teed(
    spec: &DynoSpec,
    dyno: &str,
    port: u16,
    app: &str,
    publisher: &Publisher,
    records: Option<&Records>,
    dir: Option<&std::path::Path>,
    tee: Option<&OutputWriter>,
) -> std::io::Result<DynoProcess> {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(GATE).arg("sh").arg(&spec.command);
    cmd.env_clear();
    for key in INHERITED {
        if let Ok(v) = std::env::var(key) {
            cmd.env(key, v);
        }
    }
    if let Some(dir) = dir {
        cmd.current_dir(dir).env("HOME", dir);
    }
    cmd.envs(&spec.env).env("DYNO", heroku_dyno(dyno));
    if port != 0 {
        cmd.env("PORT", port.to_string());
    }
    // Its own process group, so that stopping it stops what `sh` started too.
    // Its stdin is the gate's pipe (see [`GATE`]), then `/dev/null`.
    cmd.process_group(0).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let spawning = reaper::spawning();
    let mut child = cmd.spawn()?;
    let pgid = child.id().and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
    spawning.started(pgid);
    if let Some(records) = records {
        let start_time = procfs::stat(pgid).map_or(0, |p| p.start_time);
        records.add(pgid, start_time, app, dyno);
    }
    // Recorded: the command may run now. If the child is already gone, its wait says so.
    if let Some(gate) = child.stdin.take()
        && let Ok(fd) = gate.into_owned_fd()
    {
        use std::io::Write;
        let _ = std::fs::File::from(fd).write_all(b"go\n");
    }
    let (stopping, stopping_rx) = tokio::sync::watch::channel(false);
    let (p, a, d, s) = (publisher, app, dyno, &stopping_rx);
    let mut forwarders = Vec::with_capacity(2);
    if let Some(out) = child.stdout.take() {
        let (a, d, t) = (a.to_owned(), d.to_owned(), tee.cloned());
        let forward = output::forward(out, p.clone(), a, d, Stream::Stdout, s.clone(), t);
        forwarders.push(tokio::spawn(forward));
    }
    if let Some(err) = child.stderr.take() {
        let (a, d, t) = (a.to_owned(), d.to_owned(), tee.cloned());
        let forward = output::forward(err, p.clone(), a, d, Stream::Stderr, s.clone(), t);
        forwarders.push(tokio::spawn(forward));
    }
    Ok(DynoProcess { child, pgid, records: records.cloned(), stopped: false, stopping, forwarders })
}

impl DynoProcess {
    /// The process group's id.
    pub(crate) fn pgid(&self) -> i32 {
        self.pgid
    }

    /// Waits for the dyno's `sh` to exit, and returns its status as the crash line gives it.
    /// What it started may still run: [`DynoProcess::stop`] follows.
    pub(crate) async fn wait(&mut self) -> String {
        let status = self.child.wait().await;
        reaper::reaped(self.pgid);
        exit_text(status)
    }

    /// Stops the dyno's whole group, SIGTERM then SIGKILL after `grace`, whether its `sh` still
    /// runs or not, and returns once no process of it is left and its output is forwarded (at
    /// most [`OUTPUT_DRAIN`] more); then removes its record.
    pub(crate) async fn stop(mut self, grace: Duration) {
        let pgid = self.pgid;
        // What it writes on its way out must not wait for a drain to have room.
        self.stopping.send_replace(true);
        let (_, ()) = tokio::join!(self.child.wait(), group::stop_group(pgid, grace));
        reaper::reaped(pgid);
        self.stopped = true;
        let forwarders = std::mem::take(&mut self.forwarders);
        let _ = tokio::time::timeout(OUTPUT_DRAIN, async {
            for forwarder in forwarders {
                let _ = forwarder.await;
            }
        })
        .await;
        if let Some(records) = &self.records {
            records.remove(pgid);
        }
    }
}

impl Drop for DynoProcess {
    /// A dyno whose task ends without stopping it (its runtime shuts down) dies with it: SIGKILL
    /// to its group. Its record stays, for the next start to check.
    fn drop(&mut self) {
        if !self.stopped {
            group::signal(self.pgid, rustix::process::Signal::KILL);
            // Tokio reaps the unwaited `sh` later, or the reaper does: either is fine now.
            reaper::reaped(self.pgid);
        }
    }
}

/// A process's exit status as the crash log line gives it, e.g. `exit status: 3`.
pub(crate) fn exit_text(status: std::io::Result<std::process::ExitStatus>) -> String {
    match status {
        Ok(s) => s.to_string(),
        Err(e) => format!("unknown: {e}"),
    }
}

/// A free loopback port for a web dyno.
pub(crate) fn free_port() -> Option<u16> {
    std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok().map(|a| a.port())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::time::Instant;
    use wharf_bus::{Bus, BusConfig, SourceEvent};

    /// Starts dyno `sh -c SCRIPT`; SCRIPT prints the pid of a child it starts.
    async fn group_with_child(script: &str) -> (DynoProcess, i32, wharf_bus::Source) {
        let mut bus = Bus::connect(BusConfig::Embedded { capacity: 16 }).await.unwrap();
        let mut source = bus.take_source().unwrap();
        let spec = DynoSpec {
            command: script.to_owned(),
            env: BTreeMap::new(),
            port: None,
            healthcheck: None,
            release: None,
            slug: None,
        };
        let process = spawn(&spec, "worker.1-abcde", 0, "api-default", &bus.publisher, None, None).unwrap();
        let Some(SourceEvent::Batch(batch)) = source.recv().await else { panic!("the bus closed") };
        let pid = String::from_utf8_lossy(batch[0].event.message()).trim().parse().unwrap();
        (process, pid, source)
    }

    /// Whether process `pid` is gone: no zombie of it either, as Wharf reaps what it adopts.
    fn gone(pid: i32) -> bool {
        procfs::stat(pid).is_none_or(|p| p.is_zombie() && p.ppid != std::process::id() as i32)
    }

    #[tokio::test]
    async fn stopping_a_dyno_stops_what_its_shell_started_too() {
        reaper::start();
        let (process, pid, _source) = group_with_child("sleep 600 & echo $!; wait").await;
        let pgid = process.pgid();
        let start = Instant::now();
        process.stop(Duration::from_secs(10)).await;
        assert!(start.elapsed() < Duration::from_secs(5), "SIGTERM was enough");
        assert!(gone(pid), "the shell's child got SIGTERM too");
        assert!(!group::exists(pgid), "nothing of the dyno is left");
    }

    #[tokio::test]
    async fn a_dyno_that_ignores_sigterm_gets_sigkill_after_the_grace() {
        reaper::start();
        let (process, pid, _source) = group_with_child("trap '' TERM; sleep 600 & echo $!; wait").await;
        let start = Instant::now();
        process.stop(Duration::from_millis(300)).await;
        assert!(start.elapsed() >= Duration::from_millis(300), "{:?}", start.elapsed());
        assert!(gone(pid), "the shell's child got SIGKILL too");
    }

    #[tokio::test]
    async fn a_dyno_whose_shell_exited_still_has_its_children_stopped() {
        reaper::start();
        // The example: a background child that ignores SIGTERM, and a main that exits. The
        // trap is set before the child is started, so the child ignores SIGTERM from its first
        // instruction (a trap set inside the child could come after the test's SIGTERM).
        let (mut process, pid, _source) = group_with_child("trap '' TERM; sleep 600 & echo $!; exit 3").await;
        assert_eq!(process.wait().await, "exit status: 3");
        assert!(!gone(pid), "the child outlives the shell");
        let start = Instant::now();
        process.stop(Duration::from_millis(300)).await;
        assert!(start.elapsed() >= Duration::from_millis(300), "SIGTERM first: {:?}", start.elapsed());
        assert!(gone(pid), "and SIGKILL after the grace, though the shell had exited");
    }

    #[tokio::test]
    async fn output_lines_reach_the_bus_without_their_line_endings() {
        let mut bus = Bus::connect(BusConfig::Embedded { capacity: 16 }).await.unwrap();
        let mut source = bus.take_source().unwrap();
        let pipe: &'static [u8] = b"one\r\ntwo\n\nthree";
        let (_running, stopping) = tokio::sync::watch::channel(false);
        let (app, dyno) = ("api-default".into(), "web.1-abcde".into());
        output::forward(pipe, bus.publisher.clone(), app, dyno, Stream::Stderr, stopping, None).await;
        let mut got = Vec::new();
        while got.len() < 4 {
            let Some(SourceEvent::Batch(batch)) = source.recv().await else { panic!("the bus closed") };
            for r in batch {
                let e = r.event;
                assert_eq!(
                    (e.app(), e.source(), e.process(), e.stream()),
                    ("api-default", "app", "web.1-abcde", Stream::Stderr)
                );
                got.push(String::from_utf8_lossy(e.message()).into_owned());
            }
        }
        assert_eq!(got, ["one", "two", "", "three"]);
    }

    #[tokio::test]
    async fn a_dyno_s_command_runs_only_once_its_group_is_recorded() {
        reaper::start();
        let mut bus = Bus::connect(BusConfig::Embedded { capacity: 16 }).await.unwrap();
        let mut source = bus.take_source().unwrap();
        let dir = std::env::temp_dir().join(format!("wharf-gate-{}", std::process::id()));
        let records = Records::new(dir.clone());
        // The command lists the records as it starts, and says what its stdin and `$#` are.
        let command = format!("echo \"$(ls {}) $# $(cat)\"; echo \"$0\"", dir.display());
        let spec = DynoSpec { command, env: BTreeMap::new(), port: None, healthcheck: None, release: None, slug: None };
        let mut process =
            spawn(&spec, "worker.1-abcde", 0, "api-default", &bus.publisher, Some(&records), None).unwrap();
        let pgid = process.pgid();
        assert_eq!(process.wait().await, "exit status: 0");
        let mut said = Vec::new();
        while said.len() < 2 {
            let Some(SourceEvent::Batch(batch)) = source.recv().await else { panic!("the bus closed") };
            said.extend(batch.iter().map(|r| String::from_utf8_lossy(r.event.message()).into_owned()));
        }
        assert_eq!(said, [format!("{pgid} 0 "), "sh".to_owned()], "recorded first; stdin empty, no parameters");
        process.stop(Duration::from_secs(1)).await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_gate_whose_writer_is_gone_runs_nothing() {
        let marker = std::env::temp_dir().join(format!("wharf-gate-marker-{}", std::process::id()));
        let command = format!("touch {}", marker.display());
        // As a killed Wharf leaves it: the pipe's writing end closed without `go`. (Marked as
        // tokio's to reap, so that another test's reaper leaves its status to the wait.)
        let spawning = reaper::spawning();
        let mut child =
            Command::new("sh").arg("-c").arg(GATE).arg("sh").arg(&command).stdin(Stdio::piped()).spawn().unwrap();
        let pid = child.id().unwrap() as i32;
        spawning.started(pid);
        drop(child.stdin.take());
        let status = child.wait().await.unwrap();
        reaper::reaped(pid);
        assert_eq!(status.code(), Some(111));
        assert!(!marker.exists(), "the command never ran");
    }

    #[test]
    fn exit_statuses_read_as_the_crash_line_gives_them() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(exit_text(Ok(std::process::ExitStatus::from_raw(3 << 8))), "exit status: 3");
        assert_eq!(exit_text(Ok(std::process::ExitStatus::from_raw(9))), "signal: 9 (SIGKILL)");
        assert!(exit_text(Err(std::io::Error::other("gone"))).starts_with("unknown: "));
    }

    #[tokio::test]
    async fn a_dyno_sees_its_spec_s_environment_and_little_of_wharf_s() {
        assert!(std::env::var("CARGO_MANIFEST_DIR").is_ok(), "cargo sets it for tests");
        let mut bus = Bus::connect(BusConfig::Embedded { capacity: 16 }).await.unwrap();
        let mut source = bus.take_source().unwrap();
        let env = BTreeMap::from([("GREETING".to_owned(), "hello".to_owned())]);
        let command = "echo \"$GREETING $DYNO $PORT ${CARGO_MANIFEST_DIR:-unset} ${PATH:+path}\"".to_owned();
        let spec = DynoSpec { command, env, port: None, healthcheck: None, release: None, slug: None };
        let mut child = spawn(&spec, "web.1-abcde", 5006, "api-default", &bus.publisher, None, None).unwrap();
        assert_eq!(child.wait().await, "exit status: 0");
        let Some(SourceEvent::Batch(batch)) = source.recv().await else { panic!("the bus closed") };
        let said = String::from_utf8_lossy(batch[0].event.message()).into_owned();
        assert_eq!(said, "hello web.1 5006 unset path", "Heroku's DYNO: the process name");
        let mut child = spawn(&spec, "worker.1-abcde", 0, "api-default", &bus.publisher, None, None).unwrap();
        assert_eq!(child.wait().await, "exit status: 0");
        let Some(SourceEvent::Batch(batch)) = source.recv().await else { panic!("the bus closed") };
        let said = String::from_utf8_lossy(batch[0].event.message()).into_owned();
        assert_eq!(said, "hello worker.1  unset path", "no PORT for a worker");
        for (name, dyno) in [("web.12-abcde", "web.12"), ("run.3", "run.3"), ("release.4", "release.4")] {
            assert_eq!(heroku_dyno(name), dyno);
        }
    }
}
