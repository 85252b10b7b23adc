//! Helm release storage (Secret and ConfigMap drivers) decoded into deploys, and what
//! the `helm` CLI's errors mean ([`classify_failure`]).
//!
//! Helm keeps one object per release revision; its `release` value is base64 of (usually
//! gzipped) release JSON (PROTOCOLS.md D.2). Decoding is pure and bounded: a release
//! larger than [`MAX_RELEASE_BYTES`] once decompressed is refused, so a crafted Secret
//! cannot exhaust memory.

use std::borrow::Cow;
use std::io::Read;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use flate2::read::MultiGzDecoder;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;

use crate::domain::{Deploy, DeploySource, TargetRef};

/// The `type` of every Secret the Helm Secret driver writes.
pub const SECRET_TYPE: &str = "helm.sh/release.v1";
/// The label (with value [`OWNER_VALUE`]) Helm puts on every release object.
pub const OWNER_LABEL: &str = "owner";
/// The value of [`OWNER_LABEL`] on release objects.
pub const OWNER_VALUE: &str = "helm";
/// The data key holding the encoded release.
pub const RELEASE_KEY: &str = "release";
/// The largest release JSON we accept after decompression.
pub const MAX_RELEASE_BYTES: u64 = 16 * 1024 * 1024;

/// Helm statuses after which a revision no longer changes on its own.
const FINAL_STATUSES: [&str; 4] = ["deployed", "superseded", "failed", "uninstalled"];

const GZIP_MAGIC: [u8; 3] = [0x1f, 0x8b, 0x08];

/// One revision of a Helm release, as `helm history` knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelmRelease {
    pub name: String,
    pub namespace: String,
    /// The revision number (`helm history` REVISION).
    pub version: i64,
    /// Helm's status verbatim: `deployed`, `superseded`, `failed`, `pending-upgrade`…
    pub status: String,
    pub chart_name: String,
    pub chart_version: String,
    /// `chart.metadata.appVersion`; `None` when the chart declares none.
    pub app_version: Option<String>,
    pub first_deployed: Option<DateTime<Utc>>,
    pub last_deployed: Option<DateTime<Utc>>,
    /// When this revision was deployed: `last_deployed`, or `first_deployed` when the
    /// release carries no `last_deployed`. Always known for a decoded release.
    pub deployed_at: DateTime<Utc>,
    pub description: String,
    /// The revision a Helm 4 rollback restored (`info.rollback_revision`).
    pub rollback_revision: Option<i64>,
}

/// Why a Kubernetes object could not be read as a Helm release.
#[derive(Debug, thiserror::Error)]
pub enum HelmDecodeError {
    /// The object is not one Helm's storage driver wrote.
    #[error("{object} is not a Helm release: {reason}")]
    NotHelm { object: String, reason: String },
    #[error("release is not valid base64: {0}")]
    Base64(#[source] base64::DecodeError),
    #[error("release starts like gzip but does not decompress: {0}")]
    Gzip(#[source] std::io::Error),
    #[error("release is larger than {limit} bytes once decompressed")]
    TooLarge { limit: u64 },
    #[error("release is not valid release JSON at `{path}`: {source}")]
    Json {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    /// A field the release must carry is missing or unusable; `field` is its JSON path.
    #[error("release field `{field}` {problem}")]
    Field {
        field: &'static str,
        problem: String,
    },
}

impl HelmDecodeError {
    /// A label for the `rollwarden_helm_decode_errors_total` metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            HelmDecodeError::NotHelm { .. } => "not_helm",
            HelmDecodeError::Base64(_) => "base64",
            HelmDecodeError::Gzip(_) => "gzip",
            HelmDecodeError::TooLarge { .. } => "too_large",
            HelmDecodeError::Json { .. } => "json",
            HelmDecodeError::Field { .. } => "field",
        }
    }

    fn missing(field: &'static str) -> Self {
        HelmDecodeError::Field {
            field,
            problem: "is missing or empty".into(),
        }
    }
}

/// Decodes the value of `data.release` with Kubernetes' own base64 layer already removed
/// (k8s-openapi's `ByteString` does that): base64 text of gzipped, or plain, release JSON.
pub fn decode_release(encoded: &[u8]) -> Result<HelmRelease, HelmDecodeError> {
    decode(encoded, None)
}

/// Reads a release from a Secret written by Helm's default (`secret`) storage driver.
pub fn release_from_secret(secret: &Secret) -> Result<HelmRelease, HelmDecodeError> {
    let object = || describe("secret", &secret.metadata);
    let kind = secret.type_.as_deref().unwrap_or("");
    if kind != SECRET_TYPE {
        return Err(HelmDecodeError::NotHelm {
            object: object(),
            reason: format!("type is `{kind}`, not `{SECRET_TYPE}`"),
        });
    }
    check_owner(&secret.metadata, object)?;
    let encoded = secret
        .data
        .as_ref()
        .and_then(|data| data.get(RELEASE_KEY))
        .ok_or_else(|| no_release_key(object()))?;
    decode(&encoded.0, secret.metadata.namespace.as_deref())
}

/// Reads a release from a ConfigMap written by Helm's `configmap` storage driver, where
/// `data.release` holds the base64 string directly.
pub fn release_from_configmap(cm: &ConfigMap) -> Result<HelmRelease, HelmDecodeError> {
    let object = || describe("configmap", &cm.metadata);
    check_owner(&cm.metadata, object)?;
    let encoded = cm
        .data
        .as_ref()
        .and_then(|data| data.get(RELEASE_KEY))
        .ok_or_else(|| no_release_key(object()))?;
    decode(encoded.as_bytes(), cm.metadata.namespace.as_deref())
}

impl HelmRelease {
    /// Whether Helm is done with this revision (nothing is pending on it).
    pub fn is_final(&self) -> bool {
        FINAL_STATUSES.contains(&self.status.as_str())
    }

