//! The PostgreSQL store: the SQLite store's records and version, shared by several control-API
//! replicas, with a log of recent commits and a notification on each so that every replica
//! follows what the others commit.
//!
//! Writers take turns through a row lock on the version ([`Store::begin`]): a replica takes it,
//! catches up from the log, computes its operation on the latest state and commits, so versions
//! only grow and no operation is computed on a stale state. Each commit sends `NOTIFY wharf_changes`
//! in its own transaction; a separate connection listens, and the plane also polls, so a
//! notification lost with a broken connection delays a replica by one poll, never forever.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, Client, GenericClient, IsolationLevel};
use wharf_config::DatabaseUrl;

use super::{Committed, Loaded, Store, StoreError, decode, decode_changes, encode, encode_changes};
use crate::model::Change;

/// Commits kept in the log for replicas to catch up from; one further behind loads everything.
const LOG_KEPT: i64 = 10_000;

/// Longest a store operation may take, waiting for the write lock included, before it fails and
/// its connection is dropped (which ends its transaction on the server): nothing waits forever on
/// a database that stopped answering.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

/// Connection timeout when the URL gives none (`connect_timeout=`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The channel commits notify on.
const CHANNEL: &str = "wharf_changes";

/// Key of the advisory lock that keeps two replicas from migrating at once.
const MIGRATION_LOCK: i64 = 0x7768_6172_6600_0001;

/// Schema migrations, applied in order; the position in this list is the schema version. Table
/// names carry a `wharf_` prefix so that the database can be shared with other software.
const MIGRATIONS: &[&str] = &[
    // 1: records as JSON documents, the version, and the log of recent commits.
    "CREATE TABLE wharf_objects (kind TEXT NOT NULL, id TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (kind, id));
     CREATE TABLE wharf_meta (version BIGINT NOT NULL);
     INSERT INTO wharf_meta (version) VALUES (0);
     CREATE TABLE wharf_changes (version BIGINT PRIMARY KEY, body TEXT NOT NULL);",
    // 2: a keyed fingerprint of each secret the replicas share ([`PostgresStore::check_secrets`]),
    // never the secret. A database from before has none: the first replica to start records them.
    "CREATE TABLE wharf_secrets (name TEXT PRIMARY KEY, salt TEXT NOT NULL, fingerprint TEXT NOT NULL);",
];

/// A secret's fingerprint as `wharf_secrets` keeps it: HMAC-SHA256, keyed with the row's random
/// salt, of the secret's name, a NUL and the secret, in hex. The salt makes one database's
/// fingerprints useless against another's; the secrets themselves are random (at least 16
/// characters, Wharf's own 48 hex digits), so no guessing from a fingerprint is practical.
fn fingerprint(salt: &str, name: &str, secret: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, salt.as_bytes());
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(name.as_bytes());
    ctx.update(b"\0");
    ctx.update(secret.as_bytes());
    ctx.sign().as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn pg(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> StoreError {
    move |error| StoreError::Postgres { context, error }
}

/// The PostgreSQL store.
pub struct PostgresStore {
    config: tokio_postgres::Config,
    tls: tls::MakeRustls,
    runtime: Handle,
    /// The connection commits and reads use; reconnected when it breaks.
    conn: Option<Conn>,
    changed: Arc<Notify>,
    listener: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The configuration holds the password.
        f.debug_struct("PostgresStore").field("hosts", &self.config.get_hosts()).finish_non_exhaustive()
    }
}

/// A connection, and whether it holds the write lock in an open transaction.
struct Conn {
    client: Client,
    in_tx: bool,
}

impl Conn {
    /// Ends a transaction left open by an operation that did not finish.
    async fn end_stale(&mut self) -> Result<(), StoreError> {
        if self.in_tx {
            self.client.batch_execute("ROLLBACK").await.map_err(pg("roll back"))?;
            self.in_tx = false;
        }
        Ok(())
    }

