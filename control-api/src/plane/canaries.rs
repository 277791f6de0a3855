//! Canaries: another app taking a share of an app's requests, judged by the routers; their
//! start, promotion, abort by hand, and the routers' verdicts (the first abort wins).

use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use wharf_domain::timestamp::now_seconds;
use wharf_domain::{CanaryEvidence, CanaryPolicy, CanaryState, CanaryVerdict, Tally, new_id};

use super::engine::{CanaryReader, ControlPlane};
use super::error::{Error, not_found};
use crate::model::{App, Canary, CanaryRelease, CanaryReleaseState, Change, Kind, Model, Object};

/// A canary ended by hand (`state` promoted or aborted): the counts at that moment are kept,
/// with `decision` saying how it ended, as an abort by the router keeps them.
fn ended_by_hand(c: &Canary, evidence: Option<CanaryEvidence>, state: CanaryState, decision: &str) -> Canary {
    let mut evidence = evidence.unwrap_or_else(|| no_evidence(""));
    evidence.decision = decision.into();
    Canary { state, evidence: Some(Box::new(evidence)), updated_at: now_seconds(), ..c.clone() }
}

/// Counts of a canary no request has reached.
fn no_evidence(decision: &str) -> CanaryEvidence {
    CanaryEvidence {
        baseline: Tally::default(),
        canary: Tally::default(),
        e_value: 1.0,
        p_value: 1.0,
        decision: decision.into(),
    }
}

/// The canary of an app named by id or key, or the 404 that says what is missing.
fn canary_of<'m>(m: &'m Model, app: &str) -> Result<&'m Canary, Error> {
    let a = m.app(app).ok_or_else(|| not_found("app", app))?;
    m.canary_of(a.id).ok_or_else(|| not_found("canary of app", app))
}

/// Refuses a split of `a`'s requests to `c` that cannot be: an app as its own canary, an
/// internal app with a public canary or the reverse (422), or a chain of splits (409).
pub(super) fn check_split(m: &Model, a: &App, c: &App) -> Result<(), Error> {
    let (key, canary_key) = (m.app_key(a), m.app_key(c));
    if a.id == c.id {
        return Err(Error::Invalid(format!("app {key} cannot be its own canary")));
    }
    if m.app_is_internal(a) != m.app_is_internal(c) {
        return Err(Error::Invalid(format!(
            "apps {key} and {canary_key} must both be internal or both be public: a canary takes the app's traffic"
        )));
    }
    // Splits do not chain: a canary's share goes to the canary app's own dynos.
    let live = |x: &Canary| x.state != CanaryState::Aborted;
    if let Some(x) = m.canaries_where(|x| live(x) && x.app_id == c.id).first() {
        return Err(Error::Conflict(format!("app {canary_key} has a canary of its own ({}); it cannot be one", x.id)));
    }
    if !m.canaries_where(|x| live(x) && x.canary_app_id == a.id).is_empty() {
        return Err(Error::Conflict(format!("app {key} is another app's canary; it cannot have one")));
    }
    Ok(())
}

impl ControlPlane {
    /// Lets `GET` show a running canary's live counts, read from the router in this process.
    pub fn set_canary_reader(&self, reader: CanaryReader) {
        let _ = self.canary_reader.set(reader);
    }

    /// A canary's counts and statistics: those at its end once it was aborted or promoted (a
    /// canary promoted before this kept none), else the router's live ones while it runs.
    pub fn canary_evidence(&self, c: &Canary) -> Option<CanaryEvidence> {
        match c.state {
            CanaryState::Aborted | CanaryState::Promoted => c.evidence.as_deref().cloned(),
            CanaryState::Running => Some(
                self.canary_reader
                    .get()
                    .and_then(|read| read(c.id))
                    .map(|(evidence, _)| evidence)
                    .unwrap_or_else(|| no_evidence("running: the router has not judged a request yet")),
            ),
        }
    }

    /// Starts a canary: `canary_app` takes the policy's share of `app`'s requests, judged from
    /// zero. Replaces the app's previous canary. Returns it and whether the app had none.
    pub async fn put_canary(&self, app: &str, canary_app: &str, policy: CanaryPolicy) -> Result<(Canary, bool), Error> {
        self.change(|m| {
            let a = m.app(app).ok_or_else(|| not_found("app", app))?;
            let c = m.app(canary_app).ok_or_else(|| not_found("app", canary_app))?;
            // A new split would end an open canary release's judging unasked (its ends are
            // promote and DELETE), and a canary app judges one split only.
            super::canary_releases::refuse_during_canary(m, a.id)?;
            super::canary_releases::refuse_canary_app(m, a.id)?;
            super::canary_releases::refuse_canary_app(m, c.id)?;
            check_split(m, a, c)?;
            let now = now_seconds();
            let previous = m.canary_of(a.id);
            let canary = Canary {
                id: new_id(),
                app_id: a.id,
                canary_app_id: c.id,
                policy,
                state: CanaryState::Running,
                evidence: None,
                created_at: now,
                updated_at: now,
            };
            let mut changes: Vec<Change> = previous.iter().flat_map(|p| m.cascade(Kind::Canary, p.id)).collect();
            changes.push(Change::Put(Object::Canary(canary.clone())));
            Ok(((canary, previous.is_none()), changes))
        })
        .await
    }

