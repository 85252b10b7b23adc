//! Argv: what executors run, and what a recommended command is before it becomes shell
//! text. There are two ways to make one, and both check every value against its
//! field's grammar (so no value can start with `-` and pass for an option):
//!
//! - [`Argv`] builds the commands rollwarden knows (Helm, kubectl, gh, git): our own
//!   words with [`Argv::arg`], values with [`Argv::value`].
//! - [`render_argv`] renders an operator's `[[actions.commands]]` template: each
//!   element is a minijinja template over the action's parameters, passed to the
//!   program as one argument, never through a shell. A template that uses a value that
//!   does not fit its grammar fails, naming the value; nothing runs.

use minijinja::{Environment, UndefinedBehavior};
use serde_json::{Map, Value};

use crate::domain::field::{Field, Rejected};

/// The names a template may use, all strings, with the grammar of each.
pub const VARIABLES: [(&str, Field); 19] = [
    ("target", Field::Target),
    ("cluster", Field::Cluster),
    ("namespace", Field::Namespace),
    ("kind", Field::Kind),
    ("name", Field::Name),
    ("region", Field::Region),
    ("environment", Field::Environment),
    ("suspect_deploy_id", Field::Id),
    ("suspect_revision", Field::Revision),
    ("rollback_revision", Field::Revision),
    ("kubernetes_revision", Field::RevisionNumber),
    ("helm_release", Field::HelmRelease),
    ("helm_revision", Field::RevisionNumber),
    ("helm_namespace", Field::Namespace),
    ("cd_workflow", Field::Workflow),
    ("image_tag", Field::ImageTag),
    ("image", Field::Image),
    ("decision_id", Field::Id),
    ("action_id", Field::Id),
];

/// The grammar of an action parameter, for the names in [`VARIABLES`].
pub fn field_of(param: &str) -> Option<Field> {
    VARIABLES
        .iter()
        .find(|(name, _)| *name == param)
        .map(|(_, field)| *field)
}

/// An action parameter that does not fit its grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{param} {rejected}; nothing was run")]
pub struct BadParam {
    pub param: String,
    pub rejected: Rejected,
}

/// Checks an action parameter named in [`VARIABLES`]; other names pass as they are.
pub fn check_param<'a>(param: &str, value: &'a str) -> Result<&'a str, BadParam> {
    match field_of(param) {
        Some(field) => field
            .check(value)
            .map(|()| value)
            .map_err(|rejected| BadParam {
                param: param.to_string(),
                rejected,
            }),
        None => Ok(value),
    }
}

/// A command as its arguments, every value checked against its grammar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Argv(Vec<String>);

impl Argv {
    /// A command of `program` (ours: a literal, or a configured path).
    pub fn new(program: impl Into<String>) -> Self {
        Self(vec![program.into()])
    }

    /// Our own word: a subcommand, a flag, a number we computed. Never a value that
    /// came from outside.
    #[must_use]
    pub fn arg(mut self, word: impl Into<String>) -> Self {
        self.0.push(word.into());
        self
    }

    /// A value, checked against `field`.
    pub fn value(self, field: Field, value: &str) -> Result<Self, Rejected> {
        self.joined("", field, value)
    }

