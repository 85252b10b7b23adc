//! Bearer tokens and roles, route by route, on a real socket.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use rollwarden::app::App;
use rollwarden::clock::SystemClock;

use crate::support::{
    ADMIN_TOKEN, Backend, FIRING, OPERATOR_TOKEN, TestApp, TestStore, VIEWER_TOKEN, WEBHOOK_TOKEN,
    assert_error, test_config,
};

const FLAGGER_EVENT: &str = include_str!("../fixtures/flagger-event.json");

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    /// Anyone, with or without a token (kubelets, Prometheus, people reading the docs).
    Public,
    /// Senders: the webhook role, and operator and admin.
    Senders,
    /// Readers: the viewer role, and operator and admin.
    Readers,
    /// On-call: operator and admin only.
    Operators,
    /// Nobody by token: a signature over the body authenticates (Slack's buttons).
    Signed,
}

impl Who {
    /// Tokens that may call the route, and tokens of roles that may not.
    fn tokens(self) -> (Vec<&'static str>, Vec<&'static str>) {
        match self {
            Who::Public => (
                vec![WEBHOOK_TOKEN, VIEWER_TOKEN, OPERATOR_TOKEN, ADMIN_TOKEN],
                vec![],
            ),
            Who::Senders => (
                vec![WEBHOOK_TOKEN, OPERATOR_TOKEN, ADMIN_TOKEN],
                vec![VIEWER_TOKEN],
            ),
            Who::Readers => (
                vec![VIEWER_TOKEN, OPERATOR_TOKEN, ADMIN_TOKEN],
                vec![WEBHOOK_TOKEN],
            ),
            Who::Operators => (
                vec![OPERATOR_TOKEN, ADMIN_TOKEN],
                vec![WEBHOOK_TOKEN, VIEWER_TOKEN],
            ),
            Who::Signed => (vec![], vec![]),
        }
    }
}

fn role_of(token: &str) -> &'static str {
    match token {
        t if t == WEBHOOK_TOKEN => "webhook",
        t if t == VIEWER_TOKEN => "viewer",
        t if t == OPERATOR_TOKEN => "operator",
        t if t == ADMIN_TOKEN => "admin",
        _ => unreachable!(),
    }
}

/// A route: its method and path as the OpenAPI document writes it, a body that the
/// route accepts, and who may call it.
struct Route {
    method: Method,
    path: &'static str,
    body: Option<&'static str>,
    who: Who,
}

fn route(method: Method, path: &'static str, who: Who) -> Route {
    Route {
        method,
        path,
        body: None,
        who,
    }
}

/// Routes served but not in the OpenAPI document: the viewer of the document.
const UNDOCUMENTED: [&str; 2] = ["/docs", "/docs/"];

