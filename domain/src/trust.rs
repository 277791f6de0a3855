//! Whom Wharf's outbound TLS trusts: the system's trust store, plus the CAs the operator
//! configured for that kind of connection.
//!
//! Every TLS client in Wharf (a data plane following the control API, a control API reaching
//! PostgreSQL, the control plane fetching a maintenance page, a build source or a webhook's
//! receiver, a logshuttle delivering to a `syslog+tls://` or `https://` drain) builds its roots
//! with [`roots`], so one rule holds everywhere: a server is trusted when its chain ends at a
//! root of the system's trust store, as OpenSSL on the same machine finds it
//! (`SSL_CERT_FILE` and `SSL_CERT_DIR` when either is set, else the distribution's bundle and
//! directory: `/etc/ssl/certs` on Debian), or at one of the connection's own configured CAs. An
//! operator adds a private CA for the whole machine the usual way (`update-ca-certificates`),
//! or for one kind of connection with its setting (`[feed] control_api_ca`,
//! `control_api.database_ca`, `control_api.trusted_ca`, `logshuttle.trusted_ca`).
//!
//! The store is read once per process, at the first TLS client built: a CA added to the system
//! later is trusted after a restart. Unlike OpenSSL, setting only one of `SSL_CERT_FILE` and
//! `SSL_CERT_DIR` drops the distribution's other location. When the ones set name no usable
//! certificate, nothing of the system is trusted (an error is logged): never more than the
//! operator named; when one of two names nothing, a warning says so and the other's are
//! trusted. A machine whose own store holds no certificate, neither variable set (a minimal
//! container image without `ca-certificates`), gets the Mozilla roots compiled into Wharf
//! instead, with a warning, so that drains and pages on public CAs keep working there.

use std::sync::OnceLock;

use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, TrustAnchor};

/// The roots read from the system once, and where they came from.
#[derive(Debug)]
pub struct SystemRoots {
    /// The trust anchors.
    pub anchors: Vec<TrustAnchor<'static>>,
    /// True when the system's store had no usable certificate and these are the compiled-in
    /// Mozilla roots.
    pub mozilla_fallback: bool,
    /// What could not be read or parsed (a missing file named by `SSL_CERT_FILE`, a PEM block
    /// that is not a certificate), in words.
    pub problems: Vec<String>,
}

/// The system's roots, read (and logged) at the first call in this process.
pub fn system() -> &'static SystemRoots {
    static SYSTEM: OnceLock<SystemRoots> = OnceLock::new();
    SYSTEM.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        let mut problems: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
        let mut store = RootCertStore::empty();
        let (_, unusable) = store.add_parsable_certificates(found.certs);
        if unusable > 0 {
            problems.push(format!("{unusable} certificates of the store are not usable as roots"));
        }
        let from = |var: &str| std::env::var_os(var).map(|v| v.to_string_lossy().into_owned());
        let (file, dir) = (from("SSL_CERT_FILE"), from("SSL_CERT_DIR"));
        for problem in &problems {
            tracing::warn!(%problem, ?file, ?dir, "reading the system's trust store");
        }
        if store.roots.is_empty() && (file.is_some() || dir.is_some()) {
            // The operator named the store: a missing or empty one trusts nothing from the
            // system, never more than was named (FE39).
            tracing::error!(
                ?file,
                ?dir,
                "SSL_CERT_FILE/SSL_CERT_DIR name no usable certificate: trusting only the configured CAs"
            );
            return SystemRoots { anchors: Vec::new(), mozilla_fallback: false, problems };
        }
        if store.roots.is_empty() {
            tracing::warn!(
                ?file,
                ?dir,
                "the system's trust store holds no certificate (install ca-certificates, or point SSL_CERT_FILE \
                 at a bundle); trusting the Mozilla roots compiled into wharf instead, and the configured CAs"
            );
            return SystemRoots { anchors: webpki_roots::TLS_SERVER_ROOTS.to_vec(), mozilla_fallback: true, problems };
        }
        tracing::info!(roots = store.roots.len(), ?file, ?dir, "trusting the system's trust store");
        SystemRoots { anchors: store.roots, mozilla_fallback: false, problems }
    })
}

/// The system's roots alone ([`system`]), as a store to add a connection's CAs to.
pub fn system_store() -> RootCertStore {
    RootCertStore { roots: system().anchors.clone() }
}

/// The roots one kind of TLS connection verifies servers against: the system's ([`system`])
/// and `configured`, the CAs the operator (or the API, for a drain's own CA) gave for it.
///
/// # Errors
///
/// When a configured certificate cannot be a root (not X.509, or not a CA certificate webpki
/// can use), with rustls' reason.
pub fn roots<'a, 'b: 'a>(
    configured: impl IntoIterator<Item = &'a CertificateDer<'b>>,
) -> Result<RootCertStore, rustls::Error> {
    let mut store = system_store();
    for der in configured {
        store.add(der.clone())?;
    }
    Ok(store)
}

/// Why a TLS handshake with `server` failed, from the handshake's I/O error: one text for every
/// outbound TLS connection (the feed's control API, PostgreSQL, drains, webhooks, build sources,
/// maintenance pages), `TLS with {server}: {error}`, and a hint for the two mistakes an operator
/// can fix here. A certificate signed by no trusted CA says where trust comes from (the
/// system's store, and `configured`: the setting, or the API field, that adds a CA for this kind
/// of connection); a CA certificate served as the server's own (`openssl req -x509`'s default)
/// says to sign a server certificate with a CA instead. `server` names it as the operator knows
/// it: "the control api", "the database at db.example.com", "the drain at logs.example.com:6514".
pub fn handshake_error(e: &std::io::Error, server: &str, configured: &str) -> String {
    use rustls::{CertificateError, Error};
    match e.get_ref().and_then(|inner| inner.downcast_ref::<Error>()) {
        Some(Error::InvalidCertificate(CertificateError::UnknownIssuer)) => format!(
            "TLS with {server}: {e}: its certificate is signed by no CA trusted here (the system's trust store: \
             SSL_CERT_FILE, SSL_CERT_DIR or the distribution's bundle; and {configured})"
        ),
        Some(Error::InvalidCertificate(CertificateError::Other(other)))
            if format!("{other:?}").contains("CaUsedAsEndEntity") =>
        {
            format!(
                "TLS with {server}: {e}: it serves a CA certificate (basicConstraints CA:TRUE, as `openssl req -x509` \
                 makes by default) as its own; serve a certificate signed by a CA and trust that CA ({configured})"
            )
        }
        _ => format!("TLS with {server}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    /// The configured CAs come on top of the system's roots, and one that cannot be a root is
    /// refused with a reason.
    #[test]
    fn configured_cas_are_added_to_the_system_roots() {
        let system = super::system().anchors.len();
        assert!(system > 0, "the system's store or the Mozilla roots");
        let ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let ca = ca.self_signed(&key).unwrap();
        let der = ca.der().clone();
        assert_eq!(super::roots([&der]).unwrap().roots.len(), system + 1);
        assert_eq!(super::system_store().roots.len(), system);
        let garbage = rustls::pki_types::CertificateDer::from(vec![1, 2, 3]);
        assert!(super::roots([&garbage]).is_err(), "not a certificate");
    }
}
