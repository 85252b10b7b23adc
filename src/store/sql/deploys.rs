//! The deploy history: rollouts, Helm releases, pipelines and canary runs per target.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{Executor, Postgres, QueryBuilder};
use tracing::instrument;

use super::decisions::EXPLAIN;
use super::{BindArg, Dialect, GetCol, PushArg, SqlStore, Ts};
use crate::domain::deploy::{HELM_RELEASE_KIND, status};
use crate::domain::{Deploy, DeploySource, TargetRef};
use crate::store::{DeployCursor, DeployQuery, DeployStore, DeployWrite, StoreError, StoredDeploy};

/// The columns of a deploy row, in the order [`SqlStore::deploy_row`] reads them.
pub(super) const DEPLOY_COLUMNS: &str = "id, target, cluster, namespace, kind, name, source, \
     revision, status, environment, region, version, images, commit_sha, change_cause, \
     description, helm_release, chart, chart_version, app_version, pod_template_hash, link, \
     actor, started_at, finished_at, details, first_seen_at, updated_at";

/// Rows of one target plus those of the Helm releases that manage it: `$1` is the target
/// key, `$2` its cluster, `$3` its namespace.
fn linked_target_sql() -> String {
    linked_target_sql_of("$1", "$2", "$3")
}

/// [`linked_target_sql`] with the target key, cluster and namespace as the SQL
/// expressions `key`, `cluster` and `namespace`.
pub(super) fn linked_target_sql_of(key: &str, cluster: &str, namespace: &str) -> String {
    format!(
        "(target = {key} OR (kind = '{HELM_RELEASE_KIND}' AND cluster = {cluster} \
         AND namespace = {namespace} AND name IN (SELECT helm_release FROM deploys \
                      WHERE target = {key} AND helm_release IS NOT NULL)))"
    )
}

