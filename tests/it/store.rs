//! The store contract: the same cases on PostgreSQL and on SQLite, same answers.

use chrono::{DateTime, Utc};

use rollwarden::domain::{AlertStatus, AlertTarget, Notification, TargetRef};
use rollwarden::store::AlertQuery;
use rollwarden::wire::Bounds;
use rollwarden::wire::alertmanager::AlertmanagerPayload;

use crate::api::notification;
use crate::on_both_backends;
use crate::support::{Backend, FIRING, RESOLVED, TestStore, t0};

fn parse(body: &str) -> Notification {
    AlertmanagerPayload::parse(body.as_bytes(), &Bounds::default(), t0()).unwrap()
}

fn one(fp: &str, name: &str, ns: &str, status: &str, starts: &str) -> Notification {
    parse(&notification(name, fp, ns, status, starts))
}

fn query() -> AlertQuery {
    AlertQuery {
        limit: 100,
        ..AlertQuery::default()
    }
}

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// A staleness bound that leaves nothing out.
const LONG_AGO: DateTime<Utc> = DateTime::<Utc>::UNIX_EPOCH;

async fn outcomes_come_back_in_order_with_duplicates_marked(backend: Backend) {
    let db = TestStore::new(backend).await;
    let a = one("a1", "A", "prod", "firing", "2026-08-22T10:00:00Z");
    let b = one("b1", "B", "prod", "firing", "2026-08-22T10:00:00Z");
    // Duplicates inside one batch (HA peers arriving together) and across batches.
    let first = db
        .store
        .record_notifications(&[b.clone(), a.clone(), b.clone()])
        .await
        .unwrap();
    assert_eq!(
        first.iter().map(|o| o.duplicate).collect::<Vec<_>>(),
        [false, false, true]
    );
    assert_eq!(first[0].receipt_id, first[2].receipt_id);
    assert_ne!(first[0].receipt_id, first[1].receipt_id);
    assert_eq!(
        first.iter().map(|o| o.alerts_written).collect::<Vec<_>>(),
        [1, 1, 0]
    );

    let second = db
        .store
        .record_notifications(std::slice::from_ref(&a))
        .await
        .unwrap();
    assert!(second[0].duplicate);
    assert_eq!(second[0].receipt_id, first[1].receipt_id);
    let receipt = db
        .store
        .receipt(first[0].receipt_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(receipt.duplicate_count, 1);
    assert_eq!(receipt.body, b.raw);
    assert_eq!(receipt.received_at, t0());
    assert!(db.store.receipt(999_999).await.unwrap().is_none());
    assert!(db.store.record_notifications(&[]).await.unwrap().is_empty());
}

/// Each outcome hands back the alert rows it carried last, exactly as a read of them by
/// key returns them (what the engine merges instead of reading them back); a row the
/// write left alone is not handed back.
async fn written_alerts_are_what_a_read_back_returns(backend: Backend) {
    let db = TestStore::new(backend).await;
    let x = one("x1", "A", "prod", "firing", "2026-08-22T10:00:00Z");
    let y = one("y1", "B", "prod", "firing", "2026-08-22T10:00:00Z");
    let mut x_again = one("x1", "A", "staging", "firing", "2026-08-22T10:00:00Z");
    x_again.received_at = t0() + chrono::Duration::nanoseconds(1_500);
    let outcomes = db
        .store
        .record_notifications(&[x, y, x_again])
        .await
        .unwrap();
    let fps = |o: &rollwarden::store::IngestOutcome| {
        o.written
            .iter()
            .map(|w| w.alert.fingerprint.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        outcomes.iter().map(fps).collect::<Vec<_>>(),
        [vec![], vec!["y1".to_string()], vec!["x1".to_string()]],
        "each row with the notification that carried it last"
    );
    let mut written: Vec<_> = outcomes.iter().flat_map(|o| o.written.clone()).collect();
    written.sort_by_key(|w| w.alert.fingerprint.clone());
    let keys: Vec<_> = written
        .iter()
        .map(|w| (w.alert.fingerprint.clone(), w.alert.starts_at))
        .collect();
    let mut read = db.store.alerts_by_key(&keys).await.unwrap();
    read.sort_by_key(|r| r.alert.fingerprint.clone());
    assert_eq!(read, written, "read back as the ingest wrote them");
    assert_eq!(
        written[0].alert.labels["namespace"], "staging",
        "the later content"
    );
    assert_eq!(
        written[0].updated_at,
        t0() + chrono::Duration::microseconds(1)
    );

    // Resolved, then delivered firing again: resolution is final, nothing written.
    let resolved = one("x1", "A", "staging", "resolved", "2026-08-22T10:00:00Z");
    let outcome = db.store.record_notifications(&[resolved]).await.unwrap();
    assert_eq!(outcome[0].written[0].alert.status, AlertStatus::Resolved);
    let firing = one("x1", "A", "canary", "firing", "2026-08-22T10:00:00Z");
    let outcome = db.store.record_notifications(&[firing]).await.unwrap();
    assert!(!outcome[0].duplicate);
    assert!(outcome[0].written.is_empty(), "{:?}", outcome[0].written);
}

/// Re-deliveries of stored notifications in a batch with new ones: each new one writes
/// its alerts, each re-delivery only moves its firing alerts' last delivery (and not
/// within a minute of the last). PostgreSQL writes such a batch in one statement.
async fn a_batch_mixes_redeliveries_with_new_notifications(backend: Backend) {
    let db = TestStore::new(backend).await;
    let kept = one("k1", "A", "prod", "firing", "2026-08-22T10:00:00Z");
    let peer = one("p1", "B", "prod", "firing", "2026-08-22T10:00:00Z");
    db.store
        .record_notifications(&[kept.clone(), peer.clone()])
        .await
        .unwrap();
    let hours = |h: i64| t0() + chrono::Duration::hours(h);
    let mut kept_again = kept; // repeat_interval, four hours on
    kept_again.received_at = hours(4);
    let mut fresh = one("n1", "C", "prod", "firing", "2026-08-22T11:00:00Z");
    fresh.received_at = hours(4);
    let mut peer_again = peer; // an HA peer, half a minute later
    peer_again.received_at = t0() + chrono::Duration::seconds(30);
    let outcomes = db
        .store
        .record_notifications(&[kept_again, fresh, peer_again])
        .await
        .unwrap();
    assert_eq!(
        outcomes.iter().map(|o| o.duplicate).collect::<Vec<_>>(),
        [true, false, true]
    );
    assert_eq!(
        outcomes
            .iter()
            .map(|o| o.alerts_written)
            .collect::<Vec<_>>(),
        [0, 1, 0]
    );
    assert_eq!(
        outcomes.iter().map(|o| o.written.len()).collect::<Vec<_>>(),
        [0, 1, 0]
    );
    let updated = |alerts: &[rollwarden::store::StoredAlert], fp: &str| {
        alerts
            .iter()
            .find(|a| a.fingerprint == fp)
            .unwrap()
            .updated_at
    };
    let listed = db.store.list_alerts(&query()).await.unwrap();
    assert_eq!(listed.len(), 3);
    assert_eq!(updated(&listed, "k1"), hours(4), "re-sent: fresh again");
    assert_eq!(updated(&listed, "p1"), t0(), "within the minute: unchanged");
    assert_eq!(updated(&listed, "n1"), hours(4));

    // An occurrence carried twice in one batch, once by a re-delivery: only the new
    // notification's content is merged in (PostgreSQL's transaction path).
    let mut first_again = one("n1", "C", "prod", "firing", "2026-08-22T11:00:00Z");
    first_again.received_at = hours(5) + chrono::Duration::seconds(10);
    let mut update = one("n1", "C", "staging", "firing", "2026-08-22T11:00:00Z");
    update.received_at = hours(5);
    let outcomes = db
        .store
        .record_notifications(&[first_again, update])
        .await
        .unwrap();
    assert_eq!(
        outcomes.iter().map(|o| o.duplicate).collect::<Vec<_>>(),
        [true, false]
    );
    let listed = db.store.list_alerts(&query()).await.unwrap();
    let n1 = listed.iter().find(|a| a.fingerprint == "n1").unwrap();
    assert_eq!(n1.labels["namespace"], "staging");
    assert_eq!(n1.updated_at, hours(5));
    assert_eq!(n1.last_receipt_id, outcomes[1].receipt_id);
}

/// Two starts a nanosecond apart in one notification (from a hostile caller, or a
/// clock) are one occurrence, as both stores keep microseconds: PostgreSQL refused the
/// whole batch (every caller's notification in it) when one insert updated a row twice.
async fn instants_a_nanosecond_apart_are_one_occurrence(backend: Backend) {
    let db = TestStore::new(backend).await;
    let twice = notification(
        "C",
        "z1",
        "prod",
        "firing",
        "2026-08-22T10:00:00.000000001Z",
    )
    .replace(
        r#""alerts":["#,
        &format!(
            r#""alerts":[{},"#,
            serde_json::from_str::<serde_json::Value>(&notification(
                "C",
                "z1",
                "prod",
                "firing",
                "2026-08-22T10:00:00.000000002Z"
            ))
            .unwrap()["alerts"][0]
        ),
    );
    let outcome = db
        .store
        .record_notifications(&[parse(&twice)])
        .await
        .unwrap();
    assert_eq!(outcome[0].alerts_written, 2, "both carried, one row");
    let stored = db.store.list_alerts(&query()).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].starts_at, at("2026-08-22T10:00:00Z"));

    // The store holds them to one occurrence itself, not only the wire's parser: a
    // notification built in the process (a replay, a test) with starts a nanosecond
    // apart is one row too.
    let mut built = parse(&twice);
    built.received_at = t0() + chrono::Duration::hours(1);
    built.alerts[1].starts_at = built.alerts[0].starts_at + chrono::Duration::nanoseconds(1);
    let other = TestStore::new(backend).await;
    let outcome = other.store.record_notifications(&[built]).await.unwrap();
    assert_eq!(outcome[0].written.len(), 1, "{:?}", outcome[0].written);
    let stored = other.store.list_alerts(&query()).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].starts_at, at("2026-08-22T10:00:00Z"));
}

async fn resolution_wins_within_and_across_batches(backend: Backend) {
    let db = TestStore::new(backend).await;
    // Resolved before firing in one batch: still resolved.
    db.store
        .record_notifications(&[parse(RESOLVED), parse(FIRING)])
        .await
        .unwrap();
    let alerts = db.store.list_alerts(&query()).await.unwrap();
    assert_eq!(alerts.len(), 2);
    assert!(
        alerts
            .iter()
            .all(|a| a.status == AlertStatus::Resolved && a.ends_at.is_some())
    );

    let other = TestStore::new(backend).await;
    other
        .store
        .record_notifications(&[parse(FIRING)])
        .await
        .unwrap();
    other
        .store
        .record_notifications(&[parse(RESOLVED)])
        .await
        .unwrap();
    let mut across = other.store.list_alerts(&query()).await.unwrap();
    let mut within = alerts;
    for a in across.iter_mut().chain(within.iter_mut()) {
        // Ids and receipt links differ by construction; the alert state must not.
        (a.id, a.first_receipt_id, a.last_receipt_id) = (0, 0, 0);
    }
    assert_eq!(across, within);
}

