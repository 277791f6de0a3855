//! `/apps/{app}/domains`: an app's domains in the shape of Heroku's domain resource: its default
//! domain (`kind: heroku`, `app-space.<stack domain>`) and its custom domains (`kind: custom`),
//! which are sites routing `/` to the app ([`ControlPlane::add_domain`]). A custom domain's
//! `cname` is the default domain, where its DNS record should point; Wharf does not check DNS,
//! so `status` is `none`.
//!
//! `/apps/{app}/sni-endpoints` lists, in the shape of Heroku's SNI endpoint resource, the
//! certificates of `/certs` that cover one of the app's domains. The router picks a certificate
//! by SNI for every site, so a domain needs no endpoint of its own: `sni_endpoint` in a domain
//! create may name one of the app's endpoints (checked) and changes nothing else. Uploading an
//! endpoint (`certs:add`) puts the certificate into `/certs`; removing one (`certs:remove`)
//! deletes it from there, for every domain it covers.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use wharf_domain::timestamp::{format_seconds, now_seconds};
use wharf_domain::{Certificate, SiteDomain};

use super::wire::{ApiError, ApiResult, AppRef, Body, Json, Plane, app_ref};
use crate::model::{App, Cert, Model, Site};
use crate::plane::{ControlPlane, Error, domain_site, domain_sites};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DomainCreate {
    hostname: String,
    /// One of the app's SNI endpoints, by id; checked, since the router picks by SNI anyway.
    #[serde(default)]
    sni_endpoint: Option<String>,
}

#[derive(Serialize)]
pub(super) struct DomainOut {
    id: Uuid,
    hostname: String,
    kind: &'static str,
    cname: Option<String>,
    status: &'static str,
    acm_status: Option<()>,
    sni_endpoint: Option<()>,
    app: AppRef,
    created_at: String,
    updated_at: String,
}

/// The app's default domain as a domain.
fn default_domain_out(plane: &ControlPlane, m: &Model, a: &App) -> DomainOut {
    DomainOut {
        id: a.id,
        hostname: plane.default_domain(&m.app_key(a)),
        kind: "heroku",
        cname: None,
        status: "none",
        acm_status: None,
        sni_endpoint: None,
        app: app_ref(m, a),
        created_at: format_seconds(a.created_at),
        updated_at: format_seconds(a.updated_at),
    }
}

/// A custom domain (a site routing `/` to the app).
fn custom_domain_out(plane: &ControlPlane, m: &Model, a: &App, s: &Site) -> DomainOut {
    DomainOut {
        id: s.id,
        hostname: s.domain.to_string(),
        kind: "custom",
        cname: Some(plane.default_domain(&m.app_key(a))),
        // Wharf checks no DNS record and issues no certificate, so there is nothing pending.
        status: "none",
        acm_status: None,
        sni_endpoint: None,
        app: app_ref(m, a),
        created_at: format_seconds(s.created_at),
        updated_at: format_seconds(s.updated_at),
    }
}

/// `GET /apps/{app}/domains`: the default domain first, then the custom ones by name.
pub(super) async fn list_domains(State(plane): Plane, Path(app): Path<String>) -> ApiResult<impl IntoResponse> {
    let out = plane
        .read(|m| {
            let a = m.app(&app)?;
            let mut out = vec![default_domain_out(&plane, m, a)];
            out.extend(domain_sites(m, a.id).into_iter().map(|s| custom_domain_out(&plane, m, a, s)));
            Some(out)
        })
        .await;
    out.map(Json).ok_or_else(|| Error::NotFound { what: "app", key: app }.into())
}

/// `POST /apps/{app}/domains` `{"hostname"}`: 201 with the domain; 409 when another site or app
/// holds the name, 422 when it is not a domain.
pub(super) async fn add_domain(
    State(plane): Plane,
    Path(app): Path<String>,
    Body(req): Body<DomainCreate>,
) -> ApiResult<impl IntoResponse> {
    let domain = SiteDomain::try_new(&req.hostname).map_err(ApiError::invalid)?;
    if let Some(endpoint) = &req.sni_endpoint {
        let known = plane
            .read(|m| m.app(&app).is_some_and(|a| sni_endpoints(&plane, m, a).iter().any(|e| e.name == *endpoint)))
            .await;
        if !known {
            return Err(ApiError::invalid(format!("no SNI endpoint {endpoint:?} covers a domain of the app")));
        }
    }
    let (site, route) = plane.add_domain(&app, domain).await?;
    let out = plane.read(|m| m.app(&route.app_id.to_string()).map(|a| custom_domain_out(&plane, m, a, &site))).await;
    out.map(|o| (StatusCode::CREATED, Json(o))).ok_or_else(|| Error::NotFound { what: "app", key: app }.into())
}

