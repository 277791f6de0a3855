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
    /// A 503's `Retry-After` in seconds, when the cause says better than [`RETRY_AFTER_SECONDS`].
    retry_after: Option<u32>,
}

impl ApiError {
    /// A refusal with this status, Heroku error id and message.
    pub(crate) fn new(status: StatusCode, id: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, id, message: message.into(), retry_after: None }
    }

    /// 422 `invalid_params`: the request is well formed but a value is not allowed.
    pub(crate) fn invalid(message: impl std::fmt::Display) -> Self {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_params", message.to_string())
    }

    /// 503 `service_unavailable`: a dependency (the store, the log bus) cannot take the request now.
    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable", message)
    }

    /// 503 `service_unavailable` whose cause passes in about `seconds` (its `Retry-After`).
    pub(crate) fn unavailable_for(message: impl Into<String>, seconds: u32) -> Self {
        ApiError { retry_after: Some(seconds), ..ApiError::unavailable(message) }
    }
}

/// Seconds a client is told to wait before trying a refused request again
/// (`Retry-After`, RFC 9110 section 10.2.3), on every 503: about the time the control API takes
/// to notice that its store answers again (it polls every 5 s), as the logshuttle's busy 503 says.
const RETRY_AFTER_SECONDS: &str = "5";

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(json!({ "id": self.id, "message": self.message }))).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            let seconds = match self.retry_after {
                Some(s) => header::HeaderValue::from(s),
                None => header::HeaderValue::from_static(RETRY_AFTER_SECONDS),
            };
            response.headers_mut().insert(header::RETRY_AFTER, seconds);
        }
        response
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::NotFound { .. } => ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string()),
            Error::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            Error::Invalid(m) => ApiError::invalid(m),
            Error::Store(e) => {
                // Logged once per outage where it is recorded (the plane's engine), not here
                // once per request.
                tracing::debug!(error = %e, "control api storage failed");
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
        parse_json(bytes).map(Body)
    }
}

/// Parses a JSON request body as `T`, the one place every endpoint's body is read: JSON that
/// does not parse is a 400 `bad_request`, and JSON of the wrong shape a 422 `invalid_params`
/// saying in JSON's words (not Rust's) where and what: the field's path (`source_blob.url`,
/// `updates[0].type`) and what it is against what was expected (`invalid type: `source_blob`
/// is null, expected a JSON object`), or which field is unknown or missing.
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", format!("malformed JSON: {e}")))?;
    serde_path_to_error::deserialize(&value).map_err(|e| ApiError::invalid(shape_error(&value, &e)))
}

/// A JSON value already parsed (a body's part a handler reads in a second step) as `T`, with
/// [`parse_json`]'s words when its shape is wrong (422).
pub(crate) fn from_json_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(&value).map_err(|e| ApiError::invalid(shape_error(&value, &e)))
}

/// As [`from_json_value`], for what is left of a body a handler took fields out of first
/// (`taken`, read by the handler itself): a refusal of an unknown field names those among the
/// fields expected too, so it lists every field the endpoint takes.
pub(crate) fn from_json_value_without<T: DeserializeOwned>(
    value: serde_json::Value,
    taken: &[&str],
) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(&value).map_err(|e| {
        let message = shape_error(&value, &e);
        if !message.starts_with("unknown field") || taken.is_empty() {
            return ApiError::invalid(message);
        }
        let named: String = taken.iter().map(|t| format!("`{t}`, ")).collect();
        let message = if message.contains("expected one of ") {
            message.replacen("expected one of ", &format!("expected one of {named}"), 1)
        } else {
            message.replacen(", expected ", &format!(", expected one of {named}"), 1)
        };
        ApiError::invalid(message)
    })
}

/// The words for a body of the wrong shape: see [`parse_json`].
fn shape_error(body: &serde_json::Value, e: &serde_path_to_error::Error<serde_json::Error>) -> String {
    use serde_path_to_error::Segment;
    let mut segments: Vec<&Segment> = e.path().iter().collect();
    let inner = e.inner().to_string();
    // An unknown field's path ends in that field, which the message names already.
    if inner.starts_with("unknown field") && matches!(segments.last(), Some(Segment::Map { .. })) {
        segments.pop();
    }
    let mut path = String::new();
    let mut at = Some(body);
    for s in &segments {
        match s {
            Segment::Seq { index } => {
                path.push_str(&format!("[{index}]"));
                at = at.and_then(|v| v.get(index));
            }
            Segment::Map { key } => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                at = at.and_then(|v| v.get(key));
            }
            Segment::Enum { .. } | Segment::Unknown => at = None,
        }
    }
    let place = if path.is_empty() { "the body".to_owned() } else { format!("`{path}`") };
    let what = if inner.starts_with("invalid type") || inner.starts_with("invalid length") {
        Some("invalid type")
    } else {
        inner.starts_with("invalid value").then_some("invalid value")
    };
    if let (Some(what), Some(value), Some((_, expected))) = (what, at, inner.split_once(", expected ")) {
        return format!("{what}: {place} is {}, expected {}", json_kind(value), in_json_words(expected));
    }
    let words = in_json_words(&inner);
    // A top-level field's own refusal names what it refuses already (`invalid app name ...`);
    // a nested one, or a field unknown or missing in a nested object, gets its place.
    let placed = inner.starts_with("unknown field") || inner.starts_with("missing field");
    if path.is_empty() || (segments.len() == 1 && !placed) { words } else { format!("{words} (at `{path}`)") }
}

