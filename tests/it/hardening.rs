//! Issue 14's hardening: times far from the clock, duplicate label names, browser
//! writes (content type, origin), the error shape of path rejections, and a readiness
//! check that answers while PostgreSQL does not.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use rollwarden::wire::Bounds;
use rollwarden::wire::alertmanager::AlertmanagerPayload;

use crate::on_both_backends;
use crate::support::{
    ADMIN_TOKEN, Backend, FIRING, TestApp, TestStore, WEBHOOK_TOKEN, assert_error, postgres_schema,
};

/// FIRING with its first alert's `startsAt` set to `starts_at`.
fn firing_starting(starts_at: &str) -> String {
    let mut body: Value = serde_json::from_str(FIRING).unwrap();
    body["alerts"][0]["startsAt"] = json!(starts_at);
    body.to_string()
}

async fn post_json(app: &TestApp, path: &str, token: &str, body: &Value) -> reqwest::Response {
    app.http
        .post(app.url(path))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap()
}

// ------------------------------------------------------------------ item 1: times

async fn times_far_from_the_clock_are_refused_naming_the_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // 9999-12-31T23:59:59-23:59 is year 10000 in UTC: what once broke every SQLite read.
    for starts_at in [
        "9999-12-31T23:59:59-23:59",
        "9999-12-31T23:59:59Z",
        "2045-01-01T00:00:00Z",
        "1970-01-01T00:00:01Z",
        "0001-01-01T00:00:01Z",
    ] {
        assert_error(
            app.post_alertmanager(firing_starting(starts_at)).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "inconsistent",
            Some("alerts[0].startsAt"),
        )
        .await;
    }
    let mut resolved: Value = serde_json::from_str(FIRING).unwrap();
    resolved["alerts"][0]["status"] = json!("resolved");
    resolved["alerts"][0]["endsAt"] = json!("9999-12-31T23:59:59-23:59");
    assert_error(
        app.post_alertmanager(resolved.to_string()).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "inconsistent",
        Some("alerts[0].endsAt"),
    )
    .await;

    let deploy = json!({"namespace": "prod", "name": "checkout", "revision": "7",
        "status": "started", "started_at": "9999-12-31T23:59:59-23:59"});
    assert_error(
        post_json(&app, "/api/v1/deploys", WEBHOOK_TOKEN, &deploy).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "inconsistent",
        Some("started_at"),
    )
    .await;
    let signal = json!({"kind": "customer_reports",
        "target": {"namespace": "prod", "name": "checkout"}, "id": "support-queue",
        "count": 3, "started_at": "1900-01-01T00:00:00Z"});
    assert_error(
        post_json(&app, "/api/v1/signals", WEBHOOK_TOKEN, &signal).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "inconsistent",
        Some("started_at"),
    )
    .await;
    let freeze = json!({"scope": "default/prod", "reason": "x",
        "expires_at": "9999-12-31T23:59:59-23:59"});
    assert_error(
        post_json(&app, "/api/v1/freezes", ADMIN_TOKEN, &freeze).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "inconsistent",
        Some("expires_at"),
    )
    .await;

    // Within the bound, an alert from months ago is as welcome as ever.
    let response = app
        .post_alertmanager(firing_starting("2026-03-01T00:00:00Z"))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(app.store().ping().await.is_ok());
}

/// A row written before the bound existed, with a year past 9999, stays readable: the
/// lists and the engine go on (SQLite kept it as `+10000-…` text, which the old
/// decoder refused, failing every read that included it).
async fn a_stored_year_past_9999_does_not_break_reads(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // The parser's bound is relative to its clock: at the end of year 9999, the
    // hostile time is within it, and the store takes it as the old code did.
    let then = "9999-12-31T00:00:00Z".parse().unwrap();
    let mut far: Value =
        serde_json::from_str(&firing_starting("9999-12-31T23:59:59-23:59")).unwrap();
    far["alerts"].as_array_mut().unwrap().truncate(1);
    let notification =
        AlertmanagerPayload::parse(far.to_string().as_bytes(), &Bounds::default(), then)
            .expect("parses at the end of year 9999");
    app.store()
        .record_notifications(&[notification])
        .await
        .expect("stored");
    app.post_alertmanager(FIRING).await;

    let (status, body) = app.get_json("/api/v1/alerts").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let starts: Vec<&str> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["startsAt"].as_str().or(a["starts_at"].as_str()))
        .collect();
    assert!(
        starts.iter().any(|s| s.starts_with("+10000")),
        "the far row is listed: {starts:?}"
    );
    let (status, body) = app.get_json("/api/v1/analysis/prod/checkout").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app.get_json("/api/v1/decisions").await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

// -------------------------------------------------------- item 9: duplicate labels

async fn a_label_name_given_twice_is_refused_naming_it(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // serde_json keeps the last of duplicate keys: build the text by hand.
    let body = FIRING.replacen(
        "\"labels\": {",
        "\"labels\": {\"severity\": \"info\", \"severity\": \"page\",",
        1,
    );
    assert_ne!(body, FIRING, "the fixture has a labels object");
    let response = app.post_alertmanager(body).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "invalid_field", "{error}");
    assert_eq!(error["details"]["field"], Value::Null, "{error}");
    let field = error["error"]["details"]["field"].as_str().unwrap();
    assert!(field.starts_with("alerts[0].labels"), "{error}");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("\"severity\""), "{error}");
    assert!(app.alerts("").await.is_empty(), "nothing stored");

    let annotations = FIRING.replacen(
        "\"annotations\": {",
        "\"annotations\": {\"value\": \"0.01\", \"value\": \"0.9\",",
        1,
    );
    assert_ne!(annotations, FIRING, "the fixture has an annotations object");
    let response = app.post_alertmanager(annotations).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

