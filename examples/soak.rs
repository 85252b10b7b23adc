//! The fleet soak (issue 20): a simulated fleet with a realistic background of noise and
//! five truly bad deploys drives a running rollwarden over HTTP the way Alertmanager and
//! a CI system do, for a bounded real time; then its rollback decisions are scored.
//! `scripts/soak` starts rollwarden and runs this; see docs/precision.md.
//!
//! `soak run --url URL --token T --viewer-token V --secs S --truth FILE` simulates and
//! prints TP, FP, FN, precision, recall and each true positive's detection latency (from
//! the first notification that carried its alert to the rollback decision), and writes
//! the truth (the bad deploys, each service's noise) to FILE.
//! `soak score --truth FILE --rows ROWS --label NAME` scores a replay of the recording
//! (`rollwarden replay --format json`) the same way.
//!
//! The noise model (docs/precision.md has it as a table): 60 services in 3 namespaces,
//! each with 2-3 healthy CI deploys in the hours before the run and healthy deploys every
//! ~30 s during it; error-rate alerts at 0.2-0.9 % against 0.1-0.3 % baselines; flapping
//! alerts at 1-3 % that fire for 40-150 s and resolve for 60-180 s; latency at 1.2-1.8x
//! baseline; regressions older than the service's last deploy; short M2-level
//! regressions 30-60 minutes after a service's last deploy; a database outage in
//! `payments` with the dependency's resolve delivered before the services' own.
//! Notifications are grouped by alertname and namespace and re-sent every group
//! interval (15 s: Alertmanager's 5 min compressed, so that a few minutes see many).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration as StdDuration;

use anyhow::{Context, bail};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use clap::{Parser, Subcommand};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Alertmanager's group_interval, compressed.
const GROUP_INTERVAL: StdDuration = StdDuration::from_secs(15);
/// Alertmanager's group_wait for a new group, compressed.
const GROUP_WAIT: StdDuration = StdDuration::from_secs(1);
const NAMESPACES: [&str; 3] = ["shop", "payments", "search"];
/// The namespace whose database goes down.
const OUTAGE_NAMESPACE: &str = "payments";
const NAMES: [&str; 20] = [
    "api",
    "cart",
    "checkout",
    "catalog",
    "pricing",
    "inventory",
    "orders",
    "billing",
    "ledger",
    "profile",
    "auth",
    "session",
    "gateway",
    "notify",
    "mailer",
    "reports",
    "recommend",
    "reviews",
    "shipping",
    "tax",
];

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Drive a running rollwarden, then score its decisions.
    Run {
        /// rollwarden's base URL.
        #[arg(long)]
        url: String,
        /// A token with the webhook role.
        #[arg(long)]
        token: String,
        /// A token with the viewer role.
        #[arg(long)]
        viewer_token: String,
        /// How long to simulate, in real seconds.
        #[arg(long, default_value_t = 240)]
        secs: u64,
        /// The random seed: the same seed, the same fleet.
        #[arg(long, default_value_t = 20)]
        seed: u64,
        /// Where to write the truth (bad deploys, noise per service).
        #[arg(long)]
        truth: std::path::PathBuf,
    },
    /// Score a replay's rows (`rollwarden replay --format json`) against a run's truth.
    Score {
        #[arg(long)]
        truth: std::path::PathBuf,
        #[arg(long)]
        rows: std::path::PathBuf,
        /// The policy the rows were replayed under, for the printout.
        #[arg(long)]
        label: String,
        /// For rows of `replay --compare --format json`: score the `old` or `new` side.
        #[arg(long)]
        side: Option<String>,
    },
}

