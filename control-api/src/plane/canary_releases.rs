//! Automatic canary releases (issue 22): a production app's `canary` feature, and the releases
//! it holds back until a canary app has run them under the routers' judge (`canaries.rs`).
//!
//! With the feature on, a release of the app's code (a promotion to it, a slug released to it,
//! which is also how a build releases, or a rollback) is made `pending` and the app's dynos do
//! not run it ([`Model::running_release`] passes over it). In the same commit a canary app
//! `{app}canary` is created in the app's space and the pipeline's canary stage, with the
//! release's config vars and code and one web dyno. Once that dyno passes its health check, a
//! router canary sends the feature's share of the app's requests to it.
//! [`ControlPlane::watch_canary_releases`] then settles it:
//!
//! - the soak passes (`soak_requests` canary requests counted by this process's router, and
//!   `soak_seconds` since the split started, each when set) without an abort, or an operator
//!   promotes the router canary by hand: the release's config vars and commands go to the app,
//!   whose supervisor rolls to it as to any release; the canary app is deleted;
//! - the judge aborts (or an operator does, or the canary's dyno never passes its health check,
//!   or the canary app or its split is deleted): the release is recorded `failed` with the
//!   judge's evidence, the app never ran it, and the canary app is deleted.
//!
//! Either outcome is a platform line in the app's log stream (source `akkeris/api`, process
//! `canary`) and a `canary` webhook delivery. While a canary release is open:
//!
//! - any other release of the app (config vars, commands, a slug, a build, a rollback, a
//!   promotion) and a replacement of its split are refused (409): they would either run code
//!   the judge has not seen, be overtaken by the canary's, or end the judging unasked. Scaling
//!   is not a release and goes on;
//! - the canary app is read-only ([`refuse_canary_app`], 409), so that what is judged is what
//!   is promoted: only reads, log sessions, log drains, hooks and the runtime's dyno
//!   registrations reach it (`http/canary_apps.rs` lists them).
//!
//! With the feature on, a release without a web command is refused (422): it could not be
//! judged, and would take the app's web down. So is a canary with no web dyno of the app's to
//! be compared with (409), and a change of commands through the formation (422,
//! [`refuse_unjudged_commands`]): code changes only with releases a canary judges.

use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;
use wharf_bus::{LogEvent, Stream};
use wharf_domain::timestamp::now_seconds;
use wharf_domain::{AppKey, AppName, CanaryEvidence, CanaryPolicy, CanaryState, PolicyInput, Stage, new_id};

use super::canary_baseline::baseline_too_small;
use super::canary_guards::refuse_unjudgeable;
pub(super) use super::canary_guards::{refuse_canary_app, refuse_during_canary, refuse_unjudged_commands};
use super::engine::ControlPlane;
use super::error::{Error, not_found};
use super::releases::restore_processes;
use crate::model::{
    App, Canary, CanaryFeature, CanaryRelease, CanaryReleaseState, Change, ConfigVars, Coupling, Formation, Kind,
    Model, Object, Release, ReleaseStatus,
};

/// The canary's share of the app's requests, in percent, when the first `PATCH` names none.
pub const DEFAULT_CANARY_WEIGHT: f64 = 10.0;

/// Canary requests without an abort before the release goes to the app, when the first `PATCH`
/// names none: ten times the judge's default `min_requests`, so that the judge has had the
/// chance to act.
pub const DEFAULT_SOAK_REQUESTS: u64 = 1000;

/// Seconds of soak when the first `PATCH` names none on a control API with no router in its
/// process (routers are remote there, so only time can be counted): ten minutes.
pub const DEFAULT_SOAK_SECONDS: u64 = 600;

/// The longest soak, in seconds: a week.
pub const MAX_SOAK_SECONDS: u64 = 7 * 24 * 3600;

/// How often open canary releases are looked at besides every new snapshot: the request count
/// and the time of a soak move without a commit.
const WATCH_INTERVAL: Duration = Duration::from_millis(250);

/// The process type the router sends requests to.
const WEB: &str = "web";

/// The production release a canary release is about (a copy, for the changes that end it).
pub(super) fn release_of(m: &Model, cr: &CanaryRelease) -> Result<Release, Error> {
    let release = m.releases_of(cr.app_id).into_iter().find(|r| r.id == cr.release_id);
    release.cloned().ok_or_else(|| not_found("release", &cr.release_id.to_string()))
}

/// A `PATCH /apps/{app}/features/canary` body: every field optional; absent ones keep the
/// feature's current value (or the default, the first time).
#[derive(Debug, Clone, Default)]
pub struct CanaryFeatureInput {
    /// Whether new releases go through a canary.
    pub enabled: Option<bool>,
    /// Canary requests without an abort before the release goes to the app (at least 1);
    /// `Some(None)` drops the condition.
    pub soak_requests: Option<Option<u64>>,
    /// Seconds of split without an abort before the release goes to the app (1 to
    /// [`MAX_SOAK_SECONDS`]); `Some(None)` drops the condition.
    pub soak_seconds: Option<Option<u64>>,
    /// The share and judge settings that change (`docs/canary.md`'s fields).
    pub policy: PolicyInput,
}

