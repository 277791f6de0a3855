//! Bearer-token auth (RFC 6750 section 2.1, `Authorization: Bearer <token>`): the admin token
//! opens every endpoint behind it, the optional data-plane token only the `/v1/` feed that
//! remote routers and logshuttles use.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
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

/// The middleware: 401 without a token or with an unknown one, 403 for the data-plane token
/// outside `/v1/`; otherwise the request goes on.
pub(super) async fn require_token(
    State(token): State<AdminToken>,
    headers: HeaderMap,
    req: Request,
    next: Next,
) -> Response {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
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
        None => ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "an Authorization: Bearer token is required")
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::same;

    #[test]
    fn same_compares_whole_strings() {
        assert!(same("secret", "secret"));
        assert!(!same("secret", "secreT"));
        assert!(!same("secret", "secrets"));
        assert!(!same("", "x"));
        assert!(same("", ""));
    }
}
