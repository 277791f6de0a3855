//! The operations' tests: refused operations change nothing, deletions cascade, canaries'
//! first abort wins, every change publishes a newer snapshot.

use std::sync::Arc;
use std::time::Duration;

use wharf_domain::{CanaryEvidence, CanaryPolicy, CanaryState, CanaryVerdict, RoutePath, SessionKey, Tally};

use super::*;
use crate::model::Compliance;
use crate::store::SqliteStore;
use uuid::Uuid;

async fn plane() -> ControlPlane {
    let settings = Settings {
        stack_domain: "localhost".into(),
        https_port: 8443,
        session_base_url: "http://127.0.0.1:5000".into(),
        session_ttl: Duration::from_secs(60),
        max_session_lines: 1500,
        max_quantity: 100,
    };
    let store = Box::new(SqliteStore::in_memory().unwrap());
    ControlPlane::open(store, settings, Arc::new(SessionKey::generate())).await.unwrap()
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
        baseline: Tally { requests: 900, errors: 1 },
        canary: Tally { requests: 100, errors: 9 },
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
