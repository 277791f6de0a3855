//! Builds (Heroku's build resource): a source archive fetched from a URL, unpacked safely, its
//! `Procfile` read, and the tree packed as a slug that is released at once.
//!
//! The source is fetched with the control plane's one client for users' URLs (`fetch.rs`:
//! the outbound policy on every resolved address, verified TLS), over `http` or `https`
//! (following up to `fetch::MAX_REDIRECTS` redirects, never from `https` to `http`), or read
//! from a `file://` path only when the operator set `[control_api] allow_file_urls`. It may be
//! at most `max_slug_bytes` (a `Content-Length` above it fails the build at once), and must
//! arrive within [`SOURCE_FETCH_TIMEOUT`]. At most `max_concurrent_builds` builds run at once;
//! the others wait their turn, `pending`. A `file://` path is percent-decoded (RFC 8089) and may
//! have no query or fragment; its host is empty or `localhost`. It must be a
//! gzip'd tar or a zip, and it is unpacked under `crate::archive`'s rules. The fetch asks for
//! the stored bytes (`Accept-Encoding: identity`); a server that gzips the archive anyway
//! (`Content-Encoding: gzip` over a `.tgz` or `.zip`) has that layer decoded
//! (`archive::decode_gzip_layer`), while a `.tgz` merely labelled so (S3 metadata) is taken as
//! it is; any other content coding fails the build, named. The source's checksum is the
//! archive's, after that decoding: the file the user uploaded. A tree with no
//! `Procfile` at its root but a single directory (as GitHub's archives have, `repo-sha/`) is
//! built from that directory, as Heroku does.
//!
//! A `Procfile` line is `type: command` (Heroku's format; blank lines and `#` comments are
//! skipped); the types are the slug's `process_types`. Wharf has no buildpacks: the source is
//! the slug, under `./app`, so the app brings what it runs (an interpreter on the machine, or
//! its own files).
//!
//! Every step writes a line to the build's output: to the app's log stream (source
//! `akkeris/build`, dyno `build`, as Akkeris' build logs) and to the build's
//! `output_stream_url` while it runs, and into the build record every 2 s while it changes
//! (`outputs::STORE_EVERY`: a `kill -9` loses at most the last seconds' lines, and the next
//! start adds why the build failed) and when it ends. A build ends
//! (`succeeded`) once its slug is released; its output then follows the release until it
//! settles (at most [`RELEASE_WAIT`]), and its last line says whether the release went live or
//! failed (its release phase or its dynos' health check), never "released" for a release that
//! did not. A build whose release a killed Wharf was still following is followed again at the
//! next start ([`ControlPlane::finish_interrupted_outputs`]).
//!
//! Why one file: a build's run, its output (the live watch, the stored lines, the log stream)
//! and the two start-up passes over builds a stopped Wharf left (failed when pending, followed
//! again when mid-release) share the output's shape and its end lines (`is_release_fate`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;
use wharf_bus::{LogEvent, Stream};
use wharf_domain::DynoType;
use wharf_domain::new_id;
use wharf_domain::timestamp::now_seconds;

use super::build_source::Source;
use super::engine::ControlPlane;
use super::error::{Error, not_found};
use super::outputs::OutputWriter;
use crate::archive;
use crate::model::{Build, BuildStatus, Change, Object, ReleaseStatus, Slug};

/// Most time a source may take to arrive, from name resolution to its last byte.
pub const SOURCE_FETCH_TIMEOUT: Duration = Duration::from_secs(600);

/// Most time a build's output waits for its release to settle before saying it is still
/// pending: a release phase (a migration) may take a while, and so may a slow health check.
const RELEASE_WAIT: Duration = Duration::from_secs(600);

/// The most bytes of a Procfile read: a Procfile is a few lines, and it is read into memory.
const MAX_PROCFILE_BYTES: u64 = 64 * 1024;

/// Reads the Procfile at `path` as UTF-8 (a leading byte order mark dropped), at most
/// [`MAX_PROCFILE_BYTES`]; the error says which of missing, too large or not UTF-8 it is.
fn read_procfile(path: &std::path::Path) -> Result<String, String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path)
        .map_err(|_| "the source has no Procfile at its root (Wharf runs no buildpacks)".to_owned())?;
    let mut bytes = Vec::new();
    file.take(MAX_PROCFILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("the Procfile cannot be read: {e}"))?;
    if bytes.len() as u64 > MAX_PROCFILE_BYTES {
        return Err(format!("the Procfile is larger than {} KiB", MAX_PROCFILE_BYTES / 1024));
    }
    let text = String::from_utf8(bytes).map_err(|_| "the Procfile is not UTF-8".to_owned())?;
    Ok(text.strip_prefix('\u{feff}').map(str::to_owned).unwrap_or(text))
}

