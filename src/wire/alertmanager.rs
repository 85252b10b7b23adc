//! Alertmanager's webhook payload, version 4 (PROTOCOLS.md A.1–A.3).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::ToSchema;

use super::{Bounds, WireError};
use crate::domain::{Alert, AlertStatus, Labels, Notification, Source};

/// The body Alertmanager posts to a `webhook_configs` receiver. Unknown fields (newer
/// Alertmanagers add some, e.g. `routeLabels` in 0.34) are ignored.
///
/// Two rules relate fields, and break with 422: a resolved alert needs `endsAt`, and
/// `startsAt` must be set; Go's zero time (`0001-01-01T00:00:00Z`, or any instant not
/// after it) means "not set" in either.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertmanagerPayload {
    /// The payload version; only `4` is accepted.
    #[schema(pattern = "^4$", example = "4")]
    pub version: String,
    /// Identifies the alert group; part of the deduplication key.
    #[schema(min_length = 1)]
    pub group_key: String,
    /// Alerts left out by `max_alerts` on Alertmanager's side.
    #[serde(default, deserialize_with = "super::whole")]
    #[schema(maximum = 9_223_372_036_854_775_807_u64)]
    pub truncated_alerts: u64,
    pub receiver: String,
    #[schema(value_type = AlertStatus)]
    pub status: String,
    /// At most `limits.max_alerts` (1000).
    pub alerts: Vec<AlertmanagerAlert>,
    #[serde(default)]
    pub group_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub common_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub common_annotations: BTreeMap<String, String>,
    #[serde(default, rename = "externalURL")]
    pub external_url: String,
    #[serde(default, rename = "notification_reason")]
    pub notification_reason: Option<String>,
}

/// One alert of a notification.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertmanagerAlert {
    #[schema(value_type = AlertStatus)]
    pub status: String,
    /// At least one; at most `limits.max_labels` (64), names of at most
    /// `limits.max_label_name_bytes`, values of at most `limits.max_label_value_bytes`.
    /// A name appears once (a duplicate is refused, naming it).
    #[serde(deserialize_with = "super::unique_map")]
    pub labels: BTreeMap<String, String>,
    /// At most `limits.max_annotations` (64); `value` and `baseline` carry numbers. A
    /// name appears once.
    #[serde(default, deserialize_with = "super::unique_map")]
    pub annotations: BTreeMap<String, String>,
    /// RFC 3339; not the zero time.
    #[schema(format = DateTime)]
    pub starts_at: String,
    /// RFC 3339; required for a resolved alert (`0001-01-01T00:00:00Z` means none).
    #[serde(default)]
    #[schema(format = DateTime)]
    pub ends_at: Option<String>,
    #[serde(default, rename = "generatorURL")]
    pub generator_url: String,
    #[schema(pattern = "^[A-Za-z0-9]{1,64}$", example = "4d2b2a0f8e3c1b7a")]
    pub fingerprint: String,
}

impl AlertmanagerPayload {
    /// Parses and validates a raw body into a [`Notification`] received at `received_at`.
    pub fn parse(
        body: &[u8],
        bounds: &Bounds,
        received_at: DateTime<Utc>,
    ) -> Result<Notification, WireError> {
        let raw = std::str::from_utf8(body)
            .map_err(|_| WireError::new("malformed_json", "body", "body is not UTF-8"))?;
        let payload: AlertmanagerPayload = super::from_json(body)?;
        payload.into_notification(raw.to_string(), bounds, received_at)
    }

    fn into_notification(
        self,
        raw: String,
        bounds: &Bounds,
        received_at: DateTime<Utc>,
    ) -> Result<Notification, WireError> {
        if self.version != "4" {
            return Err(WireError::new(
                "unsupported_version",
                "version",
                format!(
                    "version {:?} is not supported; expected \"4\"",
                    self.version
                ),
            ));
        }
        let status = parse_status(&self.status, "status")?;
        // A count that does not fit a signed 64-bit integer is no count of alerts.
        if i64::try_from(self.truncated_alerts).is_err() {
            return Err(WireError::new(
                "invalid_field",
                "truncatedAlerts",
                "out of range",
            ));
        }
        if self.group_key.is_empty() {
            return Err(WireError::new(
                "invalid_field",
                "groupKey",
                "must not be empty",
            ));
        }
        if self.alerts.len() > bounds.max_alerts {
            return Err(WireError::new(
                "too_many_alerts",
                "alerts",
                format!(
                    "{} alerts exceed the limit of {}",
                    self.alerts.len(),
                    bounds.max_alerts
                ),
            ));
        }
        let alerts = self
            .alerts
            .into_iter()
            .enumerate()
            .map(|(i, a)| a.into_alert(&format!("alerts[{i}]"), bounds, received_at))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Notification {
            source: Source::Alertmanager,
            receiver: self.receiver,
            group_key: self.group_key,
            status,
            alerts,
            targets: Vec::new(),
            truncated_alerts: self.truncated_alerts,
            raw,
            received_at,
        })
    }
}

