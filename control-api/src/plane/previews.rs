//! Preview apps (issue 22; Heroku's review apps): a development app's `preview` feature, and
//! what its pull requests' events do.
//!
//! With the feature enabled (and the app coupled at a pipeline's development stage), GitHub's
//! `pull_request` event for the app, signed with the feature's secret (`X-Hub-Signature-256`,
//! checked by [`verify_signature`] in constant time), acts on the pull request's preview app:
//!
//! - `opened`, `reopened` and `synchronize` fork the development app into a review-stage app
//!   when the pull request has none ([`ControlPlane::open_preview`]): the same space, its config
//!   vars, its process types with `web` at quantity 1 and every other type at 0, no fixed ports
//!   (the development app holds them) and no commands (nothing runs until the pull request's
//!   own code is released), none of its sites or domains, coupled at `review` in the same
//!   pipeline, named `<app>pr<number>` (the app's name cut so that the whole fits 30
//!   characters). Then the head commit's source is built through the builds path (`builds.rs`:
//!   the outbound policy, the archive rules), which gives each process type its Procfile
//!   command and releases it. A pull request whose preview exists is rebuilt when its head commit changed,
//!   and left alone when it did not.
//! - `closed` (merged or not) deletes the preview app with everything an app takes.
//! - Other actions change nothing, and so does a pull request from a fork (the HTTP edge
//!   ignores it: its code would run with the development app's config vars).
//!
//! Every acted-on delivery's id (`X-GitHub-Delivery`) is remembered with the feature (the newest
//! [`REMEMBERED_DELIVERIES`]); the same id again is a replay, refused with nothing changed. The
//! sweeper ([`ControlPlane::sweep_previews`], every [`SWEEP_INTERVAL`]) deletes preview apps not
//! deployed for their feature's `max_age_seconds` (Heroku's stale review apps). Each creation,
//! rebuild and deletion is a `preview` event for the development app's webhooks.

use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;
use wharf_domain::timestamp::{format_micros, now_seconds};
use wharf_domain::{AppKey, AppName, Stage, new_id};

use super::engine::ControlPlane;
use super::error::{Error, not_found};
use super::hooks::Happened;
use super::releases::processes_of;
use crate::model::{
    ActedOn, App, Change, ConfigVars, Coupling, Formation, Kind, Model, Object, Preview, PreviewFeature,
    REMEMBERED_DELIVERIES,
};

/// How long a preview app may go without a deploy before the sweeper deletes it, when the
/// feature names none: five days, Heroku's default `stale_days`.
pub const DEFAULT_PREVIEW_MAX_AGE: u64 = 5 * 24 * 3600;

/// The longest `max_age_seconds`: thirty days, Heroku's longest `stale_days`.
pub const MAX_PREVIEW_MAX_AGE: u64 = 30 * 24 * 3600;

/// How often the sweeper looks for preview apps past their age.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// The shortest and longest secret, in bytes: GitHub's secret authenticates events to an
/// endpoint anyone can reach, so a guessable one is refused.
const SECRET_BYTES: std::ops::RangeInclusive<usize> = 16..=256;

/// A `PATCH /apps/{app}/features/preview` body: every field optional; absent ones keep the
/// feature's current value (or the default, the first time).
#[derive(Clone, Default)]
pub struct PreviewFeatureInput {
    /// Whether pull-request events are acted on.
    pub enabled: Option<bool>,
    /// The secret GitHub's webhook is configured with (16 to 256 bytes).
    pub secret: Option<String>,
    /// Seconds without a deploy after which a preview app is deleted (1 to
    /// [`MAX_PREVIEW_MAX_AGE`]).
    pub max_age_seconds: Option<u64>,
}

impl std::fmt::Debug for PreviewFeatureInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreviewFeatureInput")
            .field("enabled", &self.enabled)
            .field("max_age_seconds", &self.max_age_seconds)
            .finish_non_exhaustive()
    }
}

