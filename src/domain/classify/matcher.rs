//! Alert label matchers as Alertmanager writes them: `name=value`, `name!=value`,
//! `name=~regex`, `name!~regex` (PROTOCOLS.md K).
//!
//! rollwarden accepts the subset both of Alertmanager's parsers read alike (the
//! classic `pkg/labels/parse.go` and the UTF-8 `matcher/parse/{lexer,parse,token}.go`,
//! prometheus/alertmanager@68fb2d5), and refuses the rest:
//! - a name of the classic grammar, `[a-zA-Z_:][a-zA-Z0-9_:]*`, which the UTF-8 parser
//!   reads alike unquoted; a quoted name, or one such as `9app` or `a.b/c`, only the
//!   UTF-8 parser takes;
//! - an operator, with white space around it or not;
//! - a value, double-quoted with only the `\\`, `\"` and `\n` escapes (the UTF-8
//!   parser takes Go's escapes and refuses a line feed inside the quotes, the classic
//!   one keeps an unknown escape as it is and takes a line feed), or bare: no white
//!   space and none of `{}!=~,\"'` and the backtick (the UTF-8 parser's reserved
//!   characters). No value at all (`app=`) the classic parser reads as `""` and the
//!   UTF-8 one refuses ("expected label value"): write `app=""`.
//!
//! One string may hold several matchers separated by commas, inside `{…}` or not (both
//! braces or neither; one trailing comma). An empty string or `{}`, which both read as
//! no matcher, is refused as a likely mistake. Regexes are anchored as Alertmanager
//! anchors them, `^(?:…)$`; a missing label matches as the empty string. The map form
//! (`{ app = "checkout" }`) is equality, with the same names.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::config::{ClassifyConfigError, invalid};
use crate::domain::Labels;

/// The largest compiled regex a config may ask for: a matcher runs on every alert.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Matchers as configured: a map of equalities, or a list of Alertmanager matchers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MatcherConfig {
    /// `{ service = "checkout", namespace = "prod" }`: each label equals its value.
    Equal(BTreeMap<String, String>),
    /// `["app=checkout", "namespace=~\"prod|staging\"", "severity!=info"]`.
    List(Vec<String>),
}

impl Default for MatcherConfig {
    fn default() -> Self {
        MatcherConfig::Equal(BTreeMap::new())
    }
}

impl MatcherConfig {
    pub fn is_empty(&self) -> bool {
        match self {
            MatcherConfig::Equal(map) => map.is_empty(),
            MatcherConfig::List(list) => list.is_empty(),
        }
    }
}

impl From<BTreeMap<String, String>> for MatcherConfig {
    fn from(map: BTreeMap<String, String>) -> Self {
        MatcherConfig::Equal(map)
    }
}

impl<const N: usize> From<[(String, String); N]> for MatcherConfig {
    fn from(pairs: [(String, String); N]) -> Self {
        MatcherConfig::Equal(BTreeMap::from(pairs))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Equal => "=",
            Op::NotEqual => "!=",
            Op::Regex => "=~",
            Op::NotRegex => "!~",
        }
    }
}

/// One compiled matcher.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: Op,
    pub value: String,
    regex: Option<regex::Regex>,
}

impl Matcher {
    pub fn matches(&self, labels: &Labels) -> bool {
        let got = labels.get(&self.name).map_or("", String::as_str);
        match (self.op, &self.regex) {
            (Op::Equal, _) => got == self.value,
            (Op::NotEqual, _) => got != self.value,
            (Op::Regex, Some(re)) => re.is_match(got),
            (Op::NotRegex, Some(re)) => !re.is_match(got),
            (Op::Regex | Op::NotRegex, None) => false,
        }
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{:?}", self.name, self.op.as_str(), self.value)
    }
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        (&self.name, self.op, &self.value) == (&other.name, other.op, &other.value)
    }
}

/// All of them match (an empty list matches everything).
pub fn all_match(matchers: &[Matcher], labels: &Labels) -> bool {
    matchers.iter().all(|m| m.matches(labels))
}

/// Compiles configured matchers; an invalid one is an error naming `key` and it.
pub fn compile(key: &str, config: &MatcherConfig) -> Result<Vec<Matcher>, ClassifyConfigError> {
    let mut out = Vec::new();
    match config {
        MatcherConfig::Equal(map) => {
            for (name, value) in map {
                let key = format!("{key}.{name}");
                check_name(&key, name)?;
                check_value(&key, value)?;
                out.push(build(&key, name, Op::Equal, value)?);
            }
        }
        MatcherConfig::List(list) => {
            for (i, text) in list.iter().enumerate() {
                let key = format!("{key}[{i}]");
                for one in split(&key, text)? {
                    out.push(parse_one(&key, one)?);
                }
            }
        }
    }
    Ok(out)
}

