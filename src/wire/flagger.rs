//! Flagger's webhook payload (`CanaryWebhookPayload`, PROTOCOLS.md B.2 and B.5), the
//! same for every hook type, and the deploy history it makes: one `flagger` deploy row
//! per canary run, keyed by the payload's `checksum`.
//!
//! **The revision is the checksum.** Flagger computes it from the canary's tracked
//! configuration and the hash of the target's spec (`canaryChecksum`), so it names one
//! configuration of the workload: every call of one canary run carries it. The one
//! exception is Flagger's own: before a new run is confirmed (the `confirm-rollout`
//! gate, and the `rollback` hook while `Waiting`), the status still holds the previous
//! run's spec hash, so those calls land on the previous run's timeline. Their phase
//! (`Succeeded`, `Initialized`, `Waiting`) describes that run, or nothing, so they
//! never make it look unfinished (see [`FlaggerCall::status`]).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Bounds, WireError, check, is_plain_text};
use crate::domain::canary::Hook;
use crate::domain::deploy::{EVENTS, START, START_UNKNOWN, status};
use crate::domain::field::Field;
use crate::domain::{Deploy, DeploySource, TargetRef};

/// What Flagger posts to every webhook. Unknown fields are ignored, like
/// Alertmanager's: a newer Flagger must not close every gate.
///
/// The `event` hook needs what Flagger sets on every event, or answers 422:
/// `metadata.eventMessage` (not only white space), `metadata.eventType` (`Normal` or
/// `Warning`) and `metadata.timestamp` (Unix milliseconds, above 0).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct FlaggerPayload {
    /// The Canary object's name; rollwarden's target is the Deployment of that name.
    #[schema(
        max_length = 253,
        pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
        example = "checkout"
    )]
    pub name: String,
    #[schema(
        max_length = 63,
        pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        example = "prod"
    )]
    pub namespace: String,
    /// A canary phase (Flagger's `CanaryPhase`).
    #[schema(
        pattern = "^(Initializing|Initialized|Waiting|Progressing|WaitingPromotion|Promoting|Finalising|Succeeded|Failed|Terminating|Terminated)$",
        example = "Progressing"
    )]
    pub phase: String,
    /// The canary's checksum: 1 to 64 letters, digits, `-` or `_`. Required; optional
    /// here so that its absence gets our own error message.
    #[serde(default)]
    #[schema(value_type = String, required = true, pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub checksum: Option<String>,
    /// The webhook's `metadata`; for `event` hooks also `eventMessage`, `eventType`,
    /// `timestamp`. Absent when the webhook has none. At most `limits.max_annotations`
    /// entries, keys of 1 to `limits.max_label_name_bytes`, values of at most
    /// `limits.max_annotation_value_bytes`; `environment` and `region` at most 1024
    /// characters without control characters.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// A canary's phase (`CanaryPhase`, Flagger's `status.go`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Initializing,
    Initialized,
    Waiting,
    Progressing,
    WaitingPromotion,
    Promoting,
    Finalising,
    Succeeded,
    Failed,
    Terminating,
    Terminated,
}

impl Phase {
    pub const ALL: [Phase; 11] = [
        Phase::Initializing,
        Phase::Initialized,
        Phase::Waiting,
        Phase::Progressing,
        Phase::WaitingPromotion,
        Phase::Promoting,
        Phase::Finalising,
        Phase::Succeeded,
        Phase::Failed,
        Phase::Terminating,
        Phase::Terminated,
    ];

    /// Flagger's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Initializing => "Initializing",
            Phase::Initialized => "Initialized",
            Phase::Waiting => "Waiting",
            Phase::Progressing => "Progressing",
            Phase::WaitingPromotion => "WaitingPromotion",
            Phase::Promoting => "Promoting",
            Phase::Finalising => "Finalising",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
            Phase::Terminating => "Terminating",
            Phase::Terminated => "Terminated",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// One Kubernetes event Flagger recorded for the canary (the `event` hook).
#[derive(Debug, Clone, PartialEq)]
pub struct FlaggerEvent {
    /// Flagger's `timestamp` (Unix milliseconds).
    pub at: DateTime<Utc>,
    /// `Normal` or `Warning`.
    pub kind: String,
    pub message: String,
}

/// One validated webhook call.
#[derive(Debug, Clone, PartialEq)]
pub struct FlaggerCall {
    pub hook: Hook,
    /// The Deployment named like the canary, in its namespace, in our cluster.
    pub target: TargetRef,
    pub canary: String,
    pub phase: Phase,
    pub checksum: String,
    /// From the webhook's `metadata.environment` and `metadata.region`, when set.
    pub environment: Option<String>,
    pub region: Option<String>,
    /// For the `event` hook.
    pub event: Option<FlaggerEvent>,
    pub received_at: DateTime<Utc>,
}

/// How a hook that asks was answered, for the run's timeline.
#[derive(Debug, Clone, Copy)]
pub struct Answered<'a> {
    pub status: u16,
    pub verdict: &'a str,
    pub decision_id: i64,
}