/// What a `pull_request` event says that Wharf acts on (GitHub's field names in the comments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    /// `number`.
    pub number: u64,
    /// `pull_request.head.ref`: the branch.
    pub head_ref: String,
    /// `pull_request.head.sha`: the commit to build.
    pub head_sha: String,
    /// The head commit's source archive: `pull_request.head.repo.archive_url` with
    /// `{archive_format}` = `tarball` and `{/ref}` = `/<head sha>`.
    pub source_url: String,
    /// The event's `action` and `pull_request.updated_at` (microseconds since the epoch), when
    /// the body has it: an event not newer than the last acted on for the pull request is
    /// refused (see [`ActedOn`]).
    pub updated: Option<(String, i64)>,
}

impl PullRequest {
    /// What is remembered of this event once acted on, when it says when it was updated.
    fn mark(&self) -> Option<ActedOn> {
        self.updated.as_ref().map(|(action, at)| ActedOn {
            number: self.number,
            updated_at: *at,
            action: action.clone(),
            head_sha: self.head_sha.clone(),
        })
    }
}

/// What an acted-on event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreviewOutcome {
    /// A preview app was forked and its build started.
    Created(Preview),
    /// The head commit changed: a build of it started.
    Rebuilt(Preview),
    /// The preview already runs that head commit.
    Unchanged(Preview),
    /// The preview app was deleted.
    Deleted(Preview),
    /// Nothing to do (a `closed` pull request without a preview).
    Ignored(String),
}

/// Why a signature is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    /// No `X-Hub-Signature-256` header, or not `sha256=` and 64 hex digits.
    Missing,
    /// A well-formed signature that is not the body's under the secret.
    Mismatch,
}

/// Checks GitHub's `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>` under
/// `secret`, comparing in constant time (`ring::hmac::verify`), so that the time taken tells
/// an attacker nothing about how much of a forged signature was right.
pub fn verify_signature(secret: &str, body: &[u8], header: Option<&str>) -> Result<(), SignatureError> {
    let hex = header.and_then(|h| h.trim().strip_prefix("sha256=")).ok_or(SignatureError::Missing)?;
    if hex.len() != 64 {
        return Err(SignatureError::Missing);
    }
    let mut tag = [0u8; 32];
    for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
        let text = std::str::from_utf8(pair).map_err(|_| SignatureError::Missing)?;
        tag[i] = u8::from_str_radix(text, 16).map_err(|_| SignatureError::Missing)?;
    }
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    ring::hmac::verify(&key, body, &tag).map_err(|_| SignatureError::Mismatch)
}

/// The preview app's name for pull request `number` of `app`: `<app>pr<number>`, the app's
/// name cut so that the whole is a valid app name (at most 30 characters).
fn preview_name(app: &AppName, number: u64) -> Result<AppName, Error> {
    let suffix = format!("pr{number}");
    let keep = 30usize.saturating_sub(suffix.len());
    let prefix: String = app.as_str().chars().take(keep).collect();
    AppName::try_new(&format!("{prefix}{suffix}"))
        .map_err(|e| Error::Invalid(format!("no preview app name for pull request {number}: {e}")))
}

/// The enabled feature of `app`, and the app; 404 when either is missing, with one message, so
/// that an unauthenticated caller cannot tell apps without the feature from no app.
fn enabled_feature<'m>(m: &'m Model, app: &str) -> Result<(&'m App, &'m PreviewFeature), Error> {
    let a = m.app(app);
    let f = a.and_then(|a| m.preview_feature_of(a.id)).filter(|f| f.enabled);
    match (a, f) {
        (Some(a), Some(f)) => Ok((a, f)),
        _ => Err(Error::NotFound { what: "app with the preview feature enabled", key: app.to_owned() }),
    }
}

