//! A certificate authority for tests: certificates for any names, valid or expired, with their
//! keys in PEM, as an operator would upload them.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// A CA that issues certificates.
pub struct TestCa {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

/// A certificate with its chain (leaf, then the CA) and key, in PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    /// Leaf, then the CA.
    pub chain_pem: String,
    /// The leaf's private key.
    pub key_pem: String,
    /// The leaf in DER, to compare with what a server presents.
    pub leaf_der: Vec<u8>,
}

impl TestCa {
    /// A new CA with this common name.
    pub fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().expect("key");
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        let pem = p.self_signed(&key).expect("self-signed CA").pem();
        TestCa { pem, issuer: Issuer::new(p, key) }
    }

    /// The CA certificate, to trust.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A certificate for `names`, valid from `from_days` to `to_days` days from now.
    pub fn issue(&self, names: &[&str], from_days: i64, to_days: i64) -> Issued {
        let key = KeyPair::generate().expect("key");
        let mut p = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).expect("params");
        p.distinguished_name.push(DnType::CommonName, names[0]);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64;
        let at = |days: i64| time::OffsetDateTime::from_unix_timestamp(now + days * 86_400).expect("time");
        (p.not_before, p.not_after) = (at(from_days), at(to_days));
        let leaf = p.signed_by(&key, &self.issuer).expect("signed");
        let leaf_der = CertificateDer::from_pem_slice(leaf.pem().as_bytes()).expect("der").to_vec();
        Issued { chain_pem: format!("{}{}", leaf.pem(), self.pem), key_pem: key.serialize_pem(), leaf_der }
    }

    /// A TLS server configuration presenting a certificate for `names` issued by this CA, for
    /// receivers that Wharf connects to.
    pub fn server_config(&self, names: &[&str], alpn: &[&[u8]]) -> std::sync::Arc<rustls::ServerConfig> {
        use rustls::pki_types::PrivateKeyDer;
        let issued = self.issue(names, -1, 30);
        let chain = CertificateDer::pem_slice_iter(issued.chain_pem.as_bytes()).collect::<Result<Vec<_>, _>>();
        let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).expect("key");
        let mut config =
            rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_no_client_auth()
                .with_single_cert(chain.expect("chain"), key)
                .expect("certificate");
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        std::sync::Arc::new(config)
    }
}
