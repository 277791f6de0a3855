//! The records of deploying code (Heroku's shapes): slugs, an app's code as a stored archive or
//! an image reference, and builds, a source fetched and made into a slug. Their serde shapes are
//! the store's format, as in `records.rs`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A slug (Heroku's slug resource): an app's code as one tar.gz archive, or the name of an
/// image an external runtime pulls. A release names the slug it runs by id (`Release::slug_id`),
/// and any app's release may name any app's slug (a pipeline's promotion does), so a slug is
/// never changed once its archive is stored: a release of it runs the same bytes forever.
///
/// The archive lives at `DATA_DIR/slugs/<id>.tar.gz` on the control API's machine
/// (`ControlPlane::slug_archive`); the record holds what the API shows and how to upload it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slug {
    /// Its id.
    pub id: Uuid,
    /// The app it was made for.
    pub app_id: Uuid,
    /// Each process type's command (Heroku's `process_types`, a Procfile's lines).
    pub process_types: BTreeMap<String, String>,
    /// The commit it was built from, as the client named it (free text, at most 256 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// A description of that commit, as the client gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_description: Option<String>,
    /// `SHA256:<hex>` of the archive: as the client announced it (the upload must match), else
    /// as measured when it was stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    /// An image reference (`registry/name@sha256:<hex>`) for an external runtime, instead of
    /// an archive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The stored archive's size in bytes; none until it is uploaded (and for an image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Lowercase hex SHA-256 of the upload token of the blob URL (kept after the upload, so a
    /// later `PUT` is judged by its token first); the token itself is shown once, in the URL,
    /// and never stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_token_sha256: Option<String>,
    /// Until when (seconds since the epoch) the blob URL takes the upload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_expires_at: Option<i64>,
    /// Creation time, seconds since the epoch.
    pub created_at: i64,
    /// Last change, seconds since the epoch.
    pub updated_at: i64,
}

/// Where a build is (Heroku's build `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BuildStatus {
    /// Fetching, unpacking or packing: not done yet.
    Pending,
    /// Its slug was made and released.
    Succeeded,
    /// It stopped: the source could not be fetched or was refused, or Wharf restarted while
    /// it ran.
    Failed,
}

impl BuildStatus {
    /// Heroku's word for the status.
    pub fn as_str(self) -> &'static str {
        match self {
            BuildStatus::Pending => "pending",
            BuildStatus::Succeeded => "succeeded",
            BuildStatus::Failed => "failed",
        }
    }
}

/// A build (Heroku's build resource): a source archive fetched from a URL, unpacked, and made
/// into a slug that is released at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Build {
    /// Its id.
    pub id: Uuid,
    /// The app.
    pub app_id: Uuid,
    /// The source archive's URL (`source_blob.url`), as given.
    pub source_url: String,
    /// The source's announced `SHA256:<hex>`, which the fetched bytes must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_checksum: Option<String>,
    /// The source's version (`source_blob.version`, a commit), as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_version: Option<String>,
    /// Pending, succeeded or failed.
    pub status: BuildStatus,
    /// The slug it made, once it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slug_id: Option<Uuid>,
    /// The release of that slug.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_id: Option<Uuid>,
    /// The build's output lines, once it ended (at most `plane::MAX_OUTPUT_LINES`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output: Vec<String>,
    /// Creation time, seconds since the epoch.
    pub created_at: i64,
    /// Last change, seconds since the epoch.
    pub updated_at: i64,
}

impl super::Model {
    /// The snapshot's images: each app whose current release runs an image slug, with its
    /// process types' commands and the formation's quantities, by app key (see
    /// [`wharf_domain::ImageSpec`]).
    pub(super) fn images(&self) -> Vec<wharf_domain::ImageSpec> {
        let mut out: Vec<wharf_domain::ImageSpec> = self
            .apps()
            .filter_map(|a| {
                let release = self.current_release(a.id)?;
                let image = self.slug(release.slug_id?)?.image.clone()?;
                let formation = self.formation_of(a.id);
                let processes = release
                    .processes
                    .iter()
                    .filter_map(|p| {
                        let quantity = formation.iter().find(|f| f.dyno_type == p.dyno_type).map_or(0, |f| f.quantity);
                        Some(wharf_domain::ImageProcess {
                            dyno_type: p.dyno_type.to_string(),
                            command: p.command.clone()?,
                            quantity,
                        })
                    })
                    .collect();
                Some(wharf_domain::ImageSpec {
                    app_id: a.id,
                    app: self.app_key(a),
                    release: release.id,
                    version: release.version,
                    image,
                    processes,
                })
            })
            .collect();
        out.sort_by(|x, y| x.app.cmp(&y.app));
        out
    }
}
