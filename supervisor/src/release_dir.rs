//! Each release's own directory: the release's slug unpacked once into
//! `DATA_DIR/releases/<release id>/<slug id>`, where every dyno of that release runs (its working
//! directory is the slug's `app`, as Heroku's dynos run in `/app`), and the removal of the
//! directories no release needs any more.
//!
//! The slug's id is part of the path because a release's slug can change under its id: a release
//! of config vars or commands queued behind a release that failed is rebased onto the running
//! release's code (`wharf_control_api` `rebase_queued`). Keyed by the release alone, the directory
//! unpacked from the failed slug before the rebase was used again, and the failed code served
//! under a record naming the good slug (FE26 finding 1).
//!
//! A directory is made whole or not at all: the slug is unpacked into a scratch directory beside
//! it (`.<id>.<random>`), which is renamed into place, so a dyno never starts in a half-unpacked
//! tree and two process types of one release starting at once each find it whole (the second
//! rename loses and its scratch copy is removed). A directory is never written again once in
//! place: a roll to a new release unpacks a new one, so the files under a running dyno never
//! change. Directories are removed only when no dyno of theirs runs and they are not among the
//! app's newest `keep_releases` (see [`prune`]).
//!
//! A one-off dyno (`heroku run`) gets a copy of its own, `DATA_DIR/releases/runs/<random>/app`,
//! unpacked for it and removed when it exits ([`one_off_dir`]): as on Heroku, where each dyno has
//! its own ephemeral filesystem, what a one-off writes (`collectstatic`, a cleanup, a SQLite
//! file) never changes the files the release's web dynos serve (FE26 #2). A restart of Wharf
//! stops every one-off and removes what a killed run left there ([`clear_runs`]).

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};

use uuid::Uuid;
use wharf_control_api::ControlPlane;
use wharf_control_api::archive::{self, Limits};

use crate::desired::DynoSpec;
use crate::settings::Settings;

/// The directory a process of `spec` runs in: its release's own unpacked slug, made on first
/// use (see [`prepare`]); none for a release without a slug, or a supervisor without a
/// releases directory (it runs in Wharf's working directory then).
///
/// # Errors
///
/// When the slug cannot be unpacked.
pub(crate) async fn working_dir(
    plane: &ControlPlane,
    settings: &Settings,
    spec: &DynoSpec,
) -> io::Result<Option<PathBuf>> {
    let (Some(slug), Some(release), Some(root)) = (spec.slug, spec.release, settings.releases_dir.clone()) else {
        return Ok(None);
    };
    let archive = plane.slug_archive(slug).ok_or_else(|| io::Error::other("this Wharf stores no slugs"))?;
    let limits = plane.deploy().map(|d| d.unpack_limits).unwrap_or_default();
    let dir = tokio::task::spawn_blocking(move || prepare(&root, release.id, slug, &archive, limits))
        .await
        .map_err(io::Error::other)??;
    Ok(Some(dir))
}

/// Where one-off dynos' own copies are, under `root`; not a release id, so [`prune`] leaves it.
const RUNS: &str = "runs";

/// A one-off dyno's own copy of its release's slug, removed by [`OneOffDir::remove`] (or, after
/// a crash of Wharf, by [`clear_runs`] at the next start).
#[derive(Debug)]
pub(crate) struct OneOffDir {
    /// `runs/<random>`, what is removed.
    top: PathBuf,
    /// Its `app`, the one-off's working directory.
    pub(crate) app: PathBuf,
}

impl OneOffDir {
    /// Removes the copy, off the async threads.
    pub(crate) async fn remove(self) {
        let top = self.top;
        let removed = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&top).map_err(|e| (top, e))).await;
        if let Ok(Err((top, e))) = removed {
            tracing::warn!(dir = %top.display(), error = %e, "cannot remove a one-off dyno's copy of its release");
        }
    }
}