    /// Opens a transaction and waits for the write lock: the version row, locked in the order
    /// replicas ask for it. Returns the version.
    async fn lock(&mut self) -> Result<u64, StoreError> {
        self.in_tx = true;
        self.client.batch_execute("BEGIN").await.map_err(pg("begin"))?;
        let row = self.client.query_one("SELECT version FROM wharf_meta FOR UPDATE", &[]).await;
        Ok(row.map_err(pg("lock version"))?.get::<_, i64>(0) as u64)
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl PostgresStore {
    /// Connects, brings the schema up to date, and starts listening for other replicas'
    /// commits. `ca` is a PEM file trusted beside the system's trust store for the server's TLS.
    pub async fn connect(url: &DatabaseUrl, ca: Option<&Path>) -> Result<PostgresStore, StoreError> {
        let mut config: tokio_postgres::Config = url.expose().parse().map_err(pg("URL"))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        // A server gone without a word (a partition, a dead host) is noticed within a minute
        // rather than the kernel's two hours.
        config.keepalives_idle(Duration::from_secs(30));
        let tls = tls::MakeRustls::new(ca)?;
        let client = connect(&config, &tls).await?;
        migrate(&client).await?;
        let changed = Arc::new(Notify::new());
        let listener = tokio::spawn(listen(config.clone(), tls.clone(), changed.clone()));
        let conn = Some(Conn { client, in_tx: false });
        Ok(PostgresStore { config, tls, runtime: Handle::current(), conn, changed, listener })
    }

    /// Checks each of `secrets` (its name, as `router-token`, and its value) against the
    /// fingerprint the first replica on this database recorded (HMAC-SHA256 under a random salt per row), recording it
    /// when there is none yet (a new database, or one from before fingerprints). Returns the
    /// names of the secrets that differ from the recorded ones, in the order given; the values
    /// are never stored, logged or returned. Replicas that disagree on a secret answer each
    /// other's tokens with 401 (or sign log session URLs the others refuse), so a control API
    /// that gets any name back must not start. Errors when the database fails.
    pub async fn check_secrets<'a>(&self, secrets: &[(&'a str, &str)]) -> Result<Vec<&'a str>, StoreError> {
        let client = &self.conn.as_ref().expect("a store is made with a connection").client;
        let mut differ = Vec::new();
        for &(name, secret) in secrets {
            let salt: String = wharf_domain::random_bytes::<16>().iter().map(|b| format!("{b:02x}")).collect();
            // Two replicas starting at once: the first insert wins, and both compare with it.
            client
                .execute(
                    "INSERT INTO wharf_secrets (name, salt, fingerprint) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
                    &[&name, &salt, &fingerprint(&salt, name, secret)],
                )
                .await
                .map_err(pg("record a secret's fingerprint"))?;
            let row = client
                .query_one("SELECT salt, fingerprint FROM wharf_secrets WHERE name = $1", &[&name])
                .await
                .map_err(pg("read a secret's fingerprint"))?;
            let (salt, recorded): (String, String) = (row.get(0), row.get(1));
            let same: bool =
                subtle::ConstantTimeEq::ct_eq(fingerprint(&salt, name, secret).as_bytes(), recorded.as_bytes()).into();
            if !same {
                differ.push(name);
            }
        }
        Ok(differ)
    }

    /// Runs `f` on a live connection, connecting again first if the last one broke (which
    /// also ended any transaction it had open).
    fn with_conn<T>(&mut self, f: impl AsyncFnOnce(&mut Conn) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let runtime = self.runtime.clone();
        let result = runtime.block_on(async {
            tokio::time::timeout(OPERATION_TIMEOUT, async {
                if self.conn.as_ref().is_none_or(|c| c.client.is_closed()) {
                    self.conn = None;
                    self.conn = Some(Conn { client: connect(&self.config, &self.tls).await?, in_tx: false });
                }
                f(self.conn.as_mut().expect("connected")).await
            })
            .await
        });
        match result {
            Ok(r) => r,
            Err(_) => {
                self.conn = None;
                Err(StoreError::Timeout(OPERATION_TIMEOUT))
            }
        }
    }
}

