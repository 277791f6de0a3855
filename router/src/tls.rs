//! TLS: certificates chosen by SNI (exact name, then wildcard, then the default), the server
//! configuration (TLS 1.2 and 1.3, ALPN h2 and http/1.1), and the local CA that `wharf serve`
//! generates so that it works with no certificate at hand.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use wharf_domain::{CertSpec, Certificate};

/// Why a certificate could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The PEM has no certificate, no key, or unparsable blocks.
    #[error("invalid PEM: {0}")]
    Pem(String),
    /// The key does not belong to the certificate, or is of an unsupported kind.
    #[error("certificate and key do not match: {0}")]
    Key(rustls::Error),
    /// Generating the local certificate failed.
    #[error("cannot generate certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// The TLS configuration was refused.
    #[error("tls configuration: {0}")]
    Config(rustls::Error),
}

/// The crypto provider used everywhere in Wharf's TLS.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Parses a PEM certificate chain and private key, and checks that they belong together.
pub fn certified_key(chain_pem: &[u8], key_pem: &[u8]) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem(format!("certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(TlsError::Pem("no certificate found".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::Pem(format!("private key: {e}")))?;
    CertifiedKey::from_der(chain, key, &provider()).map(Arc::new).map_err(TlsError::Key)
}

/// A certificate for a name, with when it expires: of two for the same name, the one that
/// expires later is served, so that a renewal takes over as soon as it is uploaded.
#[derive(Debug, Clone)]
struct Entry {
    not_after: i64,
    key: Arc<CertifiedKey>,
}

/// Certificates by name.
#[derive(Debug, Default, Clone)]
pub struct CertSet {
    exact: HashMap<String, Entry>,
    /// Keyed by the parent domain: `*.example.com` is under `example.com`.
    wildcard: HashMap<String, Entry>,
    default: Option<Arc<CertifiedKey>>,
}

impl CertSet {
    /// A set serving `default` when nothing else matches.
    pub fn with_default(default: Arc<CertifiedKey>) -> Self {
        CertSet { default: Some(default), ..CertSet::default() }
    }

    /// Adds a certificate for a name, `example.com` or `*.example.com`, unless the name already
    /// has one that expires later.
    pub fn insert(&mut self, name: &str, key: Arc<CertifiedKey>, not_after: i64) {
        let name = name.to_ascii_lowercase();
        let (map, name) = match name.strip_prefix("*.") {
            Some(parent) => (&mut self.wildcard, parent.to_owned()),
            None => (&mut self.exact, name),
        };
        let entry = map.entry(name).or_insert_with(|| Entry { not_after, key: key.clone() });
        if entry.not_after < not_after {
            *entry = Entry { not_after, key };
        }
    }

    /// Adds a checked certificate for every name it has.
    pub fn add(&mut self, cert: &Certificate) -> Result<(), TlsError> {
        let key = certified_key(cert.chain_pem().as_bytes(), cert.key_pem().as_bytes())?;
        for name in cert.names() {
            self.insert(name.as_str(), key.clone(), cert.not_after());
        }
        Ok(())
    }

    /// The certificate for a server name: exact, then wildcard one label up, then the default.
    pub fn choose(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let found = sni.and_then(|name| {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            self.exact
                .get(&name)
                .or_else(|| name.split_once('.').and_then(|(_, parent)| self.wildcard.get(parent)))
                .map(|e| e.key.clone())
        });
        found.or_else(|| self.default.clone())
    }
}

/// Says whether the router serves a host, so that certificates are issued only for real names.
pub type ServedFn = Box<dyn Fn(&str) -> bool + Send + Sync>;

/// Chooses certificates by SNI from a set that can be replaced at any time. With a local CA,
/// a served name that no certificate covers gets one issued on its first handshake: clients
/// such as curl refuse a wildcard directly under a one-label domain like `*.localhost`.
pub struct SniResolver {
    /// The default and the certificates from files; uploaded ones are added to a copy.
    base: CertSet,
    certs: ArcSwap<CertSet>,
    local: Option<LocalCa>,
    served: std::sync::OnceLock<ServedFn>,
}

impl std::fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SniResolver").field("local_ca", &self.local.is_some()).finish_non_exhaustive()
    }
}

impl SniResolver {
    /// A resolver serving this set.
    pub fn new(certs: CertSet) -> Self {
        SniResolver {
            certs: ArcSwap::from_pointee(certs.clone()),
            base: certs,
            local: None,
            served: std::sync::OnceLock::new(),
        }
    }

    /// A resolver that also issues certificates for served names from a local CA.
    pub fn with_local_ca(certs: CertSet, ca: LocalCa) -> Self {
        SniResolver { local: Some(ca), ..SniResolver::new(certs) }
    }

