//! Drain URLs: where an app's or a site's log lines go, parsed and checked once when added.
//!
//! Supported forms:
//!
//! - `syslog+udp://host:port` (one RFC 5424 message per datagram; `?max_size=N` caps it),
//! - `syslog+tcp://host:port` and `syslog://host:port` (octet counting; `?framing=lf` for newlines),
//! - `syslog+tls://host:port` (as TCP, over TLS),
//! - `https://[user:password@]host[:port]/path[?query]` (logplex-1 batches; the query is the
//!   receiver's and is passed through untouched).
//!
//! A password in the URL is a secret: `Display` and `Debug` show it as `****`; only
//! [`DrainUrl::expose`] returns it.
//!
//! A URL never names a file on the server: the `ca=` parameter is refused, and the CAs a TLS
//! or HTTPS drain trusts beyond the system's trust store come as PEM through the API ([`DrainCa`]).
//! Two URLs that name the same receiver compare equal under [`DrainUrl::normalized`] (scheme
//! and host case, default ports, IP literals in canonical form), which is what duplicates are
//! refused on. Where Wharf writes a host on the wire (the HTTP `Host` field), it writes it as
//! URLs write it ([`DrainUrl::url_host`], RFC 3986 §3.2.2: an IPv6 literal in brackets).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::names::Hostname;

/// How a drain delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DrainScheme {
    /// RFC 5424 over UDP, one message per datagram.
    SyslogUdp,
    /// RFC 5424 over TCP.
    SyslogTcp,
    /// RFC 5424 over TLS.
    SyslogTls,
    /// logplex-1 batches over HTTPS.
    Https,
}

impl DrainScheme {
    /// The scheme as written in URLs.
    pub fn as_str(self) -> &'static str {
        match self {
            DrainScheme::SyslogUdp => "syslog+udp",
            DrainScheme::SyslogTcp => "syslog+tcp",
            DrainScheme::SyslogTls => "syslog+tls",
            DrainScheme::Https => "https",
        }
    }
}

/// How syslog messages are delimited on a stream transport (RFC 6587 §3.4), chosen by a drain
/// URL's `framing` parameter (`octet-counting`, the default, or `lf`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SyslogFraming {
    /// RFC 6587 octet counting: `LEN SP MSG`. The default.
    #[default]
    OctetCounting,
    /// RFC 6587 §3.4.2 non-transparent framing with an LF trailer: `MSG LF`, for receivers that
    /// want newlines (`framing=lf`).
    NonTransparent,
}

/// Why a drain URL was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DrainUrlError {
    /// No `scheme://`.
    #[error("drain url must look like scheme://host:port, for example syslog+tcp://logs.example.com:514")]
    NotAUrl,
    /// A scheme Wharf does not deliver to.
    #[error("unsupported drain url scheme {0:?}: use syslog+udp, syslog+tcp, syslog, syslog+tls or https")]
    Scheme(String),
    /// The host part is missing or malformed.
    #[error("drain url has an invalid host {0:?}")]
    Host(String),
    /// The port is missing (syslog needs one) or not in 1..=65535.
    #[error("drain url needs a port between 1 and 65535 (got {0:?})")]
    Port(String),
    /// Syslog URLs carry no path, and no user or password.
    #[error("syslog drain urls have no {0}")]
    Extra(&'static str),
    /// A query parameter Wharf does not know, or a bad value for one it does.
    #[error("drain url has an invalid query parameter {0:?}: {1}")]
    Query(String, &'static str),
    /// Characters that cannot appear in a URL.
    #[error("drain url contains whitespace or control characters")]
    Characters,
    /// Longer than any sane URL.
    #[error("drain url is longer than 2048 bytes")]
    TooLong,
    /// The URL names a server file as the drain's CA (`ca=`), which Wharf never reads for a user.
    #[error(
        "drain url has a ca parameter: a drain's CA is not a file on the server; give its PEM in the request's \"ca\" field"
    )]
    CaPath,
}

/// A parsed drain URL.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct DrainUrl {
    raw: Box<str>,
    scheme: DrainScheme,
    host: Hostname,
    port: u16,
    /// For HTTPS: the path and query to request, at least `/`.
    path_and_query: Box<str>,
    user: Option<Box<str>>,
    password: Option<Box<str>>,
    framing: SyslogFraming,
    max_size: Option<usize>,
}

