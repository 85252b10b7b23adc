//! Approvals where on-call already is: the Slack app's messages (one per decision,
//! updated in place, the rest in its thread), its Approve / Reject buttons through
//! `POST /webhooks/slack/interactions` (signed, fresh, by an allowed approver,
//! idempotent), and PagerDuty's incident per decision. Slack and PagerDuty are
//! stand-ins that speak their protocols: the Web API's JSON answers, Slack's signing
//! of interaction payloads, the Events API's 202.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::actions::{
    awaiting_approval, cluster, error_rate, real_patches, rewatching, slack, slack_texts,
    spawn_with, wait_for_action,
};
use crate::on_both_backends;
use crate::support::smtp::SmtpStandIn;
use crate::support::{Backend, OPERATOR_TOKEN, TestApp};
use rollwarden::clock::Clock;
use rollwarden::config::{Config, Secret, SmtpTls};
use rollwarden::domain::Mode;

const SIGNING_SECRET: &str = "test-signing-secret-0123456789ab";
const ROUTING_KEY: &str = "0123456789abcdef0123456789abcdef";
const ALICE: &str = "U0ALICE";
const GROUP: &str = "S0ONCALL";
const BOB_IN_GROUP: &str = "U0BOB";
const MALLORY: &str = "U0MALLORY";

/// `chat.postMessage` as Slack answers it: `ok`, the channel, a new `ts` each time.
struct PostMessage(AtomicU64);

impl Respond for PostMessage {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        if request
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            != Some("Bearer xoxb-test-token")
        {
            return ResponseTemplate::new(200)
                .set_body_json(json!({"ok": false, "error": "invalid_auth"}));
        }
        let n = self.0.fetch_add(1, Ordering::SeqCst);
        ResponseTemplate::new(200).set_body_json(json!({
            "ok": true,
            "channel": body["channel"],
            "ts": format!("1767225500.{n:06}"),
            "message": {"text": body["text"]},
        }))
    }
}

/// The Slack Web API, PagerDuty's Events API and the `response_url`s, on one server.
async fn stand_in() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/chat.postMessage"))
        .respond_with(PostMessage(AtomicU64::new(1)))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/chat.update"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true})))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/usergroups.users.list"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"ok": true, "users": [BOB_IN_GROUP]})),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path_regex("^/actions/"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v2/enqueue"))
        .respond_with(
            ResponseTemplate::new(202)
                .set_body_json(json!({"status": "success", "message": "Event processed"})),
        )
        .mount(&server)
        .await;
    server
}

fn configure(c: &mut Config, server: &MockServer) {
    let s = &mut c.notify.slack;
    s.bot_token = Secret::new("xoxb-test-token");
    s.channel = "C0123CHAN".into();
    s.api_url = format!("{}/api", server.uri());
    s.signing_secret = Secret::new(SIGNING_SECRET);
    s.approvers = vec![ALICE.into()];
    s.approver_groups = vec![GROUP.into()];
    s.response_url_prefix = format!("{}/actions/", server.uri());
    c.notify.public_url = "https://rollwarden.example.com".into();
    c.notify.pagerduty.routing_key = Secret::new(ROUTING_KEY);
    c.notify.pagerduty.url = format!("{}/v2/enqueue", server.uri());
    c.notify
        .pagerduty
        .severities
        .insert("drill".into(), "critical".into());
}

/// The JSON bodies `server` received on `at`.
async fn calls(server: &MockServer, at: &str) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path() == at)
        .map(|r| serde_json::from_slice(&r.body).unwrap_or(Value::Null))
        .collect()
}