async fn connect(config: &tokio_postgres::Config, tls: &tls::MakeRustls) -> Result<Client, StoreError> {
    let (client, connection) = config.connect(tls.clone()).await.map_err(pg("connect"))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %error_text(&e), "database connection broke; the next operation reconnects");
        }
    });
    // Should a replica stall while it holds the write lock, the server ends its session rather
    // than keep every other replica waiting.
    client.batch_execute("SET idle_in_transaction_session_timeout = '60s'").await.map_err(pg("set session timeout"))?;
    Ok(client)
}

/// The commits after `version`, up to `current`, from the log; `None` when the log no longer
/// holds them all.
async fn read_log(
    client: &impl GenericClient,
    version: u64,
    current: u64,
) -> Result<Option<Vec<Committed>>, StoreError> {
    if current <= version {
        // Equal: nothing new. Lower: the database was replaced by an older one; what this
        // replica holds is newer, and it keeps serving that.
        return Ok(Some(Vec::new()));
    }
    let rows = client
        .query("SELECT version, body FROM wharf_changes WHERE version > $1 ORDER BY version", &[&(version as i64)])
        .await
        .map_err(pg("read log"))?;
    let mut out = Vec::with_capacity(rows.len());
    for (expected, row) in (version + 1..).zip(&rows) {
        let (v, body): (i64, String) = (row.get(0), row.get(1));
        if v as u64 != expected {
            return Ok(None);
        }
        let changes = decode_changes(&body).map_err(|message| StoreError::Corrupt {
            kind: "log".into(),
            id: v.to_string(),
            message,
        })?;
        out.push(Committed { version: expected, changes });
    }
    if out.last().map(|c| c.version) != Some(current) {
        return Ok(None);
    }
    Ok(Some(out))
}

/// A read-only transaction that sees one state of the database throughout.
async fn begin_read(client: &mut Client) -> Result<tokio_postgres::Transaction<'_>, StoreError> {
    let tx = client.build_transaction().isolation_level(IsolationLevel::RepeatableRead).read_only(true);
    tx.start().await.map_err(pg("begin"))
}

/// The stored version, as the client's transaction sees it.
async fn stored_version(client: &impl GenericClient) -> Result<u64, StoreError> {
    let row = client.query_one("SELECT version FROM wharf_meta", &[]).await.map_err(pg("read version"))?;
    Ok(row.get::<_, i64>(0) as u64)
}

/// Every record and the version, read by a client inside a consistent transaction.
async fn read_all(client: &impl GenericClient) -> Result<Loaded, StoreError> {
    let version = stored_version(client).await?;
    let rows = client.query("SELECT kind, id, body FROM wharf_objects", &[]).await.map_err(pg("read records"))?;
    let mut objects = Vec::with_capacity(rows.len());
    for row in rows {
        let (kind, id, body): (String, String, String) = (row.get(0), row.get(1), row.get(2));
        let object = decode(&kind, &body).map_err(|message| StoreError::Corrupt { kind, id, message })?;
        objects.push(object);
    }
    Ok(Loaded { version, objects })
}

async fn migrate(client: &Client) -> Result<(), StoreError> {
    client.batch_execute("BEGIN").await.map_err(pg("begin migration"))?;
    let result = async {
        // Replicas starting together take turns; `IF NOT EXISTS` alone races.
        client.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await.map_err(pg("lock"))?;
        client
            .batch_execute("CREATE TABLE IF NOT EXISTS wharf_schema (version INTEGER NOT NULL)")
            .await
            .map_err(pg("create schema table"))?;
        let row = client.query_opt("SELECT version FROM wharf_schema", &[]).await.map_err(pg("read schema"))?;
        let current: i32 = row.map_or(0, |r| r.get(0));
        let latest = MIGRATIONS.len() as i32;
        if current > latest {
            return Err(StoreError::TooNew(current.into(), latest.into()));
        }
        for step in MIGRATIONS.iter().skip(current as usize) {
            client.batch_execute(step).await.map_err(pg("migrate"))?;
        }
        client.execute("DELETE FROM wharf_schema", &[]).await.map_err(pg("record schema version"))?;
        client
            .execute("INSERT INTO wharf_schema (version) VALUES ($1)", &[&latest])
            .await
            .map_err(pg("record schema version"))?;
        Ok(())
    }
    .await;
    let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
    client.batch_execute(end).await.map_err(pg("commit migration"))?;
    result
}