    /// This revision as a deploy of the release itself (`kind` `HelmRelease`).
    pub fn to_deploy(&self, cluster: &str) -> Deploy {
        let mut deploy = Deploy::new(
            TargetRef::helm_release(cluster, &self.namespace, &self.name),
            DeploySource::Helm,
            self.version.to_string(),
            self.status.clone(),
            self.deployed_at,
        );
        deploy.helm_release = Some(self.name.clone());
        deploy.chart = Some(self.chart_name.clone());
        deploy.chart_version = Some(self.chart_version.clone());
        deploy.app_version = self.app_version.clone();
        deploy.version = Some(
            self.app_version
                .clone()
                .unwrap_or_else(|| self.chart_version.clone()),
        );
        deploy.description = Some(self.description.clone()).filter(|d| !d.is_empty());
        deploy.finished_at = self.last_deployed.filter(|_| self.is_final());
        let mut details = serde_json::Map::new();
        if let Some(first) = self.first_deployed {
            details.insert("first_deployed".into(), serde_json::json!(first));
        }
        if let Some(rollback) = self.rollback_revision {
            details.insert("rollback_revision".into(), rollback.into());
        }
        deploy.details = serde_json::Value::Object(details);
        deploy
    }
}

/// Why a `helm history` or `helm rollback` failed, read from what it printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelmFailure {
    /// The cluster could not be reached, or a request to it failed on the way (refused,
    /// reset, timed out): another attempt later may succeed.
    Unreachable,
    /// Another Helm operation holds the release: another attempt later may succeed.
    Busy,
    /// The release does not exist (in that namespace).
    ReleaseNotFound,
    /// The release has no such revision.
    RevisionNotFound,
    /// The release name or revision is not valid.
    Invalid,
    /// The rollback was applied, but its resources were not ready within `--timeout`
    /// (`--wait`): Helm recorded the new revision as failed.
    NotReady,
    /// Anything else: what Helm did is not known from its words.
    Other,
}

impl HelmFailure {
    /// Worth another attempt with backoff: nothing in the way will last.
    pub fn is_transient(self) -> bool {
        matches!(self, Self::Unreachable | Self::Busy)
    }

    /// No attempt will succeed: the release or revision is not there.
    pub fn is_permanent(self) -> bool {
        matches!(
            self,
            Self::ReleaseNotFound | Self::RevisionNotFound | Self::Invalid
        )
    }

    /// A short, stable label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Self::Unreachable => "unreachable",
            Self::Busy => "busy",
            Self::ReleaseNotFound => "release_not_found",
            Self::RevisionNotFound => "revision_not_found",
            Self::Invalid => "invalid",
            Self::NotReady => "not_ready",
            Self::Other => "other",
        }
    }
}

