use super::*;

#[test]
fn the_default_policy_is_valid_and_has_every_runbook_rule_in_order() {
    let policy = Policy::default();
    policy.validate().unwrap();
    let ids: Vec<&str> = policy.rules.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "C1", "C2", "C3", "C4", "M1", "M2", "M3", "M4", "M5", "M6", "M7", "M8", "G1", "G2",
            "G3", "G4"
        ]
    );
    assert_eq!(policy.version, "runbooks-2");
    assert_eq!(policy.correlation_window_secs, 7200);
    assert_eq!(policy.blame_window_secs, 900);
    assert_eq!(policy.outage_grace_secs, 600);
    assert!(policy.environments.is_empty());
    assert_eq!(policy.loop_guard, LoopGuard::default());
    assert_eq!(policy.loop_guard.limit, 3);
    assert_eq!(policy.loop_guard.min_interval_secs, 300);
    assert_eq!(policy.loop_guard.window_secs, 3600);
}

#[test]
fn the_default_rules_carry_the_runbooks_numbers() {
    use Condition::*;
    let p = Policy::default();
    let c = |id: &str| p.rule(id).unwrap().condition().unwrap();
    let r = |id: &str| p.rule(id).unwrap();
    let table = [
        ("C1", BaselinePlus(0.005), Scope::Canary, Outcome::Rollback),
        ("C2", BaselineFactor(1.5), Scope::Canary, Outcome::Rollback),
        ("C3", Above(0.9), Scope::Canary, Outcome::Rollback),
        ("C4", Above(0.9), Scope::Canary, Outcome::Rollback),
        ("M1", Above(0.01), Scope::Any, Outcome::Monitor),
        ("M2", Above(0.05), Scope::Any, Outcome::Rollback),
        ("M3", BaselineFactor(2.0), Scope::Any, Outcome::Monitor),
        ("M4", BaselineFactor(3.0), Scope::Any, Outcome::Rollback),
        ("M5", Above(5.0), Scope::Any, Outcome::Investigate),
        ("M6", Above(20.0), Scope::Any, Outcome::Rollback),
        ("M7", Present, Scope::Any, Outcome::Rollback),
        ("M8", Present, Scope::Any, Outcome::Freeze),
        ("G1", Present, Scope::Any, Outcome::Rollback),
        ("G2", Above(0.01), Scope::Any, Outcome::Rollback),
        ("G3", Present, Scope::Any, Outcome::Rollback),
        ("G4", BaselineFactor(3.0), Scope::Stable, Outcome::Rollback),
    ];
    for (id, condition, scope, outcome) in table {
        assert_eq!(c(id), condition, "{id}");
        assert_eq!(r(id).scope, scope, "{id}");
        assert_eq!(r(id).outcome, outcome, "{id}");
        assert!(!r(id).description.is_empty(), "{id}");
    }
    assert_eq!(r("G1").min_duration_secs, 180);
    assert!(r("G1").after_deploy);
    // G4 (runbooks-2): M1's floor for error rates, G1's 3 minutes, right after a deploy.
    assert_eq!(
        r("G4").floor,
        BTreeMap::from([(SignalKind::ErrorRate, 0.01)])
    );
    assert_eq!(r("G4").min_duration_secs, 180);
    assert!(r("G4").immediately_after_deploy);
    assert_eq!(
        p.rules
            .iter()
            .filter(|r| r.immediately_after_deploy || !r.floor.is_empty())
            .map(|r| r.id.as_str())
            .collect::<Vec<_>>(),
        ["G4"]
    );
    assert_eq!(r("G2").min_duration_secs, 300);
    assert_eq!(
        r("G3").kinds,
        [
            SignalKind::CrashLoop,
            SignalKind::Readiness,
            SignalKind::SloBurn
        ]
    );
    assert_eq!(
        r("G4").kinds,
        [SignalKind::ErrorRate, SignalKind::LatencyP95]
    );
    for rule in &p.rules {
        assert_eq!(rule.min_observations, 1, "{}", rule.id);
        assert_eq!(rule.after_deploy, rule.id == "G1", "{}", rule.id);
    }
}

