//! A structure-aware fuzz run over the wire parsers (Alertmanager, the CI deploy
//! callback, Flagger, signals), on stable Rust: proptest mutates the real fixtures (a
//! value anywhere replaced by a hostile one, a key removed or added, bytes cut, flipped
//! or spliced in) and each parser must either accept, with every invariant the rest of
//! rollwarden relies on holding, or reject cleanly: a `WireError` with a known code and
//! the field it names. A panic is a failure too.
//!
//! `FUZZ_CASES` sets the cases per parser (default 1000, and a quarter of that for each
//! of Flagger's eight hooks: about ten seconds in a debug build, which is what CI runs);
//! `scripts/fuzz` runs a long one in release.

use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Map, Value, json};

use rollwarden::domain::canary::Hook;
use rollwarden::domain::field::Field;
use rollwarden::wire::alertmanager::AlertmanagerPayload;
use rollwarden::wire::ci::CiDeployPayload;
use rollwarden::wire::flagger::FlaggerPayload;
use rollwarden::wire::signal::SignalPayload;
use rollwarden::wire::{Bounds, MAX_TIME_DISTANCE_DAYS, WireError};

use crate::support::{FIRING, RESOLVED, t0};

const FLAGGER_ROLLOUT: &str = include_str!("../fixtures/flagger-rollout.json");
const FLAGGER_EVENT: &str = include_str!("../fixtures/flagger-event.json");
const FLAGGER_ROLLBACK: &str = include_str!("../fixtures/flagger-rollback.json");

const CODES: [&str; 10] = [
    "malformed_json",
    "unsupported_version",
    "invalid_field",
    "invalid_timestamp",
    "inconsistent",
    "value_too_long",
    "too_many_alerts",
    "too_many_labels",
    "too_many_entries",
    "body_too_large",
];

fn cases() -> u32 {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000)
}

fn ci_seed() -> Value {
    json!({"cluster": "prod-eu", "namespace": "prod", "name": "checkout", "kind": "Deployment",
        "revision": "2231", "status": "succeeded", "environment": "production",
        "region": "eu-west-1", "version": "1.6.0",
        "image": "registry.example.com/shop/checkout:1.6.0", "commit": "9f1c2d3",
        "helm_release": "checkout", "link": "https://ci.example.com/runs/2231",
        "actor": "ci-bot", "started_at": "2026-08-22T13:55:00Z",
        "finished_at": "2026-08-22T14:00:00Z"})
}

fn signal_seeds() -> Vec<Value> {
    vec![
        json!({"kind": "error_rate", "target": {"namespace": "prod", "name": "checkout"},
            "scope": "canary", "value": 0.021, "baseline": 0.004, "id": "canary-errors",
            "started_at": "2026-08-22T13:58:00Z"}),
        json!({"kind": "customer_reports", "target": {"namespace": "prod", "name": "checkout"},
            "id": "support-queue", "count": 6, "started_at": "2026-08-22T14:00:00Z"}),
        json!({"kind": "dependency", "dependency": "database", "id": "db-degraded",
            "started_at": "2026-08-22T13:50:00Z", "ended_at": "2026-08-22T14:01:00Z"}),
    ]
}

// ------------------------------------------------------------------ generators

/// Strings that have broken parsers somewhere: options, shell and markup syntax,
/// control characters, look-alikes, times at the edges, numbers as text, huge text.
fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "",
            " ",
            "-",
            "--kubeconfig=x",
            "a;b",
            "$(id)",
            "`id`",
            "<!channel>",
            "a\nb",
            "\u{0}",
            "\u{7f}",
            "\u{200b}",
            "\u{2212}1",
            "\u{fffd}",
            "ch\u{435}ckout",
            "0",
            "-1",
            "1e309",
            "NaN",
            "Infinity",
            "18446744073709551616",
            "9999-12-31T23:59:59-23:59",
            "0001-01-01T00:00:00Z",
            "0000-01-01T00:00:00Z",
            "2026-08-22T14:00:00+24:00",
            "2026-02-30T00:00:00Z",
            "2026-08-22 14:00:00Z",
            "firing",
            "resolved",
            "Deployment",
            "prod",
            "default/prod/Deployment/checkout",
            "4",
            "true",
            "null",
        ])
        .prop_map(str::to_string),
        "\\PC{0,40}",
        "[a-z0-9.-]{0,70}",
        (0usize..5000).prop_map(|n| "a".repeat(n)),
        (0i64..10_000, 1u32..13, 1u32..32, -23i32..24).prop_map(|(y, mo, d, off)| format!(
            "{y:04}-{mo:02}-{d:02}T12:00:00{}{:02}:00",
            if off < 0 { '-' } else { '+' },
            off.abs()
        )),
    ]
}

fn hostile_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(Value::from),
        prop::sample::select(vec![
            0.0,
            -0.0,
            1e308,
            -1e308,
            5e-324,
            9_007_199_254_740_993.0
        ])
        .prop_map(Value::from),
    ]
}