/// Classifies a failed `helm` run by its stderr (the CLI prints `Error: ` and the error,
/// cobra's default). Helm 3 and 4 word some errors differently; both are matched,
/// ignoring case. The order matters: a `--wait` verdict may quote a network error, and
/// the rollback it judges was applied, so it is never taken for a transient failure.
pub fn classify_failure(stderr: &str) -> HelmFailure {
    let text = stderr.to_lowercase();
    let has = |needle: &str| text.contains(needle);
    // pkg/action/rollback.go, performRollback: `fmt.Errorf("release %s failed: %w",
    // targetRelease.Name, err)` around the waiter's error (Helm 3: k8s.io's
    // "timed out waiting for the condition"; Helm 4: "resource … not ready" and
    // "context deadline exceeded").
    let waited = text.split("release ").skip(1).any(|rest| {
        rest.split_once(' ')
            .is_some_and(|(_, tail)| tail.starts_with("failed: "))
    });
    if waited {
        return HelmFailure::NotReady;
    }
    // pkg/storage/driver/driver.go: `ErrReleaseNotFound = errors.New("release: not
    // found")`, from `helm history` and `helm rollback` of a release that does not
    // exist; pkg/storage/storage.go `Last`: `no revision for release %q`.
    if has("release: not found") || has("no revision for release") {
        return HelmFailure::ReleaseNotFound;
    }
    // pkg/action/rollback.go, prepareRollback: `release has no %d version`.
    if has("release has no ") && has(" version") {
        return HelmFailure::RevisionNotFound;
    }
    // pkg/action/action.go: `errInvalidRevision = errors.New("invalid release
    // revision")`; rollback.go: `prepareRollback: Release name is invalid: %s`;
    // history.go: `release name is invalid: %s`.
    if has("invalid release revision") || has("release name is invalid") {
        return HelmFailure::Invalid;
    }
    // pkg/action/action.go: `errPending = errors.New("another operation
    // (install/upgrade/rollback) is in progress")`; pkg/storage/driver/driver.go:
    // `ErrReleaseExists = errors.New("release: already exists")`, when a concurrent
    // operation created the revision this one was about to.
    if has("another operation (install/upgrade/rollback) is in progress")
        || has("release: already exists")
    {
        return HelmFailure::Busy;
    }
    // pkg/kube/client.go, IsReachable (the first step of `helm history` and
    // `helm rollback`): Helm 3 `errors.Wrap(err, "Kubernetes cluster unreachable")`,
    // Helm 4 `fmt.Errorf("kubernetes cluster unreachable: %w", err)`.
    if has("kubernetes cluster unreachable") {
        return HelmFailure::Unreachable;
    }
    // A request that failed on the way: Go's net package (`connect: connection
    // refused`, `connection reset by peer`, `i/o timeout`), net/http (`net/http: TLS
    // handshake timeout`, `Client.Timeout exceeded while awaiting headers`), and the
    // API server's 504 and 503 (k8s.io/apimachinery pkg/api/errors: "the server was
    // unable to return a response in the time allotted", "the server is currently
    // unable to handle the request").
    const TRANSPORT: [&str; 7] = [
        "connection refused",
        "connection reset by peer",
        "i/o timeout",
        "tls handshake timeout",
        "client.timeout exceeded",
        "the server was unable to return a response in the time allotted",
        "the server is currently unable to handle the request",
    ];
    if TRANSPORT.iter().any(|needle| has(needle)) {
        return HelmFailure::Unreachable;
    }
    HelmFailure::Other
}

fn describe(kind: &str, meta: &ObjectMeta) -> String {
    format!(
        "{kind} {}/{}",
        meta.namespace.as_deref().unwrap_or(""),
        meta.name.as_deref().unwrap_or("")
    )
}

fn check_owner(meta: &ObjectMeta, object: impl Fn() -> String) -> Result<(), HelmDecodeError> {
    let owner = meta.labels.as_ref().and_then(|l| l.get(OWNER_LABEL));
    if owner.map(String::as_str) == Some(OWNER_VALUE) {
        return Ok(());
    }
    Err(HelmDecodeError::NotHelm {
        object: object(),
        reason: match owner {
            Some(other) => format!("label `{OWNER_LABEL}` is `{other}`, not `{OWNER_VALUE}`"),
            None => format!("label `{OWNER_LABEL}={OWNER_VALUE}` is missing"),
        },
    })
}

fn no_release_key(object: String) -> HelmDecodeError {
    HelmDecodeError::NotHelm {
        object,
        reason: format!("it has no `data.{RELEASE_KEY}` key"),
    }
}

/// Decodes a release, taking the namespace from its object when the JSON omits it
/// (Helm's `namespace` is `omitempty`).
fn decode(encoded: &[u8], object_namespace: Option<&str>) -> Result<HelmRelease, HelmDecodeError> {
    let json = decompress(decode_base64(encoded)?)?;
    let de = &mut serde_json::Deserializer::from_slice(&json);
    let raw: RawRelease =
        serde_path_to_error::deserialize(de).map_err(|err| HelmDecodeError::Json {
            path: err.path().to_string(),
            source: err.into_inner(),
        })?;
    raw.into_release(object_namespace)
}

