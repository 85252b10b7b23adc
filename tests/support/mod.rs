//! Test support: real stores (a SQLite file, a PostgreSQL schema), the real app on a
//! random port, and typed helpers to talk to it.
#![allow(dead_code)]

pub mod fake_kube;
pub mod smtp;

use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use reqwest::{Response, StatusCode};
use serde_json::Value;
use sqlx::postgres::PgConnectOptions;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use rollwarden::app::App;
use rollwarden::clock::ManualClock;
use rollwarden::config::{Config, Secret, TokenConfig};
use rollwarden::domain::Role;
use rollwarden::store::{PostgresStore, SqliteStore, Store};

pub const WEBHOOK_TOKEN: &str = "test-webhook-token-0001";
pub const VIEWER_TOKEN: &str = "test-viewer-token-00002";
pub const OPERATOR_TOKEN: &str = "test-operator-token-003";
pub const ADMIN_TOKEN: &str = "test-admin-token-000004";

pub const FIRING: &str = include_str!("../fixtures/alertmanager-firing.json");
pub const RESOLVED: &str = include_str!("../fixtures/alertmanager-resolved.json");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A store of its own for one test. Keeps the SQLite file's directory alive.
pub struct TestStore {
    pub store: Arc<dyn Store>,
    pub backend: Backend,
    /// For SQLite, the URL of the file, to reopen it after the app closed it.
    pub url: String,
    pg: Option<PgConnectOptions>,
    _dir: Option<tempfile::TempDir>,
}

impl TestStore {
    pub async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite:{}", dir.path().join("rollwarden.db").display());
                let store = SqliteStore::connect(&url, 4).await.expect("open sqlite");
                store.migrate().await.expect("migrate sqlite");
                Self {
                    store: Arc::new(store),
                    backend,
                    url,
                    pg: None,
                    _dir: Some(dir),
                }
            }
            Backend::Postgres => {
                let options = postgres_schema().await;
                let store = PostgresStore::connect_with(options.clone(), 8)
                    .await
                    .expect("connect postgres");
                store.migrate().await.expect("migrate postgres");
                Self {
                    store: Arc::new(store),
                    backend,
                    url: String::new(),
                    pg: Some(options),
                    _dir: None,
                }
            }
        }
    }

    /// A PostgreSQL store connected with `options` (a schema of [`postgres_schema`],
    /// perhaps through a proxy of the test's).
    pub async fn postgres_with(options: PgConnectOptions) -> Self {
        let store = PostgresStore::connect_with(options.clone(), 2)
            .await
            .expect("connect postgres");
        store.migrate().await.expect("migrate postgres");
        Self {
            store: Arc::new(store),
            backend: Backend::Postgres,
            url: String::new(),
            pg: Some(options),
            _dir: None,
        }
    }

    /// The same database with a fresh connection pool, for the app's next life.
    pub async fn reopened(mut self) -> Self {
        self.store = self.reopen().await;
        self
    }

    /// Runs `sql` (several statements) on the database directly, past the store: rows
    /// as an earlier version wrote them.
    pub async fn execute_raw(&self, sql: &str) {
        let sql = sqlx::AssertSqlSafe(sql.to_string());
        match &self.pg {
            Some(options) => {
                let pool = sqlx::PgPool::connect_with(options.clone()).await.unwrap();
                sqlx::raw_sql(sql).execute(&pool).await.expect("raw sql");
                pool.close().await;
            }
            None => {
                let pool = sqlx::SqlitePool::connect(&self.url).await.unwrap();
                sqlx::raw_sql(sql).execute(&pool).await.expect("raw sql");
                pool.close().await;
            }
        }
    }

    /// Opens the same database again (after the app under test closed its pool).
    pub async fn reopen(&self) -> Arc<dyn Store> {
        match &self.pg {
            Some(options) => Arc::new(
                PostgresStore::connect_with(options.clone(), 2)
                    .await
                    .expect("reopen postgres"),
            ),
            None => Arc::new(
                SqliteStore::connect(&self.url, 2)
                    .await
                    .expect("reopen sqlite"),
            ),
        }
    }
}

/// The tests' schemas are named `rwtest_<unix seconds>_<uuid>`.
const SCHEMA_PREFIX: &str = "rwtest_";

/// A test schema older than this is left over (no test runs this long) and dropped.
const LEFT_OVER_SECS: u64 = 6 * 3600;

/// Whether this test process swept the left-over schemas yet.
static SWEPT: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Drops the test schemas earlier runs left in `DATABASE_URL`'s database (each test
/// leaves its own: on a server that outlives the runs, such as a developer's, they
/// had grown to over a thousand and 300 MB of catalog). Once per test process; a
/// schema it cannot drop at once (in use, or another process's sweep) is left for
/// the next.
async fn sweep_schemas(url: &str) {
    use sqlx::Connection;
    // A connection of its own: its lock timeout (a schema in use is left) stays on it.
    let Ok(mut conn) = sqlx::PgConnection::connect(url).await else {
        return;
    };
    let names: Vec<String> =
        sqlx::query_scalar("SELECT nspname::text FROM pg_namespace WHERE starts_with(nspname, $1)")
            .bind(SCHEMA_PREFIX)
            .fetch_all(&mut conn)
            .await
            .unwrap_or_default();
    let _ = sqlx::query("SET lock_timeout = '1s'")
        .execute(&mut conn)
        .await;
    let now = unix_secs();
    for name in names {
        let created = name
            .strip_prefix(SCHEMA_PREFIX)
            .and_then(|rest| rest.split_once('_'))
            .and_then(|(secs, _)| secs.parse::<u64>().ok());
        // A name without the time is from before it was written in: left over too.
        if created.is_some_and(|secs| secs + LEFT_OVER_SECS > now) {
            continue;
        }
        // Quoted as an identifier: the name comes from the catalog.
        let drop = format!(
            "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
            name.replace('"', "\"\"")
        );
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(drop))
            .execute(&mut conn)
            .await;
    }
    let _ = conn.close().await;
}

