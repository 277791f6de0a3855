//! A dyno's operating-system process: `sh -c COMMAND` in its own process group with only the
//! dyno's environment, its output lines onto the log bus, and its stop (SIGTERM to the group,
//! SIGKILL after a grace period).

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use wharf_bus::{LogEvent, Publisher, Stream};

use crate::desired::DynoSpec;

/// The variables of Wharf's own environment a dyno keeps; it sees nothing else of it (not the
/// admin token), only its app's config.
const INHERITED: [&str; 4] = ["PATH", "HOME", "LANG", "TMPDIR"];

/// Starts dyno `dyno` of `app` (its key): `sh -c` of the spec's command, with the spec's
/// environment, `DYNO` and, unless `port` is 0, `PORT`, in a process group of its own, and
/// forwards its stdout and stderr lines to `publisher`.
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
) -> std::io::Result<Child> {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(&spec.command);
    cmd.env_clear();
    for key in INHERITED {
        if let Ok(v) = std::env::var(key) {
            cmd.env(key, v);
        }
    }
    cmd.envs(&spec.env).env("DYNO", dyno);
    if port != 0 {
        cmd.env("PORT", port.to_string());
    }
    // Its own process group, so that stopping it stops what `sh` started too.
    cmd.process_group(0).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let mut child = cmd.spawn()?;
    if let Some(out) = child.stdout.take() {
        tokio::spawn(forward_lines(out, publisher.clone(), app.to_owned(), dyno.to_owned(), Stream::Stdout));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(forward_lines(err, publisher.clone(), app.to_owned(), dyno.to_owned(), Stream::Stderr));
    }
    Ok(child)
}

/// Puts each line `pipe` carries onto the log bus as the app's (`app[DYNO]`), without its line
/// ending (LF or CRLF).
async fn forward_lines(
    pipe: impl AsyncRead + Unpin + Send + 'static,
    publisher: Publisher,
    app: String,
    dyno: String,
    stream: Stream,
) {
    let mut lines = BufReader::new(pipe).split(b'\n');
    while let Ok(Some(line)) = lines.next_segment().await {
        let line = line.strip_suffix(b"\r").unwrap_or(&line);
        publisher.publish(LogEvent::builder(&app, "app").process(&dyno).stream(stream).message(line));
    }
}

/// SIGTERM to the dyno's process group, then SIGKILL to it after `grace`.
pub(crate) async fn stop_process_group(child: &mut Child, grace: Duration) {
    let group = child.id().and_then(|pid| rustix::process::Pid::from_raw(i32::try_from(pid).ok()?));
    if let Some(group) = group {
        // An error means the group is already gone, which is what we want.
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::TERM);
        if tokio::time::timeout(grace, child.wait()).await.is_ok() {
            return;
        }
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
    }
    let _ = child.kill().await;
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
    use std::path::Path;
    use std::time::Instant;
    use wharf_bus::{Bus, BusConfig, SourceEvent};

    /// Starts `sh -c SCRIPT` in its own group; SCRIPT prints the pid of a child it starts.
    async fn group_with_child(script: &str) -> (Child, u32) {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(script).process_group(0).stdout(Stdio::piped()).kill_on_drop(true);
        let mut child = cmd.spawn().unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        let pid = out.next_line().await.unwrap().unwrap().trim().parse().unwrap();
        (child, pid)
    }

    /// Whether process `pid` is gone (or a zombie about to be reaped by init).
    async fn gone(pid: u32) -> bool {
        for _ in 0..100 {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            if !Path::new(&format!("/proc/{pid}")).exists() || status.contains("State:\tZ") {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    #[tokio::test]
    async fn stopping_a_dyno_stops_what_its_shell_started_too() {
        let (mut child, pid) = group_with_child("sleep 600 & echo $!; wait").await;
        let start = Instant::now();
        stop_process_group(&mut child, Duration::from_secs(10)).await;
        assert!(start.elapsed() < Duration::from_secs(5), "SIGTERM was enough");
        assert!(gone(pid).await, "the shell's child got SIGTERM too");
    }

    #[tokio::test]
    async fn a_dyno_that_ignores_sigterm_gets_sigkill_after_the_grace() {
        let (mut child, pid) = group_with_child("trap '' TERM; sleep 600 & echo $!; wait").await;
        let start = Instant::now();
        stop_process_group(&mut child, Duration::from_millis(300)).await;
        assert!(start.elapsed() >= Duration::from_millis(300), "{:?}", start.elapsed());
        assert!(gone(pid).await, "the shell's child got SIGKILL too");
    }

    #[tokio::test]
    async fn output_lines_reach_the_bus_without_their_line_endings() {
        let mut bus = Bus::connect(BusConfig::Embedded { capacity: 16 }).await.unwrap();
        let mut source = bus.take_source().unwrap();
        let pipe: &'static [u8] = b"one\r\ntwo\n\nthree";
        forward_lines(pipe, bus.publisher.clone(), "api-default".into(), "web.1-abcde".into(), Stream::Stderr).await;
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
        let spec = DynoSpec { command, env, port: None, healthcheck: None };
        let mut child = spawn(&spec, "web.1-abcde", 5006, "api-default", &bus.publisher).unwrap();
        assert!(child.wait().await.unwrap().success());
        let Some(SourceEvent::Batch(batch)) = source.recv().await else { panic!("the bus closed") };
        let said = String::from_utf8_lossy(batch[0].event.message()).into_owned();
        assert_eq!(said, "hello web.1-abcde 5006 unset path");
        let mut child = spawn(&spec, "worker.1-abcde", 0, "api-default", &bus.publisher).unwrap();
        assert!(child.wait().await.unwrap().success());
        let Some(SourceEvent::Batch(batch)) = source.recv().await else { panic!("the bus closed") };
        let said = String::from_utf8_lossy(batch[0].event.message()).into_owned();
        assert_eq!(said, "hello worker.1-abcde  unset path", "no PORT for a worker");
    }
}