fn decode_base64(encoded: &[u8]) -> Result<Vec<u8>, HelmDecodeError> {
    // Go's base64 decoder skips CR and LF, so a line-wrapped value decodes for Helm too.
    let text: Cow<[u8]> = if encoded.iter().any(|b| matches!(b, b'\r' | b'\n')) {
        Cow::Owned(
            encoded
                .iter()
                .copied()
                .filter(|b| !matches!(b, b'\r' | b'\n'))
                .collect(),
        )
    } else {
        Cow::Borrowed(encoded)
    };
    STANDARD.decode(text).map_err(HelmDecodeError::Base64)
}

fn decompress(raw: Vec<u8>) -> Result<Vec<u8>, HelmDecodeError> {
    let too_large = HelmDecodeError::TooLarge {
        limit: MAX_RELEASE_BYTES,
    };
    if !raw.starts_with(&GZIP_MAGIC) {
        // Releases written before Helm compressed them are plain JSON.
        return if raw.len() as u64 > MAX_RELEASE_BYTES {
            Err(too_large)
        } else {
            Ok(raw)
        };
    }
    let mut json = Vec::new();
    // Multi-member like Go's gzip.Reader; reading one byte past the limit tells a
    // release of exactly the limit from a bigger one without inflating the rest.
    MultiGzDecoder::new(raw.as_slice())
        .take(MAX_RELEASE_BYTES + 1)
        .read_to_end(&mut json)
        .map_err(HelmDecodeError::Gzip)?;
    if json.len() as u64 > MAX_RELEASE_BYTES {
        return Err(too_large);
    }
    Ok(json)
}

/// The fields of Helm's release JSON we read; serde skips the chart, manifest and hooks.
#[derive(Deserialize)]
struct RawRelease {
    name: Option<String>,
    namespace: Option<String>,
    version: Option<i64>,
    info: Option<RawInfo>,
    chart: Option<RawChart>,
}

#[derive(Deserialize)]
struct RawInfo {
    first_deployed: Option<String>,
    last_deployed: Option<String>,
    description: Option<String>,
    status: Option<String>,
    rollback_revision: Option<i64>,
}

#[derive(Deserialize)]
struct RawChart {
    metadata: Option<RawChartMetadata>,
}

#[derive(Deserialize)]
struct RawChartMetadata {
    name: Option<String>,
    version: Option<String>,
    #[serde(rename = "appVersion")]
    app_version: Option<String>,
}

impl RawRelease {
    fn into_release(self, object_namespace: Option<&str>) -> Result<HelmRelease, HelmDecodeError> {
        let name = required(self.name, "name")?;
        let namespace = required(
            self.namespace
                .filter(|ns| !ns.is_empty())
                .or_else(|| object_namespace.map(str::to_owned)),
            "namespace",
        )?;
        let version = self
            .version
            .ok_or_else(|| HelmDecodeError::missing("version"))?;
        if version < 1 {
            return Err(HelmDecodeError::Field {
                field: "version",
                problem: format!("must be a revision number of 1 or more, not {version}"),
            });
        }
        let info = self.info.ok_or_else(|| HelmDecodeError::missing("info"))?;
        let status = required(info.status, "info.status")?;
        let first_deployed = helm_time(info.first_deployed, "info.first_deployed")?;
        let last_deployed = helm_time(info.last_deployed, "info.last_deployed")?;
        let deployed_at =
            last_deployed
                .or(first_deployed)
                .ok_or_else(|| HelmDecodeError::Field {
                    field: "info.last_deployed",
                    problem: "is missing, and so is info.first_deployed".into(),
                })?;
        let metadata = self
            .chart
            .and_then(|chart| chart.metadata)
            .ok_or_else(|| HelmDecodeError::missing("chart.metadata"))?;
        Ok(HelmRelease {
            name,
            namespace,
            version,
            status,
            chart_name: required(metadata.name, "chart.metadata.name")?,
            chart_version: required(metadata.version, "chart.metadata.version")?,
            app_version: metadata.app_version.filter(|v| !v.is_empty()),
            first_deployed,
            last_deployed,
            deployed_at,
            description: info.description.unwrap_or_default(),
            rollback_revision: info.rollback_revision.filter(|&r| r > 0),
        })
    }
}

fn required(value: Option<String>, field: &'static str) -> Result<String, HelmDecodeError> {
    value
        .filter(|v| !v.is_empty())
        .ok_or_else(|| HelmDecodeError::missing(field))
}

