//! Durable storage of the control plane's records: an embedded SQLite database by default, or
//! PostgreSQL ([`postgres`]) shared by several control-API replicas.
//!
//! Records are stored as JSON documents keyed by kind and id, beside one version counter. A
//! commit writes a whole operation's changes and the new version in one transaction, and only
//! if the stored version is the one the operation was computed against, so a commit can never
//! silently overwrite a change it did not see.

pub mod postgres;

use std::path::Path;
use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, params};

use crate::model::{Change, Object};

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("database {context}: {source}")]
    Sqlite {
        /// What was being done.
        context: &'static str,
        /// The database's error.
        source: rusqlite::Error,
    },
    /// The database file's permissions could not be restricted to its owner.
    #[error("cannot restrict the database file to its owner: {0}")]
    Permissions(std::io::Error),
    /// The stored version moved since the operation read it.
    #[error("stored version is {found}, expected {expected}")]
    Conflict {
        /// The version the operation was computed against.
        expected: u64,
        /// The version found.
        found: u64,
    },
    /// A stored record does not decode.
    #[error("stored {kind} {id} is unreadable: {message}")]
    Corrupt {
        /// The record's kind.
        kind: String,
        /// The record's id.
        id: String,
        /// Why.
        message: String,
    },
    /// PostgreSQL failed.
    #[error("database {context}: {}", with_causes(.error))]
    Postgres {
        /// What was being done.
        context: &'static str,
        /// The database's error. Its text is in the message, causes included ("db error" alone
        /// says nothing), so it is not also given as the source.
        error: tokio_postgres::Error,
    },
    /// The database did not answer in time; the connection was dropped.
    #[error("database did not answer within {0:?}")]
    Timeout(std::time::Duration),
    /// The database's TLS settings could not be used.
    #[error("database TLS: {0}")]
    Tls(String),
    /// The database was written by a newer Wharf.
    #[error("database schema version {0} is newer than this wharf understands ({1})")]
    TooNew(i64, i64),
}

/// An error's message followed by those of its causes.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

fn sql(context: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| StoreError::Sqlite { context, source }
}

/// Everything stored, as loaded at start.
#[derive(Debug)]
pub struct Loaded {
    /// The version of the last commit.
    pub version: u64,
    /// Every record.
    pub objects: Vec<Object>,
}

/// Where the control plane keeps its records.
pub trait Store: Send + 'static {
    /// Reads every record and the current version.
    fn load(&mut self) -> Result<Loaded, StoreError>;
    /// Writes `changes` as version `base + 1`, atomically, if the stored version is `base`.
    fn commit(&mut self, base: u64, changes: &[Change]) -> Result<u64, StoreError>;
    /// Takes the store's write lock, held until the next `commit` or `abort`, and returns what
    /// other writers committed after `version`, as [`Store::changes_since`] does. A store with
    /// one writer has no lock to take.
    fn begin(&mut self, version: u64) -> Result<Option<Vec<Committed>>, StoreError> {
        self.changes_since(version)
    }
    /// Releases the write lock `begin` took, committing nothing.
    fn abort(&mut self) {}
    /// What other writers committed after `version`, in order; `None` when the store no longer
    /// has every step, and the caller must load everything again. A store with one writer has
    /// nothing to report.
    fn changes_since(&mut self, _version: u64) -> Result<Option<Vec<Committed>>, StoreError> {
        Ok(Some(Vec::new()))
    }
    /// Woken when another writer may have committed; `None` for a store with one writer.
    fn changed(&self) -> Option<Arc<tokio::sync::Notify>> {
        None
    }
}

/// One commit: its version and what it changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The version it made.
    pub version: u64,
    /// Its changes.
    pub changes: Vec<Change>,
}

/// Schema migrations, applied in order; the position in this list is the schema version.
const MIGRATIONS: &[&str] = &[
    // 1: records as JSON documents, and the version counter.
    "CREATE TABLE objects (kind TEXT NOT NULL, id TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (kind, id));
     CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
     INSERT INTO meta (key, value) VALUES ('version', 0);",
];

/// The embedded SQLite store.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and brings its schema up to date.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let conn = Connection::open(path).map_err(sql("open"))?;
        // Certificates' private keys live here: only the owner may read the file. SQLite gives
        // its journal files the database's permissions.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(StoreError::Permissions)?;
        SqliteStore::init(conn)
    }

    /// A database in memory, for tests.
    pub fn in_memory() -> Result<SqliteStore, StoreError> {
        SqliteStore::init(Connection::open_in_memory().map_err(sql("open"))?)
    }

    fn init(conn: Connection) -> Result<SqliteStore, StoreError> {
        // WAL keeps readers off the writer's back; FULL sync makes every commit survive a power
        // cut, which control-plane write rates easily afford.
        conn.pragma_update(None, "journal_mode", "WAL").map_err(sql("set journal mode"))?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(sql("set synchronous"))?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(sql("set busy timeout"))?;
        let mut store = SqliteStore { conn };
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let tx = self.conn.transaction().map_err(sql("begin migration"))?;
        let current: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(sql("read schema version"))?;
        let latest = MIGRATIONS.len() as i64;
        if current > latest {
            return Err(StoreError::TooNew(current, latest));
        }
        for (i, step) in MIGRATIONS.iter().enumerate().skip(current as usize) {
            tx.execute_batch(step).map_err(sql("migrate"))?;
            tx.pragma_update(None, "user_version", i as i64 + 1).map_err(sql("record schema version"))?;
        }
        tx.commit().map_err(sql("commit migration"))
    }
}

