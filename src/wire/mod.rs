//! External payload formats, parsed strictly and converted into domain types.
//!
//! A payload either converts whole or is rejected with a [`WireError`] that names the
//! offending field; nothing half-parsed leaves this module.

pub mod alertmanager;
pub mod ci;
pub mod flagger;
pub mod signal;
pub mod slack;

use serde::Deserialize;
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

    /// A payload that fits its schema but breaks a rule no schema can state (see
    /// [`INCONSISTENT`]).
    pub fn inconsistent(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(INCONSISTENT, field, message)
    }
}

/// The code of a rule the OpenAPI document cannot state in a schema, because it relates
/// two fields (an end before its start) or a field and the server's clock (an expiry in
/// the past). Every other rule is in the schema, and breaking it is `invalid_field` (a
/// 400); these are documented in words, and the API answers them with 422.
pub const INCONSISTENT: &str = "inconsistent";

// The text rules the payloads share. Their schemas spell them as patterns: no control
// character is `[^\u0000-\u001f\u007f-\u009f]` (Unicode's Cc, what `char::is_control`
// finds); no control character and no white space (`char::is_whitespace`) is
// `[^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]`.
// Lengths count characters, as JSON Schema's `maxLength` does.

/// At most `max` characters, none a control character.
pub(crate) fn is_plain_text(value: &str, max: usize) -> bool {
    value.chars().count() <= max && !value.chars().any(char::is_control)
}

/// At most `max` characters, none a control character, at least one of them not white
/// space.
pub(crate) fn is_visible_text(value: &str, max: usize) -> bool {
    is_plain_text(value, max) && !value.trim().is_empty()
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

/// JSON Schema's `integer`: a number without a fractional part, `41624.0` as much as
/// `41624` (serde reads only the second as an integer), from 0 up to what `T` holds.
pub(crate) fn whole<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<u64>,
{
    to_whole(serde_json::Number::deserialize(deserializer)?)
}

/// [`whole`], or `null`.
pub(crate) fn whole_or_null<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<u64>,
{
    Option::<serde_json::Number>::deserialize(deserializer)?
        .map(to_whole)
        .transpose()
}

fn to_whole<T: TryFrom<u64>, E: serde::de::Error>(number: serde_json::Number) -> Result<T, E> {
    // Every f64 from 2^53 up is whole; below 2^64 it converts exactly.
    let whole = number.as_u64().or_else(|| {
        number
            .as_f64()
            .filter(|f| f.fract() == 0.0 && (0.0..18_446_744_073_709_551_616.0).contains(f))
            .map(|f| f as u64)
    });
    whole
        .and_then(|n| T::try_from(n).ok())
        .ok_or_else(|| E::custom(format!("{number} is not a whole number in range")))
}

/// An object of strings whose keys are all different. JSON parsers keep the last of
/// duplicate keys, so `{"severity": "page", "severity": "info"}` would silently mean
/// whichever came last; Alertmanager never sends one, so it is refused, naming the key.
pub(crate) fn unique_map<'de, D>(
    deserializer: D,
) -> Result<std::collections::BTreeMap<String, String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct Unique;
    impl<'de> serde::de::Visitor<'de> for Unique {
        type Value = std::collections::BTreeMap<String, String>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object of strings")
        }

        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = std::collections::BTreeMap::new();
            while let Some((key, value)) = map.next_entry::<String, String>()? {
                if out.contains_key(&key) {
                    return Err(serde::de::Error::custom(format!(
                        "duplicate key {key:?}: each name may appear once"
                    )));
                }
                out.insert(key, value);
            }
            Ok(out)
        }
    }
    deserializer.deserialize_map(Unique)
}