/// SplitMix64: a small, seeded generator (the crate has no `rand`).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [lo, hi).
    fn between(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn secs(&mut self, lo: f64, hi: f64) -> Duration {
        Duration::milliseconds((self.between(lo, hi) * 1000.0) as i64)
    }

    fn pick(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// What a service carries through the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Role {
    /// Nothing but healthy deploys.
    Clean,
    /// An error rate at 0.2-0.9 % against a 0.1-0.3 % baseline, firing all along.
    Elevated,
    /// An error rate at 1-3 % that fires and resolves again and again.
    Flapping,
    /// Latency at 1.2-1.8x its baseline, firing all along.
    Slow,
    /// An error rate at 2-8 % that began before the service's last deploy.
    OldRegression,
    /// An error rate at 5.5-7 % for 1-2 minutes, beginning 30-60 minutes after the
    /// service's last deploy (a traffic spike, not the deploy).
    Late,
    /// Deployed shortly before the database outage; 6-10 % errors during it.
    Outage,
    /// Gets one of the five bad deploys.
    Bad,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Service {
    namespace: String,
    name: String,
    role: Role,
}

impl Service {
    fn key(&self) -> String {
        format!("default/{}/Deployment/{}", self.namespace, self.name)
    }
}

/// A truly bad deploy and when rollwarden first heard of its alert.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct BadDeploy {
    target: String,
    revision: String,
    /// The rule that should catch it.
    expect: String,
    deployed_at: DateTime<Utc>,
    first_notified: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Truth {
    started: DateTime<Utc>,
    ended: DateTime<Utc>,
    services: Vec<Service>,
    bad: Vec<BadDeploy>,
    notifications: u64,
    deploys: u64,
    database_down: (DateTime<Utc>, DateTime<Utc>),
}

/// One alert instance (a re-fire of the same labels is another instance).
#[derive(Debug, Clone)]
struct Alert {
    group: String,
    labels: BTreeMap<String, String>,
    /// value, baseline: numbers drift within the band at each send.
    value: Option<(f64, f64)>,
    baseline: Option<f64>,
    starts: DateTime<Utc>,
    ends: Option<DateTime<Utc>>,
    /// Whether a notification has carried its resolve.
    resolved_sent: bool,
    /// The index of the bad deploy it reveals.
    bad: Option<usize>,
}

impl Alert {
    fn fingerprint(&self) -> String {
        // FNV-1a over the sorted labels, as Alertmanager's is a hash of them.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for (k, v) in &self.labels {
            for b in k.bytes().chain([0xff]).chain(v.bytes()).chain([0xfe]) {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        format!("{h:016x}")
    }

    fn firing(&self, now: DateTime<Utc>) -> bool {
        self.starts <= now && self.ends.is_none_or(|e| e > now)
    }
}

enum Planned {
    /// A CI deploy: its `started` callback, then `succeeded` 2 s later.
    Deploy { service: usize, bad: Option<usize> },
    /// An alert starts being part of its group (it may have started earlier).
    AlertAppears(usize),
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn error_alert(s: &Service, value: (f64, f64), baseline: f64, starts: DateTime<Utc>) -> Alert {
    Alert {
        group: format!("MaestroHighErrorRate/{}", s.namespace),
        labels: labels("MaestroHighErrorRate", s, &[]),
        value: Some(value),
        baseline: Some(baseline),
        starts,
        ends: None,
        resolved_sent: false,
        bad: None,
    }
}

fn labels(alertname: &str, s: &Service, extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = [
        ("alertname", alertname),
        ("namespace", s.namespace.as_str()),
        ("deployment", s.name.as_str()),
        ("severity", "critical"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in extra {
        labels.insert(k.to_string(), v.to_string());
    }
    labels
}

/// The fleet, its history before `t0` and the plan of the run.
struct World {
    services: Vec<Service>,
    alerts: Vec<Alert>,
    /// (when, what), sorted.
    plan: Vec<(DateTime<Utc>, Planned)>,
    /// Deploys before the run, posted at its start: (service, started, finished).
    history: Vec<(usize, DateTime<Utc>, DateTime<Utc>)>,
    bad: Vec<BadDeploy>,
    database_down: (DateTime<Utc>, DateTime<Utc>),
}

fn build_world(rng: &mut Rng, t0: DateTime<Utc>, secs: u64) -> World {
    let run = Duration::seconds(i64::try_from(secs).unwrap_or(240));
    let at = |fraction: f64| {
        t0 + Duration::milliseconds((run.num_milliseconds() as f64 * fraction) as i64)
    };
    let mut services = Vec::new();
    for namespace in NAMESPACES {
        for name in NAMES {
            services.push(Service {
                namespace: namespace.into(),
                name: name.into(),
                role: Role::Clean,
            });
        }
    }
    // Roles: the outage's five in payments, the bad five outside it (a bad deploy
    // during the outage would be H2's to hold), the noise anywhere.
    let mut free: Vec<usize> = (0..services.len()).collect();
    let mut take = |rng: &mut Rng, n: usize, role: Role, ns: Option<&str>, not_ns: Option<&str>| {
        let mut taken = Vec::new();
        while taken.len() < n {
            let candidates: Vec<usize> = free
                .iter()
                .copied()
                .filter(|i| ns.is_none_or(|ns| services[*i].namespace == ns))
                .filter(|i| not_ns.is_none_or(|ns| services[*i].namespace != ns))
                .collect();
            let i = candidates[rng.pick(candidates.len())];
            free.retain(|f| *f != i);
            services[i].role = role;
            taken.push(i);
        }
        taken
    };
    let outage = take(rng, 5, Role::Outage, Some(OUTAGE_NAMESPACE), None);
    let bad = take(rng, 5, Role::Bad, None, Some(OUTAGE_NAMESPACE));
    let elevated = take(rng, 18, Role::Elevated, None, None);
    let flapping = take(rng, 10, Role::Flapping, None, None);
    let slow = take(rng, 12, Role::Slow, None, None);
    let old = take(rng, 5, Role::OldRegression, None, None);
    let late = take(rng, 3, Role::Late, None, Some(OUTAGE_NAMESPACE));

    let mut alerts = Vec::new();
    let mut plan = Vec::new();
    let mut history = Vec::new();
    // 2-3 healthy deploys each, the last 5 min to 3 h before the run.
    let mut last_deploy = vec![t0; services.len()];
    for (i, s) in services.iter().enumerate() {
        let mut finished = t0 - rng.secs(300.0, 3.0 * 3600.0);
        if s.role == Role::Outage {
            finished = t0 - rng.secs(9.0 * 60.0, 12.0 * 60.0);
        }
        if s.role == Role::Late {
            finished = t0 - rng.secs(30.0 * 60.0, 60.0 * 60.0);
        }
        if s.role == Role::OldRegression {
            finished = t0 - rng.secs(5.0 * 60.0, 20.0 * 60.0);
        }
        last_deploy[i] = finished;
        let count = 2 + rng.pick(2);
        let mut deploys = vec![finished];
        for _ in 1..count {
            let earlier = *deploys.last().unwrap() - rng.secs(1800.0, 3.0 * 3600.0);
            deploys.push(earlier);
        }
        for finished in deploys.into_iter().rev() {
            history.push((i, finished - rng.secs(30.0, 120.0), finished));
        }
    }
    for &i in &elevated {
        let s = &services[i];
        let baseline = rng.between(0.001, 0.003);
        let value = rng.between(0.002, 0.009);
        let starts = t0 - rng.secs(20.0 * 60.0, 100.0 * 60.0);
        let band = ((value * 0.9).max(0.002), (value * 1.1).min(0.009));
        alerts.push(error_alert(s, band, baseline, starts));
    }
    for &i in &flapping {
        let s = &services[i];
        let mut start = t0 + rng.secs(0.0, 60.0);
        while start < at(1.0) {
            let firing = rng.secs(40.0, 150.0);
            let value = rng.between(0.01, 0.03);
            let mut a = error_alert(s, (value, value), 0.002, start);
            a.ends = Some(start + firing);
            alerts.push(a);
            start = start + firing + rng.secs(60.0, 180.0);
        }
    }
    for &i in &slow {
        let s = &services[i];
        let baseline = rng.between(0.12, 0.3);
        let factor = rng.between(1.2, 1.8);
        alerts.push(Alert {
            group: format!("MaestroHighLatencyP95/{}", s.namespace),
            labels: labels("MaestroHighLatencyP95", s, &[]),
            value: Some((baseline * factor, baseline * factor)),
            baseline: Some(baseline),
            starts: t0 - rng.secs(600.0, 7200.0),
            ends: None,
            resolved_sent: false,
            bad: None,
        });
    }
    for &i in &old {
        let s = &services[i];
        let value = rng.between(0.02, 0.08);
        let starts = last_deploy[i] - rng.secs(5.0 * 60.0, 25.0 * 60.0);
        alerts.push(error_alert(s, (value, value), 0.002, starts));
    }
    for (n, &i) in late.iter().enumerate() {
        let value = rng.between(0.055, 0.07);
        let mut a = error_alert(
            &services[i],
            (value, value),
            0.002,
            at(0.40 + 0.1 * n as f64),
        );
        a.ends = Some(a.starts + rng.secs(60.0, 120.0));
        alerts.push(a);
    }
    // The database outage: down since 8 minutes before the run, back at 35 % of it; the
    // five services' errors end 1-5 s after it, and their resolve comes with their own
    // group's next notification, after the database's.
    let down = t0 - Duration::minutes(8);
    let up = at(0.35);
    let ns = OUTAGE_NAMESPACE;
    let db = Service {
        namespace: ns.into(),
        name: "postgres".into(),
        role: Role::Clean,
    };
    let mut db_labels = labels("PostgresqlDown", &db, &[("instance", "payments-db-0")]);
    db_labels.remove("deployment");
    alerts.push(Alert {
        group: format!("PostgresqlDown/{ns}"),
        labels: db_labels,
        value: None,
        baseline: None,
        starts: down,
        ends: Some(up),
        resolved_sent: false,
        bad: None,
    });
    for &i in &outage {
        let value = rng.between(0.06, 0.10);
        let mut a = error_alert(
            &services[i],
            (value, value),
            0.002,
            down + rng.secs(40.0, 100.0),
        );
        a.ends = Some(up + rng.secs(1.0, 5.0));
        alerts.push(a);
    }
    // Healthy deploys every ~30 s.
    let mut t = t0 + rng.secs(5.0, 30.0);
    while t < at(0.95) {
        let i = rng.pick(services.len());
        // Not the bad ones (their deploy is the bad one) nor the late ones (not
        // deployed recently is what they are).
        if !matches!(services[i].role, Role::Bad | Role::Late) {
            plan.push((
                t,
                Planned::Deploy {
                    service: i,
                    bad: None,
                },
            ));
        }
        t += rng.secs(20.0, 40.0);
    }
    // The five bad deploys, each revealed 4 s after it by an alert M2, G3 or M4 catch.
    let mut bad_deploys = Vec::new();
    let kinds = ["M2", "G3", "M2", "G3", "M4"];
    for (n, (&i, expect)) in bad.iter().zip(kinds).enumerate() {
        // Early enough that even a short run delivers the last one's alert.
        let deployed = at(0.05 + 0.11 * n as f64);
        let s = &services[i];
        bad_deploys.push(BadDeploy {
            target: s.key(),
            revision: String::new(),
            expect: expect.into(),
            deployed_at: deployed,
            first_notified: None,
        });
        plan.push((
            deployed,
            Planned::Deploy {
                service: i,
                bad: Some(n),
            },
        ));
        let starts = deployed + Duration::seconds(4);
        let mut alert = match n {
            0 => error_alert(s, (0.11, 0.13), 0.002, starts),
            2 => Alert {
                baseline: None,
                ..error_alert(s, (0.07, 0.09), 0.0, starts)
            },
            1 => {
                let pod = format!("{}-7c9d4b8f5-x2k9q", s.name);
                let mut labels = labels(
                    "KubePodCrashLooping",
                    s,
                    &[("pod", &pod), ("container", "app")],
                );
                labels.remove("deployment");
                Alert {
                    group: format!("KubePodCrashLooping/{}", s.namespace),
                    labels,
                    value: None,
                    baseline: None,
                    ..error_alert(s, (0.0, 0.0), 0.0, starts)
                }
            }
            3 => Alert {
                group: format!("ErrorBudgetBurn/{}", s.namespace),
                labels: labels(
                    "ErrorBudgetBurn",
                    s,
                    &[("slo", "availability"), ("long", "1h"), ("short", "5m")],
                ),
                value: None,
                baseline: None,
                ..error_alert(s, (0.0, 0.0), 0.0, starts)
            },
            _ => Alert {
                group: format!("MaestroHighLatencyP95/{}", s.namespace),
                labels: labels("MaestroHighLatencyP95", s, &[]),
                value: Some((0.9, 1.1)),
                baseline: Some(0.25),
                ..error_alert(s, (0.0, 0.0), 0.0, starts)
            },
        };
        alert.bad = Some(n);
        alerts.push(alert);
    }
    for (i, a) in alerts.iter().enumerate() {
        plan.push((a.starts.max(t0), Planned::AlertAppears(i)));
    }
    plan.sort_by_key(|(t, _)| *t);
    World {
        services,
        alerts,
        plan,
        history,
        bad: bad_deploys,
        database_down: (down, up),
    }
}

struct Client {
    http: reqwest::Client,
    url: String,
    token: String,
    notifications: u64,
    deploys: u64,
}

impl Client {
    async fn post(&mut self, path: &str, body: &Value) -> anyhow::Result<()> {
        let r = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        if !r.status().is_success() {
            bail!(
                "POST {path}: {} {}",
                r.status(),
                r.text().await.unwrap_or_default()
            );
        }
        Ok(())
    }

    async fn deploy(
        &mut self,
        s: &Service,
        revision: &str,
        started: DateTime<Utc>,
        finished: Option<DateTime<Utc>>,
    ) -> anyhow::Result<()> {
        let mut body = json!({
            "namespace": s.namespace, "name": s.name, "revision": revision,
            "status": if finished.is_some() { "succeeded" } else { "started" },
            "version": format!("v{revision}"),
            "image": format!("registry.example.com/{}/{}:v{revision}", s.namespace, s.name),
            "started_at": ts(started),
            "link": format!("https://ci.example.com/runs/{revision}"),
        });
        if let Some(finished) = finished {
            body["finished_at"] = json!(ts(finished));
        }
        self.deploys += 1;
        self.post("/api/v1/deploys", &body).await
    }
}

/// Sends group `group`'s notification: its firing alerts (those started by `by`) and
/// those resolved since its last one; `false` when it had nothing to say.
async fn flush(
    client: &mut Client,
    rng: &mut Rng,
    alerts: &mut [Alert],
    (group, by): (&str, DateTime<Utc>),
    now: DateTime<Utc>,
    first_notified: &mut BTreeMap<usize, DateTime<Utc>>,
) -> anyhow::Result<bool> {
    let members: Vec<usize> = alerts
        .iter()
        .enumerate()
        .filter(|(_, a)| a.group == group && a.starts <= by)
        .filter(|(_, a)| a.firing(now) || !a.resolved_sent)
        .map(|(i, _)| i)
        .collect();
    if members.is_empty() {
        return Ok(false);
    }
    let mut items = Vec::new();
    for &i in &members {
        let a = &alerts[i];
        let firing = a.firing(now);
        let mut annotations = json!({"summary": format!("{} is unwell", a.labels.get("deployment").map_or("the database", String::as_str))});
        if let Some((lo, hi)) = a.value {
            annotations["value"] = json!(format!("{:.6}", rng.between(lo, hi.max(lo + 1e-9))));
        }
        if let Some(b) = a.baseline {
            annotations["baseline"] = json!(format!("{b:.6}"));
        }
        items.push(json!({
            "status": if firing { "firing" } else { "resolved" },
            "labels": a.labels, "annotations": annotations,
            "startsAt": ts(a.starts),
            "endsAt": if firing { "0001-01-01T00:00:00Z".to_string() } else { ts(a.ends.unwrap()) },
            "generatorURL": "http://prometheus:9090/graph", "fingerprint": a.fingerprint(),
        }));
    }
    let (alertname, namespace) = group.split_once('/').unwrap();
    let any_firing = members.iter().any(|i| alerts[*i].firing(now));
    let body = json!({
        "receiver": "rollwarden", "status": if any_firing { "firing" } else { "resolved" },
        "alerts": items,
        "groupLabels": {"alertname": alertname, "namespace": namespace},
        "commonLabels": {"alertname": alertname, "namespace": namespace},
        "commonAnnotations": {}, "externalURL": "http://alertmanager:9093", "version": "4",
        "groupKey": format!("{{}}:{{alertname=\"{alertname}\", namespace=\"{namespace}\"}}"),
        "truncatedAlerts": 0
    });
    client.post("/webhooks/alertmanager", &body).await?;
    client.notifications += 1;
    for &i in &members {
        let a = &mut alerts[i];
        if a.firing(now) {
            first_notified.entry(i).or_insert(now);
        } else {
            a.resolved_sent = true;
        }
    }
    Ok(true)
}

async fn run(
    url: String,
    token: String,
    viewer_token: String,
    secs: u64,
    seed: u64,
    truth_path: std::path::PathBuf,
) -> anyhow::Result<()> {
    let mut rng = Rng(seed);
    let t0 = Utc::now();
    let mut world = build_world(&mut rng, t0, secs);
    let mut client = Client {
        http: reqwest::Client::builder()
            .timeout(StdDuration::from_secs(30))
            .build()?,
        url: url.trim_end_matches('/').to_string(),
        token,
        notifications: 0,
        deploys: 0,
    };
    let mut revision = 1000u64;
    let mut next_revision = || {
        revision += 1;
        revision.to_string()
    };
    // The history: every service's deploys before the run.
    let history = std::mem::take(&mut world.history);
    for (i, started, finished) in history {
        let s = world.services[i].clone();
        client
            .deploy(&s, &next_revision(), started, Some(finished))
            .await?;
    }
    eprintln!(
        "soak: {} services, {} deploys of history, {} alerts planned, {secs} s",
        world.services.len(),
        client.deploys,
        world.alerts.len()
    );
    // Alertmanager has been running: every group's timer has its own phase.
    let mut groups: BTreeMap<String, Option<DateTime<Utc>>> = BTreeMap::new();
    for a in &world.alerts {
        groups.entry(a.group.clone()).or_insert(None);
    }
    let mut first_notified: BTreeMap<usize, DateTime<Utc>> = BTreeMap::new();
    // What Alertmanager sent before the run, in the order it did: each alert that began
    // before the run with its group as it stood then (so the database's alert comes
    // before the errors it caused, as it did).
    let mut earlier: Vec<usize> = (0..world.alerts.len())
        .filter(|i| world.alerts[*i].starts < t0)
        .collect();
    earlier.sort_by_key(|i| world.alerts[*i].starts);
    for i in earlier {
        let (group, by) = (world.alerts[i].group.clone(), world.alerts[i].starts);
        let now = Utc::now();
        flush(
            &mut client,
            &mut rng,
            &mut world.alerts,
            (&group, by),
            now,
            &mut first_notified,
        )
        .await?;
    }
    let interval = Duration::from_std(GROUP_INTERVAL)?;
    let end = t0 + Duration::seconds(i64::try_from(secs)?);
    let db_group = format!("PostgresqlDown/{OUTAGE_NAMESPACE}");
    let (_, db_up) = world.database_down;
    let mut db_resolve_sent = false;
    let mut pending_success: Vec<(DateTime<Utc>, usize, String, DateTime<Utc>)> = Vec::new();
    let mut planned = std::mem::take(&mut world.plan).into_iter().peekable();
    loop {
        let now = Utc::now();
        if now >= end {
            break;
        }
        while let Some((when, _)) = planned.peek() {
            if *when > now {
                break;
            }
            let (_, event) = planned.next().unwrap();
            match event {
                Planned::Deploy { service, bad } => {
                    let s = world.services[service].clone();
                    let rev = next_revision();
                    client.deploy(&s, &rev, now, None).await?;
                    if let Some(n) = bad {
                        world.bad[n].revision = rev.clone();
                    }
                    pending_success.push((now + Duration::seconds(2), service, rev, now));
                }
                Planned::AlertAppears(i) => {
                    let group = world.alerts[i].group.clone();
                    let slot = groups.get_mut(&group).unwrap();
                    if slot.is_none() {
                        // A new aggregation group waits group_wait; one already running
                        // (for alerts before the run: phases spread over an interval)
                        // sends at its next interval.
                        *slot = Some(if world.alerts[i].starts < t0 {
                            t0 + rng.secs(0.0, GROUP_INTERVAL.as_secs_f64())
                        } else {
                            now + Duration::from_std(GROUP_WAIT)?
                        });
                    }
                }
            }
        }
        let due: Vec<usize> = pending_success
            .iter()
            .enumerate()
            .filter(|(_, p)| p.0 <= now)
            .map(|(i, _)| i)
            .collect();
        for i in due.into_iter().rev() {
            let (_, service, rev, started) = pending_success.remove(i);
            let s = world.services[service].clone();
            client.deploy(&s, &rev, started, Some(now)).await?;
        }
        // The database's resolve is sent as it happens, before the services' own.
        if !db_resolve_sent && now >= db_up {
            flush(
                &mut client,
                &mut rng,
                &mut world.alerts,
                (&db_group, now),
                now,
                &mut first_notified,
            )
            .await?;
            db_resolve_sent = true;
        }
        let due: Vec<String> = groups
            .iter()
            .filter(|(_, next)| next.is_some_and(|t| t <= now))
            .map(|(g, _)| g.clone())
            .collect();
        for group in due {
            let sent = flush(
                &mut client,
                &mut rng,
                &mut world.alerts,
                (&group, now),
                now,
                &mut first_notified,
            )
            .await?;
            let slot = groups.get_mut(&group).unwrap();
            *slot = if sent
                || world
                    .alerts
                    .iter()
                    .any(|a| a.group == group && a.starts > now)
            {
                slot.map(|t| t + interval)
            } else {
                None
            };
        }
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
    for (i, at) in &first_notified {
        if let Some(n) = world.alerts[*i].bad {
            world.bad[n].first_notified = Some(*at);
        }
    }
    // Let the last evaluations land.
    tokio::time::sleep(StdDuration::from_secs(2)).await;
    let truth = Truth {
        started: t0,
        ended: Utc::now(),
        services: world.services.clone(),
        bad: world.bad.clone(),
        notifications: client.notifications,
        deploys: client.deploys,
        database_down: world.database_down,
    };
    std::fs::write(&truth_path, serde_json::to_string_pretty(&truth)?)?;
    eprintln!(
        "soak: sent {} notifications and {} deploy callbacks",
        client.notifications, client.deploys
    );
    let rollbacks = fetch_rollbacks(&client.http, &client.url, &viewer_token).await?;
    let verdicts = fetch_verdict_counts(&client.http, &client.url, &viewer_token).await?;
    println!(
        "decisions recorded by verdict: {}",
        verdicts
            .iter()
            .map(|(v, n)| format!("{v} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    score(&truth, &rollbacks, "live (runbooks-2)");
    Ok(())
}

/// A rollback decision, as scored.
struct Rollback {
    target: String,
    revision: Option<String>,
    at: DateTime<Utc>,
    rules: Vec<String>,
}

async fn get(http: &reqwest::Client, url: &str, token: &str) -> anyhow::Result<Value> {
    let r = http.get(url).bearer_auth(token).send().await?;
    if !r.status().is_success() {
        bail!("GET {url}: {}", r.status());
    }
    Ok(r.json().await?)
}

async fn fetch_decisions(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    filter: &str,
) -> anyhow::Result<Vec<Value>> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut url = format!("{base}/api/v1/decisions?limit=1000{filter}");
        if let Some(a) = &after {
            url.push_str(&format!("&after={a}"));
        }
        let page = get(http, &url, token).await?;
        all.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_string()),
            None => return Ok(all),
        }
    }
}

async fn fetch_rollbacks(
    http: &reqwest::Client,
    base: &str,
    token: &str,
) -> anyhow::Result<Vec<Rollback>> {
    Ok(fetch_decisions(http, base, token, "&verdict=rollback")
        .await?
        .iter()
        .map(|d| Rollback {
            target: d["target_key"].as_str().unwrap_or_default().to_string(),
            revision: d["decision"]["suspect"]["revision"]
                .as_str()
                .map(String::from),
            at: d["decided_at"]
                .as_str()
                .and_then(|t| t.parse().ok())
                .unwrap_or_default(),
            rules: d["decision"]["fired"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|f| f["outcome"] == "rollback")
                .filter_map(|f| f["rule_id"].as_str().map(String::from))
                .collect(),
        })
        .collect())
}

async fn fetch_verdict_counts(
    http: &reqwest::Client,
    base: &str,
    token: &str,
) -> anyhow::Result<BTreeMap<String, usize>> {
    let mut counts = BTreeMap::new();
    for d in fetch_decisions(http, base, token, "").await? {
        *counts
            .entry(d["verdict"].as_str().unwrap_or("?").to_string())
            .or_default() += 1;
    }
    Ok(counts)
}

/// Prints TP, FP, FN, precision, recall and each true positive's detection latency.
/// One rollback per (target, suspect revision) counts once, at its first decision.
fn score(truth: &Truth, rollbacks: &[Rollback], label: &str) {
    let mut first: BTreeMap<(String, Option<String>), &Rollback> = BTreeMap::new();
    for r in rollbacks {
        let key = (r.target.clone(), r.revision.clone());
        match first.get(&key) {
            Some(seen) if seen.at <= r.at => {}
            _ => {
                first.insert(key, r);
            }
        }
    }
    let bad: BTreeMap<(String, Option<String>), &BadDeploy> = truth
        .bad
        .iter()
        .map(|b| ((b.target.clone(), Some(b.revision.clone())), b))
        .collect();
    let role: BTreeMap<String, Role> = truth.services.iter().map(|s| (s.key(), s.role)).collect();
    let tp: Vec<(&BadDeploy, &Rollback)> = first
        .iter()
        .filter_map(|(k, r)| bad.get(k).map(|b| (*b, *r)))
        .collect();
    let fp: Vec<&Rollback> = first
        .iter()
        .filter(|(k, _)| !bad.contains_key(*k))
        .map(|(_, r)| *r)
        .collect();
    let caught: BTreeSet<&str> = tp.iter().map(|(b, _)| b.target.as_str()).collect();
    let fn_: Vec<&BadDeploy> = truth
        .bad
        .iter()
        .filter(|b| !caught.contains(b.target.as_str()))
        .collect();
    let precision = if tp.len() + fp.len() == 0 {
        1.0
    } else {
        tp.len() as f64 / (tp.len() + fp.len()) as f64
    };
    let recall = tp.len() as f64 / truth.bad.len().max(1) as f64;
    let minutes = (truth.ended - truth.started).num_milliseconds() as f64 / 60_000.0;
    println!(
        "\n## {label}: {} services, {:.1} min, {} notifications, {} deploy callbacks",
        truth.services.len(),
        minutes,
        truth.notifications,
        truth.deploys
    );
    println!(
        "| TP | FP | FN | precision | recall |\n|---:|---:|---:|---:|---:|\n| {} | {} | {} | {precision:.2} | {recall:.2} |",
        tp.len(),
        fp.len(),
        fn_.len()
    );
    println!("\n| true positive | rules | caught by | detection latency |\n|---|---|---|---:|");
    for (b, r) in &tp {
        let latency = b
            .first_notified
            .map(|n| format!("{:.3} s", (r.at - n).num_milliseconds() as f64 / 1000.0))
            .unwrap_or_else(|| "-".into());
        println!(
            "| {} rev {} | expected {} | {} | {latency} |",
            b.target,
            b.revision,
            b.expect,
            r.rules.join(", ")
        );
    }
    if !fp.is_empty() {
        let mut by_role: BTreeMap<Role, usize> = BTreeMap::new();
        for r in &fp {
            *by_role
                .entry(role.get(&r.target).copied().unwrap_or(Role::Clean))
                .or_default() += 1;
        }
        println!(
            "\nfalse positives by the service's noise: {}",
            by_role
                .iter()
                .map(|(r, n)| format!("{r:?} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        for r in fp.iter().take(30) {
            println!(
                "  FP {} rev {} ({:?}): {}",
                r.target,
                r.revision.as_deref().unwrap_or("?"),
                role.get(&r.target).copied().unwrap_or(Role::Clean),
                r.rules.join(", ")
            );
        }
    }
    for b in &fn_ {
        println!(
            "  FN {} rev {} (expected {})",
            b.target, b.revision, b.expect
        );
    }
    println!(
        "RESULT label={label:?} tp={} fp={} fn={} precision={precision:.2} recall={recall:.2}",
        tp.len(),
        fp.len(),
        fn_.len()
    );
}

fn score_rows(
    truth_path: &std::path::Path,
    rows_path: &std::path::Path,
    label: &str,
    side: Option<&str>,
) -> anyhow::Result<()> {
    let truth: Truth = serde_json::from_str(&std::fs::read_to_string(truth_path)?)?;
    let mut rollbacks = Vec::new();
    for line in std::fs::read_to_string(rows_path)?.lines() {
        if line.trim().is_empty() {
            continue;
        }
        let row: Value = serde_json::from_str(line)?;
        // A replay row, or one side of a compared row (its standing decision).
        let decision = side.map_or(&row, |side| &row[side]);
        if decision["verdict"] != "rollback" {
            continue;
        }
        rollbacks.push(Rollback {
            target: row["target"].as_str().unwrap_or_default().to_string(),
            // "ci 1234"
            revision: decision["suspect"]
                .as_str()
                .and_then(|s| s.split_once(' '))
                .map(|(_, rev)| rev.to_string()),
            at: row["at"]
                .as_str()
                .and_then(|t| t.parse().ok())
                .unwrap_or_default(),
            rules: decision["rules"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r.as_str().map(String::from))
                .collect(),
        });
    }
    score(&truth, &rollbacks, label);
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run {
            url,
            token,
            viewer_token,
            secs,
            seed,
            truth,
        } => run(url, token, viewer_token, secs, seed, truth).await,
        Command::Score {
            truth,
            rows,
            label,
            side,
        } => score_rows(&truth, &rows, &label, side.as_deref()),
    }
}
