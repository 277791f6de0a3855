//! The five secrets every control API shares with its replicas (admin, router, logshuttle and
//! runtime tokens, the session secret): read from variables or owner-only files, generated only
//! when no database is shared, checked against the fingerprints other replicas recorded.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use wharf_control_api::{AdminToken, PostgresStore};
use wharf_domain::{DataPlaneRole, SessionKey};

/// One secret every control API keeps: what it is called in messages, the environment variable
/// that gives it, and its file in the data directory.
struct SecretSpec {
    what: &'static str,
    var: &'static str,
    file: &'static str,
}

/// The admin token.
const ADMIN: SecretSpec = SecretSpec { what: "admin token", var: "WHARF_ADMIN_TOKEN", file: "admin-token" };
/// What a `wharf router --control-api` sends.
const ROUTER: SecretSpec = SecretSpec { what: "router token", var: "WHARF_ROUTER_TOKEN", file: "router-token" };
/// What a `wharf logshuttle --control-api` sends.
const LOGSHUTTLE: SecretSpec =
    SecretSpec { what: "logshuttle token", var: "WHARF_LOGSHUTTLE_TOKEN", file: "logshuttle-token" };
/// What an external runtime sends to read the images apps run.
const RUNTIME: SecretSpec = SecretSpec { what: "runtime token", var: "WHARF_RUNTIME_TOKEN", file: "runtime-token" };
/// The key that signs log session URLs.
const SESSIONS: SecretSpec = SecretSpec { what: "session secret", var: "WHARF_SESSION_SECRET", file: "session-secret" };

/// Every secret a control API keeps, which replicas on one database must all share.
const SHARED_SECRETS: [&SecretSpec; 5] = [&ADMIN, &ROUTER, &LOGSHUTTLE, &RUNTIME, &SESSIONS];

/// Where a secret came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// Its environment variable.
    Variable,
    /// Its file in the data directory.
    File,
    /// Made at this start and stored in its file.
    Generated,
}

/// A secret from its environment variable, else from its file in `data_dir`; `None` when it has
/// neither. The same rules hold for both: at least 16 characters (after trimming), and a file
/// readable by its owner only (as Wharf writes them: a secret others may read is no secret).
/// Errors when a secret breaks either rule or its file cannot be read, naming the variable or
/// the file.
fn read_secret(data_dir: &Path, spec: &SecretSpec) -> Result<Option<(String, Origin)>> {
    if let Ok(t) = std::env::var(spec.var) {
        anyhow::ensure!(t.trim().len() >= MIN_SECRET, "{} must be at least {MIN_SECRET} characters", spec.var);
        return Ok(Some((t.trim().to_owned(), Origin::Variable)));
    }
    let path = data_dir.join(spec.file);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => t,
        Ok(_) => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let shown = absolute(&path);
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path)?.permissions());
    anyhow::ensure!(
        mode & 0o077 == 0,
        "{} ({}) may be read by others (mode {:o}): make it its owner's only (chmod 600 {})",
        shown.display(),
        spec.what,
        mode & 0o777,
        shown.display()
    );
    anyhow::ensure!(
        text.trim().len() >= MIN_SECRET,
        "{} ({}) must hold at least {MIN_SECRET} characters",
        shown.display(),
        spec.what
    );
    Ok(Some((text.trim().to_owned(), Origin::File)))
}

/// The shortest secret accepted, in characters, from a variable or a file alike.
const MIN_SECRET: usize = 16;

/// Makes a new secret (24 random bytes, hex) and stores it owner-only in its file in
/// `data_dir`; it is never printed or logged, only where it is. Errors when the file cannot be
/// written.
fn generate_secret(data_dir: &Path, spec: &SecretSpec) -> Result<(String, Origin)> {
    let path = data_dir.join(spec.file);
    let token: String = wharf_domain::random_bytes::<24>().iter().map(|b| format!("{b:02x}")).collect();
    let mut f = {
        use std::os::unix::fs::OpenOptionsExt;
        // An empty file left behind is replaced; `create_new` would refuse it.
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&path)
    }
    .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(token.as_bytes()).with_context(|| format!("cannot write {}", path.display()))?;
    tracing::info!(secret = spec.what, file = %absolute(&path).display(), "generated a new secret (owner-only)");
    Ok((token, Origin::Generated))
}

