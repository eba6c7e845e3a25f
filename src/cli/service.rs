//! The service's commands: they read the configuration and work on the database.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Subcommand;

use super::{load, Cli, Command};
use crate::app::{redact, Application};
use crate::auth::{self, Role};
use crate::clock::{Clock, SharedClock, SystemClock};
use crate::config::Config;
use crate::store::Db;

#[derive(Debug, Subcommand)]
pub enum ResponderCommand {
    /// Add a responder and print their API token (shown this once).
    Add {
        name: String,
        /// A supervisor may act on any ticket and assign open ones.
        #[arg(long)]
        supervisor: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum IngestKeyCommand {
    /// Add an ingest key and print it (shown this once).
    Add { name: String },
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    let mut config = Config::load(cli.config.as_deref())?;
    if cli.rules.is_some() {
        config.rules = cli.rules.clone();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve => serve(config).await,
            Command::Migrate => {
                let db = open(&config).await?;
                let count = db.migrate().await?;
                println!("{}: {count} migrations applied", redact(&config.database_url()));
                Ok(ExitCode::SUCCESS)
            }
            Command::Responder(ResponderCommand::Add { name, supervisor }) => {
                let db = open(&config).await?;
                db.migrate().await?;
                let role = if supervisor { Role::Supervisor } else { Role::Responder };
                let (responder, token) = auth::add_responder(&db, &name, role, SystemClock.now_ms()).await?;
                eprintln!(
                    "{} {:?} added with id {}; their API token:",
                    role.id(),
                    responder.name,
                    responder.id.0
                );
                println!("{token}");
                Ok(ExitCode::SUCCESS)
            }
            Command::IngestKey(IngestKeyCommand::Add { name }) => {
                let db = open(&config).await?;
                db.migrate().await?;
                let key = auth::add_ingest_key(&db, &name, SystemClock.now_ms()).await?;
                eprintln!("ingest key {name:?} added:");
                println!("{key}");
                Ok(ExitCode::SUCCESS)
            }
            _ => unreachable!("only service commands come here"),
        }
    })
}

async fn open(config: &Config) -> Result<Db> {
    let url = config.database_url();
    Db::connect(&url)
        .await
        .with_context(|| format!("failed to open the database {}", redact(&url)))
}

async fn serve(config: Config) -> Result<ExitCode> {
    let classifier =
        load(config.rules.as_deref()).map_err(|e| anyhow::anyhow!("{e}\nthe rules do not load: run `suqiu check`"))?;
    let clock: SharedClock = Arc::new(SystemClock);
    let app = Application::build(&config, Arc::new(classifier), clock).await?;
    let addr = app.local_addr();
    tracing::info!(%addr, database = %redact(&config.database_url()), "suqiu is serving");
    eprintln!(
        "suqiu: listening on http://{addr} (database {})",
        redact(&config.database_url())
    );
    app.run(shutdown_signal()).await?;
    eprintln!("suqiu: stopped");
    Ok(ExitCode::SUCCESS)
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
