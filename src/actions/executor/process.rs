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

/// The most of a webhook's answer kept: its excerpt is all that is recorded.
const MAX_POSTED_ANSWER: usize = 64 * 1024;

/// Reads at most `max` bytes of `response`'s body, so that a broken or hostile peer
/// cannot fill memory with its answer: `Err` with the first `max` bytes when there is
/// more. A body cut short by the connection is what arrived.
pub(crate) async fn read_capped(
    mut response: reqwest::Response,
    max: usize,
) -> Result<String, String> {
    let mut body: Vec<u8> = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        if body.len() + chunk.len() > max {
            let room = max - body.len();
            body.extend_from_slice(&chunk[..room]);
            return Err(String::from_utf8_lossy(&body).into_owned());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
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
    // Only an excerpt is kept: a longer answer is cut, not refused.
    let body = read_capped(response, MAX_POSTED_ANSWER)
        .await
        .unwrap_or_else(|cut| cut);
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

#[cfg(test)]
mod tests {
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, ResponseTemplate};

    use super::read_capped;

    async fn answering(body: Vec<u8>) -> reqwest::Response {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(200).set_body_bytes(body))
            .mount(&server)
            .await;
        reqwest::get(server.uri()).await.unwrap()
    }

    #[tokio::test]
    async fn an_answer_is_read_up_to_its_cap_and_no_further() {
        let small = answering(b"{\"ok\":true}".to_vec()).await;
        assert_eq!(read_capped(small, 1024).await.unwrap(), "{\"ok\":true}");
        let exact = answering(vec![b'a'; 1024]).await;
        assert_eq!(read_capped(exact, 1024).await.unwrap().len(), 1024);
        // A peer that answers 3 MiB: the first MiB is kept, the rest never read.
        let flood = answering(vec![b'x'; 3 * 1024 * 1024]).await;
        let cut = read_capped(flood, 1024 * 1024).await.unwrap_err();
        assert_eq!(cut.len(), 1024 * 1024);
    }
}
