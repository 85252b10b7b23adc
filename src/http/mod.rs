//! The HTTP surface: the router, its layers, and one module per resource or webhook.
//! Handlers parse, authorise and hand over; they hold no business logic.

mod actions;
mod alertmanager;
mod alerts;
mod analysis;
pub mod auth;
mod decisions;
mod deploys;
pub mod error;
pub mod extract;
mod flagger;
mod freezes;
mod health;
mod query;
mod signals;

use std::time::{Duration, Instant};

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::HeaderName;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::app::AppState;
use crate::domain::Access;
use crate::telemetry::HttpLabels;
use auth::Gate;
use error::ApiError;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole API with its layers.
pub fn router(state: AppState) -> Router {
    let gate = |access| Gate {
        auth: state.auth.clone(),
        access,
    };
    let ingest = Router::new()
        .merge(alertmanager::router())
        .merge(deploys::ingest_router())
        .merge(signals::router())
        .route_layer(middleware::from_fn_with_state(
            gate(Access::Ingest),
            auth::require,
        ))
        // Ingest too (role webhook), with its own layer: Flagger cannot send headers,
        // so its token may come in the payload.
        .merge(
            flagger::router().route_layer(middleware::from_fn_with_state(
                flagger::FlaggerGate {
                    gate: gate(Access::Ingest),
                    body_limit: state.body_limit_bytes,
                },
                flagger::authenticate,
            )),
        );
    let read = Router::new()
        .merge(alerts::router())
        .merge(analysis::router())
        .merge(deploys::read_router())
        .merge(decisions::router())
        .merge(freezes::read_router())
        .merge(actions::read_router())
        .route_layer(middleware::from_fn_with_state(
            gate(Access::Read),
            auth::require,
        ));
    let write = Router::new()
        .merge(freezes::write_router())
        .merge(actions::write_router())
        .route_layer(middleware::from_fn_with_state(
            gate(Access::Write),
            auth::require,
        ));
    let timeout = Duration::from_secs(state.request_timeout_secs);

    Router::new()
        .merge(ingest)
        .merge(read)
        .merge(write)
        .merge(health::router())
        .fallback(|| async { ApiError::not_found() })
        .layer(middleware::from_fn_with_state(state.clone(), track_latency))
        .layer(DefaultBodyLimit::max(state.body_limit_bytes))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(|req: &Request| {
                            let request_id = req
                                .headers()
                                .get(REQUEST_ID)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("");
                            tracing::info_span!(
                                "request",
                                method = %req.method(),
                                path = %req.uri().path(),
                                request_id,
                                principal = tracing::field::Empty,
                            )
                        })
                        .on_response(DefaultOnResponse::new().level(Level::INFO)),
                )
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                .layer(CatchPanicLayer::custom(|_| {
                    ApiError::internal().into_response()
                }))
                .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
                    ApiError::unavailable("the request timed out; retry later")
                }))
                .layer(tower::timeout::TimeoutLayer::new(timeout)),
        )
        .with_state(state)
}

/// Records every request's latency by method, matched route and status.
async fn track_latency(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().to_string();
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let response = next.run(req).await;
    state
        .metrics
        .http_duration
        .get_or_create(&HttpLabels {
            method,
            path,
            status: response.status().as_u16(),
        })
        .observe(started.elapsed().as_secs_f64());
    response
}
