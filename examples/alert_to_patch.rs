//! From the deciding notification to the rollout-undo PATCH (issue 19 goal 4), for
//! `scripts/bench`: figures, not a test.
//!
//! `alert_to_patch BIN DATABASE_URL FIXTURE TARGETS [BACKGROUND]` runs the tests' fake Kubernetes API
//! server in this process, with `TARGETS` Deployments shaped like `FIXTURE`
//! (`tests/fixtures/deployment-with-replicasets.json`: revisions 1, 2 and the bad 3),
//! each renamed `svc-N` and moved in time so that revision 3 rolled out minutes ago. It
//! starts the rollwarden binary `BIN` (a release build, engine and actions on, every
//! target in `auto` mode) against an empty database, with the fake as its cluster, and
//! waits until the watcher recorded every revision. It first posts `BACKGROUND` (0)
//! distinct firing alerts about 500 other services, so that the store and the engine's
//! window hold a fleet's worth. Then, one target at a time, it posts
//! the Alertmanager notification that makes the target's rollback decision and measures
//! from the instant the request is sent to the instant the fake API server received the
//! undo's PATCH of that Deployment (the fake stamps each request on arrival). It prints
//! p50, p99 and max over the targets after the first [`COLD`], whose times it prints
//! apart (`cold_ms`: the first rollbacks after a start also set up what later ones
//! reuse, 45-140 ms on the 2-core machine), and checks that each target was patched once.

#[path = "../tests/support/fake_kube.rs"]
mod fake_kube;

#[path = "support/flood.rs"]
mod flood;
#[path = "support/server.rs"]
mod server;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use server::{free_port, start, stop};

use fake_kube::FakeKube;

const TOKEN: &str = "bench-admin-token-0123456789abcdef";
/// The fixture's "now": revision 3 rolled out at 13:55, its alerts start at 14:01.
const FIXTURE_NOW: &str = "2026-08-22T14:03:00Z";
/// The fixture's workload name, replaced by each target's.
const FIXTURE_NAME: &str = "checkout";
/// The first rollbacks after rollwarden starts, timed and printed apart from the rest.
const COLD: usize = 2;

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (bin, url, fixture, targets, background) = match args.as_slice() {
        [bin, url, fixture, targets] => (bin, url, fixture, targets, "0"),
        [bin, url, fixture, targets, background] => {
            (bin, url, fixture, targets, background.as_str())
        }
        _ => bail!("usage: alert_to_patch BIN DATABASE_URL FIXTURE TARGETS [BACKGROUND]"),
    };
    let targets: usize = targets.parse().context("TARGETS")?;
    let background: usize = background.parse().context("BACKGROUND")?;
    if targets <= COLD {
        bail!("TARGETS must be more than {COLD} (the first {COLD} are timed apart)");
    }
    let dir = tempfile::tempdir()?;
    let url = url.replace("{dir}", &dir.path().display().to_string());

    let fake = FakeKube::start().await;
    fake.simulate_deployment_controller(true);
    let shift = Utc::now() - FIXTURE_NOW.parse::<DateTime<Utc>>()?;
    let fixture: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture).with_context(|| format!("reading {fixture}"))?,
    )?;
    for i in 0..targets {
        for item in workload(&fixture, &name(i), shift)? {
            fake.apply(item);
        }
    }
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, kubeconfig_for(&fake.url()))?;

    let port = free_port()?;
    let config = dir.path().join("rollwarden.toml");
    std::fs::write(&config, config_for(port, &url, &kubeconfig, targets))?;
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let mut server = start(bin, &config, &http, &base).await?;
    let result = run(&fake, &http, &base, targets, background, shift).await;
    stop(&mut server)?;
    result
}

