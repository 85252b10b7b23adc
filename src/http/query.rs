//! Query strings, declared once: a route's query is one struct that derives
//! `Deserialize` (which parses it, through [`ApiQuery`]) and `IntoParams` (which documents
//! it). Values with bounds are newtypes ([`Limit`], [`IdCursor`], [`Id`], [`Text`],
//! [`Time`]...) whose parser and schema sit side by side, so the document states exactly
//! what is enforced. Unknown parameters are refused; every error is a 400 naming the
//! parameter.

use std::fmt;

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use serde::de::value::{MapDeserializer, SeqDeserializer, StringDeserializer};
use serde::de::{self, DeserializeOwned, Deserializer, IntoDeserializer, Visitor};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};

use super::error::ApiError;

/// One page of a list, newest first.
#[derive(Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// The `after` cursor of the following page; `null` on the last page.
    pub next: Option<String>,
}

/// The query string parsed into `T`; a malformed or unknown parameter is a 400
/// (`invalid_query`) naming it.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parse(parts.uri.query()).map(ApiQuery)
    }
}

/// The path parameters parsed into `T` (a struct that also derives `IntoParams`); a
/// malformed one is a 400 (`invalid_path`) naming it.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|rejection| {
                ApiError::bad_request("invalid_path", "path", rejection.body_text())
            })?;
        let pairs = params
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()));
        from_pairs(pairs, "invalid_path").map(ApiPath)
    }
}

/// The query of a route that takes no parameters: any one is unknown.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoQuery {}

/// Parses a raw query string into `T`. A parameter may be given once, except those that
/// `T` declares as a list (`label=a&label=b`).
pub fn parse<T: DeserializeOwned>(raw: Option<&str>) -> Result<T, ApiError> {
    let pairs = form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .map(|(key, value)| (key.into_owned(), value.into_owned()));
    from_pairs(pairs, "invalid_query")
}

/// Deserialises `(name, value)` pairs into `T`; an error is a 400 with `code`, naming
/// the parameter.
fn from_pairs<T: DeserializeOwned>(
    pairs: impl Iterator<Item = (String, String)>,
    code: &'static str,
) -> Result<T, ApiError> {
    let mut params: Vec<(String, Values)> = Vec::new();
    for (key, value) in pairs {
        match params.iter_mut().find(|(k, _)| *k == key) {
            Some((_, values)) => values.0.push(value),
            None => params.push((key, Values(vec![value]))),
        }
    }
    serde_path_to_error::deserialize(MapDeserializer::new(params.into_iter())).map_err(|err| {
        let field = match err.path().iter().next() {
            Some(serde_path_to_error::Segment::Map { key }) => key.clone(),
            _ => "query".to_string(),
        };
        let (field, message) = match err.into_inner() {
            QueryError::Unknown {
                field,
                expected: [],
            } => (
                field,
                "unknown parameter; this route takes none".to_string(),
            ),
            QueryError::Unknown { field, expected } => (
                field,
                format!("unknown parameter; use {}", expected.join(", ")),
            ),
            QueryError::Invalid(message) => (field, message),
        };
        ApiError::bad_request(code, &field, message)
    })
}

/// Why a query did not deserialise. Our own type, so that an unknown parameter keeps
/// its name and the list of known ones.
#[derive(Debug)]
enum QueryError {
    Unknown {
        field: String,
        expected: &'static [&'static str],
    },
    Invalid(String),
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueryError::Unknown { field, .. } => write!(f, "unknown parameter {field}"),
            QueryError::Invalid(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for QueryError {}

impl de::Error for QueryError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        QueryError::Invalid(msg.to_string())
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        QueryError::Unknown {
            field: field.to_string(),
            expected,
        }
    }

    fn unknown_variant(_: &str, expected: &'static [&'static str]) -> Self {
        QueryError::Invalid(format!("must be one of {}", expected.join(", ")))
    }
}

/// Every value given for one parameter, in order.
struct Values(Vec<String>);

impl Values {
    /// The one value of a parameter that is not a list.
    fn one(mut self) -> Result<Value, QueryError> {
        match self.0.len() {
            1 => Ok(Value(self.0.remove(0))),
            _ => Err(QueryError::Invalid("given more than once".into())),
        }
    }
}

