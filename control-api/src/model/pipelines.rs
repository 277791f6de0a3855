//! The records of pipelines (Akkeris' shapes): pipelines, their couplings of apps to stages,
//! release statuses, promotions and app webhooks, with the model's queries over them. Their
//! serde shapes are the store's format, as in `records.rs`.

use serde::{Deserialize, Serialize};
use uuid::Uuid;
use wharf_domain::{CanaryPolicy, HookUrl, PipelineName, Stage};

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
/// requests, judged by the routers, and reaches the app only after `soak_requests` canary
/// requests without an abort. One per app; its id is the app's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CanaryFeature {
    /// The app's id (one feature record per app).
    pub id: Uuid,
    /// Whether new releases go through a canary.
    pub enabled: bool,
    /// The canary's share of the app's requests and its judge's settings (`docs/canary.md`).
    pub policy: CanaryPolicy,
    /// Canary requests without an abort after which the release goes to the app.
    pub soak_requests: u64,
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
    /// A promotion was made from or to the app.
    Promotion,
    /// One of the app's dynos exited unasked (Heroku's H10).
    Crashed,
    /// The app was deleted.
    Destroy,
    /// A preview app of one of the app's pull requests was created, rebuilt or deleted.
    Preview,
}

impl HookEvent {
    /// Every event, in the API's order.
    pub const ALL: [HookEvent; 5] =
        [HookEvent::Release, HookEvent::Promotion, HookEvent::Crashed, HookEvent::Destroy, HookEvent::Preview];

    /// The event's name, as the API and the delivery's `X-Wharf-Event` write it.
    pub fn as_str(self) -> &'static str {
        match self {
            HookEvent::Release => "release",
            HookEvent::Promotion => "promotion",
            HookEvent::Crashed => "crashed",
            HookEvent::Destroy => "destroy",
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

    /// What deleting an app takes beside its own records: its coupling, its releases' checks,
    /// its hooks, its canary feature, and every promotion from or to it (a promotion names both
    /// ends).
    pub(super) fn pipeline_dependents_of_app(&self, app_id: Uuid) -> Vec<(super::Kind, Uuid)> {
        use super::Kind;
        let mut d: Vec<(Kind, Uuid)> =
            self.couplings_where(|c| c.app_id == app_id).iter().map(|c| (Kind::Coupling, c.id)).collect();
        d.extend(self.checks.values().filter(|c| c.app_id == app_id).map(|c| (Kind::StatusCheck, c.id)));
        d.extend(self.hooks_of(app_id).iter().map(|h| (Kind::Hook, h.id)));
        d.extend(self.canary_feature_of(app_id).map(|f| (Kind::CanaryFeature, f.id)));
        let touches = |p: &Promotion| p.source_app_id == app_id || p.targets.iter().any(|t| t.app_id == app_id);
        d.extend(self.promotions_where(touches).iter().map(|p| (Kind::Promotion, p.id)));
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
    use crate::model::{App, Change, Kind, Object, Space};

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    /// A space (1), apps 10 and 11 in pipeline 20 (development and staging), a promotion (30)
    /// from 10 to 11, a status check (40) and a hook (50) on app 10.
    fn model() -> Model {
        let app = |n, name: &str| {
            Object::App(App {
                id: id(n),
                name: name.parse().unwrap(),
                space_id: id(1),
                maintenance: false,
                maintenance_page: None,
                created_at: 0,
                updated_at: 0,
            })
        };
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
                    soak_requests: 10,
                    created_at: 0,
                    updated_at: 0,
                }),
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
        for want in
            [(Kind::Coupling, id(21)), (Kind::StatusCheck, id(40)), (Kind::Hook, id(50)), (Kind::Promotion, id(30))]
                .into_iter()
                .chain([(Kind::CanaryFeature, id(10))])
        {
            assert!(app.contains(&want), "{want:?} in {app:?}");
        }
        assert!(!app.contains(&(Kind::Coupling, id(22))), "the other app stays coupled: {app:?}");
        // A target app's deletion takes the promotion that names it too.
        assert!(deleted(&m.cascade(Kind::App, id(11))).contains(&(Kind::Promotion, id(30))));
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
