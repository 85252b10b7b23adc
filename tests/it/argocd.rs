//! The argocd_rollback executor against an Argo CD API stand-in built from Argo CD's
//! documented endpoints and rules (PROTOCOLS.md I): bearer tokens, `Content-Type`
//! exactly `application/json`, `{"error","code","message"}` errors, a rollback refused
//! while auto-sync is on (400, code 9) and for an id not in the history, and a
//! rollback that appends to the history and sets the operation state.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use rollwarden::actions::executor::{
    ARGOCD_AUTO_SYNC_OFF, ArgocdRollback, ExecOutcome, Executor, Journal, MemoryJournal,
};
use rollwarden::config::Secret;

use crate::executors::record;

const TOKEN: &str = "argocd-token-for-tests";

#[derive(Debug, Clone, PartialEq)]
struct Seen {
    method: String,
    path: String,
    query: Option<String>,
    content_type: Option<String>,
    body: Option<Value>,
}

#[derive(Default)]
struct Stand {
    app: Value,
    requests: Vec<Seen>,
    /// Rollbacks still to answer 503 (gRPC Unavailable), as an overloaded server does.
    unavailable_rollbacks: u32,
}

type Shared = Arc<Mutex<Stand>>;

fn error(status: StatusCode, code: u32, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": message, "code": code, "message": message})),
    )
        .into_response()
}

fn note(
    shared: &Shared,
    method: Method,
    path: String,
    query: Option<String>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Option<Response> {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    shared.lock().unwrap().requests.push(Seen {
        method: method.to_string(),
        path,
        query,
        content_type: content_type.clone(),
        body: serde_json::from_slice(body).ok(),
    });
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {TOKEN}"))
    {
        return Some(error(
            StatusCode::UNAUTHORIZED,
            16,
            "invalid session: token is invalid",
        ));
    }
    // enforceContentTypes: compared exactly, parameters included.
    if method != Method::GET && content_type.as_deref() != Some("application/json") {
        return Some(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            0,
            "Invalid content type",
        ));
    }
    None
}

async fn application(
    State(shared): State<Shared>,
    method: Method,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = format!("/api/v1/applications/{name}");
    if let Some(refused) = note(&shared, method.clone(), path, query, &headers, &body) {
        return refused;
    }
    let mut stand = shared.lock().unwrap();
    if stand.app["metadata"]["name"] != name.as_str() {
        return error(StatusCode::FORBIDDEN, 7, "permission denied");
    }
    if method == Method::PATCH {
        let Ok(request) = serde_json::from_slice::<Value>(&body) else {
            return error(StatusCode::BAD_REQUEST, 3, "bad body");
        };
        if request["patchType"] != "merge" {
            return error(StatusCode::BAD_REQUEST, 3, "Patch type is not supported");
        }
        let Some(patch) = request["patch"]
            .as_str()
            .and_then(|p| serde_json::from_str::<Value>(p).ok())
        else {
            return error(
                StatusCode::BAD_REQUEST,
                3,
                "patch is not a JSON document in a string",
            );
        };
        json_patch::merge(&mut stand.app, &patch);
    }
    axum::Json(stand.app.clone()).into_response()
}

async fn rollback(
    State(shared): State<Shared>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = format!("/api/v1/applications/{name}/rollback");
    if let Some(refused) = note(&shared, Method::POST, path, query, &headers, &body) {
        return refused;
    }
    let mut stand = shared.lock().unwrap();
    if stand.unavailable_rollbacks > 0 {
        stand.unavailable_rollbacks -= 1;
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            14,
            "the server is unavailable",
        );
    }
    let request: Value = serde_json::from_slice(&body).unwrap_or_default();
    if stand.app["spec"]["syncPolicy"]["automated"].is_object() {
        return error(
            StatusCode::BAD_REQUEST,
            9,
            "rollback cannot be initiated when auto-sync is enabled",
        );
    }
    let history = stand.app["status"]["history"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let Some(entry) = history.iter().find(|e| e["id"] == request["id"]).cloned() else {
        return error(
            StatusCode::BAD_REQUEST,
            3,
            &format!(
                "application argocd/{name} does not have deployment with id {}",
                request["id"]
            ),
        );
    };
    let revision = entry["revision"].clone();
    let next = history.last().and_then(|e| e["id"].as_i64()).unwrap_or(0) + 1;
    stand.app["status"]["operationState"] =
        json!({"phase": "Succeeded", "operation": {"sync": {"revision": revision}}});
    stand.app["status"]["sync"]["revision"] = revision.clone();
    stand.app["status"]["history"]
        .as_array_mut()
        .unwrap()
        .push(json!({"id": next, "revision": revision, "deployedAt": "2026-12-03T10:20:00Z"}));
    axum::Json(stand.app.clone()).into_response()
}

struct ArgoCd {
    url: String,
    shared: Shared,
}

