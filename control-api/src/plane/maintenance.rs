//! Heroku's maintenance mode: an app switched into it is answered by the router with 503 and a
//! maintenance page, and its dynos get no request. The app may name its own page in the
//! `MAINTENANCE_PAGE_URL` config var (Heroku's "Error Pages" article); the control plane fetches
//! it here, never the router at request time, and the snapshot carries it.
//!
//! The fetch follows the rules of every URL a user gives Wharf: `https` only, every resolved
//! address checked against the outbound policy before it is dialled, the server's certificate
//! verified (the system's trust store and `control_api.trusted_ca`), a timeout, and a size cap
//! ([`MaintenancePage::MAX_BYTES`]). A page that cannot be fetched leaves the router's default
//! page in place, and the reason is kept on the app (`maintenance_page.error` in its JSON) and
//! logged. The outcome is stored only if the app still names the same URL when the fetch ends,
//! so a URL changed or removed while a fetch ran never gets the old page. The page is kept apart
//! from the maintenance flag (both on the app record, by id): turning maintenance on or off while
//! a fetch runs changes neither outcome, and a rename keeps the page.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt as _;
use uuid::Uuid;
use wharf_domain::MaintenancePage;
use wharf_domain::outbound::Policy;
use wharf_domain::timestamp::now_seconds;

use super::engine::ControlPlane;
use crate::model::{Change, Object, PageFetch};

/// How long one fetch of a page may take, from name resolution to the last byte.
pub const PAGE_FETCH_TIMEOUT: Duration = Duration::from_secs(10);

impl ControlPlane {
    /// Fetches the app's `MAINTENANCE_PAGE_URL` (or forgets its page when it names none) and
    /// stores the outcome on the app, unless the app is gone or names another URL by then.
    /// Runs in the background of the request that changed the URL or turned maintenance on.
    pub async fn refresh_maintenance_page(self: Arc<Self>, app_id: Uuid) {
        let url = self.read(|m| m.maintenance_page_url(app_id).map(str::to_owned)).await;
        let fetched = match &url {
            None => None,
            Some(url) => {
                let outcome = fetch_page(url, self.outbound(), self.trusted_roots()).await;
                let (html, error) = match outcome {
                    Ok(html) => (Some(html), None),
                    Err(e) => {
                        tracing::warn!(app = %app_id, url = %url, error = %e, "the maintenance page could not be fetched; the default page stands");
                        (None, Some(e))
                    }
                };
                Some(PageFetch { url: url.clone(), html, error, fetched_at: now_seconds() })
            }
        };
        let stored = self
            .change(|m| {
                let Some(a) = m.apps().find(|a| a.id == app_id) else { return Ok(((), vec![])) };
                // The app may have named another URL (or none) while this one was fetched: that
                // change started its own fetch, whose outcome is the one to keep.
                if m.maintenance_page_url(app_id) != url.as_deref() {
                    return Ok(((), vec![]));
                }
                // A fetch that fails keeps the last good copy of the same URL: an outage of the
                // page's host must not take the app's own page away (the error says why it is stale).
                let mut fetched = fetched.clone();
                if let Some(f) = fetched.as_mut().filter(|f| f.html.is_none()) {
                    f.html =
                        a.maintenance_page.as_ref().filter(|old| old.url == f.url).and_then(|old| old.html.clone());
                }
                if a.maintenance_page == fetched {
                    return Ok(((), vec![]));
                }
                let app = crate::model::App { maintenance_page: fetched, ..a.clone() };
                Ok(((), vec![Change::Put(Object::App(app))]))
            })
            .await;
        if let Err(e) = stored {
            tracing::warn!(app = %app_id, error = %e, "the maintenance page could not be stored");
        }
    }

    /// The roots a fetched URL's certificate is verified against: the system's trust store and the
    /// operator's `control_api.trusted_ca`.
    pub(crate) fn trusted_roots(&self) -> Arc<rustls::ClientConfig> {
        self.page_tls.get().cloned().unwrap_or_else(|| client_config(&[]))
    }

    /// Trusts these CAs (DER) beside the system's trust store when fetching pages apps name; set once,
    /// from `control_api.trusted_ca`, before any fetch.
    pub fn set_trusted_ca(&self, cas: Vec<rustls::pki_types::CertificateDer<'static>>) {
        let _ = self.page_tls.set(client_config(&cas));
    }
}

