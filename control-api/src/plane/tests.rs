//! The operations' tests: refused operations change nothing, deletions cascade, canaries'
//! first abort wins, every change publishes a newer snapshot.

use std::sync::Arc;
use std::time::Duration;

use wharf_domain::{CanaryEvidence, CanaryPolicy, CanaryState, CanaryVerdict, RoutePath, SessionKey, Tally};

use super::*;
use crate::model::Compliance;
use crate::store::SqliteStore;
use uuid::Uuid;

pub(super) async fn plane() -> ControlPlane {
    let settings = Settings {
        stack_domain: "localhost".into(),
        https_port: 8443,
        session_base_url: "http://127.0.0.1:5000".into(),
        session_ttl: Duration::from_secs(60),
        max_session_lines: 1500,
        max_quantity: 100,
        dyno_sizes: DynoSizes::default(),
    };
    let store = Box::new(SqliteStore::in_memory().unwrap());
    ControlPlane::open(store, settings, Arc::new(SessionKey::generate())).await.unwrap()
}

/// Gives `p` deploy settings with a fresh data directory (its `slugs/incoming` made), 1 MiB
/// archives and `keep_slugs`; returns the directory, for the test to remove.
pub(super) fn with_deploy(p: &ControlPlane, name: &str, keep_slugs: usize) -> std::path::PathBuf {
    let data_dir = std::env::temp_dir().join(format!("wharf-{name}-{}", wharf_domain::new_id()));
    std::fs::create_dir_all(data_dir.join("slugs").join("incoming")).unwrap();
    p.set_deploy(DeploySettings {
        data_dir: data_dir.clone(),
        max_slug_bytes: 1 << 20,
        unpack_limits: crate::archive::Limits::default(),
        allow_file_urls: false,
        public_url: None,
        keep_slugs,
        max_concurrent_builds: 4,
    });
    data_dir
}

#[tokio::test]
async fn every_change_publishes_a_newer_snapshot() {
    let p = plane().await;
    let mut rx = p.subscribe();
    let v0 = rx.borrow_and_update().version;
    p.create_app("api".parse().unwrap(), "default").await.unwrap();
    p.put_dyno("api-default", "web.1".parse().unwrap(), "web".parse().unwrap(), "127.0.0.1".parse().unwrap(), 9000)
        .await
        .unwrap();
    assert!(rx.has_changed().unwrap());
    let snap = rx.borrow_and_update().clone();
    assert_eq!(snap.version, v0 + 2);
    let app = snap.app(&"api-default".parse().unwrap()).unwrap();
    assert_eq!(app.web_dynos.len(), 1);
}

#[tokio::test]
async fn refused_operations_change_nothing() {
    let p = plane().await;
    p.create_app("api".parse().unwrap(), "default").await.unwrap();
    let before = p.subscribe().borrow().clone();
    let errs = [
        p.create_app("api".parse().unwrap(), "default").await.unwrap_err(),
        p.create_app("web".parse().unwrap(), "nope").await.unwrap_err(),
        p.put_dyno("api-default", "web.1".parse().unwrap(), "worker".parse().unwrap(), "h".parse().unwrap(), 1)
            .await
            .unwrap_err(),
        p.put_dyno("nope-default", "web.1".parse().unwrap(), "web".parse().unwrap(), "h".parse().unwrap(), 1)
            .await
            .unwrap_err(),
        p.delete_drain(Drains::App("api-default"), "x").await.unwrap_err(),
        p.create_log_session("api-default", 5000, false, None, None).await.unwrap_err(),
    ];
    assert!(matches!(errs[0], Error::Conflict(_)), "{}", errs[0]);
    assert!(matches!(errs[1], Error::NotFound { what: "space", .. }), "{}", errs[1]);
    assert!(matches!(errs[2], Error::Invalid(_)), "{}", errs[2]);
    assert!(matches!(errs[3], Error::NotFound { what: "app", .. }), "{}", errs[3]);
    assert!(matches!(errs[4], Error::NotFound { what: "log drain", .. }), "{}", errs[4]);
    assert!(matches!(errs[5], Error::Invalid(_)), "{}", errs[5]);
    assert_eq!(*p.subscribe().borrow(), before);
}

