//! Posted signals: `POST /api/v1/signals`, our own format, for observations that do not
//! come from Alertmanager (support tooling's customer reports, a manual SLA violation
//! or data corruption, a degraded dependency).

use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use utoipa::ToSchema;

use super::{WireError, check, parse_time};
use crate::domain::classify::MAX_SUMMARY_CHARS;
use crate::domain::field::Field;
use crate::domain::{Scope, Signal, SignalKind, SignalSource, TargetRef};

/// What a poster sends. Unknown fields are rejected, so that a typo (`vaule`) is a
/// 400, not a signal without its value.
///
/// Rules that relate fields, or a field and our clock, break with 422: `target` is
/// required for every kind but `dependency`, which takes `dependency` instead (and
/// neither the other); `count` is for `customer_reports` only, and not with `value`;
/// `value` and `baseline` are at most 1 for the ratio kinds (`error_rate`, `cpu`,
/// `memory`) and whole for `customer_reports`; `started_at` and `ended_at` are at most
/// 5 minutes ahead of our clock, and `ended_at` is not before `started_at`.
/// The kinds a posted signal may be: [`SignalKind::ALL`], every kind but those only
/// rollwarden makes.
fn posted_kind() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(SignalKind::ALL.iter().map(|k| k.as_str())))
        .examples(["customer_reports"])
        .build()
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignalPayload {
    /// A signal kind (`customer_reports`, `sla_violation`, `dependency`…); required.
    /// Not `release_regressed`, which only rollwarden makes.
    #[schema(schema_with = posted_kind, required = true)]
    pub kind: Option<String>,
    /// The workload it is about; required unless `kind` is `dependency`.
    pub target: Option<SignalTargetPayload>,
    /// For `kind` = `dependency` (and only then, where it is required): its name, 1 to
    /// 128 characters without spaces or control characters.
    #[schema(
        pattern = "^[^\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]{1,128}$",
        example = "database"
    )]
    pub dependency: Option<String>,
    /// `canary`, `stable` (or `primary`) or `any` (the default).
    #[schema(pattern = "^(canary|stable|primary|any)$")]
    pub scope: Option<String>,
    /// The observed value in the kind's unit: a ratio in [0, 1] for `error_rate`,
    /// `cpu` and `memory`, seconds for `latency_p95`, a whole number of reports for
    /// `customer_reports`.
    #[schema(minimum = 0.0)]
    pub value: Option<f64>,
    /// The baseline to compare the value with, in the same unit.
    #[schema(minimum = 0.0)]
    pub baseline: Option<f64>,
    /// For `customer_reports`: the number of reports, instead of `value`; below 2^53,
    /// where a JSON number stops being exact.
    #[serde(default, deserialize_with = "super::whole_or_null")]
    #[schema(maximum = 9_007_199_254_740_991_u64)]
    pub count: Option<u64>,
    /// RFC 3339; defaults to the time of receipt; at most 5 minutes ahead of ours.
    #[schema(format = DateTime)]
    pub started_at: Option<String>,
    /// RFC 3339; absent while the condition lasts.
    #[schema(format = DateTime)]
    pub ended_at: Option<String>,
    /// The poster's id for this observation (1 to 128 characters without spaces or
    /// control characters): its fingerprint, so that a retry is recognised. Required.
    #[schema(value_type = String, required = true, pattern = "^[^\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]{1,128}$", example = "support-queue")]
    pub id: Option<String>,
    /// A one-line description: at most 256 characters, no control characters, not
    /// only white space.
    #[schema(
        max_length = 256,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    pub summary: Option<String>,
    /// Observations of the condition in a row; at least 1 (the default).
    #[serde(default, deserialize_with = "super::whole_or_null")]
    #[schema(minimum = 1, maximum = 2_147_483_647_u32)]
    pub observations: Option<u32>,
}

/// The workload a posted signal is about.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignalTargetPayload {
    /// Defaults to `kubernetes.cluster` from the config.
    #[schema(
        max_length = 253,
        pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
    )]
    pub cluster: Option<String>,
    #[schema(value_type = String, required = true, max_length = 63, pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", example = "prod")]
    pub namespace: Option<String>,
    /// Defaults to `Deployment`.
    #[schema(pattern = "^[A-Za-z][A-Za-z0-9]{0,62}$")]
    pub kind: Option<String>,
    #[schema(value_type = String, required = true, max_length = 253, pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$", example = "checkout")]
    pub name: Option<String>,
}