impl ArgoCd {
    async fn start(auto_sync: bool) -> Self {
        let automated = if auto_sync {
            json!({"prune": true, "selfHeal": true})
        } else {
            Value::Null
        };
        let app = json!({
            "metadata": {"name": "checkout", "namespace": "argocd"},
            "spec": {"project": "default", "syncPolicy": {"automated": automated}},
            "status": {
                "sync": {"status": "Synced", "revision": "cccc3333"},
                "history": [
                    {"id": 40, "revision": "aaaa1111", "deployedAt": "2026-12-03T08:00:00Z"},
                    {"id": 41, "revision": "bbbb2222", "deployedAt": "2026-12-03T09:00:00Z"},
                    {"id": 42, "revision": "cccc3333", "deployedAt": "2026-12-03T10:00:00Z"}
                ]
            }
        });
        let shared: Shared = Arc::new(Mutex::new(Stand {
            app,
            ..Stand::default()
        }));
        let router = Router::new()
            .route(
                "/api/v1/applications/{name}",
                get(application).patch(application),
            )
            .route("/api/v1/applications/{name}/rollback", post(rollback))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { url, shared }
    }

    fn executor(&self, token: &str, app_namespace: &str) -> ArgocdRollback {
        ArgocdRollback {
            http: reqwest::Client::new(),
            url: self.url.clone(),
            app_namespace: app_namespace.into(),
            token: Some(Secret::new(token.to_string())),
            timeout: Duration::from_secs(5),
            poll: Duration::from_millis(20),
        }
    }

    fn requests(&self) -> Vec<Seen> {
        std::mem::take(&mut self.shared.lock().unwrap().requests)
    }

    fn app(&self) -> Value {
        self.shared.lock().unwrap().app.clone()
    }

    fn unavailable_rollbacks(&self, n: u32) {
        self.shared.lock().unwrap().unavailable_rollbacks = n;
    }
}

fn params(good_commit: Option<&str>) -> Value {
    json!({"argocd_app": "checkout", "known_good_commit": good_commit,
           "suspect_started_at": "2026-12-03T09:59:00Z"})
}

fn methods(seen: &[Seen]) -> Vec<String> {
    seen.iter()
        .map(|s| format!("{} {}", s.method, s.path))
        .collect()
}

#[tokio::test]
async fn auto_sync_goes_off_then_the_app_rolls_back_to_the_known_good_entry() {
    let argocd = ArgoCd::start(true).await;
    let executor = argocd.executor(TOKEN, "");
    let journal = MemoryJournal::default();
    let action = record("argocd_rollback", params(Some("aaaa1111")));
    let outcome = executor.execute(&action, false, &journal).await;
    let ExecOutcome::Done { result, verify } = outcome else {
        panic!("{outcome:?}")
    };
    assert!(verify);
    assert_eq!(result["history_id"], 40);
    assert_eq!(result["auto_sync_disabled"], true);
    assert_eq!(result["operation"], "Succeeded");
    assert!(
        result["note"]
            .as_str()
            .unwrap()
            .contains("auto-sync is off")
    );
    assert_eq!(
        result["commands"][0],
        "argocd app set checkout --sync-policy none"
    );

    let seen = argocd.requests();
    let calls = methods(&seen);
    assert_eq!(
        calls[..3],
        [
            "GET /api/v1/applications/checkout",
            "PATCH /api/v1/applications/checkout",
            "POST /api/v1/applications/checkout/rollback",
        ]
    );
    assert!(
        calls[3..]
            .iter()
            .all(|c| c == "GET /api/v1/applications/checkout")
    );
    // PROTOCOLS.md I.5, byte for byte in meaning.
    assert_eq!(seen[1].content_type.as_deref(), Some("application/json"));
    assert_eq!(
        seen[1].body,
        Some(json!({"name": "checkout", "patchType": "merge",
                    "patch": "{\"spec\":{\"syncPolicy\":{\"automated\":null}}}"}))
    );
    assert_eq!(
        seen[2].body,
        Some(json!({"name": "checkout", "id": 40, "prune": false, "dryRun": false}))
    );
    let app = argocd.app();
    assert_eq!(app["spec"]["syncPolicy"]["automated"], Value::Null);
    assert_eq!(app["status"]["sync"]["revision"], "aaaa1111");

    // A retry after the rollback was asked for: nothing is sent again, and the result
    // still says who turned auto-sync off.
    let again = executor.execute(&action, false, &journal).await;
    let ExecOutcome::Done { result, .. } = again else {
        panic!("{again:?}")
    };
    assert_eq!(result["auto_sync_disabled"], true);
    assert!(
        argocd.requests().iter().all(|s| s.method == "GET"),
        "a retry sent a write"
    );
    // A new action on an Application already at that revision: looked at, left alone.
    let fresh = executor
        .execute(&action, false, &MemoryJournal::default())
        .await;
    let ExecOutcome::Done { result, .. } = fresh else {
        panic!("{fresh:?}")
    };
    assert_eq!(result["already_at_revision"], true);
    assert_eq!(
        methods(&argocd.requests()),
        ["GET /api/v1/applications/checkout"]
    );
}

