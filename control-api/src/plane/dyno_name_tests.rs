//! Heroku's `type.N`: which dyno it reaches ([`ControlPlane::dyno_name`]): the local dyno of
//! that type with index N, whatever its position among the others; the newer of two while a
//! roll runs them side by side; a dyno's own name or id, and a registered one's, before that;
//! `N` written as Heroku writes it.

use std::sync::Arc;

use super::release_tests::Listing;
use super::tests::plane;
use super::*;

/// A local formation dyno (or, without an index, a release phase or one-off) started at `at`.
fn local(name: &str, dyno_type: &str, index: Option<u32>, at: i64) -> LocalDyno {
    let dyno_type = wharf_domain::DynoType::try_new(dyno_type).unwrap();
    LocalDyno {
        name: name.into(),
        dyno_type,
        state: DynoState::Up,
        started_at: at,
        launched: 0,
        release: None,
        index,
        one_off: None,
    }
}

/// [`local`], a web dyno running release `version`.
fn on_release(name: &str, index: u32, at: i64, version: u32) -> LocalDyno {
    let release = Some(DynoRelease { id: uuid::Uuid::from_u128(version.into()), version });
    LocalDyno { release, ..local(name, "web", Some(index), at) }
}

#[tokio::test]
async fn type_n_reaches_the_dyno_of_index_n_and_the_newer_of_two_during_a_roll() {
    let p = plane().await;
    let runtime = Arc::new(Listing::default());
    p.set_local_runtime(runtime.clone());
    p.create_app("api".parse().unwrap(), "default").await.unwrap();
    let id = p.read(|m| m.app("api").unwrap().id).await;
    *runtime.0.lock().unwrap() = vec![
        local("web.2-ccccc", "web", Some(2), 5),
        local("web.1-aaaaa", "web", Some(1), 10),
        local("web.1-bbbbb", "web", Some(1), 20),
        local("worker.1-ddddd", "worker", Some(1), 30),
        local("release.4", "release", None, 40),
        local("run.1", "run", None, 50),
        on_release("web.4-zzzzz", 4, 60, 2),
        on_release("web.4-aaaaa", 4, 60, 3),
        // A restart of all: the same release, the same second, the replacement started later
        // and drawn a suffix that sorts first.
        LocalDyno { launched: 2, ..on_release("web.5-zzzzz", 5, 70, 3) },
        LocalDyno { launched: 3, ..on_release("web.5-aaaaa", 5, 70, 3) },
    ];
    let registered = ("web.3".parse().unwrap(), "web".parse().unwrap(), "127.0.0.1".parse().unwrap());
    let (registered, _) = p.put_dyno("api", registered.0, registered.1, registered.2, 9000).await.unwrap();
    let (id_of_registered, id_of_web_2) = (registered.id.to_string(), local_dyno_id(id, "web.2-ccccc").to_string());
    let id_of_other_app = local_dyno_id(uuid::Uuid::nil(), "web.2-ccccc").to_string();
    // (what is asked, the dyno it reaches, why)
    let rows = [
        (id_of_registered.as_str(), Some("web.3"), "a registered dyno by its id"),
        (id_of_web_2.as_str(), Some("web.2-ccccc"), "a local dyno by the id the API shows"),
        (&id_of_web_2.to_uppercase(), Some("web.2-ccccc"), "an id in capitals, as an app's id is taken"),
        (id_of_other_app.as_str(), None, "the id another app's dyno of that name would have"),
        ("00000000-0000-0000-0000-000000000000", None, "an id no dyno has"),
        ("web.01", None, "a leading zero: Heroku writes web.1"),
        ("web.+1", None, "a sign"),
        ("web.1 ", None, "a space"),
        ("web.", None, "no index"),
        ("web.1", Some("web.1-bbbbb"), "the newer of a roll's two, which keeps the index"),
        ("web.2", Some("web.2-ccccc"), "by index, not by position (it is the oldest)"),
        ("worker.1", Some("worker.1-ddddd"), "each type has its own indexes"),
        ("worker.2", None, "no worker has index 2"),
        ("web.0", None, "indexes start at 1"),
        ("web.x", None, "not a number"),
        ("web.1-aaaaa", Some("web.1-aaaaa"), "a dyno's own name"),
        ("release.4", Some("release.4"), "a release phase by its name"),
        ("release.1", None, "a release phase has no index"),
        ("run.1", Some("run.1"), "a one-off by its name"),
        ("web.3", Some("web.3"), "a registered dyno by its name"),
        ("web", None, "a type alone"),
        ("web.4", Some("web.4-aaaaa"), "the newer release's, started in the same second"),
        ("web.5", Some("web.5-aaaaa"), "the later started of the same release in the same second"),
    ];
    for (asked, reached, why) in rows {
        let got = p.read(|m| p.dyno_name(m, id, asked)).await;
        assert_eq!(got.as_deref(), reached, "{asked}: {why}");
    }
}
