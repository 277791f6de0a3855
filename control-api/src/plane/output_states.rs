//! What an output URL answers, in every state of what it belongs to (`outputs.rs` holds the
//! outputs; `http/outputs.rs` serves them). One rule for builds and releases: the URL never
//! answers a bare end for something that has not ended, and what ended without running says so.
//!
//! - Running in this process: its lines stream as they come, and the stream ends with it.
//! - Ended: its stored lines, the last saying how it ended.
//! - Not started yet (a release queued behind another release's phase or roll, or held by its
//!   canary release; a build another process runs; a phase cut short by Wharf's stop, which runs again at the next start): the
//!   stream opens at once with the lines so far and a line saying what it waits for, then
//!   follows it when it starts ([`OutputState::NotYet`]); Heroku answers 404 there, which its
//!   CLI's `releases:output` reads as "not started yet, try again", while a stream that waits
//!   serves `releases:output`, `rollback`, `container:release` and `curl` alike.
//! - Never ran (a release superseded before its phase started, one whose canary release was
//!   aborted, or one settled where no supervisor runs phases): a final text saying so, and why.
//! - A release without a release phase, or nothing of that id: 404.

use uuid::Uuid;

use crate::model::{BuildStatus, Model, Release, ReleaseStatus};

use super::outputs::{CUT_PREFIX, MAX_OUTPUT_BYTES, MAX_OUTPUT_LINES};

/// What an output URL answers now (see the module comment); the URL checks first whether the
/// output runs in this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputState {
    /// Nothing of that id exists: 404.
    Missing,
    /// It exists and has no output, for this reason (a release without a release phase): 404
    /// saying so, so that a client is not told the release does not exist.
    NoOutput(String),
    /// It ended: these lines, and the end.
    Ended(Vec<String>),
    /// It has not started (again) yet: `lines` so far, then `why` (a line for the follower
    /// only, never stored), then its lines once it runs.
    NotYet {
        /// What its record holds so far.
        lines: Vec<String>,
        /// What it waits for.
        why: String,
    },
}

/// Whether release `r` has a release phase: a `release` process type with a command.
pub fn has_release_phase(r: &Release) -> bool {
    r.processes.iter().any(|p| p.dyno_type.as_str() == "release" && p.command.is_some())
}

/// Whether an output line is the one Wharf's stop ended an output with.
fn is_cut(line: &str) -> bool {
    line.starts_with(CUT_PREFIX)
}

/// What the output URL of release `id` answers now (besides a phase running here).
pub fn release_output_state(m: &Model, id: Uuid) -> OutputState {
    let Some(r) = m.release_by_id(id) else { return OutputState::Missing };
    let v = r.version;
    if !has_release_phase(r) {
        let why = match r.slug_id {
            Some(_) => "its Procfile has no `release` process",
            None => "it has no slug",
        };
        return OutputState::NoOutput(format!("release v{v} has no release phase ({why}), so it has no output"));
    }
    if r.status != ReleaseStatus::Pending {
        if r.output.is_empty() {
            return OutputState::Ended(vec![never_ran(m, r)]);
        }
        return OutputState::Ended(r.output.clone());
    }
    // A pending release's phase ended (its release rolls now), or has not run yet, or was cut.
    if r.output.last().is_some_and(|l| !is_cut(l)) {
        return OutputState::Ended(r.output.clone());
    }
    let ahead = m.releases_of(r.app_id).into_iter().find(|o| o.version < v && o.status == ReleaseStatus::Pending);
    let canary = m.canary_release_making(r.id).filter(|c| c.state.is_open());
    let why = match (r.output.is_empty(), ahead) {
        (true, _) if let Some(c) = canary => format!(
            "-----> v{v}'s release phase has not started yet: it runs once its canary release on {} is promoted; \
             this stream follows it then",
            c.canary_app
        ),
        (false, _) => format!(
            "-----> v{v}'s release phase runs again from its start when Wharf's supervisor gets to it (Wharf \
             stopped while it ran); this stream follows it then"
        ),
        (true, Some(o)) => format!(
            "-----> v{v}'s release phase has not started yet: v{} is pending before it (an app runs one release \
             phase at a time); this stream follows it when it starts",
            o.version
        ),
        (true, None) => {
            format!("-----> v{v}'s release phase has not started yet; this stream follows it when it starts")
        }
    };
    OutputState::NotYet { lines: rerun_lines(&r.output), why }
}

