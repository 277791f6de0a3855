//! Dynos: endpoints an external runtime registers, and restarts the local supervisor is asked
//! for (through [`super::local`]'s broadcast).
//!
//! A dyno is named by its own name (`web.1` as an external runtime registered it, or
//! `web.N-xxxxx` as the local supervisor runs it), by its id, or, as Heroku names dynos, by
//! `type.N`: the dyno of that type the local supervisor runs with index N. Every running dyno of a formation
//! entry has one index, 1 to N (the supervisor's `formation` keeps them so), which is also the
//! `N` of its name, of its runtime metrics lines' `source=type.N`, and what `heroku ps` shows:
//! after `web.1` restarts, its replacement is `web.1` again, and after a deploy the app has
//! `web.1` to `web.N` again.

use uuid::Uuid;
use wharf_domain::timestamp::now_seconds;
use wharf_domain::{DynoName, DynoType, Hostname, new_id};

use super::engine::ControlPlane;
use super::error::{Error, not_found};
use super::local::{DynoRelease, OneOff, Restart};
use crate::model::{Change, Dyno, Kind, Model, Object};

/// What [`ControlPlane::delete_or_restart_dyno`] did.
#[derive(Debug)]
pub enum DynoDeletion {
    /// The supervisor was asked to restart the dyno (Heroku's `DELETE` of a dyno).
    Restarted,
    /// The dyno's registration was removed; it is returned.
    Removed(Dyno),
}

impl ControlPlane {
    /// Registers or replaces a dyno's endpoint, as an external orchestrator does. Returns the
    /// dyno and whether it is new. This is the local supervisor's own way in too (it registers
    /// its healthy web dynos); a registration through the API goes through
    /// [`Self::register_dyno`], which refuses what only the supervisor may do.
    pub async fn put_dyno(
        &self,
        app: &str,
        name: DynoName,
        dyno_type: DynoType,
        host: Hostname,
        port: u16,
    ) -> Result<(Dyno, bool), Error> {
        self.put_dyno_if(app, name, dyno_type, host, port, |_, _| Ok(())).await
    }

    /// `PUT /apps/{app}/dynos/{dyno}`: [`Self::put_dyno`] for an external orchestrator or an
    /// operator, refused (409, and nothing changes) where it would stand beside what this
    /// process's supervisor runs unlike it: under the name of a dyno the supervisor runs (the
    /// supervisor registers those itself, after their health check), and on an app the
    /// supervisor runs whose `canary` feature is on (a hand-registered endpoint would take a
    /// share of its requests with code no canary judged; `canary_guards.rs`). An app the
    /// supervisor runs may otherwise have endpoints registered beside its dynos; they are routed
    /// to as any, removed by `DELETE`, and by the next `wharf serve` start, which removes every
    /// registration of the apps it runs (they are taken for a dead run's).
    pub async fn register_dyno(
        &self,
        app: &str,
        name: DynoName,
        dyno_type: DynoType,
        host: Hostname,
        port: u16,
    ) -> Result<(Dyno, bool), Error> {
        let runs = |a: &crate::model::App, name: &DynoName| self.local_runtime().dyno(a.id, name.as_str()).is_some();
        let named = name.clone();
        self.put_dyno_if(app, name, dyno_type, host, port, |m, a| {
            if runs(a, &named) {
                return Err(Error::Conflict(format!(
                    "dyno {named} of {} is run by this Wharf's supervisor, which registers it itself once it is \
                     healthy: register an endpoint under another name",
                    m.app_key(a)
                )));
            }
            let supervised = self.local.get().is_some() && m.formation_of(a.id).iter().any(|f| f.command.is_some());
            super::canary_guards::refuse_unjudged_registration(m, a, supervised)
        })
        .await
    }

