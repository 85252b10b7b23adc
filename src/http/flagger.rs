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

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::analysis::{Assessment, assess};
use super::auth::{self, Gate};
use super::error::ApiError;
use super::extract::RawBody;
use crate::app::AppState;
use crate::domain::canary::{self, Answer, Hook};
use crate::store::DeployWrite;
use crate::wire::flagger::{Answered, FlaggerCall, FlaggerPayload};

const SOURCE: &str = "flagger";

pub fn router() -> Router<AppState> {
    Router::new().route("/webhooks/flagger/{hook}", post(receive_hook))
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

async fn receive_hook(
    State(state): State<AppState>,
    Path(hook): Path<String>,
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
            state.metrics.notification(SOURCE, "rejected");
            tracing::info!(code = err.code, message = %err.message, hook = hook.as_str(), "Flagger call rejected");
        })?;
    if !hook.asks() {
        let write = record(&state, &call, Some(call.entry(None))).await?;
        if let Some(engine) = state.engine.as_ref().filter(|_| write.changed) {
            engine.touched(vec![call.target.clone()]);
        }
        state.metrics.notification(SOURCE, "accepted");
        let body = json!({
            "hook": hook.as_str(),
            "target": call.target.key(),
            "answer": "recorded",
            "deploy_id": write.id,
        });
        return Ok((StatusCode::OK, Json(body)).into_response());
    }
    // The run is on record before the evaluation, which may blame it.
    record(&state, &call, None).await?;
    let assessment = assess(&state, &call.target)
        .await
        .inspect_err(|_| state.metrics.notification(SOURCE, "failed"))?;
    let decision = &assessment.evaluation.decision;
    let answer = canary::answer(
        hook,
        &assessment.status,
        &decision.reason,
        &assessment.covering(),
    );
    let entry = call.entry(Some(Answered {
        status: answer.status(),
        verdict: decision.verdict.as_str(),
        decision_id: assessment.evaluation.stored.id,
    }));
    let write = record(&state, &call, Some(entry)).await?;
    state.metrics.notification(SOURCE, "accepted");
    tracing::info!(
        hook = hook.as_str(),
        target = %call.target,
        answer = answer.status(),
        verdict = decision.verdict.as_str(),
        "Flagger hook answered"
    );
    Ok(respond(&call, &assessment, &answer, write.id))
}

/// Records the call on its canary run's deploy row.
async fn record(
    state: &AppState,
    call: &FlaggerCall,
    entry: Option<Value>,
) -> Result<DeployWrite, ApiError> {
    let deploy = call.to_deploy(entry);
    let writes = state
        .store
        .record_deploys(std::slice::from_ref(&deploy), state.clock.now())
        .await
        .inspect_err(|err| {
            state.metrics.notification(SOURCE, "failed");
            state.metrics.store_error("record_deploys", err);
        })?;
    let write = *writes.first().ok_or_else(ApiError::internal)?;
    state
        .metrics
        .deploy_recorded(SOURCE, write.created, write.changed);
    Ok(write)
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
            let mut body = facts;
            body["answer"] = if call.hook == Hook::Rollback {
                "rollback"
            } else {
                "pass"
            }
            .into();
            body["reason"] = decision.reason.clone().into();
            (StatusCode::OK, Json(body)).into_response()
        }
        Answer::Refuse { code, why } => ApiError::new(StatusCode::FORBIDDEN, code, why.clone())
            .with_details(facts)
            .into_response(),
    }
}
