//! The records of pipelines (Akkeris' shapes): pipelines, their couplings of apps to stages,
//! release statuses, promotions and app webhooks, with the model's queries over them. Their
//! serde shapes are the store's format, as in `records.rs`.

use serde::{Deserialize, Serialize};
use uuid::Uuid;
use wharf_domain::{CanaryEvidence, CanaryPolicy, HookUrl, PipelineName, Stage};

use super::Model;
use super::table::Record;

/// A pipeline: apps coupled to stages, through which releases are promoted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pipeline {
    /// Its id.
    pub id: Uuid,
    /// Its unique name.
    pub name: PipelineName,
    /// Creation time, seconds since the epoch.
    pub created_at: i64,
    /// Last change, seconds since the epoch.
    pub updated_at: i64,
}

/// An app's place in a pipeline: one stage. An app is in at most one pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coupling {
    /// Its id.
    pub id: Uuid,
    /// The pipeline.
    pub pipeline_id: Uuid,
    /// The app.
    pub app_id: Uuid,
    /// The app's stage.
    pub stage: Stage,
    /// The release status contexts that must be `success` on a release before it is promoted
    /// to this app (Akkeris' `required_status_checks.contexts`).
    pub required_contexts: Vec<String>,
    /// Creation time, seconds since the epoch.
    pub created_at: i64,
    /// Last change, seconds since the epoch.
    pub updated_at: i64,
}

/// A production app's `canary` feature (issue 22's automatic canary releases): with it enabled,
/// a new release of the app first runs as a canary app taking `policy`'s share of the app's
/// requests, judged by the routers, and reaches the app only after its soak without an abort:
/// `soak_requests` canary requests and `soak_seconds` seconds, each when set (at least one is).
/// One per app; its id is the app's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CanaryFeature {
    /// The app's id (one feature record per app).
    pub id: Uuid,
    /// Whether new releases go through a canary.
    pub enabled: bool,
    /// The canary's share of the app's requests and its judge's settings (`docs/canary.md`).
    pub policy: CanaryPolicy,
    /// Canary requests, counted by the router in this process, without an abort after which the
    /// release goes to the app; `None`: no count is waited for (a control API whose routers are
    /// remote cannot count them).
    #[serde(default)]
    pub soak_requests: Option<u64>,
    /// Seconds the canary takes its share without an abort before the release goes to the app,
    /// counted from the start of the split; `None`: no time is waited for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soak_seconds: Option<u64>,
    /// Creation time, seconds since the epoch.
    pub created_at: i64,
    /// Last change, seconds since the epoch.
    pub updated_at: i64,
}

/// Where a canary release is (`plane/canary_releases.rs` moves it on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CanaryReleaseState {
    /// The canary app's web dyno is starting; no request is split to it yet.
    Starting,
    /// The canary takes its share of the app's requests, judged by the routers, for its soak.
    Running,
    /// The soak passed: the release went to the production app and the canary app is gone.
    Promoted,
    /// The judge (or an operator) aborted it, or the canary never came up: the production
    /// release is recorded `failed`, production never ran it, and the canary app is gone.
    Aborted,
}

impl CanaryReleaseState {
    /// The state as the API, log lines and webhooks write it.
    pub fn as_str(self) -> &'static str {
        match self {
            CanaryReleaseState::Starting => "starting",
            CanaryReleaseState::Running => "running",
            CanaryReleaseState::Promoted => "promoted",
            CanaryReleaseState::Aborted => "aborted",
        }
    }

    /// Whether the outcome is still open (starting or running).
    pub fn is_open(self) -> bool {
        matches!(self, CanaryReleaseState::Starting | CanaryReleaseState::Running)
    }
}