async fn list_alerts_filters_and_pages(backend: Backend) {
    let db = TestStore::new(backend).await;
    db.store
        .record_notifications(&[
            one(
                "a1",
                "HighErrorRate",
                "prod",
                "firing",
                "2026-08-22T10:00:00Z",
            ),
            one(
                "a2",
                "HighLatency",
                "prod",
                "resolved",
                "2026-08-22T11:00:00Z",
            ),
            one(
                "a3",
                "HighErrorRate",
                "staging",
                "firing",
                "2026-08-22T12:00:00Z",
            ),
        ])
        .await
        .unwrap();
    let fps = |alerts: Vec<rollwarden::store::StoredAlert>| {
        alerts
            .into_iter()
            .map(|a| a.fingerprint)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        fps(db.store.list_alerts(&query()).await.unwrap()),
        ["a3", "a2", "a1"]
    );
    let q = AlertQuery {
        status: Some(AlertStatus::Firing),
        ..query()
    };
    assert_eq!(fps(db.store.list_alerts(&q).await.unwrap()), ["a3", "a1"]);
    let q = AlertQuery {
        alertname: Some("HighErrorRate".into()),
        labels: vec![("namespace".into(), "prod".into())],
        ..query()
    };
    assert_eq!(fps(db.store.list_alerts(&q).await.unwrap()), ["a1"]);
    let q = AlertQuery {
        labels: vec![
            ("namespace".into(), "prod".into()),
            ("namespace".into(), "staging".into()),
        ],
        ..query()
    };
    assert!(db.store.list_alerts(&q).await.unwrap().is_empty());
    let q = AlertQuery {
        since: Some(at("2026-08-22T11:00:00Z")),
        until: Some(at("2026-08-22T12:00:00Z")),
        ..query()
    };
    assert_eq!(fps(db.store.list_alerts(&q).await.unwrap()), ["a2"]);
    let all = db.store.list_alerts(&query()).await.unwrap();
    let q = AlertQuery {
        before_id: Some(all[0].id),
        limit: 1,
        ..query()
    };
    assert_eq!(fps(db.store.list_alerts(&q).await.unwrap()), ["a2"]);
}

/// A label query is exact whether or not the labels index has merged its new entries:
/// on PostgreSQL they wait in the index's pending list (migration 0008) until
/// `maintain` merges them; SQLite sets nothing aside.
async fn label_queries_are_exact_before_and_after_maintain(backend: Backend) {
    let db = TestStore::new(backend).await;
    let alerts = |namespace: &'static str| {
        let store = db.store.clone();
        async move {
            let q = AlertQuery {
                labels: vec![("namespace".into(), namespace.into())],
                ..query()
            };
            let listed = store.list_alerts(&q).await.unwrap();
            listed
                .into_iter()
                .map(|a| a.fingerprint)
                .collect::<Vec<_>>()
        }
    };
    db.store
        .record_notifications(&[
            one(
                "m1",
                "HighErrorRate",
                "prod",
                "firing",
                "2026-08-22T10:00:00Z",
            ),
            one(
                "m2",
                "HighErrorRate",
                "staging",
                "firing",
                "2026-08-22T10:00:00Z",
            ),
        ])
        .await
        .unwrap();
    assert_eq!(alerts("prod").await, ["m1"]);
    let merged = db.store.maintain().await.unwrap();
    match backend {
        Backend::Postgres => assert!(merged > 0, "the new entries were pending: {merged}"),
        Backend::Sqlite => assert_eq!(merged, 0),
    }
    assert_eq!(
        db.store.maintain().await.unwrap(),
        0,
        "nothing left to merge"
    );
    assert_eq!(alerts("prod").await, ["m1"]);
    assert_eq!(alerts("staging").await, ["m2"]);
}

/// Label lists page newest first, exact, whatever the label's values hold and however
/// the list is read: SQLite walks the alerts' label signatures (migration 0010), by
/// themselves or inside a time range, and a re-delivery that changes an alert's labels
/// changes what finds it.
async fn label_lists_are_exact_for_hostile_values_and_pages(backend: Backend) {
    let db = TestStore::new(backend).await;
    let hostile = [
        "prod",
        "it's \"prod\"",
        "a=b,c\\d",
        "$.namespace",
        "\u{1F680} prod\u{200B}",
        "%_*",
    ];
    // 36 alerts a minute apart, the namespaces in turn.
    let batch: Vec<_> = (0..36)
        .map(|i| {
            let starts = format!("2026-08-22T10:{i:02}:00Z");
            let fp = format!("h{i:02}");
            one(&fp, "HighErrorRate", hostile[i % 6], "firing", &starts)
        })
        .collect();
    db.store.record_notifications(&batch).await.unwrap();
    let list = |labels: Vec<(&str, &str)>, extra: AlertQuery| {
        let q = AlertQuery {
            labels: labels
                .into_iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            ..extra
        };
        let store = db.store.clone();
        async move {
            let listed = store.list_alerts(&q).await.unwrap();
            listed
                .into_iter()
                .map(|a| (a.id, a.fingerprint))
                .collect::<Vec<_>>()
        }
    };
    let fps = |v: Vec<(i64, String)>| v.into_iter().map(|(_, fp)| fp).collect::<Vec<_>>();
    let expected = |n: usize, range: std::ops::Range<usize>| {
        range
            .rev()
            .filter(|i| i % 6 == n)
            .map(|i| format!("h{i:02}"))
            .collect::<Vec<_>>()
    };
    for (n, namespace) in hostile.into_iter().enumerate() {
        let by_ns = || vec![("namespace", namespace)];
        let all = list(by_ns(), query()).await;
        assert_eq!(fps(all.clone()), expected(n, 0..36), "{namespace:?}");
        // Pages of two, each after the last id of the one before.
        let mut paged = Vec::new();
        let mut before = None;
        loop {
            let q = AlertQuery {
                before_id: before,
                limit: 2,
                ..query()
            };
            let page = list(by_ns(), q).await;
            let Some((last, _)) = page.last() else { break };
            before = Some(*last);
            paged.extend(page);
        }
        assert_eq!(paged, all, "{namespace:?} paged");
        // Inside a range that ends (read through starts_at, not the signatures).
        let q = AlertQuery {
            since: Some(at("2026-08-22T10:06:00Z")),
            until: Some(at("2026-08-22T10:18:00Z")),
            ..query()
        };
        assert_eq!(
            fps(list(by_ns(), q).await),
            expected(n, 6..18),
            "{namespace:?}"
        );
        // Two labels: both must hold.
        let both = vec![("namespace", namespace), ("service", "checkout")];
        assert_eq!(fps(list(both, query()).await), expected(n, 0..36));
        let other = vec![("namespace", namespace), ("service", "cart")];
        assert!(list(other, query()).await.is_empty(), "{namespace:?}");
    }
    // A value a hostile one only resembles matches nothing.
    for near in [
        "it's \\\"prod\\\"",
        "a=b",
        "prod ",
        "PROD",
        "%",
        "\u{1F680} prod",
    ] {
        assert!(
            list(vec![("namespace", near)], query()).await.is_empty(),
            "{near:?}"
        );
    }
    // The same occurrence delivered again with another namespace moves to it.
    let moved = one(
        "h00",
        "HighErrorRate",
        "moved",
        "firing",
        "2026-08-22T10:00:00Z",
    );
    db.store.record_notifications(&[moved]).await.unwrap();
    assert_eq!(
        fps(list(vec![("namespace", "moved")], query()).await),
        ["h00"]
    );
    let prod = fps(list(vec![("namespace", "prod")], query()).await);
    assert_eq!(prod, expected(0, 1..36));
}