/// Listens for commits, on its own connection, waking `changed` for each and once after every
/// (re)connection, for what was committed while it was away.
///
/// A database that stays down is reported once (a warning when the connection is lost or the
/// first connection fails, and a line with the outage's length when it listens again), not at
/// every attempt: the 5 s poll covers the meantime, and the engine logs the outage itself. Tries
/// again with backoff up to [`LISTEN_BACKOFF_MAX`], so that other replicas' changes are heard
/// again within about that long of the database's return.
async fn listen(config: tokio_postgres::Config, tls: tls::MakeRustls, changed: Arc<Notify>) {
    let mut backoff = Duration::from_millis(100);
    // When the listener last lost its connection (or first failed to make one): set for as long
    // as it does not listen.
    let mut deaf_since: Option<std::time::Instant> = None;
    let mut failing = false;
    loop {
        match config.connect(tls.clone()).await {
            Ok((client, mut connection)) => {
                let changed_by_others = changed.clone();
                let messages = tokio::spawn(async move {
                    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(message) = messages.next().await {
                        match message {
                            Ok(AsyncMessage::Notification(_)) => changed_by_others.notify_one(),
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!(error = %error_text(&e), "lost the database connection that hears other replicas' changes; connecting again");
                                break;
                            }
                        }
                    }
                });
                match client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
                    Ok(()) => {
                        backoff = Duration::from_millis(100);
                        failing = false;
                        changed.notify_one();
                        if let Some(since) = deaf_since.take() {
                            let after_ms = since.elapsed().as_millis() as u64;
                            tracing::info!(after_ms, "hearing other replicas' changes again");
                        }
                    }
                    Err(e) => tracing::warn!(error = %error_text(&e), "cannot listen for other replicas' changes"),
                }
                let _ = messages.await;
                drop(client);
                deaf_since.get_or_insert_with(std::time::Instant::now);
            }
            Err(e) if !failing => {
                failing = true;
                deaf_since.get_or_insert_with(std::time::Instant::now);
                tracing::warn!(error = %error_text(&e), "cannot connect to hear other replicas' changes; trying again with backoff (up to 2 s), quietly until it works");
            }
            Err(e) => tracing::debug!(error = %error_text(&e), "cannot connect to hear other replicas' changes"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(LISTEN_BACKOFF_MAX);
    }
}

/// The longest wait between the listener's attempts to connect: short, as other replicas' changes
/// are late by up to this much after the database's return (the 5 s poll bounds it too).
const LISTEN_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// A PostgreSQL client error with what the server said: tokio-postgres shows a server's error
/// only as "db error", its message and code being the error's source.
fn error_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {} ({})", e, db.message(), db.code().code()),
        None => match std::error::Error::source(e) {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        },
    }
}

impl Store for PostgresStore {
    fn load(&mut self) -> Result<Loaded, StoreError> {
        self.with_conn(async |conn| {
            if conn.in_tx {
                // The write lock is held: nothing can change underneath.
                return read_all(&conn.client).await;
            }
            let tx = begin_read(&mut conn.client).await?;
            let loaded = read_all(&tx).await?;
            tx.commit().await.map_err(pg("end read"))?;
            Ok(loaded)
        })
    }

    fn begin(&mut self, version: u64) -> Result<Option<Vec<Committed>>, StoreError> {
        self.with_conn(async |conn| {
            conn.end_stale().await?;
            let current = conn.lock().await?;
            read_log(&conn.client, version, current).await
        })
    }