/// A new release of a production app whose `canary` feature is on, on its way through a canary
/// app (issue 22): what the release will be, where it runs meanwhile, and how it ended. Kept
/// after it ends, as the production app's history; deleted with the production app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CanaryRelease {
    /// Its id.
    pub id: Uuid,
    /// The production app.
    pub app_id: Uuid,
    /// The canary app (deleted once the outcome is known).
    pub canary_app_id: Uuid,
    /// The canary app's key, for the outcome's log line and webhook after the app is gone.
    pub canary_app: String,
    /// The router canary splitting the app's requests, once the canary app's dyno is up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_id: Option<Uuid>,
    /// The production release it is about: made `pending` when the canary starts (the app's
    /// dynos do not run it meanwhile: [`Model::running_release`]), then rolled out after the
    /// soak, or recorded `failed` after an abort. It holds the code and the config vars.
    pub release_id: Uuid,
    /// The promotion that made it, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion_id: Option<Uuid>,
    /// The canary's share and judge settings, from the feature when it started.
    pub policy: CanaryPolicy,
    /// The soak's request count, from the feature when it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soak_requests: Option<u64>,
    /// The soak's length in seconds, from the feature when it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soak_seconds: Option<u64>,
    /// Where it is.
    pub state: CanaryReleaseState,
    /// The judge's counts and statistics when it ended (none when the canary never ran).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<CanaryEvidence>,
    /// Why it ended as it did, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// When the split started, seconds since the epoch (the soak's time counts from here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_since: Option<i64>,
    /// Creation time, seconds since the epoch.
    pub created_at: i64,
    /// Last change, seconds since the epoch.
    pub updated_at: i64,
}

/// A status check's state (GitHub's commit status states, as Akkeris' release statuses use them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckState {
    /// Still running.
    Pending,
    /// Passed.
    Success,
    /// Failed.
    Failure,
    /// Could not run.
    Error,
}

impl CheckState {
    /// The state as the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckState::Pending => "pending",
            CheckState::Success => "success",
            CheckState::Failure => "failure",
            CheckState::Error => "error",
        }
    }

    /// The combined state of several checks, as GitHub combines them: `failure` if any failed
    /// or erred, else `pending` if any is pending or there are none, else `success`.
    pub fn combined(states: impl IntoIterator<Item = CheckState>) -> CheckState {
        let mut out = None;
        for s in states {
            out = Some(match (out, s) {
                (Some(CheckState::Failure), _) | (_, CheckState::Failure | CheckState::Error) => CheckState::Failure,
                (Some(CheckState::Pending), _) | (_, CheckState::Pending) => CheckState::Pending,
                _ => CheckState::Success,
            });
        }
        out.unwrap_or(CheckState::Pending)
    }
}

/// One status check of a release, by context (a CI job, a security scan): Akkeris' release
/// status. A release has at most one per context; a new state replaces the old.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusCheck {
    /// Its id.
    pub id: Uuid,
    /// The app.
    pub app_id: Uuid,
    /// The release it judges.
    pub release_id: Uuid,
    /// What reports it (`ci/tests`).
    pub context: String,
    /// Its state.
    pub state: CheckState,
    /// A human name for the check.
    pub name: Option<String>,
    /// What the check says.
    pub description: Option<String>,
    /// Where to read more.
    pub target_url: Option<String>,
    /// Creation time, seconds since the epoch.
    pub created_at: i64,
    /// Last change, seconds since the epoch.
    pub updated_at: i64,
}

/// One app a promotion deployed to, and the release it made there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotionTarget {
    /// Its id.
    pub id: Uuid,
    /// The target app.
    pub app_id: Uuid,
    /// The release the promotion made on it: its status is the target's.
    pub release_id: Uuid,
}

/// A promotion: a source release's code deployed to the apps of the next stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Promotion {
    /// Its id.
    pub id: Uuid,
    /// The pipeline.
    pub pipeline_id: Uuid,
    /// The app promoted from.
    pub source_app_id: Uuid,
    /// The release promoted.
    pub source_release_id: Uuid,
    /// Whether it was a safe promotion (every config var name of the source on every target).
    pub safe: bool,
    /// Where it went.
    pub targets: Vec<PromotionTarget>,
    /// Creation time, seconds since the epoch.
    pub created_at: i64,
    /// Last change, seconds since the epoch.
    pub updated_at: i64,
}