#[tokio::test]
async fn routes_keep_internal_and_public_apart() {
    let p = plane().await;
    p.create_space("vpn".parse().unwrap(), vec![Compliance::Internal]).await.unwrap();
    p.create_app("api".parse().unwrap(), "default").await.unwrap();
    p.create_app("hr".parse().unwrap(), "vpn").await.unwrap();
    p.create_site("www.example.com".parse().unwrap(), false).await.unwrap();
    p.create_site("intra.example.com".parse().unwrap(), true).await.unwrap();
    let path = |s: &str| RoutePath::try_new(s).unwrap();
    p.create_route("www.example.com", "api-default", path("/api"), path("/")).await.unwrap();
    p.create_route("intra.example.com", "hr-vpn", path("/"), path("/")).await.unwrap();
    let before = p.subscribe().borrow().clone();
    let errs = [
        p.create_route("www.example.com", "hr-vpn", path("/hr"), path("/")).await.unwrap_err(),
        p.create_route("intra.example.com", "api-default", path("/api"), path("/")).await.unwrap_err(),
        p.create_route("www.example.com", "api-default", path("/api/"), path("/v2")).await.unwrap_err(),
        p.create_route("nope.example.com", "api-default", path("/"), path("/")).await.unwrap_err(),
        p.create_site("www.example.com".parse().unwrap(), false).await.unwrap_err(),
        p.create_site("api-default.localhost".parse().unwrap(), false).await.unwrap_err(),
    ];
    assert!(matches!(errs[0], Error::Invalid(_)), "{}", errs[0]);
    assert!(matches!(errs[1], Error::Invalid(_)), "{}", errs[1]);
    assert!(matches!(errs[2], Error::Conflict(_)), "{}", errs[2]);
    assert!(matches!(errs[3], Error::NotFound { what: "site", .. }), "{}", errs[3]);
    assert!(matches!(errs[4], Error::Conflict(_)), "{}", errs[4]);
    assert!(matches!(errs[5], Error::Conflict(_)), "{}", errs[5]);
    assert_eq!(*p.subscribe().borrow(), before);
    let www = before.sites.iter().find(|s| s.domain.as_str() == "www.example.com").unwrap();
    assert_eq!(www.routes[0].app.as_str(), "api-default");
    // Deleting the app takes its routes with it; deleting a site takes the rest.
    p.delete_app("api-default").await.unwrap();
    assert!(p.subscribe().borrow().sites.iter().all(|s| s.domain.as_str() != "www.example.com" || s.routes.is_empty()));
    p.delete_site("intra.example.com").await.unwrap();
    assert!(p.read(|m| m.routes_where(|_| true).is_empty()).await);
}

#[tokio::test]
async fn deleting_an_app_removes_its_dynos_and_drains() {
    let p = plane().await;
    p.create_app("api".parse().unwrap(), "default").await.unwrap();
    p.put_dyno("api-default", "web.1".parse().unwrap(), "web".parse().unwrap(), "h".parse().unwrap(), 1).await.unwrap();
    p.add_drain(Drains::App("api-default"), "syslog+tcp://h:1".parse().unwrap()).await.unwrap();
    p.delete_app("api-default").await.unwrap();
    let snap = p.subscribe().borrow().clone();
    assert!(snap.apps.is_empty() && snap.drains.is_empty());
    assert!(p.read(|m| m.dyno(Uuid::nil(), "web.1").is_none()).await);
}

#[tokio::test]
async fn site_drains_follow_their_site() {
    let p = plane().await;
    p.create_site("www.example.com".parse().unwrap(), false).await.unwrap();
    let url = || "syslog+tcp://h:1".parse().unwrap();
    p.add_drain(Drains::Site("www.example.com"), url()).await.unwrap();
    let snap = p.subscribe().borrow().clone();
    assert_eq!(snap.drains[0].target, wharf_domain::DrainTarget::Site("www.example.com".into()));
    let err = p.add_drain(Drains::Site("www.example.com"), url()).await.unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err}");
    let err = p.add_drain(Drains::Site("nope.example.com"), url()).await.unwrap_err();
    assert!(matches!(err, Error::NotFound { what: "site", .. }), "{err}");
    p.delete_site("www.example.com").await.unwrap();
    assert!(p.subscribe().borrow().drains.is_empty(), "a deleted site's drains go with it");
}