/// Every route. Add a row for each new one: the test below fails while this table
/// and the OpenAPI document disagree. Rows run in order against one app, after a
/// decision (id 1) was made; the freeze lifted is the one created by the row before.
fn routes() -> Vec<Route> {
    let with = |method, path, body, who| Route {
        method,
        path,
        body: Some(body),
        who,
    };
    vec![
        with(Method::POST, "/webhooks/alertmanager", FIRING, Who::Senders),
        with(
            Method::POST,
            "/api/v1/deploys",
            r#"{"namespace":"prod","name":"checkout","revision":"1","status":"started"}"#,
            Who::Senders,
        ),
        with(
            Method::POST,
            "/api/v1/signals",
            r#"{"kind":"sla_violation","target":{"namespace":"prod","name":"checkout"},"id":"sla-1"}"#,
            Who::Senders,
        ),
        route(Method::GET, "/api/v1/alerts", Who::Readers),
        route(Method::GET, "/api/v1/deploys", Who::Readers),
        route(
            Method::GET,
            "/api/v1/targets/{namespace}/{name}/history",
            Who::Readers,
        ),
        route(Method::GET, "/api/v1/decisions", Who::Readers),
        route(Method::GET, "/api/v1/decisions/{id}", Who::Readers),
        route(Method::GET, "/api/v1/decisions/{id}/evidence", Who::Readers),
        route(Method::GET, "/api/v1/decisions/{id}/report", Who::Readers),
        route(Method::GET, "/api/v1/freezes", Who::Readers),
        route(Method::GET, "/api/v1/releases", Who::Readers),
        route(Method::GET, "/api/v1/releases/{release}", Who::Readers),
        route(Method::GET, "/api/v1/releases/{release}/gate", Who::Readers),
        // Declaring and lifting freezes is the on-call's: operator or admin only.
        with(
            Method::POST,
            "/api/v1/freezes",
            r#"{"scope":"*","reason":"auth test"}"#,
            Who::Operators,
        ),
        route(Method::DELETE, "/api/v1/freezes/{id}", Who::Operators),
        route(Method::GET, "/api/v1/actions", Who::Readers),
        route(Method::GET, "/api/v1/actions/{id}", Who::Readers),
        route(Method::GET, "/api/v1/events", Who::Readers),
        route(Method::GET, "/api/v1/targets", Who::Readers),
        // The approval gate is the on-call's too.
        with(
            Method::POST,
            "/api/v1/decisions/{id}/approve",
            r#"{"comment":"auth test"}"#,
            Who::Operators,
        ),
        route(
            Method::POST,
            "/api/v1/decisions/{id}/reject",
            Who::Operators,
        ),
        // Flagger: a sender (its token may also come in the payload; tests/it/canary.rs).
        with(
            Method::POST,
            "/webhooks/flagger/{hook}",
            FLAGGER_EVENT,
            Who::Senders,
        ),
        route(
            Method::GET,
            "/api/v1/analysis/{namespace}/{name}",
            Who::Readers,
        ),
        with(
            Method::POST,
            "/webhooks/slack/interactions",
            "payload=%7B%7D",
            Who::Signed,
        ),
        route(Method::GET, "/healthz", Who::Public),
        route(Method::GET, "/readyz", Who::Public),
        route(Method::GET, "/metrics", Who::Public),
        route(Method::GET, "/openapi.json", Who::Public),
        route(Method::GET, "/docs", Who::Public),
        route(Method::GET, "/docs/", Who::Public),
    ]
}

/// A path of the table with its parameters filled in.
fn concrete(path: &str) -> String {
    path.replace("{id}", "1")
        .replace("{hook}", "event")
        .replace("{namespace}", "prod")
        .replace("{name}", "checkout")
        .replace("{release}", "checkout@1.6.0")
        .replace("/gate", "/gate?region=us-east-1")
}

/// Two regions of checkout, both on 1.6.0: the release the release routes read.
fn two_regions(c: &mut rollwarden::config::Config) {
    for region in ["eu-west-1", "us-east-1"] {
        c.targets.push(rollwarden::domain::classify::TargetConfig {
            cluster: Some(region.into()),
            namespace: "shop".into(),
            name: "checkout".into(),
            region: Some(region.into()),
            ..Default::default()
        });
    }
}