/// The feature with `delivery` remembered, and `mark` (the signed body's pull request, update
/// time, action and head commit) as its pull request's last event acted on. 409 when the
/// delivery id was seen before, or when `mark` is not newer than the last event acted on for
/// its pull request: an older `updated_at`, or the same one with the same action and head
/// commit (a captured event resent under a new delivery id, or a stale one delivered late).
fn remember(f: &PreviewFeature, delivery: &str, now: i64, mark: Option<&ActedOn>) -> Result<Change, Error> {
    if f.deliveries.iter().any(|d| d == delivery) {
        return Err(Error::Conflict(format!("delivery {delivery} was already acted on: a replay changes nothing")));
    }
    let mut acted_on = f.acted_on.clone();
    if let Some(mark) = mark {
        if let Some(last) = acted_on.iter().find(|a| a.number == mark.number) {
            let same = (&last.action, &last.head_sha) == (&mark.action, &mark.head_sha);
            if mark.updated_at < last.updated_at || (mark.updated_at == last.updated_at && same) {
                return Err(Error::Conflict(format!(
                    "pull request {} was updated at {} by the last event acted on ({}); this event is not newer: \
                     a replay or a stale delivery changes nothing",
                    mark.number,
                    format_micros(last.updated_at),
                    last.action
                )));
            }
        }
        acted_on.retain(|a| a.number != mark.number);
        acted_on.push(mark.clone());
        if acted_on.len() > REMEMBERED_DELIVERIES {
            // The pull request updated longest ago is forgotten first.
            acted_on.sort_by_key(|a| std::cmp::Reverse(a.updated_at));
            acted_on.truncate(REMEMBERED_DELIVERIES);
        }
    }
    let mut deliveries = f.deliveries.clone();
    deliveries.push(delivery.to_owned());
    let over = deliveries.len().saturating_sub(REMEMBERED_DELIVERIES);
    deliveries.drain(..over);
    Ok(Change::Put(Object::PreviewFeature(PreviewFeature { deliveries, acted_on, updated_at: now, ..f.clone() })))
}

/// The development app's coupling; 422 when the app is not at a pipeline's development stage.
fn development_coupling<'m>(m: &'m Model, a: &App) -> Result<&'m Coupling, Error> {
    m.coupling_of(a.id).filter(|c| c.stage == Stage::Development).ok_or_else(|| {
        Error::Invalid(format!(
            "app {} is not in a pipeline's development stage: only development apps have preview apps",
            m.app_key(a)
        ))
    })
}

/// What the changes do to previews, as `preview` hook events of the development app: a new
/// preview is `created`, a changed head commit `rebuilt`, a deleted preview `deleted`.
pub(super) fn happenings(m: &Model, changes: &[Change]) -> Vec<(Uuid, Happened)> {
    // A preview app made in the same changes is not in the model yet: its name is in them.
    let key_of = |app_id: Uuid| {
        let made = changes.iter().find_map(|c| match c {
            Change::Put(Object::App(a)) if a.id == app_id => Some(m.space_by_id(a.space_id).map(|s| (a, s))),
            _ => None,
        });
        match made.flatten() {
            Some((a, s)) => AppKey::new(&a.name, &s.name).to_string(),
            None => m.app(&app_id.to_string()).map(|a| m.app_key(a).to_string()).unwrap_or_default(),
        }
    };
    let mut out = Vec::new();
    for c in changes {
        let (p, action) = match (c, c.deletes()) {
            (Change::Put(Object::Preview(p)), _) => match m.all_previews().find(|o| o.id == p.id) {
                None => (p, "created"),
                Some(old) if old.head_sha != p.head_sha => (p, "rebuilt"),
                Some(_) => continue,
            },
            (_, Some((Kind::Preview, id))) => match m.all_previews().find(|o| o.id == id) {
                Some(p) => (p, "deleted"),
                None => continue,
            },
            _ => continue,
        };
        out.push((
            p.app_id,
            Happened::Preview {
                action,
                number: p.number,
                app: key_of(p.preview_app_id),
                head_ref: p.head_ref.clone(),
                head_sha: p.head_sha.clone(),
            },
        ));
    }
    out
}

impl ControlPlane {
    /// Refuses (422) a source URL whose host is an IP literal the outbound policy refuses, before
    /// anything is made for it; a name is checked on every address at fetch time, as any
    /// build's source is.
    fn check_source_literal(&self, url: &str) -> Result<(), Error> {
        let host = url.parse::<http::Uri>().ok().and_then(|u| u.host().map(str::to_owned)).unwrap_or_default();
        match host.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>() {
            Ok(ip) => self.outbound().check(ip).map_err(|e| Error::Invalid(format!("source url {url}: {e}"))),
            Err(_) => Ok(()),
        }
    }