/// The event hub's two reads of the trail: whole events, or only their ids, in the
/// same order and pages.
async fn audit_ids_are_the_events_ids(backend: Backend) {
    let db = TestStore::new(backend).await;
    for (i, kind) in ["decision", "approved", "freeze"].into_iter().enumerate() {
        db.store
            .record_audit(
                "engine",
                kind,
                &format!("action:{i}"),
                &serde_json::json!({"n": i}),
                at("2026-08-22T10:00:00Z"),
            )
            .await
            .unwrap();
    }
    let events = db.store.audit_events_after(0, 10).await.unwrap();
    let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(db.store.audit_event_ids_after(0, 10).await.unwrap(), ids);
    assert_eq!(
        db.store.audit_event_ids_after(ids[0], 1).await.unwrap(),
        [ids[1]]
    );
    assert!(
        db.store
            .audit_event_ids_after(ids[2], 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn ping_answers_while_open(backend: Backend) {
    let db = TestStore::new(backend).await;
    db.store.ping().await.unwrap();
    assert_eq!(
        db.store.backend(),
        match backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    );
    db.store.close().await;
    assert!(db.store.ping().await.is_err());
}

/// Alerts carry the target ingest mapped them to: a target's read returns its own and
/// the unmapped ones, the untargeted read the newest firing ones and every resolved
/// one; a new classifier forgets every mapping, and mapping leaves ingest's alone.
async fn alerts_are_read_by_the_target_they_are_mapped_to(backend: Backend) {
    let db = TestStore::new(backend).await;
    let mapped = |fp: &str, target: AlertTarget| {
        let mut n = one(fp, "A", "prod", "firing", "2026-08-22T10:00:00Z");
        n.targets = vec![target];
        n
    };
    let checkout = TargetRef::parse("default/prod/Deployment/checkout").unwrap();
    let batch = [
        mapped("t1", AlertTarget::Target(checkout.clone())),
        mapped("t2", AlertTarget::Target(checkout.clone())),
        mapped("u1", AlertTarget::Untargeted),
        mapped("u2", AlertTarget::Untargeted),
        mapped("i1", AlertTarget::Ignored),
        one("n1", "A", "prod", "firing", "2026-08-22T10:00:00Z"),
        mapped(
            "o1",
            AlertTarget::Target(TargetRef::parse("default/prod/Deployment/cart").unwrap()),
        ),
    ];
    db.store.record_notifications(&batch).await.unwrap();
    let since = at("2026-08-22T09:00:00Z");
    let fps = |alerts: Vec<rollwarden::store::EvaluationAlert>| {
        alerts
            .into_iter()
            .map(|a| a.alert.fingerprint)
            .collect::<Vec<_>>()
    };
    let own = db
        .store
        .target_alerts_for_evaluation(&checkout.key(), since, LONG_AGO)
        .await
        .unwrap();
    let untargeted = db
        .store
        .untargeted_alerts_for_evaluation(since, LONG_AGO, 1)
        .await
        .unwrap();
    assert_eq!(untargeted.len(), 1);
    // An evaluation reads of each row what a list shows of it, as the domain's alert.
    let listed = db.store.list_alerts(&query()).await.unwrap();
    for read in own.iter().chain(&untargeted) {
        let row = listed.iter().find(|a| a.id == read.id).unwrap();
        assert_eq!(
            (read.updated_at, &read.alert),
            (row.updated_at, &row.to_alert())
        );
    }
    assert_eq!(fps(own), ["n1", "t1", "t2"]);
    let unmapped = db
        .store
        .unmapped_alerts(since, LONG_AGO, 0, 100)
        .await
        .unwrap();
    assert_eq!(fps(unmapped.clone()), ["n1"]);
    db.store
        .map_alert_targets(&[(unmapped[0].id, checkout.key())])
        .await
        .unwrap();
    assert!(
        db.store
            .unmapped_alerts(since, LONG_AGO, 0, 100)
            .await
            .unwrap()
            .is_empty()
    );
    // Another classifier: every mapping is forgotten, once.
    assert!(db.store.reset_alert_targets("a").await.unwrap());
    assert!(!db.store.reset_alert_targets("a").await.unwrap());
    assert_eq!(
        db.store
            .unmapped_alerts(since, LONG_AGO, 0, 100)
            .await
            .unwrap()
            .len(),
        7
    );
    let own = db
        .store
        .target_alerts_for_evaluation(&checkout.key(), since, LONG_AGO)
        .await
        .unwrap();
    assert_eq!(own.len(), 7, "unmapped alerts are read by every target");
    // Ingest's own mapping is not overwritten by a late mapping.
    db.store
        .record_notifications(&[mapped("t3", AlertTarget::Target(checkout.clone()))])
        .await
        .unwrap();
    let all = db.store.list_alerts(&query()).await.unwrap();
    let t3 = all.iter().find(|a| a.fingerprint == "t3").unwrap().id;
    db.store
        .map_alert_targets(&[(t3, "default/prod/Deployment/cart".into())])
        .await
        .unwrap();
    let cart = db
        .store
        .target_alerts_for_evaluation("default/prod/Deployment/cart", since, LONG_AGO)
        .await
        .unwrap();
    assert_eq!(cart.len(), 7);
    assert!(!fps(cart).contains(&"t3".to_string()));
}

on_both_backends!(
    alerts_are_read_by_the_target_they_are_mapped_to,
    outcomes_come_back_in_order_with_duplicates_marked,
    written_alerts_are_what_a_read_back_returns,
    a_batch_mixes_redeliveries_with_new_notifications,
    instants_a_nanosecond_apart_are_one_occurrence,
    resolution_wins_within_and_across_batches,
    list_alerts_filters_and_pages,
    label_queries_are_exact_before_and_after_maintain,
    label_lists_are_exact_for_hostile_values_and_pages,
    audit_ids_are_the_events_ids,
    ping_answers_while_open,
);

mod engine_inputs {
    //! The store methods the decision engine reads and writes.

    use chrono::Duration;
    use serde_json::json;

    use rollwarden::domain::{AlertStatus, Scope, Signal, SignalKind, SignalSource, TargetRef};
    use rollwarden::store::{DecisionHead, DecisionQuery, NewDecision};

    use super::{LONG_AGO, at, one};
    use crate::on_both_backends;
    use crate::support::{Backend, TestStore, t0};

    fn decision(
        target: &str,
        verdict: &str,
        hash: &str,
        at: chrono::DateTime<chrono::Utc>,
    ) -> NewDecision {
        NewDecision {
            target_key: target.into(),
            verdict: verdict.into(),
            reason: format!("{verdict} because {hash}"),
            inputs_hash: hash.into(),
            policy_version: "runbooks-1".into(),
            suspect_deploy_id: None,
            rollback_to_id: None,
            decision: json!({"verdict": verdict, "hash": hash}),
            decided_at: at,
        }
    }

    fn signal(fingerprint: &str, value: f64, ended: Option<&str>) -> Signal {
        Signal {
            kind: SignalKind::CustomerReports,
            target: Some(TargetRef::deployment("default", "prod", "checkout")),
            scope: Scope::Any,
            dependency: None,
            value: Some(value),
            baseline: None,
            inconclusive: None,
            started_at: at("2026-08-22T14:00:00Z"),
            ended_at: ended.map(at),
            observations: 1,
            source: SignalSource::Api,
            fingerprint: fingerprint.into(),
            summary: "customer reports".into(),
        }
    }

    async fn a_decision_is_written_only_when_verdict_or_inputs_change(backend: Backend) {
        let db = TestStore::new(backend).await;
        let key = "default/prod/Deployment/checkout";
        let (first, created) = db
            .store
            .record_decision(&decision(key, "monitor", "h1", t0()))
            .await
            .unwrap();
        assert!(created);
        let later = t0() + Duration::seconds(10);
        let (same, created) = db
            .store
            .record_decision(&decision(key, "monitor", "h1", later))
            .await
            .unwrap();
        assert!(!created, "an unchanged evaluation writes nothing");
        // What record_decision hands back is what the store holds, either way.
        assert_eq!(same, first);
        assert_eq!(db.store.decision(first.id).await.unwrap().unwrap(), first);
        let (changed, created) = db
            .store
            .record_decision(&decision(key, "rollback", "h2", later))
            .await
            .unwrap();
        assert!(created && changed.id > first.id);
        assert_eq!(
            db.store.decision(changed.id).await.unwrap().unwrap(),
            changed
        );
        db.store
            .record_decision(&decision("default/prod/Deployment/cart", "ok", "h0", later))
            .await
            .unwrap();

        assert_eq!(
            db.store
                .latest_decision(key)
                .await
                .unwrap()
                .unwrap()
                .verdict,
            "rollback"
        );
        assert_eq!(
            db.store.decision(first.id).await.unwrap().unwrap().decision,
            json!({"verdict": "monitor", "hash": "h1"})
        );
        // The standing decision's head: the latest, without its evidence.
        let head = db.store.decision_head(key).await.unwrap().unwrap();
        assert_eq!(head, DecisionHead::from(&changed));
        assert_eq!(
            (head.verdict.as_str(), head.inputs_hash.as_str()),
            ("rollback", "h2")
        );
        assert_eq!(
            db.store
                .decision_head("default/prod/Deployment/nothing")
                .await
                .unwrap(),
            None
        );
        assert_eq!(db.store.unsettled_targets().await.unwrap(), [key]);
        // Each target's standing decision, by key, paged by key.
        let standing: Vec<_> = db
            .store
            .standing_decisions(None, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|d| (d.target_key, d.verdict))
            .collect();
        assert_eq!(
            standing,
            [
                ("default/prod/Deployment/cart".to_string(), "ok".to_string()),
                (key.to_string(), "rollback".to_string()),
            ]
        );
        let page = db.store.standing_decisions(None, 1).await.unwrap();
        assert_eq!(page.len(), 1);
        let rest = db
            .store
            .standing_decisions(Some(&page[0].target_key), 10)
            .await
            .unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].id, changed.id);
        let q = DecisionQuery {
            target: Some(key.into()),
            limit: 10,
            ..Default::default()
        };
        let listed: Vec<_> = db
            .store
            .list_decisions(&q)
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.verdict)
            .collect();
        assert_eq!(listed, ["rollback", "monitor"]);
        let q = DecisionQuery {
            verdict: Some("ok".into()),
            limit: 10,
            ..Default::default()
        };
        assert_eq!(db.store.list_decisions(&q).await.unwrap().len(), 1);
    }

    async fn concurrent_identical_evaluations_record_one_decision(backend: Backend) {
        let db = TestStore::new(backend).await;
        let key = "default/prod/Deployment/checkout";
        let same = decision(key, "rollback", "same", t0());
        let writes = (0..8).map(|_| db.store.record_decision(&same));
        let results = futures::future::join_all(writes).await;
        let created = results
            .into_iter()
            .filter(|r| r.as_ref().unwrap().1)
            .count();
        assert_eq!(created, 1);
    }

    async fn posted_signals_are_idempotent_and_end(backend: Backend) {
        let db = TestStore::new(backend).await;
        let (id, new) = db
            .store
            .record_signal(&signal("support-7", 12.0, None), t0())
            .await
            .unwrap();
        assert!(new);
        // A retry without its start time (the poster defaulted it to "now"): same signal.
        let mut retry = signal("support-7", 25.0, None);
        retry.started_at += Duration::minutes(3);
        let (again, new) = db.store.record_signal(&retry, t0()).await.unwrap();
        assert_eq!((again, new), (id, false));
        let active = db
            .store
            .signals_for_evaluation(at("2026-08-22T13:00:00Z"))
            .await
            .unwrap();
        assert_eq!(active, [signal("support-7", 25.0, None)]);
        db.store
            .record_signal(
                &signal("support-7", 25.0, Some("2026-08-22T14:10:00Z")),
                t0(),
            )
            .await
            .unwrap();
        assert_eq!(
            db.store
                .signals_for_evaluation(at("2026-08-22T14:05:00Z"))
                .await
                .unwrap()
                .len(),
            1
        );
        assert!(
            db.store
                .signals_for_evaluation(at("2026-08-22T14:20:00Z"))
                .await
                .unwrap()
                .is_empty()
        );
    }

    async fn evaluation_sees_firing_and_recently_resolved_alerts(backend: Backend) {
        let db = TestStore::new(backend).await;
        db.store
            .record_notifications(&[
                one(
                    "f1",
                    "HighErrorRate",
                    "prod",
                    "firing",
                    "2026-08-22T10:00:00Z",
                ),
                // api::notification resolves at 15:00.
                one(
                    "r1",
                    "HighLatency",
                    "prod",
                    "resolved",
                    "2026-08-22T11:00:00Z",
                ),
            ])
            .await
            .unwrap();
        let fps = |v: Vec<rollwarden::store::EvaluationAlert>| {
            v.into_iter()
                .map(|a| a.alert.fingerprint)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            fps(db
                .store
                .alerts_for_evaluation(at("2026-08-22T14:00:00Z"), LONG_AGO, 0, 100)
                .await
                .unwrap()),
            ["f1", "r1"]
        );
        assert_eq!(
            fps(db
                .store
                .alerts_for_evaluation(at("2026-08-22T15:00:01Z"), LONG_AGO, 0, 100)
                .await
                .unwrap()),
            ["f1"]
        );
        // Paged in id order: the page after f1 holds r1, and the one after that nothing.
        let first = db
            .store
            .alerts_for_evaluation(at("2026-08-22T14:00:00Z"), LONG_AGO, 0, 1)
            .await
            .unwrap();
        assert_eq!(first.len(), 1);
        let second = db
            .store
            .alerts_for_evaluation(at("2026-08-22T14:00:00Z"), LONG_AGO, first[0].id, 1)
            .await
            .unwrap();
        assert_eq!(
            fps(first)
                .into_iter()
                .chain(fps(second.clone()))
                .collect::<Vec<_>>(),
            ["f1", "r1"]
        );
        assert!(
            db.store
                .alerts_for_evaluation(at("2026-08-22T14:00:00Z"), LONG_AGO, second[0].id, 1)
                .await
                .unwrap()
                .is_empty()
        );
    }

    /// A firing alert whose resolve never came leaves evaluation once Alertmanager has
    /// not delivered it for the staleness bound; it stays stored, and is counted. A
    /// re-send (a duplicate receipt) keeps it fresh.
    async fn a_firing_alert_not_redelivered_goes_stale_but_stays_stored(backend: Backend) {
        let db = TestStore::new(backend).await;
        // Both received at t0 (14:03).
        let lost = one(
            "lost",
            "HighErrorRate",
            "prod",
            "firing",
            "2026-08-22T10:00:00Z",
        );
        let resent = one(
            "kept",
            "HighLatency",
            "prod",
            "firing",
            "2026-08-22T10:00:00Z",
        );
        db.store
            .record_notifications(&[lost, resent.clone()])
            .await
            .unwrap();
        let fps = |v: Vec<rollwarden::store::EvaluationAlert>| {
            v.into_iter()
                .map(|a| a.alert.fingerprint)
                .collect::<Vec<_>>()
        };
        let window = |fresh_since: &str| {
            let store = db.store.clone();
            let fresh_since = at(fresh_since);
            async move {
                store
                    .alerts_for_evaluation(at("2026-08-22T14:00:00Z"), fresh_since, 0, 100)
                    .await
                    .unwrap()
            }
        };
        // Delivered at 14:03: fresh for a bound that starts at or before then.
        assert_eq!(fps(window("2026-08-22T14:03:00Z").await), ["kept", "lost"]);
        assert_eq!(
            db.store
                .count_stale_alerts(at("2026-08-22T14:03:00Z"))
                .await
                .unwrap(),
            0
        );
        // Alertmanager re-sends `kept` at 18:03 (repeat_interval): the same content, a
        // duplicate receipt, which still counts as a delivery.
        let mut again = resent;
        again.received_at = at("2026-08-22T18:03:00Z");
        let outcome = db
            .store
            .record_notifications(&[again.clone()])
            .await
            .unwrap();
        assert!(outcome[0].duplicate);
        // A re-send seconds later (an HA peer) writes nothing more.
        again.received_at = at("2026-08-22T18:03:30Z");
        db.store.record_notifications(&[again]).await.unwrap();
        // At 18:33 with a 4h30 bound (fresh since 14:03:01) `lost` is stale.
        assert_eq!(fps(window("2026-08-22T14:03:01Z").await), ["kept"]);
        assert_eq!(
            db.store
                .count_stale_alerts(at("2026-08-22T14:03:01Z"))
                .await
                .unwrap(),
            1
        );
        // Stale is not gone: the alert is stored and listed, still firing.
        let listed = db.store.list_alerts(&super::query()).await.unwrap();
        assert_eq!(listed.len(), 2);
        assert!(listed.iter().all(|a| a.status == AlertStatus::Firing));
        let kept = listed.iter().find(|a| a.fingerprint == "kept").unwrap();
        assert_eq!(kept.updated_at, at("2026-08-22T18:03:00Z"));
    }

    async fn alerts_are_read_back_by_their_keys_as_they_stand(backend: Backend) {
        let db = TestStore::new(backend).await;
        let start = at("2026-08-22T10:00:00Z");
        db.store
            .record_notifications(&[
                one(
                    "f1",
                    "HighErrorRate",
                    "prod",
                    "firing",
                    "2026-08-22T10:00:00Z",
                ),
                one(
                    "o1",
                    "HighLatency",
                    "prod",
                    "firing",
                    "2026-08-22T10:00:00Z",
                ),
            ])
            .await
            .unwrap();
        let key = |fp: &str, s: chrono::DateTime<chrono::Utc>| (fp.to_string(), s);
        let fps = |v: Vec<rollwarden::store::EvaluationAlert>| {
            v.into_iter()
                .map(|a| a.alert.fingerprint)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            fps(db.store.alerts_by_key(&[key("f1", start)]).await.unwrap()),
            ["f1"]
        );
        assert_eq!(
            fps(db
                .store
                .alerts_by_key(&[key("o1", start), key("f1", start), key("f1", start)])
                .await
                .unwrap()),
            ["f1", "o1"]
        );
        // Another start, or an unknown fingerprint, is another alert: none stored.
        let later = start + Duration::minutes(1);
        assert!(
            db.store
                .alerts_by_key(&[key("f1", later), key("zz", start)])
                .await
                .unwrap()
                .is_empty()
        );
        assert!(db.store.alerts_by_key(&[]).await.unwrap().is_empty());
        // A resolution is read back as it stands.
        db.store
            .record_notifications(&[one(
                "f1",
                "HighErrorRate",
                "prod",
                "resolved",
                "2026-08-22T10:00:00Z",
            )])
            .await
            .unwrap();
        let f1 = db.store.alerts_by_key(&[key("f1", start)]).await.unwrap();
        assert_eq!(
            f1[0].alert.status,
            rollwarden::domain::alert::AlertStatus::Resolved
        );
    }

    async fn no_freezes_or_rollbacks_on_a_fresh_store(backend: Backend) {
        let db = TestStore::new(backend).await;
        assert!(db.store.active_freezes(t0()).await.unwrap().is_empty());
        assert!(
            db.store
                .automatic_rollbacks("default/prod/Deployment/checkout", t0())
                .await
                .unwrap()
                .is_empty()
        );
    }

    /// A standing decision comes back briefly: the few fields a list of every target
    /// shows, decoded from the stored decision (the rest skipped).
    async fn a_standing_decision_comes_back_briefly(backend: Backend) {
        let db = TestStore::new(backend).await;
        let key = "default/prod/Deployment/checkout";
        let mut rollback = decision(key, "rollback", "h1", t0());
        rollback.decision =
            serde_json::from_str(include_str!("../fixtures/decision-rollback.json")).unwrap();
        db.store.record_decision(&rollback).await.unwrap();
        let standing = db.store.standing_decisions(None, 10).await.unwrap();
        let brief = &standing[0].brief;
        assert_eq!(standing[0].verdict, "rollback");
        assert_eq!(brief.region.as_deref(), Some("eu-west-1"));
        assert_eq!(brief.environment.as_deref(), Some("drill"));
        let fired: Vec<&str> = brief.fired.iter().map(|r| r.rule_id.as_str()).collect();
        assert_eq!(fired, ["M1", "M2"]);
        assert_eq!(brief.pending[0].rule_id, "G2");
        assert_eq!(brief.suspect.as_ref().unwrap().name(), "1.6.0");
        assert_eq!(brief.rollback_to.as_ref().unwrap().name(), "1.5.0");
        assert_eq!(
            brief.regression_started_at,
            Some(at("2026-08-22T13:59:00Z"))
        );
        // A row written before the brief column is read from its whole evidence.
        db.execute_raw("UPDATE decisions SET brief = NULL").await;
        assert_eq!(
            db.store.standing_decisions(None, 10).await.unwrap(),
            standing
        );
    }

    /// Where a release regressed: the rollback decisions that blamed one of its
    /// deploys; and its own decisions, one per release and scope however often (or by
    /// however many replicas) they are recorded.
    async fn releases_read_their_regressions_and_record_their_decisions_once(backend: Backend) {
        use rollwarden::domain::{Deploy, DeploySource};
        use rollwarden::store::NewReleaseDecision;
        let db = TestStore::new(backend).await;
        let mut ids = Vec::new();
        for (cluster, revision) in [("eu", "7"), ("us", "7"), ("us", "8")] {
            let deploy = Deploy::new(
                TargetRef::deployment(cluster, "shop", "checkout"),
                DeploySource::Ci,
                revision,
                "succeeded",
                t0(),
            );
            let written = db.store.record_deploys(&[deploy], t0()).await.unwrap();
            ids.push(written[0].id);
        }
        let blaming = |target: &str, verdict: &str, hash: &str, suspect: i64| NewDecision {
            suspect_deploy_id: Some(suspect),
            ..decision(target, verdict, hash, t0())
        };
        let eu = "eu/shop/Deployment/checkout";
        let us = "us/shop/Deployment/checkout";
        let (first, _) = db
            .store
            .record_decision(&blaming(eu, "rollback", "a", ids[0]))
            .await
            .unwrap();
        db.store
            .record_decision(&blaming(eu, "hold", "b", ids[0]))
            .await
            .unwrap();
        let (second, _) = db
            .store
            .record_decision(&blaming(us, "rollback", "c", ids[1]))
            .await
            .unwrap();
        db.store
            .record_decision(&blaming(us, "rollback", "d", ids[2]))
            .await
            .unwrap();
        let found: Vec<i64> = db
            .store
            .decisions_blaming(&ids[..2])
            .await
            .unwrap()
            .iter()
            .map(|d| d.id)
            .collect();
        assert_eq!(found, [first.id, second.id]);
        assert!(db.store.decisions_blaming(&[]).await.unwrap().is_empty());

        let new = |scope: &str, decision_id: i64| NewReleaseDecision {
            release: "checkout@1.6.0".into(),
            scope: scope.into(),
            decision_id,
            decided_at: t0(),
            body: json!({"affected": ["eu"]}),
        };
        let (region, created) = db
            .store
            .record_release_decision(&new("region", first.id))
            .await
            .unwrap();
        assert!(created);
        let (again, created) = db
            .store
            .record_release_decision(&new("region", second.id))
            .await
            .unwrap();
        assert!(!created);
        assert_eq!(again, region, "the first one stands");
        let (all, created) = db
            .store
            .record_release_decision(&new("all_regions", second.id))
            .await
            .unwrap();
        assert!(created);
        assert_eq!(
            db.store.release_decisions("checkout@1.6.0").await.unwrap(),
            [region.clone(), all]
        );
        assert_eq!(region.check, json!({"affected": ["eu"]}));
        assert_eq!(region.decided_at, t0());
        assert!(
            db.store
                .release_decisions("other@1")
                .await
                .unwrap()
                .is_empty()
        );
    }

    on_both_backends!(
        releases_read_their_regressions_and_record_their_decisions_once,
        a_standing_decision_comes_back_briefly,
        a_decision_is_written_only_when_verdict_or_inputs_change,
        concurrent_identical_evaluations_record_one_decision,
        posted_signals_are_idempotent_and_end,
        evaluation_sees_firing_and_recently_resolved_alerts,
        a_firing_alert_not_redelivered_goes_stale_but_stays_stored,
        alerts_are_read_back_by_their_keys_as_they_stand,
        no_freezes_or_rollbacks_on_a_fresh_store,
    );
}