/// The matchers of one string: braces trimmed, split on commas outside quotes.
fn split<'a>(key: &str, text: &'a str) -> Result<Vec<&'a str>, ClassifyConfigError> {
    let trimmed = text.trim();
    let inner = match (trimmed.strip_prefix('{'), trimmed.ends_with('}')) {
        (Some(rest), true) => &rest[..rest.len() - 1],
        (None, false) => trimmed,
        _ => return Err(invalid(key, format!("{text:?}: unbalanced braces"))),
    };
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in inner.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if quoted {
        return Err(invalid(key, format!("{text:?}: a quote is not closed")));
    }
    let last = &inner[start..];
    // One trailing comma is allowed, as Alertmanager allows it.
    if !last.trim().is_empty() || parts.is_empty() {
        parts.push(last);
    }
    Ok(parts)
}

fn parse_one(key: &str, text: &str) -> Result<Matcher, ClassifyConfigError> {
    let text = text.trim();
    let bad = |why: &str| invalid(key, format!("{text:?}: {why}"));
    let name_end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .ok_or_else(|| bad("expected an operator such as '=', '!=', '=~' or '!~'"))?;
    let name = &text[..name_end];
    check_name(key, name).map_err(|_| bad("the name must be a label name"))?;
    let rest = text[name_end..].trim_start();
    let (op, value) = [
        ("=~", Op::Regex),
        ("!~", Op::NotRegex),
        ("!=", Op::NotEqual),
        ("=", Op::Equal),
    ]
    .into_iter()
    .find_map(|(token, op)| rest.strip_prefix(token).map(|v| (op, v.trim())))
    .ok_or_else(|| bad("expected an operator such as '=', '!=', '=~' or '!~'"))?;
    let value = if let Some(quoted) = value.strip_prefix('"') {
        let body = quoted
            .strip_suffix('"')
            .ok_or_else(|| bad("a quote is not closed"))?;
        unquote(body).ok_or_else(|| {
            bad("inside quotes only \\\\, \\\" and \\n escapes, no bare '\"' and no line break")
        })?
    } else {
        if value.is_empty() {
            // Alertmanager's classic parser reads `app=` as `app=""`; its UTF-8 parser
            // refuses it ("expected label value").
            return Err(bad("expected a value (write \"\" for the empty one)"));
        }
        if value
            .chars()
            .any(|c| c.is_whitespace() || "{}!=~,\"'`\\".contains(c))
        {
            return Err(bad(
                "a value with white space or one of {}!=~,\"'`\\ must be double-quoted",
            ));
        }
        value.to_string()
    };
    check_value(key, &value)?;
    build(key, name, op, &value)
}

/// The common subset of Alertmanager's two parsers: `\\`, `\"`, `\n`; any other
/// escape, a bare quote or a line feed is refused (the parsers disagree on them: Go's
/// `strconv.Unquote` refuses a line feed, the classic parser keeps it).
fn unquote(body: &str) -> Option<String> {
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next()? {
                '\\' => out.push('\\'),
                '"' => out.push('"'),
                'n' => out.push('\n'),
                _ => return None,
            },
            '"' | '\n' => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

fn build(key: &str, name: &str, op: Op, value: &str) -> Result<Matcher, ClassifyConfigError> {
    let regex = match op {
        Op::Regex | Op::NotRegex => Some(
            regex::RegexBuilder::new(&format!("^(?:{value})$"))
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map_err(|e| {
                    invalid(
                        key,
                        format!(
                            "{name}{}{value:?}: not a regular expression: {}",
                            op.as_str(),
                            e.to_string().lines().last().unwrap_or("invalid")
                        ),
                    )
                })?,
        ),
        Op::Equal | Op::NotEqual => None,
    };
    Ok(Matcher {
        name: name.to_string(),
        op,
        value: value.to_string(),
        regex,
    })
}

/// Alertmanager's classic matcher names, `[a-zA-Z_:][a-zA-Z0-9_:]*`
/// (`pkg/labels/parse.go`), which its UTF-8 parser reads alike.
fn check_name(key: &str, name: &str) -> Result<(), ClassifyConfigError> {
    let mut chars = name.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!(
                "{name:?} is not a label name (letters, digits, '_' and ':', not first a digit)"
            ),
        ))
    }
}

