//! The `rollwarden` command: serve, migrate, check-config.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use rollwarden::app::App;
use rollwarden::config::{Config, LogFormat};
use rollwarden::{store, telemetry};

#[derive(Parser)]
#[command(
    version,
    about = "Decides, with evidence, whether a bad deploy must be rolled back"
)]
struct Cli {
    /// Configuration file (TOML). Without it, built-in defaults and ROLLWARDEN__* variables.
    #[arg(long, short, global = true, env = "ROLLWARDEN_CONFIG")]
    config: Option<PathBuf>,
    /// Log format; overrides log.format.
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply migrations and serve the API until SIGTERM or SIGINT.
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Validate the configuration and print the effective settings, secrets masked.
    CheckConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("rollwarden: invalid configuration: {err}");
            return ExitCode::from(2);
        }
    };
    if let Command::CheckConfig = cli.command {
        if let Err(err) = config.resolve_tokens() {
            eprintln!("rollwarden: invalid configuration: {err}");
            return ExitCode::from(2);
        }
        print!("{}", config.render());
        return ExitCode::SUCCESS;
    }
    telemetry::init_logging(
        &config.log.level,
        cli.log_format.unwrap_or(config.log.format),
    );
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("rollwarden: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            eprintln!("rollwarden: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve => {
            let app = App::build(config).await?;
            let shutdown = CancellationToken::new();
            tokio::spawn(cancel_on_signal(shutdown.clone()));
            app.run(shutdown).await
        }
        Command::Migrate => {
            let store = store::connect(config.database.url.expose(), 1)
                .await
                .with_context(|| format!("opening {:?}", config.database.url))?;
            store.migrate().await?;
            store.close().await;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::CheckConfig => unreachable!("handled before the runtime starts"),
    }
}

async fn cancel_on_signal(shutdown: CancellationToken) {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => tracing::info!("SIGINT received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
    shutdown.cancel();
}