mod canary_runs {
    //! A Flagger canary run's deploy row, as both backends keep it.

    use chrono::Duration;
    use serde_json::{Value, json};

    use rollwarden::domain::DeploySource;
    use rollwarden::domain::canary::Hook;
    use rollwarden::store::DeployQuery;
    use rollwarden::wire::Bounds;
    use rollwarden::wire::flagger::{Answered, FlaggerCall, FlaggerPayload};

    use crate::on_both_backends;
    use crate::support::{Backend, TestStore, t0};

    const ROLLOUT: &str = include_str!("../fixtures/flagger-rollout.json");

    fn call(hook: Hook, phase: &str, minute: i64) -> FlaggerCall {
        let mut body: Value = serde_json::from_str(ROLLOUT).unwrap();
        body["phase"] = phase.into();
        FlaggerPayload::parse(
            body.to_string().as_bytes(),
            hook,
            "default",
            &Bounds::default(),
            t0() + Duration::minutes(minute),
        )
        .unwrap()
    }

    fn answered(status: u16, decision_id: i64) -> Option<Answered<'static>> {
        Some(Answered {
            status,
            verdict: "hold",
            decision_id,
        })
    }

    async fn a_canary_runs_timeline_grows_and_neutral_reports_keep_its_status(backend: Backend) {
        let db = TestStore::new(backend).await;
        let record = |c: FlaggerCall, entry: Value| {
            let store = db.store.clone();
            async move {
                store
                    .record_deploys(&[c.to_deploy(Some(entry))], c.received_at)
                    .await
                    .unwrap()[0]
            }
        };
        let ended = call(Hook::PostRollout, "Succeeded", 0);
        let first = record(ended.clone(), ended.entry(None)).await;
        assert!(first.created);
        // Flagger asks its confirm-rollout gate with the promoted run's checksum while
        // the next run waits: the answer joins the timeline, the status stays.
        for minute in [1, 2] {
            let asked = call(Hook::ConfirmRollout, "Waiting", minute);
            let write = record(asked.clone(), asked.entry(answered(403, 3))).await;
            assert_eq!(
                (write.id, write.created, write.changed),
                (first.id, false, true)
            );
        }
        let asked = call(Hook::ConfirmRollout, "Waiting", 3);
        record(asked.clone(), asked.entry(answered(200, 4))).await;

        let history = db
            .store
            .target_history(&ended.target, None, 10)
            .await
            .unwrap();
        assert_eq!(history.len(), 1);
        let run = &history[0].deploy;
        assert_eq!(
            (run.source, run.revision.as_str(), run.status.as_str()),
            (DeploySource::Flagger, "64c6d9c894", "succeeded")
        );
        assert_eq!(run.started_at, t0());
        assert_eq!(run.finished_at, Some(t0()));
        assert_eq!(run.details["phase"], "Waiting");
        assert_eq!(
            run.details["events"],
            json!([
                {"at": "2026-08-22T14:03:00.000Z", "hook": "post-rollout", "phase": "Succeeded",
                 "answer": 200},
                {"at": "2026-08-22T14:04:00.000Z", "last_at": "2026-08-22T14:05:00.000Z",
                 "calls": 2, "hook": "confirm-rollout", "phase": "Waiting", "answer": 403,
                 "verdict": "hold", "decision_id": 3},
                {"at": "2026-08-22T14:06:00.000Z", "hook": "confirm-rollout", "phase": "Waiting",
                 "answer": 200, "verdict": "hold", "decision_id": 4},
            ])
        );
        let listed = db
            .store
            .list_deploys(&DeployQuery {
                source: Some(DeploySource::Flagger),
                limit: 10,
                ..DeployQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(listed, history);
    }

    on_both_backends!(a_canary_runs_timeline_grows_and_neutral_reports_keep_its_status);
}

/// Databases written before the two backends shared their SQL: the landed migrations, and
/// rows exactly as each backend's own code wrote them (on SQLite: timestamps as
/// fixed-width UTC text, JSON as text, booleans as 0 and 1). They read, match and
/// update through today's store.
mod existing_databases {
    use chrono::Duration;
    use serde_json::json;

    use rollwarden::domain::{AlertStatus, Scope, Signal, SignalKind, SignalSource, TargetRef};
    use rollwarden::store::{ActionFinish, AlertQuery, NewDecision};

    use super::{LONG_AGO, at, one};
    use crate::on_both_backends;
    use crate::support::{Backend, TestStore, t0};

    const TARGET: &str = "default/prod/Deployment/checkout";

    fn signal() -> Signal {
        Signal {
            kind: SignalKind::CustomerReports,
            target: Some(TargetRef::deployment("default", "prod", "checkout")),
            scope: Scope::Any,
            dependency: None,
            value: Some(12.0),
            baseline: None,
            inconclusive: None,
            started_at: at("2026-08-22T14:00:00Z"),
            ended_at: None,
            observations: 1,
            source: SignalSource::Api,
            fingerprint: "old-7".into(),
            summary: "customer reports".into(),
        }
    }

    /// The rows in the text the SQLite store wrote; PostgreSQL reads the same literals
    /// as `timestamptz`, `jsonb` and `boolean`.
    fn old_rows() -> String {
        let signal = serde_json::to_string(&signal()).unwrap();
        format!(
            "INSERT INTO receipts (source, dedupe_key, group_key, body, received_at,
                 last_received_at, duplicate_count)
             VALUES ('alertmanager', 'old-key', 'g', '{{}}', '2026-08-22T10:00:00.000000Z',
                 '2026-08-22T10:00:00.000000Z', 0);
             INSERT INTO alerts (fingerprint, starts_at, ends_at, status, alertname, labels,
                 annotations, generator_url, receiver, group_key, first_receipt_id,
                 last_receipt_id, first_seen_at, updated_at)
             VALUES ('old1', '2026-08-22T10:00:00.000000Z', NULL, 'firing', 'A',
                 '{{\"alertname\":\"A\",\"namespace\":\"prod\",\"service\":\"checkout\"}}',
                 '{{\"summary\":\"A in prod\"}}', 'http://prometheus:9090/graph', 'rollwarden',
                 'g', 1, 1, '2026-08-22T10:00:00.000000Z', '2026-08-22T10:00:00.000000Z');
             INSERT INTO deploys (target, cluster, namespace, kind, name, source, revision,
                 status, images, details, started_at, finished_at, first_seen_at, updated_at)
             VALUES ('{TARGET}', 'default', 'prod', 'Deployment', 'checkout', 'kubernetes', '4',
                 'superseded', '[\"shop/checkout:1.4\"]', '{{}}', '2026-08-22T09:00:00.000000Z',
                 '2026-08-22T09:01:00.000000Z', '2026-08-22T09:00:00.000000Z',
                 '2026-08-22T09:01:00.000000Z'),
                 ('{TARGET}', 'default', 'prod', 'Deployment', 'checkout', 'kubernetes', '5',
                 'deployed', '[\"shop/checkout:1.5\"]', '{{\"note\":\"old\"}}',
                 '2026-08-22T12:00:00.000000Z', NULL, '2026-08-22T12:00:00.000000Z',
                 '2026-08-22T12:00:00.000000Z');
             INSERT INTO signals (target, kind, scope, dependency, value, baseline, source,
                 fingerprint, started_at, ended_at, observed_at, details)
             VALUES ('{TARGET}', 'customer_reports', 'any', NULL, 12.0, NULL, 'api', 'old-7',
                 '2026-08-22T14:00:00.000000Z', NULL, '2026-08-22T14:00:00.000000Z', '{signal}');
             INSERT INTO decisions (target, verdict, reason, inputs_hash, policy_version,
                 suspect_deploy_id, rollback_to_id, evidence, decided_at)
             VALUES ('{TARGET}', 'rollback', 'because', 'h1', 'runbooks-1', 2, 1,
                 '{{\"verdict\":\"rollback\"}}', '2026-08-22T13:00:00.000000Z');
             INSERT INTO actions (decision_id, target, kind, mode, idempotency_key, state,
                 params, attempts, executed_at, created_at, updated_at, resumed)
             VALUES (1, '{TARGET}', 'rollout_undo', 'auto', 'old-done', 'succeeded', '{{}}', 1,
                 '2026-08-22T13:01:00.000000Z', '2026-08-22T13:00:00.000000Z',
                 '2026-08-22T13:01:00.000000Z', FALSE),
                 (1, '{TARGET}', 'webhook', 'auto', 'old-pending', 'pending',
                 '{{\"url\":\"http://hooks\"}}', 0, NULL, '2026-08-22T13:00:00.000000Z',
                 '2026-08-22T13:00:00.000000Z', FALSE);
             INSERT INTO notifications (action_id, decision_id, channel, payload, status,
                 attempts, created_at, idempotency_key, event)
             VALUES (NULL, 1, 'slack', '{{\"text\":\"rollback\"}}', 'pending', 0,
                 '2026-08-22T13:00:00.000000Z', 'old-n', 'announce');
             INSERT INTO freezes (scope, reason, created_by, decision_id, created_at,
                 expires_at)
             VALUES ('{TARGET}', 'bad deploy', 'oncall', 1, '2026-08-22T13:00:00.000000Z',
                 '2026-08-22T18:00:00.000000Z');
             INSERT INTO audit_events (at, actor, kind, subject, details)
             VALUES ('2026-08-22T13:00:00.000000Z', 'rollwarden', 'action.created',
                 'action:1', '{{\"mode\":\"auto\"}}');"
        )
    }

    async fn rows_written_by_the_previous_store_read_match_and_update(backend: Backend) {
        let db = TestStore::new(backend).await;
        db.execute_raw(&old_rows()).await;
        let store = &db.store;
        let ten = at("2026-08-22T10:00:00Z");

        let receipt = store.receipt(1).await.unwrap().unwrap();
        assert_eq!((receipt.received_at, receipt.body.as_str()), (ten, "{}"));
        let by_label = AlertQuery {
            labels: vec![("namespace".into(), "prod".into())],
            limit: 10,
            ..AlertQuery::default()
        };
        let alerts = store.list_alerts(&by_label).await.unwrap();
        assert_eq!(alerts.len(), 1);
        assert_eq!((alerts[0].id, alerts[0].starts_at), (1, ten));
        assert_eq!(alerts[0].labels["service"], "checkout");
        // SQLite signs the labels of rows written before migration 0010 in maintain;
        // unsigned or signed, the label finds them.
        let signed = store.maintain().await.unwrap();
        if backend == Backend::Sqlite {
            assert_eq!(signed, 1, "the old row signed");
            assert_eq!(store.maintain().await.unwrap(), 0, "nothing left to sign");
        }
        assert_eq!(store.list_alerts(&by_label).await.unwrap(), alerts);
        let as_read: Vec<_> = alerts
            .iter()
            .map(|a| rollwarden::store::EvaluationAlert {
                id: a.id,
                updated_at: a.updated_at,
                alert: a.to_alert(),
            })
            .collect();
        let keyed = store.alerts_by_key(&[("old1".into(), ten)]).await.unwrap();
        assert_eq!(keyed, as_read);
        let window = store
            .alerts_for_evaluation(ten, LONG_AGO, 0, 10)
            .await
            .unwrap();
        assert_eq!(window, as_read);
        // The same occurrence arriving again finds the old row by its start time.
        let resolved = one("old1", "A", "prod", "resolved", "2026-08-22T10:00:00Z");
        store.record_notifications(&[resolved]).await.unwrap();
        let all = AlertQuery {
            limit: 10,
            ..AlertQuery::default()
        };
        let alerts = store.list_alerts(&all).await.unwrap();
        assert_eq!(alerts.len(), 1);
        assert_eq!((alerts[0].id, alerts[0].status), (1, AlertStatus::Resolved));

        let target = TargetRef::deployment("default", "prod", "checkout");
        let history = store.target_history(&target, None, 10).await.unwrap();
        let revisions: Vec<_> = history.iter().map(|d| d.deploy.revision.as_str()).collect();
        assert_eq!(revisions, ["5", "4"]);
        assert_eq!(history[1].deploy.images, ["shop/checkout:1.4"]);
        assert_eq!(
            history[1].deploy.finished_at,
            Some(at("2026-08-22T09:01:00Z"))
        );
        assert_eq!(history[0].deploy.details, json!({"note": "old"}));
        let healthy = store.last_healthy_before(&history[0]).await.unwrap();
        assert_eq!(healthy.map(|d| d.id), Some(history[1].id));
        let suspects = store
            .deploys_between(&target, at("2026-08-22T11:00:00Z"), t0())
            .await
            .unwrap();
        assert_eq!(suspects, history[..1]);
        let again = store
            .record_deploys(&[history[0].deploy.clone()], t0())
            .await
            .unwrap();
        assert_eq!(
            (again[0].id, again[0].created, again[0].changed),
            (2, false, false)
        );

        assert_eq!(
            store
                .signals_for_evaluation(at("2026-08-22T13:00:00Z"))
                .await
                .unwrap(),
            [signal()]
        );
        assert_eq!(
            store.record_signal(&signal(), t0()).await.unwrap(),
            (1, false)
        );

        let latest = store.latest_decision(TARGET).await.unwrap().unwrap();
        assert_eq!(
            (latest.id, latest.suspect_deploy_id, latest.decided_at),
            (1, Some(2), at("2026-08-22T13:00:00Z"))
        );
        let same = NewDecision {
            target_key: TARGET.into(),
            verdict: "rollback".into(),
            reason: "because".into(),
            inputs_hash: "h1".into(),
            policy_version: "runbooks-1".into(),
            suspect_deploy_id: Some(2),
            rollback_to_id: Some(1),
            decision: json!({"verdict": "rollback"}),
            decided_at: t0(),
        };
        assert_eq!(store.record_decision(&same).await.unwrap(), (latest, false));

        assert_eq!(
            store
                .automatic_rollbacks(TARGET, at("2026-08-22T13:00:00Z"))
                .await
                .unwrap(),
            [at("2026-08-22T13:01:00Z")]
        );
        let claimed = store
            .claim_action("worker", Duration::minutes(1), t0())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((claimed.id, claimed.resumed), (2, false));
        assert_eq!(claimed.params, json!({"url": "http://hooks"}));
        let done = ActionFinish::Failed {
            error: "gone".into(),
        };
        assert!(store.finish_action(2, "worker", &done, t0()).await.unwrap());
        assert_eq!(store.decision_actions(&[1]).await.unwrap().len(), 2);
        assert_eq!(store.decision_actions(&[1, 99]).await.unwrap().len(), 2);
        assert!(store.decision_actions(&[]).await.unwrap().is_empty());
        assert_eq!(store.count_actions("failed", 10).await.unwrap(), 1);
        assert_eq!(store.count_actions("failed", 0).await.unwrap(), 0);
        assert_eq!(store.count_actions("verified", 10).await.unwrap(), 0);

        let notification = store
            .claim_notification("worker", Duration::minutes(1), t0())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(notification.payload, json!({"text": "rollback"}));
        assert_eq!(store.decision_notifications(1).await.unwrap().len(), 1);

        let freezes = store.active_freezes(t0()).await.unwrap();
        assert_eq!(freezes.len(), 1);
        assert_eq!(freezes[0].expires_at, Some(at("2026-08-22T18:00:00Z")));
        let lifted = store.lift_freeze(1, "oncall", t0()).await.unwrap().unwrap();
        assert_eq!(lifted.lifted_at, Some(t0()));
        assert!(store.active_freezes(t0()).await.unwrap().is_empty());

        let trail = store.audit_trail(&["action:1".into()]).await.unwrap();
        assert_eq!(trail[0].at, at("2026-08-22T13:00:00Z"));
        assert_eq!(trail[0].details, json!({"mode": "auto"}));
    }

    on_both_backends!(rows_written_by_the_previous_store_read_match_and_update);
}