/// Parses a Procfile: `type: command` per line; blank lines and `#` comments skipped.
pub fn parse_procfile(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, command) =
            line.split_once(':').ok_or_else(|| format!("Procfile line {}: expected `type: command`", n + 1))?;
        let (name, command) = (name.trim(), command.trim());
        DynoType::try_new(name).map_err(|e| format!("Procfile line {}: process type {name:?}: {e}", n + 1))?;
        if command.is_empty() {
            return Err(format!("Procfile line {}: the {name} command is empty", n + 1));
        }
        // The one rule every command follows (`formation::check_command`), so a build makes no
        // slug that `POST /apps/{app}/slugs` would refuse (a NUL byte cannot reach a process).
        super::formation::check_command(command)
            .map_err(|rule| format!("Procfile line {}: the {name} command {rule}", n + 1))?;
        if out.insert(name.to_owned(), command.to_owned()).is_some() {
            return Err(format!("Procfile line {}: {name} is declared twice", n + 1));
        }
    }
    if out.len() > super::slugs::MAX_PROCESS_TYPES {
        return Err(format!("the Procfile declares more than {} process types", super::slugs::MAX_PROCESS_TYPES));
    }
    if out.is_empty() {
        return Err("the Procfile declares no process type".into());
    }
    Ok(out)
}

impl ControlPlane {
    /// Plugs in where the build output lines go: the log bus (only the first call counts).
    pub fn set_build_publisher(&self, publisher: wharf_bus::Publisher) {
        let _ = self.build_publisher.set(publisher);
    }

    /// Refuses (422) a source URL a build would refuse, changing nothing: for callers that must
    /// know before they make what the build is for (a preview app).
    pub(super) fn check_source_url(&self, url: &str) -> Result<(), Error> {
        self.parse_source(url).map(|_| ())
    }

    /// Starts a build of `app` from the source at `url`: refused (422) for a URL Wharf would not
    /// fetch or an invalid checksum; otherwise the build is `pending` and runs in the background
    /// (`GET` it, or follow its output, to see how it ends).
    pub async fn create_build(
        self: &Arc<Self>,
        app: &str,
        url: &str,
        checksum: Option<&str>,
        version: Option<String>,
    ) -> Result<Build, Error> {
        let source = self.parse_source(url)?;
        let checksum = checksum.map(archive::parse_checksum).transpose().map_err(Error::Invalid)?;
        if version.as_ref().is_some_and(|v| v.len() > 256) {
            return Err(Error::Invalid("source_blob.version is longer than 256 bytes".into()));
        }
        let (build, app_key) = self
            .change(|m| {
                let a = m.app(app).ok_or_else(|| not_found("app", app))?;
                // Refused at once, not after its fetch: its release would be refused.
                super::canary_releases::refuse_during_canary(m, a.id)?;
                let now = now_seconds();
                let build = Build {
                    id: new_id(),
                    app_id: a.id,
                    source_url: url.to_owned(),
                    source_checksum: checksum.clone(),
                    source_version: version.clone(),
                    status: BuildStatus::Pending,
                    slug_id: None,
                    release_id: None,
                    output: vec![],
                    created_at: now,
                    updated_at: now,
                };
                Ok(((build.clone(), m.app_key(a).to_string()), vec![Change::Put(Object::Build(build))]))
            })
            .await?;
        let tx = self.open_output(build.id, Vec::new());
        let plane = self.clone();
        let b = build.clone();
        tokio::spawn(async move { plane.run_build(b, app_key, source, tx).await });
        Ok(build)
    }

