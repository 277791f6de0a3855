//! Pipelines' vocabulary (Akkeris' pipelines, Heroku's where they agree): a pipeline's name,
//! its stages in the order code moves through them, and the URL of an app's webhook.
//!
//! Akkeris' controller-api orders an app's path to production as `review → development →
//! staging → canary → production`; a promotion moves a release one stage on. A webhook's URL is
//! one a user gives Wharf to connect to, so it passes the one outbound-destination policy: at
//! creation when its host is an IP literal ([`HookUrl::check_outbound`]), and on every address
//! its name resolves to at each delivery.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::names::{Hostname, NameError};

/// A pipeline's name: a lowercase letter, then up to 29 lowercase letters, digits or dashes,
/// not ending with a dash (Akkeris names pipelines as it names spaces).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PipelineName(Box<str>);

impl PipelineName {
    /// Accepts `^[a-z]([a-z0-9-]{0,28}[a-z0-9])?$`; otherwise a [`NameError`] stating the rule.
    pub fn try_new(s: &str) -> Result<Self, NameError> {
        const RULE: &str = "a pipeline name is 1 to 30 lowercase letters, digits or dashes, starting with a letter and not ending with a dash";
        let b = s.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= 30
            && b[0].is_ascii_lowercase()
            && b[b.len() - 1] != b'-'
            && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-');
        if ok { Ok(PipelineName(s.into())) } else { Err(NameError::new("pipeline name", s, RULE)) }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PipelineName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for PipelineName {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, NameError> {
        Self::try_new(&s)
    }
}

impl From<PipelineName> for String {
    fn from(n: PipelineName) -> String {
        n.0.into()
    }
}

/// A pipeline stage, in the order a release moves through them (Akkeris' stages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Short-lived apps for a change under review (preview apps).
    Review,
    /// Where a team's newest code runs first.
    Development,
    /// Production's rehearsal, with staging's config.
    Staging,
    /// Production's code on a share of its traffic, judged by the router.
    Canary,
    /// What users are served.
    Production,
}

impl Stage {
    /// Every stage, first to last.
    pub const ALL: [Stage; 5] = [Stage::Review, Stage::Development, Stage::Staging, Stage::Canary, Stage::Production];

    /// The stage's name, as the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Review => "review",
            Stage::Development => "development",
            Stage::Staging => "staging",
            Stage::Canary => "canary",
            Stage::Production => "production",
        }
    }

    /// The stages after this one, nearest first.
    pub fn later(self) -> impl Iterator<Item = Stage> {
        Stage::ALL.into_iter().filter(move |s| *s > self)
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Stage {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Stage::ALL.into_iter().find(|st| st.as_str() == s).ok_or_else(|| {
            let names: Vec<&str> = Stage::ALL.iter().map(|s| s.as_str()).collect();
            format!("unknown pipeline stage {s:?}: the stages are {}", names.join(", "))
        })
    }
}

/// Why a webhook URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid hook url {url:?}: {reason}")]
pub struct HookUrlError {
    /// The URL given, shortened if long.
    pub url: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// A webhook's URL: `http://` or `https://`, a host (a DNS name or an IP literal, IPv6 in
/// brackets), an optional port, a path; no credentials (a hook proves itself with its HMAC
/// secret) and no fragment. Valid by construction.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HookUrl {
    raw: Box<str>,
    https: bool,
    host: Box<str>,
    port: u16,
}

