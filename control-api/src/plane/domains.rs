//! An app's custom domains, as Heroku's domain resource names them: a domain added to an app is
//! a site ([`super::routing`]) of the app's visibility with the route `/` to the app, made in one
//! commit so that no half-added domain is ever seen.

use wharf_domain::timestamp::now_seconds;
use wharf_domain::{RoutePath, SiteDomain, new_id};

use super::engine::ControlPlane;
use super::error::{Error, not_found};
use crate::model::{Change, Kind, Model, Object, Route, Site};

impl ControlPlane {
    /// Adds `domain` to an app: a new site, internal when the app is, routing `/` to the app.
    /// Refused (409) when a site or an app's default domain already has the name, since a
    /// domain another app holds must not change hands silently.
    pub async fn add_domain(&self, app: &str, domain: SiteDomain) -> Result<(Site, Route), Error> {
        self.change(|m| {
            let a = m.app(app).ok_or_else(|| not_found("app", app))?;
            if let Some(s) = m.site(domain.as_str()) {
                let holder = m.routes_where(|r| r.site_id == s.id).first().and_then(|r| m.app(&r.app_id.to_string()));
                return Err(Error::Conflict(match holder {
                    Some(h) => format!("domain {domain} is already held by app {}", m.app_key(h)),
                    None => format!("site {domain} already exists"),
                }));
            }
            if let Some(h) = m.apps().find(|h| self.default_domain(&m.app_key(h)) == domain.as_str()) {
                return Err(Error::Conflict(format!("{domain} is the default domain of app {}", m.app_key(h))));
            }
            let now = now_seconds();
            let internal = m.app_is_internal(a);
            let site = Site { id: new_id(), domain, internal, created_at: now, updated_at: now };
            let root = RoutePath::try_new("/").expect("/ is a route path");
            let route = Route {
                id: new_id(),
                site_id: site.id,
                app_id: a.id,
                source_path: root.clone(),
                target_path: root,
                created_at: now,
                updated_at: now,
            };
            let changes = vec![Change::Put(Object::Site(site.clone())), Change::Put(Object::Route(route.clone()))];
            Ok(((site, route), changes))
        })
        .await
    }

    /// Removes a domain from an app: the site goes, with its routes and drains. Refused (404)
    /// when the site does not route `/` to the app, and (409) when it also routes other apps,
    /// which `/sites` manages.
    pub async fn remove_domain(&self, app: &str, domain: &str) -> Result<Site, Error> {
        self.change(|m| {
            let a = m.app(app).ok_or_else(|| not_found("app", app))?;
            let s = domain_site(m, a.id, domain).ok_or_else(|| not_found("domain", domain))?.clone();
            if m.routes_where(|r| r.site_id == s.id).iter().any(|r| r.app_id != a.id) {
                return Err(Error::Conflict(format!(
                    "site {domain} also routes other apps: change it through /sites/{domain}/routes"
                )));
            }
            let changes = m.cascade(Kind::Site, s.id);
            Ok((s, changes))
        })
        .await
    }
}

/// The site named `domain` if it routes `/` to the app: one of the app's custom domains.
pub fn domain_site<'m>(m: &'m Model, app_id: uuid::Uuid, domain: &str) -> Option<&'m Site> {
    let s = m.site(domain)?;
    m.routes_where(|r| r.site_id == s.id && r.app_id == app_id && r.source_path.as_str() == "/").first().map(|_| s)
}

/// The app's custom domains: the sites that route `/` to it, by domain.
pub fn domain_sites(m: &Model, app_id: uuid::Uuid) -> Vec<&Site> {
    let mut sites: Vec<&Site> = m
        .routes_where(|r| r.app_id == app_id && r.source_path.as_str() == "/")
        .into_iter()
        .filter_map(|r| m.site_by_id(r.site_id))
        .collect();
    sites.sort_by(|a, b| a.domain.as_str().cmp(b.domain.as_str()));
    sites
}
