//! The console in a real headless browser: Debian's chromium, driven over WebDriver
//! (chromedriver) with fantoccini, against the real app on the fake Kubernetes API,
//! people signed in by a real reverse proxy in front of it (as oauth2-proxy would
//! be). Never skipped: without chromium and chromedriver these tests fail and say what
//! to install (scripts/test installs them).
//!
//! Each test saves a screenshot of every page it looks at under
//! `target/tmp/console-screenshots/`, for a reviewer.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};

use rollwarden::config::Config;
use rollwarden::domain::{Mode, Role};

use crate::actions::{awaiting_approval, cluster, configure, error_rate, slack, wait_for_action};
use crate::support::fake_kube::FakeKube;
use crate::support::{Backend, TestApp, TestStore};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";
/// How long a page may take to show what is expected.
const PATIENCE: Duration = Duration::from_secs(20);

/// One browser at a time: four chromiums at once on a 2-core machine, beside the rest
/// of the suite, would make every wait a race.
static ONE_AT_A_TIME: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// A headless chromium with its chromedriver; both end with it.
struct Browser {
    _turn: tokio::sync::SemaphorePermit<'static>,
    client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
    shots: PathBuf,
    test: &'static str,
}

async fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

impl Browser {
    async fn start(test: &'static str) -> Self {
        for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            assert!(
                std::path::Path::new(path).exists(),
                "{path} is missing: install Debian's {package} (scripts/test installs it)"
            );
        }
        let turn = ONE_AT_A_TIME.acquire().await.unwrap();
        let port = free_port().await;
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let mut ready = false;
        for _ in 0..100 {
            if http.get(format!("{url}/status")).send().await.is_ok() {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(ready, "chromedriver did not answer on {url} within 10 s");
        let profile = tempfile::tempdir().unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--disable-quic",
                    "--window-size=1400,1000",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }),
        );
        let client = tokio::time::timeout(
            Duration::from_secs(30),
            ClientBuilder::rustls()
                .expect("rustls")
                .capabilities(caps)
                .connect(&url),
        )
        .await
        .expect("a browser session within 30 s")
        .expect("chromium starts under chromedriver");
        let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
        std::fs::create_dir_all(&shots).unwrap();
        Self {
            _turn: turn,
            client,
            driver,
            _profile: profile,
            shots,
            test,
        }
    }

    async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// Saves what the browser shows now as `<test>-<name>.png`.
    async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        let path = self.shots.join(format!("{}-{name}.png", self.test));
        std::fs::write(&path, png).unwrap();
    }

    /// Waits until `css` matches an element whose text contains `text`.
    async fn wait_text(&self, css: &str, text: &str) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let found = self.client.find_all(Locator::Css(css)).await.unwrap();
            for element in found {
                if element.text().await.unwrap_or_default().contains(text) {
                    return;
                }
            }
            if tokio::time::Instant::now() > deadline {
                let source = self.client.source().await.unwrap_or_default();
                self.screenshot("timeout").await;
                panic!("no {css} with {text:?} within {PATIENCE:?}:\n{source}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Clicks the element `css` finds; a live update may replace it between the find
    /// and the click (a stale element), so it is found again, for up to [`PATIENCE`].
    async fn click(&self, css: &str) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let clicked = match self.client.find(Locator::Css(css)).await {
                Ok(element) => element.click().await,
                Err(err) => Err(err),
            };
            match clicked {
                Ok(()) => return,
                Err(err) if tokio::time::Instant::now() > deadline => {
                    panic!("could not click {css} within {PATIENCE:?}: {err}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    async fn count(&self, css: &str) -> usize {
        self.client.find_all(Locator::Css(css)).await.unwrap().len()
    }

    /// Runs `fetch` in the page (as a forged request from it would) and answers the
    /// status and body.
    async fn fetch(&self, url: &str, method: &str, body: Value) -> (u16, Value) {
        let answer = self
            .client
            .execute_async(
                "const [url, method, body, done] = arguments;
                 fetch(url, {method, credentials: 'same-origin',
                             headers: {'Content-Type': 'application/json'},
                             body: JSON.stringify(body)})
                   .then(async r => done([r.status, await r.json().catch(() => null)]))
                   .catch(e => done([0, String(e)]));",
                vec![json!(url), json!(method), body],
            )
            .await
            .unwrap();
        (answer[0].as_u64().unwrap() as u16, answer[1].clone())
    }

    async fn close(mut self) {
        let _ = self.client.close().await;
        let _ = self.driver.kill().await;
    }
}

/// The authenticating proxy: sets who the person is (dropping whatever the browser
/// sent in those headers) and passes everything through, streams included.
struct Proxy {
    base: String,
}

#[derive(Clone)]
struct ProxyState {
    upstream: String,
    email: &'static str,
    groups: &'static str,
    http: reqwest::Client,
}

async fn forward(State(p): State<ProxyState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let mut upstream = p
        .http
        .request(parts.method, format!("{}{path}", p.upstream))
        .body(body);
    for (name, value) in &parts.headers {
        let name_lower = name.as_str();
        if !name_lower.starts_with("x-forwarded-") && name_lower != "content-length" {
            upstream = upstream.header(name, value);
        }
    }
    let answer = upstream
        .header("x-forwarded-email", p.email)
        .header("x-forwarded-groups", p.groups)
        .send()
        .await
        .unwrap();
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if name != "content-length" && name != "transfer-encoding" {
            response = response.header(name, value);
        }
    }
    response
        .body(Body::from_stream(answer.bytes_stream()))
        .unwrap()
}

impl Proxy {
    async fn start(app: &TestApp, email: &'static str, groups: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let state = ProxyState {
            upstream: app.base.clone(),
            email,
            groups,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        };
        let router = axum::Router::new().fallback(forward).with_state(state);
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self {
            base: format!("http://{addr}"),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

fn behind_proxy(c: &mut Config) {
    c.auth.proxy.enabled = true;
    c.auth.proxy.trusted_sources = vec!["127.0.0.1/32".into()];
    c.auth.proxy.roles = BTreeMap::from([
        ("sre-oncall".to_string(), Role::Operator),
        ("engineering".to_string(), Role::Viewer),
    ]);
}

/// rollwarden in `approve` mode on the fake cluster, behind the proxy, with the fake
/// cluster and Slack it talks to (kept alive with it).
struct Fixture {
    app: TestApp,
    _fake: Arc<FakeKube>,
    _slack: wiremock::MockServer,
}

async fn approve_mode() -> Fixture {
    let (fake, _controller) = cluster().await;
    let slack = slack().await;
    let app = TestApp::spawn_on(
        TestStore::new(Backend::Sqlite).await,
        |c| {
            configure(c, Mode::Approve, &slack);
            behind_proxy(c);
        },
        Some(fake.client()),
    )
    .await;
    fake.wait_for_watches(2).await;
    Fixture {
        app,
        _fake: fake,
        _slack: slack,
    }
}

/// Presses a key (a WebDriver key code: Tab is U+E004, Enter U+E007) wherever the
/// focus is.
async fn press(browser: &Browser, key: char) {
    let keys = KeyActions::new("keyboard".into())
        .then(KeyAction::Down { value: key })
        .then(KeyAction::Up { value: key });
    browser.client.perform_actions(keys).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_appears_live_and_a_person_approves_it_through_the_proxy() {
    let fixture = approve_mode().await;
    let app = &fixture.app;
    let proxy = Proxy::start(app, ALICE, "sre-oncall").await;
    let browser = Browser::start("approve").await;

    // (a) Now is open and calm; the rollback decision appears without a reload.
    browser.goto(&proxy.url("/")).await;
    browser.wait_text("#live-status", "live").await;
    browser.wait_text("main", "Nothing needs a look").await;
    browser.screenshot("now-calm").await;
    browser
        .client
        .execute("window.__sameDocument = true;", vec![])
        .await
        .unwrap();
    assert_eq!(
        app.post_alertmanager(error_rate("firing")).await.status(),
        200
    );
    browser.wait_text("tr[data-verdict=rollback]", "M2").await;
    browser
        .wait_text("tr[data-verdict=rollback]", "awaiting_approval")
        .await;
    browser.wait_text("#awaiting", "1").await;
    let same = browser
        .client
        .execute("return window.__sameDocument === true;", vec![])
        .await
        .unwrap();
    assert_eq!(same, json!(true), "the page reloaded instead of updating");
    browser.wait_text("#viewer", ALICE).await;
    browser.screenshot("now-rollback").await;

    // (b) She opens the decision, approves with a comment; the undo runs.
    browser
        .click("tr[data-verdict=rollback] a[href^='/decisions/']")
        .await;
    browser.wait_text("h1", "rollback").await;
    browser.screenshot("decision-awaiting").await;
    browser
        .client
        .find(Locator::Id("comment"))
        .await
        .unwrap()
        .send_keys("INC-9: error rate after 3.2.0")
        .await
        .unwrap();
    browser.click("#approve").await;
    let action = wait_for_action(app, "rolled back", |a| {
        matches!(a["state"].as_str(), Some("verifying" | "succeeded"))
    })
    .await;
    assert_eq!(action["approved_by"], ALICE);
    assert_eq!(
        app.post_alertmanager(error_rate("resolved")).await.status(),
        200
    );
    wait_for_action(app, "verified", |a| a["state"] == "verified").await;
    browser.wait_text(".action-card .state", "verified").await;
    browser.wait_text(".action-card .approver", ALICE).await;
    browser
        .wait_text(
            ".action-card .timeline",
            &format!("action.approved by {ALICE}"),
        )
        .await;
    browser
        .wait_text(".action-card", "INC-9: error rate after 3.2.0")
        .await;
    assert_eq!(
        browser.count("#approve").await,
        0,
        "approve is gone once approved"
    );
    browser.screenshot("decision-verified").await;

    // The target's picture and history show the deploys, the decision and the action.
    browser.click("dl.facts a[href^='/target']").await;
    browser
        .wait_text("h1", "default/prod/Deployment/checkout")
        .await;
    assert!(browser.count("svg rect.mark.deploy").await >= 1);
    assert!(browser.count("svg circle.decision.v-rollback").await >= 1);
    assert!(browser.count("svg polygon.action.s-verified").await >= 1);
    assert!(browser.count("svg rect.bar").await >= 1);
    browser
        .wait_text("table.list", "rollout_undo verified")
        .await;
    browser.screenshot("target").await;

    for (path, title) in [
        ("/decisions", "Decisions"),
        ("/alerts", "Alerts"),
        ("/actions", "Actions"),
    ] {
        browser.goto(&proxy.url(path)).await;
        browser.wait_text("h1", title).await;
        browser.screenshot(&title.to_lowercase()).await;
    }
    browser.wait_text("table.list", "rollout_undo").await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_declares_and_lifts_a_freeze() {
    let app = TestApp::spawn_with(Backend::Sqlite, behind_proxy).await;
    let proxy = Proxy::start(&app, ALICE, "sre-oncall").await;
    let browser = Browser::start("freeze").await;

    browser.goto(&proxy.url("/freezes")).await;
    browser.wait_text("#live-status", "live").await;
    for (field, text) in [
        ("scope", "default/prod"),
        ("reason", "INC-12: payments migration"),
    ] {
        browser
            .client
            .find(Locator::Id(field))
            .await
            .unwrap()
            .send_keys(text)
            .await
            .unwrap();
    }
    browser.click("#declare").await;
    browser
        .wait_text("#in-force", "INC-12: payments migration")
        .await;
    browser.wait_text(".banner", "default/prod").await;
    browser.wait_text("#in-force", ALICE).await;
    browser.screenshot("declared").await;
    let (_, freezes) = app.get_json("/api/v1/freezes").await;
    assert_eq!(freezes["items"][0]["created_by"], ALICE);

    browser.click("#in-force button[data-method=DELETE]").await;
    browser.wait_text("main", "No freeze is in force").await;
    browser
        .wait_text("table.list", &format!("by {ALICE}"))
        .await;
    assert_eq!(browser.count(".banner").await, 0);
    browser.screenshot("lifted").await;
    let (_, freezes) = app.get_json("/api/v1/freezes").await;
    assert_eq!(freezes["items"], json!([]));
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_sees_no_controls_and_a_forged_request_is_refused() {
    let fixture = approve_mode().await;
    let app = &fixture.app;
    let waiting = awaiting_approval(app).await;
    let decision = waiting["decision_id"].as_i64().unwrap();
    let proxy = Proxy::start(app, BOB, "engineering").await;
    let browser = Browser::start("viewer").await;

    browser
        .goto(&proxy.url(&format!("/decisions/{decision}")))
        .await;
    browser.wait_text("#viewer", "viewer").await;
    browser.wait_text("main", "may not approve").await;
    for control in ["#approve", "#reject", "[data-api]", "textarea"] {
        assert_eq!(
            browser.count(control).await,
            0,
            "a viewer is shown {control}"
        );
    }
    browser.screenshot("decision").await;
    browser.goto(&proxy.url("/freezes")).await;
    browser.wait_text("h1", "Freezes").await;
    assert_eq!(browser.count("#freeze-form").await, 0);
    browser.screenshot("freezes").await;

    // The page is the viewer's; a request forged in it is the server's to refuse.
    let (status, body) = browser
        .fetch(
            &format!("/api/v1/decisions/{decision}/approve"),
            "POST",
            json!({"comment": "forged"}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (403, json!("forbidden"))
    );
    let (status, _) = browser
        .fetch(
            "/api/v1/freezes",
            "POST",
            json!({"scope": "*", "reason": "forged"}),
        )
        .await;
    assert_eq!(status, 403);
    let (_, action) = app
        .get_json(&format!("/api/v1/actions/{}", waiting["id"]))
        .await;
    assert_eq!(action["state"], "awaiting_approval");
    browser.close().await;
}

/// Every control on the page, in the order Tab reaches them, as `tag name`, and the
/// ones that have no name a screen reader could read.
const WALK: &str = "
    const done = arguments[0];
    const name = (el) => {
        if (el.getAttribute('aria-label')) return el.getAttribute('aria-label');
        if (el.labels && el.labels.length) return el.labels[0].textContent;
        return (el.textContent || el.value || el.title || '').trim();
    };
    const controls = [...document.querySelectorAll(
        'a[href], button, input:not([type=hidden]), select, textarea, summary')]
        .filter(el => el.offsetParent !== null || el === document.activeElement);
    done({ controls: controls.map(el => el.outerHTML.slice(0, 80)),
           unnamed: controls.filter(el => !name(el)).map(el => el.outerHTML.slice(0, 120)) });";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_control_is_reachable_by_keyboard_and_labelled() {
    let fixture = approve_mode().await;
    let app = &fixture.app;
    let waiting = awaiting_approval(app).await;
    let decision = waiting["decision_id"].as_i64().unwrap();
    let proxy = Proxy::start(app, ALICE, "sre-oncall").await;
    let browser = Browser::start("keyboard").await;

    for (path, shot) in [
        (format!("/decisions/{decision}"), "decision"),
        ("/freezes".to_string(), "freezes"),
        ("/".to_string(), "now"),
        ("/decisions".to_string(), "decisions"),
    ] {
        browser.goto(&proxy.url(&path)).await;
        browser.wait_text("#live-status", "live").await;
        let page = browser.client.execute_async(WALK, vec![]).await.unwrap();
        assert_eq!(
            page["unnamed"],
            json!([]),
            "{path}: controls without a name"
        );
        let controls = page["controls"].as_array().unwrap().len();
        // Tab through from the top: every control gets the focus once, in order.
        browser
            .client
            .execute("document.activeElement && document.activeElement.blur(); window.__reached = new Set();
                      document.addEventListener('focusin', e => window.__reached.add(e.target));", vec![])
            .await
            .unwrap();
        // A date field takes a Tab per part: press until every control had the focus,
        // at most four presses a control.
        let mut reached = Value::Null;
        for press_no in 0..controls * 4 + 8 {
            press(&browser, '\u{e004}').await;
            if press_no % 4 == 3 || press_no + 1 == controls * 4 + 8 {
                reached = browser
                    .client
                    .execute(
                        "const all = [...document.querySelectorAll(
                            'a[href], button, input:not([type=hidden]), select, textarea, summary')]
                            .filter(el => el.offsetParent !== null);
                         return all.filter(el => !window.__reached.has(el))
                                   .map(el => el.outerHTML.slice(0, 120));",
                        vec![],
                    )
                    .await
                    .unwrap();
                if reached == json!([]) {
                    break;
                }
            }
        }
        assert_eq!(reached, json!([]), "{path}: not reachable with Tab");
        browser.screenshot(shot).await;
    }

    // Keyboard only: the comment, then Approve, with Enter.
    browser
        .goto(&proxy.url(&format!("/decisions/{decision}")))
        .await;
    browser.wait_text("#live-status", "live").await;
    let comment = browser.client.find(Locator::Id("comment")).await.unwrap();
    comment
        .send_keys("approved from the keyboard")
        .await
        .unwrap();
    press(&browser, '\u{e004}').await;
    press(&browser, '\u{e007}').await;
    let action = wait_for_action(app, "approved", |a| a["approved_by"] == ALICE).await;
    assert_eq!(action["approval_comment"], "approved from the keyboard");
    browser.close().await;
}
