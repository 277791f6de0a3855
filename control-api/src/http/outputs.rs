//! The output URLs (Heroku's `output_stream_url`) of builds (`GET /builds/{build}/output`) and
//! of releases with a release phase (`GET /releases/{release}/output`), served by one piece.
//!
//! As Heroku's, an output URL needs no API token (the CLI streams it with a plain `GET`): the
//! build's or the release's id, 122 random bits seen only by holders of the admin token, is
//! the capability. While what it belongs to runs in this process, the URL streams its
//! `text/plain` lines as they come and ends with it (or when Wharf shuts down); afterwards it
//! answers the lines its record kept (`plane::outputs`).

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use uuid::Uuid;

use super::wire::{ApiError, ApiResult};
use crate::plane::ControlPlane;

/// The output of the `what` (`build`, `release`) named `key` in the URL (`id`, when it is a
/// UUID): streamed while it runs here, else `stored` (its record's lines), else 404.
pub(super) fn stream(
    plane: &ControlPlane,
    what: &str,
    key: &str,
    id: Option<Uuid>,
    stored: Option<Vec<String>>,
) -> ApiResult<Response> {
    let headers = [(header::CONTENT_TYPE, "text/plain; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")];
    let Some(rx) = id.and_then(|id| plane.output(id)) else {
        let lines =
            stored.ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no {what} {key:?}")))?;
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        return Ok((headers, text).into_response());
    };
    let ended = Box::pin(plane.streams_ended());
    let body = futures_util::stream::unfold((rx, ended, 0usize, false), |(mut rx, mut ended, sent, done)| async move {
        if done {
            return None;
        }
        loop {
            let (chunk, finished) = {
                let o = rx.borrow_and_update();
                let chunk: String = o.lines[sent.min(o.lines.len())..].iter().map(|l| format!("{l}\n")).collect();
                (chunk, (o.done, o.lines.len()))
            };
            if !chunk.is_empty() || finished.0 {
                let next = (rx, ended, finished.1, finished.0);
                return Some((Ok::<_, std::io::Error>(Bytes::from(chunk)), next));
            }
            tokio::select! {
                () = &mut ended => return None,
                changed = rx.changed() => if changed.is_err() { return None },
            }
        }
    });
    Ok((headers, axum::body::Body::from_stream(body)).into_response())
}
