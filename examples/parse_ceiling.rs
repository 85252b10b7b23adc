//! The machine's ceiling for the benchmark: the same axum stack parsing and validating
//! the same Alertmanager bodies, storing nothing. `scripts/bench` runs it next to the
//! real service so that the figures compare like with like.
//!
//! Usage: `cargo run --release --example parse_ceiling -- 127.0.0.1:18080`

use axum::body::Bytes;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;

use rollwarden::wire::Bounds;
use rollwarden::wire::alertmanager::AlertmanagerPayload;

/// rollwarden's allocator (src/main.rs), so that the ceiling is the same stack.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18080".into());
    let app = Router::new().route(
        "/webhooks/alertmanager",
        post(|body: Bytes| async move {
            match AlertmanagerPayload::parse(&body, &Bounds::default(), chrono::Utc::now()) {
                Ok(n) => (
                    axum::http::StatusCode::OK,
                    Json(json!({"alerts": n.alerts.len()})),
                ),
                Err(e) => (
                    axum::http::StatusCode::BAD_REQUEST,
                    Json(json!({"error": e.to_string()})),
                ),
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
