//! An app's formation: how many dynos of each type it runs, and how (Heroku's formation
//! resource). The local supervisor runs the entries that have a command. A change of a command,
//! port or health check is a release (see `releases`), made in the same commit; a change of
//! quantity alone is not, as on Heroku.

use wharf_domain::timestamp::now_seconds;
use wharf_domain::{DynoType, new_id};

use super::engine::ControlPlane;
use super::error::{Error, not_found};
use super::releases::{formation_description, processes_of};
use crate::model::{Change, Formation, Kind, Object};

/// The longest command a process may run, in bytes: one rule for every command Wharf takes (a
/// formation entry's, a slug's process types, a `Procfile` line, a one-off dyno's), so that no
/// way in accepts a command another refuses. 8 KiB is ample for `sh -c` and far below the
/// kernel's argument limit (`ARG_MAX`, 2 MiB on Linux).
pub const MAX_COMMAND: usize = 8192;

/// Checks a command by the one rule: 1 to [`MAX_COMMAND`] bytes, not blank, with no NUL byte
/// (a process's arguments are C strings, so a NUL could never reach `sh`). The error is the
/// rule, for the caller to say which command broke it.
pub(super) fn check_command(command: &str) -> Result<(), String> {
    if command.trim().is_empty() || command.len() > MAX_COMMAND || command.contains('\0') {
        return Err(format!("must be 1 to {MAX_COMMAND} bytes, not blank, with no NUL byte"));
    }
    Ok(())
}

/// How many dynos of a type to run: a number, or a change to the current number (the Heroku
/// CLI's `ps:scale web+1` and `web-1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantity {
    /// Exactly this many.
    Exactly(u32),
    /// The current number (0 for a type the formation does not have yet) plus this.
    Change(i64),
}

/// The dyno sizes formation entries may ask for, from the configuration
/// (`[control_api] dyno_sizes`), and the size of an entry that names none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynoSizes {
    sizes: Vec<wharf_config::DynoSize>,
    default: String,
}

impl DynoSizes {
    /// The sizes as configured; `default` is one of them (the configuration checks it).
    pub fn new(sizes: &[wharf_config::DynoSize], default: &str) -> DynoSizes {
        DynoSizes { sizes: sizes.to_vec(), default: default.to_owned() }
    }

    /// The size named `name`, without regard to case (as Heroku takes `standard-2x`).
    pub fn find(&self, name: &str) -> Option<&wharf_config::DynoSize> {
        self.sizes.iter().find(|s| s.name.eq_ignore_ascii_case(name))
    }

    /// The size of an entry that names none, as configured.
    pub fn default_size(&self) -> &str {
        self.find(&self.default).map_or(self.default.as_str(), |s| s.name.as_str())
    }

    /// The size an entry has: its own, or the default.
    pub fn of<'a>(&'a self, size: Option<&'a str>) -> &'a str {
        size.unwrap_or_else(|| self.default_size())
    }

    /// Every size's name, in the configured order.
    pub fn names(&self) -> Vec<&str> {
        self.sizes.iter().map(|s| s.name.as_str()).collect()
    }
}

impl Default for DynoSizes {
    /// Heroku's sizes, as `wharf serve` has them without configuration.
    fn default() -> Self {
        let c = wharf_config::ControlApiConfig::default();
        DynoSizes::new(&c.dyno_sizes, &c.default_dyno_size)
    }
}

/// A change to one dyno type of an app's formation: what is given is set.
#[derive(Debug, Clone)]
pub struct FormationUpdate {
    /// The dyno type.
    pub dyno_type: DynoType,
    /// How many dynos.
    pub quantity: Option<Quantity>,
    /// The command.
    pub command: Option<String>,
    /// The port of a web dyno.
    pub port: Option<u16>,
    /// The health check path of a web dyno.
    pub healthcheck: Option<String>,
    /// The dyno size, one of the configured [`DynoSizes`] (any case).
    pub size: Option<String>,
}