/// `GET /apps/{app}/domains/{domain}`: one of the app's domains.
pub(super) async fn get_domain(
    State(plane): Plane,
    Path((app, domain)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    let out = plane
        .read(|m| {
            let a = m.app(&app).ok_or(Error::NotFound { what: "app", key: app.clone() })?;
            if plane.default_domain(&m.app_key(a)) == domain {
                return Ok(default_domain_out(&plane, m, a));
            }
            let s = domain_site(m, a.id, &domain).ok_or(Error::NotFound { what: "domain", key: domain.clone() })?;
            Ok::<_, Error>(custom_domain_out(&plane, m, a, s))
        })
        .await?;
    Ok(Json(out))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DomainUpdate {
    /// The SNI endpoint (certificate id) to serve the domain with, or `null`.
    sni_endpoint: Option<String>,
}

/// `PATCH /apps/{app}/domains/{domain}` `{"sni_endpoint": ID | null}` (Heroku's domain update, which
/// `certs:add` sends for each domain the user picks): checked and answered with the domain, and
/// nothing stored, because the router picks the certificate for a name by SNI from every
/// certificate of `/certs`. 404 for an unknown app or domain, 422 for an endpoint that is not
/// one of the app's or does not cover the domain.
pub(super) async fn update_domain(
    State(plane): Plane,
    Path((app, domain)): Path<(String, String)>,
    Body(req): Body<DomainUpdate>,
) -> ApiResult<impl IntoResponse> {
    let out = plane
        .read(|m| {
            let a = m.app(&app).ok_or(Error::NotFound { what: "app", key: app.clone() })?;
            let out = if plane.default_domain(&m.app_key(a)) == domain {
                default_domain_out(&plane, m, a)
            } else {
                let s = domain_site(m, a.id, &domain).ok_or(Error::NotFound { what: "domain", key: domain.clone() })?;
                custom_domain_out(&plane, m, a, s)
            };
            if let Some(endpoint) = &req.sni_endpoint {
                let covers = sni_endpoints(&plane, m, a)
                    .iter()
                    .any(|e| e.name == *endpoint && e.domains.contains(&out.hostname));
                if !covers {
                    return Err(Error::Invalid(format!("no SNI endpoint {endpoint:?} of the app covers {domain}")));
                }
            }
            Ok::<_, Error>(out)
        })
        .await?;
    Ok(Json(out))
}

/// `DELETE /apps/{app}/domains/{domain}`: removes a custom domain (its site); the default domain
/// cannot be removed (422).
pub(super) async fn remove_domain(
    State(plane): Plane,
    Path((app, domain)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    let out = plane
        .read(|m| {
            let a = m.app(&app)?;
            if plane.default_domain(&m.app_key(a)) == domain {
                return None;
            }
            domain_site(m, a.id, &domain).map(|s| custom_domain_out(&plane, m, a, s))
        })
        .await;
    let is_default = plane.read(|m| m.app(&app).is_some_and(|a| plane.default_domain(&m.app_key(a)) == domain)).await;
    if is_default {
        return Err(ApiError::invalid(format!("{domain} is the app's default domain and cannot be removed")));
    }
    plane.remove_domain(&app, &domain).await?;
    out.map(Json).ok_or_else(|| Error::NotFound { what: "domain", key: domain }.into())
}

/// A certificate as Heroku's SNI endpoint: `name` is its id, `domains` the app's hostnames it
/// covers.
#[derive(Serialize)]
pub(super) struct SniEndpointOut {
    id: Uuid,
    name: String,
    domains: Vec<String>,
    ssl_cert: SslCertOut,
    app: AppRef,
    created_at: String,
    updated_at: String,
}

/// The certificate's facts, as Heroku's `ssl_cert`.
#[derive(Serialize)]
pub(super) struct SslCertOut {
    cert_domains: Vec<String>,
    subject: String,
    issuer: String,
    starts_at: String,
    expires_at: String,
}

/// Whether a certificate name covers `host`: equal, or a wildcard `*.parent` covering one label
/// more (RFC 6125 section 6.4.3), ignoring ASCII case.
fn covers(name: &str, host: &str) -> bool {
    match name.strip_prefix("*.") {
        Some(parent) => host.split_once('.').is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(parent)),
        None => name.eq_ignore_ascii_case(host),
    }
}

/// The app's hostnames: its default domain, then its custom domains.
fn app_hosts(plane: &ControlPlane, m: &Model, a: &App) -> Vec<String> {
    let mut hosts = vec![plane.default_domain(&m.app_key(a))];
    hosts.extend(domain_sites(m, a.id).into_iter().map(|s| s.domain.to_string()));
    hosts
}

/// A certificate as one of the app's SNI endpoints, with the app's hostnames it covers (none
/// for a certificate just uploaded for a domain the app does not have yet).
fn sni_endpoint(m: &Model, a: &App, hosts: &[String], c: &Cert) -> SniEndpointOut {
    let cert = &c.certificate;
    let names: Vec<String> = cert.names().iter().map(|n| n.to_string()).collect();
    let domains: Vec<String> = hosts.iter().filter(|h| names.iter().any(|n| covers(n, h))).cloned().collect();
    SniEndpointOut {
        id: c.id,
        name: c.id.to_string(),
        domains,
        ssl_cert: SslCertOut {
            cert_domains: names,
            subject: cert.subject().to_owned(),
            issuer: cert.issuer().to_owned(),
            starts_at: format_seconds(cert.not_before()),
            expires_at: format_seconds(cert.not_after()),
        },
        app: app_ref(m, a),
        created_at: format_seconds(c.created_at),
        updated_at: format_seconds(c.updated_at),
    }
}

/// The certificates that cover one of the app's domains, as SNI endpoints, oldest first.
fn sni_endpoints(plane: &ControlPlane, m: &Model, a: &App) -> Vec<SniEndpointOut> {
    let hosts = app_hosts(plane, m, a);
    let mut certs: Vec<&Cert> = m.certs().collect();
    certs.sort_by_key(|c| (c.created_at, c.id));
    certs.into_iter().map(|c| sni_endpoint(m, a, &hosts, c)).filter(|e| !e.domains.is_empty()).collect()
}

/// `GET /apps/{app}/sni-endpoints`: the certificates covering the app's domains.
pub(super) async fn list_sni_endpoints(State(plane): Plane, Path(app): Path<String>) -> ApiResult<impl IntoResponse> {
    let out = plane.read(|m| m.app(&app).map(|a| sni_endpoints(&plane, m, a))).await;
    out.map(Json).ok_or_else(|| Error::NotFound { what: "app", key: app }.into())
}

/// `POST /apps/{app}/sni-endpoints` (the Heroku CLI's `certs:add`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SniEndpointCreate {
    /// PEM, leaf first.
    certificate_chain: String,
    /// PEM; stored, never returned.
    private_key: String,
}

/// `POST /apps/{app}/sni-endpoints`: uploads a certificate into `/certs`, the one store the router
/// serves by SNI, answered as the app's SNI endpoint. The router picks it for every domain it
/// names, whichever app the domain routes to; one whose names cover none of the app's domains
/// yet is listed by the app once a domain it covers is added. A duplicate is a 409, a chain and
/// key that do not parse or match a 422; nothing changes then.
pub(super) async fn add_sni_endpoint(
    State(plane): Plane,
    Path(app): Path<String>,
    Body(req): Body<SniEndpointCreate>,
) -> ApiResult<impl IntoResponse> {
    if plane.read(|m| m.app(&app).is_none()).await {
        return Err(Error::NotFound { what: "app", key: app }.into());
    }
    let certificate =
        Certificate::try_new(&req.certificate_chain, &req.private_key, now_seconds()).map_err(ApiError::invalid)?;
    let c = plane.add_cert(certificate).await?;
    let out = plane.read(|m| m.app(&app).map(|a| sni_endpoint(m, a, &app_hosts(&plane, m, a), &c))).await;
    let out = out.ok_or(Error::NotFound { what: "app", key: app })?;
    Ok((StatusCode::CREATED, Json(out)))
}

/// The certificate `name` (its id) if it covers one of the app's domains.
fn app_cert(plane: &ControlPlane, m: &Model, app: &str, name: &str) -> Result<SniEndpointOut, Error> {
    let a = m.app(app).ok_or_else(|| Error::NotFound { what: "app", key: app.to_owned() })?;
    let c = m.cert(name).ok_or_else(|| Error::NotFound { what: "sni endpoint", key: name.to_owned() })?;
    let e = sni_endpoint(m, a, &app_hosts(plane, m, a), c);
    if e.domains.is_empty() {
        return Err(Error::NotFound { what: "sni endpoint", key: name.to_owned() });
    }
    Ok(e)
}

/// `GET /apps/{app}/sni-endpoints/{name}`: one of the certificates covering the app's domains.
pub(super) async fn get_sni_endpoint(
    State(plane): Plane,
    Path((app, name)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(plane.read(|m| app_cert(&plane, m, &app, &name)).await?))
}

/// `DELETE /apps/{app}/sni-endpoints/{name}` (the Heroku CLI's `certs:remove`): deletes the
/// certificate from `/certs`, and so for every domain it covers, of this app or another; only a
/// certificate covering one of this app's domains can be deleted here (404 otherwise).
pub(super) async fn remove_sni_endpoint(
    State(plane): Plane,
    Path((app, name)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    let out = plane.read(|m| app_cert(&plane, m, &app, &name)).await?;
    plane.delete_cert(&name).await?;
    Ok(Json(out))
}

#[cfg(test)]
mod tests {
    use super::covers;

    #[test]
    fn names_cover_hosts_as_rfc_6125_says() {
        assert!(covers("www.example.com", "WWW.example.com"));
        assert!(covers("*.example.com", "www.example.com"));
        assert!(!covers("*.example.com", "example.com"));
        assert!(!covers("*.example.com", "a.b.example.com"));
        assert!(!covers("www.example.com", "api.example.com"));
    }
}