/// `new`'s fields where set, else `old`'s.
fn merge(old: PolicyInput, new: PolicyInput) -> PolicyInput {
    PolicyInput {
        weight: new.weight.or(old.weight),
        errors: new.errors.or(old.errors),
        false_alarm_rate: new.false_alarm_rate.or(old.false_alarm_rate),
        min_requests: new.min_requests.or(old.min_requests),
        min_errors: new.min_errors.or(old.min_errors),
        min_rate_ratio: new.min_rate_ratio.or(old.min_rate_ratio),
        min_rate_difference: new.min_rate_difference.or(old.min_rate_difference),
        slow_seconds: new.slow_seconds.or(old.slow_seconds),
    }
}

impl ControlPlane {
    /// Whether this process has a router that counts canary requests (`wharf serve`): only
    /// then can a soak wait for `soak_requests`.
    pub fn counts_canary_requests(&self) -> bool {
        self.canary_reader.get().is_some()
    }

    /// Sets the app's `canary` feature. Enabling it needs the app in a pipeline's production
    /// stage (422 otherwise): canary releases are what the canary stage is for. Settings are
    /// checked as a canary's are (422 naming the field); the soak needs `soak_requests` or
    /// `soak_seconds`, and `soak_requests` needs a router in this process to count them (422
    /// otherwise, naming `soak_seconds`). A refusal changes nothing.
    pub async fn set_canary_feature(&self, app: &str, input: CanaryFeatureInput) -> Result<CanaryFeature, Error> {
        self.change(|m| {
            let a = m.app(app).ok_or_else(|| not_found("app", app))?;
            let key = m.app_key(a);
            let old = m.canary_feature_of(a.id);
            let enabled = input.enabled.or(old.map(|f| f.enabled)).unwrap_or(false);
            if enabled && m.coupling_of(a.id).is_none_or(|c| c.stage != Stage::Production) {
                return Err(Error::Invalid(format!(
                    "app {key} is not in a pipeline's production stage: only production apps have canary releases"
                )));
            }
            let base = old
                .map(|f| PolicyInput::from(f.policy.clone()))
                .unwrap_or(PolicyInput { weight: Some(DEFAULT_CANARY_WEIGHT), ..PolicyInput::default() });
            let policy =
                CanaryPolicy::try_from(merge(base, input.policy.clone())).map_err(|e| Error::Invalid(e.to_string()))?;
            let counts = self.counts_canary_requests();
            let (default_requests, default_seconds) =
                if counts { (Some(DEFAULT_SOAK_REQUESTS), None) } else { (None, Some(DEFAULT_SOAK_SECONDS)) };
            let soak_requests = input.soak_requests.unwrap_or(old.map_or(default_requests, |f| f.soak_requests));
            let soak_seconds = input.soak_seconds.unwrap_or(old.map_or(default_seconds, |f| f.soak_seconds));
            if soak_requests == Some(0) {
                return Err(Error::Invalid("soak_requests must be at least 1".into()));
            }
            if soak_seconds.is_some_and(|s| s == 0 || s > MAX_SOAK_SECONDS) {
                return Err(Error::Invalid(format!("soak_seconds must be 1 to {MAX_SOAK_SECONDS}")));
            }
            if soak_requests.is_none() && soak_seconds.is_none() {
                return Err(Error::Invalid("a soak needs soak_requests or soak_seconds (or both)".into()));
            }
            // The judge aborts nothing before `min_errors` canary errors, so fewer `min_requests`
            // (0, say) would let a soak pass a canary it could not yet have aborted.
            if policy.min_requests() < policy.min_errors() {
                return Err(Error::Invalid(format!(
                    "min_requests ({}) must be at least min_errors ({}): the judge aborts nothing before min_errors \
                     canary errors, and a soak passes no canary before min_requests canary requests",
                    policy.min_requests(),
                    policy.min_errors()
                )));
            }
            // The judge decides nothing before `min_requests` canary requests: a soak shorter
            // than that would pass a canary nobody judged.
            if let Some(n) = soak_requests.filter(|n| *n < policy.min_requests()) {
                return Err(Error::Invalid(format!(
                    "soak_requests ({n}) must be at least min_requests ({}): the judge decides nothing before \
                     min_requests canary requests",
                    policy.min_requests()
                )));
            }
            if soak_requests.is_some() && !counts {
                return Err(Error::Invalid(
                    "this control API has no router in its process to count canary requests (its routers are \
                     remote): set soak_requests to null and soak_seconds"
                        .into(),
                ));
            }
            let now = now_seconds();
            let f = CanaryFeature {
                id: a.id,
                enabled,
                policy,
                soak_requests,
                soak_seconds,
                created_at: old.map_or(now, |f| f.created_at),
                updated_at: now,
            };
            Ok((f.clone(), vec![Change::Put(Object::CanaryFeature(f))]))
        })
        .await
    }
}

/// The step that ends a canary release its judge aborted, with the judge's evidence.
fn aborted(evidence: Option<CanaryEvidence>) -> Step {
    let decision = evidence.as_ref().map_or("aborted", |e| e.decision.as_str());
    // The judge's decision already says "aborted ..." (the router's words); say it once.
    let outcome = if decision.starts_with("aborted") {
        format!("the canary was {decision}")
    } else {
        format!("the canary was aborted: {decision}")
    };
    Step::Abort { outcome, evidence }
}