fn hostile_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        hostile_number(),
        hostile_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(hostile_string(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    Replace(usize, Value),
    Remove(usize),
    Insert(usize, String, Value),
    /// Many labels at once, past `limits.max_labels`.
    Widen(usize, usize),
    Truncate(usize),
    Flip(usize, u8),
    Splice(usize, Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), hostile_value()).prop_map(|(at, v)| Mutation::Replace(at, v)),
        2 => any::<usize>().prop_map(Mutation::Remove),
        2 => (any::<usize>(), hostile_string(), hostile_value())
            .prop_map(|(at, k, v)| Mutation::Insert(at, k, v)),
        1 => (any::<usize>(), 0usize..200).prop_map(|(at, n)| Mutation::Widen(at, n)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Mutation::Flip(at, b)),
        1 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(at, bytes)| Mutation::Splice(at, bytes)),
    ]
}

/// Every value's path in `doc`, the document itself first.
fn paths(doc: &Value) -> Vec<Vec<PathStep>> {
    let mut out = vec![Vec::new()];
    let mut i = 0;
    while i < out.len() {
        let path = out[i].clone();
        match get(doc, &path) {
            Some(Value::Object(map)) => {
                for key in map.keys() {
                    let mut p = path.clone();
                    p.push(PathStep::Key(key.clone()));
                    out.push(p);
                }
            }
            Some(Value::Array(items)) => {
                for index in 0..items.len() {
                    let mut p = path.clone();
                    p.push(PathStep::Index(index));
                    out.push(p);
                }
            }
            _ => {}
        }
        i += 1;
    }
    out
}

#[derive(Debug, Clone)]
enum PathStep {
    Key(String),
    Index(usize),
}

fn get<'v>(doc: &'v Value, path: &[PathStep]) -> Option<&'v Value> {
    path.iter().try_fold(doc, |v, step| match step {
        PathStep::Key(k) => v.get(k),
        PathStep::Index(i) => v.get(*i),
    })
}

fn get_mut<'v>(doc: &'v mut Value, path: &[PathStep]) -> Option<&'v mut Value> {
    path.iter().try_fold(doc, |v, step| match step {
        PathStep::Key(k) => v.get_mut(k),
        PathStep::Index(i) => v.get_mut(*i),
    })
}

/// The seed with the mutations applied, as the bytes a caller would post.
fn mutate(seed: &Value, mutations: &[Mutation]) -> Vec<u8> {
    let mut doc = seed.clone();
    let mut bytes_ops = Vec::new();
    for m in mutations {
        let all = paths(&doc);
        match m {
            Mutation::Replace(at, value) => {
                if let Some(slot) = get_mut(&mut doc, &all[at % all.len()]) {
                    *slot = value.clone();
                }
            }
            Mutation::Remove(at) => {
                let path = &all[at % all.len()];
                if let Some((last, parent)) = path.split_last()
                    && let Some(parent) = get_mut(&mut doc, parent)
                {
                    match (parent, last) {
                        (Value::Object(map), PathStep::Key(k)) => {
                            map.remove(k);
                        }
                        (Value::Array(items), PathStep::Index(i)) if *i < items.len() => {
                            items.remove(*i);
                        }
                        _ => {}
                    }
                }
            }
            Mutation::Insert(at, key, value) => {
                if let Some(slot) = get_mut(&mut doc, &all[at % all.len()]) {
                    match slot {
                        Value::Object(map) => {
                            map.insert(key.clone(), value.clone());
                        }
                        Value::Array(items) => items.push(value.clone()),
                        _ => {}
                    }
                }
            }
            Mutation::Widen(at, n) => {
                if let Some(Value::Object(map)) = get_mut(&mut doc, &all[at % all.len()]) {
                    for i in 0..*n {
                        map.insert(format!("extra_{i}"), Value::String(format!("v{i}")));
                    }
                }
            }
            other => bytes_ops.push(other.clone()),
        }
    }
    let mut bytes = doc.to_string().into_bytes();
    for op in bytes_ops {
        match op {
            Mutation::Truncate(at) => bytes.truncate(at % (bytes.len() + 1)),
            Mutation::Flip(at, b) if !bytes.is_empty() => {
                let i = at % bytes.len();
                bytes[i] ^= b;
            }
            Mutation::Splice(at, insert) => {
                let i = at % (bytes.len() + 1);
                bytes.splice(i..i, insert);
            }
            _ => {}
        }
    }
    bytes
}

// ------------------------------------------------------------------- the checks

fn clean(error: &WireError) -> Result<(), TestCaseError> {
    prop_assert!(CODES.contains(&error.code), "unknown code: {error:?}");
    prop_assert!(!error.field.is_empty(), "no field named: {error:?}");
    prop_assert!(!error.message.is_empty(), "no message: {error:?}");
    Ok(())
}

fn near(t: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    let bound = Duration::days(MAX_TIME_DISTANCE_DAYS);
    t >= now - bound && t <= now + bound
}

