//! Pipelines (Akkeris' shapes, Heroku's where they agree): pipelines, couplings of apps to
//! stages, release status checks, and promotions of a release's code to the next stage.
//!
//! A promotion copies the source release's code, never its config: each target gets a new
//! release holding the target's own config vars and the source's process definitions and slug
//! ([`code_of`], the one place that says what "code" is), and its formation's commands, ports
//! and health checks become the source's, as a rollback restores them. The local supervisor
//! rolls the target as it rolls any release, which settles the release `succeeded` or `failed`.
//!
//! A promotion goes one stage on: to the nearest later stage that has apps in the pipeline
//! (`review → development → staging → canary → production`), not counting the canary apps that
//! automatic canary releases run (`canary_releases.rs`), which belong to their release. Only an
//! empty canary stage is passed over; any other empty stage on the way is a 422 naming it. A target
//! with the `canary` feature gets its release through a canary first. It is refused, and nothing is
//! deployed, when a target is not in that stage or the source is in the last (422), when a
//! status check a target's coupling requires is not `success` on the source release (409,
//! naming the contexts), or, for a safe promotion, when a target lacks a config var name the
//! source release has (422, naming them per target). Wharf has no add-ons yet, so a safe
//! promotion compares config var names only.

use std::collections::BTreeMap;

use uuid::Uuid;
use wharf_domain::timestamp::now_seconds;
use wharf_domain::{PipelineName, Stage, new_id};

use super::canary_releases::{canary_feature_off, refuse_canary_app, refuse_during_canary};
use super::engine::ControlPlane;
use super::error::{Error, not_found};
use super::releases::restore_processes;
use crate::model::{
    App, Change, CheckState, Coupling, Kind, Model, Object, Pipeline, Promotion, PromotionTarget, Release,
    ReleaseProcess, ReleaseStatus, StatusCheck,
};

/// Most required contexts one coupling may name.
pub const MAX_REQUIRED_CONTEXTS: usize = 20;

/// Longest status context, name or description, in bytes.
const MAX_TEXT: usize = 255;

/// A release's code: what a promotion copies from the source release to each target, and all
/// it copies. Today that is every process type's command, port and health check, and the slug
/// (none until Wharf builds slugs, issue 21); never config vars, which stay each app's own.
pub(super) fn code_of(release: &Release) -> (Vec<ReleaseProcess>, Option<Uuid>) {
    (release.processes.clone(), release.slug_id)
}

/// A status check's fields as a request gives them; `None` keeps what a `PATCH` does not name.
#[derive(Debug, Default, Clone)]
pub struct CheckInput {
    /// Its context (only when creating).
    pub context: Option<String>,
    /// Its state.
    pub state: Option<CheckState>,
    /// Its human name.
    pub name: Option<String>,
    /// What it says.
    pub description: Option<String>,
    /// Where to read more.
    pub target_url: Option<String>,
}

/// A promotion as asked: the pipeline, the source app and release (its current one when
/// `None`), the target apps (every app of the next stage when `None`), and whether it is safe.
#[derive(Debug, Clone)]
pub struct PromotionInput {
    /// The pipeline's id or name.
    pub pipeline: String,
    /// The source app's id or key.
    pub source_app: String,
    /// The source release's id, `N` or `vN`.
    pub source_release: Option<String>,
    /// The target apps' ids or keys.
    pub targets: Option<Vec<String>>,
    /// Refuse unless every target has every config var name of the source release.
    pub safe: bool,
}

fn check_text(what: &str, s: &str) -> Result<(), Error> {
    if s.is_empty() || s.len() > MAX_TEXT || s.chars().any(char::is_control) {
        return Err(Error::Invalid(format!("{what} must be 1 to {MAX_TEXT} bytes without control characters")));
    }
    Ok(())
}