/// The change that turns the app's `canary` feature off, keeping its settings, if it is on:
/// for an app leaving the production stage, where canary releases have no meaning. Enabling it
/// again needs the app back in production.
pub(super) fn canary_feature_off(m: &Model, app_id: Uuid) -> Option<Change> {
    let f = m.canary_feature_of(app_id).filter(|f| f.enabled)?;
    let off = CanaryFeature { enabled: false, updated_at: now_seconds(), ..f.clone() };
    Some(Change::Put(Object::CanaryFeature(off)))
}

/// A free name for the canary app of `app`: `{app}canary` (the app's name cut to fit 30
/// characters), then `{app}canary2` to `{app}canary99`.
fn canary_app_name(plane: &ControlPlane, m: &Model, app: &App) -> Result<AppName, Error> {
    let space = &m.app_space(app).name;
    let cut = |n: usize| app.name.as_str().chars().take(n).collect::<String>();
    let candidates =
        std::iter::once(format!("{}canary", cut(24))).chain((2..100).map(|n| format!("{}canary{n}", cut(22))));
    for candidate in candidates {
        let Ok(name) = AppName::try_new(&candidate) else { continue };
        if plane.check_app_key_free(m, &AppKey::new(&name, space)).is_ok() {
            return Ok(name);
        }
    }
    Err(Error::Conflict(format!("no free name for a canary app of {}", m.app_key(app))))
}

/// How an open canary release moves on, as [`ControlPlane::watch_canary_releases`] finds it.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    /// The canary app's web dyno is up: start the split.
    Split,
    /// The soak passed (or the canary was promoted by hand): release to the app.
    Pass { outcome: String, evidence: Option<CanaryEvidence> },
    /// Aborted, or the canary cannot run: record the release `failed`.
    Abort { outcome: String, evidence: Option<CanaryEvidence> },
}

impl ControlPlane {
    /// When `release` (a new release of `app` that is not in `m` yet) is code the app's
    /// `canary` feature holds back, the changes that start its canary release instead of
    /// releasing it to the app: the release itself, `pending` and not run by the app, and the
    /// canary app with its config vars, formation (one web dyno), release and coupling. `None`
    /// when the feature is off or the release has no web command: the caller then releases it
    /// to the app as usual.
    pub(super) fn start_canary_release(
        &self,
        m: &Model,
        app: &App,
        release: &Release,
        promotion_id: Option<Uuid>,
    ) -> Result<Option<Vec<Change>>, Error> {
        let Some(feature) = m.canary_feature_of(app.id).filter(|f| f.enabled) else { return Ok(None) };
        refuse_unjudgeable(m, app, &release.processes)?;
        // The judge compares the canary with the app's own web dynos: without any, there is
        // nothing to compare it with (and the app's share of requests would all fail).
        let baseline =
            m.formation_of(app.id).iter().any(|f| f.dyno_type.as_str() == WEB && f.command.is_some() && f.quantity > 0);
        if !baseline {
            let key = m.app_key(app);
            return Err(Error::Conflict(format!(
                "app {key} has no web dynos for a canary of v{} to be compared with: scale its web process type \
                 up first, or turn the canary feature off for this release (PATCH /apps/{key}/features/canary \
                 {{\"enabled\": false}})",
                release.version
            )));
        }
        let now = now_seconds();
        let name = canary_app_name(self, m, app)?;
        let canary = App {
            id: new_id(),
            name,
            space_id: app.space_id,
            maintenance: false,
            maintenance_page: None,
            created_at: now,
            updated_at: now,
        };
        let canary_key = AppKey::new(&canary.name, &m.app_space(app).name).to_string();
        let mut changes = vec![Change::Put(Object::App(canary.clone()))];
        changes.push(Change::Put(Object::ConfigVars(ConfigVars {
            id: canary.id,
            vars: release.config_vars.clone(),
            updated_at: now,
        })));
        // One web dyno of the app's size; the other process types are there without dynos, so
        // that the canary's release describes the same code.
        let size = m.formation_of(app.id).iter().find(|f| f.dyno_type.as_str() == WEB).and_then(|f| f.size.clone());
        for p in &release.processes {
            let web = p.dyno_type.as_str() == WEB;
            changes.push(Change::Put(Object::Formation(Formation {
                id: new_id(),
                app_id: canary.id,
                dyno_type: p.dyno_type.clone(),
                quantity: u32::from(web),
                command: p.command.clone(),
                port: p.port,
                healthcheck: p.healthcheck.clone(),
                size: if web { size.clone() } else { None },
                created_at: now,
                updated_at: now,
            })));
        }
        let description = format!("Canary of {} v{}: {}", m.app_key(app), release.version, release.description);
        let mut canary_release =
            self.new_release(m, canary.id, description, release.config_vars.clone(), release.processes.clone());
        super::releases::bring_code(&mut canary_release, release.slug_id);
        changes.push(canary_release);
        if let Some(c) = m.coupling_of(app.id) {
            changes.push(Change::Put(Object::Coupling(Coupling {
                id: new_id(),
                pipeline_id: c.pipeline_id,
                app_id: canary.id,
                stage: Stage::Canary,
                required_contexts: vec![],
                created_at: now,
                updated_at: now,
            })));
        }
        // The app's own release waits, pending, for the canary's outcome.
        changes.push(Change::Put(Object::Release(Release { status: ReleaseStatus::Pending, ..release.clone() })));
        changes.push(Change::Put(Object::CanaryRelease(Box::new(CanaryRelease {
            id: new_id(),
            app_id: app.id,
            canary_app_id: canary.id,
            canary_app: canary_key,
            canary_id: None,
            release_id: release.id,
            promotion_id,
            policy: feature.policy.clone(),
            soak_requests: feature.soak_requests,
            soak_seconds: feature.soak_seconds,
            state: CanaryReleaseState::Starting,
            evidence: None,
            outcome: None,
            running_since: None,
            created_at: now,
            updated_at: now,
        }))));
        Ok(Some(changes))
    }