fn fits(field: Field, value: &str) -> Result<(), TestCaseError> {
    prop_assert!(field.fits(value), "{field:?} accepted {value:?}");
    Ok(())
}

fn run(
    name: &str,
    cases: u32,
    seeds: Vec<Value>,
    check: impl Fn(&[u8]) -> Result<(), TestCaseError>,
) {
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        prop::sample::select(seeds),
        prop::collection::vec(mutation(), 1..4),
    );
    let result = runner.run(&strategy, |(seed, mutations)| {
        let body = mutate(&seed, &mutations);
        check(&body)
    });
    if let Err(failure) = result {
        panic!("{name}: {failure}");
    }
}

#[test]
fn the_alertmanager_parser_accepts_sound_payloads_or_rejects_cleanly() {
    let now = t0();
    let bounds = Bounds::default();
    let seeds = vec![
        serde_json::from_str(FIRING).unwrap(),
        serde_json::from_str(RESOLVED).unwrap(),
    ];
    run("alertmanager", cases(), seeds, |body| {
        match AlertmanagerPayload::parse(body, &bounds, now) {
            Err(error) => clean(&error)?,
            Ok(n) => {
                prop_assert!(n.alerts.len() <= bounds.max_alerts);
                for alert in &n.alerts {
                    prop_assert!(!alert.labels.is_empty());
                    prop_assert!(alert.labels.len() <= bounds.max_labels);
                    prop_assert!(alert.annotations.len() <= bounds.max_annotations);
                    prop_assert!(near(alert.starts_at, now), "{:?}", alert.starts_at);
                    if let Some(end) = alert.ends_at {
                        prop_assert!(near(end, now), "{end:?}");
                    }
                    for (name, value) in alert.labels.iter().chain(&alert.annotations) {
                        prop_assert!(!name.contains('\0') && !value.contains('\0'));
                    }
                }
            }
        }
        Ok(())
    });
}

#[test]
fn the_ci_deploy_parser_accepts_sound_payloads_or_rejects_cleanly() {
    let now = t0();
    run("ci deploy", cases(), vec![ci_seed()], |body| {
        match CiDeployPayload::parse(body, "prod-eu", now) {
            Err(error) => clean(&error)?,
            Ok(d) => {
                fits(Field::Namespace, &d.target.namespace)?;
                fits(Field::Name, &d.target.name)?;
                fits(Field::Kind, &d.target.kind)?;
                fits(Field::Revision, &d.revision)?;
                for (field, value) in [
                    (Field::Environment, &d.environment),
                    (Field::Region, &d.region),
                    (Field::Version, &d.version),
                    (Field::Commit, &d.commit_sha),
                    (Field::HelmRelease, &d.helm_release),
                ] {
                    if let Some(value) = value {
                        fits(field, value)?;
                    }
                }
                for image in &d.images {
                    fits(Field::Image, image)?;
                }
                prop_assert!(near(d.started_at, now), "{:?}", d.started_at);
                if let Some(finished) = d.finished_at {
                    prop_assert!(near(finished, now) && finished >= d.started_at);
                }
            }
        }
        Ok(())
    });
}

#[test]
fn the_flagger_parser_accepts_sound_payloads_or_rejects_cleanly() {
    let now = t0();
    let bounds = Bounds::default();
    let seeds = [FLAGGER_ROLLOUT, FLAGGER_EVENT, FLAGGER_ROLLBACK]
        .map(|s| serde_json::from_str(s).unwrap())
        .to_vec();
    for hook in Hook::ALL {
        run(hook.as_str(), cases().div_ceil(4), seeds.clone(), |body| {
            match FlaggerPayload::parse(body, hook, "prod-eu", &bounds, now) {
                Err(error) => clean(&error)?,
                Ok(call) => {
                    fits(Field::Namespace, &call.target.namespace)?;
                    fits(Field::Name, &call.target.name)?;
                    if let Some(event) = &call.event {
                        prop_assert!(near(event.at, now), "{:?}", event.at);
                    }
                }
            }
            Ok(())
        });
    }
}

#[test]
fn the_signal_parser_accepts_sound_payloads_or_rejects_cleanly() {
    let now = t0();
    run("signal", cases(), signal_seeds(), |body| {
        match SignalPayload::parse(body, "prod-eu", now) {
            Err(error) => clean(&error)?,
            Ok(s) => {
                prop_assert!(near(s.started_at, now), "{:?}", s.started_at);
                if let Some(ended) = s.ended_at {
                    prop_assert!(near(ended, now) && ended >= s.started_at);
                }
                for value in [s.value, s.baseline].into_iter().flatten() {
                    prop_assert!(value.is_finite(), "{value}");
                }
                if let Some(target) = &s.target {
                    fits(Field::Namespace, &target.namespace)?;
                    fits(Field::Name, &target.name)?;
                }
            }
        }
        Ok(())
    });
}