impl<'de> IntoDeserializer<'de, QueryError> for Values {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

impl<'de> Deserializer<'de> for Values {
    type Error = QueryError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, QueryError> {
        self.one()?.deserialize_any(visitor)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, QueryError> {
        self.one()?.deserialize_bool(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, QueryError> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, QueryError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, QueryError> {
        visitor.visit_seq(SeqDeserializer::new(self.0.into_iter().map(Value)))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, QueryError> {
        self.one()?.deserialize_enum(name, variants, visitor)
    }

    serde::forward_to_deserialize_any! {
        i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct tuple tuple_struct map struct identifier ignored_any
    }
}

/// One value of a parameter: text, and for `bool` exactly `true` or `false`. Bounded
/// numbers and the rest are newtypes that parse the text themselves.
struct Value(String);

impl<'de> IntoDeserializer<'de, QueryError> for Value {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

impl<'de> Deserializer<'de> for Value {
    type Error = QueryError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, QueryError> {
        visitor.visit_string(self.0)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, QueryError> {
        match self.0.as_str() {
            "true" => visitor.visit_bool(true),
            "false" => visitor.visit_bool(false),
            _ => Err(QueryError::Invalid("must be true or false".into())),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, QueryError> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, QueryError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, QueryError> {
        let text: StringDeserializer<QueryError> = self.0.into_deserializer();
        text.deserialize_enum(name, variants, visitor)
    }

    serde::forward_to_deserialize_any! {
        i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

/// Declares a newtype parsed from one text value by `$parse` (`fn(&str) -> Option<T>`,
/// `None` answered with `$message`), documented by `$schema`.
macro_rules! text_newtype {
    ($name:ident($inner:ty), $parse:expr, $message:expr, $schema:expr) => {
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <String as serde::Deserialize>::deserialize(deserializer)?;
                let parse: fn(&str) -> Option<$inner> = $parse;
                parse(&text)
                    .map($name)
                    .ok_or_else(|| <D::Error as serde::de::Error>::custom($message))
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
                let schema: utoipa::openapi::schema::ObjectBuilder = $schema;
                schema.into()
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}
pub(crate) use text_newtype;

/// A Kubernetes object name ([`Field::Name`]: a DNS-1123 subdomain).
#[derive(Debug, Clone)]
pub struct KubeName(pub String);

pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 1000;

/// Items per page: 1 to 1000, 100 when not given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit(pub u32);

impl Default for Limit {
    fn default() -> Self {
        Limit(DEFAULT_LIMIT)
    }
}

text_newtype!(
    Limit(u32),
    |s| digits(s, 4)
        .filter(|l| (1..=i64::from(MAX_LIMIT)).contains(l))
        .map(|l| l as u32),
    format!("must be a number from 1 to {MAX_LIMIT}"),
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(1))
        .maximum(Some(MAX_LIMIT))
        .default(Some(DEFAULT_LIMIT.into()))
);

/// The largest id a JSON client reads exactly (2^53 - 1).
pub const MAX_ID: i64 = 9_007_199_254_740_991;

/// A row id (a decision's, say): 1 to 2^53 - 1, in decimal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Id(pub i64);

text_newtype!(
    Id(i64),
    |s| digits(s, 16).filter(|id| (1..=MAX_ID).contains(id)),
    "must be an id: a whole number from 1 to 9007199254740991",
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(1))
        .maximum(Some(MAX_ID))
);

/// The `after` cursor of an id-ordered list: the `next` of the previous page (the id of
/// its last item).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdCursor(pub i64);

text_newtype!(
    IdCursor(i64),
    |s| {
        let ok = s.len() <= 18 && !s.starts_with('0');
        digits(s, 18).filter(|_| ok)
    },
    "not a cursor from `next`",
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some("^[1-9][0-9]{0,17}$"))
);

/// Bounded text: 1 to 512 characters, none a control character (PostgreSQL cannot even
/// compare text with a NUL in it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text(pub String);

pub const MAX_TEXT_CHARS: usize = 512;

/// The schema pattern of [`Text`].
pub const TEXT_PATTERN: &str = "^[^\\u0000-\\u001f\\u007f-\\u009f]{1,512}$";

text_newtype!(
    Text(String),
    |s| is_text(s).then(|| s.to_string()),
    format!("must be 1 to {MAX_TEXT_CHARS} characters without control characters"),
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(MAX_TEXT_CHARS))
        .pattern(Some(TEXT_PATTERN))
);

/// Whether `value` is [`Text`].
pub fn is_text(value: &str) -> bool {
    let chars = value.chars().count();
    (1..=MAX_TEXT_CHARS).contains(&chars) && !value.chars().any(char::is_control)
}

/// An RFC 3339 instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Time(pub DateTime<Utc>);

text_newtype!(
    Time(DateTime<Utc>),
    |s| DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc)),
    "must be an RFC 3339 timestamp",
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
);

/// A whole number of at most `max_digits` ASCII digits, no sign.
fn digits(s: &str, max_digits: usize) -> Option<i64> {
    if s.is_empty() || s.len() > max_digits || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Runs a list query for one row more than asked, so the page knows whether another
/// follows; returns the page and whether one does.
pub fn split_page<T>(mut items: Vec<T>, limit: u32) -> (Vec<T>, bool) {
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    (items, more)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        limit: Option<Limit>,
        after: Option<IdCursor>,
        active: Option<bool>,
        #[serde(default)]
        tag: Vec<Text>,
        verdict: Option<crate::domain::Verdict>,
    }

    fn field_of(raw: &str) -> String {
        let err = parse::<Sample>(Some(raw)).expect_err(raw);
        err.details.unwrap()["field"].as_str().unwrap().to_string()
    }

    #[test]
    fn a_query_parses_into_its_struct() {
        let q: Sample = parse(Some(
            "limit=5&after=42&active=false&tag=a&tag=b%20c&verdict=hold",
        ))
        .unwrap();
        assert_eq!(q.limit, Some(Limit(5)));
        assert_eq!(q.after, Some(IdCursor(42)));
        assert_eq!(q.active, Some(false));
        assert_eq!(q.tag, vec![Text("a".into()), Text("b c".into())]);
        assert_eq!(q.verdict, Some(crate::domain::Verdict::Hold));
        let empty: Sample = parse(None).unwrap();
        assert_eq!(empty.limit, None);
        assert!(empty.tag.is_empty());
    }

    #[test]
    fn every_error_names_its_parameter() {
        for (raw, field) in [
            ("limit=0", "limit"),
            ("limit=1001", "limit"),
            ("limit=+5", "limit"),
            ("limit=5&limit=6", "limit"),
            ("after=0", "after"),
            ("after=-3", "after"),
            ("after=0123", "after"),
            ("active=yes", "active"),
            ("tag=", "tag"),
            ("tag=a&tag=%01", "tag"),
            ("verdict=maybe", "verdict"),
            ("sort=asc", "sort"),
        ] {
            assert_eq!(field_of(raw), field, "{raw}");
        }
    }

    #[test]
    fn unknown_parameters_are_named_with_the_known_ones() {
        let err = parse::<Sample>(Some("colour=red")).unwrap_err();
        assert_eq!(err.code, "invalid_query");
        assert_eq!(
            err.message,
            "colour: unknown parameter; use limit, after, active, tag, verdict"
        );
        let err = parse::<NoQuery>(Some("verbose=true")).unwrap_err();
        assert_eq!(
            err.message,
            "verbose: unknown parameter; this route takes none"
        );
        assert!(parse::<NoQuery>(Some("")).is_ok());
    }

    #[test]
    fn bounds_are_the_documented_ones() {
        assert_eq!(
            parse::<Sample>(Some("limit=1000")).unwrap().limit,
            Some(Limit(1000))
        );
        let id = |s: &str| Id::deserialize(Value(s.to_string())).ok();
        assert_eq!(id("9007199254740991"), Some(Id(MAX_ID)));
        assert_eq!(id("9007199254740992"), None);
        let text = "é".repeat(MAX_TEXT_CHARS);
        assert!(
            is_text(&text),
            "the bound counts characters, as the schema does"
        );
        assert!(!is_text(&format!("{text}é")));
    }
}
