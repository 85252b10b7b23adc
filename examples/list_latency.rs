//! The lists under a full store (issue 19 goal 5), for `scripts/bench-lists`: figures,
//! not a test.
//!
//! `list_latency BIN DATABASE_URL ALERTS DECISIONS CALLS` migrates an empty database
//! with the rollwarden binary `BIN`, writes `DECISIONS` decisions over 500 targets
//! straight into it (each a copy of a real rollback decision,
//! tests/fixtures/decision-rollback.json, retargeted; about two in five `ok`, one in
//! 53 a `rollback` with an action, the standing ones a mix), then starts `BIN` (a release
//! build, engine off so that only the reads are measured), posts `ALERTS` distinct
//! firing alerts through the Alertmanager webhook (over the same 500 services, three
//! alert names, one start a second) and 10 deploys of each service through the CI
//! callback. Then it calls each list, `CALLS` times one at a time, on its first page and
//! on a deep page (the fifth, reached by following `next`), with typical filters: the
//! API's alerts, decisions, actions, deploys and targets, and the console's Now,
//! decisions and alerts pages (signed in with a bearer token, as the console accepts).
//! It prints p50, p99 and max of each series, with the page's rows and size.

#[path = "support/flood.rs"]
mod flood;
#[path = "support/server.rs"]
mod server;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use server::{free_port, start, stop};

use rollwarden::domain::DecisionBrief;

const TOKEN: &str = "bench-admin-token-0123456789abcdef";
const DECISION: &str = include_str!("../tests/fixtures/decision-rollback.json");
const PER_NOTIFICATION: usize = 500;
const SERVICES: usize = 500;
const DEPLOYS_PER_SERVICE: usize = 10;
const SENDERS: usize = 4;
/// The page followed to for a deep page: `next` four times.
const DEEP_PAGE: usize = 5;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [bin, url, alerts, decisions, calls] = args.as_slice() else {
        bail!("usage: list_latency BIN DATABASE_URL ALERTS DECISIONS CALLS");
    };
    let alerts: usize = alerts.parse().context("ALERTS")?;
    let decisions: usize = decisions.parse().context("DECISIONS")?;
    let calls: usize = calls.parse().context("CALLS")?;
    if decisions < SERVICES {
        bail!("DECISIONS must be at least {SERVICES}");
    }
    let dir = tempfile::tempdir()?;
    let url = url.replace("{dir}", &dir.path().display().to_string());
    let port = free_port()?;
    let config = dir.path().join("rollwarden.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[database]\nurl = \"{url}\"\n\
             max_connections = 16\n[engine]\nenabled = false\n\
             [log]\nlevel = \"warn\"\n[limits]\ningest_per_second = 0\n\
             [[auth.tokens]]\nname = \"bench\"\nrole = \"admin\"\ntoken = \"{TOKEN}\"\n"
        ),
    )?;
    let bin = PathBuf::from(bin);
    let status = Command::new(&bin)
        .arg("--config")
        .arg(&config)
        .arg("migrate")
        .stdout(Stdio::null())
        .status()
        .context("rollwarden migrate")?;
    if !status.success() {
        bail!("rollwarden migrate: {status}");
    }
    let now = Utc::now();
    let started = Instant::now();
    seed_decisions(&url, decisions, now).await?;
    println!(
        "decisions {decisions} and their actions written in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let mut server = start(&bin, &config, &http, &base).await?;
    let result = run(&http, &base, &url, alerts, calls, now).await;
    stop(&mut server)?;
    result
}

/// The target key and name of service `i`.
fn service(i: usize) -> String {
    format!("svc-{:04}", i % SERVICES)
}

