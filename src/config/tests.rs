use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn defaults_load_and_validate() {
    let c = Config::load_from(None, env(&[])).unwrap();
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.database.url.expose(), "sqlite:./rollwarden.db");
    assert_eq!(c.server.body_limit_bytes, 4 * 1024 * 1024);
    assert_eq!(c.writers(), 1);
}

#[test]
fn the_example_file_documents_exactly_the_defaults() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
    let documented = Config::load_from(Some(&example), env(&[])).unwrap();
    let defaults = Config::load_from(None, env(&[])).unwrap();
    assert_eq!(documented.render(), defaults.render());
    // And every key of the defaults is written out in the example.
    let text = std::fs::read_to_string(&example).unwrap();
    let table: toml::Table = DEFAULTS.parse().unwrap();
    for (section, keys) in table {
        assert!(
            text.contains(&format!("[{section}]")),
            "[{section}] undocumented"
        );
        for (key, value) in keys.as_table().unwrap() {
            // A sub-table ([auth.proxy]) has a header of its own, and keys.
            let keys: Vec<&String> = match value.as_table() {
                Some(inner) => {
                    assert!(
                        text.contains(&format!("[{section}.{key}]")),
                        "[{section}.{key}] undocumented"
                    );
                    // A table in it ([notify.pagerduty.severities]) has its header.
                    for (name, value) in inner {
                        if value.as_table().is_some_and(|t| !t.is_empty()) {
                            assert!(
                                text.contains(&format!("[{section}.{key}.{name}]")),
                                "[{section}.{key}.{name}] undocumented"
                            );
                        }
                    }
                    inner
                        .iter()
                        .filter(|(_, v)| v.as_table().is_none_or(|t| t.is_empty()))
                        .map(|(k, _)| k)
                        .collect()
                }
                _ => vec![key],
            };
            for key in keys {
                assert!(
                    text.lines().any(|l| l.starts_with(&format!("{key} = "))),
                    "{section}.{key} undocumented"
                );
            }
        }
    }
}

#[test]
fn the_example_configs_in_deploy_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/examples");
    for name in [
        "rollwarden-control-plane.toml",
        "rollwarden-multi-region.toml",
    ] {
        let c = Config::load_from(Some(&dir.join(name)), env(&[]))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!c.targets.is_empty(), "{name}");
        assert!(c.targets.iter().all(|t| !t.actions.is_empty()), "{name}");
    }
}

#[test]
fn action_settings_are_checked_and_name_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    let cases = [
        (
            "[[actions.commands]]\nname = \"x\"\nargv = [\"aws\", \"{{ regoin }}\"]\n",
            "actions.commands[0].argv[1]",
        ),
        (
            "[[actions.commands]]\nname = \"x\"\nargv = []\n",
            "actions.commands[0].argv",
        ),
        (
            "[[actions.webhooks]]\nname = \"x\"\nurl = \"ftp://x\"\n",
            "actions.webhooks[0].url",
        ),
        (
            "[actions]\ngithub_repository = \"nope\"\n",
            "actions.github_repository",
        ),
        ("[actions]\nlease_secs = 60\n", "actions.lease_secs"),
        (
            "[actions]\napproval_ttl_secs = 999999999999\n",
            "actions.approval_ttl_secs",
        ),
        (
            "[[targets]]\nnamespace = \"p\"\nname = \"c\"\nactions = [\"command:missing\"]\n",
            "targets[0].actions[0]",
        ),
        (
            "[[targets]]\nnamespace = \"p\"\nname = \"c\"\nactions = [\"teleport\"]\n",
            "targets[0].actions[0]",
        ),
        (
            "[[targets]]\nnamespace = \"p\"\nname = \"c\"\nactions = [\"workflow_dispatch\"]\n",
            "targets[0].actions[0]",
        ),
        (
            "[notify]\nslack_webhook_url = \"not a url\"\n",
            "notify.slack_webhook_url",
        ),
    ];
    for (text, key) in cases {
        std::fs::write(&file, text).unwrap();
        let err = Config::load_from(Some(&file), env(&[])).unwrap_err();
        assert!(err.to_string().starts_with(key), "{text}: {err}");
    }
    std::fs::write(
        &file,
        "[notify]\nslack_webhook_url = \"https://hooks.slack.com/services/T0/B0/SECRETPART\"\n\
         [actions]\ngithub_token = \"ghp_secretsecretsecret\"\n",
    )
    .unwrap();
    let c = Config::load_from(Some(&file), env(&[])).unwrap();
    for printed in [format!("{c:?}"), c.render()] {
        assert!(!printed.contains("SECRETPART"), "{printed}");
        assert!(!printed.contains("ghp_secret"), "{printed}");
    }
}