impl ControlPlane {
    /// Changes an app's formation, all of it or nothing: each update sets what it gives on its
    /// dyno type, which is added when the app does not have it yet. Returns the updated entries.
    pub async fn update_formation(&self, app: &str, updates: Vec<FormationUpdate>) -> Result<Vec<Formation>, Error> {
        for (i, u) in updates.iter().enumerate() {
            if updates[..i].iter().any(|o| o.dyno_type == u.dyno_type) {
                return Err(Error::Invalid(format!("dyno type {} is updated twice", u.dyno_type)));
            }
            if let Some(Quantity::Exactly(q)) = u.quantity {
                self.check_quantity(&u.dyno_type, q.into())?;
            }
            if let Some(c) = &u.command {
                check_command(c).map_err(|rule| Error::Invalid(format!("the {} command {rule}", u.dyno_type)))?;
            }
            if u.port == Some(0) {
                return Err(Error::Invalid("port must be between 1 and 65535".into()));
            }
            if let Some(h) = &u.healthcheck
                && (!h.starts_with('/') || h.len() > 1024 || !h.bytes().all(|c| c.is_ascii_graphic()))
            {
                return Err(Error::Invalid(format!("healthcheck must be a path such as /health, got {h:?}")));
            }
        }
        if updates.is_empty() {
            return Err(Error::Invalid("updates must name at least one dyno type".into()));
        }
        // Sizes are stored as configured, whatever the case they were given in.
        let sizes = &self.settings.dyno_sizes;
        let mut updates = updates;
        for u in &mut updates {
            if let Some(size) = &u.size {
                let found = sizes.find(size).ok_or_else(|| {
                    Error::Invalid(format!("unknown dyno size {size:?}: one of {}", sizes.names().join(", ")))
                })?;
                u.size = Some(found.name.clone());
            }
        }
        self.change(|m| {
            let a = m.app(app).ok_or_else(|| not_found("app", app))?;
            let now = now_seconds();
            let existing = m.formation_of(a.id);
            let mut out = Vec::new();
            for u in &updates {
                let mut f = match existing.iter().find(|f| f.dyno_type == u.dyno_type) {
                    Some(f) => (*f).clone(),
                    None => Formation {
                        id: new_id(),
                        app_id: a.id,
                        dyno_type: u.dyno_type.clone(),
                        quantity: 1,
                        command: None,
                        port: None,
                        healthcheck: None,
                        size: None,
                        created_at: now,
                        updated_at: now,
                    },
                };
                f.quantity = match u.quantity {
                    None => f.quantity,
                    Some(Quantity::Exactly(q)) => q,
                    Some(Quantity::Change(by)) => {
                        let had = existing.iter().find(|f| f.dyno_type == u.dyno_type).map_or(0, |f| f.quantity);
                        let q = i64::from(had).saturating_add(by);
                        self.check_quantity(&u.dyno_type, q)?;
                        u32::try_from(q).expect("checked to be within 0 and the most")
                    }
                };
                f.command = u.command.clone().or(f.command);
                f.port = u.port.or(f.port);
                f.healthcheck = u.healthcheck.clone().or(f.healthcheck);
                f.size = u.size.clone().or(f.size);
                f.updated_at = now;
                out.push(f);
            }
            super::canary_guards::refuse_baseline_scaled_away(m, a, &out)?;
            let mut changes: Vec<Change> = out.iter().cloned().map(|f| Change::Put(Object::Formation(f))).collect();
            let before = processes_of(existing.iter().copied());
            let after =
                processes_of(existing.iter().copied().filter(|f| !out.iter().any(|o| o.id == f.id)).chain(out.iter()));
            if let Some(description) = formation_description(&before, &after) {
                super::canary_releases::refuse_during_canary(m, a.id)?;
                super::canary_releases::refuse_unjudged_commands(m, a)?;
                let vars = m.config_vars_of(a.id).map(|c| c.vars.clone()).unwrap_or_default();
                changes.push(self.new_release(m, a.id, description, vars, after));
            }
            Ok((out, changes))
        })
        .await
    }

    /// Refuses a quantity outside 0 and the configured most.
    fn check_quantity(&self, dyno_type: &DynoType, q: i64) -> Result<(), Error> {
        if (0..=i64::from(self.settings.max_quantity)).contains(&q) {
            return Ok(());
        }
        Err(Error::Invalid(format!(
            "quantity of {dyno_type} must be between 0 and {}, got {q}",
            self.settings.max_quantity
        )))
    }

    /// Removes a dyno type from an app's formation; a release when it had a command, port or
    /// health check (`Remove worker process`).
    pub async fn delete_formation(&self, app: &str, dyno_type: &str) -> Result<Formation, Error> {
        self.change(|m| {
            let a = m.app(app).ok_or_else(|| not_found("app", app))?;
            let f = m.formation_of(a.id).into_iter().find(|f| f.dyno_type.as_str() == dyno_type).cloned();
            let f = f.ok_or_else(|| not_found("formation", dyno_type))?;
            let id = f.id;
            let mut changes = m.cascade(Kind::Formation, id);
            let existing = m.formation_of(a.id);
            let before = processes_of(existing.iter().copied());
            let after = processes_of(existing.iter().copied().filter(|e| e.id != id));
            if let Some(description) = formation_description(&before, &after) {
                super::canary_releases::refuse_during_canary(m, a.id)?;
                super::canary_releases::refuse_unjudged_commands(m, a)?;
                let vars = m.config_vars_of(a.id).map(|c| c.vars.clone()).unwrap_or_default();
                changes.push(self.new_release(m, a.id, description, vars, after));
            }
            Ok((f, changes))
        })
        .await
    }
}
