//! The output URLs (Heroku's `output_stream_url`) of builds (`GET /builds/{build}/output`) and
//! of releases with a release phase (`GET /releases/{release}/output`), served by one piece.
//!
//! As Heroku's, an output URL needs no API token (the CLI streams it with a plain `GET`): the
//! build's or the release's id, 122 random bits seen only by holders of the admin token, is
//! the capability. What it answers in each state is `plane::output_states`'s rule: while what
//! it belongs to runs in this process, its `text/plain` lines stream as they come and the
//! stream ends with it; before it starts, the stream opens with a line saying what it waits
//! for and follows it once it starts (at most [`MAX_WAIT_TO_START`]); once it ended, the URL
//! answers its stored lines. When Wharf stops, a stream ends with a line saying so
//! (`plane::outputs`' cut), never with a bare end.

use std::time::Duration;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::wire::{ApiError, ApiResult};
use crate::model::Model;
use crate::plane::{ControlPlane, OutputState};

/// Longest a stream waits for what it follows to start: then it ends with a line saying to
/// follow it again.
pub(super) const MAX_WAIT_TO_START: Duration = Duration::from_secs(3600);

/// The output of the `what` (`build`, `release`) named `key` in the URL (`id`, when it is a
/// UUID): streamed while it runs here, else as `state` says of the model now and as it changes.
pub(super) async fn stream<F>(
    plane: std::sync::Arc<ControlPlane>,
    what: &'static str,
    key: &str,
    id: Option<Uuid>,
    state: F,
) -> ApiResult<Response>
where
    F: Fn(&Model, Uuid) -> OutputState + Send + Sync + Copy + 'static,
{
    let headers = [(header::CONTENT_TYPE, "text/plain; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")];
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no {what} {key:?}"));
    let Some(id) = id else { return Err(not_found()) };
    if plane.output(id).is_none() {
        match plane.read(|m| state(m, id)).await {
            OutputState::Missing => return Err(not_found()),
            OutputState::NoOutput(why) => return Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", why)),
            OutputState::Ended(lines) => return Ok((headers, text(&lines)).into_response()),
            OutputState::NotYet { .. } => {}
        }
    }
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        let _ = follow(&plane, id, what, state, &tx).await;
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (Ok::<_, std::io::Error>(chunk), rx))
    });
    Ok((headers, axum::body::Body::from_stream(body)).into_response())
}

/// `lines`, each ended by a newline.
fn text(lines: &[String]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// Sends `text` to the follower unless it is empty; `Err` once the follower is gone.
async fn send(tx: &mpsc::Sender<Bytes>, text: String) -> Result<(), ()> {
    if text.is_empty() {
        return Ok(());
    }
    tx.send(Bytes::from(text)).await.map_err(|_| ())
}

/// Follows output `id` into `tx`: waits while it has not started (saying why once per reason),
/// streams it while it runs here, and ends with it, with its record's end, or with a line
/// saying why the stream ends first (Wharf stops, the wait is too long, it is gone).
async fn follow<F>(plane: &ControlPlane, id: Uuid, what: &str, state: F, tx: &mpsc::Sender<Bytes>) -> Result<(), ()>
where
    F: Fn(&Model, Uuid) -> OutputState + Send + Sync + Copy + 'static,
{
    let mut ended = Box::pin(plane.streams_ended());
    let mut changes = plane.subscribe();
    let mut opened = plane.outputs_opened();
    let deadline = tokio::time::Instant::now() + MAX_WAIT_TO_START;
    // How many of the output's lines the follower has; the last reason it was given to wait.
    let (mut sent, mut said) = (0usize, String::new());
    loop {
        changes.borrow_and_update();
        opened.borrow_and_update();
        if let Some(rx) = plane.output(id) {
            return stream_running(rx, sent, &mut ended, tx).await;
        }
        match plane.read(|m| state(m, id)).await {
            OutputState::Missing | OutputState::NoOutput(_) => {
                let gone = format!(
                    " !     This {what} has no output any more: it was deleted with its app, or (a release of \
                     changes) rebased onto the running release, which has no release phase\n"
                );
                return send(tx, gone).await;
            }
            OutputState::Ended(lines) => return send(tx, text(&lines[sent.min(lines.len())..])).await,
            OutputState::NotYet { lines, why } => {
                send(tx, text(&lines[sent.min(lines.len())..])).await?;
                sent = sent.max(lines.len());
                if why != said {
                    send(tx, format!("{why}\n")).await?;
                    said = why;
                }
            }
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return Ok(()) },
            changed = opened.changed() => if changed.is_err() { return Ok(()) },
            () = &mut ended => {
                return send(tx, " !     Wharf is stopping: follow this URL again once it runs again\n".to_owned()).await;
            }
            () = tokio::time::sleep_until(deadline) => {
                return send(tx, format!(" !     This {what} has not started after {}s: follow this URL again to go on \
                                        waiting\n", MAX_WAIT_TO_START.as_secs())).await;
            }
            () = tx.closed() => return Err(()),
        }
    }
}

/// Streams a running output from its line `sent` on, until it ends; when Wharf stops first
/// (the output was cut, so its last line says so), the rest of its lines and the end.
async fn stream_running(
    mut rx: tokio::sync::watch::Receiver<crate::plane::Output>,
    sent: usize,
    ended: &mut (impl std::future::Future<Output = ()> + Unpin),
    tx: &mpsc::Sender<Bytes>,
) -> Result<(), ()> {
    let mut stopping = false;
    // The number of the next line it wants (`Output::since`).
    let mut next = sent as u64;
    loop {
        let (chunk, at, done) = {
            let o = rx.borrow_and_update();
            let (lines, at) = o.since(next);
            (text(&lines), at, o.done)
        };
        send(tx, chunk).await?;
        next = at;
        if done {
            return Ok(());
        }
        if stopping {
            // Wharf stops and this output was not cut (it opened after the cut): say so.
            return send(tx, " !     Wharf stopped while this ran: this stream ends here\n".to_owned()).await;
        }
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { return Ok(()) },
            () = &mut *ended => stopping = true,
            () = tx.closed() => return Err(()),
        }
    }
}