#[test]
fn e1_and_v1_defaults_are_the_runbooks_numbers() {
    let v = Policy::default().verification;
    assert_eq!(v.escalate_after_secs, 600);
    assert_eq!(v.watch_secs, 900);
    assert_eq!(v.error_rate_below, 0.001);
    assert_eq!(v.latency_p95_below, 0.2);
    assert_eq!(v.cpu_below, 0.7);
    assert_eq!(v.memory_below, 0.7);
}

#[test]
fn the_default_policy_round_trips_through_toml() {
    let policy = Policy::default();
    let text = toml::to_string(&policy).unwrap();
    let back: Policy = toml::from_str(&text).unwrap();
    assert_eq!(back, policy);
}

#[test]
fn a_partial_file_keeps_the_defaults_it_does_not_mention() {
    let policy: Policy = toml::from_str(
        r#"
        version = "shop-2"
        [loop_guard]
        limit = 2
        "#,
    )
    .unwrap();
    assert_eq!(policy.version, "shop-2");
    assert_eq!(policy.loop_guard.limit, 2);
    assert_eq!(policy.loop_guard.window_secs, 3600);
    assert_eq!(policy.rules, Policy::default().rules);
    policy.validate().unwrap();
}

#[test]
fn rules_from_toml_take_their_field_defaults() {
    let policy: Policy = toml::from_str(
        r#"
        version = "x"
        [[rules]]
        id = "R1"
        kinds = ["error_rate"]
        above = 0.02
        outcome = "rollback"
        "#,
    )
    .unwrap();
    let rule = &policy.rules[0];
    assert_eq!(rule.scope, Scope::Any);
    assert_eq!(rule.min_duration_secs, 0);
    assert_eq!(rule.min_observations, 1);
    assert!(!rule.after_deploy);
    assert_eq!(rule.condition().unwrap(), Condition::Above(0.02));
    policy.validate().unwrap();
}

#[test]
fn whole_numbers_are_accepted_as_thresholds() {
    let policy: Policy = toml::from_str(
        "[[rules]]\nid = \"R\"\nkinds = [\"customer_reports\"]\nabove = 20\noutcome = \"rollback\"\n",
    )
    .unwrap();
    assert_eq!(policy.rules[0].condition(), Ok(Condition::Above(20.0)));
}

#[test]
fn unknown_fields_and_kinds_are_refused_when_parsing() {
    let unknown_field = toml::from_str::<Policy>("version = \"x\"\nwindow = 3\n");
    assert!(unknown_field.unwrap_err().to_string().contains("window"));
    let unknown_rule_field = toml::from_str::<Policy>(
        "[[rules]]\nid = \"R\"\nkinds = [\"cpu\"]\nabove = 0.5\nbelow = 0.1\noutcome = \"monitor\"\n",
    );
    assert!(
        unknown_rule_field
            .unwrap_err()
            .to_string()
            .contains("below")
    );
    let unknown_kind = toml::from_str::<Policy>(
        "[[rules]]\nid = \"R\"\nkinds = [\"disk\"]\nabove = 0.5\noutcome = \"monitor\"\n",
    );
    assert!(unknown_kind.unwrap_err().to_string().contains("disk"));
}

fn with_rule(edit: impl FnOnce(&mut Rule)) -> Result<(), PolicyError> {
    let mut policy = Policy::default();
    let rule = policy.rules.iter_mut().find(|r| r.id == "M2").unwrap();
    edit(rule);
    policy.validate()
}