#[test]
fn label_names_in_matchers_keep_their_case() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        "[[targets]]\nnamespace = \"prod\"\nname = \"checkout\"\nenvironment = \"Prod\"\n\
         matchers = { Service = \"checkout\" }\n[environments.Prod]\nmode = \"approve\"\n",
    )
    .unwrap();
    let c = Config::load_from(Some(&file), env(&[])).unwrap();
    assert!(matches!(
        &c.targets[0].matchers,
        crate::domain::classify::MatcherConfig::Equal(m) if m.keys().eq(["Service"])
    ));
    assert!(c.environments.contains_key("Prod"));
}

#[test]
fn the_blame_window_is_set_per_environment_under_policy() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    let write = |text: &str| std::fs::write(&file, text).unwrap();
    write(
        "[environments.Batch]\nmode = \"observe\"\n\
         [policy.environments.Batch]\nblame_window_secs = 3600\n",
    );
    let c = Config::load_from(Some(&file), env(&[])).unwrap();
    assert_eq!(c.policy.blame_window_secs_for(Some("Batch")), 3600);
    assert_eq!(c.policy.blame_window_secs_for(Some("prod")), 900);
    write("[policy.environments.batch]\noutage_grace_secs = 60\n");
    let err = Config::load_from(Some(&file), env(&[]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("policy.environments.batch") && err.contains("not a key of [environments]"),
        "{err}"
    );
}

#[test]
fn environment_overrides_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        "[server]\nbody_limit_bytes = 2048\n[log]\nlevel = \"debug\"\n",
    )
    .unwrap();
    let c = Config::load_from(
        Some(&file),
        env(&[
            ("ROLLWARDEN__SERVER__BODY_LIMIT_BYTES", "4096"),
            ("ROLLWARDEN__DATABASE__URL", "postgres://u:pw@db/rw"),
        ]),
    )
    .unwrap();
    assert_eq!(c.server.body_limit_bytes, 4096);
    assert_eq!(c.log.level, "debug");
    assert!(c.database.url.is_postgres());
    assert_eq!(c.writers(), 2);
}

#[test]
fn invalid_values_name_their_key() {
    let cases = [
        ("ROLLWARDEN__DATABASE__URL", "mysql://x", "database.url"),
        (
            "ROLLWARDEN__DATABASE__MAX_CONNECTIONS",
            "0",
            "database.max_connections",
        ),
        ("ROLLWARDEN__LIMITS__MAX_LABELS", "0", "limits.max_labels"),
        (
            "ROLLWARDEN__SERVER__BODY_LIMIT_BYTES",
            "10",
            "server.body_limit_bytes",
        ),
        ("ROLLWARDEN__LIMITS__WRITE_BURST", "5", "limits.write_burst"),
        ("ROLLWARDEN__ENGINE__BUSY_SHARE", "0", "engine.busy_share"),
        ("ROLLWARDEN__ENGINE__BUSY_SHARE", "1.5", "engine.busy_share"),
        ("ROLLWARDEN__ENGINE__BUSY_SHARE", "NaN", "engine.busy_share"),
    ];
    for (var, value, key) in cases {
        let err = Config::load_from(None, env(&[(var, value)])).unwrap_err();
        assert!(err.to_string().starts_with(key), "{var}: {err}");
    }
}

