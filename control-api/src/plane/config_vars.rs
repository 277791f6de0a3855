//! An app's config vars: set and deleted all or nothing, with names as POSIX shells take them.
//! A change is a release (see `releases`), made in the same commit.

use std::collections::BTreeMap;

use wharf_domain::timestamp::now_seconds;

use super::engine::ControlPlane;
use super::error::{Error, not_found};
use super::releases::{config_description, processes_of};
use crate::model::{Change, ConfigVars, Object};

/// Most config vars an app may have, and the longest name and value, in bytes.
pub const MAX_CONFIG_VARS: usize = 1000;
const MAX_VAR_NAME: usize = 256;
const MAX_VAR_VALUE: usize = 32 * 1024;

/// Checks a config var's name: a letter or underscore, then letters, digits and underscores.
fn check_var_name(name: &str) -> Result<(), Error> {
    let ok = name.len() <= MAX_VAR_NAME
        && name.bytes().next().is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
        && name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "invalid config var name {name:?}: a letter or underscore, then letters, digits or underscores, at most {MAX_VAR_NAME}"
        )))
    }
}

/// Checks a variable for a process's environment: its name, and its value if it is set.
pub(super) fn check_var(name: &str, value: Option<&str>) -> Result<(), Error> {
    check_var_name(name)?;
    if value.is_some_and(|v| v.len() > MAX_VAR_VALUE) {
        return Err(Error::Invalid(format!("config var {name} is longer than {MAX_VAR_VALUE} bytes")));
    }
    // A process's environment is a list of C strings: a NUL would end the value early on one
    // runtime and fail every start on another, so it is refused here, where it is still the
    // user's to fix. (Names cannot hold one: see `check_var_name`.)
    if value.is_some_and(|v| v.contains('\0')) {
        return Err(Error::Invalid(format!(
            "config var {name} contains a NUL byte, which an environment variable cannot hold"
        )));
    }
    Ok(())
}

impl ControlPlane {
    /// Sets (`Some`) and deletes (`None`) an app's config vars, all or nothing; returns them all.
    /// A change makes a release (`Set A config vars`) in the same commit; a request that changes
    /// no value changes nothing and makes no release.
    pub async fn update_config_vars(
        &self,
        app: &str,
        changes: BTreeMap<String, Option<String>>,
    ) -> Result<BTreeMap<String, String>, Error> {
        for (name, value) in &changes {
            check_var(name, value.as_deref())?;
        }
        self.change(|m| {
            let a = m.app(app).ok_or_else(|| not_found("app", app))?;
            let before = m.config_vars_of(a.id).map(|c| c.vars.clone()).unwrap_or_default();
            let mut vars = before.clone();
            for (name, value) in &changes {
                match value {
                    Some(v) => vars.insert(name.clone(), v.clone()),
                    None => vars.remove(name),
                };
            }
            if vars.len() > MAX_CONFIG_VARS {
                return Err(Error::Invalid(format!("an app has at most {MAX_CONFIG_VARS} config vars")));
            }
            if vars == before {
                return Ok((vars, vec![]));
            }
            super::canary_releases::refuse_during_canary(m, a.id)?;
            let record = ConfigVars { id: a.id, vars: vars.clone(), updated_at: now_seconds() };
            let description = config_description(&before, &vars);
            let processes = processes_of(m.formation_of(a.id));
            let release = self.new_release(m, a.id, description, vars.clone(), processes);
            Ok((vars, vec![Change::Put(Object::ConfigVars(record)), release]))
        })
        .await
    }
}
