//! `/apps/{app}/releases`: an app's releases in Heroku's shape (list with `Range` paging, info,
//! the config vars of one, and rollback by `POST`).
//!
//! Heroku pages lists with `Range: version START..END; max=N, order=asc|desc` and answers `206
//! Partial Content` with `Next-Range` while more remain
//! (<https://devcenter.heroku.com/articles/platform-api-reference#ranges>); the Heroku CLI sends
//! `version ..; max=15, order=desc` (`releases`) and `version ..; order=desc,max=1` (`config:set`,
//! `ps:wait`). Without `Range` the answer is the first 200 in ascending order, as Heroku's.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use wharf_domain::timestamp::format_seconds;

use super::account::{OwnerRef, owner_ref};
use super::config_vars::config_vars_out;
use super::slugs::base_url;
use super::wire::{ApiError, ApiResult, AppRef, Body, Json, Plane, app_ref};
use crate::model::{App, Model, Release};
use crate::plane::{ControlPlane, Error, has_release_phase};

/// Most releases one page holds when the `Range` names no `max`, and the most it may name
/// (Heroku's 200 and 1000).
const DEFAULT_MAX: usize = 200;
const MOST_MAX: usize = 1000;

/// A release as Heroku shapes it.
#[derive(Serialize)]
pub(super) struct ReleaseOut {
    id: Uuid,
    version: u32,
    description: String,
    status: &'static str,
    /// Whether it is the app's current release (`Model::current_release`): the one its dynos
    /// run, which a release that failed but runs is too.
    current: bool,
    /// Whether a rollback to it would be taken: not for a release that failed, nor one whose
    /// slug was deleted (`plane::check_rollback_target`, which refuses those rollbacks).
    eligible_for_rollback: bool,
    /// Wharf has no add-ons yet.
    addon_plan_names: Vec<String>,
    artifacts: Vec<()>,
    app: AppRef,
    /// The slug the release runs, `{"id"}`; null for a release of commands alone.
    slug: Option<SlugRef>,
    /// Releases are made with the admin token, the one account.
    user: OwnerRef,
    /// For a release with a release phase (a `release` process type with a command), the URL
    /// its phase's output streams from while it runs and is read from once it ended
    /// (`GET /releases/{id}/output`, no token: `outputs.rs`); null for a release without one,
    /// as Heroku's. The lines are in the app's log stream too (`app[release.N]`).
    output_stream_url: Option<String>,
    created_at: String,
    updated_at: String,
}

#[derive(Serialize)]
pub(super) struct SlugRef {
    id: Uuid,
}

/// The release in Heroku's shape; `base` is the API's own URL (`slugs::base_url`), for its
/// `output_stream_url`.
fn release_out(plane: &ControlPlane, m: &Model, r: &Release, base: &str) -> Option<ReleaseOut> {
    let app = m.app(&r.app_id.to_string())?;
    Some(ReleaseOut {
        id: r.id,
        version: r.version,
        description: r.description.clone(),
        status: r.status.as_str(),
        current: m.current_release(r.app_id).is_some_and(|c| c.id == r.id),
        eligible_for_rollback: crate::plane::check_rollback_target(m, r).is_ok(),
        addon_plan_names: vec![],
        artifacts: vec![],
        app: app_ref(m, app),
        slug: r.slug_id.map(|id| SlugRef { id }),
        user: owner_ref(plane),
        output_stream_url: has_release_phase(r).then(|| format!("{base}/releases/{}/output", r.id)),
        created_at: format_seconds(r.created_at),
        updated_at: format_seconds(r.updated_at),
    })
}

/// Ascending or descending versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    Asc,
    Desc,
}

/// A parsed `Range` header over releases' versions.
#[derive(Debug, Clone, PartialEq, Eq)]
struct VersionRange {
    /// The first version, in the list's order; exclusive when `Next-Range` wrote `]N`.
    start: Option<(u32, bool)>,
    /// The last version, in the list's order, inclusive.
    end: Option<u32>,
    max: usize,
    order: Order,
}

impl Default for VersionRange {
    fn default() -> Self {
        VersionRange { start: None, end: None, max: DEFAULT_MAX, order: Order::Asc }
    }
}