impl DrainUrl {
    /// Parses and checks a drain URL of one of the forms in the module docs: at most 2,048
    /// printable ASCII bytes, a known scheme, a valid host, a port (required for syslog, 443 by
    /// default for HTTPS); syslog URLs take no user, path or unknown query parameter, and none
    /// takes `ca` ([`DrainUrlError::CaPath`]). Errors with the [`DrainUrlError`] variant for
    /// the first problem found.
    pub fn try_new(s: &str) -> Result<Self, DrainUrlError> {
        if s.len() > 2048 {
            return Err(DrainUrlError::TooLong);
        }
        if s.bytes().any(|b| b <= b' ' || b == 0x7f) || !s.is_ascii() {
            return Err(DrainUrlError::Characters);
        }
        let (scheme, rest) = s.split_once("://").ok_or(DrainUrlError::NotAUrl)?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "syslog+udp" => DrainScheme::SyslogUdp,
            "syslog+tcp" | "syslog" => DrainScheme::SyslogTcp,
            "syslog+tls" => DrainScheme::SyslogTls,
            "https" => DrainScheme::Https,
            other => return Err(DrainUrlError::Scheme(other.to_owned())),
        };
        let (authority, path_and_query) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (host, port) = split_host_port(hostport)?;
        let host = Hostname::try_new(host).map_err(|_| DrainUrlError::Host(host.to_owned()))?;
        let port = match (port, scheme) {
            (Some(p), _) => p,
            (None, DrainScheme::Https) => 443,
            (None, _) => return Err(DrainUrlError::Port(String::new())),
        };
        let mut url = DrainUrl {
            raw: s.into(),
            scheme,
            host,
            port,
            path_and_query: "/".into(),
            user: None,
            password: None,
            framing: SyslogFraming::OctetCounting,
            max_size: None,
        };
        if scheme == DrainScheme::Https {
            if let Some(info) = userinfo {
                let (user, password) = match info.split_once(':') {
                    Some((u, p)) => (u, Some(p)),
                    None => (info, None),
                };
                url.user = Some(percent_decode(user)?.into());
                url.password = password.map(percent_decode).transpose()?.map(Into::into);
            }
            url.path_and_query = match path_and_query {
                "" => "/".into(),
                p if p.starts_with('?') => format!("/{p}").into(),
                p => p.into(),
            };
            return Ok(url);
        }
        if userinfo.is_some() {
            return Err(DrainUrlError::Extra("user or password"));
        }
        let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
        if !(path.is_empty() || path == "/") {
            return Err(DrainUrlError::Extra("path"));
        }
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match (key, scheme) {
                ("framing", DrainScheme::SyslogTcp | DrainScheme::SyslogTls) => {
                    url.framing = match value {
                        "lf" => SyslogFraming::NonTransparent,
                        "octet-counting" => SyslogFraming::OctetCounting,
                        _ => {
                            return Err(DrainUrlError::Query(pair.into(), "framing is lf or octet-counting"));
                        }
                    }
                }
                ("ca", _) => return Err(DrainUrlError::CaPath),
                ("max_size", DrainScheme::SyslogUdp) => {
                    url.max_size = match value.parse::<usize>() {
                        Ok(n) if (480..=65_000).contains(&n) => Some(n),
                        _ => {
                            return Err(DrainUrlError::Query(pair.into(), "max_size is between 480 and 65000 bytes"));
                        }
                    }
                }
                _ => {
                    return Err(DrainUrlError::Query(pair.into(), "not a parameter of this kind of drain"));
                }
            }
        }
        Ok(url)
    }

    /// The delivery kind.
    pub fn scheme(&self) -> DrainScheme {
        self.scheme
    }

    /// The receiver's host.
    pub fn host(&self) -> &Hostname {
        &self.host
    }

    /// The receiver's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// For HTTPS drains, the path and query to POST to.
    pub fn path_and_query(&self) -> &str {
        &self.path_and_query
    }

    /// For HTTPS drains, the basic-auth user and password from the URL.
    pub fn basic_auth(&self) -> Option<(&str, Option<&str>)> {
        self.user.as_deref().map(|u| (u, self.password.as_deref()))
    }

    /// The stream framing (TCP and TLS drains).
    pub fn framing(&self) -> SyslogFraming {
        self.framing
    }

    /// The host as a URL writes it, for the wire (HTTP `Host`): an IPv6 literal in brackets
    /// (RFC 3986 §3.2.2), anything else as it is.
    pub fn url_host(&self) -> std::borrow::Cow<'_, str> {
        match self.host.ip() {
            Some(IpAddr::V6(ip)) => format!("[{ip}]").into(),
            _ => self.host.as_str().into(),
        }
    }

    /// The host and port as a URL authority writes them: `host:port`, `[::1]:port`, or the
    /// host alone for HTTPS on 443 (RFC 9110 §7.2's `Host` field value).
    pub fn authority(&self) -> String {
        match (self.scheme, self.port) {
            (DrainScheme::Https, 443) => self.url_host().into_owned(),
            (_, port) => format!("{}:{port}", self.url_host()),
        }
    }

    /// The URL in a normal form that two URLs for the same receiver share: the scheme as
    /// [`DrainScheme::as_str`] writes it (`syslog` is `syslog+tcp`), the host lowercased and an
    /// IP literal in its canonical text (RFC 5952 for IPv6), the port always written, syslog
    /// parameters in one order with defaults left out; an HTTPS URL's user, password, path and
    /// query are the receiver's and kept as given. Duplicate drains are refused on this form.
    pub fn normalized(&self) -> String {
        let host = match self.host.ip() {
            Some(ip) => ip.to_string(),
            None => self.host.as_str().to_ascii_lowercase(),
        };
        let host = if host.contains(':') { format!("[{host}]") } else { host };
        let mut out = format!("{}://", self.scheme.as_str());
        if let Some(user) = &self.user {
            out.push_str(user);
            if let Some(password) = &self.password {
                out.push(':');
                out.push_str(password);
            }
            out.push('@');
        }
        out.push_str(&format!("{host}:{}", self.port));
        if self.scheme == DrainScheme::Https {
            out.push_str(&self.path_and_query);
        } else if self.framing == SyslogFraming::NonTransparent {
            out.push_str("?framing=lf");
        } else if let Some(max) = self.max_size {
            out.push_str(&format!("?max_size={max}"));
        }
        out
    }

    /// Checks the host against the outbound policy when it is an IP literal, which can be
    /// known at once; a name is checked on its resolved addresses at connect time.
    pub fn check_outbound(&self, policy: &crate::outbound::Policy) -> Result<(), crate::outbound::Refused> {
        policy.check_host(self.host.as_str())
    }

    /// The largest datagram to send (UDP drains), when set on the URL.
    pub fn max_size(&self) -> Option<usize> {
        self.max_size
    }

    /// The URL as given, secrets included: for storage and delivery only, never for output.
    pub fn expose(&self) -> &str {
        &self.raw
    }

    /// The URL with any password replaced by `****`.
    pub fn redacted(&self) -> String {
        match (&self.password, self.raw.split_once("://")) {
            (Some(_), Some((scheme, rest))) => {
                let at = rest.find(['/', '?']).map_or(rest, |i| &rest[..i]).rfind('@').unwrap_or(0);
                let info = &rest[..at];
                let user = info.split_once(':').map_or(info, |(u, _)| u);
                format!("{scheme}://{user}:****{}", &rest[at..])
            }
            _ => self.raw.to_string(),
        }
    }
}