/// The longest `metadata.environment` or `metadata.region`. No other metadata is kept:
/// the token may travel there (PROTOCOLS.md B.1).
const MAX_TEXT: usize = 1024;
const MAX_CHECKSUM: usize = 64;

impl FlaggerPayload {
    /// Parses and validates the body of a call to `hook`, received at `now`; the
    /// target lives in `cluster`.
    pub fn parse(
        body: &[u8],
        hook: Hook,
        cluster: &str,
        bounds: &Bounds,
        now: DateTime<Utc>,
    ) -> Result<FlaggerCall, WireError> {
        let payload: FlaggerPayload = super::from_json(body)?;
        payload.into_call(hook, cluster, bounds, now)
    }

    fn into_call(
        self,
        hook: Hook,
        cluster: &str,
        bounds: &Bounds,
        now: DateTime<Utc>,
    ) -> Result<FlaggerCall, WireError> {
        check("name", Field::Name, &self.name)?;
        check("namespace", Field::Namespace, &self.namespace)?;
        let phase = Phase::parse(&self.phase).ok_or_else(|| {
            let known: Vec<&str> = Phase::ALL.iter().map(|p| p.as_str()).collect();
            invalid(
                "phase",
                format!(
                    "{:?} is not a Flagger phase ({})",
                    self.phase,
                    known.join(", ")
                ),
            )
        })?;
        let checksum = self
            .checksum
            .clone()
            .ok_or_else(|| invalid("checksum", "missing: Flagger sends the canary's checksum"))?;
        if checksum.is_empty()
            || checksum.len() > MAX_CHECKSUM
            || !checksum
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(invalid(
                "checksum",
                format!("must be 1 to {MAX_CHECKSUM} letters, digits, '-' or '_'"),
            ));
        }
        if self.metadata.len() > bounds.max_annotations {
            return Err(WireError::new(
                "too_many_entries",
                "metadata",
                format!("more than {} entries", bounds.max_annotations),
            ));
        }
        for (key, value) in &self.metadata {
            if key.is_empty() || key.len() > bounds.max_label_name_bytes {
                return Err(invalid(
                    "metadata",
                    format!("keys must be 1 to {} bytes", bounds.max_label_name_bytes),
                ));
            }
            if value.len() > bounds.max_annotation_value_bytes {
                return Err(WireError::new(
                    "value_too_long",
                    format!("metadata.{key}"),
                    format!("longer than {} bytes", bounds.max_annotation_value_bytes),
                ));
            }
        }
        let text = |key: &str| -> Result<Option<String>, WireError> {
            match self.metadata.get(key) {
                None => Ok(None),
                Some(v) if v.is_empty() => Ok(None),
                Some(v) if !is_plain_text(v, MAX_TEXT) => Err(invalid(
                    &format!("metadata.{key}"),
                    format!("must be at most {MAX_TEXT} characters without control characters"),
                )),
                Some(v) => Ok(Some(v.clone())),
            }
        };
        let environment = text("environment")?;
        let region = text("region")?;
        let event = if hook == Hook::Event {
            Some(self.event(now)?)
        } else {
            None
        };
        Ok(FlaggerCall {
            hook,
            target: TargetRef::deployment(cluster, &self.namespace, &self.name),
            canary: self.name,
            phase,
            checksum,
            environment,
            region,
            event,
            received_at: now,
        })
    }

    /// The three keys Flagger sets on an event (PROTOCOLS.md B.5).
    fn event(&self, now: DateTime<Utc>) -> Result<FlaggerEvent, WireError> {
        let get = |key: &str| {
            self.metadata.get(key).ok_or_else(|| {
                WireError::inconsistent(
                    format!("metadata.{key}"),
                    "missing: Flagger sets it on every event",
                )
            })
        };
        let message = get("eventMessage")?;
        if message.trim().is_empty() {
            return Err(WireError::inconsistent(
                "metadata.eventMessage",
                "must not be empty",
            ));
        }
        let kind = get("eventType")?;
        if kind != "Normal" && kind != "Warning" {
            return Err(WireError::inconsistent(
                "metadata.eventType",
                format!("{kind:?} is not Normal or Warning"),
            ));
        }
        let millis = get("timestamp")?;
        let at = millis
            .parse::<i64>()
            .ok()
            .filter(|ms| *ms > 0)
            .and_then(DateTime::from_timestamp_millis)
            .ok_or_else(|| {
                WireError::inconsistent(
                    "metadata.timestamp",
                    "must be Unix milliseconds, as Flagger sends them",
                )
            })?;
        let at = super::check_time("metadata.timestamp", at, now)?;
        Ok(FlaggerEvent {
            at,
            kind: kind.clone(),
            message: message.clone(),
        })
    }
}