    /// Marks every build still `pending` as `failed`: called at start, before any build runs,
    /// so a build that a stopped Wharf was running does not stay pending for ever. Its output
    /// keeps the lines stored while it ran (after a `kill -9`, all but its last seconds') and
    /// ends saying why. It also empties `DATA_DIR/slugs/incoming`, where builds and slug uploads stage
    /// their files: none runs yet, so what is there a killed run left half-written (FE21c #7;
    /// an upload's slug stays waiting, and a retried `PUT` stores it). With a store shared by
    /// replicas it does nothing: another replica may be running them, storing their lines as
    /// they run (those stay pending if their replica dies, their URLs giving the lines it stored;
    /// see the notes in ARCHITECTURE.md).
    pub async fn fail_interrupted_builds(&self) -> Result<usize, Error> {
        if self.store_changed.is_some() {
            return Ok(0);
        }
        if let Ok(incoming) = self.incoming_dir() {
            let left = std::fs::read_dir(&incoming).into_iter().flatten().flatten();
            for entry in left {
                let path = entry.path();
                let removed = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
                match removed {
                    Ok(()) => tracing::info!(path = %path.display(), "removed what an earlier run left staged"),
                    Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot remove a staged file"),
                }
            }
        }
        self.change(|m| {
            let now = now_seconds();
            let changes: Vec<Change> = m
                .apps()
                .flat_map(|a| m.builds_of(a.id))
                .filter(|b| b.status == BuildStatus::Pending)
                .map(|b| {
                    let mut output = b.output.clone();
                    output.push(" !     Build failed: Wharf stopped while it ran; start it again".to_owned());
                    Change::Put(Object::Build(Build {
                        status: BuildStatus::Failed,
                        output,
                        updated_at: now,
                        ..b.clone()
                    }))
                })
                .collect();
            Ok((changes.len(), changes))
        })
        .await
    }

    /// Finishes the output of the builds whose release a stopped Wharf was still following (a
    /// `succeeded` build with a release whose output does not end with what became of it, FE29
    /// LOW-1): called at start, like [`ControlPlane::fail_interrupted_builds`]. Each output says
    /// the restart, then follows its release as a running build's does and ends with its fate
    /// (`Released vN: it is live`, or `Release vN failed: ...`). Returns how many it follows.
    /// With a store shared by replicas it does nothing, as `fail_interrupted_builds` does.
    pub async fn finish_interrupted_outputs(self: &Arc<Self>) -> usize {
        if self.store_changed.is_some() {
            return 0;
        }
        let cut: Vec<(Build, String, Uuid, u32)> = self
            .read(|m| {
                let mut cut = Vec::new();
                for a in m.apps() {
                    for b in m.builds_of(a.id) {
                        let ended = b.output.last().is_some_and(|l| is_release_fate(l));
                        let release = b.release_id.and_then(|r| m.release(a.id, &r.to_string()));
                        if let Some(r) = release.filter(|_| b.status == BuildStatus::Succeeded && !ended) {
                            cut.push(((*b).clone(), m.app_key(a).to_string(), r.id, r.version));
                        }
                    }
                }
                cut
            })
            .await;
        let followed = cut.len();
        for (build, app_key, release_id, version) in cut {
            let out = self.open_output(build.id, build.output.clone());
            let plane = self.clone();
            tokio::spawn(async move {
                let say = |line: String| {
                    if let Some(p) = plane.build_publisher.get() {
                        let event =
                            LogEvent::builder(&app_key, "akkeris/build").process("build").stream(Stream::Platform);
                        p.publish(event.message(line.as_bytes()));
                    }
                    out.push(line);
                };
                say(format!(" !     Wharf restarted while v{version} was being released; following it again"));
                say(plane.release_outcome(build.app_id, release_id, version).await);
                plane.record_build_end(build.id, None, &out).await;
                plane.forget_output(&out);
            });
        }
        followed
    }

    /// Returns once the app `app_id` no longer exists (at once if it is gone already).
    async fn app_gone(&self, app_id: Uuid) {
        self.until(|m| m.apps().all(|a| a.id != app_id)).await;
    }

