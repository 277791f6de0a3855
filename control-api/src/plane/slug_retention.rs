//! Which slugs Wharf keeps: a slug's record and archive (`DATA_DIR/slugs/<id>.tar.gz`) live
//! while a release may still run it, and are deleted once none can.
//!
//! A slug is needed while it is run by one of the newest [`DeploySettings::keep_slugs`]
//! releases of any app (the window a rollback or a promotion may go back to; each app's newest
//! release is always in it, since its dynos start in it), or while no release names it and it
//! is younger than [`UNRELEASED_SLUG_TTL`] (it waits for its upload, or for the release that
//! will name it; a slug whose only releases went with their app waits out the same day). Any other slug is deleted, record and archive together; releases that named
//! it keep its id, and a rollback or promotion to them is refused (422) rather than run code
//! that is gone. A slug another app released (a promotion, or Heroku's copying of slugs) is
//! needed while that app's window holds it, whichever app made it. An archive in `slugs/`
//! whose record is gone (its app was deleted, or an older Wharf never deleted any) is removed
//! too; `slugs/incoming`, where uploads and builds stage their files, is left alone.
//!
//! The rule is applied after every change to the model ([`ControlPlane::retain_slugs`]), so a
//! release, a rollback, a promotion or an app's deletion frees what it made unneeded at once;
//! an unreleased slug's day runs out at the first change after it.
//!
//! A build records its slug before it moves the archive into `slugs/`, and an upload's slug is
//! recorded before its archive arrives, so no archive that is being stored is ever taken for
//! a stray.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;
use wharf_domain::timestamp::now_seconds;

use super::engine::ControlPlane;
use crate::model::{Kind, Model};

#[cfg(doc)]
use super::DeploySettings;

/// How long a slug no release has named is kept: a day to upload it and release it.
pub const UNRELEASED_SLUG_TTL: Duration = Duration::from_secs(24 * 3600);

/// The slugs no release needs any more, under the module's rule.
fn unneeded_slugs(m: &Model, keep: usize, now: i64) -> Vec<Uuid> {
    let mut needed: HashSet<Uuid> = HashSet::new();
    let mut ever_released: HashSet<Uuid> = HashSet::new();
    for app in m.apps() {
        let releases = m.releases_of(app.id);
        ever_released.extend(releases.iter().filter_map(|r| r.slug_id));
        needed.extend(releases.iter().rev().take(keep.max(1)).filter_map(|r| r.slug_id));
    }
    let young = |created_at: i64| now.saturating_sub(created_at) < UNRELEASED_SLUG_TTL.as_secs() as i64;
    m.slugs()
        .filter(|s| !needed.contains(&s.id) && (ever_released.contains(&s.id) || !young(s.created_at)))
        .map(|s| s.id)
        .collect()
}

impl ControlPlane {
    /// Applies the retention rule after every change to the model, until the plane is gone.
    /// `wharf serve` starts it once, with the plane; without deploy settings it does nothing.
    pub async fn retain_slugs(self: Arc<Self>) {
        let mut changes = self.subscribe();
        loop {
            self.prune_slugs().await;
            if changes.changed().await.is_err() {
                return;
            }
        }
    }

    /// Deletes every slug no release needs (see the module), then every archive in `slugs/`
    /// without a record; returns the slugs deleted. Failures are logged: a slug kept a while
    /// longer loses nothing.
    pub async fn prune_slugs(&self) -> Vec<Uuid> {
        let Some(deploy) = self.deploy() else { return vec![] };
        let (keep, dir) = (deploy.keep_slugs, deploy.data_dir.join("slugs"));
        let now = now_seconds();
        let deleted = self
            .change(|m| {
                let ids = unneeded_slugs(m, keep, now);
                let changes = ids.iter().flat_map(|id| m.cascade(Kind::Slug, *id)).collect();
                Ok((ids, changes))
            })
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "cannot delete the slugs no release needs");
                vec![]
            });
        if !deleted.is_empty() {
            tracing::info!(slugs = ?deleted, keep, "deleted slugs no release needs");
        }
        let known: HashSet<Uuid> = self.read(|m| m.slugs().map(|s| s.id).collect()).await;
        let swept = tokio::task::spawn_blocking(move || sweep(&dir, &known)).await.unwrap_or_default();
        if !swept.is_empty() {
            tracing::info!(archives = ?swept, "removed slug archives without a slug");
        }
        deleted
    }
}

