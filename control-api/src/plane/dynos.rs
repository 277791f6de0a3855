//! Dynos: endpoints an external runtime registers, and restarts the local supervisor is asked
//! for (through [`super::local`]'s broadcast).

use wharf_domain::timestamp::now_seconds;
use wharf_domain::{DynoName, DynoType, Hostname, new_id};

use super::engine::ControlPlane;
use super::error::{Error, not_found};
use super::local::Restart;
use crate::model::{Change, Dyno, Kind, Object};

impl ControlPlane {
    /// Registers or replaces a dyno's endpoint, as an external orchestrator does. Returns the
    /// dyno and whether it is new.
    pub async fn put_dyno(
        &self,
        app: &str,
        name: DynoName,
        dyno_type: DynoType,
        host: Hostname,
        port: u16,
    ) -> Result<(Dyno, bool), Error> {
        if name.dyno_type() != dyno_type.as_str() {
            return Err(Error::Invalid(format!(
                "dyno {name} is not of type {dyno_type}: its name starts with its type"
            )));
        }
        if port == 0 {
            return Err(Error::Invalid("port must be between 1 and 65535".into()));
        }
        self.change(|m| {
            let a = m.app(app).ok_or_else(|| not_found("app", app))?;
            let now = now_seconds();
            let existing = m.dyno(a.id, name.as_str());
            let dyno = Dyno {
                id: existing.map_or_else(new_id, |d| d.id),
                app_id: a.id,
                name,
                dyno_type,
                host,
                port,
                created_at: existing.map_or(now, |d| d.created_at),
                updated_at: now,
            };
            if existing == Some(&dyno) {
                return Ok(((dyno, false), vec![]));
            }
            let created = existing.is_none();
            Ok(((dyno.clone(), created), vec![Change::Put(Object::Dyno(dyno))]))
        })
        .await
    }

    /// Removes a registered dyno.
    pub async fn delete_dyno(&self, app: &str, dyno: &str) -> Result<Dyno, Error> {
        self.change(|m| {
            let a = m.app(app).ok_or_else(|| not_found("app", app))?;
            let d = m.dyno(a.id, dyno).ok_or_else(|| not_found("dyno", dyno))?.clone();
            let id = d.id;
            Ok((d, m.cascade(Kind::Dyno, id)))
        })
        .await
    }

    /// Whether the local supervisor runs this app: its formation has a command.
    pub async fn supervised(&self, app: &str) -> Result<bool, Error> {
        self.read(|m| {
            let a = m.app(app).ok_or_else(|| not_found("app", app))?;
            Ok(m.formation_of(a.id).iter().any(|f| f.command.is_some()))
        })
        .await
    }

    /// Asks the local supervisor to restart an app's dynos: all of them, rolling, or one (of
    /// any type). Refused for apps an external runtime runs, which restarts its own dynos.
    pub async fn restart_dynos(&self, app: &str, dyno: Option<&str>) -> Result<(), Error> {
        let restart = self
            .read(|m| {
                let a = m.app(app).ok_or_else(|| not_found("app", app))?;
                if !m.formation_of(a.id).iter().any(|f| f.command.is_some()) {
                    return Err(Error::Invalid(format!(
                        "the dynos of {} are run by an external runtime: restart them there",
                        m.app_key(a)
                    )));
                }
                if let Some(d) = dyno
                    && m.dyno(a.id, d).is_none()
                    && self.local_runtime().dyno(a.id, d).is_none()
                {
                    return Err(not_found("dyno", d));
                }
                Ok(Restart { app_id: a.id, dyno: dyno.map(str::to_owned) })
            })
            .await?;
        self.local_runtime().restart(restart);
        Ok(())
    }
}
