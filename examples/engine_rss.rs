//! The engine's memory and idle CPU under a flood of distinct firing alerts (issue 14
//! item 7), for `scripts/bench-engine`: figures, not a test.
//!
//! `engine_rss BIN DATABASE_URL ALERTS` starts the rollwarden binary `BIN` (a release
//! build) with the engine on against an empty database, posts `ALERTS` distinct firing
//! alerts over 50 services (notifications of 500 new alerts, each a new group, as
//! `scripts/bench` does), waits three ticks, and prints its peak RSS (`VmHWM`) and the CPU
//! it then uses while nothing arrives; then restarts it on the same database (the engine
//! reloads every alert) and prints the same two figures again.

#[path = "support/flood.rs"]
mod flood;
#[path = "support/server.rs"]
mod server;

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;
use server::{free_port, start, stop};

const TOKEN: &str = "bench-webhook-token-0123456789";
const PER_NOTIFICATION: usize = 500;
const SERVICES: usize = 50;
const SENDERS: usize = 4;
/// The engine's tick in this run; the figures are taken after three.
const TICK_SECS: u64 = 5;
/// How long the idle CPU is measured.
const IDLE_SECS: u64 = 20;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [bin, url, alerts] = args.as_slice() else {
        bail!("usage: engine_rss BIN DATABASE_URL ALERTS");
    };
    let alerts: usize = alerts.parse().context("ALERTS")?;
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let config = dir.path().join("rollwarden.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[database]\nurl = \"{url}\"\n\
             max_connections = 16\n[engine]\nenabled = true\ntick_secs = {TICK_SECS}\n\
             [log]\nlevel = \"warn\"\n[limits]\ningest_per_second = 0\n\
             [[auth.tokens]]\nname = \"bench\"\nrole = \"webhook\"\ntoken = \"{TOKEN}\"\n"
        ),
    )?;
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();

    let mut server = start(bin, &config, &http, &base).await?;
    let started = Instant::now();
    // ALERTS distinct firing alerts, PER_NOTIFICATION to a notification, each a new
    // group, from SENDERS concurrent senders.
    let flood = flood::post_alerts(
        &http,
        &base,
        TOKEN,
        SENDERS,
        PER_NOTIFICATION,
        alerts,
        notification,
    );
    if let Err(err) = flood.await {
        stop(&mut server)?;
        return Err(err);
    }
    let posted = started.elapsed();
    tokio::time::sleep(Duration::from_secs(3 * TICK_SECS)).await;
    let flood_peak = peak_rss_mb(server.id())?;
    let flood_idle = idle_cpu(server.id()).await?;
    stop(&mut server)?;

    let mut server = start(bin, &config, &http, &base).await?;
    tokio::time::sleep(Duration::from_secs(3 * TICK_SECS)).await;
    let restart_peak = peak_rss_mb(server.id())?;
    let restart_idle = idle_cpu(server.id()).await?;
    let window = metric(&http, &base, "rollwarden_engine_window_alerts").await;
    stop(&mut server)?;

    println!(
        "alerts {alerts} posted in {:.1}s | flood: peak RSS {flood_peak} MB, idle CPU {:.1} % \
         | restart: peak RSS {restart_peak} MB, idle CPU {:.1} % | window {}",
        posted.as_secs_f64(),
        flood_idle * 100.0,
        restart_idle * 100.0,
        window.map_or("-".into(), |w| w.to_string()),
    );
    Ok(())
}

fn notification(n: usize, alerts: std::ops::Range<usize>) -> String {
    let alerts: Vec<_> = alerts
        .map(|i| {
            let service = format!("svc-{}", i % SERVICES);
            json!({
                "status": "firing",
                "labels": {"alertname": "HighErrorRate", "namespace": "prod",
                           "service": service, "pod": format!("checkout-{i:08}"),
                           "severity": "critical", "team": "payments"},
                "annotations": {
                    "description": format!("Pod checkout-{i:08} in prod answers 12.4% of requests with 5xx (threshold 5%)."),
                    "runbook_url": "https://runbooks.example.com/checkout/high-error-rate",
                    "summary": "checkout is returning too many 5xx responses",
                    "value": "0.124"},
                "startsAt": "2026-08-22T14:01:47.318Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus-k8s-0:9090/graph",
                "fingerprint": format!("{i:016x}"),
            })
        })
        .collect();
    flood::group(n, alerts)
}

/// The process's peak resident set (`VmHWM`), in MB.
fn peak_rss_mb(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .context("no VmHWM")?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?;
    Ok(kb / 1024)
}

/// The share of one core the process uses over `IDLE_SECS` with nothing arriving.
async fn idle_cpu(pid: u32) -> anyhow::Result<f64> {
    let ticks = || -> anyhow::Result<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        // Fields after the command (which may hold spaces): utime and stime are the
        // 12th and 13th after its closing parenthesis.
        let rest = &stat[stat.rfind(')').context("stat")? + 2..];
        let fields: Vec<&str> = rest.split(' ').collect();
        Ok(fields[11].parse::<u64>()? + fields[12].parse::<u64>()?)
    };
    let hz = 100.0; // USER_HZ on Linux
    let before = ticks()?;
    tokio::time::sleep(Duration::from_secs(IDLE_SECS)).await;
    let used = (ticks()? - before) as f64 / hz;
    Ok(used / IDLE_SECS as f64)
}

/// A sample of `/metrics`, when the binary exports it.
async fn metric(http: &reqwest::Client, base: &str, name: &str) -> Option<f64> {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let mut found = None;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix(name).and_then(|r| r.strip_prefix(' ')) {
            found = v.parse().ok();
        }
    }
    found
}