#[tokio::test]
async fn canaries_are_checked_and_the_first_abort_wins() {
    let p = plane().await;
    p.create_space("intra".parse().unwrap(), vec![Compliance::Internal]).await.unwrap();
    for (app, space) in [("api", "default"), ("next", "default"), ("third", "default"), ("secret", "intra")] {
        p.create_app(app.parse().unwrap(), space).await.unwrap();
    }
    let policy = || CanaryPolicy::with_weight(wharf_domain::Weight::from_percent(10.0).unwrap());
    let (c, created) = p.put_canary("api-default", "next-default", policy()).await.unwrap();
    assert!(created && c.state == CanaryState::Running);
    let before = p.subscribe().borrow().clone();
    assert_eq!(before.canaries.len(), 1);
    let errs = [
        p.put_canary("api-default", "api-default", policy()).await.unwrap_err(),
        p.put_canary("api-default", "nope-default", policy()).await.unwrap_err(),
        p.put_canary("api-default", "secret-intra", policy()).await.unwrap_err(),
        // Splits do not chain, either way round.
        p.put_canary("third-default", "api-default", policy()).await.unwrap_err(),
        p.put_canary("next-default", "third-default", policy()).await.unwrap_err(),
        p.promote_canary("third-default").await.unwrap_err(),
    ];
    assert!(matches!(errs[0], Error::Invalid(_)), "{}", errs[0]);
    assert!(matches!(errs[1], Error::NotFound { what: "app", .. }), "{}", errs[1]);
    assert!(matches!(errs[2], Error::Invalid(_)), "{}", errs[2]);
    assert!(matches!(errs[3], Error::Conflict(_)), "{}", errs[3]);
    assert!(matches!(errs[4], Error::Conflict(_)), "{}", errs[4]);
    assert!(matches!(errs[5], Error::NotFound { what: "canary of app", .. }), "{}", errs[5]);
    assert_eq!(*p.subscribe().borrow(), before);

    // Two routers decide; the first verdict is recorded and published, the second is not.
    let evidence = |decision: &str| CanaryEvidence {
        baseline: Tally { requests: 900, errors: 1, server_errors: 1, ..Tally::default() },
        canary: Tally { requests: 100, errors: 9, server_errors: 9, ..Tally::default() },
        e_value: 150.0,
        p_value: 1.0 / 150.0,
        decision: decision.into(),
    };
    let verdict = |d: &str| CanaryVerdict { id: c.id, app: "api-default".parse().unwrap(), evidence: evidence(d) };
    let first = p.record_verdict(verdict("first")).await.unwrap().expect("recorded");
    assert_eq!(
        (first.state, first.evidence.as_ref().map(|e| e.decision.as_str())),
        (CanaryState::Aborted, Some("first"))
    );
    assert!(p.record_verdict(verdict("second")).await.unwrap().is_none());
    let snapshot = p.subscribe().borrow().clone();
    assert_eq!(snapshot.canaries[0].state, CanaryState::Aborted);
    assert_eq!(p.read(|m| m.canary(c.id).unwrap().evidence.clone()).await.unwrap().decision, "first");
    assert!(matches!(p.promote_canary("api-default").await.unwrap_err(), Error::Conflict(_)));

    // A new canary replaces the aborted one; deleting either app removes it.
    let (again, created) = p.put_canary("api-default", "next-default", policy()).await.unwrap();
    assert!(!created && again.id != c.id);
    assert!(p.record_verdict(verdict("late")).await.unwrap().is_none(), "a verdict for a replaced canary");
    p.delete_app("next-default").await.unwrap();
    assert!(p.subscribe().borrow().canaries.is_empty());
    assert!(p.read(|m| m.canary(again.id).is_none()).await);
}

#[tokio::test]
async fn an_app_update_is_one_change_and_a_refused_one_changes_nothing() {
    let p = plane().await;
    p.create_app("api".parse().unwrap(), "default").await.unwrap();
    p.create_app("web".parse().unwrap(), "default").await.unwrap();
    let before = p.subscribe().borrow().clone();
    // A taken name with maintenance on: refused whole, maintenance stays off.
    let err = p.update_app("api", Some("web".parse().unwrap()), Some(true)).await.unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err}");
    assert_eq!(*p.subscribe().borrow(), before);
    // Turning maintenance on again, or naming the app as it is, commits nothing.
    let on = p.update_app("api", Some("api".parse().unwrap()), Some(true)).await.unwrap();
    assert!(on.maintenance);
    let version = p.subscribe().borrow().version;
    p.update_app("api-default", None, Some(true)).await.unwrap();
    assert_eq!(p.subscribe().borrow().version, version, "no change, no new version");
    let snap = p.subscribe().borrow().clone();
    let spec = snap.app(&"api-default".parse().unwrap()).unwrap();
    assert_eq!(spec.maintenance, Some(wharf_domain::MaintenancePage { html: None }), "the default page");
    assert_eq!(snap.app(&"web-default".parse().unwrap()).unwrap().maintenance, None);
}

