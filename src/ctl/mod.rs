//! `rollwarden ctl`: the operator's command line, over a running rollwarden's REST API.
//!
//! It reads the server from `--server` / `ROLLWARDEN_SERVER` and the bearer token from
//! `ROLLWARDEN_TOKEN` or `--token-file` (never from an argument, which `ps` shows). It
//! prints tables for people and, with `-o json`, the API's JSON for scripts; a refused
//! request exits non-zero with the server's error message.
//!
//! Everything it prints came from the network: control characters are escaped before
//! they reach a terminal, so a hostile alert label cannot move the cursor or retitle
//! the window.

mod render;

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

pub use render::clean;
use render::{
    actions_text, decision_text, decisions_table, event_line, freeze_text, pretty, targets_table,
};

/// The subcommands of `rollwarden ctl`.
#[derive(Debug, clap::Subcommand)]
pub enum CtlCommand {
    /// Recent decisions, newest first.
    Decisions {
        /// Only this target (`cluster/namespace/kind/name`).
        #[arg(long)]
        target: Option<String>,
        /// Only this verdict (ok, monitor, investigate, hold, rollback, freeze).
        #[arg(long)]
        verdict: Option<String>,
        /// How many (1 to 1000).
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// One decision: its reason, fired rules, holds, deploys, commands and actions.
    Decision { id: i64 },
    /// Approve the decision's actions awaiting approval.
    Approve {
        id: i64,
        /// Why (recorded on the audit trail).
        #[arg(short = 'm', long = "message")]
        message: String,
    },
    /// Reject the decision's actions awaiting approval: nothing is done.
    Reject {
        id: i64,
        /// Why (recorded on the audit trail).
        #[arg(short = 'm', long = "message")]
        message: String,
    },
    /// Declare a freeze: `*`, `cluster/namespace` or a target key.
    Freeze {
        scope: String,
        /// Why.
        #[arg(short = 'm', long = "message")]
        message: String,
        /// When it ends by itself (RFC 3339); default: until lifted.
        #[arg(long)]
        until: Option<DateTime<Utc>>,
    },
    /// Lift a freeze.
    Unfreeze { id: i64 },
    /// Every target decided about, with its standing decision.
    Targets,
    /// Follow what rollwarden and its operators do, live, until interrupted.
    Watch {
        /// Start after this event id (`0`: replay the whole trail first).
        #[arg(long)]
        after: Option<i64>,
    },
}

/// How `ctl` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
}

/// `rollwarden ctl`'s arguments.
#[derive(Debug, clap::Args)]
pub struct CtlArgs {
    /// The rollwarden to talk to.
    #[arg(
        long,
        env = "ROLLWARDEN_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    pub server: String,
    /// A file holding the bearer token (instead of $ROLLWARDEN_TOKEN).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Tables for people, or the API's JSON.
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: Output,
    #[command(subcommand)]
    pub command: CtlCommand,
}

/// What went wrong, in words for the operator.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot reach {server}: {source}")]
    Unreachable {
        server: String,
        source: reqwest::Error,
    },
    #[error("{status}: {message}")]
    Refused { status: u16, message: String },
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
}

/// Runs one subcommand, writing what it prints to `out`.
pub async fn run(args: CtlArgs, out: &mut dyn std::io::Write) -> Result<(), CtlError> {
    let token = match &args.token_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| CtlError::Usage(format!("reading {}: {e}", path.display())))?
                .trim()
                .to_string(),
        ),
        None => std::env::var("ROLLWARDEN_TOKEN")
            .ok()
            .filter(|t| !t.is_empty()),
    };
    let client = Client::new(&args.server, token)?;
    let json_out = args.output == Output::Json;
    let approving = matches!(args.command, CtlCommand::Approve { .. });
    // The API's JSON for scripts, or `render`'s text for people.
    let show = |out: &mut dyn std::io::Write,
                value: &Value,
                render: &dyn Fn(&Value) -> Result<String, CtlError>| {
        let text = if json_out {
            pretty(value)
        } else {
            render(value)?
        };
        out.write_all(text.as_bytes())
            .map_err(|e| CtlError::Usage(format!("writing the output: {e}")))
    };
    match args.command {
        CtlCommand::Decisions {
            target,
            verdict,
            limit,
        } => {
            let mut query = vec![("limit", limit.to_string())];
            query.extend(target.map(|t| ("target", t)));
            query.extend(verdict.map(|v| ("verdict", v)));
            let page = client.get("/api/v1/decisions", &query).await?;
            show(out, &page, &|v| Ok(decisions_table(v)))
        }
        CtlCommand::Decision { id } => {
            let view = client.get(&format!("/api/v1/decisions/{id}"), &[]).await?;
            show(out, &view, &|v| decision_text(v))
        }
        CtlCommand::Approve { id, message } | CtlCommand::Reject { id, message } => {
            let verb = if approving { "approve" } else { "reject" };
            let answer = client
                .send(
                    reqwest::Method::POST,
                    &format!("/api/v1/decisions/{id}/{verb}"),
                    Some(json!({ "comment": message })),
                )
                .await?;
            show(out, &answer, &|v| {
                Ok(actions_text(&format!("decision {id}: {verb}d"), v))
            })
        }
        CtlCommand::Freeze {
            scope,
            message,
            until,
        } => {
            let mut body = json!({ "scope": scope, "reason": message });
            if let Some(until) = until {
                body["expires_at"] = json!(until.to_rfc3339());
            }
            let freeze = client
                .send(reqwest::Method::POST, "/api/v1/freezes", Some(body))
                .await?;
            show(out, &freeze, &|v| Ok(freeze_text("declared", v)))
        }
        CtlCommand::Unfreeze { id } => {
            let freeze = client
                .send(
                    reqwest::Method::DELETE,
                    &format!("/api/v1/freezes/{id}"),
                    None,
                )
                .await?;
            show(out, &freeze, &|v| Ok(freeze_text("lifted", v)))
        }
        CtlCommand::Targets => {
            let mut items = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let mut query = vec![("limit", "1000".to_string())];
                query.extend(after.take().map(|a| ("after", a)));
                let page = client.get("/api/v1/targets", &query).await?;
                items.extend(page["items"].as_array().cloned().unwrap_or_default());
                match page["next"].as_str() {
                    Some(next) => after = Some(next.to_string()),
                    None => break,
                }
            }
            let all = json!({ "items": items });
            show(out, &all, &|v| {
                Ok(targets_table(
                    v["items"].as_array().map_or(&[], Vec::as_slice),
                ))
            })
        }
        CtlCommand::Watch { after } => client.watch(after, json_out, out).await,
    }
}

