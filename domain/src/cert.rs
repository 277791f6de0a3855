//! TLS certificates as the platform stores them: a PEM chain and its private key, parsed and
//! checked once, when they are uploaded or loaded from files.
//!
//! A [`Certificate`] exists only for a chain that parses, is in order (each certificate signed
//! by the next), has a leaf naming at least one domain, and whose key belongs to the leaf. Time
//! is checked separately ([`Certificate::check_time`]): a stored certificate that expires later
//! is still a certificate, and the router decides what to do with it.

use std::fmt;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::names::SiteDomain;
use crate::timestamp::format_seconds;

/// Why a CA file cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("ca {path}: {message}")]
pub struct CaError {
    /// The file.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

/// Reads the certificates of a PEM file of CAs (a drain's or the database's); a file without
/// any is an error.
pub fn read_ca(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, CaError> {
    let error = |message: String| CaError { path: path.display().to_string(), message };
    let pem = std::fs::read(path).map_err(|e| error(e.to_string()))?;
    let certs =
        CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>().map_err(|e| error(e.to_string()))?;
    if certs.is_empty() {
        return Err(error("holds no PEM certificate".into()));
    }
    Ok(certs)
}

/// Most certificates a chain may hold; real chains have two or three.
pub const MAX_CHAIN: usize = 8;

/// Why a certificate chain and key were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    /// The chain is not PEM, or holds no certificate.
    #[error("certificate chain: {0}")]
    Chain(String),
    /// A certificate in the chain is not X.509 DER.
    #[error("certificate {index} of the chain cannot be parsed: {reason}")]
    Unparsable {
        /// Its position, 1 for the leaf.
        index: usize,
        /// What the parser said.
        reason: String,
    },
    /// The chain is not leaf first, each certificate signed by the next.
    #[error(
        "certificate {index} of the chain ({subject}) is not signed by the certificate after it: the chain goes leaf first, then each issuer"
    )]
    Order {
        /// Its position, 1 for the leaf.
        index: usize,
        /// Its subject.
        subject: String,
    },
    /// The leaf names no DNS domain.
    #[error(
        "the certificate names no domain: it needs a DNS subject alternative name such as www.example.com or *.example.com"
    )]
    NoNames,
    /// The key is not PEM, or of a kind that cannot sign.
    #[error("private key: {0}")]
    Key(String),
    /// The key belongs to another certificate.
    #[error("the private key does not belong to the certificate ({subject})")]
    Mismatch {
        /// The leaf's subject.
        subject: String,
    },
    /// A certificate of the chain has expired.
    #[error("certificate {subject} expired at {at}")]
    Expired {
        /// Its subject.
        subject: String,
        /// When, RFC 3339.
        at: String,
    },
    /// A certificate of the chain is not valid yet.
    #[error("certificate {subject} is not valid before {at}")]
    NotYetValid {
        /// Its subject.
        subject: String,
        /// From when, RFC 3339.
        at: String,
    },
}

/// The private key's PEM; never shown by `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
struct KeyPem(String);

impl fmt::Debug for KeyPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyPem(<redacted>)")
    }
}

/// A parsed, consistent certificate chain and key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "CertificateWire", into = "CertificateWire")]
pub struct Certificate {
    chain_pem: String,
    key_pem: KeyPem,
    names: Vec<SiteDomain>,
    validity: Vec<Validity>,
    subject: String,
    issuer: String,
    fingerprint: String,
}

/// One certificate's validity window and subject, for time checks.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Validity {
    subject: String,
    not_before: i64,
    not_after: i64,
}

/// How a certificate is stored and published: its PEMs; everything else is derived again.
#[derive(Serialize, Deserialize)]
struct CertificateWire {
    chain_pem: String,
    key_pem: KeyPem,
}

impl TryFrom<CertificateWire> for Certificate {
    type Error = CertError;

    fn try_from(w: CertificateWire) -> Result<Self, CertError> {
        Certificate::parse(&w.chain_pem, &w.key_pem.0)
    }
}

impl From<Certificate> for CertificateWire {
    fn from(c: Certificate) -> Self {
        CertificateWire { chain_pem: c.chain_pem, key_pem: c.key_pem }
    }
}

impl Certificate {
    /// Parses a chain (leaf first) and its key, and checks that every certificate of the chain
    /// is valid at `now` (seconds since the epoch). Errors as [`Certificate::parse`] and
    /// [`Certificate::check_time`] do.
    pub fn try_new(chain_pem: &str, key_pem: &str, now: i64) -> Result<Certificate, CertError> {
        let cert = Certificate::parse(chain_pem, key_pem)?;
        cert.check_time(now)?;
        Ok(cert)
    }

