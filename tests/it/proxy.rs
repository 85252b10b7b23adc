//! `[auth.proxy]`: people signed in by an authenticating reverse proxy (oauth2-proxy's
//! `X-Forwarded-Email` and `X-Forwarded-Groups`), trusted from the proxy's addresses
//! only; what they do is recorded under their email.

use std::collections::BTreeMap;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use rollwarden::config::Config;
use rollwarden::domain::Role;

use crate::support::{Backend, TestApp, VIEWER_TOKEN, assert_error};

const ALICE: &str = "alice@example.com";

fn behind_proxy(c: &mut Config, trusted: &str) {
    c.auth.proxy.enabled = true;
    c.auth.proxy.trusted_sources = vec![trusted.into()];
    c.auth.proxy.roles = BTreeMap::from([
        ("sre-oncall".to_string(), Role::Operator),
        ("engineering".to_string(), Role::Viewer),
    ]);
}

async fn as_person(
    app: &TestApp,
    method: Method,
    path: &str,
    email: &str,
    groups: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = app
        .http
        .request(method, app.url(path))
        .header("x-forwarded-email", email)
        .header("x-forwarded-groups", groups);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn a_person_the_proxy_vouches_for_acts_under_their_email_with_their_groups_role() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| behind_proxy(c, "127.0.0.1/32")).await;
    let freeze = json!({"scope": "default/prod", "reason": "INC-7"});

    // Engineering reads but may not freeze; the on-call group may.
    let read = as_person(
        &app,
        Method::GET,
        "/api/v1/freezes",
        ALICE,
        "engineering",
        None,
    )
    .await;
    assert_eq!(read.status(), StatusCode::OK);
    let refused = as_person(
        &app,
        Method::POST,
        "/api/v1/freezes",
        ALICE,
        "engineering",
        Some(freeze.clone()),
    )
    .await;
    assert_error(refused, StatusCode::FORBIDDEN, "forbidden", None).await;
    let declared = as_person(
        &app,
        Method::POST,
        "/api/v1/freezes",
        ALICE,
        "payments,sre-oncall,engineering",
        Some(freeze),
    )
    .await;
    assert_eq!(declared.status(), StatusCode::CREATED);
    let declared: Value = declared.json().await.unwrap();
    assert_eq!(declared["created_by"], ALICE);
    // The audit trail names the person.
    let trail = app
        .store()
        .audit_trail(&[format!("freeze:{}", declared["id"])])
        .await
        .unwrap();
    assert_eq!(trail[0].actor, ALICE);

    // Signed in but in no group with a role: refused, saying why.
    let nobody = as_person(
        &app,
        Method::GET,
        "/api/v1/freezes",
        ALICE,
        "marketing",
        None,
    )
    .await;
    assert_eq!(nobody.status(), StatusCode::FORBIDDEN);
    let body: Value = nobody.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no group auth.proxy.roles gives a role"),
        "{body}"
    );

    // A name that is not one (a tab, a space, bytes beyond ASCII, too long) is nobody:
    // 401.
    let long = "a".repeat(255);
    for bad in [
        &b"alice\t@example.com"[..],
        b"alice smith",
        b"alice\xff@example.com",
        long.as_bytes(),
    ] {
        let response = app
            .http
            .get(app.url("/api/v1/freezes"))
            .header(
                "x-forwarded-email",
                reqwest::header::HeaderValue::from_bytes(bad).unwrap(),
            )
            .header("x-forwarded-groups", "sre-oncall")
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{}",
            String::from_utf8_lossy(bad)
        );
    }

    // API clients keep their tokens.
    let token = app
        .http
        .get(app.url("/api/v1/freezes"))
        .bearer_auth(VIEWER_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(token.status(), StatusCode::OK);
}

#[tokio::test]
async fn identity_headers_from_anywhere_but_the_proxy_are_ignored() {
    // The proxy is elsewhere: these requests come from 127.0.0.1, like anyone's.
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        behind_proxy(c, "10.20.0.0/16");
        c.auth.proxy.default_role = Some(Role::Admin);
    })
    .await;
    let spoofed = as_person(
        &app,
        Method::POST,
        "/api/v1/freezes",
        ALICE,
        "sre-oncall",
        Some(json!({"scope": "*", "reason": "spoofed"})),
    )
    .await;
    assert_error(spoofed, StatusCode::UNAUTHORIZED, "unauthorized", None).await;
    let (status, freezes) = app.get_json("/api/v1/freezes?active=false").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(freezes["items"], json!([]), "nothing was declared");
}

#[tokio::test]
async fn a_proxy_without_trusted_sources_is_refused_at_start() {
    let mut config = crate::support::test_config();
    config.auth.proxy.enabled = true;
    let err = config.auth.validate().unwrap_err().to_string();
    assert!(err.contains("auth.proxy.trusted_sources"), "{err}");
    config.auth.proxy.trusted_sources = vec!["10.0.0.0/33".into()];
    let err = config.auth.validate().unwrap_err().to_string();
    assert!(err.contains("auth.proxy.trusted_sources[0]"), "{err}");
    config.auth.proxy.trusted_sources = vec!["10.0.0.7".into(), "fd00::/8".into()];
    config.auth.validate().unwrap();
    config.auth.proxy.groups_header = "X Groups".into();
    let err = config.auth.validate().unwrap_err().to_string();
    assert!(err.contains("auth.proxy.groups_header"), "{err}");
}