fn split_host_port(hostport: &str) -> Result<(&str, Option<u16>), DrainUrlError> {
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(|| DrainUrlError::Host(hostport.to_owned()))?;
        match after {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':').ok_or_else(|| DrainUrlError::Host(hostport.to_owned()))?)),
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Some(n),
            _ => return Err(DrainUrlError::Port(p.to_owned())),
        },
    };
    if host.is_empty() {
        return Err(DrainUrlError::Host(String::new()));
    }
    Ok((host, port))
}

fn percent_decode(s: &str) -> Result<String, DrainUrlError> {
    url_decode(s).ok_or_else(|| DrainUrlError::Query(s.to_owned(), "bad percent-encoding"))
}

/// Decodes a URL component's percent-encoding (RFC 3986 section 2.1: `%` and two hex
/// digits); `None` for a `%` not followed by two hex digits, or bytes that are not UTF-8.
/// Used for drain credentials and `file://` build sources' paths.
pub fn url_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3).filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()))?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl fmt::Display for DrainUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for DrainUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DrainUrl({})", self.redacted())
    }
}

impl FromStr for DrainUrl {
    type Err = DrainUrlError;
    fn from_str(s: &str) -> Result<Self, DrainUrlError> {
        Self::try_new(s)
    }
}

impl Serialize for DrainUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.raw)
    }
}