/// How far ahead of our clock a poster's timestamps may be.
const MAX_CLOCK_SKEW_SECS: i64 = 300;
const MAX_ID_CHARS: usize = 128;
/// Counts of reports stay below 2^53, where f64 (and a JSON number) stops being exact.
const MAX_COUNT: u64 = 9_007_199_254_740_991;
/// The schema's `int32`.
const MAX_OBSERVATIONS: u32 = i32::MAX as u32;

impl SignalPayload {
    /// Parses and validates a body into a signal with source `api`; `now` stands in
    /// for a missing `started_at`.
    pub fn parse(
        body: &[u8],
        default_cluster: &str,
        now: DateTime<Utc>,
    ) -> Result<Signal, WireError> {
        let payload: SignalPayload = super::from_json(body)?;
        payload.into_signal(default_cluster, now)
    }

    fn into_signal(self, default_cluster: &str, now: DateTime<Utc>) -> Result<Signal, WireError> {
        let kind = self
            .kind
            .as_deref()
            .ok_or_else(|| required("kind"))
            .and_then(|name| {
                SignalKind::parse(name).ok_or_else(|| {
                    let known: Vec<&str> = SignalKind::ALL.iter().map(|k| k.as_str()).collect();
                    invalid(
                        "kind",
                        format!("{name:?} is not one of {}", known.join(", ")),
                    )
                })
            })?;
        let (target, dependency) = if kind == SignalKind::Dependency {
            if self.target.is_some() {
                return Err(WireError::inconsistent(
                    "target",
                    "a dependency signal names the dependency, not a target",
                ));
            }
            let name = self.dependency.ok_or_else(|| {
                WireError::inconsistent("dependency", "is required for kind dependency")
            })?;
            check_id("dependency", &name)?;
            (None, Some(name))
        } else {
            if self.dependency.is_some() {
                return Err(WireError::inconsistent(
                    "dependency",
                    format!("only for kind dependency, not {}", kind.as_str()),
                ));
            }
            let target = self.target.ok_or_else(|| {
                WireError::inconsistent("target", format!("is required for kind {}", kind.as_str()))
            })?;
            (Some(target.into_ref(default_cluster)?), None)
        };
        let scope = match self.scope.as_deref() {
            None | Some("any") => Scope::Any,
            Some("canary") => Scope::Canary,
            Some("stable" | "primary") => Scope::Stable,
            Some(other) => {
                return Err(invalid(
                    "scope",
                    format!("{other:?} is not canary, stable, primary or any"),
                ));
            }
        };
        let value = match (self.value, self.count) {
            (Some(_), Some(_)) => {
                return Err(WireError::inconsistent(
                    "count",
                    "give value or count, not both",
                ));
            }
            (_, Some(_)) if kind != SignalKind::CustomerReports => {
                return Err(WireError::inconsistent(
                    "count",
                    format!("only for customer_reports; give {} a value", kind.as_str()),
                ));
            }
            (None, Some(count)) if count > MAX_COUNT => {
                return Err(invalid("count", format!("must be at most {MAX_COUNT}")));
            }
            (None, Some(count)) => Some(count as f64),
            (value, None) => value,
        };
        if let Some(value) = value {
            check_number("value", value, kind)?;
            if kind == SignalKind::CustomerReports && value.fract() != 0.0 {
                return Err(WireError::inconsistent(
                    "value",
                    "must be a whole number of reports",
                ));
            }
        }
        if let Some(baseline) = self.baseline {
            check_number("baseline", baseline, kind)?;
        }
        let latest = now + Duration::seconds(MAX_CLOCK_SKEW_SECS);
        let started_at = match self.started_at.as_deref() {
            Some(s) => parse_time("started_at", s, now)?,
            None => now,
        };
        if started_at > latest {
            return Err(WireError::inconsistent("started_at", "is in the future"));
        }
        let ended_at = self
            .ended_at
            .as_deref()
            .map(|s| parse_time("ended_at", s, now))
            .transpose()?;
        if let Some(ended) = ended_at {
            if ended < started_at {
                return Err(WireError::inconsistent("ended_at", "is before started_at"));
            }
            if ended > latest {
                return Err(WireError::inconsistent("ended_at", "is in the future"));
            }
        }
        let id = self.id.ok_or_else(|| required("id"))?;
        check_id("id", &id)?;
        let observations = self.observations.unwrap_or(1);
        if observations == 0 || observations > MAX_OBSERVATIONS {
            return Err(invalid(
                "observations",
                format!("must be 1 to {MAX_OBSERVATIONS}"),
            ));
        }
        let summary = match self.summary {
            Some(summary) => {
                if summary.trim().is_empty()
                    || summary.chars().count() > MAX_SUMMARY_CHARS
                    || summary.chars().any(char::is_control)
                {
                    return Err(invalid(
                        "summary",
                        format!(
                            "must be 1 to {MAX_SUMMARY_CHARS} characters on one line (leave it out for none)"
                        ),
                    ));
                }
                summary
            }
            None => {
                let about = match (&target, &dependency) {
                    (Some(t), _) => format!("{}/{}", t.namespace, t.name),
                    (None, Some(d)) => d.clone(),
                    (None, None) => String::new(),
                };
                crate::domain::classify::bounded(
                    &format!("{} posted for {about}", kind.as_str()),
                    MAX_SUMMARY_CHARS,
                )
            }
        };
        Ok(Signal {
            kind,
            target,
            scope,
            dependency,
            value,
            baseline: self.baseline,
            inconclusive: None,
            started_at,
            ended_at,
            observations,
            source: SignalSource::Api,
            fingerprint: id,
            summary,
        })
    }
}