/// Checks required contexts: each valid text, at most [`MAX_REQUIRED_CONTEXTS`]; sorted, once each.
fn contexts(mut given: Vec<String>) -> Result<Vec<String>, Error> {
    for c in &given {
        check_text("a status context", c)?;
    }
    given.sort();
    given.dedup();
    if given.len() > MAX_REQUIRED_CONTEXTS {
        return Err(Error::Invalid(format!("at most {MAX_REQUIRED_CONTEXTS} required contexts")));
    }
    Ok(given)
}

fn pipeline_of<'m>(m: &'m Model, id_or_name: &str) -> Result<&'m Pipeline, Error> {
    m.pipeline(id_or_name).ok_or_else(|| not_found("pipeline", id_or_name))
}

fn app_of<'m>(m: &'m Model, id_or_key: &str) -> Result<&'m App, Error> {
    m.app(id_or_key).ok_or_else(|| not_found("app", id_or_key))
}

impl ControlPlane {
    /// Creates a pipeline; 409 when the name is taken.
    pub async fn create_pipeline(&self, name: PipelineName) -> Result<Pipeline, Error> {
        self.change(|m| {
            if m.pipeline(name.as_str()).is_some() {
                return Err(Error::Conflict(format!("pipeline {name} already exists")));
            }
            let now = now_seconds();
            let p = Pipeline { id: new_id(), name: name.clone(), created_at: now, updated_at: now };
            Ok((p.clone(), vec![Change::Put(Object::Pipeline(p))]))
        })
        .await
    }

    /// Renames a pipeline; 409 when the new name is another pipeline's.
    pub async fn rename_pipeline(&self, pipeline: &str, name: PipelineName) -> Result<Pipeline, Error> {
        self.change(|m| {
            let p = pipeline_of(m, pipeline)?;
            if m.pipeline(name.as_str()).is_some_and(|o| o.id != p.id) {
                return Err(Error::Conflict(format!("pipeline {name} already exists")));
            }
            let p = Pipeline { name: name.clone(), updated_at: now_seconds(), ..p.clone() };
            Ok((p.clone(), vec![Change::Put(Object::Pipeline(p))]))
        })
        .await
    }

    /// Deletes a pipeline with its couplings and promotions; the apps stay.
    pub async fn delete_pipeline(&self, pipeline: &str) -> Result<Pipeline, Error> {
        self.change(|m| {
            let p = pipeline_of(m, pipeline)?;
            // Its apps leave their stages, as when each coupling is deleted: a canary release
            // open in it must end first (its canary app would leave the canary stage), and the
            // production apps' canary feature turns off.
            let coupled = m.couplings_where(|c| c.pipeline_id == p.id);
            // The production app's refusal first: it names what to end.
            for c in &coupled {
                refuse_during_canary(m, c.app_id)?;
            }
            for c in &coupled {
                refuse_canary_app(m, c.app_id)?;
            }
            let mut changes = m.cascade(Kind::Pipeline, p.id);
            changes.extend(coupled.iter().filter_map(|c| canary_feature_off(m, c.app_id)));
            Ok((p.clone(), changes))
        })
        .await
    }

    /// Couples an app to a pipeline's stage; 409 when the app is in a pipeline already.
    pub async fn create_coupling(
        &self,
        app: &str,
        pipeline: &str,
        stage: Stage,
        required: Vec<String>,
    ) -> Result<Coupling, Error> {
        let required = contexts(required)?;
        self.change(|m| {
            let a = app_of(m, app)?;
            let p = pipeline_of(m, pipeline)?;
            if let Some(c) = m.coupling_of(a.id) {
                let other = m.pipelines().into_iter().find(|o| o.id == c.pipeline_id).map(|o| o.name.to_string());
                return Err(Error::Conflict(format!(
                    "app {} is already in pipeline {} ({} stage): an app is in at most one pipeline",
                    m.app_key(a),
                    other.unwrap_or_default(),
                    c.stage
                )));
            }
            let now = now_seconds();
            let c = Coupling {
                id: new_id(),
                pipeline_id: p.id,
                app_id: a.id,
                stage,
                required_contexts: required.clone(),
                created_at: now,
                updated_at: now,
            };
            Ok((c.clone(), vec![Change::Put(Object::Coupling(c))]))
        })
        .await
    }

