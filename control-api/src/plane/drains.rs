//! Log drains of an app or a site: add and remove, at most [`MAX_DRAINS_PER_APP`] each.

use wharf_domain::timestamp::now_seconds;
use wharf_domain::{DrainUrl, new_id};

use super::engine::ControlPlane;
use super::error::{Error, not_found};
use crate::model::{Change, Drain, Kind, Model, Object, Owner};

/// Most drains one app or site may have.
pub const MAX_DRAINS_PER_APP: usize = 50;

/// Whose drains an operation is about, as the request names it (id, key or domain).
#[derive(Debug, Clone, Copy)]
pub enum Drains<'a> {
    /// An app's, by id or `app-space`.
    App(&'a str),
    /// A site's, by id or domain.
    Site(&'a str),
}

impl Drains<'_> {
    /// The app or site named, or the 404 that says which one is missing.
    pub(crate) fn owner(self, m: &Model) -> Result<Owner, Error> {
        match self {
            Drains::App(app) => Ok(Owner::App(m.app(app).ok_or_else(|| not_found("app", app))?.id)),
            Drains::Site(site) => Ok(Owner::Site(m.site(site).ok_or_else(|| not_found("site", site))?.id)),
        }
    }

    fn what(self) -> &'static str {
        match self {
            Drains::App(_) => "an app",
            Drains::Site(_) => "a site",
        }
    }
}

impl ControlPlane {
    /// Adds a log drain to an app or a site.
    pub async fn add_drain(&self, of: Drains<'_>, url: DrainUrl) -> Result<Drain, Error> {
        self.change(|m| {
            let owner = of.owner(m)?;
            let drains = m.drains_of(owner);
            if drains.iter().any(|d| d.url == url) {
                return Err(Error::Conflict(format!("{} already has a drain to {url}", of.what())));
            }
            if drains.len() >= MAX_DRAINS_PER_APP {
                return Err(Error::Invalid(format!("{} has at most {MAX_DRAINS_PER_APP} drains", of.what())));
            }
            let now = now_seconds();
            let drain =
                Drain { id: new_id(), owner, url, token: format!("d.{}", new_id()), created_at: now, updated_at: now };
            Ok((drain.clone(), vec![Change::Put(Object::Drain(drain))]))
        })
        .await
    }

    /// Removes a log drain of an app or a site, by id or URL.
    pub async fn delete_drain(&self, of: Drains<'_>, drain: &str) -> Result<Drain, Error> {
        self.change(|m| {
            let owner = of.owner(m)?;
            let d = m.drain(owner, drain).ok_or_else(|| not_found("log drain", drain))?.clone();
            let id = d.id;
            Ok((d, m.cascade(Kind::Drain, id)))
        })
        .await
    }
}