/// A fresh copy of `spec`'s slug for one one-off dyno (see the module's comment); none for a
/// release without a slug, or a supervisor without a releases directory (the one-off runs in
/// Wharf's working directory then, as the formation's dynos do).
///
/// # Errors
///
/// When the slug cannot be unpacked.
pub(crate) async fn one_off_dir(
    plane: &ControlPlane,
    settings: &Settings,
    spec: &DynoSpec,
) -> io::Result<Option<OneOffDir>> {
    let (Some(slug), Some(root)) = (spec.slug, settings.releases_dir.clone()) else {
        return Ok(None);
    };
    let archive = plane.slug_archive(slug).ok_or_else(|| io::Error::other("this Wharf stores no slugs"))?;
    let limits = plane.deploy().map(|d| d.unpack_limits).unwrap_or_default();
    let unpack = move || {
        let top = root.join(RUNS).join(wharf_domain::new_id().simple().to_string());
        std::fs::create_dir_all(&top)?;
        let app = top.join("app");
        match unpack_into(&archive, &top, limits) {
            Ok(()) if app.is_dir() => Ok(OneOffDir { top, app }),
            Ok(()) => {
                let _ = std::fs::remove_dir_all(&top);
                Err(io::Error::new(io::ErrorKind::NotFound, "the slug has no app directory"))
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&top);
                Err(e)
            }
        }
    };
    tokio::task::spawn_blocking(unpack).await.map_err(io::Error::other)?.map(Some)
}

/// Removes every one-off dyno's copy under `root`, and every scratch directory of an unpack
/// (`.<release>.<random>`, see [`prepare`]) that a killed Wharf left half-written (AU21): at
/// start, when no one-off runs (an earlier run's were stopped) and no unpack does. Blocking.
pub(crate) fn clear_runs(root: &Path) {
    let runs = root.join(RUNS);
    if let Err(e) = std::fs::remove_dir_all(&runs)
        && e.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(dir = %runs.display(), error = %e, "cannot remove the one-off dynos' old copies");
    }
    let Ok(entries) = std::fs::read_dir(root) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let scratch = name.to_str().and_then(|n| n.strip_prefix('.')).and_then(|n| n.split_once('.'));
        if scratch.is_some_and(|(release, _)| release.parse::<Uuid>().is_ok())
            && let Err(e) = std::fs::remove_dir_all(entry.path())
        {
            tracing::warn!(dir = %entry.path().display(), error = %e, "cannot remove a half-unpacked release");
        }
    }
}

/// The directory of `release` under `root`.
pub(crate) fn path_of(root: &Path, release: Uuid) -> PathBuf {
    root.join(release.to_string())
}

/// The directory of `release` running the slug `slug_id`, under `root`.
fn slug_dir(root: &Path, release: Uuid, slug_id: Uuid) -> PathBuf {
    path_of(root, release).join(slug_id.to_string())
}

/// Makes sure `release`'s directory for the slug `slug_id` holds the slug archive at `slug`
/// unpacked, and returns the dynos' working directory in it (its `app`). Blocking: call it off
/// the async threads.
///
/// # Errors
///
/// When the archive cannot be read or unpacked (it was checked when it was stored, so this is a
/// disk that failed or filled) or holds no `app` directory.
pub(crate) fn prepare(root: &Path, release: Uuid, slug_id: Uuid, slug: &Path, limits: Limits) -> io::Result<PathBuf> {
    let dir = slug_dir(root, release, slug_id);
    if !dir.is_dir() {
        std::fs::create_dir_all(path_of(root, release))?;
        let scratch = root.join(format!(".{release}.{}", wharf_domain::new_id().simple()));
        std::fs::create_dir(&scratch)?;
        if let Err(e) = unpack_into(slug, &scratch, limits) {
            let _ = std::fs::remove_dir_all(&scratch);
            return Err(e);
        }
        if std::fs::rename(&scratch, &dir).is_err() {
            // Another dyno of the release put its copy in place first: that one is used.
            let _ = std::fs::remove_dir_all(&scratch);
            if !dir.is_dir() {
                return Err(io::Error::other(format!("cannot put {} in place", dir.display())));
            }
        }
    }
    let app = dir.join("app");
    if !app.is_dir() {
        return Err(io::Error::new(io::ErrorKind::NotFound, "the slug has no app directory"));
    }
    Ok(app)
}