#[test]
fn notification_settings_name_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    let slack = "[notify.slack]\nbot_token = \"xoxb-1\"\nchannel = \"C0123\"\n";
    let email = "[notify.email]\nsmtp_host = \"127.0.0.1\"\ntls = \"none\"\n\
                 from = \"rw@example.com\"\ndefault_recipients = [\"a@example.com\"]\n";
    let cases = [
        (slack.to_string(), None),
        (
            "[notify.slack]\nbot_token = \"xoxb-1\"\n".into(),
            Some("notify.slack:"),
        ),
        (
            format!("{slack}signing_secret = \"s\"\n"),
            Some("notify.slack.approvers"),
        ),
        (
            format!("{slack}approvers = [\"alice\"]\n"),
            Some("notify.slack.approvers[0]"),
        ),
        (
            format!("{slack}approver_groups = [\"U01\"]\n"),
            Some("notify.slack.approver_groups[0]"),
        ),
        (
            "[notify.slack]\nbot_token = \"xoxp-1\"\nchannel = \"C01\"\n".into(),
            Some("notify.slack.bot_token"),
        ),
        (
            "[notify.slack]\nbot_token = \"xoxb-1\"\nchannel = \"#deploys\"\n".into(),
            Some("notify.slack.channel"),
        ),
        (
            "[notify.pagerduty]\nrouting_key = \"short\"\n".into(),
            Some("notify.pagerduty.routing_key"),
        ),
        (
            "[notify.pagerduty.severities]\nprod = \"sev1\"\n".into(),
            Some("notify.pagerduty.severities.prod"),
        ),
        (email.to_string(), None),
        (
            email.replace("127.0.0.1", "smtp.example.com"),
            Some("notify.email.tls"),
        ),
        (
            email.replace("rw@example.com", "not an address"),
            Some("notify.email.from"),
        ),
        (
            email.replace("a@example.com", "a@"),
            Some("notify.email.default_recipients[0]"),
        ),
        (format!("{email}username = \"u\"\n"), Some("notify.email:")),
        (
            email.replace("127.0.0.1", "-oProxyCommand=x"),
            Some("notify.email.smtp_host"),
        ),
    ];
    for (toml, key) in cases {
        std::fs::write(&file, &toml).unwrap();
        match (Config::load_from(Some(&file), env(&[])), key) {
            (Ok(_), None) => {}
            (Err(err), Some(key)) => assert!(err.to_string().starts_with(key), "{toml}: {err}"),
            (Ok(_), Some(key)) => panic!("{toml}: accepted, expected an error about {key}"),
            (Err(err), None) => panic!("{toml}: {err}"),
        }
    }
}

#[test]
fn a_templates_dir_overrides_by_name_and_refuses_strangers() {
    let dir = tempfile::tempdir().unwrap();
    let mut notify = Config::load_from(None, env(&[])).unwrap().notify;
    notify.templates_dir = dir.path().display().to_string();
    std::fs::create_dir(dir.path().join("slack")).unwrap();
    std::fs::write(
        dir.path().join("slack/status.mrkdwn"),
        "still at it: {{ state }}",
    )
    .unwrap();
    assert!(notify.templates().is_ok());
    std::fs::write(dir.path().join("slack/stauts.mrkdwn"), "typo").unwrap();
    let err = notify.templates().err().unwrap().to_string();
    assert!(
        err.starts_with("notify.templates_dir: slack/stauts.mrkdwn: not a template"),
        "{err}"
    );
    std::fs::remove_file(dir.path().join("slack/stauts.mrkdwn")).unwrap();
    std::fs::write(dir.path().join("slack/status.mrkdwn"), "{% if %}").unwrap();
    let err = notify.templates().err().unwrap().to_string();
    assert!(err.contains("slack/status.mrkdwn"), "{err}");
    notify.templates_dir = dir.path().join("missing").display().to_string();
    assert!(notify.templates().is_err());
}

