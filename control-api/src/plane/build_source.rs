//! Where a build's source comes from (`builds.rs` runs the build): the rules of
//! `source_blob.url` (`http`/`https` under `fetch.rs`'s rules, or a `file://` path on this
//! machine when the operator allows it, RFC 8089) and the copy of the source into the build's
//! staging directory, with the content coding its server said it applied.

use std::path::{Path, PathBuf};

use http_body_util::BodyExt as _;
use tokio::io::AsyncWriteExt as _;

use super::engine::ControlPlane;
use super::error::Error;

/// Where a source comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Source {
    /// `http` or `https`.
    Web(super::fetch::Target),
    /// A `file://` path on this machine.
    File(PathBuf),
}

impl ControlPlane {
    /// The source a build's `source_blob.url` names, or the 422 that says why Wharf would not
    /// fetch it (see `fetch::parse_url`, and `file://` only when allowed).
    pub(super) fn parse_source(&self, url: &str) -> Result<Source, Error> {
        let deploy = self
            .deploy()
            .ok_or_else(|| Error::Invalid("this control API builds nothing (it has no data directory)".into()))?;
        // RFC 8089 section 2: `file:` URLs name a file on this machine; the host is empty
        // (`file:///path`) or `localhost` (`file://localhost/path`), which mean the same.
        let file = url.strip_prefix("file://").map(|rest| {
            let localhost = rest.get(..9).is_some_and(|h| h.eq_ignore_ascii_case("localhost"));
            if localhost && rest[9..].starts_with('/') { &rest[9..] } else { rest }
        });
        if let Some(path) = file {
            if !deploy.allow_file_urls {
                return Err(Error::Invalid(
                    "file:// sources are refused: the operator has not set control_api.allow_file_urls".into(),
                ));
            }
            // RFC 8089: the path is percent-encoded, and a file has no query or fragment;
            // refusing them (rather than reading `?x` as part of the name, or dropping it)
            // keeps the path the output shows and the one opened the same.
            if path.contains(['?', '#']) {
                return Err(Error::Invalid("a file:// source has no query (?) or fragment (#)".into()));
            }
            let path = wharf_domain::drain::url_decode(path)
                .filter(|p| !p.contains('\0'))
                .ok_or_else(|| Error::Invalid("a file:// source's path has a bad percent-encoding".into()))?;
            let path = PathBuf::from(path);
            if !path.is_absolute() {
                return Err(Error::Invalid(
                    "a file:// source names a file on this machine by its absolute path: file:///path or \
                     file://localhost/path (RFC 8089), no other host"
                        .into(),
                ));
            }
            return Ok(Source::File(path));
        }
        super::fetch::parse_url(url, false, &self.outbound()).map(Source::Web).map_err(|e| {
            let file = if deploy.allow_file_urls { " (or a file:///path on this machine)" } else { "" };
            Error::Invalid(format!("invalid source_blob.url: {e}{file}"))
        })
    }

    /// Copies the source into `into`, at most `max` bytes; returns how many arrived, and the
    /// content coding the server said it applied (`fetch::coding`; a `file://` source has none).
    pub(super) async fn fetch_source(
        &self,
        source: &Source,
        into: &Path,
        max: u64,
    ) -> Result<(u64, super::fetch::Coding), String> {
        let mut file = tokio::fs::File::create(into)
            .await
            .map_err(|e| format!("cannot store the source: {}", crate::os_error::words(&e)))?;
        let too_large = || format!("the source is larger than {max} bytes (control_api.max_slug_bytes)");
        let mut written: u64 = 0;
        let mut coding = super::fetch::Coding::Identity;
        match source {
            Source::File(path) => {
                let words = crate::os_error::words;
                let mut from = tokio::fs::File::open(path)
                    .await
                    .map_err(|e| format!("cannot open {}: {}", path.display(), words(&e)))?;
                let mut buf = vec![0; 256 * 1024];
                loop {
                    let n = tokio::io::AsyncReadExt::read(&mut from, &mut buf)
                        .await
                        .map_err(|e| format!("cannot read {}: {}", path.display(), words(&e)))?;
                    if n == 0 {
                        break;
                    }
                    written += n as u64;
                    if written > max {
                        return Err(too_large());
                    }
                    file.write_all(&buf[..n])
                        .await
                        .map_err(|e| format!("cannot store the source: {}", crate::os_error::words(&e)))?;
                }
            }
            Source::Web(first) => {
                // Redirects are followed (GitHub's archive URLs answer one), each hop under the
                // URL rules and the outbound policy, at most `MAX_REDIRECTS`.
                let mut target = first.clone();
                let mut hops = 0;
                let (response, conn) = loop {
                    let (response, conn) =
                        super::fetch::get(&target, self.outbound(), self.trusted_roots(), "*/*", "wharf-build").await?;
                    let redirect = matches!(response.status().as_u16(), 301 | 302 | 303 | 307 | 308);
                    if !redirect {
                        break (response, conn);
                    }
                    conn.abort();
                    hops += 1;
                    if hops > super::fetch::MAX_REDIRECTS {
                        return Err(format!("the source redirected more than {} times", super::fetch::MAX_REDIRECTS));
                    }
                    let location = response.headers().get(http::header::LOCATION).and_then(|v| v.to_str().ok());
                    let location = location.ok_or("the source's server answered a redirect without a Location")?;
                    target = super::fetch::redirect_target(&target, location, &self.outbound())?;
                };
                let status = response.status();
                if status != http::StatusCode::OK {
                    conn.abort();
                    return Err(format!("the source's server answered {status}, not 200"));
                }
                coding = super::fetch::coding(response.headers()).inspect_err(|_| conn.abort())?;
                // A source that announces more than the cap fails now, not after its bytes
                // (or its stall) ran up to the fetch's deadline.
                let announced = response.headers().get(http::header::CONTENT_LENGTH);
                if let Some(length) = announced.and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                    && length > max
                {
                    conn.abort();
                    return Err(format!("{} (its Content-Length is {length})", too_large()));
                }
                let mut body = response.into_body();
                while let Some(frame) = body.frame().await {
                    let frame = frame.map_err(|e| format!("reading the source: {e}"))?;
                    let Ok(data) = frame.into_data() else { continue };
                    written += data.len() as u64;
                    if written > max {
                        conn.abort();
                        return Err(too_large());
                    }
                    file.write_all(&data)
                        .await
                        .map_err(|e| format!("cannot store the source: {}", crate::os_error::words(&e)))?;
                }
                conn.abort();
            }
        }
        file.flush().await.map_err(|e| format!("cannot store the source: {}", crate::os_error::words(&e)))?;
        Ok((written, coding))
    }
}
