//! The operator console over HTTP (its browser flows are in browser.rs): sign-in, the
//! session cookie, the security headers on every page, what a viewer is shown and
//! refused, and hostile text from the network rendered inert.

use reqwest::header::{CONTENT_SECURITY_POLICY, LOCATION, SET_COOKIE};
use reqwest::{Client, Method, StatusCode, redirect};
use serde_json::{Value, json};

use rollwarden::domain::Mode;

use crate::actions::{CHECKOUT, awaiting_approval, cluster, configure, error_rate, slack};
use crate::support::{Backend, OPERATOR_TOKEN, TestApp, TestStore, VIEWER_TOKEN};

/// A client that shows redirects instead of following them.
fn browser() -> Client {
    Client::builder()
        .redirect(redirect::Policy::none())
        .build()
        .unwrap()
}

/// Signs in through `POST /session` as the sign-in page does; returns the cookie.
pub(crate) async fn sign_in(app: &TestApp, token: &str) -> String {
    let response = browser()
        .post(app.url("/session"))
        .header("origin", &app.base)
        .json(&json!({ "token": token }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let cookie = response.headers()[SET_COOKIE].to_str().unwrap().to_string();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    // Kept for the browser session only; not Secure on plain-HTTP loopback.
    assert!(
        !cookie.contains("Max-Age") && !cookie.contains("Expires"),
        "{cookie}"
    );
    assert!(!cookie.contains("Secure"), "{cookie}");
    cookie.split(';').next().unwrap().to_string()
}

pub(crate) async fn page(app: &TestApp, cookie: &str, path: &str) -> (StatusCode, String) {
    let response = browser()
        .get(app.url(path))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.text().await.unwrap();
    if status == StatusCode::OK {
        let csp = headers[CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("default-src 'none'"), "{path}: {csp}");
        assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("http"),
            "{csp}"
        );
        assert_eq!(headers["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        // No inline script: every <script> has a src on this server.
        for tag in body.split("<script").skip(1) {
            assert!(
                tag.trim_start().starts_with("src=\"/assets/"),
                "{path}: inline script: {tag:.80}"
            );
        }
        assert!(!has_event_handler(&body), "{path}: an inline event handler");
    }
    (status, body)
}

/// Text as the templates escape it (minijinja's HTML escaping).
fn html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#x27;")
        .replace('/', "&#x2f;")
}

/// Whether any tag has an `on…=` attribute (text that merely reads so is escaped and
/// is in no tag).
fn has_event_handler(html: &str) -> bool {
    html.split('<').skip(1).any(|rest| {
        let tag = rest.split('>').next().unwrap_or("");
        tag.split_whitespace().skip(1).any(|attribute| {
            let name = attribute
                .split('=')
                .next()
                .unwrap_or("")
                .to_ascii_lowercase();
            name.len() > 2 && name.starts_with("on") && attribute.contains('=')
        })
    })
}

async fn write(
    app: &TestApp,
    cookie: &str,
    method: Method,
    path: &str,
    origin: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = browser()
        .request(method, app.url(path))
        .header("cookie", cookie);
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_person_signs_in_with_a_token_and_every_page_carries_the_security_headers() {
    let app = TestApp::spawn(Backend::Sqlite).await;

    // Not signed in: every page sends the person to sign in, and back.
    let response = browser()
        .get(app.url("/decisions?verdict=rollback"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        response.headers()[LOCATION],
        "/sign-in?next=%2Fdecisions%3Fverdict%3Drollback"
    );
    let (status, sign_in_page) = page(&app, "", "/sign-in?next=/decisions").await;
    assert_eq!(status, StatusCode::OK);
    assert!(sign_in_page.contains(&format!("data-next=\"{}\"", html("/decisions"))));
    // Another site is never where sign-in leads.
    let (_, elsewhere) = page(&app, "", "/sign-in?next=https://evil.example/").await;
    assert!(
        elsewhere.contains(&format!("data-next=\"{}\"", html("/"))),
        "{elsewhere}"
    );

    // A wrong token is refused; a right one gives a session cookie.
    let wrong = browser()
        .post(app.url("/session"))
        .header("origin", &app.base)
        .json(&json!({ "token": "not-a-token" }))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.headers().get(SET_COOKIE).is_none());
    let cookie = sign_in(&app, VIEWER_TOKEN).await;

    for path in [
        "/",
        "/decisions",
        "/decisions?verdict=rollback&target=",
        "/alerts",
        "/alerts?status=firing",
        "/actions",
        "/freezes",
        "/target?key=default/prod/Deployment/checkout",
        "/target?key=default/prod/Deployment/checkout&hours=24",
    ] {
        let (status, body) = page(&app, &cookie, path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert!(body.contains("dashboard (viewer)"), "{path}");
    }
    // Bad filters are the API's 400, as a page.
    for (path, needle) in [
        ("/decisions?verdict=maybe", "verdict"),
        ("/target?key=nope", "key"),
        (
            "/target?key=default/prod/Deployment/checkout&hours=999",
            "hours",
        ),
        ("/decisions/0", "no decision"),
        ("/decisions/77", "no decision 77"),
    ] {
        let (status, body) = page(&app, &cookie, path).await;
        assert!(status.is_client_error(), "{path}: {status}");
        assert!(body.contains(needle), "{path}: {body}");
    }

    // The assets are served from the binary.
    for (path, kind) in [
        ("/assets/console.css", "text/css"),
        ("/assets/console.js", "text/javascript"),
    ] {
        let response = browser().get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind)
        );
    }

    // Signing out forgets the cookie.
    let out = browser()
        .delete(app.url("/session"))
        .header("cookie", &cookie)
        .header("origin", &app.base)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    assert!(
        out.headers()[SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_sees_no_controls_and_the_server_refuses_what_a_page_could_forge() {
    let (fake, _controller) = cluster().await;
    let slack = slack().await;
    let app = TestApp::spawn_on(
        TestStore::new(Backend::Sqlite).await,
        |c| configure(c, Mode::Approve, &slack),
        Some(fake.client()),
    )
    .await;
    fake.wait_for_watches(2).await;
    let waiting = awaiting_approval(&app).await;
    let decision = waiting["decision_id"].as_i64().unwrap();

    let viewer = sign_in(&app, VIEWER_TOKEN).await;
    let operator = sign_in(&app, OPERATOR_TOKEN).await;

    // Now lists the target, worst first, with its rule and the waiting action.
    let (_, now) = page(&app, &viewer, "/").await;
    assert!(
        now.contains(&format!("data-target=\"{}\"", html(CHECKOUT))),
        "{now}"
    );
    assert!(now.contains("data-verdict=\"rollback\""));
    assert!(now.contains("M2") && now.contains("eu-west-1") && now.contains("drill"));
    assert!(now.contains("awaiting_approval"));
    assert!(
        now.contains("Awaiting approval: <strong>1</strong>"),
        "{now}"
    );

    // The decisions page lists it (read without its evidence): link, target, verdict.
    let (_, list) = page(&app, &viewer, "/decisions?verdict=rollback").await;
    assert!(
        list.contains(&format!("href=\"/decisions/{decision}\"")),
        "{list}"
    );
    assert!(list.contains(&html(CHECKOUT)), "{list}");
    assert!(list.contains("rollback"), "{list}");

    // The operator is shown Approve and Reject; the viewer is told they may not.
    let path = format!("/decisions/{decision}");
    let (_, as_operator) = page(&app, &operator, &path).await;
    assert!(as_operator.contains("id=\"approve\""), "{as_operator}");
    assert!(as_operator.contains("id=\"reject\""));
    let (_, as_viewer) = page(&app, &viewer, &path).await;
    for control in ["id=\"approve\"", "id=\"reject\"", "data-api="] {
        assert!(!as_viewer.contains(control), "a viewer is shown {control}");
    }
    assert!(as_viewer.contains("may not approve"));
    for needle in [
        "kubectl -n prod rollout undo deployment/checkout",
        "Incident report",
        "<h1>",
        "evidence record",
    ] {
        assert!(as_viewer.contains(needle), "{needle}");
    }
    let (_, freezes) = page(&app, &viewer, "/freezes").await;
    assert!(!freezes.contains("freeze-form") && !freezes.contains("data-api="));

    // Whatever a page sends, the server refuses a viewer.
    let approve = format!("/api/v1/decisions/{decision}/approve");
    let (status, body) = write(
        &app,
        &viewer,
        Method::POST,
        &approve,
        Some(&app.base),
        Some(json!({"comment": "forged"})),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    let freeze = json!({"scope": "default/prod", "reason": "forged"});
    let (status, _) = write(
        &app,
        &viewer,
        Method::POST,
        "/api/v1/freezes",
        Some(&app.base),
        Some(freeze.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // A session's write without an Origin, or from another origin, is refused even
    // for an operator: only the console's own pages may use the cookie to write.
    for origin in [None, Some("https://evil.example"), Some("null")] {
        let (status, body) = write(
            &app,
            &operator,
            Method::POST,
            "/api/v1/freezes",
            origin,
            Some(freeze.clone()),
        )
        .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("cross_origin")),
            "{origin:?}"
        );
    }
    let (status, created) = write(
        &app,
        &operator,
        Method::POST,
        "/api/v1/freezes",
        Some(&app.base),
        Some(freeze),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["created_by"], "oncall");
    // A bearer-token client is unaffected by the cookie rules.
    let lifted = app
        .http
        .delete(app.url(&format!("/api/v1/freezes/{}", created["id"])))
        .bearer_auth(OPERATOR_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(lifted.status(), StatusCode::OK);
}

#[tokio::test]
async fn text_from_the_network_is_shown_never_run() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let operator = sign_in(&app, OPERATOR_TOKEN).await;
    let hostile = "<img src=x onerror=alert(1)>\"'><script>alert(2)</script>";
    let hostile_alert = error_rate("firing")
        .replace(
            "HighErrorRate",
            "Evil\\u003cscript\\u003ealert(3)\\u003c/script\\u003e",
        )
        .replace(
            "\"severity\":\"critical\"",
            &format!("\"severity\":{}", json!(hostile)),
        );
    assert_eq!(app.post_alertmanager(hostile_alert).await.status(), 200);
    let (status, _) = write(
        &app,
        &operator,
        Method::POST,
        "/api/v1/freezes",
        Some(&app.base),
        Some(json!({"scope": "default/prod", "reason": hostile})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    for path in ["/freezes", "/alerts", "/"] {
        let (status, body) = page(&app, &operator, path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert!(!body.contains("<img src=x"), "{path}: {body}");
        assert!(!body.contains("<script>alert"), "{path}");
        assert!(body.contains(&html(hostile)), "{path}: {body}");
    }
    let (_, alerts) = page(&app, &operator, "/alerts").await;
    assert!(
        alerts.contains(&html("Evil<script>alert(3)</script>")),
        "{alerts}"
    );
}