    /// Changes a coupling's stage or required contexts (what is `None` stays). An app moved out
    /// of the production stage has its `canary` feature turned off, its settings kept (a canary
    /// release already open goes on to its outcome).
    pub async fn update_coupling(
        &self,
        id: &str,
        stage: Option<Stage>,
        required: Option<Vec<String>>,
    ) -> Result<Coupling, Error> {
        let required = required.map(contexts).transpose()?;
        self.change(|m| {
            let c = m.coupling(id).ok_or_else(|| not_found("pipeline coupling", id))?;
            refuse_canary_app(m, c.app_id)?;
            let c = Coupling {
                stage: stage.unwrap_or(c.stage),
                required_contexts: required.clone().unwrap_or_else(|| c.required_contexts.clone()),
                updated_at: now_seconds(),
                ..c.clone()
            };
            let mut changes = vec![Change::Put(Object::Coupling(c.clone()))];
            if c.stage != Stage::Production {
                changes.extend(canary_feature_off(m, c.app_id));
            }
            Ok((c, changes))
        })
        .await
    }

    /// Removes an app from its pipeline; its `canary` feature turns off (a canary release
    /// already open goes on to its outcome).
    pub async fn delete_coupling(&self, id: &str) -> Result<Coupling, Error> {
        self.change(|m| {
            let c = m.coupling(id).ok_or_else(|| not_found("pipeline coupling", id))?;
            refuse_canary_app(m, c.app_id)?;
            let mut changes = m.cascade(Kind::Coupling, c.id);
            changes.extend(canary_feature_off(m, c.app_id));
            Ok((c.clone(), changes))
        })
        .await
    }

    /// Records a status check on the app's release; 409 when the release has one with this
    /// context (change it with [`ControlPlane::update_check`]). 404 for a release of another app.
    pub async fn create_check(&self, app: &str, release: &str, input: CheckInput) -> Result<StatusCheck, Error> {
        let context = input.context.clone().ok_or_else(|| Error::Invalid("a status needs a context".into()))?;
        let state = input.state.ok_or_else(|| Error::Invalid("a status needs a state".into()))?;
        check_text("a status context", &context)?;
        check_input(&input)?;
        self.change(|m| {
            let a = app_of(m, app)?;
            let r = m.release(a.id, release).ok_or_else(|| not_found("release", release))?;
            if m.checks_of(r.id).iter().any(|c| c.context == context) {
                return Err(Error::Conflict(format!(
                    "release v{} already has a status for context {context:?}: PATCH it",
                    r.version
                )));
            }
            let now = now_seconds();
            let c = StatusCheck {
                id: new_id(),
                app_id: a.id,
                release_id: r.id,
                context: context.clone(),
                state,
                name: input.name.clone(),
                description: input.description.clone(),
                target_url: input.target_url.clone(),
                created_at: now,
                updated_at: now,
            };
            Ok((c.clone(), vec![Change::Put(Object::StatusCheck(c))]))
        })
        .await
    }

    /// Changes a status check of the app's release, by id or context.
    pub async fn update_check(
        &self,
        app: &str,
        release: &str,
        check: &str,
        input: CheckInput,
    ) -> Result<StatusCheck, Error> {
        if input.context.is_some() {
            return Err(Error::Invalid("a status's context cannot change: create another".into()));
        }
        check_input(&input)?;
        self.change(|m| {
            let a = app_of(m, app)?;
            let r = m.release(a.id, release).ok_or_else(|| not_found("release", release))?;
            let c = m
                .checks_of(r.id)
                .into_iter()
                .find(|c| c.id.to_string() == check || c.context == check)
                .ok_or_else(|| not_found("status", check))?;
            let c = StatusCheck {
                state: input.state.unwrap_or(c.state),
                name: input.name.clone().or_else(|| c.name.clone()),
                description: input.description.clone().or_else(|| c.description.clone()),
                target_url: input.target_url.clone().or_else(|| c.target_url.clone()),
                updated_at: now_seconds(),
                ..c.clone()
            };
            Ok((c.clone(), vec![Change::Put(Object::StatusCheck(c))]))
        })
        .await
    }