impl Store for SqliteStore {
    fn load(&mut self) -> Result<Loaded, StoreError> {
        let version: i64 = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'version'", [], |r| r.get(0))
            .map_err(sql("read version"))?;
        let mut stmt = self.conn.prepare("SELECT kind, id, body FROM objects").map_err(sql("read records"))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))
            .map_err(sql("read records"))?;
        let mut objects = Vec::new();
        for row in rows {
            let (kind, id, body) = row.map_err(sql("read records"))?;
            let object = decode(&kind, &body).map_err(|message| StoreError::Corrupt { kind, id, message })?;
            objects.push(object);
        }
        Ok(Loaded { version: version as u64, objects })
    }

    fn commit(&mut self, base: u64, changes: &[Change]) -> Result<u64, StoreError> {
        let tx = self.conn.transaction().map_err(sql("begin"))?;
        let found: i64 = tx
            .query_row("SELECT value FROM meta WHERE key = 'version'", [], |r| r.get(0))
            .optional()
            .map_err(sql("read version"))?
            .unwrap_or(0);
        if found as u64 != base {
            return Err(StoreError::Conflict { expected: base, found: found as u64 });
        }
        for change in changes {
            match change {
                Change::Put(object) => {
                    let (kind, id) = object.key();
                    tx.execute(
                        "INSERT INTO objects (kind, id, body) VALUES (?1, ?2, ?3)
                         ON CONFLICT (kind, id) DO UPDATE SET body = excluded.body",
                        params![kind.as_str(), id.to_string(), encode(object)],
                    )
                    .map_err(sql("write record"))?;
                }
                Change::Delete(kind, id) => {
                    tx.execute(
                        "DELETE FROM objects WHERE kind = ?1 AND id = ?2",
                        params![kind.as_str(), id.to_string()],
                    )
                    .map_err(sql("delete record"))?;
                }
            }
        }
        let version = base + 1;
        tx.execute("UPDATE meta SET value = ?1 WHERE key = 'version'", params![version as i64])
            .map_err(sql("write version"))?;
        tx.commit().map_err(sql("commit"))?;
        Ok(version)
    }
}

/// The stored body of a record: its fields as JSON, without the kind (which is a column).
fn encode(object: &Object) -> String {
    let value = serde_json::to_value(object).expect("records serialize");
    value.get("body").expect("objects are tagged with a body").to_string()
}

fn decode(kind: &str, body: &str) -> Result<Object, String> {
    let body: serde_json::Value = serde_json::from_str(body).map_err(|e| e.to_string())?;
    serde_json::from_value(serde_json::json!({ "kind": kind, "body": body })).map_err(|e| e.to_string())
}

/// A commit's changes as stored in a log of commits.
fn encode_changes(changes: &[Change]) -> String {
    serde_json::to_string(changes).expect("changes serialize")
}

fn decode_changes(body: &str) -> Result<Vec<Change>, String> {
    serde_json::from_str(body).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Kind, Space};

    fn space(name: &str) -> Object {
        Object::Space(Space {
            id: wharf_domain::new_id(),
            name: name.parse().unwrap(),
            compliance: vec![],
            created_at: 1,
            updated_at: 1,
        })
    }

    #[test]
    fn commits_survive_reopening() {
        let dir = std::env::temp_dir().join(format!("wharf-store-{}", wharf_domain::new_id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("wharf.db");
        let (a, b) = (space("a"), space("b"));
        {
            let mut s = SqliteStore::open(&path).unwrap();
            assert_eq!(s.commit(0, &[Change::Put(a.clone()), Change::Put(b.clone())]).unwrap(), 1);
            assert_eq!(s.commit(1, &[Change::Delete(Kind::Space, b.key().1)]).unwrap(), 2);
        }
        let loaded = SqliteStore::open(&path).unwrap().load().unwrap();
        assert_eq!((loaded.version, loaded.objects), (2, vec![a]));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_stale_commit_changes_nothing() {
        let mut s = SqliteStore::in_memory().unwrap();
        s.commit(0, &[Change::Put(space("a"))]).unwrap();
        let err = s.commit(0, &[Change::Put(space("b"))]).unwrap_err();
        assert!(matches!(err, StoreError::Conflict { expected: 0, found: 1 }), "{err}");
        let loaded = s.load().unwrap();
        assert_eq!((loaded.version, loaded.objects.len()), (1, 1));
    }

    #[test]
    fn changes_read_back_as_written() {
        let a = space("a");
        let changes = vec![Change::Put(a.clone()), Change::Delete(Kind::ConfigVars, a.key().1)];
        let text = encode_changes(&changes);
        assert!(text.contains("\"config_vars\""), "kinds are stored by their names: {text}");
        assert_eq!(decode_changes(&text).unwrap(), changes);
        assert!(decode_changes("[{\"put\": 1}]").is_err());
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        let err = SqliteStore::init(conn).unwrap_err();
        assert!(matches!(err, StoreError::TooNew(99, _)), "{err}");
    }
}