    fn abort(&mut self) {
        // A connection that broke ended its transaction, and the lock with it: there is nothing
        // to release, and trying would only connect again to a database that is likely down
        // (a warning for every refused request while it is).
        if self.conn.as_ref().is_none_or(|c| c.client.is_closed()) {
            return;
        }
        if let Err(e) = self.with_conn(async |conn| conn.end_stale().await) {
            tracing::warn!(error = %e, "cannot release the database write lock; the server ends the transaction after its idle_in_transaction_session_timeout (60 s)");
        }
    }

    fn commit(&mut self, base: u64, changes: &[Change]) -> Result<u64, StoreError> {
        self.with_conn(async |conn| {
            let found = if conn.in_tx { stored_version(&conn.client).await? } else { conn.lock().await? };
            if found != base {
                return Err(StoreError::Conflict { expected: base, found });
            }
            let client = &conn.client;
            let put = client
                .prepare(
                    "INSERT INTO wharf_objects (kind, id, body) VALUES ($1, $2, $3)
                     ON CONFLICT (kind, id) DO UPDATE SET body = excluded.body",
                )
                .await
                .map_err(pg("prepare write"))?;
            let delete = client
                .prepare("DELETE FROM wharf_objects WHERE kind = $1 AND id = $2")
                .await
                .map_err(pg("prepare delete"))?;
            // The statements are sent together (pipelined) rather than one round trip each: a
            // commit of ten thousand sites takes one wait, not ten thousand.
            let writes = changes.iter().map(|change| {
                let (put, delete) = (&put, &delete);
                async move {
                    match change {
                        Change::Put(object) => {
                            let (kind, id) = object.key();
                            let body = encode(object);
                            client.execute(put, &[&kind.as_str(), &id.to_string(), &body]).await
                        }
                        Change::Delete(kind, id) => client.execute(delete, &[&kind.as_str(), &id.to_string()]).await,
                    }
                }
            });
            futures_util::future::try_join_all(writes).await.map_err(pg("write records"))?;
            let version = base as i64 + 1;
            client
                .execute(
                    "INSERT INTO wharf_changes (version, body) VALUES ($1, $2)",
                    &[&version, &encode_changes(changes)],
                )
                .await
                .map_err(pg("write log"))?;
            client
                .execute("DELETE FROM wharf_changes WHERE version <= $1", &[&(version - LOG_KEPT)])
                .await
                .map_err(pg("trim log"))?;
            client.execute("UPDATE wharf_meta SET version = $1", &[&version]).await.map_err(pg("write version"))?;
            // Delivered to listeners when, and only if, the transaction commits.
            client
                .execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &version.to_string()])
                .await
                .map_err(pg("notify"))?;
            client.batch_execute("COMMIT").await.map_err(pg("commit"))?;
            conn.in_tx = false;
            Ok(version as u64)
        })
    }

    fn changes_since(&mut self, version: u64) -> Result<Option<Vec<Committed>>, StoreError> {
        self.with_conn(async |conn| {
            conn.end_stale().await?;
            let tx = begin_read(&mut conn.client).await?;
            let current = stored_version(&tx).await?;
            let steps = read_log(&tx, version, current).await?;
            tx.commit().await.map_err(pg("end read"))?;
            Ok(steps)
        })
    }

    fn changed(&self) -> Option<Arc<Notify>> {
        Some(self.changed.clone())
    }
}

