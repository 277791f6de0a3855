//! `/account` and `/users/~/apps`: the identity behind the admin token, in the shape of Heroku's
//! Platform API account resource, so that clients written for Heroku (the Heroku CLI's
//! `auth:whoami`, `apps`, `ps`) know who they are.
//!
//! Wharf has one user: whoever holds the admin token. Its id is fixed ([`ADMIN_ACCOUNT_ID`]) and
//! its email is `admin@<stack domain>`, so that the answer is the same on every replica and
//! after a restart.

use axum::extract::State;
use axum::response::IntoResponse;
use serde::Serialize;
use uuid::Uuid;

use super::wire::{Json, Plane};
use crate::plane::ControlPlane;

/// The id of the admin token's account: fixed, since the account is not stored.
pub(crate) const ADMIN_ACCOUNT_ID: Uuid = Uuid::from_u128(0x7768_6172_6600_4000_8000_0000_0000_0001);

/// The account as Heroku shapes it (the fields the Heroku CLI reads, and the flags it checks set
/// to what Wharf does: no tracking, no two-factor step, no default team).
#[derive(Serialize)]
pub(super) struct AccountOut {
    id: Uuid,
    email: String,
    name: String,
    allow_tracking: bool,
    beta: bool,
    verified: bool,
    two_factor_authentication: bool,
    default_team: Option<()>,
    default_organization: Option<()>,
    created_at: &'static str,
    updated_at: &'static str,
}

/// An app's owner as apps embed it: `{"id", "email"}` (Heroku's `app.owner`).
#[derive(Serialize)]
pub(crate) struct OwnerRef {
    id: Uuid,
    email: String,
}

/// The admin account's email, `admin@<stack domain>`.
fn admin_email(plane: &ControlPlane) -> String {
    format!("admin@{}", plane.settings().stack_domain)
}

/// The owner every app has: the admin account.
pub(crate) fn owner_ref(plane: &ControlPlane) -> OwnerRef {
    OwnerRef { id: ADMIN_ACCOUNT_ID, email: admin_email(plane) }
}

/// `GET /account`: the admin token's account.
pub(super) async fn get_account(State(plane): Plane) -> impl IntoResponse {
    Json(AccountOut {
        id: ADMIN_ACCOUNT_ID,
        email: admin_email(&plane),
        name: "admin".into(),
        allow_tracking: false,
        beta: false,
        verified: true,
        two_factor_authentication: false,
        default_team: None,
        default_organization: None,
        // The account is as old as the Unix epoch: it is not stored, so it has no creation time.
        created_at: "1970-01-01T00:00:00Z",
        updated_at: "1970-01-01T00:00:00Z",
    })
}