fn check_value(key: &str, value: &str) -> Result<(), ClassifyConfigError> {
    if value.chars().any(|c| c.is_control() && c != '\n') || value.len() > 4096 {
        return Err(invalid(
            key,
            "a value must be at most 4096 bytes without control characters",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    fn list(items: &[&str]) -> MatcherConfig {
        MatcherConfig::List(items.iter().map(|s| (*s).to_string()).collect())
    }

    #[test]
    fn alertmanagers_four_operators_anchored_with_missing_labels_empty() {
        let m = compile(
            "t",
            &list(&[
                "app=checkout",
                r#"namespace=~"prod|staging""#,
                "severity!=info",
                r#"team!~"test.*""#,
            ]),
        )
        .unwrap();
        let base = [
            ("app", "checkout"),
            ("namespace", "prod"),
            ("severity", "critical"),
        ];
        assert!(
            all_match(&m, &labels(&base)),
            "team missing: \"\" is not test.*"
        );
        let with = |k: &'static str, v: &'static str| {
            let mut l = labels(&base);
            l.insert(k.into(), v.into());
            all_match(&m, &l)
        };
        assert!(
            !with("namespace", "production"),
            "anchored: prod|staging only"
        );
        assert!(!with("namespace", "preprod"), "anchored at the start too");
        assert!(!with("severity", "info"));
        assert!(!with("team", "testing"));
        assert!(with("team", "payments"));
        assert!(!with("app", "cart"));
        // An empty value matches an absent label, as in Alertmanager.
        let absent = compile("t", &list(&[r#"canary="""#])).unwrap();
        assert!(all_match(&absent, &labels(&base)));
        assert!(!all_match(&absent, &labels(&[("canary", "true")])));
    }

    #[test]
    fn one_string_may_hold_several_matchers_in_braces_and_the_map_is_equality() {
        let m = compile("t", &list(&[r#"{app="checkout", region=~"eu-.*",}"#])).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[1].to_string(), r#"region=~"eu-.*""#);
        let map = MatcherConfig::Equal(BTreeMap::from([("app".into(), "checkout".into())]));
        let m = compile("t", &map).unwrap();
        assert_eq!((m[0].op, m[0].value.as_str()), (Op::Equal, "checkout"));
        // Escapes inside quotes: \\, \" and \n only.
        let m = compile("t", &list(&[r#"path=~"/api/\\d+""#])).unwrap();
        assert_eq!(m[0].value, r"/api/\d+");
        assert!(m[0].matches(&labels(&[("path", "/api/42")])));
        // Parsed from TOML as a list or a map.
        #[derive(Deserialize)]
        struct T {
            matchers: MatcherConfig,
        }
        let t: T = toml::from_str(r#"matchers = ["app=checkout"]"#).unwrap();
        assert_eq!(t.matchers, list(&["app=checkout"]));
        let t: T = toml::from_str(r#"matchers = { app = "checkout" }"#).unwrap();
        assert!(matches!(t.matchers, MatcherConfig::Equal(_)));
    }

    #[test]
    fn an_invalid_matcher_is_an_error_naming_it() {
        for (bad, why) in [
            ("app", "expected an operator"),
            ("app==x", "must be double-quoted"),
            ("9app=x", "label name"),
            ("app=", "expected a value"),
            (r#"app="x"#, "not closed"),
            (r#"app="a\d""#, "escapes"),
            ("app=two words", "double-quoted"),
            (r#"app=~"(prod""#, "not a regular expression"),
            ("{app=x", "unbalanced braces"),
            (r#"app=~"(a{1000}){1000}""#, "not a regular expression"),
        ] {
            let err = compile("targets[2].matchers", &list(&["ok=yes", bad]))
                .unwrap_err()
                .to_string();
            assert!(err.contains("targets[2].matchers[1]"), "{bad}: {err}");
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn only_what_both_alertmanager_parsers_read_alike_is_accepted() {
        // Both read these alike: a ':' in a name (the classic grammar), white space
        // around the operator, `\n` written as an escape.
        let m = compile("t", &list(&["k8s:app = checkout", r#":x!="y""#])).unwrap();
        assert_eq!(
            (m[0].name.as_str(), m[0].value.as_str()),
            ("k8s:app", "checkout")
        );
        assert!(m[0].matches(&labels(&[("k8s:app", "checkout")])));
        assert_eq!(m[1].name, ":x");
        let m = compile("t", &list(&[r#"msg="a\nb""#])).unwrap();
        assert_eq!(m[0].value, "a\nb");
        let map = MatcherConfig::Equal(BTreeMap::from([("k8s:app".into(), "x".into())]));
        assert_eq!(compile("t", &map).unwrap()[0].name, "k8s:app");

        for (bad, why) in [
            // Classic: app=""; UTF-8: "expected label value".
            ("app=", "expected a value"),
            ("app= ,team=x", "expected a value"),
            // A line feed inside quotes: classic keeps it, Go's strconv.Unquote refuses it.
            ("msg=\"a\nb\"", "no line break"),
            // UTF-8 only: a quoted name, a name starting with a digit, or with '.' or '/'.
            (r#""app"="x""#, "label name"),
            ("9app=x", "label name"),
            ("app.kubernetes.io/name=x", "expected an operator"),
            // Classic keeps `\t` as a backslash and a t; UTF-8 reads a tab.
            (r#"msg="a\tb""#, "escapes"),
            // Classic trims one brace alone; UTF-8 refuses it.
            ("app=x}", "unbalanced braces"),
        ] {
            let err = compile("t", &list(&[bad])).unwrap_err().to_string();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }
}
