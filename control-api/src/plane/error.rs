//! Why an operation did nothing: the four refusals every operation shares, which the HTTP edge
//! maps to Heroku's error ids (404 `not_found`, 409 `conflict`, 422 `invalid_params`, 503).

use crate::store::StoreError;

/// Why an operation did nothing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A named resource does not exist.
    #[error("no {what} {key:?}")]
    NotFound {
        /// What kind of resource.
        what: &'static str,
        /// The id or name asked for.
        key: String,
    },
    /// The request contradicts existing state (a duplicate, a resource in use).
    #[error("{0}")]
    Conflict(String),
    /// A value is well formed but not allowed.
    #[error("{0}")]
    Invalid(String),
    /// Storage failed; nothing changed.
    #[error("storage failed: {0}")]
    Store(#[from] StoreError),
}

pub(super) fn not_found(what: &'static str, key: &str) -> Error {
    Error::NotFound { what, key: key.to_owned() }
}