#[tokio::test]
async fn without_a_known_good_commit_the_entry_before_the_bad_deploy_is_used() {
    let argocd = ArgoCd::start(false).await;
    let outcome = argocd
        .executor(TOKEN, "apps")
        .execute(
            &record("argocd_rollback", params(None)),
            false,
            &MemoryJournal::default(),
        )
        .await;
    let ExecOutcome::Done { result, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(result["history_id"], 41);
    // Auto-sync was already off: no PATCH, and no word of turning it back on.
    assert_eq!(result["auto_sync_disabled"], false);
    let note = result["note"].as_str().unwrap();
    assert!(
        note.starts_with("auto-sync was already off") && !note.contains("turn it back on"),
        "{note}"
    );
    let seen = argocd.requests();
    assert!(seen.iter().all(|s| s.method != "PATCH"), "{seen:?}");
    // The Applications' namespace goes on every request, and in the rollback's body.
    assert!(
        seen.iter()
            .all(|s| s.query.as_deref() == Some("appNamespace=apps")),
        "{seen:?}"
    );
    let post = seen.iter().find(|s| s.method == "POST").unwrap();
    assert_eq!(post.body.as_ref().unwrap()["appNamespace"], "apps");
}

#[tokio::test]
async fn a_dry_run_a_bad_token_and_an_unknown_revision_write_nothing() {
    let argocd = ArgoCd::start(true).await;
    let dry = argocd
        .executor(TOKEN, "")
        .execute(
            &record("argocd_rollback", params(Some("aaaa1111"))),
            true,
            &MemoryJournal::default(),
        )
        .await;
    let ExecOutcome::DryRun { result } = dry else {
        panic!("{dry:?}")
    };
    assert_eq!(result["would_roll_back_to"], 40);
    assert_eq!(result["would_disable_auto_sync"], true);

    let refused = argocd
        .executor("wrong", "")
        .execute(
            &record("argocd_rollback", params(Some("aaaa1111"))),
            false,
            &MemoryJournal::default(),
        )
        .await;
    assert!(
        matches!(&refused, ExecOutcome::Failed(e) if e.contains("401") && e.contains("invalid session")),
        "{refused:?}"
    );
    let unknown = argocd
        .executor(TOKEN, "")
        .execute(
            &record("argocd_rollback", params(Some("dddd4444"))),
            false,
            &MemoryJournal::default(),
        )
        .await;
    assert!(
        matches!(&unknown, ExecOutcome::Failed(e) if e.contains("no history entry with revision dddd4444")),
        "{unknown:?}"
    );
    let mut hostile = params(Some("aaaa1111"));
    hostile["argocd_app"] = json!("../../settings");
    let bad = argocd
        .executor(TOKEN, "")
        .execute(
            &record("argocd_rollback", hostile),
            false,
            &MemoryJournal::default(),
        )
        .await;
    assert!(matches!(bad, ExecOutcome::Failed(_)), "{bad:?}");
    assert!(argocd.requests().iter().all(|s| s.method == "GET"));
    assert!(argocd.app()["spec"]["syncPolicy"]["automated"].is_object());
}

#[tokio::test]
async fn a_rollback_retried_after_auto_sync_went_off_still_says_rollwarden_turned_it_off() {
    let argocd = ArgoCd::start(true).await;
    argocd.unavailable_rollbacks(1);
    let executor = argocd.executor(TOKEN, "");
    let journal = MemoryJournal::default();
    let action = record("argocd_rollback", params(Some("aaaa1111")));

    // Auto-sync goes off, then the rollback is answered 503: worth another attempt.
    let first = executor.execute(&action, false, &journal).await;
    assert!(
        matches!(&first, ExecOutcome::Retry(e) if e.contains("503")),
        "{first:?}"
    );
    assert_eq!(
        methods(&argocd.requests()),
        [
            "GET /api/v1/applications/checkout",
            "PATCH /api/v1/applications/checkout",
            "POST /api/v1/applications/checkout/rollback",
        ]
    );
    assert_eq!(argocd.app()["spec"]["syncPolicy"]["automated"], Value::Null);
    // What was turned off, and from what, is in the journal before the PATCH.
    assert_eq!(
        journal.noted(ARGOCD_AUTO_SYNC_OFF).await.unwrap(),
        [json!({"application": "checkout",
                "automated": {"prune": true, "selfHeal": true}})]
    );

    // The retry finds auto-sync off, sends no PATCH, and still reports it as its own.
    let retry = executor.execute(&action, false, &journal).await;
    let ExecOutcome::Done { result, .. } = retry else {
        panic!("{retry:?}")
    };
    assert_eq!(result["auto_sync_disabled"], true);
    assert!(
        result["note"]
            .as_str()
            .unwrap()
            .starts_with("auto-sync is off for this Application: turn it back on"),
        "{result}"
    );
    assert_eq!(result["operation"], "Succeeded");
    let calls = methods(&argocd.requests());
    assert!(!calls.iter().any(|c| c.starts_with("PATCH")), "{calls:?}");
    assert_eq!(
        calls.iter().filter(|c| c.starts_with("POST")).count(),
        1,
        "{calls:?}"
    );
    assert_eq!(argocd.app()["status"]["sync"]["revision"], "aaaa1111");
}