/// Parses `version [[]START]..[END][; max=N, order=asc|desc]`; a message for anything else.
fn parse_range(value: &str) -> Result<VersionRange, String> {
    let bad = || format!("invalid Range {value:?}: expected version START..END; max=N, order=asc|desc");
    let (span, params) = value.split_once(';').unwrap_or((value, ""));
    let span = span.trim().strip_prefix("version").ok_or_else(|| format!("{}; only version ranges", bad()))?;
    let (start, end) = span.trim().split_once("..").ok_or_else(bad)?;
    let number = |s: &str| s.parse::<u32>().ok().filter(|_| s.bytes().all(|b| b.is_ascii_digit()));
    let mut range = VersionRange::default();
    let start = start.trim();
    if !start.is_empty() {
        let (digits, exclusive) = start.strip_prefix(']').map_or((start, false), |d| (d, true));
        range.start = Some((number(digits).ok_or_else(bad)?, exclusive));
    }
    let end = end.trim();
    if !end.is_empty() {
        range.end = Some(number(end).ok_or_else(bad)?);
    }
    for param in params.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match param.split_once('=').map(|(k, v)| (k.trim(), v.trim())) {
            Some(("max", v)) => {
                range.max = number(v)
                    .map(|n| n as usize)
                    .filter(|n| (1..=MOST_MAX).contains(n))
                    .ok_or_else(|| format!("invalid Range {value:?}: max must be between 1 and {MOST_MAX}"))?;
            }
            Some(("order", "asc")) => range.order = Order::Asc,
            Some(("order", "desc")) => range.order = Order::Desc,
            _ => return Err(bad()),
        }
    }
    Ok(range)
}

/// The versions of `all` (ascending) that `range` selects, and whether more follow.
fn select(all: &[u32], range: &VersionRange) -> (Vec<u32>, bool) {
    let mut ordered: Vec<u32> = all.to_vec();
    if range.order == Order::Desc {
        ordered.reverse();
    }
    // "Before" and "after" in the list's order.
    let before = |a: u32, b: u32| if range.order == Order::Asc { a < b } else { a > b };
    let picked: Vec<u32> = ordered
        .into_iter()
        .filter(|v| match range.start {
            None => true,
            Some((s, exclusive)) => before(s, *v) || (!exclusive && *v == s),
        })
        .filter(|v| range.end.is_none_or(|e| !before(e, *v)))
        .collect();
    let more = picked.len() > range.max;
    (picked.into_iter().take(range.max).collect(), more)
}

/// `GET /apps/{app}/releases`: the app's releases, paged by `Range`.
pub(super) async fn list_releases(
    State(plane): Plane,
    Path(app): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let range = match headers.get(header::RANGE) {
        None => VersionRange::default(),
        Some(v) => parse_range(v.to_str().unwrap_or_default())
            .map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", m))?,
    };
    let base = base_url(&plane, &headers);
    let (out, more) = plane
        .read(|m| {
            let a = m.app(&app).ok_or(Error::NotFound { what: "app", key: app.clone() })?;
            let releases = m.releases_of(a.id);
            let versions: Vec<u32> = releases.iter().map(|r| r.version).collect();
            let (picked, more) = select(&versions, &range);
            let out: Vec<ReleaseOut> = picked
                .iter()
                .filter_map(|v| releases.iter().find(|r| r.version == *v))
                .filter_map(|r| release_out(&plane, m, r, &base))
                .collect();
            Ok::<_, Error>((out, more))
        })
        .await?;
    let order = if range.order == Order::Asc { "asc" } else { "desc" };
    let mut response = Json(&out).into_response();
    let h = response.headers_mut();
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("version"));
    if let (Some(first), Some(last)) = (out.first(), out.last()) {
        let content = format!("version {}..{}; max={}, order={order}", first.version, last.version, range.max);
        h.insert(header::CONTENT_RANGE, HeaderValue::from_str(&content).expect("ASCII"));
        if more {
            let next = format!("version ]{}..; max={}, order={order}", last.version, range.max);
            h.insert("next-range", HeaderValue::from_str(&next).expect("ASCII"));
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        }
    }
    Ok(response)
}

/// The app `app` and its release `release` (by id, `N` or `vN`); 404 naming whichever is missing.
fn app_release<'m>(m: &'m Model, app: &str, release: &str) -> Result<(&'m App, &'m Release), Error> {
    let a = m.app(app).ok_or_else(|| Error::NotFound { what: "app", key: app.to_owned() })?;
    let r = m.release(a.id, release).ok_or_else(|| Error::NotFound { what: "release", key: release.to_owned() })?;
    Ok((a, r))
}

