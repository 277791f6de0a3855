//! The control API: the REST interface operators and tools drive, the durable state behind it,
//! and the snapshots it publishes to the router and the logshuttle.
//!
//! Layers, from the edge in: [`http`] (the route table, auth, and one module per resource over
//! the shared [`http::wire`] types), [`plane`] (operations on typed values, and the commit
//! engine that makes them durable and publishes them), [`model`] (records, their tables, the
//! cascade of deletions, and the snapshot built from them), [`store`] (SQLite, or PostgreSQL
//! shared by replicas). [`watch`] is the other side of the feed: the client a remote router or
//! logshuttle follows the API with, and [`in_flight`] a remote router's requests at stopping dynos
//! (reported and kept) for the supervisor's wait. The local supervisor meets the plane through the
//! [`plane::local`] port.

#![forbid(unsafe_code)]

pub mod archive;
pub mod http;
pub mod in_flight;
pub mod model;
pub mod os_error;
pub mod plane;
pub mod store;
pub mod watch;

pub use http::{AdminToken, router};
pub use plane::{
    ControlPlane, DeploySettings, Drains, DynoRelease, DynoSizes, DynoState, Error, LocalDyno, LocalRuntime, OneOff,
    Restart, Settings, Settled,
};
pub use plane::{DynoMetrics, RequestMetrics};
pub use store::postgres::PostgresStore;
pub use store::{SqliteStore, Store, StoreError};

/// Serves `app` on `listener` (a `tokio::net::TcpListener` for plain HTTP, an
/// [`http::TlsListener`] for HTTPS) until `shutdown` resolves, then lets in-flight requests
/// finish.
pub async fn serve<L>(
    listener: L,
    app: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}
