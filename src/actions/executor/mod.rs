//! The executors, each behind [`Executor`]: Kubernetes rollout undo, Argo Rollouts
//! abort and undo, Helm rollback,
//! GitHub Actions workflow dispatch, argv commands, webhooks, freezes. An executor
//! first looks at the world where it can (is the Deployment already at the target
//! revision? is the release already rolled back?), and an attempt that resumes an
//! interrupted one (`ActionRecord::resumed`) is never repeated blindly: executors that
//! cannot look escalate instead. Before an irreversible step an executor can note what
//! it is about to do in the action's [`Journal`], so that a later attempt checks the
//! world against that, not against numbers the step itself changes.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

use crate::clock::Clock;
use crate::config::{
    ActionsConfig, ClusterConfig, CommandConfig, Secret, WebhookConfig, redact_url,
};
use crate::domain::action;
use crate::domain::decision::undo_command;
use crate::domain::render::argv::{check_param, render_argv};
use crate::k8s::helm::{HelmFailure, classify_failure};
use crate::k8s::set_image::{self, SetImageOutcome};
use crate::k8s::undo::{self, RolloutStatus, UndoError, UndoOutcome, UndoPlan, UndoTarget, UndoTo};
use crate::store::{ActionRecord, NewFreeze, Store};

/// Most bytes of a program's stdout or stderr kept in the action record.
const OUTPUT_LIMIT: usize = 16 * 1024;

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum ExecOutcome {
    /// Carried out (or found already done). `verify`: a rollback whose effect is
    /// watched next.
    Done { result: Value, verify: bool },
    /// Dry run: what would have been done.
    DryRun { result: Value },
    /// Worth another attempt later (5xx, timeouts, an unreachable cluster, a busy
    /// release).
    Retry(String),
    /// Never worth repeating (4xx, bad parameters, a refused request).
    Failed(String),
    /// A person must look: the outcome is unknown or the rollback itself failed.
    Escalate {
        error: String,
        result: Option<Value>,
    },
}

/// One way of acting on a decision.
#[async_trait]
pub trait Executor: Send + Sync {
    /// Acts on `action` (its `params` come from [`action::plan`]); with `dry_run`,
    /// only says what it would do. `journal` keeps notes across its attempts.
    async fn execute(
        &self,
        action: &ActionRecord,
        dry_run: bool,
        journal: &dyn Journal,
    ) -> ExecOutcome;
}

/// Notes an attempt leaves about its action before an irreversible step, read back by
/// the attempts after it: one that resumes or retries an interrupted attempt checks
/// the world against what that one set out to do. The worker keeps them on the
/// action's audit trail (as `action.<step>` events).
#[async_trait]
pub trait Journal: Send + Sync {
    /// Records that the attempt is about to take `step`, with `details`.
    async fn note(&self, step: &str, details: &Value) -> Result<(), String>;
    /// The details of every `step` noted for this action so far, oldest first.
    async fn noted(&self, step: &str) -> Result<Vec<Value>, String>;
}

/// A [`Journal`] in memory, for an executor run outside the worker: its notes last as
/// long as it does.
#[derive(Debug, Default)]
pub struct MemoryJournal(Mutex<Vec<(String, Value)>>);

#[async_trait]
impl Journal for MemoryJournal {
    async fn note(&self, step: &str, details: &Value) -> Result<(), String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((step.to_string(), details.clone()));
        Ok(())
    }

    async fn noted(&self, step: &str) -> Result<Vec<Value>, String> {
        let notes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(notes
            .iter()
            .filter(|(s, _)| s == step)
            .map(|(_, details)| details.clone())
            .collect())
    }
}

/// The step a rollout undo notes before its PATCH: the ReplicaSet it restores.
pub const PATCHING: &str = "patching";

/// The executors this configuration provides, by action kind.
#[derive(Clone, Default)]
pub struct Executors {
    by_kind: HashMap<String, Arc<dyn Executor>>,
}