/// TLS to the database server with rustls, verified against the system's trust store and an optional
/// CA of the operator's.
///
/// Written here rather than taken from `tokio-postgres-rustls`: that crate always builds SCRAM
/// channel binding, which pulls `x509-cert`, `der`, `spki` and `const-oid` into the build (the
/// workspace parses certificates with `x509-parser` already), and pins its own `tokio-rustls`
/// and `rustls` versions that would have to move in step with ours. Channel binding is not
/// needed (see `Stream::channel_binding`), and the adapter is these ninety lines.
mod tls {
    use std::path::Path;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::task::{Context, Poll};

    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
    use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};
    use tokio_rustls::TlsConnector;

    use crate::store::StoreError;

    /// Makes a verified TLS connection per server name.
    #[derive(Clone)]
    pub(super) struct MakeRustls(Arc<rustls::ClientConfig>);

    impl MakeRustls {
        pub(super) fn new(ca: Option<&Path>) -> Result<MakeRustls, StoreError> {
            let configured = match ca {
                Some(ca) => wharf_domain::cert::read_ca(ca).map_err(|e| StoreError::Tls(e.to_string()))?,
                None => Vec::new(),
            };
            let roots = wharf_domain::trust::roots(&configured).map_err(|e| {
                StoreError::Tls(format!("{}: {e}", ca.map_or_else(Default::default, |ca| ca.display().to_string())))
            })?;
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| StoreError::Tls(e.to_string()))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Ok(MakeRustls(Arc::new(config)))
        }
    }

    impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> MakeTlsConnect<S> for MakeRustls {
        type Stream = Stream<S>;
        type TlsConnect = Connect;
        type Error = rustls::pki_types::InvalidDnsNameError;

        fn make_tls_connect(&mut self, domain: &str) -> Result<Connect, Self::Error> {
            let name = rustls::pki_types::ServerName::try_from(domain.to_owned())?;
            Ok(Connect { config: self.0.clone(), name })
        }
    }

    /// One connection's TLS handshake.
    pub(super) struct Connect {
        config: Arc<rustls::ClientConfig>,
        name: rustls::pki_types::ServerName<'static>,
    }

    impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> TlsConnect<S> for Connect {
        type Stream = Stream<S>;
        type Error = std::io::Error;
        type Future = Pin<Box<dyn Future<Output = std::io::Result<Stream<S>>> + Send>>;

        fn connect(self, stream: S) -> Self::Future {
            Box::pin(async move {
                let server = format!("the database at {}", self.name.to_str());
                let tls = TlsConnector::from(self.config).connect(self.name, stream).await.map_err(|e| {
                    let words = wharf_domain::trust::handshake_error(&e, &server, "control_api.database_ca");
                    std::io::Error::new(e.kind(), words)
                })?;
                Ok(Stream(tls))
            })
        }
    }

    /// A TLS stream to the database server.
    pub(super) struct Stream<S>(tokio_rustls::client::TlsStream<S>);

    impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for Stream<S> {
        fn channel_binding(&self) -> ChannelBinding {
            // SCRAM works without channel binding; the verified certificate is what binds
            // the session to the server.
            ChannelBinding::none()
        }
    }

    impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Stream<S> {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.0).poll_read(cx, buf)
        }
    }

    impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Stream<S> {
        fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
            Pin::new(&mut self.0).poll_write(cx, buf)
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.0).poll_flush(cx)
        }
        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.0).poll_shutdown(cx)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fingerprint;

    /// A fingerprint is the same for the same salt, name and secret, and differs when any of
    /// them does (a name or secret moved across the separator too); it never holds the secret.
    #[test]
    fn a_fingerprint_changes_with_its_salt_name_and_secret() {
        let base = fingerprint("salt", "router-token", "0123456789abcdef");
        assert_eq!(base, fingerprint("salt", "router-token", "0123456789abcdef"));
        assert_eq!(base.len(), 64, "SHA-256 in hex");
        assert!(!base.contains("0123456789abcdef"));
        for (salt, name, secret) in [
            ("SALT", "router-token", "0123456789abcdef"),
            ("salt", "admin-token", "0123456789abcdef"),
            ("salt", "router-token", "0123456789abcdeF"),
            ("salt", "router-token0", "123456789abcdef"),
        ] {
            assert_ne!(base, fingerprint(salt, name, secret), "{salt} {name} {secret}");
        }
    }
}