/// Connect options for a fresh schema in `DATABASE_URL`'s database. Each test gets its
/// own schema, so tests never see each other's rows.
pub async fn postgres_schema() -> PgConnectOptions {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "DATABASE_URL is not set: the Postgres tests need a server. \
             Run scripts/test, which starts a throwaway PostgreSQL."
        )
    });
    let schema = format!(
        "{SCHEMA_PREFIX}{}_{}",
        unix_secs(),
        uuid::Uuid::new_v4().simple()
    );
    let admin = sqlx::PgPool::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to DATABASE_URL: {e}"));
    SWEPT.get_or_init(|| sweep_schemas(&url)).await;
    // The name is ours (a UUID), not input.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await
        .expect("create schema");
    admin.close().await;
    PgConnectOptions::from_str(&url)
        .expect("DATABASE_URL parses")
        .options([("search_path", schema.as_str())])
}

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 8, 22, 14, 3, 0).unwrap()
}

/// A config for tests: loopback, random port, a token for every role.
pub fn test_config() -> Config {
    let mut config = Config::load_from(None, Vec::new()).expect("defaults load");
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.shutdown_grace_secs = 5;
    config.auth.tokens = [
        ("alertmanager", Role::Webhook, WEBHOOK_TOKEN),
        ("dashboard", Role::Viewer, VIEWER_TOKEN),
        ("oncall", Role::Operator, OPERATOR_TOKEN),
        ("root", Role::Admin, ADMIN_TOKEN),
    ]
    .into_iter()
    .map(|(name, role, token)| TokenConfig {
        name: name.into(),
        role,
        token: Secret::new(token),
        token_file: None,
        token_env: None,
    })
    .collect();
    config
}

/// The real app, serving on a random loopback port.
pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub db: TestStore,
    pub clock: Arc<ManualClock>,
    shutdown: CancellationToken,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, |_| {}).await
    }

    pub async fn spawn_with(backend: Backend, edit: impl FnOnce(&mut Config)) -> Self {
        let db = TestStore::new(backend).await;
        Self::spawn_on(db, edit, None).await
    }

    /// The app on an existing store (a restart), watching `kube` when given.
    pub async fn spawn_on(
        db: TestStore,
        edit: impl FnOnce(&mut Config),
        kube: Option<kube::Client>,
    ) -> Self {
        Self::spawn_watching(db, edit, |app| match kube {
            Some(client) => app.with_kubernetes(client),
            None => app,
        })
        .await
    }

    /// The app watching and acting on several clusters, by name.
    pub async fn spawn_on_clusters(
        db: TestStore,
        edit: impl FnOnce(&mut Config),
        clusters: Vec<(String, kube::Client)>,
    ) -> Self {
        Self::spawn_watching(db, edit, |app| app.with_clusters(clusters)).await
    }

    async fn spawn_watching(
        db: TestStore,
        edit: impl FnOnce(&mut Config),
        watch: impl FnOnce(App) -> App,
    ) -> Self {
        let mut config = test_config();
        edit(&mut config);
        let clock = Arc::new(ManualClock::new(t0()));
        let app = App::build_with(config, db.store.clone(), clock.clone())
            .await
            .expect("app builds");
        let app = watch(app);
        let base = format!("http://{}", app.local_addr());
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(app.run(shutdown.clone()));
        Self {
            base,
            http: reqwest::Client::new(),
            db,
            clock,
            shutdown,
            server: Some(server),
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.db.store
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post_alertmanager(&self, body: impl Into<String>) -> Response {
        self.http
            .post(self.url("/webhooks/alertmanager"))
            .bearer_auth(WEBHOOK_TOKEN)
            .header("content-type", "application/json")
            .body(body.into())
            .send()
            .await
            .expect("request sent")
    }

    /// GET with the viewer token; returns status and JSON body.
    pub async fn get_json(&self, path: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .get(self.url(path))
            .bearer_auth(VIEWER_TOKEN)
            .send()
            .await
            .expect("request sent");
        let status = response.status();
        (status, response.json().await.expect("JSON body"))
    }

    pub async fn alerts(&self, query: &str) -> Vec<Value> {
        let (status, body) = self.get_json(&format!("/api/v1/alerts?{query}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["items"].as_array().expect("items").clone()
    }

    pub async fn metrics(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("request sent")
            .text()
            .await
            .expect("text body")
    }

    /// Cancels the app and waits for its orderly stop.
    pub async fn stop(mut self) -> TestStore {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task")
                .expect("server stops cleanly");
        }
        let placeholder = TestStore {
            store: self.db.store.clone(),
            backend: self.db.backend,
            url: self.db.url.clone(),
            pg: self.db.pg.clone(),
            _dir: None,
        };
        std::mem::replace(&mut self.db, placeholder)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Asserts a JSON error body of our format with `code` (and `field`, when given).
pub async fn assert_error(response: Response, status: StatusCode, code: &str, field: Option<&str>) {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.expect("JSON error body");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    if let Some(field) = field {
        assert_eq!(body["error"]["details"]["field"], field, "{body}");
    }
}

/// Generates one `#[tokio::test]` per backend for each listed `async fn(Backend)`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::support::Backend::Sqlite).await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::support::Backend::Postgres).await })*
        }
    };
}
