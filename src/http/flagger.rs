//! `POST /webhooks/flagger/{hook}`: Flagger's webhooks, every type.
//!
//! Every call is recorded on the canary run's deploy row (source `flagger`, revision the
//! payload's checksum) before it is answered; hooks that ask (gates, checks, rollback)
//! are answered from the target's decision evaluated at the call and the freezes that
//! cover it (`domain::canary` has the table). Flagger reads only 200–202 as yes
//! (PROTOCOLS.md B.3): a pass is 200, a refusal 403 with a JSON body saying why (a 4xx,
//! so that Flagger's client does not retry it, and the reason shows in its events); our
//! own transient fault is a 503, which every hook reads as "no".
//!
//! Flagger cannot send headers (PROTOCOLS.md B.1): besides `Authorization: Bearer`, this
//! route takes the token from the payload's `metadata.token`. It is never stored.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::json;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{IntoParams, PartialSchema, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::analysis::{Assessment, assess};
use super::auth::{self, Gate};
use super::error::{ApiError, ErrorBody};
use super::extract::RawBody;
use super::query::ApiPath;
use crate::app::AppState;
use crate::domain::Verdict;
use crate::domain::canary::{self, Answer, Hook};
use crate::ingest::Sender;
use crate::wire::flagger::{Answered, FlaggerCall, FlaggerPayload};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(receive_hook))
}

/// Route-layer state of [`authenticate`].
#[derive(Clone)]
pub struct FlaggerGate {
    pub gate: Gate,
    /// `server.body_limit_bytes`: how much of an unauthenticated body is read.
    pub body_limit: usize,
}

/// Middleware: the `Authorization` header when there is one, else the payload's
/// `metadata.token`; then the same 401/403 as every route.
pub async fn authenticate(State(gate): State<FlaggerGate>, req: Request, next: Next) -> Response {
    if req.headers().contains_key(header::AUTHORIZATION) || gate.gate.auth.is_open() {
        return auth::require(State(gate.gate), req, next).await;
    }
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, gate.body_limit).await else {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "body: unreadable or larger than server.body_limit_bytes",
        )
        .with_details(json!({ "field": "body" }))
        .into_response();
    };
    let principal =
        metadata_token(&bytes).and_then(|t| gate.gate.auth.authenticate_token(t.as_bytes()));
    auth::admit(
        &gate.gate,
        principal,
        Request::from_parts(parts, Body::from(bytes)),
        next,
    )
    .await
}

/// `metadata.token` of a Flagger payload, if the body has one.
fn metadata_token(body: &Bytes) -> Option<String> {
    #[derive(Deserialize)]
    struct Probe {
        metadata: Option<Metadata>,
    }
    #[derive(Deserialize)]
    struct Metadata {
        token: Option<String>,
    }
    serde_json::from_slice::<Probe>(body)
        .ok()?
        .metadata?
        .token
        .filter(|t| !t.is_empty())
}

/// A hook's 200 answer. `post-rollout` and `event` are only recorded; the others carry
/// the decision they were answered from.
#[derive(Debug, Serialize, ToSchema)]
pub struct HookAnswer {
    pub hook: String,
    /// `cluster/namespace/kind/name`.
    pub target: String,
    /// `recorded`, `pass`, or (the rollback hook) `rollback`.
    pub answer: String,
    /// The canary run's deploy row.
    pub deploy_id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthy: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frozen: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub freezes: Option<Vec<i64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Which Flagger webhook is calling.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct HookPath {
    #[param(inline, example = "confirm-promotion")]
    hook: HookName,
}

/// A hook's name as the path spells it; one that is not a Flagger hook is answered 404.
struct HookName(String);

impl<'de> Deserialize<'de> for HookName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(HookName)
    }
}

impl PartialSchema for HookName {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(Hook::ALL.map(Hook::as_str)))
            .into()
    }
}

impl ToSchema for HookName {}