impl Executors {
    /// Every executor `config` describes; rollout undo only with a Kubernetes client;
    /// `helm_rollback` once per cluster of `clusters`, each against its own.
    pub fn new(
        config: &ActionsConfig,
        clusters: &[ClusterConfig],
        github_token: Option<Secret>,
        kube: Option<kube::Client>,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        http: reqwest::Client,
    ) -> Self {
        let mut by_kind: HashMap<String, Arc<dyn Executor>> = HashMap::new();
        if let Some(client) = kube {
            by_kind.insert(
                action::ARGO_ABORT.into(),
                Arc::new(ArgoAbort {
                    client: client.clone(),
                }),
            );
            by_kind.insert(
                action::ARGO_UNDO.into(),
                Arc::new(ArgoUndo {
                    client: client.clone(),
                }),
            );
            by_kind.insert(
                action::ROLLOUT_UNDO.into(),
                Arc::new(RolloutUndo {
                    client,
                    timeout: Duration::from_secs(config.rollout_timeout_secs),
                    poll: Duration::from_secs(1),
                }),
            );
        }
        // Helm needs no client of ours, only the cluster's kubeconfig and context.
        let by_cluster = clusters
            .iter()
            .map(|cluster| {
                let helm: Arc<dyn Executor> = Arc::new(HelmRollback::for_cluster(config, cluster));
                (cluster.name.clone(), helm)
            })
            .collect();
        by_kind.insert(
            action::HELM_ROLLBACK.into(),
            Arc::new(ByCluster { by_cluster }),
        );
        if !config.github_repository.is_empty() {
            by_kind.insert(
                action::WORKFLOW_DISPATCH.into(),
                Arc::new(WorkflowDispatch {
                    http: http.clone(),
                    api_url: config.github_api_url.trim_end_matches('/').to_string(),
                    repository: config.github_repository.clone(),
                    git_ref: config.github_ref.clone(),
                    token: github_token,
                }),
            );
        }
        for c in &config.commands {
            by_kind.insert(format!("command:{}", c.name), Arc::new(Command(c.clone())));
        }
        for w in &config.webhooks {
            by_kind.insert(
                format!("webhook:{}", w.name),
                Arc::new(Webhook {
                    http: http.clone(),
                    config: w.clone(),
                }),
            );
        }
        if !config.argocd_url.is_empty() {
            by_kind.insert(
                action::ARGOCD_ROLLBACK.into(),
                Arc::new(ArgocdRollback {
                    http: http.clone(),
                    url: config.argocd_url.trim_end_matches('/').to_string(),
                    app_namespace: config.argocd_app_namespace.clone(),
                    token: config.argocd_token(),
                    timeout: Duration::from_secs(config.rollout_timeout_secs),
                    poll: Duration::from_secs(2),
                }),
            );
        }
        by_kind.insert(action::FREEZE.into(), Arc::new(Freeze { store, clock }));
        Self { by_kind }
    }

    /// The Kubernetes executors (`rollout_undo`, `argo_abort`, `argo_undo`) of every
    /// cluster in `clients`: an action goes to the client of its target's cluster, and
    /// one naming no configured cluster fails without a request.
    pub fn with_clusters(
        mut self,
        clients: &[(String, kube::Client)],
        rollout_timeout: Duration,
        rollout_poll: Duration,
    ) -> Self {
        type Build = fn(kube::Client, Duration, Duration) -> Arc<dyn Executor>;
        let kinds: [(&str, Build); 3] = [
            (action::ROLLOUT_UNDO, |client, timeout, poll| {
                Arc::new(RolloutUndo {
                    client,
                    timeout,
                    poll,
                })
            }),
            (action::ARGO_ABORT, |client, _, _| {
                Arc::new(ArgoAbort { client })
            }),
            (action::ARGO_UNDO, |client, _, _| {
                Arc::new(ArgoUndo { client })
            }),
        ];
        for (kind, build) in kinds {
            let by_cluster = clients
                .iter()
                .map(|(name, client)| {
                    (
                        name.clone(),
                        build(client.clone(), rollout_timeout, rollout_poll),
                    )
                })
                .collect();
            self.by_kind
                .insert(kind.to_string(), Arc::new(ByCluster { by_cluster }));
        }
        self
    }