/// The text a settled release whose phase never ran answers: which release superseded it (the
/// oldest newer one settled in the same commit that did not skip its own phase), or that none
/// ran it here. `settle_release` stores the superseded case's text when it settles; this reads
/// older records the same way.
fn never_ran(m: &Model, r: &Release) -> String {
    let v = r.version;
    // A release held by a canary release runs its phase once the canary is promoted; an
    // aborted canary fails it before.
    if let Some(c) = m.canary_release_making(r.id) {
        let outcome = c.outcome.clone().unwrap_or_default();
        return format!(
            " !     v{v}'s release phase never ran: its canary release on {} ended first ({outcome})",
            c.canary_app
        );
    }
    let by = m.releases_of(r.app_id).into_iter().find(|o| {
        o.version > v
            && o.updated_at == r.updated_at
            && o.status == r.status
            && (!o.output.is_empty() || !has_release_phase(o))
    });
    match by {
        Some(o) => superseded_line(v, o.version, r.status),
        None => format!(
            " !     v{v}'s release phase never ran: the release was {} without it (no supervisor in this Wharf ran \
             it)",
            r.status.as_str()
        ),
    }
}

/// The text of a release `v` whose phase never ran because release `by` settled first, as
/// `status`.
pub(crate) fn superseded_line(v: u32, by: u32, status: ReleaseStatus) -> String {
    format!(
        " !     v{v}'s release phase never ran: v{by} superseded it before it started, and v{v} is {} with v{by}",
        status.as_str()
    )
}

/// What the output URL of build `id` answers now (besides a build running here): its stored
/// lines once it ended (failed, or succeeded and its output says what became of its release,
/// or that release settled), else what its record holds so far while another process runs it.
pub fn build_output_state(m: &Model, id: Uuid) -> OutputState {
    let Some(b) = m.build(id) else { return OutputState::Missing };
    let release_settled =
        b.release_id.and_then(|r| m.release_by_id(r)).is_none_or(|r| r.status != ReleaseStatus::Pending);
    let fate = b.output.last().is_some_and(|l| super::builds::is_release_fate(l));
    let ended = match b.status {
        BuildStatus::Failed => true,
        BuildStatus::Succeeded => fate || release_settled,
        BuildStatus::Pending => false,
    };
    if ended {
        return OutputState::Ended(b.output.clone());
    }
    let why = "-----> This build is not running in this process (another Wharf sharing its store runs it, or \
               Wharf is starting): this stream follows it when it runs here, or gives its output when it ends";
    OutputState::NotYet { lines: b.output.clone(), why: why.to_owned() }
}

/// The line Wharf's stop ends the running output `id` with: what stopped, and what becomes of
/// it at the next start.
pub(crate) fn cut_line(m: &Model, id: Uuid) -> String {
    if let Some(r) = m.release_by_id(id) {
        let v = r.version;
        return format!(
            "{CUT_PREFIX} v{v}'s release phase ran: it is cut short here, and runs again from its start when Wharf \
             starts again (v{v} stays pending until then)"
        );
    }
    match m.build(id) {
        Some(b) if b.status == BuildStatus::Succeeded => {
            let v = b.release_id.and_then(|r| m.release_by_id(r)).map_or(0, |r| r.version);
            format!("{CUT_PREFIX} v{v} was being released: when Wharf starts again, this output follows it again")
        }
        _ => format!("{CUT_PREFIX} this build ran: it is cut short here, and fails (start it again)"),
    }
}

/// The lines a release phase that runs again keeps of its run before (`output`, its record):
/// within a quarter of an output's caps, so that the new run's own first lines still stream as
/// they come (the first half streams): its first lines in half of that, its last in the other
/// half (the last says how the run was cut), and between them, when any were left out, a line
/// saying how many (FE45: keeping only the first lines hid the cut).
fn rerun_lines(output: &[String]) -> Vec<String> {
    let (lines, bytes) = (MAX_OUTPUT_LINES / 8, MAX_OUTPUT_BYTES / 8);
    let within = |it: &mut dyn Iterator<Item = &String>| {
        let mut used = 0;
        it.take(lines)
            .take_while(|l| {
                used += l.len();
                used <= bytes
            })
            .count()
    };
    let head = within(&mut output.iter());
    let tail = within(&mut output[head..].iter().rev());
    let left_out = output.len() - head - tail;
    let mut kept = output[..head].to_vec();
    if left_out > 0 {
        kept.push(format!(" !     {left_out} lines left out here are in the app's log stream only"));
    }
    kept.extend_from_slice(&output[output.len() - tail..]);
    kept
}

