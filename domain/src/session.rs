//! Log session grants: what a live-tail URL allows, signed by the control API and checked by
//! the logshuttle, so the two need to share only a key, not a session table.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::hmac;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::names::AppKey;

/// What one log session may read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionGrant {
    /// The session's id.
    pub id: Uuid,
    /// The app whose lines it streams.
    pub app: AppKey,
    /// How many lines of history to send first.
    pub lines: u32,
    /// Whether to keep streaming new lines after the history.
    pub tail: bool,
    /// Only lines from this source (`app`, `akkeris/router`, ...).
    pub source: Option<String>,
    /// Only lines from this dyno (`web.1562910588-cg82f`) or dyno type (`web`).
    pub dyno: Option<String>,
    /// Seconds since the epoch after which the URL no longer works.
    pub expires: i64,
}

/// Why a session token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// Not a token this key signed.
    #[error("invalid log session")]
    Invalid,
    /// Signed, but past its expiry.
    #[error("log session expired")]
    Expired,
}

/// The key that signs and checks session tokens.
pub struct SessionKey(hmac::Key);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(****)")
    }
}

impl SessionKey {
    /// A key from secret bytes (at least 32).
    pub fn new(secret: &[u8]) -> Self {
        SessionKey(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    /// A fresh random key, for a process that both signs and checks.
    pub fn generate() -> Self {
        SessionKey::new(&crate::random_bytes::<32>())
    }

    /// The token for a grant: `payload.signature`, both URL-safe base64.
    pub fn sign(&self, grant: &SessionGrant) -> String {
        let payload = B64.encode(serde_json::to_vec(grant).expect("grants serialize"));
        let tag = hmac::sign(&self.0, payload.as_bytes());
        format!("{payload}.{}", B64.encode(tag.as_ref()))
    }

    /// The grant in a token, if this key signed it and it has not expired at `now` (seconds).
    pub fn verify(&self, token: &str, now: i64) -> Result<SessionGrant, SessionError> {
        let (payload, tag) = token.split_once('.').ok_or(SessionError::Invalid)?;
        let tag = B64.decode(tag).map_err(|_| SessionError::Invalid)?;
        hmac::verify(&self.0, payload.as_bytes(), &tag).map_err(|_| SessionError::Invalid)?;
        let json = B64.decode(payload).map_err(|_| SessionError::Invalid)?;
        let grant: SessionGrant = serde_json::from_slice(&json).map_err(|_| SessionError::Invalid)?;
        if grant.expires < now {
            return Err(SessionError::Expired);
        }
        Ok(grant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> SessionGrant {
        SessionGrant {
            id: Uuid::nil(),
            app: "api-default".parse().unwrap(),
            lines: 10,
            tail: true,
            source: None,
            dyno: Some("web".into()),
            expires: 1000,
        }
    }

    #[test]
    fn signed_tokens_verify_until_they_expire() {
        let key = SessionKey::generate();
        let token = key.sign(&grant());
        assert_eq!(key.verify(&token, 999), Ok(grant()));
        assert_eq!(key.verify(&token, 1001), Err(SessionError::Expired));
    }

    #[test]
    fn forged_tokens_fail() {
        let key = SessionKey::generate();
        let token = key.sign(&grant());
        assert_eq!(SessionKey::generate().verify(&token, 0), Err(SessionError::Invalid));
        let (payload, tag) = token.split_once('.').unwrap();
        let mut other = grant();
        other.app = "admin-default".parse().unwrap();
        let forged = format!("{}.{tag}", B64.encode(serde_json::to_vec(&other).unwrap()));
        assert_ne!(payload, forged.split_once('.').unwrap().0);
        for bad in [forged.as_str(), "", "x", "x.y", &token[1..]] {
            assert_eq!(key.verify(bad, 0), Err(SessionError::Invalid), "{bad}");
        }
    }
}