impl<'de> Deserialize<'de> for DrainUrl {
    /// Parses a stored URL. One stored before `ca=` was refused loads without that parameter:
    /// its drain then trusts only the system's trust store and the operator's CAs, which is stricter,
    /// never looser, and its TLS errors say so on the drain.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match DrainUrl::try_new(&s) {
            Err(DrainUrlError::CaPath) => DrainUrl::try_new(&without_ca(&s)),
            other => other,
        }
        .map_err(serde::de::Error::custom)
    }
}

/// `s` without its `ca=` query parameters.
fn without_ca(s: &str) -> String {
    let Some((base, query)) = s.split_once('?') else {
        return s.to_owned();
    };
    let kept: Vec<&str> = query.split('&').filter(|p| !(p.starts_with("ca=") || *p == "ca")).collect();
    if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) }
}

/// Trusted CAs of one TLS or HTTPS drain, in PEM, as the API's `ca` field gives them: at least
/// one certificate, at most 64 KiB, each certificate X.509 DER inside its PEM block.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DrainCa(Box<str>);

impl DrainCa {
    /// Longest PEM accepted, in bytes.
    pub const MAX_LEN: usize = 64 * 1024;

    /// Accepts PEM holding at least one certificate that parses as X.509; otherwise says what is
    /// wrong (never quoting the text, which may be anything a user pasted).
    pub fn try_new(pem: &str) -> Result<DrainCa, String> {
        if pem.len() > Self::MAX_LEN {
            return Err(format!("ca is longer than {} bytes", Self::MAX_LEN));
        }
        let certs = Self::parse(pem)?;
        for (i, der) in certs.iter().enumerate() {
            use x509_parser::prelude::FromDer;
            x509_parser::prelude::X509Certificate::from_der(der)
                .map_err(|e| format!("ca: certificate {} cannot be parsed: {e}", i + 1))?;
        }
        Ok(DrainCa(pem.into()))
    }

    fn parse(pem: &str) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
        use rustls::pki_types::pem::PemObject;
        let certs = rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("ca is not PEM: {e}"))?;
        if certs.is_empty() {
            return Err("ca holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into());
        }
        Ok(certs)
    }

    /// The certificates, in DER, for a TLS client's roots.
    pub fn certificates(&self) -> Vec<rustls::pki_types::CertificateDer<'static>> {
        Self::parse(&self.0).unwrap_or_default()
    }

    /// The PEM text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for DrainCa {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        DrainCa::try_new(&s)
    }
}

impl From<DrainCa> for String {
    fn from(c: DrainCa) -> String {
        c.0.into()
    }
}