/// What the output of `r`'s release phase starts with when the phase starts: nothing for its
/// first run; for a run again, the lines followers were given of the run before
/// ([`release_output_state`]'s) and a line saying it runs again.
pub(crate) fn rerun_seed(r: &Release) -> Vec<String> {
    if r.output.is_empty() {
        return vec![];
    }
    let mut lines = rerun_lines(&r.output);
    lines.push(format!(
        " !     Wharf started again while v{} was pending: its release phase runs again from its start",
        r.version
    ));
    lines
}

#[cfg(test)]
mod tests {
    use wharf_domain::new_id;

    use super::super::outputs::dropped_line;
    use super::*;
    use wharf_domain::CanaryPolicy;

    use crate::model::{Build, CanaryRelease, CanaryReleaseState, Change, Object, ReleaseProcess};

    fn lines(l: &[&str]) -> Vec<String> {
        l.iter().map(|s| (*s).to_owned()).collect()
    }

    /// Issue 21: every state of a release or a build has its answer, and none is a bare end
    /// for something that has not ended.
    #[tokio::test]
    async fn an_output_url_says_what_state_its_release_or_build_is_in() {
        let p = super::super::tests::plane().await;
        let app = p.create_app("api".parse().unwrap(), "default").await.unwrap();
        let v1 = p.read(|m| m.latest_release(app.id).unwrap().clone()).await;
        let phase = ReleaseProcess {
            dyno_type: "release".parse().unwrap(),
            command: Some("migrate".into()),
            port: None,
            healthcheck: None,
        };
        let release = |version: u32, status: ReleaseStatus, output: &[&str], at: i64| Release {
            id: new_id(),
            version,
            status,
            processes: vec![phase.clone()],
            output: lines(output),
            updated_at: at,
            ..v1.clone()
        };
        use ReleaseStatus::*;
        let cut = format!("{CUT_PREFIX} v4's release phase ran: ...");
        let rs = [
            // v2 and v3 settled in one commit (second 50): v3 ran its phase, v2 never did.
            release(2, Succeeded, &[], 50),
            release(3, Succeeded, &["Release phase of v3 succeeded"], 50),
            release(4, Pending, &["migrating", &cut], 60),
            release(5, Pending, &[], 60),
            release(6, Failed, &[], 70),
            Release { processes: vec![], ..release(7, Pending, &[], 70) },
        ];
        let mut puts: Vec<Change> = rs.iter().map(|r| Change::Put(Object::Release(r.clone()))).collect();
        // v8 waits for its canary release; v9's canary was aborted.
        let (v8, v9) = (release(8, Pending, &[], 80), release(9, Failed, &[], 90));
        for (r, state, outcome) in [
            (&v8, CanaryReleaseState::Running, None),
            (&v9, CanaryReleaseState::Aborted, Some("the canary was aborted by hand".to_owned())),
        ] {
            puts.push(Change::Put(Object::Release(r.clone())));
            puts.push(Change::Put(Object::CanaryRelease(Box::new(CanaryRelease {
                id: new_id(),
                app_id: app.id,
                canary_app_id: new_id(),
                canary_app: "apicanary-default".into(),
                canary_id: None,
                release_id: r.id,
                promotion_id: None,
                policy: CanaryPolicy::with_weight(wharf_domain::Weight::from_percent(10.0).unwrap()),
                soak_requests: Some(10),
                soak_seconds: None,
                state,
                evidence: None,
                outcome,
                running_since: None,
                created_at: 0,
                updated_at: 0,
            }))));
        }
        p.change(|_| Ok(((), puts))).await.unwrap();
        let canary_rows = [
            (
                v8.id,
                OutputState::NotYet {
                    lines: vec![],
                    why: "-----> v8's release phase has not started yet: it runs once its canary release on \
                          apicanary-default is promoted; this stream follows it then"
                        .into(),
                },
            ),
            (
                v9.id,
                OutputState::Ended(lines(&[
                    " !     v9's release phase never ran: its canary release on apicanary-default ended first (the \
                     canary was aborted by hand)",
                ])),
            ),
        ];
        for (id, want) in canary_rows {
            assert_eq!(p.read(|m| release_output_state(m, id)).await, want);
        }
        let not_yet = |l: &[&str], why: &str| OutputState::NotYet { lines: lines(l), why: why.to_owned() };
        // (release, what its URL answers)
        let rows = [
            (2, OutputState::Ended(vec![superseded_line(2, 3, Succeeded)])),
            (3, OutputState::Ended(lines(&["Release phase of v3 succeeded"]))),
            (
                4,
                not_yet(
                    &["migrating", &cut],
                    "-----> v4's release phase runs again from its start when Wharf's supervisor gets to it (Wharf \
                     stopped while it ran); this stream follows it then",
                ),
            ),
            (
                5,
                not_yet(
                    &[],
                    "-----> v5's release phase has not started yet: v4 is pending before it (an app runs one release \
                     phase at a time); this stream follows it when it starts",
                ),
            ),
            (
                6,
                OutputState::Ended(lines(&[
                    " !     v6's release phase never ran: the release was failed without it (no supervisor in this \
                     Wharf ran it)",
                ])),
            ),
            (7, OutputState::NoOutput("release v7 has no release phase (it has no slug), so it has no output".into())),
        ];
        for (v, want) in rows {
            let id = rs[v - 2].id;
            assert_eq!(p.read(|m| release_output_state(m, id)).await, want, "v{v}");
        }
        assert_eq!(p.read(|m| release_output_state(m, new_id())).await, OutputState::Missing);
        // A release of code without a `release` process says so (tests/outputs.rs, through the API).
        let coded = Release { slug_id: Some(new_id()), processes: vec![], ..rs[5].clone() };
        p.change(|_| Ok(((), vec![Change::Put(Object::Release(coded.clone()))]))).await.unwrap();
        let said = "release v7 has no release phase (its Procfile has no `release` process), so it has no output";
        assert_eq!(p.read(|m| release_output_state(m, coded.id)).await, OutputState::NoOutput(said.into()));
        // The first run of a pending release with nothing ahead of it.
        p.change(|m| Ok(((), m.cascade(crate::model::Kind::Release, rs[2].id)))).await.unwrap();
        let first =
            not_yet(&[], "-----> v5's release phase has not started yet; this stream follows it when it starts");
        assert_eq!(p.read(|m| release_output_state(m, rs[3].id)).await, first);

        let build = |status: BuildStatus, release: Option<Uuid>, output: &[&str]| Build {
            release_id: release,
            output: lines(output),
            ..super::super::release_tests::test_build(app.id, status)
        };
        let elsewhere = "-----> This build is not running in this process (another Wharf sharing its store runs it, \
                         or Wharf is starting): this stream follows it when it runs here, or gives its output when it \
                         ends";
        let fate = "-----> Released v3: it is live";
        // (build, what its URL answers)
        let rows = [
            (build(BuildStatus::Pending, None, &["-----> Fetching"]), not_yet(&["-----> Fetching"], elsewhere)),
            (
                build(BuildStatus::Failed, None, &[" !     Build failed: x"]),
                OutputState::Ended(lines(&[" !     Build failed: x"])),
            ),
            (build(BuildStatus::Succeeded, Some(rs[1].id), &[fate]), OutputState::Ended(lines(&[fate]))),
            (
                build(BuildStatus::Succeeded, Some(rs[3].id), &["-----> Compressed"]),
                not_yet(&["-----> Compressed"], elsewhere),
            ),
            (
                build(BuildStatus::Succeeded, Some(rs[1].id), &["-----> Compressed"]),
                OutputState::Ended(lines(&["-----> Compressed"])),
            ),
        ];
        for (b, want) in rows {
            p.change(|_| Ok(((), vec![Change::Put(Object::Build(b.clone()))]))).await.unwrap();
            assert_eq!(p.read(|m| build_output_state(m, b.id)).await, want, "{:?} {:?}", b.status, b.output);
        }
        assert_eq!(p.read(|m| build_output_state(m, new_id())).await, OutputState::Missing);
    }

