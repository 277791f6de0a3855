//! The local supervisor, `wharf serve`'s embedded runtime: it runs each formation entry that has
//! a command as dynos on this machine.
//!
//! A dyno is `sh -c COMMAND` in its own process group, with the app's config vars, `PORT` (web
//! dynos get a free port unless the formation names one) and `DYNO`. A web dyno is registered
//! with the control API, and so seen by the router, only once it passes its health check (a TCP
//! connect, or an HTTP `GET` of the formation's `healthcheck` path). Its output goes onto the log
//! bus as `app[web.<release>-<5 chars>]`. A dyno that exits is unregistered, logged
//! (`at=error code=H10 desc="App crashed"`) and restarted with backoff.
//!
//! Any change to an entry's command, port, health check or the app's config vars rolls it: the
//! new dynos start and become healthy, then the old ones leave the router and stop one at a
//! time. If a new dyno fails before it is healthy, the new ones stop and the old ones keep
//! serving. A change of quantity alone scales the running release.
//!
//! An app whose formation has a command belongs to the supervisor: dynos registered for it by
//! an earlier run are removed at start. Apps without commands are left to an external runtime.

#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::sync::watch;
use uuid::Uuid;
use wharf_bus::{LogEvent, Publisher, Stream};
use wharf_control_api::model::Model;
use wharf_control_api::{ControlPlane, DynoState, LocalDyno};
use wharf_domain::timestamp::now_seconds;
use wharf_domain::{DynoName, DynoType, Hostname};

/// How the supervisor runs dynos.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long a new web dyno has to pass its health check.
    pub health_timeout: Duration,
    /// How long a dyno has to exit after SIGTERM before SIGKILL.
    pub stop_grace: Duration,
    /// How long an unregistered dyno keeps running so that requests in flight finish.
    pub drain: Duration,
    /// First delay before restarting a crashed dyno; it doubles up to a minute.
    pub restart_min: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            health_timeout: Duration::from_secs(60),
            stop_grace: Duration::from_secs(10),
            drain: Duration::from_secs(1),
            restart_min: Duration::from_secs(1),
        }
    }
}

/// What one formation entry should run.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Spec {
    command: String,
    env: BTreeMap<String, String>,
    port: Option<u16>,
    healthcheck: Option<String>,
}

/// One formation entry's target: how many dynos of which spec.
type Target = Option<(u32, Spec)>;

/// The formation entries with commands, by app and type.
type Wanted = HashMap<(Uuid, String), (String, DynoType, u32, Spec)>;

/// A supervised web app, for its service.
struct WebApp {
    id: Uuid,
    name: String,
    dynos: Vec<SocketAddr>,
}

/// The formation entries with commands, and the apps among them that have web dynos. Every
/// dyno also gets `NAME_SERVICE_HOST` and `NAME_SERVICE_PORT` for each web app in its space.
fn desired(m: &Model, services: &HashMap<Uuid, Service>) -> Wanted {
    let mut out = HashMap::new();
    for app in m.apps() {
        let key = m.app_key(app).to_string();
        let mut env = BTreeMap::new();
        for other in m.apps().filter(|o| o.space_id == app.space_id) {
            if let Some(service) = services.get(&other.id) {
                let name = other.name.as_str().to_ascii_uppercase();
                env.insert(format!("{name}_SERVICE_HOST"), "127.0.0.1".to_owned());
                env.insert(format!("{name}_SERVICE_PORT"), service.port.to_string());
            }
        }
        env.extend(m.config_vars_of(app.id).map(|c| c.vars.clone()).unwrap_or_default());
        for f in m.formation_of(app.id) {
            let Some(command) = &f.command else { continue };
            let spec =
                Spec { command: command.clone(), env: env.clone(), port: f.port, healthcheck: f.healthcheck.clone() };
            out.insert((app.id, f.dyno_type.to_string()), (key.clone(), f.dyno_type.clone(), f.quantity, spec));
        }
    }
    out
}

