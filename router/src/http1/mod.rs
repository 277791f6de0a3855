//! HTTP/1.1 as the router speaks it on both sides (RFC 9112), written here rather than taken
//! from hyper (ARCHITECTURE.md, "The router's HTTP core: by measurement"), laid out as hyper's
//! `proto::h1` is: message heads in, message heads out, and bodies. These modules know the
//! protocol, not the proxy: the server loop (`server/http1.rs`) and the exchange with a dyno
//! (`dyno_client.rs`) use them.

pub(crate) mod decode;
pub(crate) mod encode;
pub(crate) mod request_head;
pub(crate) mod response_head;
