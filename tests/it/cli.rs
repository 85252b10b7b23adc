//! The `rollwarden` binary, black-box: check-config, migrate, serve and SIGTERM.

use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;

use crate::support::FIRING;

const BIN: &str = env!("CARGO_BIN_EXE_rollwarden");
const TOKEN: &str = "cli-test-token-abcdef0123456789";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write_config(dir: &std::path::Path, port: u16) -> std::path::PathBuf {
    let path = dir.join("rollwarden.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n\
             [database]\nurl = \"sqlite:{}\"\n\
             [[auth.tokens]]\nname = \"alertmanager\"\nrole = \"admin\"\ntoken = \"{TOKEN}\"\n",
            dir.join("rw.db").display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn check_config_prints_the_effective_settings_with_secrets_masked() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 9999);
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&config)
        .env(
            "ROLLWARDEN__DATABASE__URL",
            "postgres://rw:pa55word@db.internal/rw",
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(printed.contains("listen = \"127.0.0.1:9999\""), "{printed}");
    assert!(
        printed.contains("url = \"postgres://rw:***@db.internal/rw\""),
        "{printed}"
    );
    assert!(printed.contains("token = \"***\""), "{printed}");
    assert!(!printed.contains(TOKEN) && !printed.contains("pa55word"));
    // The effective policy, as a table with every runbook rule.
    for id in ["C1", "M2", "M8", "G1", "G4", "E1", "V1"] {
        assert!(
            printed.lines().any(|l| l.trim_start().starts_with(id)),
            "{id} missing:\n{printed}"
        );
    }
}

#[test]
fn version_names_the_commit_and_the_build_date() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    let printed = String::from_utf8_lossy(&out.stdout);
    let (name, rest) = printed.trim().split_once(' ').unwrap();
    assert_eq!(name, "rollwarden");
    let (version, meta) = rest
        .split_once(" (commit ")
        .unwrap_or_else(|| panic!("{printed}"));
    assert_eq!(version, env!("CARGO_PKG_VERSION"));
    let (commit, date) = meta
        .trim_end_matches(')')
        .split_once(", built ")
        .unwrap_or_else(|| panic!("{printed}"));
    assert!(
        commit == "unknown" || commit.chars().all(|c| c.is_ascii_hexdigit()),
        "{printed}"
    );
    assert!(
        chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").is_ok(),
        "{printed}"
    );
}

#[test]
fn the_example_configs_pass_the_lint_without_their_secrets() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/examples");
    let mut linted = 0;
    for entry in std::fs::read_dir(&examples).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let out = Command::new(BIN)
            .args(["check-config", "--lint", "--config"])
            .arg(&path)
            .env_remove("ROLLWARDEN_ALERTMANAGER_TOKEN")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        // Without --lint, the absent secrets are what it says.
        let out = Command::new(BIN)
            .args(["check-config", "--config"])
            .arg(&path)
            .env_remove("ROLLWARDEN_ALERTMANAGER_TOKEN")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", path.display());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("auth.tokens[0].token_"), "{err}");
        linted += 1;
    }
    assert!(linted >= 2, "the examples are there");
}

#[test]
fn check_config_and_serve_refuse_an_open_listener_alike() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("open.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"0.0.0.0:{}\"\n[database]\nurl = \"sqlite:{}\"\n",
            free_port(),
            dir.path().join("rw.db").display()
        ),
    )
    .unwrap();
    for args in [
        &["check-config", "--lint"][..],
        &["check-config"],
        &["serve"],
    ] {
        let out = Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("server.listen") && err.contains("without auth"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn an_invalid_config_exits_2_naming_the_key() {
    let out = Command::new(BIN)
        .arg("check-config")
        .env("ROLLWARDEN__LIMITS__MAX_ALERTS", "0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("limits.max_alerts"), "{err}");
}

#[tokio::test]
async fn serve_answers_then_stops_cleanly_on_sigterm_without_logging_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), port);
    let migrate = Command::new(BIN)
        .arg("migrate")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        migrate.status.success(),
        "{}",
        String::from_utf8_lossy(&migrate.stderr)
    );

    let child = Command::new(BIN)
        .args(["serve", "--log-format", "json", "--config"])
        .arg(&config)
        .env("RUST_LOG", "debug")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let mut up = false;
    for _ in 0..100 {
        if http.get(format!("{base}/healthz")).send().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "rollwarden did not start");
    let response = http
        .post(format!("{base}/webhooks/alertmanager"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(FIRING)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    // A second `serve` on the same SQLite file (on another port) exits at once, naming
    // the first one's PID: SQLite serves one replica.
    let mut second = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .env(
            "ROLLWARDEN__SERVER__LISTEN",
            format!("127.0.0.1:{}", free_port()),
        )
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut exited = None;
    for _ in 0..100 {
        if let Some(status) = second.try_wait().unwrap() {
            exited = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let Some(status) = exited else {
        second.kill().unwrap();
        panic!("a second serve on the same SQLite file kept running");
    };
    assert!(!status.success());
    let mut refused = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().unwrap(), &mut refused).unwrap();
    assert!(
        refused.contains(&format!("PID {}", child.id())),
        "{refused}"
    );

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(out.status.success(), "exit: {:?}", out.status);
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(
        logs.contains("SIGTERM received") && logs.contains("\"stopped\""),
        "{logs}"
    );
    assert!(logs.contains("request_id"), "{logs}");
    assert!(!logs.contains(TOKEN), "a token reached the log");
}