fn invalid(field: &str, message: impl Into<String>) -> WireError {
    WireError::new("invalid_field", field, message)
}

impl FlaggerCall {
    /// The status of the canary run this call reports, from its phase.
    ///
    /// Phases that say nothing of how the run fared (`Initializing`, `Waiting`,
    /// `Terminating`, `Terminated`) give a neutral status, which never replaces a known
    /// one. `confirm-rollout` with `Failed` is asked about a new revision after a failed
    /// run: Flagger has already moved the checksum to the new revision, which has not
    /// started, so it is `waiting`, not failed.
    pub fn status(&self) -> &'static str {
        match self.phase {
            Phase::Failed if self.hook == Hook::ConfirmRollout => status::WAITING,
            Phase::Initializing => status::INITIALIZING,
            Phase::Waiting => status::WAITING,
            Phase::Initialized | Phase::Succeeded => status::SUCCEEDED,
            Phase::Progressing | Phase::WaitingPromotion | Phase::Promoting | Phase::Finalising => {
                status::PROGRESSING
            }
            Phase::Failed => status::FAILED,
            Phase::Terminating => status::TERMINATING,
            Phase::Terminated => status::TERMINATED,
        }
    }

    /// This call as an entry of the run's timeline: a Flagger event, or the hook call
    /// with how it was answered (`None` for hooks that only record).
    pub fn entry(&self, answered: Option<Answered<'_>>) -> Value {
        let at = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut entry = json!({
            "at": at(self.received_at),
            "hook": self.hook.as_str(),
            "phase": self.phase.as_str(),
        });
        if let Some(event) = &self.event {
            entry["at"] = at(event.at).into();
            entry["type"] = event.kind.clone().into();
            entry["message"] = event.message.clone().into();
        }
        match answered {
            Some(a) => {
                entry["answer"] = a.status.into();
                entry["verdict"] = a.verdict.into();
                entry["decision_id"] = a.decision_id.into();
            }
            None if self.event.is_none() => entry["answer"] = 200.into(),
            None => {}
        }
        entry
    }

    /// The canary run as a deploy of its target, with `entry` (if any) on its timeline.
    pub fn to_deploy(&self, entry: Option<Value>) -> Deploy {
        let status = self.status();
        let mut deploy = Deploy::new(
            self.target.clone(),
            DeploySource::Flagger,
            self.checksum.clone(),
            status,
            self.received_at,
        );
        if status == status::SUCCEEDED || status == status::FAILED {
            deploy.finished_at = Some(self.received_at);
        }
        deploy.environment = self.environment.clone();
        deploy.region = self.region.clone();
        let mut details = json!({"canary": self.canary, "phase": self.phase.as_str()});
        // Only `pre-rollout` is called as a run starts; a run first seen through any
        // other call started before it, at a time nobody told us. (The store keeps the
        // first report's word, like its start.)
        if self.hook != Hook::PreRollout {
            details[START] = START_UNKNOWN.into();
        }
        if let Some(entry) = entry {
            details[EVENTS] = json!([entry]);
        }
        deploy.details = details;
        deploy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLLOUT: &str = include_str!("../../tests/fixtures/flagger-rollout.json");
    const ROLLBACK: &str = include_str!("../../tests/fixtures/flagger-rollback.json");
    const EVENT: &str = include_str!("../../tests/fixtures/flagger-event.json");

    fn now() -> DateTime<Utc> {
        "2026-08-22T14:03:00Z".parse().unwrap()
    }

    fn parse(body: &str, hook: Hook) -> Result<FlaggerCall, WireError> {
        FlaggerPayload::parse(body.as_bytes(), hook, "prod-eu", &Bounds::default(), now())
    }

    fn with(body: &str, key: &str, value: Value) -> String {
        let mut v: Value = serde_json::from_str(body).unwrap();
        v[key] = value;
        v.to_string()
    }

    #[test]
    fn the_fixtures_parse_into_calls_about_the_deployment() {
        let call = parse(ROLLOUT, Hook::Rollout).unwrap();
        assert_eq!(call.target.key(), "prod-eu/prod/Deployment/checkout");
        assert_eq!(
            (
                call.phase,
                call.checksum.as_str(),
                call.environment.as_deref()
            ),
            (Phase::Progressing, "64c6d9c894", Some("prod"))
        );
        assert_eq!(call.event, None);
        assert_eq!(
            parse(ROLLBACK, Hook::Rollback).unwrap().hook,
            Hook::Rollback
        );
        let event = parse(EVENT, Hook::Event).unwrap().event.unwrap();
        assert_eq!(event.kind, "Warning");
        assert!(event.message.starts_with("Halt checkout.prod advancement"));
        assert_eq!(
            event.at,
            DateTime::from_timestamp_millis(1_787_407_397_412).unwrap()
        );
    }

    #[test]
    fn a_call_becomes_a_flagger_deploy_keyed_by_checksum_with_its_timeline_entry() {
        let call = parse(ROLLOUT, Hook::Rollout).unwrap();
        let entry = call.entry(Some(Answered {
            status: 403,
            verdict: "rollback",
            decision_id: 7,
        }));
        let d = call.to_deploy(Some(entry));
        assert_eq!(
            (d.source, d.revision.as_str(), d.status.as_str()),
            (DeploySource::Flagger, "64c6d9c894", "progressing")
        );
        assert_eq!(d.started_at, now());
        assert_eq!(d.finished_at, None);
        assert_eq!(
            d.details,
            json!({"canary": "checkout", "phase": "Progressing", "start": "unknown",
                "events": [{
                "at": "2026-08-22T14:03:00.000Z", "hook": "rollout", "phase": "Progressing",
                "answer": 403, "verdict": "rollback", "decision_id": 7}]})
        );
        // A run first seen mid-way started before the call; at pre-rollout it starts.
        assert!(!d.start_known());
        let starting = parse(ROLLOUT, Hook::PreRollout).unwrap().to_deploy(None);
        assert!(starting.start_known());
        let event = parse(EVENT, Hook::Event).unwrap();
        assert_eq!(
            event.entry(None),
            json!({"at": "2026-08-22T14:03:17.412Z", "hook": "event", "phase": "Progressing",
                   "type": "Warning", "message": "Halt checkout.prod advancement external check rollwarden failed checkout has 2 firing critical alerts"})
        );
    }

    #[test]
    fn the_token_and_other_metadata_are_never_kept() {
        let body = with(
            ROLLOUT,
            "metadata",
            json!({"token": "s3cret-token", "environment": "prod", "team": "payments"}),
        );
        let d = parse(&body, Hook::Rollout).unwrap().to_deploy(None);
        let stored = serde_json::to_string(&d).unwrap();
        assert!(
            !stored.contains("s3cret-token") && !stored.contains("payments"),
            "{stored}"
        );
    }

    /// The status each phase records, and the one exception of `confirm-rollout`.
    #[test]
    fn phases_map_to_deploy_statuses() {
        let cases = [
            (Hook::Rollout, "Initializing", "initializing", false),
            (Hook::ConfirmRollout, "Initialized", "succeeded", true),
            (Hook::ConfirmRollout, "Succeeded", "succeeded", true),
            (Hook::ConfirmRollout, "Waiting", "waiting", false),
            (Hook::ConfirmRollout, "Failed", "waiting", false),
            (Hook::Rollback, "Waiting", "waiting", false),
            (Hook::PreRollout, "Progressing", "progressing", false),
            (
                Hook::ConfirmPromotion,
                "WaitingPromotion",
                "progressing",
                false,
            ),
            (Hook::Event, "Promoting", "progressing", false),
            (Hook::Event, "Finalising", "progressing", false),
            (Hook::PostRollout, "Succeeded", "succeeded", true),
            (Hook::PostRollout, "Failed", "failed", true),
            (Hook::Event, "Terminating", "terminating", false),
            (Hook::Event, "Terminated", "terminated", false),
        ];
        for (hook, phase, expected, finished) in cases {
            let body = if hook == Hook::Event { EVENT } else { ROLLOUT };
            let call = parse(&with(body, "phase", json!(phase)), hook).unwrap();
            let d = call.to_deploy(None);
            assert_eq!(d.status, expected, "{} in {phase}", hook.as_str());
            assert_eq!(
                d.finished_at.is_some(),
                finished,
                "{} in {phase}",
                hook.as_str()
            );
        }
    }

    #[test]
    fn every_bad_field_is_named() {
        let long = "x".repeat(2000);
        let cases: Vec<(&str, &str, Value, Hook, &str)> = vec![
            (ROLLOUT, "name", json!("Checkout"), Hook::Rollout, "name"),
            (ROLLOUT, "name", json!(""), Hook::Rollout, "name"),
            (ROLLOUT, "namespace", json!(7), Hook::Rollout, "namespace"),
            (ROLLOUT, "phase", json!("Running"), Hook::Rollout, "phase"),
            (ROLLOUT, "checksum", json!(""), Hook::Rollout, "checksum"),
            (ROLLOUT, "checksum", json!("a b"), Hook::Rollout, "checksum"),
            (
                ROLLOUT,
                "checksum",
                json!("x".repeat(65)),
                Hook::Rollout,
                "checksum",
            ),
            (
                ROLLOUT,
                "metadata",
                json!({"n": 1}),
                Hook::Rollout,
                "metadata.n",
            ),
            (
                ROLLOUT,
                "metadata",
                json!({"environment": long}),
                Hook::Rollout,
                "metadata.environment",
            ),
            (
                ROLLOUT,
                "metadata",
                json!({"region": "eu\n"}),
                Hook::Rollout,
                "metadata.region",
            ),
            (
                EVENT,
                "metadata",
                json!({"eventType": "Normal", "timestamp": "1"}),
                Hook::Event,
                "metadata.eventMessage",
            ),
            (
                EVENT,
                "metadata",
                json!({"eventMessage": "m", "eventType": "Error", "timestamp": "1"}),
                Hook::Event,
                "metadata.eventType",
            ),
            (
                EVENT,
                "metadata",
                json!({"eventMessage": "m", "eventType": "Normal", "timestamp": "yesterday"}),
                Hook::Event,
                "metadata.timestamp",
            ),
            (
                EVENT,
                "metadata",
                json!({"eventMessage": "m", "eventType": "Normal"}),
                Hook::Event,
                "metadata.timestamp",
            ),
        ];
        for (body, key, value, hook, field) in cases {
            let err = parse(&with(body, key, value.clone()), hook).expect_err(field);
            assert_eq!(err.field, field, "{key} = {value}: {err}");
        }
        let mut v: Value = serde_json::from_str(ROLLOUT).unwrap();
        v.as_object_mut().unwrap().remove("checksum");
        assert_eq!(
            parse(&v.to_string(), Hook::Rollout).unwrap_err().field,
            "checksum"
        );
        v.as_object_mut().unwrap().remove("phase");
        assert_eq!(
            parse(&v.to_string(), Hook::Rollout).unwrap_err().field,
            "body"
        );
        assert_eq!(
            parse("{", Hook::Rollout).unwrap_err().code,
            "malformed_json"
        );
    }

    #[test]
    fn metadata_is_bounded_and_optional() {
        let bounds = Bounds {
            max_annotations: 2,
            max_annotation_value_bytes: 8,
            ..Bounds::default()
        };
        let parse = |metadata: Value| {
            FlaggerPayload::parse(
                with(ROLLOUT, "metadata", metadata).as_bytes(),
                Hook::Rollout,
                "c",
                &bounds,
                now(),
            )
        };
        assert_eq!(
            parse(json!({"a": "1", "b": "2", "c": "3"}))
                .unwrap_err()
                .field,
            "metadata"
        );
        assert_eq!(
            parse(json!({"a": "123456789"})).unwrap_err().field,
            "metadata.a"
        );
        let mut v: Value = serde_json::from_str(ROLLOUT).unwrap();
        v.as_object_mut().unwrap().remove("metadata");
        v["newField"] = json!("a newer Flagger");
        let call =
            FlaggerPayload::parse(v.to_string().as_bytes(), Hook::Rollout, "c", &bounds, now())
                .unwrap();
        assert_eq!(call.environment, None);
    }
}