/// Removes every `<uuid>.tar.gz` in `dir` whose id is not in `known`; returns their ids.
/// Blocking.
fn sweep(dir: &std::path::Path, known: &HashSet<Uuid>) -> Vec<Uuid> {
    let Ok(entries) = std::fs::read_dir(dir) else { return vec![] };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".tar.gz")).and_then(|n| n.parse::<Uuid>().ok())
        else {
            continue;
        };
        if known.contains(&id) {
            continue;
        }
        match std::fs::remove_file(entry.path()) {
            Ok(()) => removed.push(id),
            Err(e) => tracing::warn!(slug = %id, error = %e, "cannot remove a slug archive"),
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::Error;
    use super::super::tests::plane;
    use super::*;
    use crate::model::{Change, Object, Slug};

    /// Records an uploaded slug of `app` made `age` seconds ago, with an archive file.
    async fn slug(p: &ControlPlane, app: &str, age: i64) -> Uuid {
        let id = wharf_domain::new_id();
        let app_id = p.read(|m| m.app(app).unwrap().id).await;
        let now = now_seconds() - age;
        let s = Slug {
            id,
            app_id,
            process_types: BTreeMap::from([("web".to_owned(), "serve".to_owned())]),
            commit: None,
            commit_description: None,
            checksum: None,
            image: None,
            size: Some(1),
            upload_token_sha256: None,
            upload_expires_at: None,
            created_at: now,
            updated_at: now,
        };
        p.change(|_| Ok(((), vec![Change::Put(Object::Slug(Box::new(s)))]))).await.unwrap();
        std::fs::write(p.slug_archive(id).unwrap(), b"archive").unwrap();
        id
    }

    #[tokio::test]
    async fn slugs_live_while_a_release_in_the_window_runs_them() {
        let p = plane().await;
        let data_dir = super::super::tests::with_deploy(&p, "slug-retention", 2);
        p.create_app("a".parse().unwrap(), "default").await.unwrap();
        p.create_app("b".parse().unwrap(), "default").await.unwrap();
        let [s1, s2, s3, s4] =
            [slug(&p, "a", 0).await, slug(&p, "a", 0).await, slug(&p, "a", 0).await, slug(&p, "a", 0).await];
        let (waiting, stale) = (slug(&p, "a", 60).await, slug(&p, "a", 2 * 24 * 3600).await);
        let stray = wharf_domain::new_id();
        let stray_file = p.slug_archive(stray).unwrap();
        std::fs::write(&stray_file, b"left by an earlier Wharf").unwrap();
        let staged = data_dir.join("slugs").join("incoming").join(format!("{stray}.tar.gz"));
        std::fs::write(&staged, b"an upload being checked").unwrap();
        for s in [s1, s2, s3] {
            p.release_slug("a-default", &s.to_string(), None).await.unwrap(); // v2, v3, v4
        }
        // b runs one of a's slugs that a never released (Heroku's copying slugs, or a promotion).
        p.release_slug("b-default", &s4.to_string(), None).await.unwrap();
        let mut deleted = p.prune_slugs().await;
        deleted.sort();
        let mut want = vec![stale, s1];
        want.sort();
        assert_eq!(deleted, want);
        let exists = |id: Uuid| p.slug_archive(id).unwrap().exists();
        // (slug, kept?) and why.
        let table = [
            (s1, false),     // only a's v2 runs it, outside a's newest two releases
            (s2, true),      // a's v3, the second of its newest two
            (s3, true),      // a's current release
            (s4, true),      // b's current release, though a made it
            (waiting, true), // never released, made a minute ago
            (stale, false),  // never released, made two days ago
        ];
        for (id, kept) in table {
            assert_eq!(p.read(|m| m.slug(id).is_some()).await, kept, "{id} record");
            assert_eq!(exists(id), kept, "{id} archive");
        }
        assert!(!stray_file.exists(), "an archive without a slug is removed");
        assert!(staged.exists(), "incoming/ is the uploads' and builds' own");
        // A rollback to a release whose slug is gone is refused, and changes nothing.
        let before = p.read(|m| m.releases_of(m.app("a").unwrap().id).len()).await;
        let e = p.rollback("a-default", "v2").await.unwrap_err();
        assert!(matches!(&e, Error::Invalid(m) if m.contains("was deleted")), "{e}");
        assert_eq!(p.read(|m| m.releases_of(m.app("a").unwrap().id).len()).await, before);
        // Deleting b leaves s4 run by no release: a's, made a moment ago, it waits out its day.
        p.delete_app("b-default").await.unwrap();
        assert!(p.prune_slugs().await.is_empty());
        assert!(exists(s4));
        // Deleting a deletes its slugs' records (the cascade), and the retention their archives.
        p.delete_app("a-default").await.unwrap();
        p.prune_slugs().await;
        for id in [s2, s3, s4, waiting] {
            assert!(!exists(id), "{id}: the archive of a deleted app's slug");
        }
        std::fs::remove_dir_all(data_dir).unwrap();
    }
}
