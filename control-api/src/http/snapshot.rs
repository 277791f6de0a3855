//! The data planes' feed, served: `GET /v1/snapshot` (the current snapshot) and
//! `GET /v1/snapshot/watch` (the current one, then every new version as it is published), for
//! routers and logshuttles on other machines. [`crate::watch`] is the client side.
//!
//! The watch stream is newline-delimited JSON: each line is a whole snapshot, never a delta, so
//! a follower that missed versions only needs the newest line. An empty line every
//! [`HEARTBEAT`] tells the follower the connection is alive while nothing changes. The stream
//! never ends by itself, so it ends when shutdown starts (see [`ControlPlane::end_streams`]).
//!
//! A data plane's token gets its role's part of each snapshot ([`Snapshot::part_for`]), cut
//! here on the server, so that a router never receives a drain's credentials nor a logshuttle
//! a certificate's key; the admin token gets the whole snapshot.

use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use wharf_domain::Snapshot;

use super::auth::Caller;
use super::wire::Json;
use crate::plane::ControlPlane;

/// How often the watch stream says it is alive when nothing changes: every second, so that a
/// follower can take a replica that stays silent for a few seconds (`[feed] silence_timeout`,
/// 5 s by default) for hung and move to another. A heartbeat is one empty chunk, a few bytes a
/// second per follower, nothing beside the snapshots themselves. (It was 10 s, with a 35 s
/// silence timeout: a stopped replica kept every data plane stale for 35 s and more, FE25's F2.)
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// What `caller` may read of `snapshot`: all of it for the admin, its role's part for a data
/// plane.
fn part(snapshot: &Snapshot, caller: Caller) -> Snapshot {
    match caller {
        Caller::Admin => snapshot.clone(),
        Caller::DataPlane(role) => snapshot.part_for(role),
    }
}

/// `GET /v1/snapshot`.
pub(super) async fn snapshot(
    State(plane): State<Arc<ControlPlane>>,
    Extension(caller): Extension<Caller>,
) -> impl IntoResponse {
    let current = plane.subscribe().borrow().clone();
    Json(part(&current, caller))
}

/// One line of the watch stream: what `caller` may read of the snapshot, as JSON, then a
/// newline.
fn line(snapshot: &Snapshot, caller: Caller) -> Bytes {
    let mut out = serde_json::to_vec(&part(snapshot, caller)).unwrap_or_default();
    out.push(b'\n');
    Bytes::from(out)
}

/// `GET /v1/snapshot/watch`. The stream ends (cleanly, so the follower sees its end and
/// reconnects, to another replica if this one is going) when the process starts shutting down
/// ([`ControlPlane::end_streams`]).
pub(super) async fn stream(State(plane): State<Arc<ControlPlane>>, Extension(caller): Extension<Caller>) -> Response {
    let mut rx = plane.subscribe();
    let first = line(&rx.borrow_and_update(), caller);
    let ended = Box::pin(plane.streams_ended());
    let rest = futures_util::stream::unfold((rx, ended), move |(mut rx, mut ended)| async move {
        tokio::select! {
            () = &mut ended => None,
            next = tokio::time::timeout(HEARTBEAT, rx.changed()) => match next {
                Err(_) => Some((Ok::<_, std::io::Error>(Bytes::from_static(b"\n")), (rx, ended))),
                Ok(Err(_)) => None,
                Ok(Ok(())) => {
                    let next = line(&rx.borrow_and_update(), caller);
                    Some((Ok(next), (rx, ended)))
                }
            },
        }
    });
    let body = futures_util::StreamExt::chain(futures_util::stream::iter([Ok(first)]), rest);
    (
        [(header::CONTENT_TYPE, "application/x-ndjson"), (header::CACHE_CONTROL, "no-cache")],
        axum::body::Body::from_stream(body),
    )
        .into_response()
}