mod loop_guard_inputs {
    //! The loop guard's input: which executed actions were automatic rollbacks.

    use chrono::Duration;
    use serde_json::json;

    use rollwarden::domain::action::ActionKind;
    use rollwarden::store::{ActionFinish, NewAction, NewDecision};

    use crate::on_both_backends;
    use crate::support::{Backend, TestStore, t0};

    const TARGET: &str = "default/prod/Deployment/checkout";

    /// Every executor kind, executed automatically one minute apart (and a command
    /// executed after a person approved it): the store reports the automatic ones
    /// that roll the target back — by what the action does, `ActionKind::rolls_back`,
    /// not by a list of kind names (issue 12, item 2).
    async fn every_executor_that_rolls_back_counts_for_the_loop_guard(backend: Backend) {
        let db = TestStore::new(backend).await;
        let (d, _) = db
            .store
            .record_decision(&NewDecision {
                target_key: TARGET.into(),
                verdict: "rollback".into(),
                reason: "M2".into(),
                inputs_hash: "h".into(),
                policy_version: "runbooks-1".into(),
                suspect_deploy_id: None,
                rollback_to_id: None,
                decision: json!({}),
                decided_at: t0(),
            })
            .await
            .unwrap();
        let kinds = [
            ("rollout_undo", "auto"),
            ("helm_rollback", "auto"),
            ("workflow_dispatch", "auto"),
            ("command:deploy-tool", "auto"),
            ("command:ecs-revert", "auto"),
            ("webhook:pagerduty", "auto"),
            ("freeze", "auto"),
            // Taking a region out of federation routing rolls nothing back.
            ("federation_exclude:command:deploy-tool", "auto"),
            ("command:deploy-tool-approved", "approve"),
        ];
        let mut expected = Vec::new();
        for (i, (kind, mode)) in kinds.iter().enumerate() {
            let at = t0() + Duration::minutes(i as i64);
            db.store
                .enqueue_action(
                    &NewAction {
                        decision_id: d.id,
                        target_key: TARGET.into(),
                        kind: (*kind).into(),
                        mode: (*mode).into(),
                        idempotency_key: format!("{TARGET}|deploy:7|{kind}"),
                        state: "pending".into(),
                        params: json!({}),
                        expires_at: None,
                        notify: Vec::new(),
                    },
                    at,
                )
                .await
                .unwrap();
            let claimed = db
                .store
                .claim_action("w1", Duration::seconds(30), at)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(claimed.kind, *kind);
            let rolls_back = ActionKind::parse(kind).unwrap().rolls_back();
            let finish = ActionFinish::Succeeded {
                result: json!({}),
                verify: rolls_back,
            };
            assert!(
                db.store
                    .finish_action(claimed.id, "w1", &finish, at)
                    .await
                    .unwrap()
            );
            if rolls_back && *mode == "auto" {
                expected.push(at);
            }
        }
        assert_eq!(expected.len(), 5, "undo, helm, workflow and both commands");
        assert_eq!(
            db.store
                .automatic_rollbacks(TARGET, t0() - Duration::hours(1))
                .await
                .unwrap(),
            expected
        );
    }

