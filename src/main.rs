//! The `rollwarden` command: serve, migrate, check-config, replay, export, and `ctl`,
//! the operator's client of a running rollwarden.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use rollwarden::app::App;
use rollwarden::config::{Config, LogFormat};
use rollwarden::{replay, store, telemetry};

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// `0.1.0 (commit 1a2b3c4d5e6f, built 2026-12-03)`: build.rs supplies the rest.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("ROLLWARDEN_COMMIT"),
    ", built ",
    env!("ROLLWARDEN_BUILD_DATE"),
    ")"
);

#[derive(Parser)]
#[command(
    version = VERSION,
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
    /// Validate the configuration with every rule `serve` applies and print the
    /// effective settings (secrets masked) and the decision policy as a table.
    CheckConfig {
        /// Validate without the secrets: token files and variables may be absent (their
        /// presence is checked by `serve`), as on a laptop or in CI.
        #[arg(long)]
        lint: bool,
    },
    /// Shadow mode: run a recorded stream (NDJSON, as `export` writes) through the
    /// policy and print, decision by decision, what rollwarden would have done.
    Replay {
        /// The recorded stream; `-` reads standard input.
        file: PathBuf,
        /// A policy to use instead of the config's: a file (TOML, the keys of
        /// `[policy]`) or a built-in policy's name (`runbooks-2`, `runbooks-1`).
        #[arg(long)]
        policy: Option<String>,
        /// Replay the stream under this policy too (a file or a built-in name, e.g.
        /// `runbooks-1`) and show both policies' decisions side by side.
        #[arg(long)]
        compare: Option<String>,
        /// Print a table or one JSON decision per line.
        #[arg(long, value_enum, default_value = "table")]
        format: ReplayFormat,
    },
    /// Write what the store holds (Alertmanager receipts, deploys, posted signals) as a
    /// replay stream.
    Export {
        /// From this instant (RFC 3339); default: 7 days ago.
        #[arg(long)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// Until this instant (RFC 3339); default: now.
        #[arg(long)]
        until: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Talk to a running rollwarden over its API: decisions, approvals, freezes, the
    /// live event stream. Server from --server or $ROLLWARDEN_SERVER, token from
    /// $ROLLWARDEN_TOKEN or --token-file.
    Ctl(rollwarden::ctl::CtlArgs),
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ReplayFormat {
    Table,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A client of a server somewhere: no configuration of its own.
    if let Command::Ctl(args) = cli.command {
        return ctl(args);
    }
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("rollwarden: invalid configuration: {err}");
            return ExitCode::from(2);
        }
    };
    if let Command::CheckConfig { lint } = cli.command {
        let checked = config.lint().and_then(|()| {
            if lint {
                Ok(())
            } else {
                config.resolve_tokens().map(drop)?;
                config.notify.templates().map(drop)
            }
        });
        if let Err(err) = checked {
            eprintln!("rollwarden: invalid configuration: {err}");
            return ExitCode::from(2);
        }
        print!("{}", config.render());
        println!(
            "\n# The effective decision policy\n{}",
            config.policy.table()
        );
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
            let _writer = store::lock::lock_sqlite_writer(config.database.url.expose())?;
            let store = store::connect(config.database.url.expose(), 1)
                .await
                .with_context(|| format!("opening {:?}", config.database.url))?;
            store.migrate().await?;
            store.close().await;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Replay {
            file,
            policy,
            compare,
            format,
        } => {
            let policy = match policy {
                Some(spec) => load_policy(&spec)?,
                None => config.policy.clone(),
            };
            let records = if file.as_os_str() == "-" {
                replay::read_records(std::io::stdin().lock())?
            } else {
                let f = std::fs::File::open(&file)
                    .with_context(|| format!("opening {}", file.display()))?;
                replay::read_records(std::io::BufReader::new(f))?
            };
            let tick = chrono::Duration::seconds(config.engine.tick_secs as i64);
            if let Some(spec) = compare {
                let old = load_policy(&spec)?;
                let names = (old.version.clone(), policy.version.clone());
                let old_rows =
                    replay::replay(records.clone(), old, config.classifier()?, tick).await?;
                let rows = replay::replay(records, policy, config.classifier()?, tick).await?;
                let compared = replay::compare(&old_rows, &rows);
                match format {
                    ReplayFormat::Table => {
                        print!("{}", replay::compare_table(&compared, &names.0, &names.1));
                    }
                    ReplayFormat::Json => {
                        for row in &compared {
                            println!("{}", serde_json::to_string(row)?);
                        }
                    }
                }
                return Ok(());
            }
            let rows = replay::replay(records, policy, config.classifier()?, tick).await?;
            match format {
                ReplayFormat::Table => print!("{}", replay::table(&rows)),
                ReplayFormat::Json => {
                    for row in &rows {
                        println!("{}", serde_json::to_string(row)?);
                    }
                }
            }
            Ok(())
        }
        Command::Export { since, until } => {
            let until = until.unwrap_or_else(chrono::Utc::now);
            let since = since.unwrap_or(until - chrono::Duration::days(7));
            let store = store::connect(config.database.url.expose(), 2)
                .await
                .with_context(|| format!("opening {:?}", config.database.url))?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let n = replay::export(store.as_ref(), since, until, &mut out).await?;
            std::io::Write::flush(&mut out)?;
            store.close().await;
            tracing::info!(records = n, "exported");
            Ok(())
        }
        Command::CheckConfig { .. } | Command::Ctl(_) => {
            unreachable!("handled before the runtime starts")
        }
    }
}

/// `rollwarden ctl`: 0 on success; 1 with the server's (or the network's) words.
fn ctl(args: rollwarden::ctl::CtlArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("rollwarden ctl: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    match runtime.block_on(rollwarden::ctl::run(args, &mut out)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("rollwarden ctl: {err}");
            ExitCode::FAILURE
        }
    }
}

/// A built-in policy by name, or a policy file (TOML, the keys of `[policy]`).
fn load_policy(spec: &str) -> anyhow::Result<rollwarden::domain::Policy> {
    let path = std::path::Path::new(spec);
    if !path.exists()
        && let Some(policy) = rollwarden::domain::Policy::builtin(spec)
    {
        return Ok(policy);
    }
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "reading {spec} (neither a file nor a built-in policy: {})",
            rollwarden::domain::Policy::BUILTIN.join(", ")
        )
    })?;
    let policy: rollwarden::domain::Policy =
        toml::from_str(&text).with_context(|| format!("{spec}: not a policy"))?;
    policy
        .validate()
        .with_context(|| format!("{spec}: invalid policy"))?;
    Ok(policy)
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