/// The REST API, with the token.
struct Client {
    http: reqwest::Client,
    server: String,
    token: Option<String>,
}

impl Client {
    fn new(server: &str, token: Option<String>) -> Result<Self, CtlError> {
        let server = server.trim_end_matches('/').to_string();
        if !(server.starts_with("http://") || server.starts_with("https://")) {
            return Err(CtlError::Usage(format!(
                "--server must be an http:// or https:// URL, not {server:?}"
            )));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|source| CtlError::Unreachable {
                server: server.clone(),
                source,
            })?;
        Ok(Self {
            http,
            server,
            token,
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.server));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, CtlError> {
        let mut path = path.to_string();
        if !query.is_empty() {
            let mut encoded = form_urlencoded::Serializer::new(String::new());
            for (key, value) in query {
                encoded.append_pair(key, value);
            }
            path = format!("{path}?{}", encoded.finish());
        }
        let request = self
            .request(reqwest::Method::GET, &path)
            .timeout(Duration::from_secs(30));
        self.answer(request).await
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, CtlError> {
        let mut request = self.request(method, path).timeout(Duration::from_secs(30));
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.answer(request).await
    }

    async fn answer(&self, request: reqwest::RequestBuilder) -> Result<Value, CtlError> {
        let response = request
            .send()
            .await
            .map_err(|source| self.unreachable(source))?;
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .map_err(|e| CtlError::Protocol(format!("a {status} without JSON: {e}")))?;
        if status.is_success() {
            Ok(body)
        } else {
            Err(refusal(status.as_u16(), &body))
        }
    }

    fn unreachable(&self, source: reqwest::Error) -> CtlError {
        CtlError::Unreachable {
            server: self.server.clone(),
            source,
        }
    }

    /// Follows the event stream, reconnecting after the last id it printed.
    async fn watch(
        &self,
        mut after: Option<i64>,
        json_out: bool,
        out: &mut dyn std::io::Write,
    ) -> Result<(), CtlError> {
        let mut failures = 0u32;
        loop {
            let mut request = self
                .request(reqwest::Method::GET, "/api/v1/events")
                .header("accept", "text/event-stream");
            if let Some(id) = after {
                request = request.header("last-event-id", id.to_string());
            }
            let mut response = match request.send().await {
                Ok(r) if r.status().is_success() => r,
                Ok(r) => {
                    let status = r.status().as_u16();
                    let body = r.json::<Value>().await.unwrap_or(Value::Null);
                    return Err(refusal(status, &body));
                }
                Err(e) if failures < 5 => {
                    failures += 1;
                    eprintln!("rollwarden ctl: stream lost ({e}); reconnecting");
                    tokio::time::sleep(Duration::from_secs(u64::from(failures))).await;
                    continue;
                }
                Err(e) => return Err(self.unreachable(e)),
            };
            failures = 0;
            let mut buffer = String::new();
            loop {
                let chunk = match response.chunk().await {
                    Ok(Some(chunk)) => chunk,
                    // Ended (the server stopped): reconnect after what was printed.
                    Ok(None) | Err(_) => break,
                };
                buffer.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buffer.find("\n\n") {
                    let frame: String = buffer.drain(..end + 2).collect();
                    let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data:")) else {
                        continue;
                    };
                    let event: Value = serde_json::from_str(data.trim()).map_err(|e| {
                        CtlError::Protocol(format!("an event that is not JSON: {e}"))
                    })?;
                    after = event["id"].as_i64().or(after);
                    let line = if json_out {
                        format!("{event}\n")
                    } else {
                        event_line(&event)
                    };
                    out.write_all(line.as_bytes())
                        .and_then(|()| out.flush())
                        .map_err(|e| CtlError::Usage(format!("writing the output: {e}")))?;
                }
            }
            failures += 1;
            if failures > 5 {
                return Err(CtlError::Protocol("the event stream keeps ending".into()));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// The server's error, as it said it.
fn refusal(status: u16, body: &Value) -> CtlError {
    let error = &body["error"];
    let message = match (error["code"].as_str(), error["message"].as_str()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        _ => body.to_string(),
    };
    CtlError::Refused {
        status,
        message: clean(&message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_the_network_cannot_drive_the_terminal() {
        assert_eq!(
            clean("checkout\u{1b}]0;pwned\u{7}\u{1b}[2J\r\nnext"),
            "checkout\\u{1b}]0;pwned\\u{7}\\u{1b}[2J\\u{d}\\u{a}next"
        );
        assert_eq!(clean("M2 > 5 % – ok ✓"), "M2 > 5 % – ok ✓");
        let refused = refusal(
            409,
            &json!({"error": {"code": "conflict", "message": "nothing\u{1b}[31m awaits"}}),
        );
        assert_eq!(
            refused.to_string(),
            "409: conflict: nothing\\u{1b}[31m awaits"
        );
    }
}