impl HookUrl {
    /// Parses a hook URL; a [`HookUrlError`] naming what is wrong otherwise.
    pub fn try_new(s: &str) -> Result<Self, HookUrlError> {
        let bad = |reason| {
            let mut url: String = s.chars().take(80).collect();
            if url.len() < s.len() {
                url.push('…');
            }
            HookUrlError { url, reason }
        };
        let (https, rest) = if let Some(r) = s.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(bad("a hook url is http:// or https://"));
        };
        if s.len() > 2048 {
            return Err(bad("longer than 2048 bytes"));
        }
        if s.contains('#') || s.bytes().any(|b| b.is_ascii_control() || b == b' ' || !b.is_ascii()) {
            return Err(bad("a hook url has no fragment, spaces, control or non-ASCII characters"));
        }
        let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
        if authority.contains('@') {
            return Err(bad("credentials in a hook url are not supported: the hook's secret signs each delivery"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (ip, after) = v6.split_once(']').ok_or_else(|| bad("an IPv6 host is written in brackets"))?;
            ip.parse::<std::net::Ipv6Addr>().map_err(|_| bad("not an IPv6 address in brackets"))?;
            (ip, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(bad("a hook url names a host"));
        }
        if host.parse::<IpAddr>().is_err() {
            Hostname::try_new(host).map_err(|_| bad("the host is not a DNS name or an IP address"))?;
        }
        let port = match port {
            None => {
                if https {
                    443
                } else {
                    80
                }
            }
            Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| bad("the port is 1 to 65535"))?,
        };
        Ok(HookUrl { raw: s.into(), https, host: host.to_ascii_lowercase().into(), port })
    }

    /// Whether deliveries use TLS.
    pub fn is_https(&self) -> bool {
        self.https
    }

    /// The host, without brackets for IPv6.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port (443 or 80 unless given).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The authority as the URL writes it (the request's `Host`, RFC 3986 section 3.2.2).
    pub fn authority(&self) -> &str {
        let rest = &self.raw[if self.https { 8 } else { 7 }..];
        &rest[..rest.find(['/', '?']).unwrap_or(rest.len())]
    }

    /// The path and query, `/` when the URL has none.
    pub fn path_and_query(&self) -> &str {
        let rest = &self.raw[if self.https { 8 } else { 7 }..];
        match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('/') => &rest[i..],
            Some(_) | None => "/",
        }
    }

    /// The URL as given.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// Refuses, at creation, a host that is an IP literal the policy refuses; names are checked
    /// on every address they resolve to at each delivery.
    pub fn check_outbound(&self, policy: &crate::outbound::Policy) -> Result<(), crate::outbound::Refused> {
        policy.check_host(&self.host)
    }
}

impl fmt::Display for HookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl TryFrom<String> for HookUrl {
    type Error = HookUrlError;
    fn try_from(s: String) -> Result<Self, HookUrlError> {
        Self::try_new(&s)
    }
}

impl From<HookUrl> for String {
    fn from(u: HookUrl) -> String {
        u.raw.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hook_urls_are_http_or_https_with_a_host_and_no_credentials() {
        let check = |url: &str, want: Result<(&str, u16, &str, &str), &str>| {
            let got = HookUrl::try_new(url);
            match want {
                Ok((host, port, authority, path)) => {
                    let u = got.unwrap_or_else(|e| panic!("{url}: {e}"));
                    assert_eq!((u.host(), u.port(), u.authority(), u.path_and_query()), (host, port, authority, path));
                }
                Err(piece) => {
                    let e = got.expect_err(url);
                    assert!(e.to_string().contains(piece), "{url}: {e}");
                }
            }
        };
        check("https://hooks.example.com/x?y=1", Ok(("hooks.example.com", 443, "hooks.example.com", "/x?y=1")));
        check("http://127.0.0.1:9000/h", Ok(("127.0.0.1", 9000, "127.0.0.1:9000", "/h")));
        check("http://[::1]:9/", Ok(("::1", 9, "[::1]:9", "/")));
        check("https://Example.COM", Ok(("example.com", 443, "Example.COM", "/")));
        check("http://h.example.com?q", Ok(("h.example.com", 80, "h.example.com", "/")));
        check("ftp://example.com/", Err("http:// or https://"));
        check("syslog+tcp://example.com:514", Err("http:// or https://"));
        check("example.com/hook", Err("http:// or https://"));
        check("https://user:pw@example.com/", Err("credentials"));
        check("https:///path", Err("names a host"));
        check("https://example.com:0/", Err("port"));
        check("https://example.com:99999/", Err("port"));
        check("https://exa mple.com/", Err("spaces"));
        check("https://example.com/#frag", Err("fragment"));
        check("https://[::1/", Err("brackets"));
        check("https://bad_host!/", Err("DNS name"));
    }

    #[test]
    fn stages_run_in_akkeris_order_and_unknown_ones_are_named() {
        assert_eq!(Stage::Development.later().next(), Some(Stage::Staging));
        assert_eq!(Stage::Production.later().next(), None);
        assert_eq!("canary".parse::<Stage>(), Ok(Stage::Canary));
        let e = "qa".parse::<Stage>().unwrap_err();
        assert!(e.contains("\"qa\"") && e.contains("review, development, staging, canary, production"), "{e}");
    }

    #[test]
    fn pipeline_names_follow_their_rule() {
        for ok in ["a", "shop", "shop-web-2"] {
            assert!(PipelineName::try_new(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Shop", "1shop", "shop-", "shop_web", &"a".repeat(31)] {
            assert!(PipelineName::try_new(bad).is_err(), "{bad}");
        }
    }
}
