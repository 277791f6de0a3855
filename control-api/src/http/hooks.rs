//! `/apps/{app}/hooks`: an app's webhooks (Akkeris' hooks: `{"url", "events", "secret",
//! "active"}`), their recent deliveries, and the task that sends deliveries.
//!
//! A delivery is a `POST` of JSON (`{"action", "app", "hook", "delivery", "created_at"}` and the
//! event's own object: `release`, `promotion`, `dyno` or `preview`) with `X-Wharf-Event`,
//! `X-Wharf-Delivery` (the same id on every attempt) and `X-Wharf-Signature: sha256=HEX`, the
//! HMAC-SHA256 of the body under the hook's secret, so a receiver can tell Wharf's deliveries
//! from forgeries. A 2xx answer delivers it; anything else (another status, no answer within
//! [`ATTEMPT_TIMEOUT`], a failed connection) is tried again after [`BACKOFF`], up to
//! [`ATTEMPTS`] attempts. A host whose every address the outbound policy refuses is a permanent
//! refusal: the delivery fails at that attempt (counted in its record, with the policy's reason)
//! and is not tried again, since no retry could reach an address the policy refuses. Each delivery is its own task, so a slow receiver holds up no other
//! hook, and none holds up the operation that made it. The secret is never shown.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;
use wharf_domain::HookUrl;
use wharf_domain::timestamp::{format_seconds, now_seconds};

use super::wire::{ApiError, ApiResult, AppRef, Body, Json, Plane, app_ref};
use crate::model::{Hook, HookEvent, Model};
use crate::plane::outbound_http::{Destination, ExchangeError, exchange};
use crate::plane::{ControlPlane, Delivery, DeliveryRecord, DeliveryStatus, Error, Happened, HookInput};

/// Attempts per delivery.
pub(super) const ATTEMPTS: u32 = 5;

/// The wait before each retry: 1, 2, 4, then 8 seconds.
pub(super) const BACKOFF: [Duration; 4] =
    [Duration::from_secs(1), Duration::from_secs(2), Duration::from_secs(4), Duration::from_secs(8)];

/// How long one attempt may take, from name resolution to the answer's head.
pub(super) const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the API shows instead of a hook's secret.
const REDACTED: &str = "[redacted]";

/// A hook as the API shows it: the secret redacted.
#[derive(Serialize)]
struct HookOut {
    id: Uuid,
    app: AppRef,
    url: String,
    events: Vec<&'static str>,
    active: bool,
    secret: &'static str,
    created_at: String,
    updated_at: String,
}