async fn run(
    fake: &FakeKube,
    http: &reqwest::Client,
    base: &str,
    targets: usize,
    background: usize,
    shift: chrono::Duration,
) -> anyhow::Result<()> {
    wait_for_history(http, base, targets).await?;
    post_background(http, base, background, shift).await?;
    // Let the engine's evaluations of the fresh history and the flood pass.
    tokio::time::sleep(Duration::from_secs(if background > 0 { 5 } else { 2 })).await;
    let mut latencies = Vec::with_capacity(targets);
    for i in 0..targets {
        let name = name(i);
        let path = format!("/apis/apps/v1/namespaces/prod/deployments/{name}");
        let body = notification(&name, shift);
        let sent = Instant::now();
        let status = http
            .post(format!("{base}/webhooks/alertmanager"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?
            .status();
        if !status.is_success() {
            bail!("notification about {name}: {status}");
        }
        let deadline = sent + Duration::from_secs(20);
        let patched = loop {
            let patch = fake
                .requests_arrived()
                .into_iter()
                .find(|(r, at)| r.method == "PATCH" && r.path == path && *at >= sent);
            if let Some((_, at)) = patch {
                break at;
            }
            if Instant::now() > deadline {
                bail!("no undo PATCH of {path} within 20 s of its alert");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        latencies.push(patched.duration_since(sent));
    }
    // Each Deployment was patched exactly once: the figures are of real, single undos.
    let requests = fake.requests_arrived();
    for i in 0..targets {
        let path = format!("/apis/apps/v1/namespaces/prod/deployments/{}", name(i));
        let patches = requests
            .iter()
            .filter(|(r, _)| r.method == "PATCH" && r.path == path)
            .count();
        if patches != 1 {
            bail!("{path} was patched {patches} times, not once");
        }
    }
    if std::env::var_os("ALERT_TO_PATCH_DEBUG").is_some() {
        eprintln!(
            "in order (ms): {:?}",
            latencies.iter().map(|d| d.as_millis()).collect::<Vec<_>>()
        );
        let metrics = http
            .get(format!("{base}/metrics"))
            .send()
            .await?
            .text()
            .await?;
        for line in metrics.lines().filter(|l| {
            l.starts_with("rollwarden_engine_evaluation_duration_seconds_sum")
                || l.starts_with("rollwarden_engine_evaluation_duration_seconds_count")
        }) {
            eprintln!("{line}");
        }
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let cold: Vec<String> = latencies
        .drain(..COLD)
        .map(|d| format!("{:.1}", ms(d)))
        .collect();
    latencies.sort();
    let p = |q: f64| latencies[((latencies.len() as f64 * q).ceil() as usize).saturating_sub(1)];
    println!(
        "RESULT targets={} background={background} p50_ms={:.1} p99_ms={:.1} max_ms={:.1} min_ms={:.1} cold_ms={}",
        latencies.len(),
        ms(p(0.5)),
        ms(p(0.99)),
        ms(*latencies.last().expect("at least one target")),
        ms(latencies[0]),
        cold.join(","),
    );
    Ok(())
}

fn name(i: usize) -> String {
    format!("svc-{i:02}")
}

/// The fixture's Deployment and ReplicaSets, renamed to `name`, with uids of their own
/// (their owner references follow) and every timestamp moved by `shift`.
fn workload(fixture: &Value, name: &str, shift: chrono::Duration) -> anyhow::Result<Vec<Value>> {
    let mut text = fixture.to_string().replace(FIXTURE_NAME, name);
    let suffix = format!("{:012x}", fingerprint(name) & 0xffff_ffff_ffff);
    for uid in uids(fixture) {
        let own = format!("{}{suffix}", &uid[..uid.len() - 12]);
        text = text.replace(&uid, &own);
    }
    let mut list: Value = serde_json::from_str(&text)?;
    shift_times(&mut list, shift);
    let Some(Value::Array(items)) = list.get_mut("items").map(Value::take) else {
        bail!("the fixture is not a kind: List");
    };
    Ok(items
        .into_iter()
        .map(|mut item| {
            // The fake assigns its own identity and versions.
            if let Some(meta) = item.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.remove("resourceVersion");
            }
            item
        })
        .collect())
}

/// The objects' own uids (`metadata.uid`).
fn uids(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item["metadata"]["uid"].as_str())
        .filter(|uid| uid.len() == 36)
        .map(str::to_owned)
        .collect()
}

/// Moves every RFC 3339 timestamp in `value` by `shift`.
fn shift_times(value: &mut Value, shift: chrono::Duration) {
    match value {
        Value::String(s) => {
            if let Ok(t) = DateTime::parse_from_rfc3339(s) {
                *s = (t.with_timezone(&Utc) + shift)
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| shift_times(v, shift)),
        Value::Object(map) => map.values_mut().for_each(|v| shift_times(v, shift)),
        _ => {}
    }
}

/// The notification that decides `name`'s rollback: its error rate at 12.4 % against a
/// 1 % baseline, firing since a minute after its bad revision rolled out.
fn notification(name: &str, shift: chrono::Duration) -> String {
    let starts = "2026-08-22T14:01:47Z"
        .parse::<DateTime<Utc>>()
        .expect("a time")
        + shift;
    json!({
        "receiver": "rollwarden", "status": "firing",
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "HighErrorRate", "namespace": "prod",
                       "service": name, "severity": "critical", "team": "payments"},
            "annotations": {"summary": "too many 5xx responses",
                            "value": "0.124", "baseline": "0.01"},
            "startsAt": starts.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus-k8s-0:9090/graph",
            "fingerprint": format!("{:016x}", fingerprint(name)),
        }],
        "groupLabels": {"alertname": "HighErrorRate", "service": name},
        "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093", "version": "4",
        "groupKey": format!("{{}}:{{alertname=\"HighErrorRate\", service=\"{name}\"}}"),
        "truncatedAlerts": 0
    })
    .to_string()
}

/// `count` distinct firing alerts about 500 services of namespace `fleet`, 500 to a
/// notification (each a new group), from 4 concurrent senders.
async fn post_background(
    http: &reqwest::Client,
    base: &str,
    count: usize,
    shift: chrono::Duration,
) -> anyhow::Result<()> {
    const PER_NOTIFICATION: usize = 500;
    const SENDERS: usize = 4;
    let starts = ("2026-08-22T13:30:00Z".parse::<DateTime<Utc>>()? + shift)
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let body = move |n, range: std::ops::Range<usize>| {
        let alerts: Vec<Value> = range
            .map(|i| {
                json!({
                    "status": "firing",
                    "labels": {"alertname": "HighLatency", "namespace": "fleet",
                               "service": format!("fleet-{}", i % 500),
                               "pod": format!("pod-{i:08}"), "severity": "warning"},
                    "annotations": {"value": "0.31", "baseline": "0.2"},
                    "startsAt": starts, "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "http://prometheus-k8s-0:9090/graph",
                    "fingerprint": format!("{i:016x}"),
                })
            })
            .collect();
        flood::group(n, alerts)
    };
    flood::post_alerts(http, base, TOKEN, SENDERS, PER_NOTIFICATION, count, body).await
}

fn fingerprint(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Waits until rollwarden's watcher recorded the three revisions of every target.
async fn wait_for_history(
    http: &reqwest::Client,
    base: &str,
    targets: usize,
) -> anyhow::Result<()> {
    let want = targets * 3;
    for _ in 0..300 {
        let page: Value = http
            .get(format!(
                "{base}/api/v1/deploys?namespace=prod&source=kubernetes&limit=500"
            ))
            .bearer_auth(TOKEN)
            .send()
            .await?
            .json()
            .await?;
        let seen = page["items"].as_array().map_or(0, Vec::len);
        if seen >= want {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the watcher did not record {want} revisions within 30 s");
}

fn config_for(port: u16, url: &str, kubeconfig: &Path, targets: usize) -> String {
    let mut config = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n\
         [database]\nurl = \"{url}\"\nmax_connections = 16\n\
         [engine]\nenabled = true\n\
         [log]\nlevel = \"warn\"\n\
         [limits]\ningest_per_second = 0\n\
         [kubernetes]\nenabled = true\ncluster = \"bench\"\nnamespaces = [\"prod\"]\n\
         kubeconfig = \"{}\"\n\
         [actions]\nenabled = true\ndry_run = false\nrollout_timeout_secs = 10\n\
         [environments.bench]\nmode = \"auto\"\n\
         [[auth.tokens]]\nname = \"bench\"\nrole = \"admin\"\ntoken = \"{TOKEN}\"\n",
        kubeconfig.display()
    );
    for i in 0..targets {
        config.push_str(&format!(
            "[[targets]]\nnamespace = \"prod\"\nname = \"{}\"\nenvironment = \"bench\"\n",
            name(i)
        ));
    }
    config
}

/// A kubeconfig for a plain-HTTP server without credentials.
fn kubeconfig_for(server: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {server}\n\
         users:\n- name: fake\n  user: {{}}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n\
         current-context: fake\n"
    )
}
