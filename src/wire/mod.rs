//! External payload formats, parsed strictly and converted into domain types.
//!
//! A payload either converts whole or is rejected with a [`WireError`] that names the
//! offending field; nothing half-parsed leaves this module.

pub mod alertmanager;
pub mod ci;
pub mod flagger;
pub mod signal;

use serde::de::DeserializeOwned;

/// Why a payload was rejected. Always the client's fault: it maps to a 4xx.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct WireError {
    /// A stable machine-readable code, e.g. `invalid_field`.
    pub code: &'static str,
    /// The JSON path of the offending field (`alerts[1].startsAt`), or `body`.
    pub field: String,
    pub message: String,
}

impl WireError {
    pub fn new(code: &'static str, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code,
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Limits on untrusted payloads, from `[limits]` in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub max_alerts: usize,
    pub max_labels: usize,
    pub max_label_name_bytes: usize,
    pub max_label_value_bytes: usize,
    pub max_annotations: usize,
    pub max_annotation_value_bytes: usize,
}

impl Default for Bounds {
    fn default() -> Self {
        Self {
            max_alerts: 1000,
            max_labels: 64,
            max_label_name_bytes: 256,
            max_label_value_bytes: 4096,
            max_annotations: 64,
            max_annotation_value_bytes: 16384,
        }
    }
}

/// Deserialises JSON, naming the path of the first field that does not fit.
pub fn from_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, WireError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if inner.classify() != serde_json::error::Category::Data {
            // Syntax errors have no field; the position is what helps.
            return WireError::new("malformed_json", "body", inner.to_string());
        }
        // serde's message already says "missing field `x`" or "invalid type: ...".
        let field = if path == "." || path == "?" {
            "body".to_string()
        } else {
            path
        };
        WireError::new("invalid_field", field, strip_position(&inner.to_string()))
    })
}

/// An RFC 3339 timestamp in UTC, or an error naming `field`.
pub(crate) fn parse_time(
    field: &str,
    value: &str,
) -> Result<chrono::DateTime<chrono::Utc>, WireError> {
    chrono::DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|_| WireError::new("invalid_timestamp", field, "must be an RFC 3339 timestamp"))
}

/// Kubernetes object names: DNS-1123 (lower-case alphanumerics, `-` and `.`).
pub(crate) fn check_name(field: &str, value: &str, allow_empty: bool) -> Result<(), WireError> {
    let ok = (allow_empty || !value.is_empty())
        && value.len() <= 253
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(WireError::new(
            "invalid_field",
            field,
            "must be a Kubernetes name: lower-case letters, digits, '-' and '.', at most 253",
        ))
    }
}

/// serde_json appends " at line 1 column 17"; the field path says more to a sender.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}