fn web_apps(m: &Model) -> Vec<WebApp> {
    m.apps()
        .filter(|a| m.formation_of(a.id).iter().any(|f| f.command.is_some() && f.dyno_type.as_str() == "web"))
        .map(|a| WebApp {
            id: a.id,
            name: a.name.to_string(),
            dynos: m
                .dynos_of(a.id)
                .iter()
                .filter(|d| d.dyno_type.as_str() == "web")
                .filter_map(|d| format!("{}:{}", d.host, d.port).parse().ok())
                .collect(),
        })
        .collect()
}

/// A web app's service: a stable loopback port, for the life of the supervisor, that forwards
/// each connection to one of the app's healthy web dynos, round robin, so that other apps in
/// its space reach it at `NAME_SERVICE_HOST:NAME_SERVICE_PORT` whatever its dynos' ports.
struct Service {
    port: u16,
    dynos: Arc<std::sync::Mutex<Vec<SocketAddr>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Service {
    async fn start(app: &str) -> std::io::Result<Service> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let dynos = Arc::new(std::sync::Mutex::new(Vec::<SocketAddr>::new()));
        let task = tokio::spawn({
            let (dynos, app) = (dynos.clone(), app.to_owned());
            async move {
                let mut next = 0usize;
                loop {
                    let Ok((mut client, _)) = listener.accept().await else { continue };
                    let target = {
                        let d = dynos.lock().expect("service lock");
                        next = next.wrapping_add(1);
                        (!d.is_empty()).then(|| d[next % d.len()])
                    };
                    let Some(target) = target else {
                        tracing::debug!(app, "service has no healthy dyno; closing the connection");
                        continue;
                    };
                    tokio::spawn(async move {
                        if let Ok(mut upstream) = tokio::net::TcpStream::connect(target).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                        }
                    });
                }
            }
        });
        Ok(Service { port, dynos, task })
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What every dyno task needs.
#[derive(Clone)]
struct Ctx {
    plane: Arc<ControlPlane>,
    publisher: Publisher,
    settings: Settings,
}

/// A running supervisor.
#[derive(Debug)]
pub struct Supervisor {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Supervisor {
    /// Starts following the control plane's formations on the current runtime.
    pub fn start(plane: Arc<ControlPlane>, publisher: Publisher, settings: Settings) -> Supervisor {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(Ctx { plane, publisher, settings }, stopped));
        Supervisor { stop, task }
    }

    /// Stops every dyno (each leaves the router first) and returns when they are gone.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn run(ctx: Ctx, mut stopped: watch::Receiver<bool>) {
    let mut snapshots = ctx.plane.subscribe();
    // Dynos an earlier run registered for apps the supervisor runs are gone with that run.
    let stale: Vec<(String, String)> = ctx
        .plane
        .read(|m| {
            let wanted = desired(m, &HashMap::new());
            m.apps()
                .filter(|a| wanted.keys().any(|(id, _)| *id == a.id))
                .flat_map(|a| m.dynos_of(a.id).into_iter().map(|d| (a.id.to_string(), d.name.to_string())))
                .collect()
        })
        .await;
    for (app, dyno) in stale {
        let _ = ctx.plane.delete_dyno(&app, &dyno).await;
    }
    let mut restarts = ctx.plane.subscribe_restarts();
    let mut groups: HashMap<(Uuid, String), Group> = HashMap::new();
    let mut services: HashMap<Uuid, Service> = HashMap::new();
    loop {
        let web = ctx.plane.read(web_apps).await;
        for app in &web {
            if let std::collections::hash_map::Entry::Vacant(slot) = services.entry(app.id) {
                match Service::start(&app.name).await {
                    Ok(s) => {
                        slot.insert(s);
                    }
                    Err(e) => tracing::warn!(app = app.name, error = %e, "cannot open the app's service port"),
                }
            }
            if let Some(s) = services.get(&app.id) {
                *s.dynos.lock().expect("service lock") = app.dynos.clone();
            }
        }
        services.retain(|id, _| web.iter().any(|a| a.id == *id));
        let wanted = ctx.plane.read(|m| desired(m, &services)).await;
        for (key, (app, dyno_type, quantity, spec)) in &wanted {
            let target = Some((*quantity, spec.clone()));
            match groups.get(key) {
                Some(Group { target: tx, .. }) => {
                    tx.send_if_modified(|t| {
                        let changed = *t != target;
                        *t = target.clone();
                        changed
                    });
                }
                None => {
                    let (tx, rx) = watch::channel(target);
                    let (orders, orders_rx) = tokio::sync::mpsc::unbounded_channel();
                    let task = tokio::spawn(manage(ctx.clone(), key.0, app.clone(), dyno_type.clone(), rx, orders_rx));
                    groups.insert(key.clone(), Group { target: tx, orders, task });
                }
            }
        }
        let gone: Vec<_> = groups.keys().filter(|k| !wanted.contains_key(*k)).cloned().collect();
        for key in gone {
            if let Some(g) = groups.remove(&key) {
                g.stop().await;
            }
        }
        loop {
            tokio::select! {
                changed = snapshots.changed() => if changed.is_err() { return stop_all(groups).await } else { break },
                restart = restarts.recv() => match restart {
                    Ok(r) => order(&groups, r),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "restart requests came faster than they were handled");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return stop_all(groups).await,
                },
                () = until(&mut stopped) => return stop_all(groups).await,
            }
        }
    }
}