    /// Sets the app's `preview` feature. Enabling it needs the app at a pipeline's development
    /// stage and a secret, given now or before (422 otherwise); a secret is 16 to 256 bytes,
    /// `max_age_seconds` 1 to [`MAX_PREVIEW_MAX_AGE`]. Disabling it deletes the app's preview
    /// apps (no event could close them any more). A refusal changes nothing.
    pub async fn set_preview_feature(&self, app: &str, input: PreviewFeatureInput) -> Result<PreviewFeature, Error> {
        if let Some(s) = &input.secret
            && !SECRET_BYTES.contains(&s.len())
        {
            return Err(Error::Invalid(format!(
                "a preview secret is {} to {} bytes",
                SECRET_BYTES.start(),
                SECRET_BYTES.end()
            )));
        }
        if let Some(age) = input.max_age_seconds
            && !(1..=MAX_PREVIEW_MAX_AGE).contains(&age)
        {
            return Err(Error::Invalid(format!("max_age_seconds is 1 to {MAX_PREVIEW_MAX_AGE} (30 days)")));
        }
        self.change(|m| {
            let a = m.app(app).ok_or_else(|| not_found("app", app))?;
            let old = m.preview_feature_of(a.id);
            let enabled = input.enabled.or(old.map(|f| f.enabled)).unwrap_or(false);
            let secret = input.secret.clone().or(old.map(|f| f.secret.clone())).unwrap_or_default();
            if enabled {
                development_coupling(m, a)?;
                if secret.is_empty() {
                    return Err(Error::Invalid("enabling preview apps needs a secret: GitHub's webhook secret".into()));
                }
            }
            let now = now_seconds();
            let f = PreviewFeature {
                id: a.id,
                enabled,
                secret,
                max_age_seconds: input
                    .max_age_seconds
                    .or(old.map(|f| f.max_age_seconds))
                    .unwrap_or(DEFAULT_PREVIEW_MAX_AGE),
                deliveries: old.map(|f| f.deliveries.clone()).unwrap_or_default(),
                acted_on: old.map(|f| f.acted_on.clone()).unwrap_or_default(),
                created_at: old.map_or(now, |f| f.created_at),
                updated_at: now,
            };
            let mut changes = vec![Change::Put(Object::PreviewFeature(f.clone()))];
            if !enabled {
                // A disabled feature acts on no event, so no `closed` could ever delete these: they
                // would run the development app's config vars until the sweeper came. They go now.
                for p in m.previews_of(a.id) {
                    for c in m.cascade(Kind::App, p.preview_app_id) {
                        if !changes.contains(&c) {
                            changes.push(c);
                        }
                    }
                }
            }
            Ok((f, changes))
        })
        .await
    }

    /// The secret of the app's enabled `preview` feature, to check an event's signature with;
    /// 404 for an unknown app and for one without the feature enabled alike.
    pub async fn preview_secret(&self, app: &str) -> Result<String, Error> {
        self.read(|m| enabled_feature(m, app).map(|(_, f)| f.secret.clone())).await
    }