    /// Sends every request of the app to its running canary, and stops judging it.
    pub async fn promote_canary(&self, app: &str) -> Result<Canary, Error> {
        self.change(|m| {
            let c = canary_of(m, app)?;
            match c.state {
                CanaryState::Promoted => return Ok((c.clone(), vec![])),
                CanaryState::Aborted => {
                    return Err(Error::Conflict("the canary was aborted; put a new one to try again".into()));
                }
                CanaryState::Running => {}
            }
            // The counts at the promotion are kept, as an abort keeps them (FE27: a hand promote's
            // record and `canary` webhook had `evidence: null`).
            let c = ended_by_hand(c, self.canary_evidence(c), CanaryState::Promoted, "promoted by hand");
            Ok((c.clone(), vec![Change::Put(Object::Canary(c))]))
        })
        .await
    }

    /// Ends the app's canary release by hand while it is still `starting` (its canary's dyno not
    /// yet healthy, so there is no split for `DELETE`/`POST .../canary/promote` to act on):
    /// `passed` releases it to the app, else it is recorded aborted, as the split's own end
    /// would (FE22d #4: every 409 names those two requests, so they must end a starting one
    /// too). Returns the ended canary release, or `None` when the app has none starting.
    pub async fn end_starting_canary_release(&self, app: &str, passed: bool) -> Result<Option<CanaryRelease>, Error> {
        let done = self
            .change(|m| {
                let a = m.app(app).ok_or_else(|| not_found("app", app))?;
                let starting = m.canary_releases_of(a.id).into_iter().find(|c| c.state == CanaryReleaseState::Starting);
                let Some(cr) = starting else { return Ok((None, vec![])) };
                let release = super::canary_releases::release_of(m, cr)?;
                let outcome = if passed {
                    "the canary was promoted by hand before its dyno was up"
                } else {
                    "the canary was aborted by hand before its dyno was up"
                };
                self.end(m, cr, &release, passed, outcome.to_owned(), None, now_seconds())
            })
            .await?;
        if let Some(done) = &done {
            self.announce(done).await;
        }
        Ok(done)
    }

    /// Aborts the app's canary by hand: the app's own dynos take every request again.
    pub async fn abort_canary(&self, app: &str) -> Result<Canary, Error> {
        self.change(|m| {
            let c = canary_of(m, app)?;
            if c.state == CanaryState::Aborted {
                return Ok((c.clone(), vec![]));
            }
            let c = ended_by_hand(c, self.canary_evidence(c), CanaryState::Aborted, "aborted by hand");
            Ok((c.clone(), vec![Change::Put(Object::Canary(c))]))
        })
        .await
    }

    /// Records a router's abort so that every router follows. The first abort of a running
    /// canary wins; a late one (another router's, or for a canary since replaced) changes
    /// nothing. Returns the canary when this verdict aborted it.
    pub async fn record_verdict(&self, verdict: CanaryVerdict) -> Result<Option<Canary>, Error> {
        self.change(|m| match m.canary(verdict.id) {
            Some(c) if c.state == CanaryState::Running => {
                let c = Canary {
                    state: CanaryState::Aborted,
                    evidence: Some(Box::new(verdict.evidence)),
                    updated_at: now_seconds(),
                    ..c.clone()
                };
                Ok((Some(c.clone()), vec![Change::Put(Object::Canary(c))]))
            }
            _ => Ok((None, vec![])),
        })
        .await
    }

    /// Records a router's verdicts as they come, until the router goes away. A verdict the
    /// store cannot take yet is retried: the router that decided has already stopped the split,
    /// and the others should follow as soon as the store is back.
    pub async fn record_verdicts(self: Arc<Self>, mut verdicts: tokio::sync::mpsc::UnboundedReceiver<CanaryVerdict>) {
        while let Some(verdict) = verdicts.recv().await {
            // From 100 ms, doubling up to 10 s, without jitter: this process is the only writer
            // retrying, so there is no herd to spread.
            let mut delays = ExponentialBuilder::new()
                .with_min_delay(Duration::from_millis(100))
                .with_max_delay(Duration::from_secs(10))
                .with_factor(2.0)
                .without_max_times()
                .build();
            loop {
                match self.record_verdict(verdict.clone()).await {
                    Ok(Some(c)) => tracing::info!(canary_id = %c.id, "canary abort recorded"),
                    Ok(None) => tracing::debug!(canary_id = %verdict.id, "canary abort already recorded or replaced"),
                    Err(e) => {
                        tracing::error!(canary_id = %verdict.id, error = %e, "cannot record a canary abort; retrying");
                        tokio::time::sleep(delays.next().expect("backoff without a limit")).await;
                        continue;
                    }
                }
                break;
            }
        }
    }
}
