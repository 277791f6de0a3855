//! App webhooks (Akkeris' hooks): an app's hooks are told of its releases, promotions, crashed
//! dynos, its pull requests' preview apps (`previews.rs`) and its deletion. This module stores hooks and decides which deliveries an operation
//! makes; the HTTP edge (`http/hooks.rs`) shapes each delivery's JSON, signs it and sends it.
//!
//! Deliveries never hold up the operation that caused them: [`ControlPlane::change`] works out
//! the deliveries from the changes it commits (against the model before them, so a deleted
//! app's hooks still hear of its deletion), and queues them once the commit is made, without
//! waiting; a full queue drops the delivery with a warning. Each hook's last
//! [`RECENT_DELIVERIES`] deliveries and how they went are kept in memory, for
//! `GET /apps/{app}/hooks/{hook}/deliveries`; they do not survive a restart.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use tokio::sync::mpsc;
use uuid::Uuid;
use wharf_domain::timestamp::now_seconds;
use wharf_domain::{HookUrl, new_id};

use super::engine::ControlPlane;
use super::error::{Error, not_found};
use crate::model::{Change, Hook, HookEvent, Kind, Model, Object, ReleaseStatus};

/// Deliveries kept per hook for its deliveries list.
pub const RECENT_DELIVERIES: usize = 20;

/// Deliveries waiting to be sent, across all hooks; past this, new ones are dropped and logged.
const QUEUE: usize = 4096;

/// Longest secret, in bytes.
const MAX_SECRET: usize = 256;

/// Most hooks one app may have.
pub const MAX_HOOKS_PER_APP: usize = 20;

/// What happened, as a delivery tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Happened {
    /// A release was made or its status settled.
    Release {
        /// Its id.
        id: Uuid,
        /// Its version.
        version: u32,
        /// What changed.
        description: String,
        /// `pending`, `succeeded` or `failed`.
        status: ReleaseStatus,
    },
    /// A promotion from or to the app.
    Promotion {
        /// Its id.
        id: Uuid,
        /// The source app's key and release version.
        source: (String, u32),
        /// Each target app's key and the version of the release made there.
        targets: Vec<(String, u32)>,
    },
    /// A dyno exited unasked.
    Crashed {
        /// The dyno's name.
        dyno: String,
        /// How it exited.
        status: String,
    },
    /// The app was deleted.
    Destroy,
    /// A build was started, or its status settled.
    Build {
        /// The build's id.
        id: Uuid,
        /// Its status now.
        status: crate::model::BuildStatus,
        /// The release it made, once it succeeded.
        release_id: Option<Uuid>,
    },
    /// A canary release of the app ended (`plane/canary_releases.rs`).
    Canary {
        /// The canary release's id.
        id: Uuid,
        /// `promoted` (the release went to the app) or `aborted` (it is recorded `failed`).
        outcome: &'static str,
        /// Why, in words.
        reason: String,
        /// The production release's id and version.
        release: (Uuid, u32),
        /// The canary app's key (the app is gone by the time the hook hears of it).
        canary_app: String,
        /// The judge's counts and statistics when it ended, if the canary ran.
        evidence: Option<wharf_domain::CanaryEvidence>,
    },
    /// A preview app of one of the app's pull requests was created, rebuilt or deleted.
    Preview {
        /// `created`, `rebuilt` or `deleted`.
        action: &'static str,
        /// The pull request's number.
        number: u64,
        /// The preview app's key.
        app: String,
        /// The pull request's head branch.
        head_ref: String,
        /// The head commit the preview runs (or ran).
        head_sha: String,
    },
}

impl Happened {
    /// The hook event this is.
    pub fn event(&self) -> HookEvent {
        match self {
            Happened::Release { .. } => HookEvent::Release,
            Happened::Promotion { .. } => HookEvent::Promotion,
            Happened::Crashed { .. } => HookEvent::Crashed,
            Happened::Destroy => HookEvent::Destroy,
            Happened::Build { .. } => HookEvent::Build,
            Happened::Canary { .. } => HookEvent::Canary,
            Happened::Preview { .. } => HookEvent::Preview,
        }
    }
}