/// The statuses `last_healthy_before` accepts, as an SQL list.
fn healthy_statuses_sql() -> String {
    [status::DEPLOYED, status::SUPERSEDED, status::SUCCEEDED]
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl<D: Dialect> SqlStore<D>
where
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
{
    /// `prefix` and the query of [`DeployStore::list_deploys`]: newest first by start,
    /// through deploys_started (started_at, id), or the target's or namespace's index.
    fn list_deploys_sql(prefix: &str, query: &DeployQuery) -> QueryBuilder<D> {
        let mut q = QueryBuilder::new(format!(
            "{prefix}SELECT {DEPLOY_COLUMNS} FROM deploys WHERE TRUE"
        ));
        if let Some(target) = &query.target {
            q.push(" AND target = ").push_arg(target.clone());
        }
        if let Some(namespace) = &query.namespace {
            q.push(" AND namespace = ").push_arg(namespace.clone());
        }
        if let Some(name) = &query.name {
            q.push(" AND name = ").push_arg(name.clone());
        }
        if let Some(source) = query.source {
            q.push(" AND source = ").push_arg(source.as_str());
        }
        if let Some(environment) = &query.environment {
            q.push(" AND environment = ").push_arg(environment.clone());
        }
        if let Some(since) = query.since {
            q.push(" AND started_at >= ").push_arg(Ts(since));
        }
        if let Some(until) = query.until {
            q.push(" AND started_at < ").push_arg(Ts(until));
        }
        if let Some(after) = query.after {
            q.push(" AND (started_at, id) < (")
                .push_arg(Ts(after.started_at))
                .push(", ")
                .push_arg(after.id)
                .push(")");
        }
        q.push(" ORDER BY started_at DESC, id DESC LIMIT ")
            .push(query.limit);
        q
    }

    pub(super) fn deploy_row(row: &D::Row) -> Result<StoredDeploy, StoreError> {
        let source: String = row.col("source")?;
        let source = DeploySource::parse(&source)
            .ok_or_else(|| StoreError::Corrupt(format!("deploy source {source:?}")))?;
        let deploy = Deploy {
            target: TargetRef {
                cluster: row.col("cluster")?,
                namespace: row.col("namespace")?,
                kind: row.col("kind")?,
                name: row.col("name")?,
            },
            source,
            revision: row.col("revision")?,
            status: row.col("status")?,
            environment: row.col("environment")?,
            region: row.col("region")?,
            version: row.col("version")?,
            images: row.col::<Json<Vec<String>>>("images")?.0,
            commit_sha: row.col("commit_sha")?,
            change_cause: row.col("change_cause")?,
            description: row.col("description")?,
            helm_release: row.col("helm_release")?,
            chart: row.col("chart")?,
            chart_version: row.col("chart_version")?,
            app_version: row.col("app_version")?,
            pod_template_hash: row.col("pod_template_hash")?,
            link: row.col("link")?,
            actor: row.col("actor")?,
            started_at: row.col::<Ts>("started_at")?.0,
            finished_at: row.col::<Option<Ts>>("finished_at")?.map(|t| t.0),
            details: row.col::<Json<serde_json::Value>>("details")?.0,
        };
        Ok(StoredDeploy {
            id: row.col("id")?,
            target_key: row.col("target")?,
            deploy,
            first_seen_at: row.col::<Ts>("first_seen_at")?.0,
            updated_at: row.col::<Ts>("updated_at")?.0,
        })
    }

    async fn try_record_deploys(
        &self,
        deploys: &[Deploy],
        now: DateTime<Utc>,
    ) -> Result<Vec<DeployWrite>, StoreError> {
        let mut tx = D::begin_write(&self.pool).await?;
        let select = format!(
            "SELECT {DEPLOY_COLUMNS} FROM deploys \
             WHERE target = $1 AND source = $2 AND revision = $3{}",
            Self::for_update()
        );
        let mut writes = Vec::with_capacity(deploys.len());
        for deploy in deploys {
            let key = deploy.target.key();
            // Read-merge-write under a row lock (or the write lock); an insert that finds
            // the row after all (a concurrent transaction inserted it first) goes round
            // again to merge it.
            let write = loop {
                let existing = sqlx::query(sqlx::AssertSqlSafe(select.as_str()))
                    .arg(&key)
                    .arg(deploy.source.as_str())
                    .arg(&deploy.revision)
                    .fetch_optional(&mut *tx)
                    .await?;
                if let Some(row) = existing {
                    let stored = Self::deploy_row(&row)?;
                    let mut merged = stored.deploy.clone();
                    let changed = merged.merge(deploy);
                    if changed {
                        sqlx::query(
                            "UPDATE deploys SET status = $2, environment = $3, region = $4,
                                 version = $5, images = $6, commit_sha = $7, change_cause = $8,
                                 description = $9, helm_release = $10, chart = $11,
                                 chart_version = $12, app_version = $13, pod_template_hash = $14,
                                 link = $15, actor = $16, finished_at = $17, details = $18,
                                 updated_at = $19
                             WHERE id = $1",
                        )
                        .arg(stored.id)
                        .arg(&merged.status)
                        .arg(&merged.environment)
                        .arg(&merged.region)
                        .arg(&merged.version)
                        .arg(Json(&serde_json::to_value(&merged.images)?))
                        .arg(&merged.commit_sha)
                        .arg(&merged.change_cause)
                        .arg(&merged.description)
                        .arg(&merged.helm_release)
                        .arg(&merged.chart)
                        .arg(&merged.chart_version)
                        .arg(&merged.app_version)
                        .arg(&merged.pod_template_hash)
                        .arg(&merged.link)
                        .arg(&merged.actor)
                        .arg(merged.finished_at.map(Ts))
                        .arg(Json(&merged.details))
                        .arg(Ts(now))
                        .execute(&mut *tx)
                        .await?;
                    }
                    break DeployWrite {
                        id: stored.id,
                        created: false,
                        changed,
                    };
                }
                let inserted = sqlx::query(
                    "INSERT INTO deploys (target, cluster, namespace, kind, name, source,
                         revision, status, environment, region, version, images, commit_sha,
                         change_cause, description, helm_release, chart, chart_version,
                         app_version, pod_template_hash, link, actor, started_at, finished_at,
                         details, first_seen_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,
                             $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $26)
                     ON CONFLICT (target, source, revision) DO NOTHING
                     RETURNING id",
                )
                .arg(&key)
                .arg(&deploy.target.cluster)
                .arg(&deploy.target.namespace)
                .arg(&deploy.target.kind)
                .arg(&deploy.target.name)
                .arg(deploy.source.as_str())
                .arg(&deploy.revision)
                .arg(&deploy.status)
                .arg(&deploy.environment)
                .arg(&deploy.region)
                .arg(&deploy.version)
                .arg(Json(&serde_json::to_value(&deploy.images)?))
                .arg(&deploy.commit_sha)
                .arg(&deploy.change_cause)
                .arg(&deploy.description)
                .arg(&deploy.helm_release)
                .arg(&deploy.chart)
                .arg(&deploy.chart_version)
                .arg(&deploy.app_version)
                .arg(&deploy.pod_template_hash)
                .arg(&deploy.link)
                .arg(&deploy.actor)
                .arg(Ts(deploy.started_at))
                .arg(deploy.finished_at.map(Ts))
                .arg(Json(&deploy.details))
                .arg(Ts(now))
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(row) = inserted {
                    break DeployWrite {
                        id: row.col("id")?,
                        created: true,
                        changed: true,
                    };
                }
            };
            writes.push(write);
        }
        tx.commit().await?;
        Ok(writes)
    }
}