#[test]
fn unknown_keys_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "[server]\nlisten_addr = \"0.0.0.0:1\"\n").unwrap();
    let err = Config::load_from(Some(&file), env(&[])).unwrap_err();
    assert!(err.to_string().contains("listen_addr"), "{err}");
}

#[test]
fn tokens_need_exactly_one_source_and_enough_length() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        "[[auth.tokens]]\nname = \"am\"\nrole = \"webhook\"\ntoken = \"short\"\n",
    )
    .unwrap();
    let c = Config::load_from(Some(&file), env(&[])).unwrap();
    assert!(
        c.resolve_tokens()
            .unwrap_err()
            .to_string()
            .contains("16 characters")
    );

    std::fs::write(
        &file,
        "[[auth.tokens]]\nname = \"am\"\nrole = \"webhook\"\ntoken = \"x\"\ntoken_env = \"Y\"\n",
    )
    .unwrap();
    let err = Config::load_from(Some(&file), env(&[])).unwrap_err();
    assert!(err.to_string().starts_with("auth.tokens[0]"), "{err}");
}

#[test]
fn secrets_never_print() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        "[database]\nurl = \"postgres://rw:hunter2hunter2@db:5432/rw\"\n\
         [[auth.tokens]]\nname = \"am\"\nrole = \"webhook\"\ntoken = \"s3cr3t-token-value-123\"\n",
    )
    .unwrap();
    let c = Config::load_from(Some(&file), env(&[])).unwrap();
    for printed in [format!("{c:?}"), c.render()] {
        assert!(!printed.contains("hunter2hunter2"), "{printed}");
        assert!(!printed.contains("s3cr3t-token-value-123"), "{printed}");
    }
    assert!(c.render().contains("postgres://rw:***@db:5432/rw"));
}

#[test]
fn every_credential_in_a_url_is_masked() {
    for (url, printed) in [
        (
            "postgres://rw:hunter2@db:5432/rw",
            "postgres://rw:***@db:5432/rw",
        ),
        // A `/`, `@` or `:` in the password does not end the userinfo early.
        ("postgres://rw:hun/ter2@db/rw", "postgres://rw:***@db/rw"),
        (
            "postgres://rw:a@b:c/d@db:5432/rw",
            "postgres://rw:***@db:5432/rw",
        ),
        (
            "postgres://rw@db/rw?password=hunter2&sslmode=require",
            "postgres://rw@db/rw?password=***&sslmode=require",
        ),
        (
            "postgresql://db/rw?sslpassword=hunter2&user=rw&PassWord=x",
            "postgresql://db/rw?sslpassword=***&user=rw&PassWord=***",
        ),
        (
            "https://hooks.example.com/in?token=hunter2&x-api-key=k#frag",
            "https://hooks.example.com/in?token=***&x-api-key=***#frag",
        ),
        (
            "https://user:hunter2@hooks.example.com/in?access_token=t",
            "https://user:***@hooks.example.com/in?access_token=***",
        ),
        ("sqlite:./rollwarden.db", "sqlite:./rollwarden.db"),
        ("sqlite:./r.db?mode=rwc", "sqlite:./r.db?mode=rwc"),
        ("https://api.github.com", "https://api.github.com"),
    ] {
        assert_eq!(redact_url(url), printed, "{url}");
    }
}

#[test]
fn urls_print_masked_in_check_config_and_debug() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        "[database]\nurl = \"postgres://rw:hun/ter2@db/rw?sslpassword=hunter3\"\n\
         [notify]\nwebhook_url = \"https://hooks.example.com/x?token=hunter4\"\n\
         [[actions.webhooks]]\nname = \"pager\"\nurl = \"https://u:hunter5@pager.example.com/\"\n",
    )
    .unwrap();
    let c = Config::load_from(Some(&file), env(&[])).unwrap();
    let printed = c.render();
    for secret in ["hun/ter2", "hunter3", "hunter4", "hunter5"] {
        assert!(!printed.contains(secret), "{secret} in {printed}");
        assert!(!format!("{:?}", c.database).contains(secret), "{secret}");
    }
    assert!(
        printed.contains("postgres://rw:***@db/rw?sslpassword=***"),
        "{printed}"
    );
}

