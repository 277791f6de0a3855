//! The records of preview apps (issue 22; Heroku's review apps): a development app's `preview`
//! feature, which holds the secret GitHub signs its `pull_request` events with, and one
//! [`Preview`] per open pull request, naming the review-stage app forked for it. Their serde
//! shapes are the store's format, as in `records.rs`.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Model;

/// How many GitHub delivery ids (`X-GitHub-Delivery`) a feature remembers, to refuse a replayed
/// delivery: the newest ones, oldest dropped first.
pub const REMEMBERED_DELIVERIES: usize = 256;

/// A development app's `preview` feature: with it enabled, a signed `pull_request` event for
/// the app creates, rebuilds or deletes the pull request's preview app. One per app; its id is
/// the app's.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviewFeature {
    /// The app's id (one feature record per app).
    pub id: Uuid,
    /// Whether pull-request events are acted on.
    pub enabled: bool,
    /// The HMAC-SHA256 key GitHub signs each event with (`X-Hub-Signature-256`): a secret, never
    /// in output, logs or `Debug`.
    pub secret: String,
    /// A preview app not deployed for this many seconds is deleted by the sweeper (Heroku's
    /// `stale_days`, in seconds).
    pub max_age_seconds: u64,
    /// The newest [`REMEMBERED_DELIVERIES`] delivery ids acted on, oldest first: a delivery
    /// seen again is a replay.
    pub deliveries: Vec<String>,
    /// The last event acted on for each pull request (the newest [`REMEMBERED_DELIVERIES`]
    /// pull requests; closed ones stay, so a closed pull request's earlier event cannot
    /// recreate its preview). GitHub does not sign `X-GitHub-Delivery`, so `deliveries` alone
    /// would act on a captured event resent under a new id; what is here is from the signed
    /// body. Absent in records stored before it was added.
    #[serde(default)]
    pub acted_on: Vec<ActedOn>,
    /// Creation time, seconds since the epoch.
    pub created_at: i64,
    /// Last change, seconds since the epoch.
    pub updated_at: i64,
}

impl std::fmt::Debug for PreviewFeature {
    // The secret authenticates GitHub's events: debug output leaves it out.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreviewFeature")
            .field("id", &self.id)
            .field("enabled", &self.enabled)
            .field("max_age_seconds", &self.max_age_seconds)
            .finish_non_exhaustive()
    }
}

/// The last `pull_request` event acted on for one pull request, from the signed body: an event
/// that is not newer (an older `pull_request.updated_at`, or the same one with the same action
/// and head commit) is a replay or a stale delivery, and is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActedOn {
    /// The pull request's number.
    pub number: u64,
    /// `pull_request.updated_at`, microseconds since the epoch.
    pub updated_at: i64,
    /// The event's `action` (`opened`, `reopened`, `synchronize`, `closed`).
    pub action: String,
    /// `pull_request.head.sha`.
    pub head_sha: String,
}

/// One pull request's preview app: a review-stage app forked from the development app (its
/// config vars and process types, web at quantity 1, no sites), running the pull request's
/// head commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preview {
    /// Its id.
    pub id: Uuid,
    /// The development app it was forked from (the app whose feature took the event).
    pub app_id: Uuid,
    /// The preview app.
    pub preview_app_id: Uuid,
    /// The pull request's number.
    pub number: u64,
    /// The pull request's head branch (`pull_request.head.ref`).
    pub head_ref: String,
    /// The head commit built last (`pull_request.head.sha`).
    pub head_sha: String,
    /// The URL the head commit's source was fetched from.
    pub source_url: String,
    /// The build of the head commit.
    pub build_id: Option<Uuid>,
    /// Creation time, seconds since the epoch.
    pub created_at: i64,
    /// Last deploy (creation or rebuild), seconds since the epoch: what the sweeper's age is
    /// counted from.
    pub updated_at: i64,
}

