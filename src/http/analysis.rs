//! `GET /api/v1/analysis/{namespace}/{name}`: the Argo Rollouts web metric provider
//! (and any canary pipeline) asks what rollwarden decides about a target now.
//!
//! Every verdict is a 200 with JSON (PROTOCOLS.md C.2: Argo counts a non-2xx as a
//! measurement error, not a failure, and a body that is not JSON as a success). A
//! template tests `rollback` in its `failureCondition` and `healthy` in its
//! `successCondition`; when neither holds (a hold, an investigation, a freeze) the
//! measurement is inconclusive and Argo pauses the rollout. Non-2xx answers are kept
//! for "cannot tell": 400 for a malformed request, 503 when the store is down.

use axum::extract::{Path, RawQuery, State};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::error::ApiError;
use super::query::{self, invalid};
use crate::app::AppState;
use crate::domain::canary::CanaryStatus;
use crate::domain::{Freeze, TargetRef};
use crate::engine::Evaluation;
use crate::wire::check_name;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/analysis/{namespace}/{name}", get(analyse_target))
}

/// A target's decision, evaluated at the call, with the freezes covering it.
pub struct Assessment {
    pub evaluation: Evaluation,
    /// Freezes in force that cover the target.
    pub covering: Vec<Freeze>,
    pub status: CanaryStatus,
    pub evaluated_at: DateTime<Utc>,
}

impl Assessment {
    pub fn covering(&self) -> Vec<&Freeze> {
        self.covering.iter().collect()
    }
}

/// Evaluates `key` now (recording the decision if it changed) and reads which freezes
/// cover it.
pub async fn assess(state: &AppState, key: &TargetRef) -> Result<Assessment, ApiError> {
    let engine = &state.evaluator;
    let target = engine.target(key);
    let snapshot = engine
        .snapshot()
        .await
        .inspect_err(|err| state.metrics.store_error("evaluate", err))?;
    let evaluation = engine
        .evaluate_in(&target, &snapshot)
        .await
        .inspect_err(|err| state.metrics.store_error("evaluate", err))?;
    let covering: Vec<Freeze> = snapshot
        .freezes
        .into_iter()
        .filter(|f| f.covers(key, snapshot.now))
        .collect();
    let status = CanaryStatus::of(&evaluation.decision, &covering.iter().collect::<Vec<_>>());
    Ok(Assessment {
        evaluation,
        covering,
        status,
        evaluated_at: snapshot.now,
    })
}

async fn analyse_target(
    State(state): State<AppState>,
    Path((namespace, name)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let mut cluster = state.cluster.clone();
    let mut kind = "Deployment".to_string();
    for (key, value) in query::pairs(raw.as_deref()) {
        match key.as_str() {
            "cluster" => cluster = value,
            "kind" => kind = value,
            other => return Err(query::unknown(other, "cluster, kind")),
        }
    }
    let bad_path =
        |field: &str, message: String| ApiError::bad_request("invalid_path", field, message);
    check_name("namespace", &namespace, false).map_err(|e| bad_path("namespace", e.message))?;
    check_name("name", &name, false).map_err(|e| bad_path("name", e.message))?;
    check_name("cluster", &cluster, true).map_err(|e| invalid("cluster", e.message))?;
    if kind.is_empty() || kind.len() > 63 || !kind.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(invalid(
            "kind",
            "must be a Kubernetes kind such as Deployment",
        ));
    }
    let key = TargetRef::new(&cluster, &namespace, &kind, &name);
    let assessment = assess(&state, &key).await?;
    Ok(Json(analysis_body(&key, &assessment)))
}

/// What a canary controller reads: the verdict and the two booleans its conditions
/// test, the rules that fired with their numbers, the holds, and the freezes.
fn analysis_body(key: &TargetRef, a: &Assessment) -> Value {
    let decision = &a.evaluation.decision;
    let stored = &a.evaluation.stored;
    let fired: Vec<Value> = decision
        .fired
        .iter()
        .map(|f| {
            json!({
                "rule_id": f.rule_id,
                "kind": f.kind,
                "scope": f.scope,
                "condition": f.condition,
                "outcome": f.outcome,
                "observed": f.observed,
                "threshold": f.threshold,
                "baseline": f.baseline,
                "duration_secs": f.duration_secs,
            })
        })
        .collect();
    let holds: Vec<Value> = decision
        .holds
        .iter()
        .map(|h| json!({"code": h.code(), "detail": h.detail()}))
        .collect();
    let freezes: Vec<Value> = a
        .covering
        .iter()
        .map(|f| {
            json!({"id": f.id, "scope": f.scope, "reason": f.reason,
                   "created_by": f.created_by, "expires_at": f.expires_at})
        })
        .collect();
    json!({
        "target": key.key(),
        "verdict": a.status.verdict,
        "rollback": a.status.rollback,
        "healthy": a.status.healthy,
        "frozen": a.status.frozen,
        "reason": decision.reason,
        "fired": fired,
        "holds": holds,
        "freezes": freezes,
        "decision_id": stored.id,
        "decided_at": stored.decided_at,
        "evaluated_at": a.evaluated_at,
    })
}