impl fmt::Debug for DrainCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DrainCa({} certificates)", self.certificates().len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> DrainUrl {
        DrainUrl::try_new(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn accepted() {
        let u = ok("syslog+tcp://logs.example.com:514");
        assert_eq!(
            (u.scheme(), u.host().as_str(), u.port(), u.framing()),
            (DrainScheme::SyslogTcp, "logs.example.com", 514, SyslogFraming::OctetCounting)
        );
        assert_eq!(ok("syslog://127.0.0.1:601").scheme(), DrainScheme::SyslogTcp);
        assert_eq!(ok("syslog+tcp://h:1?framing=lf").framing(), SyslogFraming::NonTransparent);
        assert_eq!(ok("syslog+tls://[::1]:6514").url_host(), "[::1]");
        assert_eq!(ok("syslog+udp://h:514?max_size=1024").max_size(), Some(1024));
        let h = ok("https://user:p%40ss@logs.example.com/drain?token=x");
        assert_eq!((h.port(), h.path_and_query()), (443, "/drain?token=x"));
        assert_eq!(h.basic_auth(), Some(("user", Some("p@ss"))));
        assert_eq!(ok("https://h:8443").path_and_query(), "/");
    }

    #[test]
    fn rejected() {
        for (s, want) in [
            ("logs.example.com:514", "scheme://host:port"),
            ("http://h:80", "unsupported drain url scheme"),
            ("ftp://h:21", "unsupported"),
            ("syslog+tcp://h", "needs a port"),
            ("syslog+tcp://h:0", "needs a port"),
            ("syslog+tcp://h:70000", "needs a port"),
            ("syslog+tcp://h:51x", "needs a port"),
            ("syslog+tcp://:514", "invalid host"),
            ("syslog+tcp://bad_host:514", "invalid host"),
            ("syslog+tcp://h:514/path", "no path"),
            ("syslog+tcp://u:p@h:514", "no user"),
            ("syslog+tcp://h:514?framing=crlf", "framing is"),
            ("syslog+tcp://h:514?ca=/x", "not a file on the server"),
            ("syslog+tls://h:514?ca=/etc/shadow", "not a file on the server"),
            ("syslog+tls://h:514?ca=rel.pem", "not a file on the server"),
            ("syslog+udp://h:514?max_size=10", "max_size"),
            ("syslog+tcp://h:514?x=1", "not a parameter"),
            ("https://h /x", "whitespace"),
            ("https://[::1:443", "invalid host"),
        ] {
            let err = DrainUrl::try_new(s).expect_err(s).to_string();
            assert!(err.contains(want), "{s}: {err}");
        }
    }

    #[test]
    fn the_same_receiver_has_one_normal_form() {
        let n = |s: &str| ok(s).normalized();
        for (a, b) in [
            ("syslog+tcp://127.0.0.1:514", "SYSLOG+TCP://127.0.0.1:514"),
            ("syslog+tcp://logs.example.com:514", "syslog://Logs.Example.COM:514"),
            ("syslog+tcp://h:514", "syslog+tcp://h:514?framing=octet-counting"),
            ("syslog+tls://[::1]:6514", "syslog+tls://[0:0:0:0:0:0:0:1]:6514"),
            ("syslog+udp://[2001:db8::A]:514", "syslog+udp://[2001:DB8:0::a]:514"),
            ("https://logs.example.com/p?x=1", "HTTPS://LOGS.example.com:443/p?x=1"),
        ] {
            assert_eq!(n(a), n(b), "{a} and {b} name one receiver");
        }
        for (a, b) in [
            ("syslog+tcp://h:514", "syslog+tls://h:514"),
            ("syslog+tcp://h:514", "syslog+tcp://h:515"),
            ("syslog+tcp://h:514", "syslog+tcp://h:514?framing=lf"),
            ("https://h/p", "https://h/P"),
            ("https://a:b@h/p", "https://h/p"),
        ] {
            assert_ne!(n(a), n(b), "{a} and {b} differ");
        }
    }

    #[test]
    fn hosts_are_written_as_urls_write_them() {
        let u = ok("https://[::1]:8443/logs");
        assert_eq!((u.url_host().as_ref(), u.authority()), ("[::1]", "[::1]:8443".to_owned()));
        assert_eq!(ok("https://[::1]/logs").authority(), "[::1]");
        assert_eq!(ok("https://h.example.com:443").authority(), "h.example.com");
        assert_eq!(ok("syslog+tcp://127.0.0.1:514").authority(), "127.0.0.1:514");
    }

    #[test]
    fn stored_urls_with_a_ca_path_load_without_it() {
        let u: DrainUrl = serde_json::from_str(r#""syslog+tls://h:6514?ca=/etc/ca.pem&framing=lf""#).unwrap();
        assert_eq!((u.expose(), u.framing()), ("syslog+tls://h:6514?framing=lf", SyslogFraming::NonTransparent));
        let u: DrainUrl = serde_json::from_str(r#""syslog+tls://h:6514?ca=/etc/ca.pem""#).unwrap();
        assert_eq!(u.expose(), "syslog+tls://h:6514");
    }

    #[test]
    fn drain_cas_are_pem_certificates() {
        let key = rcgen::KeyPair::generate().unwrap();
        let pem = rcgen::CertificateParams::new(vec!["ca.test".into()]).unwrap().self_signed(&key).unwrap().pem();
        let ca = DrainCa::try_new(&pem).unwrap();
        assert_eq!(ca.certificates().len(), 1);
        for (bad, want) in [
            ("", "no PEM certificate"),
            ("root:x:0:0", "no PEM certificate"),
            ("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "cannot be parsed"),
        ] {
            let e = DrainCa::try_new(bad).unwrap_err();
            assert!(e.contains(want), "{bad:?}: {e}");
        }
    }

    #[test]
    fn passwords_never_show() {
        let u = ok("https://user:secret@h/p");
        assert_eq!(u.redacted(), "https://user:****@h/p");
        assert!(!format!("{u} {u:?}").contains("secret"));
        assert!(u.expose().contains("secret"));
        assert_eq!(ok("syslog+tcp://h:1").redacted(), "syslog+tcp://h:1");
    }
}