#[tokio::test]
async fn a_page_fetched_for_a_url_the_app_no_longer_names_is_not_kept() {
    let p = Arc::new(plane().await);
    let app = p.create_app("api".parse().unwrap(), "default").await.unwrap();
    // A server that accepts and says nothing until told: the fetch is under way meanwhile.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let old = format!("https://127.0.0.1:{}/down.html", listener.local_addr().unwrap().port());
    let set = |url: Option<String>| {
        let p = p.clone();
        async move {
            let vars = [(crate::model::MAINTENANCE_PAGE_URL.to_owned(), url)].into_iter().collect();
            p.update_config_vars("api-default", vars).await.unwrap();
        }
    };
    set(Some(old.clone())).await;
    let fetch = tokio::spawn(p.clone().refresh_maintenance_page(app.id));
    let (conn, _) = listener.accept().await.unwrap();
    // The app names another page while the fetch of the first runs; then the first one fails.
    set(Some("https://pages.invalid/other.html".into())).await;
    drop(conn);
    fetch.await.unwrap();
    let kept = p.read(|m| m.app("api-default").unwrap().maintenance_page.clone()).await;
    assert_eq!(kept, None, "the outcome for {old} is not kept once the app names another URL");
    // Fetched again for the URL it names now, the outcome is kept (here, why it failed).
    p.clone().refresh_maintenance_page(app.id).await;
    let kept = p.read(|m| m.app("api-default").unwrap().maintenance_page.clone()).await.expect("kept");
    assert_eq!(kept.url, "https://pages.invalid/other.html");
    assert!(kept.html.is_none() && kept.error.as_deref().is_some_and(|e| e.contains("pages.invalid")), "{kept:?}");
}

/// The app's releases as `(version, description, status)`, oldest first.
async fn releases(p: &ControlPlane, app: &str) -> Vec<(u32, String, &'static str)> {
    p.read(|m| {
        let a = m.app(app).unwrap();
        m.releases_of(a.id).iter().map(|r| (r.version, r.description.clone(), r.status.as_str())).collect()
    })
    .await
}

pub(super) fn set(pairs: &[(&str, Option<&str>)]) -> std::collections::BTreeMap<String, Option<String>> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), v.map(str::to_owned))).collect()
}

pub(super) fn update(dyno_type: &str, quantity: Option<u32>, command: Option<&str>) -> FormationUpdate {
    FormationUpdate {
        dyno_type: dyno_type.parse().unwrap(),
        quantity: quantity.map(Quantity::Exactly),
        command: command.map(str::to_owned),
        port: None,
        healthcheck: None,
        size: None,
    }
}