    /// Replaces (or adds) the executor of `kind`: tests tune the rollout poll here.
    pub fn with(mut self, kind: &str, executor: Arc<dyn Executor>) -> Self {
        self.by_kind.insert(kind.to_string(), executor);
        self
    }

    pub fn get(&self, kind: &str) -> Option<Arc<dyn Executor>> {
        self.by_kind
            .get(crate::domain::action::ActionKind::executor(kind))
            .cloned()
    }
}

/// One executor per cluster, picked by the action's `cluster` (its target's).
pub struct ByCluster {
    pub by_cluster: std::collections::BTreeMap<String, Arc<dyn Executor>>,
}

#[async_trait]
impl Executor for ByCluster {
    async fn execute(
        &self,
        action: &ActionRecord,
        dry_run: bool,
        journal: &dyn Journal,
    ) -> ExecOutcome {
        let cluster = param(action, "cluster").unwrap_or_default();
        match self.by_cluster.get(cluster) {
            Some(executor) => executor.execute(action, dry_run, journal).await,
            None => ExecOutcome::Failed(format!(
                "the target's cluster {cluster:?} is not one of kubernetes.clusters \
                 ({}): nothing was sent",
                self.by_cluster
                    .keys()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }
}

fn param<'a>(action: &'a ActionRecord, name: &str) -> Option<&'a str> {
    action.params.get(name).and_then(Value::as_str)
}

/// A parameter the action needs, checked against its grammar: a value that does not
/// fit fails the action before anything runs.
fn required<'a>(action: &'a ActionRecord, name: &str) -> Result<&'a str, ExecOutcome> {
    let value = param(action, name)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ExecOutcome::Failed(format!("the decision names no {name}")))?;
    check_param(name, value).map_err(|err| ExecOutcome::Failed(err.to_string()))
}

/// The `namespace` and `name` of the workload an action is about, checked.
fn workload(action: &ActionRecord) -> Result<(&str, &str), ExecOutcome> {
    Ok((required(action, "namespace")?, required(action, "name")?))
}

/// What earlier attempts noted at `step`, oldest first; a journal that cannot be read
/// is worth another attempt, never a blind repeat.
async fn noted(journal: &dyn Journal, step: &str) -> Result<Vec<Value>, ExecOutcome> {
    journal.noted(step).await.map_err(|why| {
        ExecOutcome::Retry(format!("cannot read what an earlier attempt did: {why}"))
    })
}

/// GitHub Actions `workflow_dispatch` through the REST API.
pub struct WorkflowDispatch {
    pub http: reqwest::Client,
    pub api_url: String,
    pub repository: String,
    pub git_ref: String,
    pub token: Option<Secret>,
}

#[async_trait]
impl Executor for WorkflowDispatch {
    async fn execute(
        &self,
        action: &ActionRecord,
        dry_run: bool,
        _journal: &dyn Journal,
    ) -> ExecOutcome {
        let (workflow, environment, tag) = match (
            required(action, "cd_workflow"),
            required(action, "environment"),
            required(action, "image_tag"),
        ) {
            (Ok(w), Ok(e), Ok(t)) => (w, e, t),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return e,
        };
        let url = format!(
            "{}/repos/{}/actions/workflows/{workflow}/dispatches",
            self.api_url, self.repository
        );
        let body = json!({
            "ref": self.git_ref,
            "inputs": { "environment": environment, "image_tag": tag },
        });
        if dry_run {
            return ExecOutcome::DryRun {
                result: json!({ "would_post": url, "body": body }),
            };
        }
        if action.resumed {
            // GitHub cannot tell whether the interrupted attempt's dispatch arrived.
            return ExecOutcome::Escalate {
                error: format!(
                    "an earlier attempt was interrupted mid-dispatch; check the runs of \
                     {workflow} in {} before dispatching again",
                    self.repository
                ),
                result: Some(json!({ "url": url, "body": body })),
            };
        }
        let Some(token) = &self.token else {
            return ExecOutcome::Failed(
                "no GitHub token: set actions.github_token or the variable actions.github_token_env names"
                    .into(),
            );
        };
        let request = self
            .http
            .post(&url)
            .bearer_auth(token.expose())
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", "2022-11-28")
            .json(&body);
        match post(request).await {
            Posted::Ok { status, body: text } => ExecOutcome::Done {
                result: json!({ "url": url, "body": body, "status": status, "response": text }),
                verify: true,
            },
            Posted::Transient(why) | Posted::Throttled { error: why, .. } => {
                ExecOutcome::Retry(why)
            }
            Posted::Rejected(why) => ExecOutcome::Failed(why),
        }
    }
}