    on_both_backends!(every_executor_that_rolls_back_counts_for_the_loop_guard);
}

mod evaluation_inputs {
    //! An ingest batch's evaluations read their targets' deploys, automatic rollbacks,
    //! recoveries and standing decisions in one query each: the same as each target's
    //! own reads.

    use chrono::{DateTime, Duration, Utc};
    use serde_json::json;

    use rollwarden::domain::{Deploy, DeploySource, TargetRef};
    use rollwarden::store::{
        ActionFinish, DecisionQuery, NewAction, NewDecision, Store, TargetInputs,
    };

    use crate::on_both_backends;
    use crate::support::{Backend, TestStore, t0};

    fn deploy(target: TargetRef, source: DeploySource, revision: u32, minutes: i64) -> Deploy {
        let mut d = Deploy::new(
            target,
            source,
            revision.to_string(),
            "deployed",
            t0() - Duration::minutes(minutes),
        );
        d.helm_release = Some("checkout".into());
        d
    }

    async fn decide(store: &dyn Store, target: &TargetRef, verdict: &str, minutes: i64) {
        let decision = NewDecision {
            target_key: target.key(),
            verdict: verdict.into(),
            reason: verdict.into(),
            inputs_hash: format!("{verdict}-{minutes}"),
            policy_version: "runbooks-1".into(),
            suspect_deploy_id: None,
            rollback_to_id: None,
            decision: json!({}),
            decided_at: t0() - Duration::minutes(minutes),
        };
        assert!(store.record_decision(&decision).await.unwrap().1);
    }

    async fn executed(store: &dyn Store, target: &TargetRef, kind: &str, minutes: i64) {
        let at = t0() - Duration::minutes(minutes);
        let decision = store.decision_head(&target.key()).await.unwrap().unwrap();
        let action = NewAction {
            decision_id: decision.id,
            target_key: target.key(),
            kind: kind.into(),
            mode: "auto".into(),
            idempotency_key: format!("{}|{kind}|{minutes}", target.key()),
            state: "pending".into(),
            params: json!({}),
            expires_at: None,
            notify: Vec::new(),
        };
        store.enqueue_action(&action, at).await.unwrap();
        let claimed = store
            .claim_action("w1", Duration::seconds(30), at)
            .await
            .unwrap()
            .unwrap();
        let finish = ActionFinish::Succeeded {
            result: json!({}),
            verify: false,
        };
        assert!(
            store
                .finish_action(claimed.id, "w1", &finish, at)
                .await
                .unwrap()
        );
    }

    /// What the engine read for `target` before, one query at a time.
    async fn one_by_one(
        store: &dyn Store,
        target: &TargetRef,
        since: DateTime<Utc>,
        depth: u32,
    ) -> TargetInputs {
        let key = target.key();
        let recovered = store
            .list_decision_lines(&DecisionQuery {
                target: Some(key.clone()),
                verdict: Some("ok".into()),
                limit: 1,
                ..DecisionQuery::default()
            })
            .await
            .unwrap();
        TargetInputs {
            deploys: store.target_history(target, None, depth).await.unwrap(),
            automatic_rollbacks: store.automatic_rollbacks(&key, since).await.unwrap(),
            recovered_at: recovered.first().map(|d| d.decided_at),
            head: store.decision_head(&key).await.unwrap(),
        }
    }

    async fn many_targets_read_at_once_read_what_each_reads_alone(backend: Backend) {
        let db = TestStore::new(backend).await;
        let store = &*db.store;
        let checkout = TargetRef::deployment("default", "prod", "checkout");
        let cart = TargetRef::deployment("default", "prod", "cart");
        let quiet = TargetRef::deployment("default", "staging", "quiet");
        let release = TargetRef::helm_release("default", "prod", "checkout");
        store
            .record_deploys(
                &[
                    deploy(checkout.clone(), DeploySource::Kubernetes, 1, 90),
                    deploy(checkout.clone(), DeploySource::Kubernetes, 2, 30),
                    // The Helm release that manages checkout: in checkout's history.
                    deploy(release.clone(), DeploySource::Helm, 7, 31),
                    Deploy {
                        helm_release: None,
                        ..deploy(cart.clone(), DeploySource::Kubernetes, 4, 20)
                    },
                ],
                t0(),
            )
            .await
            .unwrap();
        decide(store, &checkout, "ok", 60).await;
        decide(store, &checkout, "rollback", 20).await;
        decide(store, &checkout, "ok", 15).await;
        decide(store, &checkout, "rollback", 10).await;
        decide(store, &cart, "hold", 5).await;
        executed(store, &checkout, "rollout_undo", 9).await;
        // Not a rollback, and a rollback before `since`: neither counts.
        executed(store, &checkout, "freeze", 8).await;
        executed(store, &cart, "rollout_undo", 120).await;
        let since = t0() - Duration::hours(1);

        // A target named twice reads the same twice; one with nothing reads nothing.
        let targets = [
            checkout.clone(),
            quiet.clone(),
            cart.clone(),
            checkout.clone(),
        ];
        for depth in [200, 1] {
            let read = store
                .evaluation_inputs(&targets, since, depth)
                .await
                .unwrap();
            let mut alone = Vec::new();
            for target in &targets {
                alone.push(one_by_one(store, target, since, depth).await);
            }
            assert_eq!(read, alone, "depth {depth}");
        }

        let read = store.evaluation_inputs(&targets, since, 200).await.unwrap();
        let revisions: Vec<_> = read[0]
            .deploys
            .iter()
            .map(|d| (d.deploy.source.as_str(), d.deploy.revision.as_str()))
            .collect();
        assert_eq!(
            revisions,
            [("kubernetes", "2"), ("helm", "7"), ("kubernetes", "1")]
        );
        assert_eq!(read[0].automatic_rollbacks, [t0() - Duration::minutes(9)]);
        assert_eq!(read[0].recovered_at, Some(t0() - Duration::minutes(15)));
        assert_eq!(
            read[0].head.as_ref().map(|h| h.verdict.as_str()),
            Some("rollback")
        );
        assert_eq!(read[1], TargetInputs::default());
        assert_eq!(read[2].deploys.len(), 1);
        assert!(read[2].automatic_rollbacks.is_empty());
        assert_eq!(read[2].recovered_at, None);
        assert_eq!(
            read[2].head.as_ref().map(|h| h.verdict.as_str()),
            Some("hold")
        );
        assert!(
            store
                .evaluation_inputs(&[], since, 200)
                .await
                .unwrap()
                .is_empty()
        );
    }

    on_both_backends!(many_targets_read_at_once_read_what_each_reads_alone);
}

mod lists {
    //! The lists the API and the console page through: newest first, a time range and
    //! a cursor together, each target's standing decision; and, on PostgreSQL, each
    //! list's query read through the index made for it.

    use chrono::Duration;
    use serde_json::{Value, json};

    use rollwarden::store::{
        ActionQuery, AlertQuery, DecisionLine, DecisionQuery, DeployCursor, DeployQuery,
        NewDecision, PostgresStore, Store,
    };

    use super::one;
    use crate::on_both_backends;
    use crate::support::{Backend, TestStore, postgres_schema, t0};

    fn decision(target: &str, verdict: &str, n: i64) -> NewDecision {
        NewDecision {
            target_key: format!("default/prod/Deployment/{target}"),
            verdict: verdict.into(),
            reason: format!("{verdict} #{n}"),
            inputs_hash: format!("h{n}"),
            policy_version: "runbooks-2".into(),
            suspect_deploy_id: None,
            rollback_to_id: None,
            decision: json!({"verdict": verdict}),
            decided_at: t0() + Duration::minutes(n),
        }
    }