#[async_trait]
impl<D: Dialect> DeployStore for SqlStore<D>
where
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
{
    #[instrument(skip_all, fields(deploys = deploys.len()))]
    async fn record_deploys(
        &self,
        deploys: &[Deploy],
        now: DateTime<Utc>,
    ) -> Result<Vec<DeployWrite>, StoreError> {
        self.retrying(|| self.try_record_deploys(deploys, now))
            .await
    }

    #[instrument(level = "debug", skip_all)]
    async fn list_deploys(&self, query: &DeployQuery) -> Result<Vec<StoredDeploy>, StoreError> {
        let rows = Self::list_deploys_sql("", query)
            .build()
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Self::deploy_row).collect()
    }

    #[instrument(level = "debug", skip_all, fields(target = target.key()))]
    async fn target_history(
        &self,
        target: &TargetRef,
        after: Option<DeployCursor>,
        limit: u32,
    ) -> Result<Vec<StoredDeploy>, StoreError> {
        let cursor = if after.is_some() {
            "AND (started_at, id) < ($4, $5)"
        } else {
            ""
        };
        let sql = format!(
            "SELECT {DEPLOY_COLUMNS} FROM deploys WHERE {} {cursor} \
             ORDER BY started_at DESC, id DESC LIMIT {limit}",
            linked_target_sql()
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .arg(target.key())
            .arg(&target.cluster)
            .arg(&target.namespace);
        if let Some(after) = after {
            q = q.arg(Ts(after.started_at)).arg(after.id);
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter().map(Self::deploy_row).collect()
    }

    #[instrument(level = "debug", skip_all, fields(target = target.key()))]
    async fn deploys_between(
        &self,
        target: &TargetRef,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<StoredDeploy>, StoreError> {
        let sql = format!(
            "SELECT {DEPLOY_COLUMNS} FROM deploys WHERE {} \
             AND started_at >= $4 AND started_at < $5 ORDER BY started_at DESC, id DESC",
            linked_target_sql()
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .arg(target.key())
            .arg(&target.cluster)
            .arg(&target.namespace)
            .arg(Ts(from))
            .arg(Ts(to))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Self::deploy_row).collect()
    }

    #[instrument(level = "debug", skip_all, fields(target = deploy.target_key, deploy = deploy.id))]
    async fn last_healthy_before(
        &self,
        deploy: &StoredDeploy,
    ) -> Result<Option<StoredDeploy>, StoreError> {
        let sql = format!(
            "SELECT {DEPLOY_COLUMNS} FROM deploys \
             WHERE target = $1 AND source = $2 AND (started_at, id) < ($3, $4) \
               AND status IN ({}) \
             ORDER BY started_at DESC, id DESC LIMIT 1",
            healthy_statuses_sql()
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .arg(&deploy.target_key)
            .arg(deploy.deploy.source.as_str())
            .arg(Ts(deploy.deploy.started_at))
            .arg(deploy.id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(Self::deploy_row).transpose()
    }
}

impl SqlStore<Postgres> {
    /// The plan of [`DeployStore::list_deploys`]' query, as
    /// [`SqlStore::explain_list_alerts`].
    pub async fn explain_list_deploys(
        &self,
        query: &DeployQuery,
    ) -> Result<serde_json::Value, StoreError> {
        self.explain(Self::list_deploys_sql(EXPLAIN, query)).await
    }
}
