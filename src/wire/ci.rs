//! The CI/CD deploy callback: `POST /api/v1/deploys`, our own format.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::ToSchema;

use super::{WireError, check, is_plain_text, parse_time};
use crate::domain::deploy::status;
use crate::domain::field::Field;
use crate::domain::{Deploy, DeploySource, TargetRef};

/// What a pipeline posts when it starts or finishes a deploy. Unknown fields are
/// rejected, so that a typo (`comit`) is a 400, not silently lost evidence. A field
/// that can reach a command (an executor's argv, a command people paste) must fit its
/// grammar ([`Field`]: never a leading `-`, no spaces, quotes or shell syntax); the
/// other text fields are at most 1024 bytes without control characters.
///
/// Two rules relate fields, and break with 422: `finished_at` not before
/// `started_at`, and at most 32 images in `images` and `image` together.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CiDeployPayload {
    /// Defaults to `kubernetes.cluster` from the config.
    #[schema(
        max_length = 253,
        pattern = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)?$"
    )]
    pub cluster: Option<String>,
    #[schema(
        max_length = 63,
        pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        example = "prod"
    )]
    pub namespace: String,
    /// The workload's name, e.g. the Deployment.
    #[schema(
        max_length = 253,
        pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
        example = "checkout"
    )]
    pub name: String,
    /// Defaults to `Deployment`.
    #[schema(pattern = "^[A-Za-z][A-Za-z0-9]{0,62}$", example = "Deployment")]
    pub kind: Option<String>,
    /// The pipeline's own id for this deploy (run number): the idempotency key.
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._+:/-]{0,127}$", example = "2231")]
    pub revision: String,
    /// `started`, `succeeded` or `failed`.
    #[schema(pattern = "^(started|succeeded|failed)$", example = "succeeded")]
    pub status: String,
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$", example = "production")]
    pub environment: Option<String>,
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$", example = "eu-west-1")]
    pub region: Option<String>,
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$", example = "1.6.0")]
    pub version: Option<String>,
    /// One image reference (added to `images`): `[host[:port]/]path[:tag][@digest]`.
    #[schema(
        max_length = 1024,
        pattern = r"^((localhost|[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)+)(:[0-9]{1,5})?/)?[a-z0-9]+([._-]+[a-z0-9]+)*(/[a-z0-9]+([._-]+[a-z0-9]+)*)*(:[A-Za-z0-9_][A-Za-z0-9._-]{0,127})?(@[A-Za-z][A-Za-z0-9]*:[0-9a-fA-F]{32,})?$"
    )]
    pub image: Option<String>,
    /// Image references; at most 32 with `image`.
    #[serde(default)]
    #[schema(max_items = 32, inline)]
    pub images: Vec<ImageRef>,
    /// The commit deployed: 4 to 64 hexadecimal digits.
    #[schema(pattern = "^[0-9a-fA-F]{4,64}$", example = "9f1c2d3")]
    pub commit: Option<String>,
    /// RFC 3339; a deploy first reported without it started then (or at its
    /// `finished_at`, if that came first).
    #[schema(format = DateTime)]
    pub started_at: Option<String>,
    /// RFC 3339, not before `started_at`; a `succeeded` or `failed` report without it
    /// finished when it was sent.
    #[schema(format = DateTime)]
    pub finished_at: Option<String>,
    /// The pipeline run's URL (http or https), at most 1024 characters.
    #[schema(
        max_length = 1024,
        pattern = "^https?://[^\\u0000-\\u001f\\u007f-\\u009f]*$",
        example = "https://ci.example.com/runs/2231"
    )]
    pub link: Option<String>,
    #[schema(max_length = 1024, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    pub actor: Option<String>,
    #[schema(max_length = 1024, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    pub description: Option<String>,
    /// A Helm release name (at most 53).
    #[schema(
        max_length = 53,
        pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
        example = "checkout"
    )]
    pub helm_release: Option<String>,
}

/// An image reference: `[host[:port]/]path[:tag][@digest]`, at most 1024 characters.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(
    max_length = 1024,
    pattern = r"^((localhost|[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)+)(:[0-9]{1,5})?/)?[a-z0-9]+([._-]+[a-z0-9]+)*(/[a-z0-9]+([._-]+[a-z0-9]+)*)*(:[A-Za-z0-9_][A-Za-z0-9._-]{0,127})?(@[A-Za-z][A-Za-z0-9]*:[0-9a-fA-F]{32,})?$"
)]
pub struct ImageRef(String);

const MAX_TEXT: usize = 1024;
const MAX_IMAGES: usize = 32;

