//! The down watch of a running canary release's two sides: how long its canary app, and its
//! production app (the baseline), have had no web dyno, as this process saw it. Either side down
//! for `control_api.canary_down_after` ([`CANARY_DYNO_DOWN_SECONDS`] by default) aborts the
//! canary release (`canary_releases.rs`): a side
//! without a web dyno takes no counted request, so it could be neither judged nor compared with.

use uuid::Uuid;
use wharf_domain::timestamp::now_seconds;

use super::engine::ControlPlane;
use crate::model::{CanaryRelease, Model};

/// The process type the router sends requests to.
const WEB: &str = "web";

/// How long, in seconds, a running canary release's canary app (or production app) may have no
/// web dyno before the release is aborted, unless `control_api.canary_down_after` says otherwise. A canary without a dyno takes no traffic (the router's own "no web dynos"
/// answers are not counted), so it would be neither judged nor soaked, and production's every
/// release would wait on it (409) until someone ended it by hand. The local supervisor restarts
/// a crashed dyno after 1, 2, 4, ... s (with as much again of jitter), so a crash or two does not
/// abort; a dyno that keeps crashing, or that an external runtime stopped running, does.
pub(super) const CANARY_DYNO_DOWN_SECONDS: u64 = 120;

/// How long the canary app has had no web dyno, given whether it has one `now` and `down_since`,
/// the record of this kept between looks (updated here). `None` while it has one.
pub(super) fn canary_dyno_down_for(down_since: &mut Option<i64>, has_web_dyno: bool, now: i64) -> Option<i64> {
    if has_web_dyno {
        *down_since = None;
        return None;
    }
    Some(now - *down_since.get_or_insert(now))
}

/// The side of a canary release whose web dynos are watched for being down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Side {
    /// The canary app's.
    Canary,
    /// The production app's: the baseline.
    Production,
}

impl ControlPlane {
    /// Sets how long either side of a running canary release may have no web dyno before the
    /// release is aborted (`control_api.canary_down_after`); once, at start.
    pub fn set_canary_down_after(&self, after: std::time::Duration) {
        let _ = self.canary_down_after.set(after);
    }

    /// How long, in whole seconds (at least 1), either side may have no web dyno.
    pub(super) fn canary_down_seconds(&self) -> i64 {
        let after = self.canary_down_after.get().map_or(CANARY_DYNO_DOWN_SECONDS, |d| d.as_secs().max(1));
        i64::try_from(after).unwrap_or(i64::MAX)
    }

    /// How long the canary app and the production app of `cr` have each had no web dyno
    /// (`None` for a side that has one now), updating the record kept between looks.
    pub(super) fn sides_down(&self, m: &Model, cr: &CanaryRelease) -> (Option<i64>, Option<i64>) {
        let has_web_dyno = |app_id: Uuid| m.dynos_of(app_id).iter().any(|d| d.dyno_type.as_str() == WEB);
        {
            let mut down = self.canary_dyno_down.lock().unwrap_or_else(|e| e.into_inner());
            let mut watch = |side: Side, app_id: Uuid| {
                let key = (cr.id, side);
                let mut since = down.get(&key).copied();
                let down_for = canary_dyno_down_for(&mut since, has_web_dyno(app_id), now_seconds());
                match since {
                    Some(t) => down.insert(key, t),
                    None => down.remove(&key),
                };
                down_for
            };
            (watch(Side::Canary, cr.canary_app_id), watch(Side::Production, cr.app_id))
        }
    }
}