#[tokio::test]
async fn every_change_to_config_vars_or_commands_is_a_release_and_scaling_is_not() {
    let p = plane().await;
    p.create_app("api".parse().unwrap(), "default").await.unwrap();
    // Each step, and the newest release after it: `None` when the step makes no release.
    let steps: Vec<(&str, Option<&str>)> = vec![
        ("create", Some("Initial release")),
        ("set A", Some("Set A config vars")),
        ("set A again", None),
        ("set B, remove A", Some("Set B config vars; Remove A config vars")),
        ("remove missing", None),
        ("web command", Some("Set web command")),
        ("scale web", None),
        ("worker quantity only", None),
        ("worker command and web healthcheck", Some("Set web healthcheck; Set worker command")),
        ("delete worker", Some("Remove worker process")),
    ];
    let mut expected_version = 0;
    for (step, made) in steps {
        match step {
            "create" => {}
            "set A" | "set A again" => drop(p.update_config_vars("api", set(&[("A", Some("1"))])).await.unwrap()),
            "set B, remove A" => {
                drop(p.update_config_vars("api", set(&[("A", None), ("B", Some("2"))])).await.unwrap());
            }
            "remove missing" => drop(p.update_config_vars("api", set(&[("NOPE", None)])).await.unwrap()),
            "web command" => drop(p.update_formation("api", vec![update("web", None, Some("a"))]).await.unwrap()),
            "scale web" => drop(p.update_formation("api", vec![update("web", Some(3), None)]).await.unwrap()),
            "worker quantity only" => {
                drop(p.update_formation("api", vec![update("worker", Some(0), None)]).await.unwrap());
            }
            "worker command and web healthcheck" => {
                let web = FormationUpdate { healthcheck: Some("/up".into()), ..update("web", None, None) };
                drop(p.update_formation("api", vec![web, update("worker", None, Some("w"))]).await.unwrap());
            }
            "delete worker" => drop(p.delete_formation("api", "worker").await.unwrap()),
            _ => unreachable!(),
        }
        let all = releases(&p, "api").await;
        if let Some(description) = made {
            expected_version += 1;
            let newest = all.last().unwrap();
            assert_eq!((newest.0, newest.1.as_str()), (expected_version, description), "after {step}: {all:?}");
        }
        assert_eq!(all.len() as u32, expected_version, "after {step}: {all:?}");
        // Without a local runtime, nothing rolls: every release succeeds at once.
        assert!(all.iter().all(|r| r.2 == "succeeded"), "after {step}: {all:?}");
    }
    // Each release holds the whole state: v3 has B only, and no command; v4 B and web's command.
    let (v3, v4) = p
        .read(|m| {
            (m.release(m.app("api").unwrap().id, "v3").cloned(), m.release(m.app("api").unwrap().id, "4").cloned())
        })
        .await;
    let (v3, v4) = (v3.unwrap(), v4.unwrap());
    assert_eq!(v3.config_vars.keys().collect::<Vec<_>>(), ["B"]);
    assert!(v3.processes.is_empty(), "{v3:?}");
    assert_eq!(v4.config_vars.keys().collect::<Vec<_>>(), ["B"]);
    assert_eq!(v4.processes.iter().map(|p| p.command.as_deref()).collect::<Vec<_>>(), [Some("a")]);
    // Values are secrets: a release's debug output names the variables only.
    p.update_config_vars("api", set(&[("TOKEN", Some("s3cr3t-value"))])).await.unwrap();
    let newest = p.read(|m| format!("{:?}", m.latest_release(m.app("api").unwrap().id).unwrap())).await;
    assert!(newest.contains("TOKEN") && !newest.contains("s3cr3t-value"), "{newest}");
}

#[tokio::test]
async fn a_rollback_restores_config_vars_and_commands_as_a_new_release() {
    let p = plane().await;
    p.create_app("api".parse().unwrap(), "default").await.unwrap();
    p.update_config_vars("api", set(&[("GREETING", Some("hello"))])).await.unwrap(); // v2
    p.update_formation("api", vec![update("web", Some(2), Some("old"))]).await.unwrap(); // v3
    p.update_config_vars("api", set(&[("GREETING", Some("bye")), ("NEW", Some("x"))])).await.unwrap(); // v4
    p.update_formation("api", vec![update("web", Some(3), Some("new")), update("worker", Some(1), Some("w"))])
        .await
        .unwrap(); // v5

    // A release that does not exist: 404, and nothing changes.
    let before = p
        .read(|m| format!("{:?}", (m.releases_of(m.app("api").unwrap().id), m.formation_of(m.app("api").unwrap().id))))
        .await;
    for missing in ["v9", "9", "0", "x", "00000000-0000-0000-0000-000000000000"] {
        let e = p.rollback("api", missing).await.unwrap_err();
        assert!(matches!(e, Error::NotFound { what: "release", .. }), "{missing}: {e}");
    }
    assert!(matches!(p.rollback("nope", "v1").await.unwrap_err(), Error::NotFound { what: "app", .. }));
    let after = p
        .read(|m| format!("{:?}", (m.releases_of(m.app("api").unwrap().id), m.formation_of(m.app("api").unwrap().id))))
        .await;
    assert_eq!(before, after);

    let made = p.rollback("api", "v3").await.unwrap();
    assert_eq!((made.version, made.description.as_str()), (6, "Rollback to v3"));
    p.read(|m| {
        let a = m.app("api").unwrap();
        let vars = &m.config_vars_of(a.id).unwrap().vars;
        assert_eq!(vars.iter().collect::<Vec<_>>(), [(&"GREETING".to_owned(), &"hello".to_owned())]);
        let f = m.formation_of(a.id);
        let shown: Vec<_> = f.iter().map(|f| (f.dyno_type.as_str(), f.quantity, f.command.as_deref())).collect();
        // Quantities stay; the worker, which v3 did not have, loses its command.
        assert_eq!(shown, [("web", 3, Some("old")), ("worker", 1, None)]);
    })
    .await;
    // By id too, and back to a release with a process type the formation lost.
    // The worker has no command left, so removing it is no release.
    p.delete_formation("api", "worker").await.unwrap();
    let v5 = p.read(|m| m.release(m.app("api").unwrap().id, "5").unwrap().id).await;
    let made = p.rollback("api", &v5.to_string()).await.unwrap();
    assert_eq!((made.version, made.description.as_str()), (7, "Rollback to v5"));
    let f = p.read(|m| m.formation_of(m.app("api").unwrap().id).into_iter().cloned().collect::<Vec<_>>()).await;
    let shown: Vec<_> = f.iter().map(|f| (f.dyno_type.as_str(), f.quantity, f.command.as_deref())).collect();
    assert_eq!(shown, [("web", 3, Some("new")), ("worker", 0, Some("w"))], "a rollback does not scale");
}