    /// [`Self::put_dyno`], once `check` passes on the model the change commits on.
    async fn put_dyno_if(
        &self,
        app: &str,
        name: DynoName,
        dyno_type: DynoType,
        host: Hostname,
        port: u16,
        check: impl Fn(&Model, &crate::model::App) -> Result<(), Error>,
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
            check(m, a)?;
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

    /// `DELETE /apps/{app}/dynos/{dyno}`: restarts the dyno when this process's supervisor runs
    /// it (by its name or Heroku's `type.N`), or removes its registration when it is only
    /// registered (an external runtime's, or one registered by hand beside the supervisor's
    /// dynos: the router stops sending it requests with the next snapshot). For a name neither
    /// knows, 404.
    pub async fn delete_or_restart_dyno(&self, app: &str, dyno: &str) -> Result<DynoDeletion, Error> {
        let registration_only = self
            .read(|m| {
                let a = m.app(app).ok_or_else(|| not_found("app", app))?;
                let name = self.dyno_name(m, a.id, dyno);
                let runs = name.as_deref().is_some_and(|n| self.local_runtime().dyno(a.id, n).is_some());
                Ok::<_, Error>(!runs && name.is_some_and(|n| m.dyno(a.id, &n).is_some()))
            })
            .await?;
        if registration_only || !self.supervised(app).await? {
            return self.delete_dyno(app, dyno).await.map(DynoDeletion::Removed);
        }
        self.restart_dynos(app, Some(dyno)).await.map(|()| DynoDeletion::Restarted)
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

    /// Removes the registrations of app `app_id`'s dynos `names` in one change, so that the
    /// router drops them all with one snapshot; names not registered are skipped. The local
    /// supervisor's way to take every web dyno of a failed roll out of the router at once.
    pub async fn delete_dynos(&self, app_id: Uuid, names: &[String]) -> Result<(), Error> {
        self.change(|m| {
            let ids: Vec<Uuid> = names.iter().filter_map(|n| m.dyno(app_id, n).map(|d| d.id)).collect();
            Ok(((), ids.into_iter().flat_map(|id| m.cascade(Kind::Dyno, id)).collect()))
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

    /// The name of the app's dyno that `name` means, as Heroku's `dyno_id_or_name` does: a
    /// registered dyno's name or id, or the name or id (as the API shows it, [`local_dyno_id`])
    /// of a dyno the local supervisor runs, else Heroku's `type.N`: the local dyno of that type
    /// with index N (see the module comment), N written as Heroku writes it (`web.01` and
    /// `web.+1` are no dyno). While a roll runs, an old and a new dyno share an index: `type.N`
    /// is the newer, which keeps the index once the roll is done: the one on the newer release,
    /// else the one started later (`started_at` is in seconds: a tie within one second, a
    /// restart's roll started as its dynos came up, goes by name).
    pub fn dyno_name(&self, m: &Model, app_id: Uuid, name: &str) -> Option<String> {
        if let Some(d) = m.dyno(app_id, name) {
            return Some(d.name.to_string());
        }
        let local = self.local_runtime().dynos(app_id);
        if local.iter().any(|d| d.name == name) {
            return Some(name.to_owned());
        }
        if let Ok(id) = name.parse::<Uuid>() {
            return local.into_iter().find(|d| local_dyno_id(app_id, &d.name) == id).map(|d| d.name);
        }
        let (dyno_type, n) = name.split_once('.')?;
        if n.starts_with('0') || !n.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let n: u32 = n.parse().ok()?;
        let mut indexed: Vec<_> =
            local.into_iter().filter(|d| d.dyno_type.as_str() == dyno_type && d.index == Some(n)).collect();
        let newer = |d: &super::local::LocalDyno| (d.release.map(|r| r.version), d.started_at, d.launched);
        indexed.sort_by_key(newer);
        indexed.pop().map(|d| d.name)
    }

    /// Heroku's `DELETE /apps/{app}/dynos/{type}` and `POST /apps/{app}/dynos/{type}/actions/stop`,
    /// what the Heroku CLI sends for `ps:restart worker` and `ps:stop worker`: when `dyno` names
    /// no dyno ([`Self::dyno_name`]) but is a type of the app's (its formation's, or a running dyno's: `run` for one-offs), restarts every dyno
    /// of that type as [`Self::restart_dyno_type`] does (and is refused as it is) and returns
    /// how many; `None` when `dyno` is not such a type, for the caller to address one dyno.
    pub async fn restart_type_named(&self, app: &str, dyno: &str) -> Result<Option<usize>, Error> {
        let is_type = self
            .read(|m| {
                let a = m.app(app).ok_or_else(|| not_found("app", app))?;
                let named = self.dyno_name(m, a.id, dyno).is_some();
                Ok::<_, Error>(!named && self.has_type(m, a.id, dyno))
            })
            .await?;
        if !is_type {
            return Ok(None);
        }
        self.restart_dyno_type(app, dyno).await.map(Some)
    }

    /// Asks the local supervisor to restart an app's dynos: all of them, rolling, or one (of
    /// any type, by its name or Heroku's `type.N`). Refused for apps an external runtime runs,
    /// which restarts its own dynos.
    pub async fn restart_dynos(&self, app: &str, dyno: Option<&str>) -> Result<(), Error> {
        let restart = self
            .read(|m| {
                let a = self.supervised_app(m, app)?;
                let dyno = match dyno {
                    Some(d) => Some(self.dyno_name(m, a, d).ok_or_else(|| not_found("dyno", d))?),
                    None => None,
                };
                Ok::<_, Error>(Restart { app_id: a, dyno })
            })
            .await?;
        self.local_runtime().restart(restart);
        Ok(())
    }

    /// Asks the local supervisor to restart every dyno of one type (Heroku's
    /// `DELETE /apps/{app}/formations/{type}`), each at once rather than rolling; returns how
    /// many. A one-off (`run`, as the Heroku CLI's `ps:stop --process-type run` asks) or a
    /// release phase is stopped, as a restart of it by name does. Refused as
    /// [`Self::restart_dynos`] is, and for a type neither the app's formation nor a running dyno
    /// has.
    pub async fn restart_dyno_type(&self, app: &str, dyno_type: &str) -> Result<usize, Error> {
        let (app_id, names) = self
            .read(|m| {
                let a = self.supervised_app(m, app)?;
                if !self.has_type(m, a, dyno_type) {
                    return Err(not_found("formation", dyno_type));
                }
                let local = self.local_runtime().dynos(a);
                Ok((
                    a,
                    local.into_iter().filter(|d| d.dyno_type.as_str() == dyno_type).map(|d| d.name).collect::<Vec<_>>(),
                ))
            })
            .await?;
        for name in &names {
            self.local_runtime().restart(Restart { app_id, dyno: Some(name.clone()) });
        }
        Ok(names.len())
    }

    /// Whether app `app_id` has dynos of type `dyno_type`: its formation has the type, or the
    /// local supervisor runs a dyno of it (one-offs are `run`, release phases `release`).
    fn has_type(&self, m: &Model, app_id: Uuid, dyno_type: &str) -> bool {
        m.formation_of(app_id).iter().any(|f| f.dyno_type.as_str() == dyno_type)
            || self.local_runtime().dynos(app_id).iter().any(|d| d.dyno_type.as_str() == dyno_type)
    }

    /// Runs a one-off dyno of the app under the local supervisor (Heroku's `run:detached`):
    /// `command` with `sh -c`, the app's config vars and `env` on top, output in the app's log
    /// stream as `run.N`. `size`, when given, must be a configured size (it is shown, not
    /// enforced, as for formation dynos). Returns the dyno's name. Refused (422) for a command or
    /// variable name a formation or config var would refuse, and when this process runs no dynos.
    pub async fn run_detached(
        &self,
        app: &str,
        command: &str,
        env: std::collections::BTreeMap<String, String>,
        size: Option<&str>,
    ) -> Result<String, Error> {
        super::formation::check_command(command).map_err(|rule| Error::Invalid(format!("the command {rule}")))?;
        for (name, value) in &env {
            super::config_vars::check_var(name, Some(value))?;
        }
        if let Some(size) = size
            && self.settings.dyno_sizes.find(size).is_none()
        {
            let names = self.settings.dyno_sizes.names().join(", ");
            return Err(Error::Invalid(format!("unknown dyno size {size:?}: one of {names}")));
        }
        let one_off = self
            .read(|m| {
                let a = m.app(app).ok_or_else(|| not_found("app", app))?;
                // The current release (Heroku's rule for one-off dynos), code and config vars: the
                // one the formation dynos run (`Model::current_release`), not one still pending in
                // its release phase, its roll or its canary, nor one that failed and runs nowhere.
                // Its code is run as its formation dynos run it (an image is never run here).
                let running = m.current_release(a.id);
                let mut vars = match running {
                    Some(r) => r.config_vars.clone(),
                    None => m.config_vars_of(a.id).map(|c| c.vars.clone()).unwrap_or_default(),
                };
                vars.extend(env);
                let size = size.and_then(|s| self.settings.dyno_sizes.find(s)).map(|s| s.name.clone());
                let release = running.map(|r| DynoRelease { id: r.id, version: r.version });
                let slug = running.and_then(|r| r.slug_id).filter(|id| m.slug(*id).is_some_and(|s| s.image.is_none()));
                let (app, command) = (m.app_key(a).to_string(), command.to_owned());
                Ok::<_, Error>(OneOff { app_id: a.id, app, command, env: vars, size, release, slug })
            })
            .await?;
        self.local_runtime().run(one_off).ok_or_else(|| {
            Error::Invalid(
                "this control API runs no dynos itself: one-off dynos run under wharf serve's supervisor".into(),
            )
        })
    }

    /// The id of an app the local supervisor runs (a formation command, or a one-off dyno
    /// running); refused for an app an external runtime runs.
    fn supervised_app(&self, m: &Model, app: &str) -> Result<Uuid, Error> {
        let a = m.app(app).ok_or_else(|| not_found("app", app))?;
        let commands = m.formation_of(a.id).iter().any(|f| f.command.is_some());
        if !commands && self.local_runtime().dynos(a.id).is_empty() {
            return Err(Error::Invalid(format!(
                "the dynos of {} are run by an external runtime: restart them there",
                m.app_key(a)
            )));
        }
        Ok(a.id)
    }
}

/// The id the API shows for a dyno the local supervisor runs that is not registered: derived
/// (SHA-256, as a version 8 UUID) from its app's id and its name, which is unique among the
/// app's running dynos, so the same dyno has the same id in every listing, a client may key
/// dynos by id, and [`ControlPlane::dyno_name`] finds the dyno by it.
pub fn local_dyno_id(app_id: Uuid, name: &str) -> Uuid {
    let mut input = app_id.as_bytes().to_vec();
    input.extend_from_slice(name.as_bytes());
    let digest = ring::digest::digest(&ring::digest::SHA256, &input);
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest.as_ref()[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}
