//! The tests' fake Kubernetes API server (`tests/support/fake_kube.rs`) as a program of
//! its own, for the end-to-end drill (`scripts/e2e`): rollwarden's watchers and its
//! rollout undo talk to it through the kubeconfig it writes, with the Deployment
//! controller simulated so that an undo completes its rollout.
//!
//! A second listener, the control API, lets the drill drive and inspect it:
//! - `POST /__apply`: create or replace objects (one, or a `kind: List`), as a
//!   `kubectl apply` would; a Deployment with a new template rolls out at once.
//! - `GET /__objects/{kind}/{namespace}/{name}`: an object as stored.
//! - `GET /__requests`: every request the Kubernetes API received, oldest first
//!   (method, path, query, content_type, body).
//! - `POST /__hold_patch` `{"path": P}`: the next PATCH of request path P is applied,
//!   but its answer is withheld (the client never hears back);
//!   `GET /__held` says how many answers are withheld (`{"held": N}`), and
//!   `POST /__release` `{"cut": true|false}` ends them: cut the connections, or answer
//!   late.
//!
//! Usage: `cargo run --example fake_kube_server -- --kubeconfig DIR/kubeconfig
//! --ready-file DIR/ready.json tests/fixtures/deployment-with-replicasets.json`.
//! Once both listeners are up it writes `{"api": URL, "control": URL}` to the ready file;
//! it runs until SIGTERM or SIGINT.

#[path = "../tests/support/fake_kube.rs"]
mod fake_kube;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Parser;
use serde_json::{Value, json};

use fake_kube::{FakeKube, HeldAnswer};

/// The kinds the fake serves, as `apply` accepts them.
const SERVED: [(&str, &str); 5] = [
    ("apps/v1", "Deployment"),
    ("apps/v1", "ReplicaSet"),
    ("v1", "Secret"),
    ("v1", "ConfigMap"),
    ("argoproj.io/v1alpha1", "Rollout"),
];

#[derive(Parser)]
#[command(about = "The fake Kubernetes API server of rollwarden's tests, standalone")]
struct Args {
    /// Address of the Kubernetes API (port 0: a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Address of the control API (port 0: a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    control: SocketAddr,
    /// Where to write a kubeconfig that points at the Kubernetes API.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// Where to write `{"api": URL, "control": URL}` once both listen.
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// Leave Deployments as written instead of simulating their controller.
    #[arg(long)]
    no_controller: bool,
    /// JSON files to load at start: a `kind: List` or a single object each.
    fixtures: Vec<PathBuf>,
}

type Shared = Arc<FakeKube>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let fake = FakeKube::start_on(args.listen)
        .await
        .with_context(|| format!("bind {}", args.listen))?;
    fake.simulate_deployment_controller(!args.no_controller);
    for fixture in &args.fixtures {
        let absolute = std::path::absolute(fixture)
            .with_context(|| format!("resolve {}", fixture.display()))?;
        fake.load_list(absolute);
    }
    write_atomically(&args.kubeconfig, &kubeconfig(&fake.url()))?;

    let fake: Shared = Arc::new(fake);
    let control = Router::new()
        .route("/__apply", post(apply))
        .route("/__objects/{kind}/{namespace}/{name}", get(object))
        .route("/__requests", get(requests))
        .route("/__hold_patch", post(hold_patch))
        .route("/__held", get(held))
        .route("/__release", post(release))
        .with_state(Arc::clone(&fake));
    let listener = tokio::net::TcpListener::bind(args.control)
        .await
        .with_context(|| format!("bind {}", args.control))?;
    let control_url = format!("http://{}", listener.local_addr()?);
    if let Some(ready) = &args.ready_file {
        let ready_json = json!({"api": fake.url(), "control": control_url});
        write_atomically(ready, &ready_json.to_string())?;
    }
    eprintln!("fake kube: API on {}, control on {control_url}", fake.url());
    axum::serve(listener, control)
        .with_graceful_shutdown(shutdown())
        .await?;
    Ok(())
}

async fn shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Applies one object or every item of a `kind: List`; answers the stored objects.
async fn apply(
    State(fake): State<Shared>,
    Json(body): Json<Value>,
) -> Result<Json<Vec<Value>>, (StatusCode, String)> {
    let items = match body.get("kind").and_then(Value::as_str) {
        Some("List") => body
            .get("items")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
        _ => vec![body],
    };
    // `FakeKube::apply` panics on what it does not serve: refuse that first.
    for item in &items {
        let api_version = item.get("apiVersion").and_then(Value::as_str);
        let kind = item.get("kind").and_then(Value::as_str);
        let served = SERVED
            .iter()
            .any(|&(v, k)| Some(v) == api_version && Some(k) == kind);
        let named = item.pointer("/metadata/name").and_then(Value::as_str);
        if !served || named.is_none_or(str::is_empty) {
            return Err((
                StatusCode::BAD_REQUEST,
                format!("not a served object with a name: {item}"),
            ));
        }
    }
    Ok(Json(items.into_iter().map(|o| fake.apply(o)).collect()))
}

async fn object(
    State(fake): State<Shared>,
    UrlPath((kind, namespace, name)): UrlPath<(String, String, String)>,
) -> Result<Json<Value>, (StatusCode, String)> {
    if !SERVED.iter().any(|&(_, k)| k.eq_ignore_ascii_case(&kind)) {
        return Err((StatusCode::BAD_REQUEST, format!("{kind} is not served")));
    }
    fake.get(&kind, &namespace, &name).map(Json).ok_or((
        StatusCode::NOT_FOUND,
        format!("no {kind} {namespace}/{name}"),
    ))
}

async fn requests(State(fake): State<Shared>) -> Json<Value> {
    Json(json!(fake.requests()))
}

/// `{"path": P}`: withholds the answer to the next PATCH of P.
async fn hold_patch(
    State(fake): State<Shared>,
    Json(body): Json<Value>,
) -> Result<Json<Value>, (StatusCode, String)> {
    let path = body
        .get("path")
        .and_then(Value::as_str)
        .filter(|p| p.starts_with('/'))
        .ok_or((
            StatusCode::BAD_REQUEST,
            format!("expected {{\"path\": \"/apis/...\"}}, got {body}"),
        ))?;
    fake.hold_next_patch(path);
    Ok(Json(json!({"holding": path})))
}

async fn held(State(fake): State<Shared>) -> Json<Value> {
    Json(json!({"held": fake.held_patches()}))
}

/// `{"cut": true}` cuts the withheld answers' connections; `false` sends them late.
async fn release(State(fake): State<Shared>, Json(body): Json<Value>) -> Json<Value> {
    let held = fake.held_patches();
    let how = if body.get("cut").and_then(Value::as_bool).unwrap_or(true) {
        HeldAnswer::Cut
    } else {
        HeldAnswer::Send
    };
    fake.release_held_patches(how);
    Json(json!({"released": held}))
}

/// A kubeconfig for a plain-HTTP server without credentials.
fn kubeconfig(server: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {server}\n\
         users:\n- name: fake\n  user: {{}}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n\
         current-context: fake\n"
    )
}

/// Writes beside `path`, then renames, so that a reader never sees half a file.
fn write_atomically(path: &Path, content: &str) -> anyhow::Result<()> {
    let partial = path.with_extension("partial");
    std::fs::write(&partial, content).with_context(|| format!("write {}", partial.display()))?;
    std::fs::rename(&partial, path).with_context(|| format!("rename to {}", path.display()))?;
    Ok(())
}
