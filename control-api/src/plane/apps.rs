//! Spaces and apps: creating them, and deleting an app with everything that depends on it
//! ([`Model::cascade`]).

use wharf_domain::timestamp::now_seconds;
use wharf_domain::{AppName, SpaceName, new_id};

use super::engine::ControlPlane;
use super::error::{Error, not_found};
use crate::model::{App, Change, Compliance, Kind, Object, Space};

impl ControlPlane {
    /// Creates a space.
    pub async fn create_space(&self, name: SpaceName, mut compliance: Vec<Compliance>) -> Result<Space, Error> {
        compliance.sort();
        compliance.dedup();
        self.change(|m| {
            if m.space(name.as_str()).is_some() {
                return Err(Error::Conflict(format!("space {name} already exists")));
            }
            let now = now_seconds();
            let space = Space { id: new_id(), name, compliance, created_at: now, updated_at: now };
            Ok((space.clone(), vec![Change::Put(Object::Space(space))]))
        })
        .await
    }

    /// Creates an app in a space (by id or name).
    pub async fn create_app(&self, name: AppName, space: &str) -> Result<App, Error> {
        self.change(|m| {
            let space = m.space(space).ok_or_else(|| not_found("space", space))?;
            let key = wharf_domain::AppKey::new(&name, &space.name);
            if m.app_by_key(&key).is_some() {
                return Err(Error::Conflict(format!("app {key} already exists")));
            }
            let domain = self.default_domain(&key);
            if m.site(&domain).is_some() {
                return Err(Error::Conflict(format!("site {domain} already uses the app's default domain")));
            }
            let now = now_seconds();
            let app = App { id: new_id(), name, space_id: space.id, created_at: now, updated_at: now };
            Ok((app.clone(), vec![Change::Put(Object::App(app))]))
        })
        .await
    }

    /// Deletes an app with everything that depends on it: dynos, drains, routes, canaries (as
    /// either app), formation and config vars ([`crate::model::Model::cascade`]).
    pub async fn delete_app(&self, app: &str) -> Result<App, Error> {
        self.change(|m| {
            let a = m.app(app).ok_or_else(|| not_found("app", app))?.clone();
            let changes = m.cascade(Kind::App, a.id);
            Ok((a, changes))
        })
        .await
    }
}