    /// Acts on `opened`, `reopened` or `synchronize` of `pr`, delivered as `delivery`: forks the
    /// preview app if the pull request has none, and builds its head commit unless the preview
    /// already runs it. Refused, with nothing changed: 404 without the enabled feature, 409 for a
    /// replayed delivery or a preview name another app holds, 422 when the app left the
    /// development stage or the source URL is one a build would refuse.
    pub async fn open_preview(
        self: &Arc<Self>,
        app: &str,
        delivery: &str,
        pr: &PullRequest,
    ) -> Result<PreviewOutcome, Error> {
        self.check_source_url(&pr.source_url)?;
        self.check_source_literal(&pr.source_url)?;
        let outcome = self
            .change(|m| {
                let (dev, feature) = enabled_feature(m, app)?;
                let coupling = development_coupling(m, dev)?;
                let now = now_seconds();
                let mut changes = vec![remember(feature, delivery, now, pr.mark().as_ref())?];
                if let Some(p) = m.preview_for(dev.id, pr.number) {
                    if p.head_sha == pr.head_sha {
                        return Ok((PreviewOutcome::Unchanged(p.clone()), changes));
                    }
                    let p = Preview {
                        head_ref: pr.head_ref.clone(),
                        head_sha: pr.head_sha.clone(),
                        source_url: pr.source_url.clone(),
                        build_id: None,
                        updated_at: now,
                        ..p.clone()
                    };
                    changes.push(Change::Put(Object::Preview(p.clone())));
                    return Ok((PreviewOutcome::Rebuilt(p), changes));
                }
                let space = m.app_space(dev);
                let name = preview_name(&dev.name, pr.number)?;
                self.check_app_key_free(m, &AppKey::new(&name, &space.name))?;
                let app = App {
                    id: new_id(),
                    name,
                    space_id: dev.space_id,
                    maintenance: false,
                    maintenance_page: None,
                    created_at: now,
                    updated_at: now,
                };
                let vars = m.config_vars_of(dev.id).map(|c| c.vars.clone()).unwrap_or_default();
                let mut formation: Vec<Formation> = m
                    .formation_of(dev.id)
                    .into_iter()
                    .map(|f| Formation {
                        id: new_id(),
                        app_id: app.id,
                        quantity: u32::from(f.dyno_type.is_web()),
                        // Nothing runs until the head commit's build gives each type its command.
                        command: None,
                        // A fixed port is the development app's: two apps cannot listen on it.
                        port: None,
                        created_at: now,
                        updated_at: now,
                        ..f.clone()
                    })
                    .collect();
                if !formation.iter().any(|f| f.dyno_type.is_web()) {
                    formation.push(Formation {
                        id: new_id(),
                        app_id: app.id,
                        dyno_type: "web".parse().expect("web is a process type"),
                        quantity: 1,
                        command: None,
                        port: None,
                        healthcheck: None,
                        size: None,
                        created_at: now,
                        updated_at: now,
                    });
                }
                let description = format!("Fork of {} for pull request #{}", m.app_key(dev), pr.number);
                let release = self.new_release(m, app.id, description, vars.clone(), processes_of(&formation));
                let preview = Preview {
                    id: new_id(),
                    app_id: dev.id,
                    preview_app_id: app.id,
                    number: pr.number,
                    head_ref: pr.head_ref.clone(),
                    head_sha: pr.head_sha.clone(),
                    source_url: pr.source_url.clone(),
                    build_id: None,
                    created_at: now,
                    updated_at: now,
                };
                let coupling = Coupling {
                    id: new_id(),
                    pipeline_id: coupling.pipeline_id,
                    app_id: app.id,
                    stage: Stage::Review,
                    required_contexts: vec![],
                    created_at: now,
                    updated_at: now,
                };
                changes.push(Change::Put(Object::App(app.clone())));
                changes.push(Change::Put(Object::ConfigVars(ConfigVars { id: app.id, vars, updated_at: now })));
                changes.extend(formation.into_iter().map(|f| Change::Put(Object::Formation(f))));
                changes.push(release);
                changes.push(Change::Put(Object::Coupling(coupling)));
                changes.push(Change::Put(Object::Preview(preview.clone())));
                Ok((PreviewOutcome::Created(preview), changes))
            })
            .await?;
        let (PreviewOutcome::Created(p) | PreviewOutcome::Rebuilt(p)) = &outcome else { return Ok(outcome) };
        let build =
            self.create_build(&p.preview_app_id.to_string(), &p.source_url, None, Some(p.head_sha.clone())).await?;
        let built = Preview { build_id: Some(build.id), ..p.clone() };
        let stored = built.clone();
        self.change(|m| {
            // The preview may have been closed or rebuilt meanwhile: only this build's own is noted.
            let current = m.all_previews().find(|o| o.id == stored.id && o.head_sha == stored.head_sha);
            let changes = current.map(|_| Change::Put(Object::Preview(stored.clone()))).into_iter().collect();
            Ok(((), changes))
        })
        .await?;
        tracing::info!(preview = %built.preview_app_id, number = built.number, sha = built.head_sha, build = %build.id, "preview app building");
        Ok(match outcome {
            PreviewOutcome::Created(_) => PreviewOutcome::Created(built),
            _ => PreviewOutcome::Rebuilt(built),
        })
    }