/// What a JSON value is, in JSON's words: `null`, `a string "x"`, `the number 5`, `an array`.
fn json_kind(v: &serde_json::Value) -> String {
    use serde_json::Value;
    match v {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("{b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) if s.chars().count() > 40 => "a string".to_owned(),
        Value::String(s) => format!("a string {}", Value::String(s.clone())),
        Value::Array(_) => "an array".to_owned(),
        Value::Object(_) => "an object".to_owned(),
    }
}

/// serde's expectations in JSON's words: a Rust struct (`struct BuildIn with 2 elements`) is a
/// JSON object, a sequence an array, `u32` a whole number, and so on; other words pass through.
fn in_json_words(serde: &str) -> String {
    let mut out = String::new();
    let mut rest = serde;
    while let Some(i) = rest.find("struct ") {
        out.push_str(&rest[..i]);
        // `struct NAME` and an optional ` with N element(s)`, with a `tuple ` before it.
        let after = &rest[i + "struct ".len()..];
        let name_end = after.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(after.len());
        let mut tail = &after[name_end..];
        if let Some(t) = tail.strip_prefix(" with ") {
            let n = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
            let t = &t[n..];
            tail = t.strip_prefix(" elements").or_else(|| t.strip_prefix(" element")).unwrap_or(t);
        }
        out = out.strip_suffix("tuple ").map(str::to_owned).unwrap_or(out);
        out.push_str("a JSON object");
        rest = tail;
    }
    out.push_str(rest);
    let words = [
        ("a sequence", "a JSON array"),
        ("a map", "a JSON object"),
        ("unit value", "null"),
        ("a boolean", "true or false"),
        ("a string", "a JSON string"),
        ("usize", "a whole number"),
        ("u64", "a whole number"),
        ("u32", "a whole number"),
        ("u16", "a whole number"),
        ("u8", "a whole number"),
        ("i64", "a whole number"),
        ("i32", "a whole number"),
        ("f64", "a number"),
        ("f32", "a number"),
    ];
    words.iter().fold(out, |s, (from, to)| replace_word(&s, from, to))
}

/// `s` with each whole-word `from` (not part of a longer word) replaced by `to`.
fn replace_word(s: &str, from: &str, to: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find(from) {
        let before = rest[..i].chars().next_back();
        let after = rest[i + from.len()..].chars().next();
        let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '`');
        out.push_str(&rest[..i]);
        out.push_str(if word(before) || word(after) { from } else { to });
        rest = &rest[i + from.len()..];
    }
    out.push_str(rest);
    out
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

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct BuildIn {
        source_blob: SourceBlobIn,
        version: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct SourceBlobIn {
        url: String,
        checksum: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct FormationIn {
        updates: Vec<UpdateIn>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct UpdateIn {
        #[serde(rename = "type")]
        dyno_type: String,
        quantity: Option<u32>,
        enabled: Option<bool>,
        weight: Option<f64>,
    }

    /// FE21c #9: a body of the wrong shape is named in JSON's words, with the field's path,
    /// never a Rust type; malformed JSON is a 400. Rows: (body, status, the whole message).
    #[test]
    fn shape_errors_name_the_field_and_json_types_never_rust_ones() {
        let build = |body: &str| parse_json::<BuildIn>(body.as_bytes()).map(|_| ()).unwrap_err();
        let formation = |body: &str| parse_json::<FormationIn>(body.as_bytes()).map(|_| ()).unwrap_err();
        let rows: [(ApiError, u16, &str); 12] = [
            (build("[]"), 422, "invalid type: the body is an array, expected a JSON object"),
            (build("null"), 422, "invalid type: the body is null, expected a JSON object"),
            (build("5"), 422, "invalid type: the body is the number 5, expected a JSON object"),
            (build(r#"{"source_blob": null}"#), 422, "invalid type: `source_blob` is null, expected a JSON object"),
            (build(r#"{"source_blob": []}"#), 422, "invalid type: `source_blob` is an array, expected a JSON object"),
            (
                build(r#"{"source_blob": {"url": 5}}"#),
                422,
                "invalid type: `source_blob.url` is the number 5, expected a JSON string",
            ),
            (
                build(r#"{"source_blob": {"url": "x", "bogus": 1}}"#),
                422,
                "unknown field `bogus`, expected `url` or `checksum` (at `source_blob`)",
            ),
            (build(r#"{"colour": 1}"#), 422, "unknown field `colour`, expected `source_blob` or `version`"),
            (build(r#"{"source_blob": {}}"#), 422, "missing field `url` (at `source_blob`)"),
            (
                formation(r#"{"updates": [{"type": "web", "quantity": -1}]}"#),
                422,
                "invalid value: `updates[0].quantity` is the number -1, expected a whole number",
            ),
            (
                formation(r#"{"updates": [{"type": "web", "enabled": "yes", "weight": 1}]}"#),
                422,
                "invalid type: `updates[0].enabled` is a string \"yes\", expected true or false",
            ),
            (build("{"), 400, "malformed JSON: EOF while parsing an object at line 1 column 1"),
        ];
        for (i, (e, status, message)) in rows.into_iter().enumerate() {
            assert_eq!((e.status.as_u16(), e.message.as_str()), (status, message), "row {i}");
        }
    }
}
