//! The rollback plan (one revision per way back) and the GitOps revert.

use super::known_bad::KnownBad;
use super::reason::label;
use super::suspect::{known_good, story_member};
use crate::domain::decision::RollbackPlan;
use crate::domain::{DeployRecord, DeploySource, Target};

/// The tag of a deploy's first tagged image (`ghcr.io/acme/api:v2.4.9` → `v2.4.9`),
/// else its version or app version.
pub(super) fn image_tag(d: &DeployRecord) -> Option<String> {
    d.deploy
        .images
        .iter()
        .find_map(|image| {
            let name = image.split('@').next()?;
            let last = name.rsplit('/').next()?;
            let (_, tag) = last.split_once(':')?;
            (!tag.is_empty()).then(|| tag.to_string())
        })
        .or_else(|| d.deploy.version.clone())
        .or_else(|| d.deploy.app_version.clone())
}

/// The revisions that return the target to its known-good state, one per way the
/// runbooks roll back: rollout undo, Helm rollback, the CD rollback workflow. `None`
/// without a suspect and a known-good revision.
pub(super) fn rollback_plan(
    target: &Target,
    deploys: &[&DeployRecord],
    suspect: Option<&DeployRecord>,
    rollback_to: Option<&DeployRecord>,
    bad: &[KnownBad],
) -> Option<RollbackPlan> {
    let (Some(suspect), Some(rollback_to)) = (suspect, rollback_to) else {
        return None;
    };
    let good =
        |source| story_member(deploys, suspect, source).and_then(|m| known_good(deploys, m, bad));
    // The ReplicaSet revision an undo returns to: the Deployment's, or the Argo
    // Rollout's (its ReplicaSets are numbered the same way).
    let kube_good = match target.target.kind.as_str() {
        "Deployment" => good(DeploySource::Kubernetes),
        crate::domain::action::ROLLOUT_KIND => good(DeploySource::Argo),
        _ => None,
    };
    let helm_good = good(DeploySource::Helm);
    let ci_good = good(DeploySource::Ci);
    let release = target
        .helm_release
        .clone()
        .or_else(|| suspect.deploy.helm_release.clone())
        .or_else(|| helm_good.map(|g| g.deploy.target.name.clone()));
    let (helm_release, helm_revision, helm_namespace) = match (release, helm_good) {
        (Some(release), Some(good)) => (
            Some(release),
            Some(good.deploy.revision.clone()),
            Some(good.deploy.target.namespace.clone()),
        ),
        _ => (None, None, None),
    };
    Some(RollbackPlan {
        kubernetes_revision: kube_good.map(|g| g.deploy.revision.clone()),
        helm_release,
        helm_revision,
        helm_namespace,
        environment: target
            .environment
            .clone()
            .or_else(|| suspect.deploy.environment.clone()),
        image_tag: [ci_good, Some(rollback_to), kube_good, helm_good]
            .into_iter()
            .flatten()
            .find_map(image_tag),
        cd_workflow: target.cd_workflow.clone(),
        suspect_revision: suspect.deploy.revision.clone(),
        rollback_revision: rollback_to.deploy.revision.clone(),
        rollback_images: rollback_to.deploy.images.clone(),
    })
}

///
/// With Flux, and the Flux object that applied the target on record: suspend it first
/// (so that what is done by hand meanwhile stays), revert, and resume it once the
/// revert is merged.
pub(super) fn gitops_commands(target: &Target, suspect: Option<&DeployRecord>) -> Vec<String> {
    use crate::domain::decision::{flux_command, git_revert};
    let controller = target.gitops.as_deref().unwrap_or("the GitOps controller");
    let Some(s) = suspect else {
        return Vec::new();
    };
    let revert = match &s.deploy.commit_sha {
        Some(sha) => git_revert(sha),
        None => format!(
            "Revert the change behind {} in the Git repository that {controller} syncs; \
             a rollout undo would be reverted by self-heal.",
            label(s)
        ),
    };
    let flux = &s.deploy.details["flux"];
    let flux = (controller == "flux")
        .then(|| {
            let (kind, name, namespace) = (
                flux["kind"].as_str()?,
                flux["name"].as_str()?,
                flux["namespace"].as_str()?,
            );
            Some((
                flux_command("suspend", kind, name, namespace)?,
                flux_command("resume", kind, name, namespace)?,
            ))
        })
        .flatten();
    match flux {
        Some((suspend, resume)) => vec![
            suspend,
            revert,
            crate::domain::render::shell::comment("once the revert is merged:"),
            resume,
        ],
        None => vec![revert],
    }
}