/// Flagger's webhooks, every type. Flagger reads only 200–202 as yes: a pass (and, for
/// the rollback hook, "roll back now") is 200; a refusal is 403 with the reason.
#[utoipa::path(post, path = "/webhooks/flagger/{hook}", tag = "canary",
    params(HookPath),
    request_body = FlaggerPayload,
    responses(
        (status = 200, description = "Passed (or recorded; for `rollback`: roll back now)", body = HookAnswer),
        (status = 400, description = "A malformed payload", body = ErrorBody),
        (status = 403, description = "The gate is closed, the check failed, or no rollback: the reason and the decision in `details`", body = ErrorBody),
        (status = 404, description = "No such hook", body = ErrorBody),
        (status = 413, description = "The body is over server.body_limit_bytes", body = ErrorBody),
        (status = 422, description = "An `event` call without the metadata Flagger sets on \
            every event (`inconsistent`)", body = ErrorBody),
    ))]
async fn receive_hook(
    State(state): State<AppState>,
    ApiPath(HookPath {
        hook: HookName(hook),
    }): ApiPath<HookPath>,
    body: Result<RawBody, ApiError>,
) -> Result<Response, ApiError> {
    let Some(hook) = Hook::parse(&hook) else {
        let known: Vec<&str> = Hook::ALL.iter().map(|h| h.as_str()).collect();
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "no Flagger hook {hook:?}; the hooks are {}",
                known.join(", ")
            ),
        )
        .with_details(json!({ "field": "hook" })));
    };
    let now = state.clock.now();
    let call = body
        .and_then(|RawBody(body)| {
            Ok(FlaggerPayload::parse(
                &body,
                hook,
                &state.cluster,
                &state.bounds,
                now,
            )?)
        })
        .inspect_err(|err| {
            state
                .ingestor
                .rejected(Sender::Flagger, err.code, &err.message)
        })?;
    if !hook.asks() {
        let write = state
            .ingestor
            .flagger_call(&call, None, state.clock.now())
            .await?;
        let body = HookAnswer {
            hook: hook.as_str().into(),
            target: call.target.key(),
            answer: "recorded".into(),
            deploy_id: write.id,
            verdict: None,
            rollback: None,
            healthy: None,
            frozen: None,
            decision_id: None,
            freezes: None,
            reason: None,
        };
        return Ok((StatusCode::OK, Json(body)).into_response());
    }
    state.ingestor.flagger_run(&call, now).await?;
    let assessment = assess(&state, &call.target)
        .await
        .inspect_err(|_| state.ingestor.failed(Sender::Flagger))?;
    let decision = &assessment.evaluation.decision;
    let answer = canary::answer(
        hook,
        &assessment.status,
        &decision.reason,
        &assessment.covering(),
    );
    let answered = Answered {
        status: answer.status(),
        verdict: decision.verdict.as_str(),
        decision_id: assessment.evaluation.stored.id,
    };
    let write = state
        .ingestor
        .flagger_call(&call, Some(answered), state.clock.now())
        .await?;
    tracing::info!(
        hook = hook.as_str(),
        target = %call.target,
        answer = answer.status(),
        verdict = decision.verdict.as_str(),
        "Flagger hook answered"
    );
    Ok(respond(&call, &assessment, &answer, write.id))
}

fn respond(call: &FlaggerCall, a: &Assessment, answer: &Answer, deploy_id: i64) -> Response {
    let decision = &a.evaluation.decision;
    let facts = json!({
        "hook": call.hook.as_str(),
        "target": call.target.key(),
        "verdict": a.status.verdict,
        "rollback": a.status.rollback,
        "healthy": a.status.healthy,
        "frozen": a.status.frozen,
        "decision_id": a.evaluation.stored.id,
        "deploy_id": deploy_id,
        "freezes": a.covering.iter().map(|f| f.id).collect::<Vec<_>>(),
    });
    match answer {
        Answer::Pass => {
            let body = HookAnswer {
                hook: call.hook.as_str().into(),
                target: call.target.key(),
                answer: if call.hook == Hook::Rollback {
                    "rollback"
                } else {
                    "pass"
                }
                .into(),
                deploy_id,
                verdict: Some(a.status.verdict),
                rollback: Some(a.status.rollback),
                healthy: Some(a.status.healthy),
                frozen: Some(a.status.frozen),
                decision_id: Some(a.evaluation.stored.id),
                freezes: Some(a.covering.iter().map(|f| f.id).collect()),
                reason: Some(decision.reason.clone()),
            };
            (StatusCode::OK, Json(body)).into_response()
        }
        Answer::Refuse { code, why } => ApiError::new(StatusCode::FORBIDDEN, code, why.clone())
            .with_details(facts)
            .into_response(),
    }
}