    /// Our `prefix` and a checked value as one argument (`--to-revision=` and `6`).
    pub fn joined(mut self, prefix: &str, field: Field, value: &str) -> Result<Self, Rejected> {
        field.check(value)?;
        self.0.push(format!("{prefix}{value}"));
        Ok(self)
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    pub fn into_vec(self) -> Vec<String> {
        self.0
    }
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    // A name the decision does not know is an error, never an empty argument.
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env
}

fn known() -> String {
    VARIABLES
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks every element at config load: it must parse and use only [`VARIABLES`].
/// The error names the element's index.
pub fn check_argv(argv: &[String]) -> Result<(), (usize, String)> {
    let sample: Map<String, Value> = VARIABLES
        .iter()
        .map(|(v, _)| ((*v).to_string(), Value::String(format!("<{v}>"))))
        .collect();
    let env = environment();
    for (i, arg) in argv.iter().enumerate() {
        env.render_str(arg, &sample)
            .map_err(|err| (i, format!("{err}; templates may use {}", known())))?;
    }
    Ok(())
}

/// Renders `argv` with `params` (the action's parameters: null and absent values are
/// unknown, and a template that needs one fails naming it). A value that a template
/// uses must fit its grammar ([`VARIABLES`]), else rendering fails naming it.
pub fn render_argv(argv: &[String], params: &Value) -> Result<Vec<String>, String> {
    let mut context = Map::new();
    if let Some(object) = params.as_object() {
        for (name, _) in VARIABLES {
            match object.get(name) {
                Some(Value::String(s)) => {
                    context.insert(name.into(), Value::String(s.clone()));
                }
                Some(Value::Number(n)) => {
                    context.insert(name.into(), Value::String(n.to_string()));
                }
                _ => {}
            }
        }
    }
    let env = environment();
    argv.iter()
        .enumerate()
        .map(|(i, arg)| {
            let template = env
                .template_from_str(arg)
                .map_err(|err| format!("argument {i} {arg:?}: {err}"))?;
            let mut used: Vec<String> = template.undeclared_variables(false).into_iter().collect();
            used.sort_unstable();
            for name in used {
                if let Some(Value::String(value)) = context.get(&name) {
                    check_param(&name, value)
                        .map_err(|err| format!("argument {i} {arg:?}: {err}"))?;
                }
            }
            template
                .render(&context)
                .map_err(|err| format!("argument {i} {arg:?}: {err} (not known for this decision)"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::field::tests::hostile;
    use serde_json::json;

    fn argv(args: &[&str]) -> Vec<String> {
        args.iter().map(|a| (*a).to_string()).collect()
    }

    #[test]
    fn placeholders_fill_single_arguments_without_a_shell() {
        let rendered = render_argv(
            &argv(&[
                "aws",
                "ecs",
                "update-service",
                "--region={{ region }}",
                "--service",
                "{{ name }}",
                "--task-definition",
                "{{ name }}:{{ rollback_revision }}",
            ]),
            &json!({"region": "eu-west-1", "name": "checkout", "rollback_revision": 7}),
        )
        .unwrap();
        assert_eq!(
            rendered,
            [
                "aws",
                "ecs",
                "update-service",
                "--region=eu-west-1",
                "--service",
                "checkout",
                "--task-definition",
                "checkout:7"
            ]
        );
    }

    #[test]
    fn a_hostile_value_fails_the_rendering_naming_it() {
        let template = argv(&["aws", "--service", "{{ name }}", "{{ region }}"]);
        for value in hostile() {
            for param in ["name", "region"] {
                let mut params = json!({"name": "checkout", "region": "eu-west-1"});
                params[param] = json!(value);
                let err = render_argv(&template, &params).unwrap_err();
                assert!(
                    err.contains(param) && err.contains("nothing was run"),
                    "{param}={value:?}: {err}"
                );
            }
        }
        let err = render_argv(
            &argv(&["x", "{{ helm_release }}"]),
            &json!({"helm_release": "--kubeconfig=attacker.yaml"}),
        )
        .unwrap_err();
        assert!(
            err.starts_with(
                "argument 1 \"{{ helm_release }}\": helm_release \"--kubeconfig=attacker.yaml\" \
                 is not a Helm release name"
            ),
            "{err}"
        );
    }

    #[test]
    fn a_bad_value_that_no_template_uses_does_not_matter() {
        let rendered = render_argv(
            &argv(&["x", "{{ name }}"]),
            &json!({"name": "checkout", "region": "--evil"}),
        )
        .unwrap();
        assert_eq!(rendered, ["x", "checkout"]);
    }

    #[test]
    fn an_unknown_value_fails_instead_of_rendering_empty() {
        let err =
            render_argv(&argv(&["--region={{ region }}"]), &json!({"region": null})).unwrap_err();
        assert!(err.contains("region"), "{err}");
    }

    #[test]
    fn config_checks_name_the_element_and_the_known_variables() {
        assert!(check_argv(&argv(&["aws", "{{ region }}"])).is_ok());
        let (i, why) = check_argv(&argv(&["aws", "{{ regoin }}"])).unwrap_err();
        assert_eq!(i, 1);
        assert!(why.contains("rollback_revision"), "{why}");
        let (i, _) = check_argv(&argv(&["{{ unclosed"])).unwrap_err();
        assert_eq!(i, 0);
    }

    #[test]
    fn the_builder_checks_values_and_leaves_our_words_alone() {
        let built = Argv::new("helm")
            .arg("rollback")
            .arg("--")
            .value(Field::HelmRelease, "checkout")
            .and_then(|a| a.joined("--to-revision=", Field::RevisionNumber, "6"))
            .unwrap();
        assert_eq!(
            built.as_slice(),
            ["helm", "rollback", "--", "checkout", "--to-revision=6"]
        );
        for value in hostile() {
            let err = Argv::new("helm")
                .value(Field::HelmRelease, &value)
                .unwrap_err();
            assert_eq!(err.field, Field::HelmRelease);
        }
    }
}