/// Helm's `time.Time`: RFC 3339, with `""` (Helm 3) or absence (Helm 4) meaning unset.
fn helm_time(
    value: Option<String>,
    field: &'static str,
) -> Result<Option<DateTime<Utc>>, HelmDecodeError> {
    match value.as_deref() {
        None | Some("") => Ok(None),
        Some(text) => DateTime::parse_from_rfc3339(text)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|err| HelmDecodeError::Field {
                field,
                problem: format!("is not an RFC 3339 time ({text:?}: {err})"),
            }),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::Compression;
    use flate2::write::GzEncoder;
    use serde_json::{Value, json};

    use super::*;

    const SECRET: &str = include_str!("../../tests/fixtures/helm-release-secret.json");
    const HISTORY: &str = include_str!("../../tests/fixtures/helm-release-history.json");

    fn fixture_secret() -> Secret {
        serde_json::from_str(SECRET).unwrap()
    }

    fn time(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().into()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    /// What Helm stores in `data.release`: base64 of (gzipped) JSON.
    fn encode(release: &Value, compress: bool) -> Vec<u8> {
        let json = serde_json::to_vec(release).unwrap();
        let payload = if compress { gzip(&json) } else { json };
        STANDARD.encode(payload).into_bytes()
    }

    /// The decoded JSON of the fixture secret, to derive variants from.
    fn fixture_json() -> Value {
        let secret = fixture_secret();
        let raw = STANDARD.decode(&secret.data.unwrap()["release"].0).unwrap();
        let mut json = Vec::new();
        MultiGzDecoder::new(raw.as_slice())
            .read_to_end(&mut json)
            .unwrap();
        serde_json::from_slice(&json).unwrap()
    }

    fn decode_json(release: &Value) -> Result<HelmRelease, HelmDecodeError> {
        decode_release(&encode(release, true))
    }

    #[test]
    fn the_fixture_secret_decodes_to_the_release_helm_wrote() {
        let release = release_from_secret(&fixture_secret()).unwrap();
        assert_eq!(
            release,
            HelmRelease {
                name: "checkout".into(),
                namespace: "prod".into(),
                version: 3,
                status: "deployed".into(),
                chart_name: "checkout".into(),
                chart_version: "0.3.2".into(),
                app_version: Some("1.6.0".into()),
                first_deployed: Some(time("2026-08-20T09:12:44.120931805Z")),
                last_deployed: Some(time("2026-08-22T13:55:20.904417233Z")),
                deployed_at: time("2026-08-22T13:55:20.904417233Z"),
                description: "Upgrade complete".into(),
                rollback_revision: None,
            }
        );
    }

    #[test]
    fn a_deployed_release_becomes_a_finished_helm_deploy() {
        let deploy = release_from_secret(&fixture_secret())
            .unwrap()
            .to_deploy("prod-eu");
        assert_eq!(
            deploy.target,
            TargetRef::helm_release("prod-eu", "prod", "checkout")
        );
        assert_eq!(deploy.source, DeploySource::Helm);
        assert_eq!(deploy.revision, "3");
        assert_eq!(deploy.status, "deployed");
        assert_eq!(deploy.helm_release.as_deref(), Some("checkout"));
        assert_eq!(deploy.chart.as_deref(), Some("checkout"));
        assert_eq!(deploy.chart_version.as_deref(), Some("0.3.2"));
        assert_eq!(deploy.app_version.as_deref(), Some("1.6.0"));
        assert_eq!(deploy.version.as_deref(), Some("1.6.0"));
        assert_eq!(deploy.description.as_deref(), Some("Upgrade complete"));
        assert_eq!(deploy.started_at, time("2026-08-22T13:55:20.904417233Z"));
        assert_eq!(
            deploy.finished_at,
            Some(time("2026-08-22T13:55:20.904417233Z"))
        );
        assert_eq!(
            deploy.details,
            json!({"first_deployed": "2026-08-20T09:12:44.120931805Z"})
        );
    }

    #[test]
    fn the_history_fixture_gives_revisions_one_to_three() {
        let list: Value = serde_json::from_str(HISTORY).unwrap();
        let releases: Vec<HelmRelease> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| {
                let secret: Secret = serde_json::from_value(item.clone()).unwrap();
                release_from_secret(&secret).unwrap()
            })
            .collect();
        let summary: Vec<(i64, &str, &str, Option<&str>, &str)> = releases
            .iter()
            .map(|r| {
                (
                    r.version,
                    r.status.as_str(),
                    r.chart_version.as_str(),
                    r.app_version.as_deref(),
                    r.description.as_str(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (1, "superseded", "0.3.0", Some("1.4.0"), "Install complete"),
                (2, "superseded", "0.3.1", Some("1.5.0"), "Upgrade complete"),
                (3, "deployed", "0.3.2", Some("1.6.0"), "Upgrade complete"),
            ]
        );
        assert_eq!(
            releases[0].deployed_at,
            time("2026-08-20T09:12:44.120931805Z")
        );
        assert_eq!(
            releases[1].deployed_at,
            time("2026-08-21T10:30:07.553102447Z")
        );
        assert!(
            releases
                .iter()
                .all(|r| r.first_deployed == Some(time("2026-08-20T09:12:44.120931805Z")))
        );
    }

    #[test]
    fn an_uncompressed_release_decodes() {
        let release = decode_release(&encode(&fixture_json(), false)).unwrap();
        assert_eq!(release.version, 3);
        assert_eq!(release.status, "deployed");
    }

    #[test]
    fn a_line_wrapped_release_decodes_as_go_would() {
        let mut wrapped = Vec::new();
        for line in encode(&fixture_json(), true).chunks(76) {
            wrapped.extend_from_slice(line);
            wrapped.extend_from_slice(b"\r\n");
        }
        assert_eq!(decode_release(&wrapped).unwrap().version, 3);
    }

    #[test]
    fn a_helm_4_release_without_zero_times_decodes() {
        let mut json = fixture_json();
        let info = json["info"].as_object_mut().unwrap();
        info.remove("deleted");
        info.insert("rollback_revision".into(), json!(2));
        info.insert("description".into(), json!("Rollback to 2"));
        json["apply_method"] = json!("ssa");
        let release = decode_json(&json).unwrap();
        assert_eq!(release.rollback_revision, Some(2));
        assert_eq!(release.description, "Rollback to 2");
        assert_eq!(
            release.to_deploy("c").details,
            json!({"first_deployed": "2026-08-20T09:12:44.120931805Z", "rollback_revision": 2})
        );
    }

    #[test]
    fn a_release_without_last_deployed_starts_at_first_deployed() {
        for absent in [json!(""), Value::Null] {
            let mut json = fixture_json();
            json["info"]["last_deployed"] = absent.clone();
            if absent.is_null() {
                json["info"]
                    .as_object_mut()
                    .unwrap()
                    .remove("last_deployed");
            }
            let release = decode_json(&json).unwrap();
            assert_eq!(release.last_deployed, None);
            assert_eq!(release.deployed_at, time("2026-08-20T09:12:44.120931805Z"));
            let deploy = release.to_deploy("c");
            assert_eq!(deploy.started_at, time("2026-08-20T09:12:44.120931805Z"));
            assert_eq!(deploy.finished_at, None);
        }
    }

    #[test]
    fn a_release_without_any_deploy_time_is_rejected() {
        let mut json = fixture_json();
        json["info"]["last_deployed"] = json!("");
        json["info"]
            .as_object_mut()
            .unwrap()
            .remove("first_deployed");
        let err = decode_json(&json).unwrap_err();
        assert!(
            matches!(
                err,
                HelmDecodeError::Field {
                    field: "info.last_deployed",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn a_pending_release_has_not_finished() {
        let mut json = fixture_json();
        json["info"]["status"] = json!("pending-upgrade");
        json["info"]["description"] = json!("Preparing upgrade");
        let deploy = decode_json(&json).unwrap().to_deploy("c");
        assert_eq!(deploy.status, "pending-upgrade");
        assert_eq!(deploy.finished_at, None);
    }

    #[test]
    fn a_chart_without_app_version_is_versioned_by_the_chart() {
        let mut json = fixture_json();
        json["chart"]["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("appVersion");
        let deploy = decode_json(&json).unwrap().to_deploy("c");
        assert_eq!(deploy.app_version, None);
        assert_eq!(deploy.version.as_deref(), Some("0.3.2"));
    }

    #[test]
    fn a_configmap_release_decodes() {
        let secret = fixture_secret();
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {
                "name": "sh.helm.release.v1.checkout.v3",
                "namespace": "prod",
                "labels": {"owner": "helm", "name": "checkout", "status": "deployed", "version": "3"},
            },
            "data": {"release": String::from_utf8(secret.data.unwrap()["release"].0.clone()).unwrap()},
        }))
        .unwrap();
        let release = release_from_configmap(&cm).unwrap();
        assert_eq!(release.version, 3);
        assert_eq!(release.chart_version, "0.3.2");
    }

    #[test]
    fn a_release_without_namespace_takes_its_objects() {
        let mut json = fixture_json();
        json.as_object_mut().unwrap().remove("namespace");
        let mut secret = fixture_secret();
        secret.data.as_mut().unwrap().insert(
            "release".into(),
            k8s_openapi::ByteString(encode(&json, true)),
        );
        assert_eq!(release_from_secret(&secret).unwrap().namespace, "prod");
        let err = decode_json(&json).unwrap_err();
        assert!(
            matches!(
                err,
                HelmDecodeError::Field {
                    field: "namespace",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn bad_base64_is_a_base64_error() {
        let err = decode_release(b"H4sI not base64!").unwrap_err();
        assert!(matches!(err, HelmDecodeError::Base64(_)), "{err}");
        assert_eq!(err.metric_label(), "base64");
    }

    #[test]
    fn gzip_magic_followed_by_garbage_is_a_gzip_error() {
        let mut raw = GZIP_MAGIC.to_vec();
        raw.extend_from_slice(b"\x00\x00\x00\x00\x00\x02\xffthis is not deflate data at all");
        let err = decode_release(STANDARD.encode(raw).as_bytes()).unwrap_err();
        assert!(matches!(err, HelmDecodeError::Gzip(_)), "{err}");
        assert_eq!(err.metric_label(), "gzip");
    }

    #[test]
    fn a_truncated_gzip_stream_is_a_gzip_error() {
        let full = gzip(&serde_json::to_vec(&fixture_json()).unwrap());
        let err = decode_release(STANDARD.encode(&full[..full.len() / 2]).as_bytes()).unwrap_err();
        assert!(matches!(err, HelmDecodeError::Gzip(_)), "{err}");
    }

    #[test]
    fn invalid_json_is_a_json_error() {
        let err = decode_release(STANDARD.encode(gzip(b"{\"name\": ")).as_bytes()).unwrap_err();
        assert!(matches!(err, HelmDecodeError::Json { .. }), "{err}");
        assert_eq!(err.metric_label(), "json");
    }

    #[test]
    fn a_mistyped_field_is_a_json_error_naming_its_path() {
        let mut json = fixture_json();
        json["info"]["status"] = json!(3);
        match decode_json(&json).unwrap_err() {
            HelmDecodeError::Json { path, .. } => assert_eq!(path, "info.status"),
            other => panic!("expected a JSON error, got {other}"),
        }
    }

    #[test]
    fn missing_required_fields_are_named() {
        type Mutation = fn(&mut Value);
        let cases: [(&str, Mutation); 5] = [
            ("info.status", |j| {
                j["info"].as_object_mut().unwrap().remove("status");
            }),
            ("version", |j| {
                j.as_object_mut().unwrap().remove("version");
            }),
            ("name", |j| j["name"] = json!("")),
            ("chart.metadata.version", |j| {
                j["chart"]["metadata"]
                    .as_object_mut()
                    .unwrap()
                    .remove("version");
            }),
            ("info.first_deployed", |j| {
                j["info"]["first_deployed"] = json!("yesterday")
            }),
        ];
        for (expected, mutate) in cases {
            let mut json = fixture_json();
            mutate(&mut json);
            let err = decode_json(&json).unwrap_err();
            match &err {
                HelmDecodeError::Field { field, .. } => assert_eq!(*field, expected),
                other => panic!("{expected}: expected a field error, got {other}"),
            }
            assert_eq!(err.metric_label(), "field");
            assert!(err.to_string().contains(expected), "{err}");
        }
    }

    #[test]
    fn a_secret_of_another_type_is_not_helm() {
        let mut secret = fixture_secret();
        secret.type_ = Some("Opaque".into());
        let err = release_from_secret(&secret).unwrap_err();
        assert!(matches!(err, HelmDecodeError::NotHelm { .. }), "{err}");
        assert_eq!(err.metric_label(), "not_helm");
        assert_eq!(
            err.to_string(),
            "secret prod/sh.helm.release.v1.checkout.v3 is not a Helm release: \
             type is `Opaque`, not `helm.sh/release.v1`"
        );
    }

    #[test]
    fn a_secret_without_the_owner_label_is_not_helm() {
        let mut secret = fixture_secret();
        secret.metadata.labels.as_mut().unwrap().remove("owner");
        let err = release_from_secret(&secret).unwrap_err();
        assert!(matches!(err, HelmDecodeError::NotHelm { .. }), "{err}");
        assert!(err.to_string().contains("owner=helm"), "{err}");

        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": "x", "namespace": "prod", "labels": {"owner": "flux"}},
            "data": {"release": "e30="},
        }))
        .unwrap();
        let err = release_from_configmap(&cm).unwrap_err();
        assert!(matches!(err, HelmDecodeError::NotHelm { .. }), "{err}");
    }

    #[test]
    fn a_secret_without_a_release_key_is_not_helm() {
        let mut secret = fixture_secret();
        secret.data.as_mut().unwrap().remove("release");
        let err = release_from_secret(&secret).unwrap_err();
        assert!(matches!(err, HelmDecodeError::NotHelm { .. }), "{err}");
        assert!(err.to_string().contains("data.release"), "{err}");
    }

    #[test]
    fn a_gzip_bomb_is_refused_once_past_the_limit() {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
        let block = vec![b' '; 1024 * 1024];
        for _ in 0..17 {
            encoder.write_all(&block).unwrap();
        }
        let bomb = encoder.finish().unwrap();
        assert!(
            bomb.len() < 1024 * 1024,
            "the bomb is small: {}",
            bomb.len()
        );
        let err = decode_release(STANDARD.encode(bomb).as_bytes()).unwrap_err();
        assert!(matches!(err, HelmDecodeError::TooLarge { .. }), "{err}");
        assert_eq!(err.metric_label(), "too_large");
    }

    #[test]
    fn helm_failures_are_classified_from_helms_own_words() {
        use HelmFailure::*;
        // Each line as the helm CLI prints it on stderr (`Error: ` + the error).
        let table: [(&str, HelmFailure); 19] = [
            // Helm 3 and 4, pkg/kube/client.go IsReachable.
            (
                "Error: Kubernetes cluster unreachable: Get \"https://10.96.0.1:443/version\": dial tcp 10.96.0.1:443: connect: connection refused",
                Unreachable,
            ),
            (
                "Error: kubernetes cluster unreachable: Get \"https://127.0.0.1:6443/version?timeout=32s\": net/http: TLS handshake timeout",
                Unreachable,
            ),
            ("Error: Kubernetes cluster unreachable", Unreachable),
            (
                "Error: Kubernetes cluster unreachable: Get \"https://api.prod.example:6443/version\": dial tcp: lookup api.prod.example on 10.0.0.10:53: no such host",
                Unreachable,
            ),
            // A request that failed after the reachability check.
            (
                "Error: Get \"https://10.96.0.1:443/api/v1/namespaces/prod/secrets?labelSelector=name%3Dcheckout%2Cowner%3Dhelm\": dial tcp 10.96.0.1:443: i/o timeout",
                Unreachable,
            ),
            (
                "Error: Patch \"https://10.96.0.1:443/apis/apps/v1/namespaces/prod/deployments/checkout\": read tcp 10.1.2.3:51234->10.96.0.1:443: read: connection reset by peer",
                Unreachable,
            ),
            (
                "Error: Get \"https://10.96.0.1:443/api/v1/namespaces/prod/secrets\": net/http: request canceled while waiting for connection (Client.Timeout exceeded while awaiting headers)",
                Unreachable,
            ),
            (
                "Error: the server was unable to return a response in the time allotted, but may still be processing the request (get secrets)",
                Unreachable,
            ),
            (
                "Error: create: failed to create: the server is currently unable to handle the request (post secrets)",
                Unreachable,
            ),
            // Another Helm operation on the release.
            (
                "Error: another operation (install/upgrade/rollback) is in progress",
                Busy,
            ),
            ("Error: release: already exists", Busy),
            // pkg/storage/driver/driver.go ErrReleaseNotFound; storage.go Last.
            ("Error: release: not found", ReleaseNotFound),
            (
                "Error: no revision for release \"checkout\"",
                ReleaseNotFound,
            ),
            // pkg/action/rollback.go prepareRollback.
            ("Error: release has no 7 version", RevisionNotFound),
            ("Error: invalid release revision", Invalid),
            (
                "Error: prepareRollback: Release name is invalid: Checkout_",
                Invalid,
            ),
            // pkg/action/rollback.go performRollback: the --wait verdict, Helm 3 and 4;
            // a network error quoted in it does not make it transient.
            (
                "Error: release checkout failed: timed out waiting for the condition",
                NotReady,
            ),
            (
                "Error: release checkout failed: resource Deployment/prod/checkout not ready. status: InProgress, message: Replicas: 1/3\ncontext deadline exceeded",
                NotReady,
            ),
            (
                "Error: release checkout failed: Get \"https://10.96.0.1:443/apis/apps/v1/namespaces/prod/deployments/checkout\": dial tcp 10.96.0.1:443: connect: connection refused",
                NotReady,
            ),
        ];
        for (stderr, expected) in table {
            assert_eq!(classify_failure(stderr), expected, "{stderr}");
        }
        // What Helm's words do not settle is neither transient nor permanent.
        for other in [
            "Error: timed out waiting for the condition",
            "Error: pre-rollback hooks failed: job failed: BackoffLimitExceeded",
            "",
        ] {
            let failure = classify_failure(other);
            assert_eq!(failure, Other, "{other}");
            assert!(!failure.is_transient() && !failure.is_permanent());
        }
        assert!(Unreachable.is_transient() && Busy.is_transient());
        assert!(ReleaseNotFound.is_permanent() && RevisionNotFound.is_permanent());
        assert!(!NotReady.is_transient() && !NotReady.is_permanent());
    }
}