/// A formation entry's task and how to reach it.
struct Group {
    target: watch::Sender<Target>,
    orders: tokio::sync::mpsc::UnboundedSender<Order>,
    task: tokio::task::JoinHandle<()>,
}

impl Group {
    async fn stop(self) {
        let _ = self.target.send(None);
        let _ = self.task.await;
    }
}

/// Hands a restart to the tasks of the app's formation entries: all of them, or the one whose
/// type the dyno has.
fn order(groups: &HashMap<(Uuid, String), Group>, r: wharf_control_api::Restart) {
    for ((app_id, dyno_type), g) in groups {
        if *app_id != r.app_id {
            continue;
        }
        let o = match &r.dyno {
            None => Order::RestartAll,
            Some(name) if name.split_once('.').is_some_and(|(t, _)| t == dyno_type) => Order::Restart(name.clone()),
            Some(_) => continue,
        };
        let _ = g.orders.send(o);
    }
}

async fn stop_all(groups: HashMap<(Uuid, String), Group>) {
    for (_, g) in groups {
        g.stop().await;
    }
}

/// A dyno's health, as its task reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    Starting,
    Healthy,
    /// It exited before it was ever healthy.
    Failed,
}

/// A dyno the supervisor runs.
struct Running {
    name: String,
    health: watch::Receiver<Health>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// What a formation entry's task is asked to do besides following its target.
enum Order {
    /// Restart every dyno, rolling.
    RestartAll,
    /// Restart one dyno: a replacement first, then the old one stops.
    Restart(String),
}

/// Runs one formation entry: scales the current release, and rolls to a new one when its spec
/// changes or a restart is asked for.
async fn manage(
    ctx: Ctx,
    app_id: Uuid,
    app: String,
    dyno_type: DynoType,
    mut target: watch::Receiver<Target>,
    mut orders: tokio::sync::mpsc::UnboundedReceiver<Order>,
) {
    let mut release = 0u32;
    let mut current: Option<Spec> = None;
    let mut failed: Option<Spec> = None;
    let mut dynos: Vec<Running> = Vec::new();
    let mut order: Option<Order> = None;
    loop {
        let want = target.borrow_and_update().clone();
        let Some((quantity, spec)) = want else { break };
        let restart_all = matches!(order, Some(Order::RestartAll)) && current.as_ref() == Some(&spec);
        if let Some(Order::Restart(name)) = order.take().filter(|_| current.as_ref() == Some(&spec)) {
            if let Some(i) = dynos.iter().position(|d| d.name == name) {
                let fresh = start_dyno(&ctx, app_id, &app, &dyno_type, release, &spec);
                if all_healthy(std::slice::from_ref(&fresh), ctx.settings.health_timeout).await {
                    let old = std::mem::replace(&mut dynos[i], fresh);
                    old.stop().await;
                } else {
                    tracing::warn!(app, dyno = name, "the replacement did not become healthy; keeping the dyno");
                    fresh.stop().await;
                }
            }
        } else if current.as_ref() == Some(&spec) && !restart_all {
            while dynos.len() < quantity as usize {
                dynos.push(start_dyno(&ctx, app_id, &app, &dyno_type, release, &spec));
            }
            while dynos.len() > quantity as usize {
                dynos.pop().expect("more than the quantity").stop().await;
            }
        } else if failed.as_ref() != Some(&spec) || restart_all {
            release += 1;
            let new: Vec<Running> =
                (0..quantity).map(|_| start_dyno(&ctx, app_id, &app, &dyno_type, release, &spec)).collect();
            if all_healthy(&new, ctx.settings.health_timeout).await {
                tracing::info!(app, dyno_type = %dyno_type, release, "release is healthy; stopping the old dynos");
                for old in dynos.drain(..) {
                    old.stop().await;
                }
                dynos = new;
                current = Some(spec);
                failed = None;
            } else {
                let text = format!(
                    "at=error code=R10 desc=\"release {release} failed its health check\" type={dyno_type}; the running dynos keep serving"
                );
                tracing::warn!(app, dyno_type = %dyno_type, release, "new release failed its health check; keeping the old one");
                ctx.publisher.publish(LogEvent::builder(&app, "akkeris/supervisor").message(text.as_bytes()));
                for d in new {
                    d.stop().await;
                }
                failed = Some(spec);
            }
        }
        order = None;
        tokio::select! {
            changed = target.changed() => if changed.is_err() { break },
            next = orders.recv() => match next {
                Some(o) => order = Some(o),
                None => break,
            },
        }
    }
    for d in dynos {
        d.stop().await;
    }
}

/// Whether every dyno becomes healthy within `timeout`; false as soon as one fails.
async fn all_healthy(dynos: &[Running], timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    for d in dynos {
        let mut health = d.health.clone();
        let settled = tokio::time::timeout_at(deadline, health.wait_for(|h| *h != Health::Starting)).await;
        match settled {
            Ok(Ok(h)) if *h == Health::Healthy => {}
            _ => {
                tracing::debug!(dyno = d.name, "dyno did not become healthy");
                return false;
            }
        }
    }
    true
}

/// Five random lowercase letters and digits, for dyno names.
fn suffix() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..5).map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char).collect()
}