/// Unpacks the slug archive at `slug` into `dir`; a refusal (the archive was checked when it was
/// stored, so only a changed file is refused) is `InvalidData`. Blocking.
fn unpack_into(slug: &Path, dir: &Path, limits: Limits) -> io::Result<()> {
    archive::unpack(slug, dir, limits).map(drop).map_err(|e| match e {
        archive::ArchiveError::Io(e) => e,
        refused @ archive::ArchiveError::Refused(_) => io::Error::new(io::ErrorKind::InvalidData, refused),
    })
}

/// Removes every release directory under `root` whose release is not in `keep` (scratch
/// directories are left to the unpack that owns them). Returns the releases removed. Blocking.
pub(crate) fn prune(root: &Path, keep: &HashSet<Uuid>) -> Vec<Uuid> {
    let Ok(entries) = std::fs::read_dir(root) else { return vec![] };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        // Scratch directories (`.<id>.<random>`) belong to an unpack that may be running.
        let Ok(id) = name.parse::<Uuid>() else { continue };
        if keep.contains(&id) {
            continue;
        }
        match std::fs::remove_dir_all(entry.path()) {
            Ok(()) => removed.push(id),
            Err(e) => tracing::warn!(release = %id, error = %e, "cannot remove an old release's directory"),
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slug_with(dir: &Path, body: &str) -> PathBuf {
        let src = dir.join("src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("index.txt"), body).unwrap();
        let out = dir.join(format!("{body}.tar.gz"));
        archive::pack_tar_gz(&src, "app", &out).unwrap();
        out
    }

    #[test]
    fn a_release_is_unpacked_once_and_never_rewritten() {
        let tmp = std::env::temp_dir().join(format!("wharf-release-dir-{}", wharf_domain::new_id()));
        let root = tmp.join("releases");
        let (one, two) = (slug_with(&tmp.join("a"), "one"), slug_with(&tmp.join("b"), "two"));
        let (slug_one, slug_two) = (wharf_domain::new_id(), wharf_domain::new_id());
        let release = wharf_domain::new_id();
        let app = prepare(&root, release, slug_one, &one, Limits::default()).unwrap();
        assert_eq!(std::fs::read_to_string(app.join("index.txt")).unwrap(), "one");
        // The same release and slug asked again (another process type) keep what is there.
        let again = prepare(&root, release, slug_one, &two, Limits::default()).unwrap();
        assert_eq!(std::fs::read_to_string(again.join("index.txt")).unwrap(), "one");
        // The same release rebased onto another slug runs that slug's files, never the first's.
        let rebased = prepare(&root, release, slug_two, &two, Limits::default()).unwrap();
        assert_eq!(std::fs::read_to_string(rebased.join("index.txt")).unwrap(), "two");
        assert_eq!(std::fs::read_to_string(app.join("index.txt")).unwrap(), "one");
        let other = wharf_domain::new_id();
        let app2 = prepare(&root, other, slug_two, &two, Limits::default()).unwrap();
        assert_eq!(std::fs::read_to_string(app2.join("index.txt")).unwrap(), "two");
        assert_eq!(std::fs::read_to_string(app.join("index.txt")).unwrap(), "one");
        let removed = prune(&root, &HashSet::from([other]));
        assert_eq!(removed, vec![release]);
        assert!(!path_of(&root, release).exists() && app2.is_dir());
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn a_start_clears_one_off_copies_and_half_unpacked_releases_and_nothing_else() {
        let root = std::env::temp_dir().join(format!("wharf-release-clear-{}", wharf_domain::new_id()));
        let release = wharf_domain::new_id();
        // (what a killed run left, whether a start removes it)
        let rows = [
            (format!("{RUNS}/abc/app"), true),
            (format!(".{release}.{}/app", wharf_domain::new_id().simple()), true),
            (format!("{release}/{}/app", wharf_domain::new_id()), false),
            (".hidden/app".to_owned(), false),
            (".not-a-release.x/app".to_owned(), false),
        ];
        for (path, _) in &rows {
            std::fs::create_dir_all(root.join(path)).unwrap();
        }
        clear_runs(&root);
        for (path, removed) in &rows {
            let top = path.split('/').next().unwrap();
            assert_eq!(!root.join(top).exists(), *removed, "{path}");
        }
        std::fs::remove_dir_all(&root).unwrap();
    }
}