/// One event on its way to one hook.
#[derive(Clone)]
pub struct Delivery {
    /// The delivery's id (sent as `X-Wharf-Delivery`; the same on every attempt).
    pub id: Uuid,
    /// The hook.
    pub hook_id: Uuid,
    /// Where it goes.
    pub url: HookUrl,
    /// The HMAC key of its signature.
    pub secret: String,
    /// The app's id and key.
    pub app: (Uuid, String),
    /// What happened.
    pub happened: Happened,
    /// When, seconds since the epoch.
    pub at: i64,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("id", &self.id)
            .field("hook_id", &self.hook_id)
            .field("happened", &self.happened)
            .finish_non_exhaustive()
    }
}

/// How a delivery went so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Not yet answered 2xx; more attempts to come.
    Pending,
    /// Answered 2xx.
    Delivered,
    /// Every attempt failed.
    Failed,
}

impl DeliveryStatus {
    /// The API's word.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }
}

/// One recent delivery of a hook, as its deliveries list shows it.
#[derive(Debug, Clone)]
pub struct DeliveryRecord {
    /// The delivery's id.
    pub id: Uuid,
    /// Its event.
    pub event: HookEvent,
    /// How it went.
    pub status: DeliveryStatus,
    /// Attempts made.
    pub attempts: u32,
    /// The last answer's status code, if the receiver answered.
    pub last_status_code: Option<u16>,
    /// Why the last attempt failed, if it did.
    pub last_error: Option<String>,
    /// When it was queued, seconds since the epoch.
    pub created_at: i64,
    /// When its last attempt ended, seconds since the epoch.
    pub updated_at: i64,
}

impl DeliveryRecord {
    /// The record of `d` as it is queued: pending, no attempt made yet.
    pub fn pending(d: &Delivery) -> DeliveryRecord {
        DeliveryRecord {
            id: d.id,
            event: d.happened.event(),
            status: DeliveryStatus::Pending,
            attempts: 0,
            last_status_code: None,
            last_error: None,
            created_at: d.at,
            updated_at: d.at,
        }
    }
}

/// The deliveries' queue and each hook's recent deliveries.
pub(super) struct HookQueue {
    tx: mpsc::Sender<Delivery>,
    rx: Mutex<Option<mpsc::Receiver<Delivery>>>,
    recent: Mutex<HashMap<Uuid, VecDeque<DeliveryRecord>>>,
}

impl HookQueue {
    pub(super) fn new() -> HookQueue {
        let (tx, rx) = mpsc::channel(QUEUE);
        HookQueue { tx, rx: Mutex::new(Some(rx)), recent: Mutex::new(HashMap::new()) }
    }
}

/// The hook fields a request sets; `None` keeps what an update does not name.
#[derive(Debug, Default, Clone)]
pub struct HookInput {
    /// Where deliveries go.
    pub url: Option<HookUrl>,
    /// What the hook is told about.
    pub events: Option<Vec<HookEvent>>,
    /// The HMAC key.
    pub secret: Option<String>,
    /// Whether deliveries are made.
    pub active: Option<bool>,
}

