//! The OpenAPI document against the running app: what it says about parameters and
//! errors holds.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{ADMIN_TOKEN, Backend, TestApp, assert_error};

/// The documented operations: (method, path, operation).
fn operations(doc: &Value) -> Vec<(Method, String, Value)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            ops.push((
                method.to_uppercase().parse().unwrap(),
                path.clone(),
                op.clone(),
            ));
        }
    }
    ops
}

fn concrete(path: &str) -> String {
    path.replace("{id}", "1")
        .replace("{namespace}", "prod")
        .replace("{name}", "checkout")
        .replace("{release}", "checkout@1.6.0")
}

async fn document(app: &TestApp) -> Value {
    let (status, doc) = app.get_json("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    doc
}

/// Every query parameter the document names is one the handler knows, and every
/// `/api/v1` route answers a parameter it does not document with a 400 naming it.
#[tokio::test]
async fn documented_query_parameters_are_the_ones_the_handlers_know() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let doc = document(&app).await;
    for (method, path, op) in operations(&doc) {
        if !path.starts_with("/api/v1") {
            continue;
        }
        let url = app.url(&concrete(&path));
        let send = |query: String| {
            app.http
                .request(method.clone(), format!("{url}?{query}"))
                .bearer_auth(ADMIN_TOKEN)
                .header("content-type", "application/json")
                .body("{}")
                .send()
        };
        let response = send("no_such_parameter=1".into()).await.unwrap();
        assert_error(
            response,
            StatusCode::BAD_REQUEST,
            "invalid_query",
            Some("no_such_parameter"),
        )
        .await;
        let params = op["parameters"].as_array().cloned().unwrap_or_default();
        for param in params.iter().filter(|p| p["in"] == "query") {
            let name = param["name"].as_str().unwrap();
            let response = send(format!("{name}=")).await.unwrap();
            let body: Value = response.json().await.unwrap();
            let message = body["error"]["message"].as_str().unwrap_or("");
            assert!(
                !message.contains("unknown parameter"),
                "{method} {path} documents {name}, which its handler does not know: {body}"
            );
        }
    }
}

/// Errors that do not come from a handler have our JSON shape too.
#[tokio::test]
async fn every_error_is_the_json_error_body() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let response = app
        .http
        .get(app.url("/api/v2/nothing"))
        .send()
        .await
        .unwrap();
    assert_error(response, StatusCode::NOT_FOUND, "not_found", None).await;
    let response = app
        .http
        .put(app.url("/api/v1/alerts"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_error(
        response,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        None,
    )
    .await;
    let response = app
        .http
        .get(app.url("/api/v1/decisions/1?verbose=true"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_error(
        response,
        StatusCode::BAD_REQUEST,
        "invalid_query",
        Some("verbose"),
    )
    .await;
    let response = app
        .http
        .get(app.url("/api/v1/targets/prod/%01/history"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_error(
        response,
        StatusCode::BAD_REQUEST,
        "invalid_path",
        Some("name"),
    )
    .await;
}

#[tokio::test]
async fn the_docs_page_shows_the_document() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let response = app.http.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.url().path().ends_with("/docs/"));
    let html = response.text().await.unwrap();
    assert!(html.contains("swagger"), "{html}");
    let config = app
        .http
        .get(app.url("/docs/swagger-initializer.js"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(config.contains("/openapi.json"), "{config}");
    let doc = document(&app).await;
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

/// The document carries this instance's `[limits]`, and the shape of an RFC 3339
/// timestamp beside every `format: date-time`, which JSON Schema only annotates.
#[tokio::test]
async fn the_document_states_the_configured_limits_and_timestamp_shape() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.limits.max_labels = 8).await;
    let doc = document(&app).await;
    let labels = &doc["components"]["schemas"]["AlertmanagerAlert"]["properties"]["labels"];
    assert_eq!(
        (
            labels["minProperties"].as_u64(),
            labels["maxProperties"].as_u64()
        ),
        (Some(1), Some(8)),
        "{labels}"
    );
    let params = doc["paths"]["/api/v1/decisions"]["get"]["parameters"]
        .as_array()
        .unwrap();
    let since = params.iter().find(|p| p["name"] == "since").unwrap();
    assert_eq!(since["schema"]["format"], "date-time");
    assert!(
        since["schema"]["pattern"]
            .as_str()
            .is_some_and(|p| p.starts_with("^[0-9]{4}-")),
        "{since}"
    );
}

/// What the schemas state is answered 400; the rules they cannot state (one field
/// against another, or against the clock) 422 with the code `inconsistent`.
#[tokio::test]
async fn rules_no_schema_can_state_get_422_and_the_others_400() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let post = |path: &str, body: Value| {
        app.http
            .post(app.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
    };
    let deploy = json!({"namespace": "prod", "name": "checkout", "revision": "7",
        "status": "succeeded", "started_at": "2026-08-22T14:00:00Z",
        "finished_at": "2026-08-22T13:00:00Z"});
    let r = post("/api/v1/deploys", deploy).await.unwrap();
    let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
    assert_error(r, unprocessable, "inconsistent", Some("finished_at")).await;
    let target = json!({"namespace": "prod", "name": "checkout"});
    let both = json!({"kind": "customer_reports", "target": target, "id": "q",
        "count": 3, "value": 3});
    let r = post("/api/v1/signals", both).await.unwrap();
    assert_error(r, unprocessable, "inconsistent", Some("count")).await;
    let spaced = json!({"kind": "customer_reports", "target": target, "id": "has space"});
    let r = post("/api/v1/signals", spaced).await.unwrap();
    assert_error(r, StatusCode::BAD_REQUEST, "invalid_field", Some("id")).await;
    // A whole number written with a fraction is JSON Schema's integer too.
    let whole = json!({"kind": "customer_reports", "target": target, "id": "q",
        "count": 3.0, "observations": 2.0});
    let r = post("/api/v1/signals", whole).await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    // An approval body of `null` is no body: the decision is looked up, not refused.
    let r = app
        .http
        .post(app.url("/api/v1/decisions/99/approve"))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body("null")
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "not_found", None).await;
}