impl Model {
    /// The app's `preview` feature, if it was ever set.
    pub fn preview_feature_of(&self, app_id: Uuid) -> Option<&PreviewFeature> {
        self.preview_features.get(&app_id)
    }

    /// The previews forked from the app, by pull request number.
    pub fn previews_of(&self, app_id: Uuid) -> Vec<&Preview> {
        let mut v: Vec<&Preview> = self.previews.values().filter(|p| p.app_id == app_id).collect();
        v.sort_by_key(|p| p.number);
        v
    }

    /// Every preview, of every app.
    pub fn all_previews(&self) -> impl Iterator<Item = &Preview> {
        self.previews.values()
    }

    /// The app's preview of pull request `number`.
    pub fn preview_for(&self, app_id: Uuid, number: u64) -> Option<&Preview> {
        self.previews.values().find(|p| p.app_id == app_id && p.number == number)
    }

    /// What deleting an app takes of previews: its preview feature, the preview apps forked from
    /// it (each with everything an app takes), and the preview record naming it as a preview.
    pub(super) fn preview_dependents_of_app(&self, app_id: Uuid) -> Vec<(super::Kind, Uuid)> {
        use super::Kind;
        let mut d: Vec<(Kind, Uuid)> = Vec::new();
        d.extend(self.preview_feature_of(app_id).map(|f| (Kind::PreviewFeature, f.id)));
        for p in self.previews.values() {
            if p.app_id == app_id {
                d.push((Kind::Preview, p.id));
                d.push((Kind::App, p.preview_app_id));
            } else if p.preview_app_id == app_id {
                d.push((Kind::Preview, p.id));
            }
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Change, Kind, Object, Space};

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    /// A space (1), the development app 10 with its feature, its preview app 11 (preview 20) and
    /// an unrelated app 12.
    fn model() -> Model {
        let app = |n, name: &str| Object::App(crate::model::tests::test_app(n, name));
        let space = Space { id: id(1), name: "s".parse().unwrap(), compliance: vec![], created_at: 0, updated_at: 0 };
        Model::from_objects(
            1,
            [
                Object::Space(space),
                app(10, "dev"),
                app(11, "devpr7"),
                app(12, "other"),
                Object::PreviewFeature(PreviewFeature {
                    id: id(10),
                    enabled: true,
                    secret: "0123456789abcdef".into(),
                    max_age_seconds: 60,
                    deliveries: vec![],
                    acted_on: vec![],
                    created_at: 0,
                    updated_at: 0,
                }),
                Object::Preview(Preview {
                    id: id(20),
                    app_id: id(10),
                    preview_app_id: id(11),
                    number: 7,
                    head_ref: "feature".into(),
                    head_sha: "a".repeat(40),
                    source_url: "https://example.com/a.tgz".into(),
                    build_id: None,
                    created_at: 0,
                    updated_at: 0,
                }),
            ],
        )
    }

    fn deleted(changes: &[Change]) -> Vec<(Kind, Uuid)> {
        changes.iter().filter_map(Change::deletes).collect()
    }

    #[test]
    fn a_development_app_takes_its_previews_and_a_preview_app_its_record() {
        let m = model();
        assert_eq!(
            deleted(&m.cascade(Kind::App, id(10))),
            [(Kind::PreviewFeature, id(10)), (Kind::Preview, id(20)), (Kind::App, id(11)), (Kind::App, id(10)),],
            "the feature, the preview once, the preview app, then the app"
        );
        assert_eq!(deleted(&m.cascade(Kind::App, id(11))), [(Kind::Preview, id(20)), (Kind::App, id(11))]);
        assert_eq!(deleted(&m.cascade(Kind::App, id(12))), [(Kind::App, id(12))]);
        let mut after = m.clone();
        after.apply(2, m.cascade(Kind::App, id(10)));
        assert!(after.all_previews().next().is_none() && after.preview_feature_of(id(10)).is_none());
        assert!(after.app("other-s").is_some() && after.app("devpr7-s").is_none());
    }
}