/// A configured argv, rendered from the action's parameters, run without a shell.
pub struct Command(pub CommandConfig);

#[async_trait]
impl Executor for Command {
    async fn execute(
        &self,
        action: &ActionRecord,
        dry_run: bool,
        _journal: &dyn Journal,
    ) -> ExecOutcome {
        let mut params = action.params.clone();
        params["decision_id"] = json!(action.decision_id.to_string());
        params["action_id"] = json!(action.id.to_string());
        let argv = match render_argv(&self.0.argv, &params) {
            Ok(argv) => argv,
            Err(why) => return ExecOutcome::Failed(why),
        };
        if dry_run {
            return ExecOutcome::DryRun {
                result: json!({ "would_run": argv }),
            };
        }
        if action.resumed {
            return ExecOutcome::Escalate {
                error: format!(
                    "an earlier attempt of command {:?} was interrupted; it is not run again \
                     blindly — check its effect, then re-run it by hand",
                    self.0.name
                ),
                result: Some(json!({ "argv": argv })),
            };
        }
        let ran = run(&argv, Duration::from_secs(self.0.timeout_secs)).await;
        let result = ran.record(&argv);
        match &ran {
            Ran::Exited { code: 0, .. } => ExecOutcome::Done {
                result,
                verify: true,
            },
            Ran::Exited { .. } => ExecOutcome::Escalate {
                error: format!("{} {}", argv[0], ran.describe()),
                result: Some(result),
            },
            _ => ExecOutcome::Escalate {
                error: ran.describe(),
                result: Some(result),
            },
        }
    }
}

/// POST the action and its decision's facts to a configured URL.
pub struct Webhook {
    pub http: reqwest::Client,
    pub config: WebhookConfig,
}

#[async_trait]
impl Executor for Webhook {
    async fn execute(
        &self,
        action: &ActionRecord,
        dry_run: bool,
        _journal: &dyn Journal,
    ) -> ExecOutcome {
        let body = json!({
            "action_id": action.id,
            "decision_id": action.decision_id,
            "idempotency_key": action.idempotency_key,
            "target": action.target_key,
            "mode": action.mode,
            "params": action.params,
        });
        if dry_run {
            return ExecOutcome::DryRun {
                result: json!({ "would_post": redact_url(&self.config.url), "body": body }),
            };
        }
        // Receivers deduplicate on the key, so a resumed attempt may send again.
        let mut request = self
            .http
            .post(&self.config.url)
            .header("idempotency-key", &action.idempotency_key)
            .json(&body);
        if !self.config.token.is_empty() {
            request = request.bearer_auth(self.config.token.expose());
        }
        match post(request).await {
            Posted::Ok { status, body: text } => ExecOutcome::Done {
                result: json!({ "url": redact_url(&self.config.url), "status": status, "response": text }),
                verify: false,
            },
            Posted::Transient(why) | Posted::Throttled { error: why, .. } => {
                ExecOutcome::Retry(why)
            }
            Posted::Rejected(why) => ExecOutcome::Failed(why),
        }
    }
}

