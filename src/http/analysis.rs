//! `GET /api/v1/analysis/{namespace}/{name}`: the Argo Rollouts web metric provider
//! (and any canary pipeline) asks what rollwarden decides about a target now.
//!
//! Every verdict is a 200 with JSON (PROTOCOLS.md C.2: Argo counts a non-2xx as a
//! measurement error, not a failure, and a body that is not JSON as a success). A
//! template tests `rollback` in its `failureCondition` and `healthy` in its
//! `successCondition`; when neither holds (a hold, an investigation, a freeze) the
//! measurement is inconclusive and Argo pauses the rollout. Non-2xx answers are kept
//! for "cannot tell": 400 for a malformed request, 503 when the store is down.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use super::query::{self, ApiPath, ApiQuery, KubeName};
use crate::app::AppState;
use crate::domain::canary::CanaryStatus;
use crate::domain::field::Field;
use crate::domain::{Freeze, Outcome, Scope, SignalKind, TargetRef, Verdict};
use crate::engine::Evaluation;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(analyse_target))
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
/// cover it. It reads the target's own inputs ([`crate::engine::Engine::snapshot_for`]),
/// not the whole window: Argo and Flagger call it every analysis interval.
pub async fn assess(state: &AppState, key: &TargetRef) -> Result<Assessment, ApiError> {
    let engine = &state.evaluator;
    let target = engine.target(key);
    let snapshot = engine
        .snapshot_for(key)
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

/// The target of an analysis: a workload's namespace and name.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct AnalysisPath {
    /// The workload's namespace.
    #[param(inline, example = "prod")]
    namespace: KubeName,
    /// The workload's name.
    #[param(inline, example = "checkout")]
    name: KubeName,
}

/// Another cluster or kind than the defaults.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct AnalysisQuery {
    /// The cluster in the target key (default `kubernetes.cluster`).
    #[param(inline)]
    cluster: Option<ClusterName>,
    /// The workload's kind (default `Deployment`).
    #[param(inline)]
    kind: Option<KubeKind>,
}

query::text_newtype!(
    KubeName(String),
    |s| Field::Name.fits(s).then(|| s.to_string()),
    "must be a Kubernetes name: a DNS-1123 subdomain (lower-case letters, digits, '-' \
     and '.', starting and ending with a letter or digit), at most 253",
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(253))
        .pattern(Some(
            "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
        ))
);

/// A cluster name as target keys carry it: like [`KubeName`], or empty.
struct ClusterName(String);

query::text_newtype!(
    ClusterName(String),
    |s| Field::Cluster.fits(s).then(|| s.to_string()),
    "must be a cluster name: a DNS-1123 subdomain, at most 253, or empty",
    ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(253))
        .pattern(Some(
            "^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)?$"
        ))
);

/// A Kubernetes kind, such as `Deployment`.
struct KubeKind(String);

query::text_newtype!(
    KubeKind(String),
    |s| Field::Kind.fits(s).then(|| s.to_string()),
    "must be a Kubernetes kind such as Deployment",
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(63))
        .pattern(Some("^[A-Za-z][A-Za-z0-9]{0,62}$"))
);

/// What rollwarden decides about a target now, for Argo Rollouts' web metric provider
/// and canary pipelines. Always 200 with JSON for a well-formed request: Argo reads a
/// non-2xx as a measurement error, not a failure.
#[utoipa::path(get, path = "/api/v1/analysis/{namespace}/{name}", tag = "canary",
    params(AnalysisPath, AnalysisQuery),
    responses(
        (status = 200, description = "The verdict with its evidence", body = Analysis),
        (status = 400, description = "A malformed name, cluster or kind, or an unknown query parameter",
            body = ErrorBody),
    ))]
