//! Validated names: apps, spaces, app keys, dyno types and names, and hostnames.
//!
//! Each type can only be built through `try_new` (or `FromStr`/`TryFrom<String>`), so a value of
//! the type is proof that the text is well formed. Serde goes through the same constructors.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a name was rejected; the message says what a valid one looks like.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {value:?}: {rule}")]
pub struct NameError {
    /// What was being named (`app name`, `space name`, ...).
    pub kind: &'static str,
    /// The rejected text, shortened if long.
    pub value: String,
    /// The rule it broke.
    pub rule: &'static str,
}

impl NameError {
    pub(crate) fn new(kind: &'static str, value: &str, rule: &'static str) -> Self {
        let mut value = value.to_owned();
        if value.len() > 80 {
            let mut cut = 80;
            while !value.is_char_boundary(cut) {
                cut -= 1;
            }
            value.truncate(cut);
            value.push('…');
        }
        NameError { kind, value, rule }
    }
}

macro_rules! string_newtype {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(Box<str>);

        impl $name {
            /// The name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                Self::try_new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = NameError;
            fn try_from(s: String) -> Result<Self, NameError> {
                Self::try_new(&s)
            }
        }

        impl From<$name> for String {
            fn from(n: $name) -> String {
                n.0.into()
            }
        }
    };
}

string_newtype!(
    /// An app's short name: a lowercase letter, then up to 29 lowercase letters and digits.
    /// It has no dash, because the app's key is `app-space`.
    AppName
);

impl AppName {
    /// Accepts `^[a-z][a-z0-9]{0,29}$`; otherwise a [`NameError`] stating the rule.
    pub fn try_new(s: &str) -> Result<Self, NameError> {
        const RULE: &str = "an app name is a lowercase letter followed by up to 29 lowercase letters or digits";
        let b = s.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= 30
            && b[0].is_ascii_lowercase()
            && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if ok { Ok(AppName(s.into())) } else { Err(NameError::new("app name", s, RULE)) }
    }
}

string_newtype!(
    /// A space's name: lowercase letters, digits and dashes, starting with a letter, not ending
    /// with a dash, at most 32 characters so that `app-space` fits one DNS label.
    SpaceName
);

impl SpaceName {
    /// Accepts `^[a-z]([a-z0-9-]{0,30}[a-z0-9])?$`; otherwise a [`NameError`] stating the rule.
    pub fn try_new(s: &str) -> Result<Self, NameError> {
        const RULE: &str = "a space name is 1 to 32 lowercase letters, digits or dashes, starting with a letter and not ending with a dash";
        let b = s.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= 32
            && b[0].is_ascii_lowercase()
            && b[b.len() - 1] != b'-'
            && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-');
        if ok { Ok(SpaceName(s.into())) } else { Err(NameError::new("space name", s, RULE)) }
    }
}

/// An app's key, `app-space`: how the platform names an app everywhere (domains, log streams).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AppKey {
    key: Box<str>,
    dash: usize,
}

impl AppKey {
    /// Joins an app and its space.
    pub fn new(app: &AppName, space: &SpaceName) -> Self {
        AppKey { key: format!("{app}-{space}").into(), dash: app.as_str().len() }
    }

    /// Parses `app-space`: the app is everything before the first dash, and both parts must
    /// be valid [`AppName`] and [`SpaceName`]s; otherwise a [`NameError`] for the whole key.
    pub fn try_new(s: &str) -> Result<Self, NameError> {
        const RULE: &str = "an app key is `app-space`, for example `api-default`";
        let Some((app, space)) = s.split_once('-') else {
            return Err(NameError::new("app key", s, RULE));
        };
        let app = AppName::try_new(app).map_err(|_| NameError::new("app key", s, RULE))?;
        let space = SpaceName::try_new(space).map_err(|_| NameError::new("app key", s, RULE))?;
        Ok(AppKey::new(&app, &space))
    }

    /// The key as text, `app-space`.
    pub fn as_str(&self) -> &str {
        &self.key
    }

    /// The app's short name.
    pub fn app(&self) -> &str {
        &self.key[..self.dash]
    }

