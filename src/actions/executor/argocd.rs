//! The Argo CD rollback executor: what an operator does in an incident through Argo
//! CD's API (PROTOCOLS.md I): turn automated sync off for the Application (a rollback
//! is refused while it is on, and self-heal would undo one), then roll it back to the
//! history entry that deployed the known-good revision, and follow the operation.
//! Each step is noted in the journal before it is taken, so that a retry reports what
//! an earlier attempt did. It looks first: an Application already at that revision
//! gets nothing.

use chrono::{DateTime, Utc};

use super::*;
use crate::domain::argocd::{
    auto_sync_on, operation_running, operation_towards, pick_entry, revisions,
};
use crate::domain::decision::argocd_commands;

/// The largest Argo CD answer read: an Application with its history and resources
/// is tens to hundreds of KB.
const MAX_ANSWER: usize = 8 * 1024 * 1024;

/// `argocd app set APP --sync-policy none`, then `argocd app rollback APP ID`.
pub struct ArgocdRollback {
    pub http: reqwest::Client,
    /// `https://argocd.example.com`, without a trailing `/`.
    pub url: String,
    /// `appNamespace`, when the Applications are not in Argo CD's own namespace.
    pub app_namespace: String,
    pub token: Option<Secret>,
    /// Longest wait for the rollback's sync operation, and how often to look.
    pub timeout: Duration,
    pub poll: Duration,
}

/// The step noted before the rollback is asked for: the history id and revision.
pub const ARGOCD_ROLLING_BACK: &str = "argocd_rolling_back";

/// The step noted before automated sync is turned off: the Application and the
/// automated policy it had. A later attempt finds auto-sync off and reads here that
/// rollwarden turned it off, so its result still says so.
pub const ARGOCD_AUTO_SYNC_OFF: &str = "argocd_auto_sync_off";

/// One answer of Argo CD's API.
enum Answer {
    Ok(Value),
    /// 5xx, 429, a transport failure: worth another attempt.
    Transient(String),
    /// Another 4xx: Argo CD's own message.
    Refused(String),
}

impl ArgocdRollback {
    /// `{url}/api/v1/applications/{app}{suffix}[?appNamespace=…]`; `app` is a checked
    /// object name, so it needs no escaping.
    fn app_url(&self, app: &str, suffix: &str) -> String {
        let mut url = format!("{}/api/v1/applications/{app}{suffix}", self.url);
        if !self.app_namespace.is_empty() {
            url.push_str("?appNamespace=");
            url.extend(form_urlencoded::byte_serialize(
                self.app_namespace.as_bytes(),
            ));
        }
        url
    }

    async fn send(&self, request: reqwest::RequestBuilder, token: &Secret) -> Answer {
        let request = request
            .bearer_auth(token.expose())
            .header(reqwest::header::ACCEPT, "application/json");
        let response = match request.send().await {
            Ok(r) => r,
            Err(err) => return Answer::Transient(format!("request failed: {}", err.without_url())),
        };
        let status = response.status();
        let body = match super::read_capped(response, MAX_ANSWER).await {
            Ok(body) => body,
            Err(_) => {
                return Answer::Transient(format!(
                    "Argo CD answered {status} with more than {MAX_ANSWER} bytes"
                ));
            }
        };
        if status.is_success() {
            return match serde_json::from_str(&body) {
                Ok(value) => Answer::Ok(value),
                Err(err) => Answer::Transient(format!("answered {status} with no JSON: {err}")),
            };
        }
        // Argo CD's error body: {"error","code","message"}.
        let message = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| body.chars().take(512).collect());
        let text = format!("Argo CD answered {status}: {message}");
        if status.is_server_error() || status.as_u16() == 429 {
            Answer::Transient(text)
        } else {
            Answer::Refused(text)
        }
    }

    async fn get_app(&self, app: &str, token: &Secret) -> Answer {
        self.send(self.http.get(self.app_url(app, "")), token).await
    }
}