async fn analyse_target(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<AnalysisPath>,
    ApiQuery(q): ApiQuery<AnalysisQuery>,
) -> Result<Json<Analysis>, ApiError> {
    let cluster = q.cluster.map_or_else(|| state.cluster.clone(), |c| c.0);
    let kind = q.kind.map_or_else(|| "Deployment".to_string(), |k| k.0);
    let key = TargetRef::new(&cluster, &path.namespace.0, &kind, &path.name.0);
    let assessment = assess(&state, &key).await?;
    Ok(Json(analysis_body(&key, &assessment)))
}

/// A fired rule as a canary controller reads it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AnalysisRule {
    pub rule_id: String,
    pub kind: SignalKind,
    pub scope: Scope,
    /// The condition in words (`> 5 %`).
    pub condition: String,
    pub outcome: Outcome,
    pub observed: Option<f64>,
    pub threshold: Option<f64>,
    pub baseline: Option<f64>,
    pub duration_secs: Option<u64>,
}

/// Why a rollback is held.
#[derive(Debug, Serialize, ToSchema)]
pub struct AnalysisHold {
    /// `H1`, `H2`, `inconclusive`…
    pub code: String,
    pub detail: String,
}

/// A freeze covering the target.
#[derive(Debug, Serialize, ToSchema)]
pub struct AnalysisFreeze {
    pub id: i64,
    pub scope: String,
    pub reason: String,
    pub created_by: String,
    pub expires_at: Option<DateTime<Utc>>,
}

/// What a canary controller reads: the verdict and the booleans its conditions test
/// (`result.rollback == true` fails the canary, `result.healthy == true` passes it), the
/// rules that fired with their numbers, the holds, and the freezes.
#[derive(Debug, Serialize, ToSchema)]
pub struct Analysis {
    /// `cluster/namespace/kind/name`.
    pub target: String,
    pub verdict: Verdict,
    /// rollwarden decides the canary must roll back.
    pub rollback: bool,
    /// Nothing stands in the way of the canary advancing.
    pub healthy: bool,
    /// A freeze covers the target.
    pub frozen: bool,
    /// The release the target rolls out regressed in another region and its wave was
    /// stopped: the version is refused here (a failure for the shipped
    /// AnalysisTemplate).
    pub wave_stopped: bool,
    /// Why, when `wave_stopped`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wave_stop_reason: Option<String>,
    pub reason: String,
    pub fired: Vec<AnalysisRule>,
    pub holds: Vec<AnalysisHold>,
    pub freezes: Vec<AnalysisFreeze>,
    pub decision_id: i64,
    pub decided_at: DateTime<Utc>,
    pub evaluated_at: DateTime<Utc>,
}

fn analysis_body(key: &TargetRef, a: &Assessment) -> Analysis {
    let decision = &a.evaluation.decision;
    let stored = &a.evaluation.stored;
    Analysis {
        target: key.key(),
        verdict: a.status.verdict,
        rollback: a.status.rollback,
        healthy: a.status.healthy,
        frozen: a.status.frozen,
        wave_stopped: a.status.wave_stopped.is_some(),
        wave_stop_reason: a.status.wave_stopped.clone(),
        reason: decision.reason.clone(),
        fired: decision
            .fired
            .iter()
            .map(|f| AnalysisRule {
                rule_id: f.rule_id.clone(),
                kind: f.kind,
                scope: f.scope,
                condition: f.condition.clone(),
                outcome: f.outcome,
                observed: f.observed,
                threshold: f.threshold,
                baseline: f.baseline,
                duration_secs: f.duration_secs,
            })
            .collect(),
        holds: decision
            .holds
            .iter()
            .map(|h| AnalysisHold {
                code: h.code().to_string(),
                detail: h.detail(),
            })
            .collect(),
        freezes: a
            .covering
            .iter()
            .map(|f| AnalysisFreeze {
                id: f.id,
                scope: f.scope.clone(),
                reason: f.reason.clone(),
                created_by: f.created_by.clone(),
                expires_at: f.expires_at,
            })
            .collect(),
        decision_id: stored.id,
        decided_at: stored.decided_at,
        evaluated_at: a.evaluated_at,
    }
}