impl CiDeployPayload {
    /// Parses and validates a body; `now` stands in for a missing `started_at`.
    pub fn parse(
        body: &[u8],
        default_cluster: &str,
        now: DateTime<Utc>,
    ) -> Result<Deploy, WireError> {
        let payload: CiDeployPayload = super::from_json(body)?;
        payload.into_deploy(default_cluster, now)
    }

    fn into_deploy(self, default_cluster: &str, now: DateTime<Utc>) -> Result<Deploy, WireError> {
        let cluster = self.cluster.unwrap_or_else(|| default_cluster.to_string());
        let kind = self.kind.unwrap_or_else(|| "Deployment".into());
        for (field, grammar, value) in [
            ("cluster", Field::Cluster, Some(&cluster)),
            ("namespace", Field::Namespace, Some(&self.namespace)),
            ("name", Field::Name, Some(&self.name)),
            ("kind", Field::Kind, Some(&kind)),
            ("revision", Field::Revision, Some(&self.revision)),
            ("environment", Field::Environment, self.environment.as_ref()),
            ("region", Field::Region, self.region.as_ref()),
            ("version", Field::Version, self.version.as_ref()),
            ("commit", Field::Commit, self.commit.as_ref()),
            (
                "helm_release",
                Field::HelmRelease,
                self.helm_release.as_ref(),
            ),
        ] {
            if let Some(value) = value {
                check(field, grammar, value)?;
            }
        }
        if ![status::STARTED, status::SUCCEEDED, status::FAILED].contains(&self.status.as_str()) {
            return Err(WireError::new(
                "invalid_field",
                "status",
                format!("{:?} is not started, succeeded or failed", self.status),
            ));
        }
        let started = self
            .started_at
            .as_deref()
            .map(|s| parse_time("started_at", s, now))
            .transpose()?;
        let mut finished_at = self
            .finished_at
            .as_deref()
            .map(|s| parse_time("finished_at", s, now))
            .transpose()?;
        if let (Some(started), Some(finished)) = (started, finished_at)
            && finished < started
        {
            return Err(WireError::inconsistent(
                "finished_at",
                "is before started_at",
            ));
        }
        // A final report without a time finished when it was sent.
        if finished_at.is_none() && self.status != status::STARTED {
            finished_at = Some(now);
        }
        // A pipeline that only reports the end: the deploy started no later than that.
        // (For a deploy already on record, the stored start stands.)
        let started_at = started.unwrap_or_else(|| finished_at.map_or(now, |f| f.min(now)));
        let mut images: Vec<String> = self.images.into_iter().map(|i| i.0).collect();
        images.extend(self.image);
        if images.len() > MAX_IMAGES {
            return Err(WireError::inconsistent(
                "images",
                format!("at most {MAX_IMAGES} with image"),
            ));
        }
        for (i, image) in images.iter().enumerate() {
            check(&format!("images[{i}]"), Field::Image, image)?;
        }
        for (field, value) in [
            ("actor", &self.actor),
            ("description", &self.description),
            ("link", &self.link),
        ] {
            if let Some(value) = value {
                check_text(field, value)?;
            }
        }
        if let Some(link) = &self.link
            && !(link.starts_with("https://") || link.starts_with("http://"))
        {
            return Err(WireError::new(
                "invalid_field",
                "link",
                "must be an http(s) URL",
            ));
        }
        let target = TargetRef::new(&cluster, &self.namespace, &kind, &self.name);
        let mut deploy = Deploy::new(
            target,
            DeploySource::Ci,
            self.revision,
            self.status,
            started_at,
        );
        deploy.finished_at = finished_at;
        deploy.environment = self.environment;
        deploy.region = self.region;
        deploy.version = self.version;
        deploy.images = images;
        deploy.commit_sha = self.commit;
        deploy.link = self.link;
        deploy.actor = self.actor;
        deploy.description = self.description;
        deploy.helm_release = self.helm_release;
        Ok(deploy)
    }
}