/// A local runtime that runs nothing but is there: releases of apps with commands wait for it.
struct Present;

impl LocalRuntime for Present {
    fn dynos(&self, _app_id: Uuid) -> Vec<LocalDyno> {
        vec![]
    }
    fn restart(&self, _restart: Restart) {}
    fn run(&self, _one_off: OneOff) -> Option<String> {
        None
    }
}

#[tokio::test]
async fn releases_of_locally_run_apps_are_pending_until_the_supervisor_settles_them() {
    let p = plane().await;
    p.set_local_runtime(Arc::new(Present));
    p.create_app("api".parse().unwrap(), "default").await.unwrap();
    p.create_app("ext".parse().unwrap(), "default").await.unwrap();
    p.update_formation("api", vec![update("web", Some(1), Some("a"))]).await.unwrap(); // v2
    p.update_config_vars("api", set(&[("A", Some("1"))])).await.unwrap(); // v3
    p.update_config_vars("ext", set(&[("A", Some("1"))])).await.unwrap();
    let statuses = |all: Vec<(u32, String, &'static str)>| all.into_iter().map(|r| r.2).collect::<Vec<_>>();
    assert_eq!(statuses(releases(&p, "api").await), ["succeeded", "pending", "pending"]);
    assert_eq!(statuses(releases(&p, "ext").await), ["succeeded", "succeeded"], "no command: nothing to wait for");
    let (app, v3) = p.read(|m| (m.app("api").unwrap().id, m.release(m.app("api").unwrap().id, "3").unwrap().id)).await;
    assert_eq!(p.read(|m| m.current_release(app).map(|r| r.version)).await, Some(1));
    assert_eq!(p.settle_release(app, v3, true).await.unwrap().superseded, [2], "v2 was superseded");
    assert_eq!(
        statuses(releases(&p, "api").await),
        ["succeeded", "succeeded", "succeeded"],
        "v2 was superseded by v3, which went live: a superseded release is a succeeded one"
    );
    assert_eq!(p.read(|m| m.current_release(app).map(|r| r.version)).await, Some(3));
    // Settled is settled.
    assert_eq!(p.settle_release(app, v3, false).await.unwrap(), Default::default());
    assert_eq!(statuses(releases(&p, "api").await), ["succeeded", "succeeded", "succeeded"]);
    p.update_config_vars("api", set(&[("A", Some("2"))])).await.unwrap(); // v4
    p.update_config_vars("api", set(&[("A", Some("3"))])).await.unwrap(); // v5
    let v5 = p.read(|m| m.release(app, "v5").unwrap().id).await;
    assert_eq!(p.settle_release(app, v5, false).await.unwrap().superseded, [4]);
    assert_eq!(
        statuses(releases(&p, "api").await),
        ["succeeded", "succeeded", "succeeded", "failed", "failed"],
        "v4 was superseded by v5, whose deploy failed: v4 never ran, and is not made current"
    );
    assert_eq!(p.read(|m| m.current_release(app).map(|r| r.version)).await, Some(3), "a failed release is not current");
    // The app is v3's again (FE21): its config vars and commands, which the next release keeps;
    // a failed release is no rollback target.
    let vars = p.read(|m| m.config_vars_of(app).map(|c| c.vars.clone())).await.unwrap();
    assert_eq!(vars.get("A").map(String::as_str), Some("1"), "a failed config change is undone");
    assert_eq!(p.read(|m| m.running_release(app).map(|r| r.version)).await, Some(3));
    let refused = p.rollback("api", "v5").await;
    assert!(matches!(&refused, Err(Error::Invalid(m)) if m.contains("release v5 failed")), "{refused:?}");
    p.update_formation("api", vec![update("web", None, Some("b"))]).await.unwrap(); // v6
    let v6 = p.read(|m| m.release(app, "v6").unwrap().id).await;
    p.settle_release(app, v6, false).await.unwrap();
    let web = p.read(|m| m.formation_of(app)[0].command.clone()).await;
    assert_eq!(web.as_deref(), Some("a"), "a failed command change is undone");
    p.update_config_vars("api", set(&[("B", Some("1"))])).await.unwrap(); // v7
    let v7 = p.read(|m| m.release(app, "v7").unwrap().clone()).await;
    let base = p.read(|m| m.release(app, "v3").unwrap().clone()).await;
    assert_eq!((v7.processes, v7.slug_id), (base.processes, base.slug_id), "v7 builds on v3, not on v5 or v6");
}

#[tokio::test]
async fn sizes_are_the_configured_ones_in_any_case_and_a_resize_is_no_release() {
    let p = plane().await;
    p.create_app("api".parse().unwrap(), "default").await.unwrap();
    p.update_formation("api", vec![update("web", Some(1), Some("a"))]).await.unwrap();
    let sized = |size: &str| FormationUpdate { size: Some(size.to_owned()), ..update("web", None, None) };
    // (size given, size stored or the refusal's words)
    let table = [
        ("standard-2x", Ok("Standard-2X")),
        ("PERFORMANCE-L", Ok("Performance-L")),
        ("Basic", Ok("Basic")),
        (
            "large",
            Err("unknown dyno size \"large\": one of Basic, Standard-1X, Standard-2X, Performance-M, Performance-L"),
        ),
        ("", Err("unknown dyno size \"\"")),
    ];
    let releases_before = releases(&p, "api").await.len();
    for (given, expected) in table {
        let before = p.read(|m| m.formation_of(m.app("api").unwrap().id)[0].clone()).await;
        match (p.update_formation("api", vec![sized(given)]).await, expected) {
            (Ok(out), Ok(stored)) => assert_eq!(out[0].size.as_deref(), Some(stored), "{given}"),
            (Err(Error::Invalid(m)), Err(words)) => {
                assert!(m.contains(words), "{given}: {m}");
                let after = p.read(|m| m.formation_of(m.app("api").unwrap().id)[0].clone()).await;
                assert_eq!(after, before, "{given}: nothing changes");
            }
            (got, want) => panic!("{given}: got {got:?}, want {want:?}"),
        }
    }
    assert_eq!(releases(&p, "api").await.len(), releases_before, "resizing is not a release, as on Heroku");
    assert_eq!(p.settings().dyno_sizes.of(None), "Standard-1X");
}

/// What is queued behind a release that then fails, in a row of the rebase table.
#[derive(Debug, Clone, Copy)]
enum Queued {
    /// A config var set (name, value) or removed (name, None).
    Var(&'static str, Option<&'static str>),
    /// A process type's command set.
    Command(&'static str, &'static str),
    /// A rollback to v3.
    RollbackToGood,
}

/// FE21c #3/#4: when a release fails, the releases of changes queued behind it are rebased onto
/// the current release (their own changes over its state), in order, up to the first release of
/// code, which is left as it was made; the app's config vars and commands are then the newest
/// release's. Each row: v3 (`web: a`, `A=1`) succeeded; v4 (`web: bad`) pending; v5 (`Z=bad`)
/// queued; the row's releases (v6, v7) queued; then v4 fails. Expected: the releases rebased,
/// and v6's and v7's (config vars, web command, worker command) after.
#[tokio::test]
async fn releases_of_changes_queued_behind_a_failed_one_are_rebased_onto_the_current_one() {
    use Queued::*;

    use crate::model::{ReleaseProcess, ReleaseStatus};
    type State = (&'static [(&'static str, &'static str)], &'static str, Option<&'static str>);
    let rows: [(&[Queued], &[u32], &[State]); 5] = [
        (&[Var("B", Some("2"))], &[5, 6], &[(&[("A", "1"), ("B", "2"), ("Z", "bad")], "a", None)]),
        (&[Var("A", None)], &[5, 6], &[(&[("Z", "bad")], "a", None)]),
        (&[Command("worker", "w")], &[5, 6], &[(&[("A", "1"), ("Z", "bad")], "a", Some("w"))]),
        (
            &[Var("B", Some("2")), Var("C", Some("3"))],
            &[5, 6, 7],
            &[
                (&[("A", "1"), ("B", "2"), ("Z", "bad")], "a", None),
                (&[("A", "1"), ("B", "2"), ("C", "3"), ("Z", "bad")], "a", None),
            ],
        ),
        // A rollback brings its own whole state: it and what follows it stay as made.
        (
            &[RollbackToGood, Var("B", Some("2"))],
            &[5],
            &[(&[("A", "1")], "a", None), (&[("A", "1"), ("B", "2")], "a", None)],
        ),
    ];
    for (i, (queued, rebased, after)) in rows.into_iter().enumerate() {
        let p = plane().await;
        p.set_local_runtime(Arc::new(Present));
        let app = format!("r{i}");
        p.create_app(app.parse().unwrap(), "default").await.unwrap();
        let id = p.read(|m| m.app(&app).unwrap().id).await;
        let release = |v: u32| p.read(move |m| m.release(id, &v.to_string()).unwrap().clone());
        p.update_config_vars(&app, set(&[("A", Some("1"))])).await.unwrap(); // v2
        p.update_formation(&app, vec![update("web", Some(1), Some("a"))]).await.unwrap(); // v3
        p.settle_release(id, release(3).await.id, true).await.unwrap();
        p.update_formation(&app, vec![update("web", None, Some("bad"))]).await.unwrap(); // v4
        p.update_config_vars(&app, set(&[("Z", Some("bad"))])).await.unwrap(); // v5
        for q in queued {
            match *q {
                Var(k, v) => drop(p.update_config_vars(&app, set(&[(k, v)])).await.unwrap()),
                Command(t, c) => drop(p.update_formation(&app, vec![update(t, None, Some(c))]).await.unwrap()),
                RollbackToGood => drop(p.rollback(&app, "v3").await.unwrap()),
            }
        }
        let settled = p.settle_release(id, release(4).await.id, false).await.unwrap();
        assert_eq!(settled.rebased, Some((rebased.to_vec(), 3)), "row {i}");
        for (v, (vars, web, worker)) in (6..).zip(after) {
            let r = release(v).await;
            let want: std::collections::BTreeMap<String, String> =
                vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
            let command =
                |t: &str| r.processes.iter().find(|p| p.dyno_type.as_str() == t).and_then(|p| p.command.clone());
            assert_eq!(r.config_vars, want, "row {i}: v{v}'s config vars");
            assert_eq!(command("web").as_deref(), Some(*web), "row {i}: v{v}'s web command");
            assert_eq!(command("worker").as_deref(), *worker, "row {i}: v{v}'s worker command");
            assert_eq!(r.status, ReleaseStatus::Pending, "row {i}: v{v} still runs");
        }
        // The app is its newest release's.
        let (vars, formation, newest) = p
            .read(move |m| {
                let vars = m.config_vars_of(id).unwrap().vars.clone();
                let formation = super::releases::processes_of(m.formation_of(id));
                (vars, formation, m.latest_release(id).unwrap().clone())
            })
            .await;
        assert_eq!(vars, newest.config_vars, "row {i}: the app's config vars are the newest release's");
        let commands = |p: &[ReleaseProcess]| {
            p.iter()
                .filter(|p| p.command.is_some())
                .map(|p| (p.dyno_type.to_string(), p.command.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(commands(&formation), commands(&newest.processes), "row {i}: the formation is the newest release's");
    }
}