    /// A phase that runs again after a long run that a stop cut starts with what its followers
    /// were given of that run, and its own lines still stream as they come.
    #[tokio::test]
    async fn a_phase_run_again_after_a_long_cut_run_streams_its_own_lines() {
        let p = std::sync::Arc::new(super::super::tests::plane().await);
        let app = p.create_app("api".parse().unwrap(), "default").await.unwrap();
        let v1 = p.read(|m| m.latest_release(app.id).unwrap().clone()).await;
        let mut output: Vec<String> = (0..MAX_OUTPUT_LINES).map(|n| format!("line {n}")).collect();
        output.push(format!("{CUT_PREFIX} v1's release phase ran: ..."));
        let given = rerun_lines(&output);
        // (FE45) The first and the last eighth of the caps, with the count of those left out
        // between: the last says how the run was cut.
        let eighth = MAX_OUTPUT_LINES / 8;
        assert_eq!(given.len(), 2 * eighth + 1, "a quarter of the caps and the count: {given:?}");
        assert_eq!(
            given[eighth],
            format!(" !     {} lines left out here are in the app's log stream only", 1001 - 2 * eighth)
        );
        assert!(given.last().unwrap().starts_with(CUT_PREFIX), "{given:?}");
        assert_eq!(rerun_lines(&output[..10]), output[..10], "a short run is kept whole");
        let seed = rerun_seed(&Release { output, ..v1.clone() });
        assert_eq!(seed[..given.len()], given[..], "followers were given the seed's first lines");
        assert!(seed.last().unwrap().contains("its release phase runs again from its start"), "{seed:?}");
        let out = p.open_output(v1.id, seed);
        let rx = p.output(v1.id).unwrap();
        out.push("the new run".into());
        assert_eq!(rx.borrow().lines.last().map(String::as_str), Some("the new run"), "it streams as it comes");
    }