    /// Tells the resolver which names are served; set once by the router.
    pub fn set_served(&self, served: ServedFn) {
        let _ = self.served.set(served);
    }

    /// Serves these uploaded certificates beside the default and the files' ones; handshakes in
    /// progress finish with the old set. A certificate that no longer loads (it was checked
    /// when uploaded) is skipped and logged; the others are still served.
    pub fn serve_uploaded(&self, uploaded: &[CertSpec]) {
        let mut set = self.base.clone();
        for c in uploaded {
            if let Err(e) = set.add(&c.certificate) {
                tracing::warn!(id = %c.id, subject = c.certificate.subject(), error = %e, "cannot serve an uploaded certificate");
            }
        }
        self.certs.store(Arc::new(set));
    }

    fn resolve_name(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let certs = self.certs.load();
        if let (Some(ca), Some(name)) = (&self.local, sni) {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            let covered = certs.exact.contains_key(&name)
                || name.split_once('.').is_some_and(|(_, parent)| certs.wildcard.contains_key(parent));
            if !covered
                && self.served.get().is_some_and(|served| served(&name))
                && let Some(key) = ca.issue(&name)
            {
                return Some(key);
            }
        }
        certs.choose(sni)
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.resolve_name(hello.server_name())
    }
}

/// Most certificates a local CA keeps issued at once.
const LOCAL_CA_CACHE: usize = 10_000;

/// The local CA of `wharf serve`, issuing a certificate per served name on demand.
pub struct LocalCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    ca_der: CertificateDer<'static>,
    issued: std::sync::Mutex<HashMap<String, Arc<CertifiedKey>>>,
}

impl std::fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCa").finish_non_exhaustive()
    }
}

impl LocalCa {
    /// Loads the CA that [`ensure_local_cert`] keeps in `dir`. Errors when `ca.pem` or
    /// `ca.key` cannot be read or parsed, or the key is not the certificate's.
    pub fn load(dir: &Path) -> Result<LocalCa, TlsError> {
        let read = |p: PathBuf| std::fs::read_to_string(&p).map_err(|source| TlsError::Io { path: p, source });
        let (ca_pem, key_pem) = (read(dir.join("ca.pem"))?, read(dir.join("ca.key"))?);
        let ca_der =
            CertificateDer::from_pem_slice(ca_pem.as_bytes()).map_err(|e| TlsError::Pem(format!("local CA: {e}")))?;
        let issuer = stored_issuer(&ca_pem, &key_pem)?;
        Ok(LocalCa { issuer, ca_der, issued: Default::default() })
    }

    /// The certificate for `name`, issued now if not before. `None` if issuing fails.
    pub fn issue(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        if let Some(k) = self.issued.lock().expect("issued lock").get(name) {
            return Some(k.clone());
        }
        let made = (|| -> Result<Arc<CertifiedKey>, TlsError> {
            let key = rcgen::KeyPair::generate()?;
            let mut params = rcgen::CertificateParams::new(vec![name.to_owned()])?;
            params.distinguished_name.push(rcgen::DnType::CommonName, name);
            let cert = params.signed_by(&key, &self.issuer)?;
            let der = PrivateKeyDer::try_from(key.serialize_der()).map_err(|e| TlsError::Pem(e.to_string()))?;
            let chain = vec![cert.der().clone(), self.ca_der.clone()];
            CertifiedKey::from_der(chain, der, &provider()).map(Arc::new).map_err(TlsError::Key)
        })();
        match made {
            Ok(k) => {
                let mut issued = self.issued.lock().expect("issued lock");
                if issued.len() >= LOCAL_CA_CACHE {
                    issued.clear();
                }
                issued.insert(name.to_owned(), k.clone());
                Some(k)
            }
            Err(e) => {
                tracing::warn!(name, error = %e, "cannot issue a local certificate");
                None
            }
        }
    }
}

/// The common name every local CA had before names were made unique. Two routers' CAs of
/// that name cannot both be trusted by one client: OpenSSL (curl, Python) looks an issuer up by
/// its name, finds one of the two, and fails the other router's handshake.
const SHARED_LOCAL_CA_NAME: &str = "Wharf local CA";