impl SignalTargetPayload {
    fn into_ref(self, default_cluster: &str) -> Result<TargetRef, WireError> {
        let cluster = self.cluster.unwrap_or_else(|| default_cluster.to_string());
        // A posted target names its cluster, when it does, with a non-empty name.
        if cluster.is_empty() {
            return Err(invalid(
                "target.cluster",
                format!("must be {}", Field::Cluster.expects()),
            ));
        }
        check("target.cluster", Field::Cluster, &cluster)?;
        let namespace = self.namespace.ok_or_else(|| required("target.namespace"))?;
        check("target.namespace", Field::Namespace, &namespace)?;
        let name = self.name.ok_or_else(|| required("target.name"))?;
        check("target.name", Field::Name, &name)?;
        let kind = self.kind.unwrap_or_else(|| "Deployment".into());
        check("target.kind", Field::Kind, &kind)?;
        Ok(TargetRef::new(&cluster, &namespace, &kind, &name))
    }
}

fn invalid(field: &str, message: impl Into<String>) -> WireError {
    WireError::new("invalid_field", field, message)
}

fn required(field: &str) -> WireError {
    WireError::new("invalid_field", field, "is required")
}

/// Ids and dependency names: 1 to 128 printable characters without spaces.
fn check_id(field: &str, value: &str) -> Result<(), WireError> {
    let ok = !value.is_empty()
        && value.chars().count() <= MAX_ID_CHARS
        && !value.chars().any(|c| c.is_control() || c.is_whitespace());
    if ok {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("must be 1 to {MAX_ID_CHARS} printable characters without spaces"),
        ))
    }
}

