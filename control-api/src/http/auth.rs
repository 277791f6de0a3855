//! Token auth: the admin token opens every endpoint behind it; each data-plane role's token
//! (router, logshuttle) opens only what that role needs, least privilege: the router's reads
//! its part of the feed and reports canary verdicts, the logshuttle's reads its part and writes
//! nothing. The feed's handlers serve each caller its part ([`Caller`]).
//!
//! A token comes as a bearer token (RFC 6750 section 2.1, `Authorization: Bearer <token>`, as the
//! Heroku CLI sends it) or as the password of HTTP Basic credentials (RFC 7617, any user name,
//! as Heroku's `.netrc` users and the `heroku3` and `heroku-client` libraries send it).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use subtle::ConstantTimeEq;
use wharf_domain::DataPlaneRole;

use super::wire::ApiError;

/// The bearer tokens the API accepts: the admin token, allowed everything, and optionally one
/// token per data-plane role, allowed only that role's endpoints ([`role_may`]).
#[derive(Clone)]
pub struct AdminToken {
    admin: Arc<str>,
    roles: Vec<(DataPlaneRole, Arc<str>)>,
}

/// Who a request's token says the caller is; the middleware puts it in the request's
/// extensions for the feed's handlers, which serve a data plane only its role's part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// The admin token: every endpoint, and the whole snapshot.
    Admin,
    /// A data plane's token.
    DataPlane(DataPlaneRole),
}

/// The endpoints a data-plane role may call, method and exact path: its feed, and for the
/// router the reports it writes (a canary it aborted, its requests in flight at stopping dynos).
/// Everything else is 403 for it.
pub fn role_may(role: DataPlaneRole) -> &'static [(&'static str, &'static str)] {
    const FEED: [(&str, &str); 2] = [("GET", "/v1/snapshot"), ("GET", "/v1/snapshot/watch")];
    match role {
        DataPlaneRole::Router => &[FEED[0], FEED[1], ("POST", "/v1/canary-verdicts"), ("POST", "/v1/router-in-flight")],
        DataPlaneRole::Logshuttle | DataPlaneRole::Runtime => &FEED,
    }
}

/// Whether `role` may call `method path`; `HEAD` goes with `GET`, as axum serves it.
fn allowed(role: DataPlaneRole, method: &Method, path: &str) -> bool {
    let method = if method == Method::HEAD { "GET" } else { method.as_str() };
    role_may(role).iter().any(|&(m, p)| m == method && p == path)
}

/// Compares in time independent of where the first difference is (the length is not secret).
fn same(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

impl AdminToken {
    /// The admin token alone.
    pub fn new(token: &str) -> Self {
        AdminToken { admin: token.into(), roles: Vec::new() }
    }

    /// Also accepts `token` as `role`'s: for that role's endpoints ([`role_may`]) and nothing
    /// else, with that role's part of the feed.
    pub fn with_data_plane(mut self, role: DataPlaneRole, token: &str) -> Self {
        self.roles.push((role, token.into()));
        self
    }

    /// The caller `given` names, if any: every token is compared, so the time taken does not
    /// say which one a guess came close to.
    fn caller(&self, given: &str) -> Option<Caller> {
        let mut found = same(given, &self.admin).then_some(Caller::Admin);
        for (role, token) in &self.roles {
            if same(given, token) {
                found = found.or(Some(Caller::DataPlane(*role)));
            }
        }
        found
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

/// The middleware: 401 without a token or with an unknown one, 403 for a data plane's token
/// outside its role's endpoints; otherwise the request goes on, with its [`Caller`].
pub(super) async fn require_token(
    State(token): State<AdminToken>,
    headers: HeaderMap,
    mut req: Request,
    next: Next,
) -> Response {
    let given = presented_token(&headers);
    match given.as_deref().map(|t| token.caller(t)) {
        Some(Some(caller)) => {
            if let Caller::DataPlane(role) = caller
                && !allowed(role, req.method(), req.uri().path())
            {
                let may: Vec<String> = role_may(role).iter().map(|(m, p)| format!("{m} {p}")).collect();
                let message = format!("the {role} token may only call {}; use the admin token", may.join(", "));
                return ApiError::new(StatusCode::FORBIDDEN, "forbidden", &message).into_response();
            }
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Some(None) => {
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

    use axum::http::Method;
    use wharf_domain::DataPlaneRole::{Logshuttle, Router};

    use super::{AdminToken, Caller, allowed, presented_token, same};

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
    fn each_token_names_its_caller() {
        let tokens = AdminToken::new("admin-0123456789abcdef")
            .with_data_plane(Router, "router-0123456789abcdef")
            .with_data_plane(Logshuttle, "shuttle-0123456789abcdef");
        for (given, want) in [
            ("admin-0123456789abcdef", Some(Caller::Admin)),
            ("router-0123456789abcdef", Some(Caller::DataPlane(Router))),
            ("shuttle-0123456789abcdef", Some(Caller::DataPlane(Logshuttle))),
            ("router-0123456789abcdeF", None),
            ("", None),
        ] {
            assert_eq!(tokens.caller(given), want, "{given:?}");
        }
    }

    /// The endpoints each role may call; tests/feed.rs checks every other endpoint is 403.
    #[test]
    fn roles_may_call_only_their_endpoints() {
        for (role, method, path, want) in [
            (Router, Method::GET, "/v1/snapshot", true),
            (Router, Method::HEAD, "/v1/snapshot", true),
            (Router, Method::GET, "/v1/snapshot/watch", true),
            (Router, Method::POST, "/v1/canary-verdicts", true),
            (Router, Method::POST, "/v1/router-in-flight", true),
            (Router, Method::GET, "/v1/router-in-flight", false),
            (Router, Method::POST, "/v1/snapshot", false),
            (Router, Method::GET, "/v1/snapshot/", false),
            (Router, Method::GET, "/apps", false),
            (Logshuttle, Method::GET, "/v1/snapshot", true),
            (Logshuttle, Method::GET, "/v1/snapshot/watch", true),
            (Logshuttle, Method::POST, "/v1/canary-verdicts", false),
            (Logshuttle, Method::POST, "/v1/router-in-flight", false),
            (Logshuttle, Method::POST, "/log-events", false),
        ] {
            assert_eq!(allowed(role, &method, path), want, "{role} {method} {path}");
        }
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