    /// The space's name.
    pub fn space(&self) -> &str {
        &self.key[self.dash + 1..]
    }
}

impl fmt::Display for AppKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key)
    }
}

impl FromStr for AppKey {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        Self::try_new(s)
    }
}

impl TryFrom<String> for AppKey {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, NameError> {
        Self::try_new(&s)
    }
}

impl From<AppKey> for String {
    fn from(k: AppKey) -> String {
        k.key.into()
    }
}

string_newtype!(
    /// A dyno type (a formation's process type): `web`, `worker`, ... A lowercase letter, then up
    /// to 29 lowercase letters, digits or underscores.
    DynoType
);

impl DynoType {
    /// Accepts `^[a-z][a-z0-9_]{0,29}$`; otherwise a [`NameError`] stating the rule.
    pub fn try_new(s: &str) -> Result<Self, NameError> {
        const RULE: &str =
            "a dyno type is a lowercase letter followed by up to 29 lowercase letters, digits or underscores";
        let b = s.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= 30
            && b[0].is_ascii_lowercase()
            && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_');
        if ok { Ok(DynoType(s.into())) } else { Err(NameError::new("dyno type", s, RULE)) }
    }

    /// The type that receives HTTP traffic through the router.
    pub fn is_web(&self) -> bool {
        &*self.0 == "web"
    }
}

string_newtype!(
    /// A dyno's name, `type.suffix`, for example `web.1562910588-cg82f` or `web.1`.
    DynoName
);

impl DynoName {
    /// Accepts a valid dyno type, a dot, then 1 to 40 lowercase letters, digits or dashes that
    /// start with a letter or digit; otherwise a [`NameError`] stating the rule.
    pub fn try_new(s: &str) -> Result<Self, NameError> {
        const RULE: &str = "a dyno name is `type.suffix`, for example `web.1562910588-cg82f`, where the suffix is 1 to 40 lowercase letters, digits or dashes";
        let Some((ty, suffix)) = s.split_once('.') else {
            return Err(NameError::new("dyno name", s, RULE));
        };
        let b = suffix.as_bytes();
        let ok = DynoType::try_new(ty).is_ok()
            && !b.is_empty()
            && b.len() <= 40
            && b[0] != b'-'
            && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-');
        if ok { Ok(DynoName(s.into())) } else { Err(NameError::new("dyno name", s, RULE)) }
    }

    /// The dyno's type, the part before the dot.
    pub fn dyno_type(&self) -> &str {
        self.0.split_once('.').map_or(&self.0, |(t, _)| t)
    }
}

string_newtype!(
    /// A host to connect to: an IP address or a DNS name, kept in lowercase.
    Hostname
);

impl Hostname {
    /// Accepts an IPv4 or IPv6 literal (without brackets), or a DNS name of labels of 1 to 63
    /// letters, digits and dashes (no leading or trailing dash), at most 253 characters, as
    /// RFC 1123 §2.1 allows; one trailing dot is dropped. Otherwise a [`NameError`].
    pub fn try_new(s: &str) -> Result<Self, NameError> {
        const RULE: &str = "a host is an IP address or a DNS name of letters, digits, dashes and dots";
        if s.parse::<IpAddr>().is_ok() {
            return Ok(Hostname(s.into()));
        }
        let s = s.strip_suffix('.').unwrap_or(s);
        let ok = !s.is_empty()
            && s.len() <= 253
            && s.split('.').all(|label| {
                let b = label.as_bytes();
                !b.is_empty()
                    && b.len() <= 63
                    && b[0] != b'-'
                    && b[b.len() - 1] != b'-'
                    && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
            })
            // A name made only of digits and dots is a malformed IPv4 address, not a DNS name;
            // so is one whose last label is a number (decimal, or hex `0x..`): resolvers read
            // `127.1`, `2130706433` and `0x7f000001` as IPv4 addresses (inet_aton), which would
            // pass as names here and reach the address at connect time. The WHATWG URL
            // Standard's "ends in a number" rule refuses the same hosts.
            && !s.bytes().all(|c| c.is_ascii_digit() || c == b'.')
            && !ends_in_a_number(s);
        if ok { Ok(Hostname(s.to_ascii_lowercase().into())) } else { Err(NameError::new("host", s, RULE)) }
    }

