//! Drain URLs: where an app's or a site's log lines go, parsed and checked once when added.
//!
//! Supported forms:
//!
//! - `syslog+udp://host:port` (one RFC 5424 message per datagram; `?max_size=N` caps it),
//! - `syslog+tcp://host:port` and `syslog://host:port` (octet counting; `?framing=lf` for newlines),
//! - `syslog+tls://host:port` (as TCP, over TLS; `?ca=/path/ca.pem` adds a trusted CA),
//! - `https://[user:password@]host[:port]/path[?query]` (logplex-1 batches; the query is the
//!   receiver's and is passed through untouched).
//!
//! A password in the URL is a secret: `Display` and `Debug` show it as `****`; only
//! [`DrainUrl::expose`] returns it.

use std::fmt;
use std::path::PathBuf;
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
    ca: Option<PathBuf>,
    max_size: Option<usize>,
}

impl DrainUrl {
    /// Parses and checks a drain URL of one of the forms in the module docs: at most 2,048
    /// printable ASCII bytes, a known scheme, a valid host, a port (required for syslog, 443 by
    /// default for HTTPS); syslog URLs take no user, path or unknown query parameter. Errors
    /// with the [`DrainUrlError`] variant for the first problem found.
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
            ca: None,
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
                ("ca", DrainScheme::SyslogTls) => {
                    let path = percent_decode(value)?;
                    if !path.starts_with('/') {
                        return Err(DrainUrlError::Query(pair.into(), "ca is an absolute path to a PEM file"));
                    }
                    url.ca = Some(PathBuf::from(path));
                }
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

    /// An extra CA to trust (TLS drains).
    pub fn ca(&self) -> Option<&std::path::Path> {
        self.ca.as_deref()
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
    let bad = || DrainUrlError::Query(s.to_owned(), "bad percent-encoding");
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or_else(bad)?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad())
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
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        DrainUrl::try_new(&s).map_err(serde::de::Error::custom)
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
        assert_eq!(ok("syslog+tls://[::1]:6514?ca=/etc/ca.pem").ca().unwrap().to_str(), Some("/etc/ca.pem"));
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
            ("syslog+tcp://h:514?ca=/x", "not a parameter"),
            ("syslog+tls://h:514?ca=rel.pem", "absolute path"),
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
    fn passwords_never_show() {
        let u = ok("https://user:secret@h/p");
        assert_eq!(u.redacted(), "https://user:****@h/p");
        assert!(!format!("{u} {u:?}").contains("secret"));
        assert!(u.expose().contains("secret"));
        assert_eq!(ok("syslog+tcp://h:1").redacted(), "syslog+tcp://h:1");
    }
}