/// Writes `n` decisions in one statement, the `i`th decided `n - i` seconds before
/// `now`, about service `i % 500`. The last decision of each target stands: `rollback`,
/// `hold`, `monitor` or `ok` in turn; before it, one in 53 is a `rollback`, one in
/// seven a `hold`, the rest `monitor` and `ok` by turns of 500. Every `rollback` gets
/// an action (`rollout_undo`), one in seven of them awaiting approval.
async fn seed_decisions(url: &str, n: usize, now: DateTime<Utc>) -> anyhow::Result<()> {
    let rollback: Value = serde_json::from_str(DECISION)?;
    let mut ok = rollback.clone();
    ok["verdict"] = json!("ok");
    ok["fired"] = json!([]);
    ok["pending"] = json!([]);
    ok["reason"] = json!("No rule fired.");
    let reason = rollback["reason"].as_str().unwrap_or_default().to_string();
    let brief = serde_json::to_string(&DecisionBrief::of(&rollback))?;
    let ok_brief = serde_json::to_string(&DecisionBrief::of(&ok))?;
    let verdict = format!(
        "CASE WHEN n >= {n} - {SERVICES} THEN
                  (CASE (n % {SERVICES}) % 4 WHEN 0 THEN 'rollback' WHEN 1 THEN 'hold'
                   WHEN 2 THEN 'monitor' ELSE 'ok' END)
              WHEN n % 53 = 0 THEN 'rollback' WHEN n % 7 = 0 THEN 'hold'
              WHEN (n / {SERVICES}) % 2 = 0 THEN 'monitor' ELSE 'ok' END"
    );
    let sqlite_target = format!("printf('default/prod/Deployment/svc-%04d', n % {SERVICES})");
    let actions = "INSERT INTO actions (decision_id, target, kind, mode, idempotency_key, state,
             params, created_at, updated_at)
         SELECT id, target, 'rollout_undo', 'approve', 'bench-' || id,
                CASE WHEN id % 7 = 0 THEN 'awaiting_approval' ELSE 'verified' END,
                '{}', decided_at, decided_at
         FROM decisions WHERE verdict = 'rollback' ORDER BY id";
    let t0 = now - chrono::Duration::seconds(n as i64);
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await?;
        let sql = format!(
            "INSERT INTO decisions (target, verdict, reason, inputs_hash, policy_version,
                 evidence, decided_at, brief)
             WITH RECURSIVE s(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM s WHERE n + 1 < {n}),
             v AS (SELECT n, {sqlite_target} AS target, {verdict} AS verdict FROM s)
             SELECT target, verdict, CASE verdict WHEN 'ok' THEN 'No rule fired.' ELSE $1 END,
                    'bench-' || n, 'bench',
                    CASE verdict WHEN 'ok'
                        THEN json_set($2, '$.target.name', substr(target, 24))
                        ELSE json_set($3, '$.target.name', substr(target, 24),
                                      '$.verdict', verdict) END,
                    strftime('%Y-%m-%dT%H:%M:%S', $4, '+' || n || ' seconds') || '.000000Z',
                    CASE verdict WHEN 'ok' THEN $5 ELSE $6 END
             FROM v ORDER BY n"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&reason)
            .bind(ok.to_string())
            .bind(rollback.to_string())
            .bind(t0.format("%Y-%m-%d %H:%M:%S").to_string())
            .bind(&ok_brief)
            .bind(&brief)
            .execute(&pool)
            .await?;
        sqlx::query(actions).execute(&pool).await?;
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(url).await?;
        let target =
            format!("'default/prod/Deployment/svc-' || lpad((n % {SERVICES})::text, 4, '0')");
        let sql = format!(
            "INSERT INTO decisions (target, verdict, reason, inputs_hash, policy_version,
                 evidence, decided_at, brief)
             SELECT target, verdict, CASE verdict WHEN 'ok' THEN 'No rule fired.' ELSE $1 END,
                    'bench-' || n, 'bench',
                    CASE verdict WHEN 'ok'
                        THEN jsonb_set($2::jsonb, '{{target,name}}', to_jsonb(substr(target, 24)))
                        ELSE jsonb_set(jsonb_set($3::jsonb, '{{target,name}}',
                                                 to_jsonb(substr(target, 24))),
                                       '{{verdict}}', to_jsonb(verdict)) END,
                    $4::timestamptz + n * interval '1 second',
                    CASE verdict WHEN 'ok' THEN $5::jsonb ELSE $6::jsonb END
             FROM (SELECT n, {target} AS target, {verdict} AS verdict
                   FROM generate_series(0, {n} - 1) AS n) AS v
             ORDER BY n"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&reason)
            .bind(ok.to_string())
            .bind(rollback.to_string())
            .bind(t0)
            .bind(&ok_brief)
            .bind(&brief)
            .execute(&pool)
            .await?;
        sqlx::query(actions).execute(&pool).await?;
        pool.close().await;
    }
    Ok(())
}

/// What autovacuum does within a minute of a flood on PostgreSQL (insert-only tables
/// are vacuumed and analysed too): the planner's statistics and the visibility map of
/// a database that has been running. SQLite gathers no statistics unless told to, and
/// rollwarden does not tell it, so SQLite is measured without them.
async fn settle(url: &str) -> anyhow::Result<()> {
    if url.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(url).await?;
        sqlx::query("VACUUM (ANALYZE) alerts, decisions, actions, deploys")
            .execute(&pool)
            .await?;
        pool.close().await;
    }
    Ok(())
}

