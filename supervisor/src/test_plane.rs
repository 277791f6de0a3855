//! For unit tests: a control plane in memory with one app, `api-default`.

use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;
use wharf_control_api::{ControlPlane, Settings, SqliteStore};
use wharf_domain::SessionKey;

/// A control plane on an in-memory SQLite store with app `api-default`; returns it and the
/// app's id. Panics when the store cannot be opened (a test setup failure).
pub(crate) async fn api_default() -> (Arc<ControlPlane>, Uuid) {
    let settings = Settings {
        stack_domain: "localhost".into(),
        https_port: 8443,
        session_base_url: "http://127.0.0.1:1".into(),
        session_ttl: Duration::from_secs(60),
        max_session_lines: 100,
        max_quantity: 100,
        dyno_sizes: wharf_control_api::DynoSizes::default(),
    };
    let store = Box::new(SqliteStore::in_memory().unwrap());
    let plane = ControlPlane::open(store, settings, Arc::new(SessionKey::generate())).await.unwrap();
    let app = plane.create_app("api".parse().unwrap(), "default").await.unwrap();
    (Arc::new(plane), app.id)
}