#[test]
fn validation_names_the_rule_and_field_at_fault() {
    type Edit = Box<dyn FnOnce(&mut Rule)>;
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(|r| r.above = None),
            "policy rule `M2`: no condition",
        ),
        (
            Box::new(|r| r.baseline_factor = Some(2.0)),
            "policy rule `M2`: both `above` and `baseline_factor` are set",
        ),
        (
            Box::new(|r| r.above = Some(0.0)),
            "policy rule `M2`: `above` must be a positive number, got 0",
        ),
        (
            Box::new(|r| r.above = Some(-0.1)),
            "policy rule `M2`: `above` must be a positive number",
        ),
        (
            Box::new(|r| r.above = Some(f64::NAN)),
            "policy rule `M2`: `above` must be a positive number",
        ),
        (
            Box::new(|r| r.above = Some(5.0)),
            "policy rule `M2`: `above` = 5 is not a ratio",
        ),
        (
            Box::new(|r| r.kinds.clear()),
            "policy rule `M2`: `kinds` is empty",
        ),
        (
            Box::new(|r| r.kinds.push(SignalKind::Dependency)),
            "policy rule `M2`: kind `dependency` cannot fire a rule",
        ),
        (
            Box::new(|r| r.kinds.push(SignalKind::LatencyP95)),
            "policy rule `M2`: `above` compares kinds of different units",
        ),
        (
            Box::new(|r| r.min_observations = 0),
            "policy rule `M2`: `min_observations` must be at least 1",
        ),
        (
            Box::new(|r| {
                r.above = None;
                r.present = Some(false);
            }),
            "policy rule `M2`: `present` can only be true",
        ),
        (
            Box::new(|r| r.id = "M1".into()),
            "the rule id `M1` is used more than once",
        ),
        (Box::new(|r| r.id = " ".into()), "a rule has an empty `id`"),
    ];
    for (edit, expected) in cases {
        let err = with_rule(edit).unwrap_err().to_string();
        assert!(
            err.contains(expected),
            "{err:?} should contain {expected:?}"
        );
    }
}

#[test]
fn validation_checks_the_settings_around_the_rules() {
    let broken = |edit: fn(&mut Policy)| {
        let mut p = Policy::default();
        edit(&mut p);
        p.validate().unwrap_err()
    };
    assert_eq!(broken(|p| p.version.clear()), PolicyError::EmptyVersion);
    type Edit = fn(&mut Policy);
    let cases: [(Edit, &str); 4] = [
        (|p| p.correlation_window_secs = 0, "correlation_window_secs"),
        (|p| p.loop_guard.limit = 0, "loop_guard.limit"),
        (
            |p| p.verification.cpu_below = 70.0,
            "verification.cpu_below",
        ),
        (
            |p| p.verification.latency_p95_below = 0.0,
            "verification.latency_p95_below",
        ),
    ];
    for (edit, field) in cases {
        let err = broken(edit).to_string();
        assert!(err.contains(field), "{err:?} should name {field}");
    }
}

#[test]
fn a_factor_may_span_kinds_of_different_units() {
    // G4 compares error rate and latency each against its own baseline.
    assert!(
        with_rule(|r| {
            r.above = None;
            r.baseline_factor = Some(2.0);
            r.kinds.push(SignalKind::LatencyP95);
        })
        .is_ok()
    );
}

#[test]
fn a_stable_rule_matches_whole_workload_signals_and_a_canary_rule_only_canary_ones() {
    let p = Policy::default();
    let (c1, g4, m2) = (
        p.rule("C1").unwrap(),
        p.rule("G4").unwrap(),
        p.rule("M2").unwrap(),
    );
    let e = SignalKind::ErrorRate;
    assert!(c1.matches(e, Scope::Canary));
    assert!(!c1.matches(e, Scope::Stable) && !c1.matches(e, Scope::Any));
    assert!(g4.matches(e, Scope::Stable) && g4.matches(e, Scope::Any));
    assert!(!g4.matches(e, Scope::Canary));
    for scope in [Scope::Canary, Scope::Stable, Scope::Any] {
        assert!(m2.matches(e, scope));
        assert!(!m2.matches(SignalKind::Cpu, scope));
    }
}