async fn run(
    http: &reqwest::Client,
    base: &str,
    url: &str,
    alerts: usize,
    calls: usize,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    // Distinct firing alerts, PER_NOTIFICATION to a notification, each a new group,
    // from SENDERS concurrent senders.
    flood::post_alerts(
        http,
        base,
        TOKEN,
        SENDERS,
        PER_NOTIFICATION,
        alerts,
        move |n, range| notification(n, range, alerts, now),
    )
    .await?;
    let flood = started.elapsed();
    post_deploys(http, base, now).await?;
    settle(url).await?;
    println!(
        "alerts {alerts} posted in {:.1}s, deploys {} in {:.1}s; {calls} calls per series, \
         one at a time, {DEEP_PAGE}th page for deep ones",
        flood.as_secs_f64(),
        SERVICES * DEPLOYS_PER_SERVICE,
        (started.elapsed() - flood).as_secs_f64()
    );
    // Every decision written straight into the database must read back as one.
    let first = ok(http
        .get(format!("{base}/api/v1/decisions?limit=1"))
        .bearer_auth(TOKEN))
    .await?
    .json::<Value>()
    .await?;
    let id = first["items"][0]["id"].as_i64().context("no decision")?;
    ok(http
        .get(format!("{base}/api/v1/decisions/{id}"))
        .bearer_auth(TOKEN))
    .await?;

    let rfc = |t: DateTime<Utc>| {
        form_urlencoded::byte_serialize(t.to_rfc3339_opts(SecondsFormat::Secs, true).as_bytes())
            .collect::<String>()
    };
    let hour_ago = rfc(now - chrono::Duration::hours(1));
    // An hour in the middle of the alerts' and the decisions' span.
    let mid_from = rfc(now - chrono::Duration::seconds(alerts as i64 / 2));
    let mid_to = rfc(now - chrono::Duration::seconds(alerts as i64 / 2 - 3600));
    let svc = "default%2Fprod%2FDeployment%2Fsvc-0042";
    let lists: Vec<(&str, String)> = vec![
        ("alerts", String::new()),
        ("alerts", "status=firing".into()),
        ("alerts", "alertname=HighLatency".into()),
        ("alerts", "alertname=PodCrashLooping".into()),
        ("alerts", "label=service%3Dsvc-0042".into()),
        ("alerts", "label=team%3Dpayments".into()),
        ("alerts", format!("since={hour_ago}")),
        ("alerts", format!("since={mid_from}&until={mid_to}")),
        ("decisions", String::new()),
        ("decisions", format!("target={svc}")),
        ("decisions", "verdict=rollback".into()),
        ("decisions", format!("since={hour_ago}")),
        ("decisions", format!("since={mid_from}&until={mid_to}")),
        ("actions", String::new()),
        ("actions", "state=awaiting_approval".into()),
        ("actions", format!("target={svc}")),
        ("deploys", String::new()),
        ("deploys", format!("target={svc}")),
        ("deploys", "name=svc-0042".into()),
        ("deploys", "namespace=prod".into()),
        ("targets", String::new()),
    ];
    println!(
        "{:<58} {:>5} {:>7} | {:>8} | {:>8} | {:>8}",
        "GET", "rows", "KiB", "p50 ms", "p99 ms", "max ms"
    );
    for (list, filter) in &lists {
        let path = format!("/api/v1/{list}");
        let first = with_query(&path, filter);
        let deep = deep_page(http, base, &path, filter).await?;
        for url in std::iter::once(first).chain(deep) {
            let series = measure(http, base, &url, calls).await?;
            series.print(&url);
        }
    }
    // The console, with the same filters and cursors as the API it reads through.
    let console: Vec<(&str, &str, String)> = vec![
        ("/", "", String::new()),
        ("/decisions", "/api/v1/decisions", String::new()),
        (
            "/decisions",
            "/api/v1/decisions",
            "verdict=rollback".to_string(),
        ),
        ("/alerts", "/api/v1/alerts", String::new()),
        (
            "/alerts",
            "/api/v1/alerts",
            "label=service%3Dsvc-0042".into(),
        ),
    ];
    for (page, api, filter) in &console {
        let first = with_query(page, filter);
        let deep = if api.is_empty() {
            None
        } else {
            deep_page(http, base, api, filter)
                .await?
                .map(|u| u.replacen(api, page, 1))
        };
        for url in std::iter::once(first).chain(deep) {
            let series = measure(http, base, &url, calls).await?;
            series.print(&url);
        }
    }
    Ok(())
}

fn with_query(path: &str, query: &str) -> String {
    if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{query}")
    }
}

/// The URL of the list's `DEEP_PAGE`th page, following `next`; `None` when it has fewer
/// pages.
async fn deep_page(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    filter: &str,
) -> anyhow::Result<Option<String>> {
    let mut url = with_query(path, filter);
    for _ in 1..DEEP_PAGE {
        let page: Value = ok(http.get(format!("{base}{url}")).bearer_auth(TOKEN))
            .await?
            .json()
            .await?;
        let Some(next) = page["next"].as_str() else {
            return Ok(None);
        };
        let next = form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>();
        url = with_query(path, &format!("{filter}{}after={next}", amp(filter)));
    }
    Ok(Some(url))
}

