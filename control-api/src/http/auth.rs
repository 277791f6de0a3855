//! Token auth: the admin token opens every endpoint behind it, the optional data-plane token
//! only the `/v1/` feed that remote routers and logshuttles use.
//!
//! A token comes as a bearer token (RFC 6750 section 2.1, `Authorization: Bearer <token>`, as the
//! Heroku CLI sends it) or as the password of HTTP Basic credentials (RFC 7617, any user name,
//! as Heroku's `.netrc` users and the `heroku3` and `heroku-client` libraries send it).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use subtle::ConstantTimeEq;

use super::wire::ApiError;

/// The bearer tokens the API accepts: the admin token, allowed everything, and an optional
/// data-plane token, allowed only the snapshot feed that remote routers and logshuttles follow.
#[derive(Clone)]
pub struct AdminToken {
    admin: Arc<str>,
    data_plane: Option<Arc<str>>,
}

/// Compares in time independent of where the first difference is (the length is not secret).
fn same(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

impl AdminToken {
    /// The admin token alone.
    pub fn new(token: &str) -> Self {
        AdminToken { admin: token.into(), data_plane: None }
    }

    /// Also accepts `token` for the data-plane feed (`/v1/snapshot`, `/v1/snapshot/watch`,
    /// `/v1/canary-verdicts`), and nothing else.
    pub fn with_data_plane(mut self, token: &str) -> Self {
        self.data_plane = Some(token.into());
        self
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(****)")
    }
}

/// The token an `Authorization` header carries: a bearer token, or the password of Basic
/// credentials (`base64(user:token)`, the user name ignored, as Heroku ignores it). The scheme
/// name is case-insensitive (RFC 9110 section 11.1).
fn presented_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, credentials) = value.split_once(' ')?;
    let credentials = credentials.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        Some(credentials.to_owned())
    } else if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD.decode(credentials).ok()?;
        let (_user, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
        Some(password.to_owned())
    } else {
        None
    }
}

/// The middleware: 401 without a token or with an unknown one, 403 for the data-plane token
/// outside `/v1/`; otherwise the request goes on.
pub(super) async fn require_token(
    State(token): State<AdminToken>,
    headers: HeaderMap,
    req: Request,
    next: Next,
) -> Response {
    let given = presented_token(&headers);
    let given = given.as_deref();
    let data_plane = given.zip(token.data_plane.as_deref()).is_some_and(|(t, d)| same(t, d));
    match given {
        Some(t) if same(t, &token.admin) => next.run(req).await,
        Some(_) if data_plane && req.uri().path().starts_with("/v1/") => next.run(req).await,
        Some(_) if data_plane => ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this token may only use the data-plane endpoints (/v1/snapshot, /v1/canary-verdicts); use the admin token",
        )
        .into_response(),
        Some(_) => {
            ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "invalid credentials provided").into_response()
        }
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "an Authorization: Bearer token (or Basic credentials with the token as password) is required",
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue, header};

    use super::{presented_token, same};

    fn token_in(value: &str) -> Option<String> {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        presented_token(&headers)
    }

    #[test]
    fn bearer_and_basic_credentials_carry_the_token() {
        assert_eq!(token_in("Bearer abc").as_deref(), Some("abc"));
        assert_eq!(token_in("bearer abc ").as_deref(), Some("abc"));
        // `:abc` and `any:abc`, base64-encoded.
        assert_eq!(token_in("Basic OmFiYw==").as_deref(), Some("abc"));
        assert_eq!(token_in("basic YW55OmFiYw==").as_deref(), Some("abc"));
        // The password may itself hold a colon; only the first one separates the user.
        assert_eq!(token_in("Basic dTphOmI=").as_deref(), Some("a:b"));
        assert_eq!(token_in("Basic !!!"), None);
        assert_eq!(token_in("Basic YWJj"), None, "no colon: no password");
        assert_eq!(token_in("Digest abc"), None);
        assert_eq!(token_in("Bearer"), None);
    }

    #[test]
    fn same_compares_whole_strings() {
        assert!(same("secret", "secret"));
        assert!(!same("secret", "secreT"));
        assert!(!same("secret", "secrets"));
        assert!(!same("", "x"));
        assert!(same("", ""));
    }
}