fn start_dyno(ctx: &Ctx, app_id: Uuid, app: &str, dyno_type: &DynoType, release: u32, spec: &Spec) -> Running {
    let name = format!("{dyno_type}.{release}-{}", suffix());
    let (health_tx, health) = watch::channel(Health::Starting);
    let (stop, stopped) = watch::channel(false);
    let dyno = Dyno {
        ctx: ctx.clone(),
        app_id,
        app: app.to_owned(),
        dyno_type: dyno_type.clone(),
        name: name.clone(),
        spec: spec.clone(),
    };
    let task = tokio::spawn(dyno.run(health_tx, stopped));
    Running { name, health, stop, task }
}

/// One dyno's life: start, check, serve, and restart after a crash until told to stop.
struct Dyno {
    ctx: Ctx,
    app_id: Uuid,
    app: String,
    dyno_type: DynoType,
    name: String,
    spec: Spec,
}

/// Why a dyno's process is no longer serving.
enum End {
    Stop,
    Exited(String),
}

impl Dyno {
    fn is_web(&self) -> bool {
        self.dyno_type.as_str() == "web"
    }

    fn log(&self, source: &str, stream: Stream, line: &[u8]) {
        let event = LogEvent::builder(&self.app, source).process(&self.name).stream(stream).message(line);
        self.ctx.publisher.publish(event);
    }

