//! The wire types every handler module shares: the JSON response and request bodies, Heroku's
//! error shape, and the small references (`{"id", "name"}`) that responses embed.
//!
//! Handlers parse request bodies into wire structs that reject unknown fields, then into domain
//! values; they build responses from the model. Every refusal is `{"id": "...", "message":
//! "..."}` with a 4xx or 503 status, as Heroku's Platform API shapes errors, and changes nothing.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use uuid::Uuid;

use crate::model::{App, Model, Site};
use crate::plane::{ControlPlane, Error};

/// A JSON response body (`application/json`), ending in a newline so that it reads well in a
/// terminal. A value that cannot be serialized is logged and answered with a bare 500.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        match serde_json::to_vec(&self.0) {
            Ok(mut body) => {
                body.push(b'\n');
                ([(header::CONTENT_TYPE, "application/json")], body).into_response()
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot serialize a response");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        }
    }
}

/// A refusal, as Heroku's Platform API shapes it: a status and `{"id": "...", "message":
/// "..."}`, where `id` is a stable machine-readable word (`not_found`, `invalid_params`, ...).
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    id: &'static str,
    message: String,
}

impl ApiError {
    /// A refusal with this status, Heroku error id and message.
    pub(crate) fn new(status: StatusCode, id: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, id, message: message.into() }
    }

    /// 422 `invalid_params`: the request is well formed but a value is not allowed.
    pub(crate) fn invalid(message: impl std::fmt::Display) -> Self {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_params", message.to_string())
    }

    /// 503 `service_unavailable`: a dependency (the store, the log bus) cannot take the request now.
    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "id": self.id, "message": self.message }))).into_response()
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::NotFound { .. } => ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string()),
            Error::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            Error::Invalid(m) => ApiError::invalid(m),
            Error::Store(e) => {
                tracing::error!(error = %e, "control api storage failed");
                ApiError::unavailable("storage is unavailable; nothing was changed")
            }
        }
    }
}

/// A handler's result: its response, or the refusal.
pub(crate) type ApiResult<T> = Result<T, ApiError>;

/// The state every handler extracts: the control plane.
pub(crate) type Plane = State<Arc<ControlPlane>>;

/// A JSON request body: malformed JSON is a 400, and well-formed JSON of the wrong shape
/// (unknown fields, wrong types, missing fields) a 422. An empty body reads as `{}`. A body
/// over the router's limit is a 413.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "request body is too large")
            } else {
                ApiError::new(StatusCode::BAD_REQUEST, "bad_request", format!("cannot read request body: {e}"))
            }
        })?;
        let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { &bytes };
        serde_json::from_slice(bytes).map(Body).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => ApiError::invalid(e),
            _ => ApiError::new(StatusCode::BAD_REQUEST, "bad_request", format!("malformed JSON: {e}")),
        })
    }
}

/// An app as other resources embed it: `{"id", "name"}` with the name `app-space`.
#[derive(Serialize)]
pub(crate) struct AppRef {
    id: Uuid,
    name: String,
}

/// The reference to `a`.
pub(crate) fn app_ref(m: &Model, a: &App) -> AppRef {
    AppRef { id: a.id, name: m.app_key(a).to_string() }
}

/// A site as other resources embed it: `{"id", "domain"}`.
#[derive(Serialize)]
pub(crate) struct SiteRef {
    id: Uuid,
    domain: String,
}

/// The reference to `s`.
pub(crate) fn site_ref(s: &Site) -> SiteRef {
    SiteRef { id: s.id, domain: s.domain.to_string() }
}

/// A Heroku `{"id", "name"}` reference to one of the fixed things Wharf has one of: [`REGION`],
/// [`STACK`], [`TEAM`].
#[derive(Serialize, Clone, Copy)]
pub(crate) struct NamedRef {
    /// A fixed id, the same on every replica and after restarts.
    pub(crate) id: Uuid,
    /// Its name.
    pub(crate) name: &'static str,
}

/// Wharf's one region (Heroku's `region`): the machines of this installation.
pub(crate) const REGION: NamedRef =
    NamedRef { id: Uuid::from_u128(0x7768_6172_6600_4000_8000_0000_0000_0010), name: "local" };

/// Wharf's one stack (Heroku's `stack` and `build_stack`): processes as Wharf's runtime starts them.
pub(crate) const STACK: NamedRef =
    NamedRef { id: Uuid::from_u128(0x7768_6172_6600_4000_8000_0000_0000_0020), name: "wharf" };

/// Wharf's one team (Heroku's `team`), which every space belongs to: Wharf has one account, the
/// admin token's, so it has no teams to tell apart.
pub(crate) const TEAM: NamedRef =
    NamedRef { id: Uuid::from_u128(0x7768_6172_6600_4000_8000_0000_0000_0030), name: "wharf" };
