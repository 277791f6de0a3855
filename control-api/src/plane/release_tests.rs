//! Settling releases rolled by the local supervisor: which failed release is withdrawn (so that
//! the release the API calls current is the one every process type runs); and [`test_build`], the
//! build record the plane's tests start from.

use std::sync::Arc;

use uuid::Uuid;

use super::tests::{plane, set, update};
use super::*;

/// A local runtime listing the dynos the test puts in it.
#[derive(Default)]
pub(super) struct Listing(pub(super) std::sync::Mutex<Vec<LocalDyno>>);

impl LocalRuntime for Listing {
    fn dynos(&self, _app_id: Uuid) -> Vec<LocalDyno> {
        self.0.lock().unwrap().clone()
    }
    fn restart(&self, _restart: Restart) {}
    fn run(&self, _one_off: OneOff) -> Option<String> {
        None
    }
}

/// FE28: the release the API calls current is the one every process type runs. A release whose
/// web dynos failed while its worker came up is withdrawn when the supervisor says no failed
/// type runs it (the worker rolls back), and the config change queued behind it is rebased;
/// guessed from the dynos listed, the worker's dyno kept it as the base. When a failed type
/// runs it (its dynos replaced unhealthy ones), it stays the base, and is current (FE37).
#[tokio::test]
async fn a_failed_release_is_withdrawn_unless_a_type_that_failed_runs_it() {
    use crate::model::ReleaseStatus;
    // (how it is settled: Some(failed_runs) from the supervisor, None guessed; withdrawn; rebased)
    let rows = [(Some(false), true, true), (Some(true), false, false), (None, false, false)];
    for (i, (failed_runs, withdrawn, rebased)) in rows.into_iter().enumerate() {
        let p = plane().await;
        let runtime = Arc::new(Listing::default());
        p.set_local_runtime(runtime.clone());
        let app = format!("w{i}");
        p.create_app(app.parse().unwrap(), "default").await.unwrap();
        let id = p.read(|m| m.app(&app).unwrap().id).await;
        let release = |v: u32| p.read(move |m| m.release(id, &v.to_string()).unwrap().clone());
        let both = vec![update("web", Some(1), Some("a")), update("worker", Some(1), Some("w"))];
        p.update_formation(&app, both).await.unwrap(); // v2
        p.settle_release(id, release(2).await.id, true).await.unwrap();
        p.update_formation(&app, vec![update("web", None, Some("bad")), update("worker", None, Some("w2"))])
            .await
            .unwrap(); // v3
        p.update_config_vars(&app, set(&[("X", Some("1"))])).await.unwrap(); // v4
        let v3 = release(3).await;
        // v3's worker came up; its web dynos failed and were stopped.
        runtime.0.lock().unwrap().push(LocalDyno {
            name: "worker.1-abcde".into(),
            dyno_type: wharf_domain::DynoType::try_new("worker").unwrap(),
            state: DynoState::Up,
            started_at: 0,
            launched: 0,
            release: Some(DynoRelease { id: v3.id, version: 3 }),
            index: Some(1),
            one_off: None,
        });
        let settled = match failed_runs {
            Some(runs) => p.settle_rolled_release(id, v3.id, false, runs).await.unwrap(),
            None => p.settle_release(id, v3.id, false).await.unwrap(),
        };
        let v3 = release(3).await;
        assert_eq!((v3.status, v3.withdrawn), (ReleaseStatus::Failed, withdrawn), "row {i}");
        assert_eq!(settled.rebased.is_some(), rebased, "row {i}: {settled:?}");
        let (current, running) =
            p.read(move |m| (m.current_release(id).map(|r| r.version), m.running_release(id).map(|r| r.version))).await;
        // The release the API calls current is the one that runs: v2 again when v3 was
        // withdrawn, v3 when it failed but runs (FE37: it was v2, whose config no dyno ran).
        assert_eq!(current, Some(if withdrawn { 2 } else { 3 }), "row {i}");
        if withdrawn {
            let v4 = release(4).await;
            let web = v4.processes.iter().find(|p| p.dyno_type.as_str() == "web").and_then(|p| p.command.clone());
            assert_eq!(
                (web.as_deref(), v4.config_vars.get("X").map(String::as_str)),
                (Some("a"), Some("1")),
                "row {i}"
            );
            assert_eq!(running, Some(4), "row {i}: the rebased change runs next");
        } else {
            assert_eq!(running, Some(4), "row {i}");
            let v4 = release(4).await;
            let web = v4.processes.iter().find(|p| p.dyno_type.as_str() == "web").and_then(|p| p.command.clone());
            assert_eq!(web.as_deref(), Some("bad"), "row {i}: not rebased, v4 builds on v3");
        }
    }
}

/// FE29 LOW-2: a process type a failed release brought leaves the formation with it (a failed
/// deploy's `release` type stayed as a command-less entry); a type an earlier release declared
/// stays, as the running release's formation has it.
#[tokio::test]
async fn a_type_a_failed_release_brought_leaves_the_formation_with_it() {
    let p = plane().await;
    p.set_local_runtime(Arc::new(Listing::default()));
    p.create_app("brought".parse().unwrap(), "default").await.unwrap();
    let id = p.read(|m| m.app("brought").unwrap().id).await;
    let release = |v: u32| p.read(move |m| m.release(id, &v.to_string()).unwrap().clone());
    p.update_formation("brought", vec![update("web", Some(1), Some("a")), update("worker", None, Some("w"))])
        .await
        .unwrap(); // v2
    p.settle_release(id, release(2).await.id, true).await.unwrap();
    p.update_formation("brought", vec![update("web", None, Some("bad")), update("release", Some(0), Some("migrate"))])
        .await
        .unwrap();
    let failed = p.read(move |m| m.latest_release(id).unwrap().clone()).await;
    p.settle_rolled_release(id, failed.id, false, false).await.unwrap();
    let formation: Vec<(String, Option<String>)> = p
        .read(move |m| m.formation_of(id).iter().map(|f| (f.dyno_type.to_string(), f.command.clone())).collect())
        .await;
    let types: Vec<&str> = formation.iter().map(|(t, _)| t.as_str()).collect();
    assert!(!types.contains(&"release"), "{formation:?}");
    assert!(types.contains(&"web") && types.contains(&"worker"), "{formation:?}");
    let web = formation.iter().find(|(t, _)| t == "web").unwrap();
    assert_eq!(web.1.as_deref(), Some("a"), "{formation:?}");
}

/// A build of app `app_id` in state `status`, from a source URL nothing fetches, with no slug,
/// release or output yet: tests set the fields they look at with `..test_build(..)`.
pub(super) fn test_build(app_id: Uuid, status: crate::model::BuildStatus) -> crate::model::Build {
    crate::model::Build {
        id: wharf_domain::new_id(),
        app_id,
        source_url: "https://example.com/s.tgz".into(),
        source_checksum: None,
        source_version: None,
        status,
        slug_id: None,
        release_id: None,
        output: vec![],
        created_at: 0,
        updated_at: 0,
    }
}