    /// Parses a PEM chain (leaf first, at most [`MAX_CHAIN`] certificates, each signed by the
    /// next) and its PEM private key, without looking at the clock. Errors with the
    /// [`CertError`] variant for the first problem: not PEM, not X.509 DER (RFC 5280), out of
    /// order, no DNS subject alternative name, an unusable key, or a key of another certificate.
    pub fn parse(chain_pem: &str, key_pem: &str) -> Result<Certificate, CertError> {
        let ders = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CertError::Chain(format!("not PEM: {e}")))?;
        if ders.is_empty() {
            return Err(CertError::Chain("no CERTIFICATE block found".into()));
        }
        if ders.len() > MAX_CHAIN {
            return Err(CertError::Chain(format!("{} certificates; at most {MAX_CHAIN}", ders.len())));
        }
        let parsed = ders
            .iter()
            .enumerate()
            .map(|(i, der)| match X509Certificate::from_der(der) {
                Ok(([], c)) => Ok(c),
                Ok(_) => Err(CertError::Unparsable { index: i + 1, reason: "trailing bytes".into() }),
                Err(e) => Err(CertError::Unparsable { index: i + 1, reason: e.to_string() }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        for (i, pair) in parsed.windows(2).enumerate() {
            let (cert, issuer) = (&pair[0], &pair[1]);
            let signed = cert.issuer().as_raw() == issuer.subject().as_raw()
                && cert.verify_signature(Some(issuer.public_key())).is_ok();
            if !signed {
                return Err(CertError::Order { index: i + 1, subject: cert.subject().to_string() });
            }
        }
        let leaf = &parsed[0];
        let mut names: Vec<SiteDomain> = match leaf.subject_alternative_name() {
            Ok(Some(san)) => san
                .value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => SiteDomain::try_new(d).ok(),
                    _ => None,
                })
                .collect(),
            Ok(None) => vec![],
            Err(e) => return Err(CertError::Unparsable { index: 1, reason: format!("subject alternative name: {e}") }),
        };
        names.sort();
        names.dedup();
        if names.is_empty() {
            return Err(CertError::NoNames);
        }
        let subject = leaf.subject().to_string();
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| CertError::Key(format!("not a PEM private key: {e}")))?;
        let signing = rustls::crypto::ring::sign::any_supported_type(&key)
            .map_err(|e| CertError::Key(format!("unsupported: {e}")))?;
        let spki = signing.public_key().ok_or_else(|| CertError::Key("no public key".into()))?;
        if spki.as_ref() != leaf.public_key().raw {
            return Err(CertError::Mismatch { subject });
        }
        let validity = parsed
            .iter()
            .map(|c| Validity {
                subject: c.subject().to_string(),
                not_before: c.validity().not_before.timestamp(),
                not_after: c.validity().not_after.timestamp(),
            })
            .collect();
        let fingerprint = ring::digest::digest(&ring::digest::SHA256, &ders[0])
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":");
        Ok(Certificate {
            chain_pem: chain_pem.to_owned(),
            key_pem: KeyPem(key_pem.to_owned()),
            names,
            validity,
            issuer: leaf.issuer().to_string(),
            subject,
            fingerprint,
        })
    }

    /// Checks that every certificate of the chain is valid at `now` (seconds since the epoch).
    /// Errors with [`CertError::Expired`] or [`CertError::NotYetValid`] for the first one that is
    /// not, naming its subject and the RFC 3339 time it stops or starts being valid.
    pub fn check_time(&self, now: i64) -> Result<(), CertError> {
        for v in &self.validity {
            if now > v.not_after {
                return Err(CertError::Expired { subject: v.subject.clone(), at: format_seconds(v.not_after) });
            }
            if now < v.not_before {
                return Err(CertError::NotYetValid { subject: v.subject.clone(), at: format_seconds(v.not_before) });
            }
        }
        Ok(())
    }

    /// The domains the leaf names, exact or wildcard, sorted.
    pub fn names(&self) -> &[SiteDomain] {
        &self.names
    }

    /// When the first certificate of the chain expires, seconds since the epoch.
    pub fn not_after(&self) -> i64 {
        self.validity.iter().map(|v| v.not_after).min().unwrap_or(i64::MIN)
    }

    /// When the last certificate of the chain became valid, seconds since the epoch.
    pub fn not_before(&self) -> i64 {
        self.validity.iter().map(|v| v.not_before).max().unwrap_or(i64::MAX)
    }

    /// The leaf's subject.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The leaf's issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// SHA-256 of the leaf's DER, as colon-separated hex.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The chain's PEM, leaf first.
    pub fn chain_pem(&self) -> &str {
        &self.chain_pem
    }

    /// The private key's PEM. Only TLS termination needs it; never show it.
    pub fn key_pem(&self) -> &str {
        &self.key_pem.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

    const DAY: i64 = 24 * 3600;
    const NOW: i64 = 1_800_000_000;

    fn ca(name: &str) -> (rcgen::Certificate, Issuer<'static, KeyPair>) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        let cert = p.self_signed(&key).unwrap();
        (cert, Issuer::new(p, key))
    }

    fn leaf(names: &[&str], issuer: &Issuer<'_, KeyPair>, days: (i64, i64)) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        p.distinguished_name.push(DnType::CommonName, names.first().copied().unwrap_or("none"));
        let at = |d: i64| time::OffsetDateTime::from_unix_timestamp(NOW + d * DAY).unwrap();
        (p.not_before, p.not_after) = (at(days.0), at(days.1));
        (p.signed_by(&key, issuer).unwrap().pem(), key.serialize_pem())
    }

    fn check(chain: &str, key: &str, want: Result<&[&str], &str>) {
        let got = Certificate::try_new(chain, key, NOW);
        match (got, want) {
            (Ok(c), Ok(names)) => assert_eq!(c.names().iter().map(|n| n.as_str()).collect::<Vec<_>>(), names),
            (Err(e), Err(msg)) => assert!(e.to_string().contains(msg), "{e} does not say {msg:?}"),
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn chains_and_keys_are_checked() {
        let (ca_cert, issuer) = ca("Test CA");
        let (_, other_issuer) = ca("Other CA");
        let (leaf_pem, key) = leaf(&["www.example.com", "*.Example.com", "10.0.0.1"], &issuer, (-1, 90));
        let chain = format!("{leaf_pem}{}", ca_cert.pem());
        check(&chain, &key, Ok(&["*.example.com", "www.example.com"]));
        check(&leaf_pem, &key, Ok(&["*.example.com", "www.example.com"]));

        let (_, other_key) = leaf(&["www.example.com"], &issuer, (-1, 90));
        check(&chain, &other_key, Err("does not belong to the certificate"));
        let (expired, expired_key) = leaf(&["old.example.com"], &issuer, (-90, -1));
        check(&expired, &expired_key, Err("expired at"));
        let (early, early_key) = leaf(&["new.example.com"], &issuer, (1, 90));
        check(&early, &early_key, Err("not valid before"));
        let (foreign, foreign_key) = leaf(&["x.example.com"], &other_issuer, (-1, 90));
        check(&format!("{foreign}{}", ca_cert.pem()), &foreign_key, Err("not signed by the certificate after it"));
        check(&format!("{}{leaf_pem}", ca_cert.pem()), &key, Err("not signed by the certificate after it"));
        let (nameless, nameless_key) = leaf(&["localhost"], &issuer, (-1, 90));
        check(&nameless, &nameless_key, Err("names no domain"));
        check("", &key, Err("no CERTIFICATE block"));
        check("hello", &key, Err("no CERTIFICATE block"));
        let garbage = "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n";
        check(garbage, &key, Err("certificate 1 of the chain cannot be parsed"));
        check(&chain, "", Err("private key"));
        check(&chain, &leaf_pem, Err("private key"));
    }

    #[test]
    fn the_key_is_never_shown_and_survives_a_round_trip() {
        let (_, issuer) = ca("Test CA");
        let (chain, key) = leaf(&["www.example.com"], &issuer, (-1, 90));
        let cert = Certificate::try_new(&chain, &key, NOW).unwrap();
        assert!(!format!("{cert:?}").contains("PRIVATE KEY"));
        let json = serde_json::to_string(&cert).unwrap();
        assert_eq!(serde_json::from_str::<Certificate>(&json).unwrap(), cert);
        let tampered = json.replace("BEGIN PRIVATE KEY", "BEGIN NOTHING");
        assert!(serde_json::from_str::<Certificate>(&tampered).is_err());
        assert_eq!(cert.not_after(), NOW + 90 * DAY);
        assert_eq!(cert.fingerprint().len(), 32 * 3 - 1);
    }
}
