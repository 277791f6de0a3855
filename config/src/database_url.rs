//! A PostgreSQL connection URL that never shows its password.

use serde::{Deserialize, Serialize};

/// A PostgreSQL connection URL. Its password never appears in `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// Accepts a `postgres://` or `postgresql://` URL (libpq's connection URI form) with
    /// something after the scheme and no whitespace; the rest is checked on connecting. The
    /// error is a sentence for the user that never contains the URL.
    pub fn try_new(url: &str) -> Result<DatabaseUrl, String> {
        let rest = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"))
            .ok_or("must be a postgres:// URL, such as postgres://wharf:password@db.internal:5432/wharf")?;
        if rest.is_empty() || url.chars().any(char::is_whitespace) {
            return Err("must name a host, and contain no spaces".into());
        }
        Ok(DatabaseUrl(url.to_owned()))
    }

    /// The URL, password included, for connecting.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with its password replaced by `***`, for logs and messages.
    pub fn redacted(&self) -> String {
        let (scheme, rest) = self.0.split_once("://").unwrap_or(("", &self.0));
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        match authority.rsplit_once('@') {
            Some((userinfo, host)) => {
                let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
                let password = if userinfo.contains(':') { ":***" } else { "" };
                // A password can also be a query parameter.
                let tail = redact_query_password(tail);
                format!("{scheme}://{user}{password}@{host}{tail}")
            }
            None => format!("{scheme}://{authority}{}", redact_query_password(tail)),
        }
    }
}

fn redact_query_password(tail: &str) -> String {
    match tail.split_once('?') {
        Some((path, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|p| if p.starts_with("password=") { "password=***".to_owned() } else { p.to_owned() })
                .collect();
            format!("{path}?{}", params.join("&"))
        }
        None => tail.to_owned(),
    }
}

impl TryFrom<String> for DatabaseUrl {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        DatabaseUrl::try_new(&s)
    }
}

impl From<DatabaseUrl> for String {
    fn from(u: DatabaseUrl) -> String {
        u.0
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DatabaseUrl({:?})", self.redacted())
    }
}

impl std::fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}