impl AlertmanagerAlert {
    fn into_alert(self, at: &str, bounds: &Bounds, now: DateTime<Utc>) -> Result<Alert, WireError> {
        let status = parse_status(&self.status, &format!("{at}.status"))?;
        if self.fingerprint.is_empty()
            || self.fingerprint.len() > 64
            || !self.fingerprint.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(WireError::new(
                "invalid_field",
                format!("{at}.fingerprint"),
                "must be 1 to 64 alphanumeric characters",
            ));
        }
        if self.labels.is_empty() {
            return Err(WireError::new(
                "invalid_field",
                format!("{at}.labels"),
                "an alert needs at least one label",
            ));
        }
        check_pairs(
            &self.labels,
            &format!("{at}.labels"),
            bounds.max_labels,
            bounds.max_label_name_bytes,
            bounds.max_label_value_bytes,
        )?;
        check_pairs(
            &self.annotations,
            &format!("{at}.annotations"),
            bounds.max_annotations,
            bounds.max_label_name_bytes,
            bounds.max_annotation_value_bytes,
        )?;
        let starts_at =
            parse_time(&self.starts_at, &format!("{at}.startsAt"), now)?.ok_or_else(|| {
                WireError::inconsistent(format!("{at}.startsAt"), "must be set (got the zero time)")
            })?;
        let ends_at = match &self.ends_at {
            Some(s) => parse_time(s, &format!("{at}.endsAt"), now)?,
            None => None,
        };
        if status == AlertStatus::Resolved && ends_at.is_none() {
            return Err(WireError::inconsistent(
                format!("{at}.endsAt"),
                "a resolved alert needs its end time",
            ));
        }
        if self.generator_url.len() > bounds.max_annotation_value_bytes {
            return Err(WireError::new(
                "value_too_long",
                format!("{at}.generatorURL"),
                format!("longer than {} bytes", bounds.max_annotation_value_bytes),
            ));
        }
        Ok(Alert {
            fingerprint: self.fingerprint,
            status,
            labels: self.labels,
            annotations: self.annotations,
            starts_at,
            // A firing alert's end time is not exposed by Alertmanager; never keep one.
            ends_at: if status == AlertStatus::Firing {
                None
            } else {
                ends_at
            },
            generator_url: self.generator_url,
        })
    }
}

fn parse_status(s: &str, field: &str) -> Result<AlertStatus, WireError> {
    AlertStatus::parse(s).ok_or_else(|| {
        WireError::new(
            "invalid_field",
            field,
            format!("{s:?} is not \"firing\" or \"resolved\""),
        )
    })
}

