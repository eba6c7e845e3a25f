//! A fresh database per test, on either backend, and the suite macro that runs a test on both.
//!
//! SQLite: a file in a temporary directory. PostgreSQL: a new database on the server named by
//! `SUQIU_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`), dropped when the test
//! ends; `.ci/run` names a database of its own per run, and drops any that a failed test left behind.

#![allow(dead_code)]

pub mod telegram;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use sqlx::Connection;
use suqiu::app::Application;
use suqiu::auth;
use suqiu::classify::Classifier;
use suqiu::clock::{ManualClock, SharedClock};
use suqiu::config::Config;
use suqiu::store::Db;
use suqiu::tickets::desk::Desk;
use suqiu::tickets::intake::{InboundMessage, Intake, IntakeSettings};
use suqiu::tickets::TicketId;

/// 2026-11-02 08:00 UTC: tests start the clock here.
pub const T0: i64 = 1_793_606_400_000;
pub const MINUTE: i64 = 60_000;

/// Logs to the test's output, filtered by `RUST_LOG` (nothing by default).
pub fn logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "off".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

pub fn classifier() -> Arc<Classifier> {
    static CLASSIFIER: OnceLock<Arc<Classifier>> = OnceLock::new();
    CLASSIFIER
        .get_or_init(|| Arc::new(Classifier::builtin().expect("the built-in rules load")))
        .clone()
}

pub struct TestDb {
    pub db: Db,
    pub url: String,
    postgres: Option<(String, String)>,
    /// The test's own directory: the SQLite file, the search index.
    dir: tempfile::TempDir,
}

impl TestDb {
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let url = format!("sqlite://{}", dir.path().join("data/suqiu.db").display());
        let db = Db::connect(&url).await.expect("sqlite connects");
        db.migrate().await.expect("sqlite migrates");
        TestDb {
            db,
            url,
            postgres: None,
            dir,
        }
    }

    pub async fn postgres() -> TestDb {
        let admin = postgres_admin_url();
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "{}_{}_{}",
            database_prefix(&admin),
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| {
            panic!("PostgreSQL at {admin} (set SUQIU_TEST_POSTGRES_URL to a server the tests may create databases on): {e}")
        });
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.ok();
        let url = with_database(&admin, &name);
        let db = Db::connect(&url).await.expect("postgres connects");
        db.migrate().await.expect("postgres migrates");
        TestDb {
            db,
            url,
            postgres: Some((admin, name)),
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    /// `sqlite` or `postgres`.
    pub fn backend_name(&self) -> &'static str {
        match self.postgres {
            Some(_) => "postgres",
            None => "sqlite",
        }
    }

    /// A directory for this test's search index.
    pub fn search_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("search")
    }

    /// Closes the pool and drops a PostgreSQL test database. Tests call it last; one that fails leaves its
    /// database for `.ci/run` to drop.
    pub async fn finish(self) {
        self.db.close().await;
        if let Some((admin, name)) = &self.postgres {
            if let Ok(mut conn) = sqlx::PgConnection::connect(admin).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await;
            }
        }
    }

    pub async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(self.db.pool())
            .await
            .unwrap()
    }
}

fn postgres_admin_url() -> String {
    std::env::var("SUQIU_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Test databases are named after the database in the URL, so that each CI run's are its own.
fn database_prefix(url: &str) -> String {
    let db = url
        .rsplit('/')
        .next()
        .unwrap_or("suqiu")
        .split('?')
        .next()
        .unwrap_or("suqiu");
    let clean: String = db.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
    format!("{}_t", if clean.is_empty() { "suqiu" } else { &clean })
}

fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let base = base.rsplit_once('/').map_or(base, |(b, _)| b);
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

/// An intake on `db` with the default configuration and a manual clock at [`T0`].
pub fn intake(db: &Db) -> (Intake, Arc<ManualClock>) {
    let clock = ManualClock::at(T0);
    let shared: SharedClock = clock.clone();
    let settings = IntakeSettings::from_config(&Config::default(), Default::default());
    let (intake, _) = Intake::start(db.clone(), classifier(), shared, settings);
    (intake, clock)
}

/// The responders' desk on `db` with the default SLA policies.
pub fn desk(db: &Db) -> Desk {
    Desk::new(db.clone(), Default::default(), Default::default())
}

/// Submits an appeal that must open (or join) a ticket, and returns the ticket.
pub async fn ticket_of(intake: &Intake, message: InboundMessage) -> TicketId {
    let outcome = intake.submit(message).await.expect("intake stores the message");
    outcome.ticket.expect("the message is an appeal").id
}

/// A message from `sender` in the chat `group-1`, sent at `at`.
pub fn message(id: &str, sender: &str, text: &str, at: i64) -> InboundMessage {
    InboundMessage {
        channel: "telegram".into(),
        chat: "group-1".into(),
        message_id: id.into(),
        sender: sender.into(),
        sender_name: Some(format!("司机{sender}")),
        text: text.into(),
        sent_at: Some(jiff::Timestamp::from_millisecond(at).unwrap()),
        reply_to: None,
    }
}

/// Runs each listed `async fn(TestDb)` on SQLite and on PostgreSQL, as `sqlite::NAME` and `postgres::NAME`.
#[macro_export]
macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test($crate::support::TestDb::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test($crate::support::TestDb::postgres().await).await;
                }
            )*
        }
    };
}

/// The whole service on a test's database, as `suqiu serve` runs it.
pub struct Served {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    pub clock: Arc<ManualClock>,
    /// A bridge's key for `POST /api/v1/messages`.
    pub ingest_key: String,
}

/// Starts the service (API, dashboard, scheduler, search indexer) on `t`'s database and a random local port,
/// on a manual clock at `at`.
pub async fn serve(t: &TestDb, at: i64) -> Served {
    let config = Config {
        database_url: Some(t.url.clone()),
        search_dir: Some(t.search_dir()),
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Config::default()
    };
    let clock = ManualClock::at(at);
    let shared: SharedClock = clock.clone();
    let app = Application::build(&config, classifier(), shared).await.unwrap();
    let base = format!("http://{}", app.local_addr());
    tokio::spawn(app.run(std::future::pending()));
    let ingest_key = auth::add_ingest_key(&t.db, "bridge", at).await.unwrap();
    Served {
        base,
        clock,
        ingest_key,
    }
}

/// A bridge's post of `body` to the ingest API at `base` with `key`: the status and the service's answer.
pub async fn ingest(base: &str, key: &str, body: &serde_json::Value) -> (reqwest::StatusCode, serde_json::Value) {
    let response = reqwest::Client::new()
        .post(format!("{base}/api/v1/messages"))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .expect("the service answers");
    let status = response.status();
    (status, response.json().await.expect("the answer is JSON"))
}