/// What a webhook is told about (Akkeris' hook events Wharf raises).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HookEvent {
    /// A release was made, or its status settled.
    Release,
    /// A build was started, or its status settled (`pending`, then `succeeded` or `failed`).
    Build,
    /// A promotion was made from or to the app.
    Promotion,
    /// One of the app's dynos exited unasked (Heroku's H10).
    Crashed,
    /// The app was deleted.
    Destroy,
    /// A canary release of the app was promoted to it or aborted (issue 22).
    Canary,
    /// A preview app of one of the app's pull requests was created, rebuilt or deleted.
    Preview,
}

impl HookEvent {
    /// Every event, in the API's order.
    pub const ALL: [HookEvent; 7] = [
        HookEvent::Release,
        HookEvent::Build,
        HookEvent::Promotion,
        HookEvent::Crashed,
        HookEvent::Destroy,
        HookEvent::Canary,
        HookEvent::Preview,
    ];

    /// The event's name, as the API and the delivery's `X-Wharf-Event` write it.
    pub fn as_str(self) -> &'static str {
        match self {
            HookEvent::Release => "release",
            HookEvent::Build => "build",
            HookEvent::Promotion => "promotion",
            HookEvent::Crashed => "crashed",
            HookEvent::Destroy => "destroy",
            HookEvent::Canary => "canary",
            HookEvent::Preview => "preview",
        }
    }
}

/// An app's webhook: events POSTed as JSON to a URL, signed with HMAC-SHA256 of its secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hook {
    /// Its id.
    pub id: Uuid,
    /// The app.
    pub app_id: Uuid,
    /// Where deliveries go.
    pub url: HookUrl,
    /// What it is told about, sorted, at least one.
    pub events: Vec<HookEvent>,
    /// The HMAC key of each delivery's signature (a secret: never in output or `Debug`).
    pub secret: String,
    /// Whether deliveries are made.
    pub active: bool,
    /// Creation time, seconds since the epoch.
    pub created_at: i64,
    /// Last change, seconds since the epoch.
    pub updated_at: i64,
}