/// Go's zero `time.Time` marshals as `0001-01-01T00:00:00Z`; it means "not set".
fn parse_time(
    s: &str,
    field: &str,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, WireError> {
    let t = DateTime::parse_from_rfc3339(s).map_err(|e| {
        WireError::new(
            "invalid_timestamp",
            field,
            format!("{s:?} is not an RFC 3339 timestamp: {e}"),
        )
    })?;
    let t = t.with_timezone(&Utc);
    if t.timestamp() <= -62_135_596_800 {
        return Ok(None);
    }
    super::check_time(field, t, now).map(Some)
}

fn check_pairs(
    pairs: &Labels,
    field: &str,
    max_count: usize,
    max_name: usize,
    max_value: usize,
) -> Result<(), WireError> {
    if pairs.len() > max_count {
        return Err(WireError::new(
            "too_many_labels",
            field,
            format!("{} entries exceed the limit of {max_count}", pairs.len()),
        ));
    }
    for (name, value) in pairs {
        if name.is_empty() || name.len() > max_name {
            return Err(WireError::new(
                "invalid_field",
                format!("{field}.{name}"),
                format!("names must be 1 to {max_name} bytes"),
            ));
        }
        if value.len() > max_value {
            return Err(WireError::new(
                "value_too_long",
                format!("{field}.{name}"),
                format!(
                    "value of {} bytes exceeds the limit of {max_value}",
                    value.len()
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const FIRING: &str = include_str!("../../tests/fixtures/alertmanager-firing.json");
    const RESOLVED: &str = include_str!("../../tests/fixtures/alertmanager-resolved.json");

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 8, 22, 14, 3, 0).unwrap()
    }

    fn parse(body: &str) -> Result<Notification, WireError> {
        AlertmanagerPayload::parse(body.as_bytes(), &Bounds::default(), now())
    }

    fn with(body: &str, edit: impl FnOnce(&mut serde_json::Value)) -> String {
        let mut v: serde_json::Value = serde_json::from_str(body).unwrap();
        edit(&mut v);
        v.to_string()
    }

    #[test]
    fn the_firing_fixture_parses_with_zero_end_times_as_none() {
        let n = parse(FIRING).unwrap();
        assert_eq!(n.status, AlertStatus::Firing);
        assert_eq!(n.alerts.len(), 2);
        let a = &n.alerts[0];
        assert_eq!(a.fingerprint, "9fc138bd6e224dae");
        assert_eq!(a.alertname(), "HighErrorRate");
        assert_eq!(a.ends_at, None);
        assert!(a.generator_url.contains("&g0.tab=1"), "\\u0026 is decoded");
        assert_eq!(n.raw, FIRING);
    }

    #[test]
    fn the_resolved_fixture_carries_end_times() {
        let n = parse(RESOLVED).unwrap();
        assert!(n.alerts.iter().all(|a| a.status == AlertStatus::Resolved));
        assert!(n.alerts.iter().all(|a| a.ends_at.is_some()));
    }

    #[test]
    fn each_bad_input_names_its_field() {
        let cases: Vec<(String, &str, &str)> = vec![
            ("{not json".into(), "malformed_json", "body"),
            ("[]".into(), "invalid_field", "body"),
            (
                with(FIRING, |v| v["version"] = "3".into()),
                "unsupported_version",
                "version",
            ),
            (
                with(FIRING, |v| v["version"] = 4.into()),
                "invalid_field",
                "version",
            ),
            (
                with(FIRING, |v| {
                    v.as_object_mut().unwrap().remove("alerts");
                }),
                "invalid_field",
                "body",
            ),
            (
                with(FIRING, |v| v["status"] = "weird".into()),
                "invalid_field",
                "status",
            ),
            (
                with(FIRING, |v| {
                    v["alerts"][1]
                        .as_object_mut()
                        .unwrap()
                        .remove("fingerprint");
                }),
                "invalid_field",
                "alerts[1]",
            ),
            (
                with(FIRING, |v| v["alerts"][0]["fingerprint"] = "".into()),
                "invalid_field",
                "alerts[0].fingerprint",
            ),
            (
                with(FIRING, |v| v["alerts"][0]["labels"] = serde_json::json!({})),
                "invalid_field",
                "alerts[0].labels",
            ),
            (
                with(FIRING, |v| v["alerts"][0]["labels"]["x"] = 1.into()),
                "invalid_field",
                "alerts[0].labels.x",
            ),
            (
                with(FIRING, |v| v["alerts"][0]["startsAt"] = "yesterday".into()),
                "invalid_timestamp",
                "alerts[0].startsAt",
            ),
            (
                with(FIRING, |v| {
                    v["alerts"][0]["startsAt"] = "0001-01-01T00:00:00Z".into()
                }),
                "inconsistent",
                "alerts[0].startsAt",
            ),
            (
                with(RESOLVED, |v| {
                    v["alerts"][0]["endsAt"] = "0001-01-01T00:00:00Z".into()
                }),
                "inconsistent",
                "alerts[0].endsAt",
            ),
        ];
        for (body, code, field) in cases {
            let err = parse(&body).expect_err(&body);
            assert_eq!((err.code, err.field.as_str()), (code, field), "{err}");
        }
    }

    #[test]
    fn bounds_are_enforced() {
        let bounds = Bounds {
            max_alerts: 1,
            ..Bounds::default()
        };
        let err = AlertmanagerPayload::parse(FIRING.as_bytes(), &bounds, now()).unwrap_err();
        assert_eq!(
            (err.code, err.field.as_str()),
            ("too_many_alerts", "alerts")
        );

        let bounds = Bounds {
            max_labels: 3,
            ..Bounds::default()
        };
        let err = AlertmanagerPayload::parse(FIRING.as_bytes(), &bounds, now()).unwrap_err();
        assert_eq!(
            (err.code, err.field.as_str()),
            ("too_many_labels", "alerts[0].labels")
        );

        let long = with(FIRING, |v| {
            v["alerts"][0]["labels"]["team"] = "x".repeat(5000).into()
        });
        let err = parse(&long).unwrap_err();
        assert_eq!(
            (err.code, err.field.as_str()),
            ("value_too_long", "alerts[0].labels.team")
        );
    }
}