/// M8: a freeze record the canary gates honour.
pub struct Freeze {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
}

#[async_trait]
impl Executor for Freeze {
    async fn execute(
        &self,
        action: &ActionRecord,
        dry_run: bool,
        _journal: &dyn Journal,
    ) -> ExecOutcome {
        let (scope, reason) = match (required(action, "scope"), required(action, "reason")) {
            (Ok(s), Ok(r)) => (s, r),
            (Err(e), _) | (_, Err(e)) => return e,
        };
        if dry_run {
            return ExecOutcome::DryRun {
                result: json!({ "would_freeze": scope, "reason": reason }),
            };
        }
        let now = self.clock.now();
        // The world first: a freeze of this decision may already stand.
        match self.store.list_freezes(Some(now), None, 500).await {
            Ok(freezes) => {
                if let Some(existing) = freezes
                    .iter()
                    .find(|f| f.decision_id == Some(action.decision_id) && f.freeze.scope == scope)
                {
                    return ExecOutcome::Done {
                        result: json!({ "freeze_id": existing.freeze.id, "scope": scope, "existing": true }),
                        verify: false,
                    };
                }
            }
            Err(err) => return ExecOutcome::Retry(err.to_string()),
        }
        let freeze = NewFreeze {
            scope: scope.to_string(),
            reason: reason.chars().take(1024).collect(),
            created_by: "rollwarden".into(),
            decision_id: Some(action.decision_id),
            expires_at: None,
        };
        match self.store.create_freeze(&freeze, now).await {
            Ok(record) => ExecOutcome::Done {
                result: json!({ "freeze_id": record.freeze.id, "scope": scope }),
                verify: false,
            },
            Err(err) => ExecOutcome::Retry(err.to_string()),
        }
    }
}

mod argo;
mod argocd;
mod helm;
mod process;
mod rollout;

pub use argo::{ARGO_PATCHING, ArgoAbort, ArgoUndo};
pub use argocd::{ARGOCD_AUTO_SYNC_OFF, ARGOCD_ROLLING_BACK, ArgocdRollback};
pub use helm::HelmRollback;
pub(crate) use process::{Posted, Ran, post, read_capped, retry_after, run};
pub use rollout::RolloutUndo;

#[cfg(test)]
mod tests {
    use super::helm::rolled_back_to;
    use super::*;

    #[test]
    fn helm_history_shows_a_finished_rollback() {
        let history = r#"[{"revision":4,"updated":"2026-08-22T14:10:00Z","status":"deployed","chart":"checkout-1.0.0","app_version":"2.4.9","description":"Rollback to 2"}]"#;
        assert_eq!(rolled_back_to(history, "2"), Some(4));
        assert_eq!(rolled_back_to(history, "3"), None);
        let upgrade = r#"[{"revision":3,"status":"deployed","description":"Upgrade complete"}]"#;
        assert_eq!(rolled_back_to(upgrade, "2"), None);
        assert_eq!(rolled_back_to("not json", "2"), None);
    }

    #[tokio::test]
    async fn a_command_runs_without_a_shell_and_its_output_is_kept() {
        let argv = vec!["/bin/echo".to_string(), "a; b".to_string()];
        match run(&argv, Duration::from_secs(10)).await {
            Ran::Exited { code, stdout, .. } => {
                assert_eq!(code, 0);
                assert_eq!(stdout, "a; b\n");
            }
            other => panic!("{other:?}"),
        }
        match run(&["/no/such/program".to_string()], Duration::from_secs(10)).await {
            Ran::Broken(why) => assert!(why.contains("/no/such/program"), "{why}"),
            other => panic!("{other:?}"),
        }
        match run(
            &["/bin/sleep".to_string(), "5".to_string()],
            Duration::from_millis(100),
        )
        .await
        {
            Ran::TimedOut(_) => {}
            other => panic!("{other:?}"),
        }
    }
}
