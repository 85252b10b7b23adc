//! Bearer tokens and roles, route by route, on a real socket.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use rollwarden::app::App;
use rollwarden::clock::SystemClock;

use crate::support::{
    ADMIN_TOKEN, Backend, FIRING, OPERATOR_TOKEN, TestApp, TestStore, VIEWER_TOKEN, WEBHOOK_TOKEN,
    assert_error, test_config,
};

const FLAGGER_CART: &str =
    r#"{"name":"cart","namespace":"prod","phase":"WaitingPromotion","checksum":"7d9c5b4f6"}"#;
const FLAGGER_EVENT: &str = include_str!("../fixtures/flagger-event.json");

/// An authenticated route: method, path, body, tokens that may use it, tokens that may not.
struct Route {
    method: Method,
    path: &'static str,
    body: Option<&'static str>,
    allowed: Vec<&'static str>,
    denied: Vec<&'static str>,
}

/// Every authenticated route.
fn routes() -> Vec<Route> {
    vec![
        Route {
            method: Method::POST,
            path: "/webhooks/alertmanager",
            body: Some(FIRING),
            allowed: vec![WEBHOOK_TOKEN, OPERATOR_TOKEN, ADMIN_TOKEN],
            denied: vec![VIEWER_TOKEN],
        },
        Route {
            method: Method::POST,
            path: "/api/v1/deploys",
            body: Some(
                r#"{"namespace":"prod","name":"checkout","revision":"1","status":"started"}"#,
            ),
            allowed: vec![WEBHOOK_TOKEN, OPERATOR_TOKEN, ADMIN_TOKEN],
            denied: vec![VIEWER_TOKEN],
        },
        Route {
            method: Method::POST,
            path: "/api/v1/signals",
            body: Some(
                r#"{"kind":"sla_violation","target":{"namespace":"prod","name":"checkout"},"id":"sla-1"}"#,
            ),
            allowed: vec![WEBHOOK_TOKEN, OPERATOR_TOKEN, ADMIN_TOKEN],
            denied: vec![VIEWER_TOKEN],
        },
        // Flagger's webhooks, about a canary no other route here touches (so that its
        // gates are open). Its token may also come in `metadata.token`: see canary.rs.
        Route {
            method: Method::POST,
            path: "/webhooks/flagger/confirm-promotion",
            body: Some(FLAGGER_CART),
            allowed: vec![WEBHOOK_TOKEN, OPERATOR_TOKEN, ADMIN_TOKEN],
            denied: vec![VIEWER_TOKEN],
        },
        Route {
            method: Method::POST,
            path: "/webhooks/flagger/event",
            body: Some(FLAGGER_EVENT),
            allowed: vec![WEBHOOK_TOKEN, OPERATOR_TOKEN, ADMIN_TOKEN],
            denied: vec![VIEWER_TOKEN],
        },
        // Declaring and lifting freezes is the on-call's: operator or admin only.
        Route {
            method: Method::POST,
            path: "/api/v1/freezes",
            body: Some(r#"{"scope":"*","reason":"auth test"}"#),
            allowed: vec![OPERATOR_TOKEN, ADMIN_TOKEN],
            denied: vec![WEBHOOK_TOKEN, VIEWER_TOKEN],
        },
        Route {
            method: Method::DELETE,
            path: "/api/v1/freezes/1",
            body: None,
            allowed: vec![OPERATOR_TOKEN, ADMIN_TOKEN],
            denied: vec![WEBHOOK_TOKEN, VIEWER_TOKEN],
        },
        // The approval gate is the on-call's too.
        Route {
            method: Method::POST,
            path: "/api/v1/decisions/1/approve",
            body: Some(r#"{"comment":"auth test"}"#),
            allowed: vec![OPERATOR_TOKEN, ADMIN_TOKEN],
            denied: vec![WEBHOOK_TOKEN, VIEWER_TOKEN],
        },
        Route {
            method: Method::POST,
            path: "/api/v1/decisions/1/reject",
            body: None,
            allowed: vec![OPERATOR_TOKEN, ADMIN_TOKEN],
            denied: vec![WEBHOOK_TOKEN, VIEWER_TOKEN],
        },
    ]
    .into_iter()
    .chain(
        [
            "/api/v1/alerts",
            "/api/v1/deploys",
            "/api/v1/targets/prod/checkout/history",
            "/api/v1/decisions",
            "/api/v1/freezes",
            "/api/v1/actions",
            "/api/v1/actions/1",
            "/api/v1/analysis/prod/checkout",
        ]
        .map(|path| Route {
            method: Method::GET,
            path,
            body: None,
            allowed: vec![VIEWER_TOKEN, OPERATOR_TOKEN, ADMIN_TOKEN],
            denied: vec![WEBHOOK_TOKEN],
        }),
    )
    .collect()
}

#[tokio::test]
async fn each_route_wants_a_valid_token_of_a_strong_enough_role() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    for Route {
        method,
        path,
        body,
        allowed,
        denied,
    } in routes()
    {
        let request = |token: Option<&str>| {
            let mut r = app.http.request(method.clone(), app.url(path));
            if let Some(body) = body {
                r = r.header("content-type", "application/json").body(body);
            }
            if let Some(token) = token {
                r = r.bearer_auth(token);
            }
            r.send()
        };
        // No token and a wrong token look the same: nothing says which tokens exist.
        let missing = request(None).await.unwrap();
        assert_eq!(missing.headers()["www-authenticate"], "Bearer", "{path}");
        let missing_body: Value = missing.json().await.unwrap();
        let wrong = request(Some("not-a-configured-token-000")).await.unwrap();
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED, "{path}");
        let wrong_body: Value = wrong.json().await.unwrap();
        assert_eq!(missing_body, wrong_body);
        assert_eq!(wrong_body["error"]["code"], "unauthorized");

        for token in denied {
            let response = request(Some(token)).await.unwrap();
            assert_error(response, StatusCode::FORBIDDEN, "forbidden", None).await;
        }
        for token in allowed {
            let response = request(Some(token)).await.unwrap();
            // Past the gate: success, or the handler's own answer about a resource
            // this empty store lacks (nothing awaiting approval: 409; no action: 404).
            let approval = path.ends_with("/approve") || path.ends_with("/reject");
            let status = response.status();
            assert!(
                status.is_success()
                    || (approval && status == StatusCode::CONFLICT)
                    || (path == "/api/v1/actions/1" && status == StatusCode::NOT_FOUND),
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