impl std::fmt::Debug for Hook {
    // The secret signs deliveries: debug output leaves it out.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hook")
            .field("id", &self.id)
            .field("app_id", &self.app_id)
            .field("url", &self.url)
            .field("events", &self.events)
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

impl super::Change {
    /// The kind and id of the record this change deletes, if it is a deletion: for readers of
    /// a change list (which deliveries it makes), never for building one.
    pub fn deletes(&self) -> Option<(super::Kind, Uuid)> {
        match self {
            super::Change::Delete(kind, id) => Some((*kind, *id)),
            super::Change::Put(_) => None,
        }
    }
}

impl Record for Pipeline {
    type Key = PipelineName;
    fn id(&self) -> Uuid {
        self.id
    }
    fn key(&self) -> Option<PipelineName> {
        Some(self.name.clone())
    }
}

impl Model {
    /// Every pipeline, by name.
    pub fn pipelines(&self) -> Vec<&Pipeline> {
        let mut v: Vec<&Pipeline> = self.pipelines.values().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// The pipeline with this id or name.
    pub fn pipeline(&self, id_or_name: &str) -> Option<&Pipeline> {
        match id_or_name.parse::<Uuid>() {
            Ok(id) => self.pipelines.get(&id),
            Err(_) => PipelineName::try_new(id_or_name).ok().and_then(|n| self.pipelines.get_by_key(&n)),
        }
    }

    /// Couplings matching a filter, by pipeline, stage and creation.
    pub fn couplings_where(&self, keep: impl Fn(&Coupling) -> bool) -> Vec<&Coupling> {
        let mut v: Vec<&Coupling> = self.couplings.values().filter(|c| keep(c)).collect();
        v.sort_by_key(|c| (c.pipeline_id, c.stage, c.created_at, c.id));
        v
    }

    /// The coupling with this id.
    pub fn coupling(&self, id: &str) -> Option<&Coupling> {
        self.couplings.get(&id.parse::<Uuid>().ok()?)
    }

    /// The app's coupling: an app is in at most one pipeline.
    pub fn coupling_of(&self, app_id: Uuid) -> Option<&Coupling> {
        self.couplings.values().find(|c| c.app_id == app_id)
    }

    /// A release's status checks, by context.
    pub fn checks_of(&self, release_id: Uuid) -> Vec<&StatusCheck> {
        let mut v: Vec<&StatusCheck> = self.checks.values().filter(|c| c.release_id == release_id).collect();
        v.sort_by(|a, b| a.context.cmp(&b.context));
        v
    }

    /// Promotions matching a filter, oldest first.
    pub fn promotions_where(&self, keep: impl Fn(&Promotion) -> bool) -> Vec<&Promotion> {
        let mut v: Vec<&Promotion> = self.promotions.values().filter(|p| keep(p)).collect();
        v.sort_by_key(|p| (p.created_at, p.id));
        v
    }

    /// The promotion with this id.
    pub fn promotion(&self, id: &str) -> Option<&Promotion> {
        self.promotions.get(&id.parse::<Uuid>().ok()?)
    }

    /// The app's webhooks, oldest first.
    pub fn hooks_of(&self, app_id: Uuid) -> Vec<&Hook> {
        let mut v: Vec<&Hook> = self.hooks.values().filter(|h| h.app_id == app_id).collect();
        v.sort_by_key(|h| (h.created_at, h.id));
        v
    }

    /// The app's webhook with this id.
    pub fn hook(&self, app_id: Uuid, id: &str) -> Option<&Hook> {
        self.hooks.get(&id.parse::<Uuid>().ok()?).filter(|h| h.app_id == app_id)
    }

    /// The app's `canary` feature, if it was ever set.
    pub fn canary_feature_of(&self, app_id: Uuid) -> Option<&CanaryFeature> {
        self.canary_features.get(&app_id)
    }

    /// The app's canary releases, oldest first.
    pub fn canary_releases_of(&self, app_id: Uuid) -> Vec<&CanaryRelease> {
        let mut v: Vec<&CanaryRelease> = self.canary_releases.values().filter(|c| c.app_id == app_id).collect();
        v.sort_by_key(|c| (c.created_at, c.id));
        v
    }

    /// Every canary release whose outcome is still open, oldest first.
    pub fn open_canary_releases(&self) -> Vec<&CanaryRelease> {
        let mut v: Vec<&CanaryRelease> = self.canary_releases.values().filter(|c| c.state.is_open()).collect();
        v.sort_by_key(|c| (c.created_at, c.id));
        v
    }

    /// Whether the app is the canary app of an open canary release (Wharf made it, and deletes
    /// it when the outcome is known).
    pub fn runs_canary_release(&self, app_id: Uuid) -> bool {
        self.canary_releases.values().any(|c| c.canary_app_id == app_id && c.state.is_open())
    }

    /// Whether Wharf made the app on another's behalf and deletes it by itself: the canary app
    /// of an open canary release, or a pull request's preview app. Such an app's coming and
    /// going must not change the other apps of its space: the supervisor offers it to them as
    /// no service, since a new service changes every dyno's environment and so restarts it.
    pub fn is_transient_app(&self, app_id: Uuid) -> bool {
        self.runs_canary_release(app_id) || self.all_previews().any(|p| p.preview_app_id == app_id)
    }

    /// The canary release that makes (or made) this release id, if one does.
    pub fn canary_release_making(&self, release_id: Uuid) -> Option<&CanaryRelease> {
        self.canary_releases.values().find(|c| c.release_id == release_id)
    }

    /// The release the app's dynos run, or are being rolled to: its newest, except one that was
    /// withdrawn (it failed before any dyno ran it: `Release::withdrawn`), one still in its
    /// canary, or one whose canary was aborted, which the app never runs. It is the base of
    /// every release that brings no code of its own (a change of config vars or commands keeps
    /// its slug), and the app's config vars and formation commands are always its (a withdrawn
    /// release puts them back: `ControlPlane::settle_release`), so a failed deploy is never
    /// deployed again by the next config change.
    pub fn running_release(&self, app_id: Uuid) -> Option<&super::Release> {
        let held = |r: &super::Release| {
            self.canary_release_making(r.id).is_some_and(|c| c.state != CanaryReleaseState::Promoted)
        };
        self.releases_of(app_id).into_iter().filter(|r| !r.withdrawn && !held(r)).max_by_key(|r| r.version)
    }

    /// What deleting an app takes beside its own records: its coupling, its releases' checks,
    /// its hooks, its canary feature, its canary releases and the canary app of an open one.
    /// Promotions from or to it stay: they are the pipeline's history, and show the app as
    /// deleted (`http/pipelines.rs`).
    pub(super) fn pipeline_dependents_of_app(&self, app_id: Uuid) -> Vec<(super::Kind, Uuid)> {
        use super::Kind;
        let mut d: Vec<(Kind, Uuid)> =
            self.couplings_where(|c| c.app_id == app_id).iter().map(|c| (Kind::Coupling, c.id)).collect();
        d.extend(self.checks.values().filter(|c| c.app_id == app_id).map(|c| (Kind::StatusCheck, c.id)));
        d.extend(self.hooks_of(app_id).iter().map(|h| (Kind::Hook, h.id)));
        d.extend(self.canary_feature_of(app_id).map(|f| (Kind::CanaryFeature, f.id)));
        for c in self.canary_releases_of(app_id) {
            if c.state.is_open() && self.apps.get(&c.canary_app_id).is_some() {
                d.push((Kind::App, c.canary_app_id));
            }
            d.push((Kind::CanaryRelease, c.id));
        }
        d
    }

    /// What deleting a pipeline takes: its couplings and promotions.
    pub(super) fn pipeline_dependents(&self, pipeline_id: Uuid) -> Vec<(super::Kind, Uuid)> {
        use super::Kind;
        let mut d: Vec<(Kind, Uuid)> =
            self.couplings_where(|c| c.pipeline_id == pipeline_id).iter().map(|c| (Kind::Coupling, c.id)).collect();
        d.extend(self.promotions_where(|p| p.pipeline_id == pipeline_id).iter().map(|p| (Kind::Promotion, p.id)));
        d
    }
}

#[cfg(test)]
mod tests {
    use super::CheckState::{self, *};
    use super::*;
    use crate::model::{Change, Kind, Object, Space};

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    /// A space (1), apps 10 and 11 in pipeline 20 (development and staging), a promotion (30)
    /// from 10 to 11, a status check (40) and a hook (50) on app 10.
    fn model() -> Model {
        let app = |n, name: &str| Object::App(crate::model::tests::test_app(n, name));
        let coupling = |n, app_id, stage| {
            Object::Coupling(Coupling {
                id: id(n),
                pipeline_id: id(20),
                app_id,
                stage,
                required_contexts: vec![],
                created_at: 0,
                updated_at: 0,
            })
        };
        Model::from_objects(
            1,
            [
                Object::Space(Space {
                    id: id(1),
                    name: "s".parse().unwrap(),
                    compliance: vec![],
                    created_at: 0,
                    updated_at: 0,
                }),
                app(10, "a"),
                app(11, "b"),
                Object::Pipeline(Pipeline {
                    id: id(20),
                    name: PipelineName::try_new("p").unwrap(),
                    created_at: 0,
                    updated_at: 0,
                }),
                coupling(21, id(10), Stage::Development),
                coupling(22, id(11), Stage::Staging),
                Object::Promotion(Promotion {
                    id: id(30),
                    pipeline_id: id(20),
                    source_app_id: id(10),
                    source_release_id: id(60),
                    safe: false,
                    targets: vec![PromotionTarget { id: id(31), app_id: id(11), release_id: id(61) }],
                    created_at: 0,
                    updated_at: 0,
                }),
                Object::StatusCheck(StatusCheck {
                    id: id(40),
                    app_id: id(10),
                    release_id: id(60),
                    context: "ci".into(),
                    state: Success,
                    name: None,
                    description: None,
                    target_url: None,
                    created_at: 0,
                    updated_at: 0,
                }),
                Object::Hook(Hook {
                    id: id(50),
                    app_id: id(10),
                    url: HookUrl::try_new("https://h.example.com/").unwrap(),
                    events: vec![HookEvent::Release],
                    secret: "s".into(),
                    active: true,
                    created_at: 0,
                    updated_at: 0,
                }),
                Object::CanaryFeature(CanaryFeature {
                    id: id(10),
                    enabled: true,
                    policy: CanaryPolicy::with_weight(wharf_domain::Weight::from_percent(10.0).unwrap()),
                    soak_requests: Some(10),
                    soak_seconds: None,
                    created_at: 0,
                    updated_at: 0,
                }),
                app(12, "acanary"),
                Object::CanaryRelease(Box::new(CanaryRelease {
                    id: id(80),
                    app_id: id(10),
                    canary_app_id: id(12),
                    canary_app: "acanary-s".into(),
                    canary_id: None,
                    release_id: id(81),
                    promotion_id: None,
                    policy: CanaryPolicy::with_weight(wharf_domain::Weight::from_percent(10.0).unwrap()),
                    soak_requests: Some(10),
                    soak_seconds: None,
                    state: CanaryReleaseState::Starting,
                    evidence: None,
                    outcome: None,
                    running_since: None,
                    created_at: 0,
                    updated_at: 0,
                })),
            ],
        )
    }