    /// Acts on `closed` of pull request `number`, delivered as `delivery` (`mark`: the signed
    /// body's update time and head commit, when it has them): deletes its preview app, if it
    /// has one. Refused as [`ControlPlane::open_preview`] is (404, 409 for a replay or an event
    /// not newer than the last acted on).
    pub async fn close_preview(
        &self,
        app: &str,
        delivery: &str,
        number: u64,
        mark: Option<ActedOn>,
    ) -> Result<PreviewOutcome, Error> {
        self.change(|m| {
            let (dev, feature) = enabled_feature(m, app)?;
            let mut changes = vec![remember(feature, delivery, now_seconds(), mark.as_ref())?];
            let Some(p) = m.preview_for(dev.id, number) else {
                return Ok((PreviewOutcome::Ignored(format!("pull request {number} has no preview app")), changes));
            };
            changes.extend(m.cascade(Kind::App, p.preview_app_id));
            Ok((PreviewOutcome::Deleted(p.clone()), changes))
        })
        .await
    }

    /// Deletes every preview app not deployed for its feature's `max_age_seconds` as of `now`
    /// (seconds since the epoch); returns the previews deleted.
    pub async fn sweep_previews(&self, now: i64) -> Result<Vec<Preview>, Error> {
        let stale = |m: &Model| -> Vec<Preview> {
            m.all_previews()
                .filter(|p| {
                    let age = m.preview_feature_of(p.app_id).map_or(DEFAULT_PREVIEW_MAX_AGE, |f| f.max_age_seconds);
                    now.saturating_sub(p.updated_at) >= i64::try_from(age).unwrap_or(i64::MAX)
                })
                .cloned()
                .collect()
        };
        if self.read(|m| stale(m).is_empty()).await {
            return Ok(vec![]);
        }
        self.change(|m| {
            let gone = stale(m);
            let mut changes = Vec::new();
            for p in &gone {
                for c in m.cascade(Kind::App, p.preview_app_id) {
                    if !changes.contains(&c) {
                        changes.push(c);
                    }
                }
            }
            Ok((gone, changes))
        })
        .await
    }

    /// Runs [`ControlPlane::sweep_previews`] every [`SWEEP_INTERVAL`] until the plane is gone.
    /// Started once per process by the HTTP edge; with replicas, each sweeps, and a preview
    /// another replica deleted first is simply not found.
    pub fn start_preview_sweeper(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let plane = Arc::downgrade(self);
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(SWEEP_INTERVAL).await;
                let Some(plane) = plane.upgrade() else { return };
                match plane.sweep_previews(now_seconds()).await {
                    Ok(gone) => {
                        for p in gone {
                            tracing::info!(preview = %p.preview_app_id, number = p.number, "stale preview app deleted");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot sweep stale preview apps; trying again"),
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_github_s_sha256_hmac_of_the_raw_body() {
        let secret = "It's a Secret to Everybody";
        // GitHub's documented example ("Validating webhook deliveries").
        let good = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        let check = |header: Option<&str>, body: &[u8], want: Result<(), SignatureError>| {
            assert_eq!(verify_signature(secret, body, header), want, "{header:?}");
        };
        check(Some(good), b"Hello, World!", Ok(()));
        check(Some(&good.to_uppercase().replace("SHA256=", "sha256=")), b"Hello, World!", Ok(()));
        check(Some(good), b"Hello, World?", Err(SignatureError::Mismatch));
        check(Some(&good.replace("757", "758")), b"Hello, World!", Err(SignatureError::Mismatch));
        check(None, b"Hello, World!", Err(SignatureError::Missing));
        check(Some(""), b"Hello, World!", Err(SignatureError::Missing));
        check(Some(&good.replace("sha256=", "sha1=")), b"Hello, World!", Err(SignatureError::Missing));
        check(Some(&good[..good.len() - 2]), b"Hello, World!", Err(SignatureError::Missing));
        check(Some(&good.replace('7', "g")), b"Hello, World!", Err(SignatureError::Missing));
        check(
            Some("sha256=é757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e"),
            b"",
            Err(SignatureError::Missing),
        );
    }

    #[test]
    fn preview_names_fit_an_app_name() {
        let check = |app: &str, number: u64, want: &str| {
            assert_eq!(preview_name(&app.parse().unwrap(), number).unwrap().as_str(), want);
        };
        check("shop", 7, "shoppr7");
        check("abcdefghijklmnopqrstuvwxyz1234", 7, "abcdefghijklmnopqrstuvwxyz1pr7");
        check("abcdefghijklmnopqrstuvwxyz1234", 12345, "abcdefghijklmnopqrstuvwpr12345");
        check("a", u64::MAX, "apr18446744073709551615");
    }
}