    /// Promotes a release's code to the next stage's apps, each a new release (see the module's
    /// documentation for the rules and refusals).
    pub async fn promote(&self, input: PromotionInput) -> Result<Promotion, Error> {
        self.change(|m| {
            let p = pipeline_of(m, &input.pipeline)?;
            let source = app_of(m, &input.source_app)?;
            let source_key = m.app_key(source);
            let coupling = m
                .coupling_of(source.id)
                .filter(|c| c.pipeline_id == p.id)
                .ok_or_else(|| Error::Invalid(format!("app {source_key} is not in pipeline {}", p.name)))?;
            let release = match &input.source_release {
                Some(r) => m.release(source.id, r).ok_or_else(|| not_found("release", r))?,
                None => m.current_release(source.id).ok_or_else(|| {
                    Error::Invalid(format!("app {source_key} has no release that succeeded to promote"))
                })?,
            };
            // Only code that went live is promoted: a failed release never ran, and a pending
            // one may yet fail (its release phase, its roll, its canary).
            if release.status != ReleaseStatus::Succeeded {
                return Err(Error::Invalid(format!(
                    "release v{} of {source_key} is {}: only a release that succeeded can be promoted",
                    release.version,
                    release.status.as_str()
                )));
            }
            // A canary app a canary release runs is that release's, never a promotion's target.
            let in_pipeline = m.couplings_where(|c| c.pipeline_id == p.id && !m.runs_canary_release(c.app_id));
            let next = coupling.stage.later().find(|s| in_pipeline.iter().any(|c| c.stage == *s)).ok_or_else(|| {
                Error::Invalid(format!(
                    "cannot promote from {}: no later stage of pipeline {} has apps ({} is the last stage there)",
                    coupling.stage, p.name, coupling.stage
                ))
            })?;
            // Only the canary stage may be passed over empty: automatic canary releases fill it
            // of their own. Any other stage left empty (its app deleted or uncoupled) is not a
            // way past it: development went straight to production when staging's app was
            // deleted, and nothing said so (FE27 #5).
            if let Some(empty) = coupling.stage.later().take_while(|s| *s != next).find(|s| *s != Stage::Canary) {
                return Err(Error::Invalid(format!(
                    "pipeline {} has no app in {empty}, the stage after {}: a promotion goes one stage on (only the \
                     canary stage, which automatic canary releases fill, is passed over when empty); couple an app \
                     to {empty} first",
                    p.name, coupling.stage
                )));
            }
            let next_apps: Vec<&Coupling> = in_pipeline.iter().copied().filter(|c| c.stage == next).collect();
            let targets: Vec<&Coupling> = match &input.targets {
                None => next_apps,
                Some(names) if names.is_empty() => {
                    return Err(Error::Invalid("targets is empty: name at least one app, or leave it out".into()));
                }
                Some(names) => {
                    let mut out = Vec::new();
                    for name in names {
                        let a = app_of(m, name)?;
                        let c = next_apps.iter().copied().find(|c| c.app_id == a.id).ok_or_else(|| {
                            Error::Invalid(format!(
                                "app {} is not in the next stage ({next}) of pipeline {} after {}",
                                m.app_key(a),
                                p.name,
                                coupling.stage
                            ))
                        })?;
                        if !out.iter().any(|o: &&Coupling| o.id == c.id) {
                            out.push(c);
                        }
                    }
                    out
                }
            };
            let target_apps: Vec<&App> = targets.iter().filter_map(|c| m.app(&c.app_id.to_string())).collect();
            // Every context any target requires must be `success` on the source release.
            let checks = m.checks_of(release.id);
            let mut unmet: BTreeMap<&str, &'static str> = BTreeMap::new();
            for c in &targets {
                for ctx in &c.required_contexts {
                    match checks.iter().find(|k| &k.context == ctx) {
                        Some(k) if k.state == CheckState::Success => {}
                        Some(k) => drop(unmet.insert(ctx, k.state.as_str())),
                        None => drop(unmet.insert(ctx, "missing")),
                    }
                }
            }
            if !unmet.is_empty() {
                let list: Vec<String> = unmet.iter().map(|(c, s)| format!("{c} ({s})")).collect();
                return Err(Error::Conflict(format!(
                    "release v{} of {source_key} lacks required status checks in state success: {}",
                    release.version,
                    list.join(", ")
                )));
            }
            if input.safe {
                let mut missing = Vec::new();
                for a in &target_apps {
                    let theirs = m.config_vars_of(a.id).map(|c| &c.vars);
                    let lacks: Vec<&str> = release
                        .config_vars
                        .keys()
                        .filter(|k| !theirs.is_some_and(|v| v.contains_key(*k)))
                        .map(String::as_str)
                        .collect();
                    if !lacks.is_empty() {
                        missing.push(format!("{} lacks config vars {}", m.app_key(a), lacks.join(", ")));
                    }
                }
                if !missing.is_empty() {
                    return Err(Error::Invalid(format!("safe promotion refused: {}", missing.join("; "))));
                }
            }
            for a in &target_apps {
                refuse_during_canary(m, a.id)?;
            }
            super::releases::check_slug_kept(m, release)?;
            let (processes, slug_id) = code_of(release);
            let now = now_seconds();
            let promotion_id = new_id();
            let mut changes = Vec::new();
            let mut made = Vec::new();
            for a in &target_apps {
                let vars = m.config_vars_of(a.id).map(|c| c.vars.clone()).unwrap_or_default();
                let description = format!("Promotion of {source_key} v{}", release.version);
                let mut change = self.new_release(m, a.id, description, vars, processes.clone());
                super::releases::bring_code(&mut change, slug_id);
                let Change::Put(Object::Release(r)) = &mut change else { unreachable!("new_release puts a release") };
                made.push(PromotionTarget { id: new_id(), app_id: a.id, release_id: r.id });
                // A production app with the canary feature runs it as a canary first.
                match self.start_canary_release(m, a, r, Some(promotion_id))? {
                    Some(canary) => changes.extend(canary),
                    None => {
                        changes.extend(restore_processes(m, a.id, &processes, now));
                        changes.push(change);
                    }
                }
            }
            let promotion = Promotion {
                id: promotion_id,
                pipeline_id: p.id,
                source_app_id: source.id,
                source_release_id: release.id,
                safe: input.safe,
                targets: made,
                created_at: now,
                updated_at: now,
            };
            changes.push(Change::Put(Object::Promotion(promotion.clone())));
            Ok((promotion, changes))
        })
        .await
    }
}

