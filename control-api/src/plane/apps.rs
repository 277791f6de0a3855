//! Spaces and apps: creating them, and deleting an app with everything that depends on it
//! ([`Model::cascade`]).

use std::collections::BTreeMap;

use wharf_domain::timestamp::now_seconds;
use wharf_domain::{AppKey, AppName, SpaceName, new_id, random_bytes};

use super::engine::ControlPlane;
use super::error::{Error, not_found};
use super::releases::INITIAL_RELEASE;
use crate::model::{App, Change, Compliance, Kind, Model, Object, Space};

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
        self.create_app_named(Some(name), space).await
    }

    /// Creates an app in a space (by id or name). Without a name, Wharf picks an unused one,
    /// `app` and eight hex digits (as Heroku picks a name when the client gives none). The app
    /// starts with its release v1, `Initial release`, in the same commit.
    pub async fn create_app_named(&self, name: Option<AppName>, space: &str) -> Result<App, Error> {
        self.change(|m| {
            let space = m.space(space).ok_or_else(|| not_found("space", space))?;
            let name = match name {
                Some(name) => name,
                None => loop {
                    let candidate = generated_name();
                    if m.app_by_key(&AppKey::new(&candidate, &space.name)).is_none() {
                        break candidate;
                    }
                },
            };
            self.check_app_key_free(m, &AppKey::new(&name, &space.name))?;
            let now = now_seconds();
            let app = App {
                id: new_id(),
                name,
                space_id: space.id,
                maintenance: false,
                maintenance_page: None,
                created_at: now,
                updated_at: now,
            };
            let mut release = self.new_release(m, app.id, INITIAL_RELEASE.to_owned(), BTreeMap::new(), vec![]);
            // Nothing comes before it: it is the app's whole state.
            super::releases::bring_code(&mut release, None);
            Ok((app.clone(), vec![Change::Put(Object::App(app)), release]))
        })
        .await
    }

    /// Renames an app within its space: its key, default domain and `web_url` follow. Refused
    /// (409) when the new key or its default domain is taken; renaming to the same name is a
    /// no-op that succeeds.
    pub async fn rename_app(&self, app: &str, name: AppName) -> Result<App, Error> {
        self.update_app(app, Some(name), None).await
    }

    /// Heroku's app update, in one commit: a new name (as [`ControlPlane::rename_app`]) and
    /// maintenance mode on or off. Either refusal changes nothing; what is not given is kept,
    /// and an update that changes nothing commits nothing.
    pub async fn update_app(&self, app: &str, name: Option<AppName>, maintenance: Option<bool>) -> Result<App, Error> {
        self.change(|m| {
            let a = m.app(app).ok_or_else(|| not_found("app", app))?;
            let mut updated = a.clone();
            if let Some(name) = name.filter(|n| *n != a.name) {
                self.check_app_key_free(m, &AppKey::new(&name, &m.app_space(a).name))?;
                updated.name = name;
            }
            if let Some(on) = maintenance {
                updated.maintenance = on;
            }
            if updated == *a {
                return Ok((updated, vec![]));
            }
            updated.updated_at = now_seconds();
            Ok((updated.clone(), vec![Change::Put(Object::App(updated))]))
        })
        .await
    }

    /// Refuses a key another app holds, or whose default domain a site holds.
    pub(super) fn check_app_key_free(&self, m: &Model, key: &AppKey) -> Result<(), Error> {
        if m.app_by_key(key).is_some() {
            return Err(Error::Conflict(format!("app {key} already exists")));
        }
        let domain = self.default_domain(key);
        if m.site(&domain).is_some() {
            return Err(Error::Conflict(format!("site {domain} already uses the app's default domain")));
        }
        Ok(())
    }

    /// Deletes an app with everything that depends on it: dynos, drains, routes, canaries (as
    /// either app), formation, config vars and releases ([`crate::model::Model::cascade`]).
    pub async fn delete_app(&self, app: &str) -> Result<App, Error> {
        self.change(|m| {
            let a = m.app(app).ok_or_else(|| not_found("app", app))?.clone();
            let changes = m.cascade(Kind::App, a.id);
            Ok((a, changes))
        })
        .await
    }
}

/// A random app name: `app` and eight lowercase hex digits, which [`AppName`] always accepts.
fn generated_name() -> AppName {
    let hex: String = random_bytes::<4>().iter().map(|b| format!("{b:02x}")).collect();
    AppName::try_new(&format!("app{hex}")).expect("app + hex digits is a valid app name")
}