/// A new local CA's parameters. Its common name carries the first 8 bytes (hex) of its key's
/// identifier (SHA-256 of the public key, RFC 7093 section 2 method 1), so that each router's
/// CA has a name of its own and a client can trust several routers' CAs at once
/// (`Wharf local CA 1a2b3c4d5e6f7a8b`). The name is derived from the key rather than random so
/// that it can be told again from the key alone.
fn local_ca_params(key: &rcgen::KeyPair) -> Result<rcgen::CertificateParams, rcgen::Error> {
    use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyUsagePurpose};
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let id: String = params.key_identifier(key).iter().take(8).map(|b| format!("{b:02x}")).collect();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("{SHARED_LOCAL_CA_NAME} {id}"));
    params.distinguished_name = dn;
    Ok(params)
}

/// The issuer of a stored local CA: its name, key identifier and key usages are read from the
/// stored certificate itself, not rebuilt, so that certificates it issues name exactly the
/// stored CA as their issuer whatever name that CA was made with (CAs made before names were
/// unique keep working: clients that trust them need nothing new). Errors when the PEM does
/// not parse or the key is not the certificate's.
fn stored_issuer(ca_pem: &str, key_pem: &str) -> Result<rcgen::Issuer<'static, rcgen::KeyPair>, TlsError> {
    // rustls checks that the key belongs to the certificate: a CA whose files were mixed up
    // would otherwise issue certificates no client could verify.
    certified_key(ca_pem.as_bytes(), key_pem.as_bytes())?;
    let key = rcgen::KeyPair::from_pem(key_pem)?;
    let ca_der =
        CertificateDer::from_pem_slice(ca_pem.as_bytes()).map_err(|e| TlsError::Pem(format!("local CA: {e}")))?;
    Ok(rcgen::Issuer::from_ca_cert_der(&ca_der, key)?)
}

/// Whether the stored CA certificate lacks the unique name [`local_ca_params`] gives a CA of
/// this key, that is, it was made with the name every earlier local CA shared. (A DER
/// certificate holds its common name as the plain bytes of the string.)
fn is_shared_name(ca_der: &CertificateDer<'_>, key: &rcgen::KeyPair) -> Result<bool, rcgen::Error> {
    use rcgen::{DnType, DnValue};
    let unique = match local_ca_params(key)?.distinguished_name.get(&DnType::CommonName) {
        Some(DnValue::Utf8String(name)) => name.clone(),
        _ => return Ok(false),
    };
    Ok(!ca_der.windows(unique.len()).any(|w| w == unique.as_bytes()))
}

/// The server configuration: TLS 1.3 and 1.2 only, ALPN h2 then http/1.1, stateless
/// resumption tickets, `tls13_tickets` of them after each TLS 1.3 handshake.
///
/// rustls sends a handshake's tickets together in one record, and OpenSSL's client (curl's,
/// Python's, wrk's) spends about 94,000 more instructions, 4% of the connection, on a record of
/// two tickets than on one ticket (`benches/RESULTS.md`, run 8), which is why one is the
/// default: a client that resumes gets a fresh ticket with every connection anyway.
pub fn server_config(resolver: Arc<SniResolver>, tls13_tickets: usize) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(TlsError::Config)?;
    config.send_tls13_tickets = tls13_tickets;
    Ok(Arc::new(config))
}

/// Where the local CA and the default certificate live in the data directory.
#[derive(Debug, Clone)]
pub struct LocalCertPaths {
    /// The CA certificate to trust (`curl --cacert`).
    pub ca: PathBuf,
    /// The default certificate chain (leaf, then CA).
    pub cert: PathBuf,
    /// The default certificate's key.
    pub key: PathBuf,
}