#[test]
fn conditions_read_in_words() {
    let p = Policy::default();
    let words = |id: &str| p.rule(id).unwrap().condition_words();
    assert_eq!(words("C1"), "> baseline + 0.5 pp");
    assert_eq!(words("C2"), "> 1.5 × baseline");
    assert_eq!(words("C3"), "> 90 %");
    assert_eq!(words("M2"), "> 5 %");
    assert_eq!(words("M4"), "> 3 × baseline");
    assert_eq!(words("M6"), "> 20 in 5 min");
    assert_eq!(words("M7"), "any");
    assert_eq!(words("G1"), "any after a deploy");
}

#[test]
fn the_table_has_a_row_per_rule_and_for_e1_and_v1() {
    let table = Policy::default().table();
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with(
        "policy runbooks-2: correlation window 2 h; blame window 15 min; outage grace 10 min"
    ));
    assert!(lines[2].starts_with("ID  "));
    let rows = &lines[3..];
    assert_eq!(rows.len(), 18);
    let ids: Vec<&str> = rows
        .iter()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(&ids[16..], ["E1", "V1"]);
    let row = |id: &str| *rows.iter().find(|l| l.starts_with(id)).unwrap();
    assert!(row("C1").contains("> baseline + 0.5 pp"));
    assert!(row("G1").contains("health_check"));
    assert!(row("G1").contains("3 min"));
    assert!(row("G2").contains("5 min"));
    assert!(row("G3").contains("crash_loop|readiness|slo_burn"));
    assert!(row("G4").contains("stable"));
    assert!(
        row("G4").contains("> 3 × baseline and > 1 % (error_rate) right after a deploy  3 min")
    );
    assert!(row("M5").contains("> 5 in 5 min"));
    assert!(row("M8").trim_end().ends_with("freeze"));
    assert!(row("E1").contains("10 min"));
    assert!(row("V1").contains("< 0.1 %"));
    assert!(row("V1").contains("< 0.2 s or <= baseline"));
    assert!(row("V1").contains("< 70 %"));
    assert!(row("V1").contains("watch 15 min"));
    // Fixed width: every column starts at the same place on every row.
    let at = |line: &str, word: &str| line.find(word).map(|i| line[..i].chars().count());
    let outcome_col = at(lines[2], "OUTCOME").unwrap();
    assert_eq!(at(row("M1"), "monitor"), Some(outcome_col));
    assert_eq!(at(row("C2"), "rollback"), Some(outcome_col));
}

#[test]
fn runbooks_1_is_the_default_without_what_runbooks_2_added() {
    let old = Policy::runbooks_1();
    old.validate().unwrap();
    let new = Policy::default();
    assert_eq!(old.version, "runbooks-1");
    assert_eq!(old.blame_window_secs, old.correlation_window_secs);
    assert_eq!(old.outage_grace_secs, 0);
    for (a, b) in old.rules.iter().zip(&new.rules) {
        if a.id == "G4" {
            assert_eq!(
                Rule {
                    floor: b.floor.clone(),
                    min_duration_secs: b.min_duration_secs,
                    immediately_after_deploy: true,
                    ..a.clone()
                },
                *b
            );
        } else {
            assert_eq!(a, b);
        }
    }
    assert_eq!(Policy::builtin("runbooks-1"), Some(old));
    assert_eq!(Policy::builtin("runbooks-2"), Some(new));
    assert_eq!(Policy::builtin("runbooks-3"), None);
}

#[test]
fn environments_override_the_blame_window_and_the_outage_grace() {
    let policy: Policy = toml::from_str(
        r#"
        blame_window_secs = 600
        [environments.batch]
        blame_window_secs = 3600
        [environments.staging]
        outage_grace_secs = 120
        "#,
    )
    .unwrap();
    policy.validate().unwrap();
    assert_eq!(policy.blame_window_secs_for(None), 600);
    assert_eq!(policy.blame_window_secs_for(Some("production")), 600);
    assert_eq!(policy.blame_window_secs_for(Some("batch")), 3600);
    assert_eq!(policy.blame_window_secs_for(Some("staging")), 600);
    assert_eq!(policy.outage_grace_secs_for(Some("batch")), 600);
    assert_eq!(policy.outage_grace_secs_for(Some("staging")), 120);
    let table = policy.table();
    assert!(
        table.contains("environment batch: blame window 1 h; outage grace 10 min\n"),
        "{table}"
    );
    let back: Policy = toml::from_str(&toml::to_string(&policy).unwrap()).unwrap();
    assert_eq!(back, policy);
}