    /// A range with an end is read another way than one without (by time, then its
    /// ids sorted); the pages are the same: newest first, page after page.
    async fn a_time_range_pages_newest_first(backend: Backend) {
        let db = TestStore::new(backend).await;
        for n in 0..12 {
            let target = format!("svc-{}", n % 3);
            let verdict = if n % 2 == 0 { "monitor" } else { "ok" };
            db.store
                .record_decision(&decision(&target, verdict, n))
                .await
                .unwrap();
        }
        let page = |since: i64, until: Option<i64>, before: Option<i64>, target: Option<&str>| {
            DecisionQuery {
                target: target.map(|t| format!("default/prod/Deployment/{t}")),
                since: Some(t0() + Duration::minutes(since)),
                until: until.map(|u| t0() + Duration::minutes(u)),
                before_id: before,
                limit: 2,
                ..Default::default()
            }
        };
        let reasons = |ds: &[rollwarden::store::StoredDecision]| {
            ds.iter().map(|d| d.reason.clone()).collect::<Vec<_>>()
        };
        // Decisions 3 to 9, two to a page.
        let mut seen = Vec::new();
        let mut before = None;
        loop {
            let got = db
                .store
                .list_decisions(&page(3, Some(10), before, None))
                .await
                .unwrap();
            if got.is_empty() {
                break;
            }
            before = got.last().map(|d| d.id);
            seen.extend(reasons(&got));
            // The lines of the same page: the same decisions, without the evidence.
            let lines = db
                .store
                .list_decision_lines(&page(3, Some(10), got.first().map(|d| d.id + 1), None))
                .await
                .unwrap();
            let expected: Vec<_> = got
                .iter()
                .map(|d| DecisionLine {
                    id: d.id,
                    target_key: d.target_key.clone(),
                    verdict: d.verdict.clone(),
                    reason: d.reason.clone(),
                    decided_at: d.decided_at,
                })
                .collect();
            assert_eq!(lines, expected);
        }
        let expected: Vec<_> = (3..10)
            .rev()
            .map(|n| format!("{} #{n}", if n % 2 == 0 { "monitor" } else { "ok" }))
            .collect();
        assert_eq!(seen, expected);
        // The same range without its end, and one target's share of it.
        let open = db.store.list_decisions(&page(3, None, None, None)).await;
        assert_eq!(reasons(&open.unwrap()), ["ok #11", "monitor #10"]);
        let one_target = db
            .store
            .list_decisions(&page(3, Some(10), None, Some("svc-1")))
            .await
            .unwrap();
        assert_eq!(reasons(&one_target), ["ok #7", "monitor #4"]);
        assert!(
            db.store
                .list_decisions(&page(10, Some(3), None, None))
                .await
                .unwrap()
                .is_empty(),
            "an empty range selects nothing"
        );

        // Alerts started an hour apart; the range takes 2 to 5.
        for n in 0..8 {
            let starts = (t0() + Duration::hours(n)).to_rfc3339();
            db.store
                .record_notifications(&[one(&format!("f{n}"), "A", "prod", "firing", &starts)])
                .await
                .unwrap();
        }
        let alerts = |before: Option<i64>| AlertQuery {
            since: Some(t0() + Duration::hours(2)),
            until: Some(t0() + Duration::hours(6)),
            before_id: before,
            labels: vec![("namespace".into(), "prod".into())],
            limit: 3,
            ..AlertQuery::default()
        };
        let first = db.store.list_alerts(&alerts(None)).await.unwrap();
        let next = db
            .store
            .list_alerts(&alerts(first.last().map(|a| a.id)))
            .await
            .unwrap();
        let fps: Vec<_> = first.iter().chain(&next).map(|a| &a.fingerprint).collect();
        assert_eq!(fps, ["f5", "f4", "f3", "f2"]);
    }

    /// Each target's standing decision, however many it had, paged by target key; and
    /// the targets whose standing decision is not `ok`.
    async fn standing_decisions_page_through_every_target(backend: Backend) {
        let db = TestStore::new(backend).await;
        let empty = db.store.standing_decisions(None, 10).await.unwrap();
        assert!(empty.is_empty());
        assert!(db.store.unsettled_targets().await.unwrap().is_empty());
        // Seven targets, recorded in no order of theirs, three decisions each: the last
        // of each stands, `ok` for the even ones.
        let mut latest = std::collections::BTreeMap::new();
        for n in 0..21 {
            let t = (n * 3) % 7;
            let verdict = match (n / 7, t % 2) {
                (2, 0) => "ok",
                (2, _) => "hold",
                _ => "monitor",
            };
            let (stored, _) = db
                .store
                .record_decision(&decision(&format!("svc-{t}"), verdict, n))
                .await
                .unwrap();
            latest.insert(stored.target_key.clone(), (stored.id, verdict.to_string()));
        }
        let mut listed = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = db
                .store
                .standing_decisions(after.as_deref(), 3)
                .await
                .unwrap();
            assert!(page.len() <= 3);
            let Some(last) = page.last() else { break };
            after = Some(last.target_key.clone());
            listed.extend(page.into_iter().map(|d| (d.target_key, (d.id, d.verdict))));
        }
        let expected: Vec<_> = latest.clone().into_iter().collect();
        assert_eq!(listed, expected);
        // A decision written past the store (by a replica of the previous version, in
        // the middle of an upgrade) stands as well.
        db.execute_raw(
            "INSERT INTO decisions (target, verdict, reason, inputs_hash, policy_version,
                 evidence, decided_at)
             VALUES ('default/prod/Deployment/svc-3', 'rollback', 'past the store', 'h',
                 'runbooks-2', '{}', '2026-08-22T20:00:00.000000Z')",
        )
        .await;
        let key = "default/prod/Deployment/svc-3".to_string();
        let id = db.store.latest_decision(&key).await.unwrap().unwrap().id;
        latest.insert(key, (id, "rollback".to_string()));
        let all = db.store.standing_decisions(None, 10).await.unwrap();
        let all: Vec<_> = all
            .into_iter()
            .map(|d| (d.target_key, (d.id, d.verdict)))
            .collect();
        assert_eq!(all, latest.clone().into_iter().collect::<Vec<_>>());
        let unsettled: Vec<_> = latest
            .iter()
            .filter(|(_, (_, v))| *v != "ok")
            .map(|(k, _)| k.clone())
            .collect();
        assert_eq!(db.store.unsettled_targets().await.unwrap(), unsettled);
        assert!(
            db.store
                .standing_decisions(None, 0)
                .await
                .unwrap()
                .is_empty()
        );
    }

    on_both_backends!(
        a_time_range_pages_newest_first,
        standing_decisions_page_through_every_target,
    );

    /// Rows enough for PostgreSQL's planner to choose as it would at 100,000 (every
    /// filter below selects one row in a hundred or fewer), in one statement each.
    const SEED: &str = "
        INSERT INTO receipts (source, dedupe_key, body, received_at, last_received_at)
        VALUES ('alertmanager', 'seed', '{}', now(), now());
        INSERT INTO alerts (fingerprint, starts_at, ends_at, status, alertname, labels,
            annotations, first_receipt_id, last_receipt_id, first_seen_at, updated_at)
        SELECT 'fp' || i, '2026-08-22T00:00:00Z'::timestamptz + i * interval '1 minute',
               CASE WHEN i % 100 = 0 THEN now() END,
               CASE WHEN i % 100 = 0 THEN 'resolved' ELSE 'firing' END,
               CASE WHEN i % 100 = 1 THEN 'Rare' ELSE 'HighErrorRate' END,
               jsonb_build_object('service', 'svc-' || i % 500, 'team', 'payments'),
               '{}', r.id, r.id, now(), now()
        FROM generate_series(1, 5000) AS i, receipts AS r;
        INSERT INTO decisions (target, verdict, reason, inputs_hash, policy_version,
            evidence, decided_at)
        SELECT 'default/prod/Deployment/svc-' || i % 500,
               CASE WHEN i % 100 = 0 THEN 'rollback' WHEN i % 2 = 0 THEN 'ok'
                    ELSE 'monitor' END,
               '', 'h' || i, 'runbooks-2', '{}',
               '2026-08-22T00:00:00Z'::timestamptz + i * interval '1 minute'
        FROM generate_series(1, 5000) AS i;
        INSERT INTO actions (decision_id, target, kind, mode, idempotency_key, state,
            created_at, updated_at)
        SELECT id, target, 'rollout_undo', 'approve', 'k' || id,
               CASE WHEN id % 100 = 0 THEN 'awaiting_approval' ELSE 'verified' END,
               decided_at, decided_at
        FROM decisions;
        INSERT INTO deploys (target, cluster, namespace, kind, name, source, revision,
            status, started_at, first_seen_at, updated_at)
        SELECT 'default/ns-' || i % 100 || '/Deployment/svc-' || i % 500, 'default',
               'ns-' || i % 100, 'Deployment', 'svc-' || i % 500, 'ci', 'v' || i, 'succeeded',
               '2026-08-22T00:00:00Z'::timestamptz + i * interval '1 minute', now(), now()
        FROM generate_series(1, 5000) AS i;
        ANALYZE alerts, decisions, actions, deploys;";

    /// The tables that grow without bound: never read whole by a list.
    const BIG: [&str; 4] = ["alerts", "decisions", "actions", "deploys"];

    /// Every node of an `EXPLAIN (FORMAT JSON)` plan: (node type, relation, index).
    fn nodes(plan: &Value, out: &mut Vec<(String, String, String)>) {
        match plan {
            Value::Array(items) => items.iter().for_each(|p| nodes(p, out)),
            Value::Object(map) => {
                if let Some(Value::String(kind)) = map.get("Node Type") {
                    let text = |k: &str| map.get(k).and_then(Value::as_str).unwrap_or("");
                    out.push((
                        kind.clone(),
                        text("Relation Name").to_string(),
                        text("Index Name").to_string(),
                    ));
                }
                map.values().for_each(|p| nodes(p, out));
            }
            _ => {}
        }
    }

    /// The plan reads no big table sequentially, and reads through one of `indexes`.
    fn assert_indexed(what: &str, plan: &Value, indexes: &[&str]) {
        let mut all = Vec::new();
        nodes(plan, &mut all);
        let shown = all
            .iter()
            .map(|(k, r, i)| format!("{k} {r} {i}").trim().to_string())
            .collect::<Vec<_>>()
            .join("; ");
        for (kind, relation, _) in &all {
            assert!(
                !(kind == "Seq Scan" && BIG.contains(&relation.as_str())),
                "{what}: a sequential scan of {relation}: {shown}"
            );
        }
        assert!(
            all.iter()
                .any(|(_, _, index)| indexes.contains(&index.as_str())),
            "{what}: read through none of {indexes:?}: {shown}"
        );
    }

    /// Every list the API and the console page through is served by an index on
    /// PostgreSQL: the plan of each list's query, exactly as the store sends it with its
    /// parameters bound, reads alerts, decisions, actions and deploys through the index
    /// made for its filter and order, and none of them sequentially. Sequential scans
    /// are turned off for the plans, so that one shows only where no index can serve.
    #[tokio::test]
    async fn every_list_reads_through_an_index_on_postgres() {
        let options = postgres_schema().await;
        let db = TestStore::postgres_with(options.clone()).await;
        db.execute_raw(SEED).await;
        let store = PostgresStore::connect_with(options.options([("enable_seqscan", "off")]), 1)
            .await
            .unwrap();
        let at = |minute: i64| {
            "2026-08-22T00:00:00Z"
                .parse::<chrono::DateTime<chrono::Utc>>()
                .unwrap()
                + Duration::minutes(minute)
        };
        let target = Some("default/prod/Deployment/svc-42".to_string());

        let alerts = |q: AlertQuery| AlertQuery { limit: 101, ..q };
        for (what, q, indexes) in [
            (
                "alerts",
                alerts(AlertQuery::default()),
                &["alerts_pkey"][..],
            ),
            (
                "alerts by status, a later page",
                alerts(AlertQuery {
                    status: Some(rollwarden::domain::AlertStatus::Resolved),
                    before_id: Some(4000),
                    ..Default::default()
                }),
                &["alerts_status"],
            ),
            (
                "alerts by name",
                alerts(AlertQuery {
                    alertname: Some("Rare".into()),
                    ..Default::default()
                }),
                &["alerts_alertname"],
            ),
            (
                "alerts by label",
                alerts(AlertQuery {
                    labels: vec![("service".into(), "svc-42".into())],
                    ..Default::default()
                }),
                &["alerts_labels"],
            ),
            (
                "alerts of a time range",
                alerts(AlertQuery {
                    since: Some(at(2000)),
                    until: Some(at(2060)),
                    ..Default::default()
                }),
                &["alerts_starts_at"],
            ),
        ] {
            let plan = store.explain_list_alerts(&q).await.unwrap();
            assert_indexed(what, &plan, indexes);
        }

        let decisions = |q: DecisionQuery| DecisionQuery { limit: 101, ..q };
        for (what, q, indexes) in [
            (
                "decisions",
                decisions(DecisionQuery::default()),
                &["decisions_pkey"][..],
            ),
            (
                "decisions of a target",
                decisions(DecisionQuery {
                    target: target.clone(),
                    ..Default::default()
                }),
                &["decisions_target"],
            ),
            (
                "decisions by verdict, a later page",
                decisions(DecisionQuery {
                    verdict: Some("rollback".into()),
                    before_id: Some(4000),
                    ..Default::default()
                }),
                &["decisions_verdict"],
            ),
            (
                "decisions of a time range",
                decisions(DecisionQuery {
                    since: Some(at(2000)),
                    until: Some(at(2060)),
                    ..Default::default()
                }),
                &["decisions_decided"],
            ),
        ] {
            let plan = store.explain_list_decisions(&q).await.unwrap();
            assert_indexed(what, &plan, indexes);
        }
        for after in [None, Some("default/prod/Deployment/svc-250")] {
            let plan = store.explain_standing_decisions(after, 101).await.unwrap();
            assert_indexed("standing decisions", &plan, &["target_decisions_pkey"]);
        }

        let actions = |q: ActionQuery| ActionQuery { limit: 101, ..q };
        for (what, q, indexes) in [
            (
                "actions",
                actions(ActionQuery::default()),
                &["actions_pkey"][..],
            ),
            (
                "actions awaiting approval",
                actions(ActionQuery {
                    state: Some("awaiting_approval".into()),
                    ..Default::default()
                }),
                &["actions_state", "actions_claim"],
            ),
            (
                "actions of a target",
                actions(ActionQuery {
                    target: target.clone(),
                    ..Default::default()
                }),
                &["actions_target"],
            ),
            (
                "actions of a decision",
                actions(ActionQuery {
                    decision_id: Some(42),
                    ..Default::default()
                }),
                &["actions_decision"],
            ),
        ] {
            let plan = store.explain_list_actions(&q).await.unwrap();
            assert_indexed(what, &plan, indexes);
        }

        let deploys = |q: DeployQuery| DeployQuery { limit: 101, ..q };
        for (what, q, indexes) in [
            (
                "deploys",
                deploys(DeployQuery::default()),
                &["deploys_started"][..],
            ),
            (
                "deploys, a later page",
                deploys(DeployQuery {
                    after: Some(DeployCursor {
                        started_at: at(4000),
                        id: 4000,
                    }),
                    ..Default::default()
                }),
                &["deploys_started"],
            ),
            (
                "deploys of a target",
                deploys(DeployQuery {
                    target: Some("default/ns-42/Deployment/svc-42".into()),
                    ..Default::default()
                }),
                &[
                    "deploys_target_started",
                    "deploys_target_source_revision_key",
                ],
            ),
            (
                "deploys by name",
                deploys(DeployQuery {
                    name: Some("svc-42".into()),
                    ..Default::default()
                }),
                &["deploys_name"],
            ),
            (
                "deploys of a namespace, a later page",
                deploys(DeployQuery {
                    namespace: Some("ns-42".into()),
                    after: Some(DeployCursor {
                        started_at: at(4000),
                        id: 4000,
                    }),
                    ..Default::default()
                }),
                &["deploys_namespace"],
            ),
        ] {
            let plan = store.explain_list_deploys(&q).await.unwrap();
            assert_indexed(what, &plan, indexes);
        }
        store.close().await;
    }

    /// An ingest batch's evaluations read their targets' inputs ahead, a hundred targets
    /// at a time: on PostgreSQL each of the four queries reads through the target's
    /// index, never a big table whole (it did, hashing all of decisions, when the
    /// standing decisions were asked for by `id IN (…)`). A hundred of a fleet of 5,000
    /// targets with 50,000 decisions, executed actions (half of them automatic) and
    /// deploys: with fewer, a hash of the whole table is rightly the cheaper plan.
    #[tokio::test]
    async fn evaluation_inputs_read_through_the_targets_indexes_on_postgres() {
        let options = postgres_schema().await;
        let db = TestStore::postgres_with(options.clone()).await;
        db.execute_raw(
            "INSERT INTO decisions (target, verdict, reason, inputs_hash, policy_version,
                 evidence, decided_at)
             SELECT 'default/ns-' || i % 5000 || '/Deployment/svc-' || i % 5000,
                    CASE WHEN i % 3 = 0 THEN 'ok' ELSE 'hold' END, '', 'h' || i,
                    'runbooks-2', '{}',
                    '2026-08-22T00:00:00Z'::timestamptz + i * interval '1 second'
             FROM generate_series(1, 50000) AS i;
             INSERT INTO actions (decision_id, target, kind, mode, idempotency_key, state,
                 executed_at, created_at, updated_at)
             SELECT id, target, 'rollout_undo',
                    CASE WHEN id % 2 = 0 THEN 'auto' ELSE 'approve' END, 'k' || id,
                    'verified', decided_at, decided_at, decided_at
             FROM decisions;
             INSERT INTO deploys (target, cluster, namespace, kind, name, source, revision,
                 status, started_at, first_seen_at, updated_at)
             SELECT 'default/ns-' || i % 5000 || '/Deployment/svc-' || i % 5000, 'default',
                    'ns-' || i % 5000, 'Deployment', 'svc-' || i % 5000, 'ci', 'v' || i,
                    'succeeded', '2026-08-22T00:00:00Z'::timestamptz + i * interval '1 second',
                    now(), now()
             FROM generate_series(1, 50000) AS i;
             ANALYZE decisions, target_decisions, actions, deploys;",
        )
        .await;
        let store = PostgresStore::connect_with(options.options([("enable_seqscan", "off")]), 1)
            .await
            .unwrap();
        let targets: Vec<rollwarden::domain::TargetRef> = (0..100)
            .map(|i| {
                rollwarden::domain::TargetRef::deployment(
                    "default",
                    &format!("ns-{i}"),
                    &format!("svc-{i}"),
                )
            })
            .collect();
        let plans = store
            .explain_evaluation_inputs(&targets, t0(), 200)
            .await
            .unwrap();
        let expected: [(&str, &[&str]); 4] = [
            ("standing decisions", &["target_decisions_pkey"]),
            ("latest ok decisions", &["decisions_target"]),
            ("automatic rollbacks", &["actions_auto_executed"]),
            ("deploys", &["deploys_target_started"]),
        ];
        assert_eq!(plans.len(), expected.len());
        for (plan, (what, indexes)) in plans.iter().zip(expected) {
            assert_indexed(what, plan, indexes);
        }
        store.close().await;
    }
}

