//! The executors, each behind [`Executor`]: Kubernetes rollout undo, Helm rollback,
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
use crate::config::{ActionsConfig, CommandConfig, Secret, WebhookConfig};
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
    /// Every executor `config` describes; rollout undo only with a Kubernetes client.
    pub fn new(
        config: &ActionsConfig,
        github_token: Option<Secret>,
        kube: Option<kube::Client>,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        http: reqwest::Client,
    ) -> Self {
        let mut by_kind: HashMap<String, Arc<dyn Executor>> = HashMap::new();
        if let Some(client) = kube {
            by_kind.insert(
                action::ROLLOUT_UNDO.into(),
                Arc::new(RolloutUndo {
                    client,
                    timeout: Duration::from_secs(config.rollout_timeout_secs),
                    poll: Duration::from_secs(1),
                }),
            );
        }
        by_kind.insert(
            action::HELM_ROLLBACK.into(),
            Arc::new(HelmRollback {
                helm: config.helm_path.clone(),
                timeout: Duration::from_secs(config.helm_timeout_secs),
            }),
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
        by_kind.insert(action::FREEZE.into(), Arc::new(Freeze { store, clock }));
        Self { by_kind }
    }

    /// Replaces (or adds) the executor of `kind`: tests tune the rollout poll here.
    pub fn with(mut self, kind: &str, executor: Arc<dyn Executor>) -> Self {
        self.by_kind.insert(kind.to_string(), executor);
        self
    }

    pub fn get(&self, kind: &str) -> Option<Arc<dyn Executor>> {
        self.by_kind.get(kind).cloned()
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

/// `kubectl rollout undo` natively, then `kubectl rollout status`.
pub struct RolloutUndo {
    pub client: kube::Client,
    /// Longest wait for the rollout to settle.
    pub timeout: Duration,
    pub poll: Duration,
}

#[async_trait]
impl Executor for RolloutUndo {
    async fn execute(
        &self,
        action: &ActionRecord,
        dry_run: bool,
        journal: &dyn Journal,
    ) -> ExecOutcome {
        let (namespace, name) = match (required(action, "namespace"), required(action, "name")) {
            (Ok(ns), Ok(name)) => (ns, name),
            (Err(e), _) | (_, Err(e)) => return e,
        };
        // The known-good revision known by its images only (a CI deploy): set them back.
        let images: Vec<String> = action
            .params
            .get("images")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        if param(action, "kubernetes_revision").is_none() && !images.is_empty() {
            return self.revert_images(namespace, name, &images, dry_run).await;
        }
        // The known-good revision; without one, kubectl's "previous".
        let to_revision = match param(action, "kubernetes_revision") {
            None => 0,
            Some(r) => match r.parse::<i64>() {
                Ok(r) if r > 0 => r,
                _ => return ExecOutcome::Failed(format!("revision {r:?} is not a number")),
            },
        };
        let revision = (to_revision > 0).then(|| to_revision.to_string());
        let command = undo_command(namespace, name, revision.as_deref());
        // An earlier attempt that got as far as the PATCH named its ReplicaSet: the
        // rollback to it renumbered it (revision 2 of 3 becomes 4), and "previous" now
        // means the bad revision. So the target is that ReplicaSet, by identity.
        let noted = match journal.noted(PATCHING).await {
            Ok(notes) => notes
                .into_iter()
                .find_map(|note| serde_json::from_value::<UndoTarget>(note).ok()),
            Err(why) => {
                return ExecOutcome::Retry(format!(
                    "cannot read what an earlier attempt did: {why}"
                ));
            }
        };
        let to = match &noted {
            Some(target) => UndoTo::ReplicaSet(target.clone()),
            None => UndoTo::revision(to_revision),
        };
        let plan = match undo::plan_rollout_undo(&self.client, namespace, name, &to).await {
            Ok(plan) => plan,
            Err(err) => return undo_error(err),
        };
        if let (UndoPlan::Patch { target, .. }, false) = (&plan, dry_run) {
            let mut note = json!(target);
            note["command"] = json!(command);
            if let Err(why) = journal.note(PATCHING, &note).await {
                return ExecOutcome::Retry(format!(
                    "cannot record the rollback's target before patching: {why}"
                ));
            }
        }
        // A dry run still asks the API server, which validates the patch and changes
        // nothing (`dryRun=All`).
        let outcome =
            match undo::send_rollout_undo(&self.client, namespace, name, plan, dry_run).await {
                Ok(outcome) => outcome,
                Err(err) => return undo_error(err),
            };
        let renumbered_from = noted.map(|n| n.revision);
        match outcome {
            UndoOutcome::RolledBack {
                dry_run: true,
                target,
                images,
            } => ExecOutcome::DryRun {
                result: json!({
                    "would_run": command,
                    "revision": target.revision,
                    "replicaset": target.replicaset,
                    "images": images,
                    "server_dry_run": true,
                }),
            },
            UndoOutcome::Skipped { target } if dry_run => ExecOutcome::DryRun {
                result: json!({
                    "would_run": command,
                    "revision": target.revision,
                    "replicaset": target.replicaset,
                    "already_at_revision": true,
                }),
            },
            UndoOutcome::Skipped { target } => {
                // The world already shows the rollback (a previous attempt of ours, or
                // a person): do not send it again, but still watch the rollout.
                let mut result = json!({
                    "command": command,
                    "revision": target.revision,
                    "replicaset": target.replicaset,
                    "already_at_revision": true,
                });
                if let Some(from) = renumbered_from.filter(|r| *r != target.revision) {
                    result["renumbered_from"] = json!(from);
                }
                self.follow(namespace, name, result).await
            }
            UndoOutcome::RolledBack { target, images, .. } => {
                self.follow(
                    namespace,
                    name,
                    json!({
                        "command": command,
                        "revision": target.revision,
                        "replicaset": target.replicaset,
                        "images": images,
                    }),
                )
                .await
            }
        }
    }
}

impl RolloutUndo {
    /// `kubectl set image` back to the known-good images, then the rollout status.
    async fn revert_images(
        &self,
        namespace: &str,
        name: &str,
        images: &[String],
        dry_run: bool,
    ) -> ExecOutcome {
        let command = format!(
            "kubectl -n {namespace} set image deployment/{name} (images: {})",
            images.join(" ")
        );
        match set_image::set_images(&self.client, namespace, name, images, dry_run).await {
            Err(err) if err.is_transient() => ExecOutcome::Retry(err.to_string()),
            Err(err) => ExecOutcome::Failed(err.to_string()),
            Ok(SetImageOutcome::Patched {
                set, dry_run: true, ..
            }) => ExecOutcome::DryRun {
                result: json!({ "would_run": command, "set": set, "server_dry_run": true }),
            },
            Ok(SetImageOutcome::Unchanged) if dry_run => ExecOutcome::DryRun {
                result: json!({ "would_run": command, "already_at_images": true }),
            },
            Ok(SetImageOutcome::Unchanged) => {
                self.follow(
                    namespace,
                    name,
                    json!({ "command": command, "images": images, "already_at_images": true }),
                )
                .await
            }
            Ok(SetImageOutcome::Patched { set, .. }) => {
                self.follow(
                    namespace,
                    name,
                    json!({ "command": command, "images": images, "set": set }),
                )
                .await
            }
        }
    }

    async fn follow(&self, namespace: &str, name: &str, mut result: Value) -> ExecOutcome {
        let status = match undo::rollout_status(
            &self.client,
            namespace,
            name,
            self.timeout,
            self.poll,
        )
        .await
        {
            Ok(status) => status,
            Err(err) => {
                result["rollout"] = json!("unknown");
                return ExecOutcome::Escalate {
                    error: format!("rolled back, but rollout status failed: {err}"),
                    result: Some(result),
                };
            }
        };
        match status {
            RolloutStatus::Complete => {
                result["rollout"] = json!("complete");
                ExecOutcome::Done {
                    result,
                    verify: true,
                }
            }
            RolloutStatus::Failed { message } => {
                result["rollout"] = json!("failed");
                ExecOutcome::Escalate {
                    error: message,
                    result: Some(result),
                }
            }
            RolloutStatus::TimedOut => {
                result["rollout"] = json!("timed_out");
                ExecOutcome::Escalate {
                    error: format!(
                        "the rollout did not complete within {} s",
                        self.timeout.as_secs()
                    ),
                    result: Some(result),
                }
            }
        }
    }
}

fn undo_error(err: UndoError) -> ExecOutcome {
    match &err {
        // What an earlier attempt restored is gone from under it: a person looks.
        UndoError::TargetGone { .. } => ExecOutcome::Escalate {
            error: err.to_string(),
            result: None,
        },
        UndoError::Kube { source, .. } => {
            let transient = match source {
                kube::Error::Api(status) => status.code >= 500 || status.code == 429,
                _ => true,
            };
            if transient {
                ExecOutcome::Retry(err.to_string())
            } else {
                ExecOutcome::Failed(err.to_string())
            }
        }
        _ => ExecOutcome::Failed(err.to_string()),
    }
}

/// `helm rollback RELEASE REVISION -n NS --cleanup-on-fail --wait` through the binary.
pub struct HelmRollback {
    pub helm: String,
    pub timeout: Duration,
}

#[async_trait]
impl Executor for HelmRollback {
    async fn execute(
        &self,
        action: &ActionRecord,
        dry_run: bool,
        _journal: &dyn Journal,
    ) -> ExecOutcome {
        let (release, revision, namespace) = match (
            required(action, "helm_release"),
            required(action, "helm_revision"),
            // The target's namespace when the decision names none (never when it
            // names one that does not fit).
            match param(action, "helm_namespace") {
                Some(ns) if !ns.is_empty() => required(action, "helm_namespace"),
                _ => required(action, "namespace"),
            },
        ) {
            (Ok(r), Ok(v), Ok(n)) => (r, v, n),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return e,
        };
        let timeout = format!("{}s", self.timeout.as_secs());
        // Values after `--`: Helm (cobra) takes them as arguments, never as flags.
        let argv: Vec<String> = [
            self.helm.as_str(),
            "rollback",
            "-n",
            namespace,
            "--cleanup-on-fail",
            "--wait",
            "--timeout",
            &timeout,
            "--",
            release,
            revision,
        ]
        .iter()
        .map(|s| (*s).to_string())
        .collect();
        if dry_run {
            return ExecOutcome::DryRun {
                result: json!({ "would_run": argv }),
            };
        }
        // The world first: is the release already rolled back to that revision?
        let history = [
            self.helm.as_str(),
            "history",
            "-n",
            namespace,
            "--max",
            "1",
            "-o",
            "json",
            "--",
            release,
        ]
        .iter()
        .map(|s| (*s).to_string())
        .collect::<Vec<_>>();
        let seen = run(&history, Duration::from_secs(60)).await;
        match &seen {
            Ran::Exited {
                code: 0, stdout, ..
            } => {
                if let Some(latest) = rolled_back_to(stdout, revision) {
                    return ExecOutcome::Done {
                        result: json!({
                            "argv": argv,
                            "already_rolled_back": true,
                            "release_revision": latest,
                        }),
                        verify: true,
                    };
                }
            }
            Ran::Exited { stderr, .. } if classify_failure(stderr).is_permanent() => {
                return helm_cannot(release, revision, namespace, &seen, seen.record(&history));
            }
            // Reading is harmless to repeat, whatever went wrong.
            other => {
                return ExecOutcome::Retry(format!(
                    "cannot read the release history first: {}",
                    other.describe()
                ));
            }
        }
        // `--wait` can take up to the timeout; allow Helm a little more to exit.
        let ran = run(&argv, self.timeout + Duration::from_secs(30)).await;
        let result = ran.record(&argv);
        let Ran::Exited { stderr, .. } = &ran else {
            // Killed at our timeout or by a signal: what it did is unknown.
            return ExecOutcome::Escalate {
                error: format!("helm {}", ran.describe()),
                result: Some(result),
            };
        };
        if ran.succeeded() {
            return ExecOutcome::Done {
                result,
                verify: true,
            };
        }
        match classify_failure(stderr) {
            // Nothing that lasts is in the way; the next attempt reads the history
            // first, so a rollback that got through is not repeated.
            failure if failure.is_transient() => ExecOutcome::Retry(format!(
                "helm {} (transient: {})",
                ran.describe(),
                failure.label()
            )),
            failure if failure.is_permanent() => {
                helm_cannot(release, revision, namespace, &ran, result)
            }
            HelmFailure::NotReady => ExecOutcome::Escalate {
                error: format!(
                    "helm rolled {release} back to revision {revision}, but its resources were \
                     not ready within {} s: {}",
                    self.timeout.as_secs(),
                    ran.describe()
                ),
                result: Some(result),
            },
            _ => ExecOutcome::Escalate {
                error: format!("helm {}", ran.describe()),
                result: Some(result),
            },
        }
    }
}

/// A rollback no attempt can carry out (the release or revision is not there): the
/// action fails at once and a person is told why.
fn helm_cannot(
    release: &str,
    revision: &str,
    namespace: &str,
    ran: &Ran,
    result: Value,
) -> ExecOutcome {
    let why = match ran {
        Ran::Exited { stderr, .. } => match classify_failure(stderr) {
            HelmFailure::ReleaseNotFound => {
                format!("there is no Helm release {release:?} in namespace {namespace}")
            }
            HelmFailure::RevisionNotFound => {
                format!("Helm release {release:?} has no revision {revision}")
            }
            _ => format!("Helm refuses release {release:?} revision {revision}"),
        },
        _ => format!("Helm refuses release {release:?} revision {revision}"),
    };
    ExecOutcome::Escalate {
        error: format!(
            "{why}; nothing was rolled back, and retrying will not help (helm {})",
            ran.describe()
        ),
        result: Some(result),
    }
}

/// The latest revision of a `helm history -o json --max 1` listing, when it is a
/// deployed rollback to `revision` (Helm writes `Rollback to N`).
fn rolled_back_to(history: &str, revision: &str) -> Option<i64> {
    let entries: Vec<Value> = serde_json::from_str(history).ok()?;
    let latest = entries.last()?;
    let description = latest.get("description")?.as_str()?;
    let status = latest.get("status")?.as_str()?;
    (description == format!("Rollback to {revision}") && status == "deployed")
        .then(|| latest.get("revision").and_then(Value::as_i64))
        .flatten()
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
            Posted::Transient(why) => ExecOutcome::Retry(why),
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
                result: json!({ "would_post": self.config.url, "body": body }),
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
                result: json!({ "url": self.config.url, "status": status, "response": text }),
                verify: false,
            },
            Posted::Transient(why) => ExecOutcome::Retry(why),
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

/// How a child process ended.
#[derive(Debug)]
pub(crate) enum Ran {
    Exited {
        code: i32,
        stdout: String,
        stderr: String,
    },
    /// Killed at the timeout: what it did is unknown.
    TimedOut(Duration),
    /// Could not be started (not found, not executable) or was killed by a signal.
    Broken(String),
}

impl Ran {
    fn succeeded(&self) -> bool {
        matches!(self, Ran::Exited { code: 0, .. })
    }

    /// What the action record keeps of a run of `argv`: its exit code and output when
    /// it exited.
    fn record(&self, argv: &[String]) -> Value {
        match self {
            Ran::Exited {
                code,
                stdout,
                stderr,
            } => json!({ "argv": argv, "exit_code": code, "stdout": stdout, "stderr": stderr }),
            Ran::TimedOut(_) | Ran::Broken(_) => json!({ "argv": argv }),
        }
    }

    fn describe(&self) -> String {
        match self {
            Ran::Exited { code, stderr, .. } => format!("exited {code}: {}", stderr.trim()),
            Ran::TimedOut(after) => format!("killed after its {} s timeout", after.as_secs()),
            Ran::Broken(why) => why.clone(),
        }
    }
}

/// Runs `argv` (no shell, no stdin) with a timeout, keeping the first
/// [`OUTPUT_LIMIT`] bytes of stdout and stderr.
pub(crate) async fn run(argv: &[String], timeout: Duration) -> Ran {
    let Some((program, args)) = argv.split_first() else {
        return Ran::Broken("empty argv".into());
    };
    let mut child = match tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(child) => child,
        Err(err) => return Ran::Broken(format!("cannot run {program}: {err}")),
    };
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let waited = tokio::time::timeout(timeout, async {
        tokio::join!(read_prefix(stdout), read_prefix(stderr), child.wait())
    })
    .await;
    match waited {
        Err(_) => {
            let _ = child.kill().await;
            Ran::TimedOut(timeout)
        }
        Ok((_, _, Err(err))) => Ran::Broken(format!("waiting for {program}: {err}")),
        Ok((stdout, stderr, Ok(status))) => match status.code() {
            Some(code) => Ran::Exited {
                code,
                stdout,
                stderr,
            },
            None => Ran::Broken(format!("{program} was killed by a signal")),
        },
    }
}

/// Reads a pipe to its end (so the child never blocks on a full pipe), keeping the
/// first [`OUTPUT_LIMIT`] bytes.
async fn read_prefix(pipe: Option<impl tokio::io::AsyncRead + Unpin>) -> String {
    let mut kept = Vec::new();
    if let Some(mut pipe) = pipe {
        let mut chunk = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut chunk).await {
            if n == 0 {
                break;
            }
            let room = OUTPUT_LIMIT.saturating_sub(kept.len());
            kept.extend_from_slice(&chunk[..n.min(room)]);
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}

/// How an outbound POST went.
pub(crate) enum Posted {
    Ok {
        status: u16,
        body: String,
    },
    /// Network errors, timeouts, 429 and 5xx: retried with backoff.
    Transient(String),
    /// Other 4xx (and redirects): repeating would not help.
    Rejected(String),
}

/// Sends `request`, keeping a bounded excerpt of the answer.
pub(crate) async fn post(request: reqwest::RequestBuilder) -> Posted {
    let response = match request.send().await {
        Ok(response) => response,
        // Without the URL: Slack webhook URLs are secrets.
        Err(err) => return Posted::Transient(format!("request failed: {}", err.without_url())),
    };
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    let excerpt: String = body.chars().take(512).collect();
    if status.is_success() {
        Posted::Ok {
            status: status.as_u16(),
            body: excerpt,
        }
    } else if status.is_server_error() || status.as_u16() == 429 {
        Posted::Transient(format!("answered {status}: {excerpt}"))
    } else {
        Posted::Rejected(format!("answered {status}: {excerpt}"))
    }
}

#[cfg(test)]
mod tests {
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