#[test]
fn a_floor_reads_from_toml_per_kind() {
    let policy: Policy = toml::from_str(
        r#"
        [[rules]]
        id = "R"
        kinds = ["error_rate", "latency_p95"]
        baseline_factor = 2.0
        floor = { error_rate = 0.02, latency_p95 = 0.3 }
        immediately_after_deploy = true
        outcome = "rollback"
        "#,
    )
    .unwrap();
    policy.validate().unwrap();
    let rule = &policy.rules[0];
    assert_eq!(rule.floor[&SignalKind::LatencyP95], 0.3);
    assert_eq!(
        rule.condition_words(),
        "> 2 × baseline and > 2 % (error_rate) and > 0.3 s (latency_p95) right after a deploy"
    );
}

#[test]
fn floors_and_windows_are_validated() {
    let floor = |kind, value| {
        with_rule(|r| {
            r.floor.insert(kind, value);
        })
    };
    assert_eq!(
        floor(SignalKind::ErrorRate, 0.01),
        Ok(()),
        "M2 may have a floor"
    );
    for (kind, value, expected) in [
        (
            SignalKind::LatencyP95,
            0.3,
            "`floor.latency_p95` names a kind that is not in the rule's `kinds`",
        ),
        (
            SignalKind::ErrorRate,
            0.0,
            "`floor.error_rate` must be a positive number",
        ),
        (
            SignalKind::ErrorRate,
            1.0,
            "`floor.error_rate` must be a positive number",
        ),
        (
            SignalKind::ErrorRate,
            f64::NAN,
            "`floor.error_rate` must be a positive",
        ),
    ] {
        let err = floor(kind, value).unwrap_err().to_string();
        assert!(err.contains(expected), "{err}");
    }
    let mut policy = Policy::default();
    let m7 = policy.rules.iter_mut().find(|r| r.id == "M7").unwrap();
    m7.floor.insert(SignalKind::SlaViolation, 1.0);
    assert!(
        policy
            .validate()
            .unwrap_err()
            .to_string()
            .contains("`floor` needs a value condition")
    );
    let broken = |edit: fn(&mut Policy)| {
        let mut p = Policy::default();
        edit(&mut p);
        p.validate().unwrap_err().to_string()
    };
    assert!(broken(|p| p.blame_window_secs = 0).contains("`blame_window_secs` must be positive"));
    assert!(
        broken(|p| p.outage_grace_secs = 7201)
            .contains("`outage_grace_secs` = 7201 is longer than `correlation_window_secs` = 7200")
    );
    assert!(
        broken(|p| {
            p.environments.insert(
                "prod".into(),
                EnvironmentPolicy {
                    blame_window_secs: Some(0),
                    outage_grace_secs: None,
                },
            );
        })
        .contains("`environments.prod.blame_window_secs` must be positive")
    );
    let zero_grace = Policy {
        outage_grace_secs: 0,
        ..Policy::default()
    };
    assert_eq!(
        zero_grace.validate(),
        Ok(()),
        "a grace of 0 forgets outages"
    );
}

#[test]
fn numbers_print_without_float_noise() {
    assert_eq!(fmt_num(0.07 * 100.0), "7");
    assert_eq!(fmt_num(0.005 * 100.0), "0.5");
    assert_eq!(fmt_num(20.0), "20");
    assert_eq!(fmt_value(SignalKind::ErrorRate, 0.051), "5.1 %");
    assert_eq!(fmt_value(SignalKind::LatencyP95, 0.45), "0.45 s");
    assert_eq!(fmt_secs(180), "3 min");
    assert_eq!(fmt_secs(90), "90 s");
    assert_eq!(fmt_secs(7200), "2 h");
}
