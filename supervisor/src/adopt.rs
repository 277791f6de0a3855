//! Adoption: the web dynos a killed Wharf left serving keep serving until this run's own web
//! dynos of their app are healthy, and then leave the router and stop as every dyno the
//! platform stops does (out of the router, `connection_grace` for the requests on their way,
//! the wait while the router has requests at them, `in_flight`, then SIGTERM).
//!
//! Why: the rule for every stop the platform makes of its own accord (a roll's old dynos, a
//! scale down, `ps:restart`, a canary's end, a formation change, and a restart's orphans) is
//! that the dyno is drained first and nothing about it is charged to its app or to a canary of
//! it. Stopping a killed run's dynos at start broke it twice: the router, which starts with
//! the stored registrations, reached them and then had its next connect refused (a crash, by
//! the router's rules, charged to a canary that made no error), and every app answered `503`
//! (no web dynos) until its new dynos passed their health check.
//!
//! Which orphans are adopted: web dynos still registered for an app whose formation still
//! runs `web` with a command and a port of the supervisor's choosing. The others stop at
//! start, before any dyno starts: a worker would otherwise run twice, a release phase or a
//! one-off is not resumed, and a web dyno on a fixed `port` holds the port its replacement
//! needs (such an app has no web dyno until its new one is healthy: the README says so).
//!
//! An adopted dyno is not supervised: nothing restarts it. Its record stays until it is
//! stopped, so a Wharf killed again meanwhile leaves it to the next run; if its process goes
//! away by itself its registration goes with it; a clean stop of Wharf stops it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use uuid::Uuid;
use wharf_control_api::model::Model;
use wharf_control_api::{ControlPlane, DynoState, LocalRuntime};

use crate::desired::{WEB, desired_formations};
use crate::record::{Orphan, Records};
use crate::registry::Registry;
use crate::settings::Settings;

/// How often an adopted dyno's app is looked at: whether its replacements are healthy.
const POLL: Duration = Duration::from_millis(100);

/// An orphan that keeps serving until its app's own web dynos are healthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Adopted {
    /// The orphan's process group and names.
    pub(crate) orphan: Orphan,
    /// Its app's id, as the registration names it.
    pub(crate) app_id: Uuid,
}

/// The orphans to adopt (see the module's rule); the others are to be stopped at once.
pub(crate) fn adoptable(m: &Model, orphans: Vec<Orphan>) -> (Vec<Adopted>, Vec<Orphan>) {
    let desired = desired_formations(m);
    let mut adopted = Vec::new();
    let mut stop = Vec::new();
    for orphan in orphans {
        let app_id = m.app(&orphan.app).map(|a| a.id).filter(|id| {
            let web = desired.iter().find(|(k, _)| k.app_id == *id && k.dyno_type.as_str() == WEB).map(|(_, e)| e);
            let registered = m.dyno(*id, &orphan.dyno).is_some_and(|d| d.dyno_type.as_str() == WEB);
            registered && web.is_some_and(|e| e.quantity > 0 && e.spec.port.is_none())
        });
        match app_id {
            Some(app_id) => adopted.push(Adopted { orphan, app_id }),
            None => stop.push(orphan),
        }
    }
    (adopted, stop)
}

/// Keeps the adopted dynos of one app until the app has as many healthy web dynos of this
/// run as its formation asks for (or no longer asks for any, or is gone, or Wharf stops), then
/// drains and stops them; an adopted dyno whose process group is gone meanwhile only leaves
/// the router.
pub(crate) async fn retire(
    plane: Arc<ControlPlane>,
    registry: Arc<Registry>,
    records: Records,
    settings: Settings,
    app_id: Uuid,
    mut adopted: Vec<Orphan>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let wanted = plane
            .read(|m| {
                desired_formations(m)
                    .into_iter()
                    .find(|(k, _)| k.app_id == app_id && k.dyno_type.as_str() == WEB)
                    .map_or(0, |(_, e)| e.quantity as usize)
            })
            .await;
        let healthy = registry
            .dynos(app_id)
            .iter()
            .filter(|d| d.dyno_type.as_str() == WEB && d.state == DynoState::Up && d.one_off.is_none())
            .count();
        let mut gone = Vec::new();
        adopted.retain(|o| {
            let alive = crate::group::exists(o.pgid);
            if !alive {
                gone.push(o.clone());
            }
            alive
        });
        for o in gone {
            tracing::info!(app = o.app, dyno = o.dyno, "an adopted dyno's processes are gone");
            let _ = plane.delete_dyno(&app_id.to_string(), &o.dyno).await;
            records.remove(o.pgid);
        }
        if adopted.is_empty() || healthy >= wanted || *stopped.borrow() {
            break;
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            _ = stopped.changed() => {}
        }
    }
    if adopted.is_empty() {
        return;
    }
    // Drained as any dyno the platform stops: out of the router, a grace for the requests
    // already on their way, the wait for those at it (`in_flight`), then the process group.
    let ports: Vec<(String, u16)> = plane
        .read(|m| adopted.iter().filter_map(|o| Some((o.dyno.clone(), m.dyno(app_id, &o.dyno)?.port))).collect())
        .await;
    for o in &adopted {
        let _ = plane.delete_dyno(&app_id.to_string(), &o.dyno).await;
    }
    tokio::time::sleep(settings.connection_grace).await;
    let ports: Vec<(&str, u16)> = ports.iter().map(|(name, port)| (name.as_str(), *port)).collect();
    crate::in_flight::until_idle(&settings, &ports).await;
    let mut stops = tokio::task::JoinSet::new();
    for o in adopted {
        let (records, grace) = (records.clone(), settings.stop_grace);
        stops.spawn(async move { records.stop(&o, grace).await });
    }
    stops.join_all().await;
}

/// Groups adopted dynos by app.
pub(crate) fn by_app(adopted: Vec<Adopted>) -> HashMap<Uuid, Vec<Orphan>> {
    let mut apps: HashMap<Uuid, Vec<Orphan>> = HashMap::new();
    for a in adopted {
        apps.entry(a.app_id).or_default().push(a.orphan);
    }
    apps
}