    /// Reports the dyno's state to the control plane, for `GET /apps/{app}/dynos`.
    fn report(&self, state: DynoState) {
        self.ctx.plane.local_dynos().set_state(self.app_id, &self.name, state);
    }

    async fn run(self, health: watch::Sender<Health>, mut stopped: watch::Receiver<bool>) {
        /// Takes the dyno off the control plane's list however its task ends.
        struct Listed<'a>(&'a Dyno);
        impl Drop for Listed<'_> {
            fn drop(&mut self) {
                self.0.ctx.plane.local_dynos().remove(self.0.app_id, &self.0.name);
            }
        }
        let dyno_type = self.dyno_type.clone();
        let listing =
            LocalDyno { name: self.name.clone(), dyno_type, state: DynoState::Starting, started_at: now_seconds() };
        self.ctx.plane.local_dynos().set(self.app_id, listing);
        let _listed = Listed(&self);
        let port = match (self.is_web(), self.spec.port) {
            (true, Some(p)) => p,
            (true, None) => free_port().unwrap_or(0),
            (false, _) => 0,
        };
        let mut backoff = self.ctx.settings.restart_min;
        loop {
            self.report(DynoState::Starting);
            let mut child = match self.spawn(port) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(dyno = self.name, app = self.app, error = %e, "cannot start the dyno's command");
                    self.crashed(&health, &format!("cannot start: {e}"));
                    if self.pause(&mut backoff, &mut stopped).await {
                        return;
                    }
                    continue;
                }
            };
            let end = self.serve(&mut child, port, &health, &mut stopped).await;
            match end {
                End::Stop => {
                    self.stop_process(&mut child).await;
                    return;
                }
                End::Exited(status) => {
                    self.crashed(&health, &status);
                    if self.pause(&mut backoff, &mut stopped).await {
                        return;
                    }
                }
            }
        }
    }

    fn spawn(&self, port: u16) -> std::io::Result<tokio::process::Child> {
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c").arg(&self.spec.command);
        // A dyno sees its app's config and nothing of Wharf's own environment (the admin token).
        cmd.env_clear();
        for key in ["PATH", "HOME", "LANG", "TMPDIR"] {
            if let Ok(v) = std::env::var(key) {
                cmd.env(key, v);
            }
        }
        cmd.envs(&self.spec.env).env("DYNO", &self.name);
        if port != 0 {
            cmd.env("PORT", port.to_string());
        }
        // Its own process group, so that stopping it stops what `sh` started too.
        cmd.process_group(0).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        let mut child = cmd.spawn()?;
        if let Some(out) = child.stdout.take() {
            tokio::spawn(self.forward(out, Stream::Stdout));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(self.forward(err, Stream::Stderr));
        }
        Ok(child)
    }

    /// Puts each line the dyno writes onto the log bus.
    fn forward(
        &self,
        pipe: impl AsyncRead + Unpin + Send + 'static,
        stream: Stream,
    ) -> impl Future<Output = ()> + 'static {
        let (publisher, app, name) = (self.ctx.publisher.clone(), self.app.clone(), self.name.clone());
        async move {
            let mut lines = BufReader::new(pipe).split(b'\n');
            while let Ok(Some(line)) = lines.next_segment().await {
                let line = line.strip_suffix(b"\r").unwrap_or(&line);
                publisher.publish(LogEvent::builder(&app, "app").process(&name).stream(stream).message(line));
            }
        }
    }

    /// Checks the dyno's health, registers a web dyno once healthy, and waits for the process to
    /// exit or the supervisor to stop it.
    async fn serve(
        &self,
        child: &mut tokio::process::Child,
        port: u16,
        health: &watch::Sender<Health>,
        stopped: &mut watch::Receiver<bool>,
    ) -> End {
        let mut registered = false;
        if self.is_web() {
            let check = async {
                loop {
                    if self.healthy(port).await {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            };
            tokio::select! {
                () = check => {
                    registered = self.register(port).await;
                    self.report(DynoState::Up);
                    health.send_replace(Health::Healthy);
                }
                status = child.wait() => return End::Exited(exit_text(status)),
                () = until(&mut *stopped) => return End::Stop,
            }
        } else {
            self.report(DynoState::Up);
            health.send_replace(Health::Healthy);
        }
        let end = tokio::select! {
            status = child.wait() => End::Exited(exit_text(status)),
            () = until(&mut *stopped) => End::Stop,
        };
        if registered {
            // Out of the router first; requests already on their way finish during the drain.
            let _ = self.ctx.plane.delete_dyno(&self.app_id.to_string(), &self.name).await;
            if matches!(end, End::Stop) {
                tokio::time::sleep(self.ctx.settings.drain).await;
            }
        }
        end
    }

    async fn register(&self, port: u16) -> bool {
        let (Ok(name), Ok(host)) = (DynoName::try_new(&self.name), Hostname::try_new("127.0.0.1")) else {
            return false;
        };
        let app = self.app_id.to_string();
        match self.ctx.plane.put_dyno(&app, name, self.dyno_type.clone(), host, port).await {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(dyno = self.name, app = self.app, error = %e, "cannot register the dyno");
                false
            }
        }
    }

    /// A TCP connect to the dyno's port, or an HTTP `GET` of the health check path answering
    /// 2xx or 3xx.
    async fn healthy(&self, port: u16) -> bool {
        let connect = tokio::net::TcpStream::connect(("127.0.0.1", port));
        let Ok(Ok(mut stream)) = tokio::time::timeout(Duration::from_secs(2), connect).await else {
            return false;
        };
        let Some(path) = &self.spec.healthcheck else {
            return true;
        };
        let check = async {
            let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
            stream.write_all(req.as_bytes()).await.ok()?;
            let mut head = [0u8; 12];
            tokio::io::AsyncReadExt::read_exact(&mut stream, &mut head).await.ok()?;
            Some(head.starts_with(b"HTTP/1.") && matches!(head[9], b'2' | b'3'))
        };
        tokio::time::timeout(Duration::from_secs(5), check).await.ok().flatten().unwrap_or(false)
    }

    fn crashed(&self, health: &watch::Sender<Health>, status: &str) {
        tracing::warn!(dyno = self.name, app = self.app, status, "dyno crashed");
        self.report(DynoState::Crashed);
        let text = format!("at=error code=H10 desc=\"App crashed\" dyno={} status=\"{status}\"", self.name);
        self.log("akkeris/supervisor", Stream::None, text.as_bytes());
        health.send_if_modified(|h| {
            if *h == Health::Starting {
                *h = Health::Failed;
                true
            } else {
                false
            }
        });
    }

    /// Waits before a restart; true when told to stop meanwhile.
    async fn pause(&self, backoff: &mut Duration, stopped: &mut watch::Receiver<bool>) -> bool {
        let wait = *backoff + backoff.mul_f64(fastrand::f64() * 0.5);
        *backoff = (*backoff * 2).min(Duration::from_secs(60));
        tokio::select! {
            () = tokio::time::sleep(wait) => false,
            () = until(&mut *stopped) => true,
        }
    }

    /// SIGTERM to the dyno's process group, then SIGKILL after the grace period.
    async fn stop_process(&self, child: &mut tokio::process::Child) {
        if let Some(pid) = child.id() {
            let _ = tokio::process::Command::new("kill").args(["-TERM", "--", &format!("-{pid}")]).status().await;
            if tokio::time::timeout(self.ctx.settings.stop_grace, child.wait()).await.is_ok() {
                return;
            }
            let _ = tokio::process::Command::new("kill").args(["-KILL", "--", &format!("-{pid}")]).status().await;
        }
        let _ = child.kill().await;
    }
}

fn exit_text(status: std::io::Result<std::process::ExitStatus>) -> String {
    match status {
        Ok(s) => s.to_string(),
        Err(e) => format!("unknown: {e}"),
    }
}

/// A free loopback port for a web dyno.
fn free_port() -> Option<u16> {
    std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok().map(|a| a.port())
}

/// Resolves once the stop flag is set (or its sender is gone).
async fn until(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}