// --------------------------------------------------- item 4: browser writes (CSRF)

#[tokio::test]
async fn a_body_not_declared_as_json_gets_415_and_changes_nothing() {
    // No tokens: every loopback caller is admin, as in the README's first run.
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.auth.tokens.clear();
        c.auth.allow_anonymous = true;
    })
    .await;
    let freeze = r#"{"scope": "default/prod", "reason": "csrf"}"#;
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let mut request = app.http.post(app.url("/api/v1/freezes")).body(freeze);
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        assert_error(
            request.send().await.unwrap(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            Some("Content-Type"),
        )
        .await;
    }
    for path in [
        "/webhooks/alertmanager",
        "/api/v1/deploys",
        "/api/v1/signals",
    ] {
        let response = app
            .http
            .post(app.url(path))
            .header("content-type", "text/plain")
            .body(FIRING)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{path}"
        );
    }
    let (_, freezes) = app.get_json("/api/v1/freezes").await;
    assert_eq!(freezes["items"], json!([]), "no freeze was created");

    let response = app
        .http
        .post(app.url("/api/v1/freezes"))
        .header("content-type", "application/json; charset=utf-8")
        .body(freeze)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn a_cross_origin_browser_write_gets_403() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.auth.tokens.clear();
        c.auth.allow_anonymous = true;
    })
    .await;
    let freeze = json!({"scope": "default/prod", "reason": "csrf"});
    let host = app.url("").trim_start_matches("http://").to_string();
    for (name, value) in [
        ("origin", "https://evil.example".to_string()),
        ("origin", "null".to_string()),
        ("sec-fetch-site", "cross-site".to_string()),
        ("sec-fetch-site", "same-site".to_string()),
    ] {
        let response = app
            .http
            .post(app.url("/api/v1/freezes"))
            .header(name, value.as_str())
            .json(&freeze)
            .send()
            .await
            .unwrap();
        assert_error(
            response,
            StatusCode::FORBIDDEN,
            "cross_origin",
            Some("Origin"),
        )
        .await;
    }
    let (_, freezes) = app.get_json("/api/v1/freezes").await;
    assert_eq!(freezes["items"], json!([]), "no freeze was created");

    // The same origin (a console served by rollwarden itself) may write; reads from
    // anywhere are reads.
    let response = app
        .http
        .post(app.url("/api/v1/freezes"))
        .header("origin", format!("http://{host}"))
        .header("sec-fetch-site", "same-origin")
        .json(&freeze)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let response = app
        .http
        .get(app.url("/api/v1/freezes"))
        .header("origin", "https://evil.example")
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

// ------------------------------------------------------ item 5: the error shape

#[tokio::test]
async fn a_path_segment_that_is_not_utf8_gets_the_json_error() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    for path in [
        "/api/v1/analysis/prod/%FF",
        "/api/v1/analysis/%C3%28/checkout",
        "/api/v1/targets/prod/%FF/history",
        "/api/v1/decisions/%FF",
        "/api/v1/decisions/%FF/evidence",
        "/api/v1/actions/%FF",
    ] {
        let response = app
            .http
            .get(app.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(
            response.headers()["content-type"],
            "application/json",
            "{path}"
        );
        let body: Value = response.json().await.unwrap();
        assert!(body["error"]["code"].is_string(), "{path}: {body}");
        assert!(
            body["error"]["details"]["field"].is_string(),
            "{path}: {body}"
        );
    }
}

// --------------------------------------------- item 8: readiness while PG stalls

/// A TCP proxy to PostgreSQL that can stop passing bytes, as a server that is down
/// behind a load balancer or a partitioned network looks to a client.
struct StallingProxy {
    port: u16,
    stalled: Arc<AtomicBool>,
}

impl StallingProxy {
    async fn start(upstream: (String, u16)) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let stalled = Arc::new(AtomicBool::new(false));
        let flag = stalled.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = TcpStream::connect((upstream.0.as_str(), upstream.1))
                    .await
                    .unwrap();
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pipe(cr, sw, flag.clone()));
                tokio::spawn(pipe(sr, cw, flag.clone()));
            }
        });
        Self { port, stalled }
    }
}

async fn pipe(
    mut from: impl AsyncReadExt + Unpin,
    mut to: impl AsyncWriteExt + Unpin,
    stalled: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let Ok(n) = from.read(&mut buf).await else {
            return;
        };
        if n == 0 {
            return;
        }
        while stalled.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_answers_503_at_once_while_postgres_stalls() {
    let options = postgres_schema().await;
    let proxy = StallingProxy::start((options.get_host().to_string(), options.get_port())).await;
    let db = TestStore::postgres_with(options.clone().host("127.0.0.1").port(proxy.port)).await;
    let app = TestApp::spawn_on(db, |_| {}, None).await;
    let ready = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);

    proxy.stalled.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let response = app
        .http
        .get(app.url("/readyz"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("an answer, not a hang");
    let waited = started.elapsed();
    assert_error(
        response,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        None,
    )
    .await;
    // Kubelet's probe gives up after 1 s by default; the check's own bound is 0.8 s.
    assert!(waited < Duration::from_secs(3), "waited {waited:?}");

    proxy.stalled.store(false, Ordering::SeqCst);
}

on_both_backends!(
    times_far_from_the_clock_are_refused_naming_the_field,
    a_stored_year_past_9999_does_not_break_reads,
    a_label_name_given_twice_is_refused_naming_it,
);
