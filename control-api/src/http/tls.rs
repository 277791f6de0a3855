//! The control API over HTTPS: a rustls server configuration from the operator's PEM files
//! (`[control_api] tls_cert` and `tls_key`), and [`TlsListener`], a listener `axum::serve`
//! takes in place of a `TcpListener`.
//!
//! The feed carries certificates' private keys and drain credentials, and every request a
//! bearer token, so a control API that remote data planes reach across a network serves HTTPS.
//! Handshakes run each in a task of their own, so that a client that stalls in its handshake
//! holds up nobody else's connection, and each has [`HANDSHAKE_TIMEOUT`] to finish.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a client has to complete its TLS handshake before its connection is closed.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the control API's certificate could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A file is not what it should be: no PEM certificate, no PEM key, or a key that is not
    /// the certificate's.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong with it.
        message: String,
    },
}

/// A rustls server configuration serving the chain in `cert` (PEM, leaf first) with the key
/// in `key` (PEM: PKCS #8, PKCS #1 or SEC1), over HTTP/1.1 (ALPN `http/1.1`), TLS 1.2 and 1.3.
///
/// # Errors
///
/// [`TlsError::Read`] when a file cannot be read, [`TlsError::Invalid`] when the chain holds
/// no certificate, the key file no key, or the key does not match the leaf.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let read = |p: &Path| std::fs::read(p).map_err(|source| TlsError::Read { path: p.display().to_string(), source });
    let invalid = |p: &Path, message: String| TlsError::Invalid { path: p.display().to_string(), message };
    let chain = CertificateDer::pem_slice_iter(&read(cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(cert, format!("not a PEM certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(invalid(cert, "holds no PEM certificate".into()));
    }
    let private_key =
        PrivateKeyDer::from_pem_slice(&read(key)?).map_err(|e| invalid(key, format!("not a PEM private key: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(cert, e.to_string()))?
        .with_no_client_auth()
        // rustls checks that the key is the leaf's (`CertifiedKey::from_der`).
        .with_single_cert(chain, private_key)
        .map_err(|e| invalid(key, format!("not usable with {}: {e}", cert.display())))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A TCP listener whose connections come out of a TLS handshake: what `axum::serve` accepts
/// from it are TLS streams. Dropping it stops accepting and closes the listening socket.
#[derive(Debug)]
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    acceptor: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Accepts on `tcp` and hands over each connection whose handshake under `config`
    /// succeeded; failed and timed-out handshakes are logged at debug and closed.
    ///
    /// # Errors
    ///
    /// When the listener's local address cannot be read.
    pub fn new(tcp: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let tls = TlsAcceptor::from(config);
        let acceptor = tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors, say: give the process a moment rather than
                        // spinning on the same error (axum's own loop waits a second).
                        tracing::warn!(error = %e, "control api cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let (tls, tx) = (tls.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            let _ = tx.send((stream, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "control api tls handshake failed"),
                        Err(_) => tracing::debug!(%peer, "control api tls handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { ready, local, acceptor })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The acceptor task only ends when aborted, by dropping this listener.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
