//! Alerts as rollwarden understands them, independent of the wire format they came in.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

/// Label or annotation pairs, sorted by name so that equal sets compare and hash equal.
pub type Labels = BTreeMap<String, String>;

/// Where an ingested payload came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Alertmanager,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Alertmanager => "alertmanager",
        }
    }
}

/// Whether an alert is still firing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    Firing,
    Resolved,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "firing" => Some(AlertStatus::Firing),
            "resolved" => Some(AlertStatus::Resolved),
            _ => None,
        }
    }
}

/// One alert occurrence. Its identity is `(fingerprint, starts_at)`: Alertmanager keeps
/// the fingerprint for a label set, and a new `starts_at` marks a new occurrence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alert {
    pub fingerprint: String,
    pub status: AlertStatus,
    pub labels: Labels,
    pub annotations: Labels,
    pub starts_at: DateTime<Utc>,
    /// `None` while firing (Alertmanager sends the zero time then).
    pub ends_at: Option<DateTime<Utc>>,
    pub generator_url: String,
}

impl Alert {
    /// The `alertname` label, or the empty string when the rule has none.
    pub fn alertname(&self) -> &str {
        self.labels.get("alertname").map_or("", String::as_str)
    }

    /// Merges a later observation of the same occurrence into this one.
    ///
    /// Resolution is final: a late or replayed `firing` delivery (an HA peer, a retry)
    /// never turns a resolved occurrence back into a firing one. That makes the result
    /// independent of how often, and in which order, the same deliveries arrive.
    pub fn merge(&mut self, later: &Alert) {
        if self.status == AlertStatus::Resolved && later.status == AlertStatus::Firing {
            return;
        }
        self.clone_from(later);
    }
}

/// What an alert is about, as the classifier maps it: the store indexes alerts by it, so
/// that a read about one target loads that target's alerts only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertTarget {
    /// No rule classifies it: no evaluation reads it.
    Ignored,
    /// A signal about no target: a dependency's, or one whose labels name no workload.
    Untargeted,
    Target(crate::domain::TargetRef),
}

impl AlertTarget {
    /// How the store keeps it: the target's key, `*` for none, `` for ignored.
    pub fn key(&self) -> String {
        match self {
            AlertTarget::Ignored => String::new(),
            AlertTarget::Untargeted => "*".into(),
            AlertTarget::Target(target) => target.key(),
        }
    }
}

/// A validated notification: one delivery of one alert group.
#[derive(Debug, Clone)]
pub struct Notification {
    pub source: Source,
    pub receiver: String,
    pub group_key: String,
    pub status: AlertStatus,
    pub alerts: Vec<Alert>,
    /// What each alert is about, in the order of `alerts`: filled by ingest from the
    /// classifier; empty when not mapped (the store then leaves them unmapped).
    pub targets: Vec<AlertTarget>,
    pub truncated_alerts: u64,
    /// The body exactly as received: the receipt kept for audit and replay.
    pub raw: String,
    pub received_at: DateTime<Utc>,
}

impl Notification {
    /// A key equal for two deliveries that carry the same information, whatever the
    /// transport noise (re-sends after `group_interval`, `notification_reason`, field
    /// order, HA duplicates). Duplicates are counted against it instead of stored again.
    pub fn dedupe_key(&self) -> String {
        #[derive(Serialize)]
        struct Content<'a> {
            source: &'a str,
            group_key: &'a str,
            alerts: Vec<&'a Alert>,
        }
        let mut alerts: Vec<&Alert> = self.alerts.iter().collect();
        alerts.sort_by(|a, b| (&a.fingerprint, a.starts_at).cmp(&(&b.fingerprint, b.starts_at)));
        let content = Content {
            source: self.source.as_str(),
            group_key: &self.group_key,
            alerts,
        };
        let bytes = serde_json::to_vec(&content).expect("plain data always serialises");
        hex::encode(Sha256::digest(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn alert(status: AlertStatus, ends_minute: Option<u32>) -> Alert {
        Alert {
            fingerprint: "9fc138bd6e224dae".into(),
            status,
            labels: Labels::from([("alertname".into(), "HighErrorRate".into())]),
            annotations: Labels::new(),
            starts_at: Utc.with_ymd_and_hms(2026, 8, 22, 14, 1, 0).unwrap(),
            ends_at: ends_minute.map(|m| Utc.with_ymd_and_hms(2026, 8, 22, 14, m, 0).unwrap()),
            generator_url: String::new(),
        }
    }

    fn notification(alerts: Vec<Alert>, raw: &str) -> Notification {
        Notification {
            source: Source::Alertmanager,
            receiver: "rollwarden".into(),
            group_key: "{}:{alertname=\"HighErrorRate\"}".into(),
            status: AlertStatus::Firing,
            alerts,
            targets: Vec::new(),
            truncated_alerts: 0,
            raw: raw.into(),
            received_at: Utc.with_ymd_and_hms(2026, 8, 22, 14, 2, 0).unwrap(),
        }
    }

    #[test]
    fn a_late_firing_delivery_does_not_reopen_a_resolved_alert() {
        let mut stored = alert(AlertStatus::Resolved, Some(9));
        stored.merge(&alert(AlertStatus::Firing, None));
        assert_eq!(stored.status, AlertStatus::Resolved);
        assert_eq!(
            stored.ends_at,
            alert(AlertStatus::Resolved, Some(9)).ends_at
        );
    }

    #[test]
    fn firing_then_resolved_takes_the_resolution() {
        let mut stored = alert(AlertStatus::Firing, None);
        stored.merge(&alert(AlertStatus::Resolved, Some(9)));
        assert_eq!(stored, alert(AlertStatus::Resolved, Some(9)));
    }

    #[test]
    fn dedupe_key_ignores_transport_noise_but_not_content() {
        let a = notification(vec![alert(AlertStatus::Firing, None)], "{\"a\":1}");
        let mut b = a.clone();
        b.raw = "{\"notification_reason\":\"repeat interval elapsed\"}".into();
        b.received_at = Utc.with_ymd_and_hms(2026, 8, 22, 18, 0, 0).unwrap();
        assert_eq!(a.dedupe_key(), b.dedupe_key());

        let resolved = notification(vec![alert(AlertStatus::Resolved, Some(9))], "{}");
        assert_ne!(a.dedupe_key(), resolved.dedupe_key());
    }

    #[test]
    fn dedupe_key_does_not_depend_on_alert_order() {
        let mut other = alert(AlertStatus::Firing, None);
        other.fingerprint = "e487e1f8080ec615".into();
        let a = notification(vec![alert(AlertStatus::Firing, None), other.clone()], "");
        let b = notification(vec![other, alert(AlertStatus::Firing, None)], "");
        assert_eq!(a.dedupe_key(), b.dedupe_key());
    }
}