/// A TLS client configuration trusting the system's trust store and `extra`
/// ([`wharf_domain::trust`]).
fn client_config(extra: &[rustls::pki_types::CertificateDer<'static>]) -> Arc<rustls::ClientConfig> {
    let mut roots = wharf_domain::trust::system_store();
    for der in extra {
        // A CA the store cannot take was already refused when the configuration was read.
        let _ = roots.add(der.clone());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// Checks a `MAINTENANCE_PAGE_URL` value: an absolute `https` URL with a host (or a
/// scheme-relative one). Returns the host, the port (443 unless given), the authority as the URL
/// writes it (the request's `Host`, RFC 3986 section 3.2.2) and the path with its query.
fn parse_page_url(url: &str, policy: &Policy) -> Result<(String, u16, String, String), String> {
    // Heroku's article writes the URL scheme-relative (`//bucket.s3.amazonaws.com/page.html`):
    // that is fetched over https, the only scheme fetched.
    let url = match url.strip_prefix("//") {
        Some(rest) => format!("https://{rest}"),
        None => url.to_owned(),
    };
    let t = super::fetch::parse_url(&url, true, policy)?;
    Ok((t.host, t.port, t.authority, t.path))
}

/// GETs a page over verified TLS from an address the outbound policy allows, within
/// [`PAGE_FETCH_TIMEOUT`]; the page must answer 200 with at most [`MaintenancePage::MAX_BYTES`]
/// of UTF-8. The error says why not, in words for the app's owner.
pub async fn fetch_page(url: &str, policy: Policy, tls: Arc<rustls::ClientConfig>) -> Result<String, String> {
    match tokio::time::timeout(PAGE_FETCH_TIMEOUT, fetch(url, policy, tls)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(format!("no whole answer within {}s", PAGE_FETCH_TIMEOUT.as_secs())),
    }
}

async fn fetch(url: &str, policy: Policy, tls: Arc<rustls::ClientConfig>) -> Result<String, String> {
    let (host, port, authority, path) = parse_page_url(url, &policy)?;
    let target = super::fetch::Target { https: true, host, port, authority, path };
    let (response, conn) = super::fetch::get(&target, policy, tls, "text/html", "wharf-maintenance-page").await?;
    let status = response.status();
    if status != http::StatusCode::OK {
        conn.abort();
        return Err(format!("the server answered {status}, not 200"));
    }
    let coding = super::fetch::coding(response.headers()).inspect_err(|_| conn.abort())?;
    let body = http_body_util::Limited::new(response.into_body(), MaintenancePage::MAX_BYTES);
    let bytes = body.collect().await.map_err(|e| {
        if e.is::<http_body_util::LengthLimitError>() {
            format!("the page is larger than {} KiB", MaintenancePage::MAX_BYTES / 1024)
        } else {
            format!("reading the page: {e}")
        }
    })?;
    conn.abort();
    page_text(&bytes.to_bytes(), coding)
}

/// A page's text from its body as sent: decoded from gzip when the server gzipped it whatever
/// it was asked (under the same cap), and UTF-8.
fn page_text(body: &[u8], coding: super::fetch::Coding) -> Result<String, String> {
    let too_large = || format!("the page is larger than {} KiB", MaintenancePage::MAX_BYTES / 1024);
    let page = match coding {
        super::fetch::Coding::Identity => body.to_vec(),
        super::fetch::Coding::Gzip => {
            use std::io::Read as _;
            let mut page = Vec::new();
            let cap = u64::try_from(MaintenancePage::MAX_BYTES).unwrap_or(u64::MAX);
            flate2::read::GzDecoder::new(body)
                .take(cap + 1)
                .read_to_end(&mut page)
                .map_err(|e| format!("the page's gzip content coding is corrupt: {e}"))?;
            page
        }
    };
    if page.len() > MaintenancePage::MAX_BYTES {
        return Err(too_large());
    }
    String::from_utf8(page).map_err(|_| "the page is not UTF-8".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_is_its_body_or_what_its_gzip_coding_holds_within_the_cap() {
        use super::super::fetch::Coding::{Gzip, Identity};
        let gzip = |b: &[u8]| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            std::io::Write::write_all(&mut e, b).unwrap();
            e.finish().unwrap()
        };
        let max = MaintenancePage::MAX_BYTES;
        let check = |body: &[u8], coding, want: Result<&str, &str>| match (page_text(body, coding), want) {
            (Ok(got), Ok(want)) => assert_eq!(got, want),
            (Err(e), Err(piece)) => assert!(e.contains(piece), "{e}"),
            (got, want) => panic!("{got:?}, expected {want:?}"),
        };
        check(b"<p>down</p>", Identity, Ok("<p>down</p>"));
        check(&gzip(b"<p>down</p>"), Gzip, Ok("<p>down</p>"));
        check(&gzip(b"<p>down</p>"), Identity, Err("not UTF-8"));
        check(b"<p>down</p>", Gzip, Err("gzip content coding is corrupt"));
        check(&gzip(&vec![b'a'; max]), Gzip, Ok(&"a".repeat(max)));
        check(&gzip(&vec![b'a'; max + 1]), Gzip, Err("larger than"));
    }

    #[test]
    fn only_https_urls_with_a_host_are_fetched() {
        let check = |url: &str, want: Result<(&str, u16, &str), &str>| {
            let got = parse_page_url(url, &Policy::default()).map(|(h, p, _, path)| (h, p, path));
            match want {
                Ok((h, p, path)) => assert_eq!(got, Ok((h.to_owned(), p, path.to_owned())), "{url}"),
                Err(piece) => assert!(got.as_ref().is_err_and(|e| e.contains(piece)), "{url}: {got:?}"),
            }
        };
        check("https://pages.example.com/down.html", Ok(("pages.example.com", 443, "/down.html")));
        check("https://pages.example.com:8443/d?x=1", Ok(("pages.example.com", 8443, "/d?x=1")));
        check("https://[::1]:9/", Ok(("::1", 9, "/")));
        check("https://pages.example.com", Ok(("pages.example.com", 443, "/")));
        check("http://pages.example.com/", Err("only https"));
        check("//pages.example.com/p.html", Ok(("pages.example.com", 443, "/p.html")));
        check("ftp://pages.example.com/", Err("only https"));
        check("https://user:pw@pages.example.com/", Err("credentials"));
        check("not a url", Err("not a URL"));
    }
}