/// `GET /apps/{app}/releases/{release}`: one release, by id, `N` or `vN`.
pub(super) async fn get_release(
    State(plane): Plane,
    Path((app, release)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<impl IntoResponse> {
    let base = base_url(&plane, &headers);
    let out = plane
        .read(|m| {
            let (_, r) = app_release(m, &app, &release)?;
            release_out(&plane, m, r, &base).ok_or(Error::NotFound { what: "app", key: app.clone() })
        })
        .await?;
    Ok(Json(out))
}

/// `GET /apps/{app}/releases/{release}/config-vars`: the config vars as of that release
/// (the Heroku CLI's `releases:info`), redacted as the app's own are in a `socs` space.
pub(super) async fn get_release_config_vars(
    State(plane): Plane,
    Path((app, release)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    let out = plane
        .read(|m| {
            let (a, r) = app_release(m, &app, &release)?;
            Ok::<_, Error>(config_vars_out(m, a, &r.config_vars))
        })
        .await?;
    Ok(Json(out))
}

/// A release to roll back to: its id, or its version as a number or `"N"`/`"vN"`.
pub(super) enum ReleaseId {
    Version(u32),
    Named(String),
}

/// What a release reference is, in the words a refusal of another JSON value uses (`invalid
/// type: `release` is true, expected ...`): never serde's own (`untagged enum ReleaseId`).
const RELEASE_ID_EXPECTED: &str =
    "a release: its id (a UUID string), or its version as a whole number (3) or a string (\"3\", \"v3\")";

impl<'de> Deserialize<'de> for ReleaseId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::{Unexpected, Visitor};
        struct Id;
        impl Visitor<'_> for Id {
            type Value = ReleaseId;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(RELEASE_ID_EXPECTED)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ReleaseId, E> {
                u32::try_from(v).map(ReleaseId::Version).map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ReleaseId, E> {
                u32::try_from(v).map(ReleaseId::Version).map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ReleaseId, E> {
                Ok(ReleaseId::Named(v.to_owned()))
            }
        }
        deserializer.deserialize_any(Id)
    }
}

/// `POST /apps/{app}/releases`: Heroku's release create, with either `release` (a rollback)
/// or `slug` (a deploy of that slug), and an optional `description`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReleaseIn {
    #[serde(default)]
    release: Option<ReleaseId>,
    #[serde(default)]
    slug: Option<String>,
    #[serde(default)]
    description: Option<String>,
}

/// `POST /apps/{app}/releases {"release": ID}` rolls back to that release's config vars, slug
/// and commands as a new release (`Rollback to vN`); `{"slug": ID}` releases that slug with the
/// app's config vars (`Deploy <commit>`). 404 for a release or slug that does not exist, 422
/// for both or neither named, or a slug whose archive was never uploaded.
pub(super) async fn rollback(
    State(plane): Plane,
    Path(app): Path<String>,
    headers: HeaderMap,
    Body(req): Body<ReleaseIn>,
) -> ApiResult<impl IntoResponse> {
    if req.description.as_ref().is_some_and(|d| d.len() > 1024) {
        return Err(ApiError::invalid("description is longer than 1024 bytes"));
    }
    let made = match (req.release, req.slug) {
        (Some(release), None) => {
            let release = match release {
                ReleaseId::Version(v) => v.to_string(),
                ReleaseId::Named(s) => s,
            };
            plane.rollback(&app, &release).await?
        }
        (None, Some(slug)) => plane.release_slug(&app, &slug, req.description).await?,
        _ => return Err(ApiError::invalid("name exactly one of release (a rollback) and slug (a deploy)")),
    };
    let base = base_url(&plane, &headers);
    let out = plane.read(|m| release_out(&plane, m, &made, &base)).await;
    let out = out.ok_or(Error::NotFound { what: "app", key: app })?;
    Ok((StatusCode::CREATED, Json(out)))
}

/// `GET /releases/{release}/output`: the release phase's output (`outputs::stream`, under
/// `plane::output_states`' rule); 404 for a release without a release phase, as for one that
/// does not exist.
pub(super) async fn release_output(State(plane): Plane, Path(release): Path<String>) -> ApiResult<Response> {
    let id = release.parse::<Uuid>().ok();
    super::outputs::stream(plane, "release", &release, id, crate::plane::release_output_state).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FE26 #5: a `release` of the wrong kind is refused in JSON's words, saying what a release
    /// reference is, never serde's (`untagged enum ReleaseId`).
    #[test]
    fn a_release_reference_of_the_wrong_kind_is_refused_saying_what_one_is() {
        // (body, what the refusal says of the value)
        let rows = [
            (r#"{"release": [1]}"#, "invalid type: `release` is an array"),
            (r#"{"release": true}"#, "invalid type: `release` is true"),
            (r#"{"release": {"id": "x"}}"#, "invalid type: `release` is an object"),
            (r#"{"release": -3}"#, "invalid value: `release` is the number -3"),
            (r#"{"release": 1.5}"#, "invalid type: `release` is the number 1.5"),
            (r#"{"release": 4294967296}"#, "invalid value: `release` is the number 4294967296"),
            (r#"{"release": 99999999999999999999}"#, "invalid type: `release` is the number"),
        ];
        for (body, says) in rows {
            let e = super::super::wire::parse_json::<ReleaseIn>(body.as_bytes()).map(|_| ()).unwrap_err();
            let said = format!("{e:?}");
            assert!(said.contains("invalid_params") && said.contains(says), "{body}: {said}");
            assert!(said.contains(", expected a release: its id (a UUID string), or its version"), "{body}: {said}");
            assert!(!said.contains("untagged") && !said.contains("ReleaseId"), "{body}: {said}");
        }
        // (body, the release named)
        for (body, named) in [(r#"{"release": 3}"#, "3"), (r#"{"release": "v3"}"#, "v3"), (r#"{"release": "0"}"#, "0")]
        {
            let parsed = super::super::wire::parse_json::<ReleaseIn>(body.as_bytes()).ok().and_then(|r| r.release);
            let got = parsed.map(|r| match r {
                ReleaseId::Version(v) => v.to_string(),
                ReleaseId::Named(s) => s,
            });
            assert_eq!(got.as_deref(), Some(named), "{body}");
        }
    }

    fn range(start: Option<(u32, bool)>, end: Option<u32>, max: usize, order: Order) -> VersionRange {
        VersionRange { start, end, max, order }
    }

    #[test]
    fn ranges_parse_as_heroku_clients_write_them() {
        let check = |input: &str, expected: Result<VersionRange, ()>| {
            assert_eq!(parse_range(input).map_err(|_| ()), expected, "{input:?}");
        };
        check("version ..; max=15, order=desc", Ok(range(None, None, 15, Order::Desc)));
        check("version ..; order=desc,max=1", Ok(range(None, None, 1, Order::Desc)));
        check("version ..", Ok(range(None, None, DEFAULT_MAX, Order::Asc)));
        check("version 3..7", Ok(range(Some((3, false)), Some(7), DEFAULT_MAX, Order::Asc)));
        check("version ]5..; max=2, order=desc", Ok(range(Some((5, true)), None, 2, Order::Desc)));
        check("id ..; max=1", Err(()));
        check("version ..; max=0", Err(()));
        check("version ..; max=1001", Err(()));
        check("version ..; max=-1", Err(()));
        check("version ..; order=sideways", Err(()));
        check("version x..", Err(()));
        check("version 3", Err(()));
        check("version ..; color=red", Err(()));
    }

    #[test]
    fn a_range_selects_in_its_order_and_says_whether_more_follow() {
        let all = [1, 2, 3, 4, 5];
        let check = |r: VersionRange, expected: (&[u32], bool)| {
            let (picked, more) = select(&all, &r);
            assert_eq!((picked.as_slice(), more), expected, "{r:?}");
        };
        check(range(None, None, 1, Order::Desc), (&[5], true));
        check(range(None, None, 15, Order::Desc), (&[5, 4, 3, 2, 1], false));
        check(range(None, None, 2, Order::Asc), (&[1, 2], true));
        check(range(Some((2, true)), None, 2, Order::Asc), (&[3, 4], true));
        check(range(Some((4, true)), None, 2, Order::Desc), (&[3, 2], true));
        check(range(Some((4, false)), Some(2), 10, Order::Desc), (&[4, 3, 2], false));
        check(range(Some((2, false)), Some(3), 10, Order::Asc), (&[2, 3], false));
        check(range(Some((9, false)), None, 10, Order::Asc), (&[], false));
    }
}