    /// The IP address, when the host is a literal.
    pub fn ip(&self) -> Option<IpAddr> {
        self.0.parse().ok()
    }
}

/// Whether a name's last label is a number as inet_aton reads one: decimal digits, or `0x`
/// and hex digits (octal's leading 0 is decimal digits too).
fn ends_in_a_number(name: &str) -> bool {
    let last = name.rsplit('.').next().unwrap_or(name);
    let hex = last.strip_prefix("0x").or_else(|| last.strip_prefix("0X"));
    match hex {
        Some(digits) => digits.bytes().all(|c| c.is_ascii_hexdigit()),
        None => !last.is_empty() && last.bytes().all(|c| c.is_ascii_digit()),
    }
}

string_newtype!(
    /// A site's domain: a DNS name with at least two labels, or a wildcard `*.` followed by
    /// one, kept in lowercase.
    SiteDomain
);

impl SiteDomain {
    /// Accepts `www.example.com` or `*.example.com` (a wildcard only as the whole leftmost
    /// label, RFC 6125 §6.4.3); IP addresses and single labels are not domains a certificate or
    /// a DNS record could name. Otherwise a [`NameError`].
    pub fn try_new(s: &str) -> Result<Self, NameError> {
        const RULE: &str = "a site domain is a DNS name with a dot, optionally starting with \"*.\"";
        let bad = || NameError::new("site domain", s, RULE);
        let rest = s.strip_prefix("*.").unwrap_or(s);
        let host = Hostname::try_new(rest).map_err(|_| bad())?;
        if host.ip().is_some() || !host.as_str().contains('.') {
            return Err(bad());
        }
        let wildcard = rest.len() != s.len();
        Ok(SiteDomain(if wildcard { format!("*.{host}").into() } else { host.0 }))
    }

    /// For `*.example.com`, `example.com`: the parent that matching hosts are one label under.
    pub fn wildcard_parent(&self) -> Option<&str> {
        self.0.strip_prefix("*.")
    }
}

string_newtype!(
    /// A route's path prefix: `/`, or `/`-separated segments without a trailing slash.
    RoutePath
);

impl RoutePath {
    /// Longest path a route may name.
    pub const MAX_LEN: usize = 1024;

    /// Accepts an absolute path of at most [`RoutePath::MAX_LEN`] bytes of URL path characters
    /// (RFC 3986 §3.3 `pchar`, with well-formed percent escapes), without empty, `.` or `..`
    /// segments, a query or a fragment; one trailing slash is dropped (`/foo/` is `/foo`).
    /// Otherwise a [`NameError`].
    pub fn try_new(s: &str) -> Result<Self, NameError> {
        const RULE: &str = "a route path starts with \"/\", has no empty, \".\" or \"..\" segments, no query or \
                            fragment, and only URL path characters";
        let bad = || NameError::new("route path", s, RULE);
        if !s.starts_with('/') || s.len() > Self::MAX_LEN {
            return Err(bad());
        }
        if s == "/" {
            return Ok(RoutePath("/".into()));
        }
        let trimmed = s.strip_suffix('/').unwrap_or(s);
        let path_char = |c: u8| c.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@%".contains(&c);
        let segments_ok = trimmed[1..]
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != ".." && seg.bytes().all(path_char) && percent_ok(seg));
        if segments_ok { Ok(RoutePath(trimmed.into())) } else { Err(bad()) }
    }

    /// The path as a prefix to match: empty for `/`, else the path itself.
    pub fn prefix(&self) -> &str {
        if &*self.0 == "/" { "" } else { &self.0 }
    }
}