mod sqlite_label_plans {
    //! SQLite has no index of label values: a label list walks alerts_label_sig, each
    //! alert's label signature beside its id (migration 0010).

    use rollwarden::store::{AlertQuery, SqliteStore, Store};

    async fn plan(store: &SqliteStore, q: AlertQuery) -> String {
        store.query_plan_list_alerts(&q).await.unwrap().join("; ")
    }

    /// Newest first through the signatures, with no sort, for one label or two, with
    /// the other filters and a cursor; a range that ends reads starts_at's index.
    #[tokio::test]
    async fn label_lists_walk_the_signatures_in_id_order() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}/plans.db", dir.path().display());
        let store = SqliteStore::connect(&url, 1).await.unwrap();
        store.migrate().await.unwrap();
        let label = |name: &str, value: &str| (name.to_string(), value.to_string());
        for q in [
            AlertQuery {
                labels: vec![label("service", "svc-42")],
                limit: 101,
                ..AlertQuery::default()
            },
            AlertQuery {
                labels: vec![label("service", "svc-42"), label("team", "payments")],
                status: Some(rollwarden::domain::AlertStatus::Firing),
                alertname: Some("HighErrorRate".into()),
                since: Some("2026-08-22T00:00:00Z".parse().unwrap()),
                before_id: Some(4000),
                limit: 101,
                ..AlertQuery::default()
            },
        ] {
            let shown = plan(&store, q.clone()).await;
            assert!(
                shown.contains("USING INDEX alerts_label_sig"),
                "{q:?}: {shown}"
            );
            assert!(!shown.contains("TEMP B-TREE"), "{q:?}: {shown}");
        }
        let ranged = AlertQuery {
            labels: vec![label("service", "svc-42")],
            since: Some("2026-08-22T00:00:00Z".parse().unwrap()),
            until: Some("2026-08-22T01:00:00Z".parse().unwrap()),
            limit: 101,
            ..AlertQuery::default()
        };
        let shown = plan(&store, ranged).await;
        assert!(shown.contains("alerts_starts_at"), "{shown}");
        store.close().await;
    }
}

mod sqlite_claims {
    //! SQLite has one write lock: a worker's claim that finds nothing must not queue
    //! for it behind the ingest's batches, and one that finds work takes it.

    use std::sync::Arc;
    use std::time::Duration as Wait;

    use chrono::Duration;
    use serde_json::json;
    use sqlx::Connection;

    use rollwarden::store::{NewNotification, SqliteStore, Store};

    use crate::outbox::{action, decision};
    use crate::support::t0;

    /// Another connection holding the write lock, as an ingest batch does (`BEGIN
    /// IMMEDIATE`) — here for as long as the test keeps it.
    async fn hold_write_lock(url: &str) -> sqlx::SqliteConnection {
        let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::raw_sql("BEGIN IMMEDIATE")
            .execute(&mut conn)
            .await
            .unwrap();
        conn
    }

    #[tokio::test]
    async fn a_claim_that_finds_nothing_does_not_wait_for_the_write_lock() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}/claims.db", dir.path().display());
        let store: Arc<dyn Store> = Arc::new(SqliteStore::connect(&url, 4).await.unwrap());
        store.migrate().await.unwrap();
        let lease = Duration::seconds(30);

        // Nothing to claim, the lock held elsewhere: both claims answer at once
        // (before, each queued for the lock until the busy timeout of 10 s).
        let mut writer = hold_write_lock(&url).await;
        let idle = tokio::time::timeout(Wait::from_secs(5), async {
            (
                store.claim_action("w1", lease, t0()).await.unwrap(),
                store.claim_notification("w1", lease, t0()).await.unwrap(),
            )
        })
        .await
        .expect("an idle claim waited for the write lock");
        assert!(idle.0.is_none() && idle.1.is_none());
        sqlx::raw_sql("COMMIT").execute(&mut writer).await.unwrap();

        // An action (with its announcement) to claim: the claims wait for the lock and
        // take the work once it is free.
        let d = decision(&store).await;
        let mut due = action(d, "checkout/deploy-7/rollout_undo", "pending");
        due.notify = vec![NewNotification {
            action_id: None,
            decision_id: Some(d),
            channel: "slack".into(),
            event: "recommend".into(),
            idempotency_key: "recommend|slack".into(),
            payload: json!({"text": "rolling back"}),
        }];
        store.enqueue_action(&due, t0()).await.unwrap();
        let mut writer = hold_write_lock(&url).await;
        let claims = {
            let store = store.clone();
            tokio::spawn(async move {
                (
                    store.claim_action("w1", lease, t0()).await.unwrap(),
                    store.claim_notification("w1", lease, t0()).await.unwrap(),
                )
            })
        };
        tokio::time::sleep(Wait::from_millis(200)).await;
        assert!(!claims.is_finished(), "a claim wrote under another's lock");
        sqlx::raw_sql("COMMIT").execute(&mut writer).await.unwrap();
        let (action, notification) = tokio::time::timeout(Wait::from_secs(5), claims)
            .await
            .expect("the claims did not take the work once the lock was free")
            .unwrap();
        assert_eq!(action.unwrap().kind, "rollout_undo");
        assert_eq!(notification.unwrap().channel, "slack");
    }
}