#[test]
fn several_clusters_replace_the_single_one_and_their_mistakes_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rollwarden.toml");
    std::fs::write(
        &file,
        "[kubernetes]\ncluster = \"eu-1\"\n\
         [[kubernetes.clusters]]\nname = \"eu-1\"\n\
         [[kubernetes.clusters]]\nname = \"us-1\"\ncontext = \"us\"\n",
    )
    .unwrap();
    let c = Config::load_from(Some(&file), env(&[])).unwrap();
    let names: Vec<String> = c
        .kubernetes
        .cluster_list()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["eu-1", "us-1"]);
    let us = c.kubernetes.for_cluster(&c.kubernetes.clusters[1]);
    assert_eq!((us.cluster.as_str(), us.context.as_str()), ("us-1", "us"));
    // Without the list, the top-level keys are the one cluster.
    let single = Config::load_from(None, env(&[])).unwrap();
    assert_eq!(single.kubernetes.cluster_list()[0].name, "default");

    for (text, key) in [
        (
            "[[kubernetes.clusters]]\nname = \"a\"\n[[kubernetes.clusters]]\nname = \"a\"\n",
            "kubernetes.clusters[1].name",
        ),
        (
            "[[kubernetes.clusters]]\nname = \"Not A Name\"\n",
            "kubernetes.clusters[0].name",
        ),
        (
            "[[kubernetes.clusters]]\nname = \"a\"\nkubeconfig = \"/nonexistent/kubeconfig\"\n",
            "kubernetes.clusters[0].kubeconfig",
        ),
        (
            "[kubernetes]\ncontext = \"x\"\n[[kubernetes.clusters]]\nname = \"a\"\n",
            "kubernetes.context",
        ),
        // Helm's flag values: never one Helm would take for a flag.
        (
            "[[kubernetes.clusters]]\nname = \"a\"\ncontext = \"--kubeconfig=/tmp/x\"\n",
            "kubernetes.clusters[0].context",
        ),
        (
            "[[kubernetes.clusters]]\nname = \"a\"\nkubeconfig = \"-x\"\n",
            "kubernetes.clusters[0].kubeconfig",
        ),
        ("[kubernetes]\ncontext = \"-x\"\n", "kubernetes.context"),
        // In-cluster is the service account alone, and one cluster at most.
        (
            "[kubernetes]\ncluster = \"a\"\n\
             [[kubernetes.clusters]]\nname = \"a\"\nin_cluster = true\ncontext = \"x\"\n",
            "kubernetes.clusters[0].in_cluster",
        ),
        (
            "[kubernetes]\nin_cluster = true\nkubeconfig = \"/etc/hosts\"\n",
            "kubernetes.in_cluster",
        ),
        (
            "[kubernetes]\ncluster = \"a\"\n[[kubernetes.clusters]]\nname = \"a\"\n\
             in_cluster = true\n[[kubernetes.clusters]]\nname = \"b\"\nin_cluster = true\n",
            "kubernetes.clusters[1].in_cluster",
        ),
        (
            "[kubernetes]\nin_cluster = true\n[[kubernetes.clusters]]\nname = \"default\"\n",
            "kubernetes.in_cluster",
        ),
        // The cluster of alerts and callbacks that name none must be one of the list.
        (
            "[kubernetes]\ncluster = \"eu-2\"\n[[kubernetes.clusters]]\nname = \"eu-1\"\n\
             [[kubernetes.clusters]]\nname = \"us-1\"\n",
            "kubernetes.cluster",
        ),
    ] {
        std::fs::write(&file, text).unwrap();
        let err = Config::load_from(Some(&file), env(&[])).unwrap_err();
        assert!(err.to_string().starts_with(key), "{text}: {err}");
    }
    // The in-cluster entry, and the default cluster named in the list: accepted.
    std::fs::write(
        &file,
        "[kubernetes]\ncluster = \"us-1\"\n\
         [[kubernetes.clusters]]\nname = \"eu-1\"\nin_cluster = true\n\
         [[kubernetes.clusters]]\nname = \"us-1\"\ncontext = \"us\"\n",
    )
    .unwrap();
    let c = Config::load_from(Some(&file), env(&[])).unwrap();
    let eu = c.kubernetes.for_cluster(&c.kubernetes.clusters[0]);
    assert!(eu.in_cluster && eu.kubeconfig.is_empty());
    assert!(
        !c.kubernetes
            .for_cluster(&c.kubernetes.clusters[1])
            .in_cluster
    );
    let single =
        Config::load_from(None, env(&[("ROLLWARDEN__KUBERNETES__IN_CLUSTER", "true")])).unwrap();
    assert!(single.kubernetes.cluster_list()[0].in_cluster);
}

