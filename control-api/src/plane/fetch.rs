//! `GET` of a URL a user gives the control plane (maintenance pages, build sources): the URL's
//! rules, then one `GET` over HTTP/1.1 sent through `outbound_http` (every resolved address
//! checked against the outbound policy before it is dialled, TLS verified against the
//! system's trust store and `control_api.trusted_ca`), the exchange webhooks use too. Callers parse their own
//! URL rules (which schemes) and read the body with their own size cap and deadline; one that
//! follows redirects resolves each with [`redirect_target`], so that every hop meets the rules.

use std::sync::Arc;

use hyper::body::Incoming;
use wharf_domain::Hostname;
use wharf_domain::outbound::Policy;

/// Where a `GET` goes, as the caller's URL rules parsed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Target {
    /// Over TLS (`https`) or not (`http`).
    pub(super) https: bool,
    /// The host, without brackets for IPv6.
    pub(super) host: String,
    /// The port.
    pub(super) port: u16,
    /// The authority as the URL writes it: the request's `Host` (RFC 3986 section 3.2.2).
    pub(super) authority: String,
    /// The path and query.
    pub(super) path: String,
}

/// Parses an absolute `http` or `https` URL (`https_only` refuses `http`) into a [`Target`];
/// credentials in the URL are refused, as Wharf would have to keep them. The host must be a
/// DNS name or an IP literal under the rules every user's URL follows ([`Hostname`], which
/// refuses numeric forms such as `127.1`), and a literal must pass `policy` now
/// ([`Policy::check_host`]), before anything is dialled.
pub(super) fn parse_url(url: &str, https_only: bool, policy: &Policy) -> Result<Target, String> {
    // The scheme is judged before the rest, so that a URL of another scheme (`file:///etc/passwd`,
    // which has no authority for `http::Uri`) is refused for its scheme, not as "not a URL".
    let https = match scheme_of(url).map(str::to_ascii_lowercase).as_deref() {
        Some("https") => true,
        Some("http") if !https_only => false,
        Some(_) if https_only => return Err("only https URLs are fetched".into()),
        Some(_) => return Err("only http and https URLs are fetched".into()),
        None => return Err("not a URL: it has no scheme (such as https://)".into()),
    };
    let uri: http::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    let authority = uri.authority().ok_or("the URL has no host")?;
    if authority.as_str().contains('@') {
        return Err("credentials in the URL are not supported".into());
    }
    let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_owned();
    Hostname::try_new(&host).map_err(|_| format!("the host {host:?} is not a DNS name or an IP address"))?;
    policy.check_host(&host).map_err(|e| e.to_string())?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    Ok(Target { https, host, port, authority: authority.as_str().to_owned(), path })
}

/// A URL's scheme (RFC 3986 section 3.1: a letter, then letters, digits, `+`, `-` and `.`,
/// before the first `:`), or `None` when it has none.
fn scheme_of(url: &str) -> Option<&str> {
    let (scheme, _) = url.split_once(':')?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic() && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
        .then_some(scheme)
}

/// Most redirects a build source's `GET` follows (GitHub's archive URLs answer one, to
/// `codeload.github.com`).
pub(super) const MAX_REDIRECTS: usize = 5;

/// Where a redirect of a `GET` of `from` goes: its `Location` (an absolute URL, a
/// scheme-relative `//host/path` or an absolute path; RFC 9110 section 10.2.2) under
/// [`parse_url`]'s rules, where an `https` source never moves to `http` (a downgrade would
/// hand the rest of the exchange to anyone on the path). An IP literal must pass `policy` now,
/// and every host is checked again when it is dialled, as any.
pub(super) fn redirect_target(from: &Target, location: &str, policy: &Policy) -> Result<Target, String> {
    let scheme = if from.https { "https" } else { "http" };
    let absolute = if location.starts_with("//") {
        format!("{scheme}:{location}")
    } else if location.starts_with('/') {
        format!("{scheme}://{}{location}", from.authority)
    } else {
        location.to_owned()
    };
    parse_url(&absolute, from.https, policy)
        .map_err(|e| format!("the redirect to {:?} is not followed: {e}", shown(location)))
}

