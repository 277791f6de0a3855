//! HTTPS drains: a batch POSTed as logplex-1 (octet-counted RFC 5424 frames), as Heroku's
//! logplex does, and what each answer means.
//!
//! - 2xx: delivered.
//! - 3xx: retried with backoff like 5xx, never followed: logplex does the same, and following
//!   a redirect would send lines (and the drain's credentials) to a URL the user never gave.
//! - 5xx and 429: retried with backoff, the same frame id on every attempt.
//! - 413: the batch is too large for the receiver: it is sent again in halves, down to one
//!   line; a single line still refused is dropped and counted.
//! - Other 4xx: the receiver refused the lines for good: dropped, counted, and announced in
//!   the drain's stream (L13).
//!
//! The `Host` field names the host as a URL writes it (`[::1]:8443`, RFC 9110 §7.2 and RFC
//! 3986 §3.2.2).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use wharf_domain::DrainUrl;

use crate::batch::Batch;

/// Why a batch was not delivered in full: send the rest again after a backoff, on a new
/// connection when `reconnect`.
#[derive(Debug)]
pub(crate) struct Retry {
    pub(crate) reason: String,
    pub(crate) reconnect: bool,
}

/// What one POST's answer means.
enum Answer {
    Delivered,
    TooLarge(String),
    Refused(String),
    Retry(Retry),
}

/// POSTs the messages of `batch` not yet done, in pieces of at most `batch.piece` messages,
/// halving the piece after a 413. Returns once every message is delivered or refused (the
/// batch records which); a [`Retry`] leaves the progress in the batch, so the next attempt
/// sends only what is left, with the same frame ids.
pub(crate) async fn post_batch(
    sender: &mut http1::SendRequest<Full<Bytes>>,
    url: &DrainUrl,
    token: &str,
    batch: &mut Batch,
) -> Result<(), Retry> {
    if batch.piece == 0 {
        batch.piece = batch.messages();
    }
    while batch.done < batch.messages() {
        let (from, to) = (batch.done, (batch.done + batch.piece).min(batch.messages()));
        // The whole batch keeps its frame id; a piece's is derived from it, the same on every
        // attempt, so that receivers that drop repeats still can.
        let frame_id = if (from, to) == (0, batch.messages()) {
            batch.frame_id.clone()
        } else {
            format!("{}-{from}-{to}", batch.frame_id)
        };
        match post(sender, url, token, &frame_id, to - from, batch.range(from, to)).await {
            Answer::Delivered => batch.delivered(from, to),
            Answer::TooLarge(_) if to - from > 1 => batch.piece = (to - from).div_ceil(2),
            Answer::TooLarge(reason) | Answer::Refused(reason) => batch.refuse(from, to, reason),
            Answer::Retry(r) => return Err(r),
        }
    }
    Ok(())
}

async fn post(
    sender: &mut http1::SendRequest<Full<Bytes>>,
    url: &DrainUrl,
    token: &str,
    frame_id: &str,
    messages: usize,
    body: &[u8],
) -> Answer {
    let mut req = http::Request::post(url.path_and_query())
        .header(http::header::HOST, url.authority())
        .header(http::header::CONTENT_TYPE, "application/logplex-1")
        .header(http::header::USER_AGENT, concat!("wharf-logshuttle/", env!("CARGO_PKG_VERSION")))
        .header("logplex-msg-count", messages)
        .header("logplex-frame-id", frame_id)
        .header("logplex-drain-token", token);
    if let Some((user, password)) = url.basic_auth() {
        let credentials = format!("{user}:{}", password.unwrap_or_default());
        req = req.header(http::header::AUTHORIZATION, format!("Basic {}", BASE64.encode(credentials)));
    }
    let req = match req.body(Full::new(Bytes::copy_from_slice(body))) {
        Ok(r) => r,
        Err(e) => return Answer::Refused(format!("cannot build the request: {e}")),
    };
    let retry = |reason: String| Answer::Retry(Retry { reason, reconnect: true });
    if let Err(e) = sender.ready().await {
        return retry(format!("connection closed: {e}"));
    }
    let resp = match sender.send_request(req).await {
        Ok(r) => r,
        Err(e) => return retry(format!("request failed: {e}")),
    };
    let status = resp.status();
    // Read the answer to the end so that the connection can carry the next batch.
    let body = match resp.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return retry(format!("reading the response: {e}")),
    };
    let reason = || {
        let text = String::from_utf8_lossy(&body).chars().take(200).collect::<String>();
        format!("receiver answered {status}: {}", text.trim())
    };
    if status.is_success() {
        Answer::Delivered
    } else if status == http::StatusCode::PAYLOAD_TOO_LARGE {
        Answer::TooLarge(reason())
    } else if status.is_server_error() || status.is_redirection() || status == http::StatusCode::TOO_MANY_REQUESTS {
        Answer::Retry(Retry { reason: reason(), reconnect: false })
    } else {
        Answer::Refused(reason())
    }
}
