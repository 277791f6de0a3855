//! The router's settings as every request uses them, taken once from the operator's
//! configuration (`wharf_config::RouterConfig`) when the router starts.

use std::time::Duration;

/// The settings the proxy uses on every request.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// Longest wait for a dyno to accept a connection (H19 after it).
    pub(crate) connect_timeout: Duration,
    /// Longest wait for a dyno's response head once the request is sent (H12 after it).
    pub(crate) first_byte_timeout: Duration,
    /// Longest wait for a client's request head, counted from the end of the previous response.
    pub(crate) header_timeout: Duration,
    /// Longest time either side of a response body or tunnel may stay silent (H15 after it).
    pub(crate) idle_timeout: Duration,
    /// Longest request line, in bytes (414 beyond).
    pub(crate) max_request_line: usize,
    /// Most bytes of header field names and values in a request (431 beyond).
    pub(crate) max_header_bytes: usize,
    /// Most header fields in a request (431 beyond).
    pub(crate) max_headers: usize,
    /// `Strict-Transport-Security` for HTTPS responses that set none.
    pub(crate) hsts: Option<http::HeaderValue>,
    /// Dynos tried for one request when connecting fails.
    pub(crate) connect_attempts: u32,
    /// How long a dyno that refused a connection is skipped.
    pub(crate) quarantine: Duration,
    /// How long in-flight requests may take to finish at shutdown.
    pub(crate) shutdown_grace: Duration,
    /// The HTTPS port clients see, for redirects and `X-Forwarded-Port`.
    pub(crate) https_port: u16,
    /// Whether plain HTTP is redirected rather than proxied.
    pub(crate) http_redirect: bool,
    /// Whether every client field with an underscore in its name is dropped, rather than only
    /// those that a CGI-style dyno would read as a field the platform sets or acts on.
    pub(crate) drop_all_underscore_fields: bool,
    /// The protocols a request may upgrade to (`Upgrade`, RFC 9110, section 7.8), lowercase;
    /// never `h2c`.
    pub(crate) upgrades: Box<[Box<str>]>,
}
