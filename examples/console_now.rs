//! The console's Now page under a big fleet (issue 13's figure), for
//! `scripts/bench-console`: figures, not a test.
//!
//! `console_now DATABASE_URL TARGETS DECISIONS CALLS` fills an empty store with
//! `TARGETS` targets and `DECISIONS` decisions spread over them (each a copy of a real
//! rollback decision, tests/fixtures/decision-rollback.json, retargeted). A target's
//! standing (latest) decision is `rollback` for one in four, `hold`, `monitor` and
//! `ok` for the others in turn, and every rollback has an action awaiting approval:
//! the page lists three in four targets. Then it renders `GET /` through the real
//! router and state, in process, `CALLS` times one after another, and prints the
//! server-side p50, p99 and max, and the page's size.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use chrono::Utc;
use serde_json::{Value, json};
use tower::ServiceExt;

use rollwarden::app::App;
use rollwarden::clock::SystemClock;
use rollwarden::config::{Config, Secret, TokenConfig};
use rollwarden::domain::Role;
use rollwarden::store::{self, NewAction, NewDecision};

const TOKEN: &str = "bench-admin-token-0123456789abcdef";
const DECISION: &str = include_str!("../tests/fixtures/decision-rollback.json");

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, targets, decisions, calls] = args.as_slice() else {
        bail!("usage: console_now DATABASE_URL TARGETS DECISIONS CALLS");
    };
    let targets: usize = targets.parse().context("TARGETS")?;
    let decisions: usize = decisions.parse().context("DECISIONS")?;
    let calls: usize = calls.parse().context("CALLS")?;
    if targets == 0 || decisions < targets {
        bail!("DECISIONS must be at least TARGETS, and TARGETS at least 1");
    }
    let dir = tempfile::tempdir()?;
    let url = url.replace("{dir}", &dir.path().display().to_string());
    let store = store::connect(&url, 16).await?;
    store.migrate().await?;

    let started = Instant::now();
    let template: Value = serde_json::from_str(DECISION)?;
    let now = Utc::now();
    let mut standing = 0;
    for n in 0..decisions {
        let target = n % targets;
        let last = n + targets >= decisions;
        let verdict = if last {
            ["rollback", "hold", "monitor", "ok"][target % 4]
        } else {
            ["monitor", "ok"][n % 2]
        };
        let key = format!("default/prod/Deployment/svc-{target:04}");
        let mut decision = template.clone();
        decision["target"]["name"] = json!(format!("svc-{target:04}"));
        decision["verdict"] = json!(verdict);
        if verdict == "ok" {
            decision["fired"] = json!([]);
            decision["pending"] = json!([]);
        }
        let decided_at = now - chrono::Duration::seconds((decisions - n) as i64);
        let (stored, _) = store
            .record_decision(&NewDecision {
                target_key: key.clone(),
                verdict: verdict.into(),
                reason: decision["reason"].as_str().unwrap_or("").into(),
                inputs_hash: format!("bench-{n}"),
                policy_version: "bench".into(),
                suspect_deploy_id: None,
                rollback_to_id: None,
                decision,
                decided_at,
            })
            .await?;
        if last && verdict != "ok" {
            standing += 1;
        }
        if last && verdict == "rollback" {
            store
                .enqueue_action(
                    &NewAction {
                        decision_id: stored.id,
                        target_key: key.clone(),
                        kind: "rollout_undo".into(),
                        mode: "approve".into(),
                        idempotency_key: format!("bench-{target}"),
                        state: "awaiting_approval".into(),
                        params: json!({}),
                        expires_at: None,
                        notify: Vec::new(),
                    },
                    decided_at,
                )
                .await?;
        }
    }
    println!(
        "seeded {targets} targets, {decisions} decisions ({standing} standing not ok) in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let mut config = Config::load_from(None, Vec::new())?;
    config.server.listen = "127.0.0.1:0".parse()?;
    config.engine.enabled = false;
    config.auth.tokens = vec![TokenConfig {
        name: "bench".into(),
        role: Role::Admin,
        token: Secret::new(TOKEN),
        token_file: None,
        token_env: None,
    }];
    let app = App::build_with(config, store.clone(), Arc::new(SystemClock)).await?;
    let router = rollwarden::http::router(app.state().clone());

    let mut times = Vec::with_capacity(calls);
    let mut size = 0;
    let mut rows = 0;
    for call in 0..calls + 5 {
        let request = Request::get("/")
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .body(Body::empty())?;
        let started = Instant::now();
        let response = router.clone().oneshot(request).await?;
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await?;
        let took = started.elapsed();
        if status != StatusCode::OK {
            bail!(
                "GET / answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        // The first few warm the caches and the template; they are not counted.
        if call >= 5 {
            times.push(took);
        }
        size = body.len();
        rows = String::from_utf8_lossy(&body)
            .matches("<tr data-target=")
            .count();
    }
    if rows != standing {
        bail!("the page lists {rows} targets, {standing} expected");
    }
    times.sort_unstable();
    let at = |q: f64| times[((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "GET / ({} rows, {:.0} KiB), {} calls: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        rows,
        size as f64 / 1024.0,
        times.len(),
        ms(at(0.50)),
        ms(at(0.99)),
        ms(*times.last().unwrap_or(&Duration::ZERO)),
    );
    store.close().await;
    Ok(())
}
