//! One HTTP/1.1 exchange with a URL a user gave Wharf (a maintenance page, a webhook): the host
//! resolved, every address checked against the outbound policy before one is dialled, TLS
//! verified for `https`. What `maintenance.rs` and the webhook deliveries share.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use wharf_domain::outbound::Policy;

/// Where to connect: the host as resolved (no brackets), its port, and whether to speak TLS.
#[derive(Debug, Clone, Copy)]
pub struct Destination<'a> {
    /// The host name or IP literal.
    pub host: &'a str,
    /// The port.
    pub port: u16,
    /// TLS, verified against `tls`'s roots, or plain TCP.
    pub https: bool,
}

/// Why an exchange did not happen: words for the URL's owner, and whether the outbound policy
/// refused every address the host has. That refusal is permanent (the same host is refused
/// until its addresses or the policy change), so a caller that retries (webhook deliveries)
/// stops at it rather than trying again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeError {
    /// What went wrong.
    pub message: String,
    /// Whether the policy refused the host's every address.
    pub refused: bool,
}

impl std::fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<String> for ExchangeError {
    fn from(message: String) -> Self {
        ExchangeError { message, refused: false }
    }
}

impl From<ExchangeError> for String {
    fn from(e: ExchangeError) -> String {
        e.message
    }
}

/// Sends `request` to `to` and returns the response head and the connection's task (abort it
/// once the body is read or abandoned). The error says why, in words for the URL's owner:
/// a name that does not resolve, only refused addresses (naming the policy's rule; marked
/// [`ExchangeError::refused`]), a failed connection or handshake.
pub async fn exchange(
    to: Destination<'_>,
    request: http::Request<http_body_util::Full<Bytes>>,
    policy: Policy,
    tls: Arc<rustls::ClientConfig>,
) -> Result<(http::Response<hyper::body::Incoming>, tokio::task::JoinHandle<()>), ExchangeError> {
    let host = to.host;
    let words = crate::os_error::words;
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host, to.port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {}", words(&e)))?
        .collect();
    let mut refused = None;
    let allowed: Vec<SocketAddr> = resolved
        .into_iter()
        .filter(|a| match policy.check(a.ip()) {
            Ok(()) => true,
            Err(e) => {
                refused.get_or_insert(e);
                false
            }
        })
        .collect();
    if allowed.is_empty() {
        return Err(match refused {
            Some(e) => ExchangeError { message: format!("{host} resolves to a refused address: {e}"), refused: true },
            None => format!("no address for {host}").into(),
        });
    }
    // The port is named too (RFC 3986's authority): a refused connection is most often the
    // wrong port.
    let authority = if host.contains(':') { format!("[{host}]:{}", to.port) } else { format!("{host}:{}", to.port) };
    let tcp = tokio::net::TcpStream::connect(&allowed[..])
        .await
        .map_err(|e| format!("could not connect to {authority}: {}", words(&e)))?;
    if to.https {
        let name = rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|e| format!("{host}: {e}"))?;
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .map_err(|e| wharf_domain::trust::handshake_error(&e, &authority, "control_api.trusted_ca"))?;
        Ok(send(hyper_util::rt::TokioIo::new(stream), request).await?)
    } else {
        Ok(send(hyper_util::rt::TokioIo::new(tcp), request).await?)
    }
}

async fn send<T>(
    io: T,
    request: http::Request<http_body_util::Full<Bytes>>,
) -> Result<(http::Response<hyper::body::Incoming>, tokio::task::JoinHandle<()>), String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.map_err(|e| format!("HTTP: {e}"))?;
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    match sender.send_request(request).await {
        Ok(response) => Ok((response, conn)),
        Err(e) => {
            conn.abort();
            Err(format!("HTTP: {e}"))
        }
    }
}
