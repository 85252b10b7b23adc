//! The benchmarks' way to run the rollwarden binary under test: a free port, start it
//! with a config and wait for `/healthz`, stop it with SIGTERM. Each example includes it
//! with `#[path = "support/server.rs"] mod server;`.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

/// A port on 127.0.0.1 that nothing listens on now.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Starts `bin --config CONFIG serve` and waits up to 30 s for `{base}/healthz`.
pub async fn start(
    bin: impl AsRef<OsStr>,
    config: &Path,
    http: &reqwest::Client,
    base: &str,
) -> anyhow::Result<Child> {
    let child = Command::new(bin)
        .arg("--config")
        .arg(config)
        .arg("serve")
        .stdout(Stdio::null())
        .spawn()
        .context("starting rollwarden")?;
    for _ in 0..300 {
        if http.get(format!("{base}/healthz")).send().await.is_ok() {
            return Ok(child);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("rollwarden did not come up on {base}");
}

/// Stops it as an orchestrator would (SIGTERM) and waits for it to exit.
pub fn stop(child: &mut Child) -> anyhow::Result<()> {
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()?;
    child.wait()?;
    Ok(())
}
