//! The action outbox's store contract, on both backends: one action per idempotency
//! key, each claim exclusive while its lease holds, a dead worker's action resumed.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::Duration;
use serde_json::json;

use rollwarden::store::{
    ActionFinish, MessageThread, NewAction, NewDecision, NewNotification, Store,
};

use crate::on_both_backends;
use crate::support::{Backend, TestStore, t0};

pub(crate) async fn decision(store: &Arc<dyn Store>) -> i64 {
    let (d, _) = store
        .record_decision(&NewDecision {
            target_key: "default/prod/Deployment/checkout".into(),
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
    d.id
}

pub(crate) fn action(decision_id: i64, key: &str, state: &str) -> NewAction {
    NewAction {
        decision_id,
        target_key: "default/prod/Deployment/checkout".into(),
        kind: "rollout_undo".into(),
        mode: "auto".into(),
        idempotency_key: key.into(),
        state: state.into(),
        params: json!({"to_revision": 2}),
        expires_at: None,
        notify: Vec::new(),
    }
}

async fn duplicate_decisions_enqueue_one_action(backend: Backend) {
    let db = TestStore::new(backend).await;
    let d = decision(&db.store).await;
    let mut same = action(d, "checkout/deploy-7/rollout_undo", "recommended");
    same.notify = vec![NewNotification {
        action_id: None,
        decision_id: Some(d),
        channel: "slack".into(),
        event: "recommend".into(),
        idempotency_key: "recommend:recommended|slack".into(),
        payload: json!({"text": "run this"}),
    }];
    let results =
        futures::future::join_all((0..200).map(|_| db.store.enqueue_action(&same, t0()))).await;
    let created = results.iter().filter(|r| r.as_ref().unwrap().1).count();
    let ids: HashSet<i64> = results.iter().map(|r| r.as_ref().unwrap().0.id).collect();
    assert_eq!((created, ids.len()), (1, 1));
    assert_eq!(db.store.decision_actions(&[d]).await.unwrap().len(), 1);

    // The new action came with its audit event and its announcement, each once.
    let id = ids.into_iter().next().unwrap();
    let trail = db
        .store
        .audit_trail(&[format!("action:{id}")])
        .await
        .unwrap();
    let kinds: Vec<&str> = trail.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["action.created"]);
    assert_eq!(trail[0].details["state"], "recommended");
    let sent = db.store.decision_notifications(d).await.unwrap();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].action_id, Some(id));
    assert_eq!(
        (sent[0].channel.as_str(), sent[0].event.as_str()),
        ("slack", "recommend")
    );
    // Its key is scoped to the action, as Channels::enqueue scopes the later ones.
    let again = NewNotification {
        action_id: Some(id),
        idempotency_key: format!("action:{id}|recommend:recommended|slack"),
        ..same.notify[0].clone()
    };
    let (existing, new) = db.store.enqueue_notification(&again, t0()).await.unwrap();
    assert!(!new);
    assert_eq!(existing.id, sent[0].id);
}

async fn two_worker_pools_run_each_action_exactly_once(backend: Backend) {
    let db = TestStore::new(backend).await;
    let d = decision(&db.store).await;
    for i in 0..40 {
        db.store
            .enqueue_action(&action(d, &format!("key-{i}"), "pending"), t0())
            .await
            .unwrap();
    }
    let workers = (0..8).map(|w| {
        let store = db.store.clone();
        tokio::spawn(async move {
            let owner = format!("pool-{}-worker-{w}", w % 2);
            let mut ran = Vec::new();
            while let Some(a) = store
                .claim_action(&owner, Duration::seconds(30), t0())
                .await
                .unwrap()
            {
                let finished = store
                    .finish_action(
                        a.id,
                        &owner,
                        &ActionFinish::Succeeded {
                            result: json!({"by": owner}),
                            verify: false,
                        },
                        t0(),
                    )
                    .await
                    .unwrap();
                assert!(finished);
                ran.push(a.id);
            }
            ran
        })
    });
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    let unique: HashSet<i64> = all.iter().copied().collect();
    assert_eq!(
        (all.len(), unique.len()),
        (40, 40),
        "every action ran once and only once"
    );
    let actions = db.store.decision_actions(&[d]).await.unwrap();
    assert!(
        actions
            .iter()
            .all(|a| a.state == "succeeded" && a.executed_at == Some(t0()) && a.attempts == 1)
    );
    // Executed automatic rollbacks feed the loop guard.
    assert_eq!(
        db.store
            .automatic_rollbacks("default/prod/Deployment/checkout", t0())
            .await
            .unwrap()
            .len(),
        40
    );
}

