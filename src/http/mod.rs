//! The HTTP surface: the router, its layers, and one module per resource or webhook.
//! Handlers parse, authorise and hand over; they hold no business logic.

pub(crate) mod actions;
mod alertmanager;
pub(crate) mod alerts;
mod analysis;
pub mod auth;
pub(crate) mod decisions;
mod deploys;
pub mod error;
mod events;
pub mod extract;
mod flagger;
pub(crate) mod freezes;
mod guard;
mod health;
pub mod limit;
pub mod openapi;
pub(crate) mod query;
mod releases;
mod signals;
pub mod slack;
mod targets;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::HeaderName;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

use crate::app::AppState;
use crate::domain::Access;
use crate::telemetry::HttpLabels;
use auth::Gate;
use error::ApiError;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Every documented route, grouped by who may call them: the router and the OpenAPI
/// document are both built from this (see [`openapi`] for adding a route).
fn api(state: &AppState) -> OpenApiRouter<AppState> {
    let ingest = OpenApiRouter::new()
        .merge(alertmanager::router())
        .merge(deploys::ingest_router())
        .merge(signals::router());
    let read = OpenApiRouter::new()
        .merge(alerts::router())
        .merge(analysis::router())
        .merge(deploys::read_router())
        .merge(decisions::router())
        .merge(freezes::read_router())
        .merge(actions::read_router())
        .merge(events::router())
        .merge(releases::router())
        .merge(targets::router());
    let write = OpenApiRouter::new()
        .merge(freezes::write_router())
        .merge(actions::write_router());
    let public = OpenApiRouter::new()
        .merge(slack::router())
        .merge(health::router())
        .merge(openapi::router());
    OpenApiRouter::with_openapi(openapi::base())
        .merge(gated(
            ingest,
            Access::Ingest,
            state.ingest_limit.clone(),
            state,
        ))
        .merge(flagger_group(state))
        .merge(gated(read, Access::Read, None, state))
        .merge(gated(
            write,
            Access::Write,
            state.write_limit.clone(),
            state,
        ))
        .merge(public)
}

/// A route group behind the token check for `access` (and a per-caller rate limit),
/// documented as such.
fn gated(
    routes: OpenApiRouter<AppState>,
    access: Access,
    limit: Option<Arc<limit::RateLimit>>,
    state: &AppState,
) -> OpenApiRouter<AppState> {
    let mut routes = match limit {
        // Route layers run last-added first: the token check, then the limit, which
        // is keyed by the principal the check found.
        Some(budget) => routes.route_layer(middleware::from_fn_with_state(budget, limit::throttle)),
        None => routes,
    }
    .route_layer(middleware::from_fn_with_state(
        Gate {
            auth: state.auth.clone(),
            access,
        },
        auth::require,
    ));
    // Documented whether or not this instance limits: the limit is configuration.
    let limited = matches!(access, Access::Ingest | Access::Write);
    openapi::gate(routes.get_openapi_mut(), access, limited);
    routes
}

/// Flagger's webhooks: ingest (role webhook, rate-limited like the other senders), with
/// a token check of their own, because Flagger cannot send headers and its token may
/// come in the payload's metadata.
fn flagger_group(state: &AppState) -> OpenApiRouter<AppState> {
    let routes = match state.ingest_limit.clone() {
        Some(budget) => {
            flagger::router().route_layer(middleware::from_fn_with_state(budget, limit::throttle))
        }
        None => flagger::router(),
    };
    let mut routes = routes.route_layer(middleware::from_fn_with_state(
        flagger::FlaggerGate {
            gate: Gate {
                auth: state.auth.clone(),
                access: Access::Ingest,
            },
            body_limit: state.body_limit_bytes,
        },
        flagger::authenticate,
    ));
    openapi::gate(routes.get_openapi_mut(), Access::Ingest, true);
    routes
}

/// The whole API with its layers, `/openapi.json` and the viewer at `/docs`.
pub fn router(state: AppState) -> Router {
    let (api, mut document) = api(&state).split_for_parts();
    openapi::finish(&mut document);
    let mut document = serde_json::to_value(&document).expect("the OpenAPI document serialises");
    openapi::state_date_times(&mut document);
    openapi::state_limits(&mut document, &state.bounds);
    let document = openapi::Document(document.to_string().into());
    let docs = SwaggerUi::new("/docs").config(utoipa_swagger_ui::Config::from("/openapi.json"));
    let timeout = Duration::from_secs(state.request_timeout_secs);

    api.merge(Router::from(docs))
        .merge(crate::console::router(&state))
        // On matched routes only: an unknown path is still a 404, a wrong method a 405.
        .route_layer(middleware::from_fn(guard::browser_writes))
        .layer(Extension(document))
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
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

#[cfg(test)]
mod tests {
    /// The router and the OpenAPI document are one list only while every route goes
    /// through `routes!`: a route added with axum's `.route(..)` would be served but
    /// not documented (and not in the role table of tests/it/auth.rs).
    #[test]
    fn every_route_is_registered_through_the_openapi_router() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http");
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            // Spelt in pieces, so that this test does not find itself.
            let calls = ["route", "route_service", "nest_service"]
                .map(|method| format!(".{method}("))
                .into_iter()
                .chain([format!("{}::", "routing")]);
            let calls: Vec<String> = calls.collect();
            for (i, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                for call in &calls {
                    assert!(
                        !code.contains(call),
                        "{}:{}: `{call}` registers a route the OpenAPI document does not \
                         show; annotate the handler and use routes! (see http/openapi.rs)",
                        path.display(),
                        i + 1
                    );
                }
            }
        }
    }
}