fn hook_out(m: &Model, h: &Hook) -> Option<HookOut> {
    let app = m.app(&h.app_id.to_string())?;
    Some(HookOut {
        id: h.id,
        app: app_ref(m, app),
        url: h.url.to_string(),
        events: h.events.iter().map(|e| e.as_str()).collect(),
        active: h.active,
        secret: REDACTED,
        created_at: format_seconds(h.created_at),
        updated_at: format_seconds(h.updated_at),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HookIn {
    url: Option<String>,
    events: Option<Vec<HookEvent>>,
    secret: Option<String>,
    active: Option<bool>,
}

impl HookIn {
    fn parse(self) -> Result<HookInput, ApiError> {
        let url = self.url.map(|u| HookUrl::try_new(&u)).transpose().map_err(ApiError::invalid)?;
        Ok(HookInput { url, events: self.events, secret: self.secret, active: self.active })
    }
}

/// `GET /apps/{app}/hooks`.
pub(super) async fn list_hooks(State(plane): Plane, Path(app): Path<String>) -> ApiResult<impl IntoResponse> {
    let out = plane
        .read(|m| {
            let a = m.app(&app).ok_or(Error::NotFound { what: "app", key: app.clone() })?;
            Ok::<_, Error>(m.hooks_of(a.id).into_iter().filter_map(|h| hook_out(m, h)).collect::<Vec<_>>())
        })
        .await?;
    Ok(Json(out))
}

/// `POST /apps/{app}/hooks {"url", "events", "secret", "active"?}`: 201; 422 for a URL that is
/// not http(s) or that the outbound policy refuses, no events, or no secret.
pub(super) async fn create_hook(
    State(plane): Plane,
    Path(app): Path<String>,
    Body(req): Body<HookIn>,
) -> ApiResult<impl IntoResponse> {
    let h = plane.create_hook(&app, req.parse()?).await?;
    let out = plane.read(|m| hook_out(m, &h)).await;
    Ok((StatusCode::CREATED, Json(out.ok_or(Error::NotFound { what: "app", key: app })?)))
}

/// `GET /apps/{app}/hooks/{hook}`.
pub(super) async fn get_hook(
    State(plane): Plane,
    Path((app, hook)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    let out = plane.read(|m| m.app(&app).and_then(|a| m.hook(a.id, &hook)).and_then(|h| hook_out(m, h))).await;
    Ok(Json(out.ok_or(Error::NotFound { what: "hook", key: hook })?))
}

/// `PATCH /apps/{app}/hooks/{hook}`: what the body names changes.
pub(super) async fn update_hook(
    State(plane): Plane,
    Path((app, hook)): Path<(String, String)>,
    Body(req): Body<HookIn>,
) -> ApiResult<impl IntoResponse> {
    let h = plane.update_hook(&app, &hook, req.parse()?).await?;
    let out = plane.read(|m| hook_out(m, &h)).await;
    Ok(Json(out.ok_or(Error::NotFound { what: "hook", key: hook })?))
}

/// `DELETE /apps/{app}/hooks/{hook}`.
pub(super) async fn delete_hook(
    State(plane): Plane,
    Path((app, hook)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    let out = plane.read(|m| m.app(&app).and_then(|a| m.hook(a.id, &hook)).and_then(|h| hook_out(m, h))).await;
    plane.delete_hook(&app, &hook).await?;
    Ok(Json(out.ok_or(Error::NotFound { what: "hook", key: hook })?))
}

/// A delivery as its hook's list shows it.
#[derive(Serialize)]
struct DeliveryOut {
    id: Uuid,
    event: &'static str,
    status: &'static str,
    attempts: u32,
    last_status_code: Option<u16>,
    last_error: Option<String>,
    created_at: String,
    updated_at: String,
}

/// `GET /apps/{app}/hooks/{hook}/deliveries`: the hook's recent deliveries, newest first.
pub(super) async fn list_deliveries(
    State(plane): Plane,
    Path((app, hook)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    let id = plane.read(|m| m.app(&app).and_then(|a| m.hook(a.id, &hook)).map(|h| h.id)).await;
    let id = id.ok_or(Error::NotFound { what: "hook", key: hook })?;
    let out: Vec<DeliveryOut> = plane
        .hook_deliveries(id)
        .into_iter()
        .map(|d| DeliveryOut {
            id: d.id,
            event: d.event.as_str(),
            status: d.status.as_str(),
            attempts: d.attempts,
            last_status_code: d.last_status_code,
            last_error: d.last_error,
            created_at: format_seconds(d.created_at),
            updated_at: format_seconds(d.updated_at),
        })
        .collect();
    Ok(Json(out))
}

/// The JSON body of a delivery.
fn payload(d: &Delivery) -> Vec<u8> {
    let mut body = json!({
        "action": d.happened.event().as_str(),
        "app": {"id": d.app.0, "name": d.app.1},
        "hook": {"id": d.hook_id},
        "delivery": {"id": d.id},
        "created_at": format_seconds(d.at),
    });
    match &d.happened {
        Happened::Release { id, version, description, status } => {
            body["release"] =
                json!({"id": id, "version": version, "description": description, "status": status.as_str()});
        }
        Happened::Promotion { id, source, targets } => {
            let targets: Vec<_> =
                targets.iter().map(|(app, v)| json!({"app": {"name": app}, "release": {"version": v}})).collect();
            body["promotion"] = json!({"id": id, "source": {"app": {"name": source.0}, "release": {"version": source.1}}, "targets": targets});
        }
        Happened::Crashed { dyno, status } => body["dyno"] = json!({"name": dyno, "status": status}),
        Happened::Destroy => {}
        Happened::Build { id, status, release_id } => {
            body["build"] =
                json!({"id": id, "status": status.as_str(), "release": release_id.map(|r| json!({"id": r}))});
        }
        Happened::Canary { id, outcome, reason, release, canary_app, evidence } => {
            body["canary"] = json!({
                "id": id,
                "outcome": outcome,
                "reason": reason,
                "release": {"id": release.0, "version": release.1},
                "canary_app": {"name": canary_app},
                "evidence": evidence,
            });
        }
        Happened::Preview { action, number, app, head_ref, head_sha } => {
            body["preview"] = json!({"action": action, "app": {"name": app},
                                     "pull_request": {"number": number, "head": {"ref": head_ref, "sha": head_sha}}});
        }
    }
    let mut out = serde_json::to_vec(&body).expect("a JSON value serializes");
    out.push(b'\n');
    out
}

/// `sha256=` and the lowercase hex HMAC-SHA256 of `body` under `secret`.
pub(super) fn signature(secret: &str, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = ring::hmac::sign(&key, body);
    let mut out = String::from("sha256=");
    for b in tag.as_ref() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Sends every delivery the plane queues, each in its own task; runs until the plane is gone.
/// Started once, by [`super::router`]; a second call finds the queue taken and returns.
pub(super) fn start_deliveries(plane: Arc<ControlPlane>) {
    let Some(mut rx) = plane.take_hook_deliveries() else { return };
    let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
    runtime.spawn(async move {
        while let Some(d) = rx.recv().await {
            tokio::spawn(deliver(plane.clone(), d));
        }
    });
}

/// One delivery: attempts with backoff until a 2xx or [`ATTEMPTS`] attempts, or until the hook
/// is deleted or switched off (`active: false`): its owner no longer wants it, so the attempts
/// still to come are dropped and the delivery is recorded failed, saying why (AU22, FE35: a
/// deleted hook's retries went on, signed, for up to 15 s).
async fn deliver(plane: Arc<ControlPlane>, d: Delivery) {
    let body = payload(&d);
    let signed = signature(&d.secret, &body);
    let mut record = DeliveryRecord::pending(&d);
    for attempt in 0..ATTEMPTS {
        if let Some(wait) = attempt.checked_sub(1).and_then(|i| BACKOFF.get(i as usize)) {
            tokio::time::sleep(*wait).await;
        }
        // Before every attempt, the first too (the queue may have held it): still wanted? Not
        // asked of `destroy`: the app's deletion took its hooks, and that delivery is their last.
        if d.happened.event() != HookEvent::Destroy {
            let hook = d.hook_id.to_string();
            let active = plane.read(|m| m.hook(d.app.0, &hook).map(|h| h.active)).await;
            if active != Some(true) {
                record.status = DeliveryStatus::Failed;
                let why = if active.is_none() { "deleted" } else { "switched off" };
                record.last_error = Some(format!("the hook was {why}; not tried again"));
                record.updated_at = now_seconds();
                tracing::info!(hook = %d.hook_id, delivery = %d.id, attempts = record.attempts, why, "webhook delivery given up: the hook no longer wants it");
                plane.record_delivery(d.hook_id, record);
                return;
            }
        }
        let outcome = tokio::time::timeout(ATTEMPT_TIMEOUT, post(&plane, &d, &body, &signed))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {}s", ATTEMPT_TIMEOUT.as_secs()).into()));
        record.attempts = attempt + 1;
        record.updated_at = now_seconds();
        match outcome {
            Ok(code) => {
                record.last_status_code = Some(code);
                record.last_error = None;
                if (200..300).contains(&code) {
                    record.status = DeliveryStatus::Delivered;
                    plane.record_delivery(d.hook_id, record);
                    return;
                }
                record.last_error = Some(format!("the receiver answered {code}"));
            }
            Err(e) => {
                record.last_status_code = None;
                record.last_error = Some(e.message);
                if e.refused {
                    record.status = DeliveryStatus::Failed;
                    tracing::warn!(hook = %d.hook_id, delivery = %d.id, error = ?record.last_error, attempts = record.attempts, "webhook delivery refused by the outbound policy; not retried");
                    plane.record_delivery(d.hook_id, record);
                    return;
                }
            }
        }
        if record.attempts == ATTEMPTS {
            record.status = DeliveryStatus::Failed;
            tracing::warn!(hook = %d.hook_id, delivery = %d.id, error = ?record.last_error, "webhook delivery failed after every attempt");
        }
        plane.record_delivery(d.hook_id, record.clone());
    }
}

/// One attempt: the answer's status code, or why there was none.
async fn post(plane: &ControlPlane, d: &Delivery, body: &[u8], signed: &str) -> Result<u16, ExchangeError> {
    let request = http::Request::post(d.url.path_and_query())
        .header(http::header::HOST, d.url.authority())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::USER_AGENT, "wharf-webhook")
        .header("x-wharf-event", d.happened.event().as_str())
        .header("x-wharf-delivery", d.id.to_string())
        .header("x-wharf-signature", signed)
        .body(http_body_util::Full::new(bytes::Bytes::copy_from_slice(body)))
        .map_err(|e| format!("request: {e}"))?;
    let to = Destination { host: d.url.host(), port: d.url.port(), https: d.url.is_https() };
    let (response, conn) = exchange(to, request, plane.outbound(), plane.trusted_roots()).await?;
    conn.abort();
    Ok(response.status().as_u16())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_rfc_4231_hmac_sha256_in_hex() {
        // RFC 4231 test case 2.
        let got = signature("Jefe", b"what do ya want for nothing?");
        assert_eq!(got, "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }
}