/// A URL as a build's output (and so the app's log stream) shows it: without its query and
/// fragment, which may hold a signature (a pre-signed S3 URL's `X-Amz-Signature`), and with
/// any userinfo (`user:password@`) replaced by `***@`. The source URL and every redirect
/// target are shown so.
pub(super) fn shown(url: &str) -> String {
    let url = url.split(['?', '#']).next().unwrap_or_default();
    // The authority runs from after `//` to the next `/`; userinfo ends at its last `@`.
    let (head, rest) = url.split_once("//").map_or(("", url), |(h, r)| (h, r));
    let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    let sep = if url.contains("//") { "//" } else { "" };
    match authority.rsplit_once('@') {
        Some((_, host)) => format!("{head}{sep}***@{host}{path}"),
        None => url.to_owned(),
    }
}

/// Sends `GET target` from an address the outbound policy allows and returns the response head
/// with its streaming body, and the connection's task (abort it when done with the body). The
/// error says why not, in words for the user who gave the URL.
pub(super) async fn get(
    target: &Target,
    policy: Policy,
    tls: Arc<rustls::ClientConfig>,
    accept: &str,
    user_agent: &str,
) -> Result<(http::Response<Incoming>, tokio::task::JoinHandle<()>), String> {
    let request = http::Request::get(target.path.as_str())
        .header(http::header::HOST, target.authority.as_str())
        .header(http::header::ACCEPT, accept)
        .header(http::header::USER_AGENT, user_agent)
        // The bytes as the server keeps them (RFC 9110 section 12.5.3): a server that honours
        // this compresses nothing on the fly, as for `curl` without `--compressed`.
        .header(http::header::ACCEPT_ENCODING, "identity")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .map_err(|e| format!("request: {e}"))?;
    let to = super::outbound_http::Destination { host: &target.host, port: target.port, https: target.https };
    super::outbound_http::exchange(to, request, policy, tls).await.map_err(String::from)
}

/// The content coding of a response's body (RFC 9110 section 8.4): what a server applied to
/// what it keeps, on the fly or because it was told to label the stored bytes so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Coding {
    /// No `Content-Encoding`, or `identity`: the body is the resource's bytes.
    Identity,
    /// `gzip` (or its old name `x-gzip`, RFC 9110 section 8.4.1.3), once.
    Gzip,
}