/// Whether every `%` in the text starts a two-digit hex escape.
fn percent_ok(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = |j: usize| b.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check<T, E: fmt::Display>(parse: impl Fn(&str) -> Result<T, E>, good: &[&str], bad: &[&str]) {
        for s in good {
            assert!(parse(s).is_ok(), "{s:?} should be accepted");
        }
        for s in bad {
            assert!(parse(s).is_err(), "{s:?} should be rejected");
        }
    }

    #[test]
    fn app_names() {
        check(
            AppName::try_new,
            &["a", "api", "api2", "abcdefghijklmnopqrstuvwxyz1234"],
            &["", "2api", "Api", "my-app", "my_app", "abcdefghijklmnopqrstuvwxyz12345", "é"],
        );
    }

    #[test]
    fn space_names() {
        check(
            SpaceName::try_new,
            &["default", "prod-east", "s1", "a"],
            &["", "-a", "a-", "Prod", "1st", "a_b", "abcdefghijklmnopqrstuvwxyzabcdefg"],
        );
    }

    #[test]
    fn app_keys_split_at_the_first_dash() {
        let key = AppKey::try_new("api-prod-east").unwrap();
        assert_eq!((key.app(), key.space(), key.as_str()), ("api", "prod-east", "api-prod-east"));
        check(AppKey::try_new, &["a-b"], &["api", "-api", "api-", "Api-x", "api-x_y"]);
    }

    #[test]
    fn dyno_names_start_with_their_type() {
        let name = DynoName::try_new("web.1562910588-cg82f").unwrap();
        assert_eq!(name.dyno_type(), "web");
        check(
            DynoName::try_new,
            &["web.1", "release_worker.abc-12"],
            &["web", "web.", ".1", "Web.1", "web.-1", "web.A", "web.1.2"],
        );
    }

    #[test]
    fn hostnames() {
        check(
            Hostname::try_new,
            &["127.0.0.1", "::1", "example.com", "a-b.c", "LOCALHOST", "0xa.example", "x0x1", "1a", "web.1a2b"],
            &[
                "",
                "-a.com",
                "a-.com",
                "a..b",
                "a b",
                "[::1]",
                "1.2.3.4.5",
                "host:80",
                // IPv4 addresses in the forms resolvers also read (inet_aton): not names.
                "0",
                "127.1",
                "2130706433",
                "0177.0.0.1",
                "0x0",
                "0x7f000001",
                "0X7F.1",
                "a.0x7f000001",
                "x.123",
            ],
        );
        assert_eq!(Hostname::try_new("Example.COM.").unwrap().as_str(), "example.com");
    }

    #[test]
    fn site_domains() {
        check(
            SiteDomain::try_new,
            &["www.example.com", "*.example.com", "Example.COM", "a.b"],
            &["", "localhost", "*", "*.", "*.com", "a.*.com", "**.a.com", "1.2.3.4", "*.1.2.3", "a b.com", "x.com:80"],
        );
        let d = SiteDomain::try_new("*.Example.com").unwrap();
        assert_eq!((d.as_str(), d.wildcard_parent()), ("*.example.com", Some("example.com")));
        assert_eq!(SiteDomain::try_new("www.example.com.").unwrap().wildcard_parent(), None);
    }

    #[test]
    fn route_paths() {
        check(
            RoutePath::try_new,
            &["/", "/a", "/a/b", "/a/", "/v1.0/x-y_z~", "/%20a", "/a:b@c"],
            &["", "a", "//", "/a//b", "/./a", "/a/..", "/a?b", "/a#b", "/a b", "/%zz", "/%2", "/é"],
        );
        assert_eq!(RoutePath::try_new("/a/").unwrap().as_str(), "/a");
        assert_eq!(RoutePath::try_new("/").unwrap().prefix(), "");
        assert_eq!(RoutePath::try_new("/a/b").unwrap().prefix(), "/a/b");
        assert!(RoutePath::try_new(&format!("/{}", "a".repeat(1024))).is_err());
    }

    #[test]
    fn serde_goes_through_the_constructors() {
        let ok: AppKey = serde_json::from_str("\"api-default\"").unwrap();
        assert_eq!(ok.app(), "api");
        let err = serde_json::from_str::<AppName>("\"Bad\"").unwrap_err();
        assert!(err.to_string().contains("invalid app name"), "{err}");
    }
}