/// The deliveries `changes` make, computed on the model before them.
pub(super) fn deliveries_for(m: &Model, changes: &[Change]) -> Vec<Delivery> {
    let mut happened: Vec<(Uuid, Happened)> = Vec::new();
    for c in changes {
        match c {
            Change::Put(Object::Release(r)) => {
                let before = m.releases_of(r.app_id).into_iter().find(|o| o.id == r.id).map(|o| o.status);
                if before != Some(r.status) {
                    let (id, version, description, status) = (r.id, r.version, r.description.clone(), r.status);
                    happened.push((r.app_id, Happened::Release { id, version, description, status }));
                }
            }
            // A build's start and its settling, as a release's (the issue's `build` event).
            Change::Put(Object::Build(b)) if m.build(b.id).map(|o| o.status) != Some(b.status) => {
                happened.push((b.app_id, Happened::Build { id: b.id, status: b.status, release_id: b.release_id }));
            }
            Change::Put(Object::Promotion(p)) if m.promotion(&p.id.to_string()).is_none() => {
                let key =
                    |app_id: Uuid| m.app(&app_id.to_string()).map(|a| m.app_key(a).to_string()).unwrap_or_default();
                // The target releases are made in the same change; their versions are in it.
                let version_of = |release_id: Uuid| {
                    changes.iter().find_map(|c| match c {
                        Change::Put(Object::Release(r)) if r.id == release_id => Some(r.version),
                        _ => None,
                    })
                };
                let source_version = m
                    .releases_of(p.source_app_id)
                    .into_iter()
                    .find(|r| r.id == p.source_release_id)
                    .map_or(0, |r| r.version);
                let targets: Vec<(String, u32)> =
                    p.targets.iter().map(|t| (key(t.app_id), version_of(t.release_id).unwrap_or(0))).collect();
                let what = Happened::Promotion { id: p.id, source: (key(p.source_app_id), source_version), targets };
                happened.push((p.source_app_id, what.clone()));
                for t in &p.targets {
                    happened.push((t.app_id, what.clone()));
                }
            }
            Change::Put(Object::CanaryRelease(cr))
                if !cr.state.is_open()
                    && m.canary_releases_of(cr.app_id).iter().any(|o| o.id == cr.id && o.state.is_open()) =>
            {
                let version = changes
                    .iter()
                    .find_map(|c| match c {
                        Change::Put(Object::Release(r)) if r.id == cr.release_id => Some(r.version),
                        _ => None,
                    })
                    .unwrap_or(0);
                happened.push((
                    cr.app_id,
                    Happened::Canary {
                        id: cr.id,
                        outcome: cr.state.as_str(),
                        reason: cr.outcome.clone().unwrap_or_default(),
                        release: (cr.release_id, version),
                        canary_app: cr.canary_app.clone(),
                        evidence: cr.evidence.clone(),
                    },
                ));
            }
            _ => {
                if let Some((Kind::App, id)) = c.deletes() {
                    happened.push((id, Happened::Destroy));
                }
            }
        }
    }
    happened.extend(super::previews::happenings(m, changes));
    let now = now_seconds();
    let mut out = Vec::new();
    for (app_id, what) in happened {
        out.extend(deliveries_to(m, app_id, &what, now));
    }
    out
}

/// One delivery of `what` to each active hook of the app that wants its event.
fn deliveries_to(m: &Model, app_id: Uuid, what: &Happened, now: i64) -> Vec<Delivery> {
    let Some(app) = m.app(&app_id.to_string()) else { return vec![] };
    let key = m.app_key(app).to_string();
    m.hooks_of(app_id)
        .into_iter()
        .filter(|h| h.active && h.events.contains(&what.event()))
        .map(|h| Delivery {
            id: new_id(),
            hook_id: h.id,
            url: h.url.clone(),
            secret: h.secret.clone(),
            app: (app_id, key.clone()),
            happened: what.clone(),
            at: now,
        })
        .collect()
}

fn check_secret(secret: &str) -> Result<(), Error> {
    if secret.is_empty() || secret.len() > MAX_SECRET {
        return Err(Error::Invalid(format!("a hook's secret is 1 to {MAX_SECRET} bytes")));
    }
    Ok(())
}

fn check_events(events: &mut Vec<HookEvent>) -> Result<(), Error> {
    events.sort();
    events.dedup();
    if events.is_empty() {
        return Err(Error::Invalid("a hook needs at least one event".into()));
    }
    Ok(())
}

impl ControlPlane {
    /// Adds a webhook to the app. Refused (422) for a URL whose IP literal the outbound policy
    /// refuses, no events, or an empty secret; 409 past [`MAX_HOOKS_PER_APP`].
    pub async fn create_hook(&self, app: &str, input: HookInput) -> Result<Hook, Error> {
        let url = input.url.ok_or_else(|| Error::Invalid("a hook needs a url".into()))?;
        let mut events = input.events.ok_or_else(|| Error::Invalid("a hook needs events".into()))?;
        let secret = input.secret.ok_or_else(|| Error::Invalid("a hook needs a secret".into()))?;
        url.check_outbound(&self.outbound()).map_err(|e| Error::Invalid(format!("hook url {url}: {e}")))?;
        check_events(&mut events)?;
        check_secret(&secret)?;
        self.change(|m| {
            let a = m.app(app).ok_or_else(|| not_found("app", app))?;
            if m.hooks_of(a.id).len() >= MAX_HOOKS_PER_APP {
                return Err(Error::Conflict(format!("an app has at most {MAX_HOOKS_PER_APP} hooks")));
            }
            let now = now_seconds();
            let h = Hook {
                id: new_id(),
                app_id: a.id,
                url: url.clone(),
                events: events.clone(),
                secret: secret.clone(),
                active: input.active.unwrap_or(true),
                created_at: now,
                updated_at: now,
            };
            Ok((h.clone(), vec![Change::Put(Object::Hook(h))]))
        })
        .await
    }

