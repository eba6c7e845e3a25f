//! The command line: the service (`serve`, `migrate`, `responder`, `user`, `ingest-key`, `reindex`) and the
//! classifier's tools (`classify`, `eval`, `check`).

mod service;

use std::io::{self, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use crate::batch;
use crate::classify::cache::ModelCache;
use crate::classify::{Classifier, Explanation, RuleErrors, Sources};
use crate::eval;

#[derive(Debug, Parser)]
#[command(
    name = "suqiu",
    version,
    about = "Turns truck drivers' group-chat messages into answered appeals"
)]
pub struct Cli {
    /// A directory with `intents/` and/or `dictionaries/` that replace the built-in ones.
    #[arg(long, global = true, env = "SUQIU_RULES", value_name = "DIR")]
    pub rules: Option<PathBuf>,

    /// The configuration file (TOML); `SUQIU_…` environment variables override its keys.
    #[arg(long, global = true, env = "SUQIU_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service: HTTP API on the configured address, the database migrated first.
    Serve,
    /// Apply the database migrations and exit.
    Migrate,
    /// Import a JSONL chat export (one inbound message a line) through the intake.
    Replay { file: PathBuf },
    /// Manage the response team's accounts.
    #[command(subcommand)]
    Responder(service::ResponderCommand),
    /// Manage who logs in to the dashboard, and with which role.
    #[command(subcommand)]
    User(service::UserCommand),
    /// Manage the keys that bridges use to post messages.
    #[command(subcommand, name = "ingest-key")]
    IngestKey(service::IngestKeyCommand),
    /// Classify one message and explain the result, or a batch from standard input.
    Classify {
        /// The message; omit it with --stdin.
        #[arg(required_unless_present = "stdin", conflicts_with = "stdin")]
        text: Option<String>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
        /// Batch mode: one message a line (plain text or a JSON object with `text`), one JSON result a line.
        #[arg(long)]
        stdin: bool,
    },
    /// Measure the classifier on a labelled JSONL file, or on every *.jsonl file of a directory.
    Eval {
        file: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Exit with status 1 when macro-F1 is below this.
        #[arg(long, value_name = "F1")]
        min_macro_f1: Option<f64>,
        /// List the misclassified messages.
        #[arg(long)]
        misses: bool,
        /// Cross-validate: split the messages into this many parts and classify each part with a model
        /// that never learned from it.
        #[arg(long, value_name = "K", value_parser = clap::value_parser!(u16).range(2..))]
        folds: Option<u16>,
    },
    /// Validate the rules and dictionaries and run every example in the rule files.
    Check,
    /// Rebuild this instance's search index from the database (with the service stopped).
    Reindex,
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Check => return check(cli.rules.as_deref()),
        Command::Serve
        | Command::Reindex
        | Command::Migrate
        | Command::Replay { .. }
        | Command::Responder(_)
        | Command::User(_)
        | Command::IngestKey(_) => {
            return service::run(cli);
        }
        _ => {}
    }
    let classifier = loaded(cli.rules.as_deref())?;
    match cli.command {
        Command::Classify { stdin: true, .. } => {
            let stats = batch::classify_lines(&classifier, BufReader::new(io::stdin().lock()), io::stdout().lock())
                .context("failed to read standard input or write standard output")?;
            tracing::info!(
                lines = stats.lines,
                classified = stats.classified,
                errors = stats.errors,
                "batch done"
            );
        }
        Command::Classify { text, json, .. } => {
            let explanation = classifier.explain(text.as_deref().unwrap_or_default());
            let mut out = io::stdout().lock();
            if json {
                serde_json::to_writer_pretty(&mut out, &explanation.classification)?;
                writeln!(out)?;
            } else {
                write!(out, "{}", render(&classifier, &explanation))?;
            }
        }
        Command::Eval {
            file,
            json,
            min_macro_f1,
            misses,
            folds,
        } => {
            let data =
                eval::read_labelled(&file).with_context(|| format!("{} is not labelled JSONL", file.display()))?;
            if data.is_empty() {
                bail!("{} has no labelled messages", file.display());
            }
            let report = match folds {
                Some(k) => eval::cross_validate(&sources(cli.rules.as_deref())?, &data, k.into())?,
                None => eval::evaluate(&classifier, &data),
            };
            let mut out = io::stdout().lock();
            if json {
                serde_json::to_writer_pretty(&mut out, &report)?;
                writeln!(out)?;
            } else {
                write!(out, "{report}")?;
                if misses {
                    writeln!(out, "\nmisses ({})", report.misses.len())?;
                    for m in &report.misses {
                        writeln!(out, "  {:<16} -> {:<16} {}", m.expected.id(), m.got.id(), m.text)?;
                    }
                }
            }
            if let Some(min) = min_macro_f1 {
                if report.macro_f1 < min {
                    eprintln!("macro-F1 {:.3} is below the required {min:.3}", report.macro_f1);
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        Command::Check
        | Command::Reindex
        | Command::Serve
        | Command::Migrate
        | Command::Replay { .. }
        | Command::Responder(_)
        | Command::User(_)
        | Command::IngestKey(_) => {
            unreachable!("handled above")
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn sources(rules: Option<&Path>) -> Result<Sources, RuleErrors> {
    match rules {
        Some(dir) => Sources::from_dir(dir),
        None => Ok(Sources::builtin()),
    }
}

/// The classifier from `--rules DIR`, or the built-in rules.
/// [`load`] for commands that cannot go on without the rules: the error says what to run.
fn loaded(rules: Option<&Path>) -> Result<Classifier> {
    load(rules).map_err(|e| anyhow::anyhow!("{e}\nthe rules do not load: run `suqiu check`"))
}

/// The classifier from `--rules DIR` or the built-in rules, its trained model kept in the user's cache.
pub fn load(rules: Option<&Path>) -> Result<Classifier, RuleErrors> {
    let sources = sources(rules)?;
    let cache = ModelCache::for_sources(&sources.dictionaries, &sources.corpus);
    Classifier::from_sources_cached(&sources, cache.as_ref())
}

fn check(rules: Option<&Path>) -> Result<ExitCode> {
    let from = rules.map_or("built-in rules".to_owned(), |d| d.display().to_string());
    let classifier = match load(rules) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("{}: {} problem(s)", from, errors.0.len());
            return Ok(ExitCode::FAILURE);
        }
    };
    let failures = classifier.check_examples();
    for f in &failures {
        eprintln!("{f}");
    }
    let rules = classifier.rules();
    let keywords: usize = rules.intents.iter().map(|i| i.keywords.len()).sum();
    let model = match classifier.model() {
        Some(m) => format!(
            "a model of {} labelled messages and {} words and word pairs",
            m.messages(),
            m.features()
        ),
        None => "no labelled messages, so no model".into(),
    };
    if failures.is_empty() {
        println!(
            "{from}: ok — {} categories, {keywords} keywords, {} chatter patterns, {} words, {} examples pass; {model}",
            rules.intents.len(),
            rules.chatter.len(),
            rules.words.len(),
            rules.examples.len()
        );
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("{from}: {} of {} examples fail", failures.len(), rules.examples.len());
        Ok(ExitCode::FAILURE)
    }
}

/// The readable explanation of `suqiu classify TEXT`.
pub fn render(classifier: &Classifier, e: &Explanation) -> String {
    use std::fmt::Write as _;
    let c = &e.classification;
    let mut s = String::new();
    let _ = writeln!(s, "normalized  {}", e.normalized);
    let _ = writeln!(s, "tokens      {}", e.tokens.join(" / "));
    let name = c
        .label
        .category()
        .map(|cat| format!(" ({})", classifier.rules().intent(cat).name))
        .unwrap_or_default();
    let priority = c.priority.map_or("-".to_owned(), |p| p.to_string());
    let _ = writeln!(
        s,
        "label       {}{name}   priority {priority}   score {:.2}",
        c.label, c.score
    );
    if let Some(category) = c.label.category() {
        let _ = writeln!(s, "reply       {}", classifier.rules().intent(category).ack);
    }
    if !c.secondary.is_empty() {
        let ids: Vec<&str> = c.secondary.iter().map(|c| c.id()).collect();
        let _ = writeln!(s, "secondary   {}", ids.join(", "));
    }
    if let Some(t) = c.truncated {
        let _ = writeln!(
            s,
            "truncated   classified the first {} of {} characters",
            t.kept_chars, t.original_chars
        );
    }
    let _ = writeln!(s, "evidence");
    for ev in &c.evidence {
        let _ = writeln!(s, "  {:>+6.2}  {:<36} {}", ev.weight, ev.rule, ev.words.join(" + "));
    }
    let scores: Vec<String> = e.scores.iter().map(|(cat, sc)| format!("{cat} {sc:.2}")).collect();
    let _ = writeln!(
        s,
        "scores      {}",
        if scores.is_empty() {
            "-".to_owned()
        } else {
            scores.join(", ")
        }
    );
    if !c.entities.is_empty() {
        let _ = writeln!(s, "entities");
        for entity in &c.entities {
            let _ = writeln!(s, "  {}", serde_json::to_string(entity).unwrap_or_default());
        }
    }
    s
}
