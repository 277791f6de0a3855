//! The client's side of a request: which listener its connection arrived on, and the facts about
//! the connection that every request on it shares.

use std::net::SocketAddr;

use http::HeaderValue;

use crate::forwarding;
use crate::settings::Settings;

/// What kind of listener a connection arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// Plain HTTP: every request is redirected to HTTPS.
    Http,
    /// Public HTTPS: never serves internal sites or apps.
    Https,
    /// Internal HTTPS: serves only internal sites and apps.
    Internal,
}

/// Facts about a client connection that every request on it shares.
#[derive(Debug)]
pub(crate) struct ClientConnection {
    /// The client's address.
    pub(crate) peer: SocketAddr,
    /// The listener it connected to.
    pub(crate) listener: Listener,
    /// The client's address as text, formatted once for all of the connection's requests.
    pub(crate) peer_ip: HeaderValue,
    /// The platform's fields that are the same for every request on the connection
    /// ([`forwarding::connection_fields`]).
    pub(crate) fixed_fields: Box<[u8]>,
}

impl ClientConnection {
    /// A connection from `peer` accepted on `listener`, whose local port is `local_port`.
    pub(crate) fn new(peer: SocketAddr, listener: Listener, local_port: u16, settings: &Settings) -> Self {
        let peer_ip = HeaderValue::try_from(peer.ip().to_string()).expect("an IP address is a valid header value");
        // The port clients see: behind a port mapping, the public HTTPS port is not the local one.
        let port = match listener {
            Listener::Https => settings.https_port,
            Listener::Http | Listener::Internal => local_port,
        };
        let fixed_fields = forwarding::connection_fields(listener != Listener::Http, port);
        ClientConnection { peer, listener, peer_ip, fixed_fields }
    }

    /// The `Strict-Transport-Security` value responses on this connection carry when they set
    /// none of their own (RFC 6797): the configured one on HTTPS, none on plain HTTP.
    pub(crate) fn hsts<'a>(&self, settings: &'a Settings) -> Option<&'a HeaderValue> {
        if self.listener == Listener::Http { None } else { settings.hsts.as_ref() }
    }
}
