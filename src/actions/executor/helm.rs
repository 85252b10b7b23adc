//! The Helm rollback executor: `helm history` first, then `helm rollback`, and a
//! failure classified by what Helm said (transient: retry; permanent: escalate). One
//! per cluster: both run against the target's cluster, with its kubeconfig and context.

use super::*;
use crate::config::ClusterConfig;

/// `helm rollback RELEASE REVISION -n NS --cleanup-on-fail --wait` through the binary.
pub struct HelmRollback {
    pub helm: String,
    pub timeout: Duration,
    /// `--kubeconfig`: the cluster's kubeconfig file; empty: none given.
    pub kubeconfig: String,
    /// `--kube-context`: the cluster's context; empty: none given.
    pub kube_context: String,
}

impl HelmRollback {
    /// The executor for `cluster`: Helm is given its kubeconfig and context. A cluster
    /// with neither (in-cluster, or the default kubeconfig) gives Helm no flag, and Helm
    /// loads its config as kube's `Config::infer` does: `$KUBECONFIG` or
    /// `~/.kube/config`, else the pod's service account.
    pub fn for_cluster(config: &ActionsConfig, cluster: &ClusterConfig) -> Self {
        Self {
            helm: config.helm_path.clone(),
            timeout: Duration::from_secs(config.helm_timeout_secs),
            kubeconfig: cluster.kubeconfig.clone(),
            kube_context: cluster.context.clone(),
        }
    }

    /// `--kubeconfig PATH --kube-context NAME`, each only when set. A value starting
    /// with `-` is refused: Helm would read it as a flag.
    fn cluster_flags(&self) -> Result<Vec<&str>, ExecOutcome> {
        let mut flags = Vec::new();
        for (flag, value) in [
            ("--kubeconfig", &self.kubeconfig),
            ("--kube-context", &self.kube_context),
        ] {
            if value.is_empty() {
                continue;
            }
            if value.starts_with('-') || value.chars().any(char::is_control) {
                return Err(ExecOutcome::Failed(format!(
                    "{flag} {value:?}: a value starting with '-' or holding a control \
                     character is not passed to helm; nothing was run"
                )));
            }
            flags.extend([flag, value.as_str()]);
        }
        Ok(flags)
    }
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
        let cluster = match self.cluster_flags() {
            Ok(flags) => flags,
            Err(e) => return e,
        };
        let timeout = format!("{}s", self.timeout.as_secs());
        // Values after `--`: Helm (cobra) takes them as arguments, never as flags.
        let argv: Vec<String> = [self.helm.as_str(), "rollback", "-n", namespace]
            .into_iter()
            .chain(cluster.iter().copied())
            .chain([
                "--cleanup-on-fail",
                "--wait",
                "--timeout",
                &timeout,
                "--",
                release,
                revision,
            ])
            .map(str::to_string)
            .collect();
        if dry_run {
            return ExecOutcome::DryRun {
                result: json!({ "would_run": argv }),
            };
        }
        // The world first: is the release already rolled back to that revision?
        let history = [self.helm.as_str(), "history", "-n", namespace]
            .into_iter()
            .chain(cluster.iter().copied())
            .chain(["--max", "1", "-o", "json", "--", release])
            .map(str::to_string)
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
pub(super) fn rolled_back_to(history: &str, revision: &str) -> Option<i64> {
    let entries: Vec<Value> = serde_json::from_str(history).ok()?;
    let latest = entries.last()?;
    let description = latest.get("description")?.as_str()?;
    let status = latest.get("status")?.as_str()?;
    (description == format!("Rollback to {revision}") && status == "deployed")
        .then(|| latest.get("revision").and_then(Value::as_i64))
        .flatten()
}
