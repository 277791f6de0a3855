//! Log drains of an app or a site: add and remove, at most [`MAX_DRAINS_PER_APP`] each, none
//! twice to the same receiver (compared by [`DrainUrl::normalized`]), none to an address the
//! outbound policy refuses when the URL's host is an IP literal.

use wharf_domain::outbound::Policy;
use wharf_domain::timestamp::now_seconds;
use wharf_domain::{DrainCa, DrainUrl, new_id};

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
    /// Sets the outbound-destination policy drains are checked against (the configuration's
    /// `[outbound]`); until it is set, and if it is set twice, the default policy's first value
    /// stays.
    pub fn set_outbound(&self, policy: Policy) {
        let _ = self.outbound.set(policy);
    }

    /// The outbound-destination policy in force.
    pub fn outbound(&self) -> Policy {
        self.outbound.get().copied().unwrap_or_default()
    }

    /// Adds a log drain to an app or a site that trusts the operator's CAs only; as
    /// [`ControlPlane::add_drain_with_ca`].
    pub async fn add_drain(&self, of: Drains<'_>, url: DrainUrl) -> Result<Drain, Error> {
        self.add_drain_with_ca(of, url, None).await
    }

    /// Adds a log drain to an app or a site, with the CAs it trusts beside the operator's.
    /// Errors: 404 for an unknown owner; [`Error::Invalid`] when the URL's IP literal is refused
    /// by the outbound policy or the owner has [`MAX_DRAINS_PER_APP`] drains; [`Error::Conflict`]
    /// when the owner has a drain to the same receiver (same normalised URL).
    pub async fn add_drain_with_ca(&self, of: Drains<'_>, url: DrainUrl, ca: Option<DrainCa>) -> Result<Drain, Error> {
        url.check_outbound(&self.outbound()).map_err(|e| Error::Invalid(format!("drain url {url}: {e}")))?;
        let normal = url.normalized();
        self.change(|m| {
            let owner = of.owner(m)?;
            let drains = m.drains_of(owner);
            if let Some(same) = drains.iter().find(|d| d.url.normalized() == normal) {
                return Err(Error::Conflict(format!("{} already has a drain to {url} ({})", of.what(), same.url)));
            }
            if drains.len() >= MAX_DRAINS_PER_APP {
                return Err(Error::Invalid(format!("{} has at most {MAX_DRAINS_PER_APP} drains", of.what())));
            }
            let now = now_seconds();
            let drain = Drain {
                id: new_id(),
                owner,
                url,
                token: format!("d.{}", new_id()),
                ca,
                created_at: now,
                updated_at: now,
            };
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
