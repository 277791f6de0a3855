//! Log sessions: signed, expiring grants to stream an app's lines from the logshuttle.

use wharf_domain::timestamp::now_seconds;
use wharf_domain::{SessionGrant, new_id};

use super::engine::ControlPlane;
use super::error::{Error, not_found};

/// A log session's grant and its URL.
#[derive(Debug, Clone)]
pub struct LogSession {
    /// What the URL allows.
    pub grant: SessionGrant,
    /// The URL that streams the lines.
    pub url: String,
}

impl ControlPlane {
    /// Grants a live tail of an app's lines.
    pub async fn create_log_session(
        &self,
        app: &str,
        lines: u32,
        tail: bool,
        source: Option<String>,
        dyno: Option<String>,
    ) -> Result<LogSession, Error> {
        if lines > self.settings.max_session_lines {
            return Err(Error::Invalid(format!("lines must be at most {}", self.settings.max_session_lines)));
        }
        let key = self.read(|m| m.app(app).map(|a| m.app_key(a))).await.ok_or_else(|| not_found("app", app))?;
        let grant = SessionGrant {
            id: new_id(),
            app: key,
            lines,
            tail,
            source,
            dyno,
            expires: now_seconds() + self.settings.session_ttl.as_secs() as i64,
        };
        let url = format!(
            "{}/log-sessions/{}",
            self.settings.session_base_url.trim_end_matches('/'),
            self.sessions.sign(&grant)
        );
        Ok(LogSession { grant, url })
    }
}
