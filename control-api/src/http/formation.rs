//! `/apps/{app}/formation`: how many dynos of each type an app runs, and how (Heroku's formation
//! resource: list, info, batch update, update; plus delete of one type).
//!
//! A quantity is a JSON number, or a string as the Heroku CLI sends it: `"2"`, or a change to
//! the current number, `"+1"` or `"-1"` (`ps:scale web+1`). A negative number, or a string that
//! is neither, is refused with 422.

use axum::extract::{Path, State};
use axum::response::IntoResponse;
use serde::de::Unexpected;
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use wharf_domain::DynoType;
use wharf_domain::timestamp::format_seconds;

use super::wire::{ApiError, ApiResult, AppRef, Body, Json, Plane, app_ref};
use crate::model::{Formation, Model};
use crate::plane::{ControlPlane, Error, FormationUpdate, Quantity};

/// A quantity on the wire: a number or a string, as [`Quantity`] says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct WireQuantity(Quantity);

impl<'de> Deserialize<'de> for WireQuantity {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(QuantityVisitor).map(WireQuantity)
    }
}

struct QuantityVisitor;

impl serde::de::Visitor<'_> for QuantityVisitor {
    type Value = Quantity;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a quantity: a number from 0, or a string such as \"2\", \"+1\" or \"-1\"")
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Quantity, E> {
        u32::try_from(v).map(Quantity::Exactly).map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Quantity, E> {
        u64::try_from(v).map_err(|_| E::invalid_value(Unexpected::Signed(v), &self)).and_then(|v| self.visit_u64(v))
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Quantity, E> {
        let invalid = || E::invalid_value(Unexpected::Str(s), &self);
        let (sign, digits) = match s.as_bytes().first() {
            Some(b'+') => (Some(1), &s[1..]),
            Some(b'-') => (Some(-1), &s[1..]),
            _ => (None, s),
        };
        // Digits only: `str::parse` would also take a second sign, and a long string of digits
        // is refused rather than wrapped.
        if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        let n: u32 = digits.parse().map_err(|_| invalid())?;
        Ok(match sign {
            None => Quantity::Exactly(n),
            Some(sign) => Quantity::Change(sign * i64::from(n)),
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FormationPatch {
    #[serde(default)]
    quantity: Option<WireQuantity>,
    #[serde(default)]
    command: Option<String>,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    healthcheck: Option<String>,
    /// Heroku's dyno size, one of the configured sizes.
    #[serde(default)]
    size: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FormationBatchItem {
    #[serde(rename = "type")]
    dyno_type: String,
    #[serde(default)]
    quantity: Option<WireQuantity>,
    #[serde(default)]
    command: Option<String>,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    healthcheck: Option<String>,
    #[serde(default)]
    size: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FormationBatch {
    updates: Vec<FormationBatchItem>,
}

#[derive(Serialize)]
pub(super) struct FormationOut {
    id: Uuid,
    #[serde(rename = "type")]
    dyno_type: String,
    quantity: u32,
    command: Option<String>,
    port: Option<u16>,
    healthcheck: Option<String>,
    /// The entry's size, or the configured default.
    size: String,
    app: AppRef,
    created_at: String,
    updated_at: String,
}

fn formation_out(plane: &ControlPlane, m: &Model, f: &Formation) -> Option<FormationOut> {
    let app = m.app(&f.app_id.to_string())?;
    Some(FormationOut {
        id: f.id,
        dyno_type: f.dyno_type.to_string(),
        quantity: f.quantity,
        command: f.command.clone(),
        port: f.port,
        healthcheck: f.healthcheck.clone(),
        size: plane.settings().dyno_sizes.of(f.size.as_deref()).to_owned(),
        app: app_ref(m, app),
        created_at: format_seconds(f.created_at),
        updated_at: format_seconds(f.updated_at),
    })
}

fn formation_update(dyno_type: &str, p: FormationPatch) -> ApiResult<FormationUpdate> {
    let dyno_type = DynoType::try_new(dyno_type).map_err(ApiError::invalid)?;
    Ok(FormationUpdate {
        dyno_type,
        quantity: p.quantity.map(|q| q.0),
        command: p.command,
        port: p.port,
        healthcheck: p.healthcheck,
        size: p.size,
    })
}

pub(super) async fn list_formation(State(plane): Plane, Path(app): Path<String>) -> ApiResult<impl IntoResponse> {
    let out = plane
        .read(|m| {
            m.app(&app).map(|a| {
                m.formation_of(a.id).into_iter().filter_map(|f| formation_out(&plane, m, f)).collect::<Vec<_>>()
            })
        })
        .await;
    out.map(Json).ok_or_else(|| Error::NotFound { what: "app", key: app }.into())
}

pub(super) async fn get_formation(
    State(plane): Plane,
    Path((app, ty)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    let out = plane
        .read(|m| {
            let a = m.app(&app).ok_or(Error::NotFound { what: "app", key: app.clone() })?;
            let f = m.formation_of(a.id).into_iter().find(|f| f.dyno_type.as_str() == ty);
            let f = f.ok_or(Error::NotFound { what: "formation", key: ty.clone() })?;
            Ok::<_, Error>(formation_out(&plane, m, f))
        })
        .await?;
    out.map(Json).ok_or_else(|| Error::NotFound { what: "app", key: app }.into())
}

pub(super) async fn formation_response(plane: &ControlPlane, updated: Vec<Formation>) -> Vec<FormationOut> {
    plane.read(|m| updated.iter().filter_map(|f| formation_out(plane, m, f)).collect()).await
}

pub(super) async fn patch_formation(
    State(plane): Plane,
    Path(app): Path<String>,
    Body(req): Body<FormationBatch>,
) -> ApiResult<impl IntoResponse> {
    let updates = req
        .updates
        .into_iter()
        .map(|u| {
            let patch = FormationPatch {
                quantity: u.quantity,
                command: u.command,
                port: u.port,
                healthcheck: u.healthcheck,
                size: u.size,
            };
            formation_update(&u.dyno_type, patch)
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let updated = plane.update_formation(&app, updates).await?;
    Ok(Json(formation_response(&plane, updated).await))
}

pub(super) async fn patch_formation_type(
    State(plane): Plane,
    Path((app, ty)): Path<(String, String)>,
    Body(req): Body<FormationPatch>,
) -> ApiResult<impl IntoResponse> {
    let updated = plane.update_formation(&app, vec![formation_update(&ty, req)?]).await?;
    let mut out = formation_response(&plane, updated).await;
    out.pop().map(Json).ok_or_else(|| Error::NotFound { what: "app", key: app }.into())
}

pub(super) async fn delete_formation(
    State(plane): Plane,
    Path((app, ty)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    let out = plane
        .read(|m| {
            let a = m.app(&app)?;
            m.formation_of(a.id)
                .into_iter()
                .find(|f| f.dyno_type.as_str() == ty)
                .and_then(|f| formation_out(&plane, m, f))
        })
        .await;
    plane.delete_formation(&app, &ty).await?;
    out.map(Json).ok_or_else(|| Error::NotFound { what: "formation", key: ty }.into())
}

#[cfg(test)]
mod tests {
    use super::{Quantity, WireQuantity};

    fn parse(json: &str) -> Result<Quantity, String> {
        serde_json::from_str::<WireQuantity>(json).map(|q| q.0).map_err(|e| e.to_string())
    }

    #[test]
    fn quantities_are_numbers_or_strings_with_an_optional_sign() {
        assert_eq!(parse("2"), Ok(Quantity::Exactly(2)));
        assert_eq!(parse("\"2\""), Ok(Quantity::Exactly(2)));
        assert_eq!(parse("\"+1\""), Ok(Quantity::Change(1)));
        assert_eq!(parse("\"-3\""), Ok(Quantity::Change(-3)));
        assert_eq!(parse("\"0\""), Ok(Quantity::Exactly(0)));
        for bad in
            ["-1", "1.5", "\"\"", "\"+\"", "\"two\"", "\"+-1\"", "\" 1\"", "\"1234567890\"", "null", "4294967296"]
        {
            let err = parse(bad).expect_err(bad);
            assert!(err.contains("invalid"), "{bad}: {err}");
        }
    }
}