async fn ship_release(app: &TestApp) {
    for region in ["eu-west-1", "us-east-1"] {
        let response = app
            .http
            .post(app.url("/api/v1/deploys"))
            .bearer_auth(WEBHOOK_TOKEN)
            .json(&serde_json::json!({
                "cluster": region, "namespace": "shop", "name": "checkout", "revision": "7",
                "status": "succeeded", "version": "1.6.0", "started_at": "2026-08-22T13:00:00Z"
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
    }
}

/// Makes decision 1, which the decision routes of the table read.
async fn decide_something(app: &TestApp) {
    let response = app
        .http
        .post(app.url("/api/v1/signals"))
        .bearer_auth(WEBHOOK_TOKEN)
        .header("content-type", "application/json")
        .body(r#"{"kind":"data_corruption","target":{"namespace":"prod","name":"checkout"},"id":"INC-1"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    for _ in 0..500 {
        if app.store().decision(1).await.unwrap().is_some() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("no decision was made");
}

#[tokio::test]
async fn each_route_wants_a_valid_token_of_a_strong_enough_role() {
    let app = TestApp::spawn_with(Backend::Sqlite, two_regions).await;
    decide_something(&app).await;
    ship_release(&app).await;
    for Route {
        method,
        path,
        body,
        who,
    } in routes()
    {
        let path = concrete(path);
        let request = |token: Option<&str>| {
            let mut r = app.http.request(method.clone(), app.url(&path));
            if let Some(body) = body {
                r = r.header("content-type", "application/json").body(body);
            }
            if let Some(token) = token {
                r = r.bearer_auth(token);
            }
            r.send()
        };
        let (allowed, denied) = who.tokens();
        if who == Who::Signed {
            // No token opens it: here the Slack app is not configured, whoever asks.
            for token in [None, Some(ADMIN_TOKEN), Some("not-a-configured-token-000")] {
                let response = request(token).await.unwrap();
                assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
            }
            continue;
        }
        if who == Who::Public {
            for token in [None, Some("not-a-configured-token-000")] {
                let response = request(token).await.unwrap();
                assert!(
                    response.status().is_success(),
                    "{path}: {}",
                    response.status()
                );
            }
        } else {
            // No token and a wrong token look the same: nothing says which tokens exist.
            let missing = request(None).await.unwrap();
            assert_eq!(missing.headers()["www-authenticate"], "Bearer", "{path}");
            let missing_body: Value = missing.json().await.unwrap();
            let wrong = request(Some("not-a-configured-token-000")).await.unwrap();
            assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED, "{path}");
            let wrong_body: Value = wrong.json().await.unwrap();
            assert_eq!(missing_body, wrong_body);
            assert_eq!(wrong_body["error"]["code"], "unauthorized");
        }
        for token in denied {
            let response = request(Some(token)).await.unwrap();
            assert_error(response, StatusCode::FORBIDDEN, "forbidden", None).await;
        }
        for token in allowed {
            let response = request(Some(token)).await.unwrap();
            // Past the gate: success, or for the approval gate (decision 1 has nothing
            // awaiting approval) the handler's own 409.
            let approval = path.ends_with("/approve") || path.ends_with("/reject");
            assert!(
                response.status().is_success()
                    || (approval && response.status() == StatusCode::CONFLICT),
                "{path} with {token}: {}",
                response.status()
            );
        }
    }
    // Basic auth or a scheme typo is no bearer token.
    let response = app
        .http
        .get(app.url("/api/v1/alerts"))
        .header("authorization", format!("bearer {VIEWER_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

/// The table above and the OpenAPI document list the same routes, and the document
/// names, for each, exactly the roles that the table finds may call it.
#[tokio::test]
async fn the_route_table_and_the_openapi_document_agree() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (status, doc) = app.get_json("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    let mut documented = std::collections::BTreeMap::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let roles: Option<Vec<&str>> = operation["security"].as_array().map(|s| {
                s[0]["bearer"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r.as_str().unwrap())
                    .collect()
            });
            documented.insert((method.to_uppercase(), path.clone()), roles);
        }
    }
    let mut tabled = std::collections::BTreeMap::new();
    for Route {
        method, path, who, ..
    } in routes()
    {
        if UNDOCUMENTED.contains(&path) {
            continue;
        }
        let roles = (!matches!(who, Who::Public | Who::Signed))
            .then(|| who.tokens().0.into_iter().map(role_of).collect());
        tabled.insert((method.to_string(), path.to_string()), roles);
    }
    let missing: Vec<_> = documented
        .keys()
        .filter(|k| !tabled.contains_key(*k))
        .collect();
    assert!(
        missing.is_empty(),
        "documented routes missing from the table in tests/it/auth.rs: {missing:?}"
    );
    let undocumented: Vec<_> = tabled
        .keys()
        .filter(|k| !documented.contains_key(*k))
        .collect();
    assert!(
        undocumented.is_empty(),
        "routes of the table missing from the OpenAPI document: {undocumented:?}"
    );
    assert_eq!(documented, tabled);
}

#[tokio::test]
async fn without_tokens_a_non_loopback_address_is_refused() {
    let db = TestStore::new(Backend::Sqlite).await;
    let mut config = test_config();
    config.auth.tokens.clear();
    config.server.listen = "0.0.0.0:0".parse().unwrap();
    let err = App::build_with(
        config.clone(),
        db.store.clone(),
        std::sync::Arc::new(SystemClock),
    )
    .await
    .err()
    .expect("refused");
    assert!(err.to_string().contains("auth.allow_anonymous"), "{err}");

    config.auth.allow_anonymous = true;
    assert!(
        App::build_with(config, db.store.clone(), std::sync::Arc::new(SystemClock))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn without_tokens_on_loopback_every_request_is_allowed() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.auth.tokens.clear()).await;
    let response = app
        .http
        .post(app.url("/webhooks/alertmanager"))
        .header("content-type", "application/json")
        .body(FIRING)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = app
        .http
        .get(app.url("/api/v1/alerts"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}
