//! The canary reads under a store full of firing alerts (issue 19 goal 3), for
//! `scripts/bench-reads`: figures, not a test.
//!
//! `read_latency BIN DATABASE_URL ALERTS CALLS` starts the rollwarden binary `BIN` (a
//! release build, engine off so that only the reads are measured) against an empty
//! database and posts `ALERTS` distinct firing alerts: 1,000 about one target (`busy`),
//! 3 about another (`quiet`), the rest spread over 500 services of the same namespace.
//! It announces a deploy of each of the two, then calls, `CALLS` times each and one at
//! a time, for both targets: Argo's analysis (`GET /api/v1/analysis/prod/{name}`),
//! Flagger's `confirm-promotion` gate, and `GET /api/v1/decisions/{id}` of the decision
//! the analysis answered with. It prints p50, p99 and max of each series, and how far
//! the series raised the process's peak RSS above its RSS before the series.

#[path = "support/flood.rs"]
mod flood;
#[path = "support/server.rs"]
mod server;

use anyhow::{Context, bail};
use serde_json::json;
use server::{free_port, start, stop};
use std::time::Instant;

const TOKEN: &str = "bench-admin-token-0123456789abcdef";
const PER_NOTIFICATION: usize = 500;
const SERVICES: usize = 500;
const BUSY: usize = 1000;
const QUIET: usize = 3;
const SENDERS: usize = 4;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [bin, url, alerts, calls] = args.as_slice() else {
        bail!("usage: read_latency BIN DATABASE_URL ALERTS CALLS");
    };
    let alerts: usize = alerts.parse().context("ALERTS")?;
    let calls: usize = calls.parse().context("CALLS")?;
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
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let mut server = start(bin, &config, &http, &base).await?;
    let result = run(&http, &base, server.id(), alerts, calls).await;
    stop(&mut server)?;
    result
}

async fn run(
    http: &reqwest::Client,
    base: &str,
    pid: u32,
    alerts: usize,
    calls: usize,
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
        notification,
    )
    .await?;
    for name in ["busy", "quiet"] {
        let status = http
            .post(format!("{base}/api/v1/deploys"))
            .bearer_auth(TOKEN)
            .json(&json!({
                "namespace": "prod", "name": name,
                "revision": "v2", "status": "succeeded",
                "started_at": "2026-08-22T13:58:00Z",
            }))
            .send()
            .await?
            .status();
        if !status.is_success() {
            bail!("deploy of {name}: {status}");
        }
    }
    println!(
        "alerts {alerts} posted in {:.1}s; {calls} calls per series, one at a time",
        started.elapsed().as_secs_f64()
    );
    for name in ["quiet", "busy"] {
        let analysis = format!("{base}/api/v1/analysis/prod/{name}");
        let body = ok(http.get(&analysis).bearer_auth(TOKEN)).await?;
        let decision = body["decision_id"].as_i64().context("decision_id")?;
        let series = measure(pid, calls, || async {
            ok(http.get(&analysis).bearer_auth(TOKEN)).await.map(|_| ())
        })
        .await?;
        report("analysis", name, &series);
        let gate = format!("{base}/webhooks/flagger/confirm-promotion");
        let payload = json!({"name": name, "namespace": "prod", "phase": "Promoting",
                             "checksum": "64c6d9c894", "metadata": {}});
        let series = measure(pid, calls, || async {
            // 200 passes, 403 refuses: both are answers.
            let status = http
                .post(&gate)
                .bearer_auth(TOKEN)
                .json(&payload)
                .send()
                .await?
                .status();
            if !(status.is_success() || status.as_u16() == 403) {
                bail!("gate: {status}");
            }
            Ok(())
        })
        .await?;
        report("flagger gate", name, &series);
        let one = format!("{base}/api/v1/decisions/{decision}");
        let series = measure(pid, calls, || async {
            ok(http.get(&one).bearer_auth(TOKEN)).await.map(|_| ())
        })
        .await?;
        report("decision", name, &series);
    }
    Ok(())
}

async fn ok(request: reqwest::RequestBuilder) -> anyhow::Result<serde_json::Value> {
    let response = request.send().await?;
    let status = response.status();
    if !status.is_success() {
        bail!("{status}: {}", response.text().await.unwrap_or_default());
    }
    Ok(response.json().await?)
}

/// A series' latencies, sorted, and how far it raised the peak RSS (MB).
struct Series {
    millis: Vec<f64>,
    rss_growth_mb: f64,
}

async fn measure<F, Fut>(pid: u32, calls: usize, mut call: F) -> anyhow::Result<Series>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    // One call first, not counted: connections, caches, the first decision.
    call().await?;
    // Resets VmHWM to the current RSS (proc(5), clear_refs).
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")?;
    let before = rss_kb(pid, "VmRSS:")?;
    let mut millis = Vec::with_capacity(calls);
    for _ in 0..calls {
        let at = Instant::now();
        call().await?;
        millis.push(at.elapsed().as_secs_f64() * 1000.0);
    }
    let peak = rss_kb(pid, "VmHWM:")?;
    millis.sort_by(f64::total_cmp);
    Ok(Series {
        millis,
        rss_growth_mb: peak.saturating_sub(before) as f64 / 1024.0,
    })
}

fn report(what: &str, target: &str, s: &Series) {
    let at = |q: f64| s.millis[((s.millis.len() - 1) as f64 * q).round() as usize];
    println!(
        "{what:<12} {target:<5} ({:>4} alerts) | p50 {:>8.2} ms | p99 {:>8.2} ms | max {:>8.2} ms \
         | peak RSS +{:.1} MB",
        if target == "busy" { BUSY } else { QUIET },
        at(0.5),
        at(0.99),
        at(1.0),
        s.rss_growth_mb
    );
}

fn rss_kb(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    Ok(status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .context("no such field in /proc/PID/status")?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?)
}

/// The service alert `i` is about: the first `BUSY` are `busy`'s, the next `QUIET`
/// `quiet`'s, the rest spread over `SERVICES` others.
fn service(i: usize) -> String {
    if i < BUSY {
        "busy".into()
    } else if i < BUSY + QUIET {
        "quiet".into()
    } else {
        format!("svc-{}", i % SERVICES)
    }
}

fn notification(n: usize, alerts: std::ops::Range<usize>) -> String {
    let alerts: Vec<_> = alerts
        .map(|i| {
            json!({
                "status": "firing",
                "labels": {"alertname": "HighErrorRate", "namespace": "prod",
                           "service": service(i), "pod": format!("pod-{i:08}"),
                           "severity": "critical", "team": "payments"},
                "annotations": {
                    "summary": "too many 5xx responses",
                    "value": "0.124", "baseline": "0.01"},
                "startsAt": "2026-08-22T14:01:47.318Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus-k8s-0:9090/graph",
                "fingerprint": format!("{i:016x}"),
            })
        })
        .collect();
    flood::group(n, alerts)
}