/// Deserialises JSON, naming the path of the first field that does not fit.
pub fn from_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, WireError> {
    if has_escaped_nul(body) {
        // PostgreSQL stores no NUL in text or jsonb: refuse it here, on both stores.
        return Err(WireError::new(
            "invalid_field",
            "body",
            "contains a NUL character (\\u0000), which cannot be stored",
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if inner.classify() != serde_json::error::Category::Data {
            // Syntax errors have no field; the position is what helps.
            return WireError::new("malformed_json", "body", inner.to_string());
        }
        // serde's message already says "missing field `x`" or "invalid type: ...".
        let field = if path.is_empty() || path == "." || path == "?" {
            "body".to_string()
        } else {
            path
        };
        WireError::new("invalid_field", field, strip_position(&inner.to_string()))
    })
}

/// How far from the server's clock an accepted time may be, either way. Both stores
/// round-trip every instant of years 1 to 9999 (SQLite keeps a fixed-width text form,
/// which a year past 9999 breaks), and no alert, deploy, signal or freeze is decades
/// away from now; a time outside this is a mistake or an attack, refused where it
/// arrives.
pub const MAX_TIME_DISTANCE_DAYS: i64 = 3653;

/// An RFC 3339 timestamp in UTC, within [`MAX_TIME_DISTANCE_DAYS`] of `now`, or an
/// error naming `field`.
pub(crate) fn parse_time(
    field: &str,
    value: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<chrono::DateTime<chrono::Utc>, WireError> {
    let t = chrono::DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|_| WireError::new("invalid_timestamp", field, "must be an RFC 3339 timestamp"))?;
    check_time(field, t, now)
}

/// `t` to the microsecond if it lies within [`MAX_TIME_DISTANCE_DAYS`] of `now`: a rule
/// against the server's clock, so `inconsistent` (422). Microseconds are what both stores
/// keep: two instants a nanosecond apart are one instant once stored (and one alert
/// occurrence: a batch writing both would update its row twice), and what the engine
/// holds of an ingest must equal what it would read back.
pub(crate) fn check_time(
    field: &str,
    t: chrono::DateTime<chrono::Utc>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<chrono::DateTime<chrono::Utc>, WireError> {
    let bound = chrono::Duration::days(MAX_TIME_DISTANCE_DAYS);
    if t < now - bound || t > now + bound {
        return Err(WireError::inconsistent(
            field,
            format!(
                "must be within {} years of the server's clock ({})",
                MAX_TIME_DISTANCE_DAYS / 365,
                now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        ));
    }
    Ok(chrono::SubsecRound::trunc_subsecs(t, 6))
}

/// `value` if it fits `grammar` (one per kind of field, `domain::field`), else a 400
/// naming `field` and saying what it must be.
pub(crate) fn check(
    field: &str,
    grammar: crate::domain::field::Field,
    value: &str,
) -> Result<(), WireError> {
    if grammar.fits(value) {
        Ok(())
    } else {
        Err(WireError::new(
            "invalid_field",
            field,
            format!("must be {}", grammar.expects()),
        ))
    }
}

/// Whether a JSON text has a `\u0000` escape in a string (a raw NUL is not valid JSON
/// anyway). A backslash counts only when an odd number of them precede the `u`.
fn has_escaped_nul(body: &[u8]) -> bool {
    body.windows(6).enumerate().any(|(i, w)| {
        w == b"\\u0000" && body[..i].iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 0
    })
}

/// serde_json appends " at line 1 column 17"; the field path says more to a sender.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_escaped_nul_is_refused_but_an_escaped_backslash_before_u0000_is_text() {
        assert!(has_escaped_nul(br#"{"a": "x\u0000"}"#));
        assert!(has_escaped_nul(br#"{"a": "\\\u0000"}"#));
        assert!(!has_escaped_nul(br#"{"a": "\\u0000"}"#));
        assert!(!has_escaped_nul(br#"{"a": "u0000"}"#));
        let err = from_json::<serde_json::Value>(br#"{"a": "\u0000"}"#).unwrap_err();
        assert_eq!(err.field, "body");
    }
}
