//! Values that never print: secrets and database URLs with their password.

use std::fmt;

use serde::{Deserialize, Serialize, Serializer};

/// A value that must never be printed: tokens, passwords.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if self.0.is_empty() { "" } else { "***" })
    }
}

/// A database URL whose password never reaches a log.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with every credential replaced by `***` ([`redact_url`]).
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }

    pub fn is_postgres(&self) -> bool {
        self.0.starts_with("postgres://") || self.0.starts_with("postgresql://")
    }
}

/// `url` with every credential-bearing part replaced by `***`: the password of the
/// userinfo (`user:***@host`, however many `/`, `:` or `@` the password holds: the
/// userinfo ends at the last `@` before the query), and the value of every query
/// parameter whose name speaks of a secret (`password`, `sslpassword`, `token`,
/// `access_token`, `secret`, `api_key`, ...). Everything else is kept, so that the
/// printed URL still says which server and database it is.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3).or_else(|| {
        // `sqlite:path?...` has no authority, but may have a query.
        url.find(':').map(|i| i + 1)
    }) else {
        return url.to_string();
    };
    let (head, rest) = url.split_at(scheme_end);
    let query_start = rest.find(['?', '#']).unwrap_or(rest.len());
    let (before_query, query) = rest.split_at(query_start);
    let before_query = match (url[..scheme_end].ends_with("://"), before_query.rfind('@')) {
        (true, Some(at)) => {
            let userinfo = &before_query[..at];
            match userinfo.find(':') {
                Some(colon) => format!("{}:***{}", &userinfo[..colon], &before_query[at..]),
                None => before_query.to_string(),
            }
        }
        _ => before_query.to_string(),
    };
    format!("{head}{before_query}{}", redact_query(query))
}

/// `?a=1&password=x#frag` → `?a=1&password=***#frag`.
fn redact_query(query: &str) -> String {
    let Some(params) = query.strip_prefix('?') else {
        return query.to_string();
    };
    let (params, fragment) = match params.find('#') {
        Some(i) => params.split_at(i),
        None => (params, ""),
    };
    let params: Vec<String> = params
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if is_secret_name(name) => format!("{name}=***"),
            _ => pair.to_string(),
        })
        .collect();
    format!("?{}{fragment}", params.join("&"))
}

fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase().replace(['-', '_'], "");
    [
        "pass",
        "pwd",
        "token",
        "secret",
        "apikey",
        "auth",
        "credential",
        "signature",
        "sig",
    ]
    .iter()
    .any(|word| name.contains(word))
}

/// Serialises a URL redacted, for URLs kept as plain strings in the config.
pub fn serialize_url<S: Serializer>(url: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redact_url(url))
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for DatabaseUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.redacted())
    }
}