    fn deleted(changes: &[Change]) -> Vec<(Kind, Uuid)> {
        changes.iter().map(|c| c.deletes().expect("a cascade only deletes")).collect()
    }

    #[test]
    fn deleting_an_app_or_a_pipeline_leaves_nothing_pointing_at_it() {
        let m = model();
        let app = deleted(&m.cascade(Kind::App, id(10)));
        for want in [(Kind::Coupling, id(21)), (Kind::StatusCheck, id(40)), (Kind::Hook, id(50))].into_iter().chain([
            (Kind::CanaryFeature, id(10)),
            (Kind::CanaryRelease, id(80)),
            (Kind::App, id(12)),
        ]) {
            assert!(app.contains(&want), "{want:?} in {app:?}");
        }
        assert!(!app.contains(&(Kind::Coupling, id(22))), "the other app stays coupled: {app:?}");
        // Promotions are the pipeline's history: neither end's deletion takes them.
        assert!(!app.contains(&(Kind::Promotion, id(30))), "{app:?}");
        assert!(!deleted(&m.cascade(Kind::App, id(11))).contains(&(Kind::Promotion, id(30))));
        // A canary app's own deletion leaves its canary release, which the watcher then aborts.
        assert_eq!(deleted(&m.cascade(Kind::App, id(12))), [(Kind::App, id(12))]);
        assert_eq!(
            deleted(&m.cascade(Kind::Pipeline, id(20))),
            [(Kind::Coupling, id(21)), (Kind::Coupling, id(22)), (Kind::Promotion, id(30)), (Kind::Pipeline, id(20))]
        );
        let mut after = m.clone();
        after.apply(2, m.cascade(Kind::Pipeline, id(20)));
        assert!(after.pipelines().is_empty() && after.coupling_of(id(10)).is_none());
        assert!(after.promotions_where(|_| true).is_empty() && after.app("a-s").is_some(), "the apps stay");
    }

    #[test]
    fn checks_combine_as_github_combines_them() {
        let check = |states: &[CheckState], want: CheckState| {
            assert_eq!(CheckState::combined(states.iter().copied()), want, "{states:?}");
        };
        check(&[], Pending);
        check(&[Success], Success);
        check(&[Success, Pending], Pending);
        check(&[Pending, Failure], Failure);
        check(&[Success, Error], Failure);
        check(&[Failure, Success, Pending], Failure);
    }
}