/// `value` by its field's grammar, or a 400 naming `field` and the grammar.
fn check_text(field: &str, value: &str) -> Result<(), WireError> {
    if !is_plain_text(value, MAX_TEXT) {
        return Err(WireError::new(
            "invalid_field",
            field,
            format!("must be at most {MAX_TEXT} characters without control characters"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn now() -> DateTime<Utc> {
        "2026-08-22T14:00:00Z".parse().unwrap()
    }

    fn full() -> Value {
        json!({
            "namespace": "prod", "name": "checkout", "revision": "2231", "status": "succeeded",
            "environment": "production", "region": "eu-west-1", "version": "1.6.0",
            "image": "registry.example.com/shop/checkout:1.6.0", "commit": "9f1c2d3",
            "started_at": "2026-08-22T13:55:00Z", "finished_at": "2026-08-22T13:58:00Z",
            "link": "https://ci.example.com/shop/checkout/runs/2231", "actor": "release-bot"
        })
    }

    fn parse(v: &Value) -> Result<Deploy, WireError> {
        CiDeployPayload::parse(v.to_string().as_bytes(), "prod-eu", now())
    }

    #[test]
    fn a_full_callback_becomes_a_ci_deploy() {
        let d = parse(&full()).unwrap();
        assert_eq!(d.target.key(), "prod-eu/prod/Deployment/checkout");
        assert_eq!(
            (d.source, d.revision.as_str(), d.status.as_str()),
            (DeploySource::Ci, "2231", "succeeded")
        );
        assert_eq!(d.images, ["registry.example.com/shop/checkout:1.6.0"]);
        assert_eq!(d.commit_sha.as_deref(), Some("9f1c2d3"));
        assert_eq!(d.finished_at, Some("2026-08-22T13:58:00Z".parse().unwrap()));
    }

    #[test]
    fn a_finish_report_without_times_finishes_now_and_is_not_checked_against_a_guess() {
        let d = parse(
            &json!({"namespace": "prod", "name": "checkout", "revision": "7",
                              "status": "succeeded", "finished_at": "2026-08-22T13:00:00Z"}),
        )
        .unwrap();
        assert_eq!(d.finished_at, Some("2026-08-22T13:00:00Z".parse().unwrap()));
        assert_eq!(d.started_at, d.finished_at.unwrap());
        let d = parse(
            &json!({"namespace": "prod", "name": "checkout", "revision": "7", "status": "failed"}),
        )
        .unwrap();
        assert_eq!(d.finished_at, Some(now()));
    }

    #[test]
    fn a_minimal_callback_starts_now() {
        let d = parse(
            &json!({"namespace": "prod", "name": "checkout", "revision": "7", "status": "started"}),
        )
        .unwrap();
        assert_eq!(d.started_at, now());
        assert_eq!(d.finished_at, None);
    }

    #[test]
    fn every_bad_field_is_named() {
        let cases: Vec<(&str, Value, &str)> = vec![
            ("namespace", json!("Prod"), "namespace"),
            ("name", json!(""), "name"),
            ("name", json!(7), "name"),
            ("kind", json!("Deploy ment"), "kind"),
            ("revision", json!("run 7"), "revision"),
            ("revision", json!("x".repeat(129)), "revision"),
            ("status", json!("done"), "status"),
            ("started_at", json!("13:55"), "started_at"),
            ("finished_at", json!("2026-08-22T13:00:00Z"), "finished_at"),
            ("link", json!("javascript:alert(1)"), "link"),
            ("image", json!("has space:1"), "images[0]"),
            ("actor", json!("a\u{7}b"), "actor"),
            ("comit", json!("9f1c2d3"), "comit"),
        ];
        for (key, value, field) in cases {
            let mut body = full();
            body[key] = value;
            let err = parse(&body).expect_err(key);
            assert_eq!(err.field, field, "{key}: {err}");
        }
        let mut body = full();
        body.as_object_mut().unwrap().remove("revision");
        assert_eq!(parse(&body).unwrap_err().field, "body");
    }

    #[test]
    fn a_value_that_could_reach_a_command_must_fit_its_grammar() {
        for key in [
            "cluster",
            "namespace",
            "name",
            "kind",
            "revision",
            "environment",
            "region",
            "version",
            "image",
            "commit",
            "helm_release",
        ] {
            for value in crate::domain::field::tests::hostile() {
                if key == "cluster" && value.is_empty() {
                    continue;
                }
                let mut body = full();
                body[key] = json!(value);
                let err = parse(&body).expect_err(&format!("{key}={value:?}"));
                // A NUL is refused for the whole body (neither store can keep it).
                let field = if value.contains('\0') {
                    "body"
                } else if key == "image" {
                    "images[0]"
                } else {
                    key
                };
                assert_eq!(err.field, field, "{key}={value:?}: {err}");
            }
        }
        let mut body = full();
        body["images"] = json!(["ghcr.io/acme/checkout:v1", "--kubeconfig=x"]);
        assert_eq!(parse(&body).unwrap_err().field, "images[1]");
    }

    #[test]
    fn the_grammar_error_says_what_the_field_must_be() {
        let mut body = full();
        body["helm_release"] = json!("--kubeconfig=attacker.yaml");
        let err = parse(&body).unwrap_err();
        assert_eq!(err.field, "helm_release");
        assert!(
            err.message.starts_with("must be a Helm release name"),
            "{err}"
        );
    }
}