/// The [`Coding`] of a response, from its `Content-Encoding`; an error in words for any other
/// coding (`br`, `deflate`, `zstd`, two codings), which Wharf does not decode: it asks for
/// `identity`, and a server that sends such a body anyway sent something it was not asked for.
pub(super) fn coding(headers: &http::HeaderMap) -> Result<Coding, String> {
    let mut codings = Vec::new();
    for value in headers.get_all(http::header::CONTENT_ENCODING) {
        let text = value.to_str().map_err(|_| "the server's Content-Encoding is not text".to_owned())?;
        codings.extend(text.split(',').map(|c| c.trim().to_ascii_lowercase()).filter(|c| !c.is_empty()));
    }
    codings.retain(|c| c != "identity");
    match codings.as_slice() {
        [] => Ok(Coding::Identity),
        [one] if one == "gzip" || one == "x-gzip" => Ok(Coding::Gzip),
        _ => Err(format!(
            "the server sent the body with Content-Encoding: {}, which Wharf does not decode (it asks for \
             identity; gzip is decoded)",
            codings.join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_resolve_against_the_source_and_never_downgrade() {
        let policy = Policy::default();
        let http = parse_url("http://api.example.com:8080/repos/o/r/tarball/abc", false, &policy).unwrap();
        let https = parse_url("https://api.example.com/repos/o/r/tarball/abc", false, &policy).unwrap();
        let check = |from: &Target, location: &str, want: Result<&str, &str>| {
            let got = redirect_target(from, location, &policy);
            match (got, want) {
                (Ok(t), Ok(w)) => {
                    let scheme = if t.https { "https" } else { "http" };
                    assert_eq!(format!("{scheme}://{}{}", t.authority, t.path), w, "{location}");
                }
                (Err(e), Err(w)) => assert!(e.contains(w), "{location}: {e}"),
                (got, want) => panic!("{location}: {got:?}, expected {want:?}"),
            }
        };
        check(&https, "https://codeload.example.com/o/r/tar.gz/abc", Ok("https://codeload.example.com/o/r/tar.gz/abc"));
        check(&https, "//codeload.example.com/x", Ok("https://codeload.example.com/x"));
        check(&https, "/other?x=1", Ok("https://api.example.com/other?x=1"));
        check(&http, "/other", Ok("http://api.example.com:8080/other"));
        check(&http, "https://codeload.example.com/x", Ok("https://codeload.example.com/x"));
        check(&https, "http://codeload.example.com/x", Err("only https"));
        check(&http, "ftp://codeload.example.com/x", Err("only http and https"));
        check(&http, "http://user:pw@codeload.example.com/x", Err("credentials"));
        check(&http, "relative/path", Err("not followed"));
        // Another scheme is refused for its scheme, in those words (FE21b #9).
        check(&http, "file:///etc/passwd", Err("is not followed: only http and https URLs are fetched"));
        check(&https, "FILE:///etc/passwd", Err("is not followed: only https URLs are fetched"));
        // A literal the policy refuses (link-local: the cloud metadata address) is refused at once.
        check(&http, "http://169.254.169.254/latest", Err("not followed"));
        // What a refused redirect's message shows of its target (FE21b #8): no query, no
        // fragment, no credentials.
        check(&http, "http://169.254.169.254/x?X-Amz-Signature=SECRET123", Err("\"http://169.254.169.254/x\" is not"));
        check(&http, "http://u:p@codeload.example.com/x", Err("\"http://***@codeload.example.com/x\" is not"));
    }

    #[test]
    fn urls_are_shown_without_query_fragment_or_credentials() {
        for (url, want) in [
            ("https://s3.example.com/b/k.tgz?X-Amz-Signature=abc", "https://s3.example.com/b/k.tgz"),
            ("https://example.com/a#frag", "https://example.com/a"),
            ("http://user:pw@example.com/a?x", "http://***@example.com/a"),
            ("http://user@example.com", "http://***@example.com"),
            ("http://example.com/a@b", "http://example.com/a@b"),
            ("//u:p@example.com/x", "//***@example.com/x"),
            ("/relative/path?q", "/relative/path"),
            ("file:///tmp/a.tgz", "file:///tmp/a.tgz"),
        ] {
            assert_eq!(shown(url), want, "{url}");
        }
    }

    #[test]
    fn the_content_coding_is_identity_or_gzip_once_and_any_other_is_named() {
        let check = |values: &[&str], want: Result<Coding, &str>| {
            let mut headers = http::HeaderMap::new();
            for v in values {
                headers.append(http::header::CONTENT_ENCODING, v.parse().unwrap());
            }
            match (coding(&headers), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{values:?}"),
                (Err(e), Err(piece)) => assert!(e.contains(piece), "{values:?}: {e}"),
                (got, want) => panic!("{values:?}: {got:?}, expected {want:?}"),
            }
        };
        check(&[], Ok(Coding::Identity));
        check(&["identity"], Ok(Coding::Identity));
        check(&["gzip"], Ok(Coding::Gzip));
        check(&["GZip"], Ok(Coding::Gzip));
        check(&["x-gzip"], Ok(Coding::Gzip));
        check(&["identity, gzip"], Ok(Coding::Gzip));
        check(&["br"], Err("Content-Encoding: br, which Wharf does not decode"));
        check(&["deflate"], Err("Content-Encoding: deflate"));
        check(&["gzip, gzip"], Err("Content-Encoding: gzip, gzip"));
        check(&["gzip", "br"], Err("Content-Encoding: gzip, br"));
    }
}