    /// Settles open canary releases as their canaries go, until the process ends: on every new
    /// snapshot (a verdict, a settled release) and every 250 ms (a soak's count and
    /// time). Each step is one commit that re-checks the state it acts on, so replicas sharing
    /// a store may all run this.
    pub async fn watch_canary_releases(self: Arc<Self>) {
        let mut snapshots = self.subscribe();
        loop {
            // Read first, so that a canary release that waits costs no turn at the store's lock.
            let due: Vec<Uuid> = self
                .read(|m| {
                    let open = m.open_canary_releases();
                    // Forget the dyno watch of canary releases that ended.
                    self.canary_dyno_down
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .retain(|(id, _), _| open.iter().any(|c| c.id == *id));
                    open.into_iter().filter(|c| self.step(m, c).is_some()).map(|c| c.id).collect()
                })
                .await;
            for id in due {
                match self.advance_canary_release(id).await {
                    Ok(Some(done)) => self.announce(&done).await,
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(canary_release_id = %id, error = %e, "cannot move a canary release on; retrying")
                    }
                }
            }
            tokio::select! {
                changed = snapshots.changed() => if changed.is_err() { return },
                () = tokio::time::sleep(WATCH_INTERVAL) => {}
            }
        }
    }

    /// Where an open canary release goes next, or `None` while it waits.
    fn step(&self, m: &Model, cr: &CanaryRelease) -> Option<Step> {
        let gone = |what: &str| Step::Abort { outcome: what.to_owned(), evidence: None };
        if m.app(&cr.canary_app_id.to_string()).is_none() {
            return Some(gone(&format!("the canary app {} was deleted", cr.canary_app)));
        }
        match cr.state {
            CanaryReleaseState::Starting => match m.latest_release(cr.canary_app_id).map(|r| r.status) {
                Some(ReleaseStatus::Succeeded) => Some(Step::Split),
                Some(ReleaseStatus::Failed) | None => Some(gone("the canary's web dyno did not pass its health check")),
                Some(ReleaseStatus::Pending) => None,
            },
            CanaryReleaseState::Running => {
                let Some(c) = cr.canary_id.and_then(|id| m.canary(id)) else {
                    return Some(gone("the canary's split was replaced or deleted"));
                };
                let (canary_down, production_down) = self.sides_down(m, cr);
                let after = self.canary_down_seconds();
                // A side that has been down ends the canary with the counts so far (FE27: the
                // production-down abort's record had `evidence: null`).
                let gone = |what: &str| Step::Abort { outcome: what.to_owned(), evidence: self.canary_evidence(c) };
                if canary_down.is_some_and(|s| s >= after) {
                    return Some(gone(&format!(
                        "the canary's web dyno has been down for {after} s or more, so it could not be judged"
                    )));
                }
                // The baseline's side alike: a production without a web dyno gives the judge
                // nothing to compare the canary with (FE22d #1).
                if production_down.is_some_and(|s| s >= after) {
                    return Some(gone(&format!(
                        "the production app has had no web dyno for {after} s or more, so the canary had nothing \
                         to be compared with"
                    )));
                }
                match c.state {
                    CanaryState::Aborted => Some(aborted(c.evidence.as_deref().cloned())),
                    CanaryState::Promoted => Some(Step::Pass {
                        outcome: "the canary was promoted by hand".into(),
                        evidence: c.evidence.as_deref().cloned(),
                    }),
                    CanaryState::Running => {
                        // The router in this process may have aborted the canary on counts past
                        // the soak before its verdict reached the model: read both at once, and
                        // never pass what the judge has aborted.
                        let live = self.canary_reader.get().and_then(|read| read(c.id));
                        if let Some((evidence, true)) = live {
                            return Some(aborted(Some(evidence)));
                        }
                        let evidence = live.map(|(e, _)| e).or_else(|| self.canary_evidence(c));
                        let requests = evidence.as_ref().map_or(0, |e| e.canary.requests);
                        let baseline = evidence.as_ref().map_or(0, |e| e.baseline.requests);
                        let elapsed = now_seconds() - cr.running_since.unwrap_or(c.created_at);
                        // Where requests are counted, the judge must have had its `min_requests`
                        // on both sides (a soak in seconds alone would otherwise pass an unjudged
                        // canary, and canary requests alone one with nothing to compare it with:
                        // production scaled away, crashed, or given a tiny share by a high weight;
                        // FE22d #1 and #2). The soak waits for the baseline's.
                        let min = cr.policy.min_requests();
                        if self.counts_canary_requests()
                            && baseline_too_small(requests, baseline, min, cr.soak_requests)
                        {
                            return Some(Step::Abort {
                                outcome: format!(
                                    "production had {baseline} requests, fewer than min_requests ({min}), while the \
                                     canary had {requests}: its weight leaves production too few requests to compare \
                                     with; lower the weight"
                                ),
                                evidence,
                            });
                        }
                        let judged = !self.counts_canary_requests() || (requests >= min && baseline >= min);
                        let counted = judged && cr.soak_requests.is_none_or(|n| requests >= n);
                        let timed = cr.soak_seconds.is_none_or(|s| elapsed >= i64::try_from(s).unwrap_or(i64::MAX));
                        (counted && timed).then(|| {
                            let outcome = format!(
                                "the soak passed: {requests} canary requests (and {baseline} of production's) in \
                                 {elapsed} s without an abort"
                            );
                            // The kept evidence's decision says how it ended, as a hand promote's and
                            // an abort's do: the judge's last "running: ..." would be stale (FE30, FE32).
                            let evidence = evidence.map(|mut e| {
                                e.decision = format!("promoted: {outcome}");
                                e
                            });
                            Step::Pass { outcome, evidence }
                        })
                    }
                }
            }
            CanaryReleaseState::Promoted | CanaryReleaseState::Aborted => None,
        }
    }

    /// Takes the next step of a canary release, worked out again on the state it commits on.
    /// Returns the record when the step ended it.
    async fn advance_canary_release(&self, id: Uuid) -> Result<Option<CanaryRelease>, Error> {
        self.change(|m| {
            let Some(cr) = m.open_canary_releases().into_iter().find(|c| c.id == id) else { return Ok((None, vec![])) };
            let Some(step) = self.step(m, cr) else { return Ok((None, vec![])) };
            let now = now_seconds();
            let app = m.app(&cr.app_id.to_string()).ok_or_else(|| not_found("app", &cr.app_id.to_string()))?;
            let release = release_of(m, cr)?;
            let mut changes = Vec::new();
            let ended = match step {
                Step::Split => {
                    let canary =
                        m.app(&cr.canary_app_id.to_string()).ok_or_else(|| not_found("app", &cr.canary_app))?;
                    if let Err(e) = super::canaries::check_split(m, app, canary) {
                        let outcome = format!("the canary cannot take the app's requests: {e}");
                        return self.end(m, cr, &release, false, outcome, None, now);
                    }
                    let c = Canary {
                        id: new_id(),
                        app_id: app.id,
                        canary_app_id: canary.id,
                        policy: cr.policy.clone(),
                        state: CanaryState::Running,
                        evidence: None,
                        created_at: now,
                        updated_at: now,
                    };
                    // A canary the app had (put by hand) gives way, as a new PUT replaces it.
                    if let Some(previous) = m.canary_of(app.id) {
                        changes.extend(m.cascade(Kind::Canary, previous.id));
                    }
                    changes.push(Change::Put(Object::Canary(c.clone())));
                    let running = CanaryRelease {
                        state: CanaryReleaseState::Running,
                        canary_id: Some(c.id),
                        running_since: Some(now),
                        updated_at: now,
                        ..cr.clone()
                    };
                    changes.push(Change::Put(Object::CanaryRelease(Box::new(running))));
                    return Ok((None, changes));
                }
                Step::Pass { outcome, evidence } => (true, outcome, evidence),
                Step::Abort { outcome, evidence } => (false, outcome, evidence),
            };
            let (passed, outcome, evidence) = ended;
            self.end(m, cr, &release, passed, outcome, evidence, now)
        })
        .await
    }

    /// The changes that end a canary release: on a pass the release's config vars and commands
    /// go to the app (which then rolls to it), on an abort the release is recorded `failed`;
    /// either way the canary app goes.
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    pub(super) fn end(
        &self,
        m: &Model,
        cr: &CanaryRelease,
        release: &Release,
        passed: bool,
        outcome: String,
        evidence: Option<CanaryEvidence>,
        now: i64,
    ) -> Result<(Option<CanaryRelease>, Vec<Change>), Error> {
        let mut changes = Vec::new();
        if passed {
            if m.config_vars_of(cr.app_id).map(|c| &c.vars) != Some(&release.config_vars) {
                let vars = ConfigVars { id: cr.app_id, vars: release.config_vars.clone(), updated_at: now };
                changes.push(Change::Put(Object::ConfigVars(vars)));
            }
            changes.extend(restore_processes(m, cr.app_id, &release.processes, now));
            // Pending while the local supervisor rolls to it (it settles it), as any release.
            let rolled = self.local.get().is_some();
            let status = if rolled { ReleaseStatus::Pending } else { ReleaseStatus::Succeeded };
            changes.push(Change::Put(Object::Release(Release { status, updated_at: now, ..release.clone() })));
        } else {
            let failed = Release {
                status: ReleaseStatus::Failed,
                description: format!("{} (canary aborted)", release.description),
                updated_at: now,
                ..release.clone()
            };
            changes.push(Change::Put(Object::Release(failed)));
        }
        if m.app(&cr.canary_app_id.to_string()).is_some() {
            changes.extend(m.cascade(Kind::App, cr.canary_app_id));
        }
        let state = if passed { CanaryReleaseState::Promoted } else { CanaryReleaseState::Aborted };
        let done = CanaryRelease { state, evidence, outcome: Some(outcome), updated_at: now, ..cr.clone() };
        changes.push(Change::Put(Object::CanaryRelease(Box::new(done.clone()))));
        Ok((Some(done), changes))
    }

    /// The platform line an ended canary release puts in its app's log stream.
    pub(super) async fn announce(&self, cr: &CanaryRelease) {
        let (at, code, desc) = match cr.state {
            CanaryReleaseState::Promoted => ("info", "canary-promoted", "Canary release promoted"),
            _ => ("error", "canary-aborted", "Canary release aborted"),
        };
        let counts = cr.evidence.as_ref().map_or(String::new(), |e| {
            format!(
                " canary_requests={} canary_errors={} baseline_requests={} baseline_errors={} p_value={:.3e}",
                e.canary.requests, e.canary.errors, e.baseline.requests, e.baseline.errors, e.p_value
            )
        });
        let outcome = cr.outcome.as_deref().unwrap_or_default().replace('"', "'");
        tracing::info!(canary_release_id = %cr.id, app_id = %cr.app_id, state = cr.state.as_str(), outcome, "canary release ended");
        let Some(publisher) = self.build_publisher.get() else { return };
        let key = self.read(|m| m.app(&cr.app_id.to_string()).map(|a| m.app_key(a).to_string())).await;
        let Some(key) = key else { return };
        let line = format!(
            "at={at} code={code} desc=\"{desc}\" canary_release_id={} release_id={} canary={} outcome=\"{outcome}\"{counts}",
            cr.id, cr.release_id, cr.canary_app
        );
        let event = LogEvent::builder(&key, "akkeris/api").process("canary").stream(Stream::Platform);
        publisher.publish(event.message(line.as_bytes()));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::canary_down::canary_dyno_down_for;
    use super::*;
    use crate::plane::{FormationUpdate, NewSlug, PromotionInput, Quantity};

    /// How a release of `prd` is asked for: each entry point the canary gate covers.
    #[derive(Debug, Clone, Copy)]
    enum Entry {
        Promotion,
        Slug,
        Rollback,
    }

    /// A plane with `stg` (staging, web command `new`) and `prd` (production, two web dynos;
    /// its v2 ran `new` and its v3 runs `old`) in pipeline `p`, `prd` with the canary feature on
    /// and a time soak.
    #[test]
    fn a_canary_app_without_a_web_dyno_is_down_from_the_first_look_until_it_has_one() {
        // (has a web dyno at each look, at second t) -> how long it has been down at each look.
        let looks = [(true, 0), (false, 10), (false, 70), (false, 130), (true, 131), (false, 200), (false, 201)];
        let expected = [None, Some(0), Some(60), Some(120), None, Some(0), Some(1)];
        let mut since = None;
        for ((has, t), want) in looks.into_iter().zip(expected) {
            assert_eq!(canary_dyno_down_for(&mut since, has, t), want, "at {t} s");
        }
    }

    async fn setup() -> ControlPlane {
        let p = crate::plane::tests::plane().await;
        p.create_pipeline(wharf_domain::PipelineName::try_new("p").unwrap()).await.unwrap();
        let web = |quantity, command: &str| FormationUpdate {
            dyno_type: "web".parse().unwrap(),
            quantity,
            command: Some(command.into()),
            port: None,
            healthcheck: None,
            size: None,
        };
        for (app, stage, commands) in
            [("stg", Stage::Staging, &["new"][..]), ("prd", Stage::Production, &["new", "old"])]
        {
            p.create_app(app.parse().unwrap(), "default").await.unwrap();
            p.create_coupling(app, "p", stage, vec![]).await.unwrap();
            for command in commands {
                p.update_formation(app, vec![web(Some(Quantity::Exactly(2)), command)]).await.unwrap();
            }
        }
        let feature = CanaryFeatureInput {
            enabled: Some(true),
            soak_requests: Some(None),
            soak_seconds: Some(Some(3600)),
            policy: PolicyInput::default(),
        };
        p.set_canary_feature("prd", feature).await.unwrap();
        p
    }

    /// Asks for a release of `prd`'s code `new` through `entry`.
    async fn release(p: &ControlPlane, entry: Entry) -> Result<(), Error> {
        match entry {
            Entry::Promotion => {
                let input = PromotionInput {
                    pipeline: "p".into(),
                    source_app: "stg".into(),
                    source_release: None,
                    targets: None,
                    safe: false,
                };
                p.promote(input).await.map(drop)
            }
            Entry::Slug => release_image(p, "web", 'a').await,
            Entry::Rollback => p.rollback("prd", "v2").await.map(drop),
        }
    }

    /// Releases to `prd` an image slug (digest of `digit`s) whose one process type is
    /// `dyno_type`, with command `new`.
    async fn release_image(p: &ControlPlane, dyno_type: &str, digit: char) -> Result<(), Error> {
        let new = NewSlug {
            process_types: BTreeMap::from([(dyno_type.into(), "new".into())]),
            commit: None,
            commit_description: None,
            checksum: None,
            image: Some(format!("registry.example.com/app@sha256:{}", digit.to_string().repeat(64))),
        };
        let (slug, _) = p.create_slug("prd", new).await?;
        p.release_slug("prd", &slug.id.to_string(), None).await.map(drop)
    }

    /// The web command of `prd`'s running release, and of its formation.
    async fn prd_runs(p: &ControlPlane) -> (Option<String>, Option<String>) {
        p.read(|m| {
            let a = m.app("prd").unwrap();
            let running = m
                .running_release(a.id)
                .and_then(|r| r.processes.iter().find(|x| x.dyno_type.as_str() == WEB).and_then(|x| x.command.clone()));
            let formation = m.formation_of(a.id);
            let formation = formation.iter().find(|f| f.dyno_type.as_str() == WEB).and_then(|f| f.command.clone());
            (running, formation)
        })
        .await
    }

    /// What a refused action's error must be: its kind, and a phrase of its message.
    #[derive(Debug, Clone, Copy)]
    enum Refusal {
        Conflict(&'static str),
        Invalid(&'static str),
    }

    /// Whether `e` is `want`.
    fn refused_as(e: &Result<(), Error>, want: Refusal) -> bool {
        match (e, want) {
            (Err(Error::Conflict(m)), Refusal::Conflict(phrase))
            | (Err(Error::Invalid(m)), Refusal::Invalid(phrase)) => m.contains(phrase),
            _ => false,
        }
    }

    /// Does `action` to `p` (set up by [`setup`], with app `spare` and site `www.example.com`).
    async fn act(p: &Arc<ControlPlane>, action: &str) -> Result<(), Error> {
        let canary_coupling =
            || async { p.read(|m| m.coupling_of(m.app("prdcanary").unwrap().id).unwrap().id.to_string()).await };
        let policy = || CanaryPolicy::try_from(PolicyInput { weight: Some(10.0), ..PolicyInput::default() }).unwrap();
        let route = || wharf_domain::RoutePath::try_new("/").unwrap();
        match action {
            "move the canary app's coupling" => {
                p.update_coupling(&canary_coupling().await, Some(Stage::Development), None).await.map(drop)
            }
            "delete the canary app's coupling" => p.delete_coupling(&canary_coupling().await).await.map(drop),
            "route a site to the canary app" => {
                p.create_route("www.example.com", "prdcanary", route(), route()).await.map(drop)
            }
            "make the canary app another app's canary" => p.put_canary("spare", "prdcanary", policy()).await.map(drop),
            "give the canary app a canary" => p.put_canary("prdcanary", "spare", policy()).await.map(drop),
            "change the canary app (the HTTP edge asks)" => p.refuse_change_of_canary_app("prdcanary", false).await,
            "replace production's split" => p.put_canary("prd", "spare", policy()).await.map(drop),
            "delete the pipeline" | "delete the pipeline production left" => p.delete_pipeline("p").await.map(drop),
            "build on production" => p.create_build("prd", "http://127.0.0.1:9/app.tgz", None, None).await.map(drop),
            "release production without web" => release_image(p, "worker", 'b').await,
            "roll production back to a release without web" => p.rollback("prd", "v1").await.map(drop),
            "promote a release without web" => {
                p.delete_formation("stg", "web").await?;
                release(p, Entry::Promotion).await
            }
            "remove production's web process type" => p.delete_formation("prd", "web").await.map(drop),
            "change production's web command" => {
                let web = FormationUpdate {
                    dyno_type: "web".parse().unwrap(),
                    quantity: None,
                    command: Some("unjudged".into()),
                    port: None,
                    healthcheck: None,
                    size: None,
                };
                p.update_formation("prd", vec![web]).await.map(drop)
            }
            "promote to production scaled to 0" => {
                let zero = FormationUpdate {
                    dyno_type: "web".parse().unwrap(),
                    quantity: Some(Quantity::Exactly(0)),
                    command: None,
                    port: None,
                    healthcheck: None,
                    size: None,
                };
                p.update_formation("prd", vec![zero]).await?;
                release(p, Entry::Promotion).await
            }
            other => unreachable!("no action {other}"),
        }
    }

    /// [`setup`], with app `spare` (not in the pipeline) and site `www.example.com`.
    async fn setup_with_spare() -> Arc<ControlPlane> {
        let p = Arc::new(setup().await);
        p.create_app("spare".parse().unwrap(), "default").await.unwrap();
        p.create_site(wharf_domain::SiteDomain::try_new("www.example.com").unwrap(), false).await.unwrap();
        p
    }

    #[tokio::test]
    async fn while_a_canary_release_is_open_its_canary_app_and_what_it_is_compared_with_do_not_change() {
        // (action, how it is refused); each on a fresh plane with a canary release open.
        let rows = [
            ("move the canary app's coupling", Refusal::Conflict("is the canary app of prd-default's canary release")),
            (
                "delete the canary app's coupling",
                Refusal::Conflict("is the canary app of prd-default's canary release"),
            ),
            ("route a site to the canary app", Refusal::Conflict("is the canary app of prd-default's canary release")),
            ("make the canary app another app's canary", Refusal::Conflict("is the canary app of")),
            ("give the canary app a canary", Refusal::Conflict("is the canary app of")),
            ("change the canary app (the HTTP edge asks)", Refusal::Conflict("is the canary app of")),
            ("replace production's split", Refusal::Conflict("has a canary release of v")),
            ("delete the pipeline", Refusal::Conflict("has a canary release of v")),
            ("delete the pipeline production left", Refusal::Conflict("is the canary app of")),
            ("build on production", Refusal::Conflict("has a canary release of v")),
        ];
        for (action, want) in rows {
            let p = setup_with_spare().await;
            let data_dir = crate::plane::tests::with_deploy(&p, "canary-refusals", 20);
            release(&p, Entry::Promotion).await.unwrap();
            if action == "delete the pipeline production left" {
                let prd = p.read(|m| m.coupling_of(m.app("prd").unwrap().id).unwrap().id.to_string()).await;
                p.delete_coupling(&prd).await.unwrap();
            }
            let before = p.read(|m| m.version()).await;
            let e = act(&p, action).await;
            assert!(refused_as(&e, want), "{action}: {e:?}");
            assert_eq!(p.read(|m| m.version()).await, before, "{action}: nothing changed");
            std::fs::remove_dir_all(data_dir).unwrap();
        }
    }

    #[tokio::test]
    async fn with_the_feature_on_a_release_that_cannot_be_judged_is_refused() {
        // (action, how it is refused): each is a release the canary could not judge, or one
        // with nothing to compare it with.
        let rows = [
            ("release production without web", Refusal::Invalid("this release has no web command")),
            ("roll production back to a release without web", Refusal::Invalid("this release has no web command")),
            ("promote a release without web", Refusal::Invalid("this release has no web command")),
            ("remove production's web process type", Refusal::Invalid("change only with a release of code")),
            ("change production's web command", Refusal::Invalid("change only with a release of code")),
            ("promote to production scaled to 0", Refusal::Conflict("has no web dynos for a canary of v")),
        ];
        for (action, want) in rows {
            let p = setup_with_spare().await;
            let newest = |m: &Model| m.latest_release(m.app("prd").unwrap().id).unwrap().id;
            let before = p.read(newest).await;
            let e = act(&p, action).await;
            assert!(refused_as(&e, want), "{action}: {e:?}");
            let (after, open) = p.read(|m| (newest(m), m.open_canary_releases().len())).await;
            assert_eq!((after, open), (before, 0), "{action}: no release, no canary");
            let old = (Some("old".to_owned()), Some("old".to_owned()));
            assert_eq!(prd_runs(&p).await, old, "{action}: prd runs its old web command");
        }
    }

    #[tokio::test]
    async fn every_release_of_code_waits_for_its_canary_and_nothing_overtakes_it() {
        let runs = |c: &str| (Some(c.to_owned()), Some(c.to_owned()));
        for entry in [Entry::Promotion, Entry::Slug, Entry::Rollback] {
            for pass in [true, false] {
                let case = format!("{entry:?}, pass {pass}");
                let p = setup().await;
                release(&p, entry).await.unwrap_or_else(|e| panic!("{case}: {e}"));
                assert_eq!(prd_runs(&p).await, runs("old"), "{case}: prd still runs its old code");
                let (canary, held) = p
                    .read(|m| {
                        let c = m.app("prdcanary").expect("the canary app");
                        let f: Vec<_> = m.formation_of(c.id).iter().map(|f| (f.quantity, f.command.clone())).collect();
                        (f, m.latest_release(m.app("prd").unwrap().id).unwrap().status)
                    })
                    .await;
                assert_eq!(canary, [(1, Some("new".to_owned()))], "{case}: one web dyno of the new code");
                assert_eq!(held, ReleaseStatus::Pending, "{case}");

                // Nothing overtakes it, whichever way it comes, and a refusal changes nothing.
                let before = p.read(|m| m.version()).await;
                for other in [Entry::Promotion, Entry::Slug, Entry::Rollback] {
                    let e = release(&p, other).await.err();
                    let refused = matches!(&e, Some(Error::Conflict(m)) if m.contains("has a canary release"));
                    assert!(refused, "{case}: then {other:?}: {e:?}");
                }
                let vars = BTreeMap::from([("X".to_owned(), Some("1".to_owned()))]);
                assert!(matches!(p.update_config_vars("prd", vars).await, Err(Error::Conflict(_))), "{case}");
                // (The slug row made a slug before its refusal: slugs are no release.)
                let after = p.read(|m| m.version()).await;
                assert_eq!(after, before + 1, "{case}: only the refused slug's own record was made");

                // No local runtime: the canary's release succeeded at once, so the split starts.
                let id = p.read(|m| m.open_canary_releases()[0].id).await;
                assert_eq!(p.advance_canary_release(id).await.unwrap(), None, "{case}");
                let state = p.read(|m| m.open_canary_releases()[0].state).await;
                assert_eq!(state, CanaryReleaseState::Running, "{case}");
                if pass {
                    p.promote_canary("prd").await.unwrap();
                } else {
                    p.abort_canary("prd").await.unwrap();
                }
                let done = p.advance_canary_release(id).await.unwrap().expect("ended");
                let want = if pass { CanaryReleaseState::Promoted } else { CanaryReleaseState::Aborted };
                assert_eq!(done.state, want, "{case}");
                assert_eq!(prd_runs(&p).await, runs(if pass { "new" } else { "old" }), "{case}");
                let (gone, status) = p
                    .read(|m| {
                        (m.app("prdcanary").is_none(), m.latest_release(m.app("prd").unwrap().id).unwrap().status)
                    })
                    .await;
                assert!(gone, "{case}: the canary app is deleted");
                let want = if pass { ReleaseStatus::Succeeded } else { ReleaseStatus::Failed };
                assert_eq!(status, want, "{case}");
                // A build's last line says what became of its release, and the canary's part.
                let (app_id, version) = p.read(|m| (done.app_id, m.latest_release(done.app_id).unwrap().version)).await;
                let line = p.release_outcome(app_id, done.release_id, version).await;
                let want = if pass {
                    format!(
                        "-----> Released v{version}: it is live, after its canary on prdcanary-default (the canary was promoted by hand)"
                    )
                } else {
                    format!(
                        " !     Release v{version} failed in its canary on prdcanary-default: the canary was aborted by hand"
                    )
                };
                assert!(line.starts_with(&want), "{case}: {line}");
            }
        }
    }
}