    /// Returns once `done` holds of the model (at once if it does already); never, if the
    /// model's changes end first (the plane is going away).
    pub(super) async fn until(&self, done: impl Fn(&crate::model::Model) -> bool) {
        let mut changes = self.subscribe();
        loop {
            if self.read(&done).await {
                return;
            }
            if changes.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

    async fn run_build(self: Arc<Self>, build: Build, app_key: String, source: Source, out: OutputWriter) {
        let say = |line: String| {
            if let Some(p) = self.build_publisher.get() {
                let event = LogEvent::builder(&app_key, "akkeris/build").process("build").stream(Stream::Platform);
                p.publish(event.message(line.as_bytes()));
            }
            out.push(line);
        };
        // At most `max_concurrent_builds` builds run at once; the others wait in turn (a
        // semaphore is fair), still `pending`, and say so. A slot is held from the fetch to
        // the release, not while the release phase runs.
        let max = self.deploy().map_or(1, |d| d.max_concurrent_builds.max(1));
        let slots = self.build_slots.get_or_init(|| Arc::new(tokio::sync::Semaphore::new(max))).clone();
        let staging = self.incoming_dir().map(|d| d.join(format!("build-{}", build.id)));
        // The app's newest release when the build started: code released after it came from
        // a newer source, which this build's release then replaces (see `newer_code`).
        let started_after = self.read(|m| m.latest_release(build.app_id).map_or(0, |r| r.version)).await;
        let work = async {
            let slot = match slots.clone().try_acquire_owned() {
                Ok(slot) => slot,
                Err(_) => {
                    say(format!(
                        "-----> Waiting for a build slot: {max} builds are running on this server \
                         (control_api.max_concurrent_builds)"
                    ));
                    slots.acquire_owned().await.expect("the build slots are never closed")
                }
            };
            let outcome = match &staging {
                Ok(staging) => self.build_steps(&build, &app_key, &source, staging, &say).await,
                Err(e) => Err(e.to_string()),
            };
            drop(slot);
            outcome
        };
        // Deleting the app cancels the build (FE21c #6): its fetch or wait stops where it is
        // and its slot frees, rather than holding a slot for a release no app will take.
        let outcome = tokio::select! {
            outcome = work => outcome,
            () = self.app_gone(build.app_id) => {
                tracing::info!(build = %build.id, app = app_key, "a build was cancelled: its app was deleted");
                Err("cancelled: its app was deleted while it ran".to_owned())
            }
        };
        if let Ok(staging) = &staging {
            let _ = tokio::fs::remove_dir_all(staging).await;
        }
        let (status, slug_id, release_id) = match &outcome {
            Ok((slug, release)) => (BuildStatus::Succeeded, Some(*slug), Some(release.0)),
            Err(e) => {
                say(format!(" !     Build failed: {e}"));
                tracing::info!(build = %build.id, app = app_key, error = %e, "a build failed");
                (BuildStatus::Failed, None, None)
            }
        };
        // The build is over once its slug is released: record it now. Its output goes on until
        // the release settles, so that its last line says what became of the release (Heroku's
        // `git push` waits for the release phase too) rather than claiming it went live.
        self.record_build_end(build.id, Some((status, slug_id, release_id)), &out).await;
        if let Ok((slug, (release_id, version))) = outcome {
            if let Some(line) = self.read(|m| newer_code(m, build.app_id, started_after, version)).await {
                say(line);
            }
            say(format!("-----> Releasing v{version} of slug {slug}: waiting for its release phase and new dynos"));
            // Stored at once, as the build's end above: a `kill -9` while the release phase runs
            // (minutes, maybe) would otherwise take these lines with it.
            self.record_build_end(build.id, None, &out).await;
            say(self.release_outcome(build.app_id, release_id, version).await);
            self.record_build_end(build.id, None, &out).await;
        }
        self.forget_output(&out);
    }

    /// Stores the build's output so far (capped: `outputs.rs`) and, when given, its status,
    /// slug and release; the outputs of its app's builds past `KEPT_OUTPUTS` are dropped.
    async fn record_build_end(
        &self,
        build: Uuid,
        ended: Option<(BuildStatus, Option<Uuid>, Option<Uuid>)>,
        out: &OutputWriter,
    ) {
        let kept = out.lines();
        let stored = self
            .change(|m| {
                let Some(b) = m.build(build) else { return Ok(((), vec![])) };
                let mut b = Build { output: kept.clone(), updated_at: now_seconds(), ..b.clone() };
                if let Some((status, slug_id, release_id)) = ended {
                    (b.status, b.slug_id, b.release_id) = (status, slug_id, release_id);
                }
                let mut changes = super::outputs::dropped_outputs(m, b.app_id, b.id);
                changes.push(Change::Put(Object::Build(b)));
                Ok(((), changes))
            })
            .await;
        if let Err(e) = stored {
            tracing::warn!(build = %build, error = %e, "cannot record how a build ended");
        }
    }

    /// Waits (at most [`RELEASE_WAIT`]) for release `version` of the app to leave `pending`,
    /// and says in one output line what became of it: live, failed (its release phase, or its
    /// new dynos' health check; the release before keeps serving), still pending, or gone.
    pub(super) async fn release_outcome(&self, app_id: Uuid, release_id: Uuid, version: u32) -> String {
        let mut changes = self.subscribe();
        let status = |m: &crate::model::Model| m.release(app_id, &release_id.to_string()).map(|r| r.status);
        let waited = tokio::time::timeout(RELEASE_WAIT, async {
            loop {
                match self.read(status).await {
                    Some(ReleaseStatus::Pending) => {}
                    settled => return settled,
                }
                if changes.changed().await.is_err() {
                    return Some(ReleaseStatus::Pending);
                }
            }
        })
        .await;
        // A release held by a canary release settles with its outcome, which the line names.
        let canary =
            self.read(|m| m.canary_release_making(release_id).map(|c| (c.canary_app.clone(), c.outcome.clone()))).await;
        if let Some((canary_app, outcome)) = canary {
            let outcome = outcome.unwrap_or_default();
            return match waited {
                Ok(Some(ReleaseStatus::Succeeded)) => {
                    format!("-----> Released v{version}: it is live, after its canary on {canary_app} ({outcome})")
                }
                Ok(Some(ReleaseStatus::Failed)) => format!(
                    " !     Release v{version} failed in its canary on {canary_app}: {outcome}; the release before \
                     keeps serving"
                ),
                Ok(None) => format!(" !     Release v{version} no longer exists (its app was deleted)"),
                Ok(Some(ReleaseStatus::Pending)) | Err(_) => format!(
                    "-----> Release v{version} is still in its canary on {canary_app} after {}s; GET \
                     /apps/{{app}}/canary-releases says how it ends",
                    RELEASE_WAIT.as_secs()
                ),
            };
        }
        // A release superseded before its dynos came up settled with the newer one's outcome
        // (`settle_release`): the line names the release that is live, or that failed with it.
        let (live, failed_with) = self
            .read(|m| {
                let live = m.current_release(app_id).map(|r| r.version);
                let this = m.release(app_id, &release_id.to_string());
                let failed_with = this.and_then(|t| {
                    let newer = m.releases_of(app_id).into_iter().filter(|r| r.version > version);
                    newer
                        .filter(|r| r.status == ReleaseStatus::Failed && r.updated_at == t.updated_at)
                        .map(|r| r.version)
                        .max()
                });
                (live, failed_with)
            })
            .await;
        match waited {
            Ok(Some(ReleaseStatus::Succeeded)) => match live.filter(|l| *l != version) {
                Some(live) => format!(
                    "-----> Released v{version}: superseded by v{live}, which is live (v{version} never ran on its own)"
                ),
                None => format!("-----> Released v{version}: it is live"),
            },
            Ok(Some(ReleaseStatus::Failed)) if let Some(newer) = failed_with => format!(
                " !     Release v{version} failed: v{newer} superseded it before its dynos came up, and v{newer}'s \
                 release phase or new dynos' health check failed; the release before keeps serving"
            ),
            Ok(Some(ReleaseStatus::Failed)) => format!(
                " !     Release v{version} failed: its release phase or its new dynos' health check failed, and the \
                 release before keeps serving (the app's log stream, source akkeris/supervisor, says which)"
            ),
            Ok(None) => format!(" !     Release v{version} no longer exists (its app was deleted)"),
            Ok(Some(ReleaseStatus::Pending)) | Err(_) => format!(
                "-----> Release v{version} is still pending after {}s; GET /apps/{{app}}/releases/{release_id} says \
                 how it ends",
                RELEASE_WAIT.as_secs()
            ),
        }
    }

    /// Fetch, check, unpack, read the Procfile, pack, store and release: the slug's id and the
    /// release's (id, version), or what went wrong.
    async fn build_steps(
        &self,
        build: &Build,
        app_key: &str,
        source: &Source,
        staging: &Path,
        say: &impl Fn(String),
    ) -> Result<(Uuid, (Uuid, u32)), String> {
        let deploy = self.deploy().ok_or("this control API builds nothing")?.clone();
        tokio::fs::create_dir_all(staging)
            .await
            .map_err(|e| format!("cannot create the build directory: {}", crate::os_error::words(&e)))?;
        let archive_path = staging.join("source");
        say(format!("-----> Fetching source {}", super::fetch::shown(&build.source_url)));
        let fetched =
            tokio::time::timeout(SOURCE_FETCH_TIMEOUT, self.fetch_source(source, &archive_path, deploy.max_slug_bytes))
                .await
                .unwrap_or_else(|_| {
                    Err(format!("the source did not arrive within {}s", SOURCE_FETCH_TIMEOUT.as_secs()))
                })?;
        let (fetched, coding) = fetched;
        say(format!("       {fetched} bytes"));
        let limits = deploy.unpack_limits;
        if coding == super::fetch::Coding::Gzip {
            let (src, max) = (archive_path.clone(), deploy.max_slug_bytes);
            let decoded = tokio::task::spawn_blocking(move || archive::decode_gzip_layer(&src, max))
                .await
                .map_err(|e| format!("the build's worker failed: {e}"))?
                .map_err(|e| format!("the source is refused: {e}"))?;
            if decoded {
                say("       (its server gzip-compressed the archive on the fly, Content-Encoding: gzip: decoded)"
                    .into());
            }
        }
        let (src, want) = (archive_path.clone(), build.source_checksum.clone());
        let tree = staging.join("tree");
        let slug_file = staging.join("slug.tar.gz");
        let (tree2, slug2) = (tree.clone(), slug_file.clone());
        let (checksum, unpacked, root, process_types, size) = tokio::task::spawn_blocking(move || {
            let checksum = archive::sha256_file(&src)
                .map_err(|e| format!("cannot read the source: {}", crate::os_error::words(&e)))?;
            if let Some(want) = want
                && want != checksum
            {
                return Err(format!("checksum mismatch: source_blob.checksum is {want}, the source is {checksum}"));
            }
            std::fs::create_dir_all(&tree2).map_err(|e| format!("cannot unpack: {}", crate::os_error::words(&e)))?;
            let unpacked = archive::unpack(&src, &tree2, limits).map_err(|e| format!("the source is refused: {e}"))?;
            let root = app_root(&tree2);
            let procfile = read_procfile(&root.join("Procfile"))?;
            let process_types = parse_procfile(&procfile)?;
            let size = archive::pack_tar_gz(&root, "app", &slug2)
                .map_err(|e| format!("cannot pack the slug: {}", crate::os_error::words(&e)))?;
            Ok((checksum, unpacked, root, process_types, size))
        })
        .await
        .map_err(|e| format!("the build's worker failed: {e}"))??;
        let _ = root;
        say(format!("       {checksum}"));
        say(format!("-----> Unpacked {} entries, {} bytes", unpacked.entries, unpacked.bytes));
        let types: Vec<&str> = process_types.keys().map(String::as_str).collect();
        say(format!("-----> Procfile declares types -> {}", types.join(", ")));
        let slug_checksum = {
            let p = slug_file.clone();
            tokio::task::spawn_blocking(move || archive::sha256_file(&p))
                .await
                .map_err(|e| format!("the build's worker failed: {e}"))?
                .map_err(|e| format!("cannot read the slug: {}", crate::os_error::words(&e)))?
        };
        let slug_id = new_id();
        let stored = self.slug_archive(slug_id).ok_or("this control API stores no slugs")?;
        // The record first, then the archive: an archive in `slugs/` without a record is a
        // stray that the slug retention removes (see `slug_retention`).
        let made = self
            .change(|m| {
                let a = m.apps().find(|a| a.id == build.app_id).ok_or_else(|| not_found("app", app_key))?;
                let now = now_seconds();
                let slug = Slug {
                    id: slug_id,
                    app_id: a.id,
                    process_types: process_types.clone(),
                    commit: build.source_version.clone(),
                    commit_description: None,
                    checksum: Some(slug_checksum.clone()),
                    image: None,
                    size: Some(size),
                    upload_token_sha256: None,
                    upload_expires_at: None,
                    created_at: now,
                    updated_at: now,
                };
                Ok(((), vec![Change::Put(Object::Slug(Box::new(slug)))]))
            })
            .await;
        if let Err(e) = made {
            return Err(format!("cannot record the slug: {e}"));
        }
        if let Err(e) = tokio::fs::rename(&slug_file, &stored).await {
            let _ = self.change(|m| Ok(((), m.cascade(crate::model::Kind::Slug, slug_id)))).await;
            return Err(format!("cannot store the slug: {}", crate::os_error::words(&e)));
        }
        say(format!("-----> Compressed slug {slug_id}: {size} bytes"));
        let release = self
            .release_slug(&build.app_id.to_string(), &slug_id.to_string(), None)
            .await
            .map_err(|e| format!("cannot release the slug: {e}"))?;
        Ok((slug_id, (release.id, release.version)))
    }
}

/// The warning for a build released as `version` that started when the app's newest release
/// was `started_after`, when code was released in between (a newer build, a rollback, a
/// promotion): releases are made in the order builds finish, as on Heroku, so this one's older
/// source now replaces that code, and its output says so, with the way back. `None` when no
/// code was released meanwhile (failed releases do not count: their code never ran).
/// Whether an output line is one [`ControlPlane::release_outcome`] ends a build's output with.
pub(super) fn is_release_fate(line: &str) -> bool {
    ["-----> Released v", " !     Release v", "-----> Release v"].iter().any(|p| line.starts_with(p))
}

fn newer_code(m: &crate::model::Model, app_id: Uuid, started_after: u32, version: u32) -> Option<String> {
    use crate::model::{Brings, ReleaseStatus};
    let newer = m
        .releases_of(app_id)
        .into_iter()
        .filter(|r| r.version > started_after && r.version < version)
        .filter(|r| r.brings == Brings::Code && r.status != ReleaseStatus::Failed)
        .max_by_key(|r| r.version)?;
    Some(format!(
        " !     v{} ({}) was released after this build started: releases are made in the order builds finish \
         (as on Heroku), so v{version} replaces it; roll back to v{} to undo",
        newer.version, newer.description, newer.version
    ))
}

/// The directory a build is made of: the tree itself, or its single directory when the tree
/// has no Procfile and holds nothing else (GitHub's `repo-sha/`).
fn app_root(tree: &Path) -> PathBuf {
    if tree.join("Procfile").is_file() {
        return tree.to_path_buf();
    }
    let entries: Vec<_> = std::fs::read_dir(tree).map(|d| d.flatten().collect()).unwrap_or_default();
    match entries.as_slice() {
        [only] if only.file_type().is_ok_and(|t| t.is_dir()) => only.path(),
        _ => tree.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn builds_a_stopped_wharf_left_pending_are_failed_at_start_and_no_others() {
        let p = super::super::tests::plane().await;
        let data_dir = super::super::tests::with_deploy(&p, "interrupted", 5);
        // What a killed run left staged: a build's directory and a partial upload.
        let incoming = data_dir.join("slugs").join("incoming");
        std::fs::create_dir_all(incoming.join("build-1").join("source")).unwrap();
        std::fs::write(incoming.join("build-1").join("source").join("a"), "x").unwrap();
        std::fs::write(incoming.join("2.upload"), "partial").unwrap();
        let app = p.create_app("api".parse().unwrap(), "default").await.unwrap();
        let build = |status: BuildStatus| Build {
            output: vec!["-----> Fetching source https://example.com/s.tgz".into()],
            ..super::super::release_tests::test_build(app.id, status)
        };
        let (pending, done, failed) =
            (build(BuildStatus::Pending), build(BuildStatus::Succeeded), build(BuildStatus::Failed));
        let puts = [&pending, &done, &failed].map(|b| Change::Put(Object::Build(b.clone())));
        p.change(|_| Ok(((), puts.to_vec()))).await.unwrap();
        assert_eq!(p.fail_interrupted_builds().await.unwrap(), 1);
        let statuses = p.read(|m| [&pending, &done, &failed].map(|b| m.build(b.id).unwrap().status)).await;
        assert_eq!(statuses, [BuildStatus::Failed, BuildStatus::Succeeded, BuildStatus::Failed]);
        let said = p.read(|m| m.build(pending.id).unwrap().output.clone()).await;
        assert!(said.last().unwrap().contains("Wharf stopped while it ran"), "{said:?}");
        assert_eq!(p.fail_interrupted_builds().await.unwrap(), 0, "nothing left to fail");
        assert_eq!(std::fs::read_dir(&incoming).unwrap().count(), 0, "incoming/ is emptied");
        assert!(incoming.is_dir(), "incoming/ itself stays");
        std::fs::remove_dir_all(data_dir).unwrap();
    }

    /// FE29/FE33 LOW-1: a build whose release a killed Wharf was still following ended its
    /// output at `Compressed slug`; the next start follows the release and says its fate.
    #[tokio::test]
    async fn a_build_cut_mid_release_by_a_restart_ends_its_output_with_the_release_s_fate() {
        let p = Arc::new(super::super::tests::plane().await);
        let app = p.create_app("api".parse().unwrap(), "default").await.unwrap();
        let v1 = p.read(|m| m.latest_release(app.id).unwrap().clone()).await;
        let build = |output: &str| Build {
            release_id: Some(v1.id),
            output: vec![output.to_owned()],
            ..super::super::release_tests::test_build(app.id, BuildStatus::Succeeded)
        };
        let (cut, ended) = (build("-----> Compressed slug s: 10 bytes"), build("-----> Released v1: it is live"));
        let puts = [&cut, &ended].map(|b| Change::Put(Object::Build(b.clone())));
        p.change(|_| Ok(((), puts.to_vec()))).await.unwrap();
        assert_eq!(p.finish_interrupted_outputs().await, 1, "only the cut one");
        let said = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let output = p.read(|m| m.build(cut.id).unwrap().output.clone()).await;
                if output.last().is_some_and(|l| is_release_fate(l)) {
                    return output;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the cut build's output to end with its release's fate");
        assert_eq!(
            said,
            [
                "-----> Compressed slug s: 10 bytes",
                " !     Wharf restarted while v1 was being released; following it again",
                "-----> Released v1: it is live",
            ]
        );
        let other = p.read(|m| m.build(ended.id).unwrap().output.clone()).await;
        assert_eq!(other, ["-----> Released v1: it is live"], "an ended output is left as it is");
    }

    #[tokio::test]
    async fn a_build_s_start_and_settling_reach_the_app_s_build_hooks() {
        use crate::model::HookEvent;
        let p = super::super::tests::plane().await;
        let app = p.create_app("api".parse().unwrap(), "default").await.unwrap();
        let hook = |events: Vec<HookEvent>| crate::plane::HookInput {
            url: Some(wharf_domain::HookUrl::try_new("https://hooks.example.com/h").unwrap()),
            events: Some(events),
            secret: Some("s".into()),
            active: None,
        };
        let builds = p.create_hook("api", hook(vec![HookEvent::Build])).await.unwrap();
        let releases = p.create_hook("api", hook(vec![HookEvent::Release])).await.unwrap();
        let pending = super::super::release_tests::test_build(app.id, BuildStatus::Pending);
        // (the build put, how many build deliveries there are after it): its start, a line of
        // output (no news), its settling.
        let more_output = Build { output: vec!["-----> Fetching".into()], ..pending.clone() };
        let failed = Build { status: BuildStatus::Failed, ..more_output.clone() };
        for (put, deliveries) in [(&pending, 1), (&more_output, 1), (&failed, 2)] {
            p.change(|_| Ok(((), vec![Change::Put(Object::Build(put.clone()))]))).await.unwrap();
            let events: Vec<HookEvent> = p.hook_deliveries(builds.id).iter().map(|d| d.event).collect();
            assert_eq!(events, vec![HookEvent::Build; deliveries], "{:?}", put.status);
        }
        assert!(p.hook_deliveries(releases.id).is_empty(), "a release hook hears nothing of builds");
    }

    #[test]
    fn a_procfile_is_read_as_utf8_within_its_cap_and_a_bom_is_dropped() {
        let dir = std::env::temp_dir().join(format!("wharf-procfile-{}", wharf_domain::new_id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("Procfile");
        let check = |bytes: &[u8], expected: Result<&str, &str>| {
            std::fs::write(&path, bytes).unwrap();
            match (read_procfile(&path), expected) {
                (Ok(got), Ok(want)) => assert_eq!(got, want),
                (Err(got), Err(want)) => assert!(got.contains(want), "{got}"),
                (got, want) => panic!("{bytes:?}: {got:?}, expected {want:?}"),
            }
        };
        check(b"web: run\n", Ok("web: run\n"));
        check(b"\xef\xbb\xbfweb: run\n", Ok("web: run\n"));
        check(b"web: \xff\n", Err("not UTF-8"));
        check(&vec![b'#'; 64 * 1024 + 1], Err("larger than 64 KiB"));
        std::fs::remove_file(&path).unwrap();
        assert!(read_procfile(&path).unwrap_err().contains("no Procfile"));
        std::fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn procfiles_are_type_colon_command_lines() {
        let check = |text: &str, want: Result<&[(&str, &str)], &str>| match want {
            Ok(pairs) => {
                let want: BTreeMap<String, String> =
                    pairs.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect();
                assert_eq!(parse_procfile(text), Ok(want), "{text:?}");
            }
            Err(piece) => {
                let got = parse_procfile(text);
                assert!(got.as_ref().is_err_and(|e| e.contains(piece)), "{text:?}: {got:?}");
            }
        };
        check("web: python3 app.py\nworker: sh work.sh\n", Ok(&[("web", "python3 app.py"), ("worker", "sh work.sh")]));
        check("# comment\n\nweb:   exec x --port $PORT  \n", Ok(&[("web", "exec x --port $PORT")]));
        check("web: a: b\n", Ok(&[("web", "a: b")]));
        check("web python3 app.py\n", Err("expected `type: command`"));
        check("web:\n", Err("empty"));
        check("web: a\nweb: b\n", Err("twice"));
        check("We b: a\n", Err("process type"));
        check("# nothing\n", Err("no process type"));
        // The slug's rule for commands: no NUL byte, at most 8 KiB; at most so many types.
        check("web: a\0b\n", Err("with no NUL byte"));
        check(&format!("web: {}\n", "x".repeat(8193)), Err("1 to 8192 bytes"));
        check(&format!("web: {}\n", "x".repeat(8192)), Ok(&[("web", &*"x".repeat(8192))]));
        let many: String = (0..=super::super::slugs::MAX_PROCESS_TYPES).map(|i| format!("t{i}: x\n")).collect();
        check(&many, Err("more than"));
    }
}