/// Why a control API on a shared database refuses to start without every secret, naming each
/// missing one's variable and file and how to make them.
fn missing_secrets_error(data_dir: &Path, missing: &[&SecretSpec]) -> anyhow::Error {
    let dir = absolute(data_dir);
    let mut text = String::from(
        "this control API shares its database (control_api.database_url) with its replicas, so it does not make secrets of its own: \
         every replica must have the same ones, and a replica with its own would answer the others' tokens with 401. Missing:",
    );
    for spec in missing {
        text.push_str(&format!("\n  {}: set {} or write {}", spec.what, spec.var, dir.join(spec.file).display()));
    }
    text.push_str(&format!(
        "\nCopy these files (owner-only) from another replica's data directory, or, for a new fleet, make each once and give \
         every replica the same: (umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \\n' > {}/FILE)",
        dir.display()
    ));
    anyhow::anyhow!(text)
}

/// Where the banner says a secret is: the variable it was given in (which wins over the file,
/// as in [`read_secret`]), or its file in `data_dir`.
fn token_source(data_dir: &Path, spec: &SecretSpec) -> String {
    if std::env::var_os(spec.var).is_some() {
        format!("given in {}", spec.var)
    } else {
        format!("{} in {}", spec.var, absolute(&data_dir.join(spec.file)).display())
    }
}

/// What every control API reads from its data directory (or the environment): the admin
/// token, each data-plane role's token, and the secret that signs log session URLs. Replicas
/// of one control API must share all five (the same files, or the same `WHARF_*` variables).
pub(crate) struct ApiSecrets {
    /// The admin token, and where it came from.
    admin: (String, Origin),
    /// `router-token`: what a `wharf router --control-api` sends.
    router: String,
    /// `logshuttle-token`: what a `wharf logshuttle --control-api` sends.
    logshuttle: String,
    /// `runtime-token`: what an external runtime sends to read the images apps run.
    runtime: String,
    /// The key of `session-secret`, which signs log session URLs.
    pub(crate) sessions: Arc<SessionKey>,
    /// `session-secret` itself, for its fingerprint ([`ApiSecrets::check_shared`]).
    session_secret: String,
}

impl ApiSecrets {
    /// Loads the five secrets from their variables or files in `data_dir`. One that is missing
    /// is generated and stored (owner-only), unless `shared` (the control API is given a
    /// database other replicas may share): then every missing one is named in the error and
    /// nothing is written, because a replica with secrets of its own refuses the others'
    /// tokens. Errors also when a file cannot be read or written or a variable is shorter
    /// than 16 characters.
    ///
    /// Why replicas are refused rather than given the secrets through the database: the
    /// database would then hold the admin token and the session key beside the state, so
    /// anyone who reads it or a backup of it could act as admin, and a data plane's token
    /// would be one query away from every other's. Kept in files, each secret is only on the
    /// machines that need it, and a missing one is found at start, not by random 401s.
    pub(crate) fn load(data_dir: &Path, shared: bool) -> Result<ApiSecrets> {
        let mut found = Vec::with_capacity(SHARED_SECRETS.len());
        let mut missing = Vec::new();
        for spec in SHARED_SECRETS {
            let secret = read_secret(data_dir, spec)?;
            if secret.is_none() {
                missing.push(spec);
            }
            found.push(secret);
        }
        if shared && !missing.is_empty() {
            return Err(missing_secrets_error(data_dir, &missing));
        }
        let mut secrets = Vec::with_capacity(SHARED_SECRETS.len());
        for (spec, secret) in SHARED_SECRETS.into_iter().zip(found) {
            secrets.push(match secret {
                Some(s) => s,
                None => generate_secret(data_dir, spec)?,
            });
        }
        if data_dir.join("data-plane-token").exists() {
            // One token per data-plane role, so that each remote data plane reads only its part
            // of the feed (least privilege). The one data-plane token of earlier versions read
            // it all; it is no longer accepted (the configuration refuses WHARF_DATA_PLANE_TOKEN).
            tracing::warn!(
                file = %data_dir.join("data-plane-token").display(),
                "the data-plane token is no longer accepted: give remote routers router-token and remote logshuttles logshuttle-token, then delete this file"
            );
        }
        let mut secrets = secrets.into_iter();
        let mut next = || secrets.next().expect("one secret per spec");
        let admin = next();
        let (router, logshuttle, runtime) = (next().0, next().0, next().0);
        // Log session URLs are signed with a kept secret, so that they stay valid across
        // restarts and a logshuttle elsewhere given the same secret can serve them.
        let session_secret = next().0;
        let sessions = Arc::new(SessionKey::new(session_secret.as_bytes()));
        Ok(ApiSecrets { admin, router, logshuttle, runtime, sessions, session_secret })
    }

