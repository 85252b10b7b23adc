//! Child processes and HTTP posts with bounded output, shared by the executors.

use super::*;

/// How a child process ended.
#[derive(Debug)]
pub(crate) enum Ran {
    Exited {
        code: i32,
        stdout: String,
        stderr: String,
    },
    /// Killed at the timeout: what it did is unknown.
    TimedOut(Duration),
    /// Could not be started (not found, not executable) or was killed by a signal.
    Broken(String),
}

impl Ran {
    pub(super) fn succeeded(&self) -> bool {
        matches!(self, Ran::Exited { code: 0, .. })
    }

    /// What the action record keeps of a run of `argv`: its exit code and output when
    /// it exited.
    pub(super) fn record(&self, argv: &[String]) -> Value {
        match self {
            Ran::Exited {
                code,
                stdout,
                stderr,
            } => json!({ "argv": argv, "exit_code": code, "stdout": stdout, "stderr": stderr }),
            Ran::TimedOut(_) | Ran::Broken(_) => json!({ "argv": argv }),
        }
    }

    pub(super) fn describe(&self) -> String {
        match self {
            Ran::Exited { code, stderr, .. } => format!("exited {code}: {}", stderr.trim()),
            Ran::TimedOut(after) => format!("killed after its {} s timeout", after.as_secs()),
            Ran::Broken(why) => why.clone(),
        }
    }
}

/// Runs `argv` (no shell, no stdin) with a timeout, keeping the first
/// [`OUTPUT_LIMIT`] bytes of stdout and stderr.
pub(crate) async fn run(argv: &[String], timeout: Duration) -> Ran {
    let Some((program, args)) = argv.split_first() else {
        return Ran::Broken("empty argv".into());
    };
    let mut child = match tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(child) => child,
        Err(err) => return Ran::Broken(format!("cannot run {program}: {err}")),
    };
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let waited = tokio::time::timeout(timeout, async {
        tokio::join!(read_prefix(stdout), read_prefix(stderr), child.wait())
    })
    .await;
    match waited {
        Err(_) => {
            let _ = child.kill().await;
            Ran::TimedOut(timeout)
        }
        Ok((_, _, Err(err))) => Ran::Broken(format!("waiting for {program}: {err}")),
        Ok((stdout, stderr, Ok(status))) => match status.code() {
            Some(code) => Ran::Exited {
                code,
                stdout,
                stderr,
            },
            None => Ran::Broken(format!("{program} was killed by a signal")),
        },
    }
}

/// Reads a pipe to its end (so the child never blocks on a full pipe), keeping the
/// first [`OUTPUT_LIMIT`] bytes.
async fn read_prefix(pipe: Option<impl tokio::io::AsyncRead + Unpin>) -> String {
    let mut kept = Vec::new();
    if let Some(mut pipe) = pipe {
        let mut chunk = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut chunk).await {
            if n == 0 {
                break;
            }
            let room = OUTPUT_LIMIT.saturating_sub(kept.len());
            kept.extend_from_slice(&chunk[..n.min(room)]);
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}

/// How an outbound POST went.
pub(crate) enum Posted {
    Ok {
        status: u16,
        body: String,
    },
    /// Network errors, timeouts, 429 and 5xx: retried with backoff.
    Transient(String),
    /// A 429 (or Slack's `ratelimited`) with `Retry-After`: retried no sooner.
    Throttled {
        error: String,
        after: std::time::Duration,
    },
    /// Other 4xx (and redirects): repeating would not help.
    Rejected(String),
}

/// The longest `Retry-After` honoured: a receiver cannot park a message for longer.
const MAX_RETRY_AFTER_SECS: u64 = 3600;

/// A response's `Retry-After` in seconds (the HTTP-date form is not honoured), capped
/// at an hour.
pub(crate) fn retry_after(response: &reqwest::Response) -> Option<std::time::Duration> {
    let secs = response
        .headers()
        .get("retry-after")?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(std::time::Duration::from_secs(
        secs.min(MAX_RETRY_AFTER_SECS),
    ))
}

/// Sends `request`, keeping a bounded excerpt of the answer.
pub(crate) async fn post(request: reqwest::RequestBuilder) -> Posted {
    let response = match request.send().await {
        Ok(response) => response,
        // Without the URL: Slack webhook URLs are secrets.
        Err(err) => return Posted::Transient(format!("request failed: {}", err.without_url())),
    };
    let status = response.status();
    let after = retry_after(&response);
    let body = response.text().await.unwrap_or_default();
    let excerpt: String = body.chars().take(512).collect();
    if let (429, Some(after)) = (status.as_u16(), after) {
        return Posted::Throttled {
            error: format!(
                "answered {status} (retry after {} s): {excerpt}",
                after.as_secs()
            ),
            after,
        };
    }
    if status.is_success() {
        Posted::Ok {
            status: status.as_u16(),
            body: excerpt,
        }
    } else if status.is_server_error() || status.as_u16() == 429 {
        Posted::Transient(format!("answered {status}: {excerpt}"))
    } else {
        Posted::Rejected(format!("answered {status}: {excerpt}"))
    }
}
