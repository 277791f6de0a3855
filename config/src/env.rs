//! `WHARF_*` environment variables: which are configuration, and how they overlay the file.

use crate::{ConfigError, NAMED_VARIABLES, TOP_LEVEL_VALUES};

/// Maps `WHARF_ROUTER__HTTPS_LISTEN` to `["router", "https_listen"]` and `WHARF_DATA_DIR` to
/// `["data_dir"]`; `None` for variables that are not configuration.
///
/// Only the documented forms are configuration: `WHARF_SECTION__KEY` (any variable with `__`, so
/// that a misspelt key is refused with its name rather than ignored) and the top-level values.
/// Other `WHARF_*` names belong to whoever set them (a wrapper's `WHARF_BIN`, `WHARF_HOME`) and
/// are left alone; [`unrecognised_variables`] lists them so the binary can warn.
pub(crate) fn env_path(var: &str) -> Result<Option<Vec<String>>, ConfigError> {
    let Some(rest) = var.strip_prefix("WHARF_") else {
        return Ok(None);
    };
    if NAMED_VARIABLES.contains(&var) {
        return Ok(None);
    }
    if !rest.contains("__") {
        let key = rest.to_ascii_lowercase();
        return Ok(TOP_LEVEL_VALUES.contains(&key.as_str()).then(|| vec![key]));
    }
    let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
    if path.iter().any(String::is_empty) {
        return Err(ConfigError::Env {
            var: var.to_owned(),
            message: "write WHARF_SECTION__KEY, for example WHARF_ROUTER__HTTPS_LISTEN".into(),
        });
    }
    Ok(Some(path))
}

/// The `WHARF_*` variables among `env` that Wharf neither reads as configuration nor as one of its
/// [`NAMED_VARIABLES`]: left alone, worth a warning in case one is a misspelt key
/// (`WHARF_ROUTER_WORKERS` with one underscore).
pub fn unrecognised_variables(env: impl IntoIterator<Item = (String, String)>) -> Vec<String> {
    env.into_iter()
        .map(|(var, _)| var)
        .filter(|var| {
            matches!(env_path(var), Ok(None)) && var.starts_with("WHARF_") && !NAMED_VARIABLES.contains(&var.as_str())
        })
        .collect()
}

/// Sets `value` at `path` (from [`env_path`]) in `table`, creating missing sections. The value
/// is taken as TOML when it parses as one (`4`, `true`, `["a"]`) and as a string otherwise.
/// Errors with [`ConfigError::Env`] naming `var` when a key on the way is not a section.
pub(crate) fn set_path(table: &mut toml::Table, var: &str, path: &[String], value: &str) -> Result<(), ConfigError> {
    let (last, parents) = path.split_last().expect("env_path never returns an empty path");
    let mut t = table;
    for key in parents {
        let entry = t.entry(key.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        t = entry
            .as_table_mut()
            .ok_or_else(|| ConfigError::Env { var: var.to_owned(), message: format!("`{key}` is not a section") })?;
    }
    // A value is TOML when it parses as TOML (numbers, booleans, arrays), and a string otherwise,
    // so that `WHARF_ROUTER__WORKERS=4` and `WHARF_DATA_DIR=/var/lib/wharf` both work.
    let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_owned()));
    t.insert(last.clone(), parsed);
    Ok(())
}
