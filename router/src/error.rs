//! Why a request could not be proxied: the Heroku-style code and status the client and the app's
//! logs see (Heroku's "Router error codes" article), and whether another dyno may be tried.

use std::fmt;

use http::StatusCode;

/// A failure's code, in the vocabulary of Heroku's router errors, which app owners already
/// know how to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// The dyno sent no response headers within the first-byte timeout.
    H12,
    /// The dyno closed the connection without a response.
    H13,
    /// The dyno's response stalled for longer than the idle timeout.
    H15,
    /// The app has no web dynos.
    H14,
    /// The dyno's response was not valid HTTP (its head, or its chunked body after the head
    /// went to the client).
    H17,
    /// The dyno's connection ended or failed in the middle of its response body.
    H18,
    /// No dyno accepted a connection within the connect timeout.
    H19,
    /// Every dyno tried refused the connection.
    H21,
    /// The client went away before the response was complete.
    H27,
    /// The app is in maintenance mode: the router answered with its maintenance page. Not a
    /// failure: logged `at=info`.
    H80,
    /// The request waited at a canary's dynos when the canary was aborted, and could not be
    /// sent to the app's own dynos instead (not idempotent, or its body went to the canary):
    /// answered at once. Wharf's code, as the abort's own log line (`C10 Canary aborted`);
    /// Heroku has no canaries.
    C10,
}

impl Code {
    /// The code as text, `H12`.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::H12 => "H12",
            Code::H13 => "H13",
            Code::H15 => "H15",
            Code::H14 => "H14",
            Code::H17 => "H17",
            Code::H18 => "H18",
            Code::H19 => "H19",
            Code::H21 => "H21",
            Code::H27 => "H27",
            Code::H80 => "H80",
            Code::C10 => "C10",
        }
    }

    /// Heroku's description of the code.
    pub fn desc(self) -> &'static str {
        match self {
            Code::H12 => "Request timeout",
            Code::H13 => "Connection closed without response",
            Code::H15 => "Idle connection",
            Code::H14 => "No web dynos running",
            Code::H17 => "Poorly formatted HTTP response",
            Code::H18 => "Server Request Interrupted",
            Code::H19 => "Backend connection timeout",
            Code::H21 => "Backend connection refused",
            Code::H27 => "Client Request Interrupted",
            Code::H80 => "Maintenance mode",
            Code::C10 => "Canary aborted",
        }
    }

    /// The access line's `at=`: `info` for what the app's owner chose (H80, maintenance mode),
    /// `error` for every failure, as Heroku's router logs them.
    pub fn level(self) -> &'static str {
        match self {
            Code::H80 => "info",
            _ => "error",
        }
    }

    /// The status the client receives.
    pub fn status(self) -> StatusCode {
        match self {
            Code::H17 => StatusCode::BAD_GATEWAY,
            // Nobody reads a response to a client that left; 499 is nginx's name for it.
            Code::H27 => StatusCode::from_u16(499).expect("valid status"),
            _ => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Whether the request may go to another dyno: only when connecting failed, so nothing was
    /// sent to this one. The proxy's attempt loop asks this of every failure.
    pub fn retryable(self) -> bool {
        matches!(self, Code::H19 | Code::H21)
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Why a body (the client's request body, or the dyno's response body) ended early.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// A proxying failure with its cause.
#[derive(Debug, thiserror::Error)]
#[error("{code} {}{}", code.desc(), cause.as_ref().map(|c| format!(": {c}")).unwrap_or_default())]
pub struct ProxyError {
    /// The code.
    pub code: Code,
    /// What went wrong underneath, when known.
    #[source]
    pub cause: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl ProxyError {
    /// A failure with a cause.
    pub fn new(code: Code, cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        ProxyError { code, cause: Some(cause.into()) }
    }

    /// A failure without one.
    pub fn bare(code: Code) -> Self {
        ProxyError { code, cause: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_connect_failures_are_retried() {
        let all = [
            Code::H12,
            Code::H13,
            Code::H14,
            Code::H15,
            Code::H17,
            Code::H18,
            Code::H19,
            Code::H21,
            Code::H27,
            Code::H80,
        ];
        let retried: Vec<_> = all.into_iter().filter(|c| c.retryable()).collect();
        assert_eq!(retried, [Code::H19, Code::H21]);
        let info: Vec<_> = all.into_iter().filter(|c| c.level() == "info").collect();
        assert_eq!(info, [Code::H80], "only maintenance mode is not an error");
        assert_eq!(Code::H80.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(all.iter().all(|c| c.status().as_u16() >= 400));
        assert_eq!(ProxyError::new(Code::H21, "refused").to_string(), "H21 Backend connection refused: refused");
    }
}