/// A value or baseline: non-negative, and a ratio in [0, 1] for ratio kinds.
fn check_number(field: &str, value: f64, kind: SignalKind) -> Result<(), WireError> {
    if value < 0.0 {
        return Err(invalid(field, "must not be negative"));
    }
    if kind.is_ratio() && value > 1.0 {
        return Err(WireError::inconsistent(
            field,
            format!(
                "{value} is above 1: {} is a ratio in [0, 1] (0.05 is 5 %)",
                kind.as_str()
            ),
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

    fn parse(v: &Value) -> Result<Signal, WireError> {
        SignalPayload::parse(v.to_string().as_bytes(), "prod-eu", now())
    }

    fn reports() -> Value {
        json!({
            "kind": "customer_reports",
            "target": {"namespace": "shop", "name": "checkout"},
            "count": 23,
            "baseline": 2,
            "started_at": "2026-08-22T13:55:00Z",
            "id": "zendesk-spike-4711",
            "summary": "23 tickets about failed payments in 5 minutes",
        })
    }

    #[test]
    fn customer_reports_with_a_count_become_an_api_signal() {
        let s = parse(&reports()).unwrap();
        assert_eq!(s.kind, SignalKind::CustomerReports);
        assert_eq!(
            s.target.as_ref().map(TargetRef::key).as_deref(),
            Some("prod-eu/shop/Deployment/checkout")
        );
        assert_eq!((s.value, s.baseline), (Some(23.0), Some(2.0)));
        assert_eq!(
            s.started_at,
            "2026-08-22T13:55:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(s.ended_at, None);
        assert_eq!(
            (s.source, s.scope, s.observations),
            (SignalSource::Api, Scope::Any, 1)
        );
        assert_eq!(s.fingerprint, "zendesk-spike-4711");
        assert_eq!(s.summary, "23 tickets about failed payments in 5 minutes");
        assert_eq!((s.dependency, s.inconclusive), (None, None));

        let mut body = reports();
        body.as_object_mut().unwrap().remove("count");
        body["value"] = json!(7);
        assert_eq!(parse(&body).unwrap().value, Some(7.0));
    }

    #[test]
    fn a_manual_sla_violation_needs_only_kind_target_and_id_and_starts_now() {
        let s = parse(&json!({
            "kind": "sla_violation",
            "target": {"cluster": "prod-us", "namespace": "shop", "name": "checkout",
                       "kind": "Rollout"},
            "id": "INC-2231",
        }))
        .unwrap();
        assert_eq!(s.kind, SignalKind::SlaViolation);
        assert_eq!(
            s.target.map(|t| t.key()).as_deref(),
            Some("prod-us/shop/Rollout/checkout")
        );
        assert_eq!(s.started_at, now());
        assert_eq!(s.value, None);
        assert_eq!(s.summary, "sla_violation posted for shop/checkout");
    }

    #[test]
    fn data_corruption_on_the_canary_is_posted_with_its_times() {
        let s = parse(&json!({
            "kind": "data_corruption",
            "target": {"namespace": "shop", "name": "orders"},
            "scope": "canary",
            "id": "orders-dup-rows",
            "started_at": "2026-08-22T13:40:00+02:00",
            "ended_at": "2026-08-22T13:59:00Z",
            "observations": 3,
        }))
        .unwrap();
        assert_eq!(s.kind, SignalKind::DataCorruption);
        assert_eq!(s.scope, Scope::Canary);
        assert_eq!(
            s.started_at,
            "2026-08-22T11:40:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(s.ended_at, Some("2026-08-22T13:59:00Z".parse().unwrap()));
        assert_eq!(s.observations, 3);
        assert!(!s.is_active(now()));
    }

    #[test]
    fn a_degraded_database_is_a_dependency_signal_without_a_target() {
        let s = parse(&json!({
            "kind": "dependency",
            "dependency": "database",
            "id": "pg-primary-failover",
            "summary": "primary failed over; replicas catching up",
        }))
        .unwrap();
        assert_eq!(s.kind, SignalKind::Dependency);
        assert_eq!(s.dependency.as_deref(), Some("database"));
        assert_eq!(s.target, None);
        assert_eq!(s.source, SignalSource::Api);
    }

    #[test]
    fn error_rates_are_ratios_and_latencies_are_not() {
        let body = |kind: &str, value: f64| {
            json!({"kind": kind, "target": {"namespace": "shop", "name": "checkout"},
                   "value": value, "id": "x"})
        };
        assert_eq!(
            parse(&body("error_rate", 0.124)).unwrap().value,
            Some(0.124)
        );
        assert_eq!(parse(&body("latency_p95", 1.5)).unwrap().value, Some(1.5));
        let err = parse(&body("error_rate", 12.4)).unwrap_err();
        assert_eq!(err.field, "value");
        assert!(err.message.contains("ratio"), "{err}");
    }

    #[test]
    fn every_bad_field_is_named() {
        let target = || json!({"namespace": "shop", "name": "checkout"});
        let cases: Vec<(&str, Value, &str)> = vec![
            ("kind", json!("outage"), "kind"),
            ("kind", json!(7), "kind"),
            (
                "target",
                json!({"namespace": "Shop", "name": "checkout"}),
                "target.namespace",
            ),
            ("target", json!({"name": "checkout"}), "target.namespace"),
            ("target", json!({"namespace": "shop"}), "target.name"),
            (
                "target",
                json!({"namespace": "shop", "name": ""}),
                "target.name",
            ),
            (
                "target",
                json!({"namespace": "shop", "name": "a/b"}),
                "target.name",
            ),
            (
                "target",
                json!({"namespace": "shop", "name": "checkout", "cluster": "EU"}),
                "target.cluster",
            ),
            (
                "target",
                json!({"namespace": "shop", "name": "checkout", "kind": "Deploy ment"}),
                "target.kind",
            ),
            (
                "target",
                json!({"namespace": "shop", "name": "checkout", "nmae": "x"}),
                "target.nmae",
            ),
            ("target", json!(null), "target"),
            ("dependency", json!("database"), "dependency"),
            ("scope", json!("blue"), "scope"),
            ("value", json!(-1), "value"),
            ("value", json!("23"), "value"),
            ("value", json!(2.5), "value"),
            ("baseline", json!(-0.5), "baseline"),
            ("count", json!(-3), "count"),
            ("count", json!(2.5), "count"),
            ("started_at", json!("13:55"), "started_at"),
            ("started_at", json!("2026-08-22T15:00:00Z"), "started_at"),
            ("ended_at", json!("2026-08-22T13:00:00Z"), "ended_at"),
            ("ended_at", json!("2026-08-22T16:00:00Z"), "ended_at"),
            ("id", json!(""), "id"),
            ("id", json!("has space"), "id"),
            ("id", json!("x".repeat(129)), "id"),
            ("id", json!(null), "id"),
            ("summary", json!("x".repeat(257)), "summary"),
            ("summary", json!("two\nlines"), "summary"),
            ("summary", json!(""), "summary"),
            ("observations", json!(0), "observations"),
            ("observations", json!(-1), "observations"),
            ("vaule", json!(0.1), "vaule"),
        ];
        for (key, value, field) in cases {
            let mut body = reports();
            body.as_object_mut().unwrap().remove("count");
            body[key] = value.clone();
            let err = parse(&body).expect_err(&format!("{key} = {value}"));
            assert_eq!(err.field, field, "{key} = {value}: {err}");
        }
        // Fields that only make sense together, or for some kinds.
        let both = json!({"kind": "customer_reports", "target": target(), "id": "x",
                          "count": 3, "value": 3});
        assert_eq!(parse(&both).unwrap_err().field, "count");
        let count = json!({"kind": "error_rate", "target": target(), "id": "x", "count": 3});
        assert_eq!(parse(&count).unwrap_err().field, "count");
        let ratio = json!({"kind": "memory", "target": target(), "id": "x", "baseline": 70});
        assert_eq!(parse(&ratio).unwrap_err().field, "baseline");
        let no_kind = json!({"target": target(), "id": "x"});
        assert_eq!(parse(&no_kind).unwrap_err().field, "kind");
        let no_target = json!({"kind": "sla_violation", "id": "x"});
        assert_eq!(parse(&no_target).unwrap_err().field, "target");
        let no_dependency = json!({"kind": "dependency", "id": "x"});
        assert_eq!(parse(&no_dependency).unwrap_err().field, "dependency");
        let bad_dependency = json!({"kind": "dependency", "dependency": "the db", "id": "x"});
        assert_eq!(parse(&bad_dependency).unwrap_err().field, "dependency");
        let with_target = json!({"kind": "dependency", "dependency": "database", "id": "x",
                                 "target": target()});
        assert_eq!(parse(&with_target).unwrap_err().field, "target");
        let err = SignalPayload::parse(b"{\"kind\": ", "prod-eu", now()).unwrap_err();
        assert_eq!((err.code, err.field.as_str()), ("malformed_json", "body"));
    }
}