#[async_trait]
impl Executor for ArgocdRollback {
    async fn execute(
        &self,
        action: &ActionRecord,
        dry_run: bool,
        journal: &dyn Journal,
    ) -> ExecOutcome {
        let app = match required(action, "argocd_app") {
            Ok(app) if crate::domain::field::Field::Name.fits(app) => app,
            Ok(app) => return ExecOutcome::Failed(format!("{app:?} is not an Application name")),
            Err(e) => return e,
        };
        let good_commit = param(action, "known_good_commit").filter(|c| !c.is_empty());
        let bad_started = param(action, "suspect_started_at")
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc));
        let Some(token) = &self.token else {
            return ExecOutcome::Failed(
                "no Argo CD token: set actions.argocd_token or the variable actions.argocd_token_env names"
                    .into(),
            );
        };
        let commands = argocd_commands(app, good_commit);
        let current = match self.get_app(app, token).await {
            Answer::Ok(v) => v,
            Answer::Transient(e) => return ExecOutcome::Retry(e),
            Answer::Refused(e) => return ExecOutcome::Failed(e),
        };
        // An earlier attempt that asked for the rollback named its entry.
        let noted = match noted(journal, ARGOCD_ROLLING_BACK).await {
            Ok(notes) => notes.into_iter().last(),
            Err(e) => return e,
        };
        // An earlier attempt turned automated sync off (or asked to, its answer lost).
        let turned_off_before = match super::noted(journal, ARGOCD_AUTO_SYNC_OFF).await {
            Ok(notes) => !notes.is_empty(),
            Err(e) => return e,
        };
        let entry = match &noted {
            Some(note) => note.clone(),
            None => match pick_entry(&current, good_commit, bad_started) {
                Some(e) => json!({ "id": e["id"], "revisions": revisions(e) }),
                None => {
                    return ExecOutcome::Failed(format!(
                        "application {app:?} has no history entry {}: nothing was sent",
                        match good_commit {
                            Some(sha) => format!("with revision {sha}"),
                            None => "deployed before the bad revision".into(),
                        }
                    ));
                }
            },
        };
        let id = entry["id"].as_i64().unwrap_or_default();
        let target: Vec<String> = entry["revisions"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|r| r.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let at_target = |app: &Value| {
            let now = revisions(&app["status"]["sync"]);
            !now.is_empty() && now.iter().all(|r| target.iter().any(|t| t == r))
        };
        let auto_sync = auto_sync_on(&current);
        let mut result = json!({
            "commands": commands,
            "application": app,
            "history_id": id,
            "revisions": target,
        });
        if noted.is_none() && at_target(&current) && !operation_running(&current) {
            result["already_at_revision"] = json!(true);
            if turned_off_before {
                result["auto_sync_disabled"] = json!(true);
                result["note"] = json!(auto_sync_note(true));
            }
            return if dry_run {
                ExecOutcome::DryRun { result }
            } else {
                ExecOutcome::Done {
                    result,
                    verify: true,
                }
            };
        }
        if dry_run {
            result["would_disable_auto_sync"] = json!(auto_sync);
            result["would_roll_back_to"] = json!(id);
            return ExecOutcome::DryRun { result };
        }

        // 1. Automated sync off: a merge patch of the Application (PROTOCOLS.md I.2),
        // noted first so that no later attempt loses the record of it.
        if auto_sync {
            let off = json!({
                "application": app,
                "automated": current["spec"]["syncPolicy"]["automated"],
            });
            if let Err(why) = journal.note(ARGOCD_AUTO_SYNC_OFF, &off).await {
                return ExecOutcome::Retry(format!(
                    "cannot record that auto-sync is being turned off before doing it: {why}"
                ));
            }
            let body = json!({
                "name": app,
                "patchType": "merge",
                "patch": json!({"spec": {"syncPolicy": {"automated": null}}}).to_string(),
            });
            let mut body = body;
            if !self.app_namespace.is_empty() {
                body["appNamespace"] = json!(self.app_namespace);
            }
            let request = self
                .http
                .patch(self.app_url(app, ""))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
            match self.send(request, token).await {
                Answer::Ok(_) => {}
                Answer::Transient(e) => return ExecOutcome::Retry(e),
                Answer::Refused(e) => return ExecOutcome::Failed(e),
            }
        }
        let turned_off = auto_sync || turned_off_before;
        result["auto_sync_disabled"] = json!(turned_off);
        result["note"] = json!(auto_sync_note(turned_off));

        // 2. The rollback (PROTOCOLS.md I.3), unless an earlier attempt's is on its way.
        let already_asked =
            noted.is_some() && (at_target(&current) || operation_towards(&current, &target));
        if !already_asked {
            if let Err(why) = journal.note(ARGOCD_ROLLING_BACK, &entry).await {
                return ExecOutcome::Retry(format!(
                    "cannot record the rollback's entry before asking for it: {why}"
                ));
            }
            let mut body = json!({ "name": app, "id": id, "prune": false, "dryRun": false });
            if !self.app_namespace.is_empty() {
                body["appNamespace"] = json!(self.app_namespace);
            }
            let request = self
                .http
                .post(self.app_url(app, "/rollback"))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
            match self.send(request, token).await {
                Answer::Ok(_) => {}
                Answer::Transient(e) => return ExecOutcome::Retry(e),
                Answer::Refused(e) => {
                    return ExecOutcome::Escalate {
                        error: e,
                        result: Some(result),
                    };
                }
            }
        }
        self.follow(app, token, &target, result).await
    }
}

/// What people must still do about auto-sync: restore it when rollwarden turned it
/// off; when it was already off, rollwarden changed nothing and says only that.
fn auto_sync_note(turned_off: bool) -> &'static str {
    if turned_off {
        "auto-sync is off for this Application: turn it back on (argocd app set APP \
         --sync-policy automated) once the Git revert is merged"
    } else {
        "auto-sync was already off for this Application and rollwarden left it so: \
         revert the change in Git before the Application is synced again"
    }
}

impl ArgocdRollback {
    /// Polls the Application until the rollback's sync operation ends.
    async fn follow(
        &self,
        app: &str,
        token: &Secret,
        target: &[String],
        mut result: Value,
    ) -> ExecOutcome {
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            if let Answer::Ok(current) = self.get_app(app, token).await {
                let state = &current["status"]["operationState"];
                let phase = state["phase"].as_str().unwrap_or_default();
                if operation_towards(&current, target) {
                    match phase {
                        "Succeeded" => {
                            result["operation"] = json!("Succeeded");
                            return ExecOutcome::Done {
                                result,
                                verify: true,
                            };
                        }
                        "Failed" | "Error" => {
                            result["operation"] = json!(phase);
                            return ExecOutcome::Escalate {
                                error: format!(
                                    "Argo CD's rollback sync ended {phase}: {}",
                                    state["message"].as_str().unwrap_or_default()
                                ),
                                result: Some(result),
                            };
                        }
                        _ => {}
                    }
                }
            }
            if tokio::time::Instant::now() >= deadline {
                result["operation"] = json!("unknown");
                return ExecOutcome::Escalate {
                    error: format!(
                        "Argo CD's rollback sync did not finish within {} s",
                        self.timeout.as_secs()
                    ),
                    result: Some(result),
                };
            }
            tokio::time::sleep(self.poll).await;
        }
    }
}
