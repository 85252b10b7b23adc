//! The alertname glob: `*` any run of characters, `?` exactly one.

use super::config::{ClassifyConfigError, invalid};

#[derive(Debug, Clone)]
pub(super) struct Glob(Vec<char>);

impl Glob {
    /// Characters that mean something in other pattern languages; accepting them as
    /// literals would silently match nothing where the author meant a regex or a class.
    const FOREIGN: &'static [char] = &['[', ']', '{', '}', '(', ')', '|', '\\', '^', '$', '+'];

    pub(super) fn parse(key: &str, pattern: &str) -> Result<Self, ClassifyConfigError> {
        if pattern.is_empty() {
            return Err(invalid(
                key,
                "must not be empty (`*` matches every alertname)",
            ));
        }
        if pattern.chars().count() > 256 {
            return Err(invalid(key, "must be at most 256 characters"));
        }
        if let Some(c) = pattern
            .chars()
            .find(|c| c.is_whitespace() || c.is_control() || Self::FOREIGN.contains(c))
        {
            return Err(invalid(
                key,
                format!(
                    "{c:?} in {pattern:?}: a glob has only `*` (any run) and `?` (one character)"
                ),
            ));
        }
        Ok(Self(pattern.chars().collect()))
    }

    pub(super) fn matches(&self, text: &[char]) -> bool {
        let pattern = &self.0;
        let (mut p, mut t) = (0, 0);
        // The last `*` seen and the text position it currently stands for: on a
        // mismatch, let that star swallow one more character and retry.
        let mut backtrack: Option<(usize, usize)> = None;
        while t < text.len() {
            match pattern.get(p) {
                Some('*') => {
                    backtrack = Some((p, t));
                    p += 1;
                }
                Some(&c) if c == '?' || c == text[t] => {
                    p += 1;
                    t += 1;
                }
                _ => match backtrack {
                    Some((star, from)) => {
                        p = star + 1;
                        t = from + 1;
                        backtrack = Some((star, from + 1));
                    }
                    None => return false,
                },
            }
        }
        pattern[p..].iter().all(|&c| c == '*')
    }
}