fn check_input(input: &CheckInput) -> Result<(), Error> {
    for (what, v) in [("a status name", &input.name), ("a status description", &input.description)] {
        if let Some(v) = v {
            check_text(what, v)?;
        }
    }
    if let Some(u) = &input.target_url {
        let ok = (u.starts_with("https://") || u.starts_with("http://")) && u.len() <= 2048;
        if !ok || u.chars().any(|c| c.is_control() || c == ' ') {
            return Err(Error::Invalid(format!("target_url {u:?} is not an http(s) URL")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {

    use wharf_domain::HookUrl;

    use super::*;
    use crate::model::HookEvent;
    use crate::plane::tests::plane;
    use crate::plane::{FormationUpdate, HookInput};

    fn check(context: &str, state: CheckState) -> CheckInput {
        CheckInput { context: Some(context.into()), state: Some(state), ..CheckInput::default() }
    }

    /// Pipeline `p`: `dev` in development with a web command; `stg` (requiring `ci` and `sec`)
    /// and `qa` (requiring nothing) in staging; a release hook on `stg`.
    async fn pipeline() -> ControlPlane {
        let p = plane().await;
        p.create_pipeline(PipelineName::try_new("p").unwrap()).await.unwrap();
        for (app, stage, required) in [
            ("dev", Stage::Development, vec![]),
            ("stg", Stage::Staging, vec!["sec".to_owned(), "ci".to_owned()]),
            ("qa", Stage::Staging, vec![]),
        ] {
            p.create_app(app.parse().unwrap(), "default").await.unwrap();
            p.create_coupling(app, "p", stage, required).await.unwrap();
        }
        let web = FormationUpdate {
            dyno_type: "web".parse().unwrap(),
            quantity: None,
            command: Some("serve v1".into()),
            port: None,
            healthcheck: None,
            size: None,
        };
        p.update_formation("dev", vec![web]).await.unwrap();
        let hook = HookInput {
            url: Some(HookUrl::try_new("https://hooks.example.com/h").unwrap()),
            events: Some(vec![HookEvent::Promotion, HookEvent::Release]),
            secret: Some("s".into()),
            active: None,
        };
        p.create_hook("stg", hook).await.unwrap();
        p
    }

    fn promotion() -> PromotionInput {
        PromotionInput {
            pipeline: "p".into(),
            source_app: "dev".into(),
            source_release: None,
            targets: None,
            safe: false,
        }
    }

    #[tokio::test]
    async fn every_required_context_must_be_success_on_the_source_release() {
        use CheckState::{Error as Erred, Failure, Pending, Success};
        // (ci, sec) on dev's release -> the refusal's contexts, or None when it goes through.
        let cases: [(Option<CheckState>, Option<CheckState>, Option<&str>); 5] = [
            (None, None, Some("ci (missing), sec (missing)")),
            (Some(Pending), Some(Success), Some("ci (pending)")),
            (Some(Failure), Some(Success), Some("ci (failure)")),
            (Some(Success), Some(Erred), Some("sec (error)")),
            (Some(Success), Some(Success), None),
        ];
        for (ci, sec, refused) in cases {
            let p = pipeline().await;
            for (context, state) in [("ci", ci), ("sec", sec)] {
                if let Some(state) = state {
                    p.create_check("dev", "v2", check(context, state)).await.unwrap();
                }
            }
            let before = p.read(Model::version).await;
            match (p.promote(promotion()).await, refused) {
                (Err(Error::Conflict(m)), Some(want)) => {
                    assert!(m.ends_with(want), "{ci:?} {sec:?}: {m}");
                    assert_eq!(p.read(Model::version).await, before, "a refused promotion changes nothing");
                }
                (Ok(promoted), None) => {
                    // Every app of the next stage, each with dev's command and its own release.
                    assert_eq!(promoted.targets.len(), 2);
                    let commands = p
                        .read(|m| {
                            ["stg", "qa"]
                                .map(|a| m.formation_of(m.app(a).unwrap().id)[0].command.clone().unwrap_or_default())
                        })
                        .await;
                    assert_eq!(commands, ["serve v1", "serve v1"]);
                }
                (got, want) => panic!("{ci:?} {sec:?}: got {got:?}, want refusal {want:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_promotion_and_the_releases_it_makes_reach_the_targets_hooks() {
        let p = pipeline().await;
        for context in ["ci", "sec"] {
            p.create_check("dev", "v2", check(context, CheckState::Success)).await.unwrap();
        }
        p.promote(promotion()).await.unwrap();
        let hook = p.read(|m| m.hooks_of(m.app("stg").unwrap().id)[0].id).await;
        let mut events: Vec<HookEvent> = p.hook_deliveries(hook).iter().map(|d| d.event).collect();
        events.sort();
        assert_eq!(events, [HookEvent::Release, HookEvent::Promotion], "one each, queued, none yet sent");
        // A status change of a release is news; a check is not.
        p.create_check("stg", "v2", check("ci", CheckState::Success)).await.unwrap();
        assert_eq!(p.hook_deliveries(hook).len(), 2);
    }
}