    /// Issue 21: storing an output drops the stored outputs of the app's releases and builds
    /// past its newest `KEPT_OUTPUTS` (a line says so), but pending ones'; other apps' stay.
    #[tokio::test]
    async fn an_app_keeps_the_outputs_of_its_newest_releases_and_builds_only() {
        use super::super::outputs::KEPT_OUTPUTS;
        let p = super::super::tests::plane().await;
        let (api, other) = (
            p.create_app("api".parse().unwrap(), "default").await.unwrap(),
            p.create_app("other".parse().unwrap(), "default").await.unwrap(),
        );
        let v1 = p.read(|m| m.latest_release(api.id).unwrap().clone()).await;
        let count = KEPT_OUTPUTS + 5;
        let mut puts = Vec::new();
        for n in 0..count {
            let status = if n == 0 { ReleaseStatus::Pending } else { ReleaseStatus::Succeeded };
            let output = lines(&["its phase"]);
            let r = Release { id: new_id(), version: n as u32 + 2, status, output, ..v1.clone() };
            puts.push(Change::Put(Object::Release(r)));
            for app_id in [api.id, other.id] {
                let b = Build {
                    output: lines(&["its build"]),
                    created_at: n as i64,
                    updated_at: n as i64,
                    ..super::super::release_tests::test_build(app_id, BuildStatus::Failed)
                };
                puts.push(Change::Put(Object::Build(b)));
            }
        }
        p.change(|_| Ok(((), puts))).await.unwrap();
        let newest = p.read(|m| m.latest_release(api.id).unwrap().id).await;
        p.store_output(newest, lines(&["its phase, again"])).await;
        let dropped = vec![dropped_line()];
        let (releases, builds, others) = p
            .read(|m| {
                let outputs = |v: Vec<&Vec<String>>| v.into_iter().cloned().collect::<Vec<_>>();
                (
                    outputs(m.releases_of(api.id).iter().map(|r| &r.output).collect()),
                    outputs(m.builds_of(api.id).iter().map(|b| &b.output).collect()),
                    outputs(m.builds_of(other.id).iter().map(|b| &b.output).collect()),
                )
            })
            .await;
        // v1 (app creation, no output), v2 (pending: kept), then 4 dropped, then the newest 10.
        assert_eq!(releases[0], Vec::<String>::new());
        assert_eq!(releases[1], lines(&["its phase"]), "a pending release keeps its output");
        assert!(releases[2..count + 1 - KEPT_OUTPUTS].iter().all(|o| *o == dropped), "{releases:?}");
        assert!(releases[count + 1 - KEPT_OUTPUTS..count].iter().all(|o| *o == lines(&["its phase"])), "{releases:?}");
        assert_eq!(releases[count], lines(&["its phase, again"]));
        assert!(builds[..count - KEPT_OUTPUTS].iter().all(|o| *o == dropped), "{builds:?}");
        assert!(builds[count - KEPT_OUTPUTS..].iter().all(|o| *o == lines(&["its build"])), "{builds:?}");
        assert!(others.iter().all(|o| *o == lines(&["its build"])), "another app's outputs stay: {others:?}");
    }
}
