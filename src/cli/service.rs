//! The service's commands: they read the configuration and work on the database.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

use anyhow::{Context, Result};
use clap::Subcommand;

use super::{loaded, Cli, Command};
use crate::app::{connect, open_database, redact, Application};
use crate::auth::{self, Role};
use crate::clock::{Clock, SharedClock, SystemClock};
use crate::config::Config;
use crate::replay;
use crate::search::{self, IndexerSettings, SearchIndex};
use crate::tickets::intake::{Intake, IntakeSettings};

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
pub enum UserCommand {
    /// Add a team member who logs in to the dashboard; the password is read from the terminal (asked twice)
    /// or from the first line of standard input.
    Add {
        name: String,
        /// responder, supervisor or admin (an administrator manages accounts; create the first one this way).
        #[arg(long, default_value = "responder", value_parser = parse_role)]
        role: Role,
    },
    /// Set a team member's dashboard password, read as for `add`.
    Password { name: String },
}

fn parse_role(text: &str) -> Result<Role, String> {
    Role::parse(text).ok_or_else(|| format!("{text:?} is not a role: responder, supervisor or admin"))
}

/// A new password: asked twice without echo on a terminal, else the first line of standard input.
fn read_password() -> Result<String> {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("password: ").context("failed to read the password")?;
        let again = rpassword::prompt_password("again: ").context("failed to read the password")?;
        anyhow::ensure!(first == again, "the two passwords differ");
        return Ok(first);
    }
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("failed to read the password from standard input")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
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
                let db = connect(&config).await?;
                let count = db.migrate().await?;
                println!("{}: {count} migrations applied", redact(&config.database_url()));
                Ok(ExitCode::SUCCESS)
            }
            Command::Replay { file } => replay(config, &file).await,
            Command::Responder(ResponderCommand::Add { name, supervisor }) => {
                let db = open_database(&config).await?;
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
            Command::User(UserCommand::Add { name, role }) => {
                let password = read_password()?;
                let db = open_database(&config).await?;
                let user = auth::login::add_user(&db, &name, role, &password, SystemClock.now_ms()).await?;
                eprintln!("{} {:?} added with id {}", role.id(), user.name, user.id.0);
                Ok(ExitCode::SUCCESS)
            }
            Command::User(UserCommand::Password { name }) => {
                let password = read_password()?;
                let db = open_database(&config).await?;
                anyhow::ensure!(
                    auth::login::set_password(&db, &name, &password).await?,
                    "no team member is called {name:?}"
                );
                eprintln!("password of {name:?} changed");
                Ok(ExitCode::SUCCESS)
            }
            Command::Reindex => reindex(&config).await,
            Command::IngestKey(IngestKeyCommand::Add { name }) => {
                let db = open_database(&config).await?;
                let key = auth::add_ingest_key(&db, &name, SystemClock.now_ms()).await?;
                eprintln!("ingest key {name:?} added:");
                println!("{key}");
                Ok(ExitCode::SUCCESS)
            }
            _ => unreachable!("only service commands come here"),
        }
    })
}

/// `suqiu reindex`: empties the search index and indexes every ticket message in the database again.
async fn reindex(config: &Config) -> Result<ExitCode> {
    let db = open_database(config).await?;
    let dir = config.search_dir();
    let lexicon = loaded(config.rules.as_deref())?.lexicon();
    let rebuilt = async {
        let index = SearchIndex::from_config(config, lexicon)?;
        search::rebuild(&index, &db, IndexerSettings::rebuild()).await
    }
    .await
    .with_context(|| format!("failed to rebuild the search index in {}", dir.display()));
    db.close().await;
    let rebuilt = rebuilt?;
    println!(
        "{}: {} messages indexed in {:.1} s",
        dir.display(),
        rebuilt.messages,
        rebuilt.seconds
    );
    Ok(ExitCode::SUCCESS)
}

async fn replay(config: Config, file: &Path) -> Result<ExitCode> {
    let input = File::open(file).with_context(|| format!("failed to open {}", file.display()))?;
    let size = input.metadata().map(|m| m.len()).unwrap_or(0);
    let classifier = loaded(config.rules.as_deref())?;
    let db = open_database(&config).await?;
    let clock: SharedClock = Arc::new(SystemClock);
    // The service's scheduler, when it next runs, fires the deadlines of the tickets opened here.
    let settings = IntakeSettings::from_config(&config, Default::default());
    let (intake, writer) = Intake::start(db.clone(), Arc::new(classifier), clock, settings);
    let progress = ProgressBar::new(size).with_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {per_sec} eta {eta}")
            .expect("a valid progress template"),
    );
    let name = file.display().to_string();
    let started = Instant::now();
    let stats = replay::replay(&intake, BufReader::new(input), &progress, |line, error| {
        progress.suspend(|| eprintln!("{name}:{line}: {error}"));
    })
    .await
    .with_context(|| format!("failed to read {name}"))?;
    progress.finish_and_clear();
    drop(intake);
    let _ = writer.await;
    db.close().await;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{name}: {} lines in {seconds:.1} s ({:.0}/s): {} tickets opened, {} attached, {} chatter, {} already stored, {} errors",
        stats.lines,
        stats.lines as f64 / seconds.max(1e-9),
        stats.opened,
        stats.attached,
        stats.chatter,
        stats.duplicates,
        stats.errors
    );
    Ok(if stats.errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn serve(config: Config) -> Result<ExitCode> {
    let classifier = loaded(config.rules.as_deref())?;
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
