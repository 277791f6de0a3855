//! A request that was waiting at a canary's dynos for its response head when the canary was
//! aborted (`judged::Waited::CanaryEnded`): sent again to the app's own dynos, or answered 503
//! `C10` at once. Its own file: it runs only at a canary's abort, and the proxy's path stays
//! in one piece.

use std::sync::Arc;

use super::{Attempt, Reply, finish};
use crate::access_log::AccessLog;
use crate::deadline::Deadline;
use crate::error::{Code, ProxyError};
use crate::state::RouterState;
use crate::table::WebDynos;

/// A request that was waiting at a canary's dynos for its response head when the canary was
/// aborted. Nothing of a response has reached its client, so, as RFC 9110 (9.2.2) lets a proxy
/// do for an idempotent request, one without a body (nothing of it lost with the dropped
/// attempt) and of an idempotent method is sent again, to the app's own dynos, and answered as
/// any request to them (not judged: the judge has decided). Any other (a `POST`, or a request
/// whose body went to the canary) is answered 503 with `C10` at once, the abort's code, rather
/// than the router's H12 at 30 s. It runs only at a canary's abort; the caller boxes it.
pub(super) async fn canary_ended(
    baseline: Option<Arc<WebDynos>>,
    canary: &WebDynos,
    has_body: bool,
    attempt: &Attempt<'_>,
    shared: &Arc<RouterState>,
    first_byte: &mut Deadline,
    mut log: AccessLog,
) -> Reply {
    match baseline {
        Some(baseline) if !has_body && attempt.method.is_idempotent() => {
            log.app = baseline.app.clone();
            log.stats = baseline.stats.clone();
            let outcome = attempt.run(&baseline, None, shared, first_byte, &mut log).await;
            finish(outcome, None, &baseline, log, shared)
        }
        _ => finish(Err(ProxyError::bare(Code::C10)), None, canary, log, shared),
    }
}