fn amp(filter: &str) -> &'static str {
    if filter.is_empty() { "" } else { "&" }
}

async fn ok(request: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
    let response = request.send().await?;
    let status = response.status();
    if !status.is_success() {
        bail!("{status}: {}", response.text().await.unwrap_or_default());
    }
    Ok(response)
}

/// A series' latencies, sorted, and what the page held.
struct Series {
    millis: Vec<f64>,
    /// What the `since` of the URL stands for.
    since: &'static str,
    rows: usize,
    bytes: usize,
}

impl Series {
    fn print(&self, url: &str) {
        let at = |q: f64| self.millis[((self.millis.len() - 1) as f64 * q).round() as usize];
        // Instants and cursors are noise in a table: what they stand for matters.
        let mut shown = url.replace("default%2Fprod%2FDeployment%2F", "");
        for (name, stands_for) in [
            ("since=", self.since),
            ("until=", "<mid+1h>"),
            ("after=", "<next x4>"),
        ] {
            if let Some(at) = shown.find(name) {
                let end = shown[at..].find('&').map_or(shown.len(), |e| at + e);
                shown.replace_range(at + name.len()..end, stands_for);
            }
        }
        println!(
            "{shown:<58} {:>5} {:>7.0} | {:>8.2} | {:>8.2} | {:>8.2}",
            self.rows,
            self.bytes as f64 / 1024.0,
            at(0.5),
            at(0.99),
            at(1.0),
        );
    }
}

async fn measure(
    http: &reqwest::Client,
    base: &str,
    url: &str,
    calls: usize,
) -> anyhow::Result<Series> {
    let full = format!("{base}{url}");
    let call = || async {
        let body = ok(http.get(&full).bearer_auth(TOKEN))
            .await?
            .bytes()
            .await?;
        anyhow::Ok(body)
    };
    // A few calls first, not counted: connections, caches.
    let mut body = Default::default();
    for _ in 0..3 {
        body = call().await?;
    }
    let rows = match serde_json::from_slice::<Value>(&body) {
        Ok(page) => page["items"].as_array().map_or(0, Vec::len),
        // A console page: its table's rows.
        Err(_) => String::from_utf8_lossy(&body).matches("<tr").count(),
    };
    let mut millis = Vec::with_capacity(calls);
    for _ in 0..calls {
        let at = Instant::now();
        call().await?;
        millis.push(at.elapsed().as_secs_f64() * 1000.0);
    }
    millis.sort_by(f64::total_cmp);
    let since = if url.contains("until=") {
        "<mid>"
    } else {
        "<-1h>"
    };
    Ok(Series {
        millis,
        since,
        rows,
        bytes: body.len(),
    })
}

/// `DEPLOYS_PER_SERVICE` deploys of each service, an hour apart, through the CI
/// callback, from `SENDERS` concurrent senders.
async fn post_deploys(
    http: &reqwest::Client,
    base: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let (http, url) = (http.clone(), format!("{base}/api/v1/deploys"));
    flood::post_spread(SENDERS, SERVICES * DEPLOYS_PER_SERVICE, move |i| {
        let (svc, revision) = (i % SERVICES, i / SERVICES);
        let started = now - chrono::Duration::hours((DEPLOYS_PER_SERVICE - revision) as i64);
        http.post(&url).bearer_auth(TOKEN).json(&json!({
            "namespace": "prod", "name": service(svc),
            "revision": format!("v{revision}"), "status": "succeeded",
            "started_at": started.to_rfc3339_opts(SecondsFormat::Secs, true),
        }))
    })
    .await
}

/// Alert `i` of `total` started `total - i` seconds before `now`; one in a hundred is
/// `PodCrashLooping`, one in ten `HighLatency`, the rest `HighErrorRate`.
fn notification(
    n: usize,
    range: std::ops::Range<usize>,
    total: usize,
    now: DateTime<Utc>,
) -> String {
    let alerts: Vec<_> = range
        .map(|i| {
            let name = if i % 100 == 0 {
                "PodCrashLooping"
            } else if i % 10 == 0 {
                "HighLatency"
            } else {
                "HighErrorRate"
            };
            let starts = now - chrono::Duration::seconds((total - i) as i64);
            json!({
                "status": "firing",
                "labels": {"alertname": name, "namespace": "prod",
                           "service": service(i), "pod": format!("pod-{i:08}"),
                           "severity": "critical", "team": "payments"},
                "annotations": {
                    "summary": "too many 5xx responses",
                    "value": "0.124", "baseline": "0.01"},
                "startsAt": starts.to_rfc3339_opts(SecondsFormat::Millis, true),
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus-k8s-0:9090/graph",
                "fingerprint": format!("{i:016x}"),
            })
        })
        .collect();
    flood::group(n, alerts)
}