    /// Changes a webhook (what `input` does not name stays), with the checks of creation.
    pub async fn update_hook(&self, app: &str, hook: &str, mut input: HookInput) -> Result<Hook, Error> {
        if let Some(url) = &input.url {
            url.check_outbound(&self.outbound()).map_err(|e| Error::Invalid(format!("hook url {url}: {e}")))?;
        }
        if let Some(events) = input.events.as_mut() {
            check_events(events)?;
        }
        if let Some(secret) = &input.secret {
            check_secret(secret)?;
        }
        self.change(|m| {
            let a = m.app(app).ok_or_else(|| not_found("app", app))?;
            let h = m.hook(a.id, hook).ok_or_else(|| not_found("hook", hook))?;
            let h = Hook {
                url: input.url.clone().unwrap_or_else(|| h.url.clone()),
                events: input.events.clone().unwrap_or_else(|| h.events.clone()),
                secret: input.secret.clone().unwrap_or_else(|| h.secret.clone()),
                active: input.active.unwrap_or(h.active),
                updated_at: now_seconds(),
                ..h.clone()
            };
            Ok((h.clone(), vec![Change::Put(Object::Hook(h))]))
        })
        .await
    }

    /// Removes a webhook; its recent deliveries are forgotten.
    pub async fn delete_hook(&self, app: &str, hook: &str) -> Result<Hook, Error> {
        let h = self
            .change(|m| {
                let a = m.app(app).ok_or_else(|| not_found("app", app))?;
                let h = m.hook(a.id, hook).ok_or_else(|| not_found("hook", hook))?;
                Ok((h.clone(), m.cascade(Kind::Hook, h.id)))
            })
            .await?;
        self.hooks.recent.lock().expect("recent deliveries").remove(&h.id);
        Ok(h)
    }

    /// A hook's recent deliveries, newest first.
    pub fn hook_deliveries(&self, hook_id: Uuid) -> Vec<DeliveryRecord> {
        let recent = self.hooks.recent.lock().expect("recent deliveries");
        recent.get(&hook_id).map(|d| d.iter().rev().cloned().collect()).unwrap_or_default()
    }

    /// Records how a delivery went (replacing what was recorded of it before), keeping the
    /// hook's newest [`RECENT_DELIVERIES`].
    pub fn record_delivery(&self, hook_id: Uuid, record: DeliveryRecord) {
        let mut recent = self.hooks.recent.lock().expect("recent deliveries");
        let list = recent.entry(hook_id).or_default();
        match list.iter_mut().find(|d| d.id == record.id) {
            Some(d) => *d = record,
            None => {
                list.push_back(record);
                while list.len() > RECENT_DELIVERIES {
                    list.pop_front();
                }
            }
        }
    }

    /// The queue's receiving end, for the one task that sends deliveries; `None` once taken.
    pub fn take_hook_deliveries(&self) -> Option<mpsc::Receiver<Delivery>> {
        self.hooks.rx.lock().expect("hook queue").take()
    }

    /// Queues deliveries without waiting: a full queue drops them, logged, rather than hold up
    /// the operation that made them.
    pub(super) fn queue_deliveries(&self, deliveries: Vec<Delivery>) {
        for d in deliveries {
            let record = DeliveryRecord::pending(&d);
            let hook_id = d.hook_id;
            match self.hooks.tx.try_send(d) {
                Ok(()) => self.record_delivery(hook_id, record),
                Err(e) => {
                    tracing::warn!(hook = %hook_id, error = %e, "webhook delivery dropped: the delivery queue is full");
                }
            }
        }
    }

    /// Tells the app's `crashed` hooks that one of its dynos exited unasked (the local
    /// supervisor calls it with each H10).
    pub async fn report_crash(&self, app_id: Uuid, dyno: &str, status: &str) {
        let what = Happened::Crashed { dyno: dyno.to_owned(), status: status.to_owned() };
        let deliveries = self.read(|m| deliveries_to(m, app_id, &what, now_seconds())).await;
        self.queue_deliveries(deliveries);
    }
}
