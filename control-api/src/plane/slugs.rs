//! Slugs (Heroku's slug resource): an app's code as a tar.gz archive stored by the control API,
//! or an image reference for an external runtime; and the release of a slug.
//!
//! A slug is created with its process types, then its archive is uploaded with `PUT` to the
//! slug's blob URL, as Heroku's is to S3. Heroku's blob URL is a pre-signed URL: whoever holds it
//! may upload, for a while, that one slug. Wharf's is the same kind of capability: the URL
//! carries a random 256-bit token ([`UPLOAD_TOKEN_TTL`], one slug, one successful upload), of
//! which only the SHA-256 is stored, so the clients that `curl -X PUT` a slug as Heroku's
//! documentation shows work unchanged and never need the admin token.
//!
//! An upload is checked before it is kept: its size ([`DeploySettings::max_slug_bytes`]), its
//! checksum when the slug announced one, and its contents, unpacked once into a scratch
//! directory under the rules of [`crate::archive`] with Heroku's layout (the app under
//! `./app`). Only then is it renamed to `DATA_DIR/slugs/<id>.tar.gz`, and the record says so. A
//! stored slug never changes, so any release of any app may run it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use uuid::Uuid;
use wharf_domain::DynoType;
use wharf_domain::new_id;
use wharf_domain::timestamp::now_seconds;

use super::engine::ControlPlane;
use super::error::{Error, not_found};
use super::releases::processes_of;
use crate::archive::{self, Limits};
use crate::model::{Change, Formation, Model, Object, Release, ReleaseProcess, Slug};

/// How long a slug's blob URL takes its upload: Heroku's pre-signed URLs last an hour too.
pub const UPLOAD_TOKEN_TTL: Duration = Duration::from_secs(3600);

/// The longest `commit` and `commit_description`, in bytes.
const MAX_COMMIT: usize = 256;
const MAX_COMMIT_DESCRIPTION: usize = 4096;
/// Most process types one slug may name.
pub(super) const MAX_PROCESS_TYPES: usize = 64;

/// Where slugs and builds live and how large they may be; `wharf serve` fills it from
/// `[control_api]` and the data directory. Without it the API refuses archives (503) and
/// accepts image slugs only.
#[derive(Debug, Clone)]
pub struct DeploySettings {
    /// `DATA_DIR`: slugs are stored in `DATA_DIR/slugs`, build sources fetched into
    /// `DATA_DIR/builds`.
    pub data_dir: PathBuf,
    /// Most bytes of one slug or source archive as uploaded or fetched (compressed).
    pub max_slug_bytes: u64,
    /// What one archive may unpack to.
    pub unpack_limits: Limits,
    /// Whether a build's `source_blob.url` may be a `file://` path on this machine.
    pub allow_file_urls: bool,
    /// The control API's own base URL (`http://127.0.0.1:5000`), for blob and build-output URLs;
    /// none to take it from the request's `Host`.
    pub public_url: Option<String>,
    /// How many of each app's newest releases keep their slug (see `slug_retention.rs`).
    pub keep_slugs: usize,
    /// How many builds fetch, unpack and pack at once; later ones wait for a slot.
    pub max_concurrent_builds: usize,
}

/// What a new slug holds, as the API's `POST /apps/{app}/slugs` gives it.
#[derive(Debug, Clone, Default)]
pub struct NewSlug {
    /// Process type to command.
    pub process_types: BTreeMap<String, String>,
    /// The commit it was built from.
    pub commit: Option<String>,
    /// A description of that commit.
    pub commit_description: Option<String>,
    /// The archive's announced `SHA256:<hex>`; the upload must match it.
    pub checksum: Option<String>,
    /// An image reference instead of an archive.
    pub image: Option<String>,
}

/// Why an upload to a blob URL was refused before its body was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadRefusal {
    /// No such slug, or the token is not its upload token: the URL is wrong.
    Forbidden,
    /// The token was right but has expired.
    Expired,
    /// The slug's archive is already stored (or it is an image slug): a slug never changes.
    AlreadyStored,
}

