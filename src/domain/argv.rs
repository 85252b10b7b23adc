//! Argv templates of the command executor, checked when the config loads and rendered
//! when the command runs. Each element of `argv` is a minijinja template over the
//! action's parameters; the result is passed to the program as one argument, never
//! through a shell, so a value with spaces or `;` stays one argument.

use minijinja::{Environment, UndefinedBehavior};
use serde_json::{Map, Value};

/// The names a template may use, all strings.
pub const VARIABLES: [&str; 19] = [
    "target",
    "cluster",
    "namespace",
    "kind",
    "name",
    "region",
    "environment",
    "suspect_deploy_id",
    "suspect_revision",
    "rollback_revision",
    "kubernetes_revision",
    "helm_release",
    "helm_revision",
    "helm_namespace",
    "cd_workflow",
    "image_tag",
    "image",
    "decision_id",
    "action_id",
];

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    // A name the decision does not know is an error, never an empty argument.
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env
}

/// Checks every element at config load: it must parse and use only [`VARIABLES`].
/// The error names the element's index.
pub fn check_argv(argv: &[String]) -> Result<(), (usize, String)> {
    let sample: Map<String, Value> = VARIABLES
        .iter()
        .map(|v| ((*v).to_string(), Value::String(format!("<{v}>"))))
        .collect();
    let env = environment();
    for (i, arg) in argv.iter().enumerate() {
        env.render_str(arg, &sample).map_err(|err| {
            (
                i,
                format!("{err}; templates may use {}", VARIABLES.join(", ")),
            )
        })?;
    }
    Ok(())
}

/// Renders `argv` with `params` (the action's parameters: null and absent values are
/// unknown, and a template that needs one fails naming it).
pub fn render_argv(argv: &[String], params: &Value) -> Result<Vec<String>, String> {
    let mut context = Map::new();
    if let Some(object) = params.as_object() {
        for name in VARIABLES {
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
        .map(|arg| {
            env.render_str(arg, &context)
                .map_err(|err| format!("argument {arg:?}: {err} (not known for this decision)"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
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
            &json!({"region": "eu-west-1", "name": "checkout; rm -rf /", "rollback_revision": 7}),
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
                "checkout; rm -rf /",
                "--task-definition",
                "checkout; rm -rf /:7"
            ]
        );
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
}