    /// Refuses to go on when a secret differs from the one the replicas on `store`'s database use
    /// (a keyed fingerprint of each, [`PostgresStore::check_secrets`]), naming each and its
    /// variable or file in `data_dir`, never a value: such a replica would answer the others'
    /// tokens with 401 at random behind a load balancer. Errors too when the database fails.
    pub(crate) async fn check_shared(&self, store: &PostgresStore, data_dir: &Path) -> Result<()> {
        let values = [&self.admin.0, &self.router, &self.logshuttle, &self.runtime, &self.session_secret];
        let named: Vec<(&str, &str)> =
            SHARED_SECRETS.iter().zip(values).map(|(spec, value)| (spec.file, value.as_str())).collect();
        let differ = store.check_secrets(&named).await.context("cannot check the shared secrets' fingerprints")?;
        if differ.is_empty() {
            return Ok(());
        }
        let mut text = String::from(
            "this control API's secrets must be the ones its replicas on this database use (the database keeps a keyed fingerprint \
             of each, recorded by the first replica, never the secret), and these differ:",
        );
        for spec in SHARED_SECRETS.iter().filter(|spec| differ.contains(&spec.file)) {
            text.push_str(&format!("\n  {}: {}", spec.what, token_source(data_dir, spec)));
        }
        text.push_str(
            "\nGive this replica the same files (or variables) as the others. To change a secret on purpose, stop every replica, \
             forget its fingerprint (DELETE FROM wharf_secrets WHERE name = 'FILE', e.g. 'router-token'), and start them all with the new one.",
        );
        Err(anyhow::anyhow!(text))
    }

    /// The tokens the API accepts: the admin token, and each data-plane role's.
    pub(crate) fn tokens(&self) -> AdminToken {
        AdminToken::new(&self.admin.0)
            .with_data_plane(DataPlaneRole::Router, &self.router)
            .with_data_plane(DataPlaneRole::Logshuttle, &self.logshuttle)
            .with_data_plane(DataPlaneRole::Runtime, &self.runtime)
    }

    /// Prints where each token is, never a token itself: standard output goes to logs
    /// (journald, files), which more people read than the owner-only files.
    pub(crate) fn print(&self, out: &mut impl std::io::Write, data_dir: &Path) -> std::io::Result<()> {
        // A token given as a variable has no file: the banner names the variable instead.
        writeln!(out, "  data planes:  for wharf router --control-api: {}", token_source(data_dir, &ROUTER))?;
        writeln!(out, "                for wharf logshuttle --control-api: {}", token_source(data_dir, &LOGSHUTTLE))?;
        writeln!(out, "                for an external runtime (images): {}", token_source(data_dir, &RUNTIME))?;
        let file = absolute(&data_dir.join(ADMIN.file));
        match self.admin.1 {
            Origin::Generated => writeln!(
                out,
                "  admin token:  generated now and stored in {0} (owner-only; read it with: cat {0})",
                file.display()
            ),
            Origin::File => writeln!(out, "  admin token:  in {}", file.display()),
            Origin::Variable => writeln!(out, "  admin token:  given in {}", ADMIN.var),
        }
    }
}

/// `p` made absolute (against the working directory), or `p` itself when that fails: how
/// messages name files.
pub(crate) fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_owned())
}