/// Checks an image reference: `registry/name@sha256:<64 hex>`, pinned by digest so that a
/// release always runs the same image. The registry is a host name (with an optional port);
/// the repository path is lowercase letters, digits and `._-` separated by `/`, as the OCI
/// distribution specification's grammar has it.
pub fn check_image(image: &str) -> Result<(), String> {
    let bad = |why: &str| {
        format!("invalid image {image:?}: {why}; expected registry/name@sha256:<64 hex digits>, pinned by digest")
    };
    let (name, digest) = image.split_once('@').ok_or_else(|| bad("no @sha256: digest"))?;
    let hex = digest.strip_prefix("sha256:").ok_or_else(|| bad("only sha256 digests"))?;
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(bad("the digest is not 64 lowercase hex digits"));
    }
    let (registry, path) = name.split_once('/').ok_or_else(|| bad("no registry"))?;
    let (host, port) = registry.split_once(':').map_or((registry, None), |(h, p)| (h, Some(p)));
    let host_ok = !host.is_empty()
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
    if !host_ok || port.is_some_and(|p| p.parse::<u16>().is_err()) {
        return Err(bad("the registry is not a host name with an optional port"));
    }
    let component_ok = |c: &str| {
        !c.is_empty()
            && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
            && c.as_bytes()[0].is_ascii_alphanumeric()
    };
    if name.len() > 255 || !path.split('/').all(component_ok) {
        return Err(bad("the repository is not lowercase letters, digits and ._- separated by /"));
    }
    Ok(())
}

/// Checks a slug's process types: at least one (as a build's Procfile must declare one: a
/// release of a slug without any would run nothing), valid type names, commands by the one
/// rule (`formation::check_command`).
fn check_process_types(types: &BTreeMap<String, String>) -> Result<(), Error> {
    if types.is_empty() {
        return Err(Error::Invalid(
            "process_types is empty: a slug declares at least one process type and its command (as a Procfile does), \
             or a release of it would run nothing"
                .into(),
        ));
    }
    if types.len() > MAX_PROCESS_TYPES {
        return Err(Error::Invalid(format!("a slug has at most {MAX_PROCESS_TYPES} process types")));
    }
    for (name, command) in types {
        DynoType::try_new(name).map_err(|e| Error::Invalid(format!("process type {name:?}: {e}")))?;
        super::formation::check_command(command)
            .map_err(|rule| Error::Invalid(format!("the {name} command {rule}")))?;
    }
    Ok(())
}

