//! What the router serves besides apps' default domains: sites, their routes to apps, and
//! TLS certificates. Internal apps are routed only from internal sites, and public from public.

use wharf_domain::timestamp::now_seconds;
use wharf_domain::{Certificate, RoutePath, SiteDomain, new_id};

use super::engine::ControlPlane;
use super::error::{Error, not_found};
use crate::model::{Cert, Change, Kind, Object, Route, Site};

/// Most routes one site may have.
pub const MAX_ROUTES_PER_SITE: usize = 1000;

/// Most certificates the platform holds.
pub const MAX_CERTS: usize = 10_000;

impl ControlPlane {
    /// An app's default domain, `app-space.<stack_domain>`.
    pub fn default_domain(&self, key: &wharf_domain::AppKey) -> String {
        format!("{key}.{}", self.settings.stack_domain.to_ascii_lowercase())
    }

    /// Creates a site.
    pub async fn create_site(&self, domain: SiteDomain, internal: bool) -> Result<Site, Error> {
        self.change(|m| {
            if m.site(domain.as_str()).is_some() {
                return Err(Error::Conflict(format!("site {domain} already exists")));
            }
            if let Some(a) = m.apps().find(|a| self.default_domain(&m.app_key(a)) == domain.as_str()) {
                return Err(Error::Conflict(format!("{domain} is the default domain of app {}", m.app_key(a))));
            }
            let now = now_seconds();
            let site = Site { id: new_id(), domain, internal, created_at: now, updated_at: now };
            Ok((site.clone(), vec![Change::Put(Object::Site(site))]))
        })
        .await
    }

    /// Deletes a site with its routes and drains ([`crate::model::Model::cascade`]).
    pub async fn delete_site(&self, site: &str) -> Result<Site, Error> {
        self.change(|m| {
            let s = m.site(site).ok_or_else(|| not_found("site", site))?.clone();
            let changes = m.cascade(Kind::Site, s.id);
            Ok((s, changes))
        })
        .await
    }

    /// Routes a site's path prefix to an app. Internal apps go only on internal sites and
    /// public apps only on public ones, so that no route exposes an internal app publicly.
    pub async fn create_route(
        &self,
        site: &str,
        app: &str,
        source_path: RoutePath,
        target_path: RoutePath,
    ) -> Result<Route, Error> {
        self.change(|m| {
            let s = m.site(site).ok_or_else(|| not_found("site", site))?;
            let a = m.app(app).ok_or_else(|| not_found("app", app))?;
            // A route to a canary app would send it requests besides its judged share.
            super::canary_releases::refuse_canary_app(m, a.id)?;
            match (s.internal, m.app_is_internal(a)) {
                (false, true) => {
                    return Err(Error::Invalid(format!(
                        "app {} is internal and cannot be routed from the public site {}",
                        m.app_key(a),
                        s.domain
                    )));
                }
                (true, false) => {
                    return Err(Error::Invalid(format!(
                        "app {} is public and cannot be routed from the internal site {}",
                        m.app_key(a),
                        s.domain
                    )));
                }
                _ => {}
            }
            let routes = m.routes_where(|r| r.site_id == s.id);
            if routes.iter().any(|r| r.source_path == source_path) {
                return Err(Error::Conflict(format!("site {} already routes {source_path}", s.domain)));
            }
            if routes.len() >= MAX_ROUTES_PER_SITE {
                return Err(Error::Invalid(format!("a site has at most {MAX_ROUTES_PER_SITE} routes")));
            }
            let now = now_seconds();
            let route = Route {
                id: new_id(),
                site_id: s.id,
                app_id: a.id,
                source_path,
                target_path,
                created_at: now,
                updated_at: now,
            };
            Ok((route.clone(), vec![Change::Put(Object::Route(route))]))
        })
        .await
    }

    /// Removes a route.
    pub async fn delete_route(&self, id: &str) -> Result<Route, Error> {
        self.change(|m| {
            let r = id.parse().ok().and_then(|id| m.route(id)).ok_or_else(|| not_found("route", id))?.clone();
            let rid = r.id;
            Ok((r, m.cascade(Kind::Route, rid)))
        })
        .await
    }

    /// Adds a certificate, checked by its constructor. The same leaf twice is a conflict.
    pub async fn add_cert(&self, certificate: Certificate) -> Result<Cert, Error> {
        self.change(|m| {
            if let Some(c) = m.certs().find(|c| c.certificate.fingerprint() == certificate.fingerprint()) {
                return Err(Error::Conflict(format!(
                    "certificate {} is already uploaded as {}",
                    c.certificate.subject(),
                    c.id
                )));
            }
            if m.certs().count() >= MAX_CERTS {
                return Err(Error::Invalid(format!("at most {MAX_CERTS} certificates")));
            }
            let now = now_seconds();
            let cert = Cert { id: new_id(), certificate, created_at: now, updated_at: now };
            Ok((cert.clone(), vec![Change::Put(Object::Cert(cert))]))
        })
        .await
    }

    /// Removes a certificate; the router stops serving it with the next snapshot.
    pub async fn delete_cert(&self, id: &str) -> Result<Cert, Error> {
        self.change(|m| {
            let c = m.cert(id).ok_or_else(|| not_found("certificate", id))?.clone();
            let id = c.id;
            Ok((c, m.cascade(Kind::Cert, id)))
        })
        .await
    }
}