#[test]
fn argo_cd_settings_and_targets_name_their_mistakes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rollwarden.toml");
    for (text, key) in [
        (
            "[actions]\nargocd_url = \"not a url\"\n",
            "actions.argocd_url",
        ),
        (
            "[actions]\nargocd_app_namespace = \"-bad\"\n",
            "actions.argocd_app_namespace",
        ),
        (
            "[[targets]]\nnamespace = \"prod\"\nname = \"checkout\"\nargocd_app = \"checkout\"\n",
            "targets[0].argocd_app",
        ),
        (
            "[[targets]]\nnamespace = \"prod\"\nname = \"checkout\"\ngitops = \"argocd\"\n\
             argocd_app = \"../x\"\n",
            "targets[0].argocd_app",
        ),
        (
            "[[targets]]\nnamespace = \"prod\"\nname = \"checkout\"\ngitops = \"argocd\"\n\
             argocd_app = \"checkout\"\nactions = [\"argocd_rollback\"]\n",
            "targets[0].actions[0]",
        ),
        // argocd_rollback by default, with no Argo CD to send it to: the target is named.
        (
            "[[targets]]\nnamespace = \"prod\"\nname = \"cart\"\n\
             [[targets]]\nnamespace = \"prod\"\nname = \"checkout\"\ngitops = \"argocd\"\n\
             argocd_app = \"checkout\"\n",
            "targets[1].argocd_app: target prod/checkout",
        ),
    ] {
        std::fs::write(&file, text).unwrap();
        let err = Config::load_from(Some(&file), env(&[])).unwrap_err();
        assert!(err.to_string().starts_with(key), "{text}: {err}");
    }
    std::fs::write(
        &file,
        "[actions]\nargocd_url = \"https://argocd.example.com\"\nargocd_token = \"s3cr3t-argocd\"\n\
         [[targets]]\nnamespace = \"prod\"\nname = \"checkout\"\ngitops = \"argocd\"\n\
         argocd_app = \"checkout\"\nactions = [\"argocd_rollback\"]\n",
    )
    .unwrap();
    let c = Config::load_from(Some(&file), env(&[])).unwrap();
    assert!(!c.render().contains("s3cr3t-argocd"));
    // Without actions.argocd_url, a target with actions of its own, or with actions
    // off, never reaches argocd_rollback: accepted.
    let gitops = "[[targets]]\nnamespace = \"prod\"\nname = \"checkout\"\ngitops = \"argocd\"\n\
                  argocd_app = \"checkout\"\n";
    for extra in ["actions = [\"rollout_undo\"]\n", ""] {
        std::fs::write(&file, format!("{gitops}{extra}")).unwrap();
        let actions_off = [("ROLLWARDEN__ACTIONS__ENABLED", "false")];
        let env_for = if extra.is_empty() {
            &actions_off[..]
        } else {
            &[]
        };
        Config::load_from(Some(&file), env(env_for)).unwrap();
    }
    assert_eq!(c.actions.argocd_token().unwrap().expose(), "s3cr3t-argocd");
}