/// Makes sure `dir` holds a local CA and a certificate it signed for `*.<domain>` and
/// `<domain>`; creates whatever is missing. The CA survives, so a client that trusts it once
/// keeps trusting new certificates for other domains.
pub fn ensure_local_cert(dir: &Path, domain: &str) -> Result<LocalCertPaths, TlsError> {
    use rcgen::{CertificateParams, DistinguishedName, DnType, Issuer, KeyPair};

    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| TlsError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let domain = domain.to_ascii_lowercase();
    let paths = LocalCertPaths {
        ca: dir.join("ca.pem"),
        cert: dir.join(format!("{domain}.pem")),
        key: dir.join(format!("{domain}.key")),
    };
    let ca_key_path = dir.join("ca.key");
    let (ca_pem, issuer) = if paths.ca.exists() && ca_key_path.exists() {
        let pem = std::fs::read_to_string(&paths.ca).map_err(io(&paths.ca))?;
        let key = std::fs::read_to_string(&ca_key_path).map_err(io(&ca_key_path))?;
        let issuer = stored_issuer(&pem, &key)?;
        let der =
            CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| TlsError::Pem(format!("local CA: {e}")))?;
        if is_shared_name(&der, issuer.key())? {
            // Kept, not replaced: clients that trust it would stop trusting this router.
            tracing::warn!(
                ca = %paths.ca.display(),
                name = SHARED_LOCAL_CA_NAME,
                "this local CA has the name every earlier Wharf's local CA has, so a client cannot trust it beside another router's CA; to give it a name of its own, move the tls directory away and start again (clients must then trust the new ca.pem)"
            );
        }
        (pem, issuer)
    } else {
        let key = KeyPair::generate()?;
        let params = local_ca_params(&key)?;
        let cert = params.self_signed(&key)?;
        write_private(&ca_key_path, key.serialize_pem().as_bytes()).map_err(io(&ca_key_path))?;
        std::fs::write(&paths.ca, cert.pem()).map_err(io(&paths.ca))?;
        // A new CA invalidates certificates signed by an old one.
        let _ = std::fs::remove_file(&paths.cert);
        (cert.pem(), Issuer::new(params, key))
    };
    if paths.cert.exists() && paths.key.exists() {
        return Ok(paths);
    }
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec![format!("*.{domain}"), domain.clone()])?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("*.{domain}"));
    params.distinguished_name = dn;
    let cert = params.signed_by(&key, &issuer)?;
    write_private(&paths.key, key.serialize_pem().as_bytes()).map_err(io(&paths.key))?;
    std::fs::write(&paths.cert, format!("{}{ca_pem}", cert.pem())).map_err(io(&paths.cert))?;
    Ok(paths)
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("wharf-tls-{}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn local_cert_is_made_once_and_loads() {
        let dir = temp_dir();
        let p = ensure_local_cert(&dir, "localhost").unwrap();
        let first = std::fs::read(&p.cert).unwrap();
        let again = ensure_local_cert(&dir, "localhost").unwrap();
        assert_eq!(std::fs::read(&again.cert).unwrap(), first, "an existing certificate is kept");
        let key = certified_key(&first, &std::fs::read(&p.key).unwrap()).unwrap();
        assert_eq!(key.cert.len(), 2, "leaf and CA");
        let other = ensure_local_cert(&dir, "apps.test").unwrap();
        assert_eq!(std::fs::read(&other.ca).unwrap(), std::fs::read(&p.ca).unwrap(), "one CA for every domain");
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Verifies `chain` for `name` as a client trusting only the CAs in `ca_pem` does.
    fn verify(ca_pem: &[u8], chain: &CertifiedKey, name: &str) -> Result<(), rustls::Error> {
        use rustls::client::danger::ServerCertVerifier as _;
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(ca_pem) {
            roots.add(ca.unwrap()).unwrap();
        }
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider()).build().unwrap();
        let name = rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap();
        let now = rustls::pki_types::UnixTime::now();
        verifier.verify_server_cert(&chain.cert[0], &chain.cert[1..], &name, &[], now).map(|_| ())
    }

    #[test]
    fn each_new_local_ca_has_a_name_of_its_own_told_from_its_key() {
        let (dir_a, dir_b) = (temp_dir(), temp_dir());
        let mut names = Vec::new();
        for dir in [&dir_a, &dir_b] {
            let p = ensure_local_cert(dir, "localhost").unwrap();
            let key = rcgen::KeyPair::from_pem(&std::fs::read_to_string(dir.join("ca.key")).unwrap()).unwrap();
            let name = match local_ca_params(&key).unwrap().distinguished_name.get(&rcgen::DnType::CommonName) {
                Some(rcgen::DnValue::Utf8String(n)) => n.clone(),
                other => panic!("{other:?}"),
            };
            let id = name.strip_prefix("Wharf local CA ").unwrap_or_else(|| panic!("{name}"));
            assert!(id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{name}");
            let der = CertificateDer::from_pem_slice(&std::fs::read(&p.ca).unwrap()).unwrap();
            assert!(!is_shared_name(&der, &key).unwrap(), "the stored CA carries its key's name");
            names.push(name);
        }
        assert_ne!(names[0], names[1]);
        std::fs::remove_dir_all(dir_a).unwrap();
        std::fs::remove_dir_all(dir_b).unwrap();
    }

    /// A CA stored by an earlier version (named `Wharf local CA`, the same for every router)
    /// is kept, and the certificates made from it, the default one and those issued per name,
    /// chain to it: clients that trust it need nothing new.
    #[test]
    fn a_stored_ca_of_the_old_shared_name_keeps_issuing_certificates_that_chain_to_it() {
        let dir = temp_dir();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = local_ca_params(&key).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::CommonName, SHARED_LOCAL_CA_NAME);
        let old = params.self_signed(&key).unwrap();
        std::fs::write(dir.join("ca.pem"), old.pem()).unwrap();
        write_private(&dir.join("ca.key"), key.serialize_pem().as_bytes()).unwrap();
        assert!(is_shared_name(old.der(), &key).unwrap());

        let p = ensure_local_cert(&dir, "localhost").unwrap();
        assert_eq!(std::fs::read_to_string(&p.ca).unwrap(), old.pem(), "the stored CA is kept");
        let ca = std::fs::read(&p.ca).unwrap();
        let default = certified_key(&std::fs::read(&p.cert).unwrap(), &std::fs::read(&p.key).unwrap()).unwrap();
        verify(&ca, &default, "localhost").unwrap();
        let issued = LocalCa::load(&dir).unwrap().issue("api-default.localhost").unwrap();
        verify(&ca, &issued, "api-default.localhost").unwrap();
        // The verification can fail: another CA's certificate does not chain to this one.
        let other = temp_dir();
        let q = ensure_local_cert(&other, "localhost").unwrap();
        let foreign = certified_key(&std::fs::read(&q.cert).unwrap(), &std::fs::read(&q.key).unwrap()).unwrap();
        assert!(verify(&ca, &foreign, "localhost").is_err());
        // A CA whose key is another's is refused with a clear error rather than issuing
        // certificates nobody can verify.
        std::fs::copy(other.join("ca.key"), dir.join("ca.key")).unwrap();
        assert!(matches!(LocalCa::load(&dir).unwrap_err(), TlsError::Key(_)));
        std::fs::remove_dir_all(dir).unwrap();
        std::fs::remove_dir_all(other).unwrap();
    }

    #[test]
    fn mismatched_or_bad_pem_is_refused() {
        let dir = temp_dir();
        let a = ensure_local_cert(&dir, "a.test").unwrap();
        let b = ensure_local_cert(&dir, "b.test").unwrap();
        let cert = std::fs::read(&a.cert).unwrap();
        let err = certified_key(&cert, &std::fs::read(&b.key).unwrap()).unwrap_err();
        assert!(matches!(err, TlsError::Key(_)), "{err}");
        assert!(matches!(certified_key(b"", b"").unwrap_err(), TlsError::Pem(_)));
        assert!(matches!(certified_key(&cert, b"junk").unwrap_err(), TlsError::Pem(_)));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn local_ca_issues_served_names_only() {
        let dir = temp_dir();
        let p = ensure_local_cert(&dir, "localhost").unwrap();
        let default = certified_key(&std::fs::read(&p.cert).unwrap(), &std::fs::read(&p.key).unwrap()).unwrap();
        let r = SniResolver::with_local_ca(CertSet::with_default(default.clone()), LocalCa::load(&dir).unwrap());
        r.set_served(Box::new(|name| name == "api-default.localhost"));
        let issued = r.resolve_name(Some("API-default.localhost")).unwrap();
        assert!(!Arc::ptr_eq(&issued, &default));
        assert!(Arc::ptr_eq(&issued, &r.resolve_name(Some("api-default.localhost")).unwrap()), "issued once");
        assert!(Arc::ptr_eq(&r.resolve_name(Some("nope-default.localhost")).unwrap(), &default));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn sni_picks_exact_then_wildcard_then_default() {
        let dir = temp_dir();
        let load = |d: &str| {
            let p = ensure_local_cert(&dir, d).unwrap();
            certified_key(&std::fs::read(p.cert).unwrap(), &std::fs::read(p.key).unwrap()).unwrap()
        };
        let (exact, wild, default) = (load("one.test"), load("two.test"), load("three.test"));
        let mut set = CertSet::with_default(default.clone());
        set.insert("www.example.com", exact.clone(), 100);
        set.insert("*.Example.com", wild.clone(), 100);
        // An older certificate for a name does not replace a newer one, and a newer one does.
        set.insert("www.example.com", default.clone(), 50);
        set.insert("*.example.com", default.clone(), 50);
        let renewed = load("four.test");
        set.insert("renewed.example.com", default.clone(), 50);
        set.insert("renewed.example.com", renewed.clone(), 150);
        let pick = |name: Option<&str>| set.choose(name).unwrap();
        assert!(Arc::ptr_eq(&pick(Some("WWW.example.com.")), &exact));
        assert!(Arc::ptr_eq(&pick(Some("api.example.com")), &wild));
        assert!(Arc::ptr_eq(&pick(Some("renewed.example.com")), &renewed));
        assert!(Arc::ptr_eq(&pick(Some("a.b.example.com")), &default), "wildcards cover one label");
        assert!(Arc::ptr_eq(&pick(Some("example.com")), &default));
        assert!(Arc::ptr_eq(&pick(None), &default));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