fn sha256_hex(text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    archive::checksum_text(digest.as_ref()).trim_start_matches("SHA256:").to_owned()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl ControlPlane {
    /// Plugs in where slugs live and how large they may be; only the first call counts.
    pub fn set_deploy(&self, settings: DeploySettings) {
        let _ = self.deploy.set(settings);
    }

    /// Where slugs live, if this control API stores them.
    pub fn deploy(&self) -> Option<&DeploySettings> {
        self.deploy.get()
    }

    fn deploy_or_refuse(&self) -> Result<&DeploySettings, Error> {
        self.deploy()
            .ok_or_else(|| Error::Invalid("this control API stores no slugs (it has no data directory)".into()))
    }

    /// The stored archive of a slug, `DATA_DIR/slugs/<id>.tar.gz`, if this control API stores
    /// slugs. The local supervisor unpacks it into each release's own directory.
    pub fn slug_archive(&self, slug_id: Uuid) -> Option<PathBuf> {
        Some(self.deploy()?.data_dir.join("slugs").join(format!("{slug_id}.tar.gz")))
    }

    /// Where uploads and fetched sources wait while they are checked.
    pub fn incoming_dir(&self) -> Result<PathBuf, Error> {
        let dir = self.deploy_or_refuse()?.data_dir.join("slugs").join("incoming");
        std::fs::create_dir_all(&dir).map_err(|e| {
            Error::Invalid(format!("cannot create the staging directory: {}", crate::os_error::words(&e)))
        })?;
        Ok(dir)
    }

    /// Creates a slug of `app`. An archive slug gets an upload token (returned once: the blob
    /// URL carries it); an image slug (`new.image`) has no archive and none. Refused (422) for
    /// invalid process types, checksum or image, or a checksum beside an image.
    pub async fn create_slug(&self, app: &str, new: NewSlug) -> Result<(Slug, Option<String>), Error> {
        check_process_types(&new.process_types)?;
        let checksum = new.checksum.as_deref().map(archive::parse_checksum).transpose().map_err(Error::Invalid)?;
        if let Some(image) = &new.image {
            check_image(image).map_err(Error::Invalid)?;
            if checksum.is_some() {
                return Err(Error::Invalid("an image slug has no archive, so no checksum".into()));
            }
        } else {
            self.deploy_or_refuse()?;
        }
        if new.commit.as_ref().is_some_and(|c| c.len() > MAX_COMMIT) {
            return Err(Error::Invalid(format!("commit is longer than {MAX_COMMIT} bytes")));
        }
        if new.commit_description.as_ref().is_some_and(|c| c.len() > MAX_COMMIT_DESCRIPTION) {
            return Err(Error::Invalid(format!("commit_description is longer than {MAX_COMMIT_DESCRIPTION} bytes")));
        }
        let token = new.image.is_none().then(|| hex(&wharf_domain::random_bytes::<32>()));
        self.change(|m| {
            let a = m.app(app).ok_or_else(|| not_found("app", app))?;
            let now = now_seconds();
            let slug = Slug {
                id: new_id(),
                app_id: a.id,
                process_types: new.process_types.clone(),
                commit: new.commit.clone(),
                commit_description: new.commit_description.clone(),
                checksum: checksum.clone(),
                image: new.image.clone(),
                size: None,
                upload_token_sha256: token.as_deref().map(sha256_hex),
                upload_expires_at: token.as_ref().map(|_| now + UPLOAD_TOKEN_TTL.as_secs() as i64),
                created_at: now,
                updated_at: now,
            };
            Ok(((slug.clone(), token.clone()), vec![Change::Put(Object::Slug(Box::new(slug)))]))
        })
        .await
    }

    /// Whether `token` may upload the archive of slug `id` now. The token is checked first, so
    /// that only its holder learns anything of the slug (that it was uploaded, or expired):
    /// anyone else gets [`UploadRefusal::Forbidden`] whatever the slug's state.
    pub async fn check_slug_upload(&self, id: Uuid, token: &str) -> Result<(), UploadRefusal> {
        let slug = self.read(|m| m.slug(id).cloned()).await.ok_or(UploadRefusal::Forbidden)?;
        if slug.upload_token_sha256.as_deref() != Some(&sha256_hex(token)) {
            return Err(UploadRefusal::Forbidden);
        }
        if slug.size.is_some() || slug.image.is_some() {
            return Err(UploadRefusal::AlreadyStored);
        }
        if slug.upload_expires_at.is_none_or(|t| t < now_seconds()) {
            return Err(UploadRefusal::Expired);
        }
        Ok(())
    }

    /// Returns once slug `id` no longer exists (its app was deleted): an upload of its archive
    /// in progress is then cut short rather than read to its end and refused.
    pub async fn slug_gone(&self, id: Uuid) {
        self.until(|m| m.slug(id).is_none()).await;
    }

    /// Keeps the uploaded archive at `upload` (in [`ControlPlane::incoming_dir`]) as slug `id`'s,
    /// once it passed every check: the token ([`ControlPlane::check_slug_upload`], again, as
    /// another upload may have won), the announced checksum, and a safe unpack with the app
    /// under `./app`. The upload file is gone afterwards, kept or not. Refused with 422 and the
    /// reason; the slug then still waits for its archive.
    pub async fn store_slug_archive(&self, id: Uuid, token: &str, upload: PathBuf) -> Result<Slug, Error> {
        let outcome = self.store_slug_archive_inner(id, token, &upload).await;
        let _ = std::fs::remove_file(&upload);
        outcome
    }

    async fn store_slug_archive_inner(&self, id: Uuid, token: &str, upload: &Path) -> Result<Slug, Error> {
        let refusal = |r: UploadRefusal| match r {
            UploadRefusal::Forbidden | UploadRefusal::Expired => not_found("slug upload", &id.to_string()),
            UploadRefusal::AlreadyStored => Error::Conflict(format!("slug {id} already has its archive")),
        };
        self.check_slug_upload(id, token).await.map_err(refusal)?;
        let deploy = self.deploy_or_refuse()?.clone();
        let announced = self.read(|m| m.slug(id).and_then(|s| s.checksum.clone())).await;
        let checked = check_slug_archive(upload.to_path_buf(), deploy.unpack_limits, announced).await?;
        let stored = self.slug_archive(id).expect("deploy settings are set");
        std::fs::rename(upload, &stored)
            .map_err(|e| Error::Invalid(format!("cannot store the slug: {}", crate::os_error::words(&e))))?;
        let kept = self
            .change(|m| {
                let s = m.slug(id).ok_or_else(|| not_found("slug", &id.to_string()))?;
                if s.size.is_some() {
                    return Err(Error::Conflict(format!("slug {id} already has its archive")));
                }
                let slug = Slug {
                    checksum: Some(checked.checksum.clone()),
                    size: Some(checked.size),
                    // The token's hash stays, so a second upload with it is told 409 (stored)
                    // and one with another token 403, as before the upload.
                    updated_at: now_seconds(),
                    ..s.clone()
                };
                Ok((slug.clone(), vec![Change::Put(Object::Slug(Box::new(slug)))]))
            })
            .await;
        if kept.is_err() {
            let _ = std::fs::remove_file(&stored);
        }
        kept
    }

    /// Releases a slug of the app (Heroku's `POST /apps/{app}/releases {"slug"}`): the app's
    /// config vars stay; each process type the slug names gets the slug's command (port and
    /// health check stay; a type the formation lacks is added with quantity 0); a type the slug
    /// does not name is removed from what runs, as Heroku removes the process types the new
    /// slug's Procfile no longer declares: it loses its command, port and health check and is
    /// scaled to 0, so its old command never runs against the new release's files. Other
    /// quantities stay. Refused (422) for a slug
    /// whose archive was never uploaded, 404 for a slug that does not exist.
    pub async fn release_slug(&self, app: &str, slug_id: &str, description: Option<String>) -> Result<Release, Error> {
        self.change(|m| {
            let a = m.app(app).ok_or_else(|| not_found("app", app))?;
            let slug = slug_id.parse().ok().and_then(|id| m.slug(id)).ok_or_else(|| not_found("slug", slug_id))?;
            // An image is pulled and run by an external runtime; the local supervisor runs only
            // archives, and would otherwise run the image's commands in Wharf's own directory.
            if let (Some(image), Some(_)) = (&slug.image, self.local.get()) {
                return Err(Error::Invalid(format!(
                    "slug {} names the image {image}, which only an external runtime runs; this Wharf runs its \
                     dynos itself: release a slug with an archive",
                    slug.id
                )));
            }
            if slug.image.is_none() && slug.size.is_none() {
                return Err(Error::Invalid(format!(
                    "slug {} has no archive yet: PUT it to its blob URL first",
                    slug.id
                )));
            }
            super::canary_releases::refuse_during_canary(m, a.id)?;
            let (changes, processes) = formation_for_slug(m, a.id, slug);
            let vars = m.config_vars_of(a.id).map(|c| c.vars.clone()).unwrap_or_default();
            let description = description.unwrap_or_else(|| deploy_description(slug));
            let mut release = self.new_release(m, a.id, description, vars, processes);
            super::releases::bring_code(&mut release, Some(slug.id));
            let Change::Put(Object::Release(out)) = &release else { unreachable!("new_release puts a release") };
            let mut out = out.clone();
            // A production app with the canary feature runs it as a canary first (a build's
            // release comes through here too).
            if let Some(canary) = self.start_canary_release(m, a, &out, None)? {
                out.status = crate::model::ReleaseStatus::Pending;
                return Ok((out, canary));
            }
            let mut changes = changes;
            changes.push(release);
            Ok((out, changes))
        })
        .await
    }
}

/// Heroku's description of a slug's release: `Deploy 1a2b3c4d` with a commit id's first 8
/// hex digits (as Heroku shortens a git SHA), `Deploy` and the whole version when it is
/// anything else (a tag such as `release-2026-12-01a`: cut to 8 characters, two tags could read
/// alike, FE29 LOW-3), or `Deploy` and the slug's id when it names no commit.
fn deploy_description(slug: &Slug) -> String {
    match &slug.commit {
        Some(c) => format!("Deploy {}", shown_commit(c)),
        None => format!("Deploy slug {}", slug.id),
    }
}

/// What a release's description shows of a slug's commit (see [`deploy_description`]).
fn shown_commit(commit: &str) -> &str {
    if commit.len() > 8 && commit.bytes().all(|b| b.is_ascii_hexdigit()) { &commit[..8] } else { commit }
}

/// The formation changes that give each of the slug's process types its command and remove
/// the types it does not name (no command, quantity 0), and the release's processes after them.
fn formation_for_slug(m: &Model, app_id: Uuid, slug: &Slug) -> (Vec<Change>, Vec<ReleaseProcess>) {
    let now = now_seconds();
    let formation = m.formation_of(app_id);
    let mut changes = Vec::new();
    let mut after: Vec<Formation> = formation.iter().map(|f| (*f).clone()).collect();
    for f in after.iter_mut().filter(|f| !slug.process_types.contains_key(f.dyno_type.as_str())) {
        if f.command.is_some() || f.port.is_some() || f.healthcheck.is_some() || f.quantity != 0 {
            (f.command, f.port, f.healthcheck, f.quantity, f.updated_at) = (None, None, None, 0, now);
            changes.push(Change::Put(Object::Formation(f.clone())));
        }
    }
    for (name, command) in &slug.process_types {
        let Ok(dyno_type) = DynoType::try_new(name) else { continue };
        match after.iter_mut().find(|f| f.dyno_type == dyno_type) {
            Some(f) if f.command.as_deref() == Some(command) => {}
            Some(f) => {
                f.command = Some(command.clone());
                f.updated_at = now;
                changes.push(Change::Put(Object::Formation(f.clone())));
            }
            None => {
                let f = Formation {
                    id: new_id(),
                    app_id,
                    dyno_type,
                    quantity: 0,
                    command: Some(command.clone()),
                    port: None,
                    healthcheck: None,
                    size: None,
                    created_at: now,
                    updated_at: now,
                };
                changes.push(Change::Put(Object::Formation(f.clone())));
                after.push(f);
            }
        }
    }
    (changes, processes_of(&after))
}

/// What a checked archive measured.
struct Checked {
    checksum: String,
    size: u64,
}

/// Checks an uploaded slug archive off the async threads: its checksum against the announced
/// one, then a whole unpack into a scratch directory beside it (removed after), which must
/// succeed and hold `./app`.
async fn check_slug_archive(path: PathBuf, limits: Limits, announced: Option<String>) -> Result<Checked, Error> {
    tokio::task::spawn_blocking(move || {
        let size = std::fs::metadata(&path)
            .map_err(|e| Error::Invalid(format!("cannot read the upload: {}", crate::os_error::words(&e))))?
            .len();
        let checksum = archive::sha256_file(&path)
            .map_err(|e| Error::Invalid(format!("cannot read the upload: {}", crate::os_error::words(&e))))?;
        if let Some(want) = announced
            && want != checksum
        {
            return Err(Error::Invalid(format!(
                "checksum mismatch: the slug announced {want}, the upload is {checksum}"
            )));
        }
        let scratch = path.with_extension("check");
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir_all(&scratch)
            .map_err(|e| Error::Invalid(format!("cannot unpack: {}", crate::os_error::words(&e))))?;
        let unpacked = archive::unpack(&path, &scratch, limits);
        let has_app = scratch.join("app").is_dir();
        let _ = std::fs::remove_dir_all(&scratch);
        unpacked.map_err(|e| Error::Invalid(format!("the slug archive is refused: {e}")))?;
        if !has_app {
            return Err(Error::Invalid(
                "the slug archive has no ./app directory: a slug holds the app under ./app, as Heroku's do".into(),
            ));
        }
        Ok(Checked { checksum, size })
    })
    .await
    .expect("checking an archive does not panic")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_id_is_shortened_in_a_description_and_any_other_version_is_whole() {
        let rows = [
            ("0123456789abcdef0123456789abcdef01234567", "01234567"),
            ("ABCDEF0123456789", "ABCDEF01"),
            ("abc1234d", "abc1234d"),
            ("release-2026-12-01a", "release-2026-12-01a"),
            ("release-2026-12-01b", "release-2026-12-01b"),
            ("v1.0", "v1.0"),
        ];
        for (commit, shown) in rows {
            assert_eq!(shown_commit(commit), shown, "{commit}");
        }
    }

    #[test]
    fn images_are_pinned_by_digest_in_a_registry() {
        let digest = "0123456789abcdef".repeat(4);
        let check = |image: &str, ok: bool| assert_eq!(check_image(image).is_ok(), ok, "{image}");
        check(&format!("registry.example.com/team/app@sha256:{digest}"), true);
        check(&format!("localhost:5000/app@sha256:{digest}"), true);
        check(&format!("registry.example.com/a.b/c_d-e@sha256:{digest}"), true);
        check("registry.example.com/app:latest", false);
        check(&format!("app@sha256:{digest}"), false);
        check(&format!("registry.example.com/App@sha256:{digest}"), false);
        check(&format!("registry.example.com/app@sha256:{}", digest.to_uppercase()), false);
        check(&format!("registry.example.com/app@sha512:{digest}"), false);
        check(&format!("registry.example.com/app@sha256:{}", &digest[1..]), false);
        check(&format!("registry.example.com:x/app@sha256:{digest}"), false);
        check(&format!("-bad.example.com/app@sha256:{digest}"), false);
        check(&format!("registry.example.com//app@sha256:{digest}"), false);
    }
}