/// Waits (bounded: 10 s) until `at` has received a body satisfying `found`.
async fn wait_call(server: &MockServer, at: &str, found: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..500 {
        if let Some(body) = calls(server, at).await.into_iter().find(|b| found(b)) {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("nothing like it on {at}: {:?}", calls(server, at).await);
}

/// The notifications about `decision`, as `GET /api/v1/decisions/{id}` shows them.
async fn notifications(app: &TestApp, decision: i64) -> Vec<Value> {
    let (_, d) = app.get_json(&format!("/api/v1/decisions/{decision}")).await;
    d["notifications"].as_array().cloned().unwrap_or_default()
}

/// Waits (bounded: 10 s) until every notification about `decision` is delivered.
async fn settled(app: &TestApp, decision: i64) -> Vec<Value> {
    let mut last = Vec::new();
    for _ in 0..500 {
        last = notifications(app, decision).await;
        if !last.is_empty() && last.iter().all(|n| n["status"] == "delivered") {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("notifications of decision {decision} not all delivered: {last:?}");
}

/// Waits (bounded: 20 s) until a notification about `decision` satisfies `found`.
async fn wait_notification(app: &TestApp, decision: i64, found: impl Fn(&Value) -> bool) -> Value {
    let mut last = Vec::new();
    for _ in 0..1000 {
        last = notifications(app, decision).await;
        if let Some(n) = last.iter().find(|n| found(n)) {
            return n.clone();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no such notification about decision {decision}: {last:?}");
}

/// Presses a button as Slack sends it: the payload form-encoded, signed with
/// `secret` at `timestamp`.
async fn press(
    app: &TestApp,
    server: &MockServer,
    (secret, timestamp): (&str, i64),
    user: &str,
    action_id: &str,
    decision: i64,
) -> StatusCode {
    let payload = json!({
        "type": "block_actions",
        "user": {"id": user, "username": user.to_lowercase(), "name": user.to_lowercase(), "team_id": "T0TEAM"},
        "api_app_id": "A0APP", "token": "legacy-verification-token",
        "container": {"type": "message", "message_ts": "1767225500.000001", "channel_id": "C0123CHAN"},
        "channel": {"id": "C0123CHAN", "name": "deploys"},
        "response_url": format!("{}/actions/T0TEAM/{user}/{action_id}", server.uri()),
        "trigger_id": "1.2.3",
        "actions": [{"type": "button", "block_id": "rollwarden_approval", "action_id": action_id,
                     "value": decision.to_string(), "action_ts": "1767225600.1"}],
    });
    let body: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &payload.to_string())
        .finish();
    let timestamp = timestamp.to_string();
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("v0:{timestamp}:{body}").as_bytes());
    let signature = format!("v0={}", hex::encode(mac.finalize().into_bytes()));
    app.http
        .post(app.url("/webhooks/slack/interactions"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", timestamp)
        .header("x-slack-signature", signature)
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
}

/// What the presser was answered on their `response_url`s.
async fn answers(server: &MockServer, user: &str) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| {
            r.url
                .path()
                .starts_with(&format!("/actions/T0TEAM/{user}/"))
        })
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

async fn wait_answer(server: &MockServer, user: &str, needle: &str) -> Value {
    for _ in 0..500 {
        if let Some(a) = answers(server, user)
            .await
            .into_iter()
            .find(|a| a["text"].as_str().is_some_and(|t| t.contains(needle)))
        {
            return a;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "no answer to {user} with {needle:?}: {:?}",
        answers(server, user).await
    );
}

async fn a_slack_button_approves_only_when_signed_fresh_and_allowed(backend: Backend) {
    let (fake, _controller) = cluster().await;
    let webhook = slack().await;
    let server = stand_in().await;
    let app = spawn_with(backend, Mode::Approve, &webhook, &fake, |c| {
        configure(c, &server)
    })
    .await;
    fake.wait_for_watches(2).await;
    let waiting = awaiting_approval(&app).await;
    let decision = waiting["decision_id"].as_i64().unwrap();

    // One message for the decision, with the buttons, posted with the bot token.
    let top = wait_call(&server, "/api/chat.postMessage", |b| b["blocks"].is_array()).await;
    assert_eq!(top["channel"], "C0123CHAN");
    assert!(top.get("thread_ts").is_none());
    let buttons = top["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "actions")
        .expect("the approval request has buttons");
    assert_eq!(buttons["elements"][0]["action_id"], "rollwarden_approve");
    assert_eq!(buttons["elements"][0]["value"], decision.to_string());
    assert!(
        top["text"]
            .as_str()
            .unwrap()
            .contains("Rollback awaiting approval")
    );

    let now = app.clock.now().timestamp();
    let still_waiting = || async {
        let (_, d) = app.get_json(&format!("/api/v1/decisions/{decision}")).await;
        d["actions"][0]["state"] == "awaiting_approval"
    };
    // A bad signature, a replayed (old) request: refused, nothing done.
    let forged = press(
        &app,
        &server,
        ("not-the-secret", now),
        ALICE,
        "rollwarden_approve",
        decision,
    );
    assert_eq!(forged.await, StatusCode::UNAUTHORIZED);
    let replayed = press(
        &app,
        &server,
        (SIGNING_SECRET, now - 301),
        ALICE,
        "rollwarden_approve",
        decision,
    );
    assert_eq!(replayed.await, StatusCode::UNAUTHORIZED);
    let future = press(
        &app,
        &server,
        (SIGNING_SECRET, now + 301),
        ALICE,
        "rollwarden_approve",
        decision,
    );
    assert_eq!(future.await, StatusCode::UNAUTHORIZED);
    let unsigned = app
        .http
        .post(app.url("/webhooks/slack/interactions"))
        .body("payload=%7B%7D")
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), StatusCode::UNAUTHORIZED);
    let error: Value = unsigned.json().await.unwrap();
    assert_eq!(error["error"]["code"], "bad_signature");

    // Someone not on the list: an ephemeral refusal, recorded; nothing done.
    let mallory = press(
        &app,
        &server,
        (SIGNING_SECRET, now),
        MALLORY,
        "rollwarden_approve",
        decision,
    );
    assert_eq!(mallory.await, StatusCode::OK);
    let refusal = wait_answer(&server, MALLORY, "not on rollwarden's approver list").await;
    assert_eq!(refusal["response_type"], "ephemeral");
    assert_eq!(refusal["replace_original"], false);
    assert!(still_waiting().await);
    let trail = app
        .db
        .store
        .audit_trail(&[format!("decision:{decision}")])
        .await
        .unwrap();
    assert!(
        trail
            .iter()
            .any(|e| e.kind == "approval.refused" && e.actor == "slack:U0MALLORY (u0mallory)"),
        "{trail:?}"
    );
    assert!(real_patches(&fake).is_empty());

    // Alice, on the list: approved as her Slack identity; the undo runs.
    let alice = press(
        &app,
        &server,
        (SIGNING_SECRET, now),
        ALICE,
        "rollwarden_approve",
        decision,
    );
    assert_eq!(alice.await, StatusCode::OK);
    let approved = wait_answer(&server, ALICE, "Approved by <@U0ALICE>").await;
    assert_eq!(approved["replace_original"], true);
    let done = wait_for_action(&app, "rolled back", |a| {
        matches!(a["state"].as_str(), Some("verifying" | "succeeded"))
    })
    .await;
    assert_eq!(done["approved_by"], "slack:U0ALICE (u0alice)");
    assert_eq!(real_patches(&fake).len(), 1);

    // The rollback's news: the top message updated in place (no buttons, who acted),
    // the news itself in its thread.
    let top_ts = "1767225500.000001";
    let update = wait_call(&server, "/api/chat.update", |b| {
        b["text"]
            .as_str()
            .is_some_and(|t| t.contains("Rolling back"))
    })
    .await;
    assert_eq!(
        (update["channel"].as_str(), update["ts"].as_str()),
        (Some("C0123CHAN"), Some(top_ts))
    );
    assert!(!update.to_string().contains("rollwarden_approve"));
    assert!(
        update
            .to_string()
            .contains("approved by slack:U0ALICE (u0alice)")
    );
    let reply = wait_call(&server, "/api/chat.postMessage", |b| {
        b["text"]
            .as_str()
            .is_some_and(|t| t.contains("Rolling back"))
    })
    .await;
    assert_eq!(reply["thread_ts"], top_ts);
    assert!(
        reply["blocks"][0]["text"]["text"]
            .as_str()
            .unwrap()
            .contains("Approved by slack:U0ALICE (u0alice).")
    );

    // Two minutes on, still being verified: a status update in the thread, once.
    app.clock.advance(chrono::Duration::seconds(121));
    let still = |b: &Value| {
        b["text"]
            .as_str()
            .is_some_and(|t| t.contains("still verifying"))
    };
    let status = wait_call(&server, "/api/chat.postMessage", still).await;
    assert_eq!(status["thread_ts"], top_ts);
    let text = status["blocks"][0]["text"]["text"].as_str().unwrap();
    assert!(text.contains("(2 min 01 s so far)"), "{text}");
    assert!(text.contains("Latest decision #"), "{text}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let statuses = calls(&server, "/api/chat.postMessage").await;
    assert_eq!(statuses.iter().filter(|b| still(b)).count(), 1);

    // A second press (a double click, or Bob's late one): the current state, no change.
    let again = press(
        &app,
        &server,
        (SIGNING_SECRET, now),
        ALICE,
        "rollwarden_reject",
        decision,
    );
    assert_eq!(again.await, StatusCode::OK);
    let noop = wait_answer(&server, ALICE, "Nothing was changed").await;
    assert_eq!(noop["response_type"], "ephemeral");
    assert!(
        noop["text"]
            .as_str()
            .unwrap()
            .contains("no action awaiting approval"),
        "{noop}"
    );
    assert_eq!(real_patches(&fake).len(), 1);

    // Verified: PagerDuty is told to resolve the decision's incident, never paged.
    assert_eq!(
        app.post_alertmanager(error_rate("resolved")).await.status(),
        200
    );
    wait_for_action(&app, "verified", |a| a["state"] == "verified").await;
    let resolve = wait_call(&server, "/v2/enqueue", |b| b["event_action"] == "resolve").await;
    assert_eq!(resolve["routing_key"], ROUTING_KEY);
    assert_eq!(
        resolve["dedup_key"],
        format!("rollwarden:default/prod/Deployment/checkout:{decision}")
    );
    assert!(
        calls(&server, "/v2/enqueue")
            .await
            .iter()
            .all(|e| e["event_action"] != "trigger")
    );
    let metrics = app.metrics().await;
    for line in [
        "rollwarden_slack_interactions_total{outcome=\"approved\"} 1",
        "rollwarden_slack_interactions_total{outcome=\"refused\"} 1",
        "rollwarden_slack_interactions_total{outcome=\"no_op\"} 1",
        "rollwarden_slack_interactions_total{outcome=\"bad_signature\"} 1",
        "rollwarden_slack_interactions_total{outcome=\"stale\"} 2",
    ] {
        assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    }
}

async fn a_group_member_rejects_and_an_expired_approval_pages(backend: Backend) {
    let (fake, _controller) = cluster().await;
    let webhook = slack().await;
    let server = stand_in().await;
    let app = spawn_with(backend, Mode::Approve, &webhook, &fake, |c| {
        configure(c, &server);
        c.actions.approval_ttl_secs = 600;
    })
    .await;
    fake.wait_for_watches(2).await;
    let waiting = awaiting_approval(&app).await;
    let decision = waiting["decision_id"].as_i64().unwrap();
    let now = app.clock.now().timestamp();
    // The request is in Slack (its thread recorded) before anyone presses.
    settled(&app, decision).await;

    // Bob is in the approver group (usergroups.users.list): his Reject counts.
    let bob = press(
        &app,
        &server,
        (SIGNING_SECRET, now),
        BOB_IN_GROUP,
        "rollwarden_reject",
        decision,
    );
    assert_eq!(bob.await, StatusCode::OK);
    wait_answer(&server, BOB_IN_GROUP, "Rejected by <@U0BOB>").await;
    let rejected = wait_for_action(&app, "rejected", |a| a["state"] == "rejected").await;
    assert_eq!(rejected["approved_by"], "slack:U0BOB (u0bob)");
    let group_reads: Vec<String> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/api/usergroups.users.list")
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert_eq!(
        group_reads,
        [format!("usergroup={GROUP}")],
        "one form-encoded read"
    );
    // The request's message loses its buttons and says who rejected it, once.
    let update = wait_call(&server, "/api/chat.update", |b| {
        b.to_string().contains("rejected by slack:U0BOB (u0bob)")
    })
    .await;
    assert!(
        !update.to_string().contains("rollwarden_approve"),
        "{update}"
    );
    settled(&app, decision).await;
    assert_eq!(calls(&server, "/api/chat.update").await.len(), 1);

    // Another approval expires: PagerDuty gets a trigger for that decision.
    let app = {
        app.stop().await;
        spawn_with(backend, Mode::Approve, &webhook, &fake, |c| {
            configure(c, &server);
            c.actions.approval_ttl_secs = 600;
        })
        .await
    };
    rewatching(&app).await;
    let waiting = awaiting_approval(&app).await;
    let decision = waiting["decision_id"].as_i64().unwrap();
    app.clock.advance(chrono::Duration::seconds(601));
    wait_for_action(&app, "expired", |a| a["state"] == "expired").await;
    let trigger = wait_call(&server, "/v2/enqueue", |b| b["event_action"] == "trigger").await;
    assert_eq!(trigger["routing_key"], ROUTING_KEY);
    assert_eq!(
        trigger["dedup_key"],
        format!("rollwarden:default/prod/Deployment/checkout:{decision}")
    );
    assert_eq!(trigger["payload"]["severity"], "critical");
    assert_eq!(trigger["payload"]["class"], "approval-expired");
    assert_eq!(trigger["payload"]["source"], "rollwarden");
    assert_eq!(
        trigger["payload"]["custom_details"]["decision_id"],
        decision
    );
    assert_eq!(
        trigger["links"][0]["href"],
        format!("https://rollwarden.example.com/decisions/{decision}")
    );
    // A press now: the window has passed, nothing changes.
    let late = press(
        &app,
        &server,
        (SIGNING_SECRET, app.clock.now().timestamp()),
        ALICE,
        "rollwarden_approve",
        decision,
    );
    assert_eq!(late.await, StatusCode::OK);
    wait_answer(&server, ALICE, "Nothing was changed").await;
    assert!(real_patches(&fake).is_empty());
}

/// Slack's 429 with `Retry-After`: the message waits that long, then goes out once.
async fn slack_rate_limits_are_honoured(backend: Backend) {
    let (fake, _controller) = cluster().await;
    let webhook = slack().await;
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/chat.postMessage"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "30"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/chat.postMessage"))
        .respond_with(PostMessage(AtomicU64::new(1)))
        .mount(&server)
        .await;
    let app = spawn_with(backend, Mode::Approve, &webhook, &fake, |c| {
        configure(c, &server);
        c.notify.pagerduty.routing_key = Secret::default();
    })
    .await;
    fake.wait_for_watches(2).await;
    let waiting = awaiting_approval(&app).await;
    let decision = waiting["decision_id"].as_i64().unwrap();
    let retrying = || async {
        let (_, d) = app.get_json(&format!("/api/v1/decisions/{decision}")).await;
        d["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["channel"] == "slack_app")
            .cloned()
            .unwrap_or(Value::Null)
    };
    let mut n = Value::Null;
    for _ in 0..500 {
        n = retrying().await;
        if n["attempts"] == 1 && n["status"] == "pending" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        n["last_error"].as_str().unwrap_or("").contains("429"),
        "{n}"
    );
    // Not before Retry-After (the backoff alone would be 5 s).
    app.clock.advance(chrono::Duration::seconds(10));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(calls(&server, "/api/chat.postMessage").await.len(), 1);
    app.clock.advance(chrono::Duration::seconds(21));
    let mut sent = Vec::new();
    for _ in 0..500 {
        sent = calls(&server, "/api/chat.postMessage").await;
        if sent.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(sent.len(), 2, "one refused, one delivered");
}

/// A verified rollback sends the runbook's stakeholder email through SMTP, to the
/// environment's recipients, from the team's own template where they wrote one.
async fn a_verified_rollback_emails_the_stakeholders(backend: Backend) {
    let (fake, _controller) = cluster().await;
    let webhook = slack().await;
    let smtp = SmtpStandIn::start().await;
    let templates = tempfile::tempdir().unwrap();
    std::fs::create_dir(templates.path().join("email")).unwrap();
    std::fs::write(
        templates.path().join("email/resolved.txt"),
        "Subject: [RESOLVED] {{ name }} in {{ region }} ({{ environment }})\n\n\
         Rolled back {{ namespace }}/{{ name }} to revision {{ rollback_to.revision }}.\n\
         {% if support %}Questions: {{ support }}{% endif %}\n",
    )
    .unwrap();
    let app = spawn_with(backend, Mode::Auto, &webhook, &fake, |c| {
        let e = &mut c.notify.email;
        e.smtp_host = "127.0.0.1".into();
        e.smtp_port = smtp.addr.port();
        e.tls = SmtpTls::None;
        e.from = "rollwarden <rollwarden@example.com>".into();
        e.recipients.insert(
            "drill".into(),
            vec![
                "status@example.com".into(),
                "Exec Team <execs@example.com>".into(),
            ],
        );
        e.default_recipients = vec!["nobody@example.com".into()];
        e.support_contact = "support@meshos.io".into();
        c.notify.templates_dir = templates.path().display().to_string();
    })
    .await;
    fake.wait_for_watches(2).await;
    app.post_alertmanager(error_rate("firing")).await;
    wait_for_action(&app, "verifying", |a| a["state"] == "verifying").await;
    // Not while the rollback is only executed: service is not restored yet.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(smtp.mails().is_empty());
    assert_eq!(
        app.post_alertmanager(error_rate("resolved")).await.status(),
        200
    );
    wait_for_action(&app, "verified", |a| a["state"] == "verified").await;
    let mails = smtp.wait_for(1).await;
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert_eq!(mail.from, "rollwarden@example.com");
    assert_eq!(mail.to, ["status@example.com", "execs@example.com"]);
    assert_eq!(
        mail.header("Subject").as_deref(),
        Some("[RESOLVED] checkout in eu-west-1 (drill)")
    );
    let body = mail.body();
    assert!(
        body.contains("Rolled back prod/checkout to revision 2."),
        "{body}"
    );
    assert!(body.contains("Questions: support@meshos.io"), "{body}");
    // Its delivery is on the decision, as every notification's.
    let decision =
        wait_for_action(&app, "verified", |a| a["state"] == "verified").await["decision_id"]
            .as_i64()
            .unwrap();
    // The server has the message before the outbox records its answer: wait (10 s at
    // most) for the delivery to be recorded, whatever it says.
    let mut email = Value::Null;
    for _ in 0..500 {
        let (_, d) = app.get_json(&format!("/api/v1/decisions/{decision}")).await;
        email = d["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["channel"] == "email")
            .cloned()
            .unwrap();
        if email["status"] != "pending" && email["status"] != "sending" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(email["status"], "delivered", "{email}");
    assert!(
        email["response"].as_str().unwrap().starts_with("250"),
        "{email}"
    );
}

/// The reject of the console or the API reaches Slack as a press there does: the
/// request's message loses its buttons and names who rejected it, the thread and the
/// other channels hear it with their comment, once; nothing pages.
async fn a_rejection_in_the_api_updates_the_slack_message_once(backend: Backend) {
    let (fake, _controller) = cluster().await;
    let webhook = slack().await;
    let server = stand_in().await;
    let app = spawn_with(backend, Mode::Approve, &webhook, &fake, |c| {
        configure(c, &server)
    })
    .await;
    fake.wait_for_watches(2).await;
    let waiting = awaiting_approval(&app).await;
    let decision = waiting["decision_id"].as_i64().unwrap();
    settled(&app, decision).await;
    let top_ts = "1767225500.000001";

    let reject = || {
        app.http
            .post(app.url(&format!("/api/v1/decisions/{decision}/reject")))
            .bearer_auth(OPERATOR_TOKEN)
            .json(&json!({"comment": "a load test <!channel>, not a regression"}))
            .send()
    };
    assert_eq!(reject().await.unwrap().status(), StatusCode::OK);
    let update = wait_call(&server, "/api/chat.update", |b| {
        b.to_string().contains("rejected")
    })
    .await;
    assert_eq!(
        (update["channel"].as_str(), update["ts"].as_str()),
        (Some("C0123CHAN"), Some(top_ts))
    );
    assert!(
        !update.to_string().contains("rollwarden_approve"),
        "{update}"
    );
    assert!(
        update["blocks"][1]["elements"][0]["text"]
            .as_str()
            .unwrap()
            .contains("*rejected* at 2026-08-22 14:03:00 UTC · rejected by oncall"),
        "{update}"
    );
    let reply = wait_call(&server, "/api/chat.postMessage", |b| {
        b["thread_ts"] == top_ts
    })
    .await;
    let text = reply["blocks"][0]["text"]["text"].as_str().unwrap();
    assert!(
        text.contains(
            ": rejected\nRejected by oncall: nothing will be done.\n\
             Comment: a load test &lt;!channel&gt;, not a regression\n"
        ),
        "{text}"
    );
    // The incoming webhook hears it too.
    settled(&app, decision).await;
    assert!(
        slack_texts(&webhook)
            .await
            .iter()
            .any(|t| t.contains("Rejected by oncall: nothing will be done.")),
        "{:?}",
        slack_texts(&webhook).await
    );

    // Once: a second rejection finds nothing awaiting and sends nothing.
    assert_eq!(reject().await.unwrap().status(), StatusCode::CONFLICT);
    let all = settled(&app, decision).await;
    let results: Vec<&str> = all
        .iter()
        .filter(|n| n["event"] == "result")
        .map(|n| n["channel"].as_str().unwrap())
        .collect();
    assert_eq!(results, ["slack", "slack_app"], "{all:?}");
    assert_eq!(calls(&server, "/api/chat.update").await.len(), 1);
    assert!(calls(&server, "/v2/enqueue").await.is_empty());
    assert!(real_patches(&fake).is_empty());
}

/// A press or an API call after the approval window, before any worker's sweep: the
/// gate expires the action and announces it exactly as the sweep does (PagerDuty's
/// `approval-expired` trigger, Slack's message without its buttons), once.
async fn an_approval_expired_at_the_gate_is_announced_as_the_sweep_does(backend: Backend) {
    let (fake, _controller) = cluster().await;
    let webhook = slack().await;
    let server = stand_in().await;
    let life = |workers: bool| {
        let (webhook, server) = (&webhook, &server);
        move |c: &mut Config| {
            crate::actions::configure(c, Mode::Approve, webhook);
            configure(c, server);
            c.actions.approval_ttl_secs = 600;
            c.actions.enabled = workers;
        }
    };
    let app = TestApp::spawn_on(
        crate::support::TestStore::new(backend).await,
        life(true),
        Some(fake.client()),
    )
    .await;
    fake.wait_for_watches(2).await;
    let waiting = awaiting_approval(&app).await;
    let (decision, action) = (
        waiting["decision_id"].as_i64().unwrap(),
        waiting["id"].as_i64().unwrap(),
    );
    settled(&app, decision).await;

    // Without workers (so no sweep), the window passes and an operator approves.
    let db = app.stop().await.reopened().await;
    let app = TestApp::spawn_on(db, life(false), Some(fake.client())).await;
    app.clock.advance(chrono::Duration::seconds(601));
    let late = app
        .http
        .post(app.url(&format!("/api/v1/decisions/{decision}/approve")))
        .bearer_auth(OPERATOR_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(late.status(), StatusCode::CONFLICT);
    let body: Value = late.json().await.unwrap();
    assert_eq!(body["error"]["code"], "approval_expired");
    assert_eq!(body["error"]["details"]["expired_actions"], json!([action]));
    let trail = app
        .db
        .store
        .audit_trail(&[format!("action:{action}")])
        .await
        .unwrap();
    let expired: Vec<_> = trail
        .iter()
        .filter(|e| e.kind == "action.expired")
        .collect();
    assert_eq!(expired.len(), 1, "{trail:?}");
    assert_eq!(expired[0].actor, "rollwarden", "the gate, not a sweep");
    let news: Vec<String> = notifications(&app, decision)
        .await
        .iter()
        .filter(|n| n["event"] == "result" && n["status"] == "pending")
        .map(|n| n["channel"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(news, ["slack", "slack_app", "pagerduty"]);

    // The workers of the next life deliver it: PagerDuty is paged, Slack updated.
    let db = app.stop().await.reopened().await;
    let app = TestApp::spawn_on(db, life(true), Some(fake.client())).await;
    let trigger = wait_call(&server, "/v2/enqueue", |b| b["event_action"] == "trigger").await;
    assert_eq!(trigger["routing_key"], ROUTING_KEY);
    assert_eq!(trigger["payload"]["class"], "approval-expired");
    assert_eq!(
        trigger["dedup_key"],
        format!("rollwarden:default/prod/Deployment/checkout:{decision}")
    );
    assert_eq!(
        trigger["payload"]["custom_details"]["detail"],
        "Nobody approved it in time; nothing was done."
    );
    let update = wait_call(&server, "/api/chat.update", |b| {
        b.to_string().contains("*expired*")
    })
    .await;
    assert_eq!(update["ts"], "1767225500.000001");
    assert!(
        !update.to_string().contains("rollwarden_approve"),
        "{update}"
    );
    settled(&app, decision).await;
    assert_eq!(calls(&server, "/v2/enqueue").await.len(), 1);
    assert_eq!(calls(&server, "/api/chat.update").await.len(), 1);
    assert!(real_patches(&fake).is_empty());
}

/// A Slack that never answers holds the rollback back no longer than the bound on the
/// announcement: the undo is sent and recorded while the announcement's attempt is
/// still in flight, and the announcement is retried after its timeout.
async fn a_hanging_slack_does_not_hold_back_the_rollback(backend: Backend) {
    let (fake, _controller) = cluster().await;
    let webhook = slack().await;
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/chat.postMessage"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3600)))
        .mount(&server)
        .await;
    let app = spawn_with(backend, Mode::Auto, &webhook, &fake, |c| {
        configure(c, &server);
        c.notify.pagerduty.routing_key = Secret::default();
        // Well past the 2 s bound, well inside the test's waits.
        c.actions.http_timeout_secs = 6;
    })
    .await;
    fake.wait_for_watches(2).await;
    app.post_alertmanager(error_rate("firing")).await;
    let executed = wait_for_action(&app, "executed", |a| a["state"] == "verifying").await;
    let decision = executed["decision_id"].as_i64().unwrap();
    assert_eq!(real_patches(&fake).len(), 1);
    let announcement = |n: &Value| n["channel"] == "slack_app" && n["event"] == "announce";
    let hanging = wait_notification(&app, decision, announcement).await;
    assert_eq!(hanging["status"], "sending", "still in flight: {hanging}");
    assert_eq!(hanging["attempts"], 1);
    // The channel that answers was told first.
    assert!(
        slack_texts(&webhook)
            .await
            .iter()
            .any(|t| t.starts_with(":rewind: Rolling back")),
        "{:?}",
        slack_texts(&webhook).await
    );

    // Its timeout: the attempt ends, to be retried after the backoff; then it is.
    let failed = wait_notification(&app, decision, |n| {
        announcement(n) && n["status"] == "pending" && n["attempts"] == 1
    })
    .await;
    assert!(
        failed["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("chat.postMessage")),
        "{failed}"
    );
    app.clock.advance(chrono::Duration::seconds(6));
    wait_notification(&app, decision, |n| announcement(n) && n["attempts"] == 2).await;
    assert_eq!(real_patches(&fake).len(), 1);
}

/// Argo CD's Application API, as much of it as `argocd_rollback` uses (PROTOCOLS.md
/// I): the Application, with auto-sync on and its history; a merge patch of it; a
/// rollback to a history entry, refused while auto-sync is on, that syncs at once.
struct ArgoCdApplication(std::sync::Mutex<Value>);

impl Respond for ArgoCdApplication {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut app = self.0.lock().unwrap();
        let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        let refuse = |code: u32, message: &str| {
            ResponseTemplate::new(400)
                .set_body_json(json!({"error": message, "code": code, "message": message}))
        };
        match (request.method.as_str(), request.url.path()) {
            ("PATCH", "/api/v1/applications/checkout") => {
                let Some(patch) = body["patch"]
                    .as_str()
                    .and_then(|p| serde_json::from_str::<Value>(p).ok())
                else {
                    return refuse(3, "patch is not a JSON document in a string");
                };
                json_patch::merge(&mut app, &patch);
            }
            ("POST", "/api/v1/applications/checkout/rollback") => {
                if app["spec"]["syncPolicy"]["automated"].is_object() {
                    return refuse(9, "rollback cannot be initiated when auto-sync is enabled");
                }
                let history = app["status"]["history"].as_array().cloned().unwrap();
                let Some(entry) = history.iter().find(|e| e["id"] == body["id"]) else {
                    return refuse(3, "no such deployment id");
                };
                let revision = entry["revision"].clone();
                app["status"]["operationState"] =
                    json!({"phase": "Succeeded", "operation": {"sync": {"revision": revision}}});
                app["status"]["sync"]["revision"] = revision;
            }
            ("GET", "/api/v1/applications/checkout") => {}
            _ => return ResponseTemplate::new(404),
        }
        ResponseTemplate::new(200).set_body_json(app.clone())
    }
}

/// An automatic Argo CD rollback leaves auto-sync off: the result people read says
/// so, on every channel, not only the action's record.
async fn an_argo_cd_rollback_tells_people_to_turn_auto_sync_back_on(backend: Backend) {
    let (fake, _controller) = cluster().await;
    let webhook = slack().await;
    let server = stand_in().await;
    let argocd = MockServer::start().await;
    let application = json!({
        "metadata": {"name": "checkout", "namespace": "argocd"},
        "spec": {"project": "default", "syncPolicy": {"automated": {"prune": true, "selfHeal": true}}},
        "status": {
            "sync": {"status": "Synced", "revision": "cccc3333"},
            "history": [
                {"id": 40, "revision": "aaaa1111", "deployedAt": "2026-08-20T09:13:00Z"},
                {"id": 41, "revision": "bbbb2222", "deployedAt": "2026-08-21T10:31:00Z"},
                {"id": 42, "revision": "cccc3333", "deployedAt": "2026-08-22T13:55:30Z"}
            ]
        }
    });
    Mock::given(path_regex("^/api/v1/applications/"))
        .respond_with(ArgoCdApplication(std::sync::Mutex::new(application)))
        .mount(&argocd)
        .await;
    let app = spawn_with(backend, Mode::Auto, &webhook, &fake, |c| {
        configure(c, &server);
        c.actions.argocd_url = argocd.uri();
        c.actions.argocd_token = Secret::new("argocd-token-for-tests");
        c.targets[0].gitops = Some("argocd".into());
        c.targets[0].argocd_app = Some("checkout".into());
    })
    .await;
    fake.wait_for_watches(2).await;
    app.post_alertmanager(error_rate("firing")).await;
    let executed = wait_for_action(&app, "rolled back through Argo CD", |a| {
        a["kind"] == "argocd_rollback" && a["state"] == "verifying"
    })
    .await;
    assert_eq!(executed["result"]["history_id"], 41);
    let note = executed["result"]["note"].as_str().unwrap();
    assert!(
        note.starts_with("auto-sync is off for this Application"),
        "{note}"
    );
    assert!(real_patches(&fake).is_empty(), "Argo CD, not kubectl");

    let decision = executed["decision_id"].as_i64().unwrap();
    settled(&app, decision).await;
    let told = format!("Note: {note}");
    let result = wait_call(&server, "/api/chat.postMessage", |b| {
        b["text"].as_str().is_some_and(|t| t.contains("verifying"))
    })
    .await;
    let text = result["blocks"][0]["text"]["text"].as_str().unwrap();
    assert!(
        text.contains("now verifying that service is restored"),
        "{text}"
    );
    assert!(text.contains(&told), "{text}");
    assert!(
        slack_texts(&webhook)
            .await
            .iter()
            .any(|t| t.contains(&told)),
        "{:?}",
        slack_texts(&webhook).await
    );
}

on_both_backends!(
    a_verified_rollback_emails_the_stakeholders,
    a_slack_button_approves_only_when_signed_fresh_and_allowed,
    a_group_member_rejects_and_an_expired_approval_pages,
    slack_rate_limits_are_honoured,
    a_rejection_in_the_api_updates_the_slack_message_once,
    an_approval_expired_at_the_gate_is_announced_as_the_sweep_does,
    a_hanging_slack_does_not_hold_back_the_rollback,
    an_argo_cd_rollback_tells_people_to_turn_auto_sync_back_on,
);