async fn a_dead_workers_action_is_resumed_after_its_lease(backend: Backend) {
    let db = TestStore::new(backend).await;
    let d = decision(&db.store).await;
    db.store
        .enqueue_action(&action(d, "k", "pending"), t0())
        .await
        .unwrap();
    let lease = Duration::seconds(30);
    let first = db
        .store
        .claim_action("w1", lease, t0())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((first.state.as_str(), first.attempts), ("running", 1));
    assert!(
        db.store
            .claim_action("w2", lease, t0() + Duration::seconds(10))
            .await
            .unwrap()
            .is_none()
    );
    // w1 died; its lease ran out.
    let resumed = db
        .store
        .claim_action("w2", lease, t0() + Duration::seconds(31))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (resumed.id, resumed.attempts, resumed.lease_owner.as_deref()),
        (first.id, 2, Some("w2"))
    );
    // w1 comes back too late: its result is not recorded.
    let late = ActionFinish::Succeeded {
        result: json!({}),
        verify: false,
    };
    assert!(
        !db.store
            .finish_action(first.id, "w1", &late, t0() + Duration::seconds(32))
            .await
            .unwrap()
    );
    assert!(
        db.store
            .finish_action(first.id, "w2", &late, t0() + Duration::seconds(33))
            .await
            .unwrap()
    );
}

async fn retries_wait_their_turn_and_failures_and_gated_actions_are_never_claimed(
    backend: Backend,
) {
    let db = TestStore::new(backend).await;
    let d = decision(&db.store).await;
    db.store
        .enqueue_action(&action(d, "retry", "pending"), t0())
        .await
        .unwrap();
    db.store
        .enqueue_action(&action(d, "gated", "awaiting_approval"), t0())
        .await
        .unwrap();
    db.store
        .enqueue_action(&action(d, "observed", "recorded"), t0())
        .await
        .unwrap();
    let a = db
        .store
        .claim_action("w", Duration::seconds(30), t0())
        .await
        .unwrap()
        .unwrap();
    let retry = ActionFinish::Retry {
        error: "503 from the API server".into(),
        retry_at: t0() + Duration::seconds(60),
    };
    assert!(
        db.store
            .finish_action(a.id, "w", &retry, t0())
            .await
            .unwrap()
    );
    assert!(
        db.store
            .claim_action("w", Duration::seconds(30), t0() + Duration::seconds(59))
            .await
            .unwrap()
            .is_none()
    );
    let again = db
        .store
        .claim_action("w", Duration::seconds(30), t0() + Duration::seconds(61))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (again.id, again.last_error.as_deref()),
        (a.id, Some("503 from the API server"))
    );
    let failed = ActionFinish::Failed {
        error: "deployment not found".into(),
    };
    assert!(
        db.store
            .finish_action(a.id, "w", &failed, t0() + Duration::seconds(62))
            .await
            .unwrap()
    );
    assert!(
        db.store
            .claim_action("w", Duration::seconds(30), t0() + Duration::days(1))
            .await
            .unwrap()
            .is_none()
    );
    let states: Vec<String> = db
        .store
        .decision_actions(&[d])
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.state)
        .collect();
    assert_eq!(states, ["failed", "awaiting_approval", "recorded"]);
}

/// A decision's chat thread: none until its first message is out, then the first
/// sender's, whoever races it; per channel and per decision.
async fn a_decisions_thread_is_recorded_once(backend: Backend) {
    let db = TestStore::new(backend).await;
    let d = decision(&db.store).await;
    assert_eq!(db.store.message_thread(d, "slack_app").await.unwrap(), None);
    let thread = |ts: &str| MessageThread {
        decision_id: d,
        channel: "slack_app".into(),
        conversation: "C0123CHAN".into(),
        thread_ts: ts.into(),
    };
    let threads: Vec<MessageThread> = (0..20)
        .map(|i| thread(&format!("1767225500.{i:06}")))
        .collect();
    let racing = futures::future::join_all(
        threads
            .iter()
            .map(|t| db.store.record_message_thread(t, t0())),
    )
    .await;
    let standing: HashSet<String> = racing.into_iter().map(|r| r.unwrap().thread_ts).collect();
    assert_eq!(standing.len(), 1, "every racer reads the one recorded");
    let recorded = db
        .store
        .message_thread(d, "slack_app")
        .await
        .unwrap()
        .unwrap();
    assert!(standing.contains(&recorded.thread_ts));
    assert_eq!(recorded.conversation, "C0123CHAN");
    assert_eq!(db.store.message_thread(d, "teams").await.unwrap(), None);
    assert_eq!(
        db.store.message_thread(d + 1, "slack_app").await.unwrap(),
        None
    );
}

on_both_backends!(
    a_decisions_thread_is_recorded_once,
    duplicate_decisions_enqueue_one_action,
    two_worker_pools_run_each_action_exactly_once,
    a_dead_workers_action_is_resumed_after_its_lease,
    retries_wait_their_turn_and_failures_and_gated_actions_are_never_claimed,
);
